//! Opaque refresh tokens: 256 random bits, handed out once, stored only as their SHA-256.
//!
//! A refresh token is a bearer secret that the server looks up, so it needs no signature or
//! structure: random bytes suffice. Storing the hash alone means a leaked table yields no usable
//! token; a plain (unsalted, fast) SHA-256 is enough because the input has 256 bits of entropy
//! and cannot be guessed.

use anyhow::anyhow;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity::ports::{RefreshTokens, TokenHash};
use sha2::{Digest as _, Sha256};

/// The prefix of every refresh token: makes a leaked one recognizable to secret scanners and
/// cheap to tell apart from an access token.
const PREFIX: &str = "qr_";

/// Random bytes per token.
const TOKEN_BYTES: usize = 32;

/// [`RefreshTokens`] as `qr_` followed by 32 random bytes in unpadded base64url (46 characters
/// in all); the stored form is the SHA-256 of the whole string.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpaqueTokens;

impl OpaqueTokens {
    /// The generator.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

/// `prefix` + 256 random bits (base64url), and its SHA-256.
fn secret(prefix: &str) -> anyhow::Result<(String, [u8; 32])> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("the system random source failed: {e}"))?;
    let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = sha256(&token);
    Ok((token, hash))
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl RefreshTokens for OpaqueTokens {
    fn generate(&self) -> anyhow::Result<(String, TokenHash)> {
        secret(PREFIX).map(|(t, h)| (t, TokenHash(h)))
    }

    fn hash(&self, token: &str) -> TokenHash {
        TokenHash(sha256(token))
    }
}

/// Organization secrets (API keys `qk_…`, invitations `qi_…`): a prefix + 256 random bits;
/// only the SHA-256 is stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiKeySecrets;

impl tenancy::KeySecrets for ApiKeySecrets {
    fn generate(&self, prefix: &'static str) -> anyhow::Result<(String, tenancy::KeyHash)> {
        secret(prefix).map(|(t, h)| (t, tenancy::KeyHash(h)))
    }

    fn hash(&self, secret: &str) -> tenancy::KeyHash {
        tenancy::KeyHash(sha256(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_46_chars() {
        let (a, ha) = OpaqueTokens.generate().unwrap();
        let (b, hb) = OpaqueTokens.generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        for t in [&a, &b] {
            assert!(t.starts_with("qr_"), "{t}");
            assert_eq!(t.len(), 3 + 43);
            assert!(
                t[3..]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            );
            assert_eq!(URL_SAFE_NO_PAD.decode(&t[3..]).unwrap().len(), TOKEN_BYTES);
        }
    }

    #[test]
    fn hash_is_sha256_of_the_string_and_deterministic() {
        let (t, h) = OpaqueTokens.generate().unwrap();
        assert_eq!(OpaqueTokens.hash(&t), h);
        assert_eq!(OpaqueTokens.hash(&t), OpaqueTokens.hash(&t.clone()));
        assert_ne!(OpaqueTokens.hash("qr_a"), OpaqueTokens.hash("qr_b"));
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(OpaqueTokens.hash("abc").0[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
