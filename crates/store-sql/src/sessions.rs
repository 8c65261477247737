//! [`SessionRepository`] on SQL. Rotation claims the presented token with one conditional
//! `UPDATE … WHERE spent_at IS NULL …`: the database lets exactly one concurrent caller change
//! the row, on PostgreSQL (row lock) and SQLite (one writer) alike.

use anyhow::Context as _;
use async_trait::async_trait;
use identity::ports::{
    NewRefreshToken, Rotation, SessionId, SessionRepoError, SessionRepository, TokenHash,
};
use kernel::UserId;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, TransactionTrait,
};
use time::OffsetDateTime;

use crate::SqlStore;
use crate::entity::refresh_token::{ActiveModel, Column, Entity};
use crate::stored::{at_value, execute_timed};

fn row(t: &NewRefreshToken) -> ActiveModel {
    ActiveModel {
        token_hash: Set(t.hash.0.to_vec()),
        session_id: Set(t.session.as_uuid()),
        user_id: Set(t.user_id.as_uuid()),
        created_at: Set(t.created_at),
        expires_at: Set(t.expires_at),
        spent_at: Set(None),
        revoked_at: Set(None),
    }
}

async fn revoke_session(
    db: &impl ConnectionTrait,
    session: uuid::Uuid,
    now: OffsetDateTime,
) -> Result<(), SessionRepoError> {
    Entity::update_many()
        .col_expr(
            Column::RevokedAt,
            Expr::value(at_value(db.get_database_backend(), now)),
        )
        .filter(Column::SessionId.eq(session))
        .filter(Column::RevokedAt.is_null())
        .exec(db)
        .await
        .context("revoking a session")?;
    Ok(())
}

#[async_trait]
impl SessionRepository for SqlStore {
    async fn start(&self, token: NewRefreshToken) -> Result<(), SessionRepoError> {
        execute_timed(&self.db, &Entity::insert(row(&token)))
            .await
            .context("storing a refresh token")?;
        Ok(())
    }

    async fn rotate(
        &self,
        presented: &TokenHash,
        next: TokenHash,
        now: OffsetDateTime,
    ) -> Result<Rotation, SessionRepoError> {
        let txn = self.db.begin().await.context("starting a rotation")?;
        let stamp = at_value(txn.get_database_backend(), now);
        let claimed = Entity::update_many()
            .col_expr(Column::SpentAt, Expr::value(stamp.clone()))
            .filter(Column::TokenHash.eq(presented.0.to_vec()))
            .filter(Column::SpentAt.is_null())
            .filter(Column::RevokedAt.is_null())
            .filter(Column::ExpiresAt.gt(stamp))
            .exec(&txn)
            .await
            .context("claiming a refresh token")?
            .rows_affected
            == 1;
        let stored = Entity::find_by_id(presented.0.to_vec())
            .one(&txn)
            .await
            .context("reading a refresh token")?;
        let outcome = match stored {
            Some(t) if claimed => {
                let next = NewRefreshToken {
                    hash: next,
                    session: SessionId::from_uuid(t.session_id),
                    user_id: UserId::from_uuid(t.user_id),
                    created_at: now,
                    expires_at: t.expires_at,
                };
                execute_timed(&txn, &Entity::insert(row(&next)))
                    .await
                    .context("storing the rotated refresh token")?;
                Rotation::Rotated {
                    user_id: next.user_id,
                    session: next.session,
                    expires_at: t.expires_at,
                }
            }
            Some(t) if t.spent_at.is_some() && t.revoked_at.is_none() => {
                revoke_session(&txn, t.session_id, now).await?;
                Rotation::Reused {
                    user_id: UserId::from_uuid(t.user_id),
                    session: SessionId::from_uuid(t.session_id),
                }
            }
            _ => Rotation::Invalid,
        };
        txn.commit().await.context("committing a rotation")?;
        Ok(outcome)
    }

    async fn revoke_by_token(
        &self,
        token: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        let stored = Entity::find_by_id(token.0.to_vec())
            .one(&self.db)
            .await
            .context("reading a refresh token")?;
        if let Some(t) = stored {
            revoke_session(&self.db, t.session_id, now).await?;
        }
        Ok(())
    }

    async fn revoke_all(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        Entity::update_many()
            .col_expr(Column::RevokedAt, Expr::value(self.at(now)))
            .filter(Column::UserId.eq(user_id.as_uuid()))
            .filter(Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .context("revoking a user's sessions")?;
        Ok(())
    }

    async fn is_active(
        &self,
        session: SessionId,
        now: OffsetDateTime,
    ) -> Result<bool, SessionRepoError> {
        let live = Entity::find()
            .filter(Column::SessionId.eq(session.as_uuid()))
            .filter(Column::RevokedAt.is_null())
            .filter(Column::ExpiresAt.gt(self.at(now)))
            .count(&self.db)
            .await
            .context("checking a session")?;
        Ok(live > 0)
    }

    async fn revoke_others(
        &self,
        user_id: UserId,
        keep: SessionId,
        now: OffsetDateTime,
    ) -> Result<(), SessionRepoError> {
        Entity::update_many()
            .col_expr(Column::RevokedAt, Expr::value(self.at(now)))
            .filter(Column::UserId.eq(user_id.as_uuid()))
            .filter(Column::SessionId.ne(keep.as_uuid()))
            .filter(Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .context("revoking a user's other sessions")?;
        Ok(())
    }
}
