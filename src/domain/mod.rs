//! Values that are valid once built: phone numbers, codes, ids, service names,
//! locales, statuses and instants. No I/O lives here; every other layer trusts
//! these types instead of re-checking strings.

mod binding;
mod code;
mod id;
mod locale;
mod phone;
mod service;
mod status;
mod time;

pub use binding::{Binding, BindingError};
pub use code::{Code, CodeError};
pub use id::{IdError, VerificationId, TAG_LEN};
pub use locale::{Locale, LocaleError};
pub use phone::{Phone, PhoneError, Region};
pub use service::{ServiceName, ServiceNameError};
pub use status::Status;
pub use time::Timestamp;
