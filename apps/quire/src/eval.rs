//! `quire eval FILE`: a golden set file run against this deployment's indexes through the
//! evaluation use case of `POST /evaluations` (`retrieval::evaluation::Evaluations::run`), and
//! stored as that route stores it.
//!
//! The file is the format of `crates/testkit/data/eval/*.json`: `{cases: [{question,
//! expected_documents?: [names], expected_document_ids?, expected_chunk_ids?,
//! expected_answer?}], ...}` (other keys, such as the documents' texts, are ignored). Document
//! names are looked up among the organization's documents in the named collections (every
//! document without `--collection`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use documents::{CollectionId, DocumentFilter, DocumentRepository};
use kernel::{Clock, PageRequest, Principal, Role, TenantContext, TenantId};
use retrieval::SearchMode;
use retrieval::evaluation::{
    Evaluation, EvaluationRequest, Evaluations, GoldenItemInput, GoldenSet, SetSource,
};
use serde::Deserialize;
use settings::Settings;
use store_sql::SqlStore;
use tenancy::ports::{MembershipRepository, OrganizationRepository as _};

/// What `quire eval` was asked.
#[derive(Debug, Clone)]
pub struct EvalArgs {
    /// The golden set file.
    pub file: std::path::PathBuf,
    /// The organization: its slug or id.
    pub org: String,
    /// Who runs it (recorded with the evaluation): an admin or owner of the organization.
    pub run_as: String,
    /// The collections to search (none: every document of the organization).
    pub collections: Vec<CollectionId>,
    /// The modes (none: all three).
    pub modes: Vec<SearchMode>,
    /// `recall@k`'s cut-off and each search's depth.
    pub k: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct FileCase {
    question: String,
    #[serde(default)]
    expected_documents: Option<Vec<String>>,
    #[serde(default)]
    expected_document_ids: Option<Vec<String>>,
    #[serde(default)]
    expected_chunk_ids: Option<Vec<String>>,
    #[serde(default)]
    expected_answer: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GoldenFile {
    cases: Vec<FileCase>,
}

/// Runs the golden set of `args.file` against the deployment of `settings` and stores the run;
/// answers it (its figures per mode).
///
/// # Errors
/// An unreadable or malformed file, an unknown organization, collection or document name, a
/// caller who is not an admin of the organization, and the use case's errors.
pub async fn evaluate_file(
    settings: &Settings,
    store: &SqlStore,
    clock: Arc<dyn Clock>,
    args: &EvalArgs,
) -> anyhow::Result<Evaluation> {
    let file = read_file(&args.file)?;
    let ctx = caller(store, &args.org, &args.run_as).await?;
    let names = document_names(store, ctx.tenant_id(), &args.collections).await?;
    let mut items = Vec::with_capacity(file.cases.len());
    for (i, c) in file.cases.into_iter().enumerate() {
        let mut documents = c.expected_document_ids.unwrap_or_default();
        for name in c.expected_documents.unwrap_or_default() {
            let id = names.get(&name).with_context(|| {
                format!("cases[{i}]: no document named {name:?} in the searched collections")
            })?;
            documents.push(id.to_string());
        }
        items.push(GoldenItemInput {
            question: c.question,
            documents: (!documents.is_empty()).then_some(documents),
            chunks: c.expected_chunk_ids,
            answer: c.expected_answer,
        });
    }
    let set = GoldenSet::new(items, "cases").map_err(|e| anyhow!("the golden set: {e}"))?;
    let request = EvaluationRequest::new(
        (!args.collections.is_empty()).then(|| args.collections.clone()),
        SetSource::Inline(set),
        (!args.modes.is_empty()).then(|| args.modes.clone()),
        args.k,
        None,
    )
    .map_err(|e| anyhow!("{e}"))?;
    // The search the server runs: its fusion and reranking, its embedders and indexes. The
    // operator's command is not billed to the organization.
    let ports = crate::retrieval_ports(
        settings,
        store,
        clock.clone(),
        Arc::new(kernel::metering::Unmetered),
    )
    .await?;
    let mut search = retrieval::Retrieval::new(ports).with_fusion(crate::fusion_settings(settings));
    if let Some(reranking) = crate::reranking(settings)? {
        search = search.with_reranking(reranking);
    }
    let evaluations = Evaluations::new(Arc::new(search), Arc::new(store.clone()), clock);
    evaluations
        .run(&ctx, request)
        .await
        .map_err(|e| anyhow!("the evaluation: {e}"))
}

fn read_file(path: &Path) -> anyhow::Result<GoldenFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a golden set file", path.display()))
}

/// The organization of `org` (slug or id) as `email`, who must be one of its admins.
async fn caller(store: &SqlStore, org: &str, email: &str) -> anyhow::Result<TenantContext> {
    let found = match TenantId::parse(org) {
        Ok(id) => store.find_by_id(id).await?,
        Err(_) => match tenancy::OrgSlug::parse(org) {
            Ok(slug) => store.find_by_slug(&slug).await?,
            Err(_) => None,
        },
    };
    let org_row = found.with_context(|| format!("no organization {org:?}"))?;
    let mut page = PageRequest::first(100).map_err(|e| anyhow!("{e}"))?;
    loop {
        let members = MembershipRepository::list(store, org_row.id, &page).await?;
        if let Some(m) = members
            .items
            .iter()
            .find(|m| m.email.eq_ignore_ascii_case(email))
        {
            if !m.membership.role.satisfies(Role::Admin) {
                bail!(
                    "{email} is a {} of {org:?}; evaluations need an admin",
                    m.membership.role
                );
            }
            return Ok(TenantContext::new(
                org_row.id,
                Principal::User(m.membership.user_id),
                m.membership.role,
            ));
        }
        match members.next_cursor {
            Some(c) => page = page.next(c),
            None => bail!("{email} is not a member of {org:?}"),
        }
    }
}

/// The names of the tenant's documents in `collections` (all when empty) and their ids; a name
/// two documents share cannot name one.
async fn document_names(
    store: &SqlStore,
    tenant: TenantId,
    collections: &[CollectionId],
) -> anyhow::Result<HashMap<String, documents::DocumentId>> {
    let mut names: HashMap<String, Option<documents::DocumentId>> = HashMap::new();
    let scopes: Vec<Option<CollectionId>> = if collections.is_empty() {
        vec![None]
    } else {
        collections.iter().copied().map(Some).collect()
    };
    for scope in scopes {
        let filter = DocumentFilter {
            collection_id: scope,
            status: None,
        };
        let mut page = PageRequest::first(100).map_err(|e| anyhow!("{e}"))?;
        loop {
            let docs = DocumentRepository::list(store, tenant, &filter, &page).await?;
            for d in docs.items {
                names
                    .entry(d.name)
                    .and_modify(|id| *id = None)
                    .or_insert(Some(d.id));
            }
            match docs.next_cursor {
                Some(c) => page = page.next(c),
                None => break,
            }
        }
    }
    Ok(names
        .into_iter()
        .filter_map(|(name, id)| id.map(|id| (name, id)))
        .collect())
}

/// The figures as a table, one row per mode.
#[must_use]
pub fn table(e: &Evaluation) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "evaluation {} ({} questions, k {}, model {}{})\n",
        e.id,
        e.items.items().len(),
        e.k,
        e.embedding_model.as_deref().unwrap_or("none"),
        if e.rerank { ", reranked" } else { "" }
    );
    out.push_str("mode     R@1    R@5    R@10   R@k    MRR@10 nDCG@10 fusion\n");
    for r in &e.results {
        let m = &r.metrics;
        let fusion = r.fusion.map_or(String::new(), |f| {
            format!("{} {}:{}", f.method.as_str(), f.keyword, f.vector)
        });
        let _ = writeln!(
            out,
            "{:<8} {:.3}  {:.3}  {:.3}  {:.3}  {:.3}  {:.3}   {fusion}",
            r.mode.as_str(),
            m.recall_at_1,
            m.recall_at_5,
            m.recall_at_10,
            m.recall_at_k,
            m.mrr_at_10,
            m.ndcg_at_10,
        );
    }
    out
}
