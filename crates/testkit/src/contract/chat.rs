//! The [`ChatStore`] contract: every field round trips (Persian text, citations with and
//! without a page, usage or none, incomplete answers, users and API keys as owners), every
//! method is scoped to its tenant, lists page by id (sessions newest first, assistants and
//! messages oldest first), appending needs its session and moves it, deletes take what hangs
//! off them, a principal has one rating per message, and the model whitelist is per tenant.
//!
//! Each case takes [`ChatPorts`] over one fresh store. Organizations, users and API keys are
//! made through their own ports, since the SQL rows reference them. Times are explicit
//! values, never the wall clock.

use super::CascadingOrganizations;
use std::sync::Arc;
use std::time::Duration;

use chat::{
    Assistant, AssistantId, ChatSessionId, ChatStore, Citation, Feedback, Message, MessageId,
    MessageRole, MessageStatus, Rating, Session, Usage,
};
use documents::{ChunkId, CollectionId, DocumentId};
use identity::model::{DisplayName, EmailAddress, NewUser};
use identity::ports::UserRepository;
use kernel::{ApiKeyId, Page, PageRequest, Principal, Role, TenantId};
use tenancy::{
    ApiKey, ApiKeyRepository, KeyHash, NewOrganization, OrgName, OrgSlug, OrganizationRepository,
};
use time::OffsetDateTime;

use super::documents::{T0, at_ms};

/// Reads the ratings of a message back (the port has no read of its own): each adapter's
/// `feedback_on`.
#[async_trait::async_trait]
pub trait FeedbackProbe: Send + Sync + std::fmt::Debug {
    /// Every rating of the tenant's message, API keys' first, then users', each by id.
    async fn ratings(&self, tenant: TenantId, message: MessageId) -> Vec<Feedback>;
}

#[async_trait::async_trait]
impl FeedbackProbe for store_sql::SqlChatStore {
    async fn ratings(&self, tenant: TenantId, message: MessageId) -> Vec<Feedback> {
        self.feedback_on(tenant, message)
            .await
            .unwrap_or_else(|e| panic!("reading feedback: {e:#}"))
    }
}

#[async_trait::async_trait]
impl FeedbackProbe for memory::InMemoryChatStore {
    async fn ratings(&self, tenant: TenantId, message: MessageId) -> Vec<Feedback> {
        self.feedback_on(tenant, message)
            .unwrap_or_else(|e| panic!("reading feedback: {e:#}"))
    }
}

/// The ports of one store, as the chat domain's storage needs them.
#[derive(Debug, Clone)]
pub struct ChatPorts {
    /// Organizations (the tenants must exist: foreign keys on SQL).
    pub orgs: Arc<dyn OrganizationRepository>,
    /// Users (session owners).
    pub users: Arc<dyn UserRepository>,
    /// API keys (session owners).
    pub keys: Arc<dyn ApiKeyRepository>,
    /// The store under test.
    pub chat: Arc<dyn ChatStore>,
    /// The same store's ratings, read back.
    pub feedback: Arc<dyn FeedbackProbe>,
}

impl ChatPorts {
    /// The SQL store: [`store_sql::SqlChatStore`] beside the store's own repositories.
    #[must_use]
    pub fn sql(store: store_sql::SqlStore) -> Self {
        let chat = Arc::new(store_sql::SqlChatStore::new(&store));
        let store = Arc::new(store);
        Self {
            orgs: store.clone(),
            users: store.clone(),
            keys: store,
            chat: chat.clone(),
            feedback: chat,
        }
    }

    /// The in-memory adapters: [`memory::InMemoryChatStore`] beside in-memory
    /// organizations whose delete cascades into it, as `ON DELETE CASCADE` does on SQL.
    #[must_use]
    pub fn in_memory() -> Self {
        let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
        let chat = Arc::new(memory::InMemoryChatStore::new());
        Self {
            orgs: Arc::new(CascadingOrganizations::new(
                memory::InMemoryOrganizations::new(clock),
                Box::new({
                    let chat = chat.clone();
                    move |id| chat.remove_tenant(id).map_err(anyhow::Error::new)
                }),
            )),
            users: Arc::new(memory::InMemoryUsers::new()),
            keys: Arc::new(memory::InMemoryApiKeys::new()),
            chat: chat.clone(),
            feedback: chat,
        }
    }
}

// --- fixtures -------------------------------------------------------------------------------

/// Two organizations and the principals of the cases.
#[derive(Debug, Clone, Copy)]
pub struct World {
    /// The organization most cases work in.
    pub a: TenantId,
    /// The other organization.
    pub b: TenantId,
    /// A user (member of both, as far as the store cares).
    pub ann: Principal,
    /// Another user.
    pub bob: Principal,
    /// An API key of `a`.
    pub key: Principal,
    /// An API key of `b`.
    pub key_b: Principal,
}

async fn new_user(p: &ChatPorts, email: &str) -> Principal {
    let user = p
        .users
        .create(
            NewUser {
                email: EmailAddress::parse(email).expect("email"),
                name: DisplayName::parse("Chat Tester", "name").expect("name"),
                password_hash: None,
                email_verified_at: None,
            },
            T0,
        )
        .await
        .expect("create user");
    Principal::User(user.id)
}

async fn new_key(p: &ChatPorts, tenant: TenantId, seed: u8) -> Principal {
    let key = p
        .keys
        .create(
            ApiKey {
                id: ApiKeyId::new(),
                tenant_id: tenant,
                name: format!("key {seed}"),
                role: Role::Member,
                scopes: tenancy::Scope::defaults_for(Role::Member),
                prefix: format!("qk_{seed:08}"),
                created_by: None,
                created_at: T0,
                last_used_at: None,
            },
            KeyHash([seed; 32]),
        )
        .await
        .expect("create API key");
    Principal::ApiKey(key.id)
}

/// Organizations `chat-a` and `chat-b`, users Ann and Bob, and an API key in each.
pub async fn world(p: &ChatPorts) -> World {
    let mut tenants = Vec::new();
    for slug in ["chat-a", "chat-b"] {
        let org = p
            .orgs
            .create(NewOrganization {
                name: OrgName::parse(slug).expect("name"),
                slug: OrgSlug::parse(slug).expect("slug"),
            })
            .await
            .expect("organization");
        tenants.push(org.id);
    }
    let (a, b) = (tenants[0], tenants[1]);
    World {
        a,
        b,
        ann: new_user(p, "ann@example.com").await,
        bob: new_user(p, "bob@example.com").await,
        key: new_key(p, a, 1).await,
        key_b: new_key(p, b, 2).await,
    }
}

/// A new session of `owner` in `tenant`, with no preset.
#[must_use]
pub fn session(tenant: TenantId, owner: Principal, title: &str, at: OffsetDateTime) -> Session {
    Session {
        id: ChatSessionId::new(),
        tenant_id: tenant,
        owner,
        title: title.to_owned(),
        collection_ids: Vec::new(),
        model: None,
        system_prompt: None,
        assistant_id: None,
        created_at: at,
        updated_at: at,
    }
}

/// A new, complete message of the session, with no citations, usage or model.
#[must_use]
pub fn message(s: &Session, role: MessageRole, content: &str, at: OffsetDateTime) -> Message {
    Message {
        id: MessageId::new(),
        tenant_id: s.tenant_id,
        session_id: s.id,
        role,
        content: content.to_owned(),
        citations: Vec::new(),
        usage: None,
        status: MessageStatus::Complete,
        error: None,
        model: None,
        created_at: at,
    }
}

/// A new assistant of `tenant` with no model, collections or temperature.
#[must_use]
pub fn assistant(tenant: TenantId, name: &str, at: OffsetDateTime) -> Assistant {
    Assistant {
        id: AssistantId::new(),
        tenant_id: tenant,
        name: name.to_owned(),
        instructions: format!("You are {name}."),
        model: None,
        collection_ids: Vec::new(),
        temperature: None,
        created_at: at,
        updated_at: at,
        // Stored and read back as it is; an update never changes it.
        created_by: Some(Principal::User(kernel::UserId::new())),
    }
}

/// A rating of `message` by `principal`.
#[must_use]
pub fn rating(
    tenant: TenantId,
    message: MessageId,
    principal: Principal,
    rating: Rating,
    at: OffsetDateTime,
) -> Feedback {
    Feedback {
        tenant_id: tenant,
        message_id: message,
        principal,
        rating,
        comment: None,
        created_at: at,
    }
}

fn page(limit: u32) -> PageRequest {
    PageRequest::first(limit).expect("page")
}

/// Stores a session; returns it.
async fn stored_session(p: &ChatPorts, s: Session) -> Session {
    p.chat.create_session(&s).await.expect("create session");
    s
}

/// Appends a message, which must be accepted; returns it.
async fn appended(p: &ChatPorts, m: Message) -> Message {
    assert!(
        p.chat.append_message(&m).await.expect("append"),
        "the session exists"
    );
    m
}

/// Every page of a list, with `limit` items a page: the pages' ids, in order.
async fn all_pages<T, F, Fut>(
    limit: u32,
    mut list: F,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Vec<Vec<uuid::Uuid>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Page<T>>,
{
    let mut pages = Vec::new();
    let mut request = page(limit);
    loop {
        let got = list(request.clone()).await;
        pages.push(got.items.iter().map(&id).collect());
        match got.next_cursor {
            Some(cursor) => request = request.next(cursor),
            None => return pages,
        }
        assert!(pages.len() < 20, "the list must end");
    }
}

// --- cases ----------------------------------------------------------------------------------

/// Sessions round trip with every field: Persian text, collections, model, prompt and
/// assistant set or not, owned by a user or by an API key. Times come back in UTC at
/// microsecond precision. An id is stored once.
pub async fn sessions_round_trip(p: &ChatPorts) {
    let w = world(p).await;
    let helper = assistant(w.a, "دستیار حقوقی", T0);
    p.chat.create_assistant(&helper).await.expect("assistant");
    let precise = T0 + Duration::from_nanos(1_234_567_891);
    let full = Session {
        collection_ids: vec![CollectionId::new(), CollectionId::new()],
        model: Some("gpt-4o-mini".to_owned()),
        system_prompt: Some("به فارسی پاسخ بده و منبع را ذکر کن.".to_owned()),
        assistant_id: Some(helper.id),
        updated_at: precise + Duration::from_secs(1),
        ..session(w.a, w.ann, "قرارداد اجاره — پرسش‌ها", precise)
    };
    let bare = session(w.a, w.key, "API conversation", at_ms(5));
    for s in [&full, &bare] {
        p.chat.create_session(s).await.expect("create");
    }
    let expected = Session {
        created_at: kernel::clock::truncate_to_micros(full.created_at),
        updated_at: kernel::clock::truncate_to_micros(full.updated_at),
        ..full.clone()
    };
    let read = p.chat.find_session(w.a, full.id).await.expect("find");
    assert_eq!(read, Some(expected), "every field, times at microseconds");
    let read = read.expect("found");
    assert_eq!(read.created_at.offset(), time::UtcOffset::UTC);
    assert_eq!(read.created_at.nanosecond(), 234_567_000);
    assert_eq!(
        p.chat.find_session(w.a, bare.id).await.expect("find"),
        Some(bare.clone()),
        "an API key's session with nothing optional set"
    );
    assert_eq!(
        p.chat
            .find_session(w.a, ChatSessionId::new())
            .await
            .expect("find"),
        None
    );
    assert!(
        p.chat.create_session(&bare).await.is_err(),
        "an id is stored once"
    );
}

/// A caller lists only their own sessions, newest first, in pages; every other owner (user,
/// API key, another tenant) has a list of their own.
pub async fn sessions_list_by_owner_newest_first(p: &ChatPorts) {
    let w = world(p).await;
    let mut ann = Vec::new();
    for i in 0..5u64 {
        let s = stored_session(p, session(w.a, w.ann, &format!("ann {i}"), at_ms(i))).await;
        ann.push(s.id.as_uuid());
        // Others' sessions interleaved.
        stored_session(p, session(w.a, w.bob, "bob", at_ms(i))).await;
    }
    let key = stored_session(p, session(w.a, w.key, "key", T0)).await;
    let ann_in_b = stored_session(p, session(w.b, w.ann, "ann in B", T0)).await;

    let pages = all_pages(
        2,
        |r| async move {
            p.chat
                .list_sessions(w.a, w.ann, &r)
                .await
                .expect("list sessions")
        },
        |s: &Session| s.id.as_uuid(),
    )
    .await;
    ann.reverse();
    assert_eq!(
        pages,
        vec![ann[0..2].to_vec(), ann[2..4].to_vec(), ann[4..5].to_vec()],
        "3 pages of 2, 2 and 1, newest first"
    );

    let bobs = p
        .chat
        .list_sessions(w.a, w.bob, &page(100))
        .await
        .expect("list");
    assert_eq!(bobs.items.len(), 5);
    assert!(bobs.items.iter().all(|s| s.owner == w.bob));
    assert!(bobs.next_cursor.is_none());
    let keys = p
        .chat
        .list_sessions(w.a, w.key, &page(100))
        .await
        .expect("list");
    assert_eq!(keys.items, vec![key]);
    let in_b = p
        .chat
        .list_sessions(w.b, w.ann, &page(100))
        .await
        .expect("list");
    assert_eq!(in_b.items, vec![ann_in_b], "a user's sessions per tenant");
    assert!(
        p.chat
            .list_sessions(w.b, w.key, &page(100))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// An update replaces the client fields and `updated_at`, never the owner or `created_at`.
pub async fn session_update(p: &ChatPorts) {
    let w = world(p).await;
    let helper = assistant(w.a, "Helper", T0);
    p.chat.create_assistant(&helper).await.expect("assistant");
    let original = stored_session(p, session(w.a, w.ann, "First title", T0)).await;

    let changed = Session {
        title: "عنوان تازه".to_owned(),
        collection_ids: vec![CollectionId::new()],
        model: Some("gpt-4o".to_owned()),
        system_prompt: Some("Be brief.".to_owned()),
        assistant_id: Some(helper.id),
        updated_at: at_ms(1_000),
        // Not the client's to change: ignored.
        owner: w.bob,
        created_at: at_ms(999),
        ..original.clone()
    };
    assert!(p.chat.update_session(&changed).await.expect("update"));
    let expected = Session {
        owner: original.owner,
        created_at: original.created_at,
        ..changed.clone()
    };
    assert_eq!(
        p.chat.find_session(w.a, original.id).await.expect("find"),
        Some(expected.clone())
    );

    // Clearing.
    let cleared = Session {
        collection_ids: Vec::new(),
        model: None,
        system_prompt: None,
        assistant_id: None,
        updated_at: at_ms(2_000),
        ..expected
    };
    assert!(p.chat.update_session(&cleared).await.expect("update"));
    assert_eq!(
        p.chat.find_session(w.a, original.id).await.expect("find"),
        Some(cleared)
    );

    let missing = session(w.a, w.ann, "never stored", T0);
    assert!(!p.chat.update_session(&missing).await.expect("update"));
    assert_eq!(
        p.chat.find_session(w.a, missing.id).await.expect("find"),
        None,
        "an update does not create"
    );
}

/// A session names an assistant only of its own tenant that exists: any other is stored as
/// none, on create and on update.
pub async fn sessions_name_only_their_tenants_assistants(p: &ChatPorts) {
    let w = world(p).await;
    let theirs = assistant(w.b, "B's assistant", T0);
    p.chat.create_assistant(&theirs).await.expect("assistant");
    let ours = assistant(w.a, "A's assistant", T0);
    p.chat.create_assistant(&ours).await.expect("assistant");

    for foreign in [theirs.id, AssistantId::new()] {
        let s = Session {
            assistant_id: Some(foreign),
            ..session(w.a, w.ann, "with a foreign assistant", T0)
        };
        p.chat.create_session(&s).await.expect("create");
        let read = p
            .chat
            .find_session(w.a, s.id)
            .await
            .expect("find")
            .expect("stored");
        assert_eq!(read.assistant_id, None, "{foreign:?} is not A's");

        let own = Session {
            assistant_id: Some(ours.id),
            ..s.clone()
        };
        assert!(p.chat.update_session(&own).await.expect("update"));
        let read = p.chat.find_session(w.a, s.id).await.expect("find");
        assert_eq!(read.and_then(|s| s.assistant_id), Some(ours.id));

        let back = Session {
            assistant_id: Some(foreign),
            ..s.clone()
        };
        assert!(p.chat.update_session(&back).await.expect("update"));
        let read = p.chat.find_session(w.a, s.id).await.expect("find");
        assert_eq!(read.and_then(|s| s.assistant_id), None);
    }
    assert_eq!(
        p.chat.find_assistant(w.b, theirs.id).await.expect("find"),
        Some(theirs),
        "B's assistant is untouched"
    );
}

/// Messages round trip with every field: citations with and without a page (Persian quotes),
/// usage or none, incomplete answers, the model. Times come back at microsecond precision.
pub async fn messages_round_trip(p: &ChatPorts) {
    let w = world(p).await;
    let s = stored_session(p, session(w.a, w.key, "Lease", T0)).await;
    let question = appended(
        p,
        message(
            &s,
            MessageRole::User,
            "مدت قرارداد اجاره چقدر است؟",
            at_ms(1),
        ),
    )
    .await;
    let answer = Message {
        citations: vec![
            Citation {
                chunk_id: ChunkId::new(),
                document_id: DocumentId::new(),
                document_name: "قرارداد اجاره.pdf".to_owned(),
                page: Some(3),
                quote: "مدت اجاره دو سال شمسی است".to_owned(),
                score: 0.8125,
                start: 120,
                end: 145,
            },
            Citation {
                chunk_id: ChunkId::new(),
                document_id: DocumentId::new(),
                document_name: "notes.txt".to_owned(),
                page: None,
                quote: "two \"years\"\nfrom signing".to_owned(),
                score: 0.1,
                start: 0,
                end: u32::MAX,
            },
        ],
        usage: Some(Usage {
            prompt_tokens: 1_234,
            completion_tokens: u32::MAX,
        }),
        status: MessageStatus::Incomplete,
        error: Some("the provider went away".to_owned()),
        model: Some("gpt-4o-mini".to_owned()),
        ..message(
            &s,
            MessageRole::Assistant,
            "مدت اجاره دو سال است [S1].",
            at_ms(2) + Duration::from_nanos(999),
        )
    };
    appended(p, answer.clone()).await;
    assert_eq!(
        p.chat.find_message(w.a, question.id).await.expect("find"),
        Some(question.clone())
    );
    let expected = Message {
        created_at: at_ms(2),
        ..answer.clone()
    };
    assert_eq!(
        p.chat.find_message(w.a, answer.id).await.expect("find"),
        Some(expected.clone()),
        "every field; the time at microseconds"
    );
    let zero = Message {
        usage: Some(Usage::default()),
        ..message(&s, MessageRole::Assistant, "", at_ms(3))
    };
    appended(p, zero.clone()).await;
    assert_eq!(
        p.chat.find_message(w.a, zero.id).await.expect("find"),
        Some(zero.clone()),
        "a zero usage is not no usage; empty content is kept"
    );
    assert_eq!(
        p.chat
            .find_message(w.a, MessageId::new())
            .await
            .expect("find"),
        None
    );
    let listed = p
        .chat
        .list_messages(w.a, s.id, &page(10))
        .await
        .expect("list");
    assert_eq!(listed.items, vec![question.clone(), expected, zero]);
    assert!(
        p.chat.append_message(&question).await.is_err(),
        "an id is stored once"
    );
}

/// Messages list oldest first in pages, only the session's own; `recent_messages(n)` is the
/// last `n`, oldest first.
pub async fn messages_page_oldest_first_and_recent(p: &ChatPorts) {
    let w = world(p).await;
    let s = stored_session(p, session(w.a, w.ann, "Paged", T0)).await;
    let other = stored_session(p, session(w.a, w.ann, "Other", T0)).await;
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let role = if i % 2 == 0 {
            MessageRole::User
        } else {
            MessageRole::Assistant
        };
        let m = appended(p, message(&s, role, &format!("message {i}"), at_ms(i))).await;
        ids.push(m.id);
        appended(p, message(&other, role, "elsewhere", at_ms(i))).await;
    }
    let uuids: Vec<uuid::Uuid> = ids.iter().map(MessageId::as_uuid).collect();
    let pages = all_pages(
        2,
        |r| async move {
            p.chat
                .list_messages(w.a, s.id, &r)
                .await
                .expect("list messages")
        },
        |m: &Message| m.id.as_uuid(),
    )
    .await;
    assert_eq!(
        pages,
        vec![
            uuids[0..2].to_vec(),
            uuids[2..4].to_vec(),
            uuids[4..5].to_vec()
        ],
        "3 pages of 2, 2 and 1, oldest first"
    );

    let recent = |n: usize| async move {
        p.chat
            .recent_messages(w.a, s.id, n)
            .await
            .expect("recent")
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        recent(3).await,
        ids[2..5].to_vec(),
        "the last 3, oldest first"
    );
    assert_eq!(recent(1).await, ids[4..5].to_vec());
    assert_eq!(recent(5).await, ids, "exactly all");
    assert_eq!(recent(50).await, ids, "fewer than asked");
    assert!(recent(0).await.is_empty());
    let empty = stored_session(p, session(w.a, w.ann, "Empty", T0)).await;
    assert!(
        p.chat
            .recent_messages(w.a, empty.id, 10)
            .await
            .expect("recent")
            .is_empty()
    );
    assert!(
        p.chat
            .list_messages(w.a, empty.id, &page(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// Appending needs the session (a missing or deleted one stores nothing) and sets its
/// `updated_at` to the message's time.
pub async fn append_needs_the_session_and_bumps_it(p: &ChatPorts) {
    let w = world(p).await;
    let s = stored_session(p, session(w.a, w.ann, "Bumped", T0)).await;
    let m = appended(p, message(&s, MessageRole::User, "hello", at_ms(5_000))).await;
    let read = p
        .chat
        .find_session(w.a, s.id)
        .await
        .expect("find")
        .expect("there");
    assert_eq!(read.updated_at, m.created_at, "moved to the message's time");
    assert_eq!(read.created_at, s.created_at);
    assert_eq!(
        read,
        Session {
            updated_at: m.created_at,
            ..s.clone()
        },
        "nothing else changes"
    );

    let never = session(w.a, w.ann, "never stored", T0);
    let lost = message(&never, MessageRole::User, "into the void", at_ms(6_000));
    assert!(!p.chat.append_message(&lost).await.expect("append"));
    assert_eq!(p.chat.find_message(w.a, lost.id).await.expect("find"), None);

    assert!(p.chat.delete_session(w.a, s.id).await.expect("delete"));
    let late = message(&s, MessageRole::Assistant, "too late", at_ms(7_000));
    assert!(!p.chat.append_message(&late).await.expect("append"));
    assert_eq!(p.chat.find_message(w.a, late.id).await.expect("find"), None);
    assert!(
        p.chat
            .list_messages(w.a, s.id, &page(10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// A question and the answer that starts after it are stored in one write: both, in order,
/// with the session moved to the answer's time; or, when the session is gone, neither.
pub async fn a_question_and_its_answer_start_together(p: &ChatPorts) {
    let w = world(p).await;
    let s = stored_session(p, session(w.a, w.ann, "Asked", T0)).await;
    let question = message(&s, MessageRole::User, "When is rent due?", at_ms(5_000));
    let answer = Message {
        status: MessageStatus::Streaming,
        model: Some("gpt-4o-mini".to_owned()),
        ..message(&s, MessageRole::Assistant, "", at_ms(5_001))
    };
    let held = reservation(w.a, w.ann, answer.id);
    assert!(
        p.chat
            .start_answer(Some(&question), &answer, Some(&held), at_ms(30_000))
            .await
            .expect("start")
    );
    let recent = p.chat.recent_messages(w.a, s.id, 10).await.expect("recent");
    assert_eq!(recent, vec![question.clone(), answer.clone()]);
    let read = p
        .chat
        .find_session(w.a, s.id)
        .await
        .expect("find")
        .expect("there");
    assert_eq!(read.updated_at, answer.created_at);
    // The answer is a run like any other: its lease and reservation are there to sweep.
    let swept = p
        .chat
        .abandoned_answers(at_ms(1_000_000), 10)
        .await
        .expect("scan");
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].message.id, answer.id);
    assert_eq!(swept[0].reservation.as_ref().map(|r| r.id), Some(held.id));

    let never = session(w.a, w.ann, "never stored", T0);
    let lost_question = message(&never, MessageRole::User, "into the void", at_ms(6_000));
    let lost_answer = Message {
        status: MessageStatus::Streaming,
        ..message(&never, MessageRole::Assistant, "", at_ms(6_001))
    };
    assert!(
        !p.chat
            .start_answer(Some(&lost_question), &lost_answer, None, at_ms(30_000))
            .await
            .expect("start")
    );
    for id in [lost_question.id, lost_answer.id] {
        assert_eq!(p.chat.find_message(w.a, id).await.expect("find"), None);
    }
}

/// Deleting a session takes its messages and their feedback; other sessions keep theirs.
pub async fn delete_session_takes_messages_and_feedback(p: &ChatPorts) {
    let w = world(p).await;
    let gone = stored_session(p, session(w.a, w.ann, "Gone", T0)).await;
    let kept = stored_session(p, session(w.a, w.ann, "Kept", T0)).await;
    let mut gone_messages = Vec::new();
    for i in 0..3 {
        gone_messages.push(
            appended(
                p,
                message(&gone, MessageRole::Assistant, "answer", at_ms(i)),
            )
            .await,
        );
    }
    let kept_message = appended(p, message(&kept, MessageRole::Assistant, "kept", at_ms(9))).await;
    for m in [&gone_messages[0], &kept_message] {
        p.chat
            .put_feedback(&rating(w.a, m.id, w.ann, Rating::Up, at_ms(10)))
            .await
            .expect("feedback");
        assert_eq!(p.feedback.ratings(w.a, m.id).await.len(), 1);
    }

    assert!(p.chat.delete_session(w.a, gone.id).await.expect("delete"));
    assert_eq!(p.chat.find_session(w.a, gone.id).await.expect("find"), None);
    for m in &gone_messages {
        assert_eq!(p.chat.find_message(w.a, m.id).await.expect("find"), None);
    }
    assert!(
        p.feedback
            .ratings(w.a, gone_messages[0].id)
            .await
            .is_empty(),
        "its feedback went with it"
    );
    assert!(
        p.chat
            .recent_messages(w.a, gone.id, 10)
            .await
            .expect("recent")
            .is_empty()
    );
    assert!(
        !p.chat.delete_session(w.a, gone.id).await.expect("delete"),
        "already gone"
    );

    assert_eq!(
        p.chat
            .find_message(w.a, kept_message.id)
            .await
            .expect("find"),
        Some(kept_message.clone())
    );
    assert_eq!(p.feedback.ratings(w.a, kept_message.id).await.len(), 1);
}

/// Assistants round trip (Persian text, temperature or none), list oldest first in pages,
/// and update their client fields.
pub async fn assistants_round_trip_and_pages(p: &ChatPorts) {
    let w = world(p).await;
    let mut made = Vec::new();
    for i in 0..5u64 {
        let a = Assistant {
            temperature: (i % 2 == 0).then_some(0.25 * i as f32),
            model: (i == 1).then(|| "gpt-4o".to_owned()),
            collection_ids: (0..i).map(|_| CollectionId::new()).collect(),
            instructions: format!("پاسخ‌ها کوتاه باشند ({i})."),
            ..assistant(w.a, &format!("دستیار {i}"), at_ms(i))
        };
        p.chat.create_assistant(&a).await.expect("create");
        made.push(a);
    }
    for a in &made {
        assert_eq!(
            p.chat.find_assistant(w.a, a.id).await.expect("find"),
            Some(a.clone())
        );
    }
    assert!(
        p.chat.create_assistant(&made[0]).await.is_err(),
        "an id is stored once"
    );

    let pages = all_pages(
        2,
        |r| async move {
            p.chat
                .list_assistants(w.a, &r)
                .await
                .expect("list assistants")
        },
        |a: &Assistant| a.id.as_uuid(),
    )
    .await;
    let ids: Vec<uuid::Uuid> = made.iter().map(|a| a.id.as_uuid()).collect();
    assert_eq!(
        pages,
        vec![ids[0..2].to_vec(), ids[2..4].to_vec(), ids[4..5].to_vec()],
        "3 pages of 2, 2 and 1, oldest first"
    );

    let changed = Assistant {
        name: "Renamed".to_owned(),
        instructions: "New instructions.".to_owned(),
        model: Some("gpt-4.1".to_owned()),
        collection_ids: vec![CollectionId::new()],
        temperature: Some(1.5),
        updated_at: at_ms(60_000),
        created_at: at_ms(50_000),
        ..made[0].clone()
    };
    assert!(p.chat.update_assistant(&changed).await.expect("update"));
    assert_eq!(
        p.chat.find_assistant(w.a, made[0].id).await.expect("find"),
        Some(Assistant {
            created_at: made[0].created_at,
            ..changed.clone()
        }),
        "every client field and updated_at; never created_at"
    );
    let cleared = Assistant {
        model: None,
        temperature: None,
        collection_ids: Vec::new(),
        created_at: made[0].created_at,
        ..changed
    };
    assert!(p.chat.update_assistant(&cleared).await.expect("update"));
    assert_eq!(
        p.chat.find_assistant(w.a, made[0].id).await.expect("find"),
        Some(cleared)
    );
    let missing = assistant(w.a, "missing", T0);
    assert!(!p.chat.update_assistant(&missing).await.expect("update"));
    assert_eq!(
        p.chat.find_assistant(w.a, missing.id).await.expect("find"),
        None
    );
}

/// Deleting an assistant leaves its sessions without one, and otherwise as they were.
pub async fn delete_assistant_detaches_sessions(p: &ChatPorts) {
    let w = world(p).await;
    let helper = assistant(w.a, "Helper", T0);
    let other = assistant(w.a, "Other", T0);
    for a in [&helper, &other] {
        p.chat.create_assistant(a).await.expect("create");
    }
    let with = |owner, asst: &Assistant| Session {
        assistant_id: Some(asst.id),
        model: Some("gpt-4o".to_owned()),
        ..session(w.a, owner, "with an assistant", at_ms(1))
    };
    let ann = stored_session(p, with(w.ann, &helper)).await;
    let key = stored_session(p, with(w.key, &helper)).await;
    let kept = stored_session(p, with(w.ann, &other)).await;

    assert!(
        p.chat
            .delete_assistant(w.a, helper.id)
            .await
            .expect("delete")
    );
    assert_eq!(
        p.chat.find_assistant(w.a, helper.id).await.expect("find"),
        None
    );
    for s in [ann, key] {
        assert_eq!(
            p.chat.find_session(w.a, s.id).await.expect("find"),
            Some(Session {
                assistant_id: None,
                ..s
            }),
            "kept, without the assistant"
        );
    }
    assert_eq!(
        p.chat.find_session(w.a, kept.id).await.expect("find"),
        Some(kept)
    );
    assert!(
        !p.chat
            .delete_assistant(w.a, helper.id)
            .await
            .expect("delete"),
        "already gone"
    );
}

/// One rating per principal and message: a second replaces the first; another principal
/// has their own. A rating of a message that is not there is not stored.
pub async fn feedback_one_per_principal(p: &ChatPorts) {
    let w = world(p).await;
    let s = stored_session(p, session(w.a, w.ann, "Rated", T0)).await;
    let m = appended(p, message(&s, MessageRole::Assistant, "answer", at_ms(1))).await;

    let first = rating(w.a, m.id, w.ann, Rating::Up, at_ms(2));
    p.chat.put_feedback(&first).await.expect("feedback");
    assert_eq!(p.feedback.ratings(w.a, m.id).await, vec![first]);

    let second = Feedback {
        comment: Some("منبع اشتباه است".to_owned()),
        ..rating(w.a, m.id, w.ann, Rating::Down, at_ms(3))
    };
    p.chat.put_feedback(&second).await.expect("a second rating");
    assert_eq!(
        p.feedback.ratings(w.a, m.id).await,
        vec![second.clone()],
        "one row, the second rating"
    );

    let by_key = Feedback {
        comment: Some("useful".to_owned()),
        ..rating(w.a, m.id, w.key, Rating::Up, at_ms(4))
    };
    p.chat.put_feedback(&by_key).await.expect("feedback");
    let both = p.feedback.ratings(w.a, m.id).await;
    assert_eq!(both, vec![by_key, second], "API keys' first, then users'");

    let nowhere = rating(w.a, MessageId::new(), w.ann, Rating::Up, at_ms(5));
    p.chat
        .put_feedback(&nowhere)
        .await
        .expect("a missing message is not an error");
    assert!(p.feedback.ratings(w.a, nowhere.message_id).await.is_empty());
}

/// The model whitelist: none, then set, replaced and cleared, per tenant.
pub async fn allowed_models_per_tenant(p: &ChatPorts) {
    let w = world(p).await;
    assert_eq!(p.chat.allowed_models(w.a).await.expect("read"), None);
    let models = vec!["gpt-4o-mini".to_owned(), "مدل محلی".to_owned()];
    p.chat
        .set_allowed_models(w.a, Some(&models))
        .await
        .expect("set");
    assert_eq!(
        p.chat.allowed_models(w.a).await.expect("read"),
        Some(models.clone())
    );
    assert_eq!(
        p.chat.allowed_models(w.b).await.expect("read"),
        None,
        "per tenant"
    );

    let only = vec!["gpt-4.1".to_owned()];
    p.chat
        .set_allowed_models(w.b, Some(&only))
        .await
        .expect("set");
    p.chat
        .set_allowed_models(w.a, Some(&[]))
        .await
        .expect("replace");
    assert_eq!(
        p.chat.allowed_models(w.a).await.expect("read"),
        Some(Vec::new()),
        "an empty whitelist is not no whitelist"
    );
    p.chat.set_allowed_models(w.a, None).await.expect("clear");
    assert_eq!(p.chat.allowed_models(w.a).await.expect("read"), None);
    p.chat
        .set_allowed_models(w.a, None)
        .await
        .expect("clearing twice");
    assert_eq!(
        p.chat.allowed_models(w.b).await.expect("read"),
        Some(only),
        "B's is its own"
    );
}

/// Another tenant's ids are "not found" for every method, and nothing of the first tenant
/// changes through them.
pub async fn everything_is_tenant_scoped(p: &ChatPorts) {
    let w = world(p).await;
    let helper = assistant(w.a, "A's helper", T0);
    p.chat.create_assistant(&helper).await.expect("assistant");
    let s = stored_session(
        p,
        Session {
            assistant_id: Some(helper.id),
            ..session(w.a, w.ann, "A's", T0)
        },
    )
    .await;
    let m = appended(
        p,
        message(&s, MessageRole::Assistant, "A's answer", at_ms(1)),
    )
    .await;
    let s = Session {
        updated_at: m.created_at,
        ..s
    };
    let rated = rating(w.a, m.id, w.ann, Rating::Up, at_ms(2));
    p.chat.put_feedback(&rated).await.expect("feedback");

    // Reads.
    assert_eq!(p.chat.find_session(w.b, s.id).await.expect("find"), None);
    assert!(
        p.chat
            .list_sessions(w.b, w.ann, &page(100))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert_eq!(p.chat.find_message(w.b, m.id).await.expect("find"), None);
    assert!(
        p.chat
            .list_messages(w.b, s.id, &page(100))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(
        p.chat
            .recent_messages(w.b, s.id, 10)
            .await
            .expect("recent")
            .is_empty()
    );
    assert_eq!(
        p.chat.find_assistant(w.b, helper.id).await.expect("find"),
        None
    );
    assert!(
        p.chat
            .list_assistants(w.b, &page(100))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(p.feedback.ratings(w.b, m.id).await.is_empty());

    // Writes through B change nothing of A.
    let hijack = Session {
        tenant_id: w.b,
        title: "hijacked".to_owned(),
        updated_at: at_ms(9_000),
        ..s.clone()
    };
    assert!(!p.chat.update_session(&hijack).await.expect("update"));
    let smuggled = Message {
        tenant_id: w.b,
        ..message(&s, MessageRole::User, "smuggled", at_ms(9_000))
    };
    assert!(!p.chat.append_message(&smuggled).await.expect("append"));
    assert_eq!(
        p.chat.find_message(w.a, smuggled.id).await.expect("find"),
        None
    );
    assert_eq!(
        p.chat.find_message(w.b, smuggled.id).await.expect("find"),
        None
    );
    let renamed = Assistant {
        tenant_id: w.b,
        name: "hijacked".to_owned(),
        ..helper.clone()
    };
    assert!(!p.chat.update_assistant(&renamed).await.expect("update"));
    p.chat
        .put_feedback(&Feedback {
            comment: Some("from B".to_owned()),
            ..rating(w.b, m.id, w.ann, Rating::Down, at_ms(9_000))
        })
        .await
        .expect("feedback");
    p.chat
        .put_feedback(&rating(w.b, m.id, w.key_b, Rating::Down, at_ms(9_000)))
        .await
        .expect("feedback");
    assert!(!p.chat.delete_session(w.b, s.id).await.expect("delete"));
    assert!(
        !p.chat
            .delete_assistant(w.b, helper.id)
            .await
            .expect("delete")
    );
    p.chat
        .set_allowed_models(w.b, Some(&["b-model".to_owned()]))
        .await
        .expect("set");
    p.chat.set_allowed_models(w.b, None).await.expect("clear");

    assert_eq!(
        p.chat.find_session(w.a, s.id).await.expect("find"),
        Some(s.clone()),
        "A's session is untouched"
    );
    assert_eq!(
        p.chat.find_message(w.a, m.id).await.expect("find"),
        Some(m.clone())
    );
    assert_eq!(
        p.chat
            .list_messages(w.a, s.id, &page(100))
            .await
            .expect("list")
            .items,
        vec![m.clone()]
    );
    assert_eq!(
        p.chat.find_assistant(w.a, helper.id).await.expect("find"),
        Some(helper)
    );
    assert_eq!(
        p.feedback.ratings(w.a, m.id).await,
        vec![rated],
        "A's feedback is untouched, and B's was not stored"
    );
    assert_eq!(p.chat.allowed_models(w.a).await.expect("read"), None);
}

/// Deleting an organization deletes its sessions, messages, feedback, assistants and
/// whitelist (foreign keys cascade, on SQLite too); another tenant keeps everything.
pub async fn organization_delete_takes_everything(p: &ChatPorts) {
    let w = world(p).await;
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for (tenant, owner) in [(w.a, w.ann), (w.b, w.ann)] {
        let helper = assistant(tenant, "Helper", T0);
        p.chat.create_assistant(&helper).await.expect("assistant");
        let s = stored_session(
            p,
            Session {
                assistant_id: Some(helper.id),
                ..session(tenant, owner, "Doomed?", T0)
            },
        )
        .await;
        let m = appended(p, message(&s, MessageRole::Assistant, "answer", at_ms(1))).await;
        let s = Session {
            updated_at: m.created_at,
            ..s
        };
        let f = rating(tenant, m.id, owner, Rating::Up, at_ms(2));
        p.chat.put_feedback(&f).await.expect("feedback");
        p.chat
            .set_allowed_models(tenant, Some(&["gpt-4o".to_owned()]))
            .await
            .expect("whitelist");
        let row = (tenant, helper, s, m, f);
        if tenant == w.a {
            gone.push(row);
        } else {
            kept.push(row);
        }
    }

    assert!(p.orgs.delete(w.a).await.expect("delete organization"));
    for (tenant, helper, s, m, _) in gone {
        assert_eq!(p.chat.find_session(tenant, s.id).await.expect("find"), None);
        assert_eq!(p.chat.find_message(tenant, m.id).await.expect("find"), None);
        assert_eq!(
            p.chat
                .find_assistant(tenant, helper.id)
                .await
                .expect("find"),
            None
        );
        assert!(p.feedback.ratings(tenant, m.id).await.is_empty());
        assert_eq!(p.chat.allowed_models(tenant).await.expect("read"), None);
        assert!(
            p.chat
                .list_sessions(tenant, w.ann, &page(10))
                .await
                .expect("list")
                .items
                .is_empty()
        );
    }
    for (tenant, helper, s, m, f) in kept {
        assert_eq!(
            p.chat.find_session(tenant, s.id).await.expect("find"),
            Some(s)
        );
        assert_eq!(
            p.chat.find_message(tenant, m.id).await.expect("find"),
            Some(m.clone())
        );
        assert_eq!(
            p.chat
                .find_assistant(tenant, helper.id)
                .await
                .expect("find"),
            Some(helper)
        );
        assert_eq!(p.feedback.ratings(tenant, m.id).await, vec![f]);
        assert_eq!(
            p.chat.allowed_models(tenant).await.expect("read"),
            Some(vec!["gpt-4o".to_owned()])
        );
    }
}

/// A reservation of `tenant` as an answer holds one (every field set).
fn reservation(tenant: TenantId, actor: Principal, message: MessageId) -> kernel::Reservation {
    kernel::Reservation {
        id: uuid::Uuid::now_v7(),
        scope: kernel::MeterScope {
            tenant,
            actor: Some(actor),
            model: "gpt-4o-mini".to_owned(),
            kind: kernel::UsageKind::Chat,
            reference: format!("message:{message}"),
        },
        reserved: 1_500,
        request_id: Some("req-7".to_owned()),
        period: "2026-11".to_owned(),
        at: at_ms(5) + Duration::from_micros(7),
    }
}

/// An answer's run: its message stored `streaming` with a lease and a reservation,
/// checkpointed (its tenant's only; a checkpoint renews the lease), listed as abandoned only
/// once its lease ran out (with the reservation as it was stored), closed by exactly one
/// sweeper as `incomplete`, after which checkpoints find nothing; another run's end is
/// written over its message, which is then no longer streaming. Starting an answer needs its
/// session.
pub async fn answer_runs_checkpoint_finish_and_sweep(p: &ChatPorts) {
    let w = world(p).await;
    let s = stored_session(p, session(w.a, w.ann, "Runs", at_ms(0))).await;
    let streaming = |content: &str, at| Message {
        status: MessageStatus::Streaming,
        model: Some("gpt-4o-mini".to_owned()),
        ..message(&s, MessageRole::Assistant, content, at)
    };
    let m = streaming("", at_ms(1));
    let held = reservation(w.a, w.ann, m.id);
    assert!(
        p.chat
            .start_answer(None, &m, Some(&held), at_ms(10_000))
            .await
            .expect("start")
    );
    let used = Usage {
        prompt_tokens: 40,
        completion_tokens: 3,
    };
    assert!(
        !p.chat
            .checkpoint_answer(w.b, m.id, "stolen", used, at_ms(20_000))
            .await
            .expect("checkpoint"),
        "another tenant's answer is not found"
    );
    assert!(
        p.chat
            .checkpoint_answer(w.a, m.id, "So far", used, at_ms(20_000))
            .await
            .expect("checkpoint")
    );
    let read = p.chat.find_message(w.a, m.id).await.expect("find");
    assert_eq!(
        read,
        Some(Message {
            content: "So far".to_owned(),
            usage: Some(used),
            ..m.clone()
        })
    );
    assert!(
        p.chat
            .abandoned_answers(at_ms(15_000), 10)
            .await
            .expect("scan")
            .is_empty(),
        "the checkpoint renewed the lease"
    );
    let abandoned = p
        .chat
        .abandoned_answers(at_ms(25_000), 10)
        .await
        .expect("scan");
    assert_eq!(abandoned.len(), 1);
    assert_eq!(abandoned[0].message.content, "So far");
    assert_eq!(abandoned[0].message.usage, Some(used));
    let back = abandoned[0].reservation.as_ref().expect("its reservation");
    assert_eq!(
        (
            back.id,
            &back.scope,
            back.reserved,
            &back.request_id,
            &back.period,
            back.at
        ),
        (
            held.id,
            &held.scope,
            held.reserved,
            &held.request_id,
            &held.period,
            held.at
        )
    );
    assert!(
        !p.chat
            .close_abandoned(w.a, m.id, at_ms(15_000), "gone")
            .await
            .expect("close"),
        "not before its lease ran out"
    );
    assert!(
        !p.chat
            .close_abandoned(w.b, m.id, at_ms(25_000), "gone")
            .await
            .expect("close"),
        "not by another tenant"
    );
    assert!(
        p.chat
            .close_abandoned(w.a, m.id, at_ms(25_000), "gone")
            .await
            .expect("close")
    );
    assert!(
        !p.chat
            .close_abandoned(w.a, m.id, at_ms(25_000), "gone")
            .await
            .expect("close"),
        "one sweeper wins"
    );
    let closed = p.chat.find_message(w.a, m.id).await.expect("find");
    assert_eq!(
        closed,
        Some(Message {
            content: "So far".to_owned(),
            usage: Some(used),
            status: MessageStatus::Incomplete,
            error: Some("gone".to_owned()),
            ..m.clone()
        })
    );
    assert!(
        !p.chat
            .checkpoint_answer(w.a, m.id, "late", used, at_ms(30_000))
            .await
            .expect("checkpoint"),
        "a closed answer takes no checkpoint"
    );

    let n = streaming("", at_ms(2));
    assert!(
        p.chat
            .start_answer(None, &n, None, at_ms(10_000))
            .await
            .expect("start")
    );
    let whole = Message {
        content: "The whole answer [S1].".to_owned(),
        usage: Some(used),
        status: MessageStatus::Complete,
        ..n.clone()
    };
    assert!(p.chat.finish_answer(&whole).await.expect("finish"));
    assert_eq!(
        p.chat.find_message(w.a, n.id).await.expect("find"),
        Some(whole.clone())
    );
    assert!(
        p.chat
            .abandoned_answers(at_ms(1_000_000), 10)
            .await
            .expect("scan")
            .is_empty(),
        "neither the closed nor the finished answer is streaming"
    );
    let elsewhere = Message {
        tenant_id: w.b,
        ..whole.clone()
    };
    assert!(!p.chat.finish_answer(&elsewhere).await.expect("finish"));
    let orphan = Message {
        session_id: ChatSessionId::new(),
        ..streaming("", at_ms(3))
    };
    assert!(
        !p.chat
            .start_answer(None, &orphan, None, at_ms(10_000))
            .await
            .expect("start"),
        "an answer needs its session"
    );
}
