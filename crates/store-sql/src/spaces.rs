//! [`SpaceRepository`] on SQL: embedding spaces, on PostgreSQL and SQLite.
//!
//! The partial unique index `ux_embedding_spaces_live` (tenant, scope key, status) over the
//! `building` and `active` rows is what keeps a scope to one space of each, however many
//! servers race: [`SpaceRepository::ensure`] inserts with `ON CONFLICT DO NOTHING` (which on
//! PostgreSQL waits for a concurrent insert of the same key to commit or roll back, and never
//! aborts the transaction) and, when it loses, reads the winner in the next round. Creating a
//! `building` space retires the scope's other building space in the same write transaction.
//!
//! A tenant's spaces are read through `crate::scope`. The background work (claiming a space
//! to re-embed, activating it, dropping retired spaces, finding the spaces of an old default
//! model) spans tenants by design, like the job queue's choice of a tenant, and goes by space
//! id or status.
//!
//! Leases are the job queue's: a building space is claimed with a fresh token and
//! `lease_until = now + lease` in a write transaction (`BEGIN IMMEDIATE` on SQLite; `FOR
//! UPDATE SKIP LOCKED` on PostgreSQL), or taken over once its lease ended. Times are written
//! by [`at_value`] (fixed-width UTC text on SQLite, so text order is time order).

use anyhow::Context as _;
use async_trait::async_trait;
use documents::CollectionId;
use kernel::TenantId;
use retrieval::{EmbeddingModel, IndexError, Space, SpaceId, SpaceRepository, SpaceStatus};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Value,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entity::collection;
use crate::entity::embedding_space::{Column, Entity, Model};
use crate::stored::{at_value, fit, lease_window, null_time, utc_micros};
use crate::{SqlStore, scope};

/// Rounds of `ensure` before it gives up (each round that loses a race sees the winner).
const ENSURE_ROUNDS: usize = 8;

const BUILDING: &str = SpaceStatus::Building.as_str();
const ACTIVE: &str = SpaceStatus::Active.as_str();
const RETIRED: &str = SpaceStatus::Retired.as_str();

/// The scope key of a collection (or of "no collection": the nil UUID).
pub(crate) fn scope_key(collection: Option<CollectionId>) -> Uuid {
    collection.map_or(Uuid::nil(), |c| c.as_uuid())
}

fn to_domain(m: Model) -> Result<Space, IndexError> {
    let model = EmbeddingModel::new(&m.model, fit(m.dimensions, "dimensions")?)
        .map_err(|e| anyhow::anyhow!("stored embedding model {:?}: {e}", m.model))?;
    let status = SpaceStatus::parse(&m.status)
        .ok_or_else(|| anyhow::anyhow!("stored space status {:?}", m.status))?;
    Ok(Space {
        id: SpaceId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        collection_id: m.collection_id.map(CollectionId::from_uuid),
        model,
        status,
        created_at: m.created_at,
    })
}

fn all_to_domain(rows: Vec<Model>) -> Result<Vec<Space>, IndexError> {
    rows.into_iter().map(to_domain).collect()
}

fn live() -> Condition {
    Condition::any()
        .add(Column::Status.eq(BUILDING))
        .add(Column::Status.eq(ACTIVE))
}

fn limit_of(limit: usize) -> u64 {
    u64::try_from(limit).unwrap_or(u64::MAX)
}

/// The live space of `space`'s scope with `space`'s model (the active one first).
async fn live_with_model(
    txn: &DatabaseTransaction,
    space: &Space,
) -> Result<Option<Space>, IndexError> {
    scope::select::<Entity>(space.tenant_id)
        .filter(Column::ScopeKey.eq(scope_key(space.collection_id)))
        .filter(live())
        .filter(Column::Model.eq(space.model.name()))
        .filter(Column::Dimensions.eq(fit::<u32, i32>(space.model.dimensions(), "dimensions")?))
        .order_by_asc(Column::Status)
        .one(txn)
        .await
        .context("reading a space of the model")?
        .map(to_domain)
        .transpose()
}

/// The scope's space with `status`.
async fn live_of(
    txn: &DatabaseTransaction,
    space: &Space,
    status: &str,
) -> Result<Option<Space>, IndexError> {
    scope::select::<Entity>(space.tenant_id)
        .filter(Column::ScopeKey.eq(scope_key(space.collection_id)))
        .filter(Column::Status.eq(status))
        .one(txn)
        .await
        .context("reading a scope's space")?
        .map(to_domain)
        .transpose()
}

/// Inserts `space` unless its scope already has a live space of its status; whether it did.
async fn insert_unless_taken(
    txn: &DatabaseTransaction,
    space: &Space,
    now: OffsetDateTime,
) -> Result<bool, IndexError> {
    let backend = txn.get_database_backend();
    let values: [Value; 12] = [
        space.id.as_uuid().into(),
        space.tenant_id.as_uuid().into(),
        space.collection_id.map(|c| c.as_uuid()).into(),
        scope_key(space.collection_id).into(),
        space.model.name().to_owned().into(),
        fit::<u32, i32>(space.model.dimensions(), "dimensions")?.into(),
        space.status.as_str().into(),
        Option::<Uuid>::None.into(),
        null_time(),
        0_i64.into(),
        at_value(backend, space.created_at),
        at_value(backend, now),
    ];
    let insert = Query::insert()
        .into_table(Entity)
        .columns([
            Column::Id,
            Column::TenantId,
            Column::CollectionId,
            Column::ScopeKey,
            Column::Model,
            Column::Dimensions,
            Column::Status,
            Column::LeaseToken,
            Column::LeaseUntil,
            Column::Version,
            Column::CreatedAt,
            Column::UpdatedAt,
        ])
        .values(values.map(Expr::value))
        .context("building a space insert")?
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .to_owned();
    let inserted = txn
        .execute(&insert)
        .await
        .context("storing a space")?
        .rows_affected();
    Ok(inserted == 1)
}

#[async_trait]
impl SpaceRepository for SqlStore {
    async fn list(
        &self,
        tenant: TenantId,
        scopes: Option<&[Option<CollectionId>]>,
    ) -> Result<Vec<Space>, IndexError> {
        crate::rls::tenant(tenant, async {
            let mut query = scope::select::<Entity>(tenant)
                .filter(live())
                .order_by_asc(Column::Id);
            if let Some(scopes) = scopes {
                if scopes.is_empty() {
                    return Ok(Vec::new());
                }
                query = query.filter(Column::ScopeKey.is_in(scopes.iter().map(|c| scope_key(*c))));
            }
            let rows = query.all(&self.db).await.context("listing spaces")?;
            all_to_domain(rows)
        })
        .await
    }

    async fn ensure(&self, space: Space) -> Result<Space, IndexError> {
        crate::rls::tenant(space.tenant_id, async {
            if space.status == SpaceStatus::Retired {
                return Err(
                    anyhow::anyhow!("a space is created building or active, not retired").into(),
                );
            }
            // What the row reads back as.
            let space = Space {
                created_at: utc_micros(space.created_at),
                ..space
            };
            let backend = self.db.get_database_backend();
            let dimensions: i32 = fit(space.model.dimensions(), "dimensions")?;
            for _ in 0..ENSURE_ROUNDS {
                let now = utc_micros(self.now());
                let txn = self
                    .begin_write()
                    .await
                    .context("starting a space ensure")?;
                if let Some(found) = live_with_model(&txn, &space).await? {
                    txn.commit().await.context("ending a space ensure")?;
                    return Ok(found);
                }
                if space.status == SpaceStatus::Active {
                    if let Some(active) = live_of(&txn, &space, ACTIVE).await? {
                        txn.commit().await.context("ending a space ensure")?;
                        return Ok(active);
                    }
                } else {
                    // Only a building space of another model: one of this model stored since the
                    // read above (PostgreSQL reads each statement afresh) is the answer, which
                    // the insert's conflict sends the next round to read.
                    scope::update::<Entity>(space.tenant_id)
                        .col_expr(Column::Status, Expr::value(RETIRED))
                        .col_expr(Column::LeaseToken, Expr::value(Option::<Uuid>::None))
                        .col_expr(Column::LeaseUntil, Expr::value(null_time()))
                        .col_expr(Column::UpdatedAt, Expr::value(at_value(backend, now)))
                        .filter(Column::ScopeKey.eq(scope_key(space.collection_id)))
                        .filter(Column::Status.eq(BUILDING))
                        .filter(
                            Condition::any()
                                .add(Column::Model.ne(space.model.name()))
                                .add(Column::Dimensions.ne(dimensions)),
                        )
                        .exec(&txn)
                        .await
                        .context("retiring a building space")?;
                }
                if insert_unless_taken(&txn, &space, now).await? {
                    txn.commit().await.context("committing a new space")?;
                    return Ok(space);
                }
                // A concurrent ensure stored its space first: the next round reads it.
                txn.rollback().await.context("ending a space ensure")?;
            }
            Err(anyhow::anyhow!("the spaces of a scope kept changing during ensure").into())
        })
        .await
    }

    async fn activate(&self, id: SpaceId) -> Result<bool, IndexError> {
        crate::rls::platform(async {
            let backend = self.db.get_database_backend();
            let now = at_value(backend, utc_micros(self.now()));
            let txn = self.begin_write().await.context("starting an activation")?;
            let mut lookup = Entity::find_by_id(id.as_uuid());
            if backend == DbBackend::Postgres {
                lookup = lookup.lock_exclusive();
            }
            let Some(row) = lookup.one(&txn).await.context("reading a space")? else {
                txn.rollback().await.context("ending an activation")?;
                return Ok(false);
            };
            if row.status != BUILDING {
                txn.rollback().await.context("ending an activation")?;
                return Ok(false);
            }
            let tenant = TenantId::from_uuid(row.tenant_id);
            scope::update::<Entity>(tenant)
                .col_expr(Column::Status, Expr::value(RETIRED))
                .col_expr(Column::UpdatedAt, Expr::value(now.clone()))
                .filter(Column::ScopeKey.eq(row.scope_key))
                .filter(Column::Status.eq(ACTIVE))
                .exec(&txn)
                .await
                .context("retiring the active space")?;
            scope::update::<Entity>(tenant)
                .col_expr(Column::Status, Expr::value(ACTIVE))
                .col_expr(Column::LeaseToken, Expr::value(Option::<Uuid>::None))
                .col_expr(Column::LeaseUntil, Expr::value(null_time()))
                .col_expr(Column::UpdatedAt, Expr::value(now))
                .filter(Column::Id.eq(row.id))
                .exec(&txn)
                .await
                .context("activating a space")?;
            txn.commit().await.context("committing an activation")?;
            Ok(true)
        })
        .await
    }

    async fn claim_building(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<(Space, Uuid)>, IndexError> {
        crate::rls::platform(async {
            let backend = self.db.get_database_backend();
            let (now, until) = lease_window(now, lease).context("the lease is too long")?;
            let now = at_value(backend, now);
            let token = Uuid::now_v7();
            let building = Entity::find()
                .filter(Column::Status.eq(BUILDING))
                .filter(
                    Condition::any()
                        .add(Column::LeaseUntil.is_null())
                        .add(Column::LeaseUntil.lt(now.clone())),
                )
                .order_by_asc(Column::Id)
                .limit(1);
            let Some((txn, row)) = self
                .lock_first(building)
                .await
                .context("choosing a space to build")?
            else {
                return Ok(None);
            };
            let tenant = TenantId::from_uuid(row.tenant_id);
            let changed = scope::update::<Entity>(tenant)
                .col_expr(Column::LeaseToken, Expr::value(token))
                .col_expr(Column::LeaseUntil, Expr::value(at_value(backend, until)))
                .col_expr(Column::UpdatedAt, Expr::value(now))
                .filter(Column::Id.eq(row.id))
                .filter(Column::Status.eq(BUILDING))
                .exec(&txn)
                .await
                .context("leasing a space")?
                .rows_affected;
            if changed != 1 {
                txn.rollback().await.context("ending a space claim")?;
                return Ok(None);
            }
            txn.commit().await.context("committing a space claim")?;
            Ok(Some((to_domain(row)?, token)))
        })
        .await
    }

    async fn renew(
        &self,
        id: SpaceId,
        lease: Uuid,
        until: OffsetDateTime,
    ) -> Result<bool, IndexError> {
        crate::rls::platform(async {
            let backend = self.db.get_database_backend();
            let changed = Entity::update_many()
                .col_expr(
                    Column::LeaseUntil,
                    Expr::value(at_value(backend, utc_micros(until))),
                )
                .col_expr(
                    Column::UpdatedAt,
                    Expr::value(at_value(backend, utc_micros(self.now()))),
                )
                .filter(Column::Id.eq(id.as_uuid()))
                .filter(Column::LeaseToken.eq(lease))
                .filter(Column::Status.eq(BUILDING))
                .exec(&self.db)
                .await
                .context("renewing a space lease")?
                .rows_affected;
            Ok(changed == 1)
        })
        .await
    }

    async fn retired(&self, limit: usize) -> Result<Vec<Space>, IndexError> {
        crate::rls::platform(async {
            let rows = Entity::find()
                .filter(Column::Status.eq(RETIRED))
                .order_by_asc(Column::Id)
                .limit(limit_of(limit))
                .all(&self.db)
                .await
                .context("listing retired spaces")?;
            all_to_domain(rows)
        })
        .await
    }

    async fn delete(&self, id: SpaceId) -> Result<(), IndexError> {
        crate::rls::platform(async {
            Entity::delete_by_id(id.as_uuid())
                .exec(&self.db)
                .await
                .context("deleting a space")?;
            Ok(())
        })
        .await
    }

    async fn active_not_on(
        &self,
        model: &EmbeddingModel,
        limit: usize,
    ) -> Result<Vec<Space>, IndexError> {
        crate::rls::platform(async {
            let dimensions: i32 = fit(model.dimensions(), "dimensions")?;
            let following_default = Query::select()
                .column(collection::Column::Id)
                .from(collection::Entity)
                .and_where(collection::Column::EmbeddingModel.is_null())
                .to_owned();
            let rows = Entity::find()
                .filter(Column::Status.eq(ACTIVE))
                .filter(
                    Condition::any()
                        .add(Column::Model.ne(model.name()))
                        .add(Column::Dimensions.ne(dimensions)),
                )
                .filter(
                    Condition::any()
                        .add(Column::CollectionId.is_null())
                        .add(Column::CollectionId.in_subquery(following_default)),
                )
                .order_by_asc(Column::Id)
                .limit(limit_of(limit))
                .all(&self.db)
                .await
                .context("listing spaces of another model")?;
            all_to_domain(rows)
        })
        .await
    }
}
