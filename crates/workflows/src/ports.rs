//! What the workflows domain needs from outside: storage (the run queue and the schedules),
//! the actions runs take in the other domains, and the signal that wakes a local worker.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use documents::{CollectionId, DocumentId};
use kernel::{InvalidInput, Page, PageRequest, Role, TenantContext, TenantId};
use time::OffsetDateTime;

use crate::model::{
    Beat, Claim, Ending, Run, RunFilter, RunId, Schedule, ScheduleId, Style, UsageWindow,
};

/// Failures of [`WorkflowStore`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A malformed request (a cursor not made by this list).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Storage failed; the cause chain is logged, never shown.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Stores runs (a leased queue, as the ingestion jobs and the webhook deliveries) and
/// schedules.
///
/// Contract (checked on every adapter by `testkit::contract::workflows`): every method but
/// `claim`, `due_schedules` and `expired_archives` is scoped to `tenant`, and another tenant's run or schedule is
/// "not found". `claim` leases one due run (`queued`, or `running` with an ended lease: its
/// worker died) to one caller at a time across every process, counting an attempt;
/// `heartbeat` and `finish` change nothing unless the claim's lease still holds. `fire` moves a
/// schedule's `next_run_at` from `expected` to `next` and queues `run` in one transaction, only
/// if `next_run_at` still is `expected` (a compare-and-set): of several schedulers firing the
/// same occurrence, one queues the run.
#[async_trait]
pub trait WorkflowStore: Send + Sync + fmt::Debug {
    /// Queues a run.
    async fn enqueue(&self, run: &Run) -> Result<(), StoreError>;

    /// One run.
    async fn find(&self, tenant: TenantId, id: RunId) -> Result<Option<Run>, StoreError>;

    /// The tenant's runs, newest first.
    async fn list(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        page: &PageRequest,
    ) -> Result<Page<Run>, StoreError>;

    /// Cancels a queued run (it ends `cancelled` at `now`) or asks a running one to stop;
    /// the run as it is after, `None` when there is no such run.
    async fn cancel(
        &self,
        tenant: TenantId,
        id: RunId,
        now: OffsetDateTime,
    ) -> Result<Option<Run>, StoreError>;

    /// Leases the oldest due run until `now + lease` (status `running`, one more attempt).
    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<Claim>, StoreError>;

    /// Records progress and extends the lease to `until`.
    async fn heartbeat(
        &self,
        claim: &Claim,
        progress: f32,
        until: OffsetDateTime,
    ) -> Result<Beat, StoreError>;

    /// Ends the run; false (nothing written) when the lease no longer holds.
    async fn finish(
        &self,
        claim: &Claim,
        ending: &Ending,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Stores a schedule.
    async fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError>;

    /// The tenant's schedules, oldest first.
    async fn schedules(&self, tenant: TenantId) -> Result<Vec<Schedule>, StoreError>;

    /// Deletes a schedule (its runs stay); whether it existed.
    async fn delete_schedule(&self, tenant: TenantId, id: ScheduleId) -> Result<bool, StoreError>;

    /// Up to `limit` schedules due at `now` (`next_run_at <= now`), earliest first, across
    /// tenants.
    async fn due_schedules(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Schedule>, StoreError>;

    /// Up to `limit` succeeded exports whose archive expired at `now` and is not yet
    /// deleted, earliest expiry first, across tenants (the sweep's look).
    async fn expired_archives(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError>;

    /// Marks the export's archive deleted (`expired_archives` no longer lists it); whether
    /// this call marked it.
    async fn archive_deleted(&self, tenant: TenantId, id: RunId) -> Result<bool, StoreError>;

    /// The compare-and-set of a firing (see the trait's contract); whether this call fired.
    async fn fire(
        &self,
        schedule: &Schedule,
        next: OffsetDateTime,
        run: &Run,
    ) -> Result<bool, StoreError>;
}

/// A document as the workflows see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentInfo {
    /// Id.
    pub id: DocumentId,
    /// Name.
    pub name: String,
    /// Whether it is ready (searchable, with text).
    pub ready: bool,
    /// Pages (PDF).
    pub pages: Option<u32>,
    /// Chunks.
    pub chunks: u32,
    /// Tokens.
    pub tokens: u64,
}

/// What an action can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No such collection or document in the organization.
    #[error("{0}")]
    NotFound(String),
    /// Refused for a reason the client may read (quota spent, the model's error, ...).
    #[error("{0}")]
    Refused(String),
    /// Anything else; logged, shown as an internal error.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// What runs do in the other domains, for the tenant of `ctx` (implemented by the
/// composition root over documents, chat and billing). Every call that uses a model is
/// metered against the organization's plan, as chat is.
#[async_trait]
pub trait Actions: Send + Sync + fmt::Debug {
    /// The role the principal of `ctx` holds in its tenant now (an API key: its role capped by
    /// its creator's, `None` once revoked); `None` when it is no longer a member.
    ///
    /// # Errors
    /// Storage failures.
    async fn current_role(&self, ctx: &TenantContext) -> Result<Option<Role>, ActionError>;

    /// The collection's documents (only the ready ones if `ready_only`), oldest first, at most
    /// `limit`.
    ///
    /// # Errors
    /// `NotFound` when the collection is not the tenant's.
    async fn collection_documents(
        &self,
        ctx: &TenantContext,
        collection: CollectionId,
        ready_only: bool,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>, ActionError>;

    /// One document.
    ///
    /// # Errors
    /// `NotFound` when it is not the tenant's.
    async fn document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<DocumentInfo, ActionError>;

    /// A summary of a document.
    ///
    /// # Errors
    /// As the model's summary (quota included).
    async fn summarize_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
        style: Style,
    ) -> Result<String, ActionError>;

    /// A summary of a text (the summaries of a collection's documents).
    ///
    /// # Errors
    /// As the model's summary (quota included).
    async fn summarize_text(
        &self,
        ctx: &TenantContext,
        text: String,
        style: Style,
    ) -> Result<String, ActionError>;

    /// Summary, keywords, entities and sentiment of a document, as a JSON object.
    ///
    /// # Errors
    /// As the model's analysis (quota included).
    async fn analyze_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<serde_json::Value, ActionError>;

    /// Queues a re-index of a document; the ingestion job's id.
    ///
    /// # Errors
    /// `NotFound` when the document is gone.
    async fn reindex_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<String, ActionError>;

    /// The organization's usage over `window` as CSV (header included) with its row count.
    ///
    /// # Errors
    /// Storage failures.
    async fn usage_csv(
        &self,
        ctx: &TenantContext,
        window: UsageWindow,
    ) -> Result<(String, usize), ActionError>;

    /// Builds the organization's export archive for run `run` and stores it where
    /// `GET /orgs/{org}/exports/{run}/download` finds it; what it holds (bytes, checksum,
    /// counts, expiry) as a JSON object, the run's result.
    ///
    /// # Errors
    /// Storage failures.
    async fn export_organization(
        &self,
        ctx: &TenantContext,
        run: crate::model::RunId,
    ) -> Result<serde_json::Value, ActionError>;

    /// The archive of the organization's export `run`, opened to be read part by part
    /// (`NotFound` once deleted).
    ///
    /// # Errors
    /// `NotFound`; storage failures.
    async fn read_export(
        &self,
        ctx: &TenantContext,
        run: crate::model::RunId,
    ) -> Result<Box<dyn documents::BlobReader>, ActionError>;

    /// Deletes the archive of export `run` (its time is up); deleting a missing one succeeds.
    ///
    /// # Errors
    /// Storage failures.
    async fn delete_export(
        &self,
        ctx: &TenantContext,
        run: crate::model::RunId,
    ) -> Result<(), ActionError>;
}

/// Wakes a local workflow worker when a run is queued.
pub trait RunSignal: Send + Sync + fmt::Debug {
    /// A run was queued.
    fn queued(&self);
}

/// Wakes nobody (workers poll).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSignal;

impl RunSignal for NoSignal {
    fn queued(&self) {}
}
