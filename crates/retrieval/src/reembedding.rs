//! Re-embedding in the background: [`Reembedder`] fills the `building` space of a collection
//! whose model changed from the stored chunks, under a lease, then activates it.

use std::time::Duration;

use documents::{ChunkId, DocumentId};
use tracing::Instrument as _;

use crate::embedding::RetrievalPorts;
use crate::indexer::Indexer;
use crate::model::{Space, SpaceStatus};

/// What one re-embedding run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReembedOutcome {
    /// The space is complete and now active.
    Activated {
        /// Chunks embedded by this run.
        embedded: usize,
    },
    /// The lease was lost or the space retired meanwhile; the run stopped.
    Stopped,
}

/// Re-embeds collections whose model changed, in the background: fills a `building` space
/// from the stored chunks while search keeps using the active one, then cuts over.
#[derive(Debug, Clone)]
pub struct Reembedder {
    ports: RetrievalPorts,
    lease: Duration,
    batch: usize,
}

impl Reembedder {
    /// The re-embedder over these ports, holding a space for `lease` between heartbeats.
    #[must_use]
    pub fn new(ports: RetrievalPorts, lease: Duration) -> Self {
        Self {
            ports,
            lease,
            batch: Indexer::DEFAULT_BATCH,
        }
    }

    /// Starts re-embedding every scope that follows the default model but is embedded with
    /// another (the configured default changed); answers how many began.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn follow_default_model(&self) -> Result<usize, anyhow::Error> {
        let model = self.ports.embedders.default_embedder().model().clone();
        let stale = self.ports.spaces.active_not_on(&model, 1_000).await?;
        let mut started = 0;
        for space in stale {
            let building = self
                .ports
                .spaces
                .ensure(Space::new(
                    space.tenant_id,
                    space.collection_id,
                    model.clone(),
                    SpaceStatus::Building,
                    self.ports.clock.now(),
                ))
                .await?;
            if building.status == SpaceStatus::Building {
                started += 1;
            }
        }
        Ok(started)
    }

    /// Starts building the vectors of `scopes` of `tenant` from their stored chunks (an
    /// imported organization: its rows arrive without vectors): a `building` space per scope
    /// under the model it should use, which [`Reembedder::run_next`] fills and activates.
    /// Answers how many began.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn rebuild(
        &self,
        tenant: kernel::TenantId,
        scopes: &[Option<documents::CollectionId>],
    ) -> Result<usize, anyhow::Error> {
        let mut started = 0;
        for scope in scopes {
            let Some(model) = self.ports.desired_model(tenant, *scope).await? else {
                continue;
            };
            let space = self
                .ports
                .spaces
                .ensure(Space::new(
                    tenant,
                    *scope,
                    model,
                    SpaceStatus::Building,
                    self.ports.clock.now(),
                ))
                .await?;
            if space.status == SpaceStatus::Building {
                started += 1;
            }
        }
        Ok(started)
    }

    /// Drops the vectors of retired spaces; answers how many were dropped.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn drop_retired(&self) -> Result<usize, anyhow::Error> {
        let retired = self.ports.spaces.retired(16).await?;
        for space in &retired {
            self.ports.vectors.drop_space(space).await?;
            self.ports.spaces.delete(space.id).await?;
        }
        Ok(retired.len())
    }

    /// Takes one building space and fills it to the end, then activates it; `Ok(None)` when
    /// no space is building.
    ///
    /// # Errors
    /// When storage or the provider fails (the lease then expires and the next run resumes:
    /// what was embedded is kept).
    pub async fn run_next(&self) -> Result<Option<ReembedOutcome>, anyhow::Error> {
        let now = self.ports.clock.now();
        let Some((space, lease)) = self.ports.spaces.claim_building(now, self.lease).await? else {
            return Ok(None);
        };
        let span = tracing::info_span!("reembed", space = %space.id, tenant = %space.tenant_id, model = %space.model);
        self.fill(space, lease).instrument(span).await.map(Some)
    }

    async fn fill(&self, space: Space, lease: uuid::Uuid) -> Result<ReembedOutcome, anyhow::Error> {
        let mut after = None;
        let mut embedded = 0usize;
        loop {
            let page = self
                .ports
                .catalog
                .scan(space.tenant_id, space.collection_id, after, 256)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.chunk_id);
            let ids: Vec<ChunkId> = page.iter().map(|c| c.chunk_id).collect();
            let missing = self.ports.vectors.missing(&space, &ids).await?;
            let items: Vec<(ChunkId, DocumentId, &str)> = page
                .iter()
                .filter(|c| missing.contains(&c.chunk_id))
                .map(|c| (c.chunk_id, c.document_id, c.text.as_str()))
                .collect();
            for part in items.chunks(self.batch.max(1)) {
                self.ports
                    .embed_into(&space, part, None, format!("reembed:{}", space.id))
                    .await
                    .map_err(|e| anyhow::anyhow!("re-embedding: {e}"))?;
                embedded += part.len();
            }
            let until = self.ports.clock.now() + self.lease;
            if !self.ports.spaces.renew(space.id, lease, until).await? {
                return Ok(ReembedOutcome::Stopped);
            }
        }
        if !self.ports.spaces.activate(space.id).await? {
            return Ok(ReembedOutcome::Stopped);
        }
        tracing::info!(
            embedded,
            "re-embedding complete; the collection now searches the new space"
        );
        self.drop_retired().await?;
        Ok(ReembedOutcome::Activated { embedded })
    }
}
