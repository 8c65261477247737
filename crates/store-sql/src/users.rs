//! [`UserRepository`] on SQL.

use anyhow::Context as _;
use async_trait::async_trait;
use identity::model::{DisplayName, EmailAddress, NewUser, User};
use identity::ports::{UserRepoError, UserRepository};
use kernel::UserId;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, SqlErr};
use time::OffsetDateTime;

use crate::SqlStore;
use crate::entity::user::{ActiveModel, Column, Entity, Model};

fn to_domain(m: Model) -> Result<User, UserRepoError> {
    Ok(User {
        id: UserId::from_uuid(m.id),
        email: EmailAddress::parse(&m.email).map_err(|e| anyhow::anyhow!("stored email: {e}"))?,
        name: DisplayName::parse(&m.name, "name")
            .map_err(|e| anyhow::anyhow!("stored name: {e}"))?,
        password_hash: m.password_hash,
        is_platform_admin: m.is_platform_admin,
        disabled_at: m.disabled_at,
        created_at: m.created_at,
    })
}

#[async_trait]
impl UserRepository for SqlStore {
    async fn create(&self, new: NewUser, now: OffsetDateTime) -> Result<User, UserRepoError> {
        let row = ActiveModel {
            id: Set(UserId::new().as_uuid()),
            email: Set(new.email.as_str().to_owned()),
            name: Set(new.name.as_str().to_owned()),
            password_hash: Set(new.password_hash),
            is_platform_admin: Set(false),
            disabled_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        match row.insert(&self.db).await {
            Ok(m) => to_domain(m),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Err(UserRepoError::EmailTaken)
            }
            Err(e) => Err(anyhow::Error::new(e).context("inserting a user").into()),
        }
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, UserRepoError> {
        Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await
            .context("reading a user by id")?
            .map(to_domain)
            .transpose()
    }

    async fn find_by_email(&self, email: &EmailAddress) -> Result<Option<User>, UserRepoError> {
        Entity::find()
            .filter(Column::Email.eq(email.as_str()))
            .one(&self.db)
            .await
            .context("reading a user by email")?
            .map(to_domain)
            .transpose()
    }

    async fn set_password_hash(&self, id: UserId, phc: &str) -> Result<(), UserRepoError> {
        let result = Entity::update_many()
            .col_expr(Column::PasswordHash, Expr::value(phc.to_owned()))
            .col_expr(Column::UpdatedAt, Expr::value(self.now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .context("updating a password hash")?;
        if result.rows_affected == 0 {
            return Err(UserRepoError::NotFound);
        }
        Ok(())
    }
}
