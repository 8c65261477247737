//! The models chat and retrieval serve, as billing's [`billing::ModelCatalog`] port: what
//! `/usage/estimate` counts and prices with.

use std::sync::Arc;

use async_trait::async_trait;
use billing::{BillingError, ModelCatalog};
use kernel::TenantId;

/// Chat's models and tokenizers, and retrieval's embedding models.
#[derive(Debug)]
pub struct ServedModels {
    chat: Arc<chat::Chat>,
    retrieval: Arc<retrieval::Retrieval>,
}

impl ServedModels {
    /// The catalog over these services.
    #[must_use]
    pub fn new(chat: Arc<chat::Chat>, retrieval: Arc<retrieval::Retrieval>) -> Self {
        Self { chat, retrieval }
    }
}

#[async_trait]
impl ModelCatalog for ServedModels {
    async fn chat_models(&self, tenant: TenantId) -> Result<Vec<String>, BillingError> {
        self.chat
            .allowed_models(tenant)
            .await
            .map_err(|e| BillingError::Unknown(anyhow::Error::new(e)))
    }

    fn served_chat_models(&self) -> Vec<String> {
        self.chat.served_models()
    }

    fn embedding_models(&self) -> Vec<String> {
        self.retrieval
            .embedders()
            .models()
            .iter()
            .map(|m| m.name().to_owned())
            .collect()
    }

    fn count_prompt_tokens(&self, model: &str, contents: &[&str]) -> u32 {
        self.chat
            .count_prompt_tokens(model, contents.iter().copied())
    }

    fn count_tokens(&self, model: &str, text: &str) -> u32 {
        self.chat.count_tokens(model, text)
    }
}
