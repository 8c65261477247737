//! [`EvaluationRepository`] on SQL: a run is one row, its golden set and figures as JSON text.

use anyhow::Context as _;
use async_trait::async_trait;
use documents::CollectionId;
use kernel::{ApiKeyId, Page, PageRequest, Principal, TenantId, UserId};
use retrieval::evaluation::{Evaluation, EvaluationId, EvaluationRepository, GoldenSet};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::evaluation::{ActiveModel, Column, Entity, Model};
use crate::stored::{execute_timed, fit, utc_micros};
use crate::{SqlStore, scope};

fn to_domain(m: Model) -> anyhow::Result<Evaluation> {
    let items: serde_json::Value = serde_json::from_str(&m.items).context("a stored golden set")?;
    let results: serde_json::Value =
        serde_json::from_str(&m.results).context("stored evaluation results")?;
    let principal = match (m.created_by, m.created_by_key) {
        (Some(u), _) => Some(Principal::User(UserId::from_uuid(u))),
        (None, Some(k)) => Some(Principal::ApiKey(ApiKeyId::from_uuid(k))),
        (None, None) => None,
    };
    Ok(Evaluation {
        id: EvaluationId::from_uuid(m.id),
        tenant_id: TenantId::from_uuid(m.tenant_id),
        collection_ids: m
            .collection_ids
            .map(|ids| {
                ids.split_whitespace()
                    .map(|id| {
                        id.parse::<CollectionId>()
                            .map_err(|_| anyhow::anyhow!("a stored collection id {id:?}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?,
        principal,
        items: GoldenSet::from_json(&items)?,
        k: fit(m.k, "k")?,
        embedding_model: m.embedding_model,
        rerank: m.rerank,
        results: Evaluation::results_from_json(&results)?,
        created_at: m.created_at,
    })
}

#[async_trait]
impl EvaluationRepository for SqlStore {
    async fn create(&self, e: &Evaluation) -> anyhow::Result<()> {
        crate::rls::tenant(e.tenant_id, async {
            let (user, key) = match e.principal {
                Some(Principal::User(u)) => (Some(u.as_uuid()), None),
                Some(Principal::ApiKey(k)) => (None, Some(k.as_uuid())),
                None => (None, None),
            };
            let row = Model {
                id: e.id.as_uuid(),
                tenant_id: e.tenant_id.as_uuid(),
                collection_ids: e.collection_ids.as_ref().map(|ids| {
                    ids.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
                created_by: user,
                created_by_key: key,
                k: i32::try_from(e.k).context("k")?,
                embedding_model: e.embedding_model.clone(),
                rerank: e.rerank,
                items: e.items.to_json().to_string(),
                results: e.results_json().to_string(),
                created_at: utc_micros(e.created_at),
            };
            execute_timed(&self.db, &Entity::insert(ActiveModel::from(row)))
                .await
                .context("storing an evaluation")?;
            Ok(())
        })
        .await
    }

    async fn find(&self, tenant: TenantId, id: EvaluationId) -> anyhow::Result<Option<Evaluation>> {
        crate::rls::tenant(tenant, async {
            scope::select::<Entity>(tenant)
                .filter(Column::Id.eq(id.as_uuid()))
                .one(&self.db)
                .await
                .context("reading an evaluation")?
                .map(to_domain)
                .transpose()
        })
        .await
    }

    async fn list(&self, tenant: TenantId, page: &PageRequest) -> anyhow::Result<Page<Evaluation>> {
        crate::rls::tenant(tenant, async {
            let mut select = scope::select::<Entity>(tenant).order_by_asc(Column::Id);
            if let Some(after) = page.after_uuid()? {
                select = select.filter(Column::Id.gt(after));
            }
            let rows = select
                .limit(u64::from(page.limit()) + 1)
                .all(&self.db)
                .await
                .context("listing evaluations")?;
            let items = rows
                .into_iter()
                .map(to_domain)
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page, |e| e.id.to_string()))
        })
        .await
    }
}
