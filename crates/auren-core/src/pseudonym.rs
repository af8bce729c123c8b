//! Keyed pseudonyms: the only form of a user id allowed in logs, metric labels and Kafka keys.
//!
//! The predecessor used 8 hex digits of an unsalted SHA-256, which anyone can reverse for
//! enumerable ids. A keyed HMAC cannot be reversed without the key, and 128 bits do not collide
//! at any realistic number of users. The same key always gives the same pseudonym, which keeps
//! each user on one Kafka partition across restarts.

use crate::signature::hmac_sha256;
use std::fmt;

#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer(<key>)")
    }
}

impl Pseudonymizer {
    /// Minimum key length, so a weak key is refused at start instead of silently used.
    pub const MIN_KEY_BYTES: usize = 16;

    pub fn new(key: &[u8]) -> Result<Self, PseudonymKeyTooShort> {
        if key.len() < Self::MIN_KEY_BYTES {
            return Err(PseudonymKeyTooShort(key.len()));
        }
        Ok(Self { key: key.to_vec() })
    }

    /// `u_` followed by 32 hex digits (128 bits of HMAC-SHA256).
    pub fn pseudonym(&self, user_id: &str) -> String {
        let mac = hmac_sha256(&self.key, &[b"auren-user:", user_id.as_bytes()]);
        format!("u_{}", hex::encode(&mac[..16]))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("AUREN_PSEUDONYM_KEY must be at least 16 bytes, got {0}")]
pub struct PseudonymKeyTooShort(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_stable_and_distinct() {
        let a = Pseudonymizer::new(b"0123456789abcdef").unwrap();
        let b = Pseudonymizer::new(b"0123456789abcdeX").unwrap();
        assert_eq!(a.pseudonym("user_123"), a.pseudonym("user_123"));
        assert_ne!(a.pseudonym("user_123"), a.pseudonym("user_124"));
        assert_ne!(a.pseudonym("user_123"), b.pseudonym("user_123"));
        let p = a.pseudonym("user_123");
        assert!(p.starts_with("u_") && p.len() == 34 && !p.contains("user"));
        assert!(Pseudonymizer::new(b"short").is_err());
    }
}
