//! [`InvitationRepository`] on SQL. Lookups go by token hash: the token is what names the
//! organization.

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::{Page, PageRequest, TenantId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use tenancy::{ApiKeyRepoError, Invitation, InvitationRepository, KeyHash};
use time::OffsetDateTime;

use crate::entity::invitation::{ActiveModel, Column, Entity, Model};
use crate::stored::execute_timed;
use crate::{SqlStore, scope};

fn to_domain(m: Model) -> Result<Invitation, ApiKeyRepoError> {
    Ok(Invitation {
        id: m.id,
        tenant_id: TenantId::from_uuid(m.tenant_id),
        email: m.email,
        role: m
            .role
            .parse()
            .map_err(|_| anyhow::anyhow!("stored role {:?}", m.role))?,
        invited_by: m.invited_by.map(UserId::from_uuid),
        created_at: m.created_at,
        expires_at: m.expires_at,
    })
}

#[async_trait]
impl InvitationRepository for SqlStore {
    async fn create(&self, i: Invitation, hash: KeyHash) -> Result<(), ApiKeyRepoError> {
        crate::rls::tenant(i.tenant_id, async {
            let row = ActiveModel {
                id: Set(i.id),
                tenant_id: Set(i.tenant_id.as_uuid()),
                email: Set(i.email),
                role: Set(i.role.as_str().to_owned()),
                token_hash: Set(hash.0.to_vec()),
                invited_by: Set(i.invited_by.map(|u| u.as_uuid())),
                created_at: Set(i.created_at),
                expires_at: Set(i.expires_at),
                accepted_at: Set(None),
            };
            execute_timed(&self.db, &Entity::insert(row))
                .await
                .context("storing an invitation")?;
            Ok(())
        })
        .await
    }

    async fn find(
        &self,
        hash: &KeyHash,
        now: OffsetDateTime,
    ) -> Result<Option<Invitation>, ApiKeyRepoError> {
        crate::rls::platform(async {
            Entity::find()
                .filter(Column::TokenHash.eq(hash.0.to_vec()))
                .filter(Column::AcceptedAt.is_null())
                .filter(Column::ExpiresAt.gt(self.at(now)))
                .one(&self.db)
                .await
                .context("reading an invitation")?
                .map(to_domain)
                .transpose()
        })
        .await
    }

    async fn accept(&self, hash: &KeyHash, now: OffsetDateTime) -> Result<bool, ApiKeyRepoError> {
        crate::rls::platform(async {
            let changed = Entity::update_many()
                .col_expr(Column::AcceptedAt, Expr::value(self.at(now)))
                .filter(Column::TokenHash.eq(hash.0.to_vec()))
                .filter(Column::AcceptedAt.is_null())
                .filter(Column::ExpiresAt.gt(self.at(now)))
                .exec(&self.db)
                .await
                .context("accepting an invitation")?
                .rows_affected;
            Ok(changed == 1)
        })
        .await
    }

    async fn pending(
        &self,
        tenant: TenantId,
        now: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<Invitation>, ApiKeyRepoError> {
        crate::rls::tenant(tenant, async {
            let mut select = scope::select::<Entity>(tenant)
                .filter(Column::AcceptedAt.is_null())
                .filter(Column::ExpiresAt.gt(self.at(now)))
                .order_by_asc(Column::Id);
            if let Some(after) = page.after_uuid()? {
                select = select.filter(Column::Id.gt(after));
            }
            let rows = select
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing invitations")?;
            let items = rows
                .into_iter()
                .map(to_domain)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page, |i| i.id.to_string()))
        })
        .await
    }

    async fn revoke(&self, tenant: TenantId, id: uuid::Uuid) -> Result<bool, ApiKeyRepoError> {
        crate::rls::tenant(tenant, async {
            // Only a pending one: an accepted invitation stays as the record of who joined how.
            let removed = scope::delete::<Entity>(tenant)
                .filter(Column::Id.eq(id))
                .filter(Column::AcceptedAt.is_null())
                .exec(&self.db)
                .await
                .context("revoking an invitation")?
                .rows_affected;
            Ok(removed > 0)
        })
        .await
    }
}
