//! [`OpenAiChat`]: streamed `POST {base_url}/chat/completions` on an OpenAI-compatible
//! provider, as a [`chat::ChatModel`].
//!
//! Every call asks for `stream: true` and reads the answer as server-sent events
//! ([`SseParser`]). [`ChatModel::stream`] resolves once the first piece of the answer is
//! there: until then every failure (429/408/5xx, a connection failure, no first token within
//! [`ChatConfig::first_token_timeout`], a stream that breaks or sends a malformed chunk before
//! its first token) is retried under the [`ProviderConfig`] policy (see the `client` module).
//! After it nothing is retried: a stream that sends nothing for [`ChatConfig::idle_timeout`],
//! ends without `data: [DONE]`, or sends a malformed chunk yields
//! [`ModelError::Interrupted`] and ends. A stream that ends normally yields
//! [`ModelEvent::Usage`] last: the provider's (`stream_options.include_usage`) when it sends
//! one, else counted with tiktoken.
//!
//! The returned stream owns the HTTP response and nothing else runs for it: dropping the
//! stream drops the response, which closes the upstream connection.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chat::{ChatModel, ChatRequest, ModelError, ModelEvent, ModelStream, PromptMessage, Usage};
use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;

use crate::client::{
    ConfigError, Failure, HttpClient, MAX_MESSAGE_CHARS, Pause, check_status, error_chain,
    transport,
};
use crate::config::ProviderConfig;

/// Texts (bytes) above which a local token count runs on the blocking pool.
const BLOCKING_THRESHOLD: usize = 64 * 1024;

/// Longest line or event an SSE stream may send (a chat chunk is well under 1 KiB).
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// The name logs and errors give the call.
const WHAT: &str = "chat completions";

/// Which models to serve, and the stream's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConfig {
    /// The model names this adapter answers for (`["gpt-4o-mini"]`).
    pub models: Vec<String>,
    /// The context window of every model served, in tokens.
    pub context_window: u32,
    /// Longest wait, per attempt, from sending the request to the first piece of the answer;
    /// an attempt that waits longer is abandoned and retried.
    pub first_token_timeout: Duration,
    /// Longest silence (no bytes at all) after the first token: the stream is then
    /// interrupted.
    pub idle_timeout: Duration,
    /// Sends `stream_options: {"include_usage": true}` so the provider reports the tokens in a
    /// last chunk (some compatible servers refuse the field: turn it off for them; the tokens
    /// are then counted locally).
    pub include_usage: bool,
}

impl Default for ChatConfig {
    /// `gpt-4o-mini`, a 128,000-token window, 30 s to the first token, 30 s of silence at
    /// most, usage asked of the provider.
    fn default() -> Self {
        Self {
            models: vec!["gpt-4o-mini".to_owned()],
            context_window: 128_000,
            first_token_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            include_usage: true,
        }
    }
}

/// Chat completions from an OpenAI-compatible provider (OpenAI, vLLM, Ollama, LM Studio,
/// gateways …), streamed (see the module's documentation for the retry and interruption
/// rules).
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    client: HttpClient,
    config: ChatConfig,
    counts: Arc<CountMemo>,
}

impl OpenAiChat {
    /// A chat model on `provider`. `provider.timeout` does not apply (a streamed answer may
    /// take minutes): `config`'s first-token and idle timeouts do; `connect_timeout` does.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] on no model, an empty model name, a zero context window or
    /// timeout; [`ConfigError::BaseUrl`], [`ConfigError::NoTls`] and [`ConfigError::Client`].
    pub fn new(provider: ProviderConfig, config: ChatConfig) -> Result<Self, ConfigError> {
        if config.models.is_empty() || config.models.iter().any(|m| m.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "the chat models must be a non-empty list of names".to_owned(),
            ));
        }
        if config.context_window == 0 {
            return Err(ConfigError::Invalid(
                "the context window must be positive".to_owned(),
            ));
        }
        if config.first_token_timeout.is_zero() || config.idle_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "the first-token and idle timeouts must be positive".to_owned(),
            ));
        }
        Ok(Self {
            client: HttpClient::streaming(&provider)?,
            config,
            counts: Arc::new(CountMemo::new()),
        })
    }

    /// The same model, waiting between retries through `pause` (tests record the delays).
    #[must_use]
    pub fn with_pause(mut self, pause: Arc<dyn Pause>) -> Self {
        self.client.set_pause(pause);
        self
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// One attempt: sends the request and reads up to the first piece of the answer (or to
    /// the end of an answer without one). The caller bounds it with the first-token timeout.
    async fn attempt(&self, url: &str, body: &[u8]) -> Result<Started, Failure> {
        let res = self
            .client
            .post(url, body.to_vec())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(transport)?;
        let res = check_status(res).await?;
        let mut upstream = Upstream::new(res);
        match upstream.next(None).await {
            Ok(Piece::Content(text)) => Ok(Started {
                upstream,
                first: Some(text),
            }),
            Ok(Piece::End) => Ok(Started {
                upstream,
                first: None,
            }),
            Err(Broken::Transport(e)) => Err(transport(e)),
            Err(broken) => Err(Failure::Retry {
                reason: format!("{} before the first token", broken.describe()),
                status: None,
                retry_after: None,
                detail: None,
            }),
        }
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn models(&self) -> Vec<String> {
        self.config.models.clone()
    }

    /// Counted inline (this is not async): callers with megabytes of text should count on the
    /// blocking pool. Counts of long texts are remembered ([`CountMemo`]).
    fn count_tokens(&self, model: &str, text: &str) -> u32 {
        self.counts.count(tokenizer(model), text)
    }

    fn context_window(&self, _model: &str) -> u32 {
        self.config.context_window
    }

    fn refusing(&self) -> Option<std::time::Duration> {
        self.client.refusing()
    }

    async fn stream(&self, request: ChatRequest) -> Result<ModelStream, ModelError> {
        let body = serde_json::to_vec(&WireRequest::new(&request, self.config.include_usage))
            .map_err(|e| ModelError::Unknown(anyhow::Error::new(e).context(WHAT)))?;
        let url = self.client.url("chat/completions");
        let limit = self.config.first_token_timeout;
        let started = self
            .client
            .with_retries(WHAT, || async {
                match tokio::time::timeout(limit, self.attempt(&url, &body)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failure::Retry {
                        reason: format!("no first token within {}", show(limit)),
                        status: None,
                        retry_after: None,
                        detail: None,
                    }),
                }
            })
            .await
            .map_err(ModelError::from)?;
        let live = Live {
            produced: started.first.clone().unwrap_or_default(),
            first: started.first,
            upstream: started.upstream,
            idle: self.config.idle_timeout,
            model: request.model,
            messages: request.messages,
        };
        Ok(Box::pin(futures_util::stream::unfold(Some(live), step)))
    }
}

/// An attempt that got to its first token (or to the end of an answer without any).
struct Started {
    upstream: Upstream,
    first: Option<String>,
}

/// A stream after its first token.
struct Live {
    upstream: Upstream,
    /// The first piece, not yielded yet.
    first: Option<String>,
    /// Everything yielded so far (for a local count of the completion).
    produced: String,
    idle: Duration,
    model: String,
    messages: Vec<PromptMessage>,
}

/// One step of the stream: the next event, and what is left (`None` once it ended).
async fn step(live: Option<Live>) -> Option<(Result<ModelEvent, ModelError>, Option<Live>)> {
    let mut live = live?;
    if let Some(first) = live.first.take() {
        return Some((Ok(ModelEvent::Delta(first)), Some(live)));
    }
    match live.upstream.next(Some(live.idle)).await {
        Ok(Piece::Content(text)) => {
            live.produced.push_str(&text);
            Some((Ok(ModelEvent::Delta(text)), Some(live)))
        }
        Ok(Piece::End) => {
            let Live {
                upstream,
                produced,
                model,
                messages,
                ..
            } = live;
            // The response (and its connection) goes now, before any counting.
            let reported = upstream.chunks.usage;
            drop(upstream);
            let usage = match reported {
                Some(u) => Ok(u),
                None => counted_usage(model, messages, produced).await,
            };
            Some((usage.map(ModelEvent::Usage), None))
        }
        Err(broken) => {
            let reason = match &broken {
                Broken::Timeout => format!("no data from the provider for {}", show(live.idle)),
                _ => broken.describe(),
            };
            let detail = match broken {
                Broken::Transport(e) => Some(error_chain(&e.without_url())),
                _ => None,
            };
            tracing::warn!(
                what = WHAT,
                produced_chars = live.produced.chars().count(),
                detail,
                "{WHAT}: {reason}; the answer is cut short"
            );
            Some((
                Err(ModelError::Interrupted(format!(
                    "the answer was cut short: {reason}"
                ))),
                None,
            ))
        }
    }
}

/// What the upstream stream gives next.
#[derive(Debug)]
enum Piece {
    /// A non-empty piece of the answer.
    Content(String),
    /// `data: [DONE]`.
    End,
}

/// How a stream broke.
#[derive(Debug)]
enum Broken {
    /// No bytes for the idle timeout.
    Timeout,
    /// The body ended without `[DONE]`.
    Closed,
    /// Reading the body failed.
    Transport(reqwest::Error),
    /// A chunk that is not a chat-completion chunk, or an oversized line.
    Malformed,
    /// An `{"error": …}` chunk; its message.
    Provider(String),
}

impl Broken {
    /// Short, safe to show (no key, no prompt).
    fn describe(&self) -> String {
        match self {
            Self::Timeout => "the provider went silent".to_owned(),
            Self::Closed => "the provider closed the stream before it ended".to_owned(),
            Self::Transport(e) if e.is_timeout() => "the connection timed out".to_owned(),
            Self::Transport(_) => "the connection failed".to_owned(),
            Self::Malformed => "the provider sent a malformed chunk".to_owned(),
            Self::Provider(m) => format!("the provider reported an error: {m}"),
        }
    }
}

/// The HTTP response of a streamed call and what was read of it.
struct Upstream {
    response: reqwest::Response,
    parser: SseParser,
    /// Events parsed but not looked at yet.
    pending: VecDeque<SseEvent>,
    chunks: Chunks,
}

impl Upstream {
    fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            chunks: Chunks::default(),
        }
    }

    /// The next piece of the answer; with `idle`, a silence that long breaks the stream.
    async fn next(&mut self, idle: Option<Duration>) -> Result<Piece, Broken> {
        loop {
            while !self.chunks.done
                && let Some(event) = self.pending.pop_front()
            {
                if let Some(text) = self.chunks.interpret(&event.data)? {
                    return Ok(Piece::Content(text));
                }
            }
            if self.chunks.done {
                return Ok(Piece::End);
            }
            let read = match idle {
                Some(d) => tokio::time::timeout(d, self.response.chunk())
                    .await
                    .map_err(|_| Broken::Timeout)?,
                None => self.response.chunk().await,
            };
            match read {
                Ok(Some(bytes)) => {
                    let events = self.parser.push(&bytes).map_err(|_| Broken::Malformed)?;
                    self.pending.extend(events);
                }
                Ok(None) => return Err(Broken::Closed),
                Err(e) => return Err(Broken::Transport(e)),
            }
        }
    }
}

/// What the chunks of a stream said so far, beside their text.
#[derive(Debug, Default)]
struct Chunks {
    /// The provider's usage, once its chunk arrived.
    usage: Option<Usage>,
    /// `[DONE]` seen.
    done: bool,
}

impl Chunks {
    /// The text an event's data carries, if any; notes `[DONE]` and usage.
    fn interpret(&mut self, data: &str) -> Result<Option<String>, Broken> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(None);
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(None);
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|_| Broken::Malformed)?;
        if let Some(error) = chunk.error {
            let message = crate::client::error_message(
                serde_json::json!({ "error": error }).to_string().as_bytes(),
            )
            .unwrap_or_else(|| "an unknown error".to_owned());
            return Err(Broken::Provider(kernel::text::ellipsized(
                &message,
                MAX_MESSAGE_CHARS,
            )));
        }
        if let Some(WireUsage {
            prompt_tokens: Some(prompt),
            completion_tokens: Some(completion),
        }) = chunk.usage
        {
            self.usage = Some(Usage {
                prompt_tokens: saturate_u64(prompt),
                completion_tokens: saturate_u64(completion),
            });
        }
        let text = chunk
            .choices
            .into_iter()
            .find(|c| c.index == 0)
            .and_then(|c| c.delta)
            .and_then(|d| d.content)
            .unwrap_or_default();
        Ok((!text.is_empty()).then_some(text))
    }
}

/// The tokenizer of `model`: `o200k_base` for the GPT-4o, GPT-4.1, GPT-5 and o-series
/// families, else `cl100k_base`. A `provider/` prefix (`openai/gpt-4o`) is ignored.
fn tokenizer(model: &str) -> &'static CoreBPE {
    let name = model.rsplit('/').next().unwrap_or(model);
    let o200k = ["gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4"]
        .iter()
        .any(|prefix| name.starts_with(prefix));
    if o200k {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    }
}

/// Texts (bytes) from which [`CountMemo`] remembers a count: shorter ones cost less to count
/// than to look up.
const MEMO_FROM_BYTES: usize = 512;

/// Counts remembered.
const MEMO_ENTRIES: usize = 16_384;

/// Token counts of long texts, remembered by a keyed hash of the text and the tokenizer: a
/// prompt holds the same texts again and again (the rules, the chunks a collection's questions
/// retrieve, a session's history), and a count of a 2 KB chunk costs 30 to 50 µs. Bounded
/// ([`MEMO_ENTRIES`], `quick_cache`'s S3-FIFO eviction); a count never goes stale (the key is
/// the text). The hash is SipHash with a random key of this process, so nobody can choose
/// two texts that share an entry; two texts meeting by chance (one in 2^64) would share a
/// count, nothing else.
struct CountMemo {
    hasher: std::collections::hash_map::RandomState,
    counts: quick_cache::sync::Cache<(usize, u64), u32>,
}

impl std::fmt::Debug for CountMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountMemo").finish_non_exhaustive()
    }
}

impl CountMemo {
    fn new() -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            counts: quick_cache::sync::Cache::new(MEMO_ENTRIES),
        }
    }

    /// `text`'s tokens in `bpe`.
    fn count(&self, bpe: &'static CoreBPE, text: &str) -> u32 {
        if text.len() < MEMO_FROM_BYTES {
            return saturate(bpe.count_ordinary(text));
        }
        let key = (
            std::ptr::from_ref(bpe) as usize,
            std::hash::BuildHasher::hash_one(&self.hasher, text),
        );
        if let Some(n) = self.counts.get(&key) {
            return n;
        }
        let n = saturate(bpe.count_ordinary(text));
        self.counts.insert(key, n);
        n
    }
}

/// The usage of a call whose provider reported none: the prompt's messages (their tokens, 4
/// per message and 3 for the reply's priming) and the text produced.
fn count_usage(model: &str, messages: &[PromptMessage], produced: &str) -> Usage {
    let bpe = tokenizer(model);
    let prompt = messages
        .iter()
        .map(|m| bpe.count_ordinary(&m.content).saturating_add(4))
        .fold(3usize, usize::saturating_add);
    Usage {
        prompt_tokens: saturate(prompt),
        completion_tokens: saturate(bpe.count_ordinary(produced)),
    }
}

/// [`count_usage`], on the blocking pool when the texts are large.
async fn counted_usage(
    model: String,
    messages: Vec<PromptMessage>,
    produced: String,
) -> Result<Usage, ModelError> {
    let bytes = messages
        .iter()
        .map(|m| m.content.len())
        .fold(produced.len(), usize::saturating_add);
    if bytes <= BLOCKING_THRESHOLD {
        return Ok(count_usage(&model, &messages, &produced));
    }
    tokio::task::spawn_blocking(move || count_usage(&model, &messages, &produced))
        .await
        .map_err(|e| ModelError::Unknown(anyhow!(e).context("counting tokens")))
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn saturate_u64(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `250 ms`, `30 s`.
fn show(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

impl<'a> WireRequest<'a> {
    fn new(request: &'a ChatRequest, include_usage: bool) -> Self {
        Self {
            model: &request.model,
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect(),
            stream: true,
            stream_options: include_usage.then_some(StreamOptions {
                include_usage: true,
            }),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
        }
    }
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// A `chat.completion.chunk` (only what is read of it).
#[derive(Debug, Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<WireDelta>,
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// One event of a `text/event-stream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`None`: the default type, `message`).
    pub event: Option<String>,
    /// The `data:` lines, joined by `\n` (empty for a lone `data:`).
    pub data: String,
    /// The last `id:` seen in the stream so far (it carries over to later events).
    pub id: Option<String>,
}

/// A line or event longer than the parser takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a server-sent event longer than {MAX_EVENT_BYTES} bytes")]
pub struct SseTooLong;

/// An incremental parser of `text/event-stream` (the WHATWG rules): bytes in, in pieces
/// split anywhere (inside a line ending, inside a UTF-8 character), whole events out.
///
/// Lines end with `\r\n`, `\n` or `\r`; a line starting with `:` is a comment
/// (keep-alives); `data:` lines accumulate (joined by `\n`), `event:` and `id:` are kept,
/// other fields ignored; a blank line dispatches the event when it has data. A leading BOM
/// is skipped; an event cut off by the end of the stream is not dispatched.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The current line, not ended yet.
    line: Vec<u8>,
    /// The last byte seen was a `\r`: a `\n` next is part of the same line ending.
    after_cr: bool,
    /// A first line was seen (so a BOM is no longer possible).
    started: bool,
    /// The current event's data, each line followed by `\n`.
    data: String,
    event: Option<String>,
    last_id: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes; the events they complete, in order.
    ///
    /// # Errors
    /// [`SseTooLong`] when a line or an event outgrows 4 MiB (the stream is unusable then).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseTooLong> {
        let mut out = Vec::new();
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(i) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&rest[..i]);
            let cr = rest[i] == b'\r';
            rest = &rest[i + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process(&line, &mut out);
            if self.data.len() > MAX_EVENT_BYTES {
                return Err(SseTooLong);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_EVENT_BYTES {
            return Err(SseTooLong);
        }
        Ok(out)
    }

    /// One whole line (without its ending).
    fn process(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let mut line = line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"event" => self.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.last_id = Some(value.into_owned()),
            _ => {}
        }
    }

    /// Ends the current event: out when it has data, dropped otherwise.
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        out.push(SseEvent {
            event,
            data,
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use chat::{PromptRole, Task};

    use super::*;

    /// Every feature at once: a BOM, comments, `event:`/`id:`, multi-line and blank data, all
    /// three line endings, multi-byte characters, an event without data, `[DONE]`.
    const SAMPLE: &[u8] = "\u{feff}: keep-alive\r\n\r\n\
        event: message\nid: 1\ndata: {\"a\":\"héllo wörld 😀\"}\n\n\
        data: first line\r\ndata: second line\r\n\r\n\
        :another comment\rdata\r\r\
        data:no-space\ndata:  two spaces\n\n\
        event: ignored-without-data\nid: 2\n\n\
        retry: 100\nunknown: x\ndata: فارسی\n\n\
        data: [DONE]\n\n\
        data: cut off at the end"
        .as_bytes();

    fn expected() -> Vec<SseEvent> {
        let ev = |event: Option<&str>, data: &str, id: Option<&str>| SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: id.map(str::to_owned),
        };
        vec![
            ev(Some("message"), "{\"a\":\"héllo wörld 😀\"}", Some("1")),
            ev(None, "first line\nsecond line", Some("1")),
            ev(None, "", Some("1")),
            ev(None, "no-space\n two spaces", Some("1")),
            ev(None, "فارسی", Some("2")),
            ev(None, "[DONE]", Some("2")),
        ]
    }

    fn parse_in(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        pieces
            .iter()
            .flat_map(|piece| p.push(piece).unwrap())
            .collect()
    }

    #[test]
    fn the_whole_sample_at_once() {
        assert_eq!(parse_in(&[SAMPLE]), expected());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        for i in 0..=SAMPLE.len() {
            let (a, b) = SAMPLE.split_at(i);
            assert_eq!(parse_in(&[a, b]), expected(), "split at {i}");
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_same_events() {
        for i in 0..=SAMPLE.len() {
            for j in i..=SAMPLE.len() {
                let pieces = [&SAMPLE[..i], &SAMPLE[i..j], &SAMPLE[j..]];
                assert_eq!(parse_in(&pieces), expected(), "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let pieces: Vec<&[u8]> = SAMPLE.chunks(1).collect();
        assert_eq!(parse_in(&pieces), expected());
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_ending() {
        // Were the `\n` taken for a second line ending, the blank line would dispatch early.
        let events = parse_in(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a\nb");
        // An empty push keeps the pending `\r`.
        let events = parse_in(&[b"data: a\r", b"", b"\n\r\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a");
    }

    #[test]
    fn several_events_in_one_push() {
        let events = parse_in(&[b"data: 1\n\ndata: 2\n\n: ping\n\ndata: 3\n\n"]);
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["1", "2", "3"]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::new();
        let big = vec![b'x'; MAX_EVENT_BYTES];
        assert!(p.push(b"data: ").is_ok());
        assert_eq!(p.push(&big), Err(SseTooLong));
    }

    /// The texts of these events' data, the usage, whether `[DONE]` came, the error.
    fn read_chunks(data: &[&str]) -> (Vec<String>, Option<Usage>, bool, Option<String>) {
        let mut chunks = Chunks::default();
        let mut texts = Vec::new();
        let mut error = None;
        for d in data {
            match chunks.interpret(d) {
                Ok(Some(t)) => texts.push(t),
                Ok(None) => {}
                Err(b) => error = Some(b.describe()),
            }
        }
        (texts, chunks.usage, chunks.done, error)
    }

    #[test]
    fn chunks_are_read_as_openai_sends_them() {
        let (texts, usage, done, error) = read_chunks(&[
            r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#,
            "",
            "[DONE]",
        ]);
        assert_eq!(texts, ["Hel"]);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 3
            })
        );
        assert!(done);
        assert_eq!(error, None);

        let (_, _, _, error) = read_chunks(&["{not json"]);
        assert_eq!(
            error.as_deref(),
            Some("the provider sent a malformed chunk")
        );
        let (_, _, _, error) = read_chunks(&[r#"{"choices":"nope"}"#]);
        assert_eq!(
            error.as_deref(),
            Some("the provider sent a malformed chunk")
        );
        let (_, _, _, error) =
            read_chunks(&[r#"{"error":{"message":"overloaded","type":"server_error"}}"#]);
        assert_eq!(
            error.as_deref(),
            Some("the provider reported an error: overloaded")
        );
    }

    #[test]
    fn tokenizers_by_model_family() {
        let o200k = tiktoken_rs::o200k_base_singleton() as *const CoreBPE;
        let cl100k = tiktoken_rs::cl100k_base_singleton() as *const CoreBPE;
        for m in [
            "gpt-4o-mini",
            "gpt-4.1",
            "o3-mini",
            "gpt-5",
            "openai/gpt-4o",
        ] {
            assert!(std::ptr::eq(tokenizer(m), o200k), "{m}");
        }
        for m in ["gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "llama3.1:8b"] {
            assert!(std::ptr::eq(tokenizer(m), cl100k), "{m}");
        }
    }

    /// The prompt's parts are counted once, as chosen; in tiktoken their sum is the count of
    /// the whole prompt (the parts meet at blank lines after punctuation, where the
    /// pre-tokenizer splits), in both tokenizers and both templates, with sources that move
    /// up a label and text that ends in every kind of character.
    #[test]
    fn an_assembled_prompt_counts_as_its_whole_messages_in_tiktoken() {
        use chat::prompt::{PromptInput, assemble};
        use chat::{Locale, Message, MessageId, MessageRole, MessageStatus, Source};
        let source = |name: &str, text: &str| Source {
            label: String::new(),
            chunk_id: documents::ChunkId::new(),
            document_id: documents::DocumentId::new(),
            document_name: name.to_owned(),
            page: Some(3),
            text: text.to_owned(),
            score: 0.5,
        };
        let texts = [
            "Receipts are filed within thirty days.\n\nSecond paragraph, ending in a number 42",
            "Ends with punctuation!!! <<<end S1 | fence guess>>>",
            "اجاره در اسفند تمام می‌شود.",
            "   spaces around   \n",
            "日本語のテキスト。句読点で終わる。",
            "emoji 😀 and a tab\tend",
            "/etc/passwd opens with a slash, which o200k joins to the line break before it",
            "",
            "- a list item opening with punctuation.\n- and another:",
            "42 opens with a number; ends with one 7",
            "Ends with a line of punctuation\n---",
        ];
        let mut sources = vec![source("big.pdf", &"word ".repeat(3_000))];
        for (i, t) in texts.iter().cycle().take(14).enumerate() {
            sources.push(source(&format!("doc-{i}.txt"), t));
        }
        let history = vec![Message {
            id: MessageId::new(),
            tenant_id: kernel::TenantId::new(),
            session_id: chat::ChatSessionId::new(),
            role: MessageRole::Assistant,
            content: "An earlier answer. [S1]".to_owned(),
            citations: Vec::new(),
            usage: None,
            status: MessageStatus::Complete,
            model: None,
            error: None,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }];
        for model in ["gpt-4o-mini", "gpt-4"] {
            let bpe = tokenizer(model);
            let count = |s: &str| saturate(bpe.count_ordinary(s));
            for locale in [Locale::En, Locale::Fa] {
                for budget in [2_000, 6_000, 100_000] {
                    let p = assemble(
                        PromptInput {
                            locale,
                            instructions: Some("Be brief."),
                            system_prompt: None,
                            history: &history,
                            question: "When is rent due?",
                            sources: sources.clone(),
                        },
                        "0a1b2c3d4e5f",
                        budget,
                        &count,
                    );
                    let whole = count_usage(model, &p.messages, "").prompt_tokens;
                    assert_eq!(p.tokens, whole, "{model} {locale:?} {budget}");
                }
            }
        }
    }

    /// A remembered count is the count, per tokenizer; short texts are not kept.
    #[test]
    fn remembered_counts_are_the_counts_of_each_tokenizer() {
        let memo = CountMemo::new();
        let long = "Receipts are filed with the travel desk within thirty days. ".repeat(20);
        for model in ["gpt-4o-mini", "gpt-4"] {
            let bpe = tokenizer(model);
            let direct = saturate(bpe.count_ordinary(&long));
            assert_eq!(memo.count(bpe, &long), direct, "{model}");
            assert_eq!(memo.count(bpe, &long), direct, "{model}, remembered");
        }
        // A text the two tokenizers count differently: each gets its own count.
        let persian = "اجاره در اسفند تمام می‌شود. ".repeat(30);
        let (o200k, cl100k) = (tokenizer("gpt-4o-mini"), tokenizer("gpt-4"));
        let direct = |bpe: &CoreBPE| saturate(bpe.count_ordinary(&persian));
        assert_ne!(direct(o200k), direct(cl100k));
        assert_eq!(memo.count(o200k, &persian), direct(o200k));
        assert_eq!(memo.count(cl100k, &persian), direct(cl100k));
        assert_eq!(memo.counts.len(), 4);
        memo.count(tokenizer("gpt-4"), "short");
        assert_eq!(memo.counts.len(), 4);
    }

    #[test]
    fn local_usage_counts_messages_and_priming() {
        let messages = vec![
            PromptMessage::new(PromptRole::System, "Answer briefly."),
            PromptMessage::new(PromptRole::User, "hello world"),
        ];
        let bpe = tiktoken_rs::cl100k_base_singleton();
        let usage = count_usage("gpt-4", &messages, "Hi there!");
        let prompt =
            bpe.count_ordinary("Answer briefly.") + bpe.count_ordinary("hello world") + 2 * 4 + 3;
        assert_eq!(usage.prompt_tokens as usize, prompt);
        assert_eq!(
            usage.completion_tokens as usize,
            bpe.count_ordinary("Hi there!")
        );
        assert!(usage.completion_tokens > 0);
    }

    #[test]
    fn the_request_shape() {
        let request = ChatRequest {
            model: "gpt-4o-mini".to_owned(),
            messages: vec![
                PromptMessage::new(PromptRole::System, "sys"),
                PromptMessage::new(PromptRole::User, "q"),
            ],
            temperature: Some(0.2),
            max_tokens: Some(100),
            task: Task::Chat,
            sources: Vec::new(),
        };
        // As on the wire (`to_value` would widen the f32 to 0.20000000298023224).
        let wire = |r: &ChatRequest, usage: bool| -> serde_json::Value {
            serde_json::from_slice(&serde_json::to_vec(&WireRequest::new(r, usage)).unwrap())
                .unwrap()
        };
        assert_eq!(
            wire(&request, true),
            serde_json::json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "q"},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.2,
                "max_tokens": 100,
            })
        );
        let bare = ChatRequest {
            temperature: None,
            max_tokens: None,
            ..request
        };
        let v = wire(&bare, false);
        assert!(v.get("stream_options").is_none(), "{v}");
        assert!(v.get("temperature").is_none(), "{v}");
        assert!(v.get("max_tokens").is_none(), "{v}");
    }

    #[test]
    fn durations_are_shown_shortly() {
        assert_eq!(show(Duration::from_millis(200)), "200 ms");
        assert_eq!(show(Duration::from_secs(30)), "30 s");
        assert_eq!(show(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn settings_are_checked() {
        let provider = ProviderConfig {
            base_url: "http://127.0.0.1:9/v1".to_owned(),
            ..ProviderConfig::default()
        };
        let model = OpenAiChat::new(provider.clone(), ChatConfig::default()).unwrap();
        assert_eq!(model.models(), ["gpt-4o-mini"]);
        assert_eq!(model.context_window("gpt-4o-mini"), 128_000);
        assert!(model.count_tokens("gpt-4o-mini", "hello world") > 0);
        for bad in [
            ChatConfig {
                models: Vec::new(),
                ..ChatConfig::default()
            },
            ChatConfig {
                models: vec![" ".to_owned()],
                ..ChatConfig::default()
            },
            ChatConfig {
                context_window: 0,
                ..ChatConfig::default()
            },
            ChatConfig {
                idle_timeout: Duration::ZERO,
                ..ChatConfig::default()
            },
        ] {
            assert!(matches!(
                OpenAiChat::new(provider.clone(), bad),
                Err(ConfigError::Invalid(_))
            ));
        }
    }
}
