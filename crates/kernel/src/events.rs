//! The outbound-events port: what happened in an organization that its webhooks may want to
//! hear (`docs/webhooks.md`). The domain where a thing happens publishes it; the webhooks
//! domain (`crates/webhooks`) fans it out to the organization's subscribed endpoints.
//!
//! Publishing never blocks and never fails the operation that publishes: an adapter hands the
//! event over and returns; what goes wrong afterwards is its own to log.

use std::fmt;

use crate::TenantId;

/// The kinds of events an endpoint may subscribe to (their wire names are
/// [`EventKind::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A document was ingested and is searchable.
    DocumentReady,
    /// A document's ingestion failed for good.
    DocumentFailed,
    /// A workflow run ended (succeeded, failed or cancelled).
    WorkflowCompleted,
    /// A chat answer ended and its usage was settled.
    AnswerCompleted,
    /// The organization's usage crossed a share of its plan's monthly token quota.
    UsageThreshold,
}

impl EventKind {
    /// Every kind, in wire-name order of the docs.
    pub const ALL: [Self; 5] = [
        Self::DocumentReady,
        Self::DocumentFailed,
        Self::WorkflowCompleted,
        Self::AnswerCompleted,
        Self::UsageThreshold,
    ];

    /// The wire name (`document.ready`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DocumentReady => "document.ready",
            Self::DocumentFailed => "document.failed",
            Self::WorkflowCompleted => "workflow.completed",
            Self::AnswerCompleted => "answer.completed",
            Self::UsageThreshold => "usage.threshold",
        }
    }

    /// The kind with this wire name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event of one organization. `data` holds ids, statuses and figures only: never
/// document text, a question, an answer or a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The organization it happened in.
    pub tenant: TenantId,
    /// What happened.
    pub kind: EventKind,
    /// Its details (a JSON object).
    pub data: serde_json::Value,
}

/// Where events go. `publish` returns at once and cannot fail (see the module docs).
pub trait Events: Send + Sync + fmt::Debug {
    /// Hands `event` over.
    fn publish(&self, event: Event);
}

/// Events go nowhere (unit tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn publish(&self, _event: Event) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("document.Ready"), None);
        assert_eq!(EventKind::parse(""), None);
    }
}
