//! Chat's [`Knowledge`] port over the retrieval and documents use cases: what answers are
//! grounded in. It lives in the composition root, so chat knows only its own port.

use std::sync::Arc;

use async_trait::async_trait;
use documents::{CollectionId, Collections, DocumentId, Documents, DocumentsError};
use kernel::{PageRequest, TenantContext};
use retrieval::{MetadataFilter, Retrieval, RetrievalError, SearchMode, SearchQuery};

use chat::{Knowledge, KnowledgeError, Source};

/// Searches with [`Retrieval`] (hybrid mode) and reads documents with [`Documents`].
#[derive(Debug, Clone)]
pub struct RetrievalKnowledge {
    retrieval: Arc<Retrieval>,
    documents: Arc<Documents>,
    collections: Arc<Collections>,
}

impl RetrievalKnowledge {
    /// Over these use cases.
    #[must_use]
    pub fn new(
        retrieval: Arc<Retrieval>,
        documents: Arc<Documents>,
        collections: Arc<Collections>,
    ) -> Self {
        Self {
            retrieval,
            documents,
            collections,
        }
    }
}

/// A search failure as chat sees it.
fn from_retrieval(e: RetrievalError) -> KnowledgeError {
    match e {
        RetrievalError::Invalid(i) => KnowledgeError::Invalid(i),
        RetrievalError::NotFound => KnowledgeError::NotFound,
        RetrievalError::ProviderUnavailable(m) | RetrievalError::Rejected(m) => {
            KnowledgeError::Unavailable(m)
        }
        RetrievalError::Metering(e) => KnowledgeError::Metering(e),
        RetrievalError::Unknown(e) => KnowledgeError::Unknown(e),
    }
}

/// A documents failure as chat sees it.
fn from_documents(e: DocumentsError) -> KnowledgeError {
    match e {
        DocumentsError::NotFound => KnowledgeError::NotFound,
        DocumentsError::Invalid(i) => KnowledgeError::Invalid(i),
        other => KnowledgeError::Unknown(anyhow::Error::new(other)),
    }
}

#[async_trait]
impl Knowledge for RetrievalKnowledge {
    async fn search(
        &self,
        ctx: &TenantContext,
        question: &str,
        collections: Option<&[CollectionId]>,
        top_k: usize,
    ) -> Result<Vec<Source>, KnowledgeError> {
        let query = SearchQuery::new(
            kernel::text::head(question, retrieval::model::MAX_QUERY_CHARS),
            collections.map(<[CollectionId]>::to_vec),
            Some(u32::try_from(top_k.clamp(1, 50)).unwrap_or(8)),
            None,
            SearchMode::Hybrid,
            MetadataFilter::default(),
        )?;
        let hits = self
            .retrieval
            .search(ctx, &query)
            .await
            .map_err(from_retrieval)?;
        Ok(hits
            .into_iter()
            .enumerate()
            .map(|(i, h)| Source {
                label: format!("S{}", i + 1),
                chunk_id: h.chunk.chunk_id,
                document_id: h.chunk.document_id,
                document_name: h.chunk.document_name,
                page: h.chunk.page,
                text: h.chunk.text,
                score: h.score,
            })
            .collect())
    }

    async fn document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
        max_chars: usize,
    ) -> Result<(String, Vec<Source>), KnowledgeError> {
        let doc = self.documents.get(ctx, id).await.map_err(from_documents)?;
        let mut out = Vec::new();
        let mut chars = 0usize;
        let mut page = PageRequest::first(100)?;
        'pages: loop {
            let chunks = self
                .documents
                .chunks(ctx, id, &page)
                .await
                .map_err(from_documents)?;
            for c in chunks.items {
                if chars >= max_chars {
                    break 'pages;
                }
                chars += c.text.chars().count();
                out.push(Source {
                    label: format!("S{}", out.len() + 1),
                    chunk_id: c.id,
                    document_id: id,
                    document_name: doc.name.clone(),
                    page: c.page,
                    text: c.text,
                    score: 1.0,
                });
            }
            match chunks.next_cursor {
                Some(cursor) => page = page.next(cursor),
                None => break,
            }
        }
        Ok((doc.name, out))
    }

    async fn check_collections(
        &self,
        ctx: &TenantContext,
        ids: &[CollectionId],
    ) -> Result<(), KnowledgeError> {
        for id in ids {
            self.collections
                .get(ctx, *id)
                .await
                .map_err(from_documents)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chat::ChatError;
    use kernel::MeterError;

    use super::*;

    #[test]
    fn a_refused_search_reaches_chat_as_a_metering_error() {
        let refused = RetrievalError::Metering(MeterError::QuotaExceeded {
            resets_at: testkit::contract::documents::T0,
            limit: 100,
            used: 100,
        });
        let e = ChatError::from(from_retrieval(refused));
        assert!(
            matches!(
                e,
                ChatError::Metering(MeterError::QuotaExceeded { limit: 100, .. })
            ),
            "{e:?}"
        );
    }
}
