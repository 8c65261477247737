//! `Workflows`: the use cases (trigger, list, get, cancel, schedules), `run_next` (what a
//! workflow worker runs: claim a run, take its steps with a heartbeat between each, end it and
//! publish `workflow.completed`) and `fire_due` (what the scheduler runs).

use std::sync::Arc;
use std::time::Duration;

use kernel::{
    Clock, Event, EventKind, Events, InvalidInput, Page, PageRequest, Role, TenantContext,
};
use serde_json::{Value, json};

use crate::cron::CronExpr;
use crate::error::WorkflowError;
use crate::model::{
    Beat, Claim, Ending, Input, MAX_ATTEMPTS, MAX_DOCUMENTS, MAX_ERROR_CHARS, MAX_EXPORT_BYTES,
    MAX_REINDEX, MAX_SCHEDULES, MAX_TEXT_CHARS, Run, RunFilter, RunId, Schedule, ScheduleId,
    WorkflowKind, clip,
};
use crate::ports::{ActionError, Actions, RunSignal, WorkflowStore};

/// How runs are leased and schedules fired.
#[derive(Debug, Clone)]
pub struct WorkflowPolicy {
    /// How long a worker holds a run between heartbeats (one step must fit in it).
    pub lease: Duration,
    /// Schedules fired per scheduler pass at most.
    pub schedule_batch: usize,
}

impl Default for WorkflowPolicy {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(300),
            schedule_batch: 50,
        }
    }
}

/// The ports `Workflows` runs on.
#[derive(Debug, Clone)]
pub struct WorkflowPorts {
    /// Storage.
    pub store: Arc<dyn WorkflowStore>,
    /// What runs do in the other domains.
    pub actions: Arc<dyn Actions>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Wakes a local worker.
    pub signal: Arc<dyn RunSignal>,
    /// Where `workflow.completed` goes.
    pub events: Arc<dyn Events>,
}

/// What a worker's `run_next` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The run succeeded.
    Succeeded,
    /// It failed.
    Failed,
    /// It was cancelled.
    Cancelled,
    /// Another worker took it over, or it ended meanwhile: nothing written.
    LeaseLost,
}

/// The workflows use cases.
#[derive(Debug, Clone)]
pub struct Workflows {
    ports: WorkflowPorts,
    policy: WorkflowPolicy,
}

/// Why a run stopped before its end.
enum Halt {
    Cancel,
    Lost,
    Failed(String),
}

impl From<ActionError> for Halt {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::NotFound(m) | ActionError::Refused(m) => Halt::Failed(m),
            ActionError::Unknown(e) => {
                tracing::error!(error = ?e, "a workflow step failed");
                Halt::Failed("an internal error ended the run".to_owned())
            }
        }
    }
}

fn require(ctx: &TenantContext, role: Role, what: &str) -> Result<(), WorkflowError> {
    if ctx.role().satisfies(role) {
        Ok(())
    } else {
        Err(WorkflowError::Forbidden(format!(
            "{what} needs the {} role or above",
            role.as_str()
        )))
    }
}

fn parse_kind(name: &str) -> Result<WorkflowKind, WorkflowError> {
    // The organization's export has routes of its own (owners, audited): not through here.
    WorkflowKind::parse(name)
        .filter(|k| k.triggerable())
        .ok_or_else(|| {
            let names: Vec<&str> = WorkflowKind::ALL.iter().map(|k| k.as_str()).collect();
            InvalidInput::field("workflow", format!("must be one of {}", names.join(", "))).into()
        })
}

/// A claimed run's heartbeat between steps.
struct Steps<'a> {
    store: &'a dyn WorkflowStore,
    clock: &'a dyn Clock,
    lease: Duration,
    claim: &'a Claim,
}

impl Steps<'_> {
    /// Records `progress` and extends the lease; stops the run on a cancel or a lost lease.
    async fn beat(&self, progress: f32) -> Result<(), Halt> {
        let now = self.clock.now();
        let until = now + self.lease;
        match self
            .store
            .heartbeat(self.claim, progress.clamp(0.0, 1.0), until)
            .await
        {
            Ok(Beat::Held) => Ok(()),
            Ok(Beat::CancelRequested) => Err(Halt::Cancel),
            Ok(Beat::Lost) => Err(Halt::Lost),
            Err(e) => {
                // The lease runs out and another worker takes the run over.
                tracing::warn!(error = ?e, run = %self.claim.run.id, "a heartbeat failed; stopping the run");
                Err(Halt::Lost)
            }
        }
    }

    /// Runs one long step `work` (an organization's export), beating every third of the lease
    /// while it runs, so that a step longer than the lease keeps its run. A cancel or a lost
    /// lease drops `work` (stops it at its next await) and halts the run.
    async fn beating<F: std::future::Future>(
        &self,
        progress: f32,
        work: F,
    ) -> Result<F::Output, Halt> {
        let every = (self.lease / 3).max(Duration::from_millis(10));
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                () = tokio::time::sleep(every) => self.beat(progress).await?,
            }
        }
    }
}

/// An organization's export is its owners' business: below owner, its run shows without its
/// result (what it holds and where to download it).
fn hide_from(ctx: &TenantContext, run: &mut Run) {
    if run.kind == WorkflowKind::ExportOrganization && !ctx.role().satisfies(Role::Owner) {
        run.result = None;
    }
}

#[allow(clippy::cast_precision_loss)]
fn share(done: usize, of: usize) -> f32 {
    if of == 0 {
        1.0
    } else {
        done as f32 / of as f32
    }
}

impl Workflows {
    /// The use cases over `ports`.
    #[must_use]
    pub fn new(ports: WorkflowPorts, policy: WorkflowPolicy) -> Self {
        Self { ports, policy }
    }

    /// Checks that what the input names is the tenant's (at trigger time, so a typo is a 422
    /// rather than a failed run).
    async fn check(&self, ctx: &TenantContext, input: &Input) -> Result<(), WorkflowError> {
        let actions = &self.ports.actions;
        let missing =
            |field: String| InvalidInput::field(field, "no such item in this organization");
        match input {
            Input::SummarizeCollection { collection, .. }
            | Input::ReindexCollection { collection } => {
                match actions
                    .collection_documents(ctx, *collection, true, 1)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(ActionError::NotFound(_)) => {
                        Err(missing("input.collection_id".to_owned()).into())
                    }
                    Err(e) => Err(WorkflowError::Store(anyhow::anyhow!(e))),
                }
            }
            Input::AnalyzeDocuments { documents } => {
                for (i, id) in documents.iter().enumerate() {
                    match actions.document(ctx, *id).await {
                        Ok(_) => {}
                        Err(ActionError::NotFound(_)) => {
                            return Err(missing(format!("input.document_ids[{i}]")).into());
                        }
                        Err(e) => return Err(WorkflowError::Store(anyhow::anyhow!(e))),
                    }
                }
                Ok(())
            }
            Input::ExportUsage { .. } | Input::ExportOrganization => Ok(()),
        }
    }

    /// Validates a workflow's name, its input and the caller's role.
    async fn prepare(
        &self,
        ctx: &TenantContext,
        workflow: &str,
        input: &Value,
    ) -> Result<Input, WorkflowError> {
        let kind = parse_kind(workflow)?;
        require(ctx, kind.min_role(), kind.as_str())?;
        let input = Input::parse(kind, input)?;
        self.check(ctx, &input).await?;
        Ok(input)
    }

    /// Queues a run of `workflow` with `input`.
    ///
    /// # Errors
    /// `Invalid` for an unknown workflow or a bad input, `Forbidden` below the workflow's role.
    pub async fn trigger(
        &self,
        ctx: &TenantContext,
        workflow: &str,
        input: &Value,
    ) -> Result<Run, WorkflowError> {
        let input = self.prepare(ctx, workflow, input).await?;
        let run = Run::queued(
            ctx.tenant_id(),
            &input,
            ctx.principal(),
            ctx.role(),
            None,
            self.ports.clock.now(),
        );
        self.ports.store.enqueue(&run).await?;
        self.ports.signal.queued();
        tracing::info!(tenant = %ctx.tenant_id(), run = %run.id, workflow = run.kind.as_str(), "workflow run queued");
        Ok(run)
    }

    /// Queues an export of the whole organization (owners only; `POST /orgs/{org}/exports`).
    ///
    /// # Errors
    /// `Forbidden` below owner; storage.
    pub async fn export_organization(&self, ctx: &TenantContext) -> Result<Run, WorkflowError> {
        let kind = WorkflowKind::ExportOrganization;
        require(ctx, kind.min_role(), "exporting the organization")?;
        let run = Run::queued(
            ctx.tenant_id(),
            &Input::ExportOrganization,
            ctx.principal(),
            ctx.role(),
            None,
            self.ports.clock.now(),
        );
        self.ports.store.enqueue(&run).await?;
        self.ports.signal.queued();
        tracing::info!(tenant = %ctx.tenant_id(), run = %run.id, "organization export queued");
        Ok(run)
    }

    /// One export of the organization (owners only): `NotFound` for a run of another kind.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden` below owner.
    pub async fn export_run(&self, ctx: &TenantContext, id: RunId) -> Result<Run, WorkflowError> {
        require(ctx, Role::Owner, "reading an export")?;
        let run = self.run(ctx, id).await?;
        if run.kind == WorkflowKind::ExportOrganization {
            Ok(run)
        } else {
            Err(WorkflowError::NotFound)
        }
    }

    /// The archive of an export (owners only) while its time lasts; an expired archive is
    /// deleted here if the sweep has not yet.
    ///
    /// # Errors
    /// `NotFound` (no such export, or one that failed), `Forbidden` below owner, `Conflict`
    /// before it ends, `Gone` once expired.
    pub async fn download_export(
        &self,
        ctx: &TenantContext,
        id: RunId,
    ) -> Result<ExportArchive, WorkflowError> {
        let run = self.export_run(ctx, id).await?;
        if !run.status.is_final() {
            return Err(WorkflowError::Conflict(
                "the export has not ended yet".to_owned(),
            ));
        }
        let result = run.result.as_ref().ok_or(WorkflowError::NotFound)?;
        let expires = expires_at(result).ok_or(WorkflowError::NotFound)?;
        if self.ports.clock.now() >= expires {
            match self.ports.actions.delete_export(ctx, id).await {
                Ok(()) => {
                    self.ports
                        .store
                        .archive_deleted(ctx.tenant_id(), id)
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(error = ?e, run = %id, "deleting an expired export failed");
                }
            }
            return Err(WorkflowError::Gone(
                "the export expired; start a new one".to_owned(),
            ));
        }
        let sha256 = result
            .get("sha256")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match self.ports.actions.read_export(ctx, id).await {
            Ok(reader) => Ok(ExportArchive { reader, sha256 }),
            Err(ActionError::NotFound(_)) => Err(WorkflowError::Gone(
                "the export's archive was deleted; start a new one".to_owned(),
            )),
            Err(e) => Err(WorkflowError::Store(anyhow::anyhow!(e))),
        }
    }

    /// The organization's runs, newest first.
    ///
    /// # Errors
    /// A foreign cursor; storage.
    pub async fn runs(
        &self,
        ctx: &TenantContext,
        filter: &RunFilter,
        page: &PageRequest,
    ) -> Result<Page<Run>, WorkflowError> {
        let mut page = self.ports.store.list(ctx.tenant_id(), filter, page).await?;
        for run in &mut page.items {
            hide_from(ctx, run);
        }
        Ok(page)
    }

    /// One run.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn run(&self, ctx: &TenantContext, id: RunId) -> Result<Run, WorkflowError> {
        let mut run = self
            .ports
            .store
            .find(ctx.tenant_id(), id)
            .await?
            .ok_or(WorkflowError::NotFound)?;
        hide_from(ctx, &mut run);
        Ok(run)
    }

    /// An export's CSV (the role its kind needs).
    ///
    /// # Errors
    /// `NotFound` (no such run, or one without a CSV), `Forbidden`, `Conflict` before it ends.
    pub async fn download(&self, ctx: &TenantContext, id: RunId) -> Result<String, WorkflowError> {
        let run = self.run(ctx, id).await?;
        require(ctx, run.kind.min_role(), "reading this result")?;
        if !run.status.is_final() {
            return Err(WorkflowError::Conflict(
                "the run has not ended yet".to_owned(),
            ));
        }
        run.artifact.ok_or(WorkflowError::NotFound)
    }

    /// Cancels a queued run, or asks a running one to stop at its next step.
    ///
    /// # Errors
    /// `NotFound`, `Forbidden` below the workflow's role, `Conflict` when it already ended.
    pub async fn cancel(&self, ctx: &TenantContext, id: RunId) -> Result<Run, WorkflowError> {
        let run = self.run(ctx, id).await?;
        require(ctx, run.kind.min_role(), "cancelling this workflow")?;
        if run.status.is_final() {
            return Err(WorkflowError::Conflict(format!(
                "the run already ended ({})",
                run.status.as_str()
            )));
        }
        let now = self.ports.clock.now();
        let after = self
            .ports
            .store
            .cancel(ctx.tenant_id(), id, now)
            .await?
            .ok_or(WorkflowError::NotFound)?;
        if after.status == crate::model::RunStatus::Cancelled {
            self.publish(&after);
        }
        tracing::info!(tenant = %ctx.tenant_id(), run = %id, "workflow run cancel asked");
        Ok(after)
    }

    /// Schedules `workflow` with `input` on `cron` (UTC) for the organization (admin+).
    ///
    /// # Errors
    /// As [`Workflows::trigger`], `Invalid` for a bad expression (field `cron_field`),
    /// `Forbidden` below admin, `TooMany` past [`MAX_SCHEDULES`].
    pub async fn schedule(
        &self,
        ctx: &TenantContext,
        workflow: &str,
        input: &Value,
        cron: &str,
        cron_field: &str,
    ) -> Result<Schedule, WorkflowError> {
        require(ctx, Role::Admin, "scheduling a workflow")?;
        let cron = CronExpr::parse(cron, cron_field)?;
        let input = self.prepare(ctx, workflow, input).await?;
        let tenant = ctx.tenant_id();
        if self.ports.store.schedules(tenant).await?.len() >= MAX_SCHEDULES {
            return Err(WorkflowError::TooMany(MAX_SCHEDULES));
        }
        let now = self.ports.clock.now();
        let next = cron
            .next_after(now)
            .ok_or_else(|| InvalidInput::field(cron_field, "never matches a coming date"))?;
        let schedule = Schedule {
            id: ScheduleId::new(),
            tenant_id: tenant,
            kind: input.kind(),
            input: input.to_json(),
            cron,
            next_run_at: next,
            actor: ctx.principal(),
            role: ctx.role(),
            created_at: now,
        };
        self.ports.store.create_schedule(&schedule).await?;
        tracing::info!(tenant = %tenant, schedule = %schedule.id, "workflow scheduled");
        Ok(schedule)
    }

    /// The organization's schedules.
    ///
    /// # Errors
    /// Storage.
    pub async fn schedules(&self, ctx: &TenantContext) -> Result<Vec<Schedule>, WorkflowError> {
        Ok(self.ports.store.schedules(ctx.tenant_id()).await?)
    }

    /// Deletes a schedule (admin+); its runs stay.
    ///
    /// # Errors
    /// `Forbidden` below admin, `NotFound`.
    pub async fn unschedule(
        &self,
        ctx: &TenantContext,
        id: ScheduleId,
    ) -> Result<(), WorkflowError> {
        require(ctx, Role::Admin, "deleting a schedule")?;
        if self
            .ports
            .store
            .delete_schedule(ctx.tenant_id(), id)
            .await?
        {
            Ok(())
        } else {
            Err(WorkflowError::NotFound)
        }
    }

    /// Deletes the archives of exports whose `expires_at` has passed, up to
    /// `schedule_batch` per call, and marks each run swept so it is not looked at again;
    /// the number deleted. Every server's scheduler may call it: deleting a deleted archive
    /// and marking a marked run change nothing, so several processes do not fight.
    ///
    /// # Errors
    /// Storage (an archive whose deletion failed stays unmarked and is retried next time).
    pub async fn sweep_expired_exports(&self) -> Result<usize, WorkflowError> {
        let now = self.ports.clock.now();
        let expired = self
            .ports
            .store
            .expired_archives(now, self.policy.schedule_batch)
            .await?;
        let mut deleted = 0;
        for run in expired {
            // Acts for the organization of the run only: its archive key is under its prefix.
            let ctx = TenantContext::new(run.tenant_id, run.actor, run.role);
            match self.ports.actions.delete_export(&ctx, run.id).await {
                Ok(()) => {
                    if self
                        .ports
                        .store
                        .archive_deleted(run.tenant_id, run.id)
                        .await?
                    {
                        deleted += 1;
                        tracing::info!(tenant = %run.tenant_id, run = %run.id, "expired export archive deleted");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = ?e, run = %run.id, "deleting an expired export failed; retried later");
                }
            }
        }
        Ok(deleted)
    }

    /// Fires every due schedule once: its next occurrence moves to the first one after now
    /// (occurrences missed while no server ran collapse into this one run), and the run is
    /// queued in the same compare-and-set, so of several servers only one fires it. The
    /// number of runs this call queued.
    ///
    /// # Errors
    /// Storage.
    pub async fn fire_due(&self) -> Result<usize, WorkflowError> {
        let now = self.ports.clock.now();
        let due = self
            .ports
            .store
            .due_schedules(now, self.policy.schedule_batch)
            .await?;
        let mut fired = 0;
        for schedule in due {
            let next = schedule
                .cron
                .next_after(now)
                // No occurrence in the next few years: park it far ahead.
                .unwrap_or(now + time::Duration::days(3_650));
            let input = match Input::parse(schedule.kind, &schedule.input) {
                Ok(i) => i,
                Err(e) => {
                    tracing::error!(schedule = %schedule.id, error = %e, "a stored schedule's input is invalid");
                    continue;
                }
            };
            let run = Run::queued(
                schedule.tenant_id,
                &input,
                schedule.actor,
                schedule.role,
                Some(schedule.id),
                now,
            );
            if self.ports.store.fire(&schedule, next, &run).await? {
                fired += 1;
                tracing::info!(tenant = %schedule.tenant_id, schedule = %schedule.id, run = %run.id, "schedule fired");
            }
        }
        if fired > 0 {
            self.ports.signal.queued();
        }
        Ok(fired)
    }

    /// Claims the next due run, takes its steps and ends it; `Ok(None)` when none is due.
    ///
    /// # Errors
    /// Storage, on the claim or the end (a run left `running` is taken over when its lease
    /// ends).
    pub async fn run_next(&self) -> Result<Option<RunOutcome>, WorkflowError> {
        let now = self.ports.clock.now();
        let Some(claim) = self.ports.store.claim(now, self.policy.lease).await? else {
            return Ok(None);
        };
        let run = &claim.run;
        tracing::info!(tenant = %run.tenant_id, run = %run.id, workflow = run.kind.as_str(), attempt = run.attempts, "workflow run started");
        let ending = if run.cancel_requested {
            Ok(Ending::Cancelled)
        } else if run.attempts > MAX_ATTEMPTS {
            Ok(Ending::Failed(format!(
                "the run was interrupted {MAX_ATTEMPTS} times (its workers stopped)"
            )))
        } else {
            self.execute(&claim).await
        };
        let Ok(ending) = ending else {
            return Ok(Some(RunOutcome::LeaseLost));
        };
        let ending = match ending {
            Ending::Failed(e) => Ending::Failed(clip(&e, MAX_ERROR_CHARS)),
            other => other,
        };
        let now = self.ports.clock.now();
        if !self.ports.store.finish(&claim, &ending, now).await? {
            return Ok(Some(RunOutcome::LeaseLost));
        }
        let mut ended = claim.run.clone();
        ended.status = ending.status();
        self.publish(&ended);
        tracing::info!(tenant = %ended.tenant_id, run = %ended.id, status = ended.status.as_str(), "workflow run ended");
        Ok(Some(match ending {
            Ending::Succeeded { .. } => RunOutcome::Succeeded,
            Ending::Failed(_) => RunOutcome::Failed,
            Ending::Cancelled => RunOutcome::Cancelled,
        }))
    }

    fn publish(&self, run: &Run) {
        self.ports.events.publish(Event {
            tenant: run.tenant_id,
            kind: EventKind::WorkflowCompleted,
            data: json!({
                "run_id": run.id.to_string(),
                "workflow": run.kind.as_str(),
                "status": run.status.as_str(),
                "schedule_id": run.schedule_id.map(|s| s.to_string()),
            }),
        });
    }

    /// Takes the run's steps; `Err(())` when the lease was lost (write nothing more).
    async fn execute(&self, claim: &Claim) -> Result<Ending, ()> {
        let run = &claim.run;
        let Ok(input) = Input::parse(run.kind, &run.input) else {
            return Ok(Ending::Failed(
                "the stored input is no longer valid".to_owned(),
            ));
        };
        // The run acts for whoever started it, never above the role they hold now: a member
        // removed (or a key revoked) since, or demoted below the workflow's role, stops it.
        let started = TenantContext::new(run.tenant_id, run.actor, run.role);
        let role = match self.ports.actions.current_role(&started).await {
            Ok(now) => now.map(|now| now.min(run.role)),
            Err(e) => {
                tracing::warn!(error = ?e, run = %run.id, "checking the run's role failed; it is retried");
                return Err(());
            }
        };
        let Some(role) = role.filter(|r| r.satisfies(run.kind.min_role())) else {
            return Ok(Ending::Failed(
                "whoever started this run no longer holds the role it needs in the organization"
                    .to_owned(),
            ));
        };
        let ctx = TenantContext::new(run.tenant_id, run.actor, role);
        let steps = Steps {
            store: self.ports.store.as_ref(),
            clock: self.ports.clock.as_ref(),
            lease: self.policy.lease,
            claim,
        };
        let done = match input {
            Input::SummarizeCollection { collection, style } => {
                self.summarize(&ctx, &steps, collection, style).await
            }
            Input::AnalyzeDocuments { documents } => self.analyze(&ctx, &steps, &documents).await,
            Input::ReindexCollection { collection } => self.reindex(&ctx, &steps, collection).await,
            // One step that may outlast the lease: it beats while it builds.
            Input::ExportOrganization => match steps.beat(0.0).await {
                Ok(()) => match steps
                    .beating(0.0, self.ports.actions.export_organization(&ctx, run.id))
                    .await
                {
                    Ok(Ok(result)) => Ok(Ending::Succeeded {
                        archive_expires_at: expires_at(&result),
                        result,
                        artifact: None,
                    }),
                    Ok(Err(e)) => Err(e.into()),
                    Err(h) => Err(h),
                },
                Err(h) => Err(h),
            },
            Input::ExportUsage { window } => {
                match self.ports.actions.usage_csv(&ctx, window).await {
                    Ok((csv, _)) if csv.len() > MAX_EXPORT_BYTES => Err(Halt::Failed(format!(
                        "the export is larger than {MAX_EXPORT_BYTES} bytes"
                    ))),
                    Ok((csv, rows)) => Ok(Ending::Succeeded {
                        result: json!({
                            "window": window.as_str(),
                            "rows": rows,
                            "bytes": csv.len(),
                            "content_type": "text/csv",
                            "download": format!("/api/v1/workflows/runs/{}/download", run.id),
                        }),
                        artifact: Some(csv),
                        archive_expires_at: None,
                    }),
                    Err(e) => Err(e.into()),
                }
            }
        };
        match done {
            Ok(e) => Ok(e),
            Err(Halt::Cancel) => Ok(Ending::Cancelled),
            Err(Halt::Failed(m)) => Ok(Ending::Failed(m)),
            Err(Halt::Lost) => Err(()),
        }
    }

    async fn summarize(
        &self,
        ctx: &TenantContext,
        steps: &Steps<'_>,
        collection: documents::CollectionId,
        style: crate::model::Style,
    ) -> Result<Ending, Halt> {
        let actions = &self.ports.actions;
        steps.beat(0.0).await?;
        let docs = actions
            .collection_documents(ctx, collection, true, MAX_DOCUMENTS)
            .await?;
        let total = docs.len() + 1;
        let mut items = Vec::with_capacity(docs.len());
        let mut joined = String::new();
        for (i, d) in docs.iter().enumerate() {
            let summary = clip(
                &actions.summarize_document(ctx, d.id, style).await?,
                MAX_TEXT_CHARS,
            );
            joined.push_str(&format!("{}:\n{}\n\n", d.name, summary));
            items
                .push(json!({"document_id": d.id.to_string(), "name": d.name, "summary": summary}));
            steps.beat(share(i + 1, total)).await?;
        }
        let overall = match docs.len() {
            0 => String::new(),
            1 => items[0]["summary"].as_str().unwrap_or_default().to_owned(),
            _ => clip(
                &actions.summarize_text(ctx, joined, style).await?,
                MAX_TEXT_CHARS,
            ),
        };
        Ok(Ending::Succeeded {
            result: json!({
                "collection_id": collection.to_string(),
                "documents": items,
                "summary": overall,
            }),
            artifact: None,
            archive_expires_at: None,
        })
    }

    async fn analyze(
        &self,
        ctx: &TenantContext,
        steps: &Steps<'_>,
        documents: &[documents::DocumentId],
    ) -> Result<Ending, Halt> {
        let actions = &self.ports.actions;
        steps.beat(0.0).await?;
        let mut items = Vec::with_capacity(documents.len());
        for (i, id) in documents.iter().enumerate() {
            let item = match actions.document(ctx, *id).await {
                Ok(info) => {
                    let analysis = if info.ready {
                        actions.analyze_document(ctx, *id).await?
                    } else {
                        Value::Null
                    };
                    json!({
                        "document_id": id.to_string(),
                        "name": info.name,
                        "ready": info.ready,
                        "pages": info.pages,
                        "chunks": info.chunks,
                        "tokens": info.tokens,
                        "analysis": analysis,
                    })
                }
                // Deleted since the trigger: said, not fatal.
                Err(ActionError::NotFound(_)) => {
                    json!({"document_id": id.to_string(), "error": "not found"})
                }
                Err(e) => return Err(e.into()),
            };
            items.push(item);
            steps.beat(share(i + 1, documents.len())).await?;
        }
        Ok(Ending::Succeeded {
            result: json!({"documents": items}),
            artifact: None,
            archive_expires_at: None,
        })
    }

    async fn reindex(
        &self,
        ctx: &TenantContext,
        steps: &Steps<'_>,
        collection: documents::CollectionId,
    ) -> Result<Ending, Halt> {
        let actions = &self.ports.actions;
        steps.beat(0.0).await?;
        let docs = actions
            .collection_documents(ctx, collection, false, MAX_REINDEX)
            .await?;
        let mut jobs = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            match actions.reindex_document(ctx, d.id).await {
                Ok(job) => jobs.push(json!({"document_id": d.id.to_string(), "job_id": job})),
                // Deleted meanwhile.
                Err(ActionError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if (i + 1) % 10 == 0 {
                steps.beat(share(i + 1, docs.len())).await?;
            }
        }
        Ok(Ending::Succeeded {
            result: json!({
                "collection_id": collection.to_string(),
                "documents": jobs.len(),
                "jobs": jobs,
            }),
            artifact: None,
            archive_expires_at: None,
        })
    }
}

/// An export's archive, to be streamed part by part.
#[derive(Debug)]
pub struct ExportArchive {
    /// The archive (its size, then its parts).
    pub reader: Box<dyn documents::BlobReader>,
    /// Its SHA-256 (hex) as the run's result records it.
    pub sha256: Option<String>,
}

/// An export result's `expires_at`.
fn expires_at(result: &Value) -> Option<time::OffsetDateTime> {
    result
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
}
