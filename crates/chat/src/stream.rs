//! The one streaming core: a running answer ([`Run`]) and its viewers ([`Subscription`]).
//!
//! A run is driven by its own task, not by any connection: it reads the model's stream,
//! appends each event to a replay buffer and wakes the viewers. SSE responses and WebSocket
//! connections are only viewers. So:
//! - a viewer can attach from any position (`Last-Event-ID`) while the run goes on, or for
//!   [`Runs::keep`] after it ended;
//! - when the last viewer goes away (a disconnect) the run is cancelled after a short grace
//!   (room for a reconnect with `Last-Event-ID`), which drops the model's stream and so the
//!   upstream request; an explicit cancel stops it at once;
//! - the answer is stored by the run when it ends, whoever watches.
//!
//! Event ids are `<message id>:<position>`, the position being `d<chars delivered>` for text,
//! `c` for the citations and `e` for the end. A stream that ended can therefore be replayed by
//! any server process from the stored message alone (see `Chat::resume`).
//!
//! A viewer that reconnects to another server while the answer runs gets a [`Follow`]: it
//! reads the stored message (checkpointed by the run at most every second) every
//! [`FOLLOW_POLL`] and sends the text beyond what the viewer has, then ends like a replay.
//! Across servers the only shared state is the database and the cache: the follower keeps a
//! *watch* key alive ([`watch_key`]), which holds off the run's no-viewer cancel, and a cancel
//! asked through it sets a *cancel* key ([`cancel_key`]) the run reads at its checkpoints. A
//! cache that fails is logged and degrades to a run that sees no remote viewer (it is
//! cancelled after its grace as when nobody watches).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use kernel::cache::{Cache, CacheKey};
use tokio::sync::Notify;

use crate::model::{Citation, Message, MessageId, MessageStatus, Usage};
use crate::ports::{ChatStore, ModelError};

/// One event of an answer stream, as SSE and WebSocket carry it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of the answer.
    Delta {
        /// The text.
        text: String,
    },
    /// The verified citations, once the answer is whole.
    Citations {
        /// The citations.
        citations: Vec<Citation>,
    },
    /// The answer was stored.
    Done {
        /// The stored message.
        message_id: MessageId,
        /// Tokens.
        usage: Usage,
    },
    /// The stream failed or was cancelled (what was produced is stored as `incomplete`).
    Error(AnswerError),
}

/// Why an answer ended early. `crates/api` gives each its wire code; the message is the
/// detail a client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The answer was cancelled (a viewer asked, or none was left).
    #[error("the answer was cancelled")]
    Cancelled,
    /// The model refused the request.
    #[error("{0}")]
    ProviderRejected(String),
    /// The model could not be reached, or its stream broke.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// The model provider is known to be down: not tried (see [`ModelError::Down`]).
    #[error("the model provider is down; try again in {} s", kernel::clock::whole_secs_up(*.0).max(1))]
    ProviderDown(Duration),
    /// The model failed otherwise (the cause is logged, never shown).
    #[error("the model failed")]
    ModelFailed,
    /// The session was deleted while the answer ran.
    #[error("the session was deleted")]
    SessionDeleted,
    /// The answer could not be stored: storage stayed down longer than the end of an
    /// answer is retried (its last checkpoint is ended by the sweeper once storage is back).
    #[error("the answer could not be stored; storage is unavailable")]
    NotStored,
    /// A replayed answer that was cut short when it ran.
    #[error("the answer was cut short; what was produced is stored")]
    Incomplete,
    /// A followed answer (one running on another server) stopped changing for longer than
    /// a stopped server's answer takes to be swept: the viewer stops waiting.
    #[error(
        "the answer stopped progressing on the server writing it; its message shows how it ends"
    )]
    Stalled,
}

impl From<ModelError> for AnswerError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Rejected(m) => Self::ProviderRejected(m),
            ModelError::Unavailable(m) | ModelError::Interrupted(m) => Self::ProviderUnavailable(m),
            ModelError::Down { retry_after } => Self::ProviderDown(retry_after),
            ModelError::Unknown(e) => {
                tracing::error!(error = ?e, "model failure");
                Self::ModelFailed
            }
        }
    }
}

impl StreamEvent {
    /// The SSE event name (and the WebSocket frame's `type`).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Delta { .. } => "delta",
            Self::Citations { .. } => "citations",
            Self::Done { .. } => "done",
            Self::Error(_) => "error",
        }
    }

    /// Whether the stream ends with this event.
    #[must_use]
    pub const fn is_last(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Error(_))
    }
}

/// Where in a stream an event sits (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Position {
    /// After this many characters of text.
    Text(u64),
    /// The citations.
    Citations,
    /// The end.
    End,
}

impl Position {
    fn render(self) -> String {
        match self {
            Self::Text(n) => format!("d{n}"),
            Self::Citations => "c".to_owned(),
            Self::End => "e".to_owned(),
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "c" => Some(Self::Citations),
            "e" => Some(Self::End),
            _ => s.strip_prefix('d')?.parse().ok().map(Self::Text),
        }
    }
}

/// An event with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    /// `<message id>:<position>`.
    pub id: String,
    /// Its position.
    pub position: Position,
    /// The event.
    pub event: StreamEvent,
}

/// Parses a `Last-Event-ID`.
#[must_use]
pub fn parse_event_id(id: &str) -> Option<(MessageId, Position)> {
    let (m, p) = id.trim().rsplit_once(':')?;
    Some((MessageId::parse(m).ok()?, Position::parse(p)?))
}

fn event_id(message: MessageId, position: Position) -> String {
    format!("{message}:{}", position.render())
}

#[derive(Debug, Default)]
struct RunState {
    events: Vec<Sequenced>,
    chars: u64,
    viewers: usize,
    finished_at: Option<Instant>,
    /// Bumped each time the viewer count drops to zero, so a stale grace timer does nothing.
    epoch: u64,
}

/// A running (or just ended) answer.
#[derive(Debug)]
pub struct Run {
    /// The assistant message it becomes.
    pub message_id: MessageId,
    /// The organization (a viewer of another one never finds it).
    pub tenant_id: kernel::TenantId,
    /// The session.
    pub session_id: crate::model::ChatSessionId,
    state: Mutex<RunState>,
    changed: Notify,
    cancel: tokio::sync::watch::Sender<bool>,
}

impl Run {
    fn lock(&self) -> MutexGuard<'_, RunState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends an event (the run's task only).
    pub(crate) fn push(&self, event: StreamEvent) {
        let mut s = self.lock();
        if s.finished_at.is_some() {
            return;
        }
        let position = match &event {
            StreamEvent::Delta { text } => {
                s.chars += text.chars().count() as u64;
                Position::Text(s.chars)
            }
            StreamEvent::Citations { .. } => Position::Citations,
            StreamEvent::Done { .. } | StreamEvent::Error(_) => Position::End,
        };
        if event.is_last() {
            s.finished_at = Some(Instant::now());
        }
        s.events.push(Sequenced {
            id: event_id(self.message_id, position),
            position,
            event,
        });
        drop(s);
        self.changed.notify_waiters();
    }

    /// Asks the run to stop now: the model's stream is dropped, what was produced is stored
    /// as `incomplete`.
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    /// Resolves when the run is asked to stop.
    pub(crate) async fn cancelled(&self) {
        let mut rx = self.cancel.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Whether the run has ended.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.lock().finished_at.is_some()
    }

    /// Viewers attached now.
    #[must_use]
    pub fn viewers(&self) -> usize {
        self.lock().viewers
    }
}

/// The runs of this process.
#[derive(Debug)]
pub struct Runs {
    runs: Mutex<HashMap<MessageId, Arc<Run>>>,
    /// How long a run with no viewer goes on before it is cancelled.
    pub grace: Duration,
    /// How long an ended run stays for replay.
    pub keep: Duration,
    /// Where remote viewers keep their watch keys (shared by every server).
    cache: Arc<dyn Cache>,
}

impl Runs {
    /// No runs yet.
    #[must_use]
    pub fn new(grace: Duration, keep: Duration, cache: Arc<dyn Cache>) -> Self {
        Self {
            runs: Mutex::new(HashMap::new()),
            grace,
            keep,
            cache,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<MessageId, Arc<Run>>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new run (and forgets runs that ended more than `keep` ago).
    pub(crate) fn start(
        &self,
        message_id: MessageId,
        tenant_id: kernel::TenantId,
        session_id: crate::model::ChatSessionId,
    ) -> Arc<Run> {
        let (cancel, _) = tokio::sync::watch::channel(false);
        let run = Arc::new(Run {
            message_id,
            tenant_id,
            session_id,
            state: Mutex::new(RunState::default()),
            changed: Notify::new(),
            cancel,
        });
        let mut runs = self.lock();
        let keep = self.keep;
        runs.retain(|_, r| r.lock().finished_at.is_none_or(|t| t.elapsed() < keep));
        runs.insert(message_id, run.clone());
        run
    }

    /// The run of this message, while it runs or is kept.
    #[must_use]
    pub fn find(&self, message_id: MessageId) -> Option<Arc<Run>> {
        let run = self.lock().get(&message_id).cloned()?;
        let keep = self.keep;
        let fresh = run.lock().finished_at.is_none_or(|t| t.elapsed() < keep);
        fresh.then_some(run)
    }

    /// A viewer of `run` from just after `after` (from the start when `None`).
    pub fn attach(self: &Arc<Self>, run: Arc<Run>, after: Option<Position>) -> Subscription {
        let next = {
            let mut s = run.lock();
            s.viewers += 1;
            after.map_or(0, |p| {
                s.events.iter().take_while(|e| e.position <= p).count()
            })
        };
        let skip_text = match after {
            Some(Position::Text(n)) => n,
            _ => 0,
        };
        Subscription::Live(Live {
            run,
            runs: self.clone(),
            next,
            skip_text,
        })
    }
}

/// A live viewer.
#[derive(Debug)]
pub struct Live {
    run: Arc<Run>,
    runs: Arc<Runs>,
    next: usize,
    /// Characters the viewer has from an event it resumes inside of.
    skip_text: u64,
}

/// A viewer of an answer stream: live, a follower of a run on another server, or a replay
/// of a stored answer.
#[derive(Debug)]
pub enum Subscription {
    /// Attached to a run of this process.
    Live(Live),
    /// Following the stored message of a run on another server.
    Follow(Follow),
    /// Events rebuilt from a stored message.
    Replay(VecDeque<Sequenced>),
}

impl Subscription {
    /// The next event, waiting for it; `None` after the last. Cancel-safe: an event is
    /// consumed only when it is returned.
    pub async fn next(&mut self) -> Option<Sequenced> {
        match self {
            Self::Replay(q) => q.pop_front(),
            Self::Live(live) => live.next().await,
            Self::Follow(follow) => follow.next().await,
        }
    }

    /// Cancels the run (a WebSocket `cancel` frame): at once for a run of this process,
    /// within a checkpoint (a second) for one on another server; nothing for a replay.
    pub fn cancel(&self) {
        match self {
            Self::Live(l) => l.run.cancel(),
            Self::Follow(f) => f.cancel(),
            Self::Replay(_) => {}
        }
    }

    /// The message the stream becomes.
    #[must_use]
    pub fn message_id(&self) -> Option<MessageId> {
        match self {
            Self::Live(l) => Some(l.run.message_id),
            Self::Follow(f) => Some(f.message_id),
            Self::Replay(q) => q
                .front()
                .and_then(|e| parse_event_id(&e.id))
                .map(|(m, _)| m),
        }
    }
}

impl Live {
    async fn next(&mut self) -> Option<Sequenced> {
        loop {
            let notified = self.run.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so no push between the look and the wait is missed.
            notified.as_mut().enable();
            {
                let s = self.run.lock();
                if let Some(e) = s.events.get(self.next) {
                    self.next += 1;
                    let mut e = e.clone();
                    if let (StreamEvent::Delta { text }, Position::Text(end)) =
                        (&mut e.event, e.position)
                    {
                        // Resumed inside this piece: send only the part the viewer lacks.
                        let len = text.chars().count() as u64;
                        let start = end - len;
                        if self.skip_text > start {
                            let cut = usize::try_from(self.skip_text - start).unwrap_or(usize::MAX);
                            *text = text.chars().skip(cut).collect();
                        }
                        if text.is_empty() {
                            continue;
                        }
                    }
                    return Some(e);
                }
                if s.finished_at.is_some() {
                    return None;
                }
            }
            notified.await;
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let epoch = {
            let mut s = self.run.lock();
            s.viewers = s.viewers.saturating_sub(1);
            if s.viewers > 0 || s.finished_at.is_some() {
                return;
            }
            s.epoch += 1;
            s.epoch
        };
        let run = self.run.clone();
        let grace = self.runs.grace;
        if grace.is_zero() {
            run.cancel();
            return;
        }
        let cache = self.runs.cache.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                loop {
                    tokio::time::sleep(grace).await;
                    let idle = {
                        let s = run.lock();
                        s.viewers == 0 && s.epoch == epoch && s.finished_at.is_none()
                    };
                    if !idle {
                        return;
                    }
                    if !watched_elsewhere(&*cache, &run).await {
                        tracing::info!(message = %run.message_id, "no viewer left: cancelling the answer");
                        run.cancel();
                        return;
                    }
                    // A viewer on another server follows it: look again after another grace.
                }
            });
        } else {
            run.cancel();
        }
    }
}

/// The cache key a viewer on another server keeps alive while it follows the run of
/// `message` (see the module docs).
#[must_use]
pub fn watch_key(tenant: kernel::TenantId, message: MessageId) -> CacheKey {
    CacheKey::tenant(tenant, "answer-watch", &[&message.to_string()])
}

/// The cache key a viewer on another server sets to cancel the run of `message`.
#[must_use]
pub fn cancel_key(tenant: kernel::TenantId, message: MessageId) -> CacheKey {
    CacheKey::tenant(tenant, "answer-cancel", &[&message.to_string()])
}

/// Whether a viewer on another server follows `run` now. A cache that fails counts as no
/// (the run is cancelled as when nobody watches).
async fn watched_elsewhere(cache: &dyn Cache, run: &Run) -> bool {
    match cache.get(&watch_key(run.tenant_id, run.message_id)).await {
        Ok(found) => found.is_some(),
        Err(e) => {
            tracing::warn!(error = ?e, message = %run.message_id, "the cache could not say whether another server follows the answer; cancelling it as unwatched");
            false
        }
    }
}

/// How often a [`Follow`] reads the stored message (and renews its watch key).
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// How long a follower's watch key lives without a renewal: several polls, so a slow read
/// of the database does not let it lapse, and short enough that a run whose remote viewer
/// left is cancelled soon after its grace.
pub const WATCH_TTL: Duration = Duration::from_secs(5);

/// How long a remote cancel waits for its run to read it (the run reads it every
/// checkpoint, a second).
const CANCEL_TTL: Duration = Duration::from_secs(30);

/// A viewer of a run on another server: it follows the run's stored message, whose text
/// arrives as the run checkpoints it (at most every second, so in pieces of up to a second
/// of tokens), and ends as a replay of the stored end once the message is `complete` or
/// `incomplete`. Meanwhile it keeps the run's watch key alive; if the message stops changing
/// for `idle_limit` (by then a stopped server's answer has been swept) it ends with
/// [`AnswerError::Stalled`].
#[derive(Debug)]
pub struct Follow {
    message_id: MessageId,
    tenant_id: kernel::TenantId,
    store: Arc<dyn ChatStore>,
    cache: Arc<dyn Cache>,
    /// Where the viewer is.
    after: Position,
    /// The stored message's length at the last read.
    stored_chars: Option<u64>,
    last_change: tokio::time::Instant,
    idle_limit: Duration,
    next_poll: tokio::time::Instant,
    /// The replayed end, once the message ended.
    ended: Option<VecDeque<Sequenced>>,
    /// Whether the last read (of the store, of the cache) failed: a failure is logged when
    /// it starts, not at every poll.
    store_failing: bool,
    cache_failing: bool,
}

impl Follow {
    /// A follower of `message_id` (of `tenant_id`, checked by the caller to be a streaming
    /// answer the viewer may see) from just after `after`.
    #[must_use]
    pub fn new(
        message_id: MessageId,
        tenant_id: kernel::TenantId,
        after: Position,
        store: Arc<dyn ChatStore>,
        cache: Arc<dyn Cache>,
        idle_limit: Duration,
    ) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            message_id,
            tenant_id,
            store,
            cache,
            after,
            stored_chars: None,
            last_change: now,
            idle_limit,
            next_poll: now,
            ended: None,
            store_failing: false,
            cache_failing: false,
        }
    }

    async fn next(&mut self) -> Option<Sequenced> {
        loop {
            if let Some(q) = self.ended.as_mut() {
                return q.pop_front();
            }
            // Nothing below changes what the viewer has before an event is returned, so a
            // caller may drop this future (a keep-alive timeout) and call again.
            tokio::time::sleep_until(self.next_poll).await;
            self.next_poll = tokio::time::Instant::now() + FOLLOW_POLL;
            self.renew_watch().await;
            let read = self
                .store
                .find_message(self.tenant_id, self.message_id)
                .await;
            if let Some(event) = self.on_read(read) {
                return Some(event);
            }
        }
    }

    /// Keeps the run's watch key alive (a failure is logged: the run then behaves as if
    /// nobody watched).
    async fn renew_watch(&mut self) {
        let key = watch_key(self.tenant_id, self.message_id);
        match self.cache.set(&key, b"1", WATCH_TTL).await {
            Ok(()) => {
                if std::mem::take(&mut self.cache_failing) {
                    tracing::info!(message = %self.message_id, "following an answer: the cache answers again");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.cache_failing, true) {
                    tracing::warn!(error = ?e, message = %self.message_id, "following an answer: its watch key could not be set; its server may cancel it as unwatched");
                }
            }
        }
    }

    /// What one read of the stored message gives the viewer: the text beyond what it has,
    /// or nothing yet; sets `ended` when the stream ends.
    fn on_read(
        &mut self,
        read: Result<Option<Message>, crate::ports::StoreError>,
    ) -> Option<Sequenced> {
        let now = tokio::time::Instant::now();
        match read {
            Err(e) => {
                if !std::mem::replace(&mut self.store_failing, true) {
                    tracing::warn!(error = ?e, message = %self.message_id, "following an answer: reading its message failed; trying again");
                }
            }
            // Its session was deleted, with its messages.
            Ok(None) => {
                self.end_with(AnswerError::SessionDeleted);
                return None;
            }
            Ok(Some(m)) => {
                if std::mem::take(&mut self.store_failing) {
                    tracing::info!(message = %self.message_id, "following an answer: its message can be read again");
                }
                let total = m.content.chars().count() as u64;
                if self.stored_chars != Some(total) {
                    self.stored_chars = Some(total);
                    self.last_change = now;
                }
                if let Some(q) = replay_stored(&m, Some(self.after)) {
                    self.ended = Some(q);
                    return None;
                }
                if let Position::Text(has) = self.after
                    && total > has
                {
                    let text = m
                        .content
                        .chars()
                        .skip(usize::try_from(has).unwrap_or(usize::MAX))
                        .collect();
                    self.after = Position::Text(total);
                    return Some(Sequenced {
                        id: event_id(self.message_id, self.after),
                        position: self.after,
                        event: StreamEvent::Delta { text },
                    });
                }
            }
        }
        if now.duration_since(self.last_change) >= self.idle_limit {
            tracing::warn!(message = %self.message_id, idle = ?self.idle_limit, "a followed answer stopped changing; its viewer stops waiting");
            self.end_with(AnswerError::Stalled);
        }
        None
    }

    fn end_with(&mut self, error: AnswerError) {
        self.ended = Some(VecDeque::from([Sequenced {
            id: event_id(self.message_id, Position::End),
            position: Position::End,
            event: StreamEvent::Error(error),
        }]));
    }

    /// Asks the run's server to cancel it (it reads the key within a checkpoint); a cache
    /// that fails is logged and the run goes on.
    fn cancel(&self) {
        let cache = self.cache.clone();
        let (key, message) = (cancel_key(self.tenant_id, self.message_id), self.message_id);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            match cache.set(&key, b"1", CANCEL_TTL).await {
                Ok(()) => tracing::info!(%message, "cancel of an answer running on another server asked"),
                Err(e) => tracing::warn!(error = ?e, %message, "the cancel of an answer running on another server could not be passed on; it goes on"),
            }
        });
    }
}

/// The events after `after` of a stored answer that ended (`complete`: its citations and
/// `done`; `incomplete`: its citations and the error [`AnswerError::Incomplete`]); `None`
/// while it is still `streaming`.
#[must_use]
pub fn replay_stored(message: &Message, after: Option<Position>) -> Option<VecDeque<Sequenced>> {
    let ending = match message.status {
        MessageStatus::Complete => StreamEvent::Done {
            message_id: message.id,
            usage: message.usage.unwrap_or_default(),
        },
        MessageStatus::Incomplete => StreamEvent::Error(AnswerError::Incomplete),
        MessageStatus::Streaming => return None,
    };
    Some(replay_events(
        message.id,
        &message.content,
        message.citations.clone(),
        ending,
        after,
    ))
}

/// Rebuilds the events after `after` from a stored answer (see the module docs).
fn replay_events(
    message_id: MessageId,
    content: &str,
    citations: Vec<Citation>,
    ending: StreamEvent,
    after: Option<Position>,
) -> VecDeque<Sequenced> {
    let mut q = VecDeque::new();
    let total = content.chars().count() as u64;
    let from = match after {
        None => 0,
        Some(Position::Text(n)) => n.min(total),
        Some(_) => total,
    };
    if from < total {
        let rest: String = content
            .chars()
            .skip(usize::try_from(from).unwrap_or(usize::MAX))
            .collect();
        q.push_back(Sequenced {
            id: event_id(message_id, Position::Text(total)),
            position: Position::Text(total),
            event: StreamEvent::Delta { text: rest },
        });
    }
    if after.is_none_or(|p| p < Position::Citations) {
        q.push_back(Sequenced {
            id: event_id(message_id, Position::Citations),
            position: Position::Citations,
            event: StreamEvent::Citations { citations },
        });
    }
    if after.is_none_or(|p| p < Position::End) {
        q.push_back(Sequenced {
            id: event_id(message_id, Position::End),
            position: Position::End,
            event: ending,
        });
    }
    q
}

#[cfg(test)]
mod tests {
    use kernel::cache::{Bounded, CacheError, Counter};

    use super::*;
    use crate::model::ChatSessionId;

    /// Plain values only (what the runs use), without expiry; `down` fails every read.
    #[derive(Debug, Default)]
    struct Values {
        map: Mutex<HashMap<String, Vec<u8>>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl Values {
        fn map(&self) -> MutexGuard<'_, HashMap<String, Vec<u8>>> {
            self.map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    fn unused() -> CacheError {
        CacheError::Unavailable(anyhow::anyhow!("not used by the runs"))
    }

    #[async_trait::async_trait]
    impl Cache for Values {
        async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(CacheError::Unavailable(anyhow::anyhow!("down")));
            }
            Ok(self.map().get(key.as_str()).cloned())
        }
        async fn purge_tenant(&self, _: kernel::TenantId) -> Result<u64, CacheError> {
            Err(unused())
        }
        async fn set(&self, key: &CacheKey, value: &[u8], _: Duration) -> Result<(), CacheError> {
            self.map().insert(key.as_str().to_owned(), value.to_vec());
            Ok(())
        }
        async fn set_if_absent(
            &self,
            _: &CacheKey,
            _: &[u8],
            _: Duration,
        ) -> Result<bool, CacheError> {
            Err(unused())
        }
        async fn take(&self, _: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
            Err(unused())
        }
        async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
            Ok(self.map().remove(key.as_str()).is_some())
        }
        async fn increment(
            &self,
            _: &CacheKey,
            _: i64,
            _: Duration,
        ) -> Result<Counter, CacheError> {
            Err(unused())
        }
        async fn increment_within(
            &self,
            _: &CacheKey,
            _: i64,
            _: i64,
        ) -> Result<Bounded, CacheError> {
            Err(unused())
        }
        async fn lease_within(
            &self,
            _: &CacheKey,
            _: &str,
            _: i64,
            _: i64,
            _: Duration,
        ) -> Result<Bounded, CacheError> {
            Err(unused())
        }
        async fn end_lease(&self, _: &CacheKey, _: &str, _: i64) -> Result<bool, CacheError> {
            Err(unused())
        }
        async fn ping(&self) -> Result<(), CacheError> {
            Ok(())
        }
    }

    fn runs(grace: Duration) -> (Arc<Runs>, Arc<Values>) {
        let cache = Arc::new(Values::default());
        let runs = Arc::new(Runs::new(grace, Duration::from_secs(60), cache.clone()));
        (runs, cache)
    }

    fn delta(t: &str) -> StreamEvent {
        StreamEvent::Delta { text: t.into() }
    }

    #[tokio::test]
    async fn viewers_see_everything_and_resume_mid_piece() {
        let (runs, _) = runs(Duration::ZERO);
        let run = runs.start(
            MessageId::new(),
            kernel::TenantId::new(),
            ChatSessionId::new(),
        );
        let mut a = runs.attach(run.clone(), None);
        run.push(delta("Hello "));
        run.push(delta("world"));
        let first = a.next().await;
        assert_eq!(first.as_ref().map(|e| e.position), Some(Position::Text(6)));
        // A second viewer resuming after 3 chars gets "lo " then "world".
        let mut b = runs.attach(run.clone(), Some(Position::Text(3)));
        run.push(StreamEvent::Done {
            message_id: run.message_id,
            usage: Usage::default(),
        });
        let mut got = String::new();
        while let Some(e) = b.next().await {
            if let StreamEvent::Delta { text } = e.event {
                got.push_str(&text);
            }
        }
        assert_eq!(got, "lo world");
        assert_eq!(a.next().await.map(|e| e.event.name()), Some("delta"));
        assert_eq!(a.next().await.map(|e| e.event.name()), Some("done"));
        assert!(a.next().await.is_none());
    }

    #[tokio::test]
    async fn last_viewer_leaving_cancels_unless_another_is_attached() {
        let (runs, _) = runs(Duration::ZERO);
        let run = runs.start(
            MessageId::new(),
            kernel::TenantId::new(),
            ChatSessionId::new(),
        );
        let a = runs.attach(run.clone(), None);
        let b = runs.attach(run.clone(), None);
        drop(a);
        assert!(!*run.cancel.borrow());
        drop(b);
        assert!(*run.cancel.borrow());
        // `cancelled` resolves once cancelled.
        run.cancelled().await;
    }

    #[tokio::test]
    async fn a_viewer_on_another_server_holds_off_the_no_viewer_cancel() {
        let grace = Duration::from_millis(50);
        let (runs, cache) = runs(grace);
        let run = runs.start(
            MessageId::new(),
            kernel::TenantId::new(),
            ChatSessionId::new(),
        );
        let watch = watch_key(run.tenant_id, run.message_id);
        cache.set(&watch, b"1", WATCH_TTL).await.expect("set");
        drop(runs.attach(run.clone(), None));
        // Several graces pass: the remote watch keeps it going.
        tokio::time::sleep(grace * 5).await;
        assert!(!*run.cancel.borrow(), "cancelled while watched elsewhere");
        // The remote viewer left (its key lapsed): cancelled within another grace.
        cache.delete(&watch).await.expect("delete");
        tokio::time::sleep(grace * 3).await;
        assert!(*run.cancel.borrow(), "not cancelled once nobody watches");
        // A watch key of another tenant's message of the same id changes nothing.
        let other = runs.start(
            MessageId::new(),
            kernel::TenantId::new(),
            ChatSessionId::new(),
        );
        let forged = watch_key(kernel::TenantId::new(), other.message_id);
        cache.set(&forged, b"1", WATCH_TTL).await.expect("set");
        drop(runs.attach(other.clone(), None));
        tokio::time::sleep(grace * 3).await;
        assert!(*other.cancel.borrow());
        // A cache that fails: the run is cancelled as unwatched, as without the cache.
        let third = runs.start(
            MessageId::new(),
            kernel::TenantId::new(),
            ChatSessionId::new(),
        );
        let watch = watch_key(third.tenant_id, third.message_id);
        cache.set(&watch, b"1", WATCH_TTL).await.expect("set");
        cache.down.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(runs.attach(third.clone(), None));
        tokio::time::sleep(grace * 3).await;
        assert!(*third.cancel.borrow());
    }

    #[test]
    fn event_ids_round_trip_and_replay_skips_what_was_seen() {
        let m = MessageId::new();
        let id = event_id(m, Position::Text(42));
        assert_eq!(parse_event_id(&id), Some((m, Position::Text(42))));
        assert_eq!(parse_event_id("nonsense"), None);
        let ending = StreamEvent::Done {
            message_id: m,
            usage: Usage::default(),
        };
        let q = replay_events(m, "abcdef", vec![], ending, Some(Position::Text(4)));
        let names: Vec<_> = q.iter().map(|e| e.event.name()).collect();
        assert_eq!(names, ["delta", "citations", "done"]);
        assert_eq!(q[0].event, StreamEvent::Delta { text: "ef".into() });
    }
}
