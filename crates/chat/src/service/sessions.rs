//! Sessions, their messages, and feedback on answers.

use documents::CollectionId;
use kernel::{InvalidInput, Page, PageRequest, TenantContext};

use super::{Chat, ChatError, dedup};
use crate::model::{
    ChatSessionId, Feedback, MAX_COMMENT_CHARS, Message, MessageId, MessageRole, Rating, Session,
    SessionFields,
};

impl Chat {
    pub(super) async fn check_references(
        &self,
        ctx: &TenantContext,
        collections: Option<&[CollectionId]>,
        model: Option<&str>,
    ) -> Result<(), ChatError> {
        if let Some(c) = collections {
            self.ports.knowledge.check_collections(ctx, c).await?;
        }
        if let Some(m) = model {
            self.resolve_model(ctx.tenant_id(), Some(m)).await?;
        }
        Ok(())
    }

    /// Starts a conversation.
    ///
    /// # Errors
    /// Invalid fields; a collection or assistant that is not the tenant's (404); a model not on
    /// the whitelist.
    pub async fn create_session(
        &self,
        ctx: &TenantContext,
        fields: SessionFields,
    ) -> Result<Session, ChatError> {
        fields.validate()?;
        let model = fields.model.clone().flatten();
        self.check_references(ctx, fields.collection_ids.as_deref(), model.as_deref())
            .await?;
        let assistant_id = fields.assistant_id.flatten();
        if let Some(a) = assistant_id {
            self.assistant(ctx, a).await?;
        }
        let now = self.ports.clock.now();
        let session = Session {
            id: ChatSessionId::new(),
            tenant_id: ctx.tenant_id(),
            owner: ctx.principal(),
            title: fields
                .title
                .map(|t| kernel::text::clean_name(&t))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "New chat".to_owned()),
            collection_ids: dedup(fields.collection_ids.unwrap_or_default()),
            model,
            system_prompt: fields
                .system_prompt
                .flatten()
                .filter(|s| !s.trim().is_empty()),
            assistant_id,
            created_at: now,
            updated_at: now,
        };
        self.ports.store.create_session(&session).await?;
        tracing::info!(session = %session.id, "chat session created");
        Ok(session)
    }

    /// One of the caller's sessions.
    ///
    /// # Errors
    /// [`ChatError::NotFound`] for another caller's or tenant's session.
    pub async fn session(
        &self,
        ctx: &TenantContext,
        id: ChatSessionId,
    ) -> Result<Session, ChatError> {
        self.ports
            .store
            .find_session(ctx.tenant_id(), id)
            .await?
            .filter(|s| s.owner == ctx.principal())
            .ok_or(ChatError::NotFound)
    }

    /// The caller's sessions, newest first.
    ///
    /// # Errors
    /// A foreign cursor; storage failures.
    pub async fn sessions(
        &self,
        ctx: &TenantContext,
        page: &PageRequest,
    ) -> Result<Page<Session>, ChatError> {
        Ok(self
            .ports
            .store
            .list_sessions(ctx.tenant_id(), ctx.principal(), page)
            .await?)
    }

    /// Changes a session.
    ///
    /// # Errors
    /// As [`Chat::create_session`], and [`ChatError::NotFound`].
    pub async fn update_session(
        &self,
        ctx: &TenantContext,
        id: ChatSessionId,
        fields: SessionFields,
    ) -> Result<Session, ChatError> {
        fields.validate()?;
        let mut session = self.session(ctx, id).await?;
        let model = fields.model.clone().flatten();
        self.check_references(ctx, fields.collection_ids.as_deref(), model.as_deref())
            .await?;
        if let Some(Some(a)) = fields.assistant_id {
            self.assistant(ctx, a).await?;
        }
        if let Some(t) = fields.title {
            let t = kernel::text::clean_name(&t);
            if !t.is_empty() {
                session.title = t;
            }
        }
        if let Some(c) = fields.collection_ids {
            session.collection_ids = dedup(c);
        }
        if let Some(m) = fields.model {
            session.model = m;
        }
        if let Some(p) = fields.system_prompt {
            session.system_prompt = p.filter(|s| !s.trim().is_empty());
        }
        if let Some(a) = fields.assistant_id {
            session.assistant_id = a;
        }
        session.updated_at = self.ports.clock.now();
        if !self.ports.store.update_session(&session).await? {
            return Err(ChatError::NotFound);
        }
        Ok(session)
    }

    /// Deletes a session with its messages.
    ///
    /// # Errors
    /// [`ChatError::NotFound`].
    pub async fn delete_session(
        &self,
        ctx: &TenantContext,
        id: ChatSessionId,
    ) -> Result<(), ChatError> {
        self.session(ctx, id).await?;
        if !self.ports.store.delete_session(ctx.tenant_id(), id).await? {
            return Err(ChatError::NotFound);
        }
        Ok(())
    }

    /// A session's messages, oldest first.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; a foreign cursor.
    pub async fn messages(
        &self,
        ctx: &TenantContext,
        id: ChatSessionId,
        page: &PageRequest,
    ) -> Result<Page<Message>, ChatError> {
        self.session(ctx, id).await?;
        Ok(self
            .ports
            .store
            .list_messages(ctx.tenant_id(), id, page)
            .await?)
    }

    /// Rates an assistant message of one of the caller's sessions.
    ///
    /// # Errors
    /// [`ChatError::NotFound`]; a comment too long.
    pub async fn feedback(
        &self,
        ctx: &TenantContext,
        message_id: MessageId,
        rating: Rating,
        comment: Option<String>,
    ) -> Result<Feedback, ChatError> {
        let comment = comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
        {
            return Err(InvalidInput::field(
                "comment",
                format!("must be at most {MAX_COMMENT_CHARS} characters"),
            )
            .into());
        }
        let message = self
            .ports
            .store
            .find_message(ctx.tenant_id(), message_id)
            .await?
            .filter(|m| m.role == MessageRole::Assistant)
            .ok_or(ChatError::NotFound)?;
        self.session(ctx, message.session_id).await?;
        let feedback = Feedback {
            tenant_id: ctx.tenant_id(),
            message_id,
            principal: ctx.principal(),
            rating,
            comment,
            created_at: self.ports.clock.now(),
        };
        self.ports.store.put_feedback(&feedback).await?;
        Ok(feedback)
    }
}
