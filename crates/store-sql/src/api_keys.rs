//! [`ApiKeyRepository`] on SQL.

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::{ApiKeyId, Page, PageRequest, TenantId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tenancy::{ApiKey, ApiKeyRepoError, ApiKeyRepository, KeyHash, Scope};
use time::OffsetDateTime;

use crate::entity::api_key::{ActiveModel, Column, Entity, Model};
use crate::stored::{execute_timed, utc_micros};
use crate::{SqlStore, scope};

fn to_domain(m: Model) -> Result<ApiKey, ApiKeyRepoError> {
    Ok(ApiKey {
        id: ApiKeyId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        name: m.name,
        role: m
            .role
            .parse()
            .map_err(|_| anyhow::anyhow!("stored role {:?}", m.role))?,
        scopes: Scope::split(&m.scopes),
        prefix: m.prefix,
        created_by: m.created_by.map(UserId::from_uuid),
        created_at: m.created_at,
        last_used_at: m.last_used_at,
    })
}

#[async_trait]
impl ApiKeyRepository for SqlStore {
    async fn create(&self, key: ApiKey, hash: KeyHash) -> Result<ApiKey, ApiKeyRepoError> {
        crate::rls::tenant(key.tenant_id, async {
            let row = Model {
                id: key.id.as_uuid(),
                tenant_id: key.tenant_id.as_uuid(),
                name: key.name,
                role: key.role.as_str().to_owned(),
                prefix: key.prefix,
                key_hash: hash.0.to_vec(),
                created_by: key.created_by.map(|u| u.as_uuid()),
                scopes: Scope::join(&key.scopes),
                created_at: utc_micros(key.created_at),
                last_used_at: None,
                revoked_at: None,
            };
            execute_timed(&self.db, &Entity::insert(ActiveModel::from(row.clone())))
                .await
                .context("storing an API key")?;
            to_domain(row)
        })
        .await
    }

    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, ApiKeyRepoError> {
        crate::rls::tenant(tenant, async {
            let mut select = scope::select::<Entity>(tenant)
                .filter(Column::RevokedAt.is_null())
                .order_by_asc(Column::Id);
            if let Some(after) = page.after_uuid()? {
                select = select.filter(Column::Id.gt(after));
            }
            let rows = select
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing API keys")?;
            let keys = rows
                .into_iter()
                .map(to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(keys, page, |k| k.id.to_string()))
        })
        .await
    }

    async fn revoke(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<bool, ApiKeyRepoError> {
        crate::rls::tenant(tenant, async {
            let changed = scope::update::<Entity>(tenant)
                .col_expr(Column::RevokedAt, Expr::value(self.at(now)))
                .filter(Column::Id.eq(id.as_uuid()))
                .filter(Column::RevokedAt.is_null())
                .exec(&self.db)
                .await
                .context("revoking an API key")?
                .rows_affected;
            Ok(changed > 0)
        })
        .await
    }

    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, ApiKeyRepoError> {
        crate::rls::platform(async {
            // The one lookup not scoped by tenant: the secret is what names the tenant.
            Entity::find()
                .filter(Column::KeyHash.eq(hash.0.to_vec()))
                .filter(Column::RevokedAt.is_null())
                .one(&self.db)
                .await
                .context("reading an API key")?
                .map(to_domain)
                .transpose()
        })
        .await
    }

    async fn touch(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<(), ApiKeyRepoError> {
        crate::rls::tenant(tenant, async {
            scope::update::<Entity>(tenant)
                .col_expr(Column::LastUsedAt, Expr::value(self.at(now)))
                .filter(Column::Id.eq(id.as_uuid()))
                .exec(&self.db)
                .await
                .context("recording an API key's use")?;
            Ok(())
        })
        .await
    }
}
