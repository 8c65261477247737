//! Metering of model calls: what a call holds while it runs ([`Held`]: its token reservation
//! and, for answers and completions, a stream slot), and a model stream that settles its
//! reservation exactly once, when it ends or when it is dropped early ([`MeteredStream`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::Stream;
use kernel::{Meter, Reservation, StreamSlot, Tokens};

use crate::model::Usage;
use crate::ports::{ChatModel, ModelError, ModelEvent, ModelStream};

/// A settlement on its way to the meter.
type Settlement = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The tokens of a model call, as the ledger counts them.
pub(crate) fn tokens(usage: Usage) -> Tokens {
    Tokens {
        prompt: u64::from(usage.prompt_tokens),
        completion: u64::from(usage.completion_tokens),
    }
}

/// A call's usage when the provider reported none (or the call broke): the prompt as counted,
/// unless the call produced nothing and did not end normally (then nothing was billed), and
/// the produced `text` counted in the model's tokenizer.
pub(crate) fn counted_usage(
    model: &dyn ChatModel,
    model_name: &str,
    prompt_tokens: u32,
    text: &str,
    ended_normally: bool,
) -> Usage {
    Usage {
        prompt_tokens: if text.is_empty() && !ended_normally {
            0
        } else {
            prompt_tokens
        },
        completion_tokens: model.count_tokens(model_name, text),
    }
}

/// Runs `settlement` on the current runtime, from a `Drop` (which cannot await). Without a
/// runtime it is dropped with a warning: its reservation then stays counted until the quota
/// counter is next rebuilt from the ledger.
fn settle_detached(settlement: Settlement, reservation: Option<uuid::Uuid>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(settlement);
        }
        Err(_) => tracing::warn!(
            reservation = reservation.map(|r| r.to_string()),
            "no runtime to settle a model call on; its reservation stays counted"
        ),
    }
}

/// The reservation and the stream slot of one model call, given back exactly once: by
/// [`Held::finish`] (or [`Held::release`]); when dropped unfinished (the caller went away
/// before the call started, a panic), the reservation is released and the slot closed in
/// the background.
pub(crate) struct Held {
    meter: Arc<dyn Meter>,
    reservation: Option<Reservation>,
    slot: Option<StreamSlot>,
}

impl Held {
    /// Holds nothing yet.
    pub(crate) fn new(meter: Arc<dyn Meter>) -> Self {
        Self {
            meter,
            reservation: None,
            slot: None,
        }
    }

    /// Holds a stream slot.
    pub(crate) fn with_slot(mut self, slot: StreamSlot) -> Self {
        self.slot = Some(slot);
        self
    }

    /// Holds a reservation.
    pub(crate) fn with_reservation(mut self, reservation: Reservation) -> Self {
        self.reservation = Some(reservation);
        self
    }

    /// Holds a reservation (made after the slot was taken).
    pub(crate) fn hold(&mut self, reservation: Reservation) {
        self.reservation = Some(reservation);
    }

    /// Settles the reservation with what the call used and closes the slot.
    pub(crate) async fn finish(mut self, used: Tokens) {
        self.settlement(used).await;
    }

    /// Gives the reservation back unused and closes the slot (the call failed before any
    /// token was billed).
    pub(crate) async fn release(self) {
        self.finish(Tokens::default()).await;
    }

    /// The settlement of what is held (taken out: it happens once).
    fn settlement(&mut self, used: Tokens) -> Settlement {
        let meter = self.meter.clone();
        let reservation = self.reservation.take();
        let slot = self.slot.take();
        Box::pin(async move {
            if let Some(r) = reservation {
                meter.settle(r, used).await;
            }
            if let Some(s) = slot {
                meter.close_stream(s).await;
            }
        })
    }

    /// Settles in the background (from a `Drop`).
    fn finish_detached(&mut self, used: Tokens) {
        if self.reservation.is_none() && self.slot.is_none() {
            return;
        }
        let id = self.reservation.as_ref().map(|r| r.id);
        settle_detached(self.settlement(used), id);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.reservation.is_some() || self.slot.is_some() {
            // A caller that went away before its model call started (a dropped request).
            tracing::debug!(
                reservation = self.reservation.as_ref().map(|r| r.id.to_string()),
                "a model call was abandoned before it settled; releasing its reservation"
            );
            self.finish_detached(Tokens::default());
        }
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("reservation", &self.reservation.as_ref().map(|r| r.id))
            .field("slot", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}

/// A model stream that passes every event through, remembers the provider's usage and the
/// text produced, and settles what it holds exactly once: when the stream ends (the
/// settlement is awaited before the end is yielded) or when it is dropped early (the client
/// went away, an error stopped the reader: the settlement is then spawned).
///
/// What is settled: the provider's [`ModelEvent::Usage`] when it came; else the counted
/// prompt tokens when any text was produced or the stream ended normally (0 when it broke
/// or was dropped before any text), and the produced text counted in the model's tokenizer.
pub(crate) struct MeteredStream {
    inner: ModelStream,
    model: Arc<dyn ChatModel>,
    model_name: String,
    prompt_tokens: u32,
    text: String,
    usage: Option<Usage>,
    ended: bool,
    failed: bool,
    held: Option<Held>,
    settling: Option<Settlement>,
}

impl MeteredStream {
    /// Meters `inner`, a call of `model_name` whose prompt counts `prompt_tokens`.
    pub(crate) fn new(
        inner: ModelStream,
        model: Arc<dyn ChatModel>,
        model_name: String,
        prompt_tokens: u32,
        held: Held,
    ) -> Self {
        Self {
            inner,
            model,
            model_name,
            prompt_tokens,
            text: String::new(),
            usage: None,
            ended: false,
            failed: false,
            held: Some(held),
            settling: None,
        }
    }

    /// What the call used so far (see the type's docs).
    fn used(&self) -> Usage {
        self.usage.unwrap_or_else(|| {
            counted_usage(
                &*self.model,
                &self.model_name,
                self.prompt_tokens,
                &self.text,
                self.ended && !self.failed,
            )
        })
    }

    /// Settles now, with what was used so far (a reader that stops on an error).
    pub(crate) async fn settle_now(mut self) {
        if let Some(settling) = self.settling.take() {
            settling.await;
        } else if let Some(held) = self.held.take() {
            held.finish(tokens(self.used())).await;
        }
    }
}

impl Stream for MeteredStream {
    type Item = Result<ModelEvent, ModelError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(settling) = this.settling.as_mut() {
                ready!(settling.as_mut().poll(cx));
                this.settling = None;
                return Poll::Ready(None);
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(ModelEvent::Delta(t))) => {
                    this.text.push_str(&t);
                    return Poll::Ready(Some(Ok(ModelEvent::Delta(t))));
                }
                Some(Ok(ModelEvent::Usage(u))) => {
                    this.usage = Some(u);
                    return Poll::Ready(Some(Ok(ModelEvent::Usage(u))));
                }
                Some(Err(e)) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.ended = true;
                    let used = tokens(this.used());
                    if let Some(mut held) = this.held.take() {
                        this.settling = Some(held.settlement(used));
                    }
                }
            }
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        if let Some(settling) = self.settling.take() {
            settle_detached(settling, None);
        } else if let Some(mut held) = self.held.take() {
            let used = tokens(self.used());
            held.finish_detached(used);
        }
    }
}

impl std::fmt::Debug for MeteredStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStream")
            .field("model", &self.model_name)
            .field("prompt_tokens", &self.prompt_tokens)
            .field("usage", &self.usage)
            .field("ended", &self.ended)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use futures_util::StreamExt as _;
    use kernel::{MeterError, MeterScope, TenantId, UsageKind};
    use tokio::sync::Notify;

    use super::*;
    use crate::model::ChatRequest;

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

    /// Counts one token per word; never called to stream here.
    #[derive(Debug)]
    struct WordModel;

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
            Err(ModelError::Unavailable("not used".to_owned()))
        }
    }

    fn scripted(events: Vec<Result<ModelEvent, ModelError>>) -> ModelStream {
        Box::pin(futures_util::stream::iter(events))
    }

    fn delta(t: &str) -> Result<ModelEvent, ModelError> {
        Ok(ModelEvent::Delta(t.to_owned()))
    }

    /// A metered stream over `events` with a reservation of 100 and a stream slot.
    async fn metered(
        meter: &Arc<RecordingMeter>,
        events: Vec<Result<ModelEvent, ModelError>>,
    ) -> MeteredStream {
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
                100,
            )
            .await
            .expect("reservation");
        let held = Held::new(dyn_meter)
            .with_slot(slot)
            .with_reservation(reservation);
        MeteredStream::new(
            scripted(events),
            Arc::new(WordModel),
            "words".to_owned(),
            7,
            held,
        )
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
            seen.push(e.expect("no error"));
        }
        assert_eq!(seen.len(), 3, "every event passes through");
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
            s.next().await.and_then(Result::ok),
            Some(ModelEvent::Delta("one two ".to_owned()))
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
            Some(Err(ModelError::Interrupted(_)))
        ));
        s.settle_now().await;
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
        let s = MeteredStream::new(
            scripted(vec![delta("x")]),
            Arc::new(WordModel),
            "words".to_owned(),
            1,
            held,
        );
        drop(s);
        assert!(meter.settlements().is_empty());
    }
}
