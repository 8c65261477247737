//! A fake OpenAI-compatible provider for tests: a real HTTP/1.1 server on 127.0.0.1.
//!
//! ```text
//! let fake = FakeOpenAi::builder().api_key("sk-test").dimensions(64).start();
//! fake.push_faults([Fault::Status { status: 429, retry_after: Some("7".into()) }]);
//! // point the adapter at fake.base_url() (`http://127.0.0.1:PORT/v1`) …
//! assert_eq!(fake.request_count(), 2);
//! ```
//!
//! - `POST /v1/embeddings` answers in OpenAI's wire shape with vectors of
//!   [`local_ai::LocalEmbedder`] (of the request's `dimensions`, else the configured default),
//!   so that retrieval through the fake is meaningful, and `usage` counted with `cl100k_base`.
//! - `POST /v1/chat/completions` answers the configured models
//!   ([`FakeOpenAiBuilder::chat_models`]; another model is a 404 `model_not_found`) with the
//!   configured reply ([`FakeOpenAiBuilder::reply`], [`FakeOpenAiBuilder::reply_with`]; by
//!   default `You asked: <the last user message>`): a `chat.completion` object, or with
//!   `stream: true` a `text/event-stream` of `chat.completion.chunk` objects (chunked
//!   transfer encoding, one chunk per event, each written and flushed on its own): the role,
//!   the reply in pieces of [`PIECE_CHARS`] characters ([`reply_pieces`]) with a
//!   `: keep-alive` comment after the first, a `finish_reason: "stop"` chunk, a usage chunk
//!   with empty `choices` when the request asked for it (`stream_options.include_usage`) and
//!   the builder did not call [`FakeOpenAiBuilder::without_usage`], then `data: [DONE]`.
//!   Usage: [`prompt_tokens`] of the request, one completion token per piece; the last is
//!   kept for tests ([`FakeOpenAi::last_usage`]).
//! - `GET /v1/models` lists the chat models.
//! - `POST /v1/rerank` answers Cohere/Jina's shape: `{results: [{index, relevance_score}],
//!   usage: {total_tokens}}`, ranking the documents in *reverse* order (the last first), so a
//!   test sees at once that a reranker's order was applied; `top_n` of them; 10 tokens per
//!   document.
//! - With an API key configured, a request without `Authorization: Bearer <key>` gets 401.
//! - Faults ([`Fault`]) are consumed one per request, in the order they were pushed, before
//!   the request is answered.
//! - Every request is recorded ([`FakeOpenAi::requests`]); streams being written and streams
//!   whose client went away are counted ([`FakeOpenAi::open_streams`],
//!   [`FakeOpenAi::abandoned_streams`]).
//! - Every streamed answer is timed ([`FakeOpenAi::stream_timings`]): when its request was
//!   read whole and when its first content chunk was flushed, so a benchmark can subtract the
//!   provider's own time to first token from what its client saw.
//!
//! The server runs on its own thread with its own tokio runtime, so it works from
//! `#[tokio::test]`, `#[actix_web::test]` or plain tests alike; it listens from the moment
//! [`FakeOpenAiBuilder::start`] returns and stops when the [`FakeOpenAi`] is dropped. Every
//! connection is served by its own task, so streams run concurrently and a client that goes
//! away ends only its own task. Each connection serves one request and is closed
//! (`Connection: close`), so a client never reuses a connection the fake dropped; with
//! [`FakeOpenAiBuilder::keep_alive`] a connection whose answer ended whole serves
//! the client's next request, as a provider's does (a benchmark then measures no connection
//! set-up per request).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use local_ai::LocalEmbedder;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Characters per streamed piece of a reply.
pub const PIECE_CHARS: usize = 4;
/// The `created` of every listed model.
const MODEL_CREATED: u64 = 1_700_000_000;

/// What the fake does instead of (or before) answering one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answers `status` with an OpenAI-style error body ([`fault_message`]) and, when given,
    /// a `Retry-After` header with this value.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` value (`"7"`, or an HTTP date).
        retry_after: Option<String>,
    },
    /// Waits this long, then answers normally (for client timeouts).
    Delay(Duration),
    /// Answers 200 with a body that is not JSON.
    Malformed,
    /// Closes the connection without answering.
    Drop,
    /// Reads the request and never answers; the connection ends when the client gives up.
    Hang,
    /// A streamed chat answer sends its headers, then nothing for this long, then the answer;
    /// any other answer is sent the same way (headers, wait, body).
    FirstTokenDelay(Duration),
    /// A streamed chat answer sends its role chunk and this many content chunks, then closes
    /// the connection (no `[DONE]`, no end of the chunked body). Ignored by other answers.
    DisconnectAfter(usize),
    /// A streamed chat answer sends a `data: {not json` event after its first content chunk,
    /// then the rest. Ignored by other answers.
    MalformedChunk,
    /// A streamed chat answer sends this many content chunks, then nothing for this long,
    /// then the rest. Ignored by other answers.
    StallAfter(usize, Duration),
    /// A streamed chat answer waits this long before each content chunk after the first (a
    /// slow model). Ignored by other answers.
    Paced(Duration),
}

/// The `error.message` of the answer to a [`Fault::Status`].
#[must_use]
pub fn fault_message(status: u16) -> String {
    format!("The fake provider was told to answer HTTP {status}.")
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `POST`, `GET`, ….
    pub method: String,
    /// The path, query included (`/v1/embeddings`).
    pub path: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// When the fake read one streamed chat request and when it sent that stream's first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTiming {
    /// The request's position in [`FakeOpenAi::requests`].
    pub request: usize,
    /// When the request's body had been read whole.
    pub received_at: Instant,
    /// When the first content chunk had been written and flushed (`None`: the stream ended,
    /// or its client left, before one).
    pub first_content_at: Option<Instant>,
}

impl StreamTiming {
    /// The provider's time to first token: from the request read to the first content chunk
    /// flushed.
    #[must_use]
    pub fn time_to_first_token(&self) -> Option<Duration> {
        self.first_content_at
            .map(|at| at.saturating_duration_since(self.received_at))
    }
}

/// The tokens of one chat completion, as the fake reports (or would report) them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatUsage {
    /// [`prompt_tokens`] of the request.
    pub prompt_tokens: u32,
    /// The number of [`reply_pieces`].
    pub completion_tokens: u32,
}

/// A chat request's prompt tokens as the fake counts them: the characters of every message's
/// content, divided by 4, rounded up.
#[must_use]
pub fn prompt_tokens(request: &Value) -> u32 {
    let chars: usize = request
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .map(|m| message_text(m).chars().count())
                .sum()
        })
        .unwrap_or(0);
    u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)
}

/// A reply cut into the pieces a stream sends, [`PIECE_CHARS`] characters each (the last may
/// be shorter; none for an empty reply).
#[must_use]
pub fn reply_pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(PIECE_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

/// The text of a chat message: its `content` string, or its text parts joined.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The function a [`FakeOpenAiBuilder::reply_with`] reply is made by.
type ReplyFn = Arc<dyn Fn(&Value) -> String + Send + Sync>;

/// What a chat completion answers.
#[derive(Clone)]
enum ReplyText {
    /// `You asked: <the last user message>`.
    Echo,
    /// This text.
    Fixed(String),
    /// What the function makes of the request's JSON.
    With(ReplyFn),
}

impl fmt::Debug for ReplyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Echo => f.write_str("Echo"),
            Self::Fixed(text) => f.debug_tuple("Fixed").field(text).finish(),
            Self::With(_) => f.write_str("With(..)"),
        }
    }
}

impl ReplyText {
    fn make(&self, request: &Value) -> String {
        match self {
            Self::Echo => {
                let last_user = request
                    .get("messages")
                    .and_then(Value::as_array)
                    .and_then(|messages| {
                        messages
                            .iter()
                            .rev()
                            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                    })
                    .map(message_text)
                    .unwrap_or_default();
                format!("You asked: {last_user}")
            }
            Self::Fixed(text) => text.clone(),
            Self::With(f) => f(request),
        }
    }
}

/// Settings of a [`FakeOpenAi`].
#[derive(Debug, Clone)]
pub struct FakeOpenAiBuilder {
    api_key: Option<String>,
    dimensions: u32,
    usage: bool,
    reversed: bool,
    reply: ReplyText,
    chat_models: Vec<String>,
    keep_alive: bool,
}

impl Default for FakeOpenAiBuilder {
    fn default() -> Self {
        Self {
            api_key: None,
            dimensions: 64,
            usage: true,
            reversed: false,
            reply: ReplyText::Echo,
            chat_models: vec!["gpt-4o-mini".to_owned()],
            keep_alive: false,
        }
    }
}

impl FakeOpenAiBuilder {
    /// Requires `Authorization: Bearer <key>` on every request.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The dimension of vectors when a request names none (default 64).
    #[must_use]
    pub fn dimensions(mut self, dimensions: u32) -> Self {
        self.dimensions = dimensions;
        self
    }

    /// Leaves `usage` out of the answers (as some compatible servers do): embeddings and
    /// chat completions alike, even when a streamed request asks for it.
    #[must_use]
    pub fn without_usage(mut self) -> Self {
        self.usage = false;
        self
    }

    /// Lists `data` last input first (each item keeps its `index`), as a provider may: the
    /// client must put vectors in order by `index`, not by position.
    #[must_use]
    pub fn reversed(mut self) -> Self {
        self.reversed = true;
        self
    }

    /// Chat completions answer `text` (default: `You asked: <the last user message>`).
    #[must_use]
    pub fn reply(mut self, text: impl Into<String>) -> Self {
        self.reply = ReplyText::Fixed(text.into());
        self
    }

    /// Chat completions answer what `f` makes of the request's JSON body (to cite the `[S1]`
    /// a prompt holds, for example).
    #[must_use]
    pub fn reply_with(mut self, f: impl Fn(&Value) -> String + Send + Sync + 'static) -> Self {
        self.reply = ReplyText::With(Arc::new(f));
        self
    }

    /// The chat models served and listed (default `["gpt-4o-mini"]`).
    #[must_use]
    pub fn chat_models(mut self, models: &[&str]) -> Self {
        self.chat_models = models.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    /// Keeps a connection open after an answer that ended whole (no fault, or one that only
    /// delays: [`Fault::FirstTokenDelay`], [`Fault::StallAfter`], [`Fault::Paced`]), for the client's
    /// next request (HTTP/1.1's default, and what providers do), instead of closing each one.
    #[must_use]
    pub fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }

    /// Binds 127.0.0.1 on a free port and starts serving.
    ///
    /// # Panics
    /// When no port can be bound or the server thread cannot start.
    #[must_use]
    pub fn start(self) -> FakeOpenAi {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("the fake OpenAI binds a port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the fake OpenAI's address");
        let state = Arc::new(State {
            config: self,
            faults: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            stream_timings: Mutex::new(Vec::new()),
            last_usage: Mutex::new(None),
            completions: AtomicU64::new(0),
            open_streams: AtomicUsize::new(0),
            abandoned_streams: AtomicUsize::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("fake-openai-{}", addr.port()))
            .spawn(move || serve(listener, served, stopped))
            .expect("the fake OpenAI's thread starts");
        FakeOpenAi {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

/// A running fake provider; stops when dropped.
#[derive(Debug)]
pub struct FakeOpenAi {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeOpenAi {
    /// A fake with the default settings (no key, 64 dimensions, usage reported).
    #[must_use]
    pub fn start() -> Self {
        FakeOpenAiBuilder::default().start()
    }

    /// Settings for a fake.
    #[must_use]
    pub fn builder() -> FakeOpenAiBuilder {
        FakeOpenAiBuilder::default()
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL a client is configured with.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues faults; each following request consumes the next one.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state.faults).extend(faults);
    }

    /// Drops the faults not consumed yet (the provider is well again).
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Faults not consumed yet.
    #[must_use]
    pub fn pending_faults(&self) -> usize {
        lock(&self.state.faults).len()
    }

    /// Every request received so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// How many requests were received.
    #[must_use]
    pub fn request_count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// The timing of every streamed answer written so far (in the order the streams ended).
    #[must_use]
    pub fn stream_timings(&self) -> Vec<StreamTiming> {
        lock(&self.state.stream_timings).clone()
    }

    /// The usage of the last chat completion answered (sent or not).
    #[must_use]
    pub fn last_usage(&self) -> Option<ChatUsage> {
        *lock(&self.state.last_usage)
    }

    /// Streamed answers being written right now.
    #[must_use]
    pub fn open_streams(&self) -> usize {
        self.state.open_streams.load(Ordering::SeqCst)
    }

    /// Streamed answers whose client went away before their end (a write failed, or the
    /// client closed the connection while the fake waited).
    #[must_use]
    pub fn abandoned_streams(&self) -> usize {
        self.state.abandoned_streams.load(Ordering::SeqCst)
    }

    /// Polls `condition` every 10 ms until it holds (`true`) or `limit` passed (`false`): for
    /// what the fake sees after a client acted (a stream abandoned).
    pub async fn until(&self, limit: Duration, condition: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("the fake OpenAI server panicked");
        }
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the server thread shares with the handle.
#[derive(Debug)]
struct State {
    config: FakeOpenAiBuilder,
    faults: Mutex<VecDeque<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
    stream_timings: Mutex<Vec<StreamTiming>>,
    last_usage: Mutex<Option<ChatUsage>>,
    /// Chat completions answered (for their ids).
    completions: AtomicU64,
    open_streams: AtomicUsize,
    abandoned_streams: AtomicUsize,
}

/// A poisoned lock (a panicking test) still gives its data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The server thread: accepts until told to stop.
fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the fake OpenAI's runtime");
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("the fake OpenAI listens");
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(serve_connection(stream, Arc::clone(&state)));
                    }
                }
            }
        }
    });
    // In-flight connections (a `Delay`) are dropped, not awaited.
    rt.shutdown_background();
}

/// A parsed request.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn route_path(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

/// The body of an answer.
#[derive(Debug)]
enum Body {
    /// Sent whole, with `Content-Length`.
    Full(Vec<u8>),
    /// Server-sent events, each its own HTTP chunk, written and flushed one at a time.
    Events(Vec<Frame>),
}

/// One server-sent event (or comment) of a streamed answer.
#[derive(Debug)]
struct Frame {
    kind: FrameKind,
    /// The bytes on the wire, blank line included.
    text: String,
}

/// What a frame is, for the faults that act between frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    /// The first chunk (`delta.role`).
    Role,
    /// A piece of the reply.
    Content,
    /// A `:` comment.
    Comment,
    /// The finish chunk, the usage chunk, `[DONE]`.
    Tail,
}

impl Frame {
    fn data(kind: FrameKind, value: &Value) -> Self {
        Self {
            kind,
            text: format!("data: {value}\n\n"),
        }
    }
}

/// An answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

impl Reply {
    fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: Body::Full(value.to_string().into_bytes()),
        }
    }

    /// An OpenAI-style error: `{"error":{"message","type","param","code"}}`.
    fn error(status: u16, kind: &str, message: &str) -> Self {
        Self::json(
            status,
            &json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
        )
    }
}

async fn serve_connection(mut stream: TcpStream, state: Arc<State>) {
    // Every chunk leaves at once (no Nagle delay behind an unacknowledged one), as from a
    // provider that answers at once.
    let _ = stream.set_nodelay(true);
    while let Some(request) = read_request(&mut stream).await {
        if !serve_request(&mut stream, &state, &request).await {
            break;
        }
    }
}

/// Answers one request; `true` when the connection stays open for another
/// ([`FakeOpenAiBuilder::keep_alive`], and the answer ended whole).
async fn serve_request(stream: &mut TcpStream, state: &State, request: &Request) -> bool {
    let received_at = Instant::now();
    let index = {
        let mut requests = lock(&state.requests);
        requests.push(RecordedRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            authorization: request.header("authorization").map(str::to_owned),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        });
        requests.len() - 1
    };
    let timing = StreamTiming {
        request: index,
        received_at,
        first_content_at: None,
    };
    let fault = lock(&state.faults).pop_front();
    // Faults that only slow a stream down end it whole: its connection may serve again.
    let keep_alive = state.config.keep_alive
        && matches!(
            fault,
            None | Some(Fault::FirstTokenDelay(_) | Fault::StallAfter(..) | Fault::Paced(_))
        );
    let mut plan = None;
    let reply = match fault {
        // Dropping the stream closes the connection.
        Some(Fault::Drop) => return false,
        Some(Fault::Hang) => {
            until_gone(stream).await;
            return false;
        }
        Some(Fault::Malformed) => Reply {
            status: 200,
            headers: vec![("content-type", "application/json".to_owned())],
            body: Body::Full(b"{\"object\": \"list\", \"data\": [ this is not JSON".to_vec()),
        },
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let kind = match status {
                429 => "rate_limit_error",
                400..=499 => "invalid_request_error",
                _ => "server_error",
            };
            let mut reply = Reply::error(status, kind, &fault_message(status));
            if let Some(value) = retry_after {
                reply.headers.push(("retry-after", value));
            }
            reply
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            route(state, request)
        }
        Some(
            f @ (Fault::FirstTokenDelay(_)
            | Fault::DisconnectAfter(_)
            | Fault::MalformedChunk
            | Fault::StallAfter(..)
            | Fault::Paced(_)),
        ) => {
            plan = Some(f);
            route(state, request)
        }
        None => route(state, request),
    };
    write_reply(stream, state, reply, plan, timing, keep_alive).await
}

/// Answers a request that no fault intercepted.
fn route(state: &State, request: &Request) -> Reply {
    if let Some(key) = &state.config.api_key {
        let expected = format!("Bearer {key}");
        if request.header("authorization") != Some(expected.as_str()) {
            return Reply::error(
                401,
                "invalid_request_error",
                "Incorrect API key provided. You can find your API key in your account settings.",
            );
        }
    }
    match (request.method.as_str(), request.route_path()) {
        ("POST", "/v1/embeddings") => embeddings(state, request),
        ("POST", "/v1/chat/completions") => chat_completions(state, request),
        ("GET", "/v1/models") => models(state),
        ("POST", "/v1/rerank") => rerank(request),
        (_, "/v1/embeddings" | "/v1/chat/completions" | "/v1/models" | "/v1/rerank") => {
            Reply::error(405, "invalid_request_error", "Method not allowed.")
        }
        (method, path) => Reply::error(
            404,
            "invalid_request_error",
            &format!("Unknown request URL: {method} {path}."),
        ),
    }
}

/// `POST /v1/embeddings`.
fn embeddings(state: &State, request: &Request) -> Reply {
    let invalid = |message: &str| Reply::error(400, "invalid_request_error", message);
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return invalid("We could not parse the JSON body of your request.");
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return invalid("You must provide a model parameter.");
    };
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect();
            match strings {
                Some(s) => s,
                None => return invalid("'input' must be a string or an array of strings."),
            }
        }
        _ => return invalid("'input' is a required property."),
    };
    if inputs.is_empty() {
        return invalid("'input' : input must be a non-empty array.");
    }
    match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => {}
        Some(other) => {
            return invalid(&format!(
                "The fake answers encoding_format \"float\" only, not {other:?}."
            ));
        }
    }
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => state.config.dimensions,
        Some(v) => match v.as_u64().and_then(|d| u32::try_from(d).ok()) {
            Some(d) => d,
            None => return invalid("'dimensions' must be a positive integer."),
        },
    };
    let Ok(embedder) = LocalEmbedder::try_new(dimensions) else {
        return invalid(&format!(
            "This model does not support {dimensions} dimensions."
        ));
    };
    let out = embedder.embed_now(&inputs);
    let mut data: Vec<Value> = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    if state.config.reversed {
        data.reverse();
    }
    let mut answer = json!({"object": "list", "data": data, "model": model});
    if state.config.usage {
        answer["usage"] = json!({"prompt_tokens": out.tokens, "total_tokens": out.tokens});
    }
    Reply::json(200, &answer)
}

/// `POST /v1/rerank`: the documents in reverse order, the best `top_n`.
fn rerank(request: &Request) -> Reply {
    let invalid = |message: &str| Reply::error(400, "invalid_request_error", message);
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return invalid("We could not parse the JSON body of your request.");
    };
    if body.get("model").and_then(Value::as_str).is_none()
        || body.get("query").and_then(Value::as_str).is_none()
    {
        return invalid("model and query are required.");
    }
    let Some(documents) = body.get("documents").and_then(Value::as_array) else {
        return invalid("documents must be an array.");
    };
    let n = documents.len();
    let top_n = body
        .get("top_n")
        .and_then(Value::as_u64)
        .and_then(|t| usize::try_from(t).ok())
        .unwrap_or(n)
        .min(n);
    #[allow(clippy::cast_precision_loss)] // small counts
    let results: Vec<Value> = (0..n)
        .rev()
        .take(top_n)
        .map(|index| json!({"index": index, "relevance_score": (index + 1) as f64 / n as f64}))
        .collect();
    Reply::json(
        200,
        &json!({"results": results, "usage": {"total_tokens": 10 * n}}),
    )
}

/// `GET /v1/models`.
fn models(state: &State) -> Reply {
    let data: Vec<Value> = state
        .config
        .chat_models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": MODEL_CREATED, "owned_by": "quire-fake"}))
        .collect();
    Reply::json(200, &json!({"object": "list", "data": data}))
}

/// `POST /v1/chat/completions`.
fn chat_completions(state: &State, request: &Request) -> Reply {
    let invalid = |message: &str| Reply::error(400, "invalid_request_error", message);
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return invalid("We could not parse the JSON body of your request.");
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return invalid("You must provide a model parameter.");
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return invalid("'messages' is a required property.");
    };
    if messages.is_empty() {
        return invalid("'messages' must contain at least one message.");
    }
    if messages
        .iter()
        .any(|m| m.get("role").and_then(Value::as_str).is_none())
    {
        return invalid("Each message must have a 'role'.");
    }
    if !state.config.chat_models.iter().any(|m| m == model) {
        return Reply::json(
            404,
            &json!({"error": {
                "message": format!("The model `{model}` does not exist or you do not have access to it."),
                "type": "invalid_request_error",
                "param": null,
                "code": "model_not_found",
            }}),
        );
    }
    let text = state.config.reply.make(&body);
    let pieces = reply_pieces(&text);
    let usage = ChatUsage {
        prompt_tokens: prompt_tokens(&body),
        completion_tokens: u32::try_from(pieces.len()).unwrap_or(u32::MAX),
    };
    *lock(&state.last_usage) = Some(usage);
    let usage_json = json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens),
    });
    let n = state.completions.fetch_add(1, Ordering::SeqCst) + 1;
    let id = format!("chatcmpl-fake-{n}");
    let created = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let mut answer = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }],
        });
        if state.config.usage {
            answer["usage"] = usage_json;
        }
        return Reply::json(200, &answer);
    }
    let chunk = |choices: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        })
    };
    let mut frames = vec![Frame::data(
        FrameKind::Role,
        &chunk(
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        ),
    )];
    for (i, piece) in pieces.iter().enumerate() {
        frames.push(Frame::data(
            FrameKind::Content,
            &chunk(json!([{"index": 0, "delta": {"content": piece}, "finish_reason": null}])),
        ));
        if i == 0 {
            frames.push(Frame {
                kind: FrameKind::Comment,
                text: ": keep-alive\n\n".to_owned(),
            });
        }
    }
    frames.push(Frame::data(
        FrameKind::Tail,
        &chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])),
    ));
    let asked = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if asked && state.config.usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage_json;
        frames.push(Frame::data(FrameKind::Tail, &last));
    }
    frames.push(Frame {
        kind: FrameKind::Tail,
        text: "data: [DONE]\n\n".to_owned(),
    });
    Reply {
        status: 200,
        headers: vec![
            (
                "content-type",
                "text/event-stream; charset=utf-8".to_owned(),
            ),
            ("cache-control", "no-cache".to_owned()),
        ],
        body: Body::Events(frames),
    }
}

/// Reads one request (head, then a `Content-Length` or chunked body); `None` when the client
/// went away or sent something unreadable.
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(8 * 1024);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD || !read_more(stream, &mut buf).await {
            return None;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut rest = buf.split_off(head_end + 4);
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        request.body = read_chunked(stream, rest).await?;
    } else {
        let len: usize = request
            .header("content-length")
            .map_or(Some(0), |v| v.parse().ok())?;
        if len > MAX_BODY {
            return None;
        }
        while rest.len() < len {
            if !read_more(stream, &mut rest).await {
                return None;
            }
        }
        rest.truncate(len);
        request.body = rest;
    }
    Some(request)
}

/// A chunked body, from what was already read (`buf`) and the stream.
async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf, b"\r\n") {
                break i;
            }
            if !read_more(stream, &mut buf).await {
                return None;
            }
        };
        let size_line = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if body.len() + size > MAX_BODY {
            return None;
        }
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            if !read_more(stream, &mut buf).await {
                return None;
            }
        }
        if size == 0 {
            // No trailers are sent by the clients under test.
            return Some(body);
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// Appends what the stream has; false at its end or on an error.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits `d`; `false` when the client closed the connection meanwhile.
async fn wait_or_gone(stream: &mut TcpStream, d: Duration) -> bool {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return false,
                // Nothing more is expected of the client: whatever it sends is ignored.
                Ok(_) => {}
            },
        }
    }
}

/// Waits until the client closes the connection.
async fn until_gone(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Counts a stream as open while it lives.
struct OpenStream<'a>(&'a State);

impl<'a> OpenStream<'a> {
    fn new(state: &'a State) -> Self {
        state.open_streams.fetch_add(1, Ordering::SeqCst);
        Self(state)
    }

    /// The client went away.
    fn abandoned(&self) {
        self.0.abandoned_streams.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Writes `bytes` and flushes.
async fn send(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Writes the answer (applying a stream fault of `plan`) and closes the connection unless
/// `keep_alive` (errors mean the client left: a whole answer ignores them, a stream counts
/// them); `true` when the connection stays open. A stream's `timing` is recorded when it
/// ends.
async fn write_reply(
    stream: &mut TcpStream,
    state: &State,
    reply: Reply,
    plan: Option<Fault>,
    mut timing: StreamTiming,
    keep_alive: bool,
) -> bool {
    let reason = reqwest::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nconnection: {connection}\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let first_token_delay = match plan {
        Some(Fault::FirstTokenDelay(d)) => Some(d),
        _ => None,
    };
    match reply.body {
        Body::Full(body) => {
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let _ = send(stream, head.as_bytes()).await;
            if let Some(d) = first_token_delay
                && !wait_or_gone(stream, d).await
            {
                return false;
            }
            if stream.write_all(&body).await.is_err() {
                return false;
            }
        }
        Body::Events(frames) => {
            head.push_str("transfer-encoding: chunked\r\n\r\n");
            let open = OpenStream::new(state);
            let whole =
                write_events(stream, head, frames, plan, &mut timing.first_content_at).await;
            lock(&state.stream_timings).push(timing);
            if !whole {
                open.abandoned();
                return false;
            }
        }
    }
    if keep_alive {
        return stream.flush().await.is_ok();
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    false
}

/// Writes a stream's head and frames as HTTP chunks, applying `plan`, and notes in
/// `first_content_at` when the first content chunk was flushed; `false` when the client went
/// away. A [`Fault::DisconnectAfter`] returns `true` having closed the connection.
async fn write_events(
    stream: &mut TcpStream,
    head: String,
    frames: Vec<Frame>,
    plan: Option<Fault>,
    first_content_at: &mut Option<Instant>,
) -> bool {
    if send(stream, head.as_bytes()).await.is_err() {
        return false;
    }
    if let Some(Fault::FirstTokenDelay(d)) = plan
        && !wait_or_gone(stream, d).await
    {
        return false;
    }
    let mut content_sent = 0usize;
    let mut acted = false;
    for frame in frames {
        if matches!(frame.kind, FrameKind::Content | FrameKind::Tail) && !acted {
            match plan {
                Some(Fault::DisconnectAfter(n)) if content_sent >= n => {
                    let _ = stream.shutdown().await;
                    return true;
                }
                Some(Fault::StallAfter(n, d)) if content_sent >= n => {
                    acted = true;
                    if !wait_or_gone(stream, d).await {
                        return false;
                    }
                }
                _ => {}
            }
        }
        if let Some(Fault::Paced(d)) = plan
            && frame.kind == FrameKind::Content
            && content_sent > 0
            && !wait_or_gone(stream, d).await
        {
            return false;
        }
        let chunk = format!("{:x}\r\n{}\r\n", frame.text.len(), frame.text);
        if send(stream, chunk.as_bytes()).await.is_err() {
            return false;
        }
        if frame.kind == FrameKind::Content {
            content_sent += 1;
            if content_sent == 1 {
                *first_content_at = Some(Instant::now());
            }
            if content_sent == 1 && plan == Some(Fault::MalformedChunk) {
                let bad = "data: {not json\n\n";
                let chunk = format!("{:x}\r\n{bad}\r\n", bad.len());
                if send(stream, chunk.as_bytes()).await.is_err() {
                    return false;
                }
            }
        }
    }
    send(stream, b"0\r\n\r\n").await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(fake: &FakeOpenAi, body: Value, key: Option<&str>) -> (u16, Value) {
        let client = crate::http_client().build().expect("a client");
        let mut req = client
            .post(format!("{}/embeddings", fake.base_url()))
            .json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.expect("sent");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// With `keep_alive`, one connection serves one request after another; without it, the
    /// fake closes the connection after its answer.
    #[tokio::test]
    async fn a_kept_alive_connection_serves_the_next_request() {
        let body = r#"{"model":"text-embedding-3-small","input":"hello"}"#;
        let request = format!(
            "POST /v1/embeddings HTTP/1.1\r\nhost: fake\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        for keep_alive in [true, false] {
            let builder = FakeOpenAi::builder();
            let fake = if keep_alive {
                builder.keep_alive()
            } else {
                builder
            }
            .start();
            let mut conn = TcpStream::connect(fake.addr()).await.expect("connected");
            let mut served = 0;
            for _ in 0..2 {
                if conn.write_all(request.as_bytes()).await.is_err() {
                    break;
                }
                let mut buf = Vec::new();
                let head_end = loop {
                    if let Some(i) = find(&buf, b"\r\n\r\n") {
                        break Some(i);
                    }
                    if !read_more(&mut conn, &mut buf).await {
                        break None;
                    }
                };
                let Some(head_end) = head_end else { break };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a content length");
                while buf.len() < head_end + 4 + len {
                    assert!(read_more(&mut conn, &mut buf).await, "the whole body");
                }
                served += 1;
            }
            assert_eq!(served, if keep_alive { 2 } else { 1 }, "{keep_alive}");
            assert_eq!(fake.request_count(), served);
        }
    }

    #[tokio::test]
    async fn embeddings_in_the_openai_shape() {
        let fake = FakeOpenAi::start();
        let (status, body) = post(
            &fake,
            json!({"model": "m", "input": ["running shoes", "tax forms"]}),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], "m");
        assert_eq!(body["data"][1]["index"], 1);
        assert_eq!(body["data"][0]["object"], "embedding");
        assert_eq!(
            body["data"][0]["embedding"].as_array().map(Vec::len),
            Some(64)
        );
        assert_eq!(body["usage"]["prompt_tokens"], 4);

        let (_, one) = post(
            &fake,
            json!({"model": "m", "input": "running shoes", "dimensions": 32}),
            None,
        )
        .await;
        assert_eq!(
            one["data"][0]["embedding"].as_array().map(Vec::len),
            Some(32)
        );

        let (status, err) = post(&fake, json!({"model": "m", "input": []}), None).await;
        assert_eq!(status, 400);
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(fake.request_count(), 3);
    }

    #[actix_web::test]
    async fn keys_and_faults_from_an_actix_test() {
        let fake = FakeOpenAi::builder()
            .api_key("sk-fake")
            .without_usage()
            .start();
        let (status, _) = post(&fake, json!({"model": "m", "input": "x"}), None).await;
        assert_eq!(status, 401);
        fake.push_faults([
            Fault::Status {
                status: 503,
                retry_after: Some("2".to_owned()),
            },
            Fault::Malformed,
        ]);
        let (status, body) =
            post(&fake, json!({"model": "m", "input": "x"}), Some("sk-fake")).await;
        assert_eq!(status, 503);
        assert_eq!(body["error"]["message"], fault_message(503));
        let (status, body) =
            post(&fake, json!({"model": "m", "input": "x"}), Some("sk-fake")).await;
        assert_eq!((status, body), (200, Value::Null));
        let (status, body) =
            post(&fake, json!({"model": "m", "input": "x"}), Some("sk-fake")).await;
        assert_eq!(status, 200);
        assert!(body.get("usage").is_none());
        let auth: Vec<Option<String>> = fake
            .requests()
            .into_iter()
            .map(|r| r.authorization)
            .collect();
        assert_eq!(auth[0], None);
        assert_eq!(auth[1].as_deref(), Some("Bearer sk-fake"));
        fake.stop();
    }

    #[tokio::test]
    async fn cleared_faults_are_not_served() {
        let fake = FakeOpenAi::start();
        fake.push_faults([Fault::Malformed, Fault::Drop, Fault::Drop]);
        let (status, body) = post(&fake, json!({"model": "m", "input": "x"}), None).await;
        assert_eq!((status, body), (200, Value::Null));
        assert_eq!(fake.pending_faults(), 2);
        fake.clear_faults();
        assert_eq!(fake.pending_faults(), 0);
        let (status, body) = post(&fake, json!({"model": "m", "input": "x"}), None).await;
        assert_eq!(status, 200);
        assert_eq!(body["object"], "list");
    }

    #[tokio::test]
    async fn a_dropped_connection_is_an_error() {
        let fake = FakeOpenAi::start();
        fake.push_faults([Fault::Drop]);
        let res = crate::http_client()
            .build()
            .expect("a client")
            .post(format!("{}/embeddings", fake.base_url()))
            .json(&json!({"model": "m", "input": "x"}))
            .send()
            .await;
        assert!(res.is_err());
        assert_eq!(fake.pending_faults(), 0);
    }

    /// `POST /v1/chat/completions` with `body`: the status, the content type and the raw body
    /// (`Err` when the body broke off).
    async fn chat(fake: &FakeOpenAi, body: Value) -> (u16, String, Result<String, String>) {
        let client = crate::http_client().build().expect("a client");
        let mut res = client
            .post(format!("{}/chat/completions", fake.base_url()))
            .json(&body)
            .send()
            .await
            .expect("sent");
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut raw = Vec::new();
        loop {
            match res.chunk().await {
                Ok(Some(bytes)) => raw.extend_from_slice(&bytes),
                Ok(None) => break,
                Err(_) => {
                    return (
                        status,
                        content_type,
                        Err(String::from_utf8_lossy(&raw).into_owned()),
                    );
                }
            }
        }
        (
            status,
            content_type,
            Ok(String::from_utf8_lossy(&raw).into_owned()),
        )
    }

    /// The `data:` values of an event stream (`[DONE]` as the string `"[DONE]"`, a value that
    /// is not JSON as a string too).
    fn data_of(raw: &str) -> Vec<Value> {
        raw.split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned())))
            .collect()
    }

    fn contents(data: &[Value]) -> Vec<String> {
        data.iter()
            .filter_map(|d| {
                d.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn question(text: &str, stream: bool, usage: bool) -> Value {
        let mut body = json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "earlier"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": text},
            ],
            "stream": stream,
        });
        if usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    #[test]
    fn pieces_and_prompt_tokens() {
        assert_eq!(reply_pieces("héllo wörld"), ["héll", "o wö", "rld"]);
        assert!(reply_pieces("").is_empty());
        // 9 + 7 + 2 + 5 characters = 23 → 6.
        assert_eq!(prompt_tokens(&question("hello", false, false)), 6);
        assert_eq!(
            prompt_tokens(&json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "abcd"}, {"type": "text", "text": "e"}
            ]}]})),
            2
        );
        assert_eq!(prompt_tokens(&json!({})), 0);
    }

    #[tokio::test]
    async fn a_streamed_chat_completion_in_the_openai_shape() {
        let fake = FakeOpenAi::start();
        let (status, content_type, raw) = chat(&fake, question("what is due?", true, true)).await;
        assert_eq!(status, 200);
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let raw = raw.expect("a whole stream");
        assert!(raw.contains("\n\n: keep-alive\n\n"), "{raw}");
        let data = data_of(&raw);
        assert_eq!(data[0]["object"], "chat.completion.chunk");
        assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(
            data.iter()
                .all(|d| d == "[DONE]" || d["id"] == data[0]["id"])
        );
        let pieces = contents(&data);
        assert_eq!(pieces, reply_pieces("You asked: what is due?"));
        let n = data.len();
        assert_eq!(data[n - 1], "[DONE]");
        assert_eq!(data[n - 3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(data[n - 2]["choices"], json!([]));
        let usage = fake.last_usage().expect("a usage");
        assert_eq!(
            usage,
            ChatUsage {
                prompt_tokens: prompt_tokens(&question("what is due?", true, true)),
                completion_tokens: 6,
            }
        );
        assert_eq!(
            data[n - 2]["usage"],
            json!({"prompt_tokens": usage.prompt_tokens, "completion_tokens": 6,
                   "total_tokens": usage.prompt_tokens + 6})
        );
        // The server drops its stream just after the client has read the last bytes: wait
        // for it rather than race it (under load this read 1).
        assert!(
            fake.until(Duration::from_secs(5), |f| f.open_streams() == 0)
                .await,
            "the finished stream was closed"
        );
        assert_eq!(fake.abandoned_streams(), 0);

        // No usage asked: no usage chunk.
        let (_, _, raw) = chat(&fake, question("what is due?", true, false)).await;
        let data = data_of(&raw.expect("a whole stream"));
        assert!(data.iter().all(|d| d.get("usage").is_none()));
        assert_eq!(data.last(), Some(&Value::from("[DONE]")));
        assert_eq!(fake.request_count(), 2);
        assert_eq!(fake.requests()[1].path, "/v1/chat/completions");
    }

    #[tokio::test]
    async fn whole_completions_replies_models_and_unknown_models() {
        let fake = FakeOpenAi::builder()
            .chat_models(&["small", "large"])
            .reply_with(|req| {
                format!(
                    "{} messages",
                    req["messages"].as_array().map_or(0, Vec::len)
                )
            })
            .without_usage()
            .start();
        let mut body = question("hi", false, false);
        body["model"] = json!("large");
        let (status, content_type, raw) = chat(&fake, body.clone()).await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        let answer: Value = serde_json::from_str(&raw.expect("a body")).expect("JSON");
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(answer["model"], "large");
        assert_eq!(answer["choices"][0]["message"]["content"], "4 messages");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert!(answer.get("usage").is_none());

        // Streamed, asking for usage: the builder said no.
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let (_, _, raw) = chat(&fake, body).await;
        let data = data_of(&raw.expect("a whole stream"));
        assert!(data.iter().all(|d| d.get("usage").is_none()));
        assert_eq!(contents(&data).concat(), "4 messages");

        let (status, _, raw) = chat(&fake, question("hi", true, true)).await;
        assert_eq!(status, 404);
        let err: Value = serde_json::from_str(&raw.expect("a body")).expect("JSON");
        assert_eq!(err["error"]["code"], "model_not_found");

        let (status, _, _) = chat(&fake, json!({"model": "small"})).await;
        assert_eq!(status, 400);

        let client = crate::http_client().build().expect("a client");
        let models: Value = client
            .get(format!("{}/models", fake.base_url()))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("JSON");
        assert_eq!(models["object"], "list");
        let ids: Vec<&str> = models["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert_eq!(ids, ["small", "large"]);
        assert_eq!(models["data"][0]["object"], "model");
        assert!(models["data"][0]["owned_by"].is_string());
    }

    #[tokio::test]
    async fn stream_faults() {
        let fake = FakeOpenAi::start();
        let reply = reply_pieces("You asked: what is due?");

        fake.push_faults([Fault::DisconnectAfter(2)]);
        let (status, _, raw) = chat(&fake, question("what is due?", true, true)).await;
        assert_eq!(status, 200);
        let partial = raw.expect_err("a broken body");
        assert_eq!(contents(&data_of(&partial)), reply[..2]);
        assert!(!partial.contains("[DONE]"));

        fake.push_faults([Fault::MalformedChunk]);
        let (_, _, raw) = chat(&fake, question("what is due?", true, true)).await;
        let data = data_of(&raw.expect("a whole stream"));
        assert_eq!(data[2], "{not json");
        assert_eq!(contents(&data), reply);

        fake.push_faults([Fault::StallAfter(3, Duration::from_millis(50))]);
        let (_, _, raw) = chat(&fake, question("what is due?", true, true)).await;
        assert_eq!(contents(&data_of(&raw.expect("a whole stream"))), reply);

        fake.push_faults([Fault::Status {
            status: 429,
            retry_after: Some("1".to_owned()),
        }]);
        let (status, _, _) = chat(&fake, question("what is due?", true, true)).await;
        assert_eq!(status, 429);
        assert_eq!(fake.pending_faults(), 0);
        assert_eq!(fake.abandoned_streams(), 0);
    }

    #[tokio::test]
    async fn streams_are_timed_from_the_request_to_the_first_token() {
        let fake = FakeOpenAi::start();
        let (status, _) = post(&fake, json!({"model": "m", "input": "x"}), None).await;
        assert_eq!(status, 200);
        assert!(
            fake.stream_timings().is_empty(),
            "an embedding is no stream"
        );

        fake.push_faults([Fault::FirstTokenDelay(Duration::from_millis(40))]);
        let (_, _, raw) = chat(&fake, question("slow", true, false)).await;
        assert!(raw.is_ok());
        let (_, _, raw) = chat(&fake, question("quick", true, false)).await;
        assert!(raw.is_ok());
        fake.push_faults([Fault::DisconnectAfter(0)]);
        let (_, _, raw) = chat(&fake, question("none", true, false)).await;
        assert!(raw.is_err());

        // The cut stream's timing is recorded as its task ends, which may be after the client
        // saw the connection close.
        fake.until(Duration::from_secs(5), |f| f.stream_timings().len() >= 3)
            .await;
        let timings = fake.stream_timings();
        assert_eq!(timings.len(), 3);
        let requests = fake.requests();
        let asked: Vec<String> = timings
            .iter()
            .map(|t| message_text(&requests[t.request].body["messages"][3]))
            .collect();
        assert_eq!(asked, ["slow", "quick", "none"]);
        let slow = timings[0].time_to_first_token().expect("a first token");
        assert!(slow >= Duration::from_millis(40), "{slow:?}");
        let quick = timings[1].time_to_first_token().expect("a first token");
        assert!(quick < slow, "{quick:?} vs {slow:?}");
        assert!(timings[1].received_at > timings[0].received_at);
        assert_eq!(timings[2].first_content_at, None);
        assert_eq!(timings[2].time_to_first_token(), None);
    }

    #[tokio::test]
    async fn a_client_that_leaves_mid_stream_is_counted_and_the_server_goes_on() {
        let fake = FakeOpenAi::start();
        fake.push_faults([Fault::StallAfter(1, Duration::from_secs(30))]);
        let client = crate::http_client().build().expect("a client");
        let mut res = client
            .post(format!("{}/chat/completions", fake.base_url()))
            .json(&question("what is due?", true, true))
            .send()
            .await
            .expect("sent");
        let first = res.chunk().await.expect("a chunk").expect("some bytes");
        assert!(!first.is_empty());
        assert!(
            fake.until(Duration::from_secs(5), |f| f.open_streams() == 1)
                .await
        );
        drop(res);
        assert!(
            fake.until(Duration::from_secs(5), |f| f.abandoned_streams() == 1
                && f.open_streams() == 0)
                .await
        );
        // Still serving.
        let (status, _, raw) = chat(&fake, question("again", true, true)).await;
        assert_eq!(status, 200);
        assert!(raw.expect("a whole stream").ends_with("data: [DONE]\n\n"));
    }
}
