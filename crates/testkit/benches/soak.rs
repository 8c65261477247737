//! Soak (issue 15): the production server under a steady mixed load, first without faults,
//! then with one fault a minute; errors, latency and the server's resident set per minute.
//!
//! - **The server** is the real `quire` binary (built with `--features full`), a child
//!   process, so `VmRSS` of `/proc/<pid>/status` is the server's alone (the extraction children
//!   it starts per file are processes of their own, not counted). It runs with production's
//!   defaults (one HTTP worker per core, 10 database connections, two ingestion workers,
//!   extraction in a child process, OWASP argon2) on a private PostgreSQL and a private Redis
//!   ([`testkit::faults`]), with [`testkit::fake_openai::FakeOpenAi`] as its chat model. Only the
//!   budgets that would measure the limiter instead of the server are raised: all the load
//!   comes from one address and a few users, so the rate limits, the free plan's monthly
//!   tokens and its concurrent streams are set out of reach.
//! - **The load**, from this process: `--orgs` organizations, each signed up through the API
//!   (one owner, a `handbook` collection of `--documents` generated documents, an `inbox`
//!   collection), then a mix of `GET /auth/me` 40 %, `GET /documents?limit=20` 25 %,
//!   `POST /search` over the handbook 20 %, an upload of a small Markdown note into the inbox
//!   5 % (ingested by the server's workers) and a streamed chat answer (`POST /chat/sessions`,
//!   then `POST /chat/sessions/{id}/messages` with `stream: true`, read to its end) 10 %.
//!   Uploads go to a collection nobody searches, so the searched corpus stays the same size
//!   through the run. Access tokens (15 minutes) are refreshed every 5 minutes.
//! - **Capacity**: a closed loop of `--concurrency` clients runs the mix for
//!   `--calibrate-secs`; its throughput is the capacity. The soak then runs open loop (a
//!   request every 1/rate seconds, whatever the answers do) at `--load` (70 %) of it, or at
//!   `--rate` requests per second. Latency runs from the request's scheduled time, to the end
//!   of its body (a chat answer: its session's creation and the whole stream).
//! - **Phase 1**: `--minutes` with no fault. **Phase 2**: the same with a fault every
//!   `--fault-every` seconds (a quarter into each period), in turn: Redis killed for 10 s and
//!   started again empty, Redis paused (`SIGSTOP`) for 8 s, PostgreSQL stopped
//!   (`-m immediate`) for 10 s, the provider answering 500 to every call for 15 s.
//! - **Per minute**: requests, answers by class (2xx; 402/429, expected under limits; other
//!   4xx; 503; other 5xx; transport errors and timeouts), p50/p99, chat answers done and
//!   incomplete, the server's RSS at the minute's end, and the faults of that minute.
//! - **At the end**: every upload acknowledged with 202 is polled until `ready` or `failed`
//!   (for at most `--settle-secs`); each organization's `/billing/plan` `used` is compared with
//!   the ledger's total in `/usage`, and the ledger's chat events with the answers this client
//!   saw end (`done`) or start; the server's log (warn and above) is summarized.
//!
//! ```text
//! cargo build --release -p quire --features full
//! QUIRE_TEST_PG_BIN=… cargo bench -p testkit --bench soak -- [--minutes 10] [--fault-every 60]
//!     [--calibrate-secs 30] [--load 0.7 | --rate R] [--concurrency 32] [--orgs 4]
//!     [--documents 8] [--settle-secs 300] [--server PATH] [--phases both|clean|faults]
//! ```
//! The server binary is `--server`, else `quire` next to this bench's target folder
//! (`target/release/quire`). See docs/benchmarks.md, "Soak (issue 15)".

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::faults::{PrivatePostgres, PrivateRedis};

/// The chat model the fake serves.
const MODEL: &str = "gpt-4o-mini";
/// What the fake answers (a few content chunks).
const REPLY: &str = "Receipts are filed with the travel desk within thirty days. [S1]";
const PASSWORD: &str = "correct horse battery";
/// Requests in flight beyond which the open loop sheds (counts, does not send) new ones.
const MAX_IN_FLIGHT: usize = 4_096;
/// A request's client-side limit (the server's own is 30 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the access tokens are refreshed (they live 15 minutes).
const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// A budget out of the load's reach.
const UNLIMITED: &str = "1000000000";

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
enum Op {
    Me,
    List,
    Search,
    Upload,
    Chat,
}

/// The mix, in percent.
const MIX: [(Op, u32); 5] = [
    (Op::Me, 40),
    (Op::List, 25),
    (Op::Search, 20),
    (Op::Upload, 5),
    (Op::Chat, 10),
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Me => "GET /auth/me",
            Self::List => "GET /documents?limit=20",
            Self::Search => "POST /search",
            Self::Upload => "POST /documents (upload)",
            Self::Chat => "chat (session + SSE answer)",
        }
    }

    fn pick(roll: u64) -> Self {
        let total: u32 = MIX.iter().map(|(_, w)| w).sum();
        let mut r = (roll % u64::from(total)) as u32;
        for (op, w) in MIX {
            if r < w {
                return op;
            }
            r -= w;
        }
        Self::Me
    }
}

/// How an answer counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Ok,
    /// 402, 429: refusals the limits are meant to give.
    Limited,
    /// Any other 4xx.
    Client,
    /// 503: an outage said as such.
    Unavailable,
    /// Any other 5xx (500, 502, …).
    Server,
    /// No answer: connection refused or reset, or the client's time limit.
    Transport,
}

const CLASSES: usize = 6;

impl Class {
    fn of(status: Option<u16>) -> Self {
        match status {
            None => Self::Transport,
            Some(200..=399) => Self::Ok,
            Some(402 | 429) => Self::Limited,
            Some(400..=499) => Self::Client,
            Some(503) => Self::Unavailable,
            Some(_) => Self::Server,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One request's result.
struct Outcome {
    op: Op,
    /// The status of the answer (of the first request that failed, for a chat); `None`: no
    /// answer.
    status: Option<u16>,
    latency: Duration,
    /// A chat whose answer stream started: `Some(true)` when it ended with `done`.
    chat_done: Option<bool>,
    /// A chat stream's `error` code, or a transport error's kind.
    note: Option<String>,
}

/// Counts of a window (a minute, a phase).
#[derive(Default)]
struct Window {
    requests: u64,
    classes: [u64; CLASSES],
    /// Statuses other than 2xx (0: transport).
    statuses: BTreeMap<u16, u64>,
    /// Latencies in microseconds, every request.
    latencies: Vec<u32>,
    per_op: BTreeMap<Op, Vec<u32>>,
    per_op_errors: BTreeMap<Op, u64>,
    chat_done: u64,
    chat_incomplete: u64,
    notes: BTreeMap<String, u64>,
    shed: u64,
}

impl Window {
    fn record(&mut self, o: &Outcome) {
        self.requests += 1;
        let class = Class::of(o.status);
        self.classes[class.index()] += 1;
        if class != Class::Ok {
            *self.statuses.entry(o.status.unwrap_or(0)).or_default() += 1;
            *self.per_op_errors.entry(o.op).or_default() += 1;
        }
        let us = u32::try_from(o.latency.as_micros()).unwrap_or(u32::MAX);
        self.latencies.push(us);
        self.per_op.entry(o.op).or_default().push(us);
        match o.chat_done {
            Some(true) => self.chat_done += 1,
            Some(false) => self.chat_incomplete += 1,
            None => {}
        }
        if let Some(note) = &o.note {
            *self
                .notes
                .entry(format!("{}: {note}", o.op.name()))
                .or_default() += 1;
        }
    }

    fn merge(&mut self, other: Self) {
        self.requests += other.requests;
        for i in 0..CLASSES {
            self.classes[i] += other.classes[i];
        }
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.latencies.extend(other.latencies);
        for (k, v) in other.per_op {
            self.per_op.entry(k).or_default().extend(v);
        }
        for (k, v) in other.per_op_errors {
            *self.per_op_errors.entry(k).or_default() += v;
        }
        self.chat_done += other.chat_done;
        self.chat_incomplete += other.chat_incomplete;
        for (k, v) in other.notes {
            *self.notes.entry(k).or_default() += v;
        }
        self.shed += other.shed;
    }

    fn errors(&self) -> u64 {
        self.requests - self.classes[Class::Ok.index()]
    }
}

/// The `p` quantile (0–1) of `us`, in milliseconds.
fn quantile_ms(us: &mut [u32], p: f64) -> f64 {
    if us.is_empty() {
        return f64::NAN;
    }
    us.sort_unstable();
    let i = ((us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(us[i.min(us.len() - 1)]) / 1e3
}

/// xorshift64*, seeded per request.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed: neighbouring seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick(&mut self, words: &'static str) -> &'static str {
        let n = words.split_whitespace().count();
        words.split_whitespace().nth(self.below(n)).unwrap_or("the")
    }
}

const WORDS: &str = "travel policy receipts expenses flights hotel meals allowance manager \
    approval budget invoice contract supplier payment deadline quarter report audit security \
    laptop password office holiday leave salary pension insurance training conference mileage \
    taxi train booking refund currency advance card limit exception employee contractor \
    visitor badge parking equipment software license printer network backup incident privacy \
    records retention archive customer complaint warranty shipping warehouse inventory";

const GLUE: &str = "the a for of and must is are within before after by with to every each";

/// About `bytes` of sentences of topic words and glue.
fn text(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes {
        let words = 8 + rng.below(10);
        for i in 0..words {
            out.push_str(if i % 2 == 0 {
                rng.pick(WORDS)
            } else {
                rng.pick(GLUE)
            });
            out.push(if i + 1 == words { '.' } else { ' ' });
        }
        out.push_str(if rng.below(5) == 0 { "\n\n" } else { " " });
    }
    out
}

fn question(rng: &mut Rng) -> String {
    format!(
        "What does the handbook say about {} and {} for {}?",
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.pick(WORDS)
    )
}

struct Args {
    server: Option<PathBuf>,
    minutes: u64,
    fault_every: u64,
    calibrate_secs: u64,
    load: f64,
    rate: Option<f64>,
    concurrency: usize,
    orgs: usize,
    documents: usize,
    settle_secs: u64,
    clean: bool,
    faults: bool,
}

fn args() -> Args {
    let mut a = Args {
        server: std::env::var_os("QUIRE_SOAK_SERVER").map(PathBuf::from),
        minutes: 10,
        fault_every: 60,
        calibrate_secs: 30,
        load: 0.7,
        rate: None,
        concurrency: 32,
        orgs: 4,
        documents: 8,
        settle_secs: 300,
        clean: true,
        faults: true,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let flag = argv[i].clone();
        match argv[i].as_str() {
            "--server" => a.server = Some(PathBuf::from(&value)),
            "--minutes" => {
                a.minutes = value
                    .parse()
                    .unwrap_or_else(|_| bad_flag(&flag, "minutes", &value))
            }
            "--fault-every" => {
                a.fault_every = value
                    .parse()
                    .unwrap_or_else(|_| bad_flag(&flag, "seconds", &value))
            }
            "--calibrate-secs" => {
                a.calibrate_secs = value
                    .parse()
                    .unwrap_or_else(|_| bad_flag(&flag, "seconds", &value));
            }
            "--load" => {
                a.load = value
                    .parse()
                    .unwrap_or_else(|_| bad_flag(&flag, "a fraction", &value))
            }
            "--rate" => {
                a.rate = Some(
                    value
                        .parse()
                        .unwrap_or_else(|_| bad_flag(&flag, "requests/s", &value)),
                )
            }
            "--concurrency" => {
                a.concurrency = value
                    .parse()
                    .unwrap_or_else(|_| bad_flag(&flag, "clients", &value))
            }
            "--orgs" => {
                a.orgs = value
                    .parse()
                    .unwrap_or_else(|_| bad_flag(&flag, "a count", &value))
            }
            "--documents" => {
                a.documents = value
                    .parse()
                    .unwrap_or_else(|_| bad_flag(&flag, "a count", &value))
            }
            "--settle-secs" => {
                a.settle_secs = value
                    .parse()
                    .unwrap_or_else(|_| bad_flag(&flag, "seconds", &value))
            }
            "--phases" => {
                (a.clean, a.faults) = match value.as_str() {
                    "both" => (true, true),
                    "clean" => (true, false),
                    "faults" => (false, true),
                    _ => bad_flag(&flag, "both, clean or faults", &value),
                };
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(a.fault_every >= 4, "--fault-every must be at least 4 s");
    a
}

fn bad_flag(flag: &str, what: &str, value: &str) -> ! {
    panic!("{flag}: expected {what}, got {value:?}")
}

/// The server binary: `--server`, else `quire` in this bench's profile folder.
fn server_binary(args: &Args) -> PathBuf {
    let path = args.server.clone().unwrap_or_else(|| {
        // target/release/deps/soak-… → target/release/quire
        let exe = std::env::current_exe().expect("this bench's path");
        exe.parent()
            .and_then(|deps| deps.parent())
            .map(|profile| profile.join("quire"))
            .expect("a target folder")
    });
    assert!(
        path.is_file(),
        "no server binary at {}: build it with `cargo build --release -p quire --features full` \
         or pass --server PATH",
        path.display()
    );
    path
}

/// `VmRSS` of `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The server as a child process; killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
    _data: tempfile::TempDir,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_server(binary: &Path, pg: &str, redis: &str, provider: &str) -> Server {
    let data = tempfile::Builder::new()
        .prefix("quire-soak")
        .tempdir()
        .expect("a data folder");
    let port = free_port();
    let log = std::env::temp_dir().join(format!("quire-soak-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).expect("the server's log file");
    let key = crypto::PasetoTokens::generate_key().expect("a signing key");
    let mut cmd = Command::new(binary);
    cmd.arg("serve");
    // Only this bench's settings: none of the caller's QUIRE_* (QUIRE_TEST_* are not settings).
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (k.starts_with("QUIRE_") && !k.starts_with("QUIRE_TEST_")) || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let mut env: Vec<(String, String)> = vec![
        ("QUIRE_ADDR".into(), format!("127.0.0.1:{port}")),
        ("QUIRE_DATA_DIR".into(), data.path().display().to_string()),
        ("QUIRE_LOG__FORMAT".into(), "json".into()),
        ("QUIRE_LOG__FILTER".into(), "warn".into()),
        ("QUIRE_DATABASE__URL".into(), pg.to_owned()),
        ("QUIRE_AUTH__SIGNING_KEYS".into(), format!("[\"{key}\"]")),
        ("QUIRE_CACHE__BACKEND".into(), "redis".into()),
        ("QUIRE_CACHE__REDIS_URL".into(), redis.to_owned()),
        ("QUIRE_PROVIDER__BASE_URL".into(), provider.to_owned()),
        ("QUIRE_PROVIDER__API_KEY".into(), "sk-soak".into()),
        (
            "QUIRE_PROVIDER__CHAT_MODELS".into(),
            format!("[\"{MODEL}\"]"),
        ),
        (
            "QUIRE_BILLING__PLANS__FREE__MONTHLY_TOKEN_LIMIT".into(),
            "1000000000000".into(),
        ),
        (
            "QUIRE_BILLING__PLANS__FREE__MAX_CONCURRENT_STREAMS".into(),
            "100000".into(),
        ),
    ];
    for kind in ["CHAT", "EMBEDDINGS", "UPLOAD"] {
        for who in ["PER_USER", "PER_API_KEY", "PER_IP", "PER_TENANT"] {
            env.push((
                format!("QUIRE_RATE_LIMITS__{kind}__{who}"),
                UNLIMITED.to_owned(),
            ));
        }
    }
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("the log file"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
        _data: data,
    };
    let client = testkit::http_client().build().expect("a client");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = client
            .get(format!("{}/health/ready", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not get ready in 2 minutes; its log: {}",
            server.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server
}

/// An organization of the load: its owner's tokens and its collections.
struct Org {
    slug: String,
    id: String,
    handbook: String,
    inbox: String,
    /// (access, refresh).
    tokens: RwLock<(String, String)>,
    /// Uploads acknowledged with 202.
    uploads: Mutex<Vec<String>>,
    /// Chat answers whose stream started (200), and those that ended `done`.
    chats_started: AtomicU64,
    chats_done: AtomicU64,
}

impl Org {
    fn token(&self) -> String {
        self.tokens.read().expect("tokens").0.clone()
    }
}

struct Ctx {
    base: String,
    client: reqwest::Client,
    orgs: Vec<Arc<Org>>,
    seq: AtomicU64,
}

/// Sends `req` and reads the whole body: the status and the body.
async fn send(req: reqwest::RequestBuilder) -> Result<(u16, String), String> {
    let res = req.send().await.map_err(transport)?;
    let status = res.status().as_u16();
    let body = res.text().await.map_err(transport)?;
    Ok((status, body))
}

fn transport(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "body cut".to_owned()
    } else {
        "transport".to_owned()
    }
}

/// `POST path` with a JSON body (as `token`, in `tenant`): 2xx JSON or a panic (set-up only).
async fn setup_call(
    ctx: &Ctx,
    token: &str,
    tenant: Option<&str>,
    path: &str,
    body: Value,
) -> Value {
    let mut req = ctx
        .client
        .post(format!("{}{path}", ctx.base))
        .bearer_auth(token)
        .json(&body);
    if let Some(t) = tenant {
        req = req.header("X-Tenant-ID", t);
    }
    let (status, text) = send(req).await.unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!((200..300).contains(&status), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn upload_form(file_name: &str, text: &str, collection: &str) -> (String, Vec<u8>) {
    testkit::multipart::Form::new()
        .file("file", file_name, text.as_bytes())
        .text("collection_id", collection)
        .finish()
}

/// Signs up `slug`'s owner and organization, its collections and its handbook (ready).
async fn seed_org(ctx: &Ctx, slug: &str, documents: usize, rng: &mut Rng) -> Org {
    let (status, answer) = send(ctx.client.post(format!("{}/api/v1/auth/register", ctx.base)).json(
        &json!({"email": format!("{slug}@example.com"), "password": PASSWORD, "name": slug}),
    ))
    .await
    .expect("registering");
    assert_eq!(status, 201, "registering {slug}: {answer}");
    let reg: Value = serde_json::from_str(&answer).expect("JSON");
    let access = reg["tokens"]["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let refresh = reg["tokens"]["refresh_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let org = setup_call(
        ctx,
        &access,
        None,
        "/api/v1/orgs",
        json!({"name": slug, "slug": slug}),
    )
    .await;
    let id = org["id"].as_str().expect("an org id").to_owned();
    let collection = |name: &'static str| {
        let (access, id) = (access.clone(), id.clone());
        async move {
            let c = setup_call(
                ctx,
                &access,
                Some(&id),
                "/api/v1/collections",
                json!({"name": name}),
            )
            .await;
            c["id"].as_str().expect("a collection id").to_owned()
        }
    };
    let handbook = collection("handbook").await;
    let inbox = collection("inbox").await;
    let mut ids = Vec::new();
    for d in 0..documents {
        let body = format!("Handbook part {d}.\n\n{}", text(rng, 4_096));
        let (content_type, form) = upload_form(&format!("handbook-{d:02}.txt"), &body, &handbook);
        let req = ctx
            .client
            .post(format!("{}/api/v1/documents", ctx.base))
            .bearer_auth(&access)
            .header("X-Tenant-ID", &id)
            .header("content-type", content_type)
            .body(form);
        let (status, text) = send(req).await.expect("an upload");
        assert_eq!(status, 202, "{text}");
        let up: Value = serde_json::from_str(&text).expect("JSON");
        ids.push(
            up["document"]["id"]
                .as_str()
                .expect("a document id")
                .to_owned(),
        );
    }
    let org = Org {
        slug: slug.to_owned(),
        id,
        handbook,
        inbox,
        tokens: RwLock::new((access, refresh)),
        uploads: Mutex::new(Vec::new()),
        chats_started: AtomicU64::new(0),
        chats_done: AtomicU64::new(0),
    };
    let settled = settle(ctx, &org, &ids, Duration::from_secs(120)).await;
    assert_eq!(
        settled.ready,
        ids.len(),
        "the handbook of {slug}: {:?}",
        settled.other
    );
    org
}

/// What became of a list of uploads.
#[derive(Default)]
struct Settled {
    ready: usize,
    failed: Vec<String>,
    /// Still queued or running (id, status, error) when the time was up.
    other: Vec<String>,
}

/// Polls each document until it is `ready` or `failed`, for at most `within` in all.
async fn settle(ctx: &Ctx, org: &Org, ids: &[String], within: Duration) -> Settled {
    let deadline = Instant::now() + within;
    let mut out = Settled::default();
    let mut pending: Vec<String> = ids.to_vec();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let req = ctx
                .client
                .get(format!("{}/api/v1/documents/{id}", ctx.base))
                .bearer_auth(org.token())
                .header("X-Tenant-ID", &org.id);
            let doc = match send(req).await {
                Ok((200, text)) => serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                _ => Value::Null,
            };
            match doc["status"].as_str() {
                Some("ready") => out.ready += 1,
                Some("failed") => out.failed.push(format!("{id}: {}", doc["error"])),
                status => still.push((id, status.map(str::to_owned), doc["error"].clone())),
            }
        }
        if still.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            out.other = still
                .into_iter()
                .map(|(id, status, error)| format!("{id}: {status:?} {error}"))
                .collect();
            break;
        }
        pending = still.into_iter().map(|(id, _, _)| id).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out
}

/// Refreshes every organization's tokens every [`REFRESH_EVERY`] (retrying each 5 s while
/// refreshing fails, as during an outage).
async fn refresher(ctx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        for org in &ctx.orgs {
            loop {
                let refresh = org.tokens.read().expect("tokens").1.clone();
                let req = ctx
                    .client
                    .post(format!("{}/api/v1/auth/refresh", ctx.base))
                    .json(&json!({ "refresh_token": refresh }));
                if let Ok((200, text)) = send(req).await
                    && let Ok(t) = serde_json::from_str::<Value>(&text)
                    && let (Some(a), Some(r)) =
                        (t["access_token"].as_str(), t["refresh_token"].as_str())
                {
                    *org.tokens.write().expect("tokens") = (a.to_owned(), r.to_owned());
                    break;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Runs one request of `op`, timed from `scheduled`.
async fn run_op(ctx: &Ctx, op: Op, seq: u64, scheduled: Instant) -> Outcome {
    let mut rng = Rng::new(seq);
    let org = &ctx.orgs[rng.below(ctx.orgs.len())];
    let token = org.token();
    let base = &ctx.base;
    let c = &ctx.client;
    let tenant = |r: reqwest::RequestBuilder| r.bearer_auth(&token).header("X-Tenant-ID", &org.id);
    let done = |status: Option<u16>, note: Option<String>| Outcome {
        op,
        status,
        latency: scheduled.elapsed(),
        chat_done: None,
        note,
    };
    let simple = |r: Result<(u16, String), String>| match r {
        Ok((s, _)) => done(Some(s), None),
        Err(e) => done(None, Some(e)),
    };
    match op {
        Op::Me => simple(send(c.get(format!("{base}/api/v1/auth/me")).bearer_auth(&token)).await),
        Op::List => simple(send(tenant(c.get(format!("{base}/api/v1/documents?limit=20")))).await),
        Op::Search => {
            let body =
                json!({"query": question(&mut rng), "collection_ids": [org.handbook], "top_k": 8});
            simple(send(tenant(c.post(format!("{base}/api/v1/search"))).json(&body)).await)
        }
        Op::Upload => {
            let note = format!("# Note {seq}\n\n{}\n", text(&mut rng, 600));
            let (content_type, form) = upload_form(&format!("note-{seq}.md"), &note, &org.inbox);
            let req = tenant(c.post(format!("{base}/api/v1/documents")))
                .header("content-type", content_type)
                .body(form);
            match send(req).await {
                Ok((202, text)) => {
                    let id = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["document"]["id"].as_str().map(str::to_owned));
                    match id {
                        Some(id) => {
                            org.uploads.lock().expect("uploads").push(id);
                            done(Some(202), None)
                        }
                        None => done(Some(202), Some("202 without a document id".into())),
                    }
                }
                other => simple(other),
            }
        }
        Op::Chat => {
            let body = json!({"collection_ids": [org.handbook], "model": MODEL});
            let session = match send(
                tenant(c.post(format!("{base}/api/v1/chat/sessions"))).json(&body),
            )
            .await
            {
                Ok((201, text)) => serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned)),
                other => return simple(other),
            };
            let Some(session) = session else {
                return done(Some(201), Some("201 without a session id".into()));
            };
            let res = tenant(c.post(format!("{base}/api/v1/chat/sessions/{session}/messages")))
                .json(&json!({"content": question(&mut rng), "stream": true}))
                .send()
                .await;
            let mut res = match res {
                Ok(r) => r,
                Err(e) => return done(None, Some(transport(e))),
            };
            if res.status() != StatusCode::OK {
                let status = res.status().as_u16();
                let _ = res.bytes().await;
                return done(Some(status), None);
            }
            org.chats_started.fetch_add(1, Ordering::Relaxed);
            let mut seen = String::new();
            let mut cut = None;
            loop {
                match res.chunk().await {
                    Ok(Some(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                    Ok(None) => break,
                    Err(e) => {
                        cut = Some(transport(e));
                        break;
                    }
                }
            }
            let ok = seen.contains("\nevent: done\n");
            if ok {
                org.chats_done.fetch_add(1, Ordering::Relaxed);
            }
            let note = if ok {
                None
            } else {
                Some(
                    stream_error(&seen)
                        .or(cut)
                        .unwrap_or_else(|| "stream ended without done".into()),
                )
            };
            Outcome {
                op,
                status: Some(200),
                latency: scheduled.elapsed(),
                chat_done: Some(ok),
                note,
            }
        }
    }
}

/// The `code` of a stream's `error` event.
fn stream_error(seen: &str) -> Option<String> {
    let at = seen.find("\nevent: error\n")?;
    let data = seen[at..].lines().find_map(|l| l.strip_prefix("data: "))?;
    let v: Value = serde_json::from_str(data).ok()?;
    Some(format!(
        "stream error {}",
        v["code"]
            .as_str()
            .or(v["error"].as_str())
            .unwrap_or("(no code)")
    ))
}

/// Closed loop: `concurrency` clients run the mix for `secs`; the requests per second.
async fn calibrate(ctx: &Arc<Ctx>, concurrency: usize, secs: u64) -> (f64, Window) {
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let ctx = Arc::clone(ctx);
        tasks.push(tokio::spawn(async move {
            let mut w = Window::default();
            while Instant::now() < end {
                let seq = ctx.seq.fetch_add(1, Ordering::Relaxed);
                let op = Op::pick(Rng::new(seq ^ 0xa5a5).next());
                let o = run_op(&ctx, op, seq, Instant::now()).await;
                w.record(&o);
            }
            w
        }));
    }
    let mut all = Window::default();
    for t in tasks {
        all.merge(t.await.expect("a calibration client"));
    }
    let rate = all.requests as f64 / started.elapsed().as_secs_f64();
    (rate, all)
}

/// The faults of phase 2, in turn.
#[derive(Clone, Copy, Debug)]
enum FaultKind {
    RedisDown,
    RedisPaused,
    PostgresDown,
    ProviderFailing,
}

const FAULTS: [FaultKind; 4] = [
    FaultKind::RedisDown,
    FaultKind::RedisPaused,
    FaultKind::PostgresDown,
    FaultKind::ProviderFailing,
];

impl FaultKind {
    fn label(self) -> &'static str {
        match self {
            Self::RedisDown => "Redis killed, restarted empty",
            Self::RedisPaused => "Redis paused (SIGSTOP)",
            Self::PostgresDown => "PostgreSQL stopped (immediate), restarted",
            Self::ProviderFailing => "provider answers 500",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::RedisDown => "redis down",
            Self::RedisPaused => "redis paused",
            Self::PostgresDown => "pg down",
            Self::ProviderFailing => "provider 500",
        }
    }

    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Self::RedisDown | Self::PostgresDown => 10,
            Self::RedisPaused => 8,
            Self::ProviderFailing => 15,
        })
    }
}

/// The services a fault acts on.
struct Services {
    redis: Arc<Mutex<PrivateRedis>>,
    pg: Arc<Mutex<PrivatePostgres>>,
    fake: Arc<FakeOpenAi>,
}

/// Runs `f` on the blocking pool (the fault harness waits with `std::thread::sleep`).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking task")
}

/// Injects `kind` for its duration; returns how long the service took to come back.
async fn inject(kind: FaultKind, s: &Services) -> Duration {
    let hold = kind.duration();
    match kind {
        FaultKind::RedisDown => {
            let r = Arc::clone(&s.redis);
            blocking(move || r.lock().expect("redis").stop()).await;
            tokio::time::sleep(hold).await;
            let r = Arc::clone(&s.redis);
            let t = Instant::now();
            blocking(move || r.lock().expect("redis").start()).await;
            t.elapsed()
        }
        FaultKind::RedisPaused => {
            let r = Arc::clone(&s.redis);
            blocking(move || r.lock().expect("redis").pause()).await;
            tokio::time::sleep(hold).await;
            let r = Arc::clone(&s.redis);
            let t = Instant::now();
            blocking(move || r.lock().expect("redis").resume()).await;
            t.elapsed()
        }
        FaultKind::PostgresDown => {
            let p = Arc::clone(&s.pg);
            blocking(move || p.lock().expect("pg").stop()).await;
            tokio::time::sleep(hold).await;
            let p = Arc::clone(&s.pg);
            let t = Instant::now();
            blocking(move || p.lock().expect("pg").start()).await;
            t.elapsed()
        }
        FaultKind::ProviderFailing => {
            // Faults are consumed one per provider call: keep a few queued for the whole
            // window, then drop what is left.
            let until = Instant::now() + hold;
            while Instant::now() < until {
                if s.fake.pending_faults() < 16 {
                    s.fake.push_faults((0..16).map(|_| Fault::Status {
                        status: 500,
                        retry_after: None,
                    }));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            s.fake.clear_faults();
            Duration::ZERO
        }
    }
}

/// A fault as it happened, seconds into its phase.
struct FaultEvent {
    kind: FaultKind,
    at: f64,
    back_at: f64,
    recovery: Duration,
}

/// One phase: open loop at `rate` for `minutes`, with faults when `services` is given.
async fn phase(
    ctx: &Arc<Ctx>,
    name: &str,
    rate: f64,
    minutes: u64,
    fault_every: u64,
    services: Option<&Services>,
    pid: u32,
) -> (Window, Vec<f64>, Vec<FaultEvent>) {
    let start = Instant::now();
    let end = start + Duration::from_secs(minutes * 60);
    let current = Arc::new(Mutex::new(Window::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let events: Arc<Mutex<Vec<FaultEvent>>> = Arc::new(Mutex::new(Vec::new()));

    // The dispatcher: one request every 1/rate s from `start`, whatever the answers do.
    let dispatcher = {
        let (ctx, current, in_flight) = (
            Arc::clone(ctx),
            Arc::clone(&current),
            Arc::clone(&in_flight),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            loop {
                let at = start + Duration::from_secs_f64(i as f64 / rate);
                if at >= end {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                i += 1;
                if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                    current.lock().expect("window").shed += 1;
                    continue;
                }
                let seq = ctx.seq.fetch_add(1, Ordering::Relaxed);
                let op = Op::pick(Rng::new(seq ^ 0xa5a5).next());
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (ctx, current, in_flight) = (
                    Arc::clone(&ctx),
                    Arc::clone(&current),
                    Arc::clone(&in_flight),
                );
                tokio::spawn(async move {
                    let o = run_op(&ctx, op, seq, at).await;
                    current.lock().expect("window").record(&o);
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        })
    };

    // The faults: one per period, a quarter into it, in turn.
    let injector = services.map(|s| {
        let s = Services {
            redis: Arc::clone(&s.redis),
            pg: Arc::clone(&s.pg),
            fake: Arc::clone(&s.fake),
        };
        let events = Arc::clone(&events);
        tokio::spawn(async move {
            let every = Duration::from_secs(fault_every);
            for k in 0.. {
                let kind = FAULTS[k % FAULTS.len()];
                let at = start + every * k as u32 + every / 4;
                if at + kind.duration() + Duration::from_secs(2) > end {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                let t0 = start.elapsed().as_secs_f64();
                println!(
                    "  [+{t0:6.1} s] fault: {} for {} s",
                    kind.label(),
                    kind.duration().as_secs()
                );
                let recovery = inject(kind, &s).await;
                let t1 = start.elapsed().as_secs_f64();
                println!(
                    "  [+{t1:6.1} s] fault over: {} (back in {:.1} s)",
                    kind.short(),
                    recovery.as_secs_f64()
                );
                events.lock().expect("events").push(FaultEvent {
                    kind,
                    at: t0,
                    back_at: t1,
                    recovery,
                });
            }
        })
    });

    println!(
        "| {name} min | requests | 2xx | 402/429 | other 4xx | 503 | other 5xx | transport | p50 ms | p99 ms | chat done/incomplete | RSS MiB | faults |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut total = Window::default();
    let mut rss = Vec::new();
    for m in 1..=minutes {
        tokio::time::sleep_until((start + Duration::from_secs(m * 60)).into()).await;
        if m == minutes {
            // The last minute takes the requests still in flight.
            let deadline = Instant::now() + CLIENT_TIMEOUT + Duration::from_secs(5);
            while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut w = std::mem::take(&mut *current.lock().expect("window"));
        let r = rss_mib(pid);
        rss.push(r);
        let lo = (m - 1) as f64 * 60.0;
        let hi = m as f64 * 60.0;
        let faults: Vec<String> = events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| e.at >= lo && e.at < hi)
            .map(|e| format!("{} @{:.0}s", e.kind.short(), e.at - lo))
            .collect();
        let mut statuses = String::new();
        for (s, n) in &w.statuses {
            if *s != 0 {
                let _ = write!(statuses, " {s}×{n}");
            }
        }
        let p50 = quantile_ms(&mut w.latencies, 0.50);
        let p99 = quantile_ms(&mut w.latencies, 0.99);
        println!(
            "| {m} | {} | {} | {} | {} | {} | {} | {} | {p50:.1} | {p99:.1} | {}/{} | {r:.1} | {}{} |",
            w.requests,
            w.classes[Class::Ok.index()],
            w.classes[Class::Limited.index()],
            w.classes[Class::Client.index()],
            w.classes[Class::Unavailable.index()],
            w.classes[Class::Server.index()],
            w.classes[Class::Transport.index()] + w.shed,
            w.chat_done,
            w.chat_incomplete,
            faults.join(", "),
            if statuses.is_empty() {
                String::new()
            } else {
                format!(" (errors:{statuses})")
            }
        );
        total.merge(w);
    }
    dispatcher.await.expect("the dispatcher");
    if let Some(i) = injector {
        i.await.expect("the injector");
    }
    let events = std::mem::take(&mut *events.lock().expect("events"));
    (total, rss, events)
}

fn summary(name: &str, w: &mut Window, secs: f64) {
    println!(
        "\n{name}: {} requests in {secs:.0} s ({:.1}/s), errors {} ({:.2} %), shed {}; chat done {} / incomplete {}",
        w.requests,
        w.requests as f64 / secs,
        w.errors(),
        100.0 * w.errors() as f64 / (w.requests.max(1)) as f64,
        w.shed,
        w.chat_done,
        w.chat_incomplete
    );
    let p50 = quantile_ms(&mut w.latencies, 0.5);
    let p99 = quantile_ms(&mut w.latencies, 0.99);
    let p999 = quantile_ms(&mut w.latencies, 0.999);
    println!("  all: p50 {p50:.1} ms, p99 {p99:.1} ms, p99.9 {p999:.1} ms");
    for (op, lat) in &mut w.per_op {
        let errors = w.per_op_errors.get(op).copied().unwrap_or(0);
        println!(
            "  {:<30} {:>7} req, {:>5} errors, p50 {:>7.1} ms, p99 {:>8.1} ms",
            op.name(),
            lat.len(),
            errors,
            quantile_ms(lat, 0.5),
            quantile_ms(lat, 0.99)
        );
    }
    if !w.statuses.is_empty() {
        let s: Vec<String> = w
            .statuses
            .iter()
            .map(|(k, v)| {
                if *k == 0 {
                    format!("transport×{v}")
                } else {
                    format!("{k}×{v}")
                }
            })
            .collect();
        println!("  error statuses: {}", s.join(", "));
    }
    for (note, n) in &w.notes {
        println!("  {note}: {n}");
    }
}

/// The server log's warnings and errors, grouped by level and message, most frequent first.
fn log_summary(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        println!("\nserver log {}: unreadable", path.display());
        return;
    };
    let mut groups: HashMap<(String, String), u64> = HashMap::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        let (level, message) = match serde_json::from_str::<Value>(line) {
            Ok(v) => (
                v["level"].as_str().unwrap_or("?").to_owned(),
                v["fields"]["message"]
                    .as_str()
                    .or(v["message"].as_str())
                    .unwrap_or("?")
                    .to_owned(),
            ),
            Err(_) => ("(text)".to_owned(), line.chars().take(120).collect()),
        };
        *groups.entry((level, message)).or_default() += 1;
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    println!(
        "\nserver log {} ({lines} lines, warn and above):",
        path.display()
    );
    for ((level, message), n) in groups.iter().take(25) {
        println!("  {n:>6} {level:<5} {message}");
    }
}

fn main() {
    let args = args();
    if !testkit::faults::available("soak") {
        return;
    }
    let binary = server_binary(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(soak(args, binary));
}

#[allow(clippy::too_many_lines)]
async fn soak(args: Args, binary: PathBuf) {
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| time::OffsetDateTime::from(t).to_string())
        .unwrap_or_default();
    println!("server binary: {} (built {built})", binary.display());
    let (redis, pg) = blocking(|| (PrivateRedis::start_new(), PrivatePostgres::start_new())).await;
    let fake = Arc::new(
        FakeOpenAi::builder()
            .api_key("sk-soak")
            .reply(REPLY)
            .start(),
    );
    println!(
        "private PostgreSQL {}, private Redis {}, fake provider {}",
        pg.url(),
        redis.url(),
        fake.base_url()
    );
    let server = start_server(&binary, &pg.url(), &redis.url(), &fake.base_url()).await;
    let pid = server.pid();
    println!(
        "server pid {pid} at {}, log {}; RSS at start {:.1} MiB",
        server.base,
        server.log.display(),
        rss_mib(pid)
    );
    let services = Services {
        redis: Arc::new(Mutex::new(redis)),
        pg: Arc::new(Mutex::new(pg)),
        fake: Arc::clone(&fake),
    };

    let client = testkit::http_client()
        .timeout(CLIENT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(1_024)
        .build()
        .expect("a client");
    let mut setup = Ctx {
        base: server.base.clone(),
        client,
        orgs: Vec::new(),
        seq: AtomicU64::new(1),
    };
    let t = Instant::now();
    let mut rng = Rng::new(42);
    for i in 0..args.orgs {
        let org = seed_org(&setup, &format!("soak{i}"), args.documents, &mut rng).await;
        setup.orgs.push(Arc::new(org));
    }
    println!(
        "seeded {} organizations × {} handbook documents in {:.1} s; RSS {:.1} MiB",
        args.orgs,
        args.documents,
        t.elapsed().as_secs_f64(),
        rss_mib(pid)
    );
    let ctx = Arc::new(setup);
    let refresh = tokio::spawn(refresher(Arc::clone(&ctx)));
    let mix: Vec<String> = MIX
        .iter()
        .map(|(op, w)| format!("{} {w} %", op.name()))
        .collect();
    println!("mix: {}", mix.join(", "));

    let rate = if let Some(rate) = args.rate {
        println!("rate: {rate:.1} requests/s (--rate)");
        rate
    } else {
        let (capacity, mut w) = calibrate(&ctx, args.concurrency, args.calibrate_secs).await;
        summary(
            &format!("calibration ({} clients, closed loop)", args.concurrency),
            &mut w,
            args.calibrate_secs as f64,
        );
        let rate = capacity * args.load;
        println!(
            "capacity {capacity:.1} requests/s; soak at {:.0} %: {rate:.1} requests/s; RSS {:.1} MiB",
            args.load * 100.0,
            rss_mib(pid)
        );
        rate
    };

    let secs = (args.minutes * 60) as f64;
    let mut rss_rows = Vec::new();
    if args.clean {
        println!("\nphase 1: {} min at {rate:.1}/s, no fault", args.minutes);
        let (mut w, rss, _) = phase(
            &ctx,
            "clean",
            rate,
            args.minutes,
            args.fault_every,
            None,
            pid,
        )
        .await;
        summary("phase 1 (no fault)", &mut w, secs);
        rss_rows.push(("phase 1", rss));
    }
    let mut events = Vec::new();
    if args.faults {
        println!(
            "\nphase 2: {} min at {rate:.1}/s, a fault every {} s",
            args.minutes, args.fault_every
        );
        let (mut w, rss, e) = phase(
            &ctx,
            "faults",
            rate,
            args.minutes,
            args.fault_every,
            Some(&services),
            pid,
        )
        .await;
        summary("phase 2 (faults)", &mut w, secs);
        rss_rows.push(("phase 2", rss));
        events = e;
    }
    for (name, rss) in &rss_rows {
        let s: Vec<String> = rss.iter().map(|r| format!("{r:.0}")).collect();
        println!("RSS MiB per minute, {name}: {}", s.join(" "));
    }
    for e in &events {
        println!(
            "fault {:<42} at +{:6.1} s, over at +{:6.1} s (service back in {:.1} s)",
            e.kind.label(),
            e.at,
            e.back_at,
            e.recovery.as_secs_f64()
        );
    }

    // After the faults: every acknowledged upload ends ready; usage is billed once.
    println!("\nchecks (RSS {:.1} MiB):", rss_mib(pid));
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    let mut all_ready = true;
    for org in &ctx.orgs {
        let ids = org.uploads.lock().expect("uploads").clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let t = Instant::now();
        let s = settle(&ctx, org, &ids, left).await;
        println!(
            "  {}: {} uploads acknowledged (202): {} ready, {} failed, {} not settled (polled {:.1} s)",
            org.slug,
            ids.len(),
            s.ready,
            s.failed.len(),
            s.other.len(),
            t.elapsed().as_secs_f64()
        );
        for f in s.failed.iter().chain(&s.other).take(10) {
            println!("    {f}");
        }
        all_ready &= s.ready == ids.len();
    }
    // Answers still being settled (ledger retries) are given a moment.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut billing_ok = true;
    for org in &ctx.orgs {
        let get = |path: &str| {
            ctx.client
                .get(format!("{}{path}", ctx.base))
                .bearer_auth(org.token())
                .header("X-Tenant-ID", &org.id)
        };
        let plan = send(get("/api/v1/billing/plan")).await;
        let usage = send(get("/api/v1/usage?window=30d")).await;
        let (Ok((200, plan)), Ok((200, usage))) = (plan, usage) else {
            println!("  {}: /billing/plan or /usage did not answer 200", org.slug);
            billing_ok = false;
            continue;
        };
        let plan: Value = serde_json::from_str(&plan).unwrap_or(Value::Null);
        let usage: Value = serde_json::from_str(&usage).unwrap_or(Value::Null);
        let used = plan["used"].as_u64();
        let ledger = usage["totals"]["total_tokens"].as_u64();
        let chat_events = usage["by_kind"]
            .as_array()
            .and_then(|k| k.iter().find(|k| k["kind"] == "chat"))
            .and_then(|k| k["requests"].as_u64())
            .unwrap_or(0);
        let done = org.chats_done.load(Ordering::Relaxed);
        let started = org.chats_started.load(Ordering::Relaxed);
        let ok = used == ledger && chat_events >= done && chat_events <= started;
        billing_ok &= ok;
        println!(
            "  {}: /billing/plan used {} {} ledger total {}; chat events in the ledger {chat_events} (answers seen done {done}, streams started {started}) {}",
            org.slug,
            used.map_or("?".into(), |u| u.to_string()),
            if used == ledger { "==" } else { "!=" },
            ledger.map_or("?".into(), |u| u.to_string()),
            if ok { "ok" } else { "MISMATCH" }
        );
    }
    println!(
        "uploads all ready: {}; billing consistent: {}",
        if all_ready { "yes" } else { "NO" },
        if billing_ok { "yes" } else { "NO" }
    );
    println!("final RSS {:.1} MiB", rss_mib(pid));
    refresh.abort();
    let log = server.log.clone();
    drop(server);
    log_summary(&log);
}
