//! The development outbox ([`Mailer`] on SQL) and password-reset tokens.

use anyhow::Context as _;
use async_trait::async_trait;
use identity::ports::{PasswordResets, SessionRepoError, TokenHash};
use kernel::UserId;
use kernel::mail::{Mail, MailError, Mailer};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use time::OffsetDateTime;

use crate::SqlStore;
use crate::entity::{outbox, password_reset};
use crate::stored::execute_timed;

/// A mail in the development outbox.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    /// When it was "sent".
    pub at: OffsetDateTime,
    /// The recipient.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The text.
    pub body: String,
}

impl SqlStore {
    /// The newest `limit` mails of the development outbox, newest first (`quire outbox`).
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn outbox(&self, limit: u64) -> anyhow::Result<Vec<OutboxMail>> {
        let rows = outbox::Entity::find()
            .order_by_desc(outbox::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .context("reading the outbox")?;
        Ok(rows
            .into_iter()
            .map(|m| OutboxMail {
                at: m.at,
                to: m.recipient,
                subject: m.subject,
                body: m.body,
            })
            .collect())
    }
}

#[async_trait]
impl Mailer for SqlStore {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        // Logged without the subject or body (either may hold a one-time secret) or the full
        // address.
        let domain = mail.to.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
        let row = outbox::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            at: Set(self.now()),
            recipient: Set(mail.to),
            subject: Set(mail.subject),
            body: Set(mail.body),
        };
        execute_timed(&self.db, &outbox::Entity::insert(row))
            .await
            .context("storing a mail in the outbox")?;
        tracing::info!(to_domain = %domain, "mail stored in the development outbox (read it with `quire outbox`)");
        Ok(())
    }
}

#[async_trait]
impl PasswordResets for SqlStore {
    async fn create(
        &self,
        hash: TokenHash,
        user: UserId,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        let row = password_reset::ActiveModel {
            token_hash: Set(hash.0.to_vec()),
            user_id: Set(user.as_uuid()),
            created_at: Set(now),
            expires_at: Set(expires_at),
            used_at: Set(None),
        };
        execute_timed(&self.db, &password_reset::Entity::insert(row))
            .await
            .context("storing a reset token")?;
        Ok(())
    }

    async fn consume(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, SessionRepoError> {
        use password_reset::{Column, Entity};
        let spent = Entity::update_many()
            .col_expr(Column::UsedAt, Expr::value(self.at(now)))
            .filter(Column::TokenHash.eq(hash.0.to_vec()))
            .filter(Column::UsedAt.is_null())
            .filter(Column::ExpiresAt.gt(self.at(now)))
            .exec(&self.db)
            .await
            .context("spending a reset token")?
            .rows_affected
            == 1;
        if !spent {
            return Ok(None);
        }
        Ok(Entity::find_by_id(hash.0.to_vec())
            .one(&self.db)
            .await
            .context("reading a reset token")?
            .map(|r| UserId::from_uuid(r.user_id)))
    }
}
