//! What [`Accounts::authenticate`] reuses: the outcome of checking an access token (its
//! signature, its session, its account) is kept for `auth.recheck_ms` per token
//! ([`kernel::memo`]), so a request does not verify a signature and read a session and an
//! account every time. The bound (docs/security.md, "Revocation"): a change made through any
//! server (logout, a revoked session, a disabled or deleted account, a new password) refuses
//! the token on every server within that time; on the server that made it, at once: every
//! write to accounts or sessions made through these use cases forgets what was kept, through
//! the port wrappers below.

use std::sync::Arc;

use async_trait::async_trait;
use kernel::memo::Memo;
use kernel::{Page, PageRequest, UserId};
use time::OffsetDateTime;

use super::Accounts;
use crate::model::{DisplayName, EmailAddress, NewUser, Profile, User};
use crate::ports::{
    NewRefreshToken, Rotation, SessionId, SessionRepoError, SessionRepository, TokenHash,
    UserRepoError, UserRepository,
};

/// How many signed-in tokens one process keeps (an entry is a few hundred bytes).
const CAPACITY: usize = 4_096;

/// A token that checked out: its account, its session and when it stops verifying.
#[derive(Debug, Clone)]
pub(super) struct SignedIn {
    pub(super) user: User,
    pub(super) session: SessionId,
    pub(super) expires_at: OffsetDateTime,
}

/// Access token → what checking it found.
pub(super) type Recent = Arc<Memo<String, SignedIn>>;

impl Accounts {
    /// These use cases reusing a checked access token for `ttl` (0 = check every time, the
    /// default). See the module docs of `identity::service::recent`.
    #[must_use]
    pub fn with_recheck(mut self, ttl: std::time::Duration) -> Self {
        let recent: Recent = Arc::new(Memo::new(ttl, CAPACITY));
        self.ports.users = Arc::new(ForgetfulUsers {
            inner: self.ports.users,
            recent: recent.clone(),
        });
        self.ports.sessions = Arc::new(ForgetfulSessions {
            inner: self.ports.sessions,
            recent: recent.clone(),
        });
        self.recent = recent;
        self
    }
}

/// Accounts storage that forgets every kept check when an account changes.
#[derive(Debug)]
struct ForgetfulUsers {
    inner: Arc<dyn UserRepository>,
    recent: Recent,
}

#[async_trait]
impl UserRepository for ForgetfulUsers {
    async fn create(&self, new: NewUser, now: OffsetDateTime) -> Result<User, UserRepoError> {
        self.inner.create(new, now).await
    }
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, UserRepoError> {
        self.inner.find_by_id(id).await
    }
    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<User>, UserRepoError> {
        self.inner.find_by_email(email).await
    }
    async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), UserRepoError> {
        self.recent
            .forget_all_after(self.inner.set_password_hash(id, phc).await)
    }
    async fn update_profile(
        &self,
        id: UserId,
        name: DisplayName,
        profile: Profile,
    ) -> Result<User, UserRepoError> {
        self.recent
            .forget_all_after(self.inner.update_profile(id, name, profile).await)
    }
    async fn preferences(&self, id: UserId) -> Result<Option<String>, UserRepoError> {
        self.inner.preferences(id).await
    }
    async fn set_preferences(&self, id: UserId, json: &str) -> Result<(), UserRepoError> {
        self.inner.set_preferences(id, json).await
    }
    async fn delete(&self, id: UserId) -> Result<(), UserRepoError> {
        self.recent.forget_all_after(self.inner.delete(id).await)
    }
    async fn search(
        &self,
        query: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<User>, UserRepoError> {
        self.inner.search(query, page).await
    }
    async fn set_disabled(
        &self,
        id: UserId,
        at: Option<OffsetDateTime>,
    ) -> Result<(), UserRepoError> {
        self.recent
            .forget_all_after(self.inner.set_disabled(id, at).await)
    }
    async fn set_platform_admin(&self, id: UserId, admin: bool) -> Result<(), UserRepoError> {
        self.recent
            .forget_all_after(self.inner.set_platform_admin(id, admin).await)
    }
    async fn verify_email(
        &self,
        id: UserId,
        remove_password: bool,
        now: OffsetDateTime,
    ) -> Result<bool, UserRepoError> {
        self.recent
            .forget_all_after(self.inner.verify_email(id, remove_password, now).await)
    }
}

/// Session storage that forgets every kept check when a session may have ended.
#[derive(Debug)]
struct ForgetfulSessions {
    inner: Arc<dyn SessionRepository>,
    recent: Recent,
}

#[async_trait]
impl SessionRepository for ForgetfulSessions {
    async fn start(&self, token: NewRefreshToken) -> Result<(), SessionRepoError> {
        self.inner.start(token).await
    }
    async fn rotate(
        &self,
        presented: &TokenHash,
        next: TokenHash,
        now: OffsetDateTime,
    ) -> Result<Rotation, SessionRepoError> {
        let rotation = self.inner.rotate(presented, next, now).await;
        // A reused token revokes its session; a rotation changes nothing a check reads.
        if matches!(rotation, Ok(Rotation::Rotated { .. })) {
            rotation
        } else {
            self.recent.forget_all_after(rotation)
        }
    }
    async fn revoke_by_token(
        &self,
        token: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        self.recent
            .forget_all_after(self.inner.revoke_by_token(token, now).await)
    }
    async fn revoke_all(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        self.recent
            .forget_all_after(self.inner.revoke_all(user_id, now).await)
    }
    async fn revoke_others(
        &self,
        user_id: UserId,
        keep: SessionId,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        self.recent
            .forget_all_after(self.inner.revoke_others(user_id, keep, now).await)
    }
    async fn is_active(
        &self,
        session: SessionId,
        now: OffsetDateTime,
    ) -> Result<bool, SessionRepoError> {
        self.inner.is_active(session, now).await
    }
}
