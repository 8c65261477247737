//! The account use cases.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kernel::audit::{self, AuditEvent, AuditLog};
use kernel::{ClientInfo, Clock, FieldError, InvalidInput};

use crate::model::{
    DisplayName, EmailAddress, MAX_PREFERENCES_BYTES, NewUser, Password, PasswordPolicy, Profile,
    User,
};
use crate::ports::{
    AccessClaims, AccessTokens, HashError, NewRefreshToken, PasswordHasher, RefreshTokens,
    Rotation, SessionId, SessionRepoError, SessionRepository, UserRepoError, UserRepository,
    Verification,
};
use crate::throttle::MailPurpose;

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
    /// the account is enabled.
    ///
    /// # Errors
    /// `InvalidToken` otherwise.
    pub async fn authenticate(&self, access_token: &str) -> Result<(User, SessionId), AuthError> {
        let claims = self
            .ports
            .access
            .verify(access_token)
            .map_err(|_| AuthError::InvalidToken)?;
        let now = self.ports.clock.now();
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
        Ok((user, claims.session))
    }

    /// When `access_token` stops verifying (its issue time plus the tokens' lifetime), or
    /// `None` when it does not verify now. Long-lived connections close at this time.
    #[must_use]
    pub fn access_expires_at(&self, access_token: &str) -> Option<time::OffsetDateTime> {
        let claims = self.ports.access.verify(access_token).ok()?;
        Some(claims.issued_at + self.ports.access.ttl())
    }

    /// Changes the password after checking the current one; every other session of the
    /// account ends (the one making the change stays signed in).
    ///
    /// # Errors
    /// `Invalid` on `current_password` (wrong, counted by the throttle) or `new_password`
    /// (policy); `Throttled`.
    pub async fn change_password(
        &self,
        user: &User,
        session: SessionId,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let throttle = &self.ports.throttle;
        let ip = client.ip.as_str();
        if let Err(r) = throttle.check_account(&user.email, ip).await? {
            return Err(self
                .throttled(r.0, Some(user.email.as_str().to_owned()), client)
                .await);
        }
        let new = Password::new(new, &self.policy, "new_password")?;
        let current = Password::attempt(current)
            .map_err(|_| InvalidInput::field("current_password", "is required"))?;
        let matches = match &user.password_hash {
            Some(phc) => matches!(
                self.ports.hasher.verify(&current, phc).await?,
                Verification::Match { .. }
            ),
            None => false,
        };
        if !matches {
            throttle.failed(&user.email, ip).await?;
            return Err(
                InvalidInput::field("current_password", "is not your current password").into(),
            );
        }
        let phc = self.ports.hasher.hash(&new).await?;
        self.ports.users.set_password_hash(user.id, &phc).await?;
        self.ports
            .sessions
            .revoke_others(user.id, session, self.ports.clock.now())
            .await?;
        self.audit("auth.password.changed", Some(user.id), None, client)
            .await;
        Ok(())
    }

    /// Starts a password reset: if `email` names an enabled account with a password, a
    /// single-use token valid 30 minutes goes to it by mail. Answers the same in every case
    /// (nobody learns whether the email is registered); within the reset mail budget
    /// ([`crate::throttle::LoginThrottle::mail`]). Using the token proves the address.
    ///
    /// # Errors
    /// `Invalid` email; `Throttled` per client address.
    pub async fn forgot_password(&self, email: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let email = EmailAddress::parse(email)?;
        let user = self
            .ports
            .users
            .find_by_email(&email)
            .await?
            .filter(|u| u.disabled_at.is_none());
        self.audit(
            "auth.password.reset_requested",
            user.as_ref().map(|u| u.id),
            Some(email.as_str().to_owned()),
            client,
        )
        .await;
        let Some(user) = user else {
            return Ok(());
        };
        if !self
            .ports
            .throttle
            .mail(MailPurpose::Reset, &email, &client.ip)
            .await?
        {
            tracing::warn!("reset mail not sent: an hourly limit for this address is reached");
            return Ok(());
        }
        let (token, hash) = self.ports.refresh.generate()?;
        let now = self.ports.clock.now();
        self.ports
            .resets
            .create(
                hash,
                user.id,
                now,
                now + std::time::Duration::from_secs(30 * 60),
            )
            .await?;
        let mail = kernel::mail::Mail {
            to: email.as_str().to_owned(),
            subject: "Reset your Quire password".to_owned(),
            body: format!(
                "Someone asked to reset the password of your Quire account.\n\n\
                 Your reset token (valid 30 minutes, usable once):\n\n{token}\n\n\
                 If it was not you, ignore this mail: your password stays as it is.\n"
            ),
        };
        if let Err(e) = self.ports.mailer.send(mail).await {
            // Same answer either way; the failure is for the operators.
            tracing::error!(error = %e, "sending a reset mail failed");
        }
        Ok(())
    }

    /// Sends a 6-digit sign-in code to `email`, valid 10 minutes, single use, at most 5
    /// attempts per requester. Answers the same whatever the email (a first successful code
    /// creates the account); within the sign-in code mail budget
    /// ([`crate::throttle::LoginThrottle::mail`]). Nothing of the code is logged.
    ///
    /// # Errors
    /// `Invalid` email; `Throttled` per client address.
    pub async fn request_code(&self, email: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let email = EmailAddress::parse(email)?;
        self.audit(
            "auth.code.requested",
            None,
            Some(email.as_str().to_owned()),
            client,
        )
        .await;
        self.send_code(&email, MailPurpose::Code, client, |code| kernel::mail::Mail {
            to: email.as_str().to_owned(),
            // Never the code in the subject: subjects show in notifications and logs.
            subject: "Your Quire sign-in code".to_owned(),
            body: format!(
                "Your Quire sign-in code is {code}.\n\nIt is valid for 10 minutes and works once. \
                 If you did not ask for it, ignore this mail.\n"
            ),
        })
        .await
    }

    /// Makes a 6-digit code for `email`, stores its hash (replacing any earlier code) and
    /// mails what `mail` makes of it, within the mail budget of `purpose`.
    async fn send_code(
        &self,
        email: &EmailAddress,
        purpose: MailPurpose,
        client: &ClientInfo,
        mail: impl FnOnce(&str) -> kernel::mail::Mail,
    ) -> Result<(), AuthError> {
        if !self.ports.throttle.mail(purpose, email, &client.ip).await? {
            tracing::warn!(
                ?purpose,
                "code mail not sent: an hourly limit for this address is reached"
            );
            return Ok(());
        }
        // Six digits from 64 random bits (the modulo bias is below 1e-13); the code's id (it
        // keys the attempt counters) from other random bits.
        let (_, random) = self.ports.refresh.generate()?;
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&random.0[..8]);
        let code = format!("{:06}", u64::from_le_bytes(eight) % 1_000_000);
        let id: String = random.0[8..16].iter().map(|b| format!("{b:02x}")).collect();
        self.ports
            .throttle
            .store_code(email, &id, &self.code_hash(email, &code), CODE_TTL)
            .await?;
        if let Err(e) = self.ports.mailer.send(mail(&code)).await {
            tracing::error!(error = %e, "sending a code mail failed");
        }
        Ok(())
    }

    /// Signs in with an emailed code, creating the account on its first sign-in. On an account
    /// whose address was not proven yet, this is the first proof: the password set before it
    /// is removed and every session ends (see `docs/security.md`, "Email ownership").
    ///
    /// # Errors
    /// `BadCredentials` for a wrong, used or expired code, and for attempts past the limits
    /// ([`crate::throttle::LoginThrottle::take_code`]); `Invalid` email.
    pub async fn verify_code(
        &self,
        email: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(User, TokenPair), AuthError> {
        let email = EmailAddress::parse(email)?;
        if !self.take_code(&email, code, client).await? {
            return Err(self.code_failed(&email, client).await);
        }
        let user = match self.ports.users.find_by_email(&email).await? {
            Some(u) if u.disabled_at.is_some() => {
                return Err(self.code_failed(&email, client).await);
            }
            Some(u) => {
                // The first proof of the address wins the account from whoever registered it:
                // a password set before it is removed and every session ends.
                self.proved_ownership(&u, true, client).await?;
                u
            }
            None => {
                let local = email.as_str().split('@').next().unwrap_or("user");
                let name = DisplayName::parse(local, "name")
                    .or_else(|_| DisplayName::parse("Quire user", "name"))?;
                self.ports
                    .users
                    .create(
                        NewUser {
                            email: email.clone(),
                            name,
                            password_hash: None,
                            email_verified_at: Some(self.ports.clock.now()),
                        },
                        self.ports.clock.now(),
                    )
                    .await?
            }
        };
        let tokens = self.start_session(&user).await?;
        self.audit(
            "auth.login.succeeded",
            Some(user.id),
            Some("email code".to_owned()),
            client,
        )
        .await;
        Ok((user, tokens))
    }

    /// Confirms the signed-in `user`'s address with a code mailed to it (at registration, or
    /// by `request_code`). The password stays: whoever holds this session knows it and has
    /// the mailbox. Already verified: nothing to do (the code is not spent).
    ///
    /// # Errors
    /// `Invalid` on `code` (wrong, used or expired; attempts are limited as for sign-in).
    pub async fn confirm_email(
        &self,
        user: &User,
        code: &str,
        client: &ClientInfo,
    ) -> Result<User, AuthError> {
        if user.email_verified_at.is_some() {
            return Ok(user.clone());
        }
        if !self.take_code(&user.email, code, client).await? {
            self.audit(
                "auth.code.failed",
                Some(user.id),
                Some("email confirmation".to_owned()),
                client,
            )
            .await;
            return Err(InvalidInput::field("code", "is wrong, used or expired").into());
        }
        self.proved_ownership(user, false, client).await?;
        self.admin_get(user.id).await
    }

    /// Checks a presented code for `email` from this client.
    async fn take_code(
        &self,
        email: &EmailAddress,
        code: &str,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        let code = code.trim();
        if code.is_empty() || code.len() > 32 {
            return Ok(false);
        }
        let hash = self.code_hash(email, code);
        Ok(self
            .ports
            .throttle
            .take_code(email, &client.ip, &hash, CODE_TTL)
            .await?)
    }

    /// Records a proof that the owner of `user`'s address acts (a mailed code or reset token
    /// used). The first proof verifies the address; with `takeover` (a proof that did not
    /// come from a session of the account, and sets no password) it also removes the
    /// password set before it and ends every session: whoever registered the address
    /// without owning it loses the account.
    async fn proved_ownership(
        &self,
        user: &User,
        takeover: bool,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        if user.email_verified_at.is_some() {
            return Ok(());
        }
        let now = self.ports.clock.now();
        let remove_password = takeover && user.password_hash.is_some();
        if !self
            .ports
            .users
            .verify_email(user.id, remove_password, now)
            .await?
        {
            return Ok(());
        }
        if takeover {
            self.ports.sessions.revoke_all(user.id, now).await?;
        }
        let what = if remove_password {
            "first proof of the address: the earlier password and every session were removed"
        } else {
            "first proof of the address"
        };
        self.audit(
            "auth.email.verified",
            Some(user.id),
            Some(what.to_owned()),
            client,
        )
        .await;
        Ok(())
    }

    async fn code_failed(&self, email: &EmailAddress, client: &ClientInfo) -> AuthError {
        self.audit(
            "auth.code.failed",
            None,
            Some(email.as_str().to_owned()),
            client,
        )
        .await;
        AuthError::BadCredentials
    }

    /// The stored form of a code: bound to the email, never the code itself.
    fn code_hash(&self, email: &EmailAddress, code: &str) -> String {
        let h = self
            .ports
            .refresh
            .hash(&format!("login-code:{}:{code}", email.as_str()));
        h.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sets a new password with a reset token: the token is spent, and every session of the
    /// account ends.
    ///
    /// # Errors
    /// `Invalid` on `token` (unknown, spent or expired) or `new_password` (policy);
    /// `Throttled` per client address.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let new = Password::new(new_password, &self.policy, "new_password")?;
        let invalid =
            || AuthError::from(InvalidInput::field("token", "is invalid, used or expired"));
        if token.is_empty() || token.len() > 512 {
            return Err(invalid());
        }
        let now = self.ports.clock.now();
        let user_id = self
            .ports
            .resets
            .consume(&self.ports.refresh.hash(token), now)
            .await?
            .ok_or_else(invalid)?;
        let phc = self.ports.hasher.hash(&new).await?;
        self.ports.users.set_password_hash(user_id, &phc).await?;
        // A used reset token proves the address; the password is the one just set, and
        // every session ends anyway.
        if self.ports.users.verify_email(user_id, false, now).await? {
            self.audit(
                "auth.email.verified",
                Some(user_id),
                Some("first proof of the address (a password reset)".to_owned()),
                client,
            )
            .await;
        }
        self.ports.sessions.revoke_all(user_id, now).await?;
        self.audit("auth.password.reset", Some(user_id), None, client)
            .await;
        Ok(())
    }

    /// Replaces the display name and profile fields (already validated by the caller with
    /// [`DisplayName::parse`] and the [`Profile`] checks).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn update_profile(
        &self,
        user: &User,
        name: DisplayName,
        profile: Profile,
    ) -> Result<User, AuthError> {
        Ok(self
            .ports
            .users
            .update_profile(user.id, name, profile)
            .await?)
    }

    /// The preferences document (`{}` when none was stored).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn preferences(&self, user: &User) -> Result<String, AuthError> {
        Ok(self
            .ports
            .users
            .preferences(user.id)
            .await?
            .unwrap_or_else(|| "{}".to_owned()))
    }

    /// Replaces the preferences document (a JSON object as text, checked by the caller).
    ///
    /// # Errors
    /// `Invalid` when larger than 16 KiB.
    pub async fn set_preferences(&self, user: &User, json: &str) -> Result<(), AuthError> {
        if json.len() > MAX_PREFERENCES_BYTES {
            return Err(InvalidInput::field("body", "must be at most 16 KiB").into());
        }
        Ok(self.ports.users.set_preferences(user.id, json).await?)
    }

    /// Deletes the account and ends all its sessions. Organization rules (an only owner with
    /// other members may not leave) are checked by the caller first.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn delete_account(&self, user: &User, client: &ClientInfo) -> Result<(), AuthError> {
        self.ports
            .sessions
            .revoke_all(user.id, self.ports.clock.now())
            .await?;
        self.ports.users.delete(user.id).await?;
        self.audit("user.deleted", Some(user.id), None, client)
            .await;
        Ok(())
    }

    /// Accounts whose email contains `query`, by id (platform administrators).
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn admin_search(
        &self,
        query: Option<&str>,
        page: &kernel::PageRequest,
    ) -> Result<kernel::Page<User>, AuthError> {
        Ok(self.ports.users.search(query, page).await?)
    }

    /// One account (platform administrators).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn admin_get(&self, id: kernel::UserId) -> Result<User, AuthError> {
        self.ports
            .users
            .find_by_id(id)
            .await?
            .ok_or(AuthError::NotFound)
    }

    /// Disables or enables an account and grants or takes away the platform-administrator
    /// flag. Disabling ends every session at once. Administrators cannot do either to
    /// themselves (so the platform cannot lose its last administrator by accident).
    ///
    /// # Errors
    /// `NotFound`; `Invalid` for a change to one's own account.
    pub async fn admin_update(
        &self,
        admin: &User,
        id: kernel::UserId,
        disabled: Option<bool>,
        platform_admin: Option<bool>,
        client: &ClientInfo,
    ) -> Result<User, AuthError> {
        let target = self.admin_get(id).await?;
        if target.id == admin.id && (disabled == Some(true) || platform_admin == Some(false)) {
            return Err(InvalidInput::field(
                if disabled == Some(true) {
                    "disabled"
                } else {
                    "is_platform_admin"
                },
                "administrators cannot disable or demote themselves",
            )
            .into());
        }
        let now = self.ports.clock.now();
        if let Some(d) = disabled {
            self.ports.users.set_disabled(id, d.then_some(now)).await?;
            if d {
                self.ports.sessions.revoke_all(id, now).await?;
            }
        }
        if let Some(a) = platform_admin {
            self.ports.users.set_platform_admin(id, a).await?;
        }
        let change = format!("user {id}: disabled={disabled:?} platform_admin={platform_admin:?}");
        self.audit("admin.user.updated", Some(admin.id), Some(change), client)
            .await;
        self.admin_get(id).await
    }

    /// Makes the account with `email` a platform administrator, creating it (with
    /// `password`) when there is none; `true` when it was created.
    ///
    /// # Errors
    /// `Invalid` email or password.
    pub async fn create_admin(&self, email: &str, password: &str) -> Result<bool, AuthError> {
        let email = EmailAddress::parse(email)?;
        let (user, created) = match self.ports.users.find_by_email(&email).await? {
            Some(u) => (u, false),
            None => {
                let password = Password::new(password, &self.policy, "password")?;
                let phc = self.ports.hasher.hash(&password).await?;
                let name = DisplayName::parse("Administrator", "name")?;
                let user = self
                    .ports
                    .users
                    .create(
                        NewUser {
                            email,
                            name,
                            password_hash: Some(phc),
                            // The operator vouches for the address.
                            email_verified_at: Some(self.ports.clock.now()),
                        },
                        self.ports.clock.now(),
                    )
                    .await?;
                (user, true)
            }
        };
        self.ports.users.set_platform_admin(user.id, true).await?;
        self.audit(
            "admin.user.updated",
            None,
            Some(format!(
                "user {}: platform_admin=Some(true) (command line)",
                user.id
            )),
            &ClientInfo::new("local", Some("quire create-admin")),
        )
        .await;
        Ok(created)
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
