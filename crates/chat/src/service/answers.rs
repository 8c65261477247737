//! Questions answered in a session: the answer runs on its own task (a [`Driver`] over a
//! [`ModelCall`]), viewed through [`crate::stream`], stored when it ends, and resumed.

use std::sync::Arc;

use documents::CollectionId;
use kernel::{Clock, InvalidInput, TenantContext};

use super::{Chat, ChatError};
use crate::call::{Answer, CallEvent, ModelCall};
use crate::metered::Held;
use crate::model::{
    ChatRequest, ChatSessionId, Locale, Message, MessageId, MessageRole, MessageStatus, Session,
    Source, Task, validate_content,
};
use crate::ports::{ChatModel, ChatStore, KnowledgeError};
use crate::prompt::{self, PromptInput};
use crate::stream::{self, AnswerError, Run, StreamEvent, Subscription};

impl Chat {
    /// Asks a question in a session: stores it, retrieves, builds the prompt and starts the
    /// answer, returning its first viewer. The answer is stored when it ends.
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
        let session = self.session(ctx, session_id).await?;
        let tenant = ctx.tenant_id();
        let slot = self.ports.meter.open_stream(tenant).await?;
        let mut held = Held::new(self.ports.meter.clone()).with_slot(slot);
        let prepared = match self
            .prepare_answer(ctx, &session, content, locale, &mut held)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                held.release().await;
                return Err(e);
            }
        };
        let run = self.runs.start(prepared.message_id, tenant, session_id);
        let viewer = self.runs.attach(run.clone(), None);
        tracing::info!(
            session = %session_id,
            message = %run.message_id,
            model = %prepared.model_name,
            sources = prepared.request.sources.len(),
            history = prepared.history_kept,
            prompt_tokens = prepared.prompt_tokens,
            "answer started"
        );
        let driver = Driver {
            run,
            call: ModelCall::new(
                prepared.model,
                prepared.request,
                prepared.prompt_tokens,
                held,
            ),
            store: self.ports.store.clone(),
            clock: self.ports.clock.clone(),
        };
        tokio::spawn(driver.drive());
        Ok(viewer)
    }

    /// Everything before an answer starts: retrieval, the prompt, the reservation (put in
    /// `held`) and the stored question.
    async fn prepare_answer(
        &self,
        ctx: &TenantContext,
        session: &Session,
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
        let (model_name, model) = self.resolve_model(tenant, requested.as_deref()).await?;
        let collections = if !session.collection_ids.is_empty() {
            Some(session.collection_ids.clone())
        } else {
            assistant
                .as_ref()
                .map(|a| a.collection_ids.clone())
                .filter(|c| !c.is_empty())
        };
        let sources = self
            .search(ctx, content, collections, self.settings.top_k)
            .await?;
        let history = self
            .ports
            .store
            .recent_messages(tenant, session_id, self.settings.history_messages)
            .await?;
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
            created_at: now,
        };
        if !self.ports.store.append_message(&question).await? {
            return Err(ChatError::NotFound);
        }
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
    /// else replayed from the stored message.
    ///
    /// # Errors
    /// [`ChatError::Invalid`] for an id that is not one of ours; [`ChatError::NotFound`] when
    /// the message is not the caller's, or runs on another server and is not stored yet.
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
        let ending = match stored.status {
            MessageStatus::Complete => StreamEvent::Done {
                message_id,
                usage: stored.usage.unwrap_or_default(),
            },
            MessageStatus::Incomplete => StreamEvent::Error(AnswerError::Incomplete),
        };
        Ok(stream::replay(
            message_id,
            &stored.content,
            stored.citations,
            ending,
            Some(position),
        ))
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

/// An answer ready to start: its tokens reserved, its question stored.
struct PreparedAnswer {
    message_id: MessageId,
    model: Arc<dyn ChatModel>,
    model_name: String,
    request: ChatRequest,
    prompt_tokens: u32,
    history_kept: usize,
}

/// Drives one answer: reads its model call, feeds the run and stores the message (the
/// call settles the answer's tokens and gives its stream slot back before it ends).
struct Driver {
    run: Arc<Run>,
    call: ModelCall,
    store: Arc<dyn ChatStore>,
    clock: Arc<dyn Clock>,
}

impl Driver {
    async fn drive(self) {
        let Self {
            run,
            mut call,
            store,
            clock,
        } = self;
        let started = tokio::select! {
            biased;
            () = run.cancelled() => false,
            started = call.start() => started,
        };
        if !started {
            // Cancelled before the first token (nothing when the start failed: its failure
            // is the call's end already).
            call.stop(AnswerError::Cancelled);
        }
        let mut stopped = !started;
        let mut end = None;
        loop {
            let event = tokio::select! {
                biased;
                () = run.cancelled(), if !stopped => {
                    // The model's stream is dropped, the upstream request with it.
                    call.stop(AnswerError::Cancelled);
                    stopped = true;
                    continue;
                }
                event = call.next() => event,
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
        let (answer, mut failure) =
            end.unwrap_or_else(|| (Answer::default(), Some(AnswerError::ModelFailed)));
        let model_name = call.model_name().to_owned();
        drop(call);
        let usage = answer.usage;
        let status = if failure.is_none() {
            MessageStatus::Complete
        } else {
            MessageStatus::Incomplete
        };
        if failure.is_none() || !answer.text.is_empty() {
            let message = Message {
                id: run.message_id,
                tenant_id: run.tenant_id,
                session_id: run.session_id,
                role: MessageRole::Assistant,
                content: answer.text,
                citations: answer.citations.clone(),
                usage: Some(usage),
                status,
                model: Some(model_name),
                created_at: clock.now(),
            };
            match store.append_message(&message).await {
                Ok(true) => {}
                Ok(false) => {
                    failure.get_or_insert(AnswerError::SessionDeleted);
                }
                Err(e) => {
                    tracing::error!(error = ?e, message = %run.message_id, "storing an answer failed");
                    failure = Some(AnswerError::NotStored);
                }
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
