//! Chat benchmark: the time the server adds before an answer's first token, and the memory an
//! open WebSocket costs the server.
//!
//! - **Time to first token.** The real server runs in this process (SQLite, the in-process
//!   cache, one HTTP worker per core) with the fake OpenAI-compatible provider of
//!   `testkit::fake_openai` as its chat model; the fake answers at once and keeps each
//!   connection for the next request, as a provider does (`--provider-closes`: it closes each
//!   one, so every question opens a new connection). One organization holds
//!   a collection of generated documents, embedded by the local embedder, so every question
//!   runs the real retrieval (query embedding, hybrid search). Every question is streamed
//!   (`POST /chat/sessions/{id}/messages`, `stream: true`) in a fresh session of its own.
//!   Client TTFT is from sending the request to reading the first `delta` event; provider TTFT
//!   is what the fake measured from reading the request to flushing its first content chunk
//!   ([`testkit::fake_openai::FakeOpenAi::stream_timings`]), matched to the question by a
//!   unique marker in its text. Server-added = client TTFT − provider TTFT. Two loads per
//!   level `c`: a *burst* (`c` questions sent at the same instant, for several rounds) and
//!   *open streams* (`c` clients whose answers the fake holds open `--hold-secs` after the
//!   first token, each asking again when its answer ends; arrivals spread out). Each client
//!   asks `--open-rounds` questions, more when `c` is small, so that every level has at least
//!   `--open-min-samples` (at 1 open stream: one question every `--hold-secs`, each after
//!   that long without another, which is the point of that row).
//! - **Memory per WebSocket.** This binary starts itself again as a child process that opens
//!   `--sockets` authenticated WebSockets (`Sec-WebSocket-Protocol: bearer, <token>` and
//!   `?tenant=`) and waits for every `{"type":"ready"}`; the server's resident set (this
//!   process: the server, the fake provider and an idle client) is read before and after. The
//!   client sockets live in the child, so they are not counted; the child reports its own
//!   growth apart. The sockets are opened before any question: afterwards they would reuse
//!   heap the answers freed and the resident set would understate them.
//!
//! - **Backends.** `--backend embedded` (the default: SQLite, the in-process cache) or
//!   `--backend postgres`: PostgreSQL (`QUIRE_TEST_DATABASE_URL`, a schema of its own) and
//!   Redis (`QUIRE_TEST_REDIS_URL`, a key prefix of its own), both removed when the bench ends;
//!   nothing else in the shared database or Redis is touched.
//! - **Against a gateway** (`--gateway`): no retrieval. `POST /api/v1/ai/chat/completions`
//!   (streamed) with Quire's provider set to a running OpenAI-compatible provider
//!   (`--provider`, default the Python fake of `../shared/bench-peers/fake-openai` on port
//!   18080), beside the same request sent to that provider directly and through another
//!   gateway in front of it (`--peer`, default the LiteLLM proxy of
//!   `../shared/bench-peers/litellm` on port 14000). Time to the first content chunk, `c` at
//!   once for each `--streams` level; what each gateway adds is its p50 (p99) less the
//!   provider's own in the same rounds, and the ratio of the two.
//!
//! ```text
//! cargo bench -p testkit --bench chat -- [--streams 1,50,200] [--rounds 5] [--min-samples 200]
//!     [--hold-secs 4] [--open-rounds 4] [--open-min-samples 30] [--sockets 1000]
//!     [--documents 20] [--keyword-cache-min-chunks N]
//!     [--backend embedded|postgres] [--provider-closes]
//! cargo bench -p testkit --bench chat -- --gateway [--streams 1,50] [--rounds 40]
//!     [--provider http://127.0.0.1:18080/v1] [--peer http://127.0.0.1:14000/v1]
//! ```
//! `--streams none`, `--hold-secs 0` or `--sockets 0` leave a part out. See
//! docs/benchmarks.md for results.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault, StreamTiming};
use testkit::{TestApp, TestOptions, spawn_app_with};
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The chat model the fake serves.
const MODEL: &str = "gpt-4o-mini";
/// What the fake answers (short: a few content chunks, so the streams' tails cost little).
const REPLY: &str = "Receipts are filed with the travel desk within thirty days. [S1]";
/// The prefix of the marker that ties a question to its provider request.
const MARKER: &str = "qid-";
/// Digits of the marker's number (fixed width: no marker is a prefix of another).
const MARKER_DIGITS: usize = 7;
/// Approximate size of a generated document, in bytes.
const DOCUMENT_BYTES: usize = 4_096;
/// WebSockets opened at once by the child.
const WS_CONNECTS_AT_ONCE: usize = 64;

/// Words of the generated documents and questions.
const WORDS: &str = "travel policy receipts expenses flights hotel meals allowance manager \
    approval budget invoice contract supplier payment deadline quarter report audit security \
    laptop password office holiday leave salary pension insurance training conference mileage \
    taxi train booking refund currency advance card limit exception employee contractor \
    visitor badge parking equipment software license printer network backup incident privacy \
    records retention archive customer complaint warranty shipping warehouse inventory \
    forecast revenue margin discount pricing renewal onboarding handbook review goals feedback \
    promotion overtime schedule shift remote health safety fire evacuation first aid kitchen \
    cleaning waste recycling energy heating lighting meeting room calendar desk";

/// Connecting words, so the text reads like sentences to the tokenizers.
const GLUE: &str = "the a for of and must is are within before after by with to every each \
    no only when under";

/// xorshift64*: small, seeded, good enough for generated text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    /// One of the whitespace-separated `words`.
    fn pick(&mut self, words: &'static str) -> &'static str {
        let n = words.split_whitespace().count();
        words.split_whitespace().nth(self.below(n)).unwrap_or("the")
    }
}

/// A document of about [`DOCUMENT_BYTES`]: paragraphs of sentences of topic words and glue.
fn document(d: usize, rng: &mut Rng) -> String {
    let mut text = format!("Handbook part {d}.\n\n");
    while text.len() < DOCUMENT_BYTES {
        for _ in 0..5 {
            let words = 8 + rng.below(10);
            let mut sentence = String::new();
            for i in 0..words {
                let w = if i % 2 == 0 {
                    rng.pick(WORDS)
                } else {
                    rng.pick(GLUE)
                };
                if i == 0 {
                    let mut c = w.chars();
                    if let Some(first) = c.next() {
                        sentence.extend(first.to_uppercase());
                        sentence.push_str(c.as_str());
                    }
                } else {
                    sentence.push(' ');
                    sentence.push_str(w);
                }
            }
            sentence.push_str(". ");
            text.push_str(&sentence);
        }
        text.push_str("\n\n");
    }
    text
}

/// A question about three topic words, tagged with its marker.
fn question(id: usize, rng: &mut Rng) -> String {
    format!(
        "What does the handbook say about {} and {} for {}? ({})",
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.pick(WORDS),
        marker(id)
    )
}

fn marker(id: usize) -> String {
    format!("{MARKER}{id:0width$}", width = MARKER_DIGITS)
}

/// The marker in a provider request's messages (the last message holding one).
fn marker_in(request: &Value) -> Option<String> {
    request["messages"].as_array()?.iter().rev().find_map(|m| {
        let text = m["content"].as_str()?;
        let at = text.find(MARKER)?;
        let end = at + MARKER.len() + MARKER_DIGITS;
        text.get(at..end).map(str::to_owned)
    })
}

struct Args {
    streams: Vec<usize>,
    rounds: usize,
    min_samples: usize,
    sockets: usize,
    documents: usize,
    /// How long the provider holds each answer open in the open-streams part (0: no such
    /// part).
    hold_secs: f64,
    /// Questions each client asks in the open-streams part (at least).
    open_rounds: usize,
    /// Samples each open-streams level gathers at least (its clients ask more rounds).
    open_min_samples: usize,
    /// PostgreSQL and Redis instead of SQLite and the in-process cache.
    postgres: bool,
    /// The gateway comparison instead of the rest.
    gateway: bool,
    /// With `gateway`: the provider's base URL (what Quire and the peer call).
    provider: String,
    /// With `gateway`: the peer gateway's base URL.
    peer: String,
    /// `--rounds` was given.
    rounds_set: bool,
    /// The fake provider closes every connection after its answer (as it did before
    /// `--provider-closes` existed), instead of keeping it for the next request.
    provider_closes: bool,
}

/// `--keyword-cache-min-chunks N`: the server's `retrieval.keyword_cache_min_chunks` (unset:
/// the default), to compare the keyword cache and the SQL path on one binary.
static KEYWORD_CACHE_MIN_CHUNKS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

fn args() -> Args {
    let mut a = Args {
        streams: vec![1, 50, 200],
        rounds: 5,
        min_samples: 200,
        sockets: 1_000,
        documents: 20,
        hold_secs: 4.0,
        open_rounds: 4,
        open_min_samples: 30,
        postgres: false,
        gateway: false,
        provider: "http://127.0.0.1:18080/v1".to_owned(),
        peer: "http://127.0.0.1:14000/v1".to_owned(),
        rounds_set: false,
        provider_closes: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--streams" => {
                a.streams = if value == "none" {
                    Vec::new()
                } else {
                    value
                        .split(',')
                        .map(|s| s.trim().parse().unwrap())
                        .collect()
                };
            }
            "--rounds" => {
                a.rounds = value.parse().unwrap();
                a.rounds_set = true;
            }
            "--backend" => {
                a.postgres = match value.as_str() {
                    "embedded" => false,
                    "postgres" => true,
                    other => panic!("--backend is embedded or postgres, not {other:?}"),
                };
            }
            "--provider" => a.provider = value.trim_end_matches('/').to_owned(),
            "--peer" => a.peer = value.trim_end_matches('/').to_owned(),
            "--gateway" => {
                a.gateway = true;
                i += 1;
                continue;
            }
            "--provider-closes" => {
                a.provider_closes = true;
                i += 1;
                continue;
            }
            "--min-samples" => a.min_samples = value.parse().unwrap(),
            "--sockets" => a.sockets = value.parse().unwrap(),
            "--documents" => a.documents = value.parse().unwrap(),
            "--hold-secs" => a.hold_secs = value.parse().unwrap(),
            "--open-rounds" => a.open_rounds = value.parse().unwrap(),
            "--open-min-samples" => a.open_min_samples = value.parse().unwrap(),
            "--keyword-cache-min-chunks" => {
                KEYWORD_CACHE_MIN_CHUNKS
                    .set(value.parse().unwrap())
                    .unwrap();
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// This process's resident set, in KiB (`VmRSS` of `/proc/self/status`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn bench_settings(s: &mut quire::Settings) {
    let defaults = quire::Settings::default();
    s.provider.chat_models = vec![MODEL.to_owned()];
    // Production's sizes, not the test harness's small ones.
    s.http.workers = defaults.http.workers;
    s.database.max_connections = defaults.database.max_connections;
    s.cache.pool_size = defaults.cache.pool_size;
    s.provider.timeout_secs = defaults.provider.timeout_secs;
    s.documents.workers = defaults.documents.workers;
    // The sockets of the memory part stay open while it measures.
    s.chat.ws_idle_timeout_secs = 3_600;
    // All of them from one address (the child process).
    s.chat.ws_max_per_address = 1_000_000;
    if let Some(&n) = KEYWORD_CACHE_MIN_CHUNKS.get() {
        s.retrieval.keyword_cache_min_chunks = n;
    }
    // One user asks hundreds of questions a minute from one address: no request budget, and
    // a plan (still metered against a token limit) with room for every stream at once.
    s.rate_limits.chat = billing::RateBudget::default();
    s.rate_limits.embeddings = billing::RateBudget::default();
    for plan in s.billing.plans.values_mut() {
        plan.max_concurrent_streams = 10_000;
        plan.monthly_token_limit = Some(1_000_000_000_000);
    }
}

/// The bench's organization: a token, its id, and a collection of ready documents.
struct Org {
    token: String,
    id: String,
    collection: String,
}

async fn seed(app: &TestApp, documents: usize, rng: &mut Rng) -> Org {
    let (token, id) = app.owner("bench").await;
    let (status, coll) = app
        .call_in(
            &token,
            Method::POST,
            "/api/v1/collections",
            Some(json!({"name": "Handbook"})),
            Some(&id),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{coll}");
    let collection = coll["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for d in 0..documents {
        let text = document(d, rng);
        let (status, up) = app
            .upload(
                &token,
                &id,
                &format!("handbook-{d:02}.txt"),
                text.as_bytes(),
                Some(&collection),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{up}");
        ids.push(up["document"]["id"].as_str().unwrap().to_owned());
    }
    for doc in &ids {
        let settled = app.settled(&token, &id, doc).await;
        assert_eq!(settled["status"], "ready", "{settled}");
    }
    Org {
        token,
        id,
        collection,
    }
}

/// Creates a session (one row written); its id and how long that took.
async fn new_session(base: &str, client: &reqwest::Client, org: &Org) -> (String, Duration) {
    let started = Instant::now();
    let res = client
        .post(format!("{base}/api/v1/chat/sessions"))
        .bearer_auth(&org.token)
        .header("X-Tenant-ID", &org.id)
        .json(&json!({"collection_ids": [org.collection], "model": MODEL}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    let took = started.elapsed();
    (body["id"].as_str().unwrap().to_owned(), took)
}

/// Searches the collection as an answer does (hybrid, top 8); how long it took.
async fn search(base: &str, client: &reqwest::Client, org: &Org, text: String) -> Duration {
    let started = Instant::now();
    let res = client
        .post(format!("{base}/api/v1/search"))
        .bearer_auth(&org.token)
        .header("X-Tenant-ID", &org.id)
        .json(&json!({"query": text, "collection_ids": [org.collection], "top_k": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(body.is_object() || body.is_array());
    started.elapsed()
}

/// Runs the futures on their own tasks, all at once, and gathers what they give.
async fn all_at_once<T: Send + 'static>(
    futures: Vec<impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// One streamed question as the client saw it.
struct Asked {
    marker: String,
    /// When the request was sent.
    sent: Instant,
    /// When the response head was read.
    head: Instant,
    /// When the first `delta` event was read.
    first_delta: Option<Instant>,
    /// The stream ended with `done` (not `error`, not cut).
    done: bool,
}

/// Asks `text` in `session`, streamed, and reads the stream to its end.
async fn ask(
    base: &str,
    client: &reqwest::Client,
    org: &Org,
    session: &str,
    id: usize,
    text: String,
) -> Asked {
    let sent = Instant::now();
    let mut res = client
        .post(format!("{base}/api/v1/chat/sessions/{session}/messages"))
        .bearer_auth(&org.token)
        .header("X-Tenant-ID", &org.id)
        .json(&json!({"content": text, "stream": true}))
        .send()
        .await
        .unwrap();
    let head = Instant::now();
    assert_eq!(res.status(), StatusCode::OK);
    let mut seen = String::new();
    let mut first_delta = None;
    while let Ok(Some(bytes)) = res.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&bytes));
        if first_delta.is_none() && seen.contains("\nevent: delta\n") {
            first_delta = Some(Instant::now());
        }
    }
    Asked {
        marker: marker(id),
        sent,
        head,
        first_delta,
        done: seen.contains("\nevent: done\n"),
    }
}

/// Figures of one concurrency level.
struct Level {
    streams: usize,
    rounds: usize,
    samples: usize,
    failed: usize,
    /// Client TTFT − provider TTFT.
    server_added: Vec<Duration>,
    /// From sending the request to reading the first `delta`.
    client: Vec<Duration>,
    /// The fake's time to first token.
    provider: Vec<Duration>,
    /// From sending the request to reading the response head.
    head: Vec<Duration>,
    /// From sending the request to the fake having read the provider request.
    to_provider: Vec<Duration>,
    /// From the fake flushing its first content chunk to the client reading the `delta`.
    from_provider: Vec<Duration>,
    /// `POST /chat/sessions` at the same concurrency (for comparison).
    sessions: Vec<Duration>,
    /// `POST /search` of a question at the same concurrency (for comparison).
    searches: Vec<Duration>,
    wall: Duration,
}

/// What the streams need: the server, the fake provider, a client and the organization.
struct Bench<'a> {
    app: &'a TestApp,
    fake: &'a FakeOpenAi,
    client: reqwest::Client,
    org: Arc<Org>,
}

impl Bench<'_> {
    /// Runs `rounds` rounds of `c` streams at once; `next_id` numbers the questions.
    async fn level(&self, c: usize, rounds: usize, next_id: &mut usize, rng: &mut Rng) -> Level {
        let (app, fake, client, org) = (self.app, self.fake, &self.client, &self.org);
        let mut asked = Vec::new();
        let mut session_times = Vec::new();
        let mut search_times = Vec::new();
        let mut wall = Duration::ZERO;
        let base = &app.address;
        for _ in 0..rounds {
            let sessions = all_at_once(
                (0..c)
                    .map(|_| {
                        let (base, client, org) = (base.clone(), client.clone(), Arc::clone(org));
                        async move { new_session(&base, &client, &org).await }
                    })
                    .collect(),
            )
            .await;
            let before = fake.stream_timings().len();
            let started = Instant::now();
            let streams: Vec<_> = sessions
                .into_iter()
                .map(|(session, took)| {
                    session_times.push(took);
                    let id = *next_id;
                    *next_id += 1;
                    let text = question(id, rng);
                    let (base, client, org) = (base.clone(), client.clone(), Arc::clone(org));
                    async move { ask(&base, &client, &org, &session, id, text).await }
                })
                .collect();
            asked.extend(all_at_once(streams).await);
            wall += started.elapsed();
            let searches: Vec<_> = (0..c)
                .map(|_| {
                    let text = question(0, rng);
                    let (base, client, org) = (base.clone(), client.clone(), Arc::clone(org));
                    async move { search(&base, &client, &org, text).await }
                })
                .collect();
            search_times.extend(all_at_once(searches).await);
            // The fake records a stream when it has written it whole, which the server needs
            // before it can send `done`; wait for the records all the same rather than assume.
            let all = fake
                .until(Duration::from_secs(10), |f| {
                    f.stream_timings().len() >= before + c
                })
                .await;
            assert!(all, "the fake did not record every stream");
        }
        self.summarize(c, rounds, asked, session_times, search_times, wall)
    }

    /// `c` streams kept open: `c` clients each ask (the fake holds every answer open for
    /// `hold` after its first token), read the whole answer, and ask again in a new session,
    /// `rounds` times. Their first questions are spread over one `hold`, so questions arrive
    /// at a steady rate of about `c / hold` rather than all at once.
    async fn sustained(
        &self,
        c: usize,
        rounds: usize,
        hold: Duration,
        next_id: &mut usize,
        rng: &mut Rng,
    ) -> Level {
        let (fake, client, org) = (self.fake, &self.client, &self.org);
        let before = fake.stream_timings().len();
        // One fault per question, consumed in order: every answer stalls after its first piece.
        fake.push_faults(vec![Fault::StallAfter(1, hold); c * rounds]);
        let started = Instant::now();
        let clients: Vec<_> = (0..c)
            .map(|i| {
                let questions: Vec<(usize, String)> = (0..rounds)
                    .map(|_| {
                        let id = *next_id;
                        *next_id += 1;
                        (id, question(id, rng))
                    })
                    .collect();
                let (base, client, org) =
                    (self.app.address.clone(), client.clone(), Arc::clone(org));
                let offset = hold.mul_f64(i as f64 / c as f64);
                async move {
                    tokio::time::sleep(offset).await;
                    let mut out = Vec::new();
                    for (id, text) in questions {
                        let (session, took) = new_session(&base, &client, &org).await;
                        out.push((ask(&base, &client, &org, &session, id, text).await, took));
                    }
                    out
                }
            })
            .collect();
        let results = all_at_once(clients).await;
        let wall = started.elapsed();
        let all = fake
            .until(Duration::from_secs(10), |f| {
                f.stream_timings().len() >= before + c * rounds
            })
            .await;
        assert!(all, "the fake did not record every stream");
        assert_eq!(fake.pending_faults(), 0, "a stall was left over");
        let (asked, sessions): (Vec<Asked>, Vec<Duration>) = results.into_iter().flatten().unzip();
        self.summarize(c, rounds, asked, sessions, Vec::new(), wall)
    }

    /// Matches the streams to the fake's records and sorts the figures.
    fn summarize(
        &self,
        c: usize,
        rounds: usize,
        asked: Vec<Asked>,
        session_times: Vec<Duration>,
        search_times: Vec<Duration>,
        wall: Duration,
    ) -> Level {
        let fake = self.fake;
        let requests = fake.requests();
        let provider: HashMap<String, StreamTiming> = fake
            .stream_timings()
            .into_iter()
            .filter_map(|t| Some((marker_in(&requests[t.request].body)?, t)))
            .collect();
        let mut out = Level {
            streams: c,
            rounds,
            samples: 0,
            failed: 0,
            server_added: Vec::new(),
            client: Vec::new(),
            provider: Vec::new(),
            head: Vec::new(),
            to_provider: Vec::new(),
            from_provider: Vec::new(),
            sessions: session_times,
            searches: search_times,
            wall,
        };
        for a in asked {
            let timing = provider.get(&a.marker);
            let Some((first_delta, t, first_content)) = a
                .first_delta
                .zip(timing)
                .and_then(|(d, t)| Some((d, t, t.first_content_at?)))
                .filter(|_| a.done)
            else {
                out.failed += 1;
                continue;
            };
            out.samples += 1;
            let client = first_delta - a.sent;
            let provider = first_content - t.received_at;
            out.client.push(client);
            out.provider.push(provider);
            out.server_added.push(client.saturating_sub(provider));
            out.head.push(a.head - a.sent);
            out.to_provider
                .push(t.received_at.saturating_duration_since(a.sent));
            out.from_provider
                .push(first_delta.saturating_duration_since(first_content));
        }
        for v in [
            &mut out.server_added,
            &mut out.client,
            &mut out.provider,
            &mut out.head,
            &mut out.to_provider,
            &mut out.from_provider,
            &mut out.sessions,
            &mut out.searches,
        ] {
            v.sort();
        }
        out
    }
}

/// Prints the TTFT table and where the time falls, one row per level.
fn print_levels(what: &str, levels: &[Level]) {
    println!(
        "\n| {what} | samples | server-added p50 | p99 | max | client TTFT p50 | p99 | provider TTFT p50 | p99 | questions/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in levels {
        if l.samples == 0 {
            println!(
                "| {} | 0 (all {} failed) | | | | | | | | |",
                l.streams, l.failed
            );
            continue;
        }
        println!(
            "| {} | {}{} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.3} ms | {:.3} ms | {:.1} |",
            l.streams,
            l.samples,
            if l.failed > 0 {
                format!(" ({} failed)", l.failed)
            } else {
                String::new()
            },
            ms(percentile(&l.server_added, 0.5)),
            ms(percentile(&l.server_added, 0.99)),
            ms(l.server_added[l.server_added.len() - 1]),
            ms(percentile(&l.client, 0.5)),
            ms(percentile(&l.client, 0.99)),
            ms(percentile(&l.provider, 0.5)),
            ms(percentile(&l.provider, 0.99)),
            (l.streams * l.rounds) as f64 / l.wall.as_secs_f64(),
        );
    }
    println!(
        "\nWhere the server-added time falls (p50 / p99): before the provider (request sent → \
         the fake has read the provider request), after it (the fake flushed its first chunk → \
         the client read the `delta`); and the response head (sent before the provider is \
         called):"
    );
    println!("\n| {what} | response head | before the provider | after the provider |");
    println!("|---:|---:|---:|---:|");
    for l in levels.iter().filter(|l| l.samples > 0) {
        let pair = |v: &[Duration]| {
            format!(
                "{:.2} / {:.2} ms",
                ms(percentile(v, 0.5)),
                ms(percentile(v, 0.99))
            )
        };
        println!(
            "| {} | {} | {} | {} |",
            l.streams,
            pair(&l.head),
            pair(&l.to_provider),
            pair(&l.from_provider)
        );
    }
}

async fn ttft(app: &TestApp, fake: &FakeOpenAi, org: Arc<Org>, a: &Args, rng: &mut Rng) {
    let max = a.streams.iter().copied().max().unwrap_or(1);
    let client = testkit::http_client()
        .http1_only()
        .pool_max_idle_per_host(max.max(16) * 2)
        .build()
        .unwrap();
    let bench = Bench {
        app,
        fake,
        client,
        org,
    };
    let mut next_id = 0;
    // Warm-up, not counted: 20 questions one at a time, then one round at the highest level
    // (which also opens the client's connections).
    let warm = bench.level(1, 20, &mut next_id, rng).await;
    assert_eq!(warm.failed, 0, "warm-up streams failed");
    bench.level(max, 1, &mut next_id, rng).await;

    println!("\nBurst: c questions sent at the same instant, each round waiting for the last:");
    let mut levels = Vec::new();
    for &c in &a.streams {
        let rounds = a.rounds.max(a.min_samples.div_ceil(c.max(1)));
        let l = bench.level(c, rounds, &mut next_id, rng).await;
        println!(
            "  {c} at once × {rounds} rounds: server-added p50 {:.2} ms, p99 {:.2} ms ({} ok, {} failed)",
            ms(percentile(&l.server_added, 0.5)),
            ms(percentile(&l.server_added, 0.99)),
            l.samples,
            l.failed
        );
        levels.push(l);
    }
    print_levels("at once", &levels);
    println!(
        "\nFor comparison, at the same concurrency (each round, before or after its streams):"
    );
    println!(
        "\n| at once | POST /chat/sessions p50 | p99 | POST /search (hybrid, top 8) p50 | p99 |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for l in &levels {
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            l.streams,
            ms(percentile(&l.sessions, 0.5)),
            ms(percentile(&l.sessions, 0.99)),
            ms(percentile(&l.searches, 0.5)),
            ms(percentile(&l.searches, 0.99)),
        );
    }

    if a.hold_secs > 0.0 {
        let hold = Duration::from_secs_f64(a.hold_secs);
        println!(
            "\nOpen streams: c clients, each answer held open {:.1} s by the provider, the next \
             question asked when it ends, first questions spread over {:.1} s:",
            a.hold_secs, a.hold_secs
        );
        let mut open = Vec::new();
        for &c in &a.streams {
            let rounds = a.open_rounds.max(a.open_min_samples.div_ceil(c.max(1)));
            let l = bench.sustained(c, rounds, hold, &mut next_id, rng).await;
            println!(
                "  {c} open × {rounds} questions each: server-added p50 {:.2} ms, p99 {:.2} ms ({} ok, {} failed)",
                ms(percentile(&l.server_added, 0.5)),
                ms(percentile(&l.server_added, 0.99)),
                l.samples,
                l.failed
            );
            open.push(l);
        }
        print_levels("open streams", &open);
    }
}

/// The memory part, server side: a child process opens the sockets; this one measures.
async fn websockets(app: &TestApp, org: &Org, sockets: usize) {
    let url = app
        .url(&format!("/api/v1/chat/ws?tenant={}", org.id))
        .replacen("http://", "ws://", 1);
    let before = rss_kib();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ws-child", &url, &org.token, &sockets.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let opened = started.elapsed();
    let after = rss_kib();
    // "ready <sockets> <child rss before, KiB> <child rss after, KiB>"
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields[0] as usize, sockets, "{line}");
    let (child_before, child_after) = (fields[1], fields[2]);
    // Closing the child's stdin lets it go.
    drop(child.stdin.take());
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the WebSocket child failed: {status}");
    let per = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / sockets as f64;
    println!(
        "\n{sockets} WebSockets open and ready (in {:.1} s):",
        opened.as_secs_f64()
    );
    println!("| process | RSS before | RSS with the sockets open | per socket |");
    println!("|---|---:|---:|---:|");
    println!(
        "| server (+ idle fake provider and bench client) | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per(after, before)
    );
    println!(
        "| client (tokio-tungstenite, child process) | {:.1} MiB | {:.1} MiB | {:.1} KiB |",
        child_before as f64 / 1024.0,
        child_after as f64 / 1024.0,
        per(child_after, child_before)
    );
}

/// The child of [`websockets`]: opens the sockets, reports, and keeps them open (answering
/// pings) until its stdin closes.
async fn ws_child(argv: &[String]) {
    let url = argv[0].clone();
    let token = argv[1].clone();
    let sockets: usize = argv[2].parse().unwrap();
    let before = rss_kib();
    let protocol = format!("bearer, {token}");
    let opened: Vec<_> = futures_util::stream::iter(0..sockets)
        .map(|_| {
            let (url, protocol) = (url.clone(), protocol.clone());
            async move {
                let mut req = url.into_client_request().unwrap();
                req.headers_mut()
                    .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
                let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
                loop {
                    match ws.next().await {
                        Some(Ok(Ws::Text(t))) => {
                            let v: Value = serde_json::from_str(t.as_str()).unwrap();
                            assert_eq!(v["type"], "ready", "{v}");
                            break;
                        }
                        Some(Ok(_)) => {}
                        other => panic!("no ready frame: {other:?}"),
                    }
                }
                ws
            }
        })
        .buffer_unordered(WS_CONNECTS_AT_ONCE)
        .collect()
        .await;
    let after = rss_kib();
    println!("ready {} {before} {after}", opened.len());
    // Keep reading (pongs are sent while reading) until told to stop.
    let readers: Vec<_> = opened
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_close() {
                        break;
                    }
                }
                let _ = ws.close(None).await;
            })
        })
        .collect();
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .unwrap();
    for r in readers {
        r.abort();
    }
}

/// One streamed completion: from sending it to reading the first chunk with content; `None`
/// when it failed or had none.
async fn first_content(
    client: &reqwest::Client,
    url: &str,
    auth: &[(&str, &str)],
    question: &str,
) -> Option<Duration> {
    let started = Instant::now();
    let mut req = client.post(url).json(&json!({
        "model": MODEL,
        "stream": true,
        "messages": [{"role": "user", "content": question}],
    }));
    for (k, v) in auth {
        req = req.header(*k, *v);
    }
    let mut res = req.send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let mut seen = String::new();
    let mut first = None;
    while let Ok(Some(bytes)) = res.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&bytes));
        while first.is_none()
            && let Some(end) = seen.find("\n\n")
        {
            let event: String = seen.drain(..end + 2).collect();
            let content = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .any(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty())
                });
            if content {
                first = Some(started.elapsed());
            }
        }
    }
    first
}

/// The gateway comparison (see the module docs): the provider directly, the peer gateway and
/// Quire, `c` streamed completions at once per round, the three in turn each round.
async fn gateway(app: &TestApp, a: &Args, backend: &str) {
    let (token, tenant) = app.owner("gateway").await;
    let client = testkit::http_client()
        .http1_only()
        .pool_max_idle_per_host(a.streams.iter().copied().max().unwrap_or(1) * 2)
        .build()
        .unwrap();
    let quire = app.url("/api/v1/ai/chat/completions");
    let targets = [
        ("provider", format!("{}/chat/completions", a.provider), None),
        ("peer", format!("{}/chat/completions", a.peer), None),
        ("Quire", quire, Some((token, tenant))),
    ];
    println!(
        "\nStreamed completions without retrieval, time to the first content chunk \
         (Quire on {backend}; provider {}, peer {}):",
        a.provider, a.peer
    );
    let rounds = if a.rounds_set { a.rounds } else { 40 };
    let mut rows = Vec::new();
    for &c in &a.streams {
        // Warm-up, not counted: connections opened, first-use costs paid.
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
        let mut failed = vec![0usize; targets.len()];
        for round in 0..=rounds {
            for (t, (_, url, auth)) in targets.iter().enumerate() {
                let asks: Vec<_> = (0..c)
                    .map(|i| {
                        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
                        let question = format!("What is in the handbook, question {round}-{i}?");
                        async move {
                            let bearer;
                            let tenant;
                            let headers: Vec<(&str, &str)> = match &auth {
                                Some((token, id)) => {
                                    bearer = format!("Bearer {token}");
                                    tenant = id.clone();
                                    vec![
                                        ("Authorization", bearer.as_str()),
                                        ("X-Tenant-ID", tenant.as_str()),
                                    ]
                                }
                                None => vec![("Authorization", "Bearer fake")],
                            };
                            first_content(&client, &url, &headers, &question).await
                        }
                    })
                    .collect();
                for took in all_at_once(asks).await {
                    if round == 0 {
                        continue;
                    }
                    match took {
                        Some(d) => times[t].push(d),
                        None => failed[t] += 1,
                    }
                }
            }
        }
        for v in &mut times {
            v.sort();
        }
        rows.push((c, times, failed));
    }
    println!(
        "\n| at once | rounds | provider p50 / p99 | peer p50 / p99 | Quire p50 / p99 | peer adds p50 / p99 | Quire adds p50 / p99 | peer ÷ Quire (p50) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (c, times, failed) in &rows {
        if times.iter().any(Vec::is_empty) {
            println!("| {c} | {rounds} | failed: {failed:?} | | | | | |");
            continue;
        }
        let p = |v: &[Duration], q: f64| ms(percentile(v, q));
        let pair = |v: &[Duration]| format!("{:.2} / {:.2} ms", p(v, 0.5), p(v, 0.99));
        let direct = times[0].as_slice();
        let adds = |v: &[Duration]| (p(v, 0.5) - p(direct, 0.5), p(v, 0.99) - p(direct, 0.99));
        let (peer50, peer99) = adds(times[1].as_slice());
        let (quire50, quire99) = adds(times[2].as_slice());
        println!(
            "| {c} | {rounds} | {} | {} | {} | {peer50:+.2} / {peer99:+.2} ms | {quire50:+.2} / {quire99:+.2} ms | {:.1}× |",
            pair(direct),
            pair(times[1].as_slice()),
            pair(times[2].as_slice()),
            peer50 / quire50.max(0.01),
        );
        if failed.iter().any(|f| *f > 0) {
            println!(
                "  (failed: provider {}, peer {}, Quire {})",
                failed[0], failed[1], failed[2]
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(at) = argv.iter().position(|a| a == "--ws-child") {
        ws_child(&argv[at + 1..]).await;
        return;
    }
    let a = args();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let backends = TestOptions {
        postgres: a.postgres,
        redis: a.postgres,
        ..TestOptions::default()
    };
    let backend = if a.postgres {
        "PostgreSQL + Redis"
    } else {
        "SQLite + the in-process cache"
    };
    if a.gateway {
        let app = spawn_app_with(
            TestOptions {
                provider: Some((a.provider.clone(), "text-embedding-3-small".to_owned())),
                ..backends
            }
            .tweak(bench_settings),
        )
        .await;
        gateway(&app, &a, backend).await;
        return;
    }
    let fake = FakeOpenAi::builder().chat_models(&[MODEL]).reply(REPLY);
    // A provider keeps its connections for the next request (the server's client pools
    // them); `--provider-closes` measures a new connection per question instead.
    let fake = if a.provider_closes {
        fake
    } else {
        fake.keep_alive()
    }
    .start();
    let app = spawn_app_with(
        TestOptions {
            provider: Some((fake.base_url(), "text-embedding-3-small".to_owned())),
            ..backends
        }
        .tweak(bench_settings),
    )
    .await;
    let started = Instant::now();
    let org = Arc::new(seed(&app, a.documents, &mut rng).await);
    println!(
        "seeded {} documents of ~{} KB in {:.1} s (local embedder, {backend}, hybrid search)",
        a.documents,
        DOCUMENT_BYTES / 1024,
        started.elapsed().as_secs_f64()
    );
    // The sockets first, on a server that has not answered yet: afterwards its heap holds
    // room the answers freed, which new sockets reuse without growing the resident set.
    if a.sockets > 0 {
        websockets(&app, &org, a.sockets).await;
    }
    if !a.streams.is_empty() {
        println!("\ntime to first token, fake provider answering at once:");
        ttft(&app, &fake, Arc::clone(&org), &a, &mut rng).await;
    }
}
