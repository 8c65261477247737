//! The metering hooks of chat and retrieval (`kernel::Meter`), over the in-memory adapters,
//! the local models and a recording meter: answers, completions, AI tasks, `/embeddings`,
//! search and indexing each reserve before their provider is called and settle exactly once
//! with what the call used; a refused reservation calls nothing and stores nothing; stream
//! slots are given back on every path. Nothing sleeps: background settlements are awaited
//! through the meter's notifications.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chat::{
    CallEvent, Chat, ChatError, ChatModel, ChatPorts, ChatRequest, ChatSettings, CompletionInput,
    Knowledge, KnowledgeError, MessageRole, ModelError, ModelStream, PromptMessage, PromptRole,
    SessionFields, Source, SummaryStyle, TaskInput,
};
use documents::{ChunkDraft, ChunkId, ChunkIndexer as _, CollectionId, DocumentId, IndexFailure};
use kernel::{
    Meter, MeterError, MeterScope, PageRequest, Principal, Reservation, Role, StreamSlot,
    SystemClock, TenantContext, TenantId, Tokens, UsageKind, UserId,
};
use local_ai::{LOCAL_ANSWERER_MODEL, LocalAnswerer, LocalEmbedder};
use memory::{InMemoryChatStore, InMemoryDocuments, InMemorySpaces};
use retrieval::{
    Candidate, EmbedError, Embedder, Embedders, EmbeddingModel, Embeddings, IndexError, Indexer,
    MetadataFilter, Retrieval, RetrievalError, RetrievalPorts, SearchMode, SearchQuery, Space,
    SpaceStatus, VectorEntry, VectorIndex, embedding_token_bound,
};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::Notify;

const RESETS_AT: OffsetDateTime = datetime!(2026-12-01 00:00:00 UTC);

const LEASE: &str = "The tenant pays a monthly rent of 1,200 euros to the landlord on the \
first day of each month. The rent rises by two percent every year on the first of April. The \
landlord keeps a security deposit of 3,600 euros in a separate bank account.";

/// One settled (or released) reservation.
#[derive(Debug, Clone, PartialEq)]
struct Settled {
    scope: MeterScope,
    reserved: u64,
    used: Tokens,
}

#[derive(Debug, Default)]
struct MeterState {
    /// Every reservation asked for, refused or not, with its tokens.
    asked: Vec<(MeterScope, u64)>,
    settled: Vec<Settled>,
    refuse: Option<UsageKind>,
    slots_opened: usize,
    open_slots: i64,
}

/// A meter that records everything, refuses one kind of call with `QuotaExceeded` when told
/// to, and wakes its waiters on every settlement and closed slot.
#[derive(Debug, Default)]
struct RecordingMeter {
    state: Mutex<MeterState>,
    changed: Notify,
}

impl RecordingMeter {
    fn state<T>(&self, f: impl FnOnce(&mut MeterState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn refuse(&self, kind: UsageKind) {
        self.state(|s| s.refuse = Some(kind));
    }

    fn asked(&self) -> Vec<(MeterScope, u64)> {
        self.state(|s| s.asked.clone())
    }

    fn settled(&self) -> Vec<Settled> {
        self.state(|s| s.settled.clone())
    }

    fn open_slots(&self) -> i64 {
        self.state(|s| s.open_slots)
    }

    fn slots_opened(&self) -> usize {
        self.state(|s| s.slots_opened)
    }

    /// Waits until `done` holds; fails after 10 s instead of hanging.
    async fn wait_for(&self, done: impl Fn(&Self) -> bool) {
        let wait = async {
            while !done(self) {
                self.changed.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the meter never saw it");
    }
}

#[async_trait]
impl Meter for RecordingMeter {
    async fn reserve(&self, scope: MeterScope, tokens: u64) -> Result<Reservation, MeterError> {
        let refused = self.state(|s| {
            s.asked.push((scope.clone(), tokens));
            s.refuse == Some(scope.kind)
        });
        if refused {
            return Err(MeterError::QuotaExceeded {
                resets_at: RESETS_AT,
                limit: 1_000,
                used: 1_000,
            });
        }
        kernel::metering::Unmetered.reserve(scope, tokens).await
    }

    async fn settle(&self, reservation: Reservation, used: Tokens) {
        self.state(|s| {
            s.settled.push(Settled {
                scope: reservation.scope,
                reserved: reservation.reserved,
                used,
            });
        });
        self.changed.notify_one();
    }

    async fn open_stream(&self, tenant: TenantId) -> Result<StreamSlot, MeterError> {
        self.state(|s| {
            s.slots_opened += 1;
            s.open_slots += 1;
        });
        Ok(StreamSlot::new(tenant))
    }

    async fn close_stream(&self, _slot: StreamSlot) {
        self.state(|s| s.open_slots -= 1);
        self.changed.notify_one();
    }
}

// --- chat --------------------------------------------------------------------------------

/// The local extractive answerer, recording the `max_tokens` of every call.
#[derive(Debug, Default)]
struct SpyModel {
    calls: Mutex<Vec<Option<u32>>>,
}

impl SpyModel {
    fn calls(&self) -> Vec<Option<u32>> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl ChatModel for SpyModel {
    fn models(&self) -> Vec<String> {
        LocalAnswerer::new().models()
    }

    fn count_tokens(&self, model: &str, text: &str) -> u32 {
        LocalAnswerer::new().count_tokens(model, text)
    }

    fn context_window(&self, model: &str) -> u32 {
        LocalAnswerer::new().context_window(model)
    }

    async fn stream(&self, request: ChatRequest) -> Result<ModelStream, ModelError> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.max_tokens);
        LocalAnswerer::new().stream(request).await
    }
}

/// Grounds every question in the lease (no retrieval, so no embedding to meter).
#[derive(Debug)]
struct LeaseKnowledge;

fn lease_source() -> Source {
    Source {
        label: "S1".to_owned(),
        chunk_id: ChunkId::new(),
        document_id: DocumentId::new(),
        document_name: "lease.txt".to_owned(),
        page: None,
        text: LEASE.to_owned(),
        score: 1.0,
    }
}

#[async_trait]
impl Knowledge for LeaseKnowledge {
    async fn search(
        &self,
        _ctx: &TenantContext,
        _question: &str,
        _collections: Option<&[CollectionId]>,
        _top_k: usize,
    ) -> Result<Vec<Source>, KnowledgeError> {
        Ok(vec![lease_source()])
    }

    async fn document(
        &self,
        _ctx: &TenantContext,
        _id: DocumentId,
        _max_chars: usize,
    ) -> Result<(String, Vec<Source>), KnowledgeError> {
        Ok(("lease.txt".to_owned(), vec![lease_source()]))
    }

    async fn check_collections(
        &self,
        _ctx: &TenantContext,
        _ids: &[CollectionId],
    ) -> Result<(), KnowledgeError> {
        Ok(())
    }
}

struct ChatFixture {
    chat: Chat,
    meter: Arc<RecordingMeter>,
    model: Arc<SpyModel>,
    ctx: TenantContext,
}

fn chat_fixture() -> ChatFixture {
    let meter = Arc::new(RecordingMeter::default());
    let model = Arc::new(SpyModel::default());
    let chat = Chat::new(
        ChatPorts {
            store: Arc::new(InMemoryChatStore::new()),
            models: vec![model.clone()],
            knowledge: Arc::new(LeaseKnowledge),
            clock: Arc::new(SystemClock),
            meter: meter.clone(),
            cache: Arc::new(memory::InProcessCache::new(1_000)),
        },
        ChatSettings::default(),
    );
    let ctx = TenantContext::new(
        TenantId::new(),
        Principal::User(UserId::new()),
        Role::Member,
    );
    ChatFixture {
        chat,
        meter,
        model,
        ctx,
    }
}

fn max_answer_tokens() -> u64 {
    u64::from(ChatSettings::default().max_answer_tokens)
}

fn completion_input(max_tokens: Option<u32>) -> CompletionInput {
    CompletionInput {
        model: LOCAL_ANSWERER_MODEL.to_owned(),
        messages: vec![PromptMessage::new(
            PromptRole::User,
            "Hello there, who are you and what can you do?",
        )],
        temperature: None,
        max_tokens,
        grounding: None,
    }
}

#[tokio::test]
async fn a_refused_answer_stores_nothing_calls_no_model_and_frees_its_slot() {
    let f = chat_fixture();
    let session = f
        .chat
        .create_session(&f.ctx, SessionFields::default())
        .await
        .expect("session");
    f.meter.refuse(UsageKind::Chat);

    let err = f
        .chat
        .send(&f.ctx, session.id, "How much is the rent?", None)
        .await
        .expect_err("refused");

    assert!(
        matches!(
            err,
            ChatError::Metering(MeterError::QuotaExceeded { resets_at, .. }) if resets_at == RESETS_AT
        ),
        "{err:?}"
    );
    let messages = f
        .chat
        .messages(&f.ctx, session.id, &PageRequest::first(50).expect("page"))
        .await
        .expect("messages");
    assert!(messages.items.is_empty(), "the question was not stored");
    assert!(f.model.calls().is_empty(), "no model was called");
    let asked = f.meter.asked();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].0.reference.starts_with("message:"), "{asked:?}");
    assert!(f.meter.settled().is_empty(), "nothing was reserved");
    assert_eq!(f.meter.slots_opened(), 1);
    assert_eq!(f.meter.open_slots(), 0, "the slot was given back");
}

/// Deletes the session it is told of while the question is being prepared (as another
/// request of its owner can), then grounds the question in the lease.
#[derive(Debug)]
struct DeletingKnowledge {
    store: Arc<InMemoryChatStore>,
    session: Mutex<Option<(TenantId, chat::ChatSessionId)>>,
}

#[async_trait]
impl Knowledge for DeletingKnowledge {
    async fn search(
        &self,
        ctx: &TenantContext,
        question: &str,
        collections: Option<&[CollectionId]>,
        top_k: usize,
    ) -> Result<Vec<Source>, KnowledgeError> {
        let target = *self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((tenant, id)) = target {
            chat::ChatStore::delete_session(&*self.store, tenant, id)
                .await
                .expect("deleted");
        }
        LeaseKnowledge
            .search(ctx, question, collections, top_k)
            .await
    }

    async fn document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
        max_chars: usize,
    ) -> Result<(String, Vec<Source>), KnowledgeError> {
        LeaseKnowledge.document(ctx, id, max_chars).await
    }

    async fn check_collections(
        &self,
        _ctx: &TenantContext,
        _ids: &[CollectionId],
    ) -> Result<(), KnowledgeError> {
        Ok(())
    }
}

/// The provider is asked while the question is stored (issue 16): when that write finds the
/// session gone, the request fails 404 with the reservation already given back unused and
/// the slot closed (before `send` returns, not in the background), nothing stored, and no
/// answer running.
#[tokio::test]
async fn a_question_whose_session_is_deleted_meanwhile_is_billed_nothing() {
    let meter = Arc::new(RecordingMeter::default());
    let model = Arc::new(SpyModel::default());
    let store = Arc::new(InMemoryChatStore::new());
    let knowledge = Arc::new(DeletingKnowledge {
        store: store.clone(),
        session: Mutex::new(None),
    });
    let chat = Chat::new(
        ChatPorts {
            store: store.clone(),
            models: vec![model.clone()],
            knowledge: knowledge.clone(),
            clock: Arc::new(SystemClock),
            meter: meter.clone(),
            cache: Arc::new(memory::InProcessCache::new(1_000)),
        },
        ChatSettings::default(),
    );
    let ctx = TenantContext::new(
        TenantId::new(),
        Principal::User(UserId::new()),
        Role::Member,
    );
    let session = chat
        .create_session(&ctx, SessionFields::default())
        .await
        .expect("session");
    *knowledge
        .session
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some((ctx.tenant_id(), session.id));

    let err = chat
        .send(&ctx, session.id, "How much is the rent?", None)
        .await
        .expect_err("the session is gone");

    assert!(matches!(err, ChatError::NotFound), "{err:?}");
    // Checked at once: the release is part of the refusal, not a background task.
    let settled = meter.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0].scope.kind, UsageKind::Chat);
    assert_eq!(settled[0].used, Tokens::default(), "billed nothing");
    assert_eq!(meter.slots_opened(), 1);
    assert_eq!(meter.open_slots(), 0, "the slot was given back");
    let stored = chat::ChatStore::recent_messages(&*store, ctx.tenant_id(), session.id, 10)
        .await
        .expect("messages");
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
}

#[tokio::test]
async fn a_completed_answer_settles_once_with_its_stored_usage_and_frees_its_slot() {
    let f = chat_fixture();
    let session = f
        .chat
        .create_session(&f.ctx, SessionFields::default())
        .await
        .expect("session");

    let answer = f
        .chat
        .answer(&f.ctx, session.id, "How much is the rent?", None)
        .await
        .expect("an answer");

    // `answer` returns once the end event is out, and the end is pushed after settling.
    let usage = answer.usage.expect("a stored usage");
    assert!(usage.completion_tokens > 0);
    let settled = f.meter.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    let s = &settled[0];
    assert_eq!(
        s.used,
        Tokens {
            prompt: u64::from(usage.prompt_tokens),
            completion: u64::from(usage.completion_tokens),
        }
    );
    assert_eq!(s.scope.reference, format!("message:{}", answer.id));
    assert_eq!(s.scope.tenant, f.ctx.tenant_id());
    assert_eq!(s.scope.actor, Some(f.ctx.principal()));
    assert_eq!(s.scope.kind, UsageKind::Chat);
    assert_eq!(s.scope.model, LOCAL_ANSWERER_MODEL);
    assert!(s.reserved > max_answer_tokens(), "prompt + answer maximum");
    assert_eq!(f.meter.slots_opened(), 1);
    assert_eq!(f.meter.open_slots(), 0);
    assert_eq!(f.model.calls(), vec![Some(1_024)]);
    // The answer's id is made before the reservation, yet it still lists after its question.
    let listed = f
        .chat
        .messages(&f.ctx, session.id, &PageRequest::first(50).expect("page"))
        .await
        .expect("messages");
    let roles: Vec<MessageRole> = listed.items.iter().map(|m| m.role).collect();
    assert_eq!(roles, [MessageRole::User, MessageRole::Assistant]);
    assert_eq!(listed.items[1].id, answer.id);
}

#[tokio::test]
async fn a_completion_dropped_midway_settles_once_with_the_prompt_and_what_was_produced() {
    let f = chat_fixture();
    let completion = f
        .chat
        .complete(&f.ctx, completion_input(None))
        .await
        .expect("a completion");
    let prompt_tokens = completion.call.prompt_tokens();
    let mut stream = completion.call;
    let Some(CallEvent::Delta(first)) = stream.next().await else {
        panic!("a first piece");
    };
    assert_eq!(f.meter.open_slots(), 1, "the slot is held while streaming");
    assert!(f.meter.settled().is_empty());

    drop(stream);
    f.meter.wait_for(|m| !m.settled().is_empty()).await;
    f.meter.wait_for(|m| m.open_slots() == 0).await;

    let settled = f.meter.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    let s = &settled[0];
    assert_eq!(
        s.used,
        Tokens {
            prompt: u64::from(prompt_tokens),
            completion: u64::from(f.model.count_tokens(LOCAL_ANSWERER_MODEL, &first)),
        }
    );
    assert!(s.scope.reference.starts_with("completion:"), "{s:?}");
    assert_eq!(s.scope.actor, Some(f.ctx.principal()));
    // No max_tokens from the client: the configured maximum bounds both.
    assert_eq!(s.reserved, u64::from(prompt_tokens) + max_answer_tokens());
    assert_eq!(f.model.calls(), vec![Some(1_024)]);
}

#[tokio::test]
async fn a_completion_read_to_its_end_settles_the_models_usage_before_it_ends() {
    let f = chat_fixture();
    let completion = f
        .chat
        .complete(&f.ctx, completion_input(Some(50)))
        .await
        .expect("a completion");
    let prompt_tokens = completion.call.prompt_tokens();
    let mut stream = completion.call;
    let mut usage = None;
    while let Some(e) = stream.next().await {
        match e {
            CallEvent::Delta(_) => {}
            CallEvent::Finished(answer) => usage = Some(answer.usage),
            CallEvent::Failed(f) => panic!("no error: {f:?}"),
        }
    }
    let usage = usage.expect("the local model reports its usage");
    let settled = f.meter.settled();
    assert_eq!(settled.len(), 1, "settled when the stream ended");
    assert_eq!(
        settled[0].used,
        Tokens {
            prompt: u64::from(usage.prompt_tokens),
            completion: u64::from(usage.completion_tokens),
        }
    );
    assert_eq!(settled[0].reserved, u64::from(prompt_tokens) + 50);
    assert_eq!(f.meter.open_slots(), 0);
    drop(stream);
    assert_eq!(
        f.meter.settled().len(),
        1,
        "dropping after the end settles nothing more"
    );
    assert_eq!(f.model.calls(), vec![Some(50)]);
}

#[tokio::test]
async fn a_refused_completion_calls_no_model_and_frees_its_slot() {
    let f = chat_fixture();
    f.meter.refuse(UsageKind::Chat);
    let err = f
        .chat
        .complete(&f.ctx, completion_input(None))
        .await
        .expect_err("refused");
    assert!(matches!(err, ChatError::Metering(_)), "{err:?}");
    assert!(f.model.calls().is_empty());
    assert_eq!(f.meter.slots_opened(), 1);
    assert_eq!(f.meter.open_slots(), 0);
}

/// The stream slot is taken beside the reads that may refuse the question (`Held::slot_beside`):
/// a question in another member's session, or a completion of a model not allowed, is refused
/// as before, with the slot given back before the refusal returns and nothing reserved.
#[tokio::test]
async fn a_question_or_completion_refused_by_its_reads_frees_the_slot_taken_beside_them() {
    let f = chat_fixture();
    let session = f
        .chat
        .create_session(&f.ctx, SessionFields::default())
        .await
        .expect("session");
    let intruder = TenantContext::new(
        f.ctx.tenant_id(),
        Principal::User(UserId::new()),
        Role::Member,
    );
    let err = f
        .chat
        .send(&intruder, session.id, "What did my colleague ask?", None)
        .await
        .expect_err("another member's session");
    assert!(matches!(err, ChatError::NotFound), "{err:?}");
    assert_eq!(f.meter.slots_opened(), 1);
    assert_eq!(f.meter.open_slots(), 0, "the slot was given back");

    let mut input = completion_input(None);
    input.model = "no-such-model".to_owned();
    let err = f
        .chat
        .complete(&f.ctx, input)
        .await
        .expect_err("a model not allowed");
    assert!(matches!(err, ChatError::UnknownModel { .. }), "{err:?}");
    assert_eq!(f.meter.slots_opened(), 2);
    assert_eq!(f.meter.open_slots(), 0, "the slot was given back");
    assert!(f.meter.asked().is_empty(), "nothing was reserved");
    assert!(f.model.calls().is_empty(), "no model was called");
}

#[tokio::test]
async fn tasks_reserve_before_the_model_and_settle_the_usage_they_report() {
    let f = chat_fixture();
    let summary = f
        .chat
        .summarize(
            &f.ctx,
            TaskInput::Text(LEASE.to_owned()),
            SummaryStyle::Concise,
            None,
        )
        .await
        .expect("a summary");
    let (_, _, mindmap_usage) = f
        .chat
        .mindmap(&f.ctx, TaskInput::Text(LEASE.to_owned()), 2, None)
        .await
        .expect("a mind map");

    let settled = f.meter.settled();
    let tokens = |u: chat::Usage| Tokens {
        prompt: u64::from(u.prompt_tokens),
        completion: u64::from(u.completion_tokens),
    };
    assert_eq!(settled.len(), 2, "one call each: {settled:?}");
    assert!(settled[0].scope.reference.starts_with("summarize:"));
    assert_eq!(settled[0].used, tokens(summary.usage));
    assert!(settled[1].scope.reference.starts_with("mindmap:"));
    assert_eq!(settled[1].used, tokens(mindmap_usage));
    for s in &settled {
        assert_eq!(s.scope.kind, UsageKind::Chat);
        assert_eq!(s.scope.actor, Some(f.ctx.principal()));
        assert!(s.reserved > max_answer_tokens(), "prompt + max_tokens");
    }
    assert_eq!(f.meter.slots_opened(), 0, "tasks take no stream slot");
}

#[tokio::test]
async fn a_refused_task_calls_no_model() {
    let f = chat_fixture();
    f.meter.refuse(UsageKind::Chat);
    let err = f
        .chat
        .qa(&f.ctx, "How much is the rent?", None, None, None)
        .await
        .expect_err("refused");
    assert!(matches!(err, ChatError::Metering(_)), "{err:?}");
    assert!(f.model.calls().is_empty());
    assert!(f.meter.settled().is_empty());
    assert_eq!(f.meter.asked().len(), 1);
}

// --- retrieval ---------------------------------------------------------------------------

/// The local n-gram embedder, failing when told to; counts its calls.
#[derive(Debug)]
struct CountingEmbedder {
    inner: LocalEmbedder,
    fail: bool,
    calls: AtomicUsize,
}

#[async_trait]
impl Embedder for CountingEmbedder {
    fn model(&self) -> &EmbeddingModel {
        self.inner.model()
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embeddings, EmbedError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(EmbedError::Unavailable("the provider is down".to_owned()));
        }
        self.inner.embed(inputs).await
    }
}

/// A vector index that keeps nothing and finds nothing (what is metered is the embedding).
#[derive(Debug, Default)]
struct NullVectors {
    upserts: AtomicUsize,
}

#[async_trait]
impl VectorIndex for NullVectors {
    async fn upsert(&self, _space: &Space, _entries: &[VectorEntry]) -> Result<(), IndexError> {
        self.upserts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn search(
        &self,
        _space: &Space,
        _query: &[f32],
        _k: usize,
        _allow: Option<&[DocumentId]>,
    ) -> Result<Vec<Candidate>, IndexError> {
        Ok(Vec::new())
    }

    async fn missing(
        &self,
        _space: &Space,
        chunks: &[ChunkId],
    ) -> Result<Vec<ChunkId>, IndexError> {
        Ok(chunks.to_vec())
    }

    async fn retain(
        &self,
        _tenant: TenantId,
        _document: DocumentId,
        _keep: &[ChunkId],
    ) -> Result<(), IndexError> {
        Ok(())
    }

    async fn drop_space(&self, _space: &Space) -> Result<(), IndexError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "null"
    }
}

struct RetrievalFixture {
    ports: RetrievalPorts,
    meter: Arc<RecordingMeter>,
    embedder: Arc<CountingEmbedder>,
    vectors: Arc<NullVectors>,
    ctx: TenantContext,
}

fn retrieval_fixture(fail: bool) -> RetrievalFixture {
    let meter = Arc::new(RecordingMeter::default());
    let embedder = Arc::new(CountingEmbedder {
        inner: LocalEmbedder::new(64),
        fail,
        calls: AtomicUsize::new(0),
    });
    let vectors = Arc::new(NullVectors::default());
    let documents = Arc::new(InMemoryDocuments::new(Arc::new(SystemClock)));
    let ports = RetrievalPorts {
        spaces: Arc::new(InMemorySpaces::new(documents.clone())),
        vectors: vectors.clone(),
        keywords: documents.clone(),
        catalog: documents.clone(),
        collections: documents,
        embedders: Embedders::new(embedder.clone(), vec![]),
        clock: Arc::new(SystemClock),
        meter: meter.clone(),
        recent: retrieval::RecentScopes::default(),
    };
    let ctx = TenantContext::new(
        TenantId::new(),
        Principal::User(UserId::new()),
        Role::Member,
    );
    RetrievalFixture {
        ports,
        meter,
        embedder,
        vectors,
        ctx,
    }
}

fn inputs() -> Vec<String> {
    vec!["hello world".to_owned(), "running shoes".to_owned()]
}

#[tokio::test]
async fn an_embedding_call_settles_the_embedders_tokens() {
    let f = retrieval_fixture(false);
    let retrieval = Retrieval::new(f.ports.clone());
    let (model, embedded) = retrieval
        .embed(&f.ctx, &inputs(), None)
        .await
        .expect("embedded");

    assert!(embedded.tokens > 0);
    let settled = f.meter.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    let s = &settled[0];
    assert_eq!(
        s.used,
        Tokens {
            prompt: embedded.tokens,
            completion: 0,
        }
    );
    assert_eq!(s.reserved, embedding_token_bound(&inputs()));
    assert!(s.scope.reference.starts_with("embeddings:"), "{s:?}");
    assert_eq!(s.scope.kind, UsageKind::Embedding);
    assert_eq!(s.scope.model, model.name());
    assert_eq!(s.scope.tenant, f.ctx.tenant_id());
    assert_eq!(s.scope.actor, Some(f.ctx.principal()));
}

#[tokio::test]
async fn an_embedder_error_releases_its_reservation() {
    let f = retrieval_fixture(true);
    let retrieval = Retrieval::new(f.ports.clone());
    let err = retrieval
        .embed(&f.ctx, &inputs(), None)
        .await
        .expect_err("the provider is down");

    assert!(
        matches!(err, RetrievalError::ProviderUnavailable(_)),
        "{err:?}"
    );
    assert_eq!(f.embedder.calls.load(Ordering::SeqCst), 1);
    let settled = f.meter.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0].used, Tokens::default(), "a release");
    assert_eq!(settled[0].reserved, embedding_token_bound(&inputs()));
}

#[tokio::test]
async fn a_refused_embedding_never_calls_the_embedder() {
    let f = retrieval_fixture(false);
    f.meter.refuse(UsageKind::Embedding);
    let retrieval = Retrieval::new(f.ports.clone());
    let err = retrieval
        .embed(&f.ctx, &inputs(), None)
        .await
        .expect_err("refused");

    assert!(
        matches!(
            err,
            RetrievalError::Metering(MeterError::QuotaExceeded { .. })
        ),
        "{err:?}"
    );
    assert_eq!(f.embedder.calls.load(Ordering::SeqCst), 0);
    assert!(f.meter.settled().is_empty());
}

#[tokio::test]
async fn a_search_meters_its_query_embedding_and_a_refusal_stops_it() {
    let f = retrieval_fixture(false);
    let model = f.embedder.model().clone();
    f.ports
        .spaces
        .ensure(Space::new(
            f.ctx.tenant_id(),
            None,
            model,
            SpaceStatus::Active,
            OffsetDateTime::now_utc(),
        ))
        .await
        .expect("a space");
    let retrieval = Retrieval::new(f.ports.clone());
    let query = SearchQuery::new(
        "monthly rent",
        None,
        Some(5),
        None,
        SearchMode::Vector,
        MetadataFilter::default(),
    )
    .expect("a query");

    let hits = retrieval.search(&f.ctx, &query).await.expect("searched");
    assert!(hits.is_empty());
    let settled = f.meter.settled();
    assert_eq!(settled.len(), 1, "one embedding per model: {settled:?}");
    assert!(settled[0].scope.reference.starts_with("search:"));
    assert_eq!(settled[0].scope.actor, Some(f.ctx.principal()));
    assert!(settled[0].used.prompt > 0);

    f.meter.refuse(UsageKind::Embedding);
    let err = retrieval.search(&f.ctx, &query).await.expect_err("refused");
    assert!(matches!(err, RetrievalError::Metering(_)), "{err:?}");
    assert_eq!(f.embedder.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn indexing_bills_the_documents_tenant_and_a_used_up_quota_fails_it_for_good() {
    let f = retrieval_fixture(false);
    let tenant = f.ctx.tenant_id();
    let (document, _job) = testkit::contract::documents::document(
        tenant,
        None,
        "aa",
        testkit::contract::documents::T0,
    );
    let chunks = documents::NewChunk::assign(vec![ChunkDraft {
        ordinal: 0,
        text: LEASE.to_owned(),
        tokens: 60,
        tokens_by: None,
        page: None,
        start: 0,
        end: 200,
        ocr: false,
    }]);
    let indexer = Indexer::new(f.ports.clone());

    indexer.index(&document, &chunks).await.expect("indexed");
    let settled = f.meter.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    let s = &settled[0];
    assert_eq!(s.scope.reference, format!("document:{}", document.id));
    assert_eq!(s.scope.tenant, tenant);
    assert_eq!(s.scope.actor, None, "background work has no actor");
    assert_eq!(s.scope.kind, UsageKind::Embedding);
    assert!(s.used.prompt > 0);
    assert_eq!(f.vectors.upserts.load(Ordering::SeqCst), 1);

    f.meter.refuse(UsageKind::Embedding);
    let err = indexer
        .index(&document, &chunks)
        .await
        .expect_err("refused");
    match err {
        IndexFailure::Permanent(m) => assert_eq!(
            m,
            "the organization's monthly token quota is used up until 2026-12-01T00:00:00Z"
        ),
        other => panic!("a used-up quota fails for good: {other:?}"),
    }
    assert_eq!(
        f.embedder.calls.load(Ordering::SeqCst),
        1,
        "not called again"
    );
}

/// A chunk catalog that records how many chunks each read asked for, and hides the chunks
/// marked gone (deleted after an index ranked them).
#[derive(Debug)]
struct WatchedCatalog {
    inner: Arc<dyn retrieval::ChunkCatalog>,
    asked: Mutex<Vec<usize>>,
    gone: Mutex<Vec<ChunkId>>,
}

impl WatchedCatalog {
    fn asked(&self) -> Vec<usize> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl retrieval::ChunkCatalog for WatchedCatalog {
    async fn records(
        &self,
        tenant: TenantId,
        ids: &[ChunkId],
    ) -> Result<Vec<retrieval::ChunkRecord>, IndexError> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ids.len());
        let gone = self
            .gone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut records = self.inner.records(tenant, ids).await?;
        records.retain(|r| !gone.contains(&r.chunk_id));
        Ok(records)
    }

    async fn matching_documents(
        &self,
        tenant: TenantId,
        collections: Option<&[CollectionId]>,
        filter: &MetadataFilter,
        limit: usize,
    ) -> Result<Vec<DocumentId>, IndexError> {
        self.inner
            .matching_documents(tenant, collections, filter, limit)
            .await
    }

    async fn scan(
        &self,
        tenant: TenantId,
        collection: Option<CollectionId>,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<retrieval::ChunkText>, IndexError> {
        self.inner.scan(tenant, collection, after, limit).await
    }
}

/// A search reads back the chunks of its top k only (not the 30 or more candidates fusion
/// ranked), and the next ones when some of those are gone, so it still shows k hits.
#[tokio::test]
async fn a_search_reads_back_its_top_k_and_more_only_for_chunks_gone() {
    use testkit::contract::retrieval as contract;
    let p = contract::RetrievalPorts::in_memory();
    let (tenant, _) = testkit::contract::documents::two_tenants(&p.docs).await;
    let texts: Vec<String> = (0..12)
        .map(|i| format!("the rent of flat {i} is due on the first of the month"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    contract::store_document(&p, tenant, None, &refs, testkit::contract::documents::T0).await;
    let watched = Arc::new(WatchedCatalog {
        inner: p.catalog.clone(),
        asked: Mutex::new(Vec::new()),
        gone: Mutex::new(Vec::new()),
    });
    let mut ports = retrieval_fixture(false).ports;
    ports.keywords = p.keyword.clone();
    ports.catalog = watched.clone();
    let retrieval = Retrieval::new(ports);
    let ctx = TenantContext::new(tenant, Principal::User(UserId::new()), Role::Member);
    let query = SearchQuery::new(
        "rent due month",
        None,
        Some(3),
        None,
        SearchMode::Keyword,
        MetadataFilter::default(),
    )
    .expect("a query");

    let hits = retrieval.search(&ctx, &query).await.expect("searched");
    assert_eq!(hits.len(), 3);
    assert_eq!(watched.asked(), [3], "only the top 3 read back");

    let gone: Vec<ChunkId> = hits[..2].iter().map(|h| h.chunk.chunk_id).collect();
    watched
        .gone
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone_from(&gone);
    let again = retrieval.search(&ctx, &query).await.expect("searched");
    assert_eq!(
        again.len(),
        3,
        "k hits while enough chunks remain: {again:?}"
    );
    assert!(again.iter().all(|h| !gone.contains(&h.chunk.chunk_id)));
    assert_eq!(
        again[0].chunk.chunk_id, hits[2].chunk.chunk_id,
        "in rank order"
    );
    assert_eq!(
        watched.asked(),
        [3, 3, 9],
        "the rest read when two were gone"
    );
}
