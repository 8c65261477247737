//! [`tenancy::Sealer`] with HMAC-SHA256 (the `hmac` crate, RustCrypto) under a key derived
//! from the server's token signing key, so every server of a deployment seals and verifies
//! alike and nothing new has to be configured. The derivation is itself an HMAC with a fixed
//! label, so the seal key is independent of how the signing key is used for tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit as _, Mac as _};

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// What the seal key is derived with.
const LABEL: &[u8] = b"quire audit seal v1";

/// Seals with HMAC-SHA256; a seal is `hmac-sha256:` + base64url of the MAC.
#[derive(Clone)]
pub struct HmacSealer {
    key: [u8; 32],
}

impl std::fmt::Debug for HmacSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSealer").finish_non_exhaustive()
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts every key"))
}

impl HmacSealer {
    /// A sealer whose key is derived from `secret` (the first token signing key).
    #[must_use]
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut m = mac(secret);
        m.update(LABEL);
        Self {
            key: m.finalize().into_bytes().into(),
        }
    }
}

const PREFIX: &str = "hmac-sha256:";

impl tenancy::Sealer for HmacSealer {
    fn seal(&self, message: &[u8]) -> String {
        let mut m = mac(&self.key);
        m.update(message);
        format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        )
    }

    fn verify(&self, message: &[u8], seal: &str) -> bool {
        let Some(tag) = seal
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
        else {
            return false;
        };
        let mut m = mac(&self.key);
        m.update(message);
        m.verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy::Sealer as _;

    #[test]
    fn a_seal_verifies_and_any_change_breaks_it() {
        let s = HmacSealer::from_secret(b"k1");
        let seal = s.seal(b"organization.erased|a|b");
        assert!(seal.len() <= 80, "{seal}");
        assert!(s.verify(b"organization.erased|a|b", &seal));
        assert!(
            !s.verify(b"organization.erased|a|c", &seal),
            "changed message"
        );
        let mut forged = seal.clone();
        forged.pop();
        forged.push(if seal.ends_with('A') { 'B' } else { 'A' });
        assert!(
            !s.verify(b"organization.erased|a|b", &forged),
            "changed seal"
        );
        assert!(!s.verify(b"organization.erased|a|b", "garbage"));
        let other = HmacSealer::from_secret(b"k2");
        assert!(
            !other.verify(b"organization.erased|a|b", &seal),
            "another key"
        );
    }
}
