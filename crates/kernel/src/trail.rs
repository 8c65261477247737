//! [`BufferedTrail`]: the document-access trail off the hot path.
//!
//! Reads, searches and answers hand their access event to a bounded queue and go on; one
//! writer task appends what is queued to the [`AuditLog`] in batches (group commit: while one
//! batch is written, the next one gathers, so a busy server writes few large batches and an
//! idle one writes each event at once). No request waits for the database.
//!
//! The bound: at most [`BufferedTrail::capacity`] events wait. When the queue is full (the
//! database far slower than the traffic) an event is dropped and counted
//! ([`BufferedTrail::dropped`], exported as `quire_audit_trail_dropped_total`), never
//! blocking the request. A batch the log refuses is retried with a doubling pause for up to
//! [`WRITE_RETRY_FOR`]; then it is dropped and counted the same way. A clean shutdown
//! ([`TrailWriter::stop`]) refuses new events and writes everything queued before it
//! returns; only a crash loses the queue (at most `capacity` events).
//!
//! Repeated reads are coalesced ([`Coalesce`]): a `document.read` of one document by the same
//! user or key in the same organization within the read window of the last one recorded is not
//! queued, so a client polling `GET /documents/{id}` leaves one event per window, not one per
//! poll. Per process: behind K servers a poller leaves at most K events per window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::audit::{AccessTrail, AuditEvent, AuditLog, DOCUMENT_READ};
use crate::retry::Backoff;
use crate::{ApiKeyId, TenantId, UserId};

/// The queue's bound of a server or worker process: 10,000 events (a few MB at most).
pub const CAPACITY: usize = 10_000;
/// Events one write appends at most.
pub const MAX_BATCH: usize = 500;
/// How long a failing batch is retried before it is dropped.
pub const WRITE_RETRY_FOR: Duration = Duration::from_secs(30);

/// Reads the coalescing remembers at most (a few hundred KB); past it, the entries older than
/// the window are forgotten, and if none is, all of them (a read may then be recorded twice
/// within a window: the trail errs on the side of recording).
pub const COALESCE_ENTRIES: usize = 10_000;

/// The producer side: cheap to share, never blocks.
#[derive(Debug)]
pub struct BufferedTrail {
    tx: mpsc::Sender<AuditEvent>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
    reads: Coalesce,
}

/// Who read which document: the key of a coalesced read.
type ReadKey = (TenantId, Option<UserId>, Option<ApiKeyId>, uuid::Uuid);

/// The coalescing of repeated reads: for each (organization, user or key, document), when its
/// last `document.read` was recorded. A read within `window` of that is left out; one after
/// it is recorded and restarts the window (so a steady poller leaves one event per window).
/// Events are compared by their own time (`AuditEvent::at`). A zero window records every read.
#[derive(Debug)]
pub struct Coalesce {
    window: time::Duration,
    last: Mutex<HashMap<ReadKey, OffsetDateTime>>,
}

impl Coalesce {
    /// Coalescing reads within `window` (zero: none).
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window: time::Duration::try_from(window).unwrap_or(time::Duration::MAX),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// True when `event` repeats a read recorded within the window (leave it out); else
    /// remembers it as recorded now and answers false. Only single-document `document.read`
    /// events coalesce.
    pub fn repeats(&self, event: &AuditEvent) -> bool {
        if self.window.is_zero() || event.action != DOCUMENT_READ {
            return false;
        }
        let (Some(tenant), Some(access)) = (event.tenant, event.access.as_ref()) else {
            return false;
        };
        let [document] = access.documents.as_slice() else {
            return false;
        };
        let key = (tenant, event.actor, access.key, *document);
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = last.get(&key)
            && event.at >= *at
            && event.at - *at < self.window
        {
            return true;
        }
        if last.len() >= COALESCE_ENTRIES && !last.contains_key(&key) {
            let window = self.window;
            last.retain(|_, at| event.at - *at < window);
            if last.len() >= COALESCE_ENTRIES {
                last.clear();
            }
        }
        last.insert(key, event.at);
        false
    }
}

/// The writer task; [`TrailWriter::stop`] flushes it.
#[derive(Debug)]
pub struct TrailWriter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl BufferedTrail {
    /// Starts the writer over `log` with room for `capacity` waiting events (at least 1),
    /// coalescing repeated reads within `read_window` ([`Coalesce`]; zero: none).
    #[must_use]
    pub fn start(
        log: Arc<dyn AuditLog>,
        capacity: usize,
        read_window: Duration,
    ) -> (Arc<Self>, TrailWriter) {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let (stop, stopped) = oneshot::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write(log, rx, stopped, dropped.clone()));
        (
            Arc::new(Self {
                tx,
                capacity,
                dropped,
                reads: Coalesce::new(read_window),
            }),
            TrailWriter { stop, task },
        )
    }

    /// Events that may wait at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events lost so far: refused by a full queue, or in a batch the log kept refusing.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AccessTrail for BufferedTrail {
    fn record(&self, event: AuditEvent) {
        if self.reads.repeats(&event) {
            return;
        }
        if let Err(e) = self.tx.try_send(event) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at the first and then every 1000th, so a flood does not flood the log.
            if n == 1 || n.is_multiple_of(1000) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the writer has stopped",
                };
                tracing::error!(dropped = n, why, "an access-trail event was dropped");
            }
        }
    }
}

impl TrailWriter {
    /// Refuses new events, writes every queued one, and returns when they are written (or
    /// given up on after [`WRITE_RETRY_FOR`]).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the access-trail writer ended abnormally");
        }
    }
}

async fn write(
    log: Arc<dyn AuditLog>,
    mut rx: mpsc::Receiver<AuditEvent>,
    mut stopped: oneshot::Receiver<()>,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut stopped => break,
            e = rx.recv() => e,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        flush(&*log, &mut batch, &dropped).await;
    }
    // Shutdown: nothing new gets in; what is queued is written.
    rx.close();
    while let Some(e) = rx.recv().await {
        batch.push(e);
        if batch.len() == MAX_BATCH {
            flush(&*log, &mut batch, &dropped).await;
        }
    }
    flush(&*log, &mut batch, &dropped).await;
}

async fn flush(log: &dyn AuditLog, batch: &mut Vec<AuditEvent>, dropped: &AtomicU64) {
    if batch.is_empty() {
        return;
    }
    let mut backoff = Backoff::new(
        WRITE_RETRY_FOR,
        Duration::from_millis(100),
        Duration::from_secs(5),
    );
    loop {
        match log.record_access(batch.clone()).await {
            Ok(()) => break,
            Err(e) => {
                if let Some(pause) = backoff.next_pause() {
                    tracing::warn!(error = ?e, events = batch.len(), "writing access-trail events failed; trying again");
                    tokio::time::sleep(pause).await;
                } else {
                    dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!(error = ?e, events = batch.len(), "access-trail events were dropped: the audit log kept failing");
                    break;
                }
            }
        }
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use time::OffsetDateTime;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::audit::{AuditError, AuditQuery, AuditRecord, ClientInfo};
    use crate::{Page, PageRequest, TenantId};

    /// A log whose writes wait for a permit (so events pile up in the queue).
    #[derive(Debug)]
    struct Gated {
        gate: Semaphore,
        written: Mutex<Vec<AuditEvent>>,
    }

    #[async_trait]
    impl AuditLog for Gated {
        async fn record(&self, _: AuditEvent) -> Result<(), AuditError> {
            unreachable!("the trail writes batches")
        }
        async fn query(
            &self,
            _: &AuditQuery,
            _: &PageRequest,
        ) -> Result<Page<AuditRecord>, AuditError> {
            unreachable!()
        }
        async fn erase_tenant(&self, _: TenantId) -> Result<u64, AuditError> {
            unreachable!()
        }
        async fn delete_access_before(
            &self,
            _: TenantId,
            _: OffsetDateTime,
        ) -> Result<u64, AuditError> {
            unreachable!()
        }
        async fn record_access(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
            let permit = self
                .gate
                .acquire()
                .await
                .map_err(|e| AuditError(e.into()))?;
            permit.forget();
            self.written.lock().expect("lock").extend(events);
            Ok(())
        }
    }

    fn event(n: u8) -> AuditEvent {
        AuditEvent {
            at: OffsetDateTime::UNIX_EPOCH,
            action: crate::audit::DOCUMENT_READ,
            actor: None,
            tenant: None,
            target: Some(n.to_string()),
            client: ClientInfo::default(),
            access: None,
        }
    }

    #[tokio::test]
    async fn a_clean_stop_writes_every_queued_event() {
        let log = Arc::new(Gated {
            gate: Semaphore::new(0),
            written: Mutex::default(),
        });
        let (trail, writer) = BufferedTrail::start(log.clone(), 100, Duration::ZERO);
        for n in 0..50 {
            trail.record(event(n));
        }
        // The writer holds the first batch at the gate; the rest wait in the queue.
        log.gate.add_permits(1_000);
        writer.stop().await;
        assert_eq!(log.written.lock().expect("lock").len(), 50);
        assert_eq!(trail.dropped(), 0);
        // After the stop nothing gets in, and what is refused is counted.
        trail.record(event(99));
        assert_eq!(trail.dropped(), 1);
    }

    fn read(at: i64, tenant: TenantId, actor: Option<UserId>, doc: uuid::Uuid) -> AuditEvent {
        AuditEvent {
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(at),
            action: DOCUMENT_READ,
            actor,
            tenant: Some(tenant),
            target: None,
            client: ClientInfo::default(),
            access: Some(crate::audit::DocumentAccess {
                documents: vec![doc],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn repeated_reads_within_the_window_are_one_event() {
        let reads = Coalesce::new(Duration::from_secs(60));
        let (org, other_org) = (TenantId::new(), TenantId::new());
        let (ann, bob) = (Some(UserId::new()), Some(UserId::new()));
        let (doc, other_doc) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        // Ten polls in the window: the first is recorded.
        let kept = (0..10)
            .filter(|i| !reads.repeats(&read(i * 5, org, ann, doc)))
            .count();
        assert_eq!(kept, 1);
        // Another actor, document or organization: its own event.
        assert!(!reads.repeats(&read(10, org, bob, doc)));
        assert!(!reads.repeats(&read(10, org, ann, other_doc)));
        assert!(!reads.repeats(&read(10, other_org, ann, doc)));
        // After the window (from the recorded read at 0): a second event, restarting it.
        assert!(!reads.repeats(&read(60, org, ann, doc)));
        assert!(reads.repeats(&read(119, org, ann, doc)));
        assert!(!reads.repeats(&read(120, org, ann, doc)));
        // A search is never coalesced; a zero window coalesces nothing.
        let mut search = read(120, org, ann, doc);
        search.action = crate::audit::DOCUMENTS_SEARCHED;
        assert!(!reads.repeats(&search));
        let off = Coalesce::new(Duration::ZERO);
        assert!(!off.repeats(&read(0, org, ann, doc)) && !off.repeats(&read(0, org, ann, doc)));
    }

    #[test]
    fn the_coalescing_memory_is_bounded() {
        let reads = Coalesce::new(Duration::from_secs(60));
        let org = TenantId::new();
        for _ in 0..(COALESCE_ENTRIES + 10) {
            assert!(!reads.repeats(&read(0, org, None, uuid::Uuid::now_v7())));
        }
        assert!(reads.last.lock().expect("lock").len() <= COALESCE_ENTRIES);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        let log = Arc::new(Gated {
            gate: Semaphore::new(0),
            written: Mutex::default(),
        });
        let (trail, writer) = BufferedTrail::start(log.clone(), 4, Duration::ZERO);
        for n in 0..20 {
            trail.record(event(n));
        }
        // At most the queue and the batch in the writer's hands are kept.
        let dropped = trail.dropped();
        assert!(dropped >= 20 - 4 - 4, "{dropped}");
        log.gate.add_permits(1_000);
        writer.stop().await;
        let written = log.written.lock().expect("lock").len() as u64;
        assert_eq!(
            written + dropped,
            20,
            "nothing is counted twice or lost uncounted"
        );
    }
}
