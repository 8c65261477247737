//! A fake OpenAI-compatible provider for tests: a real HTTP/1.1 server on 127.0.0.1.
//!
//! ```ignore
//! let fake = FakeOpenAi::builder().api_key("sk-test").dimensions(64).start();
//! fake.push_faults([Fault::Status { status: 429, retry_after: Some("7".into()) }]);
//! // point the adapter at fake.base_url() (`http://127.0.0.1:PORT/v1`) …
//! assert_eq!(fake.request_count(), 2);
//! ```
//!
//! - `POST /v1/embeddings` answers in OpenAI's wire shape with vectors of
//!   [`local_ai::LocalEmbedder`] (of the request's `dimensions`, else the configured default),
//!   so that retrieval through the fake is meaningful, and `usage` counted with `cl100k_base`.
//! - With an API key configured, a request without `Authorization: Bearer <key>` gets 401.
//! - Faults ([`Fault`]) are consumed one per request, in the order they were pushed, before
//!   the request is answered.
//! - Every request is recorded ([`FakeOpenAi::requests`]).
//!
//! The server runs on its own thread with its own tokio runtime, so it works from
//! `#[tokio::test]`, `#[actix_web::test]` or plain tests alike; it listens from the moment
//! [`FakeOpenAiBuilder::start`] returns and stops when the [`FakeOpenAi`] is dropped. Each
//! connection serves one request and is closed (`Connection: close`), so a client never reuses
//! a connection the fake dropped.
//!
//! New routes (`/v1/chat/completions` with SSE streaming, `/v1/models`) go in `route`; a
//! streamed answer becomes another `Body` variant written by `write_reply`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use local_ai::LocalEmbedder;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body.
const MAX_BODY: usize = 32 * 1024 * 1024;

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

/// Settings of a [`FakeOpenAi`].
#[derive(Debug, Clone)]
pub struct FakeOpenAiBuilder {
    api_key: Option<String>,
    dimensions: u32,
    usage: bool,
    reversed: bool,
}

impl Default for FakeOpenAiBuilder {
    fn default() -> Self {
        Self {
            api_key: None,
            dimensions: 64,
            usage: true,
            reversed: false,
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

    /// Leaves `usage` out of the answers (as some compatible servers do).
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
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    lock(&state.requests).push(RecordedRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        authorization: request.header("authorization").map(str::to_owned),
        body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
    });
    let fault = lock(&state.faults).pop_front();
    let reply = match fault {
        // Dropping the stream closes the connection.
        Some(Fault::Drop) => return,
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
            route(&state, &request)
        }
        None => route(&state, &request),
    };
    write_reply(&mut stream, reply).await;
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
        // Later: ("POST", "/v1/chat/completions"), ("GET", "/v1/models").
        (_, "/v1/embeddings") => Reply::error(405, "invalid_request_error", "Method not allowed."),
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

/// Writes the answer and closes the connection (errors mean the client left: ignored).
async fn write_reply(stream: &mut TcpStream, reply: Reply) {
    let reason = reqwest::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nconnection: close\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match reply.body {
        Body::Full(body) => {
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
        }
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
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
}
