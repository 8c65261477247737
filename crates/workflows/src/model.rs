//! Workflow kinds and their inputs, runs (a row of the queue) and schedules.

use documents::{CollectionId, DocumentId};
use kernel::{ApiKeyId, FieldError, InvalidInput, Principal, Role, TenantId, UserId};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cron::CronExpr;

kernel::define_id!(
    /// One run of a workflow (a row of the queue).
    RunId
);
kernel::define_id!(
    /// A schedule: a workflow, its input and a cron expression.
    ScheduleId
);

/// The most documents a summary or an analysis reads.
pub const MAX_DOCUMENTS: usize = 20;
/// The most documents a re-index queues.
pub const MAX_REINDEX: usize = 1_000;
/// The most schedules an organization may keep.
pub const MAX_SCHEDULES: usize = 20;
/// The longest text kept per document in a result (characters).
pub const MAX_TEXT_CHARS: usize = 4_000;
/// The longest error kept on a run (characters).
pub const MAX_ERROR_CHARS: usize = 500;
/// The largest CSV an export keeps (bytes).
pub const MAX_EXPORT_BYTES: usize = 1 << 20;
/// Claims of one run before it fails for good (its workers kept dying).
pub const MAX_ATTEMPTS: u32 = 3;

/// What a workflow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkflowKind {
    /// Summarizes each ready document of a collection, then the whole (uses the model).
    SummarizeCollection,
    /// Analyzes a set of documents: stats, and summary, keywords, entities, sentiment (uses the
    /// model).
    AnalyzeDocuments,
    /// Re-runs the ingestion pipeline on every document of a collection.
    ReindexCollection,
    /// Exports the organization's usage as CSV.
    ExportUsage,
    /// Exports the whole organization as an archive (owners, through `POST /orgs/{org}/exports`
    /// only: never triggered or scheduled through `/workflows`).
    ExportOrganization,
}

impl WorkflowKind {
    /// Every kind, in the order `GET /workflows` lists them.
    pub const ALL: [Self; 4] = [
        Self::SummarizeCollection,
        Self::AnalyzeDocuments,
        Self::ReindexCollection,
        Self::ExportUsage,
    ];

    /// Every kind a run may have: [`Self::ALL`] and the organization's export, which has
    /// routes of its own.
    pub const STORED: [Self; 5] = [
        Self::SummarizeCollection,
        Self::AnalyzeDocuments,
        Self::ReindexCollection,
        Self::ExportUsage,
        Self::ExportOrganization,
    ];

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SummarizeCollection => "summarize_collection",
            Self::AnalyzeDocuments => "analyze_documents",
            Self::ReindexCollection => "reindex_collection",
            Self::ExportUsage => "export_usage",
            Self::ExportOrganization => "export_organization",
        }
    }

    /// The kind with this wire name (any stored kind; [`Self::triggerable`] says whether
    /// `/workflows` may start it).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::STORED.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether `POST /workflows/trigger` and the schedules may start it.
    #[must_use]
    pub const fn triggerable(self) -> bool {
        !matches!(self, Self::ExportOrganization)
    }

    /// One sentence for `GET /workflows`.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::SummarizeCollection => {
                "Summarizes each ready document of a collection (at most 20), then the \
                 collection as a whole. Uses the model: metered like chat."
            }
            Self::AnalyzeDocuments => {
                "Analyzes up to 20 documents: pages, chunks and tokens, and the summary, keywords, \
                 entities and sentiment of each. Uses the model: metered like chat."
            }
            Self::ReindexCollection => {
                "Re-runs ingestion on every document of a collection (at most 1,000): one \
                 ingestion job each, listed by GET /jobs."
            }
            Self::ExportUsage => {
                "Exports the organization's usage over a window as CSV, downloadable from \
                 GET /workflows/runs/{id}/download. Admins and owners."
            }
            Self::ExportOrganization => {
                "Exports the whole organization as an archive (POST /orgs/{org}/exports). Owners."
            }
        }
    }

    /// The lowest role that may trigger, schedule or cancel it.
    #[must_use]
    pub const fn min_role(self) -> Role {
        match self {
            // Usage is for admins (`GET /usage`).
            Self::ExportUsage => Role::Admin,
            // Everything the organization holds.
            Self::ExportOrganization => Role::Owner,
            // As the AI tasks and `POST /documents/{id}/reindex`.
            _ => Role::Member,
        }
    }

    /// Whether it calls the model (and is metered).
    #[must_use]
    pub const fn uses_model(self) -> bool {
        matches!(self, Self::SummarizeCollection | Self::AnalyzeDocuments)
    }

    /// The JSON Schema of its input.
    #[must_use]
    pub fn input_schema(self) -> Value {
        match self {
            Self::SummarizeCollection => json!({
                "type": "object",
                "required": ["collection_id"],
                "additionalProperties": false,
                "properties": {
                    "collection_id": {"type": "string", "format": "uuid"},
                    "style": {"type": "string", "enum": ["concise", "detailed", "bullets"]}
                }
            }),
            Self::AnalyzeDocuments => json!({
                "type": "object",
                "required": ["document_ids"],
                "additionalProperties": false,
                "properties": {
                    "document_ids": {
                        "type": "array", "minItems": 1, "maxItems": MAX_DOCUMENTS,
                        "items": {"type": "string", "format": "uuid"}
                    }
                }
            }),
            Self::ReindexCollection => json!({
                "type": "object",
                "required": ["collection_id"],
                "additionalProperties": false,
                "properties": {"collection_id": {"type": "string", "format": "uuid"}}
            }),
            Self::ExportUsage => json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {"window": {"type": "string", "enum": ["24h", "7d", "30d"]}}
            }),
            Self::ExportOrganization => json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {}
            }),
        }
    }
}

/// A summary's style (as `POST /ai/summarize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// 2 to 4 sentences.
    #[default]
    Concise,
    /// Longer.
    Detailed,
    /// Lines starting `- `.
    Bullets,
}

impl Style {
    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Concise => "concise",
            Self::Detailed => "detailed",
            Self::Bullets => "bullets",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Concise, Self::Detailed, Self::Bullets]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// The usage window of an export (as `GET /usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsageWindow {
    /// 24 hours.
    Day,
    /// 7 days.
    Week,
    /// 30 days.
    #[default]
    Month,
}

impl UsageWindow {
    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Day, Self::Week, Self::Month]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A workflow with its validated input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// See [`WorkflowKind::SummarizeCollection`].
    SummarizeCollection {
        /// The collection.
        collection: CollectionId,
        /// The style of each summary.
        style: Style,
    },
    /// See [`WorkflowKind::AnalyzeDocuments`].
    AnalyzeDocuments {
        /// The documents, without repeats, in the order given.
        documents: Vec<DocumentId>,
    },
    /// See [`WorkflowKind::ReindexCollection`].
    ReindexCollection {
        /// The collection.
        collection: CollectionId,
    },
    /// See [`WorkflowKind::ExportUsage`].
    ExportUsage {
        /// The window.
        window: UsageWindow,
    },
    /// See [`WorkflowKind::ExportOrganization`].
    ExportOrganization,
}

fn object(input: &Value) -> Result<&serde_json::Map<String, Value>, InvalidInput> {
    match input {
        Value::Object(map) => Ok(map),
        Value::Null => Err(InvalidInput::field("input", "must be a JSON object")),
        _ => Err(InvalidInput::field("input", "must be a JSON object")),
    }
}

fn only(map: &serde_json::Map<String, Value>, allowed: &[&str], errors: &mut Vec<FieldError>) {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            errors.push(FieldError::new(
                format!("input.{}", key.chars().take(64).collect::<String>()),
                "is not a field of this workflow",
            ));
        }
    }
}

fn id_field<T>(
    map: &serde_json::Map<String, Value>,
    key: &str,
    parse: fn(&str) -> Option<T>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match map.get(key) {
        Some(Value::String(s)) => parse(s).or_else(|| {
            errors.push(FieldError::new(format!("input.{key}"), "must be an id"));
            None
        }),
        None | Some(Value::Null) => {
            errors.push(FieldError::new(format!("input.{key}"), "is required"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new(
                format!("input.{key}"),
                "must be a string id",
            ));
            None
        }
    }
}

fn name_field<T>(
    map: &serde_json::Map<String, Value>,
    key: &str,
    parse: fn(&str) -> Option<T>,
    allowed: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if parse(s).is_some() => parse(s),
        Some(_) => {
            errors.push(FieldError::new(
                format!("input.{key}"),
                format!("must be one of {allowed}"),
            ));
            None
        }
    }
}

impl Input {
    /// Validates `input` for `kind`.
    ///
    /// # Errors
    /// [`InvalidInput`] naming each wrong field (`input.<field>`).
    pub fn parse(kind: WorkflowKind, input: &Value) -> Result<Self, InvalidInput> {
        let empty = serde_json::Map::new();
        let map = match (kind, input) {
            // The export's one field is optional: no input at all is fine.
            (WorkflowKind::ExportUsage | WorkflowKind::ExportOrganization, Value::Null) => &empty,
            _ => object(input)?,
        };
        let mut errors = Vec::new();
        let parsed = match kind {
            WorkflowKind::SummarizeCollection => {
                only(map, &["collection_id", "style"], &mut errors);
                let collection = id_field(
                    map,
                    "collection_id",
                    |s| CollectionId::parse(s).ok(),
                    &mut errors,
                );
                let style = name_field(
                    map,
                    "style",
                    Style::parse,
                    "concise, detailed, bullets",
                    &mut errors,
                )
                .unwrap_or_default();
                collection.map(|collection| Self::SummarizeCollection { collection, style })
            }
            WorkflowKind::AnalyzeDocuments => {
                only(map, &["document_ids"], &mut errors);
                match map.get("document_ids") {
                    Some(Value::Array(items)) if (1..=MAX_DOCUMENTS).contains(&items.len()) => {
                        let mut documents = Vec::new();
                        for (i, item) in items.iter().enumerate() {
                            match item.as_str().and_then(|s| DocumentId::parse(s).ok()) {
                                Some(id) if !documents.contains(&id) => documents.push(id),
                                Some(_) => {}
                                None => errors.push(FieldError::new(
                                    format!("input.document_ids[{i}]"),
                                    "must be a document id",
                                )),
                            }
                        }
                        Some(Self::AnalyzeDocuments { documents })
                    }
                    _ => {
                        errors.push(FieldError::new(
                            "input.document_ids",
                            format!("must be an array of 1 to {MAX_DOCUMENTS} document ids"),
                        ));
                        None
                    }
                }
            }
            WorkflowKind::ReindexCollection => {
                only(map, &["collection_id"], &mut errors);
                id_field(
                    map,
                    "collection_id",
                    |s| CollectionId::parse(s).ok(),
                    &mut errors,
                )
                .map(|collection| Self::ReindexCollection { collection })
            }
            WorkflowKind::ExportUsage => {
                only(map, &["window"], &mut errors);
                let window = name_field(
                    map,
                    "window",
                    UsageWindow::parse,
                    "24h, 7d, 30d",
                    &mut errors,
                )
                .unwrap_or_default();
                Some(Self::ExportUsage { window })
            }
            WorkflowKind::ExportOrganization => {
                only(map, &[], &mut errors);
                Some(Self::ExportOrganization)
            }
        };
        match parsed {
            Some(p) if errors.is_empty() => Ok(p),
            _ => Err(InvalidInput(errors)),
        }
    }

    /// Its kind.
    #[must_use]
    pub const fn kind(&self) -> WorkflowKind {
        match self {
            Self::SummarizeCollection { .. } => WorkflowKind::SummarizeCollection,
            Self::AnalyzeDocuments { .. } => WorkflowKind::AnalyzeDocuments,
            Self::ReindexCollection { .. } => WorkflowKind::ReindexCollection,
            Self::ExportUsage { .. } => WorkflowKind::ExportUsage,
            Self::ExportOrganization => WorkflowKind::ExportOrganization,
        }
    }

    /// The input as stored and shown (normalized: defaults filled in).
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self {
            Self::SummarizeCollection { collection, style } => {
                json!({"collection_id": collection.to_string(), "style": style.as_str()})
            }
            Self::AnalyzeDocuments { documents } => json!({
                "document_ids": documents.iter().map(ToString::to_string).collect::<Vec<_>>()
            }),
            Self::ReindexCollection { collection } => {
                json!({"collection_id": collection.to_string()})
            }
            Self::ExportUsage { window } => json!({"window": window.as_str()}),
            Self::ExportOrganization => json!({}),
        }
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// Leased by a worker.
    Running,
    /// Done; its result is set.
    Succeeded,
    /// Ended on an error; its error is set.
    Failed,
    /// Cancelled before it ended.
    Cancelled,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status with this wire name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the run will not run again.
    #[must_use]
    pub const fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// Who started a run or made a schedule, as stored (`user:<id>` or `api_key:<id>`).
#[must_use]
pub fn actor_column(p: Principal) -> String {
    match p {
        Principal::User(u) => format!("user:{u}"),
        Principal::ApiKey(k) => format!("api_key:{k}"),
    }
}

/// The principal of a stored actor column.
#[must_use]
pub fn parse_actor(s: &str) -> Option<Principal> {
    if let Some(id) = s.strip_prefix("user:") {
        return UserId::parse(id).ok().map(Principal::User);
    }
    s.strip_prefix("api_key:")
        .and_then(|id| ApiKeyId::parse(id).ok())
        .map(Principal::ApiKey)
}

/// One run of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Id.
    pub id: RunId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// What it does.
    pub kind: WorkflowKind,
    /// Its input (normalized, see [`Input::to_json`]).
    pub input: Value,
    /// Where it is.
    pub status: RunStatus,
    /// 0..1.
    pub progress: f32,
    /// What it produced (a JSON object, bounded), once succeeded.
    pub result: Option<Value>,
    /// The CSV of an export, once succeeded.
    pub artifact: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Who started it (the schedule's maker for a scheduled run).
    pub actor: Principal,
    /// The role they held then.
    pub role: Role,
    /// The schedule that fired it.
    pub schedule_id: Option<ScheduleId>,
    /// Claims so far.
    pub attempts: u32,
    /// A cancel was asked while it ran: its worker stops at its next step.
    pub cancel_requested: bool,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Ended (any final status).
    pub finished_at: Option<OffsetDateTime>,
}

impl Run {
    /// A new queued run.
    #[must_use]
    pub fn queued(
        tenant_id: TenantId,
        input: &Input,
        actor: Principal,
        role: Role,
        schedule_id: Option<ScheduleId>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: RunId::new(),
            tenant_id,
            kind: input.kind(),
            input: input.to_json(),
            status: RunStatus::Queued,
            progress: 0.0,
            result: None,
            artifact: None,
            error: None,
            actor,
            role,
            schedule_id,
            attempts: 0,
            cancel_requested: false,
            created_at: now,
            finished_at: None,
        }
    }
}

/// A leased run.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The run, as claimed (status `running`, attempts counted).
    pub run: Run,
    /// Proof of the lease.
    pub lease: Uuid,
}

/// How a claimed run ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// With its result (and an export's CSV).
    Succeeded {
        /// The result.
        result: Value,
        /// The CSV.
        artifact: Option<String>,
        /// When an export's archive expires (the sweep deletes it after).
        archive_expires_at: Option<OffsetDateTime>,
    },
    /// With an error.
    Failed(String),
    /// Cancelled at a step.
    Cancelled,
}

impl Ending {
    /// The status it ends with.
    #[must_use]
    pub const fn status(&self) -> RunStatus {
        match self {
            Self::Succeeded { .. } => RunStatus::Succeeded,
            Self::Failed(_) => RunStatus::Failed,
            Self::Cancelled => RunStatus::Cancelled,
        }
    }
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The lease holds and was extended.
    Held,
    /// A cancel was asked: stop and end the run `cancelled`.
    CancelRequested,
    /// The lease is gone (taken over, or the run ended): stop, write nothing.
    Lost,
}

/// Which runs a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only this kind.
    pub kind: Option<WorkflowKind>,
}

/// A workflow that runs on a cron expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Id.
    pub id: ScheduleId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// What it runs.
    pub kind: WorkflowKind,
    /// With this input (normalized).
    pub input: Value,
    /// When (UTC).
    pub cron: CronExpr,
    /// The next occurrence to fire; moved on by a compare-and-set when it fires.
    pub next_run_at: OffsetDateTime,
    /// Who made it (its runs act for them).
    pub actor: Principal,
    /// Their role then.
    pub role: Role,
    /// Created.
    pub created_at: OffsetDateTime,
}

/// Keeps at most `max` characters of `s` (with an ellipsis when cut).
#[must_use]
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in WorkflowKind::ALL {
            assert_eq!(WorkflowKind::parse(k.as_str()), Some(k));
            assert!(k.input_schema().is_object());
        }
        assert_eq!(WorkflowKind::parse("Summarize_Collection"), None);
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        let u = Principal::User(UserId::new());
        assert_eq!(parse_actor(&actor_column(u)), Some(u));
        let k = Principal::ApiKey(ApiKeyId::new());
        assert_eq!(parse_actor(&actor_column(k)), Some(k));
        assert_eq!(parse_actor("root"), None);
    }

    #[test]
    fn inputs_are_validated_per_kind() {
        let c = CollectionId::new();
        let ok = Input::parse(
            WorkflowKind::SummarizeCollection,
            &json!({"collection_id": c.to_string()}),
        )
        .expect("valid");
        assert_eq!(
            ok,
            Input::SummarizeCollection {
                collection: c,
                style: Style::Concise
            }
        );
        assert_eq!(ok.to_json()["style"], "concise");
        for bad in [
            json!(null),
            json!([]),
            json!({}),
            json!({"collection_id": 7}),
            json!({"collection_id": "nope"}),
            json!({"collection_id": c.to_string(), "style": "loud"}),
            json!({"collection_id": c.to_string(), "extra": true}),
        ] {
            let e = Input::parse(WorkflowKind::SummarizeCollection, &bad).expect_err("invalid");
            assert!(!e.0.is_empty(), "{bad}");
        }
        let d = DocumentId::new();
        let docs = Input::parse(
            WorkflowKind::AnalyzeDocuments,
            &json!({"document_ids": [d.to_string(), d.to_string()]}),
        )
        .expect("valid");
        assert_eq!(docs, Input::AnalyzeDocuments { documents: vec![d] });
        let too_many: Vec<String> = (0..=MAX_DOCUMENTS)
            .map(|_| DocumentId::new().to_string())
            .collect();
        assert!(
            Input::parse(
                WorkflowKind::AnalyzeDocuments,
                &json!({ "document_ids": too_many })
            )
            .is_err()
        );
        assert!(
            Input::parse(WorkflowKind::AnalyzeDocuments, &json!({"document_ids": []})).is_err()
        );
        assert_eq!(
            Input::parse(WorkflowKind::ExportUsage, &Value::Null).expect("no input"),
            Input::ExportUsage {
                window: UsageWindow::Month
            }
        );
        assert!(Input::parse(WorkflowKind::ExportUsage, &json!({"window": "1y"})).is_err());
    }

    #[test]
    fn clip_keeps_short_text() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
    }
}
