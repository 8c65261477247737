//! What an organization may use: its models (`/ai/models` lists them OpenAI-shaped) and
//! `/ai/config`, its models with their prices, the defaults and the limits in one answer.

use actix_web::{get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::dto::usage::PlanDto;
use crate::error::{ApiError, OpenAiError};
use crate::state::AppState;
use crate::tenant::{Tenant, Viewer};

/// The models of one organization: its chat models (the whitelist) and the deployment's
/// embedding models, each with the one a request that names none gets.
pub(super) struct TenantModels {
    /// The chat models it may use, in the whitelist's order.
    pub(super) chat: Vec<String>,
    /// The chat model a request without `model` gets (`None`: no chat model is allowed).
    pub(super) default_chat: Option<String>,
    /// The embedding models, the default first: `(name, dimensions)`.
    pub(super) embedding: Vec<(String, u32)>,
    /// The embedding model of a request without `model` (and of new collections).
    pub(super) default_embedding: String,
}

impl TenantModels {
    /// The models of `tenant`: its chat whitelist ([`chat::Chat::allowed_models`]) and every
    /// embedding model of the deployment (embedding models have no whitelist).
    pub(super) async fn of(state: &AppState, tenant: kernel::TenantId) -> Result<Self, ApiError> {
        let chat = state.chat.allowed_models(tenant).await?;
        let default_chat = state.chat.default_among(&chat).map(str::to_owned);
        let embedders = state.retrieval.embedders();
        let embedding = embedders
            .models()
            .into_iter()
            .map(|m| (m.name().to_owned(), m.dimensions()))
            .collect();
        let default_embedding = embedders.default_embedder().model().name().to_owned();
        Ok(Self {
            chat,
            default_chat,
            embedding,
            default_embedding,
        })
    }

    /// Every name once: the chat models, then the embedding models.
    pub(super) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.chat.iter().map(String::as_str).collect();
        for (name, _) in &self.embedding {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }
}

/// A model's price in integer micro-units of the price table's currency per million tokens
/// (so $0.15 per million tokens is 150000); both 0 for local models and models without a
/// configured price, which cost nothing.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceDto {
    /// Per million tokens sent.
    prompt: u64,
    /// Per million tokens produced (0 for embedding models).
    completion: u64,
}

/// One model the organization may use.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigModelDto {
    /// The name to send as `model` (as `GET /ai/models` lists it).
    id: String,
    /// `chat` (`/ai/chat/completions`, the AI tasks, chat sessions) or `embedding`
    /// (`/ai/embeddings`, `/embeddings`, collections' `embedding_model`).
    kind: &'static str,
    /// The length of its vectors (embedding models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
    /// What its tokens cost.
    price: PriceDto,
}

/// What a request gets when it names nothing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigDefaultsDto {
    /// The chat model of a request without `model`; `null` when no chat model is allowed.
    chat_model: Option<String>,
    /// The embedding model of a request without `model` (and of new collections).
    embedding_model: String,
    /// Tokens an answer may take when the request does not say (`max_completion_tokens`).
    max_completion_tokens: u32,
}

/// A route class's request budget per window (0: that budget is off).
#[derive(Debug, Serialize, ToSchema)]
pub struct RateBudgetDto {
    /// `chat` (completions, answers, AI tasks) or `embeddings` (embeddings and search).
    class: &'static str,
    /// Per signed-in user.
    per_user: u32,
    /// Per API key.
    per_api_key: u32,
    /// Per client address.
    per_ip: u32,
    /// Per organization (all its users and keys together).
    per_tenant: u32,
}

/// The size limits of one request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestLimitsDto {
    /// Messages of a completion.
    completion_messages: usize,
    /// Characters of a completion's messages in all.
    completion_characters: usize,
    /// The largest `max_completion_tokens` (or `max_tokens`) a completion may ask.
    max_completion_tokens: u32,
    /// Texts of an embeddings request.
    embedding_inputs: usize,
    /// Characters of one text to embed.
    embedding_input_characters: usize,
    /// Characters of an embeddings request in all.
    embedding_characters: usize,
}

/// The organization's plan (its monthly token quota, this month's use, its streams and its
/// storage: `GET /billing/plan`), rate limits and request limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigLimitsDto {
    /// The plan, as `GET /billing/plan` answers it. Past `monthly_token_limit`, calls here
    /// answer 429 `insufficient_quota`.
    #[serde(flatten)]
    plan: PlanDto,
    /// The window every rate budget counts in, in seconds.
    rate_window_secs: u64,
    /// The request budgets of the routes here (past one: 429 `rate_limited` with
    /// `Retry-After`).
    rate_limits: Vec<RateBudgetDto>,
    /// The size limits of one request.
    request: RequestLimitsDto,
}

/// `GET /ai/config`: the organization's models, defaults, limits and prices.
#[derive(Debug, Serialize, ToSchema)]
pub struct AiConfigDto {
    /// Every model it may use: its chat models (the whitelist), then the embedding models
    /// (the default first).
    models: Vec<ConfigModelDto>,
    /// What a request that names nothing gets.
    defaults: ConfigDefaultsDto,
    /// Its quota, rate limits and request limits.
    limits: ConfigLimitsDto,
}

/// The organization's models (chat and embedding) with their prices, the defaults, its
/// quota and this month's use, the rate limits and the request limits, in one answer.
#[utoipa::path(
    tag = "ai",
    security(("bearer" = [])),
    params(("X-Tenant-ID" = String, Header, description = "organization id or slug")),
    responses(
        (status = 200, body = AiConfigDto),
        (status = 400, description = "no `X-Tenant-ID`", body = OpenAiError),
        (status = 401, body = OpenAiError), (status = 403, body = OpenAiError),
        (status = 404, description = "not a member of this organization", body = OpenAiError),
        (status = 503, body = OpenAiError)
    )
)]
#[get("/ai/config")]
pub(super) async fn ai_config(
    state: web::Data<AppState>,
    access: Tenant<Viewer>,
) -> Result<web::Json<AiConfigDto>, ApiError> {
    let tenant = access.ctx.tenant_id();
    let models = TenantModels::of(&state, tenant).await?;
    let plan = PlanDto::new(
        state.billing.plan_status(tenant).await?,
        state.documents.storage(tenant).await?,
    );
    let price = |name: &str| {
        let p = state.billing.prices().get(name).unwrap_or_default();
        PriceDto {
            prompt: p.prompt,
            completion: p.completion,
        }
    };
    let mut list: Vec<ConfigModelDto> = models
        .chat
        .iter()
        .map(|id| ConfigModelDto {
            id: id.clone(),
            kind: "chat",
            dimensions: None,
            price: price(id),
        })
        .collect();
    list.extend(models.embedding.iter().map(|(id, dims)| ConfigModelDto {
        id: id.clone(),
        kind: "embedding",
        dimensions: Some(*dims),
        price: price(id),
    }));
    let rates = state.billing.rate_limits();
    let rate_limits = [billing::RateClass::Chat, billing::RateClass::Embeddings]
        .into_iter()
        .map(|class| {
            let b = rates.budgets.get(&class).copied().unwrap_or_default();
            RateBudgetDto {
                class: class.as_str(),
                per_user: b.per_user,
                per_api_key: b.per_api_key,
                per_ip: b.per_ip,
                per_tenant: b.per_tenant,
            }
        })
        .collect();
    Ok(web::Json(AiConfigDto {
        models: list,
        defaults: ConfigDefaultsDto {
            chat_model: models.default_chat,
            embedding_model: models.default_embedding,
            max_completion_tokens: state.chat_max_answer_tokens,
        },
        limits: ConfigLimitsDto {
            plan,
            rate_window_secs: rates.window.as_secs(),
            rate_limits,
            request: RequestLimitsDto {
                completion_messages: chat::service::MAX_COMPLETION_MESSAGES,
                completion_characters: chat::service::MAX_COMPLETION_CHARS,
                max_completion_tokens: chat::service::MAX_MAX_TOKENS,
                embedding_inputs: retrieval::MAX_EMBED_INPUTS,
                embedding_input_characters: retrieval::MAX_EMBED_INPUT_CHARS,
                embedding_characters: retrieval::MAX_EMBED_TOTAL_CHARS,
            },
        },
    }))
}
