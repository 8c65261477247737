//! The test harness every later issue builds on.
//!
//! - [`spawn_app`] / [`spawn_app_with`]: a real server on port 0 for black-box HTTP tests,
//!   isolated per test: its own SQLite file by default; its own PostgreSQL schema and Redis key
//!   prefix on request ([`TestOptions`]). Schemas and keys are removed when the [`TestApp`] drops.
//! - [`sqlite_store`], [`postgres_store`], [`redis_cache`]: adapters for port contract tests.
//! - [`contract`]: one suite per port, run against every adapter of that port.
//!
//! PostgreSQL and Redis come from `QUIRE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `QUIRE_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). When they are unreachable the tests fail; they are skipped only
//! when `QUIRE_TEST_SKIP_SERVICES=1` says so, and CI refuses that setting.

pub mod contract;
pub mod fake_openai;
pub mod faults;
pub mod multipart;
pub mod python;
pub mod receiver;
mod routes;
mod sql_db;
pub mod sweep;

use std::sync::{Arc, Once};

use actix_web::dev::ServerHandle;
use cache_redis::RedisCache;
use quire::{Application, Settings};
use secrecy::SecretString;
use settings::CacheBackend;
use store_sql::SqlStore;
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub use sql_db::SqlDb;

pub use routes::{SLOW_GATE, SlowGate};

/// Default PostgreSQL for tests (trust auth, database `test`).
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Default Redis for tests.
pub const DEFAULT_TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The PostgreSQL URL tests use.
#[must_use]
/// The line of `kind` in a usage report's `by_kind` (`GET /usage`), if it has one.
pub fn usage_of_kind<'a>(
    report: &'a serde_json::Value,
    kind: &str,
) -> Option<&'a serde_json::Value> {
    report["by_kind"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kind"] == kind)
}

pub fn postgres_url() -> String {
    std::env::var("QUIRE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// The PostgreSQL with pgvector that the pgvector tests use (`QUIRE_TEST_PGVECTOR_URL`,
/// started by `.ci/pgvector.sh`); `None` when unset.
#[must_use]
pub fn pgvector_url() -> Option<String> {
    std::env::var("QUIRE_TEST_PGVECTOR_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The Redis URL tests use.
#[must_use]
pub fn redis_url() -> String {
    std::env::var("QUIRE_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_TEST_REDIS_URL.to_owned())
}

/// True when the PostgreSQL and Redis suites are switched off by `QUIRE_TEST_SKIP_SERVICES=1`.
/// Prints a line saying so, so a skip is never silent.
#[must_use]
pub fn services_skipped(what: &str) -> bool {
    let skipped = std::env::var("QUIRE_TEST_SKIP_SERVICES").is_ok_and(|v| v == "1");
    if skipped {
        eprintln!("SKIPPED ({what}): QUIRE_TEST_SKIP_SERVICES=1");
    }
    skipped
}

/// Logs for tests: `RUST_LOG` (default `warn`), through the test writer.
pub fn init_test_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A name no other test uses: `t_` and 32 hex digits (a valid schema name and key prefix).
#[must_use]
pub fn unique_name() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// A `reqwest` client builder, after installing the process's TLS provider (rustls with ring):
/// with HTTPS on in the workspace, building a client before that panics.
pub fn http_client() -> reqwest::ClientBuilder {
    quire::install_crypto_provider();
    reqwest::Client::builder().no_proxy()
}

/// Base settings for a test: port 0, one worker, a fresh data folder.
#[must_use]
pub fn test_settings(data_dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        addr: ([127, 0, 0, 1], 0).into(),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    };
    s.http.workers = 1;
    s.database.max_connections = 5;
    // Cheap hashing: the OWASP settings cost ~0.5 s per hash in a debug build.
    s.auth.argon2_memory_kib = 8;
    s.auth.argon2_iterations = 1;
    // The test binary is not `quire`: extraction runs on a bounded thread here (the
    // process mode is tested through the real binary in apps/quire/tests).
    s.documents.isolation = settings::Isolation::Thread;
    s.documents.workers = 1;
    s.documents.poll_interval_ms = 50;
    s.workflows.poll_interval_ms = 50;
    s
}

/// Which backends a spawned app uses, and any last changes to its settings.
#[derive(Debug, Default, Clone)]
pub struct TestOptions {
    /// PostgreSQL (own schema) instead of SQLite.
    pub postgres: bool,
    /// Redis (own key prefix) instead of the in-process cache.
    pub redis: bool,
    /// With `postgres`: the PostgreSQL with pgvector (`QUIRE_TEST_PGVECTOR_URL`), and the
    /// vector index required to be pgvector.
    pub pgvector: bool,
    /// An OpenAI-compatible provider's base URL (a `fake_openai::FakeOpenAi`), offering the
    /// embedding model `provider_model`.
    pub provider: Option<(String, String)>,
    /// With `postgres`: this PostgreSQL (a [`faults::PrivatePostgres`]) instead of the shared one.
    pub database_url: Option<String>,
    /// With `redis`: this Redis (a [`faults::PrivateRedis`]) instead of the shared one.
    pub redis_url: Option<String>,
    /// A reranker's base URL (a `fake_openai::FakeOpenAi`'s `/v1`): `retrieval.rerank`.
    pub reranker: Option<String>,
    /// Applied to the settings last, in order.
    pub tweaks: Vec<fn(&mut Settings)>,
}

impl TestOptions {
    /// PostgreSQL and Redis: the production setup.
    #[must_use]
    pub fn production() -> Self {
        Self {
            postgres: true,
            redis: true,
            ..Self::default()
        }
    }

    /// These options on a private Redis (a fault test's).
    #[must_use]
    pub fn on_redis(mut self, url: String) -> Self {
        self.redis = true;
        self.redis_url = Some(url);
        self
    }

    /// These options on a private PostgreSQL (a fault test's).
    #[must_use]
    pub fn on_postgres(mut self, url: String) -> Self {
        self.postgres = true;
        self.database_url = Some(url);
        self
    }

    /// These options with the provider at `base_url` (a `fake_openai::FakeOpenAi`) serving
    /// chat with the fake's default model, `gpt-4o-mini`, and embeddings with
    /// `text-embedding-3-small` in 64 dimensions.
    #[must_use]
    pub fn chatting_with(mut self, base_url: String) -> Self {
        self.provider = Some((base_url, "text-embedding-3-small".to_owned()));
        self.tweak(|s| {
            s.provider.embedding_dimensions = Some(64);
            s.provider.chat_models = vec!["gpt-4o-mini".to_owned()];
        })
    }

    /// These options with `tweak` applied to the settings, after the tweaks before it.
    #[must_use]
    pub fn tweak(mut self, tweak: fn(&mut Settings)) -> Self {
        self.tweaks.push(tweak);
        self
    }
}

/// What to remove when a test ends.
#[derive(Debug, Default)]
struct Cleanup {
    schema: Option<String>,
    /// The PostgreSQL of `schema` (the default one when `None`).
    database_url: Option<String>,
    redis_prefix: Option<String>,
    /// The Redis of `redis_prefix` (the default one when `None`).
    redis_url: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.schema.is_none() && self.redis_prefix.is_none() {
            return;
        }
        let schema = self.schema.take();
        let url = self.database_url.take().unwrap_or_else(postgres_url);
        let prefix = self.redis_prefix.take();
        let redis = self.redis_url.take().unwrap_or_else(redis_url);
        // A fresh runtime on a plain thread: Drop may run inside a runtime that cannot block.
        let joined = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Some(schema) = schema {
                    drop_schema(&url, &schema).await;
                }
                if let Some(prefix) = prefix
                    && let Ok(cache) = RedisCache::new(&redis, &prefix, 1)
                {
                    let _ = cache.purge_prefix().await;
                }
            });
        })
        .join();
        if joined.is_err() {
            eprintln!("test clean-up panicked");
        }
    }
}

/// Drops a test's schema. The app may still hold connections there: Drop runs while the
/// test's runtime is blocked, so a task of the app that left a transaction open (a worker
/// stopped between two statements) can never roll it back, and its locks would block the
/// drop forever. So the drop waits at most 2 s for a lock; on a timeout the backends holding
/// locks in the schema are terminated and the drop is tried again.
async fn drop_schema(url: &str, schema: &str) {
    use sea_orm::ConnectionTrait as _;
    let Ok(db) = sea_orm::Database::connect(url).await else {
        return;
    };
    for _ in 0..5 {
        // One simple query, so that the timeout holds on the connection that drops (the
        // handle is a pool).
        let dropped = db
            .execute_unprepared(&format!(
                "SET lock_timeout = '2s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            ))
            .await;
        if dropped.is_ok() {
            break;
        }
        let _ = db
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                 JOIN pg_class c ON c.oid = l.relation \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{schema}' AND l.pid <> pg_backend_pid()"
            ))
            .await;
    }
    let _ = db.close().await;
}

/// A running server for one test.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    /// The bound port.
    pub port: u16,
    /// A client with no redirects followed and no proxy.
    pub client: reqwest::Client,
    /// The settings the server runs with.
    pub settings: Settings,
    handle: ServerHandle,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _data_dir: Option<TempDir>,
    _cleanup: Cleanup,
}

/// Runs each scenario `async fn name(app: &TestApp)` of the calling test file on both
/// backends, as the tests `name::sqlite` (the embedded default) and `name::postgres_and_redis`
/// (skipped only where [`services_skipped`] allows it: never under `CI`).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(&$crate::spawn_app().await).await;
            }

            #[tokio::test]
            async fn postgres_and_redis() {
                if $crate::services_skipped("PostgreSQL + Redis") {
                    return;
                }
                super::$name(&$crate::spawn_app_with($crate::TestOptions::production()).await)
                    .await;
            }
        }
    )*};
}

/// The first run of exactly six digits in a mail's body: its sign-in code.
fn six_digit_code(body: &str) -> Option<&str> {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
}

/// A server on SQLite and the in-process cache (the embedded default).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

/// A server with the backends `opts` ask for. Panics with a clear message when a requested
/// service is unreachable.
pub async fn spawn_app_with(opts: TestOptions) -> TestApp {
    init_test_tracing();
    let data_dir = tempfile::tempdir().expect("a temporary data folder");
    let mut settings = test_settings(data_dir.path());
    let mut cleanup = Cleanup::default();
    if opts.postgres {
        let schema = unique_name();
        let url = if opts.pgvector {
            settings.retrieval.vector_index = settings::VectorIndexKind::Pgvector;
            pgvector_url().unwrap_or_else(|| {
                panic!("this test needs QUIRE_TEST_PGVECTOR_URL (a PostgreSQL with pgvector)")
            })
        } else {
            opts.database_url.clone().unwrap_or_else(postgres_url)
        };
        settings.database.url = Some(SecretString::from(url.clone()));
        settings.database.schema = Some(schema.clone());
        cleanup.database_url = Some(url);
        // Production needs configured keys shared by every server.
        settings.auth.signing_keys = vec![SecretString::from(
            crypto::PasetoTokens::generate_key().expect("a signing key"),
        )];
        cleanup.schema = Some(schema);
    }
    if opts.redis {
        let prefix = format!("test:{}", unique_name());
        settings.cache.backend = CacheBackend::Redis;
        let url = opts.redis_url.clone().unwrap_or_else(redis_url);
        settings.cache.redis_url = Some(SecretString::from(url.clone()));
        cleanup.redis_url = Some(url);
        settings.cache.key_prefix = prefix.clone();
        settings.cache.pool_size = 4;
        cleanup.redis_prefix = Some(prefix);
    }
    if let Some((base_url, model)) = &opts.provider {
        settings.provider.base_url.clone_from(base_url);
        settings.provider.api_key = Some(SecretString::from("sk-test-fake"));
        settings.provider.embedding_model = Some(model.clone());
        settings.provider.max_retries = 2;
        settings.provider.timeout_secs = 5;
        // Tests follow a failed call with another; `faults_outages` turns the breaker on.
        settings.provider.down_for_ms = 0;
    }
    if let Some(base_url) = &opts.reranker {
        settings.retrieval.rerank.base_url = Some(base_url.clone());
        settings.retrieval.rerank.api_key = Some(SecretString::from("sk-test-fake"));
        settings.retrieval.rerank.timeout_ms = 1_000;
    }
    for tweak in &opts.tweaks {
        tweak(&mut settings);
    }
    serve(settings, Some(data_dir), cleanup).await
}

/// Builds and runs a server with `settings` on the current runtime.
async fn serve(settings: Settings, data_dir: Option<TempDir>, cleanup: Cleanup) -> TestApp {
    let app = Application::build_with(settings.clone(), Some(routes::configure))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "spawning the test app failed (is PostgreSQL at {} up? set QUIRE_TEST_DATABASE_URL): {e:#}",
                postgres_url()
            )
        });
    let port = app.port();
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());
    let client = http_client()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("an HTTP client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client,
        settings,
        handle,
        server: Some(server),
        _data_dir: data_dir,
        _cleanup: cleanup,
    }
}

impl TestApp {
    /// The absolute URL of `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET sent")
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST sent")
    }

    /// Stops the server (gracefully: in-flight requests finish) and waits until it has stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        match self.server.take() {
            Some(server) => server.await?,
            None => Ok(()),
        }
    }

    /// `method path` with a bearer token and an optional JSON body: the status and the JSON
    /// body (`null` when there is none).
    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        self.call_in(token, method, path, body, None).await
    }

    /// [`TestApp::call`] with an `X-Tenant-ID` header.
    pub async fn call_in(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        tenant: Option<&str>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = tenant {
            req = req.header("x-tenant-id", t);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let text = res.text().await.expect("response body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Signs up `who` (`{who}@example.com`) with an organization of slug `who`; returns the
    /// access token and the organization id.
    pub async fn owner(&self, who: &str) -> (String, String) {
        let res = self
            .post_json(
                "/api/v1/auth/register",
                &serde_json::json!({
                    "email": format!("{who}@example.com"),
                    "password": "correct horse battery",
                    "name": who,
                }),
            )
            .await;
        assert_eq!(
            res.status(),
            reqwest::StatusCode::CREATED,
            "registering {who}"
        );
        let body: serde_json::Value = res.json().await.expect("json");
        let token = body["tokens"]["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned();
        let (status, org) = self
            .call(
                &token,
                reqwest::Method::POST,
                "/api/v1/orgs",
                Some(serde_json::json!({"name": who, "slug": who})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{org}");
        let id = org["id"].as_str().expect("org id").to_owned();
        (token, id)
    }

    /// The 6-digit code in the newest mail to `to` in the development outbox (sign-in,
    /// registration): the first run of exactly six digits in its body.
    pub async fn latest_code(&self, to: &str) -> String {
        let mails = self.store().await.outbox(50).await.expect("outbox");
        let mail = mails
            .iter()
            .find(|m| m.to == to)
            .unwrap_or_else(|| panic!("no mail to {to}"));
        six_digit_code(&mail.body)
            .unwrap_or_else(|| panic!("no code in the mail to {to}"))
            .to_owned()
    }

    /// Signs `who@example.com` in with a mailed code (creating the account, which proves the
    /// address): the code of the newest mail to it that has one. Returns the access token and
    /// the user id.
    pub async fn sign_in_by_code(&self, who: &str) -> (String, String) {
        let email = format!("{who}@example.com");
        let res = self
            .post_json(
                "/api/v1/auth/code/request",
                &serde_json::json!({"email": email}),
            )
            .await;
        assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
        let mails = self.store().await.outbox(50).await.expect("outbox");
        let code = mails
            .iter()
            .filter(|m| m.to == email)
            .find_map(|m| six_digit_code(&m.body))
            .expect("a code mail")
            .to_owned();
        let res = self
            .post_json(
                "/api/v1/auth/code/verify",
                &serde_json::json!({"email": email, "code": code}),
            )
            .await;
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        let tokens: serde_json::Value = res.json().await.expect("json");
        let token = tokens["access_token"].as_str().expect("token").to_owned();
        let (_, me) = self
            .call(&token, reqwest::Method::GET, "/api/v1/auth/me", None)
            .await;
        let id = me["user"]["id"].as_str().expect("user id").to_owned();
        (token, id)
    }

    /// `who` (`{who}@example.com`, signed in by a mailed code) joins organization `org` as
    /// `role` through an invitation from `owner` (a token allowed to invite); returns `who`'s
    /// access token and user id.
    pub async fn join(&self, owner: &str, org: &str, who: &str, role: &str) -> (String, String) {
        let (token, id) = self.sign_in_by_code(who).await;
        let (s, inv) = self
            .call(
                owner,
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{org}/invitations"),
                Some(serde_json::json!({"email": format!("{who}@example.com"), "role": role})),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{inv}");
        let t = inv["token"].as_str().expect("invitation token");
        let (s, joined) = self
            .call(
                &token,
                reqwest::Method::POST,
                &format!("/api/v1/invitations/{t}/accept"),
                None,
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::OK, "{joined}");
        (token, id)
    }

    /// Confirms the email of the signed-in account of `token` (address `email`) through the
    /// real mail flow: a code is requested (`POST /auth/code/request`), read from the outbox
    /// and sent to `POST /auth/email/verify`. Needed before the account accepts invitations.
    pub async fn verify_email(&self, token: &str, email: &str) {
        let res = self
            .post_json(
                "/api/v1/auth/code/request",
                &serde_json::json!({ "email": email }),
            )
            .await;
        assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED, "code request");
        let code = self.latest_code(&email.trim().to_lowercase()).await;
        let (status, user) = self
            .call(
                token,
                reqwest::Method::POST,
                "/api/v1/auth/email/verify",
                Some(serde_json::json!({ "code": code })),
            )
            .await;
        assert_eq!(
            status,
            reqwest::StatusCode::OK,
            "confirming {email}: {user}"
        );
        assert!(user["email_verified_at"].is_string(), "{user}");
    }

    /// Sends a multipart form to `path` in `tenant`.
    pub async fn send_form(
        &self,
        token: &str,
        tenant: &str,
        path: &str,
        form: multipart::Form,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let (content_type, body) = form.finish();
        let res = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("x-tenant-id", tenant)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = res.status();
        let text = res.text().await.expect("response body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Uploads `bytes` as `file_name` (into `collection`, if given); returns the status and
    /// the body.
    pub async fn upload(
        &self,
        token: &str,
        tenant: &str,
        file_name: &str,
        bytes: &[u8],
        collection: Option<&str>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut form = multipart::Form::new().file("file", file_name, bytes);
        if let Some(c) = collection {
            form = form.text("collection_id", c);
        }
        self.send_form(token, tenant, "/api/v1/documents", form)
            .await
    }

    /// Creates a collection named `name`; returns its id.
    pub async fn collection(&self, token: &str, tenant: &str, name: &str) -> String {
        let (status, c) = self
            .call_in(
                token,
                reqwest::Method::POST,
                "/api/v1/collections",
                Some(serde_json::json!({ "name": name })),
                Some(tenant),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{c}");
        c["id"].as_str().expect("a collection id").to_owned()
    }

    /// Uploads `text` as `file_name` into `collection` and waits until it is ready; returns
    /// the document's id.
    pub async fn ready_document(
        &self,
        token: &str,
        tenant: &str,
        file_name: &str,
        text: &str,
        collection: &str,
    ) -> String {
        let (status, up) = self
            .upload(token, tenant, file_name, text.as_bytes(), Some(collection))
            .await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{up}");
        let id = up["document"]["id"]
            .as_str()
            .expect("a document id")
            .to_owned();
        let doc = self.settled(token, tenant, &id).await;
        assert_eq!(doc["status"], "ready", "{doc}");
        id
    }

    /// Polls the document until its job is over (`ready` or `failed`, with no job queued or
    /// running), for at most a minute; returns the document.
    pub async fn settled(&self, token: &str, tenant: &str, id: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (status, doc) = self
                .call_in(
                    token,
                    reqwest::Method::GET,
                    &format!("/api/v1/documents/{id}"),
                    None,
                    Some(tenant),
                )
                .await;
            assert_eq!(status, reqwest::StatusCode::OK, "{doc}");
            if doc["status"] == "ready" || doc["status"] == "failed" {
                return doc;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "document {id} still {} after a minute",
                doc["status"]
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A second connection to the app's own database (to seed what no route makes yet).
    pub async fn store(&self) -> SqlStore {
        SqlStore::connect(&self.settings, Arc::new(kernel::SystemClock))
            .await
            .expect("the test app's database")
    }

    /// Makes the account `id` a platform administrator directly in the store (no route does
    /// that for the first one), then waits `auth.recheck_ms`: a change made behind the
    /// server's back, like one made by another server, reaches it within that time
    /// (docs/security.md, "Revocation").
    pub async fn make_platform_admin(&self, id: kernel::UserId) {
        identity::ports::UserRepository::set_platform_admin(&self.store().await, id, true)
            .await
            .expect("promote");
        tokio::time::sleep(std::time::Duration::from_millis(
            self.settings.auth.recheck_ms,
        ))
        .await;
    }

    /// The server handle, to stop it from another task.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Another server over this one's database, cache and data folder (a second process of
    /// a scale-out), with `tweak` applied to a copy of this one's settings. This app keeps
    /// the data (the schema, the key prefix, the folder): it must outlive the sibling.
    pub async fn sibling(&self, tweak: Option<fn(&mut Settings)>) -> TestApp {
        let mut settings = self.settings.clone();
        settings.addr = ([127, 0, 0, 1], 0).into();
        if let Some(tweak) = tweak {
            tweak(&mut settings);
        }
        serve(settings, None, Cleanup::default()).await
    }

    /// Waits for the server task to end (after a stop sent through [`TestApp::handle`]).
    pub async fn wait_stopped(&mut self) -> anyhow::Result<()> {
        match self.server.take() {
            Some(server) => server.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A migrated SQLite store in a fresh folder (keep the folder alive as long as the store).
pub async fn sqlite_store() -> (SqlStore, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let settings = test_settings(dir.path());
    let store = SqlStore::connect(&settings, Arc::new(kernel::SystemClock))
        .await
        .expect("SQLite opens");
    store.migrate().await.expect("SQLite migrates");
    (store, dir)
}

/// A PostgreSQL store in its own, migrated schema; `None` only when services are skipped.
/// The schema is dropped when the returned guard drops.
pub async fn postgres_store() -> Option<(SqlStore, impl Drop + std::fmt::Debug)> {
    if services_skipped("PostgreSQL") {
        return None;
    }
    let schema = unique_name();
    let store = postgres_store_in(&schema).await;
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL migrates: {e:#}"));
    Some((
        store,
        Cleanup {
            schema: Some(schema),
            database_url: None,
            redis_prefix: None,
            redis_url: None,
        },
    ))
}

/// A PostgreSQL store on `schema`, not migrated (migration tests).
pub async fn postgres_store_in(schema: &str) -> SqlStore {
    let dir = std::env::temp_dir();
    let mut settings = test_settings(&dir);
    settings.database.url = Some(SecretString::from(postgres_url()));
    settings.database.schema = Some(schema.to_owned());
    SqlStore::connect(&settings, Arc::new(kernel::SystemClock))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} must be reachable for this test (or set QUIRE_TEST_SKIP_SERVICES=1): {e:#}",
                postgres_url()
            )
        })
}

/// A guard that drops a PostgreSQL schema of the database at `url` (the pgvector one).
#[must_use]
pub fn schema_guard_at(url: &str, schema: &str) -> impl Drop + std::fmt::Debug + use<> {
    Cleanup {
        schema: Some(schema.to_owned()),
        database_url: Some(url.to_owned()),
        redis_prefix: None,
        redis_url: None,
    }
}

/// A guard that drops a PostgreSQL schema (for tests that made one themselves).
#[must_use]
pub fn schema_guard(schema: &str) -> impl Drop + std::fmt::Debug {
    Cleanup {
        schema: Some(schema.to_owned()),
        database_url: None,
        redis_prefix: None,
        redis_url: None,
    }
}

/// A Redis cache under a fresh prefix; `None` only when services are skipped. Its keys are
/// removed when the guard drops.
pub async fn redis_cache() -> Option<(Arc<RedisCache>, impl Drop + std::fmt::Debug)> {
    if services_skipped("Redis") {
        return None;
    }
    let prefix = format!("test:{}", unique_name());
    let cache = RedisCache::new(&redis_url(), &prefix, 8).expect("a Redis pool");
    kernel::cache::Cache::ping(&cache).await.unwrap_or_else(|e| {
        panic!(
            "Redis at {} must be reachable for this test (or set QUIRE_TEST_SKIP_SERVICES=1): {e:#}",
            redis_url()
        )
    });
    Some((
        Arc::new(cache),
        Cleanup {
            schema: None,
            database_url: None,
            redis_prefix: Some(prefix),
            redis_url: None,
        },
    ))
}
