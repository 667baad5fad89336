//! Abuse protection: which limits a request must pass (`policy`), what a
//! limit is to the stores (`limit`), and who the client is (`client_ip`).
//! The stores decide and record limits atomically (Lua in Redis, the same
//! arithmetic in memory); `governor` sheds floods in process first.

mod limit;

pub use self::limit::{Check, Gcra, Group, Item, Outcome, Scope, Verdict};
