//! The indexing side of ingestion: [`Indexer`], the `documents::ChunkIndexer` that embeds a
//! document's chunks into every space of its scope.

use documents::{
    ChunkDraft, ChunkId, ChunkIndexer, Collection, CollectionId, Document, DocumentId,
    IndexFailure, NewChunk,
};
use kernel::{InvalidInput, TenantId};

use crate::embedding::RetrievalPorts;
use crate::model::{Space, SpaceStatus};

/// The indexing side of ingestion: embeds a document's chunks into every space of its scope
/// (the active one, and the one being built when the model is changing).
#[derive(Debug, Clone)]
pub struct Indexer {
    ports: RetrievalPorts,
    batch: usize,
}

impl Indexer {
    /// Chunks per embedding call.
    pub const DEFAULT_BATCH: usize = 64;

    /// The indexer over these ports.
    #[must_use]
    pub fn new(ports: RetrievalPorts) -> Self {
        Self {
            ports,
            batch: Self::DEFAULT_BATCH,
        }
    }

    /// The spaces a document of this scope is written to, creating the active one on first
    /// use.
    async fn spaces_for(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
    ) -> Result<Vec<Space>, IndexFailure> {
        let unavailable = |e: &dyn std::fmt::Display| IndexFailure::Unavailable(format!("{e}"));
        let mut spaces = self
            .ports
            .spaces
            .list(tenant, Some(&[collection]))
            .await
            .map_err(|e| unavailable(&e))?;
        if !spaces.iter().any(|s| s.status == SpaceStatus::Active) {
            let Some(model) = self
                .ports
                .desired_model(tenant, collection)
                .await
                .map_err(|e| unavailable(&e))?
            else {
                // The collection is gone: the job will see its document gone too.
                return Ok(Vec::new());
            };
            let space = Space::new(
                tenant,
                collection,
                model,
                SpaceStatus::Active,
                self.ports.clock.now(),
            );
            let active = self
                .ports
                .spaces
                .ensure(space)
                .await
                .map_err(|e| unavailable(&e))?;
            spaces.retain(|s| s.id != active.id);
            spaces.push(active);
        }
        Ok(spaces)
    }
}

#[async_trait::async_trait]
impl ChunkIndexer for Indexer {
    fn batch_size(&self) -> usize {
        self.batch
    }

    fn check_model(&self, model: &str) -> Result<(), InvalidInput> {
        match self.ports.embedders.get(model) {
            Some(_) => Ok(()),
            None => Err(self.ports.embedders.unknown("embedding_model", model)),
        }
    }

    async fn index(&self, document: &Document, chunks: &[NewChunk]) -> Result<(), IndexFailure> {
        let spaces = self
            .spaces_for(document.tenant_id, document.collection_id)
            .await?;
        let items: Vec<(ChunkId, DocumentId, &str)> = chunks
            .iter()
            .map(|c| (c.id, document.id, c.draft.text.as_str()))
            .collect();
        let counted = ChunkDraft::counted(chunks.iter().map(|c| &c.draft));
        for space in &spaces {
            self.ports
                .embed_into(space, &items, counted, format!("document:{}", document.id))
                .await?;
        }
        Ok(())
    }

    async fn finish(&self, document: &Document, chunks: &[NewChunk]) -> Result<(), IndexFailure> {
        let spaces = self
            .spaces_for(document.tenant_id, document.collection_id)
            .await?;
        let ids: Vec<ChunkId> = chunks.iter().map(|c| c.id).collect();
        for space in &spaces {
            let missing = self
                .ports
                .vectors
                .missing(space, &ids)
                .await
                .map_err(|e| IndexFailure::Unavailable(e.to_string()))?;
            if missing.is_empty() {
                continue;
            }
            let missed: Vec<&NewChunk> =
                chunks.iter().filter(|c| missing.contains(&c.id)).collect();
            for part in missed.chunks(self.batch.max(1)) {
                let items: Vec<(ChunkId, DocumentId, &str)> = part
                    .iter()
                    .map(|c| (c.id, document.id, c.draft.text.as_str()))
                    .collect();
                let counted = ChunkDraft::counted(part.iter().map(|c| &c.draft));
                self.ports
                    .embed_into(space, &items, counted, format!("document:{}", document.id))
                    .await?;
            }
        }
        self.ports
            .vectors
            .retain(document.tenant_id, document.id, &ids)
            .await
            .map_err(|e| IndexFailure::Unavailable(e.to_string()))
    }

    async fn remove_document(
        &self,
        tenant: TenantId,
        document: DocumentId,
    ) -> Result<(), anyhow::Error> {
        Ok(self.ports.vectors.retain(tenant, document, &[]).await?)
    }

    async fn remove_collection(
        &self,
        tenant: TenantId,
        collection: CollectionId,
    ) -> Result<(), anyhow::Error> {
        for space in self
            .ports
            .spaces
            .list(tenant, Some(&[Some(collection)]))
            .await?
        {
            self.ports.vectors.drop_space(&space).await?;
            self.ports.spaces.delete(space.id).await?;
        }
        Ok(())
    }

    async fn collection_changed(&self, collection: &Collection) -> Result<(), anyhow::Error> {
        let model = self
            .ports
            .model_named(collection.embedding_model.as_deref());
        let spaces = self
            .ports
            .spaces
            .list(collection.tenant_id, Some(&[Some(collection.id)]))
            .await?;
        let Some(active) = spaces.iter().find(|s| s.status == SpaceStatus::Active) else {
            // Nothing indexed yet: the first document creates the space with the new model.
            return Ok(());
        };
        if active.model == model && !spaces.iter().any(|s| s.status == SpaceStatus::Building) {
            return Ok(());
        }
        let space = self
            .ports
            .spaces
            .ensure(Space::new(
                collection.tenant_id,
                Some(collection.id),
                model,
                SpaceStatus::Building,
                self.ports.clock.now(),
            ))
            .await?;
        tracing::info!(
            collection = %collection.id,
            space = %space.id,
            model = %space.model,
            status = space.status.as_str(),
            "collection embedding model changed"
        );
        Ok(())
    }
}
