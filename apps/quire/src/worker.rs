//! Ingestion workers: tokio tasks that take jobs from the durable queue one at a time, and,
//! when no job is due, re-embed a collection whose embedding model changed; webhook delivery
//! workers ([`DeliveryPool`]), which take deliveries from their own queue; workflow workers
//! ([`WorkflowPool`]), which take workflow runs from theirs and fire due schedules.
//!
//! They run inside `quire serve` (`documents.workers`, default the cores + 1) and as separate
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

impl workflows::RunSignal for Wake {
    fn queued(&self) {
        self.0.notify_one();
    }
}

/// Tasks that each loop on one step, and wait, when the step found nothing to do, for a local
/// wake-up, the poll interval or the stop; what [`WorkerPool`] and [`DeliveryPool`] run.
///
/// Idle, only the first task polls every interval; the others poll every `count` intervals
/// and otherwise wait to be woken: by work queued in this process, or by a task that found
/// work (it wakes one idle peer to look for more, so that a burst found by polling spreads
/// over the idle tasks). Idle tasks so cost about one look per interval, whatever their
/// number (on SQLite, a read each).
#[derive(Debug)]
struct Loops {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Loops {
    /// Starts `count` tasks running `step(n)` (which answers whether it was idle).
    fn start<S, F>(count: usize, wake: Arc<Wake>, poll: Duration, step: S) -> Self
    where
        S: Fn(usize) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = bool> + Send,
    {
        let (stop, rx) = watch::channel(false);
        let tasks = (0..count)
            .map(|n| {
                let (step, wake, mut stop) = (step.clone(), wake.clone(), rx.clone());
                let every = idle_poll(n, count, poll);
                tokio::spawn(async move {
                    let mut idle_before = true;
                    loop {
                        if *stop.borrow() {
                            break;
                        }
                        let idle = step(n).await;
                        if !idle && idle_before {
                            // Found work after waiting: a peer may find more.
                            wake.0.notify_one();
                        }
                        idle_before = idle;
                        if idle {
                            tokio::select! {
                                () = wake.0.notified() => {}
                                () = tokio::time::sleep(every) => {}
                                _ = stop.changed() => break,
                            }
                        }
                    }
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops taking work and waits up to `grace` for the work in hand; whether it all ended.
    async fn stop(self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        tokio::time::timeout(grace, all).await.is_ok()
    }
}

/// How often idle task `n` of `count` looks for work queued elsewhere: the first every
/// `poll`, the others every `count` polls.
fn idle_poll(n: usize, count: usize, poll: Duration) -> Duration {
    if n == 0 {
        poll
    } else {
        poll.saturating_mul(u32::try_from(count).unwrap_or(u32::MAX))
    }
}

/// Running webhook delivery workers: tasks looping on `Webhooks::deliver_next`, woken at once
/// by a delivery queued in this process and polling for those queued elsewhere. Apart from the
/// ingestion workers, so that a delivery never waits behind a long ingestion.
#[derive(Debug)]
pub struct DeliveryPool(Loops);

impl DeliveryPool {
    /// Starts `count` delivery workers on the current runtime.
    #[must_use]
    pub fn start(
        webhooks: Arc<webhooks::Webhooks>,
        wake: Arc<Wake>,
        count: usize,
        poll: Duration,
    ) -> Self {
        Self(Loops::start(count, wake, poll, move |n| {
            let webhooks = webhooks.clone();
            async move {
                match webhooks.deliver_next().await {
                    Ok(Some(outcome)) => {
                        tracing::debug!(worker = n, ?outcome, "webhook delivery attempt ended");
                        false
                    }
                    Ok(None) => true,
                    Err(e) => {
                        tracing::warn!(worker = n, error = ?e, "the webhook queue failed; backing off");
                        true
                    }
                }
            }
        }))
    }

    /// Stops taking deliveries and waits up to `grace` for the attempts in hand; one still
    /// running after that is taken over by another worker when its lease ends.
    pub async fn shutdown(self, grace: Duration) {
        if !self.0.stop(grace).await {
            tracing::warn!(
                "webhook workers did not finish in time; their deliveries will be retried"
            );
        }
    }
}

/// Running workflow workers: tasks looping on `Workflows::run_next`, woken at once by a run
/// queued in this process and polling for those queued elsewhere. The first also fires due
/// schedules (`Workflows::fire_due`) and deletes expired export archives
/// (`Workflows::sweep_expired_exports`) on each turn: every server may, since a firing is a
/// compare-and-set in the database, so an occurrence runs once however many servers run, and
/// deleting an archive and marking it deleted are idempotent.
#[derive(Debug)]
pub struct WorkflowPool(Loops);

impl WorkflowPool {
    /// Starts `count` workflow workers on the current runtime.
    #[must_use]
    pub fn start(
        workflows: Arc<workflows::Workflows>,
        wake: Arc<Wake>,
        count: usize,
        poll: Duration,
    ) -> Self {
        Self(Loops::start(count, wake, poll, move |n| {
            let workflows = workflows.clone();
            async move {
                if n == 0 {
                    if let Err(e) = workflows.fire_due().await {
                        tracing::warn!(error = ?e, "firing due schedules failed; retrying later");
                    }
                    if let Err(e) = workflows.sweep_expired_exports().await {
                        tracing::warn!(error = ?e, "sweeping expired exports failed; retrying later");
                    }
                }
                match workflows.run_next().await {
                    Ok(Some(outcome)) => {
                        tracing::debug!(worker = n, ?outcome, "workflow run ended");
                        false
                    }
                    Ok(None) => true,
                    Err(e) => {
                        tracing::warn!(worker = n, error = ?e, "the workflow queue failed; backing off");
                        true
                    }
                }
            }
        }))
    }

    /// Stops taking runs and waits up to `grace` for the runs in hand; one still running after
    /// that is taken over by another worker when its lease ends.
    pub async fn shutdown(self, grace: Duration) {
        if !self.0.stop(grace).await {
            tracing::warn!("workflow workers did not finish in time; their runs will be resumed");
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
pub struct WorkerPool(Loops);

impl WorkerPool {
    /// Starts `count` workers on the current runtime.
    #[must_use]
    pub fn start(work: Work, wake: Arc<Wake>, count: usize, poll: Duration) -> Self {
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
        if count > 0 {
            tracing::info!(workers = count, "ingestion workers started");
        }
        Self(Loops::start(count, wake, poll, move |n| {
            let work = work.clone();
            async move { step(n, &work).await }
        }))
    }

    /// Stops taking jobs and waits up to `grace` for the jobs in hand; a job still running
    /// after that is abandoned, and its lease expiry hands it to another worker.
    pub async fn shutdown(self, grace: Duration) {
        if !self.0.stop(grace).await {
            tracing::warn!("ingestion workers did not finish in time; their jobs will be retried");
        }
    }
}

/// One turn of an ingestion worker: the next job, or else a re-embedding run; whether it
/// was idle.
async fn step(n: usize, work: &Work) -> bool {
    let idle = match work.ingestion.run_next().await {
        Ok(Some(_)) => false,
        Ok(None) => true,
        Err(e) => {
            tracing::error!(worker = n, error = ?e, "the job queue failed; backing off");
            true
        }
    };
    if !idle {
        return false;
    }
    match work.reembed.run_next().await {
        Ok(Some(outcome)) => {
            tracing::info!(worker = n, ?outcome, "re-embedding run ended");
            false
        }
        Ok(None) => true,
        Err(e) => {
            tracing::warn!(worker = n, error = ?e, "re-embedding failed; it resumes later");
            true
        }
    }
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

/// Runs the retention sweep every `every`: each round, the process that takes the round's
/// lease in the cache (`retention:sweep`, held for `every`) sweeps; the others skip it. A
/// cache that fails skips the round (the sweep is idempotent; the next round catches up).
pub fn sweep_retention(
    retention: crate::retention::Retention,
    cache: Arc<dyn kernel::cache::Cache>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        let key = kernel::cache::CacheKey::global("retention", &["sweep"]);
        loop {
            ticks.tick().await;
            match cache.set_if_absent(&key, b"1", every).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = ?e, "the retention sweep skipped a round: the cache failed");
                    continue;
                }
            }
            match retention.sweep(SystemClock.now()).await {
                Ok(s)
                    if s == crate::retention::Swept {
                        organizations: s.organizations,
                        ..Default::default()
                    } => {}
                Ok(s) => tracing::info!(
                    messages = s.messages,
                    sessions = s.sessions,
                    documents = s.documents,
                    access_events = s.access_events,
                    "retention sweep"
                ),
                Err(e) => tracing::warn!(error = ?e, "the retention sweep failed"),
            }
        }
    })
}
