//! In-memory identity repositories: users and refresh-token sessions.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use async_trait::async_trait;
use identity::model::{DisplayName, EmailAddress, NewUser, Profile, User};
use identity::ports::{
    NewRefreshToken, Rotation, SessionId, SessionRepoError, SessionRepository, TokenHash,
    UserRepoError, UserRepository,
};
use kernel::{Page, PageRequest, UserId};
use time::OffsetDateTime;

/// Accounts in a map, with their preferences.
#[derive(Debug, Default)]
pub struct InMemoryUsers {
    rows: RwLock<HashMap<UserId, User>>,
    preferences: RwLock<HashMap<UserId, String>>,
}

impl InMemoryUsers {
    /// No accounts.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The email and name of account `id`, if it exists (what the members list shows).
    ///
    /// # Errors
    /// When the lock is poisoned.
    pub fn account_of(&self, id: UserId) -> anyhow::Result<Option<(String, String)>> {
        let rows = self.rows.read().map_err(|_| poisoned())?;
        Ok(rows
            .get(&id)
            .map(|u| (u.email.as_str().to_owned(), u.name.as_str().to_owned())))
    }
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("in-memory store: lock poisoned")
}

#[async_trait]
impl UserRepository for InMemoryUsers {
    async fn create(&self, new: NewUser, now: OffsetDateTime) -> Result<User, UserRepoError> {
        let mut rows = self.rows.write().map_err(|_| poisoned())?;
        if rows.values().any(|u| u.email == new.email) {
            return Err(UserRepoError::EmailTaken);
        }
        let user = User {
            id: UserId::new(),
            email: new.email,
            name: new.name,
            password_hash: new.password_hash,
            is_platform_admin: false,
            disabled_at: None,
            email_verified_at: new.email_verified_at,
            profile: Profile::default(),
            created_at: now,
        };
        rows.insert(user.id, user.clone());
        Ok(user)
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, UserRepoError> {
        Ok(self.rows.read().map_err(|_| poisoned())?.get(&id).cloned())
    }

    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<User>, UserRepoError> {
        let rows = self.rows.read().map_err(|_| poisoned())?;
        Ok(rows.values().find(|u| &u.email == email).cloned())
    }

    async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), UserRepoError> {
        let mut rows = self.rows.write().map_err(|_| poisoned())?;
        let user = rows.get_mut(&id).ok_or(UserRepoError::NotFound)?;
        user.password_hash = Some(phc.to_owned());
        Ok(())
    }

    async fn update_profile(
        &self,
        id: UserId,
        name: DisplayName,
        profile: Profile,
    ) -> Result<User, UserRepoError> {
        let mut rows = self.rows.write().map_err(|_| poisoned())?;
        let user = rows.get_mut(&id).ok_or(UserRepoError::NotFound)?;
        user.name = name;
        user.profile = profile;
        Ok(user.clone())
    }

    async fn preferences(&self, id: UserId) -> Result<Option<String>, UserRepoError> {
        if !self.rows.read().map_err(|_| poisoned())?.contains_key(&id) {
            return Err(UserRepoError::NotFound);
        }
        Ok(self
            .preferences
            .read()
            .map_err(|_| poisoned())?
            .get(&id)
            .cloned())
    }

    async fn set_preferences(&self, id: UserId, json: &str) -> Result<(), UserRepoError> {
        if !self.rows.read().map_err(|_| poisoned())?.contains_key(&id) {
            return Err(UserRepoError::NotFound);
        }
        self.preferences
            .write()
            .map_err(|_| poisoned())?
            .insert(id, json.to_owned());
        Ok(())
    }

    async fn search(
        &self,
        query: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<User>, UserRepoError> {
        let after = page.after_uuid()?.map(UserId::from_uuid);
        let q = query
            .map(|q| q.trim().to_lowercase())
            .filter(|q| !q.is_empty());
        let rows = self.rows.read().map_err(|_| poisoned())?;
        let mut users: Vec<User> = rows
            .values()
            .filter(|u| after.is_none_or(|a| u.id > a))
            .filter(|u| q.as_deref().is_none_or(|q| u.email.as_str().contains(q)))
            .cloned()
            .collect();
        users.sort_by_key(|u| u.id);
        users.truncate(page.limit() as usize + 1);
        Ok(Page::from_overfetch(users, page, |u| u.id.to_string()))
    }

    async fn set_disabled(
        &self,
        id: UserId,
        at: Option<OffsetDateTime>,
    ) -> Result<(), UserRepoError> {
        let mut rows = self.rows.write().map_err(|_| poisoned())?;
        rows.get_mut(&id)
            .ok_or(UserRepoError::NotFound)?
            .disabled_at = at;
        Ok(())
    }

    async fn set_platform_admin(&self, id: UserId, admin: bool) -> Result<(), UserRepoError> {
        let mut rows = self.rows.write().map_err(|_| poisoned())?;
        rows.get_mut(&id)
            .ok_or(UserRepoError::NotFound)?
            .is_platform_admin = admin;
        Ok(())
    }

    async fn verify_email(
        &self,
        id: UserId,
        remove_password: bool,
        now: OffsetDateTime,
    ) -> Result<bool, UserRepoError> {
        let mut rows = self.rows.write().map_err(|_| poisoned())?;
        let user = rows.get_mut(&id).ok_or(UserRepoError::NotFound)?;
        if user.email_verified_at.is_some() {
            return Ok(false);
        }
        user.email_verified_at = Some(now);
        if remove_password {
            user.password_hash = None;
        }
        Ok(true)
    }

    async fn delete(&self, id: UserId) -> Result<(), UserRepoError> {
        self.preferences
            .write()
            .map_err(|_| poisoned())?
            .remove(&id);
        self.rows
            .write()
            .map_err(|_| poisoned())?
            .remove(&id)
            .map(|_| ())
            .ok_or(UserRepoError::NotFound)
    }
}

#[derive(Debug, Clone)]
struct Token {
    session: SessionId,
    user_id: UserId,
    expires_at: OffsetDateTime,
    spent: bool,
    revoked: bool,
}

/// Refresh tokens in a map under one lock: every operation is atomic.
#[derive(Debug, Default)]
pub struct InMemorySessions {
    tokens: Mutex<HashMap<TokenHash, Token>>,
}

impl InMemorySessions {
    /// No sessions.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TokenHash, Token>> {
        // Every update is a single insert or field write: a poisoned map is still consistent.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn revoke_session(tokens: &mut HashMap<TokenHash, Token>, session: SessionId) {
    for t in tokens.values_mut().filter(|t| t.session == session) {
        t.revoked = true;
    }
}

#[async_trait]
impl SessionRepository for InMemorySessions {
    async fn start(&self, token: NewRefreshToken) -> Result<(), SessionRepoError> {
        self.lock().insert(
            token.hash,
            Token {
                session: token.session,
                user_id: token.user_id,
                expires_at: token.expires_at,
                spent: false,
                revoked: false,
            },
        );
        Ok(())
    }

    async fn rotate(
        &self,
        presented: &TokenHash,
        next: TokenHash,
        now: OffsetDateTime,
    ) -> Result<Rotation, SessionRepoError> {
        let mut tokens = self.lock();
        let Some(t) = tokens.get(presented).cloned() else {
            return Ok(Rotation::Invalid);
        };
        if t.revoked || t.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        if t.spent {
            revoke_session(&mut tokens, t.session);
            return Ok(Rotation::Reused {
                user_id: t.user_id,
                session: t.session,
            });
        }
        if let Some(p) = tokens.get_mut(presented) {
            p.spent = true;
        }
        tokens.insert(
            next,
            Token {
                spent: false,
                ..t.clone()
            },
        );
        Ok(Rotation::Rotated {
            user_id: t.user_id,
            session: t.session,
            expires_at: t.expires_at,
        })
    }

    async fn revoke_by_token(
        &self,
        token: &TokenHash,
        _now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        let mut tokens = self.lock();
        if let Some(session) = tokens.get(token).map(|t| t.session) {
            revoke_session(&mut tokens, session);
        }
        Ok(())
    }

    async fn revoke_all(
        &self,
        user_id: UserId,
        _now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        for t in self.lock().values_mut().filter(|t| t.user_id == user_id) {
            t.revoked = true;
        }
        Ok(())
    }

    async fn revoke_others(
        &self,
        user_id: UserId,
        keep: SessionId,
        _now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        for t in self
            .lock()
            .values_mut()
            .filter(|t| t.user_id == user_id && t.session != keep)
        {
            t.revoked = true;
        }
        Ok(())
    }

    async fn is_active(
        &self,
        session: SessionId,
        now: OffsetDateTime,
    ) -> Result<bool, SessionRepoError> {
        Ok(self
            .lock()
            .values()
            .any(|t| t.session == session && !t.revoked && t.expires_at > now))
    }
}
