//! Chat: sessions, grounded streamed answers, citations, assistants and AI tasks.
//!
//! Thin until its issue: the domain lands here as `model`, `ports`, `service` and `error`,
//! depending only on `kernel` (see docs/architecture.md).
