//! Metering of model calls: what a call holds while it runs ([`Held`]: its token reservation
//! and, for answers and completions, a stream slot), and the usage a call settles when its
//! provider reported none ([`counted_usage`]). The model-call core (`ModelCall`) settles what it
//! holds exactly once, when it ends or when it is dropped early.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kernel::{Meter, MeterError, Reservation, StreamSlot, TenantId, Tokens};

use crate::model::Usage;
use crate::ports::ChatModel;

/// A settlement on its way to the meter.
pub(crate) type Settlement = Pin<Box<dyn Future<Output = ()> + Send>>;

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
pub(crate) fn settle_detached(settlement: Settlement, reservation: Option<uuid::Uuid>) {
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

    /// A stream slot of `tenant`, taken beside `reads` (neither waits for the other), held
    /// with what the reads found. The reads' refusal comes first (a slot taken meanwhile is
    /// given back at once), then the meter's.
    ///
    /// # Errors
    /// The reads' error; else the meter's refusal of the slot.
    pub(crate) async fn slot_beside<T, E: From<MeterError>>(
        meter: Arc<dyn Meter>,
        tenant: TenantId,
        reads: impl Future<Output = Result<T, E>>,
    ) -> Result<(Self, T), E> {
        let (read, slot) = futures_util::future::join(reads, meter.open_stream(tenant)).await;
        let held = Self::new(meter);
        match (read, slot) {
            (Ok(read), Ok(slot)) => Ok((held.with_slot(slot), read)),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), slot) => {
                if let Ok(slot) = slot {
                    held.with_slot(slot).release().await;
                }
                Err(e)
            }
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

    /// The reservation held, if any.
    pub(crate) fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
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
    pub(crate) fn settlement(&mut self, used: Tokens) -> Settlement {
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
    pub(crate) fn finish_detached(&mut self, used: Tokens) {
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
