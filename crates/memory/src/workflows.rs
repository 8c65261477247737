//! [`WorkflowStore`] in memory: runs and schedules in maps ordered by id, under one lock (so a
//! claim and a firing are exactly once).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use kernel::{Page, PageRequest, TenantId};
use time::OffsetDateTime;
use uuid::Uuid;
use workflows::{
    Beat, Claim, Ending, Run, RunFilter, RunId, RunStatus, Schedule, ScheduleId, StoreError,
    WorkflowStore,
};

#[derive(Debug, Clone)]
struct Leased {
    run: Run,
    lease: Option<(Uuid, OffsetDateTime)>,
    /// When an export's archive expires; `None` once deleted.
    archive_expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Default)]
struct State {
    runs: BTreeMap<RunId, Leased>,
    schedules: BTreeMap<ScheduleId, Schedule>,
}

/// Workflow runs and schedules in memory.
#[derive(Debug, Default)]
pub struct InMemoryWorkflows {
    state: Mutex<State>,
}

impl InMemoryWorkflows {
    /// Nothing stored.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes an organization's runs and schedules (what its deletion cascades to on SQL).
    pub fn remove_tenant(&self, tenant: TenantId) {
        let mut state = self.state();
        state.runs.retain(|_, r| r.run.tenant_id != tenant);
        state.schedules.retain(|_, s| s.tenant_id != tenant);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn is_due(row: &Leased, now: OffsetDateTime) -> bool {
    match row.run.status {
        RunStatus::Queued => true,
        RunStatus::Running => row.lease.is_some_and(|(_, until)| until < now),
        _ => false,
    }
}

fn holds(row: &Leased, claim: &Claim) -> bool {
    row.run.status == RunStatus::Running && row.lease.map(|(t, _)| t) == Some(claim.lease)
}

#[async_trait]
impl WorkflowStore for InMemoryWorkflows {
    async fn enqueue(&self, run: &Run) -> Result<(), StoreError> {
        self.state().runs.insert(
            run.id,
            Leased {
                run: run.clone(),
                lease: None,
                archive_expires_at: None,
            },
        );
        Ok(())
    }

    async fn find(&self, tenant: TenantId, id: RunId) -> Result<Option<Run>, StoreError> {
        Ok(self
            .state()
            .runs
            .get(&id)
            .filter(|r| r.run.tenant_id == tenant)
            .map(|r| r.run.clone()))
    }

    async fn list(
        &self,
        tenant: TenantId,
        filter: &RunFilter,
        page: &PageRequest,
    ) -> Result<Page<Run>, StoreError> {
        let before = page.after_uuid()?;
        let limit = usize::try_from(page.limit()).unwrap_or(usize::MAX);
        let items: Vec<Run> = self
            .state()
            .runs
            .values()
            .rev()
            .map(|r| &r.run)
            .filter(|r| r.tenant_id == tenant)
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| filter.kind.is_none_or(|k| r.kind == k))
            .filter(|r| before.is_none_or(|b| r.id.as_uuid() < b))
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, page, |r| r.id.to_string()))
    }

    async fn cancel(
        &self,
        tenant: TenantId,
        id: RunId,
        now: OffsetDateTime,
    ) -> Result<Option<Run>, StoreError> {
        let mut state = self.state();
        let Some(row) = state
            .runs
            .get_mut(&id)
            .filter(|r| r.run.tenant_id == tenant)
        else {
            return Ok(None);
        };
        match row.run.status {
            RunStatus::Queued => {
                row.run.status = RunStatus::Cancelled;
                row.run.finished_at = Some(now);
            }
            RunStatus::Running => row.run.cancel_requested = true,
            _ => {}
        }
        Ok(Some(row.run.clone()))
    }

    async fn claim(
        &self,
        now: OffsetDateTime,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>, StoreError> {
        let until = time::Duration::try_from(lease)
            .ok()
            .and_then(|l| now.checked_add(l))
            .ok_or_else(|| anyhow::anyhow!("the lease is too long"))?;
        let mut state = self.state();
        let Some(row) = state.runs.values_mut().find(|row| is_due(row, now)) else {
            return Ok(None);
        };
        let token = Uuid::now_v7();
        row.run.status = RunStatus::Running;
        row.run.attempts += 1;
        row.lease = Some((token, until));
        Ok(Some(Claim {
            run: row.run.clone(),
            lease: token,
        }))
    }

    async fn heartbeat(
        &self,
        claim: &Claim,
        progress: f32,
        until: OffsetDateTime,
    ) -> Result<Beat, StoreError> {
        let mut state = self.state();
        let Some(row) = state.runs.get_mut(&claim.run.id) else {
            return Ok(Beat::Lost);
        };
        if !holds(row, claim) {
            return Ok(Beat::Lost);
        }
        row.run.progress = progress;
        row.lease = Some((claim.lease, until));
        Ok(if row.run.cancel_requested {
            Beat::CancelRequested
        } else {
            Beat::Held
        })
    }

    async fn finish(
        &self,
        claim: &Claim,
        ending: &Ending,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(row) = state.runs.get_mut(&claim.run.id) else {
            return Ok(false);
        };
        if !holds(row, claim) {
            return Ok(false);
        }
        row.run.status = ending.status();
        row.run.finished_at = Some(now);
        row.lease = None;
        match ending {
            Ending::Succeeded {
                result,
                artifact,
                archive_expires_at,
            } => {
                row.archive_expires_at = *archive_expires_at;
                row.run.progress = 1.0;
                row.run.result = Some(result.clone());
                row.run.artifact.clone_from(artifact);
            }
            Ending::Failed(e) => row.run.error = Some(e.clone()),
            Ending::Cancelled => {}
        }
        Ok(true)
    }

    async fn expired_archives(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        let state = self.state();
        let mut due: Vec<_> = state
            .runs
            .values()
            .filter_map(|r| {
                r.archive_expires_at
                    .filter(|at| *at <= now)
                    .map(|at| (at, r))
            })
            .collect();
        due.sort_by_key(|(at, r)| (*at, r.run.id));
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(_, r)| r.run.clone())
            .collect())
    }

    async fn archive_deleted(&self, tenant: TenantId, id: RunId) -> Result<bool, StoreError> {
        let mut state = self.state();
        Ok(state
            .runs
            .get_mut(&id)
            .filter(|r| r.run.tenant_id == tenant)
            .and_then(|r| r.archive_expires_at.take())
            .is_some())
    }

    async fn create_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        self.state().schedules.insert(schedule.id, schedule.clone());
        Ok(())
    }

    async fn schedules(&self, tenant: TenantId) -> Result<Vec<Schedule>, StoreError> {
        Ok(self
            .state()
            .schedules
            .values()
            .filter(|s| s.tenant_id == tenant)
            .cloned()
            .collect())
    }

    async fn delete_schedule(&self, tenant: TenantId, id: ScheduleId) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state
            .schedules
            .get(&id)
            .is_none_or(|s| s.tenant_id != tenant)
        {
            return Ok(false);
        }
        state.schedules.remove(&id);
        Ok(true)
    }

    async fn due_schedules(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Schedule>, StoreError> {
        let mut due: Vec<Schedule> = self
            .state()
            .schedules
            .values()
            .filter(|s| s.next_run_at <= now)
            .cloned()
            .collect();
        due.sort_by_key(|s| (s.next_run_at, s.id));
        due.truncate(limit);
        Ok(due)
    }

    async fn fire(
        &self,
        schedule: &Schedule,
        next: OffsetDateTime,
        run: &Run,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.schedules.get_mut(&schedule.id) {
            Some(s)
                if s.tenant_id == schedule.tenant_id && s.next_run_at == schedule.next_run_at =>
            {
                s.next_run_at = next;
            }
            _ => return Ok(false),
        }
        state.runs.insert(
            run.id,
            Leased {
                run: run.clone(),
                lease: None,
                archive_expires_at: None,
            },
        );
        Ok(true)
    }
}
