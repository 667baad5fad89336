//! SMS bodies: templates per service and locale, autofill lines, and how
//! many segments a body costs in GSM-7 or UCS-2.

mod autofill;
mod encoding;
mod template;

pub use autofill::{AppHash, AppHashError, Origin, OriginError};
pub use encoding::{segments, Encoding};
pub use template::{Body, Template, TemplateError};
