//! Quire's configuration: defaults, then an optional TOML file, then `QUIRE_*` environment
//! variables (nested keys with `__`, e.g. `QUIRE_DATABASE__URL`), then command-line flags.
//!
//! Secrets (`database.url`, `cache.redis_url`) are [`secrecy::SecretString`]s: `Debug` prints
//! `[REDACTED]` and [`Settings::redacted_toml`] prints `"[redacted]"`. Every setting is listed in
//! `docs/configuration.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

mod validate;

/// Everything Quire reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where `serve` listens (`QUIRE_ADDR`).
    pub addr: SocketAddr,
    /// The data folder: the SQLite file and, later, uploaded files and keys (`QUIRE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Logging.
    pub log: LogSettings,
    /// The SQL store.
    pub database: DatabaseSettings,
    /// The cache/coordination store.
    pub cache: CacheSettings,
    /// The HTTP edge.
    pub http: HttpSettings,
    /// Accounts, passwords and tokens.
    pub auth: AuthSettings,
    /// Outgoing mail (sign-in codes, password resets, invitations).
    pub mail: MailSettings,
    /// Organizations.
    pub orgs: OrgSettings,
    /// Uploads, extraction and the ingestion workers.
    pub documents: DocumentSettings,
    /// Embeddings, the vector index and search.
    pub retrieval: RetrievalSettings,
    /// The OpenAI-compatible model provider (embeddings and chat).
    pub provider: ProviderSettings,
    /// Chat, completions and the AI tasks.
    pub chat: ChatSettings,
    /// Plans, prices and quotas.
    pub billing: BillingSettings,
    /// Request budgets of the expensive routes.
    pub rate_limits: RateLimitSettings,
    /// Outbound webhooks (docs/webhooks.md).
    pub webhooks: WebhookSettings,
    /// Workflow runs and schedules (docs/workflows.md).
    pub workflows: WorkflowSettings,
    /// What a process exposes for monitoring beyond a server's `/metrics`.
    pub telemetry: TelemetrySettings,
}

/// Monitoring.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Where a `quire worker` process serves `GET /metrics` (its ingestion, tokens, pools);
    /// unset (the default): it serves nothing. A server's metrics are on its own `/metrics`.
    pub worker_metrics_addr: Option<SocketAddr>,
}

/// Workflow workers and the scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSettings {
    /// Workflow workers inside `serve` and `worker` (0: none in this process; the scheduler
    /// runs with the first worker).
    pub workers: usize,
    /// How often a worker looks for runs queued by other processes and for due schedules.
    pub poll_interval_ms: u64,
    /// How long a worker holds a run between two steps before another may take it over
    /// (one step, a model call, must fit in it).
    pub lease_secs: u64,
    /// How long an organization's export archive stays downloadable, in seconds; after it the
    /// download answers 410 and the archive is deleted.
    pub export_ttl_secs: u64,
}

/// Outbound webhooks: delivery, retries and allowed destinations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Delivery workers inside `serve` and `worker` (0: none in this process).
    pub workers: usize,
    /// Attempts of one delivery before it fails for good (1 to 20).
    pub max_attempts: u32,
    /// The pause after the first failed attempt, doubling after each.
    pub backoff_base_secs: u64,
    /// The longest pause between attempts.
    pub backoff_max_secs: u64,
    /// The time one attempt has, connection included (1 to 60).
    pub timeout_secs: u64,
    /// How often a worker looks for due deliveries queued by other processes.
    pub poll_interval_ms: u64,
    /// Allow `http://` endpoints (https only otherwise). For tests and private deployments.
    pub allow_http: bool,
    /// Allow private, loopback, link-local and other non-public destinations. For tests and
    /// private deployments: it lets an organization's admin make the server call its own
    /// network.
    pub allow_private_destinations: bool,
}

/// Plans, prices and quotas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    /// Plans by name (default `free`, `pro`, `enterprise`); a file or the environment adds
    /// plans or changes fields of these.
    pub plans: BTreeMap<String, billing::Plan>,
    /// The plan used for an organization whose plan is not configured.
    pub fallback_plan: String,
    /// Prices per model in micro-units of the currency per million tokens, on top of the
    /// built-in list (common OpenAI models; local models cost 0).
    pub prices: BTreeMap<String, billing::Price>,
    /// Seconds a quota counter lives in the cache before it is rebuilt from the ledger.
    pub quota_counter_secs: u64,
    /// What an organization's export costs per GiB of its archive, in micro-units of the
    /// currency (0: metered in the ledger, not charged); docs/billing.md, "Exports".
    pub export_micros_per_gib: i64,
    /// Seconds a stream slot's lease lives without renewal (renewed every third of it while
    /// its stream runs).
    pub stream_slot_secs: u64,
    /// Seconds a usage event is retried while the ledger (the database) fails before it is
    /// given up and logged.
    pub ledger_retry_secs: u64,
}

/// Request budgets of the expensive routes, per fixed window. The credential routes keep
/// their per-address budget in `auth.attempts_per_ip_per_minute`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// The window's length in seconds.
    pub window_secs: u64,
    /// Answers, completions and AI tasks.
    pub chat: billing::RateBudget,
    /// Embeddings and search.
    pub embeddings: billing::RateBudget,
    /// Uploads and re-indexing.
    pub upload: billing::RateBudget,
}

/// Chat, completions and the AI tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// The model sessions use unless they name one (default: the provider's first chat model
    /// when `provider.chat_models` is set, else `quire-local-extractive`).
    pub default_model: Option<String>,
    /// The organizations' model whitelist unless a platform admin sets one (empty: every
    /// model there is).
    pub allowed_models: Vec<String>,
    /// Chunks retrieved per question.
    pub top_k: usize,
    /// Earlier messages considered for a prompt (then trimmed to the token budget).
    pub history_messages: usize,
    /// Tokens kept free for an answer.
    pub max_answer_tokens: u32,
    /// How long an answer whose last viewer went away goes on (room for a reconnect with
    /// `Last-Event-ID`) before it is cancelled, in milliseconds.
    pub resume_grace_ms: u64,
    /// How long an ended answer stays in memory for `Last-Event-ID`, in seconds (afterwards
    /// it is replayed from the database).
    pub replay_keep_secs: u64,
    /// Seconds a non-streamed answer or AI task may take before 503 (streams are not cut).
    pub answer_timeout_secs: u64,
    /// Seconds a streaming answer holds its stored message without a checkpoint (one is
    /// written about every second); after that any server ends it as `incomplete` and bills
    /// what was checkpointed. At least 3.
    pub answer_lease_secs: u64,
    /// Seconds an answer's end and its usage are retried while the database is down before
    /// the answer is given up with `storage_unavailable`.
    pub answer_store_retry_secs: u64,
    /// A WebSocket with no frame from the client for this long is closed, in seconds; one
    /// not authenticated this long after it opened is closed whatever it sent.
    pub ws_idle_timeout_secs: u64,
    /// Seconds between re-checks of an open WebSocket's access (session, key, membership,
    /// role, account), also while it is idle; every question is checked as well.
    pub ws_reauth_secs: u64,
    /// Open WebSockets one client address may hold on one server; more are refused with
    /// 429 `too_many_sockets`.
    pub ws_max_per_address: usize,
    /// Seconds between server pings on a WebSocket.
    pub ws_ping_secs: u64,
    /// Largest WebSocket frame (or message) accepted from a client, in bytes.
    pub ws_max_frame_bytes: usize,
    /// Origins allowed to open a WebSocket (`https://app.example.com`); empty: those of
    /// `http.cors_allowed_origins`. A request without `Origin` (not a browser) is allowed.
    pub ws_allowed_origins: Vec<String>,
}

/// Embeddings, the vector index and search.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSettings {
    /// The default embedding model: `local` (the built-in `quire-local-ngram-<dims>`, no key),
    /// `minilm` (the built-in semantic `quire-local-minilm`), `static` (the built-in
    /// `quire-local-static`, word vectors distilled from it), `provider`
    /// (`provider.embedding_model`) or the name of one of `local_models`. Collections may name
    /// any model there is.
    pub embedder: EmbedderKind,
    /// Dimensions of the local embedder.
    pub local_dimensions: u32,
    /// Sentence-transformers folders (BERT family) run in process, by model name
    /// (`retrieval.local_models.<name>.path`); each is loaded and checked at start.
    pub local_models: BTreeMap<String, LocalModelSettings>,
    /// `auto` (pgvector on PostgreSQL when the extension can be created, else embedded),
    /// `embedded` (the in-process HNSW index over vectors kept in SQL) or `pgvector`.
    pub vector_index: VectorIndexKind,
    /// Spaces with fewer vectors are searched exactly (both indexes).
    pub exact_threshold: usize,
    /// HNSW: links per node.
    pub hnsw_m: usize,
    /// HNSW: candidate list while building.
    pub hnsw_ef_construction: usize,
    /// HNSW: candidate list while searching (at least `2 × top_k` is used).
    pub hnsw_ef_search: usize,
    /// SQLite: keyword searches of scopes with at least this many chunks are answered from
    /// the in-process keyword cache (0, the default: every scope; negative: never).
    pub keyword_cache_min_chunks: i64,
    /// SQLite: postings the keyword cache holds at most (6 bytes each), least recently used
    /// scopes dropped past it.
    pub keyword_cache_max_postings: usize,
    /// How long a worker holds a collection it re-embeds between heartbeats, in seconds.
    pub reembed_lease_secs: u64,
    /// How `hybrid` search fuses its keyword and vector rankings: the default and overrides
    /// per embedding model.
    pub fusion: FusionConfig,
    /// The reranker that collections with `rerank_top_n` use.
    pub rerank: RerankSettings,
}

/// `retrieval.rerank`: a Cohere/Jina-style `POST /rerank` endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankSettings {
    /// The API root (`https://api.cohere.com/v2`); requests go to `{base_url}/rerank`. Unset:
    /// no reranking (collections' `rerank_top_n` is then ignored).
    pub base_url: Option<String>,
    /// The API key (a secret), if it needs one.
    #[serde(serialize_with = "redact_opt")]
    pub api_key: Option<SecretString>,
    /// The rerank model (`rerank-v3.5`).
    pub model: String,
    /// How long a search waits for the reranker, in milliseconds, before it keeps the fused
    /// order.
    pub timeout_ms: u64,
}

/// `retrieval.fusion`: the fusion of models without their own, and each model's own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FusionConfig {
    /// `rrf` (weighted reciprocal rank) or `minmax` (weighted sum of min-max scaled scores).
    pub method: String,
    /// The keyword (BM25) leg's weight (0 to 100).
    pub keyword: f32,
    /// The vector leg's weight (0 to 100; not both 0).
    pub vector: f32,
    /// Per embedding model name: its own method and weights.
    pub models: BTreeMap<String, FusionLeg>,
}

/// One model's fusion (`retrieval.fusion.models.<name>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FusionLeg {
    /// `rrf` or `minmax`.
    #[serde(default = "rrf")]
    pub method: String,
    /// The keyword leg's weight.
    pub keyword: f32,
    /// The vector leg's weight.
    pub vector: f32,
}

fn rrf() -> String {
    "rrf".to_owned()
}

/// One folder of `retrieval.local_models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LocalModelSettings {
    /// The folder: `config.json`, `tokenizer.json`, `model.safetensors` and the
    /// sentence-transformers files (`modules.json`, `1_Pooling/config.json`).
    pub path: PathBuf,
}

/// Which embedder is the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EmbedderKind {
    /// The built-in n-gram embedder (`local`).
    Local,
    /// The built-in semantic model, `quire-local-minilm` (`minilm`).
    Minilm,
    /// The built-in static model distilled from it, `quire-local-static` (`static`).
    Static,
    /// The OpenAI-compatible provider (`provider`).
    Provider,
    /// A model of `retrieval.local_models`, by its name.
    Named(String),
}

impl From<String> for EmbedderKind {
    fn from(s: String) -> Self {
        match s.as_str() {
            "local" => Self::Local,
            "minilm" => Self::Minilm,
            "static" => Self::Static,
            "provider" => Self::Provider,
            _ => Self::Named(s),
        }
    }
}

impl From<EmbedderKind> for String {
    fn from(k: EmbedderKind) -> Self {
        match k {
            EmbedderKind::Local => "local".to_owned(),
            EmbedderKind::Minilm => "minilm".to_owned(),
            EmbedderKind::Static => "static".to_owned(),
            EmbedderKind::Provider => "provider".to_owned(),
            EmbedderKind::Named(n) => n,
        }
    }
}

/// Which vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorIndexKind {
    /// pgvector when available, else embedded.
    Auto,
    /// The in-process HNSW index.
    Embedded,
    /// PostgreSQL with pgvector (start-up fails without it).
    Pgvector,
}

/// The OpenAI-compatible model provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Base URL including the version, like the OpenAI SDK's (`https://api.openai.com/v1`).
    pub base_url: String,
    /// The API key (a secret), if the provider needs one.
    #[serde(serialize_with = "redact_opt")]
    pub api_key: Option<SecretString>,
    /// The embedding model offered when `retrieval.embedder = "provider"` (or named by a
    /// collection); unset: the provider offers no embeddings.
    pub embedding_model: Option<String>,
    /// Its dimensions (required for models Quire does not know; sent to the provider).
    pub embedding_dimensions: Option<u32>,
    /// Whole-request timeout, in seconds.
    pub timeout_secs: u64,
    /// Connect timeout, in seconds.
    pub connect_timeout_secs: u64,
    /// Retries of a 429, 5xx or timed-out call.
    pub max_retries: u32,
    /// The chat models this provider serves (`gpt-4o-mini`); empty: no provider chat.
    pub chat_models: Vec<String>,
    /// Seconds to wait for a chat stream's first token before retrying.
    pub first_token_timeout_secs: u64,
    /// Seconds a chat stream may stay silent after its first token.
    pub idle_timeout_secs: u64,
    /// Milliseconds the provider is marked down after a call (or a readiness probe) failed
    /// for want of it: meanwhile its calls are refused at once (chat answers 503 with
    /// `Retry-After`); 0 turns that off.
    pub down_for_ms: u64,
}

/// The cores this process may use (1 when unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Uploads, extraction and the ingestion workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentSettings {
    /// Ingestion workers inside `serve` (0: none; run `quire worker` processes instead).
    /// Default: the cores plus one, so that one organization (capped at `workers - 1` by
    /// default) keeps every core busy.
    pub workers: usize,
    /// Largest upload, in bytes (25 MiB).
    pub max_file_bytes: u64,
    /// Most pages of a PDF.
    pub max_pages: u32,
    /// Most characters of text kept from one file.
    pub max_text_chars: u64,
    /// Where original files are kept: `auto` (in the database on PostgreSQL, so that every
    /// server and worker shares them; in `blob_dir` on SQLite), `filesystem` or `database`.
    pub blob_store: BlobStoreKind,
    /// The folder of the filesystem blob store (default: `blobs/` in the data folder).
    pub blob_dir: Option<PathBuf>,
    /// `process` (a child process per file, with memory and time limits: production) or
    /// `thread` (a thread with a bounded stack: tests and development).
    pub isolation: Isolation,
    /// Longest extraction of one file, in seconds.
    pub extract_timeout_secs: u64,
    /// Address-space limit of an extraction process, in MiB.
    pub extract_memory_mib: u64,
    /// Extractions at once per process. Default: the cores, at least 2.
    pub max_concurrent_extractions: usize,
    /// Files one warm extraction process reads (all of one organization, one at a time,
    /// each under the same limits) before a fresh one replaces it; 0 for a fresh process per
    /// file. Default 64.
    pub extract_files_per_child: u32,
    /// How long a worker holds a job between heartbeats, in seconds.
    pub lease_secs: u64,
    /// Runs before a job goes to the dead letter.
    pub max_attempts: u32,
    /// First retry delay in seconds (doubles per attempt, capped at an hour).
    pub retry_base_secs: u64,
    /// How often an idle worker looks for jobs queued by other processes, in milliseconds.
    pub poll_interval_ms: u64,
    /// How long a server reuses a page of `GET /documents` before reading it again, in
    /// milliseconds (0 to 1000; 0 = read on every request). A change made through another
    /// process shows within this time; one made through this process, at once.
    pub list_recheck_ms: u64,
    /// Ingestion jobs one organization may run at once, across every worker of every
    /// process, so that one organization's slow files never hold every worker. Default
    /// (unset): `workers - 1`, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running_jobs_per_tenant: Option<u32>,
    /// OCR of scanned PDF pages (pages without a text layer).
    pub ocr: OcrSettings,
}

/// OCR of scanned PDF pages: poppler's `pdftoppm` renders a page without text and `tesseract`
/// reads it, both started by the extraction (inside its isolation and limits).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrSettings {
    /// Whether pages without text are read by OCR. When on and a tool is missing, a file
    /// without any text fails naming the missing tool.
    pub enabled: bool,
    /// The `pdftoppm` executable (Debian `poppler-utils`): a path, or a name looked up in
    /// `PATH` at start-up.
    pub pdftoppm: PathBuf,
    /// The `tesseract` executable (Debian `tesseract-ocr`): a path or a name.
    pub tesseract: PathBuf,
    /// Tesseract's language data folder (`TESSDATA_PREFIX`); unset: Tesseract's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tessdata: Option<PathBuf>,
    /// Languages when a collection names none, Tesseract's form: codes joined by `+`
    /// (`eng`, `eng+deu`). Each needs its language pack (`tesseract-ocr-deu`).
    pub languages: String,
    /// Longest OCR of one page, in seconds (rendering and reading).
    pub page_timeout_secs: u64,
    /// Most pages of one file read by OCR; later pages without text stay empty.
    pub max_pages: u32,
    /// Resolution pages are rendered at (lowered for pages larger than `max_side_px`).
    pub dpi: u32,
    /// Longest side of a rendered page, in pixels (bounds memory on huge pages).
    pub max_side_px: u32,
}

/// Where original files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobStoreKind {
    /// The database on PostgreSQL, the filesystem on SQLite.
    Auto,
    /// Files under `documents.blob_dir` (every process must see the same folder).
    Filesystem,
    /// Rows in the SQL store (shared by every process that shares the database).
    Database,
}

/// How extraction is isolated from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A child process per file (memory and time limits; survives stack overflows).
    Process,
    /// A thread with a bounded stack and `catch_unwind` (survives panics only).
    Thread,
}

/// Outgoing mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    /// `outbox` (stored in the database, read with `quire outbox`: development) or `smtp`.
    pub backend: MailBackend,
    /// The SMTP relay for the smtp backend: `smtps://user:password@host:465` or
    /// `smtp://user:password@host:587?tls=required`. A secret.
    #[serde(serialize_with = "redact_opt")]
    pub smtp_url: Option<SecretString>,
    /// The sender, e.g. `Quire <no-reply@example.com>`.
    pub from: String,
}

/// Where mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailBackend {
    /// The development outbox.
    Outbox,
    /// An SMTP relay.
    Smtp,
}

/// Accounts, passwords and tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// PASERK secret keys (`k4.secret.…`) for access tokens, newest first: the first signs,
    /// all verify. Empty: a key is generated once and kept in `<data_dir>/keys/signing.keys`
    /// (embedded default; a warning is logged). Several servers must share the same keys.
    #[serde(serialize_with = "redact_list")]
    pub signing_keys: Vec<SecretString>,
    /// The `iss` claim of access tokens.
    pub issuer: String,
    /// The `aud` claim of access tokens.
    pub audience: String,
    /// Access-token lifetime in seconds (60 to 900).
    pub access_token_ttl_secs: u64,
    /// How long a server reuses what checking a credential found (an access token's
    /// signature, session and account; an API key; an organization and a membership) before
    /// reading it again, in milliseconds (0 to 1000; 0 = read on every request). The bound on
    /// how long a revocation made through another server takes to reach this one
    /// (docs/security.md, "Revocation").
    pub recheck_ms: u64,
    /// A login session's absolute lifetime in days; refreshing does not extend it.
    pub session_lifetime_days: u64,
    /// Fewest characters in a new password (8 or more).
    pub password_min_chars: usize,
    /// Argon2id memory in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id iterations (OWASP: 2).
    pub argon2_iterations: u32,
    /// Argon2id lanes (OWASP: 1).
    pub argon2_parallelism: u32,
    /// Password hashes computed at once; others wait up to `hash_wait_ms`, then get 429.
    pub max_concurrent_hashes: usize,
    /// How long a sign-in waits for a hashing slot, in milliseconds.
    pub hash_wait_ms: u64,
    /// Sign-in, registration and refresh attempts per client IP per minute.
    pub attempts_per_ip_per_minute: u32,
    /// Failed logins per account per client IP per 15 minutes before that pair must wait.
    pub failures_per_account_ip: u32,
    /// Failed logins per account per hour, from all addresses together.
    pub failures_per_account: u32,
}

/// Organizations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSettings {
    /// The most organizations one account may own (at least 1): each has its own free quota.
    pub max_owned_per_account: u32,
    /// How often the retention sweep runs (chat history, failed documents and access events
    /// past each organization's windows); one process of the deployment runs each round.
    pub retention_sweep_secs: u64,
    /// Repeated `document.read` access events of one document by the same user or key within
    /// this many seconds are one event (a client polling `GET /documents/{id}`); 0 records
    /// every read (docs/audit.md, "Coalesced reads").
    pub trail_read_window_secs: u64,
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `json` (one object a line, for production) or `pretty` (readable, for development).
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive (`info`, `quire=debug,actix_web=info`).
    pub filter: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Structured JSON lines.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// The SQL store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` for production; unset means SQLite at `<data_dir>/quire.db`. May hold a
    /// password, so it is a secret.
    #[serde(serialize_with = "redact_opt")]
    pub url: Option<SecretString>,
    /// Pool size ceiling.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// Seconds to wait for a connection from the pool (or to connect).
    pub acquire_timeout_secs: u64,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// PostgreSQL only: the schema to use (`search_path`); tests give each test its own.
    pub schema: Option<String>,
}

/// The cache/coordination store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// `memory` (in-process; one server only) or `redis` (shared by every server).
    pub backend: CacheBackend,
    /// `redis://…`, required for the redis backend; may hold a password.
    #[serde(serialize_with = "redact_opt")]
    pub redis_url: Option<SecretString>,
    /// Prefix of every key this deployment writes (`quire`).
    pub key_prefix: String,
    /// Redis connection pool size.
    pub pool_size: usize,
    /// In-process backend: the most plain values kept before expired and nearest-expiry ones
    /// are evicted (counters and leases are never evicted before they expire).
    pub max_entries: usize,
}

/// Which cache adapter to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In-process map: fine for one embedded server.
    Memory,
    /// Redis: required when several servers share the work.
    Redis,
}

/// The HTTP edge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Largest JSON or form body accepted, in bytes (uploads have their own limit).
    pub body_limit_bytes: usize,
    /// Seconds a handler may take to produce a response head before it is answered 503.
    pub request_timeout_secs: u64,
    /// The same for requests that carry a file (`POST /documents`, `POST /documents/extract`):
    /// a 25 MiB upload over a slow link needs minutes.
    pub upload_timeout_secs: u64,
    /// Seconds a client has to send the request head.
    pub client_request_timeout_secs: u64,
    /// Keep-alive seconds for idle connections.
    pub keep_alive_secs: u64,
    /// Seconds in-flight requests get to finish on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Origins allowed by CORS (`https://app.example.com`); empty allows none.
    pub cors_allowed_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (enable behind TLS).
    pub hsts: bool,
    /// `max-age` of HSTS, in seconds.
    pub hsts_max_age_secs: u64,
    /// Take the client address from `X-Forwarded-For`: its right-most entry, the address the
    /// proxy in front of Quire saw. Only behind exactly one proxy that appends to the header;
    /// otherwise clients could choose their address for rate limits.
    pub trust_forwarded_for: bool,
    /// Organizations with their own label on the per-tenant metrics (`quire_tenant_*`): the
    /// most active ones; the others share `org="other"`. 0: no per-tenant series.
    pub metrics_top_tenants: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            log: LogSettings {
                format: LogFormat::Pretty,
                filter: "info".to_owned(),
            },
            database: DatabaseSettings {
                url: None,
                max_connections: 10,
                min_connections: 1,
                acquire_timeout_secs: 5,
                migrate_on_start: true,
                schema: None,
            },
            cache: CacheSettings {
                backend: CacheBackend::Memory,
                redis_url: None,
                key_prefix: "quire".to_owned(),
                pool_size: 16,
                max_entries: 100_000,
            },
            http: HttpSettings {
                workers: 0,
                body_limit_bytes: 1024 * 1024,
                request_timeout_secs: 30,
                upload_timeout_secs: 600,
                client_request_timeout_secs: 10,
                keep_alive_secs: 75,
                shutdown_timeout_secs: 30,
                cors_allowed_origins: Vec::new(),
                hsts: false,
                hsts_max_age_secs: 31_536_000,
                trust_forwarded_for: false,
                metrics_top_tenants: 10,
            },
            auth: AuthSettings {
                signing_keys: Vec::new(),
                issuer: "quire".to_owned(),
                audience: "quire-api".to_owned(),
                access_token_ttl_secs: 900,
                recheck_ms: 500,
                session_lifetime_days: 30,
                password_min_chars: 8,
                argon2_memory_kib: 19_456,
                argon2_iterations: 2,
                argon2_parallelism: 1,
                max_concurrent_hashes: 4,
                hash_wait_ms: 2_000,
                attempts_per_ip_per_minute: 30,
                failures_per_account_ip: 5,
                failures_per_account: 50,
            },
            mail: MailSettings {
                backend: MailBackend::Outbox,
                smtp_url: None,
                from: "Quire <no-reply@localhost>".to_owned(),
            },
            orgs: OrgSettings {
                max_owned_per_account: 10,
                retention_sweep_secs: 3600,
                trail_read_window_secs: 60,
            },
            webhooks: WebhookSettings {
                workers: 1,
                max_attempts: 8,
                backoff_base_secs: 10,
                backoff_max_secs: 6 * 3_600,
                timeout_secs: 15,
                poll_interval_ms: 1_000,
                allow_http: false,
                allow_private_destinations: false,
            },
            workflows: WorkflowSettings {
                workers: 1,
                poll_interval_ms: 1_000,
                lease_secs: 300,
                export_ttl_secs: 86_400,
            },
            telemetry: TelemetrySettings::default(),
            documents: DocumentSettings {
                workers: cores() + 1,
                max_file_bytes: 25 * 1024 * 1024,
                max_pages: 500,
                max_text_chars: 20_000_000,
                blob_store: BlobStoreKind::Auto,
                blob_dir: None,
                isolation: Isolation::Process,
                extract_timeout_secs: 60,
                extract_memory_mib: 1_024,
                max_concurrent_extractions: cores().max(2),
                extract_files_per_child: 64,
                lease_secs: 120,
                max_attempts: 5,
                retry_base_secs: 5,
                poll_interval_ms: 1_000,
                list_recheck_ms: 500,
                max_running_jobs_per_tenant: None,
                ocr: OcrSettings {
                    enabled: true,
                    pdftoppm: PathBuf::from("pdftoppm"),
                    tesseract: PathBuf::from("tesseract"),
                    tessdata: None,
                    languages: "eng".to_owned(),
                    page_timeout_secs: 30,
                    max_pages: 50,
                    dpi: 300,
                    max_side_px: 5_000,
                },
            },
            retrieval: RetrievalSettings {
                embedder: EmbedderKind::Local,
                local_dimensions: 384,
                local_models: BTreeMap::new(),
                vector_index: VectorIndexKind::Auto,
                exact_threshold: 4_096,
                hnsw_m: 16,
                hnsw_ef_construction: 128,
                hnsw_ef_search: 200,
                keyword_cache_min_chunks: 0,
                keyword_cache_max_postings: 24_000_000,
                reembed_lease_secs: 120,
                fusion: FusionConfig {
                    method: rrf(),
                    keyword: 1.0,
                    vector: 1.0,
                    // Measured on the golden set of crates/testkit/data/eval (docs/retrieval.md):
                    // the hashed n-gram vectors get a smaller vote, on scaled scores.
                    // The semantic model's vectors get the larger vote.
                    models: BTreeMap::from([
                        (
                            "quire-local-ngram-384".to_owned(),
                            FusionLeg {
                                method: "minmax".to_owned(),
                                keyword: 1.5,
                                vector: 1.0,
                            },
                        ),
                        (
                            "quire-local-minilm".to_owned(),
                            FusionLeg {
                                method: "minmax".to_owned(),
                                keyword: 1.0,
                                vector: 1.5,
                            },
                        ),
                        // The static model distilled from it: the same on the tuning set.
                        (
                            "quire-local-static".to_owned(),
                            FusionLeg {
                                method: "minmax".to_owned(),
                                keyword: 1.0,
                                vector: 1.5,
                            },
                        ),
                    ]),
                },
                rerank: RerankSettings {
                    base_url: None,
                    api_key: None,
                    model: "rerank-v3.5".to_owned(),
                    timeout_ms: 2_000,
                },
            },
            provider: ProviderSettings {
                base_url: "https://api.openai.com/v1".to_owned(),
                api_key: None,
                embedding_model: None,
                embedding_dimensions: None,
                timeout_secs: 60,
                connect_timeout_secs: 10,
                max_retries: 4,
                chat_models: Vec::new(),
                first_token_timeout_secs: 30,
                idle_timeout_secs: 30,
                down_for_ms: 2_000,
            },
            chat: ChatSettings {
                default_model: None,
                allowed_models: Vec::new(),
                top_k: 8,
                history_messages: 20,
                max_answer_tokens: 1_024,
                resume_grace_ms: 3_000,
                replay_keep_secs: 120,
                answer_timeout_secs: 300,
                answer_lease_secs: 30,
                answer_store_retry_secs: 60,
                ws_idle_timeout_secs: 120,
                ws_reauth_secs: 30,
                ws_max_per_address: 64,
                ws_ping_secs: 20,
                ws_max_frame_bytes: 64 * 1024,
                ws_allowed_origins: Vec::new(),
            },
            billing: BillingSettings::default(),
            rate_limits: RateLimitSettings::default(),
        }
    }
}

impl Default for BillingSettings {
    fn default() -> Self {
        let plans = billing::Plans::default();
        Self {
            plans: plans
                .names()
                .into_iter()
                .filter_map(|n| plans.get(&n).cloned().map(|p| (n, p)))
                .collect(),
            fallback_plan: "free".to_owned(),
            prices: BTreeMap::new(),
            quota_counter_secs: 3_600,
            export_micros_per_gib: 0,
            stream_slot_secs: 60,
            ledger_retry_secs: 60,
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let limits = billing::RateLimits::default();
        let budget = |c| limits.budgets.get(&c).copied().unwrap_or_default();
        Self {
            window_secs: limits.window.as_secs(),
            chat: budget(billing::RateClass::Chat),
            embeddings: budget(billing::RateClass::Embeddings),
            upload: budget(billing::RateClass::Upload),
        }
    }
}

/// Configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or an environment variable could not be read into settings.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// Settings that parse but do not fit together.
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

impl Settings {
    /// Defaults → the TOML `file` (if given; it must exist) → `QUIRE_*` environment variables.
    ///
    /// # Errors
    /// [`SettingsError`] when the file is missing or malformed, a variable has the wrong type or
    /// names an unknown setting, or the result is inconsistent.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::from_figment(Self::figment(file))
    }

    /// The layered sources, for callers that add their own layer on top (tests, CLI flags).
    #[must_use]
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(
            // `QUIRE_CONFIG` names the file; `QUIRE_TEST_*` belong to the test harness.
            Env::prefixed("QUIRE_")
                .filter(|k| {
                    let k = k.as_str().to_ascii_lowercase();
                    k != "config" && !k.starts_with("test_")
                })
                .split("__"),
        )
    }

    /// Extracts and checks settings from `figment`.
    ///
    /// # Errors
    /// See [`Settings::load`].
    pub fn from_figment(figment: Figment) -> Result<Self, SettingsError> {
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The model chat uses unless told otherwise (see [`ChatSettings::default_model`]).
    #[must_use]
    pub fn default_chat_model(&self) -> String {
        self.chat
            .default_model
            .clone()
            .or_else(|| self.provider.chat_models.first().cloned())
            .unwrap_or_else(|| "quire-local-extractive".to_owned())
    }

    /// Whether original files are kept in the database (else in `blob_dir`).
    #[must_use]
    pub fn blobs_in_database(&self) -> bool {
        match self.documents.blob_store {
            BlobStoreKind::Auto => self.is_postgres(),
            BlobStoreKind::Filesystem => false,
            BlobStoreKind::Database => true,
        }
    }

    /// The folder of the filesystem blob store.
    #[must_use]
    pub fn blob_dir(&self) -> PathBuf {
        self.documents
            .blob_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// The database URL in effect: the configured one, or SQLite in the data folder.
    #[must_use]
    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => SecretString::from(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("quire.db").display()
            )),
        }
    }

    /// True when the store is PostgreSQL.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        self.database_url().expose_secret().starts_with("postgres")
    }

    /// The effective settings as TOML with every secret replaced by `"[redacted]"`.
    ///
    /// # Errors
    /// Only if serialization fails, which the types rule out in practice.
    pub fn redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

fn redact_list<S: Serializer>(value: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(value.iter().map(|_| "[redacted]"))
}

fn redact_opt<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures must return figment::Error.
mod tests {
    use super::*;
    use crate::validate::is_origin;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        for (k, v) in pairs {
            fig = fig.merge(Toml::string(&format!("{k} = {v}")));
        }
        Settings::from_figment(fig)
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let s = Settings::default();
        assert_eq!(s.addr.to_string(), "127.0.0.1:8080");
        assert!(!s.is_postgres());
        assert!(
            s.database_url()
                .expose_secret()
                .ends_with("quire.db?mode=rwc")
        );
        assert_eq!(s.cache.backend, CacheBackend::Memory);
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "quire.toml",
                "addr = \"0.0.0.0:9000\"\n[http]\nworkers = 3\nbody_limit_bytes = 10\n",
            )?;
            jail.set_env("QUIRE_HTTP__WORKERS", "5");
            jail.set_env("QUIRE_DATA_DIR", "/srv/quire");
            let s = Settings::load(Some(Path::new("quire.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.addr.to_string(), "0.0.0.0:9000");
            assert_eq!(s.http.workers, 5);
            assert_eq!(s.http.body_limit_bytes, 10);
            assert_eq!(s.data_dir, PathBuf::from("/srv/quire"));
            Ok(())
        });
    }

    #[test]
    fn unknown_settings_and_bad_types_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("QUIRE_HTTP__WORKERZ", "5");
            assert!(Settings::load(None).is_err());
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("QUIRE_HTTP__WORKERS", "many");
            assert!(Settings::load(None).is_err());
            Ok(())
        });
        assert!(Settings::load(Some(Path::new("/nonexistent/quire.toml"))).is_err());
    }

    #[test]
    fn inconsistent_settings_are_rejected() {
        assert!(with(&[("cache.backend", "\"redis\"")]).is_err());
        assert!(with(&[("database.schema", "\"Robert'); DROP\"")]).is_err());
        assert!(with(&[("database.max_connections", "0")]).is_err());
        assert!(with(&[("mail.backend", "\"smtp\"")]).is_err());
        assert!(with(&[("mail.from", "\"nobody\"")]).is_err());
        assert!(with(&[("database.schema", "\"t_ok_1\"")]).is_ok());
    }

    #[test]
    fn ocr_settings_are_checked() {
        assert!(with(&[("documents.ocr.languages", "\"eng+deu+chi_sim\"")]).is_ok());
        for bad in [
            "\"eng;rm -rf /\"",
            "\"-l\"",
            "\"\"",
            "\"eng+\"",
            "\"../eng\"",
        ] {
            assert!(with(&[("documents.ocr.languages", bad)]).is_err(), "{bad}");
        }
        assert!(with(&[("documents.ocr.max_pages", "0")]).is_err());
        assert!(with(&[("documents.ocr.page_timeout_secs", "0")]).is_err());
        assert!(with(&[("documents.ocr.dpi", "5000")]).is_err());
        assert!(with(&[("documents.ocr.max_side_px", "100000")]).is_err());
        assert!(with(&[("documents.ocr.enabled", "false")]).is_ok());
    }

    #[test]
    fn test_harness_variables_are_not_settings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("QUIRE_TEST_DATABASE_URL", "postgres://x@y/z");
            jail.set_env("QUIRE_TEST_SKIP_SERVICES", "1");
            jail.set_env("QUIRE_CONFIG", "ignored.toml");
            Settings::load(None).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn cors_origins_must_be_plain_origins() {
        for ok in [
            "https://app.example.com",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "*",
            "app.example.com",
            "https://",
            "https://a.com/",
            "https://a.com/x",
            "https://a b",
            "https://a.com:x",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        assert!(with(&[("http.cors_allowed_origins", "[\"*\"]")]).is_err());
        assert!(with(&[("http.cors_allowed_origins", "[\"https://app.example.com\"]")]).is_ok());
    }

    #[test]
    fn websocket_limits_are_checked() {
        for (k, v) in [
            ("chat.ws_reauth_secs", "0"),
            ("chat.ws_max_per_address", "0"),
            ("chat.ws_idle_timeout_secs", "0"),
        ] {
            assert!(with(&[(k, v)]).is_err(), "{k} = {v} must be refused");
        }
        assert!(
            with(&[
                ("chat.ws_reauth_secs", "5"),
                ("chat.ws_max_per_address", "8")
            ])
            .is_ok()
        );
    }

    #[test]
    fn auth_settings_are_checked() {
        for (k, v) in [
            ("auth.access_token_ttl_secs", "0"),
            ("auth.access_token_ttl_secs", "3600"),
            ("auth.recheck_ms", "1001"),
            ("auth.session_lifetime_days", "0"),
            ("auth.password_min_chars", "4"),
            ("auth.attempts_per_ip_per_minute", "0"),
            ("auth.failures_per_account", "1"),
            ("auth.max_concurrent_hashes", "0"),
            ("auth.issuer", "\" \""),
            ("auth.signing_keys", "[\"not-a-key\"]"),
        ] {
            assert!(with(&[(k, v)]).is_err(), "{k} = {v} must be refused");
        }
        assert!(with(&[("auth.access_token_ttl_secs", "600")]).is_ok());
        assert!(with(&[("auth.signing_keys", "[\"k4.secret.abc\"]")]).is_ok());
    }

    #[test]
    fn a_document_list_is_reused_for_at_most_a_second() {
        assert!(with(&[("documents.list_recheck_ms", "1001")]).is_err());
        assert!(with(&[("documents.list_recheck_ms", "1000")]).is_ok());
        assert!(with(&[("documents.list_recheck_ms", "0")]).is_ok());
    }

    #[test]
    fn secrets_never_print() {
        let s = with(&[
            ("database.url", "\"postgres://quire:hunter2@db/quire\""),
            ("cache.backend", "\"redis\""),
            ("cache.redis_url", "\"redis://:s3cret@cache:6379\""),
            ("auth.signing_keys", "[\"k4.secret.topsecretkey\"]"),
            ("mail.backend", "\"smtp\""),
            (
                "mail.smtp_url",
                "\"smtps://u:mailpass@smtp.example.com:465\"",
            ),
        ])
        .expect("valid");
        let debug = format!("{s:?}");
        let toml = s.redacted_toml().expect("serializes");
        for out in [&debug, &toml] {
            assert!(
                !out.contains("hunter2")
                    && !out.contains("s3cret")
                    && !out.contains("topsecret")
                    && !out.contains("mailpass"),
                "{out}"
            );
        }
        assert!(toml.contains("[redacted]"));
        assert!(s.is_postgres());
    }
}
