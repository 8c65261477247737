//! [`MembershipRepository`] on SQL, through the tenant-scoping helper.
//!
//! The last-owner rule is kept atomically: the change and the owner count happen in one
//! transaction; on PostgreSQL the tenant's owner rows are locked first (`FOR UPDATE`), so two
//! owners demoting each other at once cannot both succeed; SQLite has one writer at a time.

use std::collections::HashMap;

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::{Page, PageRequest, Role, TenantId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, JoinType, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tenancy::{Member, MemberRepoError, Membership, MembershipRepository, Organization};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entity::membership::{ActiveModel, Column, Entity, Model};
use crate::entity::user;
use crate::stored::{execute_timed, utc_micros};
use crate::{SqlStore, scope};

fn to_domain(m: Model) -> Result<Membership, MemberRepoError> {
    Ok(Membership {
        tenant_id: TenantId::from_uuid(m.tenant_id),
        user_id: UserId::from_uuid(m.user_id),
        role: m
            .role
            .parse()
            .map_err(|_| anyhow::anyhow!("stored role {:?}", m.role))?,
        created_at: m.created_at,
    })
}

impl SqlStore {
    /// Runs `change` on one membership, then refuses (rolls back) if no owner is left.
    async fn change_keeping_an_owner<F>(
        &self,
        tenant: TenantId,
        change: F,
    ) -> Result<(), MemberRepoError>
    where
        F: for<'t> FnOnce(
                &'t DatabaseTransaction,
            ) -> std::pin::Pin<
                Box<dyn Future<Output = Result<u64, sea_orm::DbErr>> + Send + 't>,
            > + Send,
    {
        let txn = self
            .db
            .begin()
            .await
            .context("starting a membership change")?;
        if self.db.get_database_backend() == DbBackend::Postgres {
            scope::select::<Entity>(tenant)
                .filter(Column::Role.eq(Role::Owner.as_str()))
                .lock_exclusive()
                .all(&txn)
                .await
                .context("locking the owners")?;
        }
        let changed = change(&txn).await.context("changing a membership")?;
        if changed == 0 {
            return Err(MemberRepoError::NotFound);
        }
        let owners = scope::select::<Entity>(tenant)
            .filter(Column::Role.eq(Role::Owner.as_str()))
            .count(&txn)
            .await
            .context("counting owners")?;
        if owners == 0 {
            // Dropping the transaction rolls it back.
            return Err(MemberRepoError::LastOwner);
        }
        txn.commit()
            .await
            .context("committing a membership change")?;
        Ok(())
    }
}

#[async_trait]
impl MembershipRepository for SqlStore {
    async fn role_of(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<Role>, MemberRepoError> {
        crate::rls::tenant(tenant, async {
            scope::select::<Entity>(tenant)
                .filter(Column::UserId.eq(user.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a membership")?
                .map(|m| to_domain(m).map(|m| m.role))
                .transpose()
        })
        .await
    }

    async fn add(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
        now: OffsetDateTime,
    ) -> Result<Membership, MemberRepoError> {
        crate::rls::tenant(tenant, async {
            if let Some(existing) = scope::select::<Entity>(tenant)
                .filter(Column::UserId.eq(user.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a membership")?
            {
                return to_domain(existing);
            }
            let row = Model {
                tenant_id: tenant.as_uuid(),
                user_id: user.as_uuid(),
                role: role.as_str().to_owned(),
                created_at: utc_micros(now),
            };
            execute_timed(&self.db, &Entity::insert(ActiveModel::from(row.clone())))
                .await
                .context("adding a member")?;
            to_domain(row)
        })
        .await
    }

    async fn list(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Member>, MemberRepoError> {
        // One query: the tenant's memberships (through the scoping helper) joined to their
        // accounts for the email and name.
        let account = Entity::belongs_to(user::Entity)
            .from(Column::UserId)
            .to(user::Column::Id)
            .into();
        crate::rls::tenant(tenant, async {
            let mut query = scope::select::<Entity>(tenant)
                .select_only()
                .columns([
                    Column::TenantId,
                    Column::UserId,
                    Column::Role,
                    Column::CreatedAt,
                ])
                .column(user::Column::Email)
                .column(user::Column::Name)
                .join(JoinType::InnerJoin, account)
                .order_by_asc(Column::UserId);
            if let Some(after) = page.after_uuid()? {
                query = query.filter(Column::UserId.gt(after));
            }
            let rows: Vec<(Uuid, Uuid, String, OffsetDateTime, String, String)> = query
                .limit(u64::from(page.limit()) + 1)
                .into_tuple()
                .all(&self.db)
                .await
                .context("listing members")?;
            let members = rows
                .into_iter()
                .map(|(tenant_id, user_id, role, created_at, email, name)| {
                    Ok(Member {
                        membership: to_domain(Model {
                            tenant_id,
                            user_id,
                            role,
                            created_at,
                        })?,
                        email,
                        name,
                    })
                })
                .collect::<Result<Vec<_>, MemberRepoError>>()?;
            Ok(Page::from_overfetch(members, page, |m| {
                m.membership.user_id.to_string()
            }))
        })
        .await
    }

    async fn set_role(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
    ) -> Result<Membership, MemberRepoError> {
        crate::rls::tenant(tenant, async {
            let value = role.as_str().to_owned();
            self.change_keeping_an_owner(tenant, move |txn| {
                Box::pin(async move {
                    Ok(scope::update::<Entity>(tenant)
                        .col_expr(Column::Role, Expr::value(value))
                        .filter(Column::UserId.eq(user.as_uuid()))
                        .exec(txn)
                        .await?
                        .rows_affected)
                })
            })
            .await?;
            let row = scope::select::<Entity>(tenant)
                .filter(Column::UserId.eq(user.as_uuid()))
                .one(&self.db)
                .await
                .context("reading a membership")?
                .ok_or(MemberRepoError::NotFound)?;
            to_domain(row)
        })
        .await
    }

    async fn remove(&self, tenant: TenantId, user: UserId) -> Result<(), MemberRepoError> {
        crate::rls::tenant(tenant, async {
            self.change_keeping_an_owner(tenant, move |txn| {
                Box::pin(async move {
                    Ok(scope::delete::<Entity>(tenant)
                        .filter(Column::UserId.eq(user.as_uuid()))
                        .exec(txn)
                        .await?
                        .rows_affected)
                })
            })
            .await
        })
        .await
    }

    async fn for_user(&self, user: UserId) -> Result<Vec<(Organization, Role)>, MemberRepoError> {
        crate::rls::platform(async {
            // Across tenants by design: the caller's own memberships, for `/auth/me` and `/orgs`.
            let memberships = Entity::find()
                .filter(Column::UserId.eq(user.as_uuid()))
                .order_by_asc(Column::CreatedAt)
                .all(&self.db)
                .await
                .context("listing a user's memberships")?;
            let ids: Vec<Uuid> = memberships.iter().map(|m| m.tenant_id).collect();
            let orgs: HashMap<Uuid, crate::entity::organization::Model> =
                crate::entity::organization::Entity::find()
                    .filter(crate::entity::organization::Column::Id.is_in(ids))
                    .all(&self.db)
                    .await
                    .context("reading a user's organizations")?
                    .into_iter()
                    .map(|o| (o.id, o))
                    .collect();
            let mut out = Vec::with_capacity(memberships.len());
            for m in memberships {
                if let Some(org) = orgs.get(&m.tenant_id) {
                    let org = crate::organizations::to_domain(org.clone())
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    out.push((org, to_domain(m)?.role));
                }
            }
            Ok(out)
        })
        .await
    }
}
