//! Ingestion workers: tokio tasks that take jobs from the durable queue one at a time, and,
//! when no job is due, re-embed a collection whose embedding model changed; webhook delivery
//! workers ([`DeliveryPool`]), which take deliveries from their own queue.
//!
//! They run inside `quire serve` (`documents.workers`, default 2) and as separate
//! `quire worker` processes for scale-out: the queue is in the database, so any number of
//! processes share it. A job queued in this process wakes a local worker at once; jobs queued
//! by other processes are found by polling (`documents.poll_interval_ms`).

use std::sync::Arc;
use std::time::Duration;

use documents::{Ingestion, JobSignal};
use kernel::{Clock as _, SystemClock};
use retrieval::Reembedder;
use store_sql::SqlStore;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Wakes one idle local worker when a job is queued.
#[derive(Debug, Default)]
pub struct Wake(Notify);

impl JobSignal for Wake {
    fn job_queued(&self) {
        self.0.notify_one();
    }
}

impl webhooks::DeliverySignal for Wake {
    fn queued(&self) {
        self.0.notify_one();
    }
}

/// Running webhook delivery workers: tokio tasks looping on `Webhooks::deliver_next`, woken
/// at once by a delivery queued in this process and polling for those queued elsewhere. Apart
/// from the ingestion workers, so that a delivery never waits behind a long ingestion.
#[derive(Debug)]
pub struct DeliveryPool {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DeliveryPool {
    /// Starts `count` delivery workers on the current runtime.
    #[must_use]
    pub fn start(
        webhooks: Arc<webhooks::Webhooks>,
        wake: Arc<Wake>,
        count: usize,
        poll: Duration,
    ) -> Self {
        let (stop, rx) = watch::channel(false);
        let tasks = (0..count)
            .map(|n| tokio::spawn(deliver(n, webhooks.clone(), wake.clone(), poll, rx.clone())))
            .collect();
        Self { stop, tasks }
    }

    /// Stops taking deliveries and waits up to `grace` for the attempts in hand; one still
    /// running after that is taken over by another worker when its lease ends.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                "webhook workers did not finish in time; their deliveries will be retried"
            );
        }
    }
}

async fn deliver(
    n: usize,
    webhooks: Arc<webhooks::Webhooks>,
    wake: Arc<Wake>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            break;
        }
        let idle = match webhooks.deliver_next().await {
            Ok(Some(outcome)) => {
                tracing::debug!(worker = n, ?outcome, "webhook delivery attempt ended");
                false
            }
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(worker = n, error = ?e, "the webhook queue failed; backing off");
                true
            }
        };
        if idle {
            tokio::select! {
                () = wake.0.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = stop.changed() => break,
            }
        }
    }
}

/// What workers run.
#[derive(Debug, Clone)]
pub struct Work {
    /// The ingestion pipeline (first).
    pub ingestion: Arc<Ingestion>,
    /// Re-embedding (when no job is due).
    pub reembed: Arc<Reembedder>,
}

/// Running workers.
#[derive(Debug)]
pub struct WorkerPool {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `count` workers on the current runtime.
    #[must_use]
    pub fn start(work: Work, wake: Arc<Wake>, count: usize, poll: Duration) -> Self {
        let (stop, rx) = watch::channel(false);
        if count > 0 {
            // Once per start: collections that follow the default model re-embed when it
            // changed, and spaces left retired by an interrupted cut-over are dropped.
            let reembed = work.reembed.clone();
            tokio::spawn(async move {
                match reembed.follow_default_model().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        spaces = n,
                        "the default embedding model changed; re-embedding in the background"
                    ),
                    Err(e) => tracing::warn!(error = ?e, "checking embedding models failed"),
                }
                if let Err(e) = reembed.drop_retired().await {
                    tracing::warn!(error = ?e, "dropping retired embedding spaces failed");
                }
            });
        }
        let tasks = (0..count)
            .map(|n| tokio::spawn(run(n, work.clone(), wake.clone(), poll, rx.clone())))
            .collect();
        if count > 0 {
            tracing::info!(workers = count, "ingestion workers started");
        }
        Self { stop, tasks }
    }

    /// Stops taking jobs and waits up to `grace` for the jobs in hand; a job still running
    /// after that is abandoned, and its lease expiry hands it to another worker.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("ingestion workers did not finish in time; their jobs will be retried");
        }
    }
}

async fn run(
    n: usize,
    work: Work,
    wake: Arc<Wake>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            break;
        }
        let mut idle = match work.ingestion.run_next().await {
            Ok(Some(_)) => false,
            Ok(None) => true,
            Err(e) => {
                tracing::error!(worker = n, error = ?e, "the job queue failed; backing off");
                true
            }
        };
        if idle {
            idle = match work.reembed.run_next().await {
                Ok(Some(outcome)) => {
                    tracing::info!(worker = n, ?outcome, "re-embedding run ended");
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(worker = n, error = ?e, "re-embedding failed; it resumes later");
                    true
                }
            };
        }
        if idle {
            tokio::select! {
                () = wake.0.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = stop.changed() => break,
            }
        }
    }
    tracing::debug!(worker = n, "ingestion worker stopped");
}

/// How often the database is swept for the parts of uploads that never finished.
const SWEEP_EVERY: Duration = Duration::from_secs(3_600);

/// Ends, now and then every `every`, the answers left `streaming` by a server that stopped
/// ([`chat::Chat::sweep_abandoned`]: `incomplete`, billed for their last checkpoint). Every
/// server runs it; of several, one ends each answer.
pub fn sweep_abandoned_answers(chat: Arc<chat::Chat>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match chat.sweep_abandoned().await {
                Ok(0) => {}
                Ok(answers) => tracing::info!(answers, "ended answers left by a stopped server"),
                Err(e) => tracing::warn!(error = ?e, "sweeping abandoned answers failed"),
            }
        }
    })
}

/// Removes, now and then hourly, what uploads cut off mid-way left in the database blob store,
/// and files no document names any more (a deleted organization's), once older than
/// [`SqlStore::BLOB_UPLOAD_STALE_AFTER`]. Harmless with the filesystem store.
pub fn sweep_abandoned_uploads(store: SqlStore) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            every.tick().await;
            let now = SystemClock.now();
            match store
                .sweep_blob_parts(now, SqlStore::BLOB_UPLOAD_STALE_AFTER)
                .await
            {
                Ok(0) => {}
                Ok(parts) => tracing::info!(parts, "removed the parts of abandoned uploads"),
                Err(e) => tracing::warn!(error = ?e, "sweeping abandoned uploads failed"),
            }
            match store
                .sweep_orphan_blobs(now, SqlStore::BLOB_UPLOAD_STALE_AFTER)
                .await
            {
                Ok(0) => {}
                Ok(blobs) => tracing::info!(blobs, "removed files no document names"),
                Err(e) => tracing::warn!(error = ?e, "sweeping orphan files failed"),
            }
        }
    })
}
