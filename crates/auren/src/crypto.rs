//! Secrets at rest: what the service must store and later use again (outgoing webhook signing
//! secrets now, vendor OAuth tokens later) is sealed with `AUREN_TOKEN_KEY` before it reaches the
//! database, so a copy of the database alone reveals none of them.
//!
//! XChaCha20-Poly1305: authenticated, so a tampered or foreign value fails to open instead of
//! decrypting to garbage, and its 24-byte nonces can be drawn at random for every value without
//! counting. The sealed form is text, `v1.<base64(nonce || ciphertext)>`; the version leaves room
//! for a key rotation that keeps old values readable.

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const VERSION: &str = "v1.";
const NONCE_BYTES: usize = 24;
pub const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("AUREN_TOKEN_KEY must be {KEY_BYTES} bytes, base64 or hex encoded (got {0} bytes)")]
    KeyLength(usize),
    #[error("AUREN_TOKEN_KEY is neither base64 nor hex")]
    KeyEncoding,
    #[error("a sealed value is malformed")]
    Malformed,
    #[error("a sealed value does not open with this key (another key, or tampered with)")]
    Open,
}

/// The key secrets are sealed with.
#[derive(Clone)]
pub struct TokenKey(XChaCha20Poly1305);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// Reads a key given as 64 hex digits or as base64 (standard or URL-safe) of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| CryptoError::KeyEncoding)?
        } else {
            let b64 = base64::engine::general_purpose::STANDARD.decode(text);
            b64.or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| CryptoError::KeyEncoding)?
        };
        if bytes.len() != KEY_BYTES {
            return Err(CryptoError::KeyLength(bytes.len()));
        }
        Ok(Self(
            XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| CryptoError::KeyLength(bytes.len()))?,
        ))
    }

    /// A fresh random key in the form [`TokenKey::parse`] reads (for dev mode).
    pub fn generate() -> String {
        let bytes: [u8; KEY_BYTES] = rand::random();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption only fails for inputs beyond the cipher's limit (256 GiB).
        let ciphertext = self
            .0
            .encrypt(&nonce, plaintext)
            .expect("XChaCha20-Poly1305 encrypts any realistic length");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!(
            "{VERSION}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let body = sealed.strip_prefix(VERSION).ok_or(CryptoError::Malformed)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_BYTES {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_BYTES);
        self.0
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_read_from_hex_or_base64_and_must_be_32_bytes() {
        let hex_key = "00".repeat(32);
        assert!(TokenKey::parse(&hex_key).is_ok());
        assert!(TokenKey::parse(&TokenKey::generate()).is_ok());
        assert!(matches!(
            TokenKey::parse("c2hvcnQ="),
            Err(CryptoError::KeyLength(5))
        ));
        assert!(matches!(
            TokenKey::parse("not a key!"),
            Err(CryptoError::KeyEncoding)
        ));
    }

    #[test]
    fn sealed_values_do_not_contain_the_plaintext_and_differ_each_time() {
        let k = TokenKey::parse(&TokenKey::generate()).unwrap();
        let a = k.seal(b"whsec_abcdefgh");
        let b = k.seal(b"whsec_abcdefgh");
        assert_ne!(a, b);
        assert!(!a.contains("whsec"));
    }

    #[test]
    fn another_key_or_a_flipped_byte_does_not_open() {
        let k = TokenKey::parse(&TokenKey::generate()).unwrap();
        let other = TokenKey::parse(&TokenKey::generate()).unwrap();
        let sealed = k.seal(b"secret");
        assert!(matches!(other.open(&sealed), Err(CryptoError::Open)));
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed[3..])
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = format!(
            "v1.{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        assert!(matches!(k.open(&tampered), Err(CryptoError::Open)));
        assert!(matches!(k.open("v2.AAAA"), Err(CryptoError::Malformed)));
        assert!(matches!(k.open("v1.AAAA"), Err(CryptoError::Malformed)));
    }

    proptest! {
        #[test]
        fn open_inverts_seal(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let k = TokenKey::parse(&"ab".repeat(32)).unwrap();
            prop_assert_eq!(k.open(&k.seal(&data)).unwrap(), data);
        }
    }
}
