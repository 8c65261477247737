//! The [`WorkflowStore`] contract: runs are scoped to their organization, listed newest first
//! with filters and pages; a due run is claimed by one claimer only and counted as an attempt,
//! a run whose lease ended (its worker died) is taken over, and the dead worker's heartbeat and
//! end change nothing; a cancel ends a queued run at once and stops a running one at its next
//! heartbeat. Schedules fire exactly once per due occurrence however many schedulers race,
//! and occurrences missed while no scheduler ran collapse into one run (checked through
//! [`Workflows::fire_due`] with a clock jumped past several). A cancel asked mid-run stops
//! [`Workflows::run_next`] at its next step. Deleting an organization takes its runs and
//! schedules.
//!
//! Each case takes [`WorkflowPorts`] over one fresh store; times are explicit values.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use documents::{CollectionId, DocumentId};
use kernel::{
    Clock as _, ManualClock, NoEvents, PageRequest, Principal, Role, TenantContext, TenantId,
    UserId,
};
use tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository};
use time::OffsetDateTime;
use time::macros::datetime;
use workflows::{
    ActionError, Actions, Beat, DocumentInfo, Ending, Input, NoSignal, Run, RunFilter, RunStatus,
    Style, UsageWindow, WorkflowKind, WorkflowPolicy, WorkflowPorts as Ports, WorkflowStore,
    Workflows,
};

use super::CascadingOrganizations;
use super::documents::at_ms;

/// The ports of one store, as the cases need them.
#[derive(Debug, Clone)]
pub struct WorkflowPorts {
    /// Organizations (the SQL rows reference them).
    pub orgs: Arc<dyn OrganizationRepository>,
    /// The store under test.
    pub store: Arc<dyn WorkflowStore>,
}

impl WorkflowPorts {
    /// The SQL store.
    #[must_use]
    pub fn sql(store: store_sql::SqlStore) -> Self {
        Self {
            orgs: Arc::new(store.clone()),
            store: Arc::new(store),
        }
    }

    /// The in-memory adapter, beside in-memory organizations whose delete cascades into it.
    #[must_use]
    pub fn in_memory() -> Self {
        let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
        let store = Arc::new(memory::InMemoryWorkflows::new());
        Self {
            orgs: Arc::new(CascadingOrganizations::new(
                memory::InMemoryOrganizations::new(clock),
                Box::new({
                    let store = store.clone();
                    move |id| {
                        store.remove_tenant(id);
                        Ok(())
                    }
                }),
            )),
            store,
        }
    }
}

async fn organization(p: &WorkflowPorts, slug: &str) -> TenantId {
    p.orgs
        .create(NewOrganization {
            name: OrgName::parse(slug).expect("name"),
            slug: OrgSlug::parse(slug).expect("slug"),
        })
        .await
        .expect("organization")
        .id
}

async fn two(p: &WorkflowPorts) -> (TenantId, TenantId) {
    (
        organization(p, "flows-a").await,
        organization(p, "flows-b").await,
    )
}

fn actor() -> Principal {
    Principal::User(UserId::new())
}

/// A queued run of `tenant` created at `at`.
async fn queued(p: &WorkflowPorts, tenant: TenantId, input: &Input, at: OffsetDateTime) -> Run {
    let run = Run::queued(tenant, input, actor(), Role::Admin, None, at);
    p.store.enqueue(&run).await.expect("enqueue");
    run
}

fn export() -> Input {
    Input::ExportUsage {
        window: UsageWindow::Week,
    }
}

fn reindex() -> Input {
    Input::ReindexCollection {
        collection: CollectionId::new(),
    }
}

const LEASE: Duration = Duration::from_secs(60);

/// Runs round trip, are listed newest first with filters and pages, and another tenant's are
/// not found, not listed, not cancelled.
pub async fn runs_round_trip_and_stay_in_their_tenant(p: &WorkflowPorts) {
    let (a, b) = two(p).await;
    let first = queued(p, a, &export(), at_ms(1)).await;
    let second = queued(p, a, &reindex(), at_ms(2)).await;
    let third = queued(p, a, &export(), at_ms(3)).await;
    let theirs = queued(p, b, &export(), at_ms(4)).await;
    assert_eq!(
        p.store.find(a, first.id).await.expect("find"),
        Some(first.clone())
    );
    assert_eq!(p.store.find(b, first.id).await.expect("find"), None);
    assert_eq!(p.store.find(a, theirs.id).await.expect("find"), None);
    assert_eq!(
        p.store.cancel(b, first.id, at_ms(5)).await.expect("cancel"),
        None
    );
    assert_eq!(
        p.store
            .find(a, first.id)
            .await
            .expect("find")
            .expect("run")
            .status,
        RunStatus::Queued,
        "another tenant's cancel changed nothing"
    );

    let all = RunFilter::default();
    let page = p
        .store
        .list(a, &all, &PageRequest::first(2).expect("page"))
        .await
        .expect("list");
    let ids: Vec<_> = page.items.iter().map(|r| r.id).collect();
    assert_eq!(ids, [third.id, second.id], "newest first");
    let cursor = page.next_cursor.expect("more");
    let rest = p
        .store
        .list(
            a,
            &all,
            &PageRequest::parse(Some(2), Some(&cursor.encode())).expect("page"),
        )
        .await
        .expect("list");
    assert_eq!(
        rest.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first.id]
    );
    assert!(rest.next_cursor.is_none());
    let exports = p
        .store
        .list(
            a,
            &RunFilter {
                kind: Some(WorkflowKind::ExportUsage),
                status: Some(RunStatus::Queued),
            },
            &PageRequest::first(10).expect("page"),
        )
        .await
        .expect("list");
    assert_eq!(
        exports.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        [third.id, first.id]
    );
    let none = p
        .store
        .list(
            a,
            &RunFilter {
                status: Some(RunStatus::Succeeded),
                kind: None,
            },
            &PageRequest::first(10).expect("page"),
        )
        .await
        .expect("list");
    assert!(none.items.is_empty());
}

/// One claim per due run; the heartbeat holds the lease; once it ends, another claimer takes
/// the run over (a second attempt), and the first claimer's writes change nothing.
pub async fn claims_lease_once_and_a_dead_workers_run_is_taken_over(p: &WorkflowPorts) {
    let (a, _) = two(p).await;
    let run = queued(p, a, &export(), at_ms(1)).await;
    let first = p
        .store
        .claim(at_ms(10), LEASE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(first.run.id, run.id);
    assert_eq!(first.run.status, RunStatus::Running);
    assert_eq!(first.run.attempts, 1);
    assert!(
        p.store
            .claim(at_ms(20), LEASE)
            .await
            .expect("claim")
            .is_none()
    );
    assert_eq!(
        p.store
            .heartbeat(&first, 0.5, at_ms(10) + LEASE)
            .await
            .expect("beat"),
        Beat::Held
    );
    let read = p.store.find(a, run.id).await.expect("find").expect("run");
    assert!((read.progress - 0.5).abs() < 1e-6);
    // Still leased until 10 ms + 60 s.
    assert!(
        p.store
            .claim(at_ms(30_000), LEASE)
            .await
            .expect("claim")
            .is_none()
    );
    // The worker died: after its lease, another takes the run over.
    let second = p
        .store
        .claim(at_ms(61_000), LEASE)
        .await
        .expect("claim")
        .expect("taken over");
    assert_eq!(second.run.id, run.id);
    assert_eq!(second.run.attempts, 2);
    assert_eq!(
        p.store
            .heartbeat(&first, 0.9, at_ms(62_000) + LEASE)
            .await
            .expect("beat"),
        Beat::Lost
    );
    assert!(
        !p.store
            .finish(&first, &Ending::Failed("late".to_owned()), at_ms(62_000))
            .await
            .expect("finish")
    );
    let ending = Ending::Succeeded {
        result: serde_json::json!({"rows": 3}),
        artifact: Some("a,b\n".to_owned()),
        archive_expires_at: None,
    };
    assert!(
        p.store
            .finish(&second, &ending, at_ms(63_000))
            .await
            .expect("finish")
    );
    assert!(
        !p.store
            .finish(&second, &ending, at_ms(64_000))
            .await
            .expect("finish"),
        "once"
    );
    let done = p.store.find(a, run.id).await.expect("find").expect("run");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.result, Some(serde_json::json!({"rows": 3})));
    assert_eq!(done.artifact.as_deref(), Some("a,b\n"));
    assert!((done.progress - 1.0).abs() < 1e-6);
    assert_eq!(done.finished_at, Some(at_ms(63_000)));
    assert!(
        p.store
            .claim(at_ms(999_000), LEASE)
            .await
            .expect("claim")
            .is_none()
    );
}

/// A cancel ends a queued run at once (never claimed); a running run is asked to stop and
/// hears it at its next heartbeat.
pub async fn cancel_stops_queued_and_running_runs(p: &WorkflowPorts) {
    let (a, _) = two(p).await;
    let waiting = queued(p, a, &export(), at_ms(1)).await;
    let cancelled = p
        .store
        .cancel(a, waiting.id, at_ms(2))
        .await
        .expect("cancel")
        .expect("run");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(cancelled.finished_at, Some(at_ms(2)));
    assert!(
        p.store
            .claim(at_ms(3), LEASE)
            .await
            .expect("claim")
            .is_none()
    );

    let running = queued(p, a, &export(), at_ms(4)).await;
    let claim = p
        .store
        .claim(at_ms(5), LEASE)
        .await
        .expect("claim")
        .expect("due");
    let asked = p
        .store
        .cancel(a, running.id, at_ms(6))
        .await
        .expect("cancel")
        .expect("run");
    assert_eq!(asked.status, RunStatus::Running);
    assert!(asked.cancel_requested);
    assert_eq!(
        p.store
            .heartbeat(&claim, 0.2, at_ms(7) + LEASE)
            .await
            .expect("beat"),
        Beat::CancelRequested
    );
    assert!(
        p.store
            .finish(&claim, &Ending::Cancelled, at_ms(8))
            .await
            .expect("finish")
    );
    let ended = p
        .store
        .find(a, running.id)
        .await
        .expect("find")
        .expect("run");
    assert_eq!(ended.status, RunStatus::Cancelled);
}

/// Claims made at once hand each run to one claimer.
pub async fn concurrent_claims_are_exclusive(p: &WorkflowPorts) {
    let (a, b) = two(p).await;
    let mut ids = HashSet::new();
    for n in 0..12 {
        let tenant = if n % 2 == 0 { a } else { b };
        ids.insert(queued(p, tenant, &export(), at_ms(n)).await.id);
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = p.store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(c) = store.claim(at_ms(1_000), LEASE).await.expect("claim") {
                    mine.push(c.run.id);
                }
                mine
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.expect("task") {
            assert!(seen.insert(id), "claimed twice");
        }
    }
    assert_eq!(seen, ids);
}

/// Actions that are never called (schedules of usage exports need none at trigger time).
#[derive(Debug)]
struct NoActions;

#[async_trait]
impl Actions for NoActions {
    async fn current_role(&self, ctx: &TenantContext) -> Result<Option<Role>, ActionError> {
        Ok(Some(ctx.role()))
    }
    async fn collection_documents(
        &self,
        _: &TenantContext,
        _: CollectionId,
        _: bool,
        _: usize,
    ) -> Result<Vec<DocumentInfo>, ActionError> {
        Err(ActionError::NotFound("collection".to_owned()))
    }
    async fn document(
        &self,
        _: &TenantContext,
        _: DocumentId,
    ) -> Result<DocumentInfo, ActionError> {
        Err(ActionError::NotFound("document".to_owned()))
    }
    async fn summarize_document(
        &self,
        _: &TenantContext,
        _: DocumentId,
        _: Style,
    ) -> Result<String, ActionError> {
        Err(ActionError::Refused("unused".to_owned()))
    }
    async fn summarize_text(
        &self,
        _: &TenantContext,
        _: String,
        _: Style,
    ) -> Result<String, ActionError> {
        Err(ActionError::Refused("unused".to_owned()))
    }
    async fn analyze_document(
        &self,
        _: &TenantContext,
        _: DocumentId,
    ) -> Result<serde_json::Value, ActionError> {
        Err(ActionError::Refused("unused".to_owned()))
    }
    async fn reindex_document(
        &self,
        _: &TenantContext,
        _: DocumentId,
    ) -> Result<String, ActionError> {
        Err(ActionError::Refused("unused".to_owned()))
    }
    async fn usage_csv(
        &self,
        _: &TenantContext,
        _: UsageWindow,
    ) -> Result<(String, usize), ActionError> {
        Ok(("dimension\n".to_owned(), 0))
    }
    async fn export_organization(
        &self,
        _: &TenantContext,
        _: workflows::RunId,
    ) -> Result<serde_json::Value, ActionError> {
        Ok(serde_json::json!({}))
    }
    async fn read_export(
        &self,
        _: &TenantContext,
        _: workflows::RunId,
    ) -> Result<Box<dyn documents::BlobReader>, ActionError> {
        Err(ActionError::NotFound("unused".to_owned()))
    }
    async fn delete_export(
        &self,
        _: &TenantContext,
        _: workflows::RunId,
    ) -> Result<(), ActionError> {
        Ok(())
    }
}

/// A scheduler (one server's `Workflows`) over the store, on `clock`.
fn scheduler(p: &WorkflowPorts, clock: Arc<ManualClock>) -> Workflows {
    Workflows::new(
        Ports {
            store: p.store.clone(),
            actions: Arc::new(NoActions),
            clock,
            signal: Arc::new(NoSignal),
            events: Arc::new(NoEvents),
        },
        WorkflowPolicy::default(),
    )
}

async fn runs_of(p: &WorkflowPorts, tenant: TenantId) -> Vec<Run> {
    p.store
        .list(
            tenant,
            &RunFilter::default(),
            &PageRequest::first(100).expect("page"),
        )
        .await
        .expect("list")
        .items
}

/// Eight schedulers race on a schedule whose server was down for several occurrences: one
/// run is queued, and the next occurrence is the first after now; at that occurrence, one
/// more. A scheduler holding a stale copy of the schedule fires nothing.
pub async fn schedules_fire_once_under_a_race_and_after_downtime(p: &WorkflowPorts) {
    let (a, b) = two(p).await;
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-22 10:00:00 UTC)));
    let ctx = TenantContext::new(a, actor(), Role::Admin);
    let one = scheduler(p, clock.clone());
    let s = one
        .schedule(
            &ctx,
            "export_usage",
            &serde_json::json!({"window": "24h"}),
            "0 * * * *",
            "cron",
        )
        .await
        .expect("schedule");
    assert_eq!(s.next_run_at, datetime!(2026-11-22 11:00:00 UTC));
    // Not due yet.
    assert_eq!(one.fire_due().await.expect("fire"), 0);

    // Every server was down from 10:00 to 15:30: five occurrences missed.
    clock.advance(Duration::from_secs(5 * 3_600 + 30 * 60));
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let w = scheduler(p, clock.clone());
            tokio::spawn(async move { w.fire_due().await.expect("fire") })
        })
        .collect();
    let mut fired = 0;
    for r in racers {
        fired += r.await.expect("task");
    }
    assert_eq!(fired, 1, "one firing among eight schedulers");
    let runs = runs_of(p, a).await;
    assert_eq!(runs.len(), 1, "the missed occurrences run once");
    assert_eq!(runs[0].schedule_id, Some(s.id));
    assert_eq!(runs[0].kind, WorkflowKind::ExportUsage);
    assert_eq!(runs[0].input["window"], "24h");
    assert!(runs_of(p, b).await.is_empty());
    let now_next = p.store.schedules(a).await.expect("schedules")[0].next_run_at;
    assert_eq!(now_next, datetime!(2026-11-22 16:00:00 UTC));

    // A scheduler that read the schedule before the firing cannot fire it again.
    let stale_run = Run::queued(a, &export(), actor(), Role::Admin, Some(s.id), clock.now());
    assert!(
        !p.store
            .fire(&s, datetime!(2026-11-22 16:00:00 UTC), &stale_run)
            .await
            .expect("fire")
    );
    assert_eq!(
        one.fire_due().await.expect("fire"),
        0,
        "nothing due until 16:00"
    );

    // At the next occurrence exactly, once more.
    clock.advance(Duration::from_secs(30 * 60));
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let w = scheduler(p, clock.clone());
            tokio::spawn(async move { w.fire_due().await.expect("fire") })
        })
        .collect();
    let mut fired = 0;
    for r in racers {
        fired += r.await.expect("task");
    }
    assert_eq!(fired, 1);
    assert_eq!(runs_of(p, a).await.len(), 2);
    assert_eq!(
        p.store.schedules(a).await.expect("schedules")[0].next_run_at,
        datetime!(2026-11-22 17:00:00 UTC)
    );
}

/// Schedules are the tenant's: listed and deleted only there; deleting an organization takes
/// its runs and schedules.
pub async fn schedules_stay_in_their_tenant_and_deletes_cascade(p: &WorkflowPorts) {
    let (a, b) = two(p).await;
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-22 10:00:00 UTC)));
    let w = scheduler(p, clock);
    let s = w
        .schedule(
            &TenantContext::new(b, actor(), Role::Owner),
            "export_usage",
            &serde_json::Value::Null,
            "@daily",
            "cron",
        )
        .await
        .expect("schedule");
    assert!(p.store.schedules(a).await.expect("list").is_empty());
    assert!(!p.store.delete_schedule(a, s.id).await.expect("delete"));
    assert_eq!(p.store.schedules(b).await.expect("list").len(), 1);
    let run = queued(p, b, &export(), at_ms(1)).await;
    p.orgs.delete(b).await.expect("delete org");
    assert_eq!(p.store.find(b, run.id).await.expect("find"), None);
    assert!(p.store.schedules(b).await.expect("list").is_empty());
    assert!(
        p.store
            .due_schedules(datetime!(2030-01-01 00:00:00 UTC), 10)
            .await
            .expect("due")
            .is_empty()
    );
    // A member cannot schedule; a bad expression is a 422 on the named field.
    let member = TenantContext::new(a, actor(), Role::Member);
    assert!(matches!(
        w.schedule(
            &member,
            "export_usage",
            &serde_json::Value::Null,
            "@daily",
            "cron"
        )
        .await,
        Err(workflows::WorkflowError::Forbidden(_))
    ));
    let admin = TenantContext::new(a, actor(), Role::Admin);
    match w
        .schedule(
            &admin,
            "export_usage",
            &serde_json::Value::Null,
            "* * *",
            "cron",
        )
        .await
    {
        Err(workflows::WorkflowError::Invalid(e)) => assert_eq!(e.0[0].field, "cron"),
        other => panic!("{other:?}"),
    }
}

/// Actions whose analysis asks, the first time, for the running runs of its tenant to stop
/// (as a client's cancel would, mid-run), and counts its calls.
#[derive(Debug)]
struct CancellingActions {
    store: Arc<dyn WorkflowStore>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Actions for CancellingActions {
    async fn current_role(&self, ctx: &TenantContext) -> Result<Option<Role>, ActionError> {
        Ok(Some(ctx.role()))
    }
    async fn collection_documents(
        &self,
        _: &TenantContext,
        _: CollectionId,
        _: bool,
        _: usize,
    ) -> Result<Vec<DocumentInfo>, ActionError> {
        Ok(Vec::new())
    }
    async fn document(
        &self,
        _: &TenantContext,
        id: DocumentId,
    ) -> Result<DocumentInfo, ActionError> {
        Ok(DocumentInfo {
            id,
            name: "doc".to_owned(),
            ready: true,
            pages: None,
            chunks: 1,
            tokens: 10,
        })
    }
    async fn summarize_document(
        &self,
        _: &TenantContext,
        _: DocumentId,
        _: Style,
    ) -> Result<String, ActionError> {
        Ok(String::new())
    }
    async fn summarize_text(
        &self,
        _: &TenantContext,
        _: String,
        _: Style,
    ) -> Result<String, ActionError> {
        Ok(String::new())
    }
    async fn analyze_document(
        &self,
        ctx: &TenantContext,
        _: DocumentId,
    ) -> Result<serde_json::Value, ActionError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            let running = RunFilter {
                status: Some(RunStatus::Running),
                kind: None,
            };
            let page = PageRequest::first(10).expect("page");
            for run in self
                .store
                .list(ctx.tenant_id(), &running, &page)
                .await
                .expect("list")
                .items
            {
                self.store
                    .cancel(ctx.tenant_id(), run.id, at_ms(50))
                    .await
                    .expect("cancel");
            }
        }
        Ok(serde_json::json!({"summary": "s"}))
    }
    async fn reindex_document(
        &self,
        _: &TenantContext,
        _: DocumentId,
    ) -> Result<String, ActionError> {
        Ok(String::new())
    }
    async fn usage_csv(
        &self,
        _: &TenantContext,
        _: UsageWindow,
    ) -> Result<(String, usize), ActionError> {
        Ok((String::new(), 0))
    }
    async fn export_organization(
        &self,
        _: &TenantContext,
        _: workflows::RunId,
    ) -> Result<serde_json::Value, ActionError> {
        Ok(serde_json::json!({}))
    }
    async fn read_export(
        &self,
        _: &TenantContext,
        _: workflows::RunId,
    ) -> Result<Box<dyn documents::BlobReader>, ActionError> {
        Err(ActionError::NotFound("unused".to_owned()))
    }
    async fn delete_export(
        &self,
        _: &TenantContext,
        _: workflows::RunId,
    ) -> Result<(), ActionError> {
        Ok(())
    }
}

/// What was published.
#[derive(Debug, Default)]
struct Recorded(std::sync::Mutex<Vec<kernel::Event>>);

impl kernel::Events for Recorded {
    fn publish(&self, event: kernel::Event) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
    }
}

/// A cancel asked while a run runs stops it at its next step: the steps after it are not
/// taken, the run ends `cancelled`, and `workflow.completed` says so.
pub async fn a_running_run_stops_at_its_next_step_when_cancelled(p: &WorkflowPorts) {
    let (a, _) = two(p).await;
    let actions = Arc::new(CancellingActions {
        store: p.store.clone(),
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let events = Arc::new(Recorded::default());
    let w = Workflows::new(
        Ports {
            store: p.store.clone(),
            actions: actions.clone(),
            clock: Arc::new(ManualClock::new(at_ms(0))),
            signal: Arc::new(NoSignal),
            events: events.clone(),
        },
        WorkflowPolicy::default(),
    );
    let ctx = TenantContext::new(a, actor(), Role::Member);
    let ids: Vec<String> = (0..3).map(|_| DocumentId::new().to_string()).collect();
    let run = w
        .trigger(
            &ctx,
            "analyze_documents",
            &serde_json::json!({ "document_ids": ids }),
        )
        .await
        .expect("trigger");
    assert_eq!(
        w.run_next().await.expect("run"),
        Some(workflows::RunOutcome::Cancelled)
    );
    assert_eq!(
        actions.calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no step after the cancel"
    );
    let ended = w.run(&ctx, run.id).await.expect("run");
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert!(ended.progress < 1.0);
    assert!(ended.result.is_none());
    let published = events
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].kind, kernel::EventKind::WorkflowCompleted);
    assert_eq!(published[0].data["status"], "cancelled");
    assert_eq!(published[0].data["run_id"], run.id.to_string());
    assert!(matches!(
        w.cancel(&ctx, run.id).await,
        Err(workflows::WorkflowError::Conflict(_))
    ));
}

/// Ends a claimed run of `tenant` as a succeeded export whose archive expires at `expires`.
async fn exported(
    p: &WorkflowPorts,
    tenant: TenantId,
    at: OffsetDateTime,
    expires: OffsetDateTime,
) -> Run {
    let run = queued(p, tenant, &Input::ExportOrganization, at).await;
    let claim = p.store.claim(at, LEASE).await.expect("claim").expect("due");
    assert_eq!(claim.run.id, run.id);
    let ending = Ending::Succeeded {
        result: serde_json::json!({"bytes": 1}),
        artifact: None,
        archive_expires_at: Some(expires),
    };
    assert!(p.store.finish(&claim, &ending, at).await.expect("finish"));
    run
}

/// The sweep's look: exports whose archive expired, across tenants, earliest first; an
/// unexpired one is not listed; marking one deleted takes it off the list once, and only in
/// its own tenant.
pub async fn expired_archives_are_listed_until_marked_deleted(p: &WorkflowPorts) {
    let (a, b) = two(p).await;
    let old_b = exported(p, b, at_ms(1_000), at_ms(5_000)).await;
    let old_a = exported(p, a, at_ms(2_000), at_ms(6_000)).await;
    let fresh = exported(p, a, at_ms(3_000), at_ms(90_000)).await;
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();

    let expired = p
        .store
        .expired_archives(at_ms(10_000), 10)
        .await
        .expect("expired");
    assert_eq!(ids(expired.clone()), vec![old_b.id, old_a.id]);
    assert_eq!(expired[0].tenant_id, b);
    assert!(!ids(expired).contains(&fresh.id), "not expired yet");
    assert_eq!(
        ids(p
            .store
            .expired_archives(at_ms(10_000), 1)
            .await
            .expect("expired")),
        vec![old_b.id]
    );

    // Another tenant cannot mark b's run.
    assert!(!p.store.archive_deleted(a, old_b.id).await.expect("mark"));
    assert!(p.store.archive_deleted(b, old_b.id).await.expect("mark"));
    assert!(
        !p.store.archive_deleted(b, old_b.id).await.expect("mark"),
        "once"
    );
    assert_eq!(
        ids(p
            .store
            .expired_archives(at_ms(10_000), 10)
            .await
            .expect("expired")),
        vec![old_a.id]
    );
}

/// An export whose single step takes three leases (of the manual clock) to build; at its end
/// it tries to take its own run over as another worker would, as soon as the run's lease has
/// run out.
#[derive(Debug)]
struct SlowExport {
    store: Arc<dyn WorkflowStore>,
    clock: Arc<ManualClock>,
    lease: Duration,
    taken_over: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Actions for SlowExport {
    async fn current_role(&self, ctx: &TenantContext) -> Result<Option<Role>, ActionError> {
        NoActions.current_role(ctx).await
    }
    async fn collection_documents(
        &self,
        ctx: &TenantContext,
        c: CollectionId,
        ready: bool,
        max: usize,
    ) -> Result<Vec<DocumentInfo>, ActionError> {
        NoActions.collection_documents(ctx, c, ready, max).await
    }
    async fn document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<DocumentInfo, ActionError> {
        NoActions.document(ctx, id).await
    }
    async fn summarize_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
        style: Style,
    ) -> Result<String, ActionError> {
        NoActions.summarize_document(ctx, id, style).await
    }
    async fn summarize_text(
        &self,
        ctx: &TenantContext,
        text: String,
        style: Style,
    ) -> Result<String, ActionError> {
        NoActions.summarize_text(ctx, text, style).await
    }
    async fn analyze_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<serde_json::Value, ActionError> {
        NoActions.analyze_document(ctx, id).await
    }
    async fn reindex_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<String, ActionError> {
        NoActions.reindex_document(ctx, id).await
    }
    async fn usage_csv(
        &self,
        ctx: &TenantContext,
        window: UsageWindow,
    ) -> Result<(String, usize), ActionError> {
        NoActions.usage_csv(ctx, window).await
    }
    async fn export_organization(
        &self,
        _: &TenantContext,
        _: workflows::RunId,
    ) -> Result<serde_json::Value, ActionError> {
        // Twelve slices of a quarter lease each: three leases of work. Each slice is real time
        // too (a quarter lease), so the worker's timer beats in between.
        for _ in 0..12 {
            self.clock.advance(self.lease / 4);
            tokio::time::sleep(self.lease / 4).await;
        }
        // Another worker's claim, now: it finds the run only if its lease ran out.
        let rival = self
            .store
            .claim(self.clock.now(), self.lease)
            .await
            .map_err(|e| ActionError::Unknown(anyhow::anyhow!("{e}")))?;
        self.taken_over
            .store(rival.is_some(), std::sync::atomic::Ordering::SeqCst);
        Ok(serde_json::json!({"bytes": 1}))
    }
    async fn read_export(
        &self,
        ctx: &TenantContext,
        run: workflows::RunId,
    ) -> Result<Box<dyn documents::BlobReader>, ActionError> {
        NoActions.read_export(ctx, run).await
    }
    async fn delete_export(
        &self,
        ctx: &TenantContext,
        run: workflows::RunId,
    ) -> Result<(), ActionError> {
        NoActions.delete_export(ctx, run).await
    }
}

/// An organization's export is one step that may take longer than the lease (a large
/// organization): the worker beats while it builds, so no other worker takes the run over and
/// it succeeds on its first attempt. (Checked to fail without the beats: the rival claims the
/// run, and the first worker's result is refused.)
pub async fn a_long_export_keeps_its_lease(p: &WorkflowPorts) {
    let (a, _) = two(p).await;
    let lease = Duration::from_millis(400);
    let clock = Arc::new(ManualClock::new(at_ms(0)));
    let actions = Arc::new(SlowExport {
        store: p.store.clone(),
        clock: clock.clone(),
        lease,
        taken_over: std::sync::atomic::AtomicBool::new(false),
    });
    let w = Workflows::new(
        Ports {
            store: p.store.clone(),
            actions: actions.clone(),
            clock,
            signal: Arc::new(NoSignal),
            events: Arc::new(NoEvents),
        },
        WorkflowPolicy {
            lease,
            ..WorkflowPolicy::default()
        },
    );
    let owner = TenantContext::new(a, actor(), Role::Owner);
    let run = w.export_organization(&owner).await.expect("an export");
    assert_eq!(
        w.run_next().await.expect("run"),
        Some(workflows::RunOutcome::Succeeded)
    );
    assert!(
        !actions.taken_over.load(std::sync::atomic::Ordering::SeqCst),
        "another worker took the export over while it was being built"
    );
    let ended = w.run(&owner, run.id).await.expect("the run");
    assert_eq!(ended.status, RunStatus::Succeeded);
    assert_eq!(ended.attempts, 1);
}
