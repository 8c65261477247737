//! Usage and plan wire types shared by `/usage*`, `/billing/plan` and `/admin/*`.

use billing::{Totals, Window};
use kernel::InvalidInput;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// `?window=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct WindowQuery {
    /// `24h`, `7d` or `30d` (default).
    pub(crate) window: Option<String>,
}

impl WindowQuery {
    pub(crate) fn window(&self) -> Result<Window, ApiError> {
        match self.window.as_deref() {
            None => Ok(Window::default()),
            Some(w) => Window::parse(w)
                .ok_or_else(|| InvalidInput::field("window", "must be 24h, 7d or 30d").into()),
        }
    }
}

/// Sums over a window. Costs are integer micro-units of the currency of the price table.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotalsDto {
    /// Tokens sent.
    prompt_tokens: u64,
    /// Tokens produced.
    completion_tokens: u64,
    /// Both.
    total_tokens: u64,
    /// Cost in micro-units.
    cost: i64,
    /// Billable calls.
    requests: u64,
    /// Bytes exported (kind `export`: an organization's export archives).
    bytes: u64,
}

impl From<&Totals> for TotalsDto {
    fn from(t: &Totals) -> Self {
        Self {
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            total_tokens: t.total_tokens(),
            cost: t.cost_micros,
            requests: t.events,
            bytes: t.bytes,
        }
    }
}

/// Usage of one model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelUsageDto {
    /// The model.
    pub(crate) model: String,
    /// `chat` or `embedding` (on `/admin/usage` rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    #[serde(flatten)]
    pub(crate) totals: TotalsDto,
}

/// The organization's plan and this month's use.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanDto {
    /// The plan's name.
    plan: String,
    /// Tokens a month (an administrator's override, else the plan's); `null`: no limit.
    monthly_token_limit: Option<u64>,
    /// Tokens billed this month (UTC calendar month).
    used: u64,
    /// Tokens left this month; `null`: no limit.
    remaining: Option<u64>,
    /// When the month's quota starts again.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    resets_at: OffsetDateTime,
    /// When this month started.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    period_start: OffsetDateTime,
    /// Answers that may stream at once.
    max_concurrent_streams: u32,
    /// Whether `monthly_token_limit` was set by an administrator rather than the plan.
    limit_overridden: bool,
    /// Bytes of original files the organization keeps (every document; deleting frees).
    storage_used_bytes: u64,
    /// Bytes of original files the plan allows; `null`: no limit. An upload past it is
    /// refused with 402 `storage_limit_exceeded`.
    storage_limit_bytes: Option<u64>,
}

impl PlanDto {
    pub(crate) fn new(
        s: billing::PlanStatus,
        (storage_used_bytes, storage_limit_bytes): (u64, Option<u64>),
    ) -> Self {
        Self {
            plan: s.plan,
            monthly_token_limit: s.monthly_token_limit,
            used: s.used,
            remaining: s.remaining,
            resets_at: s.resets_at,
            period_start: s.period_start,
            max_concurrent_streams: s.max_concurrent_streams,
            limit_overridden: s.limit_overridden,
            storage_used_bytes,
            storage_limit_bytes,
        }
    }
}
