//! Billing: the usage ledger, prices, plans, quotas and rate limits.
//!
//! Thin until its issue: the domain lands here as `model`, `ports`, `service` and `error`,
//! depending only on `kernel` (see docs/architecture.md).
