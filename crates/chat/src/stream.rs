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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::model::{Citation, MessageId, Usage};
use crate::ports::ModelError;

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
}

impl Runs {
    /// No runs yet.
    #[must_use]
    pub fn new(grace: Duration, keep: Duration) -> Self {
        Self {
            runs: Mutex::new(HashMap::new()),
            grace,
            keep,
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

/// A viewer of an answer stream: live, or a replay of a stored answer.
#[derive(Debug)]
pub enum Subscription {
    /// Attached to a run of this process.
    Live(Live),
    /// Events rebuilt from a stored message.
    Replay(std::collections::VecDeque<Sequenced>),
}

impl Subscription {
    /// The next event, waiting for it; `None` after the last.
    pub async fn next(&mut self) -> Option<Sequenced> {
        match self {
            Self::Replay(q) => q.pop_front(),
            Self::Live(live) => live.next().await,
        }
    }

    /// Cancels the run (a WebSocket `cancel` frame); nothing for a replay.
    pub fn cancel(&self) {
        if let Self::Live(l) = self {
            l.run.cancel();
        }
    }

    /// The message the stream becomes.
    #[must_use]
    pub fn message_id(&self) -> Option<MessageId> {
        match self {
            Self::Live(l) => Some(l.run.message_id),
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
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                tokio::time::sleep(grace).await;
                let idle = {
                    let s = run.lock();
                    s.viewers == 0 && s.epoch == epoch && s.finished_at.is_none()
                };
                if idle {
                    tracing::info!(message = %run.message_id, "no viewer left: cancelling the answer");
                    run.cancel();
                }
            });
        } else {
            run.cancel();
        }
    }
}

/// Rebuilds the events after `after` from a stored answer (see the module docs).
#[must_use]
pub fn replay(
    message_id: MessageId,
    content: &str,
    citations: Vec<Citation>,
    ending: StreamEvent,
    after: Option<Position>,
) -> Subscription {
    let mut q = std::collections::VecDeque::new();
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
    Subscription::Replay(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChatSessionId;

    fn delta(t: &str) -> StreamEvent {
        StreamEvent::Delta { text: t.into() }
    }

    #[tokio::test]
    async fn viewers_see_everything_and_resume_mid_piece() {
        let runs = Arc::new(Runs::new(Duration::ZERO, Duration::from_secs(60)));
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
        let runs = Arc::new(Runs::new(Duration::ZERO, Duration::from_secs(60)));
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
        let Subscription::Replay(q) = replay(m, "abcdef", vec![], ending, Some(Position::Text(4)))
        else {
            panic!("a replay");
        };
        let names: Vec<_> = q.iter().map(|e| e.event.name()).collect();
        assert_eq!(names, ["delta", "citations", "done"]);
        assert_eq!(q[0].event, StreamEvent::Delta { text: "ef".into() });
    }
}
