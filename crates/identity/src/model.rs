//! Validated identity types.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use kernel::{InvalidInput, UserId};
use time::OffsetDateTime;

/// Longest address accepted (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

/// An email address, normalized: trimmed and lower-cased, so `Ann@Example.com` and
/// `ann@example.com` are one account.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Validates and normalizes an address.
    ///
    /// # Errors
    /// [`InvalidInput`] on `email`.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let err = |m: &str| InvalidInput::field("email", m);
        let s = s.trim().to_lowercase();
        if s.is_empty() {
            return Err(err("is required"));
        }
        if s.len() > MAX_EMAIL_LEN {
            return Err(err("must be at most 254 characters"));
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(err("must not contain spaces or control characters"));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(err("is not an email address"));
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(err("is not an email address"));
        }
        Ok(Self(s))
    }

    /// The normalized address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: keep it out of debug logs beyond the domain.
        let domain = self.0.rsplit_once('@').map_or("", |(_, d)| d);
        write!(f, "EmailAddress(…@{domain})")
    }
}

/// The shipped list of common passwords (`data/common-passwords.txt`), lower-cased.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
});

/// The password rules, in the spirit of NIST SP 800-63B: a minimum length, a generous maximum,
/// no composition rules, no truncation, and no password from the common list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters.
    pub min_chars: usize,
    /// Most characters (long enough for passphrases; bounds the hashing cost).
    pub max_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 8,
            max_chars: 128,
        }
    }
}

/// A password that passed the policy. Never printed.
#[derive(Clone)]
pub struct Password(Arc<str>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// Checks a new password against `policy`. `field` names it in errors (`password`,
    /// `new_password`). Characters are counted as Unicode scalar values; nothing is trimmed or
    /// truncated.
    ///
    /// # Errors
    /// [`InvalidInput`] on `field`.
    pub fn new(s: &str, policy: &PasswordPolicy, field: &str) -> Result<Self, InvalidInput> {
        let n = s.chars().count();
        if n < policy.min_chars {
            return Err(InvalidInput::field(
                field,
                format!("must be at least {} characters", policy.min_chars),
            ));
        }
        if n > policy.max_chars {
            return Err(InvalidInput::field(
                field,
                format!("must be at most {} characters", policy.max_chars),
            ));
        }
        if COMMON.contains(s.to_lowercase().as_str()) {
            return Err(InvalidInput::field(
                field,
                "is one of the most common passwords; choose another",
            ));
        }
        Ok(Self(Arc::from(s)))
    }

    /// A password as typed at login: not checked against the policy (an old password may
    /// predate it), only bounded so hashing cost stays bounded.
    ///
    /// # Errors
    /// [`InvalidInput`] on `password` when empty or longer than 1,024 bytes.
    pub fn attempt(s: &str) -> Result<Self, InvalidInput> {
        if s.is_empty() || s.len() > 1024 {
            return Err(InvalidInput::field(
                "password",
                "is required (at most 1,024 bytes)",
            ));
        }
        Ok(Self(Arc::from(s)))
    }

    /// The password, for the hasher only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A person's display name: 1–100 characters after trimming, no control characters, its
/// invisible characters removed ([`kernel::text::clean_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates and trims a name; `field` names it in errors.
    ///
    /// # Errors
    /// [`InvalidInput`] on `field`.
    pub fn parse(s: &str, field: &str) -> Result<Self, InvalidInput> {
        let cleaned = kernel::text::clean_name(s);
        let t = cleaned.as_str();
        if t.is_empty() {
            return Err(InvalidInput::field(field, "must not be empty"));
        }
        if t.chars().count() > 100 {
            return Err(InvalidInput::field(field, "must be at most 100 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(InvalidInput::field(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Self(t.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The optional profile fields of an account, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// An `http(s)` URL of at most 2,048 characters.
    pub avatar_url: Option<String>,
    /// A BCP 47 language tag (`en`, `fa-IR`).
    pub locale: Option<String>,
    /// An IANA time-zone name (`Europe/Berlin`, `UTC`).
    pub timezone: Option<String>,
}

impl Profile {
    /// Checks an avatar URL.
    ///
    /// # Errors
    /// [`InvalidInput`] on `avatar_url`.
    pub fn avatar_url(s: &str) -> Result<String, InvalidInput> {
        let ok = s.len() <= 2048
            && (s.starts_with("https://") || s.starts_with("http://"))
            && s.len() > "https://".len()
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        ok.then(|| s.to_owned()).ok_or_else(|| {
            InvalidInput::field(
                "avatar_url",
                "must be an http(s) URL of at most 2,048 characters",
            )
        })
    }

    /// Checks a BCP 47 language tag (form only).
    ///
    /// # Errors
    /// [`InvalidInput`] on `locale`.
    pub fn locale(s: &str) -> Result<String, InvalidInput> {
        let mut parts = s.split('-');
        let primary_ok = parts.next().is_some_and(|p| {
            (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic())
        });
        let rest_ok = parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        (s.len() <= 35 && primary_ok && rest_ok)
            .then(|| s.to_owned())
            .ok_or_else(|| {
                InvalidInput::field("locale", "must be a language tag such as en or fa-IR")
            })
    }

    /// Checks an IANA time-zone name (form only).
    ///
    /// # Errors
    /// [`InvalidInput`] on `timezone`.
    pub fn timezone(s: &str) -> Result<String, InvalidInput> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.split('/').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
            })
            && s.as_bytes()[0].is_ascii_alphabetic();
        ok.then(|| s.to_owned()).ok_or_else(|| {
            InvalidInput::field("timezone", "must be a time-zone name such as Europe/Berlin")
        })
    }
}

/// The largest preferences document, serialized.
pub const MAX_PREFERENCES_BYTES: usize = 16 * 1024;

/// What registration stores.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The normalized email.
    pub email: EmailAddress,
    /// The display name.
    pub name: DisplayName,
    /// The PHC string of the password hash (`None` for accounts made by email-code login).
    pub password_hash: Option<String>,
    /// Set when the account is made by a proof of the address (an emailed code, the
    /// administrator command); `None` for registration with a password.
    pub email_verified_at: Option<OffsetDateTime>,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The normalized email.
    pub email: EmailAddress,
    /// The display name.
    pub name: DisplayName,
    /// The PHC string of the password hash, if the account has a password.
    pub password_hash: Option<String>,
    /// A platform administrator (uses `/api/v1/admin`).
    pub is_platform_admin: bool,
    /// Set while the account is disabled.
    pub disabled_at: Option<OffsetDateTime>,
    /// When the owner of the address first proved it is theirs (used a mailed code or reset
    /// token); `None` until then. See `docs/security.md`, "Email ownership".
    pub email_verified_at: Option<OffsetDateTime>,
    /// Optional profile fields.
    pub profile: Profile,
    /// When the account was made.
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized() {
        let e = EmailAddress::parse("  Ann.Lee+quire@Example.COM ").expect("valid");
        assert_eq!(e.as_str(), "ann.lee+quire@example.com");
        assert_eq!(
            e,
            EmailAddress::parse("ann.lee+quire@example.com").expect("valid")
        );
        assert!(
            !format!("{e:?}").contains("ann.lee"),
            "debug output hides the local part"
        );
    }

    #[test]
    fn bad_emails_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "ann@@example.com",
            "a b@example.com",
            "ann@exa mple.com",
            "ann@.example.com",
            "ann@example..com",
            "ann@-x.com",
            "ann\n@x.com",
            &long,
        ] {
            let e = EmailAddress::parse(bad).expect_err(bad);
            assert_eq!(e.0[0].field, "email");
        }
    }

    #[test]
    fn password_policy() {
        let p = PasswordPolicy::default();
        assert!(Password::new("correct horse battery staple", &p, "password").is_ok());
        assert!(
            Password::new("ünïcödé✓✓", &p, "password").is_ok(),
            "8+ chars, not bytes"
        );
        let long_ok = "x".repeat(64) + "y".repeat(64).as_str();
        assert!(
            Password::new(&long_ok, &p, "password").is_ok(),
            "128 characters pass"
        );
        for (bad, why) in [
            ("short", "at least 8"),
            ("password", "common"),
            ("PassWord1", "common"),
            ("qwertyuiop", "common"),
            (&"z".repeat(129), "at most 128"),
        ] {
            let e = Password::new(bad, &p, "new_password").expect_err(bad);
            assert_eq!(e.0[0].field, "new_password");
            assert!(e.0[0].message.contains(why), "{bad}: {}", e.0[0].message);
        }
        assert!(!format!("{:?}", Password::attempt("hunter2").expect("ok")).contains("hunter2"));
    }

    #[test]
    fn the_common_list_is_loaded() {
        assert_eq!(COMMON.len(), 10_000);
        assert!(COMMON.contains("123456") && COMMON.contains("iloveyou"));
    }

    #[test]
    fn names() {
        assert_eq!(
            DisplayName::parse("  Ann  ", "name").map(|n| n.as_str().to_owned()),
            Ok("Ann".into())
        );
        assert!(DisplayName::parse(" ", "name").is_err());
        assert!(DisplayName::parse("a\u{7}", "name").is_err());
        assert!(DisplayName::parse(&"n".repeat(101), "name").is_err());
    }
}
