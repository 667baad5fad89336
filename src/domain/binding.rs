//! Bindings: an opaque value from the caller (a session or transaction hash)
//! that ties a verification to where it was started (SEC-5).

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// 1 to 256 bytes. Only its keyed digest is ever stored; `Debug` hides it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Binding(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a binding is 1 to 256 bytes")]
pub struct BindingError;

impl Binding {
    pub const MAX_BYTES: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, BindingError> {
        if raw.is_empty() || raw.len() > Self::MAX_BYTES {
            return Err(BindingError);
        }
        Ok(Binding(raw.to_owned()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Binding([redacted])")
    }
}
