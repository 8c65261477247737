//! The account use cases.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kernel::audit::{self, AuditEvent, AuditLog};
use kernel::{ClientInfo, Clock, FieldError, InvalidInput};

use crate::model::{DisplayName, EmailAddress, NewUser, Password, PasswordPolicy, User};
use crate::ports::{
    AccessClaims, AccessTokens, HashError, NewRefreshToken, PasswordHasher, RefreshTokens,
    Rotation, SessionId, SessionRepoError, SessionRepository, UserRepoError, UserRepository,
    Verification,
};
use crate::throttle::MailPurpose;

mod credentials;
mod profile;
mod recent;

/// Tokens handed to a client after login, registration or refresh.
#[derive(Clone)]
pub struct TokenPair {
    /// The PASETO access token.
    pub access_token: String,
    /// The opaque refresh token (shown once; only its hash is stored).
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// What the account use cases can answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Fields failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The email belongs to another account.
    #[error("an account with this email exists")]
    EmailTaken,
    /// Wrong email or password: one answer for both, so nobody learns which emails exist.
    #[error("wrong email or password")]
    BadCredentials,
    /// A token that is invalid, expired, revoked or of a disabled account.
    #[error("invalid or expired token")]
    InvalidToken,
    /// Too many password checks are running; retry shortly.
    #[error("too many sign-ins in progress")]
    Busy,
    /// No such account (administration).
    #[error("no such user")]
    NotFound,
    /// Too many attempts from this address or for this account; retry after the duration.
    #[error("too many attempts")]
    Throttled(std::time::Duration),
    /// Anything else; logged, never shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<UserRepoError> for AuthError {
    fn from(e: UserRepoError) -> Self {
        match e {
            UserRepoError::EmailTaken => AuthError::EmailTaken,
            UserRepoError::NotFound => AuthError::NotFound,
            UserRepoError::Invalid(i) => AuthError::Invalid(i),
            UserRepoError::Unknown(e) => AuthError::Unknown(e),
        }
    }
}

impl From<SessionRepoError> for AuthError {
    fn from(e: SessionRepoError) -> Self {
        match e {
            SessionRepoError::Unknown(e) => AuthError::Unknown(e),
        }
    }
}

impl From<kernel::cache::CacheError> for AuthError {
    fn from(e: kernel::cache::CacheError) -> Self {
        AuthError::Unknown(anyhow::Error::new(e).context("the sign-in throttle"))
    }
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => AuthError::Busy,
            HashError::Unknown(e) => AuthError::Unknown(e),
        }
    }
}

/// The adapters [`Accounts`] works through.
#[derive(Debug, Clone)]
pub struct AccountPorts {
    /// Accounts.
    pub users: Arc<dyn UserRepository>,
    /// Refresh-token sessions.
    pub sessions: Arc<dyn SessionRepository>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access-token signing.
    pub access: Arc<dyn AccessTokens>,
    /// Refresh-token generation.
    pub refresh: Arc<dyn RefreshTokens>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Sign-in throttling.
    pub throttle: crate::throttle::LoginThrottle,
    /// Security events.
    pub audit: Arc<dyn AuditLog>,
    /// Outgoing mail.
    pub mailer: Arc<dyn kernel::mail::Mailer>,
    /// Password-reset tokens.
    pub resets: Arc<dyn crate::ports::PasswordResets>,
}

/// Registration, login, refresh, logout and token authentication.
#[derive(Debug)]
pub struct Accounts {
    ports: AccountPorts,
    policy: PasswordPolicy,
    session_lifetime: Duration,
    /// A hash of a password nobody knows: an unknown email is checked against it, so it costs
    /// the same time as a wrong password.
    dummy_hash: OnceLock<String>,
    /// Access tokens checked lately ([`Accounts::with_recheck`]; off by default).
    recent: recent::Recent,
}

/// How long an emailed sign-in code works.
const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The dummy password (its value does not matter; nobody can log in with it, because it is
/// only ever compared for accounts that do not exist).
const DUMMY: &str = "quire-dummy-password-for-timing";

impl Accounts {
    /// The use cases over `ports`, with `policy` for new passwords and sessions that end
    /// `session_lifetime` after login.
    #[must_use]
    pub fn new(ports: AccountPorts, policy: PasswordPolicy, session_lifetime: Duration) -> Self {
        Self {
            ports,
            policy,
            session_lifetime,
            dummy_hash: OnceLock::new(),
            recent: Arc::new(kernel::memo::Memo::off()),
        }
    }

    /// Computes the dummy hash ahead of the first login (call at start-up).
    ///
    /// # Errors
    /// When hashing fails.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        self.dummy_hash().await.map(|_| ())
    }

    async fn dummy_hash(&self) -> Result<&str, AuthError> {
        if let Some(h) = self.dummy_hash.get() {
            return Ok(h);
        }
        let dummy = Password::attempt(DUMMY)?;
        let hash = self.ports.hasher.hash(&dummy).await?;
        Ok(self.dummy_hash.get_or_init(|| hash))
    }

    /// Creates an account and signs it in.
    ///
    /// # Errors
    /// `Invalid` with every failing field; `EmailTaken`.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: &str,
        client: &ClientInfo,
    ) -> Result<(User, TokenPair), AuthError> {
        let email = EmailAddress::parse(email);
        let password = Password::new(password, &self.policy, "password");
        let name = DisplayName::parse(name, "name");
        let mut errors: Vec<FieldError> = Vec::new();
        for e in [
            email.as_ref().err(),
            password.as_ref().err(),
            name.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            errors.extend(e.0.iter().cloned());
        }
        let (Ok(email), Ok(password), Ok(name)) = (email, password, name) else {
            return Err(AuthError::Invalid(InvalidInput(errors)));
        };
        let phc = self.ports.hasher.hash(&password).await?;
        let user = self
            .ports
            .users
            .create(
                NewUser {
                    email,
                    name,
                    password_hash: Some(phc),
                    email_verified_at: None,
                },
                self.ports.clock.now(),
            )
            .await?;
        let tokens = self.start_session(&user).await?;
        self.audit("auth.registered", Some(user.id), None, client)
            .await;
        // The address is not proven yet: a code goes to it, which the registrant confirms
        // with (`confirm_email`), and which tells a real owner who did not register that
        // someone did (signing in with it removes the password they set).
        self.send_code(&user.email, MailPurpose::Verify, client, |code| {
            kernel::mail::Mail {
                to: user.email.as_str().to_owned(),
                subject: "Confirm your Quire email address".to_owned(),
                body: format!(
                    "A Quire account was created with this email address.\n\n\
                     If it was you, confirm the address with this code (valid 10 minutes, \
                     usable once): {code}\n\n\
                     If it was not you, sign in with this code instead: the account becomes \
                     yours, and the password someone else set is removed.\n"
                ),
            }
        })
        .await?;
        Ok((user, tokens))
    }

    /// Signs in with email and password.
    ///
    /// # Errors
    /// `BadCredentials` for an unknown email, a wrong password, or a disabled account (the
    /// same answer, after the same work); `Invalid` for malformed input; `Busy`.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<(User, TokenPair), AuthError> {
        let throttle = &self.ports.throttle;
        let ip = client.ip.as_str();
        let email = EmailAddress::parse(email)?;
        let password = Password::attempt(password)?;
        // Before any hashing: a throttled account costs the attacker nothing to ask about and
        // the server nothing to answer.
        if let Err(r) = throttle.check_account(&email, ip).await? {
            return Err(self
                .throttled(r.0, Some(email.as_str().to_owned()), client)
                .await);
        }
        let user = self.ports.users.find_by_email(&email).await?;
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let verification = match &stored {
            Some(phc) => self.ports.hasher.verify(&password, phc).await?,
            None => {
                let dummy = self.dummy_hash().await?;
                self.ports.hasher.verify(&password, dummy).await?;
                Verification::Mismatch
            }
        };
        let known = user.as_ref().map(|u| u.id);
        let (Some(user), Verification::Match { rehash }) = (user, verification) else {
            throttle.failed(&email, ip).await?;
            self.audit(
                "auth.login.failed",
                known,
                Some(email.as_str().to_owned()),
                client,
            )
            .await;
            return Err(AuthError::BadCredentials);
        };
        if user.disabled_at.is_some() {
            throttle.failed(&email, ip).await?;
            self.audit(
                "auth.login.failed",
                known,
                Some("disabled account".to_owned()),
                client,
            )
            .await;
            return Err(AuthError::BadCredentials);
        }
        throttle.succeeded(&email, ip).await?;
        if rehash {
            // Best effort: a failed re-hash must not fail the login.
            match self.ports.hasher.hash(&password).await {
                Ok(phc) => {
                    if let Err(e) = self.ports.users.set_password_hash(user.id, &phc).await {
                        tracing::warn!(error = %e, "storing a re-hashed password failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "re-hashing a password failed"),
            }
        }
        let tokens = self.start_session(&user).await?;
        self.audit("auth.login.succeeded", Some(user.id), None, client)
            .await;
        Ok((user, tokens))
    }

    /// Exchanges a refresh token for new tokens. The presented token is spent; presenting it
    /// again revokes the whole session.
    ///
    /// # Errors
    /// `InvalidToken` for an unknown, spent, expired or revoked token, or a disabled account.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, AuthError> {
        if refresh_token.is_empty() || refresh_token.len() > 512 {
            return Err(AuthError::InvalidToken);
        }
        let presented = self.ports.refresh.hash(refresh_token);
        let (next_token, next_hash) = self.ports.refresh.generate()?;
        let now = self.ports.clock.now();
        match self
            .ports
            .sessions
            .rotate(&presented, next_hash, now)
            .await?
        {
            Rotation::Rotated {
                user_id, session, ..
            } => {
                let user = self
                    .ports
                    .users
                    .find_by_id(user_id)
                    .await?
                    .filter(|u| u.disabled_at.is_none());
                let Some(user) = user else {
                    self.ports.sessions.revoke_all(user_id, now).await?;
                    return Err(AuthError::InvalidToken);
                };
                let access_token = self.issue_access(&user, session)?;
                Ok(TokenPair {
                    access_token,
                    refresh_token: next_token,
                    expires_in: self.ports.access.ttl().as_secs(),
                })
            }
            Rotation::Reused { user_id, session } => {
                tracing::warn!(%user_id, %session, "a spent refresh token was presented: session revoked");
                self.audit(
                    "auth.refresh.reused",
                    Some(user_id),
                    Some(format!("session {session}")),
                    client,
                )
                .await;
                Err(AuthError::InvalidToken)
            }
            Rotation::Invalid => Err(AuthError::InvalidToken),
        }
    }

    /// Ends the session of `refresh_token`. Unknown tokens are accepted silently.
    ///
    /// # Errors
    /// Only when storage fails.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        if refresh_token.is_empty() || refresh_token.len() > 512 {
            return Ok(());
        }
        let hash = self.ports.refresh.hash(refresh_token);
        self.ports
            .sessions
            .revoke_by_token(&hash, self.ports.clock.now())
            .await?;
        Ok(())
    }

    /// The account behind an access token, if the token verifies, its session is active and
    /// the account is enabled. With [`Accounts::with_recheck`], what a check found is reused
    /// for that time (never past the token's own expiry).
    ///
    /// # Errors
    /// `InvalidToken` otherwise.
    pub async fn authenticate(&self, access_token: &str) -> Result<(User, SessionId), AuthError> {
        let now = self.ports.clock.now();
        if let Some(known) = self.recent.get(access_token, now)
            && now < known.expires_at
        {
            return Ok((known.user, known.session));
        }
        let ticket = self.recent.ticket(now);
        let claims = self
            .ports
            .access
            .verify(access_token)
            .map_err(|_| AuthError::InvalidToken)?;
        if !self.ports.sessions.is_active(claims.session, now).await? {
            return Err(AuthError::InvalidToken);
        }
        let user = self
            .ports
            .users
            .find_by_id(claims.user_id)
            .await?
            .filter(|u| u.disabled_at.is_none())
            .ok_or(AuthError::InvalidToken)?;
        self.recent.put(
            access_token.to_owned(),
            recent::SignedIn {
                user: user.clone(),
                session: claims.session,
                expires_at: claims.issued_at + self.ports.access.ttl(),
            },
            ticket,
        );
        Ok((user, claims.session))
    }

    /// When `access_token` stops verifying (its issue time plus the tokens' lifetime), or
    /// `None` when it does not verify now. Long-lived connections close at this time.
    #[must_use]
    pub fn access_expires_at(&self, access_token: &str) -> Option<time::OffsetDateTime> {
        let claims = self.ports.access.verify(access_token).ok()?;
        Some(claims.issued_at + self.ports.access.ttl())
    }

    async fn audit(
        &self,
        action: &'static str,
        actor: Option<kernel::UserId>,
        target: Option<String>,
        client: &ClientInfo,
    ) {
        audit::record(
            &*self.ports.audit,
            AuditEvent {
                at: self.ports.clock.now(),
                action,
                actor,
                tenant: None,
                target,
                client: client.clone(),
                access: None,
            },
        )
        .await;
    }

    /// Maps a throttle refusal to the error, recording it.
    async fn throttled(
        &self,
        wait: std::time::Duration,
        target: Option<String>,
        client: &ClientInfo,
    ) -> AuthError {
        self.audit("auth.throttled", None, target, client).await;
        AuthError::Throttled(wait)
    }

    async fn start_session(&self, user: &User) -> Result<TokenPair, AuthError> {
        let (refresh_token, hash) = self.ports.refresh.generate()?;
        let now = self.ports.clock.now();
        let session = SessionId::new();
        self.ports
            .sessions
            .start(NewRefreshToken {
                hash,
                session,
                user_id: user.id,
                created_at: now,
                expires_at: now + self.session_lifetime,
            })
            .await?;
        Ok(TokenPair {
            access_token: self.issue_access(user, session)?,
            refresh_token,
            expires_in: self.ports.access.ttl().as_secs(),
        })
    }

    fn issue_access(&self, user: &User, session: SessionId) -> Result<String, AuthError> {
        Ok(self.ports.access.issue(&AccessClaims {
            user_id: user.id,
            session,
            issued_at: self.ports.clock.now(),
        })?)
    }
}
