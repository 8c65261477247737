//! Billing: the usage ledger, prices, plans, quotas and rate limits.
//!
//! - [`model`]: ledger events, windows and totals, prices in micro-units per million tokens,
//!   plans, rate-limit budgets;
//! - [`ports`]: the ledger ([`ports::UsageLedger`]) and each organization's plan
//!   ([`ports::TenantPlans`]);
//! - [`service`]: [`Billing`], which implements the metering port ([`kernel::Meter`]) that
//!   chat and retrieval call: quota reservations and stream slots are atomic counters in the
//!   cache port (a Lua script on Redis, a guarded map in one process), the ledger is SQL;
//!   and answers the usage and plan routes and the rate limits;
//! - [`estimate`]: [`Estimates`], what a call would cost at most, over the [`ModelCatalog`]
//!   port that chat and retrieval provide.
//!
//! Depends on `kernel` (and `tenancy`, for the organizations' plans) only: no I/O but
//! through its ports.

pub mod estimate;
pub mod model;
pub mod plans;
pub mod ports;
pub mod service;

pub use estimate::{Estimate, EstimateMessage, EstimateRequest, Estimates, ModelCatalog};
pub use model::{
    AdminUsageReport, Plan, PlanStatus, Plans, Price, Prices, RateBudget, RateClass, RateDecision,
    RateLimits, RateSubject, Totals, UsageEvent, UsageReport, UsageRow, Window,
};
pub use service::{Billing, BillingError, BillingPorts, BillingSettings};
