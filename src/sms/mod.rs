//! SMS bodies: templates per service and locale, and how many segments a
//! body costs in GSM-7 or UCS-2.

mod encoding;
mod template;

pub use encoding::segments;
pub use template::{Body, Template, TemplateError};
