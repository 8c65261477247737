//! Assistants: instructions, a model and collections a session can be started with.

use kernel::{InvalidInput, Page, PageRequest, TenantContext};

use super::{Chat, ChatError, dedup};
use crate::model::{Assistant, AssistantFields, AssistantId};

impl Chat {
    /// Creates an assistant.
    ///
    /// # Errors
    /// Invalid fields (a name is required); a collection not the tenant's; a model not allowed.
    pub async fn create_assistant(
        &self,
        ctx: &TenantContext,
        fields: AssistantFields,
    ) -> Result<Assistant, ChatError> {
        if fields.name.is_none() {
            return Err(InvalidInput::field("name", "is required").into());
        }
        fields.validate()?;
        let model = fields.model.clone().flatten();
        self.check_references(ctx, fields.collection_ids.as_deref(), model.as_deref())
            .await?;
        let now = self.ports.clock.now();
        let assistant = Assistant {
            id: AssistantId::new(),
            tenant_id: ctx.tenant_id(),
            name: kernel::text::clean_name(&fields.name.unwrap_or_default()),
            instructions: fields.instructions.unwrap_or_default(),
            model,
            collection_ids: dedup(fields.collection_ids.unwrap_or_default()),
            temperature: fields.temperature.flatten(),
            created_at: now,
            updated_at: now,
            created_by: Some(ctx.principal()),
        };
        self.ports.store.create_assistant(&assistant).await?;
        Ok(assistant)
    }

    /// One assistant of the organization.
    ///
    /// # Errors
    /// [`ChatError::NotFound`].
    pub async fn assistant(
        &self,
        ctx: &TenantContext,
        id: AssistantId,
    ) -> Result<Assistant, ChatError> {
        self.ports
            .store
            .find_assistant(ctx.tenant_id(), id)
            .await?
            .ok_or(ChatError::NotFound)
    }

    /// The organization's assistants, oldest first.
    ///
    /// # Errors
    /// A foreign cursor; storage failures.
    pub async fn assistants(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Assistant>, ChatError> {
        Ok(self
            .ports
            .store
            .list_assistants(ctx.tenant_id(), page)
            .await?)
    }

    /// Changes an assistant: its creator, or an admin ([`Assistant::editable_by`]).
    ///
    /// # Errors
    /// As [`Chat::create_assistant`], [`ChatError::NotFound`], and [`ChatError::Forbidden`]
    /// for another member's assistant.
    pub async fn update_assistant(
        &self,
        ctx: &TenantContext,
        id: AssistantId,
        fields: AssistantFields,
    ) -> Result<Assistant, ChatError> {
        fields.validate()?;
        let mut a = self.assistant(ctx, id).await?;
        if !a.editable_by(ctx) {
            return Err(ChatError::Forbidden(NOT_YOUR_ASSISTANT));
        }
        let model = fields.model.clone().flatten();
        self.check_references(ctx, fields.collection_ids.as_deref(), model.as_deref())
            .await?;
        if let Some(n) = fields.name {
            a.name = kernel::text::clean_name(&n);
        }
        if let Some(i) = fields.instructions {
            a.instructions = i;
        }
        if let Some(m) = fields.model {
            a.model = m;
        }
        if let Some(c) = fields.collection_ids {
            a.collection_ids = dedup(c);
        }
        if let Some(t) = fields.temperature {
            a.temperature = t;
        }
        a.updated_at = self.ports.clock.now();
        if !self.ports.store.update_assistant(&a).await? {
            return Err(ChatError::NotFound);
        }
        Ok(a)
    }

    /// Deletes an assistant (sessions naming it go on without it): its creator, or an admin.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; [`ChatError::Forbidden`] for another member's assistant.
    pub async fn delete_assistant(
        &self,
        ctx: &TenantContext,
        id: AssistantId,
    ) -> Result<(), ChatError> {
        if !self.assistant(ctx, id).await?.editable_by(ctx) {
            return Err(ChatError::Forbidden(NOT_YOUR_ASSISTANT));
        }
        if !self
            .ports
            .store
            .delete_assistant(ctx.tenant_id(), id)
            .await?
        {
            return Err(ChatError::NotFound);
        }
        Ok(())
    }
}

/// Why another member's assistant cannot be changed.
const NOT_YOUR_ASSISTANT: &str = "only the assistant's creator or an admin may change or delete it";
