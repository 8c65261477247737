//! Workflows: named background tasks an organization triggers or schedules (summarize a
//! collection, analyze documents, re-index a collection, export usage as CSV), run from a
//! durable leased queue with progress, cancel and a result. See `docs/workflows.md`.
//!
//! - [`model`]: the kinds and their validated inputs, `Run` (a row of the queue), `Schedule`.
//! - [`cron`]: the cron expressions of schedules.
//! - [`ports`]: `WorkflowStore` (the queue and the schedules), `Actions` (what a run does in
//!   the other domains), `RunSignal`.
//! - [`service`]: `Workflows`, the use cases, `run_next` (what a worker runs) and `fire_due`
//!   (what the scheduler runs: exactly once per occurrence, by a compare-and-set).

pub mod cron;
pub mod error;
pub mod model;
pub mod ports;
pub mod service;

pub use cron::CronExpr;
pub use error::WorkflowError;
pub use model::{
    Beat, Claim, Ending, Input, Run, RunFilter, RunId, RunStatus, Schedule, ScheduleId, Style,
    UsageWindow, WorkflowKind,
};
pub use ports::{
    ActionError, Actions, DocumentInfo, NoSignal, RunSignal, StoreError, WorkflowStore,
};
pub use service::{ExportArchive, RunOutcome, WorkflowPolicy, WorkflowPorts, Workflows};
