//! Abuse protection: which limits a request must pass (`policy`), what a
//! limit is to the stores (`limit`), who the client is (`client_ip`), and
//! the in-process flood shedder (`flood`).
//! The stores decide and record limits atomically (Lua in Redis, the same
//! arithmetic in memory); `governor` sheds floods in process first.

mod calendar;
mod client_ip;
mod flood;
mod limit;
mod policy;

pub use self::client_ip::{network_of, TrustedProxies};
pub use self::flood::Flood;
pub use self::limit::{
    Check, Conversion, ConversionCounts, Gcra, Group, Item, Outcome, Scope, Verdict,
};
pub use self::policy::{
    Budget, Client, ConversionPolicy, FailurePolicy, KeyMaker, Policy, Rate, Subject, VoicePolicy,
};
