//! Ports of the identity domain.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use kernel::{Page, PageRequest, UserId};
use time::OffsetDateTime;

use crate::model::{DisplayName, EmailAddress, NewUser, Password, Profile, User};

kernel::define_id!(
    /// A login session: the family of refresh tokens descended from one login.
    SessionId
);

/// Failures of [`UserRepository`].
#[derive(Debug, thiserror::Error)]
pub enum UserRepoError {
    /// Another account has this email.
    #[error("the email is taken")]
    EmailTaken,
    /// No such account.
    #[error("no such user")]
    NotFound,
    /// A malformed request (a cursor not made by this list).
    #[error(transparent)]
    Invalid(#[from] kernel::InvalidInput),
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores accounts. Emails are unique (they arrive normalized).
///
/// Contract (`testkit::contract::users`): `create` refuses a taken email with `EmailTaken`;
/// lookups of unknown ids or emails answer `Ok(None)`; updates of unknown ids answer
/// `NotFound`; what is read back equals what was written.
///
/// # Errors
/// [`UserRepoError::Unknown`] when storage fails.
#[async_trait]
pub trait UserRepository: Send + Sync + Debug {
    /// Creates an account (fresh v7 id, not an admin, enabled).
    async fn create(&self, new: NewUser, now: OffsetDateTime) -> Result<User, UserRepoError>;
    /// The account with this id.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, UserRepoError>;
    /// The account with this (normalized) email.
    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<User>, UserRepoError>;
    /// Replaces the password hash (a re-hash at login, a password change).
    async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), UserRepoError>;

    /// Replaces the display name and profile fields.
    async fn update_profile(
        &self,
        id: UserId,
        name: DisplayName,
        profile: Profile,
    ) -> Result<User, UserRepoError>;

    /// The preferences document (a JSON object as text), if any was stored.
    async fn preferences(&self, id: UserId) -> Result<Option<String>, UserRepoError>;

    /// Replaces the preferences document.
    async fn set_preferences(&self, id: UserId, json: &str) -> Result<(), UserRepoError>;

    /// Deletes the account; its sessions and memberships go with it.
    async fn delete(&self, id: UserId) -> Result<(), UserRepoError>;

    /// Accounts whose email contains `query` (all when `None`), by id (platform admin).
    async fn search(
        &self,
        query: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<User>, UserRepoError>;

    /// Disables (`Some(time)`) or enables (`None`) an account.
    async fn set_disabled(
        &self,
        id: UserId,
        at: Option<OffsetDateTime>,
    ) -> Result<(), UserRepoError>;

    /// Grants or takes away the platform-administrator flag.
    async fn set_platform_admin(&self, id: UserId, admin: bool) -> Result<(), UserRepoError>;

    /// Records the first proof of ownership of the account's address: when the email is not
    /// yet verified, sets `email_verified_at` to `now` and, with `remove_password`, removes
    /// the password hash in the same atomic step. Answers `true` only for the call that
    /// verified it (of concurrent calls exactly one); `false` when it already was verified.
    async fn verify_email(
        &self,
        id: UserId,
        remove_password: bool,
        now: OffsetDateTime,
    ) -> Result<bool, UserRepoError>;
}

/// The SHA-256 of an opaque refresh token: only this is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A refresh token to store.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// Its hash.
    pub hash: TokenHash,
    /// The session (family) it belongs to.
    pub session: SessionId,
    /// The account.
    pub user_id: UserId,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// The end of the session's absolute lifetime (rotation does not extend it).
    pub expires_at: OffsetDateTime,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live: it is now spent and `next` is stored in its place.
    Rotated {
        /// The account.
        user_id: UserId,
        /// The session, unchanged.
        session: SessionId,
        /// The session's absolute end.
        expires_at: OffsetDateTime,
    },
    /// The token had already been spent: someone replayed it, so its whole session is now
    /// revoked.
    Reused {
        /// The account.
        user_id: UserId,
        /// The revoked session.
        session: SessionId,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Failures of [`SessionRepository`].
#[derive(Debug, thiserror::Error)]
pub enum SessionRepoError {
    /// Storage failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores refresh tokens by hash, grouped in sessions (families).
///
/// Contract (`testkit::contract::sessions`): `rotate` is atomic: of N concurrent rotations of
/// one live token exactly one answers `Rotated`; presenting a spent token revokes its session
/// (every token of it, including the newest) and answers `Reused`; expired or revoked tokens
/// answer `Invalid`.
///
/// # Errors
/// [`SessionRepoError::Unknown`] when storage fails.
#[async_trait]
pub trait SessionRepository: Send + Sync + Debug {
    /// Stores the first token of a new session.
    async fn start(&self, token: NewRefreshToken) -> Result<(), SessionRepoError>;

    /// Spends `presented` and stores `next` as the session's new token, atomically (same
    /// session, account and absolute end as the presented token).
    async fn rotate(
        &self,
        presented: &TokenHash,
        next: TokenHash,
        now: OffsetDateTime,
    ) -> Result<Rotation, SessionRepoError>;

    /// Revokes the session `token` belongs to (logout). Unknown tokens are ignored.
    async fn revoke_by_token(
        &self,
        token: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError>;

    /// Revokes every session of `user_id` (password change, disable, delete).
    async fn revoke_all(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError>;

    /// Revokes every session of `user_id` except `keep` (a password change keeps the session
    /// that made it).
    async fn revoke_others(
        &self,
        user_id: UserId,
        keep: SessionId,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError>;

    /// True while `session` is neither revoked nor past its absolute end: access tokens of a
    /// revoked session stop working at once.
    async fn is_active(
        &self,
        session: SessionId,
        now: OffsetDateTime,
    ) -> Result<bool, SessionRepoError>;
}

/// A password check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Wrong password.
    Mismatch,
    /// Right password; `rehash` when the stored hash uses weaker settings than today's.
    Match {
        /// Re-hash with the current settings and store.
        rehash: bool,
    },
}

/// Failures of [`PasswordHasher`].
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes are running; try again shortly.
    #[error("too many password checks are running")]
    Busy,
    /// The stored hash is not a valid PHC string, or hashing failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Hashes passwords (argon2id in production). Implementations bound how many hashes run at
/// once, so a flood of logins cannot exhaust memory.
///
/// # Errors
/// [`HashError::Busy`] when the bound is reached and does not free up in time.
#[async_trait]
pub trait PasswordHasher: Send + Sync + Debug {
    /// A PHC string for `password`, with a fresh salt.
    async fn hash(&self, password: &Password) -> Result<String, HashError>;
    /// Checks `password` against a PHC string.
    async fn verify(&self, password: &Password, phc: &str) -> Result<Verification, HashError>;
}

/// The verified content of an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessClaims {
    /// The account.
    pub user_id: UserId,
    /// The login session it was issued for.
    pub session: SessionId,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
}

/// Why an access token was refused. One variant on purpose: the client learns nothing about
/// which check failed.
#[derive(Debug, thiserror::Error)]
#[error("invalid access token")]
pub struct InvalidToken;

/// Signs and verifies short-lived access tokens.
pub trait AccessTokens: Send + Sync + Debug {
    /// A token for `claims`, valid from `claims.issued_at` for [`AccessTokens::ttl`].
    ///
    /// # Errors
    /// When signing fails (a broken key).
    fn issue(&self, claims: &AccessClaims) -> anyhow::Result<String>;
    /// Verifies signature, key id, type, issuer, audience and validity times.
    ///
    /// # Errors
    /// [`InvalidToken`] for any failure.
    fn verify(&self, token: &str) -> Result<AccessClaims, InvalidToken>;
    /// How long a token lives.
    fn ttl(&self) -> Duration;
}

/// Makes opaque refresh tokens (≥ 128 random bits) and hashes presented ones.
pub trait RefreshTokens: Send + Sync + Debug {
    /// A new token and its hash.
    ///
    /// # Errors
    /// When the system's random source fails.
    fn generate(&self) -> anyhow::Result<(String, TokenHash)>;
    /// The hash of a presented token.
    fn hash(&self, token: &str) -> TokenHash;
}

/// Stores password-reset tokens by hash.
///
/// Contract: a token is spent by exactly one `consume`, also under concurrency; expired or
/// spent tokens answer `None`.
///
/// # Errors
/// [`SessionRepoError::Unknown`] when storage fails.
#[async_trait]
pub trait PasswordResets: Send + Sync + Debug {
    /// Stores a token for `user`, valid until `expires_at`.
    async fn create(
        &self,
        hash: TokenHash,
        user: UserId,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), SessionRepoError>;

    /// Spends a live token and answers its account.
    async fn consume(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, SessionRepoError>;
}
