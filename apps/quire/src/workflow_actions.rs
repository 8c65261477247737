//! The workflows' [`Actions`] port over the documents, chat and billing use cases: what a
//! workflow run does. It lives in the composition root, so the workflows domain knows only its
//! own port. Model calls go through chat's tasks, so they are metered as chat is.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use chat::{AnalysisTask, Chat, ChatError, SummaryStyle, TaskInput};
use documents::{
    CollectionId, Collections, Document, DocumentFilter, DocumentId, DocumentStatus, Documents,
    DocumentsError,
};
use kernel::{PageRequest, Principal, Role, TenantContext};
use serde_json::json;
use workflows::{ActionError, Actions, DocumentInfo, Style, UsageWindow};

/// Runs the workflows' steps with the server's use cases.
#[derive(Debug, Clone)]
pub struct WorkflowActions {
    /// Documents.
    pub documents: Arc<Documents>,
    /// Collections.
    pub collections: Arc<Collections>,
    /// The AI tasks.
    pub chat: Arc<Chat>,
    /// Usage.
    pub billing: Arc<billing::Billing>,
    /// Memberships.
    pub orgs: Arc<tenancy::Organizations>,
    /// API keys.
    pub api_keys: Arc<tenancy::ApiKeys>,
    /// The organization's export archives.
    pub exporter: Arc<crate::export::Exporter>,
}

fn info(d: &Document) -> DocumentInfo {
    DocumentInfo {
        id: d.id,
        name: d.name.clone(),
        ready: d.status == DocumentStatus::Ready,
        pages: d.pages,
        chunks: d.chunks,
        tokens: d.tokens,
    }
}

fn from_documents(e: DocumentsError, what: &str) -> ActionError {
    match e {
        DocumentsError::NotFound => ActionError::NotFound(format!("{what} not found")),
        DocumentsError::Invalid(i) => ActionError::Refused(i.to_string()),
        other => ActionError::Unknown(anyhow::Error::new(other)),
    }
}

fn from_chat(e: ChatError) -> ActionError {
    match e {
        ChatError::NotFound => ActionError::NotFound("document not found".to_owned()),
        ChatError::Metering(kernel::MeterError::Unavailable(e)) => ActionError::Unknown(e),
        ChatError::Unknown(e) => ActionError::Unknown(e),
        ChatError::StorageUnavailable => {
            ActionError::Unknown(anyhow::anyhow!("chat storage unavailable"))
        }
        // Client-safe sentences: quota, invalid input, the provider's refusal or outage.
        other => ActionError::Refused(other.to_string()),
    }
}

fn style(s: Style) -> SummaryStyle {
    match s {
        Style::Concise => SummaryStyle::Concise,
        Style::Detailed => SummaryStyle::Detailed,
        Style::Bullets => SummaryStyle::Bullets,
    }
}

/// A CSV field: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-`
/// or `@` is prefixed with `'` so that a spreadsheet does not read it as a formula.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[async_trait]
impl Actions for WorkflowActions {
    async fn current_role(&self, ctx: &TenantContext) -> Result<Option<Role>, ActionError> {
        let tenant = ctx.tenant_id();
        let unknown = |e: tenancy::TenancyError| ActionError::Unknown(anyhow::Error::new(e));
        match ctx.principal() {
            Principal::User(user) => self.orgs.role_of(tenant, user).await.map_err(unknown),
            Principal::ApiKey(id) => {
                // The organization's live keys, paged (a revoked key is not among them).
                let mut page =
                    PageRequest::first(100).map_err(|e| ActionError::Unknown(e.into()))?;
                loop {
                    let keys = self.api_keys.list(ctx, &page).await.map_err(unknown)?;
                    if let Some(key) = keys.items.iter().find(|k| k.id == id) {
                        let creator = match key.created_by {
                            Some(u) => self.orgs.role_of(tenant, u).await.map_err(unknown)?,
                            None => None,
                        };
                        return Ok(key.acting_role(creator));
                    }
                    match keys.next_cursor {
                        Some(c) => page = page.next(c),
                        None => return Ok(None),
                    }
                }
            }
        }
    }

    async fn collection_documents(
        &self,
        ctx: &TenantContext,
        collection: CollectionId,
        ready_only: bool,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>, ActionError> {
        self.collections
            .get(ctx, collection)
            .await
            .map_err(|e| from_documents(e, "collection"))?;
        let filter = DocumentFilter {
            collection_id: Some(collection),
            status: ready_only.then_some(DocumentStatus::Ready),
        };
        let mut page = PageRequest::first(100).map_err(|e| ActionError::Unknown(e.into()))?;
        let mut out = Vec::new();
        loop {
            let got = self
                .documents
                .list(ctx, &filter, &page)
                .await
                .map_err(|e| from_documents(e, "collection"))?;
            out.extend(got.items.iter().map(info));
            match got.next_cursor {
                Some(c) if out.len() < limit => page = page.next(c),
                _ => break,
            }
        }
        // Newest first from the list: oldest first here.
        out.reverse();
        out.truncate(limit);
        Ok(out)
    }

    async fn document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<DocumentInfo, ActionError> {
        self.documents
            .get(ctx, id)
            .await
            .map(|d| info(&d))
            .map_err(|e| from_documents(e, "document"))
    }

    async fn summarize_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
        s: Style,
    ) -> Result<String, ActionError> {
        self.chat
            .summarize(ctx, TaskInput::Document(id), style(s), None)
            .await
            .map(|a| a.text)
            .map_err(from_chat)
    }

    async fn summarize_text(
        &self,
        ctx: &TenantContext,
        text: String,
        s: Style,
    ) -> Result<String, ActionError> {
        self.chat
            .summarize(ctx, TaskInput::Text(text), style(s), None)
            .await
            .map(|a| a.text)
            .map_err(from_chat)
    }

    async fn analyze_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<serde_json::Value, ActionError> {
        let tasks = vec![
            AnalysisTask::Summary,
            AnalysisTask::Keywords,
            AnalysisTask::Entities,
            AnalysisTask::Sentiment,
        ];
        let (a, model, usage) = self
            .chat
            .analyze(ctx, id, tasks, None)
            .await
            .map_err(from_chat)?;
        Ok(json!({
            "summary": a.summary,
            "keywords": a.keywords,
            "entities": a.entities.map(|es| es
                .into_iter()
                .map(|e| json!({"text": e.text, "type": e.kind}))
                .collect::<Vec<_>>()),
            "sentiment": a.sentiment.map(|s| json!({"label": s.label, "score": s.score})),
            "model": model,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            },
        }))
    }

    async fn reindex_document(
        &self,
        ctx: &TenantContext,
        id: DocumentId,
    ) -> Result<String, ActionError> {
        self.documents
            .reindex(ctx, id)
            .await
            .map(|j| j.to_string())
            .map_err(|e| from_documents(e, "document"))
    }

    async fn usage_csv(
        &self,
        ctx: &TenantContext,
        window: UsageWindow,
    ) -> Result<(String, usize), ActionError> {
        let w = billing::Window::parse(window.as_str())
            .ok_or_else(|| ActionError::Unknown(anyhow::anyhow!("window {}", window.as_str())))?;
        let report = self
            .billing
            .usage(ctx.tenant_id(), w, None)
            .await
            .map_err(|e| ActionError::Unknown(anyhow::Error::new(e)))?;
        let mut csv = String::from(
            "dimension,key,events,prompt_tokens,completion_tokens,total_tokens,cost_micros,bytes\n",
        );
        let mut rows = 0;
        let mut line = |dimension: &str, key: &str, t: &billing::Totals| {
            rows += 1;
            let _ = writeln!(
                csv,
                "{dimension},{},{},{},{},{},{},{}",
                field(key),
                t.events,
                t.prompt_tokens,
                t.completion_tokens,
                t.total_tokens(),
                t.cost_micros,
                t.bytes
            );
        };
        line("total", "all", &report.totals);
        for (kind, t) in &report.by_kind {
            line("kind", kind.as_str(), t);
        }
        for (model, t) in &report.by_model {
            line("model", model, t);
        }
        for (actor, t) in &report.by_actor {
            let key = match actor {
                Some(Principal::User(u)) => format!("user:{u}"),
                Some(Principal::ApiKey(k)) => format!("api_key:{k}"),
                None => "background".to_owned(),
            };
            line("actor", &key, t);
        }
        Ok((csv, rows))
    }

    async fn export_organization(
        &self,
        ctx: &TenantContext,
        run: workflows::RunId,
    ) -> Result<serde_json::Value, ActionError> {
        let result = self
            .exporter
            .build(ctx.tenant_id(), ctx.principal(), run)
            .await
            .map_err(ActionError::Unknown)?;
        // Metered once built (docs/billing.md, "Exports"): its bytes, no tokens.
        let bytes = result["bytes"].as_u64().unwrap_or_default();
        self.billing
            .record_export(ctx.tenant_id(), Some(ctx.principal()), run.as_uuid(), bytes)
            .await;
        Ok(result)
    }

    async fn read_export(
        &self,
        ctx: &TenantContext,
        run: workflows::RunId,
    ) -> Result<Box<dyn documents::BlobReader>, ActionError> {
        let key = crate::export::archive_key(ctx.tenant_id(), run);
        match self.exporter.blobs.open(&key).await {
            Ok(bytes) => Ok(bytes),
            Err(documents::BlobError::NotFound) => {
                Err(ActionError::NotFound("export not found".to_owned()))
            }
            Err(e) => Err(ActionError::Unknown(anyhow::Error::new(e))),
        }
    }

    async fn delete_export(
        &self,
        ctx: &TenantContext,
        run: workflows::RunId,
    ) -> Result<(), ActionError> {
        let key = crate::export::archive_key(ctx.tenant_id(), run);
        self.exporter
            .blobs
            .delete(&key)
            .await
            .map_err(|e| ActionError::Unknown(anyhow::Error::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(field("gpt-4o"), "gpt-4o");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(field("-1"), "'-1");
    }
}
