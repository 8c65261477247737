//! Questions answered in a session: the answer runs on its own task (a [`Driver`] over a
//! [`ModelCall`]), viewed through [`crate::stream`], and resumed.
//!
//! An answer is durable as it goes: its message is stored when it starts (`streaming`, with
//! the run's lease and the reservation it settles), its text and usage so far are written at
//! most every [`CHECKPOINT_EVERY`] (renewing the lease), and its end is written over it,
//! retried with backoff for `store_retry_for` while storage fails. A message left streaming
//! by a server that stopped is ended by [`Chat::sweep_abandoned`] (any server, at start-up
//! and periodically) as `incomplete`, billed for its checkpoint. So an answer whose first
//! token reached a client is stored, complete or incomplete, and billed for what was
//! produced (up to the last checkpoint when its server died).

use std::sync::Arc;
use std::time::{Duration, Instant};

use documents::CollectionId;
use kernel::cache::Cache;
use kernel::retry::Backoff;
use kernel::{Clock, InvalidInput, TenantContext};

use super::{Chat, ChatError};
use crate::call::{Answer, CallEvent, ModelCall};
use crate::metered::{self, Held};
use crate::model::{
    ChatRequest, ChatSessionId, Locale, Message, MessageId, MessageRole, MessageStatus, Session,
    Source, Task, validate_content,
};
use crate::ports::{ChatModel, ChatStore, KnowledgeError, ModelError, ModelStream};
use crate::prompt::{self, PromptInput};
use crate::stream::{self, AnswerError, Run, StreamEvent, Subscription};

impl Chat {
    /// Asks a question in a session: retrieves, builds the prompt, stores the question with
    /// the answer's start (one write, while the model's request is already on its way) and
    /// starts the answer, returning its first viewer. The answer is stored when it ends.
    ///
    /// Metered: a stream slot of the organization is taken first, and the prompt's tokens
    /// plus the answer's maximum are reserved before the question is stored; the answer
    /// settles them to what it used, and gives the slot back, when it ends.
    ///
    /// # Errors
    /// Invalid content; [`ChatError::NotFound`]; a model no longer allowed;
    /// [`ChatError::Metering`] (too many answers streaming, the token quota used up); the
    /// embedding provider down (before anything is stored).
    pub async fn send(
        &self,
        ctx: &TenantContext,
        session_id: ChatSessionId,
        content: &str,
        locale: Option<Locale>,
    ) -> Result<Subscription, ChatError> {
        validate_content(content)?;
        let tenant = ctx.tenant_id();
        // The whitelist and the stream slot are taken beside the session (none depends on
        // another); a slot taken for a question refused here is given back at once.
        let reads = async {
            let (session, allowed) = futures_util::future::join(
                self.session(ctx, session_id),
                self.allowed_models(tenant),
            )
            .await;
            Ok::<_, ChatError>((session?, allowed?))
        };
        let (mut held, (session, allowed)) =
            Held::slot_beside(self.ports.meter.clone(), tenant, reads).await?;
        let prepared = match self
            .prepare_answer(ctx, &session, allowed, content, locale, &mut held)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                held.release().await;
                return Err(e);
            }
        };
        let started_at = self.ports.clock.now();
        let streaming = Message {
            id: prepared.message_id,
            tenant_id: tenant,
            session_id,
            role: MessageRole::Assistant,
            content: String::new(),
            citations: Vec::new(),
            usage: None,
            status: MessageStatus::Streaming,
            model: Some(prepared.model_name.clone()),
            error: None,
            created_at: started_at,
        };
        let lease_until = started_at + self.settings.answer_lease;
        let sources = prepared.request.sources.len();
        let mut call = ModelCall::new(
            prepared.model,
            prepared.request,
            prepared.prompt_tokens,
            held,
        );
        // The provider is asked while the question is stored (its first token, which takes
        // longer than the write, is shown only once both are stored); when the write fails
        // the request is dropped and the reservation released: the organization is billed
        // nothing for an answer nobody saw (docs/billing.md, "Answers").
        let opening = call.opening().map(|o| OpeningTask(tokio::spawn(o)));
        let begun = self
            .ports
            .store
            .start_answer(
                Some(&prepared.question),
                &streaming,
                call.reservation(),
                lease_until,
            )
            .await;
        if !matches!(begun, Ok(true)) {
            drop(opening);
            call.abandon().await;
            return Err(begun.map_or_else(Into::into, |_| ChatError::NotFound));
        }
        let run = self.runs.start(prepared.message_id, tenant, session_id);
        let viewer = self.runs.attach(run.clone(), None);
        tracing::info!(
            session = %session_id,
            message = %run.message_id,
            model = %prepared.model_name,
            sources,
            history = prepared.history_kept,
            prompt_tokens = prepared.prompt_tokens,
            "answer started"
        );
        let driver = Driver {
            run,
            call,
            opening,
            store: self.ports.store.clone(),
            cache: self.ports.cache.clone(),
            clock: self.ports.clock.clone(),
            model_name: prepared.model_name,
            started_at,
            lease: self.settings.answer_lease,
            store_retry_for: self.settings.store_retry_for,
            events: self.events.clone(),
            trail: self.trail.clone(),
            // Made here, in the request (its id is a task-local of the request's task); the
            // documents and the time are filled in when the answer ends.
            cited: kernel::AuditEvent::access(
                started_at,
                ctx,
                kernel::audit::ANSWER_CITED,
                [],
                Some(content),
            ),
        };
        tokio::spawn(driver.drive());
        Ok(viewer)
    }

    /// Everything before an answer starts: retrieval, the prompt, the reservation (put in
    /// `held`) and the question (stored with the answer's start, in one write).
    async fn prepare_answer(
        &self,
        ctx: &TenantContext,
        session: &Session,
        allowed: Vec<String>,
        content: &str,
        locale: Option<Locale>,
        held: &mut Held,
    ) -> Result<PreparedAnswer, ChatError> {
        let tenant = ctx.tenant_id();
        let session_id = session.id;
        let assistant = match session.assistant_id {
            Some(a) => self.ports.store.find_assistant(tenant, a).await?,
            None => None,
        };
        let requested = session
            .model
            .clone()
            .or_else(|| assistant.as_ref().and_then(|a| a.model.clone()));
        let (model_name, model) = self.choose_model(allowed, requested.as_deref())?;
        if let Some(wait) = model.refusing() {
            return Err(ChatError::ProviderDown(wait));
        }
        let collections = if !session.collection_ids.is_empty() {
            Some(session.collection_ids.clone())
        } else {
            assistant
                .as_ref()
                .map(|a| a.collection_ids.clone())
                .filter(|c| !c.is_empty())
        };
        // Retrieval and the history read do not wait for each other.
        let (sources, history) = futures_util::future::join(
            self.search(ctx, content, collections, self.settings.top_k),
            self.ports
                .store
                .recent_messages(tenant, session_id, self.settings.history_messages),
        )
        .await;
        let (sources, history) = (sources?, history?);
        let locale = locale.unwrap_or_else(|| Locale::detect(content));
        let prompt = prompt::for_model(
            &*model,
            &model_name,
            self.settings.max_answer_tokens,
            PromptInput {
                locale,
                instructions: assistant.as_ref().map(|a| a.instructions.as_str()),
                system_prompt: session.system_prompt.as_deref(),
                history: &history,
                question: content,
                sources,
            },
        );
        // The question's id first: messages list by id (UUIDv7), the answer after its question.
        let question_id = MessageId::new();
        let message_id = MessageId::new();
        let reservation = self
            .reserve_chat(
                ctx,
                &model_name,
                format!("message:{message_id}"),
                prompt.tokens,
                self.settings.max_answer_tokens,
            )
            .await?;
        held.hold(reservation);
        let now = self.ports.clock.now();
        let question = Message {
            id: question_id,
            tenant_id: tenant,
            session_id,
            role: MessageRole::User,
            content: content.to_owned(),
            citations: Vec::new(),
            usage: None,
            status: MessageStatus::Complete,
            model: None,
            error: None,
            created_at: now,
        };
        let request = ChatRequest {
            model: model_name.clone(),
            messages: prompt.messages,
            temperature: assistant.as_ref().and_then(|a| a.temperature),
            max_tokens: Some(self.settings.max_answer_tokens),
            task: Task::Answer {
                question: content.to_owned(),
            },
            sources: prompt.sources,
        };
        Ok(PreparedAnswer {
            question,
            message_id,
            model,
            model_name,
            request,
            prompt_tokens: prompt.tokens,
            history_kept: prompt.history_kept,
        })
    }

    /// Asks and waits for the whole answer (the non-streamed route).
    ///
    /// # Errors
    /// As [`Chat::send`]; the model's failure.
    pub async fn answer(
        &self,
        ctx: &TenantContext,
        session_id: ChatSessionId,
        content: &str,
        locale: Option<Locale>,
    ) -> Result<Message, ChatError> {
        let mut viewer = self.send(ctx, session_id, content, locale).await?;
        while let Some(e) = viewer.next().await {
            match e.event {
                StreamEvent::Done { message_id, .. } => {
                    return self
                        .ports
                        .store
                        .find_message(ctx.tenant_id(), message_id)
                        .await?
                        .ok_or(ChatError::NotFound);
                }
                StreamEvent::Error(e) => return Err(e.into()),
                StreamEvent::Delta { .. } | StreamEvent::Citations { .. } => {}
            }
        }
        Err(ChatError::Unknown(anyhow::anyhow!(
            "the answer ended without an end event"
        )))
    }

    /// Resumes a stream after `last_event_id`: live when this process runs (or just ran) it,
    /// followed through its stored message while it runs on another server (see
    /// [`stream::Follow`]), else replayed from the stored message.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] for an id that is not one of ours; [`ChatError::NotFound`] when
    /// the message is not an answer of this session of the caller.
    pub async fn resume(
        &self,
        ctx: &TenantContext,
        session_id: ChatSessionId,
        last_event_id: &str,
    ) -> Result<Subscription, ChatError> {
        self.session(ctx, session_id).await?;
        let (message_id, position) = stream::parse_event_id(last_event_id).ok_or_else(|| {
            InvalidInput::field("Last-Event-ID", "is not an event id of this stream")
        })?;
        if let Some(run) = self.runs.find(message_id)
            && run.tenant_id == ctx.tenant_id()
            && run.session_id == session_id
        {
            return Ok(self.runs.attach(run, Some(position)));
        }
        let stored = self
            .ports
            .store
            .find_message(ctx.tenant_id(), message_id)
            .await?
            .filter(|m| m.session_id == session_id && m.role == MessageRole::Assistant)
            .ok_or(ChatError::NotFound)?;
        if let Some(events) = stream::replay_stored(&stored, Some(position)) {
            return Ok(Subscription::Replay(events));
        }
        // Streaming, written by a run on another server: followed. Its viewer stops waiting
        // once the message has not changed for longer than a stopped server's answer takes
        // to be swept after its last checkpoint (its lease, the sweeper's grace and a sweep
        // period, a third of the lease), with room for a slow sweep.
        let s = &self.settings;
        let idle_limit = s.answer_lease * 2 + s.sweep_grace;
        tracing::info!(message = %message_id, session = %session_id, "following an answer running on another server");
        Ok(Subscription::Follow(stream::Follow::new(
            message_id,
            ctx.tenant_id(),
            position,
            self.ports.store.clone(),
            self.ports.cache.clone(),
            idle_limit,
        )))
    }

    /// Retrieval for a question; a session's collection deleted since is skipped rather than
    /// failing every later question.
    pub(crate) async fn search(
        &self,
        ctx: &TenantContext,
        question: &str,
        collections: Option<Vec<CollectionId>>,
        top_k: usize,
    ) -> Result<Vec<Source>, ChatError> {
        let knowledge = &self.ports.knowledge;
        match knowledge
            .search(ctx, question, collections.as_deref(), top_k)
            .await
        {
            Err(KnowledgeError::NotFound) if collections.is_some() => {
                let mut live = Vec::new();
                for c in collections.unwrap_or_default() {
                    if knowledge.check_collections(ctx, &[c]).await.is_ok() {
                        live.push(c);
                    }
                }
                if live.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(knowledge.search(ctx, question, Some(&live), top_k).await?)
            }
            other => Ok(other?),
        }
    }
}

/// An answer ready to start: its tokens reserved, its question to store with it.
struct PreparedAnswer {
    question: Message,
    message_id: MessageId,
    model: Arc<dyn ChatModel>,
    model_name: String,
    request: ChatRequest,
    prompt_tokens: u32,
    history_kept: usize,
}

/// How often, at most, a streaming answer's text and usage so far are written to its
/// message (each write renews the run's lease); between two writes the tokens produced are
/// only in memory, so a server killed mid-answer loses at most this much of it.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The first pause before an answer's end is written again; it doubles up to
/// [`STORE_RETRY_MAX_PAUSE`].
const STORE_RETRY_PAUSE: Duration = Duration::from_millis(100);
const STORE_RETRY_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Drives one answer: reads its model call, feeds the run, checkpoints the message while it
/// streams (and, as often, looks for a cancel asked by a viewer on another server) and stores
/// its end (the call settles the answer's tokens and gives its stream slot back before it
/// ends).
struct Driver {
    run: Arc<Run>,
    call: ModelCall,
    /// The call's request, sent while the question was stored.
    opening: Option<OpeningTask>,
    store: Arc<dyn ChatStore>,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    model_name: String,
    started_at: time::OffsetDateTime,
    lease: Duration,
    store_retry_for: Duration,
    events: Arc<dyn kernel::Events>,
    trail: Arc<dyn kernel::AccessTrail>,
    /// The access-trail event of the answer's citations, but its documents and time.
    cited: kernel::AuditEvent,
}

/// A model call's request on a task of its own ([`ModelCall::opening`]), stopped when dropped
/// (the question's write failed, the answer was cancelled first, the request went away).
struct OpeningTask(tokio::task::JoinHandle<Result<ModelStream, ModelError>>);

impl Drop for OpeningTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The checkpoint being written, and what the last one wrote; the look for a remote cancel
/// under way.
#[derive(Default)]
struct Checkpoints {
    writing: Option<tokio::task::JoinHandle<()>>,
    cancel_check: Option<tokio::task::JoinHandle<()>>,
    /// Bytes of text the last checkpoint started with.
    written: usize,
    last: Option<Instant>,
}

impl Driver {
    async fn drive(mut self) {
        let run = self.run.clone();
        let started = match self.opening.take() {
            Some(mut opening) => tokio::select! {
                biased;
                // Dropped: the request with it.
                () = run.cancelled() => false,
                opened = &mut opening.0 => self.call.opened(opened.unwrap_or_else(|e| {
                    Err(ModelError::Unknown(anyhow::anyhow!("the model call's task ended: {e}")))
                })),
            },
            None => tokio::select! {
                biased;
                () = run.cancelled() => false,
                started = self.call.start() => started,
            },
        };
        if !started {
            // Cancelled before the first token (nothing when the start failed: its failure
            // is the call's end already).
            self.call.stop(AnswerError::Cancelled);
        }
        let mut stopped = !started;
        let mut end = None;
        let mut checkpoints = Checkpoints::default();
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                biased;
                () = run.cancelled(), if !stopped => {
                    // The model's stream is dropped, the upstream request with it.
                    self.call.stop(AnswerError::Cancelled);
                    stopped = true;
                    continue;
                }
                _ = tick.tick(), if !stopped => {
                    self.checkpoint(&mut checkpoints);
                    self.check_remote_cancel(&mut checkpoints);
                    continue;
                }
                event = self.call.next() => event,
            };
            match event {
                Some(CallEvent::Delta(text)) => run.push(StreamEvent::Delta { text }),
                Some(CallEvent::Finished(answer)) => {
                    end = Some((answer, None));
                    break;
                }
                Some(CallEvent::Failed(f)) => {
                    end = Some((f.partial, Some(f.error)));
                    break;
                }
                None => break,
            }
        }
        if let Some(writing) = checkpoints.writing.take() {
            // Checkpoints only touch a streaming message: one landing late changes nothing.
            writing.abort();
        }
        if let Some(check) = checkpoints.cancel_check.take() {
            check.abort();
        }
        let (answer, failure) =
            end.unwrap_or_else(|| (Answer::default(), Some(AnswerError::ModelFailed)));
        self.finish(answer, failure).await;
    }

    /// Writes the text and usage so far (and renews the lease) in the background, when the
    /// text grew or the lease is a third gone; one write at a time.
    fn checkpoint(&self, checkpoints: &mut Checkpoints) {
        if checkpoints
            .writing
            .as_ref()
            .is_some_and(|w| !w.is_finished())
        {
            return;
        }
        let (text, usage) = self.call.progress();
        let stale = checkpoints
            .last
            .is_none_or(|t| t.elapsed() >= self.lease / 3);
        if text.len() == checkpoints.written && !stale {
            return;
        }
        checkpoints.written = text.len();
        checkpoints.last = Some(Instant::now());
        let store = self.store.clone();
        let content = text.to_owned();
        let (tenant, id) = (self.run.tenant_id, self.run.message_id);
        let lease_until = self.clock.now() + self.lease;
        checkpoints.writing = Some(tokio::spawn(async move {
            match store
                .checkpoint_answer(tenant, id, &content, usage, lease_until)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(message = %id, "a checkpoint found its answer no longer streaming");
                }
                Err(e) => {
                    tracing::warn!(error = ?e, message = %id, "checkpointing an answer failed");
                }
            }
        }));
    }

    /// Looks, in the background, for a cancel asked by a viewer following the answer from
    /// another server ([`stream::cancel_key`]), and cancels the run when there is one; one
    /// look at a time. A cache that fails is logged and the answer goes on.
    fn check_remote_cancel(&self, checkpoints: &mut Checkpoints) {
        if checkpoints
            .cancel_check
            .as_ref()
            .is_some_and(|c| !c.is_finished())
        {
            return;
        }
        let run = self.run.clone();
        let cache = self.cache.clone();
        checkpoints.cancel_check = Some(tokio::spawn(async move {
            let key = stream::cancel_key(run.tenant_id, run.message_id);
            match cache.get(&key).await {
                Ok(Some(_)) => {
                    tracing::info!(message = %run.message_id, "a viewer on another server cancelled the answer");
                    run.cancel();
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = ?e, message = %run.message_id, "looking for a remote cancel of an answer failed; it goes on");
                }
            }
        }));
    }

    /// Stores the answer's end (retried while storage fails, for `store_retry_for`) and
    /// ends the run with it.
    async fn finish(self, answer: Answer, mut failure: Option<AnswerError>) {
        let Self {
            run,
            call,
            store,
            model_name,
            started_at,
            store_retry_for,
            events,
            trail,
            mut cited,
            clock,
            ..
        } = self;
        drop(call);
        let usage = answer.usage;
        let message = Message {
            id: run.message_id,
            tenant_id: run.tenant_id,
            session_id: run.session_id,
            role: MessageRole::Assistant,
            content: answer.text,
            citations: answer.citations.clone(),
            usage: Some(usage),
            status: if failure.is_none() {
                MessageStatus::Complete
            } else {
                MessageStatus::Incomplete
            },
            model: Some(model_name),
            error: failure.as_ref().map(ToString::to_string),
            created_at: started_at,
        };
        let stored = store_end(&*store, &message, store_retry_for).await;
        if matches!(stored, Ok(true)) {
            // The trail records what the asker received: the documents the stored answer cites.
            cited.at = clock.now();
            if let Some(a) = cited.access.as_mut() {
                let mut seen = std::collections::HashSet::new();
                a.documents = message
                    .citations
                    .iter()
                    .map(|c| c.document_id.as_uuid())
                    .filter(|d| seen.insert(*d))
                    .take(kernel::audit::MAX_DOCUMENTS)
                    .collect();
            }
            trail.record(cited);
        }
        match stored {
            Ok(true) => events.publish(kernel::Event {
                tenant: run.tenant_id,
                kind: kernel::EventKind::AnswerCompleted,
                // Ids, status and counts only: never the question or the answer.
                data: serde_json::json!({
                    "session_id": run.session_id.to_string(),
                    "message_id": run.message_id.to_string(),
                    "status": message.status.as_str(),
                    "model": message.model,
                    "error": message.error,
                    "usage": {
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                    },
                }),
            }),
            Ok(false) => {
                failure.get_or_insert(AnswerError::SessionDeleted);
            }
            Err(e) => {
                tracing::error!(
                    error = ?e,
                    message = %run.message_id,
                    tenant = %run.tenant_id,
                    session = %run.session_id,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    retried_for = ?store_retry_for,
                    "an answer could not be stored; what its last checkpoint holds is ended by the sweeper"
                );
                failure = Some(AnswerError::NotStored);
            }
        }
        run.push(StreamEvent::Citations {
            citations: answer.citations,
        });
        match failure {
            None => {
                tracing::info!(
                    message = %run.message_id,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    truncated = answer.truncated,
                    "answer stored"
                );
                run.push(StreamEvent::Done {
                    message_id: run.message_id,
                    usage,
                });
            }
            Some(e) => {
                tracing::warn!(message = %run.message_id, error = ?e, "answer ended early");
                run.push(StreamEvent::Error(e));
            }
        }
    }
}

/// Writes an answer's end, trying again with a doubling pause while storage fails, for at
/// most `retry_for`.
async fn store_end(
    store: &dyn ChatStore,
    message: &Message,
    retry_for: Duration,
) -> Result<bool, crate::ports::StoreError> {
    let mut backoff = Backoff::new(retry_for, STORE_RETRY_PAUSE, STORE_RETRY_MAX_PAUSE);
    loop {
        match store.finish_answer(message).await {
            Ok(stored) => {
                if backoff.tries() > 1 {
                    tracing::info!(message = %message.id, tries = backoff.tries(), "an answer was stored after storage came back");
                }
                return Ok(stored);
            }
            Err(e) => {
                let Some(pause) = backoff.next_pause() else {
                    return Err(e);
                };
                tracing::warn!(error = ?e, message = %message.id, tries = backoff.tries() - 1, "storing an answer failed; trying again");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The error an answer left streaming by a stopped server is ended with.
const ABANDONED: &str = "the server writing this answer stopped; what was produced is stored";

/// Answers one sweep ends at most.
const SWEEP_BATCH: usize = 100;

impl Chat {
    /// Ends the answers left `streaming` by a server that stopped (their run's lease ran
    /// out without a checkpoint, more than `sweep_grace` ago): each becomes `incomplete` with its last checkpoint, and its
    /// reservation is settled with the checkpoint's usage. Any server may sweep; of several,
    /// one ends each answer. Returns how many it ended.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sweep_abandoned(&self) -> Result<usize, ChatError> {
        // Leases that ran out longer ago than a live run may spend retrying.
        let before = self.ports.clock.now() - self.settings.sweep_grace;
        let mut ended = 0;
        for abandoned in self
            .ports
            .store
            .abandoned_answers(before, SWEEP_BATCH)
            .await?
        {
            let m = &abandoned.message;
            if self.runs.find(m.id).is_some_and(|r| !r.finished()) {
                // Running here: its own end is on its way.
                continue;
            }
            if !self
                .ports
                .store
                .close_abandoned(m.tenant_id, m.id, before, ABANDONED)
                .await?
            {
                continue;
            }
            let usage = m.usage.unwrap_or_default();
            if let Some(reservation) = abandoned.reservation {
                self.ports
                    .meter
                    .settle(reservation, metered::tokens(usage))
                    .await;
            }
            tracing::warn!(
                message = %m.id,
                tenant = %m.tenant_id,
                session = %m.session_id,
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                "an answer left streaming by a stopped server was ended as incomplete and billed for its checkpoint"
            );
            ended += 1;
        }
        Ok(ended)
    }
}
