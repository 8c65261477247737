//! The one model-call core: every call of a language model (a streamed answer, an AI task,
//! an OpenAI-compatible completion, streamed or not) goes through a [`ModelCall`].
//!
//! A call reads the model's stream and yields its text neutralized ([`crate::neutralize`]),
//! piece by piece, then one end: the finished [`Answer`] (text, usage, verified citations) or
//! a [`Failure`] (a typed [`AnswerError`] and what was produced). Before it yields the end it
//! settles what it holds ([`Held`]: the tokens reserved, and the stream slot of answers and
//! completions) with the usage the end carries: the provider's when the call ended normally
//! and reported one, else [`metered::counted_usage`]. A call dropped before its end (the
//! client went away) settles in the background with what was produced.
//!
//! A call never produces more than the request's `max_tokens`: the model's tokens are counted
//! as its pieces arrive (in the model's own tokenizer), the piece that reaches the limit is cut
//! to fit, the model's stream is dropped there, and the call finishes as
//! [`Answer::truncated`] (OpenAI's `finish_reason: "length"`). What a call holds in memory, and
//! what it settles, is therefore bounded by what was reserved, whatever a provider sends.

use std::sync::Arc;

use futures_util::StreamExt as _;

use crate::citations;
use crate::metered::{self, Held, Settlement};
use crate::model::{ChatRequest, Citation, Source, Usage};
use crate::neutralize::Neutralizer;
use crate::ports::{ChatModel, ModelError, ModelEvent, ModelStream};
use crate::stream::AnswerError;

/// A model call's request on its way: resolves to the model's stream (at its first token) or
/// its failure.
pub(crate) type Opening =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ModelStream, ModelError>> + Send>>;

/// A call's answer, once the model is done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The answer, neutralized: what was streamed, and what is shown or stored.
    pub text: String,
    /// What the model wrote (what is counted, parsed and checked for citations).
    pub raw: String,
    /// The tokens the call used (and settled).
    pub usage: Usage,
    /// The citations of `raw` verified against the request's sources.
    pub citations: Vec<Citation>,
    /// The answer was cut at the request's `max_tokens`.
    pub truncated: bool,
}

/// A call that ended early: why, and what it produced until then.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Why.
    pub error: AnswerError,
    /// What was produced (its usage is what was settled).
    pub partial: Answer,
}

/// What a call yields: pieces of text, then one end.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// A piece of the answer, neutralized (never empty).
    Delta(String),
    /// The model is done: the whole answer.
    Finished(Answer),
    /// The call failed or was stopped.
    Failed(Failure),
}

/// One metered model call (see the module docs).
pub struct ModelCall {
    model: Arc<dyn ChatModel>,
    model_name: String,
    sources: Vec<Source>,
    prompt_tokens: u32,
    /// The most completion tokens the call may produce (the request's `max_tokens`).
    max_tokens: Option<u32>,
    /// Completion tokens produced so far, counted piece by piece.
    produced: u32,
    /// The call reached `max_tokens`.
    truncated: bool,
    /// The request, until the call starts.
    request: Option<ChatRequest>,
    stream: Option<ModelStream>,
    raw: String,
    text: String,
    safe: Neutralizer,
    usage: Option<Usage>,
    held: Option<Held>,
    /// Text the neutralizer held back, to yield before the end.
    tail: Option<String>,
    settling: Option<Settlement>,
    end: Option<CallEvent>,
    /// The end is decided (it may still wait for its tail and settlement).
    concluded: bool,
}

impl ModelCall {
    /// A call of `request` to `model`, whose prompt counts `prompt_tokens`, holding `held`
    /// until it ends. Nothing is sent before [`ModelCall::start`].
    pub(crate) fn new(
        model: Arc<dyn ChatModel>,
        request: ChatRequest,
        prompt_tokens: u32,
        held: Held,
    ) -> Self {
        Self {
            model,
            model_name: request.model.clone(),
            sources: request.sources.clone(),
            prompt_tokens,
            max_tokens: request.max_tokens,
            produced: 0,
            truncated: false,
            request: Some(request),
            stream: None,
            raw: String::new(),
            text: String::new(),
            safe: Neutralizer::new(),
            usage: None,
            held: Some(held),
            tail: None,
            settling: None,
            end: None,
            concluded: false,
        }
    }

    /// Sends the request; resolves at the model's first token. `false` when the model
    /// failed before it: the failure is then the call's end.
    pub(crate) async fn start(&mut self) -> bool {
        match self.opening() {
            Some(opening) => self.opened(opening.await),
            None => !self.concluded,
        }
    }

    /// The request to the model, to send apart from the call (on a task of its own, while
    /// the caller does something else); its result goes to [`ModelCall::opened`]. `None`
    /// once the request was taken. The call still holds its reservation: dropped, it is
    /// released.
    pub(crate) fn opening(&mut self) -> Option<Opening> {
        let request = self.request.take()?;
        let model = Arc::clone(&self.model);
        Some(Box::pin(async move { model.stream(request).await }))
    }

    /// What the model answered to the request of [`ModelCall::opening`]: `false` when it
    /// failed before its first token (the failure is then the call's end).
    pub(crate) fn opened(&mut self, opened: Result<ModelStream, ModelError>) -> bool {
        if self.concluded {
            return false;
        }
        match opened {
            Ok(stream) => {
                self.stream = Some(stream);
                true
            }
            Err(e) => {
                self.conclude(Some(e.into()));
                false
            }
        }
    }

    /// The reservation the call settles when it ends.
    pub(crate) fn reservation(&self) -> Option<&kernel::Reservation> {
        self.held.as_ref().and_then(Held::reservation)
    }

    /// Gives back what the call holds, unused, before anything of it was shown (the call
    /// is not to go on); its model stream, if open, is dropped unread.
    pub(crate) async fn abandon(mut self) {
        self.request = None;
        self.stream = None;
        if let Some(held) = self.held.take() {
            held.release().await;
        }
    }

    /// Starts the call, failing (after giving back what it holds) when the model fails
    /// before its first token.
    pub(crate) async fn started(mut self) -> Result<Self, AnswerError> {
        if self.start().await {
            return Ok(self);
        }
        Err(self
            .read_to_end()
            .await
            .err()
            .unwrap_or(AnswerError::ModelFailed))
    }

    /// Stops the call (a cancel): the model's stream is dropped, and the call ends with
    /// `error` after the text produced so far. Nothing once the end is decided.
    pub(crate) fn stop(&mut self, error: AnswerError) {
        self.conclude(Some(error));
    }

    /// The model's name.
    #[must_use]
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// The answer so far (neutralized) and what it would settle now (counted): what a
    /// checkpoint writes.
    pub(crate) fn progress(&self) -> (&str, Usage) {
        (&self.text, self.used(false))
    }

    /// The prompt's tokens, as counted here (what is settled when the provider reports none).
    #[must_use]
    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    /// The next piece of the answer, or the end; `None` after the end. Cancel-safe: a
    /// caller may drop it (a heartbeat timeout) and call again without losing anything.
    pub async fn next(&mut self) -> Option<CallEvent> {
        loop {
            if let Some(tail) = self.tail.take() {
                return Some(CallEvent::Delta(tail));
            }
            if let Some(settling) = self.settling.as_mut() {
                settling.await;
                self.settling = None;
            }
            if self.concluded {
                return self.end.take();
            }
            if self.truncated {
                // The limit was reached: the model's stream is dropped unread.
                self.conclude(None);
                continue;
            }
            let Some(stream) = self.stream.as_mut() else {
                // Read before it started: it never will.
                self.conclude(Some(AnswerError::ModelFailed));
                continue;
            };
            match stream.next().await {
                Some(Ok(ModelEvent::Delta(t))) => {
                    let t = self.within_limit(t);
                    self.raw.push_str(&t);
                    let safe = self.safe.push(&t);
                    if !safe.is_empty() {
                        self.text.push_str(&safe);
                        return Some(CallEvent::Delta(safe));
                    }
                }
                Some(Ok(ModelEvent::Usage(u))) => self.usage = Some(u),
                Some(Err(e)) => self.conclude(Some(e.into())),
                None => self.conclude(None),
            }
        }
    }

    /// Reads the call to its end: the answer, or why it failed.
    ///
    /// # Errors
    /// The call's [`AnswerError`].
    pub async fn read_to_end(mut self) -> Result<Answer, AnswerError> {
        while let Some(event) = self.next().await {
            match event {
                CallEvent::Delta(_) => {}
                CallEvent::Finished(answer) => return Ok(answer),
                CallEvent::Failed(f) => return Err(f.error),
            }
        }
        Err(AnswerError::ModelFailed)
    }

    /// Counts the piece `t` against `max_tokens`: the piece itself while it fits, else its
    /// longest prefix that does (the call is then truncated). Pieces are counted one by one
    /// (an upper bound: a word split across pieces counts twice); near the limit the whole
    /// text is counted again, exactly.
    fn within_limit(&mut self, mut t: String) -> String {
        let Some(max) = self.max_tokens else {
            return t;
        };
        let count = |text: &str| self.model.count_tokens(&self.model_name, text);
        let estimate = self.produced.saturating_add(count(&t));
        if estimate < max {
            self.produced = estimate;
            return t;
        }
        let exact = count(&format!("{}{t}", self.raw));
        if exact < max {
            self.produced = exact;
            return t;
        }
        self.truncated = true;
        if exact > max {
            // The longest prefix (on a character boundary) that still fits.
            let bounds: Vec<usize> = t.char_indices().map(|(i, _)| i).skip(1).collect();
            let (mut lo, mut hi) = (0, bounds.len());
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if count(&format!("{}{}", self.raw, &t[..bounds[mid - 1]])) <= max {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            t.truncate(if lo == 0 { 0 } else { bounds[lo - 1] });
            tracing::info!(model = %self.model_name, max_tokens = max, "the model reached max_tokens; its answer is cut there");
        }
        self.produced = max;
        t
    }

    /// What the call used: the provider's usage when it ended normally and reported one,
    /// else counted; never more completion tokens than `max_tokens`.
    fn used(&self, ended_normally: bool) -> Usage {
        let mut usage = match self.usage {
            Some(u) if ended_normally => u,
            _ => metered::counted_usage(
                &*self.model,
                &self.model_name,
                self.prompt_tokens,
                &self.raw,
                ended_normally,
            ),
        };
        if let Some(max) = self.max_tokens {
            usage.completion_tokens = usage.completion_tokens.min(max);
        }
        usage
    }

    /// Decides the end (once): drops the model's stream, takes the neutralizer's tail, and
    /// starts settling what is held.
    fn conclude(&mut self, failure: Option<AnswerError>) {
        if self.concluded {
            return;
        }
        self.concluded = true;
        self.request = None;
        self.stream = None;
        let tail = self.safe.finish();
        if !tail.is_empty() {
            self.text.push_str(&tail);
            self.tail = Some(tail);
        }
        let usage = self.used(failure.is_none());
        let (citations, dropped) = citations::verify(&self.raw, &self.sources);
        if dropped > 0 {
            tracing::info!(model = %self.model_name, dropped, "unverifiable citations dropped");
        }
        if let Some(mut held) = self.held.take() {
            self.settling = Some(held.settlement(metered::tokens(usage)));
        }
        let answer = Answer {
            text: std::mem::take(&mut self.text),
            raw: std::mem::take(&mut self.raw),
            usage,
            citations,
            truncated: self.truncated && failure.is_none(),
        };
        self.end = Some(match failure {
            None => CallEvent::Finished(answer),
            Some(error) => CallEvent::Failed(Failure {
                error,
                partial: answer,
            }),
        });
    }
}

impl Drop for ModelCall {
    fn drop(&mut self) {
        if let Some(settling) = self.settling.take() {
            metered::settle_detached(settling, None);
        } else if let Some(mut held) = self.held.take() {
            let used = metered::tokens(self.used(false));
            held.finish_detached(used);
        }
    }
}

impl std::fmt::Debug for ModelCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCall")
            .field("model", &self.model_name)
            .field("prompt_tokens", &self.prompt_tokens)
            .field("usage", &self.usage)
            .field("concluded", &self.concluded)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use kernel::{MeterError, MeterScope, TenantId, UsageKind};
    use tokio::sync::Notify;

    use kernel::{Meter, Reservation, StreamSlot, Tokens};

    use super::*;
    use crate::metered::tokens;
    use crate::model::Task;
    use crate::ports::ModelError;

    /// Records what is settled and how many stream slots are open; every settlement and
    /// closed slot wakes `changed`.
    #[derive(Debug, Default)]
    struct RecordingMeter {
        settlements: Mutex<Vec<(String, u64, Tokens)>>,
        open_slots: Mutex<i64>,
        changed: Notify,
    }

    impl RecordingMeter {
        fn settlements(&self) -> Vec<(String, u64, Tokens)> {
            self.settlements
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default()
        }

        fn open_slots(&self) -> i64 {
            self.open_slots.lock().map(|s| *s).unwrap_or(i64::MIN)
        }

        /// Waits (failing after 5 s) until `done` holds.
        async fn wait_for(&self, done: impl Fn(&Self) -> bool) {
            let wait = async {
                while !done(self) {
                    self.changed.notified().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .expect("the meter never saw it");
        }

        /// Waits until `n` settlements were recorded.
        async fn wait_settled(&self, n: usize) {
            self.wait_for(|m| m.settlements().len() >= n).await;
        }
    }

    #[async_trait]
    impl Meter for RecordingMeter {
        async fn reserve(&self, scope: MeterScope, tokens: u64) -> Result<Reservation, MeterError> {
            kernel::metering::Unmetered.reserve(scope, tokens).await
        }

        async fn settle(&self, reservation: Reservation, used: Tokens) {
            self.settlements.lock().expect("lock").push((
                reservation.scope.reference,
                reservation.reserved,
                used,
            ));
            self.changed.notify_one();
        }

        async fn open_stream(&self, tenant: TenantId) -> Result<StreamSlot, MeterError> {
            *self.open_slots.lock().expect("lock") += 1;
            Ok(StreamSlot::new(tenant))
        }

        async fn close_stream(&self, _slot: StreamSlot) {
            *self.open_slots.lock().expect("lock") -= 1;
            self.changed.notify_one();
        }
    }

    /// Counts one token per word; streams its script (once).
    #[derive(Debug, Default)]
    struct WordModel(Mutex<Option<Vec<Result<ModelEvent, ModelError>>>>);

    impl WordModel {
        fn scripted(events: Vec<Result<ModelEvent, ModelError>>) -> Self {
            Self(Mutex::new(Some(events)))
        }
    }

    #[async_trait]
    impl ChatModel for WordModel {
        fn models(&self) -> Vec<String> {
            vec!["words".to_owned()]
        }

        fn count_tokens(&self, _model: &str, text: &str) -> u32 {
            u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
        }

        fn context_window(&self, _model: &str) -> u32 {
            1_000
        }

        async fn stream(&self, _request: ChatRequest) -> Result<ModelStream, ModelError> {
            let events = self.0.lock().expect("lock").take();
            events
                .map(scripted)
                .ok_or_else(|| ModelError::Unavailable("not scripted".to_owned()))
        }
    }

    fn scripted(events: Vec<Result<ModelEvent, ModelError>>) -> ModelStream {
        Box::pin(futures_util::stream::iter(events))
    }

    fn delta(t: &str) -> Result<ModelEvent, ModelError> {
        Ok(ModelEvent::Delta(t.to_owned()))
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "words".to_owned(),
            messages: Vec::new(),
            temperature: None,
            max_tokens: None,
            task: Task::Chat,
            sources: Vec::new(),
        }
    }

    /// A started call streaming `events`, with a reservation of 100 and a stream slot.
    async fn metered(
        meter: &Arc<RecordingMeter>,
        events: Vec<Result<ModelEvent, ModelError>>,
    ) -> ModelCall {
        let held = held(meter, 100).await;
        let mut call = ModelCall::new(Arc::new(WordModel::scripted(events)), request(), 7, held);
        call.start().await;
        call
    }

    /// A stream slot and a reservation of `reserved` tokens.
    async fn held(meter: &Arc<RecordingMeter>, reserved: u64) -> Held {
        let tenant = TenantId::new();
        let dyn_meter: Arc<dyn Meter> = meter.clone();
        let slot = dyn_meter.open_stream(tenant).await.expect("slot");
        let reservation = dyn_meter
            .reserve(
                MeterScope {
                    tenant,
                    actor: None,
                    model: "words".to_owned(),
                    kind: UsageKind::Chat,
                    reference: "completion:test".to_owned(),
                },
                reserved,
            )
            .await
            .expect("reservation");
        Held::new(dyn_meter)
            .with_slot(slot)
            .with_reservation(reservation)
    }

    #[tokio::test]
    async fn a_stream_read_to_its_end_settles_the_providers_usage_once_before_ending() {
        let meter = Arc::new(RecordingMeter::default());
        let usage = Usage {
            prompt_tokens: 9,
            completion_tokens: 3,
        };
        let mut s = metered(
            &meter,
            vec![
                delta("one two "),
                delta("three"),
                Ok(ModelEvent::Usage(usage)),
            ],
        )
        .await;
        let mut seen = Vec::new();
        while let Some(e) = s.next().await {
            seen.push(e);
        }
        assert_eq!(seen.len(), 3, "every piece passes through, then the end");
        assert!(
            matches!(seen.last(), Some(CallEvent::Finished(a)) if a.usage == usage && a.text == "one two three"),
            "{seen:?}"
        );
        // Settled by the time the end was yielded, not later.
        let want = tokens(usage);
        assert_eq!(
            meter.settlements(),
            vec![("completion:test".to_owned(), 100, want)]
        );
        assert_eq!(meter.open_slots(), 0);
        assert!(s.next().await.is_none());
        drop(s);
        tokio::task::yield_now().await;
        assert_eq!(meter.settlements().len(), 1, "settled exactly once");
    }

    #[tokio::test]
    async fn a_model_that_sends_more_than_max_tokens_is_cut_there_and_billed_within_it() {
        let meter = Arc::new(RecordingMeter::default());
        let mut call = ModelCall::new(
            Arc::new(WordModel::scripted(vec![
                delta("one two "),
                delta("three four five six "),
                delta("seven eight"),
                Ok(ModelEvent::Usage(Usage {
                    prompt_tokens: 7,
                    completion_tokens: 5_000,
                })),
            ])),
            ChatRequest {
                max_tokens: Some(3),
                ..request()
            },
            7,
            held(&meter, 10).await,
        );
        call.start().await;
        let mut text = String::new();
        let mut end = None;
        while let Some(e) = call.next().await {
            match e {
                CallEvent::Delta(t) => text.push_str(&t),
                other => end = Some(other),
            }
        }
        let Some(CallEvent::Finished(answer)) = end else {
            panic!("a truncated call finishes: {end:?}");
        };
        assert_eq!(text, "one two three ");
        assert_eq!(answer.text, text);
        assert!(answer.truncated);
        assert_eq!(answer.usage.completion_tokens, 3);
        let used = Tokens {
            prompt: 7,
            completion: 3,
        };
        assert_eq!(
            meter.settlements(),
            vec![("completion:test".to_owned(), 10, used)],
            "billed for what was kept, within the reservation"
        );
    }

    #[tokio::test]
    async fn a_provider_reporting_more_than_max_tokens_is_settled_at_max_tokens() {
        let meter = Arc::new(RecordingMeter::default());
        let mut call = ModelCall::new(
            Arc::new(WordModel::scripted(vec![
                delta("one two"),
                Ok(ModelEvent::Usage(Usage {
                    prompt_tokens: 7,
                    completion_tokens: 5_000,
                })),
            ])),
            ChatRequest {
                max_tokens: Some(4),
                ..request()
            },
            7,
            held(&meter, 11).await,
        );
        call.start().await;
        let answer = call.read_to_end().await.expect("an answer");
        assert!(!answer.truncated);
        assert_eq!(answer.usage.completion_tokens, 4);
    }

    #[tokio::test]
    async fn an_ended_stream_without_usage_settles_the_counted_prompt_and_text() {
        let meter = Arc::new(RecordingMeter::default());
        let mut s = metered(&meter, vec![delta("one two three")]).await;
        while s.next().await.is_some() {}
        let used = Tokens {
            prompt: 7,
            completion: 3,
        };
        assert_eq!(
            meter.settlements()[..],
            [("completion:test".to_owned(), 100, used)]
        );
    }

    #[tokio::test]
    async fn a_stream_dropped_midway_settles_once_with_the_prompt_and_what_was_produced() {
        let meter = Arc::new(RecordingMeter::default());
        let mut s = metered(
            &meter,
            vec![
                delta("one two "),
                delta("three four five"),
                Ok(ModelEvent::Usage(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 5,
                })),
            ],
        )
        .await;
        assert_eq!(
            s.next().await,
            Some(CallEvent::Delta("one two ".to_owned()))
        );
        drop(s);
        meter.wait_settled(1).await;
        let used = Tokens {
            prompt: 7,
            completion: 2,
        };
        assert_eq!(
            meter.settlements(),
            vec![("completion:test".to_owned(), 100, used)]
        );
        assert_eq!(meter.open_slots(), 0);
    }

    #[tokio::test]
    async fn a_stream_that_breaks_before_any_text_is_a_release() {
        let meter = Arc::new(RecordingMeter::default());
        let mut s = metered(
            &meter,
            vec![
                Err(ModelError::Interrupted("gone".to_owned())),
                delta("late"),
            ],
        )
        .await;
        assert!(matches!(
            s.next().await,
            Some(CallEvent::Failed(Failure {
                error: AnswerError::ProviderUnavailable(_),
                ..
            }))
        ));
        // Released by the time the failure was yielded.
        assert_eq!(
            meter.settlements(),
            vec![("completion:test".to_owned(), 100, Tokens::default())]
        );
        assert_eq!(meter.open_slots(), 0);
    }

    #[tokio::test]
    async fn a_stream_dropped_before_any_text_is_released_in_the_background() {
        let meter = Arc::new(RecordingMeter::default());
        let s = metered(&meter, vec![delta("never read")]).await;
        drop(s);
        meter.wait_settled(1).await;
        assert_eq!(meter.settlements()[0].2, Tokens::default());
        assert_eq!(meter.open_slots(), 0);
    }

    #[tokio::test]
    async fn a_held_call_dropped_unfinished_is_released_and_its_slot_closed() {
        let meter = Arc::new(RecordingMeter::default());
        let dyn_meter: Arc<dyn Meter> = meter.clone();
        let slot = dyn_meter.open_stream(TenantId::new()).await.expect("slot");
        let held = Held::new(dyn_meter).with_slot(slot);
        assert_eq!(meter.open_slots(), 1);
        drop(held);
        meter.wait_for(|m| m.open_slots() == 0).await;
        assert!(meter.settlements().is_empty(), "nothing was reserved");
    }

    #[test]
    fn dropping_without_a_runtime_does_not_panic_and_leaks_the_reservation() {
        let meter = Arc::new(RecordingMeter::default());
        let reservation = Reservation {
            id: uuid::Uuid::now_v7(),
            scope: MeterScope {
                tenant: TenantId::new(),
                actor: None,
                model: "words".to_owned(),
                kind: UsageKind::Chat,
                reference: "completion:test".to_owned(),
            },
            reserved: 10,
            request_id: None,
            period: String::new(),
            at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let dyn_meter: Arc<dyn Meter> = meter.clone();
        let held = Held::new(dyn_meter).with_reservation(reservation);
        let s = ModelCall::new(
            Arc::new(WordModel::scripted(vec![delta("x")])),
            request(),
            1,
            held,
        );
        drop(s);
        assert!(meter.settlements().is_empty());
    }
}
