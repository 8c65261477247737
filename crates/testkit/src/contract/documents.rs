//! The [`CollectionRepository`] and [`DocumentRepository`] contracts: tenant scoping, keyset
//! pagination, duplicates, chunks, and the transactions that delete or reindex (with the jobs
//! they cancel).
//!
//! Each case takes [`DocumentPorts`] over one fresh store (the job queue is shared by every
//! tenant of a store, so cases that claim must not see each other's jobs). Times are explicit
//! values at microsecond precision, never the wall clock.

use super::CascadingOrganizations;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use documents::{
    BlobKey, ChunkDraft, ChunkingSettings, Collection, CollectionId, CollectionName,
    CollectionPatch, CollectionRepository, CollectionStats, Document, DocumentFilter, DocumentId,
    DocumentRepository, DocumentStatus, Format, Ingested, Job, JobKind, JobQueue, JobStatus,
    NewChunk, Tokenizer,
};
use kernel::{PageRequest, TenantId};
use tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository};
use time::OffsetDateTime;
use time::macros::datetime;

/// The ports of one store, as the documents domain sees it.
#[derive(Debug, Clone)]
pub struct DocumentPorts {
    /// Organizations (the tenants must exist: foreign keys on SQL).
    pub orgs: Arc<dyn OrganizationRepository>,
    /// Collections.
    pub collections: Arc<dyn CollectionRepository>,
    /// Documents and chunks.
    pub documents: Arc<dyn DocumentRepository>,
    /// The job queue.
    pub jobs: Arc<dyn JobQueue>,
}

impl DocumentPorts {
    /// Every port from one store that implements them all.
    pub fn of<S>(store: S) -> Self
    where
        S: OrganizationRepository + CollectionRepository + DocumentRepository + JobQueue + 'static,
    {
        let store = Arc::new(store);
        Self {
            orgs: store.clone(),
            collections: store.clone(),
            documents: store.clone(),
            jobs: store,
        }
    }

    /// The in-memory adapters ([`memory::InMemoryDocuments`] over
    /// [`memory::InMemoryOrganizations`]), where deleting an organization removes its
    /// documents' data as the SQL foreign keys do.
    #[must_use]
    pub fn in_memory() -> Self {
        let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
        let store = Arc::new(memory::InMemoryDocuments::new(clock.clone()));
        Self {
            orgs: Arc::new(CascadingOrganizations::new(
                memory::InMemoryOrganizations::new(clock),
                Box::new({
                    let store = store.clone();
                    move |id| store.remove_tenant(id).map_err(anyhow::Error::new)
                }),
            )),
            collections: store.clone(),
            documents: store.clone(),
            jobs: store,
        }
    }
}

/// The start of every case's timeline: a whole second, on purpose (on SQLite a whole second
/// is stored without a fraction, the case text comparison gets wrong).
pub const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

/// `T0` plus `ms` milliseconds.
#[must_use]
pub fn at_ms(ms: u64) -> OffsetDateTime {
    T0 + Duration::from_millis(ms)
}

/// Two organizations, `tenant-a` and `tenant-b`.
pub async fn two_tenants(p: &DocumentPorts) -> (TenantId, TenantId) {
    let mut ids = Vec::new();
    for slug in ["tenant-a", "tenant-b"] {
        let org = p
            .orgs
            .create(NewOrganization {
                name: OrgName::parse(slug).expect("name"),
                slug: OrgSlug::parse(slug).expect("slug"),
            })
            .await
            .expect("organization");
        ids.push(org.id);
    }
    (ids[0], ids[1])
}

/// A new collection of `tenant`.
#[must_use]
pub fn collection(tenant: TenantId, name: &str, at: OffsetDateTime) -> Collection {
    Collection {
        id: CollectionId::new(),
        tenant_id: tenant,
        name: CollectionName::parse(name).expect("name"),
        description: Some(format!("about {name}")),
        chunking: ChunkingSettings::default(),
        embedding_model: None,
        ocr_languages: None,
        rerank_top_n: None,
        created_at: at,
        updated_at: at,
    }
}

/// A new, queued document of `tenant` and its ingestion job (`run_at = at`).
#[must_use]
pub fn document(
    tenant: TenantId,
    collection: Option<CollectionId>,
    hash: &str,
    at: OffsetDateTime,
) -> (Document, Job) {
    let id = DocumentId::new();
    let job = Job::for_document(tenant, JobKind::Ingest, id, at);
    let mut metadata = serde_json::Map::new();
    metadata.insert("source".into(), serde_json::json!("contract"));
    metadata.insert("tags".into(), serde_json::json!(["a", "b"]));
    let document = Document {
        id,
        tenant_id: tenant,
        collection_id: collection,
        name: format!("{hash}.txt"),
        format: Format::Text,
        bytes: 1_000,
        content_hash: hash.to_owned(),
        pages: None,
        ocr_pages: 0,
        status: DocumentStatus::Queued,
        progress: 0.0,
        stage: None,
        done: 0,
        total: 0,
        chunks: 0,
        tokens: 0,
        error: None,
        metadata,
        job_id: Some(job.id),
        blob_key: BlobKey::for_document(tenant, id),
        created_at: at,
        updated_at: at,
    };
    (document, job)
}

/// Stores a new document (and its job); returns it.
pub async fn upload(
    p: &DocumentPorts,
    tenant: TenantId,
    collection: Option<CollectionId>,
    hash: &str,
    at: OffsetDateTime,
) -> Document {
    let (document, job) = document(tenant, collection, hash, at);
    p.documents
        .create(document.clone(), job)
        .await
        .expect("create document");
    document
}

/// `n` chunk drafts of `tokens` tokens each, ordinals from 0.
#[must_use]
pub fn drafts(n: u32, tokens: u32) -> Vec<NewChunk> {
    NewChunk::assign(
        (0..n)
            .map(|i| ChunkDraft {
                ordinal: i,
                text: format!("chunk {i}"),
                tokens,
                tokens_by: None,
                page: Some(i / 10 + 1),
                start: u64::from(i) * 100,
                end: u64::from(i) * 100 + 90,
                ocr: false,
            })
            .collect(),
    )
}

fn page(limit: u32) -> PageRequest {
    PageRequest::first(limit).expect("page")
}

/// Create, find, update, pagination (oldest first).
pub async fn collections_crud_and_pagination(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let mut made = Vec::new();
    for (i, name) in ["Handbook", "Contracts", "Research"]
        .into_iter()
        .enumerate()
    {
        let c = collection(a, name, at_ms(i as u64));
        let stored = p.collections.create(c.clone()).await.expect("create");
        assert_eq!(stored, c, "create returns what it stored");
        made.push(c);
    }
    assert_eq!(
        p.collections.find(a, made[1].id).await.expect("find"),
        Some(made[1].clone()),
        "read back equals what was written"
    );
    assert_eq!(
        p.collections
            .find(a, CollectionId::new())
            .await
            .expect("find"),
        None
    );

    let first = p.collections.list(a, &page(2)).await.expect("list");
    assert_eq!(
        first.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![made[0].id, made[1].id],
        "oldest first"
    );
    let cursor = first.next_cursor.clone().expect("a second page");
    let rest = p
        .collections
        .list(a, &page(2).next(cursor))
        .await
        .expect("list");
    assert_eq!(
        rest.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![made[2].id]
    );
    assert!(rest.next_cursor.is_none(), "the last page");

    // A full patch.
    let later = at_ms(60_000);
    let chunking = ChunkingSettings::new(256, 16, Tokenizer::O200kBase).expect("settings");
    let updated = p
        .collections
        .update(
            a,
            made[0].id,
            CollectionPatch {
                name: Some(CollectionName::parse("Staff handbook").expect("name")),
                description: Some(None),
                chunking: Some(chunking),
                embedding_model: None,
                ocr_languages: None,
                rerank_top_n: Some(Some(20)),
            },
            later,
        )
        .await
        .expect("update")
        .expect("found");
    assert_eq!(updated.name.as_str(), "Staff handbook");
    assert_eq!(updated.description, None, "Some(None) clears");
    assert_eq!(updated.chunking, chunking);
    assert_eq!(updated.rerank_top_n, Some(20));
    assert_eq!(updated.updated_at, later);
    assert_eq!(updated.created_at, made[0].created_at);
    assert_eq!(
        p.collections.find(a, made[0].id).await.expect("find"),
        Some(updated.clone()),
        "the change is stored"
    );

    // An empty patch changes only the time; absent fields stay.
    let even_later = at_ms(120_000);
    let touched = p
        .collections
        .update(a, made[0].id, CollectionPatch::default(), even_later)
        .await
        .expect("update")
        .expect("found");
    assert_eq!(touched.name, updated.name);
    assert_eq!(touched.chunking, chunking);
    assert_eq!(touched.updated_at, even_later);

    assert!(
        p.collections
            .update(a, CollectionId::new(), CollectionPatch::default(), later)
            .await
            .expect("update")
            .is_none(),
        "an unknown collection"
    );
}

/// Tenant B can neither see, change, delete nor count tenant A's collection.
pub async fn collections_are_tenant_scoped(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    let c = collection(a, "Private", T0);
    p.collections.create(c.clone()).await.expect("create");
    upload(p, a, Some(c.id), "aa", T0).await;

    assert_eq!(p.collections.find(b, c.id).await.expect("find"), None);
    assert!(
        p.collections
            .list(b, &page(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let patch = CollectionPatch {
        name: Some(CollectionName::parse("Taken over").expect("name")),
        ..CollectionPatch::default()
    };
    assert_eq!(
        p.collections
            .update(b, c.id, patch, at_ms(1))
            .await
            .expect("update"),
        None
    );
    assert_eq!(
        p.collections.stats(b, c.id).await.expect("stats"),
        CollectionStats::default()
    );
    assert_eq!(
        p.collections
            .delete(b, c.id, at_ms(1))
            .await
            .expect("delete"),
        None
    );
    assert_eq!(
        p.collections.find(a, c.id).await.expect("find"),
        Some(c.clone()),
        "A's collection is unchanged"
    );
    assert_eq!(
        p.collections.stats(a, c.id).await.expect("stats").documents,
        1,
        "and keeps its document"
    );
}

/// Stats sum the collection's documents only.
pub async fn collection_stats_sum_documents(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let c = collection(a, "Sums", T0);
    let other = collection(a, "Elsewhere", T0);
    p.collections.create(c.clone()).await.expect("create");
    p.collections.create(other.clone()).await.expect("create");
    assert_eq!(
        p.collections.stats(a, c.id).await.expect("stats"),
        CollectionStats::default(),
        "empty"
    );
    for (coll, bytes, chunks, tokens) in [
        (c.id, 100, 3, 30),
        (c.id, 5_000_000_000, 2, 4_000_000_000),
        (other.id, 7, 7, 7),
    ] {
        let (mut d, job) = document(a, Some(coll), &format!("h{bytes}"), T0);
        d.bytes = bytes;
        d.chunks = chunks;
        d.tokens = tokens;
        d.status = DocumentStatus::Ready;
        p.documents.create(d, job).await.expect("create");
    }
    // One document without a collection: counted nowhere.
    upload(p, a, None, "loose", T0).await;
    assert_eq!(
        p.collections.stats(a, c.id).await.expect("stats"),
        CollectionStats {
            documents: 2,
            chunks: 5,
            tokens: 4_000_000_030,
            bytes: 5_000_000_100,
        },
        "sums beyond 32 bits"
    );
}

/// Deleting a collection deletes its documents and chunks, cancels their jobs, and returns
/// their blob keys; other collections are untouched.
pub async fn collection_delete_takes_documents(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let c = collection(a, "Doomed", T0);
    let keep = collection(a, "Kept", T0);
    p.collections.create(c.clone()).await.expect("create");
    p.collections.create(keep.clone()).await.expect("create");
    let d1 = upload(p, a, Some(c.id), "d1", T0).await;
    let d2 = upload(p, a, Some(c.id), "d2", at_ms(1)).await;
    let kept = upload(p, a, Some(keep.id), "k", at_ms(2)).await;
    // d1 gets chunks (and its job finishes); d2's job is still queued.
    let claim = p
        .jobs
        .claim(at_ms(10), Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("a due job");
    assert_eq!(claim.job.document_id, Some(d1.id), "the oldest job first");
    assert!(
        p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: None,
                    chunks: drafts(3, 5),
                    ocr_pages: 0,
                },
                at_ms(20),
            )
            .await
            .expect("complete")
    );

    let now = at_ms(30_000);
    let keys = p
        .collections
        .delete(a, c.id, now)
        .await
        .expect("delete")
        .expect("found");
    assert_eq!(
        keys.iter().cloned().collect::<HashSet<_>>(),
        HashSet::from([d1.blob_key.clone(), d2.blob_key.clone()]),
        "the blob keys of its documents"
    );
    assert_eq!(keys.len(), 2, "each once");
    assert_eq!(p.collections.find(a, c.id).await.expect("find"), None);
    for d in [&d1, &d2] {
        assert_eq!(p.documents.find(a, d.id).await.expect("find"), None);
        assert!(
            p.documents
                .chunks(a, d.id, &page(10))
                .await
                .expect("chunks")
                .items
                .is_empty(),
            "its chunks are gone"
        );
    }
    let d2_job = p
        .jobs
        .find(a, d2.job_id.expect("job"))
        .await
        .expect("find")
        .expect("the job outlives its document");
    assert_eq!(d2_job.status, JobStatus::Canceled);
    assert_eq!(d2_job.finished_at, Some(now));
    let d1_job = p
        .jobs
        .find(a, d1.job_id.expect("job"))
        .await
        .expect("find")
        .expect("job");
    assert_eq!(
        d1_job.status,
        JobStatus::Succeeded,
        "a finished job stays as it ended"
    );
    assert_eq!(
        p.jobs
            .claim(at_ms(40_000), Duration::from_secs(60))
            .await
            .expect("claim")
            .map(|c| c.job.document_id),
        Some(Some(kept.id)),
        "only the other collection's job is left"
    );
    assert!(p.documents.find(a, kept.id).await.expect("find").is_some());
    assert!(
        p.collections
            .find(a, keep.id)
            .await
            .expect("find")
            .is_some()
    );
    assert_eq!(
        p.collections.delete(a, c.id, now).await.expect("delete"),
        None,
        "already gone"
    );
}

/// Create and find (read back equal), list newest first with filters and pages.
pub async fn documents_create_find_list(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    let c = collection(a, "Docs", T0);
    p.collections.create(c.clone()).await.expect("create");
    let mut all = Vec::new();
    for i in 0..5_u64 {
        let (mut d, job) = document(a, (i % 2 == 0).then_some(c.id), &format!("h{i}"), at_ms(i));
        if i == 3 {
            d.status = DocumentStatus::Ready;
            d.pages = Some(12);
            d.chunks = 4;
            d.tokens = 99;
            d.progress = 1.0;
        }
        p.documents
            .create(d.clone(), job.clone())
            .await
            .expect("create");
        assert_eq!(
            p.jobs.find(a, job.id).await.expect("find job"),
            Some(job),
            "the first job is stored with it"
        );
        all.push(d);
    }
    // B's documents never show up in A's lists.
    upload(p, b, None, "b", at_ms(9)).await;

    assert_eq!(
        p.documents.find(a, all[3].id).await.expect("find"),
        Some(all[3].clone()),
        "read back equals what was written, metadata included"
    );
    assert_eq!(
        p.documents.find(a, DocumentId::new()).await.expect("find"),
        None
    );

    let ids = |docs: &[Document]| docs.iter().map(|d| d.id).collect::<Vec<_>>();
    let newest_first: Vec<_> = all.iter().rev().map(|d| d.id).collect();
    let mut seen = Vec::new();
    let mut request = page(2);
    loop {
        let got = p
            .documents
            .list(a, &DocumentFilter::default(), &request)
            .await
            .expect("list");
        assert!(got.items.len() <= 2);
        seen.extend(ids(&got.items));
        match got.next_cursor {
            Some(cursor) => request = page(2).next(cursor),
            None => break,
        }
    }
    assert_eq!(seen, newest_first, "every document once, newest first");

    let in_collection = p
        .documents
        .list(
            a,
            &DocumentFilter {
                collection_id: Some(c.id),
                status: None,
            },
            &page(10),
        )
        .await
        .expect("list");
    assert_eq!(
        ids(&in_collection.items),
        vec![all[4].id, all[2].id, all[0].id]
    );
    let ready = p
        .documents
        .list(
            a,
            &DocumentFilter {
                collection_id: None,
                status: Some(DocumentStatus::Ready),
            },
            &page(10),
        )
        .await
        .expect("list");
    assert_eq!(ids(&ready.items), vec![all[3].id]);
    let ready_in_collection = p
        .documents
        .list(
            a,
            &DocumentFilter {
                collection_id: Some(c.id),
                status: Some(DocumentStatus::Ready),
            },
            &page(10),
        )
        .await
        .expect("list");
    assert!(ready_in_collection.items.is_empty(), "both filters apply");

    let foreign = page(2).next(kernel::Cursor::after("not-an-id"));
    assert!(
        matches!(
            p.documents
                .list(a, &DocumentFilter::default(), &foreign)
                .await,
            Err(documents::StoreError::Invalid(_))
        ),
        "a cursor not made by this list is refused"
    );
}

/// Tenant B can neither see, list chunks of, delete nor reindex tenant A's document.
pub async fn documents_are_tenant_scoped(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    let d = upload(p, a, None, "secret", T0).await;
    assert_eq!(p.documents.find(b, d.id).await.expect("find"), None);
    assert_eq!(
        p.documents
            .find_duplicate(b, None, "secret")
            .await
            .expect("dup"),
        None
    );
    assert!(
        p.documents
            .list(b, &DocumentFilter::default(), &page(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert_eq!(
        p.documents.delete(b, d.id, at_ms(1)).await.expect("delete"),
        None
    );
    let job = Job::for_document(b, JobKind::Reindex, d.id, at_ms(1));
    assert_eq!(
        p.documents.reindex(b, d.id, job).await.expect("reindex"),
        None
    );
    assert_eq!(
        p.jobs
            .find(b, d.job_id.expect("job"))
            .await
            .expect("find job"),
        None,
        "jobs are scoped too"
    );
    assert_eq!(
        p.documents.find(a, d.id).await.expect("find"),
        Some(d.clone()),
        "A's document is unchanged"
    );
    let a_job = p
        .jobs
        .find(a, d.job_id.expect("job"))
        .await
        .expect("find")
        .expect("job");
    assert_eq!(a_job.status, JobStatus::Queued, "and its job still queued");
}

/// A duplicate is the same content in the same collection (or in none), not failed, newest.
pub async fn duplicates(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    let c1 = collection(a, "One", T0);
    let c2 = collection(a, "Two", T0);
    p.collections.create(c1.clone()).await.expect("create");
    p.collections.create(c2.clone()).await.expect("create");
    let older = upload(p, a, Some(c1.id), "same", T0).await;
    let newer = upload(p, a, Some(c1.id), "same", at_ms(1)).await;
    let loose = upload(p, a, None, "same", at_ms(2)).await;
    upload(p, b, None, "only-b", at_ms(3)).await;

    let found = p
        .documents
        .find_duplicate(a, Some(c1.id), "same")
        .await
        .expect("dup")
        .expect("a duplicate");
    assert_eq!(found.id, newer.id, "the newest");
    assert_ne!(found.id, older.id);
    assert_eq!(
        p.documents
            .find_duplicate(a, None, "same")
            .await
            .expect("dup")
            .map(|d| d.id),
        Some(loose.id),
        "no collection matches no collection only"
    );
    assert_eq!(
        p.documents
            .find_duplicate(a, Some(c2.id), "same")
            .await
            .expect("dup"),
        None,
        "another collection"
    );
    assert_eq!(
        p.documents
            .find_duplicate(a, Some(c1.id), "other")
            .await
            .expect("dup"),
        None,
        "other content"
    );
    assert_eq!(
        p.documents
            .find_duplicate(a, None, "only-b")
            .await
            .expect("dup"),
        None,
        "another tenant"
    );

    // A failed upload is no duplicate: the same file may be sent again.
    let (mut failed, job) = document(a, Some(c2.id), "broken", at_ms(5));
    failed.status = DocumentStatus::Failed;
    failed.error = Some("the file could not be read".into());
    p.documents.create(failed, job).await.expect("create");
    assert_eq!(
        p.documents
            .find_duplicate(a, Some(c2.id), "broken")
            .await
            .expect("dup"),
        None,
        "failed documents are no duplicates"
    );
}

/// Chunks page in ordinal order, the cursor being the ordinal.
pub async fn chunks_page_by_ordinal(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    let d = upload(p, a, None, "long", T0).await;
    let claim = p
        .jobs
        .claim(at_ms(1), Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("due");
    // 250 chunks: more than one insert batch.
    assert!(
        p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: Some(25),
                    chunks: drafts(250, 7),
                    ocr_pages: 0,
                },
                at_ms(2),
            )
            .await
            .expect("complete")
    );
    let mut ordinals = Vec::new();
    let mut request = page(100);
    let mut pages = 0;
    loop {
        let got = p.documents.chunks(a, d.id, &request).await.expect("chunks");
        pages += 1;
        for chunk in &got.items {
            assert_eq!(chunk.document_id, d.id);
            assert_eq!(chunk.text, format!("chunk {}", chunk.ordinal));
            assert_eq!(chunk.tokens, 7);
            assert_eq!(chunk.page, Some(chunk.ordinal / 10 + 1));
            assert_eq!(
                (chunk.start, chunk.end),
                (
                    u64::from(chunk.ordinal) * 100,
                    u64::from(chunk.ordinal) * 100 + 90
                )
            );
        }
        ordinals.extend(got.items.iter().map(|c| c.ordinal));
        match got.next_cursor {
            Some(cursor) => request = page(100).next(cursor),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        ordinals,
        (0..250).collect::<Vec<_>>(),
        "in order, each once"
    );
    let ids: BTreeSet<_> = p
        .documents
        .chunks(a, d.id, &page(100))
        .await
        .expect("chunks")
        .items
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids.len(), 100, "every chunk has its own id");

    assert!(
        p.documents
            .chunks(b, d.id, &page(10))
            .await
            .expect("chunks")
            .items
            .is_empty(),
        "another tenant sees no chunks"
    );
    let bad = page(10).next(kernel::Cursor::after(uuid::Uuid::now_v7().to_string()));
    assert!(
        matches!(
            p.documents.chunks(a, d.id, &bad).await,
            Err(documents::StoreError::Invalid(_))
        ),
        "an id cursor is no ordinal"
    );
}

/// Deleting a document returns its blob key, removes its chunks and cancels its jobs.
pub async fn document_delete(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let d = upload(p, a, None, "gone", T0).await;
    let claim = p
        .jobs
        .claim(at_ms(1), Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("due");
    assert!(
        p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: None,
                    chunks: drafts(4, 3),
                    ocr_pages: 0,
                },
                at_ms(2),
            )
            .await
            .expect("complete")
    );
    // A reindex queues a job that is still unfinished when the document goes.
    let again = Job::for_document(a, JobKind::Reindex, d.id, at_ms(3));
    p.documents
        .reindex(a, d.id, again.clone())
        .await
        .expect("reindex")
        .expect("found");

    let now = at_ms(5_000);
    assert_eq!(
        p.documents.delete(a, d.id, now).await.expect("delete"),
        Some(d.blob_key.clone())
    );
    assert_eq!(p.documents.find(a, d.id).await.expect("find"), None);
    assert!(
        p.documents
            .chunks(a, d.id, &page(10))
            .await
            .expect("chunks")
            .items
            .is_empty()
    );
    let cancelled = p
        .jobs
        .find(a, again.id)
        .await
        .expect("find")
        .expect("the job outlives the document");
    assert_eq!(cancelled.status, JobStatus::Canceled);
    assert_eq!(cancelled.finished_at, Some(now));
    assert_eq!(
        p.jobs
            .find(a, claim.job.id)
            .await
            .expect("find")
            .expect("job")
            .status,
        JobStatus::Succeeded,
        "finished jobs are not cancelled"
    );
    assert!(
        p.jobs
            .claim(at_ms(10_000), Duration::from_secs(60))
            .await
            .expect("claim")
            .is_none(),
        "nothing left to run"
    );
    assert_eq!(
        p.documents.delete(a, d.id, now).await.expect("delete"),
        None,
        "already gone"
    );
}

/// Reindexing cancels the unfinished job, queues the new one and resets the document.
pub async fn reindex(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let d = upload(p, a, None, "again", T0).await;
    let first = d.job_id.expect("job");
    // The first run failed for good.
    let claim = p
        .jobs
        .claim(at_ms(1), Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("due");
    assert!(
        p.jobs
            .fail(
                &claim,
                "the extractor is unavailable",
                documents::Failure::Final(JobStatus::Dead),
                at_ms(2),
            )
            .await
            .expect("fail")
    );
    let second = Job::for_document(a, JobKind::Reindex, d.id, at_ms(3));
    let doc = p
        .documents
        .reindex(a, d.id, second.clone())
        .await
        .expect("reindex")
        .expect("found");
    assert_eq!(doc.status, DocumentStatus::Queued);
    assert_eq!(doc.error, None);
    assert!(doc.progress.abs() < f32::EPSILON);
    assert_eq!(doc.job_id, Some(second.id));
    assert_eq!(doc.updated_at, at_ms(3));
    assert_eq!(
        p.documents.find(a, d.id).await.expect("find"),
        Some(doc.clone())
    );
    assert_eq!(
        p.jobs
            .find(a, first)
            .await
            .expect("find")
            .expect("job")
            .status,
        JobStatus::Dead,
        "a finished job keeps its end"
    );
    assert_eq!(
        p.jobs.find(a, second.id).await.expect("find"),
        Some(second.clone()),
        "the new job is queued as given"
    );

    // Reindexing again before the second job ran cancels it.
    let third = Job::for_document(a, JobKind::Reindex, d.id, at_ms(4));
    p.documents
        .reindex(a, d.id, third.clone())
        .await
        .expect("reindex")
        .expect("found");
    let cancelled = p.jobs.find(a, second.id).await.expect("find").expect("job");
    assert_eq!(cancelled.status, JobStatus::Canceled);
    assert_eq!(cancelled.finished_at, Some(at_ms(4)));
    let next = p
        .jobs
        .claim(at_ms(10), Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(next.job.id, third.id, "only the newest job runs");
    assert!(
        p.jobs
            .claim(at_ms(10), Duration::from_secs(60))
            .await
            .expect("claim")
            .is_none()
    );

    let stray = DocumentId::new();
    assert_eq!(
        p.documents
            .reindex(
                a,
                stray,
                Job::for_document(a, JobKind::Reindex, stray, at_ms(5))
            )
            .await
            .expect("reindex"),
        None,
        "an unknown document"
    );
}

/// Deleting an organization deletes its collections, documents, chunks and jobs (foreign keys
/// cascade, on SQLite too); another tenant keeps everything.
pub async fn organization_delete_takes_everything(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    let c = collection(a, "Gone with A", T0);
    p.collections.create(c.clone()).await.expect("create");
    let chunked = upload(p, a, Some(c.id), "chunked", T0).await;
    let queued = upload(p, a, None, "queued", at_ms(1)).await;
    let kept = upload(p, b, None, "kept", at_ms(2)).await;
    let claim = p
        .jobs
        .claim(at_ms(3), Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(claim.job.document_id, Some(chunked.id));
    assert!(
        p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: None,
                    chunks: drafts(3, 2),
                    ocr_pages: 0,
                },
                at_ms(4),
            )
            .await
            .expect("complete")
    );

    assert!(p.orgs.delete(a).await.expect("delete organization"));
    assert_eq!(p.collections.find(a, c.id).await.expect("find"), None);
    for d in [&chunked, &queued] {
        assert_eq!(p.documents.find(a, d.id).await.expect("find"), None);
        assert_eq!(
            p.jobs
                .find(a, d.job_id.expect("job"))
                .await
                .expect("find job"),
            None
        );
    }
    assert!(
        p.documents
            .chunks(a, chunked.id, &page(10))
            .await
            .expect("chunks")
            .items
            .is_empty()
    );
    assert_eq!(
        p.documents.find(b, kept.id).await.expect("find"),
        Some(kept.clone())
    );
    let next = p
        .jobs
        .claim(at_ms(5), Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("B's job is still queued");
    assert_eq!(next.job.document_id, Some(kept.id));
    assert!(
        p.jobs
            .claim(at_ms(5), Duration::from_secs(60))
            .await
            .expect("claim")
            .is_none(),
        "A's queued job went with A"
    );
}

/// `create_within` stores a document only while the tenant's bytes stay within the limit,
/// atomically for concurrent callers; `storage_used` counts every document of the tenant and
/// forgets deleted ones.
pub async fn storage_limit_holds_under_concurrency(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    // Each document is 1,000 bytes; the limit fits 3 of 10 racing inserts.
    let racers: Vec<_> = (0..10_u64)
        .map(|i| {
            let docs = p.documents.clone();
            let (d, job) = document(a, None, &format!("r{i}"), at_ms(i));
            tokio::spawn(async move { docs.create_within(d, job, Some(3_500)).await })
        })
        .collect();
    let mut created = 0;
    for racer in racers {
        match racer.await.expect("racer task").expect("create_within") {
            documents::Stored::Created => created += 1,
            documents::Stored::OverLimit { used } => assert!(used >= 3_000, "{used}"),
        }
    }
    assert_eq!(created, 3, "exactly three fit");
    assert_eq!(p.documents.storage_used(a).await.expect("used"), 3_000);
    assert_eq!(
        p.documents.storage_used(b).await.expect("used"),
        0,
        "B's own"
    );
    let (d, job) = document(b, None, "b", at_ms(100));
    assert_eq!(
        p.documents
            .create_within(d, job, Some(1_000))
            .await
            .expect("create_within"),
        documents::Stored::Created,
        "B's limit counts only B's documents"
    );
    let first = p
        .documents
        .list(
            a,
            &DocumentFilter::default(),
            &PageRequest::first(10).expect("page"),
        )
        .await
        .expect("list")
        .items
        .remove(0);
    p.documents
        .delete(a, first.id, at_ms(200))
        .await
        .expect("delete")
        .expect("deleted");
    assert_eq!(
        p.documents.storage_used(a).await.expect("used"),
        2_000,
        "freed"
    );
}
