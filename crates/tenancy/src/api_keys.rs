//! API keys of organizations: a key acts for exactly its organization, with its role and
//! scopes, never above its creator's current role.

use std::sync::Arc;

use kernel::audit::AuditLog;
use kernel::memo::Memo;
use kernel::{ClientInfo, Clock, InvalidInput, Page, PageRequest, Role, TenantContext};

use crate::error::TenancyError;
use crate::events::{actor_of, tenant_event};
use crate::model::{ApiKey, Scope};
use crate::ports::{ApiKeyRepository, KeyHash, KeySecrets};

/// API keys of organizations: a key acts for exactly its organization, with its role.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    keys: Arc<dyn ApiKeyRepository>,
    secrets: Arc<dyn KeySecrets>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditLog>,
    /// Keys looked up lately, by the hash of their secret ([`ApiKeys::with_recheck`]; off by
    /// default).
    recent: Arc<Memo<KeyHash, Option<ApiKey>>>,
}

/// How many looked-up keys one process keeps.
const RECENT_CAPACITY: usize = 4_096;

/// Longest key name.
const MAX_KEY_NAME: usize = 100;

impl ApiKeys {
    /// The use cases over these adapters.
    #[must_use]
    pub fn new(
        keys: Arc<dyn ApiKeyRepository>,
        secrets: Arc<dyn KeySecrets>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditLog>,
    ) -> Self {
        Self {
            keys,
            secrets,
            clock,
            audit,
            recent: Arc::new(Memo::off()),
        }
    }

    /// These use cases reusing what a key lookup found for `ttl` (0 = read every time, the
    /// default): a key revoked through another server stops working on this one within
    /// `ttl`; revoked through this one, at once (docs/security.md, "Revocation").
    #[must_use]
    pub fn with_recheck(mut self, ttl: std::time::Duration) -> Self {
        self.recent = Arc::new(Memo::new(ttl, RECENT_CAPACITY));
        self
    }

    /// Creates a key; returns it and its secret (shown once). A key's role is at most the
    /// creator's and never `owner`; its scopes are `scopes`, or [`Scope::defaults_for`] its
    /// role when `None`, and each must be allowed to the key's role (so never more than the
    /// creator's role allows).
    ///
    /// # Errors
    /// `Invalid` name, role or scopes; `Forbidden` for a role above the creator's.
    pub async fn create(
        &self,
        ctx: &TenantContext,
        name: &str,
        role: Role,
        scopes: Option<Vec<Scope>>,
        client: &ClientInfo,
    ) -> Result<(ApiKey, String), TenancyError> {
        let name = kernel::text::clean_name(name);
        let name = name.as_str();
        if name.is_empty()
            || name.chars().count() > MAX_KEY_NAME
            || name.chars().any(char::is_control)
        {
            return Err(InvalidInput::field(
                "name",
                "must be 1 to 100 characters, no control characters",
            )
            .into());
        }
        if role == Role::Owner {
            return Err(InvalidInput::field("role", "an API key cannot be an owner").into());
        }
        if !ctx.role().satisfies(role) {
            return Err(TenancyError::Forbidden(
                "a key cannot have a higher role than its creator",
            ));
        }
        let mut scopes = scopes.unwrap_or_else(|| Scope::defaults_for(role));
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(InvalidInput::field("scopes", "must name at least one scope").into());
        }
        if let Some(s) = scopes.iter().find(|s| !role.satisfies(s.min_role())) {
            return Err(InvalidInput::field(
                "scopes",
                format!("{s} needs a key role of at least {}", s.min_role()),
            )
            .into());
        }
        let (secret, hash) = self.secrets.generate("qk_")?;
        let now = self.clock.now();
        let key = ApiKey {
            id: kernel::ApiKeyId::new(),
            tenant_id: ctx.tenant_id(),
            name: name.to_owned(),
            role,
            scopes,
            prefix: secret.chars().take(11).collect(),
            created_by: actor_of(ctx),
            created_at: now,
            last_used_at: None,
        };
        let key = self.keys.create(key, hash).await?;
        let target = format!("key {} ({role}; {})", key.id, Scope::join(&key.scopes));
        tenant_event(
            &*self.audit,
            now,
            "org.api_key.created",
            actor_of(ctx),
            ctx.tenant_id(),
            Some(target),
            client,
        )
        .await;
        Ok((key, secret))
    }

    /// The organization's live keys.
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, TenancyError> {
        Ok(self.keys.list(ctx.tenant_id(), page).await?)
    }

    /// Revokes a key of the organization at once.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn revoke(
        &self,
        ctx: &TenantContext,
        id: kernel::ApiKeyId,
        client: &ClientInfo,
    ) -> Result<(), TenancyError> {
        let now = self.clock.now();
        let revoked = self.keys.revoke(ctx.tenant_id(), id, now).await?;
        self.recent.forget_all();
        if !revoked {
            return Err(TenancyError::NotFound);
        }
        let target = format!("key {id}");
        tenant_event(
            &*self.audit,
            now,
            "org.api_key.revoked",
            actor_of(ctx),
            ctx.tenant_id(),
            Some(target),
            client,
        )
        .await;
        Ok(())
    }

    /// The live key behind a presented secret, if any (recording the use at most once a
    /// minute, when the key is read rather than reused).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, TenancyError> {
        if !secret.starts_with("qk_") || secret.len() > 128 {
            return Ok(None);
        }
        let hash = self.secrets.hash(secret);
        let now = self.clock.now();
        self.recent
            .get_or_load(hash, now, || async {
                let mut found = self.keys.find_by_hash(&hash).await?;
                if let Some(key) = &mut found
                    && key
                        .last_used_at
                        .is_none_or(|t| now - t > time::Duration::minutes(1))
                {
                    self.keys.touch(key.tenant_id, key.id, now).await?;
                    key.last_used_at = Some(now);
                }
                Ok(found)
            })
            .await
    }
}
