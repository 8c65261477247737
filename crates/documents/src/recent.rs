//! What `GET /documents` reuses: a page of a tenant's documents is kept for
//! `documents.list_recheck_ms` ([`kernel::memo`]), so a client polling its documents while
//! they ingest does not cost a database read per request. The bound (docs/documents.md,
//! "Listing"): a change made through another process (an upload, a delete, a worker's progress)
//! shows in this process's lists within that time; a change made through this process shows at
//! once, because every write of documents, collections or jobs made through
//! [`crate::DocumentPorts::with_recheck`]'s ports forgets every kept page (the port wrappers
//! of `documents::forgetful`).
//! A single document (`GET /documents/{id}`) and everything else are read every time.

use std::sync::Arc;

use kernel::memo::Memo;
use kernel::{Page, PageRequest, TenantId};
use time::OffsetDateTime;

use crate::model::{CollectionId, Document, DocumentFilter, DocumentStatus};

/// About how many pages one process keeps.
const PAGES: usize = 256;
/// The most memory the kept pages take in all, approximately: a page's documents can carry up
/// to 16 KiB of metadata each, so pages are bounded by weight, not by count (a page heavier
/// than a sixteenth of this, 512 KiB, is not kept at all).
const TOTAL_BYTES: u64 = 8 * 1024 * 1024;

/// A page's approximate size in memory, in bytes.
fn weight(page: &Page<Document>) -> u64 {
    page.items
        .iter()
        .map(|d| {
            // The metadata's JSON text, twice over for the map's own overhead.
            let metadata = serde_json::to_vec(&d.metadata).map_or(0, |j| j.len() * 2);
            let text = d.name.len()
                + d.content_hash.len()
                + d.error.as_ref().map_or(0, String::len)
                + d.blob_key.as_str().len();
            (std::mem::size_of::<Document>() + text + metadata) as u64
        })
        .sum()
}

/// A list request: the tenant, the filter and the page.
type ListKey = (
    TenantId,
    Option<CollectionId>,
    Option<DocumentStatus>,
    PageRequest,
);

/// Pages of documents read lately ([`crate::DocumentPorts::with_recheck`]; by default it
/// keeps nothing).
#[derive(Debug, Clone)]
pub struct RecentLists(Arc<Memo<ListKey, Page<Document>>>);

impl Default for RecentLists {
    fn default() -> Self {
        Self(Arc::new(Memo::off()))
    }
}

impl RecentLists {
    /// The page for this request: reused when read less than the recheck time ago, else read
    /// with `read` (which begins at `now`).
    pub(crate) async fn page<E, F, Fut>(
        &self,
        tenant: TenantId,
        filter: &DocumentFilter,
        page: &PageRequest,
        now: OffsetDateTime,
        read: F,
    ) -> Result<Page<Document>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Page<Document>, E>>,
    {
        let key = (tenant, filter.collection_id, filter.status, page.clone());
        self.0.get_or_load(key, now, read).await
    }

    /// A memo reusing each page for `ttl`.
    pub(crate) fn new(ttl: std::time::Duration) -> Self {
        Self(Arc::new(Memo::weighed(ttl, PAGES, TOTAL_BYTES, weight)))
    }

    /// Forgets every kept page (after a write), passing `result` through.
    pub(crate) fn forget<T>(&self, result: T) -> T {
        self.0.forget_all_after(result)
    }
}
