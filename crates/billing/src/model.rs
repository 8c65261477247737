//! Billing's types: ledger events, windows and totals, prices, plans and rate-limit policies.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use kernel::metering::{Tokens, UsageKind};
use kernel::{ApiKeyId, Principal, TenantId, UserId};
use time::OffsetDateTime;

/// One billable call, as the ledger keeps it (append-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// The reservation's id: unique, so a retried write is recognised, never doubled.
    pub id: uuid::Uuid,
    /// The organization that pays.
    pub tenant: TenantId,
    /// The user or API key that asked; `None` for background work.
    pub actor: Option<Principal>,
    /// The model called.
    pub model: String,
    /// Chat or embedding.
    pub kind: UsageKind,
    /// What the call served (`message:<id>`, `document:<id>`, …).
    pub reference: String,
    /// The HTTP request it served, if any.
    pub request_id: Option<String>,
    /// Tokens sent.
    pub prompt_tokens: u64,
    /// Tokens produced.
    pub completion_tokens: u64,
    /// What it cost, in micro-units of the currency.
    pub cost_micros: i64,
    /// Bytes it carried out (an export's archive; 0 for model calls).
    pub bytes: u64,
    /// When it was settled.
    pub at: OffsetDateTime,
}

/// A look-back window of the usage routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Window {
    /// The last 24 hours (`24h`).
    Day,
    /// The last 7 days (`7d`).
    Week,
    /// The last 30 days (`30d`, the default).
    #[default]
    Month,
}

impl Window {
    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
            Window::Month => "30d",
        }
    }

    /// The window with this wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "24h" => Some(Window::Day),
            "7d" => Some(Window::Week),
            "30d" => Some(Window::Month),
            _ => None,
        }
    }

    /// How far it looks back.
    #[must_use]
    pub const fn length(self) -> time::Duration {
        match self {
            Window::Day => time::Duration::hours(24),
            Window::Week => time::Duration::days(7),
            Window::Month => time::Duration::days(30),
        }
    }

    /// The length of one bucket of its series: an hour over `24h`, a day over `7d` and `30d`.
    #[must_use]
    pub const fn step(self) -> time::Duration {
        match self {
            Window::Day => time::Duration::hours(1),
            Window::Week | Window::Month => time::Duration::days(1),
        }
    }

    /// How many buckets its series has (24, 7 or 30): `length / step`.
    #[must_use]
    pub const fn buckets(self) -> u32 {
        match self {
            Window::Day => 24,
            Window::Week => 7,
            Window::Month => 30,
        }
    }
}

/// Sums over ledger events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tokens sent.
    pub prompt_tokens: u64,
    /// Tokens produced.
    pub completion_tokens: u64,
    /// Cost in micro-units.
    pub cost_micros: i64,
    /// Calls.
    pub events: u64,
    /// Bytes exported.
    pub bytes: u64,
}

impl Totals {
    /// Both token counts together.
    #[must_use]
    pub const fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Adds `other` to these.
    pub fn add(&mut self, other: &Totals) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cost_micros = self.cost_micros.saturating_add(other.cost_micros);
        self.events = self.events.saturating_add(other.events);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// The ledger grouped by kind, model and actor (what the ledger port answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// Chat or embedding.
    pub kind: UsageKind,
    /// The model.
    pub model: String,
    /// Who asked (`None`: background work).
    pub actor: Option<Principal>,
    /// With a bucket length (`step`), the bucket the events fall in: `⌊(at − since) / step⌋`;
    /// `None` without one.
    pub bucket: Option<u32>,
    /// The sums.
    pub totals: Totals,
}

/// The ledger grouped by tenant, kind and model (platform administrators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantUsageRow {
    /// The organization.
    pub tenant: TenantId,
    /// Chat or embedding.
    pub kind: UsageKind,
    /// The model.
    pub model: String,
    /// The sums.
    pub totals: Totals,
}

/// A usage report of one organization (or one caller in it) over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    /// The window.
    pub window: Window,
    /// Its start.
    pub since: OffsetDateTime,
    /// Its end (now).
    pub until: OffsetDateTime,
    /// Everything.
    pub totals: Totals,
    /// By kind, largest cost first.
    pub by_kind: Vec<(UsageKind, Totals)>,
    /// By model, largest cost first.
    pub by_model: Vec<(String, Totals)>,
    /// By user or API key (`None`: background work), most tokens first.
    pub by_actor: Vec<(Option<Principal>, Totals)>,
    /// Over time: one bucket per [`Window::step`] from `since` ([`Window::buckets`] of them,
    /// empty ones included), each with its start; the buckets' sums add up to `totals`.
    pub series: Vec<(OffsetDateTime, Totals)>,
}

/// Usage of every organization over a window (platform administrators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUsageReport {
    /// The window.
    pub window: Window,
    /// Its start.
    pub since: OffsetDateTime,
    /// Its end (now).
    pub until: OffsetDateTime,
    /// Everything.
    pub totals: Totals,
    /// Per organization, most tokens first, with its rows by kind and model.
    pub tenants: Vec<(TenantId, Totals, Vec<TenantUsageRow>)>,
}

/// A model's price in micro-units of the currency per million tokens (so $0.15 per million
/// tokens is 150 000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million tokens sent.
    pub prompt: u64,
    /// Per million tokens produced.
    #[serde(default)]
    pub completion: u64,
}

impl Price {
    /// The cost of `tokens`, in micro-units, rounded up (a call is never free by rounding).
    #[must_use]
    pub fn cost(&self, tokens: Tokens) -> i64 {
        let micro_millionths = u128::from(tokens.prompt) * u128::from(self.prompt)
            + u128::from(tokens.completion) * u128::from(self.completion);
        i64::try_from(micro_millionths.div_ceil(1_000_000)).unwrap_or(i64::MAX)
    }
}

/// Prices of every model. Built-in defaults for common OpenAI models (their list prices in
/// US dollars as of late 2026), overridden and extended by configuration; local models and
/// unknown ones cost 0 (an unknown one is logged once per name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    by_model: HashMap<String, Price>,
}

/// List prices in micro-dollars per million tokens: (model, prompt, completion).
const DEFAULT_PRICES: &[(&str, u64, u64)] = &[
    ("gpt-4o", 2_500_000, 10_000_000),
    ("gpt-4o-mini", 150_000, 600_000),
    ("gpt-4.1", 2_000_000, 8_000_000),
    ("gpt-4.1-mini", 400_000, 1_600_000),
    ("gpt-4.1-nano", 100_000, 400_000),
    ("gpt-4-turbo", 10_000_000, 30_000_000),
    ("gpt-3.5-turbo", 500_000, 1_500_000),
    ("o3-mini", 1_100_000, 4_400_000),
    ("o4-mini", 1_100_000, 4_400_000),
    ("gpt-5", 1_250_000, 10_000_000),
    ("gpt-5-mini", 250_000, 2_000_000),
    ("gpt-5-nano", 50_000, 400_000),
    ("text-embedding-3-small", 20_000, 0),
    ("text-embedding-3-large", 130_000, 0),
    ("text-embedding-ada-002", 100_000, 0),
];

impl Default for Prices {
    fn default() -> Self {
        Self {
            by_model: DEFAULT_PRICES
                .iter()
                .map(|(m, p, c)| {
                    (
                        (*m).to_owned(),
                        Price {
                            prompt: *p,
                            completion: *c,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl Prices {
    /// The defaults with `overrides` on top.
    #[must_use]
    pub fn with(overrides: impl IntoIterator<Item = (String, Price)>) -> Self {
        let mut prices = Self::default();
        prices.by_model.extend(overrides);
        prices
    }

    /// The price of `model`, when one is known.
    #[must_use]
    pub fn get(&self, model: &str) -> Option<Price> {
        self.by_model.get(model).copied()
    }

    /// The cost of `tokens` of `model` in micro-units (0 for a model without a price).
    #[must_use]
    pub fn cost(&self, model: &str, tokens: Tokens) -> i64 {
        self.get(model).map_or(0, |p| p.cost(tokens))
    }
}

/// A plan: how many tokens a month, how many answers streaming at once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Tokens (prompt + completion, chat and embeddings) per calendar month (UTC); `None`
    /// for no limit.
    #[serde(default)]
    pub monthly_token_limit: Option<u64>,
    /// Answers and completions streaming at once per organization.
    pub max_concurrent_streams: u32,
    /// Bytes of original files an organization may keep (every document, whatever its
    /// status; deleting documents frees them); `None` for no limit.
    #[serde(default)]
    pub max_storage_bytes: Option<u64>,
}

/// The configured plans by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans {
    by_name: HashMap<String, Plan>,
}

impl Default for Plans {
    /// `free` (1 M tokens a month, 4 streams, 1 GiB of files), `pro` (50 M, 32, 100 GiB),
    /// `enterprise` (no limit, 256, no limit).
    fn default() -> Self {
        Self::new([
            (
                "free".to_owned(),
                Plan {
                    monthly_token_limit: Some(1_000_000),
                    max_concurrent_streams: 4,
                    max_storage_bytes: Some(1 << 30),
                },
            ),
            (
                "pro".to_owned(),
                Plan {
                    monthly_token_limit: Some(50_000_000),
                    max_concurrent_streams: 32,
                    max_storage_bytes: Some(100 << 30),
                },
            ),
            (
                "enterprise".to_owned(),
                Plan {
                    monthly_token_limit: None,
                    max_concurrent_streams: 256,
                    max_storage_bytes: None,
                },
            ),
        ])
    }
}

impl Plans {
    /// These plans.
    #[must_use]
    pub fn new(plans: impl IntoIterator<Item = (String, Plan)>) -> Self {
        Self {
            by_name: plans.into_iter().collect(),
        }
    }

    /// The plan called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.by_name.get(name)
    }

    /// The plans' names, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }
}

/// An organization's plan, limit and use this period (`GET /billing/plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStatus {
    /// The plan's name.
    pub plan: String,
    /// The monthly limit in force (an administrator's override, else the plan's); `None`:
    /// no limit.
    pub monthly_token_limit: Option<u64>,
    /// Whether the limit is an override of the plan's.
    pub limit_overridden: bool,
    /// Tokens billed this period.
    pub used: u64,
    /// Tokens left this period (`None`: no limit).
    pub remaining: Option<u64>,
    /// When this period started.
    pub period_start: OffsetDateTime,
    /// When the next period starts (the quota resets).
    pub resets_at: OffsetDateTime,
    /// Answers that may stream at once.
    pub max_concurrent_streams: u32,
}

/// The routes that are rate-limited, each with its own budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Answers, completions and AI tasks.
    Chat,
    /// Embeddings and search.
    Embeddings,
    /// Uploads and re-indexing.
    Upload,
    /// Sign-in, registration, codes, refresh, resets.
    Auth,
}

impl RateClass {
    /// The name used in keys and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RateClass::Chat => "chat",
            RateClass::Embeddings => "embeddings",
            RateClass::Upload => "upload",
            RateClass::Auth => "auth",
        }
    }
}

impl fmt::Display for RateClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a budget is counted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateSubject {
    /// A client address.
    Ip(String),
    /// A signed-in user.
    User(UserId),
    /// An API key.
    ApiKey(ApiKeyId),
    /// An organization (all its users and keys together).
    Tenant(TenantId),
}

/// Requests per window of one route class, per subject kind; 0 turns that budget off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateBudget {
    /// Per client address.
    #[serde(default)]
    pub per_ip: u32,
    /// Per signed-in user.
    #[serde(default)]
    pub per_user: u32,
    /// Per API key.
    #[serde(default)]
    pub per_api_key: u32,
    /// Per organization.
    #[serde(default)]
    pub per_tenant: u32,
}

impl RateBudget {
    /// The budget for `subject` (0: none).
    #[must_use]
    pub const fn for_subject(&self, subject: &RateSubject) -> u32 {
        match subject {
            RateSubject::Ip(_) => self.per_ip,
            RateSubject::User(_) => self.per_user,
            RateSubject::ApiKey(_) => self.per_api_key,
            RateSubject::Tenant(_) => self.per_tenant,
        }
    }
}

/// The rate-limit policy: one fixed window, a budget per route class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// The window every budget counts in.
    pub window: Duration,
    /// Budgets per class.
    pub budgets: HashMap<RateClass, RateBudget>,
}

impl Default for RateLimits {
    /// A minute's window: chat 60 per user or key, 120 per address, 600 per organization;
    /// embeddings and search 300 / 600 / 3 000; uploads 60 / 120 / 600; auth 20 per address.
    fn default() -> Self {
        let budget = |user: u32, ip: u32, tenant: u32| RateBudget {
            per_ip: ip,
            per_user: user,
            per_api_key: user,
            per_tenant: tenant,
        };
        Self {
            window: Duration::from_secs(60),
            budgets: HashMap::from([
                (RateClass::Chat, budget(60, 120, 600)),
                (RateClass::Embeddings, budget(300, 600, 3_000)),
                (RateClass::Upload, budget(60, 120, 600)),
                (
                    RateClass::Auth,
                    RateBudget {
                        per_ip: 20,
                        ..RateBudget::default()
                    },
                ),
            ]),
        }
    }
}

/// The outcome of a rate-limit check: the tightest budget that applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The tightest budget's size (`RateLimit-Limit`).
    pub limit: u64,
    /// What is left of it (`RateLimit-Remaining`).
    pub remaining: u64,
    /// Until its window ends (`RateLimit-Reset`, `Retry-After`).
    pub reset: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_round_up_in_micro_units() {
        let p = Price {
            prompt: 150_000,
            completion: 600_000,
        };
        // 1 000 prompt tokens at $0.15/M = $0.00015 = 150 micro-dollars.
        assert_eq!(
            p.cost(Tokens {
                prompt: 1_000,
                completion: 0
            }),
            150
        );
        assert_eq!(
            p.cost(Tokens {
                prompt: 1,
                completion: 1
            }),
            1,
            "a fraction of a micro-unit rounds up"
        );
        assert_eq!(p.cost(Tokens::default()), 0);
        assert_eq!(
            p.cost(Tokens {
                prompt: 1_000_000,
                completion: 1_000_000
            }),
            750_000
        );
    }

    #[test]
    fn local_and_unknown_models_are_free_and_overrides_win() {
        let prices = Prices::with([(
            "gpt-4o-mini".to_owned(),
            Price {
                prompt: 1,
                completion: 2,
            },
        )]);
        let t = Tokens {
            prompt: 10,
            completion: 10,
        };
        assert_eq!(prices.cost("quire-local-extractive", t), 0);
        assert_eq!(prices.cost("quire-local-hash", t), 0);
        assert_eq!(prices.get("gpt-4o-mini").map(|p| p.completion), Some(2));
        assert!(prices.cost("gpt-4o", t) > 0);
    }

    #[test]
    fn windows_round_trip() {
        for w in [Window::Day, Window::Week, Window::Month] {
            assert_eq!(Window::parse(w.as_str()), Some(w));
        }
        assert_eq!(Window::parse("1y"), None);
        assert_eq!(Window::Week.length(), time::Duration::days(7));
    }
}
