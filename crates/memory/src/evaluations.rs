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
