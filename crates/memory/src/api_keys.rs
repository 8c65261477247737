//! [`ApiKeyRepository`] in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use kernel::{ApiKeyId, Page, PageRequest, TenantId};
use tenancy::{ApiKey, ApiKeyRepoError, ApiKeyRepository, KeyHash};
use time::OffsetDateTime;

#[derive(Debug, Clone)]
struct Row {
    key: ApiKey,
    hash: KeyHash,
    revoked: bool,
}

/// API keys in a map ordered by id.
#[derive(Debug, Default)]
pub struct InMemoryApiKeys {
    rows: Mutex<BTreeMap<ApiKeyId, Row>>,
}

impl InMemoryApiKeys {
    /// No keys.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ApiKeyRepository for InMemoryApiKeys {
    async fn create(&self, key: ApiKey, hash: KeyHash) -> Result<ApiKey, ApiKeyRepoError> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        rows.insert(
            key.id,
            Row {
                key: key.clone(),
                hash,
                revoked: false,
            },
        );
        Ok(key)
    }

    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, ApiKeyRepoError> {
        let after = page.after_uuid()?.map(ApiKeyId::from_uuid);
        let rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<ApiKey> = rows
            .values()
            .filter(|r| r.key.tenant_id == tenant && !r.revoked)
            .filter(|r| after.is_none_or(|a| r.key.id > a))
            .take(page.limit() as usize + 1)
            .map(|r| r.key.clone())
            .collect();
        Ok(Page::from_overfetch(keys, page, |k| k.id.to_string()))
    }

    async fn revoke(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        _now: OffsetDateTime,
    ) -> Result<bool, ApiKeyRepoError> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        match rows.get_mut(&id) {
            Some(r) if r.key.tenant_id == tenant && !r.revoked => {
                r.revoked = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, ApiKeyRepoError> {
        let rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(rows
            .values()
            .find(|r| &r.hash == hash && !r.revoked)
            .map(|r| r.key.clone()))
    }

    async fn touch(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<(), ApiKeyRepoError> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = rows.get_mut(&id).filter(|r| r.key.tenant_id == tenant) {
            r.key.last_used_at = Some(now);
        }
        Ok(())
    }
}
