//! Access tokens as PASETO `v4.public` (Ed25519 signatures), with a key ring for rotation.
//!
//! See [`PasetoTokens`] for the format and why `v4.public`.

use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use identity::ports::{AccessClaims, AccessTokens, InvalidToken, SessionId};
use kernel::UserId;
use pasetors::Public;
use pasetors::claims::{Claims, ClaimsValidationRules};
use pasetors::footer::Footer;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate as _};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::public;
use pasetors::token::UntrustedToken;
use pasetors::version4::V4;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The longest token [`PasetoTokens::verify`] will parse, in bytes. Real tokens are about
/// 400 bytes; anything longer is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The value of the `typ` claim of access tokens.
const TYP_ACCESS: &str = "access";

/// The longest footer accepted (ours is ~60 bytes of JSON).
const MAX_FOOTER_LEN: usize = 256;

/// A verifying key and its PASERK id.
struct RingKey {
    kid: String,
    public: AsymmetricPublicKey<V4>,
}

/// [`AccessTokens`] as PASETO `v4.public` (Ed25519 signatures), with a key ring for rotation.
///
/// # Why `v4.public`
///
/// - **Verifiable with public keys only.** A token is signed with an Ed25519 secret key and
///   checked with the matching public key, so a component that only needs to *check* tokens
///   (another service, an edge proxy) can be given public keys and can never mint tokens. A
///   symmetric scheme (`v4.local`, HMAC JWTs) would hand every verifier the power to forge.
/// - **The claims are not secret.** A token carries the user id, the session id and its
///   validity times: nothing the holder may not see, so signing suffices and encryption
///   (`v4.local`) would add nothing but key-distribution pain.
/// - **No algorithm agility.** PASETO fixes the algorithm per version and purpose, so there is
///   no `alg` header to confuse (the classic JWT `none`/HS-vs-RS pitfalls).
///
/// # Format
///
/// Claims (JSON): `iss`, `aud`, `sub` (user id), `iat` = `nbf` (issue time), `exp`
/// (`iat` + ttl), all times RFC 3339 in UTC with sub-second precision, plus `typ` = `"access"`
/// and `sid` (session id). The footer is `{"kid":"k4.pid.…"}`: the PASERK id of the signing
/// key's public key, so the verifier picks the key without trying each. No implicit assertion.
///
/// # Key ring
///
/// Keys are PASERK `k4.secret.…` strings, newest first. The first signs; every key verifies.
/// To rotate: put a new key first and keep the old one second for at least one ttl, then drop
/// it.
///
/// `exp` is checked against the system clock (by `pasetors`), strictly; `iat` and `nbf` may be
/// up to `CLOCK_LEEWAY` ahead of it (another server's clock).
pub struct PasetoTokens {
    signing: AsymmetricSecretKey<V4>,
    /// `{"kid": <id of the signing key>}`.
    footer: Footer,
    ring: Vec<RingKey>,
    rules: ClaimsValidationRules,
    ttl: Duration,
    ttl_time: time::Duration,
    issuer: String,
    audience: String,
}

impl fmt::Debug for PasetoTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids are public; the keys themselves are never printed.
        let kids: Vec<&str> = self.ring.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("PasetoTokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .field("key_ids", &kids)
            .finish_non_exhaustive()
    }
}

/// Parses one PASERK `k4.secret.…` key. The error never echoes the key.
pub(crate) fn parse_secret_key(paserk: &str) -> anyhow::Result<AsymmetricSecretKey<V4>> {
    let paserk = paserk.trim();
    if paserk.starts_with("k4.public.") {
        bail!(
            "a PASERK public key (k4.public.…) was given where a secret key (k4.secret.…) is needed"
        );
    }
    if !paserk.starts_with("k4.secret.") {
        bail!("not a PASERK v4 secret key: it must start with `k4.secret.`");
    }
    // The pasetors error says what is wrong (encoding, length, a public half that does not match
    // the seed) without quoting the input.
    AsymmetricSecretKey::<V4>::try_from(paserk)
        .map_err(|e| anyhow!("not a valid PASERK v4 secret key ({e:?})"))
}

/// The PASERK id (`k4.pid.…`) of a public key.
fn key_id(public: &AsymmetricPublicKey<V4>) -> anyhow::Result<String> {
    let mut kid = String::new();
    FormatAsPaserk::fmt(&Id::from(public), &mut kid)
        .map_err(|_| anyhow!("formatting a PASERK key id failed"))?;
    Ok(kid)
}

/// RFC 3339 in UTC, keeping sub-second precision.
fn rfc3339(t: OffsetDateTime) -> anyhow::Result<String> {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .context("formatting a token time as RFC 3339")
}

impl PasetoTokens {
    /// Tokens signed with `keys[0]` and verified with any of `keys` (PASERK `k4.secret.…`,
    /// newest first), for `issuer` and `audience`, living `ttl`.
    ///
    /// # Errors
    /// When `keys` is empty, a key is not a valid PASERK v4 secret key (the error names its
    /// position, never its content), `issuer` or `audience` is empty, or `ttl` is zero or too
    /// large.
    pub fn new(
        keys: &[String],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        if keys.is_empty() {
            bail!("no access-token signing key is configured (an empty key list)");
        }
        if issuer.is_empty() || audience.is_empty() {
            bail!("the access-token issuer and audience must not be empty");
        }
        if ttl.is_zero() {
            bail!("the access-token lifetime must be positive");
        }
        let ttl_time = time::Duration::try_from(ttl)
            .ok()
            .filter(|d| *d <= time::Duration::days(366))
            .context("the access-token lifetime is too large")?;

        let mut secrets = Vec::with_capacity(keys.len());
        let mut ring = Vec::with_capacity(keys.len());
        for (i, paserk) in keys.iter().enumerate() {
            let secret = parse_secret_key(paserk)
                .with_context(|| format!("access-token key #{} of {}", i + 1, keys.len()))?;
            let public = AsymmetricPublicKey::<V4>::try_from(&secret).map_err(|e| {
                anyhow!(
                    "deriving the public key of access-token key #{}: {e:?}",
                    i + 1
                )
            })?;
            let kid = key_id(&public)?;
            if ring.iter().any(|k: &RingKey| k.kid == kid) {
                bail!("access-token key #{} is listed twice", i + 1);
            }
            secrets.push(secret);
            ring.push(RingKey { kid, public });
        }
        let mut secrets = secrets.into_iter();
        let signing = secrets
            .next()
            .context("no access-token signing key is configured")?;
        let mut footer = Footer::new();
        footer.key_id(&Id::from(&ring[0].public));

        let mut rules = ClaimsValidationRules::new();
        rules.validate_issuer_with(issuer);
        rules.validate_audience_with(audience);
        // pasetors compares `iat`/`nbf` with this host's clock exactly; servers' clocks differ
        // by a little, so those two are checked below with `CLOCK_LEEWAY`. `exp` stays strict.
        rules.disable_valid_at();

        tracing::info!(
            signing_key = %ring[0].kid,
            verifying_keys = ring.len(),
            "access-token keys loaded"
        );
        Ok(Self {
            signing,
            footer,
            ring,
            rules,
            ttl,
            ttl_time,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// A fresh Ed25519 key pair as a PASERK secret key (`k4.secret.…`), for a new install or a
    /// rotation.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub fn generate_key() -> anyhow::Result<String> {
        let pair = AsymmetricKeyPair::<V4>::generate()
            .map_err(|e| anyhow!("generating an Ed25519 key pair failed: {e:?}"))?;
        let mut paserk = String::new();
        FormatAsPaserk::fmt(&pair.secret, &mut paserk)
            .map_err(|_| anyhow!("formatting a PASERK secret key failed"))?;
        Ok(paserk)
    }

    /// The key id (`k4.pid.…`) of the signing key, as put in token footers.
    #[must_use]
    pub fn signing_key_id(&self) -> &str {
        &self.ring[0].kid
    }

    /// The public keys of the ring as PASERK `k4.public.…`, newest first: all a verifier needs.
    ///
    /// # Errors
    /// When formatting fails (it does not).
    pub fn public_keys(&self) -> anyhow::Result<Vec<String>> {
        self.ring
            .iter()
            .map(|k| {
                let mut s = String::new();
                FormatAsPaserk::fmt(&k.public, &mut s)
                    .map_err(|_| anyhow!("formatting a PASERK public key failed"))?;
                Ok(s)
            })
            .collect()
    }

    /// The claims of an access token (`typ` = `access`).
    fn claims(&self, c: &AccessClaims) -> anyhow::Result<Claims> {
        let exp = c
            .issued_at
            .checked_add(self.ttl_time)
            .context("the access-token expiry is out of range")?;
        let iat = rfc3339(c.issued_at)?;
        let mut claims = Claims::new().context("creating token claims")?;
        claims.issuer(&self.issuer).context("setting `iss`")?;
        claims.audience(&self.audience).context("setting `aud`")?;
        claims
            .subject(&c.user_id.to_string())
            .context("setting `sub`")?;
        claims.issued_at(&iat).context("setting `iat`")?;
        claims.not_before(&iat).context("setting `nbf`")?;
        claims.expiration(&rfc3339(exp)?).context("setting `exp`")?;
        claims
            .add_additional("typ", TYP_ACCESS)
            .context("setting `typ`")?;
        claims
            .add_additional("sid", c.session.to_string())
            .context("setting `sid`")?;
        Ok(claims)
    }

    /// Verifies `token`; the error is a reason for debug logs (never the token itself).
    fn check(&self, token: &str) -> Result<AccessClaims, &'static str> {
        if token.len() > MAX_TOKEN_LEN {
            return Err("too long");
        }
        let untrusted =
            UntrustedToken::<Public, V4>::try_from(token).map_err(|_| "not a v4.public token")?;

        // The footer is untrusted until the signature is checked (it is covered by it); it is
        // only used to pick the key.
        let raw_footer = untrusted.untrusted_footer();
        if raw_footer.is_empty() || raw_footer.len() > MAX_FOOTER_LEN {
            return Err("missing or oversized footer");
        }
        let mut footer = Footer::new();
        footer.max_len(MAX_FOOTER_LEN);
        footer.max_keys(4);
        footer
            .parse_bytes(raw_footer)
            .map_err(|_| "malformed footer")?;
        let kid = footer
            .get_claim("kid")
            .and_then(|v| v.as_str())
            .ok_or("no key id")?;
        let key = self
            .ring
            .iter()
            .find(|k| k.kid == kid)
            .ok_or("unknown key id")?;

        let trusted = public::verify(&key.public, &untrusted, &self.rules, None, None)
            .map_err(|_| "bad signature, issuer, audience or validity times")?;
        let claims = trusted.payload_claims().ok_or("no claims")?;
        let text = |name: &str| claims.get_claim(name).and_then(|v| v.as_str());

        if text("typ") != Some(TYP_ACCESS) {
            return Err("not an access token");
        }
        let user_id = UserId::parse(text("sub").ok_or("no subject")?).map_err(|_| "bad subject")?;
        let session =
            SessionId::parse(text("sid").ok_or("no session")?).map_err(|_| "bad session")?;
        let issued_at =
            OffsetDateTime::parse(text("iat").ok_or("no iat")?, &Rfc3339).map_err(|_| "bad iat")?;
        let not_before =
            OffsetDateTime::parse(text("nbf").ok_or("no nbf")?, &Rfc3339).map_err(|_| "bad nbf")?;
        let latest_valid_start = OffsetDateTime::now_utc() + CLOCK_LEEWAY;
        if issued_at > latest_valid_start || not_before > latest_valid_start {
            return Err("not valid yet");
        }
        Ok(AccessClaims {
            user_id,
            session,
            issued_at,
        })
    }
}

impl AccessTokens for PasetoTokens {
    fn issue(&self, claims: &AccessClaims) -> anyhow::Result<String> {
        let claims = self.claims(claims)?;
        public::sign(&self.signing, &claims, Some(&self.footer), None)
            .map_err(|e| anyhow!("signing an access token failed: {e:?}"))
    }

    fn verify(&self, token: &str) -> Result<AccessClaims, InvalidToken> {
        self.check(token).map_err(|reason| {
            tracing::debug!(reason, "access token refused");
            InvalidToken
        })
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// How far ahead of this host's clock a token's `iat`/`nbf` may be (another server's clock).
const CLOCK_LEEWAY: time::Duration = time::Duration::seconds(30);

#[cfg(test)]
mod tests {
    use identity::ports::RefreshTokens as _;

    use super::*;
    use crate::OpaqueTokens;

    const ISS: &str = "https://quire.test";
    const AUD: &str = "quire-api";
    const TTL: Duration = Duration::from_secs(15 * 60);

    fn key() -> String {
        PasetoTokens::generate_key().unwrap()
    }

    fn tokens(keys: &[String]) -> PasetoTokens {
        PasetoTokens::new(keys, ISS, AUD, TTL).unwrap()
    }

    fn claims_at(issued_at: OffsetDateTime) -> AccessClaims {
        AccessClaims {
            user_id: UserId::new(),
            session: SessionId::new(),
            issued_at,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn valid_token_round_trips() {
        let t = tokens(&[key()]);
        // Sub-second precision survives.
        let c = claims_at(
            now() - time::Duration::seconds(1) + time::Duration::nanoseconds(123_456_789),
        );
        let token = t.issue(&c).unwrap();
        assert!(token.starts_with("v4.public."));
        assert!(token.len() < 1024, "{}", token.len());
        assert_eq!(t.verify(&token).unwrap(), c);
        assert_eq!(t.ttl(), TTL);
    }

    #[test]
    fn non_utc_issue_time_round_trips() {
        let t = tokens(&[key()]);
        let c = claims_at(now().to_offset(UtcOffset::from_hms(2, 0, 0).unwrap()));
        assert_eq!(t.verify(&t.issue(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn footer_names_the_signing_key() {
        let t = tokens(&[key()]);
        let token = t.issue(&claims_at(now())).unwrap();
        let untrusted = UntrustedToken::<Public, V4>::try_from(token.as_str()).unwrap();
        let mut footer = Footer::new();
        footer.parse_bytes(untrusted.untrusted_footer()).unwrap();
        let kid = footer.get_claim("kid").unwrap().as_str().unwrap();
        assert!(kid.starts_with("k4.pid."), "{kid}");
        assert_eq!(kid, t.signing_key_id());
    }

    #[test]
    fn expired_token_is_invalid() {
        let t = tokens(&[key()]);
        let token = t
            .issue(&claims_at(now() - time::Duration::hours(2)))
            .unwrap();
        assert!(t.verify(&token).is_err());
    }

    #[test]
    fn not_yet_valid_token_is_invalid() {
        let t = tokens(&[key()]);
        let token = t
            .issue(&claims_at(now() + time::Duration::hours(1)))
            .unwrap();
        assert!(t.verify(&token).is_err());
    }

    #[test]
    fn a_token_from_a_server_whose_clock_is_slightly_ahead_verifies() {
        let t = tokens(&[key()]);
        let ahead = claims_at(now() + time::Duration::seconds(10));
        let token = t.issue(&ahead).unwrap();
        assert_eq!(t.verify(&token).unwrap(), ahead);
        let too_far = t
            .issue(&claims_at(now() + time::Duration::seconds(90)))
            .unwrap();
        assert!(t.verify(&too_far).is_err());
    }

    #[test]
    fn wrong_audience_is_invalid() {
        let k = key();
        let token = tokens(std::slice::from_ref(&k))
            .issue(&claims_at(now()))
            .unwrap();
        let other = PasetoTokens::new(&[k], ISS, "another-api", TTL).unwrap();
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn wrong_issuer_is_invalid() {
        let k = key();
        let token = tokens(std::slice::from_ref(&k))
            .issue(&claims_at(now()))
            .unwrap();
        let other = PasetoTokens::new(&[k], "https://evil.test", AUD, TTL).unwrap();
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn key_outside_the_ring_is_invalid() {
        let t = tokens(&[key()]);
        let stranger = tokens(&[key()]);
        let token = stranger.issue(&claims_at(now())).unwrap();
        assert!(t.verify(&token).is_err());
    }

    #[test]
    fn known_kid_with_a_foreign_signature_is_invalid() {
        let t = tokens(&[key()]);
        let stranger = tokens(&[key()]);
        // Signed by the stranger, but claiming to come from `t`'s key.
        let forged = public::sign(
            &stranger.signing,
            &t.claims(&claims_at(now())).unwrap(),
            Some(&t.footer),
            None,
        )
        .unwrap();
        assert!(t.verify(&forged).is_err());
    }

    #[test]
    fn rotated_key_verifies_until_removed() {
        let (old, new) = (key(), key());
        let before = tokens(std::slice::from_ref(&old));
        let old_token = before.issue(&claims_at(now())).unwrap();

        let rotated = tokens(&[new.clone(), old.clone()]);
        assert_ne!(rotated.signing_key_id(), before.signing_key_id());
        assert!(rotated.verify(&old_token).is_ok());
        let new_token = rotated.issue(&claims_at(now())).unwrap();
        assert!(rotated.verify(&new_token).is_ok());
        // A node still on the old list does not know the new key.
        assert!(before.verify(&new_token).is_err());

        let after = tokens(&[new]);
        assert!(after.verify(&old_token).is_err());
        assert!(after.verify(&new_token).is_ok());
    }

    #[test]
    fn tampered_token_is_invalid() {
        let t = tokens(&[key()]);
        let token = t.issue(&claims_at(now())).unwrap();
        let mut bytes = token.into_bytes();
        let i = "v4.public.".len() + 10;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(t.verify(&tampered).is_err());
    }

    #[test]
    fn tampered_footer_is_invalid() {
        let (a, b) = (key(), key());
        let t = tokens(&[a, b]);
        let token = t.issue(&claims_at(now())).unwrap();
        // Swap the footer for one naming the other ring key: the signature covers the footer.
        let mut other_footer = Footer::new();
        other_footer.key_id(&Id::from(&t.ring[1].public));
        let (head, _) = token.rsplit_once('.').unwrap();
        let swapped = format!(
            "{head}.{}",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                other_footer.to_string().unwrap()
            )
        );
        assert!(t.verify(&swapped).is_err());
    }

    #[test]
    fn refresh_token_is_not_an_access_token() {
        let t = tokens(&[key()]);
        let (refresh, _) = OpaqueTokens.generate().unwrap();
        assert!(t.verify(&refresh).is_err());
    }

    #[test]
    fn other_typ_is_invalid() {
        let t = tokens(&[key()]);
        let mut claims = t.claims(&claims_at(now())).unwrap();
        claims.add_additional("typ", "refresh").unwrap();
        let token = public::sign(&t.signing, &claims, Some(&t.footer), None).unwrap();
        assert!(t.verify(&token).is_err());

        claims.remove_claim("typ");
        let token = public::sign(&t.signing, &claims, Some(&t.footer), None).unwrap();
        assert!(t.verify(&token).is_err());

        // The same claims with the right `typ` pass: the failures above were about `typ`.
        claims.add_additional("typ", TYP_ACCESS).unwrap();
        let token = public::sign(&t.signing, &claims, Some(&t.footer), None).unwrap();
        assert!(t.verify(&token).is_ok());
    }

    #[test]
    fn bad_subject_or_session_is_invalid() {
        let t = tokens(&[key()]);
        let mut claims = t.claims(&claims_at(now())).unwrap();
        claims.subject("not-a-uuid").unwrap();
        let token = public::sign(&t.signing, &claims, Some(&t.footer), None).unwrap();
        assert!(t.verify(&token).is_err());

        let mut claims = t.claims(&claims_at(now())).unwrap();
        claims.add_additional("sid", "not-a-uuid").unwrap();
        let token = public::sign(&t.signing, &claims, Some(&t.footer), None).unwrap();
        assert!(t.verify(&token).is_err());
    }

    #[test]
    fn token_without_footer_is_invalid() {
        let t = tokens(&[key()]);
        let claims = t.claims(&claims_at(now())).unwrap();
        let token = public::sign(&t.signing, &claims, None, None).unwrap();
        assert!(t.verify(&token).is_err());
    }

    #[test]
    fn garbage_is_invalid() {
        let t = tokens(&[key()]);
        let long_valid_b64 = format!("v4.public.{}", "A".repeat(10 * 1024));
        for s in [
            "",
            "v4.public.",
            "v4.public..",
            "v4.local.AAAA",
            "v2.public.AAAA",
            "not a token",
            "v4.public.AAAA.AAAA",
            &"x".repeat(10 * 1024),
            &long_valid_b64,
        ] {
            assert!(t.verify(s).is_err(), "{:?}", &s[..s.len().min(40)]);
        }
    }

    #[test]
    fn construction_errors_are_clear_and_do_not_echo_keys() {
        let err = PasetoTokens::new(&[], ISS, AUD, TTL).unwrap_err();
        assert!(format!("{err:#}").contains("empty"), "{err:#}");

        let good = key();
        let mut broken = good.clone();
        broken.truncate(good.len() - 4);
        broken.push_str("AAAA");
        for bad in [
            broken,
            "k4.secret.AAAA".to_owned(),
            "hunter2hunter2".to_owned(),
        ] {
            let err = PasetoTokens::new(&[good.clone(), bad.clone()], ISS, AUD, TTL).unwrap_err();
            let msg = format!("{err:#} {err:?}");
            assert!(msg.contains("#2"), "{msg}");
            assert!(!msg.contains(&bad), "the error echoes the key: {msg}");
            assert!(!msg.contains(&good), "the error echoes the key: {msg}");
        }

        let public = t_public(&good);
        let err = PasetoTokens::new(&[public], ISS, AUD, TTL).unwrap_err();
        assert!(format!("{err:#}").contains("public key"), "{err:#}");

        assert!(PasetoTokens::new(&[good.clone(), good.clone()], ISS, AUD, TTL).is_err());
        assert!(PasetoTokens::new(std::slice::from_ref(&good), "", AUD, TTL).is_err());
        assert!(PasetoTokens::new(std::slice::from_ref(&good), ISS, AUD, Duration::ZERO).is_err());
    }

    fn t_public(secret: &str) -> String {
        tokens(&[secret.to_owned()])
            .public_keys()
            .unwrap()
            .remove(0)
    }

    #[test]
    fn generated_keys_are_paserk_secrets_and_distinct() {
        let (a, b) = (key(), key());
        assert!(a.starts_with("k4.secret."));
        assert_ne!(a, b);
        assert!(t_public(&a).starts_with("k4.public."));
        let debug = format!("{:?}", tokens(std::slice::from_ref(&a)));
        assert!(!debug.contains(&a["k4.secret.".len()..]), "{debug}");
    }
}
