//! [`EvaluationRepository`] in memory: runs in a map ordered by id.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use kernel::{Page, PageRequest, TenantId};
use retrieval::evaluation::{Evaluation, EvaluationId, EvaluationRepository};

/// Evaluations in memory.
#[derive(Debug, Default)]
pub struct InMemoryEvaluations {
    runs: Mutex<BTreeMap<EvaluationId, Evaluation>>,
}

impl InMemoryEvaluations {
    /// Nothing stored.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, BTreeMap<EvaluationId, Evaluation>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl EvaluationRepository for InMemoryEvaluations {
    async fn create(&self, evaluation: &Evaluation) -> anyhow::Result<()> {
        self.runs().insert(evaluation.id, evaluation.clone());
        Ok(())
    }

    async fn find(&self, tenant: TenantId, id: EvaluationId) -> anyhow::Result<Option<Evaluation>> {
        Ok(self
            .runs()
            .get(&id)
            .filter(|e| e.tenant_id == tenant)
            .cloned())
    }

    async fn list(&self, tenant: TenantId, page: &PageRequest) -> anyhow::Result<Page<Evaluation>> {
        let after = page.after_uuid()?;
        let rows: Vec<Evaluation> = self
            .runs()
            .values()
            .filter(|e| e.tenant_id == tenant && after.is_none_or(|a| e.id.as_uuid() > a))
            .take(page.limit() as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(rows, page, |e| e.id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use kernel::{TenantId, UserId};
    use retrieval::evaluation::{GoldenItemInput, GoldenSet};
    use time::OffsetDateTime;

    use super::*;

    fn run(tenant: TenantId) -> Evaluation {
        Evaluation {
            id: EvaluationId::new(),
            tenant_id: tenant,
            collection_ids: None,
            principal: Some(kernel::Principal::User(UserId::new())),
            items: GoldenSet::new(
                vec![GoldenItemInput {
                    question: "q".to_owned(),
                    answer: Some("a".to_owned()),
                    ..GoldenItemInput::default()
                }],
                "cases",
            )
            .expect("valid"),
            k: 10,
            embedding_model: None,
            rerank: false,
            results: Vec::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn a_tenant_sees_only_its_own_runs_in_pages() {
        let repo = InMemoryEvaluations::new();
        let (a, b) = (TenantId::new(), TenantId::new());
        let (a1, a2, b1) = (run(a), run(a), run(b));
        for e in [&a1, &a2, &b1] {
            repo.create(e).await.expect("stored");
        }
        assert_eq!(repo.find(a, a1.id).await.expect("read"), Some(a1.clone()));
        assert_eq!(repo.find(b, a1.id).await.expect("read"), None);
        let first = repo
            .list(a, &PageRequest::first(1).expect("page"))
            .await
            .expect("list");
        assert_eq!(first.items, vec![a1]);
        let cursor = first.next_cursor.expect("more");
        let second = repo
            .list(a, &PageRequest::first(1).expect("page").next(cursor))
            .await
            .expect("list");
        assert_eq!(second.items, vec![a2]);
        assert!(second.next_cursor.is_none());
    }
}
