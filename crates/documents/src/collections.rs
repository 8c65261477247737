//! The collections use cases: create, read, change (chunking, embedding model) and delete a
//! tenant's collections (knowledge bases). Admins manage them; the HTTP layer's tenant extractor
//! decides who may call what.

use kernel::audit::{self, AuditEvent};
use kernel::{ClientInfo, InvalidInput, Page, PageRequest, TenantContext};

use crate::error::DocumentsError;
use crate::model::{
    ChunkingChange, ChunkingSettings, Collection, CollectionId, CollectionName, CollectionPatch,
    CollectionStats, OcrLanguages, parse_description,
};
use crate::ports::{CollectionPorts, actor, remove_blob};

/// Collections (knowledge bases).
#[derive(Debug, Clone)]
pub struct Collections {
    ports: CollectionPorts,
}

/// A new collection, as a client asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewCollection {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Chunking settings; the default (400/40 on cl100k_base) when absent.
    pub chunking: Option<ChunkingSettings>,
    /// Embedding model; the configured default when absent.
    pub embedding_model: Option<String>,
    /// OCR languages (Tesseract codes); the configured default when absent.
    pub ocr_languages: Option<Vec<String>>,
    /// Results to rerank; `None`: off.
    pub rerank_top_n: Option<u32>,
}

/// Changes to a collection, as a client asks for them: absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct CollectionChange {
    /// New name.
    pub name: Option<String>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New chunking settings, merged over the current ones.
    pub chunking: Option<ChunkingChange>,
    /// New embedding model (`Some(None)`: back to the default).
    pub embedding_model: Option<Option<String>>,
    /// New OCR languages (`Some(None)`: back to the default).
    pub ocr_languages: Option<Option<Vec<String>>>,
    /// New reranking (`Some(None)`: off).
    pub rerank_top_n: Option<Option<u32>>,
}

impl Collections {
    /// The use cases over these ports.
    #[must_use]
    pub fn new(ports: CollectionPorts) -> Self {
        Self { ports }
    }

    /// Creates a collection.
    ///
    /// # Errors
    /// [`DocumentsError::Invalid`] naming the failing fields.
    pub async fn create(
        &self,
        ctx: &TenantContext,
        new: NewCollection,
    ) -> Result<Collection, DocumentsError> {
        let name = CollectionName::parse(&new.name);
        let description = parse_description(new.description.as_deref());
        let model = match new.embedding_model.as_deref() {
            Some(m) => self.ports.indexer.check_model(m),
            None => Ok(()),
        };
        let rerank = crate::model::check_rerank_top_n(new.rerank_top_n);
        let ocr_languages = new
            .ocr_languages
            .as_deref()
            .map(OcrLanguages::new)
            .transpose();
        let (name, description, ocr_languages) =
            match (name, description, model, rerank, ocr_languages) {
                (Ok(n), Ok(d), Ok(()), Ok(()), Ok(o)) => (n, d, o),
                (n, d, m, r, o) => {
                    let mut errors = Vec::new();
                    for e in [n.err(), d.err(), m.err(), r.err(), o.err()]
                        .into_iter()
                        .flatten()
                    {
                        errors.extend(e.0);
                    }
                    return Err(InvalidInput(errors).into());
                }
            };
        let now = self.ports.clock.now();
        Ok(self
            .ports
            .collections
            .create(Collection {
                id: CollectionId::new(),
                tenant_id: ctx.tenant_id(),
                name,
                description,
                chunking: new.chunking.unwrap_or_default(),
                embedding_model: new.embedding_model,
                ocr_languages,
                rerank_top_n: new.rerank_top_n,
                created_at: now,
                updated_at: now,
            })
            .await?)
    }

    /// The collection.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`] when the tenant has no such collection.
    pub async fn get(
        &self,
        ctx: &TenantContext,
        id: CollectionId,
    ) -> Result<Collection, DocumentsError> {
        self.ports
            .collections
            .find(ctx.tenant_id(), id)
            .await?
            .ok_or(DocumentsError::NotFound)
    }

    /// The tenant's collections, oldest first.
    ///
    /// # Errors
    /// On a foreign cursor or a storage failure.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Collection>, DocumentsError> {
        Ok(self.ports.collections.list(ctx.tenant_id(), page).await?)
    }

    /// Changes a collection. New chunking settings apply to documents ingested or reindexed
    /// afterwards; a new embedding model starts re-embedding in the background.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`], or [`DocumentsError::Invalid`] (name and description
    /// first, naming each failing field; then chunking, then the embedding model).
    pub async fn update(
        &self,
        ctx: &TenantContext,
        id: CollectionId,
        change: CollectionChange,
    ) -> Result<Collection, DocumentsError> {
        let mut errors = Vec::new();
        let name = match change.name.as_deref().map(CollectionName::parse) {
            Some(Err(e)) => {
                errors.extend(e.0);
                None
            }
            Some(Ok(n)) => Some(n),
            None => None,
        };
        let description = match change.description {
            Some(d) => match parse_description(d.as_deref()) {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            },
            None => None,
        };
        let ocr_languages = match change.ocr_languages {
            Some(Some(codes)) => match OcrLanguages::new(&codes) {
                Ok(o) => Some(Some(o)),
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            },
            Some(None) => Some(None),
            None => None,
        };
        if let Some(Err(e)) = change.rerank_top_n.map(crate::model::check_rerank_top_n) {
            errors.extend(e.0);
        }
        if !errors.is_empty() {
            return Err(InvalidInput(errors).into());
        }
        let chunking = match &change.chunking {
            Some(c) => Some(c.apply(self.get(ctx, id).await?.chunking)?),
            None => None,
        };
        let patch = CollectionPatch {
            name,
            description,
            chunking,
            embedding_model: change.embedding_model,
            ocr_languages,
            rerank_top_n: change.rerank_top_n,
        };
        if let Some(Some(model)) = &patch.embedding_model {
            self.ports.indexer.check_model(model)?;
        }
        let model_changes = patch.embedding_model.is_some();
        let collection = self
            .ports
            .collections
            .update(ctx.tenant_id(), id, patch, self.ports.clock.now())
            .await?
            .ok_or(DocumentsError::NotFound)?;
        if model_changes {
            self.ports
                .indexer
                .collection_changed(&collection)
                .await
                .map_err(|e| e.context("starting re-embedding"))?;
        }
        Ok(collection)
    }

    /// Deletes a collection with all its documents, their chunks and original files.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn delete(
        &self,
        ctx: &TenantContext,
        id: CollectionId,
        client: &ClientInfo,
    ) -> Result<(), DocumentsError> {
        let now = self.ports.clock.now();
        let keys = self
            .ports
            .collections
            .delete(ctx.tenant_id(), id, now)
            .await?
            .ok_or(DocumentsError::NotFound)?;
        for key in &keys {
            remove_blob(self.ports.blobs.as_ref(), key).await;
        }
        if let Err(e) = self
            .ports
            .indexer
            .remove_collection(ctx.tenant_id(), id)
            .await
        {
            tracing::error!(error = ?e, collection = %id, "could not remove a collection's vectors");
        }
        audit::record(
            self.ports.audit.as_ref(),
            AuditEvent {
                at: now,
                action: "documents.collection.deleted",
                actor: actor(ctx),
                tenant: Some(ctx.tenant_id()),
                target: Some(format!("{id} ({} documents)", keys.len())),
                client: client.clone(),
                access: None,
            },
        )
        .await;
        Ok(())
    }

    /// Totals of a collection.
    ///
    /// # Errors
    /// [`DocumentsError::NotFound`].
    pub async fn stats(
        &self,
        ctx: &TenantContext,
        id: CollectionId,
    ) -> Result<CollectionStats, DocumentsError> {
        self.get(ctx, id).await?;
        Ok(self.ports.collections.stats(ctx.tenant_id(), id).await?)
    }
}
