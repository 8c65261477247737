//! The model whitelist, token counting, and the reservation of a chat call's tokens.

use std::sync::Arc;

use kernel::{FieldError, InvalidInput, MeterScope, TenantContext, TenantId, UsageKind};

use super::{Chat, ChatError};
use crate::ports::ChatModel;

impl Chat {
    /// Every model name some adapter serves.
    #[must_use]
    pub fn served_models(&self) -> Vec<String> {
        served_models(&self.ports.models)
    }

    fn adapter(&self, name: &str) -> Option<&Arc<dyn ChatModel>> {
        self.ports
            .models
            .iter()
            .find(|m| m.models().iter().any(|n| n == name))
    }

    /// The models `tenant` may use: the admin's whitelist, else the configured one, else every
    /// served model; always only models some adapter serves.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn allowed_models(&self, tenant: TenantId) -> Result<Vec<String>, ChatError> {
        let served = self.served_models();
        let list = match self.stored_whitelist(tenant).await? {
            Some(list) => list,
            None if !self.settings.allowed_models.is_empty() => {
                self.settings.allowed_models.clone()
            }
            None => served.clone(),
        };
        Ok(list.into_iter().filter(|m| served.contains(m)).collect())
    }

    /// Whether a platform admin set `tenant`'s whitelist.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn has_custom_models(&self, tenant: TenantId) -> Result<bool, ChatError> {
        Ok(self.stored_whitelist(tenant).await?.is_some())
    }

    /// The whitelist a platform admin set for `tenant`, if any; reused for the recheck time
    /// ([`Chat::with_recheck`]).
    async fn stored_whitelist(&self, tenant: TenantId) -> Result<Option<Vec<String>>, ChatError> {
        let now = self.ports.clock.now();
        Ok(self
            .recent_whitelists
            .get_or_load(tenant, now, || self.ports.store.allowed_models(tenant))
            .await?)
    }

    /// Sets (or, with `None`, clears) a tenant's whitelist (platform admins).
    ///
    /// # Errors
    /// [`ChatError::Invalid`] when the list is empty or names a model no adapter serves.
    pub async fn set_allowed_models(
        &self,
        tenant: TenantId,
        models: Option<Vec<String>>,
    ) -> Result<Vec<String>, ChatError> {
        if let Some(list) = &models {
            let served = self.served_models();
            let mut errors = Vec::new();
            if list.is_empty() || list.len() > 100 {
                errors.push(FieldError::new("models", "must hold 1 to 100 models"));
            }
            for (i, m) in list.iter().enumerate() {
                if !served.contains(m) {
                    errors.push(FieldError::new(
                        format!("models[{i}]"),
                        format!("no such model; served: {}", served.join(", ")),
                    ));
                }
            }
            InvalidInput::check(errors)?;
        }
        let set = self
            .ports
            .store
            .set_allowed_models(tenant, models.as_deref())
            .await;
        self.recent_whitelists.forget_all_after(set)?;
        self.allowed_models(tenant).await
    }

    /// The model to use: `requested`, else the default (or the first allowed when the default
    /// is not allowed).
    pub(crate) async fn resolve_model(
        &self,
        tenant: TenantId,
        requested: Option<&str>,
    ) -> Result<(String, Arc<dyn ChatModel>), ChatError> {
        let allowed = self.allowed_models(tenant).await?;
        self.choose_model(allowed, requested)
    }

    /// The model a request that names none gets, among the `allowed` ones: the configured
    /// default when it is allowed, else the first allowed; `None` when nothing is allowed.
    #[must_use]
    pub fn default_among<'a>(&'a self, allowed: &'a [String]) -> Option<&'a str> {
        if allowed.contains(&self.settings.default_model) {
            Some(&self.settings.default_model)
        } else {
            allowed.first().map(String::as_str)
        }
    }

    /// [`Chat::resolve_model`] once the `allowed` models were read.
    pub(crate) fn choose_model(
        &self,
        allowed: Vec<String>,
        requested: Option<&str>,
    ) -> Result<(String, Arc<dyn ChatModel>), ChatError> {
        let name = match requested {
            Some(m) => m.to_owned(),
            None => self.default_among(&allowed).unwrap_or_default().to_owned(),
        };
        match self.adapter(&name) {
            Some(adapter) if allowed.contains(&name) => Ok((name, adapter.clone())),
            _ => Err(ChatError::UnknownModel {
                model: name,
                allowed,
            }),
        }
    }

    /// Counts tokens of `text` in `model` (completion tokens of a cut-short stream).
    #[must_use]
    pub fn count_tokens(&self, model: &str, text: &str) -> u32 {
        self.adapter(model)
            .map_or(0, |m| m.count_tokens(model, text))
    }

    /// The prompt tokens of a conversation of these message `contents` in `model`, counted
    /// as completions count them (what they reserve, and what `/usage/estimate` answers).
    #[must_use]
    pub fn count_prompt_tokens<'a>(
        &self,
        model: &str,
        contents: impl IntoIterator<Item = &'a str>,
    ) -> u32 {
        prompt_tokens(|s| self.count_tokens(model, s), contents)
    }

    /// Reserves a chat call's `prompt_tokens` plus its answer budget `max_tokens`, billed to
    /// the caller of `ctx`.
    pub(crate) async fn reserve_chat(
        &self,
        ctx: &TenantContext,
        model_name: &str,
        reference: String,
        prompt_tokens: u32,
        max_tokens: u32,
    ) -> Result<kernel::Reservation, ChatError> {
        Ok(self
            .ports
            .meter
            .reserve(
                MeterScope {
                    tenant: ctx.tenant_id(),
                    actor: Some(ctx.principal()),
                    model: model_name.to_owned(),
                    kind: UsageKind::Chat,
                    reference,
                },
                u64::from(prompt_tokens) + u64::from(max_tokens),
            )
            .await?)
    }
}

/// A conversation's prompt tokens: each message's content, plus 4 per message for its role
/// and separators, plus 3 that prime the reply (OpenAI's chat format).
fn prompt_tokens<'a>(
    count: impl Fn(&str) -> u32,
    contents: impl IntoIterator<Item = &'a str>,
) -> u32 {
    contents
        .into_iter()
        .map(|c| count(c).saturating_add(4))
        .fold(3, u32::saturating_add)
}

/// Every model name these adapters serve, each once, in the adapters' order.
fn served_models(adapters: &[Arc<dyn ChatModel>]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    adapters
        .iter()
        .flat_map(|m| m.models())
        .filter(|name| seen.insert(name.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::model::ChatRequest;
    use crate::ports::{ModelError, ModelStream};

    /// Serves these names; never called.
    #[derive(Debug)]
    struct Names(&'static [&'static str]);

    #[async_trait]
    impl ChatModel for Names {
        fn models(&self) -> Vec<String> {
            self.0.iter().map(|n| (*n).to_owned()).collect()
        }

        fn count_tokens(&self, _model: &str, _text: &str) -> u32 {
            0
        }

        fn context_window(&self, _model: &str) -> u32 {
            0
        }

        async fn stream(&self, _request: ChatRequest) -> Result<ModelStream, ModelError> {
            Err(ModelError::Unavailable("not used".to_owned()))
        }
    }

    #[test]
    fn served_models_name_each_model_once_even_when_not_adjacent() {
        let adapters: Vec<Arc<dyn ChatModel>> = vec![
            Arc::new(Names(&["a", "b"])),
            Arc::new(Names(&["c", "a", "b"])),
        ];
        assert_eq!(served_models(&adapters), ["a", "b", "c"]);
    }
}
