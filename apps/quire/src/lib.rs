//! The composition root of Quire: reads [`Settings`], picks the adapters (SQLite or
//! PostgreSQL; in-process cache or Redis), and serves the `api` crate's application.
//!
//! [`Application::build`] binds the listener (port 0 in tests) and exposes [`Application::port`]
//! and [`Application::run_until_stopped`]. SIGTERM and SIGINT stop the server gracefully:
//! it stops accepting, in-flight requests get `http.shutdown_timeout_secs` to finish.

mod allocator;
pub mod estimates;
pub mod eval;
pub mod export;
mod knowledge;
pub mod retention;
pub mod telemetry;
pub mod tenant_metrics;
pub mod worker;
pub mod worker_process;
mod workflow_actions;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{HttpServer, web};
use anyhow::Context as _;
use api::{AppState, ExtraRoutes};
#[cfg(feature = "redis")]
use cache_redis::RedisCache;
use documents::{DocumentPorts, Ingestion};
use kernel::cache::Cache;
use kernel::health::HealthCheck;
use kernel::{Clock, SystemClock};
use memory::InProcessCache;
use retrieval::{Embedder, Embedders, RetrievalPorts, VectorIndex};
use secrecy::ExposeSecret;
use settings::CacheBackend;
pub use settings::Settings;
use store_sql::SqlStore;
pub use worker::{DeliveryPool, Wake, Work, WorkerPool, WorkflowPool};

/// Installs the process-wide TLS crypto provider that the provider's HTTPS client needs before
/// any client is built (see `openai::install_crypto_provider`); nothing to do without the
/// `openai` feature.
pub fn install_crypto_provider() {
    #[cfg(feature = "openai")]
    openai::install_crypto_provider();
}

/// The error for settings that ask for an adapter this binary was built without.
#[cfg(not(all(
    feature = "postgres",
    feature = "redis",
    feature = "openai",
    feature = "smtp"
)))]
fn not_built(setting: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{setting} needs Quire built with the `{feature}` feature \
         (`cargo run --release --features {feature}`, or `full`)"
    )
}

/// The use cases a worker process needs as well as a server: documents, search, chat and the
/// workflows that act through them, with the organizations and API keys a run re-checks its
/// starter's role against. No signing key, mailer or account: `quire worker` builds this alone.
#[derive(Debug)]
pub struct Domain {
    /// Collections.
    pub collections: Arc<documents::Collections>,
    /// Documents and uploads.
    pub documents: Arc<documents::Documents>,
    /// Search and embeddings.
    pub retrieval: Arc<retrieval::Retrieval>,
    /// Chat, completions and AI tasks.
    pub chat: Arc<chat::Chat>,
    /// Organizations and memberships.
    pub orgs: Arc<tenancy::Organizations>,
    /// Organization API keys.
    pub api_keys: Arc<tenancy::ApiKeys>,
    /// Workflow runs and schedules.
    pub workflows: Arc<workflows::Workflows>,
}

/// [`Domain`] over the SQL store and the cache. `wake` is the ingestion workers' signal (an
/// upload or a workflow's re-index wakes them), `workflow_wake` the workflow workers'.
///
/// # Errors
/// When the chat models cannot be built from the settings.
#[allow(clippy::too_many_arguments)]
pub fn domain(
    settings: &Settings,
    store: &SqlStore,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    documents: &DocumentPorts,
    retrieval: &RetrievalPorts,
    billing: Arc<billing::Billing>,
    meter: Arc<dyn kernel::Meter>,
    wake: Arc<Wake>,
    webhooks: Arc<webhooks::Webhooks>,
    workflow_wake: Arc<Wake>,
    trail: Arc<dyn kernel::AccessTrail>,
) -> anyhow::Result<Domain> {
    let recheck = Duration::from_millis(settings.auth.recheck_ms);
    let sql = || Arc::new(store.clone());
    let documents_ports = documents;
    let limits = document_limits(settings);
    let collections = Arc::new(documents::Collections::new(documents.for_collections()));
    let documents = Arc::new(
        documents::Documents::new(documents.for_uploads(), limits, wake)
            .with_storage_limits(Arc::new(PlanStorage(billing.clone())))
            .with_extraction_share(
                settings
                    .documents
                    .max_concurrent_extractions
                    .saturating_sub(1),
            ),
    );
    let mut search =
        retrieval::Retrieval::new(retrieval.clone()).with_fusion(fusion_settings(settings));
    if let Some(reranking) = reranking(settings)? {
        search = search.with_reranking(reranking);
    }
    let retrieval = Arc::new(search);
    let chat = Arc::new(
        chat::Chat::new(
            chat::ChatPorts {
                store: Arc::new(store_sql::SqlChatStore::new(store)),
                models: chat_models(settings)?,
                knowledge: Arc::new(knowledge::RetrievalKnowledge::new(
                    retrieval.clone(),
                    documents.clone(),
                    collections.clone(),
                )),
                clock: clock.clone(),
                meter,
                cache: cache.clone(),
            },
            chat_settings(settings),
        )
        .with_events(webhooks.clone())
        .with_trail(trail)
        .with_recheck(recheck),
    );
    let orgs = Arc::new(
        tenancy::Organizations::new(sql(), sql(), cache, clock.clone(), sql())
            .with_max_owned(settings.orgs.max_owned_per_account)
            .with_recheck(recheck)
            .with_erasure(
                vec![documents.clone(), retrieval.clone()],
                erasure_sealer(settings),
            ),
    );
    let api_keys = Arc::new(
        tenancy::ApiKeys::new(sql(), Arc::new(crypto::ApiKeySecrets), clock.clone(), sql())
            .with_recheck(recheck),
    );
    let workflows = Arc::new(workflows::Workflows::new(
        workflows::WorkflowPorts {
            store: sql(),
            actions: Arc::new(workflow_actions::WorkflowActions {
                documents: documents.clone(),
                collections: collections.clone(),
                chat: chat.clone(),
                billing: billing.clone(),
                orgs: orgs.clone(),
                api_keys: api_keys.clone(),
                exporter: Arc::new(export::Exporter {
                    store: store.clone(),
                    blobs: documents_ports.blobs.clone(),
                    audit: sql(),
                    clock: clock.clone(),
                    ttl: Duration::from_secs(settings.workflows.export_ttl_secs),
                    scratch: settings.data_dir.join("exports"),
                }),
            }),
            clock: clock.clone(),
            signal: workflow_wake,
            events: webhooks.clone(),
        },
        workflows::WorkflowPolicy {
            lease: Duration::from_secs(settings.workflows.lease_secs),
            ..workflows::WorkflowPolicy::default()
        },
    ));
    Ok(Domain {
        collections,
        documents,
        retrieval,
        chat,
        orgs,
        api_keys,
        workflows,
    })
}

/// `retrieval.fusion` as the retrieval domain reads it (the settings were validated).
#[must_use]
pub fn fusion_settings(settings: &Settings) -> retrieval::FusionSettings {
    let leg = |method: &str, keyword: f32, vector: f32| retrieval::Fusion {
        method: retrieval::FusionMethod::parse(method).unwrap_or_default(),
        keyword,
        vector,
    };
    let f = &settings.retrieval.fusion;
    retrieval::FusionSettings::new(
        leg(&f.method, f.keyword, f.vector),
        f.models
            .iter()
            .map(|(name, l)| (name.clone(), leg(&l.method, l.keyword, l.vector)))
            .collect(),
    )
}

/// Every use case a server serves: the [`Domain`], accounts over the crypto adapters, the
/// mailer, invitations and estimates.
///
/// # Errors
/// As [`domain`] and [`accounts_from_settings`].
#[allow(clippy::too_many_arguments)]
pub async fn services(
    settings: &Settings,
    store: &SqlStore,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    documents: &DocumentPorts,
    retrieval: &RetrievalPorts,
    billing: Arc<billing::Billing>,
    meter: Arc<dyn kernel::Meter>,
    wake: Arc<Wake>,
    webhooks: Arc<webhooks::Webhooks>,
    workflow_wake: Arc<Wake>,
    trail: Arc<kernel::trail::BufferedTrail>,
) -> anyhow::Result<api::Services> {
    let Domain {
        collections,
        documents,
        retrieval,
        chat,
        orgs,
        api_keys,
        workflows,
    } = domain(
        settings,
        store,
        cache.clone(),
        clock.clone(),
        documents,
        retrieval,
        billing.clone(),
        meter,
        wake,
        webhooks.clone(),
        workflow_wake,
        trail.clone(),
    )?;
    let evaluations = Arc::new(retrieval::evaluation::Evaluations::new(
        retrieval.clone(),
        Arc::new(store.clone()),
        clock.clone(),
    ));
    let mailer = mailer_from_settings(settings, store)?;
    let accounts =
        accounts_from_settings(settings, store, cache, mailer.clone(), clock.clone()).await?;
    let sql = || Arc::new(store.clone());
    let c = &settings.chat;
    let estimates = Arc::new(billing::Estimates::new(
        Arc::new(estimates::ServedModels::new(
            chat.clone(),
            retrieval.clone(),
        )),
        billing.clone(),
        c.max_answer_tokens,
    ));
    Ok(api::Services {
        trail,
        workflows,
        collections,
        documents,
        retrieval,
        evaluations,
        chat,
        billing,
        estimates,
        webhooks,
        chat_answer_timeout_secs: c.answer_timeout_secs,
        chat_max_answer_tokens: c.max_answer_tokens,
        ws: api::WsSettings {
            idle_timeout: Duration::from_secs(c.ws_idle_timeout_secs),
            ping_interval: Duration::from_secs(c.ws_ping_secs),
            max_frame_bytes: c.ws_max_frame_bytes,
            allowed_origins: c.ws_allowed_origins.clone(),
            reauth_interval: Duration::from_secs(c.ws_reauth_secs),
            max_per_address: c.ws_max_per_address,
        },
        accounts,
        orgs,
        audit: sql(),
        api_keys,
        invitations: Arc::new(tenancy::Invitations::new(
            sql(),
            sql(),
            sql(),
            Arc::new(crypto::ApiKeySecrets),
            mailer,
            clock,
            sql(),
        )),
    })
}

/// Where original files (and export archives) are kept: the database, or the blob folder.
///
/// # Errors
/// When the blob folder cannot be created.
pub fn blob_store(
    settings: &Settings,
    store: &SqlStore,
) -> anyhow::Result<Arc<dyn documents::BlobStore>> {
    Ok(if settings.blobs_in_database() {
        Arc::new(store.clone())
    } else {
        Arc::new(blob_fs::FsBlobStore::new(settings.blob_dir())?)
    })
}

/// The adapters of the documents domain: the SQL store, original files under
/// `documents.blob_dir`, the extractor (a child process per file, or a thread) and the
/// tokenizer-based chunker. Collections are retrieval's port (`collections`): its writes
/// forget what searches reuse (`retrieval::recent`).
///
/// # Errors
/// When the blob folder cannot be created or the extractor cannot be set up.
pub fn document_ports(
    settings: &Settings,
    store: &SqlStore,
    clock: Arc<dyn Clock>,
    indexer: Arc<dyn documents::ChunkIndexer>,
    collections: Arc<dyn documents::CollectionRepository>,
) -> anyhow::Result<DocumentPorts> {
    let d = &settings.documents;
    let config = extract::ExtractorConfig {
        timeout: Duration::from_secs(d.extract_timeout_secs),
        memory_limit_bytes: d.extract_memory_mib * 1024 * 1024,
        max_concurrent: d.max_concurrent_extractions,
        files_per_child: d.extract_files_per_child,
        ocr: d.ocr.enabled.then(|| {
            extract::OcrConfig {
                pdftoppm: d.ocr.pdftoppm.clone(),
                tesseract: d.ocr.tesseract.clone(),
                tessdata: d.ocr.tessdata.clone(),
                languages: d.ocr.languages.clone(),
                page_timeout_secs: d.ocr.page_timeout_secs,
                max_pages: d.ocr.max_pages,
                dpi: d.ocr.dpi,
                max_side_px: d.ocr.max_side_px,
            }
            .resolved()
        }),
    };
    let extractor: Arc<dyn documents::Extractor> = match d.isolation {
        settings::Isolation::Thread => Arc::new(extract::ThreadExtractor::new(config)),
        settings::Isolation::Process => {
            let exe = std::env::current_exe().context("locating the quire executable")?;
            Arc::new(extract::ProcessExtractor::new(
                exe,
                vec![EXTRACT_CHILD_COMMAND.to_owned()],
                config,
            ))
        }
    };
    let sql = Arc::new(store.clone());
    let blobs = blob_store(settings, store)?;
    Ok(DocumentPorts {
        collections,
        documents: sql.clone(),
        jobs: sql.clone(),
        blobs,
        extractor,
        chunker: Arc::new(extract::TokenChunker::new()),
        indexer,
        clock,
        audit: sql,
        recent: documents::RecentLists::default(),
    }
    .with_recheck(Duration::from_millis(d.list_recheck_ms)))
}

/// What `/health/ready` checks: the database, the cache and, when one is configured, the
/// model provider (the state its clients share: `openai::ProviderHealth`).
fn components(
    settings: &Settings,
    store: &SqlStore,
    cache: Arc<dyn HealthCheck>,
) -> Vec<Arc<dyn HealthCheck>> {
    #[cfg_attr(not(feature = "openai"), allow(unused_mut))]
    let mut components: Vec<Arc<dyn HealthCheck>> = vec![Arc::new(store.clone()), cache];
    #[cfg(feature = "openai")]
    {
        let p = &settings.provider;
        if !p.chat_models.is_empty() || p.embedding_model.is_some() {
            components.push(openai::ProviderHealth::of(&provider_config(p)));
        }
    }
    #[cfg(not(feature = "openai"))]
    let _ = settings;
    components
}

/// The provider's connection settings.
#[cfg(feature = "openai")]
fn provider_config(p: &settings::ProviderSettings) -> openai::ProviderConfig {
    openai::ProviderConfig {
        base_url: p.base_url.clone(),
        api_key: p.api_key.clone(),
        timeout: Duration::from_secs(p.timeout_secs),
        connect_timeout: Duration::from_secs(p.connect_timeout_secs),
        max_retries: p.max_retries,
        down_for: Duration::from_millis(p.down_for_ms),
        ..openai::ProviderConfig::default()
    }
}

/// The language models of the settings: the local extractive answerer always (no key), and
/// the provider's `provider.chat_models` when set.
///
/// # Errors
/// When the provider's client cannot be built.
pub fn chat_models(settings: &Settings) -> anyhow::Result<Vec<Arc<dyn chat::ChatModel>>> {
    let mut models: Vec<Arc<dyn chat::ChatModel>> = Vec::new();
    let p = &settings.provider;
    #[cfg(not(feature = "openai"))]
    if !p.chat_models.is_empty() {
        return Err(not_built("provider.chat_models", "openai"));
    }
    #[cfg(feature = "openai")]
    if !p.chat_models.is_empty() {
        models.push(Arc::new(
            openai::OpenAiChat::new(
                provider_config(p),
                openai::ChatConfig {
                    models: p.chat_models.clone(),
                    first_token_timeout: Duration::from_secs(p.first_token_timeout_secs),
                    idle_timeout: Duration::from_secs(p.idle_timeout_secs),
                    ..openai::ChatConfig::default()
                },
            )
            .context("the provider's chat models")?,
        ));
    }
    models.push(Arc::new(local_ai::LocalAnswerer::new()));
    Ok(models)
}

/// Chat's settings.
#[must_use]
pub fn chat_settings(settings: &Settings) -> chat::ChatSettings {
    let c = &settings.chat;
    chat::ChatSettings {
        default_model: settings.default_chat_model(),
        allowed_models: c.allowed_models.clone(),
        top_k: c.top_k,
        history_messages: c.history_messages,
        max_answer_tokens: c.max_answer_tokens,
        resume_grace: Duration::from_millis(c.resume_grace_ms),
        replay_keep: Duration::from_secs(c.replay_keep_secs),
        answer_lease: Duration::from_secs(c.answer_lease_secs),
        store_retry_for: Duration::from_secs(c.answer_store_retry_secs),
        // A run that cannot reach the database renews no lease, but may still be retrying
        // its usage and its end: its answer is not swept before both retries gave up.
        sweep_grace: Duration::from_secs(c.answer_store_retry_secs)
            + Duration::from_secs(settings.billing.ledger_retry_secs),
        ..chat::ChatSettings::default()
    }
}

/// The embedding models of the settings: the local n-gram embedder, the bundled semantic
/// `quire-local-minilm` and the static `quire-local-static` distilled from it always, each folder of `retrieval.local_models` (loaded and checked
/// here, so a bad folder fails the start), and the provider's model when
/// `provider.embedding_model` is set; the default is `retrieval.embedder`.
///
/// # Errors
/// When the provider's model is unknown and has no `provider.embedding_dimensions`; when a
/// local model's folder does not load.
pub fn embedders(settings: &Settings) -> anyhow::Result<Embedders> {
    let r = &settings.retrieval;
    let ngram: Arc<dyn Embedder> = Arc::new(local_ai::LocalEmbedder::new(r.local_dimensions));
    // The bundled model's weights are expanded on first use, unless it is the default (the
    // static model distilled from it needs them only for words its table does not know).
    let minilm = local_ai::MiniLmEmbedder::new();
    if r.embedder == settings::EmbedderKind::Minilm {
        minilm.warm()?;
    }
    let minilm: Arc<dyn Embedder> = Arc::new(minilm);
    // The static model's word table is saved in the data folder on the embedded default; on
    // PostgreSQL, whose servers may have no lasting folder, it stays in memory.
    let fixed: Arc<dyn Embedder> = Arc::new(if settings.is_postgres() {
        local_ai::StaticEmbedder::new()
    } else {
        local_ai::StaticEmbedder::saved_in(&settings.data_dir)
    });
    let mut folders: Vec<(String, Arc<dyn Embedder>)> = Vec::new();
    for (name, m) in &r.local_models {
        let embedder = local_ai::SentenceEmbedder::load(name, &m.path)
            .with_context(|| format!("retrieval.local_models.{name}.path"))?;
        folders.push((name.clone(), Arc::new(embedder)));
    }
    let p = &settings.provider;
    let provider: Option<Arc<dyn Embedder>> = match &p.embedding_model {
        None => None,
        #[cfg(not(feature = "openai"))]
        Some(_) => return Err(not_built("provider.embedding_model", "openai")),
        #[cfg(feature = "openai")]
        Some(model) => Some(Arc::new(
            openai::OpenAiEmbedder::new(
                provider_config(p),
                openai::EmbeddingConfig {
                    model: model.clone(),
                    dimensions: p.embedding_dimensions,
                    ..openai::EmbeddingConfig::default()
                },
            )
            .context("the provider's embedding model")?,
        )),
    };
    let default = match &r.embedder {
        settings::EmbedderKind::Local => ngram.clone(),
        settings::EmbedderKind::Minilm => minilm.clone(),
        settings::EmbedderKind::Static => fixed.clone(),
        settings::EmbedderKind::Provider => provider
            .clone()
            .context("retrieval.embedder = \"provider\" needs provider.embedding_model")?,
        settings::EmbedderKind::Named(name) => folders
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .with_context(|| format!("retrieval.embedder names no local model {name:?}"))?,
    };
    let others = [ngram, minilm, fixed]
        .into_iter()
        .chain(folders.into_iter().map(|(_, e)| e))
        .chain(provider)
        .collect();
    Ok(Embedders::new(default, others))
}

/// The reranking stage of `retrieval.rerank`, when it names an endpoint.
///
/// # Errors
/// When the endpoint is set in a build without the `openai` feature, or its client cannot be
/// built.
pub fn reranking(settings: &Settings) -> anyhow::Result<Option<retrieval::Reranking>> {
    let r = &settings.retrieval.rerank;
    match &r.base_url {
        None => Ok(None),
        #[cfg(not(feature = "openai"))]
        Some(_) => Err(not_built("retrieval.rerank.base_url", "openai")),
        #[cfg(feature = "openai")]
        Some(url) => {
            let reranker = openai::HttpReranker::new(openai::RerankConfig {
                base_url: url.clone(),
                api_key: r.api_key.clone(),
                model: r.model.clone(),
                timeout: Duration::from_millis(r.timeout_ms),
            })
            .context("the reranker (retrieval.rerank)")?;
            Ok(Some(retrieval::Reranking::new(Arc::new(reranker))))
        }
    }
}

/// The vector index of the settings: pgvector on PostgreSQL when the extension can be
/// created (or required by `retrieval.vector_index = "pgvector"`), else the in-process HNSW
/// index over vectors kept in SQL.
///
/// # Errors
/// When pgvector is required but missing, or the database fails.
pub async fn vector_index(
    settings: &Settings,
    store: &SqlStore,
) -> anyhow::Result<Arc<dyn VectorIndex>> {
    let r = &settings.retrieval;
    let hnsw = || -> Arc<dyn VectorIndex> {
        Arc::new(vector_hnsw::HnswIndex::new(
            Arc::new(store.clone()),
            vector_hnsw::HnswConfig {
                exact_threshold: r.exact_threshold,
                m: r.hnsw_m,
                ef_construction: r.hnsw_ef_construction,
                ef_search: r.hnsw_ef_search,
                ..vector_hnsw::HnswConfig::default()
            },
        ))
    };
    let want_pg = match r.vector_index {
        settings::VectorIndexKind::Embedded => false,
        settings::VectorIndexKind::Auto => settings.is_postgres(),
        settings::VectorIndexKind::Pgvector => true,
    };
    if !want_pg {
        return Ok(hnsw());
    }
    #[cfg(not(feature = "postgres"))]
    return Err(not_built(
        "retrieval.vector_index = \"pgvector\"",
        "postgres",
    ));
    #[cfg(feature = "postgres")]
    match store_sql::PgVectorIndex::try_new(store, r.exact_threshold).await? {
        Some(pg) => Ok(Arc::new(pg)),
        None if r.vector_index == settings::VectorIndexKind::Pgvector => {
            anyhow::bail!(
                "retrieval.vector_index = \"pgvector\" but the vector extension is not available"
            )
        }
        None => {
            tracing::warn!(
                "the pgvector extension is not available; using the embedded vector index"
            );
            Ok(hnsw())
        }
    }
}

/// The adapters of retrieval over the SQL store.
///
/// # Errors
/// As [`embedders`] and [`vector_index`].
pub async fn retrieval_ports(
    settings: &Settings,
    store: &SqlStore,
    clock: Arc<dyn Clock>,
    meter: Arc<dyn kernel::Meter>,
) -> anyhow::Result<RetrievalPorts> {
    let sql = Arc::new(store.clone());
    Ok(RetrievalPorts {
        spaces: sql.clone(),
        vectors: vector_index(settings, store).await?,
        keywords: sql.clone(),
        catalog: sql.clone(),
        collections: sql,
        embedders: embedders(settings)?,
        clock,
        meter,
        recent: retrieval::RecentScopes::default(),
    }
    .with_recheck(Duration::from_millis(settings.auth.recheck_ms)))
}

/// Billing over the SQL ledger, the organizations' plans and the cache: the meter chat and
/// retrieval call, and the usage, plan and rate-limit use cases.
#[must_use]
pub fn billing_from_settings(
    settings: &Settings,
    store: &SqlStore,
    cache: Arc<dyn Cache>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn kernel::Events>,
) -> Arc<billing::Billing> {
    let b = &settings.billing;
    let r = &settings.rate_limits;
    let budgets = [
        (billing::RateClass::Chat, r.chat),
        (billing::RateClass::Embeddings, r.embeddings),
        (billing::RateClass::Upload, r.upload),
        (
            billing::RateClass::Auth,
            billing::RateBudget {
                per_ip: settings.auth.attempts_per_ip_per_minute,
                ..billing::RateBudget::default()
            },
        ),
    ];
    Arc::new(
        billing::Billing::new(
            billing::BillingPorts {
                ledger: Arc::new(store_sql::SqlUsageLedger::new(store)),
                plans_of: Arc::new(billing::plans::OrganizationPlans(Arc::new(store.clone()))),
                cache,
                clock,
            },
            billing::BillingSettings {
                prices: billing::Prices::with(b.prices.clone()),
                plans: billing::Plans::new(b.plans.clone()),
                fallback_plan: b.fallback_plan.clone(),
                quota_counter_ttl: Duration::from_secs(b.quota_counter_secs),
                stream_slot_ttl: Duration::from_secs(b.stream_slot_secs),
                ledger_retry_for: Duration::from_secs(b.ledger_retry_secs),
                rate_limits: billing::RateLimits {
                    window: Duration::from_secs(r.window_secs),
                    budgets: budgets.into_iter().collect(),
                },
                export_micros_per_gib: b.export_micros_per_gib,
            },
        )
        .with_events(events),
    )
}

/// The webhooks use cases over the SQL store and the HTTP sender, from `webhooks.*`, and the
/// signal that wakes this process's delivery workers.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn webhooks_from_settings(
    settings: &Settings,
    store: &SqlStore,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<webhooks::Webhooks>, Arc<Wake>)> {
    // The client needs the process's TLS provider when the build has TLS.
    install_crypto_provider();
    let w = &settings.webhooks;
    let timeout = Duration::from_secs(w.timeout_secs);
    let sender = webhook_http::HttpSender::new(webhook_http::SenderConfig {
        timeout,
        connect_timeout: timeout.min(Duration::from_secs(5)),
        allow_private: w.allow_private_destinations,
    })
    .context("building the webhook HTTP client")?;
    let wake = Arc::new(Wake::default());
    let webhooks = webhooks::Webhooks::new(
        webhooks::WebhookPorts {
            store: Arc::new(store.clone()),
            sender: Arc::new(sender),
            clock,
            signal: wake.clone(),
        },
        webhooks::DeliveryPolicy {
            max_attempts: w.max_attempts,
            backoff_base: Duration::from_secs(w.backoff_base_secs),
            backoff_max: Duration::from_secs(w.backoff_max_secs),
            // Longer than an attempt can take, so a live attempt is never taken over.
            lease: timeout * 2 + Duration::from_secs(30),
            allow_http: w.allow_http,
        },
    );
    Ok((Arc::new(webhooks), wake))
}

/// Everything a worker runs: ingestion and re-embedding, over ports from the settings.
///
/// # Errors
/// As [`document_ports`] and [`retrieval_ports`].
pub async fn pipelines(
    settings: &Settings,
    store: &SqlStore,
    clock: Arc<dyn Clock>,
    meter: Arc<dyn kernel::Meter>,
    events: Arc<dyn kernel::Events>,
) -> anyhow::Result<(DocumentPorts, RetrievalPorts, Work)> {
    let retrieval = retrieval_ports(settings, store, clock.clone(), meter).await?;
    let indexer = Arc::new(retrieval::Indexer::new(retrieval.clone()));
    let documents = document_ports(
        settings,
        store,
        clock,
        indexer,
        retrieval.collections.clone(),
    )?;
    let work = Work {
        ingestion: ingestion(settings, documents.clone(), events),
        reembed: Arc::new(retrieval::Reembedder::new(
            retrieval.clone(),
            Duration::from_secs(settings.retrieval.reembed_lease_secs),
        )),
    };
    Ok((documents, retrieval, work))
}

/// The hidden subcommand of `quire` that extracts one file in a child process.
pub const EXTRACT_CHILD_COMMAND: &str = "extract-child";

/// Upload and extraction limits from the settings.
#[must_use]
pub fn document_limits(settings: &Settings) -> documents::DocumentLimits {
    let d = &settings.documents;
    documents::DocumentLimits {
        max_file_bytes: d.max_file_bytes,
        extract: documents::ExtractLimits {
            max_pages: d.max_pages,
            max_chars: d.max_text_chars,
            ..documents::ExtractLimits::default()
        },
    }
}

/// The ingestion pipeline from the settings.
#[must_use]
pub fn ingestion(
    settings: &Settings,
    ports: DocumentPorts,
    events: Arc<dyn kernel::Events>,
) -> Arc<Ingestion> {
    let d = &settings.documents;
    Arc::new(
        Ingestion::new(
            ports.for_ingestion(),
            document_limits(settings),
            documents::IngestPolicy {
                lease: Duration::from_secs(d.lease_secs),
                max_attempts: d.max_attempts,
                retry_base: Duration::from_secs(d.retry_base_secs),
                retry_max: Duration::from_secs(3_600),
                outage_retry_max: documents::IngestPolicy::default().outage_retry_max,
                max_running_per_tenant: running_jobs_per_tenant(d),
                progress_every: documents::IngestPolicy::default().progress_every,
            },
        )
        .with_events(events),
    )
}

/// `documents.max_running_jobs_per_tenant`, or by default one less than the workers (at
/// least 1): one organization never holds every worker of a server.
#[must_use]
pub fn running_jobs_per_tenant(d: &settings::DocumentSettings) -> u32 {
    d.max_running_jobs_per_tenant.unwrap_or_else(|| {
        u32::try_from(d.workers.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .max(1)
    })
}

/// Each organization's storage limit, from its plan (billing).
#[derive(Debug, Clone)]
pub struct PlanStorage(pub Arc<billing::Billing>);

#[async_trait::async_trait]
impl documents::StorageLimits for PlanStorage {
    async fn storage_limit(&self, tenant: kernel::TenantId) -> anyhow::Result<Option<u64>> {
        self.0
            .storage_limit(tenant)
            .await
            .map_err(|e| anyhow::Error::new(e).context("reading the plan's storage limit"))
    }
}

/// The mailer the settings ask for: the development outbox, or SMTP.
///
/// # Errors
/// When the SMTP URL or the sender is malformed.
pub fn mailer_from_settings(
    settings: &Settings,
    store: &SqlStore,
) -> anyhow::Result<Arc<dyn kernel::mail::Mailer>> {
    Ok(match settings.mail.backend {
        settings::MailBackend::Outbox => Arc::new(store.clone()),
        #[cfg(not(feature = "smtp"))]
        settings::MailBackend::Smtp => return Err(not_built("mail.backend = \"smtp\"", "smtp")),
        #[cfg(feature = "smtp")]
        settings::MailBackend::Smtp => {
            let url = settings
                .mail
                .smtp_url
                .as_ref()
                .context("mail.smtp_url is required for the smtp backend")?;
            Arc::new(mailer::SmtpMailer::new(
                url.expose_secret(),
                &settings.mail.from,
            )?)
        }
    })
}

/// The token signing keys: `auth.signing_keys`, or on SQLite the key file in the data folder
/// (created on first use; `warn` logs that production should configure them).
///
/// # Errors
/// When none are configured on PostgreSQL, or the key file cannot be read or created.
pub fn signing_keys(settings: &Settings, warn: bool) -> anyhow::Result<Vec<String>> {
    let auth = &settings.auth;
    Ok(if auth.signing_keys.is_empty() {
        anyhow::ensure!(
            !settings.is_postgres(),
            "auth.signing_keys (QUIRE_AUTH__SIGNING_KEYS) must be set on PostgreSQL: every \
             server must sign with the same keys (make one with `quire keygen`)"
        );
        let path = settings.data_dir.join("keys").join("signing.keys");
        let (keys, created) = crypto::load_or_create_key_file(&path)?;
        if warn {
            tracing::warn!(
                path = %path.display(),
                created,
                "access tokens are signed with a key kept in the data folder; set \
                 auth.signing_keys in production"
            );
        }
        keys
    } else {
        auth.signing_keys
            .iter()
            .map(|k| k.expose_secret().to_owned())
            .collect()
    })
}

/// What seals erasure tombstones: HMAC under a key derived from the first token signing key.
/// None when there is no signing key (`quire worker` on PostgreSQL without
/// `auth.signing_keys`: it erases no organization).
fn erasure_sealer(settings: &Settings) -> Option<Arc<dyn tenancy::Sealer>> {
    let keys = signing_keys(settings, false).ok()?;
    let first = keys.first()?;
    Some(Arc::new(crypto::HmacSealer::from_secret(first.as_bytes())))
}

/// The account use cases over the configured adapters.
///
/// # Errors
/// When the signing keys are missing or malformed, or the hasher settings are invalid.
pub async fn accounts_from_settings(
    settings: &Settings,
    store: &SqlStore,
    cache: Arc<dyn Cache>,
    mailer: Arc<dyn kernel::mail::Mailer>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<identity::Accounts>> {
    use crypto::{Argon2Hasher, Argon2Settings, OpaqueTokens, PasetoTokens};
    let auth = &settings.auth;
    let keys = signing_keys(settings, true)?;
    let access = PasetoTokens::new(
        &keys,
        &auth.issuer,
        &auth.audience,
        Duration::from_secs(auth.access_token_ttl_secs),
    )?;
    let hasher = Argon2Hasher::new(
        Argon2Settings {
            memory_kib: auth.argon2_memory_kib,
            iterations: auth.argon2_iterations,
            parallelism: auth.argon2_parallelism,
        },
        auth.max_concurrent_hashes,
        Duration::from_millis(auth.hash_wait_ms),
    )?;
    let accounts = identity::Accounts::new(
        identity::service::AccountPorts {
            users: Arc::new(store.clone()),
            sessions: Arc::new(store.clone()),
            hasher: Arc::new(hasher),
            access: Arc::new(access),
            refresh: Arc::new(OpaqueTokens::new()),
            audit: Arc::new(store.clone()),
            mailer,
            resets: Arc::new(store.clone()),
            clock,
            throttle: identity::LoginThrottle::new(
                cache,
                identity::ThrottlePolicy {
                    failures_per_account_ip: auth.failures_per_account_ip,
                    failures_per_account: auth.failures_per_account,
                },
            ),
        },
        identity::PasswordPolicy {
            min_chars: auth.password_min_chars,
            max_chars: 128,
        },
        Duration::from_secs(auth.session_lifetime_days * 86_400),
    )
    .with_recheck(Duration::from_millis(auth.recheck_ms));
    accounts.warm_up().await.map_err(anyhow::Error::new)?;
    Ok(Arc::new(accounts))
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    store: SqlStore,
    work: Work,
    wake: Arc<Wake>,
    workers: usize,
    poll: Duration,
    grace: Duration,
    chat: Arc<chat::Chat>,
    answer_sweep_every: Duration,
    webhooks: Arc<webhooks::Webhooks>,
    webhook_wake: Arc<Wake>,
    webhook_workers: usize,
    webhook_poll: Duration,
    workflows: Arc<workflows::Workflows>,
    workflow_wake: Arc<Wake>,
    workflow_workers: usize,
    workflow_poll: Duration,
    trail_writer: kernel::trail::TrailWriter,
    retention: retention::Retention,
    cache: Arc<dyn Cache>,
    retention_every: Duration,
}

/// The cache adapter the settings ask for, with its health check.
///
/// # Errors
/// When the Redis URL is malformed.
pub fn cache_from_settings(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn Cache>, Arc<dyn HealthCheck>)> {
    Ok(match settings.cache.backend {
        CacheBackend::Memory => {
            let cache = Arc::new(InProcessCache::new(settings.cache.max_entries));
            (cache.clone(), cache)
        }
        #[cfg(not(feature = "redis"))]
        CacheBackend::Redis => return Err(not_built("cache.backend = \"redis\"", "redis")),
        #[cfg(feature = "redis")]
        CacheBackend::Redis => {
            let url = settings
                .cache
                .redis_url
                .as_ref()
                .context("cache.redis_url is required for the redis cache")?;
            let cache = Arc::new(RedisCache::new(
                url.expose_secret(),
                &settings.cache.key_prefix,
                settings.cache.pool_size,
            )?);
            (cache.clone(), cache)
        }
    })
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Connects the adapters, migrates if configured, and binds `settings.addr`.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated, or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, None).await
    }

    /// [`Application::build`] with extra undocumented routes (tests only).
    ///
    /// # Errors
    /// As [`Application::build`].
    pub async fn build_with(
        settings: Settings,
        extra: Option<ExtraRoutes>,
    ) -> anyhow::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = SqlStore::connect(&settings, clock.clone()).await?;
        if settings.database.migrate_on_start {
            let applied = store.migrate().await?;
            if !applied.is_empty() {
                tracing::info!(applied = ?applied, "database migrated");
            }
        }
        let (cache, cache_health) = cache_from_settings(&settings)?;
        let (webhooks, webhook_wake) = webhooks_from_settings(&settings, &store, clock.clone())?;
        let billing = billing_from_settings(
            &settings,
            &store,
            cache.clone(),
            clock.clone(),
            webhooks.clone(),
        );
        // The per-tenant token and ingestion series are observed at the meter and at the
        // ingestion's events (tenant_metrics.rs).
        let metrics = Arc::new(api::Metrics::new(settings.http.metrics_top_tenants));
        let meter: Arc<dyn kernel::Meter> = Arc::new(tenant_metrics::ObservedMeter::new(
            billing.clone(),
            metrics.clone(),
        ));
        let (ports, retrieval, work) = pipelines(
            &settings,
            &store,
            clock.clone(),
            meter.clone(),
            Arc::new(tenant_metrics::ObservedIngestion::new(
                webhooks.clone(),
                metrics.clone(),
            )),
        )
        .await?;
        let wake = Arc::new(Wake::default());
        let workflow_wake = Arc::new(Wake::default());
        let (trail, trail_writer) = kernel::trail::BufferedTrail::start(
            Arc::new(store.clone()),
            kernel::trail::CAPACITY,
            Duration::from_secs(settings.orgs.trail_read_window_secs),
        );
        let services = services(
            &settings,
            &store,
            cache.clone(),
            clock,
            &ports,
            &retrieval,
            billing,
            meter,
            wake.clone(),
            webhooks.clone(),
            workflow_wake.clone(),
            trail,
        )
        .await?;
        let chat = services.chat.clone();
        let workflows = services.workflows.clone();
        let retention = retention::Retention::over(&store, services.documents.clone());
        if let Err(e) = cache.ping().await {
            // Not fatal: readiness reports it until the cache answers.
            tracing::warn!(error = %e, "the cache does not answer yet");
        }
        let state = web::Data::new(AppState::new(
            settings.http.clone(),
            cache.clone(),
            services,
            components(&settings, &store, cache_health),
            metrics,
        ));

        let listener = TcpListener::bind(settings.addr)
            .with_context(|| format!("binding {}", settings.addr))?;
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();
        let http = &settings.http;
        let documented = api::Documented::build();
        let mut server =
            HttpServer::new(move || api::build_app(state.clone(), documented.clone(), extra))
                .shutdown_timeout(http.shutdown_timeout_secs)
                .client_request_timeout(Duration::from_secs(http.client_request_timeout_secs))
                .client_disconnect_timeout(Duration::from_secs(5))
                .keep_alive(Duration::from_secs(http.keep_alive_secs))
                // Streams write small frames (SSE events, WebSocket messages): without this, the
                // first event after the response head waits for the client's delayed ACK (40 ms).
                .tcp_nodelay(true);
        if http.workers > 0 {
            server = server.workers(http.workers);
        }
        let server = server.listen(listener).context("listening")?.run();
        tracing::info!(
            port,
            database = store.backend_name(),
            cache = ?settings.cache.backend,
            data_dir = %settings.data_dir.display(),
            "server bound"
        );
        Ok(Self {
            port,
            server,
            store,
            work,
            wake,
            workers: settings.documents.workers,
            poll: Duration::from_millis(settings.documents.poll_interval_ms),
            grace: Duration::from_secs(settings.http.shutdown_timeout_secs),
            chat,
            // A third of the lease: an abandoned answer is ended within 1⅓ leases.
            answer_sweep_every: Duration::from_secs(settings.chat.answer_lease_secs) / 3,
            webhooks,
            webhook_wake,
            webhook_workers: settings.webhooks.workers,
            webhook_poll: Duration::from_millis(settings.webhooks.poll_interval_ms),
            workflows,
            workflow_wake,
            workflow_workers: settings.workflows.workers,
            workflow_poll: Duration::from_millis(settings.workflows.poll_interval_ms),
            trail_writer,
            retention,
            cache,
            retention_every: Duration::from_secs(settings.orgs.retention_sweep_secs),
        })
    }

    /// The bound port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server (gracefully or not) from elsewhere.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (signal or handle), then closes the pool.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let pool = WorkerPool::start(self.work, self.wake, self.workers, self.poll);
        let deliveries = DeliveryPool::start(
            self.webhooks,
            self.webhook_wake,
            self.webhook_workers,
            self.webhook_poll,
        );
        let runs = WorkflowPool::start(
            self.workflows,
            self.workflow_wake,
            self.workflow_workers,
            self.workflow_poll,
        );
        let sweeper = worker::sweep_abandoned_uploads(self.store.clone());
        let answers = worker::sweep_abandoned_answers(self.chat, self.answer_sweep_every);
        let retention = worker::sweep_retention(self.retention, self.cache, self.retention_every);
        let trim = allocator::release_after_start_up(Duration::from_secs(2));
        let served = self.server.await.context("serving");
        trim.abort();
        tracing::info!("server stopped; stopping workers and closing connections");
        sweeper.abort();
        answers.abort();
        retention.abort();
        pool.shutdown(self.grace).await;
        deliveries.shutdown(self.grace).await;
        runs.shutdown(self.grace).await;
        // After every request and run ended: what they queued on the access trail is written.
        self.trail_writer.stop().await;
        served?;
        self.store.close().await
    }
}
