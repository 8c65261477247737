//! [`Billing`]: quotas, stream slots, the ledger, usage reports and rate limits.
//!
//! **Quota.** Each organization has a leased counter per calendar month (UTC) in the cache
//! port: its base is what the ledger holds, its leases the reservations in flight. A
//! reservation takes a lease only if the sum stays within the limit, in one atomic step
//! ([`Cache::lease_within`]). Settling records at most what was reserved (a call that used
//! more is clamped, and logged), after making sure its lease is still held (or, if it was lost,
//! that what it records still fits); then it ends the lease and adds the recorded tokens to the
//! base ([`Cache::end_lease`]). The base lives for `quota_counter_ttl` (an hour) and is
//! rebuilt from the ledger when missing; the leases are kept apart and survive it, so a
//! rebuilt counter is the ledger plus the reservations in flight. A lease lives an hour (or the
//! base's lifetime if longer), so a process that died holding one stops counting by then.
//!
//! **Stream slots.** A leased counter per organization bounded by the plan's
//! `max_concurrent_streams`, one lease per open stream, renewed every third of
//! `stream_slot_ttl` while the stream runs: a long stream keeps its slot, and the slots of a
//! process that died come back within `stream_slot_ttl`. A cache that restarted lost the
//! slots of the streams in flight, which take them back at their next renewal: so a counter
//! created within one renewal period of a restart (told by a marker counter that the restart
//! lost, see [`new_stream_base`]) starts full until that period ends, and new streams
//! wait (429 with `Retry-After` the time left) until the streams in flight are counted again
//! instead of running beside them over the cap. A settlement that could not end its
//! reservation's lease (the cache stalled) repairs the quota counter in the background once
//! the cache answers ([`Billing::repair_quota`]).
//!
//! **Limits.** An organization's plan and limit are read through the cache port (a minute)
//! and kept in the process for five seconds; an administrator's change applies at once on the
//! server that made it and within seconds on the others.
//!
//! **Rate limits.** Fixed windows per route class and subject (address, user, API key,
//! organization), counted with [`Cache::increment`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kernel::cache::{Bounded, Cache, CacheError, CacheKey, Counter};
use kernel::metering::{MeterError, SlotKeeper, Tokens};
use kernel::retry::Backoff;
use kernel::{
    Clock, Event, EventKind, Events, InvalidInput, NoEvents, Principal, TenantId, UsageKind,
};
use time::{Date, Month, OffsetDateTime, Time};

use crate::model::{
    AdminUsageReport, Plan, PlanStatus, Plans, Prices, RateClass, RateDecision, RateLimits,
    RateSubject, Totals, UsageEvent, UsageReport, Window,
};
use crate::ports::{LedgerError, TenantPlans, UsageLedger};

mod meter;

/// How long an organization's plan and limit are cached in the cache port before they are
/// read again (an administrator's change drops the cached value at once).
const LIMITS_TTL: Duration = Duration::from_secs(60);
/// How long a process keeps an organization's limits in its own memory, saving a cache round
/// trip per call; an administrator's change reaches every other process within this time.
const LOCAL_LIMITS_TTL: Duration = Duration::from_secs(5);
/// Most organizations whose limits a process keeps in memory (then it starts again).
const LOCAL_LIMITS_MAX: usize = 10_000;
/// How long a quota reservation counts at most: longer than any call runs. A call that
/// outlives it settles only what still fits.
const RESERVATION_TTL: Duration = Duration::from_secs(3600);
/// How long a stream counter's base lives (it is 0; the slots are its leases, which outlive
/// it).
const STREAM_BASE_TTL: Duration = Duration::from_secs(3600);
/// The pause between two tries at writing a usage event while the ledger fails: it doubles
/// from this up to [`LEDGER_RETRY_MAX_PAUSE`], for `BillingSettings::ledger_retry_for`.
const LEDGER_RETRY_PAUSE: Duration = Duration::from_millis(50);
const LEDGER_RETRY_MAX_PAUSE: Duration = Duration::from_secs(2);

/// What became of a usage event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// Written now.
    Appended,
    /// Already in the ledger (the same reservation settled elsewhere first).
    Duplicate,
    /// Given up.
    Lost,
}
/// How long the marker of a cache's life lives (a fixed window: when it ends, the stream
/// counters created in the next renewal period wait it out, as after a restart).
const CACHE_MARK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a quota counter left wrong by a cache failure is tried to be repaired.
const QUOTA_REPAIR_FOR: Duration = Duration::from_secs(600);

/// What billing needs.
#[derive(Debug, Clone)]
pub struct BillingPorts {
    /// The ledger and the limit overrides.
    pub ledger: Arc<dyn UsageLedger>,
    /// Each organization's plan.
    pub plans_of: Arc<dyn TenantPlans>,
    /// Quota counters, stream slots, rate-limit windows.
    pub cache: Arc<dyn Cache>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// Billing's configuration.
#[derive(Debug, Clone)]
pub struct BillingSettings {
    /// Prices per model.
    pub prices: Prices,
    /// The plans.
    pub plans: Plans,
    /// The plan of an organization whose plan is not among `plans`.
    pub fallback_plan: String,
    /// How long a quota counter lives before it is rebuilt from the ledger.
    pub quota_counter_ttl: Duration,
    /// How long a stream slot's lease lives without renewal (renewed every third of it while
    /// its stream runs).
    pub stream_slot_ttl: Duration,
    /// How long writing a usage event is retried while the ledger fails (a database
    /// outage), before it is given up and logged with its ids and counts: an outage shorter
    /// than this loses no usage.
    pub ledger_retry_for: Duration,
    /// Rate-limit budgets.
    pub rate_limits: RateLimits,
    /// What an organization's export costs per GiB of its archive, in micro-units (0: metered,
    /// not charged). The same for every plan.
    pub export_micros_per_gib: i64,
}

impl Default for BillingSettings {
    fn default() -> Self {
        Self {
            prices: Prices::default(),
            plans: Plans::default(),
            fallback_plan: "free".to_owned(),
            quota_counter_ttl: Duration::from_secs(3600),
            stream_slot_ttl: Duration::from_secs(60),
            ledger_retry_for: Duration::from_secs(60),
            rate_limits: RateLimits::default(),
            export_micros_per_gib: 0,
        }
    }
}

/// How often a stream slot's lease is renewed.
fn renewal_period(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(1))
}

/// The marker of the cache's life: a counter (which no cache evicts before it expires) that
/// every new stream counter increments, so 1 means the cache lost it.
fn cache_mark_key() -> CacheKey {
    CacheKey::global("billing-cache-life", &[])
}

/// While present, stream counters are created full: the cache restarted less than a renewal
/// period ago.
fn cache_restart_key() -> CacheKey {
    CacheKey::global("billing-cache-restarted", &[])
}

/// The base and lifetime of a stream counter about to be created. Normally 0, for an hour
/// (the slots are its leases). But when the cache restarted, the streams in flight lost their
/// slots and lease them again only at their next renewal: so a process that had seen the
/// cache's earlier life (`seen`) and finds the marker gone opens a window of one renewal
/// period, and within it every process creates counters at `cap` until the window ends, so no
/// new stream is let in beside the streams in flight.
async fn new_stream_base(
    cache: &dyn Cache,
    slot_ttl: Duration,
    cap: u32,
    seen: &AtomicBool,
) -> Result<(i64, Duration), CacheError> {
    let period = renewal_period(slot_ttl);
    // Read before the increment: a concurrent first increment of this process (the one that
    // made the marker) must not count as an earlier life.
    let had_seen = seen.load(Ordering::Relaxed);
    let mark = cache
        .increment(&cache_mark_key(), 1, CACHE_MARK_TTL)
        .await?;
    seen.store(true, Ordering::Relaxed);
    if mark.value == 1 && had_seen {
        tracing::warn!(
            "the cache lost its stream slots (a restart?): new streams wait until the streams in flight hold theirs again"
        );
        cache.increment(&cache_restart_key(), 1, period).await?;
    }
    match cache
        .increment_within(&cache_restart_key(), 0, i64::MAX)
        .await?
    {
        Bounded::Added(window) | Bounded::Refused(window) => {
            Ok((i64::from(cap), window.ttl.min(period)))
        }
        Bounded::Missing => Ok((0, slot_ttl.max(STREAM_BASE_TTL))),
    }
}

/// What the billing use cases can answer.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Fields failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The organization does not exist.
    #[error("not found")]
    NotFound,
    /// Storage or the cache failed.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<LedgerError> for BillingError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Unknown(e) => Self::Unknown(e),
        }
    }
}

/// An organization's limits as they are in force.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Limits {
    plan: String,
    monthly_token_limit: Option<u64>,
    overridden: bool,
    max_streams: u32,
}

impl Limits {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.monthly_token_limit
                .map_or_else(|| "-".to_owned(), |l| l.to_string()),
            u8::from(self.overridden),
            self.max_streams,
            self.plan
        )
    }

    fn decode(s: &str) -> Option<Self> {
        let mut parts = s.splitn(4, '|');
        let limit = parts.next()?;
        let overridden = parts.next()? == "1";
        let max_streams = parts.next()?.parse().ok()?;
        let plan = parts.next()?.to_owned();
        let monthly_token_limit = if limit == "-" {
            None
        } else {
            Some(limit.parse().ok()?)
        };
        Some(Self {
            plan,
            monthly_token_limit,
            overridden,
            max_streams,
        })
    }
}

/// The calendar month (UTC) holding `now`: its first instant and the next month's.
#[must_use]
pub fn period_of(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let now = now.to_offset(time::UtcOffset::UTC);
    let first = |year: i32, month: Month| {
        Date::from_calendar_date(year, month, 1)
            .map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
            .unwrap_or(now)
    };
    let start = first(now.year(), now.month());
    let (year, month) = match now.month() {
        Month::December => (now.year() + 1, Month::January),
        m => (now.year(), m.next()),
    };
    (start, first(year, month))
}

fn period_label(start: OffsetDateTime) -> String {
    format!("{:04}-{:02}", start.year(), u8::from(start.month()))
}

fn unavailable(e: impl Into<anyhow::Error>) -> MeterError {
    MeterError::Unavailable(e.into())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The shares (percent) of an organization's monthly token quota whose reaching publishes
/// `usage.threshold`, once per period each.
pub const USAGE_THRESHOLDS: [u64; 2] = [80, 100];

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The billing use cases; also the metering port chat and retrieval call.
#[derive(Debug)]
pub struct Billing {
    ports: BillingPorts,
    settings: BillingSettings,
    /// Limits read in the last [`LOCAL_LIMITS_TTL`], by organization.
    local: Mutex<HashMap<TenantId, (Instant, Limits)>>,
    /// This process has seen the cache's life marker (see [`new_stream_base`]).
    seen_cache: Arc<AtomicBool>,
    /// Where `usage.threshold` events go.
    events: Arc<dyn Events>,
}

impl Billing {
    /// Billing over these ports.
    #[must_use]
    pub fn new(ports: BillingPorts, settings: BillingSettings) -> Self {
        Self {
            ports,
            settings,
            local: Mutex::new(HashMap::new()),
            seen_cache: Arc::new(AtomicBool::new(false)),
            events: Arc::new(NoEvents),
        }
    }

    /// Publishes `usage.threshold` to `events` (see [`USAGE_THRESHOLDS`]).
    #[must_use]
    pub fn with_events(mut self, events: Arc<dyn Events>) -> Self {
        self.events = events;
        self
    }

    /// Publishes `usage.threshold` for each share of [`USAGE_THRESHOLDS`] that the settled
    /// usage of `tenant`'s period `label` (the base of its quota counter `key`) has reached
    /// out of `limit`, once per organization, period and share: the first settlement to see
    /// it takes a flag in the cache, which every server shares. Failures are logged only.
    async fn publish_thresholds(
        &self,
        tenant: TenantId,
        key: &CacheKey,
        label: &str,
        limit: u64,
        period_end: OffsetDateTime,
    ) {
        if limit == 0 {
            return;
        }
        let used = match self.ports.cache.get(key).await {
            Ok(Some(v)) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .map(non_negative),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, %tenant, "reading the quota for thresholds failed");
                None
            }
        };
        let Some(used) = used else {
            return;
        };
        let ttl = (period_end - self.ports.clock.now())
            .try_into()
            .unwrap_or(Duration::ZERO)
            + Duration::from_secs(86_400);
        for percent in USAGE_THRESHOLDS {
            if u128::from(used) * 100 < u128::from(limit) * u128::from(percent) {
                break;
            }
            let flag = CacheKey::tenant(tenant, "usage-threshold", &[label, &percent.to_string()]);
            match self.ports.cache.set_if_absent(&flag, b"1", ttl).await {
                Ok(true) => {
                    tracing::info!(%tenant, percent, used, limit, "usage threshold reached");
                    self.events.publish(Event {
                        tenant,
                        kind: EventKind::UsageThreshold,
                        data: serde_json::json!({
                            "threshold_percent": percent,
                            "used_tokens": used,
                            "limit_tokens": limit,
                            "period": label,
                            "resets_at": period_end
                                .format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or_default(),
                        }),
                    });
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, %tenant, "flagging a usage threshold failed");
                }
            }
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (Instant, Limits)>> {
        // Every update is one insert, remove or clear: a poisoned map is still consistent.
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The prices.
    #[must_use]
    pub fn prices(&self) -> &Prices {
        &self.settings.prices
    }

    /// The plans.
    #[must_use]
    pub fn plans(&self) -> &Plans {
        &self.settings.plans
    }

    /// The rate-limit policy.
    #[must_use]
    pub fn rate_limits(&self) -> &RateLimits {
        &self.settings.rate_limits
    }

    fn plan(&self, name: &str) -> Plan {
        self.settings
            .plans
            .get(name)
            .or_else(|| self.settings.plans.get(&self.settings.fallback_plan))
            .cloned()
            .unwrap_or(Plan {
                monthly_token_limit: Some(0),
                max_concurrent_streams: 1,
                max_storage_bytes: Some(0),
            })
    }

    fn limits_key(tenant: TenantId) -> CacheKey {
        CacheKey::tenant(tenant, "billing-limits", &[])
    }

    /// The leased counter of `tenant`'s quota in the period `label`: its base is what the
    /// ledger holds, its leases the reservations in flight.
    fn quota_key(tenant: TenantId, label: &str) -> CacheKey {
        CacheKey::tenant(tenant, "quota", &[label, "leased"])
    }

    /// The leased counter of `tenant`'s open streams: base 0, one lease per stream.
    fn streams_key(tenant: TenantId) -> CacheKey {
        CacheKey::tenant(tenant, "streams", &["leased"])
    }

    /// Creates a missing stream counter of cap `cap` (see [`new_stream_base`]).
    async fn create_stream_counter(&self, key: &CacheKey, cap: u32) -> Result<(), MeterError> {
        let cache = self.ports.cache.as_ref();
        let ttl = self.settings.stream_slot_ttl;
        let (base, ttl) = new_stream_base(cache, ttl, cap, &self.seen_cache)
            .await
            .map_err(unavailable)?;
        cache
            .set_if_absent(key, base.to_string().as_bytes(), ttl)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// When a stream refused by `counter` may ask again: when the counter created after a
    /// cache restart expires (it lives one renewal period; every other counter lives an hour
    /// or more), else in a second (a slot frees when an answer ends).
    fn stream_retry_after(&self, counter: Counter) -> Duration {
        let period = renewal_period(self.settings.stream_slot_ttl);
        if counter.ttl <= period {
            counter.ttl.max(Duration::from_secs(1))
        } else {
            Duration::from_secs(1)
        }
    }

    /// Seeds `tenant`'s quota counter for the period starting at `start` from the ledger,
    /// unless another caller did; its leases (reservations in flight) are kept apart and
    /// still count.
    async fn rebuild_quota(
        &self,
        tenant: TenantId,
        key: &CacheKey,
        start: OffsetDateTime,
        end: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), MeterError> {
        let used = self
            .ports
            .ledger
            .tokens_since(tenant, start)
            .await
            .map_err(unavailable)?;
        let until_reset = (end - now).unsigned_abs() + Duration::from_secs(60);
        let ttl = self.settings.quota_counter_ttl.min(until_reset);
        self.ports
            .cache
            .set_if_absent(key, used.to_string().as_bytes(), ttl)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Renews a stream slot's lease every third of `ttl` while the slot is held, so a stream
    /// keeps its slot however long it runs, and a dead process's slots come back within
    /// `ttl`. A lease lost meanwhile (the cache restarted) is taken again, whatever the cap:
    /// the stream is open and counts.
    fn keep_slot(&self, key: CacheKey, lease: String, ttl: Duration, cap: u32) -> SlotKeeper {
        let cache = Arc::clone(&self.ports.cache);
        let seen = Arc::clone(&self.seen_cache);
        let every = renewal_period(ttl);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for _ in 0..2 {
                    match cache.lease_within(&key, &lease, 1, i64::MAX, ttl).await {
                        Ok(Bounded::Missing) => {
                            let created = match new_stream_base(&*cache, ttl, cap, &seen).await {
                                Ok((base, life)) => {
                                    cache
                                        .set_if_absent(&key, base.to_string().as_bytes(), life)
                                        .await
                                }
                                Err(e) => Err(e),
                            };
                            if let Err(e) = created {
                                tracing::warn!(error = %e, "renewing a stream slot failed");
                                break;
                            }
                        }
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing a stream slot failed");
                            break;
                        }
                    }
                }
            }
        });
        SlotKeeper::new(task.abort_handle())
    }

    /// After a settlement could not end its lease (the cache stalled or restarted): tries
    /// again in the background, with a doubling pause (1 s to 30 s, for up to
    /// [`QUOTA_REPAIR_FOR`]), to end the lease adding nothing and then drop the base, which the
    /// next reservation rebuilds from the ledger (where the settlement is). So the counter
    /// comes back to the ledger plus the reservations in flight soon after the cache returns,
    /// rather than holding the stale reservation for its whole lease (false 402s). Whether the
    /// failed call reached the cache or not, this ends the same way.
    fn repair_quota(&self, key: CacheKey, lease: String) {
        let cache = Arc::clone(&self.ports.cache);
        tokio::spawn(async move {
            let mut backoff = Backoff::new(
                QUOTA_REPAIR_FOR,
                Duration::from_secs(1),
                Duration::from_secs(30),
            );
            let mut pause = backoff.next_pause();
            while let Some(wait) = pause {
                tokio::time::sleep(wait).await;
                let repaired = match cache.end_lease(&key, &lease, 0).await {
                    Ok(_) => cache.delete(&key).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match repaired {
                    Ok(()) => {
                        tracing::info!("a quota counter was repaired after a cache failure");
                        return;
                    }
                    Err(e) => {
                        pause = backoff.next_pause();
                        if pause.is_some() {
                            tracing::debug!(error = %e, "repairing a quota counter failed; trying again");
                        } else {
                            tracing::warn!(error = %e, "repairing a quota counter failed; the reservation's lease expires");
                        }
                    }
                }
            }
        });
    }

    /// How long a quota reservation counts when it is never settled (a process that died
    /// holding one): [`RESERVATION_TTL`], and never less than the counter's lifetime.
    fn quota_lease_ttl(&self) -> Duration {
        RESERVATION_TTL.max(self.settings.quota_counter_ttl)
    }

    /// How many of `reserved` tokens the settlement of reservation `id` may record: all of
    /// them while its lease is held (it is renewed); when the lease was lost (the cache
    /// restarted, or it outlived its lease), as many as still fit within `limit`, leased
    /// again first. So no settlement takes the quota past its limit.
    async fn settleable(
        &self,
        tenant: TenantId,
        key: &CacheKey,
        id: &str,
        reserved: u64,
        limit: u64,
        start: OffsetDateTime,
    ) -> Result<u64, MeterError> {
        let ttl = self.quota_lease_ttl();
        let mut wanted = reserved;
        for _ in 0..4 {
            match self
                .ports
                .cache
                .lease_within(key, id, to_i64(wanted), to_i64(limit), ttl)
                .await
                .map_err(unavailable)?
            {
                Bounded::Added(_) => return Ok(wanted),
                Bounded::Refused(counter) => {
                    let room = limit.saturating_sub(non_negative(counter.value));
                    if room == 0 {
                        return Ok(0);
                    }
                    wanted = wanted.min(room);
                }
                Bounded::Missing => {
                    let now = self.ports.clock.now();
                    let (_, end) = period_of(now);
                    self.rebuild_quota(tenant, key, start, end, now).await?;
                }
            }
        }
        Ok(0)
    }

    /// The limits in force for `tenant` (cached for a minute); `None` when it does not exist.
    async fn limits(&self, tenant: TenantId) -> anyhow::Result<Option<Limits>> {
        if let Some((at, l)) = self.local().get(&tenant)
            && at.elapsed() < LOCAL_LIMITS_TTL
        {
            return Ok(Some(l.clone()));
        }
        let limits = self.shared_limits(tenant).await?;
        if let Some(l) = &limits {
            let mut local = self.local();
            if local.len() >= LOCAL_LIMITS_MAX {
                local.clear();
            }
            local.insert(tenant, (Instant::now(), l.clone()));
        }
        Ok(limits)
    }

    /// The limits from the cache port, else from the stores (then cached there).
    async fn shared_limits(&self, tenant: TenantId) -> anyhow::Result<Option<Limits>> {
        let key = Self::limits_key(tenant);
        match self.ports.cache.get(&key).await {
            Ok(Some(bytes)) => {
                if let Some(l) = std::str::from_utf8(&bytes).ok().and_then(Limits::decode) {
                    return Ok(Some(l));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading cached limits failed; reading the store"),
        }
        let Some(plan_name) = self.ports.plans_of.plan_of(tenant).await? else {
            return Ok(None);
        };
        let plan = self.plan(&plan_name);
        let overridden = self.ports.ledger.limit_override(tenant).await?;
        let limits = Limits {
            plan: plan_name,
            monthly_token_limit: overridden.or(plan.monthly_token_limit),
            overridden: overridden.is_some(),
            max_streams: plan.max_concurrent_streams,
        };
        if let Err(e) = self
            .ports
            .cache
            .set(&key, limits.encode().as_bytes(), LIMITS_TTL)
            .await
        {
            tracing::warn!(error = %e, "caching limits failed");
        }
        Ok(Some(limits))
    }

    /// Forgets the cached limits of `tenant` (after a plan or limit change).
    ///
    /// # Errors
    /// When the cache fails.
    pub async fn limits_changed(&self, tenant: TenantId) -> Result<(), BillingError> {
        self.local().remove(&tenant);
        self.ports
            .cache
            .delete(&Self::limits_key(tenant))
            .await
            .map_err(anyhow::Error::new)?;
        Ok(())
    }

    /// Validates a plan name against the configured plans.
    ///
    /// # Errors
    /// [`BillingError::Invalid`] naming the plans there are.
    pub fn check_plan(&self, name: &str) -> Result<(), BillingError> {
        if self.settings.plans.get(name).is_some() {
            Ok(())
        } else {
            Err(InvalidInput::field(
                "plan",
                format!("must be one of {}", self.settings.plans.names().join(", ")),
            )
            .into())
        }
    }

    /// Sets (`Some`) or removes (`None`, back to the plan's) `tenant`'s monthly token limit.
    ///
    /// # Errors
    /// [`BillingError::Invalid`] for a limit above 10^15; storage failures.
    pub async fn set_limit_override(
        &self,
        tenant: TenantId,
        limit: Option<u64>,
    ) -> Result<(), BillingError> {
        if limit.is_some_and(|l| l > 1_000_000_000_000_000) {
            return Err(InvalidInput::field(
                "monthly_token_limit",
                "must be at most 1000000000000000",
            )
            .into());
        }
        self.ports.ledger.set_limit_override(tenant, limit).await?;
        self.limits_changed(tenant).await
    }

    /// Bytes of original files `tenant`'s plan lets it keep (`None`: no limit, or no such
    /// organization). Read through the cached limits, so a plan change applies within a
    /// minute.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn storage_limit(&self, tenant: TenantId) -> Result<Option<u64>, BillingError> {
        Ok(match self.limits(tenant).await? {
            Some(limits) => self.plan(&limits.plan).max_storage_bytes,
            None => None,
        })
    }

    /// The plan, limit and use of this period (`GET /billing/plan`).
    ///
    /// # Errors
    /// [`BillingError::NotFound`]; storage failures.
    pub async fn plan_status(&self, tenant: TenantId) -> Result<PlanStatus, BillingError> {
        let limits = self.limits(tenant).await?.ok_or(BillingError::NotFound)?;
        let (start, end) = period_of(self.ports.clock.now());
        let used = self.ports.ledger.tokens_since(tenant, start).await?;
        Ok(PlanStatus {
            plan: limits.plan,
            monthly_token_limit: limits.monthly_token_limit,
            limit_overridden: limits.overridden,
            used,
            remaining: limits.monthly_token_limit.map(|l| l.saturating_sub(used)),
            period_start: start,
            resets_at: end,
            max_concurrent_streams: limits.max_streams,
        })
    }

    /// What `tenant` (or only `actor` in it) used over `window`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn usage(
        &self,
        tenant: TenantId,
        window: Window,
        actor: Option<Principal>,
    ) -> Result<UsageReport, BillingError> {
        let until = self.ports.clock.now();
        let since = until - window.length();
        // One query: the groups by kind, model and actor, split by bucket of the series.
        let rows = self
            .ports
            .ledger
            .totals(tenant, since, actor, Some(window.step()))
            .await?;
        let buckets = window.buckets();
        let mut series: Vec<(OffsetDateTime, Totals)> = (0..buckets)
            .map(|i| (since + window.step() * i, Totals::default()))
            .collect();
        let mut totals = Totals::default();
        let mut by_kind: HashMap<UsageKind, Totals> = HashMap::new();
        let mut by_model: HashMap<String, Totals> = HashMap::new();
        let mut by_actor: HashMap<Option<Principal>, Totals> = HashMap::new();
        for row in &rows {
            totals.add(&row.totals);
            by_kind.entry(row.kind).or_default().add(&row.totals);
            by_model
                .entry(row.model.clone())
                .or_default()
                .add(&row.totals);
            by_actor.entry(row.actor).or_default().add(&row.totals);
            // An event stamped after `until` (a clock ahead of this one) counts in the last.
            let bucket = row.bucket.unwrap_or(0).min(buckets.saturating_sub(1));
            if let Some((_, sums)) = series.get_mut(bucket as usize) {
                sums.add(&row.totals);
            }
        }
        Ok(UsageReport {
            window,
            since,
            until,
            totals,
            by_kind: sorted(by_kind, |k| k.as_str().to_owned()),
            by_model: sorted(by_model, Clone::clone),
            by_actor: sorted(by_actor, |a| match a {
                Some(Principal::User(u)) => format!("u{u}"),
                Some(Principal::ApiKey(k)) => format!("k{k}"),
                None => String::new(),
            }),
            series,
        })
    }

    /// Every organization's usage over `window` (platform administrators).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn admin_usage(&self, window: Window) -> Result<AdminUsageReport, BillingError> {
        let until = self.ports.clock.now();
        let since = until - window.length();
        let rows = self.ports.ledger.totals_by_tenant(since).await?;
        let mut totals = Totals::default();
        let mut tenants: HashMap<TenantId, (Totals, Vec<crate::model::TenantUsageRow>)> =
            HashMap::new();
        for row in rows {
            totals.add(&row.totals);
            let entry = tenants.entry(row.tenant).or_default();
            entry.0.add(&row.totals);
            entry.1.push(row);
        }
        let mut tenants: Vec<_> = tenants
            .into_iter()
            .map(|(t, (sum, mut rows))| {
                rows.sort_by(|a, b| (a.kind.as_str(), &a.model).cmp(&(b.kind.as_str(), &b.model)));
                (t, sum, rows)
            })
            .collect();
        tenants.sort_by(|a, b| {
            b.1.total_tokens()
                .cmp(&a.1.total_tokens())
                .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
        });
        Ok(AdminUsageReport {
            window,
            since,
            until,
            totals,
            tenants,
        })
    }

    /// The cost of `tokens` of `model`, in micro-units.
    #[must_use]
    pub fn cost(&self, model: &str, tokens: Tokens) -> i64 {
        self.settings.prices.cost(model, tokens)
    }

    /// Counts one request of `class` for every subject and answers with the tightest
    /// budget. Budgets of 0 are off; with none left, `None`.
    ///
    /// # Errors
    /// When the cache fails (the caller decides whether to let the request through).
    pub async fn check_rate(
        &self,
        class: RateClass,
        subjects: &[RateSubject],
    ) -> Result<Option<RateDecision>, CacheError> {
        let Some(budget) = self.settings.rate_limits.budgets.get(&class).copied() else {
            return Ok(None);
        };
        let window = self.settings.rate_limits.window;
        let budgets: Vec<(u64, CacheKey)> = subjects
            .iter()
            .map(|subject| (u64::from(budget.for_subject(subject)), subject))
            .filter(|(limit, _)| *limit > 0)
            .map(|(limit, subject)| (limit, Self::rate_key(class, subject)))
            .collect();
        // Every subject's counter at once: one round trip of latency, not one per subject.
        let counters = futures_util::future::try_join_all(
            budgets
                .iter()
                .map(|(_, key)| self.ports.cache.increment(key, 1, window)),
        )
        .await?;
        let mut tightest: Option<RateDecision> = None;
        for ((limit, _), counter) in budgets.iter().zip(counters) {
            let limit = *limit;
            let count = non_negative(counter.value);
            let decision = RateDecision {
                allowed: count <= limit,
                limit,
                remaining: limit.saturating_sub(count),
                reset: counter.ttl,
            };
            let tighter = match &tightest {
                None => true,
                Some(t) => {
                    (t.allowed && !decision.allowed)
                        || (t.allowed == decision.allowed
                            && (decision.remaining, std::cmp::Reverse(decision.reset))
                                < (t.remaining, std::cmp::Reverse(t.reset)))
                }
            };
            if tighter {
                tightest = Some(decision);
            }
        }
        Ok(tightest)
    }

    /// The counter of `subject`'s budget for `class`.
    fn rate_key(class: RateClass, subject: &RateSubject) -> CacheKey {
        match subject {
            RateSubject::Ip(ip) => CacheKey::global("ratelimit", &[class.as_str(), "ip", ip]),
            RateSubject::User(u) => {
                CacheKey::global("ratelimit", &[class.as_str(), "user", &u.to_string()])
            }
            RateSubject::ApiKey(k) => {
                CacheKey::global("ratelimit", &[class.as_str(), "key", &k.to_string()])
            }
            RateSubject::Tenant(t) => CacheKey::tenant(*t, "ratelimit", &[class.as_str()]),
        }
    }

    /// Meters an organization's export `run` (docs/billing.md, "Exports"): one ledger entry of
    /// kind `export` with the archive's `bytes`, no tokens (an export calls no model and spends
    /// none of the monthly token quota), costing `export_micros_per_gib` per GiB, rounded up to
    /// a whole micro-unit. The run's id is the entry's: a run that builds its archive again
    /// (taken over after a crash) is metered once.
    pub async fn record_export(
        &self,
        tenant: TenantId,
        actor: Option<kernel::Principal>,
        run: uuid::Uuid,
        bytes: u64,
    ) {
        let per_gib = i128::from(self.settings.export_micros_per_gib.max(0));
        let cost = (i128::from(bytes) * per_gib + (1 << 30) - 1) >> 30;
        let event = UsageEvent {
            id: run,
            tenant,
            actor,
            model: "export".to_owned(),
            kind: kernel::metering::UsageKind::Export,
            reference: format!("export:{run}"),
            request_id: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_micros: i64::try_from(cost).unwrap_or(i64::MAX),
            bytes,
            at: self.ports.clock.now(),
        };
        self.record(&event).await;
    }

    /// Writes `event` to the ledger, trying again with a doubling pause while it fails, for
    /// `ledger_retry_for`; given up (and logged with its ids and counts) after that.
    async fn record(&self, event: &UsageEvent) -> Recorded {
        let retry_for = self.settings.ledger_retry_for;
        let mut backoff = Backoff::new(retry_for, LEDGER_RETRY_PAUSE, LEDGER_RETRY_MAX_PAUSE);
        loop {
            match self.ports.ledger.append(event).await {
                Ok(appended) => {
                    if backoff.tries() > 1 {
                        tracing::info!(event = %event.id, tries = backoff.tries(), "a usage event was written after the ledger came back");
                    }
                    return if appended {
                        Recorded::Appended
                    } else {
                        Recorded::Duplicate
                    };
                }
                Err(e) => {
                    if let Some(pause) = backoff.next_pause() {
                        tracing::warn!(error = %format!("{e:#}"), event = %event.id, tries = backoff.tries() - 1, "writing a usage event failed; trying again");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    tracing::error!(
                        error = %format!("{e:#}"),
                        event = %event.id,
                        tenant = %event.tenant,
                        reference = %event.reference,
                        model = %event.model,
                        kind = %event.kind,
                        prompt_tokens = event.prompt_tokens,
                        completion_tokens = event.completion_tokens,
                        retried_for = ?retry_for,
                        "a usage event could not be written"
                    );
                    return Recorded::Lost;
                }
            }
        }
    }
}

fn sorted<K, F>(map: HashMap<K, Totals>, name: F) -> Vec<(K, Totals)>
where
    F: Fn(&K) -> String,
{
    let mut v: Vec<(K, Totals)> = map.into_iter().collect();
    v.sort_by(|a, b| {
        b.1.total_tokens()
            .cmp(&a.1.total_tokens())
            .then_with(|| b.1.cost_micros.cmp(&a.1.cost_micros))
            .then_with(|| name(&a.0).cmp(&name(&b.0)))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_calendar_months_in_utc() {
        let t = time::macros::datetime!(2026-11-22 08:30 UTC);
        let (start, end) = period_of(t);
        assert_eq!(start, time::macros::datetime!(2026-11-01 00:00 UTC));
        assert_eq!(end, time::macros::datetime!(2026-12-01 00:00 UTC));
        let (start, end) = period_of(time::macros::datetime!(2026-12-31 23:59:59 UTC));
        assert_eq!(start, time::macros::datetime!(2026-12-01 00:00 UTC));
        assert_eq!(end, time::macros::datetime!(2027-01-01 00:00 UTC));
        // An offset is read in UTC.
        let (start, _) = period_of(time::macros::datetime!(2026-12-01 00:30 +01:00));
        assert_eq!(start, time::macros::datetime!(2026-11-01 00:00 UTC));
        assert_eq!(period_label(start), "2026-11");
    }

    #[test]
    fn limits_round_trip_through_the_cache_encoding() {
        for l in [
            Limits {
                plan: "pro|x".to_owned(),
                monthly_token_limit: Some(5),
                overridden: true,
                max_streams: 3,
            },
            Limits {
                plan: "enterprise".to_owned(),
                monthly_token_limit: None,
                overridden: false,
                max_streams: 256,
            },
        ] {
            assert_eq!(Limits::decode(&l.encode()), Some(l));
        }
        assert_eq!(Limits::decode("garbage"), None);
    }
}
