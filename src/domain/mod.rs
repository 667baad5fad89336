//! Values that are valid once built: channels, phone numbers, codes, ids, service names,
//! locales, statuses, instants and the clock that gives them, and carriers' receipts. No I/O lives here; every other layer trusts
//! these types instead of re-checking strings.

mod binding;
mod channel;
mod clock;
mod code;
mod id;
mod locale;
mod phone;
mod receipt;
mod service;
mod status;
mod time;

pub use binding::{Binding, BindingError};
pub use channel::Channel;
#[cfg(any(test, feature = "test-support"))]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use code::{Code, CodeError};
pub use id::{IdError, VerificationId, TAG_LEN};
pub use locale::{Locale, LocaleError};
pub use phone::{Phone, PhoneError, Reach, Region};
pub use receipt::{CarrierReceipt, Receipt};
pub use service::{DisplayName, DisplayNameError, ServiceName, ServiceNameError};
pub use status::Status;
pub use time::Timestamp;
