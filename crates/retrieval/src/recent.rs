//! What a search reuses: the check that a named collection is the tenant's (with its
//! `rerank_top_n`) and the list of the searched scopes' embedding spaces are kept for
//! `auth.recheck_ms` ([`kernel::memo`]), so a question does not cost two database reads that
//! almost never change. `RetrievalPorts::with_recheck` turns it on (off by default).
//!
//! The bound (docs/security.md, "Revocation"; docs/retrieval.md, "What a search reuses"): a
//! collection created, changed or deleted, or a space created, activated, retired or dropped,
//! through **another process** shows in this process's searches within the recheck time; a
//! change made **through this process** shows at once, because every write of collections or
//! spaces through these ports forgets everything kept (the port wrappers below; the
//! composition root gives documents the same collections port, so a delete through
//! `documents::Collections` forgets too). What a search shows is never kept: the chunks are
//! read back every time, so a deleted collection's or document's text is never served from
//! here; within the bound a search of a collection deleted elsewhere finds nothing rather
//! than answering 404. Keys carry the tenant: another organization naming the same ids reads
//! its own.

use std::sync::Arc;

use async_trait::async_trait;
use documents::{CollectionId, CollectionRepository, ForgetOnWrite, StoreError};
use kernel::TenantId;
use kernel::memo::Memo;
use time::OffsetDateTime;

use crate::model::{Space, SpaceId};
use crate::ports::{IndexError, SpaceRepository};

/// About how many entries each memo keeps.
const CAPACITY: usize = 4_096;

/// A spaces list request: the tenant and the scopes (`None`: every scope).
type SpacesKey = (TenantId, Option<Vec<Option<CollectionId>>>);

struct Memos {
    /// (tenant, collection) → its `rerank_top_n`, or `None` when it is not the tenant's.
    collections: Memo<(TenantId, CollectionId), Option<Option<u32>>>,
    /// (tenant, scopes) → the non-retired spaces.
    spaces: Memo<SpacesKey, Vec<Space>>,
}

/// The reads a search reuses (`RetrievalPorts::with_recheck`; by default it keeps
/// nothing). Clones share the memos.
#[derive(Clone)]
pub struct RecentScopes(Arc<Memos>);

impl std::fmt::Debug for RecentScopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecentScopes").field(&self.0.spaces).finish()
    }
}

impl Default for RecentScopes {
    fn default() -> Self {
        Self::new(std::time::Duration::ZERO)
    }
}

impl RecentScopes {
    fn new(ttl: std::time::Duration) -> Self {
        Self(Arc::new(Memos {
            collections: Memo::new(ttl, CAPACITY),
            spaces: Memo::new(ttl, CAPACITY),
        }))
    }

    /// Forgets everything kept (after a write), passing `result` through.
    fn forget<T>(&self, result: T) -> T {
        self.forget_all();
        result
    }
}

impl ForgetOnWrite for RecentScopes {
    fn forget_all(&self) {
        self.0.collections.forget_all();
        self.0.spaces.forget_all();
    }
}

impl RecentScopes {
    /// Memos that keep reads for `ttl` (0: read every time).
    pub(crate) fn with_ttl(ttl: std::time::Duration) -> Self {
        Self::new(ttl)
    }

    /// `inner`, forgetting everything kept here on every write through it.
    pub(crate) fn forgetful_collections(
        &self,
        inner: Arc<dyn CollectionRepository>,
    ) -> Arc<dyn CollectionRepository> {
        documents::forgetting_collections(inner, Arc::new(self.clone()))
    }

    /// `inner`, forgetting everything kept here on every write through it.
    pub(crate) fn forgetful_spaces(
        &self,
        inner: Arc<dyn SpaceRepository>,
    ) -> Arc<dyn SpaceRepository> {
        Arc::new(ForgetfulSpaces {
            inner,
            recent: self.clone(),
        })
    }

    /// Whether `collection` is the tenant's: its `rerank_top_n` (`Some`), or `None` when it is
    /// not; read from `collections` at most once per recheck time.
    pub(crate) async fn collection(
        &self,
        collections: &dyn CollectionRepository,
        tenant: TenantId,
        collection: CollectionId,
        now: OffsetDateTime,
    ) -> Result<Option<Option<u32>>, StoreError> {
        self.0
            .collections
            .get_or_load((tenant, collection), now, || async {
                Ok(collections
                    .find(tenant, collection)
                    .await?
                    .map(|c| c.rerank_top_n))
            })
            .await
    }

    /// The non-retired spaces of these scopes of the tenant ([`SpaceRepository::list`]), read
    /// from `spaces` at most once per recheck time.
    pub(crate) async fn spaces(
        &self,
        spaces: &dyn SpaceRepository,
        tenant: TenantId,
        scopes: Option<&[Option<CollectionId>]>,
        now: OffsetDateTime,
    ) -> Result<Vec<Space>, IndexError> {
        self.0
            .spaces
            .get_or_load((tenant, scopes.map(<[_]>::to_vec)), now, || {
                spaces.list(tenant, scopes)
            })
            .await
    }
}

/// Spaces storage that forgets every kept read on every write.
#[derive(Debug)]
struct ForgetfulSpaces {
    inner: Arc<dyn SpaceRepository>,
    recent: RecentScopes,
}

#[async_trait]
impl SpaceRepository for ForgetfulSpaces {
    async fn list(
        &self,
        tenant: TenantId,
        scopes: Option<&[Option<CollectionId>]>,
    ) -> Result<Vec<Space>, IndexError> {
        self.inner.list(tenant, scopes).await
    }
    async fn ensure(&self, space: Space) -> Result<Space, IndexError> {
        self.recent.forget(self.inner.ensure(space).await)
    }
    async fn activate(&self, id: SpaceId) -> Result<bool, IndexError> {
        self.recent.forget(self.inner.activate(id).await)
    }
    async fn claim_building(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<(Space, uuid::Uuid)>, IndexError> {
        self.inner.claim_building(now, lease).await
    }
    async fn renew(
        &self,
        id: SpaceId,
        lease: uuid::Uuid,
        until: OffsetDateTime,
    ) -> Result<bool, IndexError> {
        self.inner.renew(id, lease, until).await
    }
    async fn retired(&self, limit: usize) -> Result<Vec<Space>, IndexError> {
        self.inner.retired(limit).await
    }
    async fn delete(&self, id: SpaceId) -> Result<(), IndexError> {
        self.recent.forget(self.inner.delete(id).await)
    }
    async fn active_not_on(
        &self,
        model: &crate::model::EmbeddingModel,
        limit: usize,
    ) -> Result<Vec<Space>, IndexError> {
        self.inner.active_not_on(model, limit).await
    }
}
