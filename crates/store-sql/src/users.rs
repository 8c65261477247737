//! [`UserRepository`] on SQL.

use anyhow::Context as _;
use async_trait::async_trait;
use identity::model::{DisplayName, EmailAddress, NewUser, Profile, User};
use identity::ports::{UserRepoError, UserRepository};
use kernel::{Page, PageRequest, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr};
use time::OffsetDateTime;

use crate::SqlStore;
use crate::entity::user::{ActiveModel, Column, Entity, Model};
use crate::stored::{execute_timed, null_time, utc_micros};

fn to_domain(m: Model) -> Result<User, UserRepoError> {
    Ok(User {
        id: UserId::from_uuid(m.id),
        email: EmailAddress::parse(&m.email).map_err(|e| anyhow::anyhow!("stored email: {e}"))?,
        name: DisplayName::parse(&m.name, "name")
            .map_err(|e| anyhow::anyhow!("stored name: {e}"))?,
        password_hash: m.password_hash,
        is_platform_admin: m.is_platform_admin,
        disabled_at: m.disabled_at,
        email_verified_at: m.email_verified_at,
        profile: Profile {
            avatar_url: m.avatar_url,
            locale: m.locale,
            timezone: m.timezone,
        },
        created_at: m.created_at,
    })
}

#[async_trait]
impl UserRepository for SqlStore {
    async fn create(&self, new: NewUser, now: OffsetDateTime) -> Result<User, UserRepoError> {
        let now = utc_micros(now);
        let row = Model {
            id: UserId::new().as_uuid(),
            email: new.email.as_str().to_owned(),
            name: new.name.as_str().to_owned(),
            password_hash: new.password_hash,
            is_platform_admin: false,
            disabled_at: None,
            created_at: now,
            updated_at: now,
            avatar_url: None,
            locale: None,
            timezone: None,
            preferences: None,
            email_verified_at: new.email_verified_at.map(utc_micros),
        };
        match execute_timed(&self.db, &Entity::insert(ActiveModel::from(row.clone()))).await {
            Ok(_) => to_domain(row),
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
            .col_expr(Column::UpdatedAt, Expr::value(self.at_now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .context("updating a password hash")?;
        if result.rows_affected == 0 {
            return Err(UserRepoError::NotFound);
        }
        Ok(())
    }

    async fn update_profile(
        &self,
        id: UserId,
        name: DisplayName,
        profile: Profile,
    ) -> Result<User, UserRepoError> {
        let changed = Entity::update_many()
            .col_expr(Column::Name, Expr::value(name.as_str().to_owned()))
            .col_expr(Column::AvatarUrl, Expr::value(profile.avatar_url))
            .col_expr(Column::Locale, Expr::value(profile.locale))
            .col_expr(Column::Timezone, Expr::value(profile.timezone))
            .col_expr(Column::UpdatedAt, Expr::value(self.at_now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .context("updating a profile")?
            .rows_affected;
        if changed == 0 {
            return Err(UserRepoError::NotFound);
        }
        self.find_by_id(id).await?.ok_or(UserRepoError::NotFound)
    }

    async fn preferences(&self, id: UserId) -> Result<Option<String>, UserRepoError> {
        Ok(Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await
            .context("reading preferences")?
            .ok_or(UserRepoError::NotFound)?
            .preferences)
    }

    async fn set_preferences(&self, id: UserId, json: &str) -> Result<(), UserRepoError> {
        let changed = Entity::update_many()
            .col_expr(Column::Preferences, Expr::value(json.to_owned()))
            .col_expr(Column::UpdatedAt, Expr::value(self.at_now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .context("storing preferences")?
            .rows_affected;
        if changed == 0 {
            return Err(UserRepoError::NotFound);
        }
        Ok(())
    }

    async fn delete(&self, id: UserId) -> Result<(), UserRepoError> {
        // Sessions and memberships go with it: ON DELETE CASCADE.
        let removed = Entity::delete_by_id(id.as_uuid())
            .exec(&self.db)
            .await
            .context("deleting a user")?
            .rows_affected;
        if removed == 0 {
            return Err(UserRepoError::NotFound);
        }
        Ok(())
    }

    async fn search(
        &self,
        query: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<User>, UserRepoError> {
        let mut select = Entity::find().order_by_asc(Column::Id);
        if let Some(q) = query.map(str::trim).filter(|q| !q.is_empty()) {
            select = select.filter(Column::Email.contains(q.to_lowercase()));
        }
        if let Some(after) = page.after_uuid()? {
            select = select.filter(Column::Id.gt(after));
        }
        let rows = select
            .limit(u64::from(page.limit()) + 1)
            .all(&self.db)
            .await
            .context("searching users")?;
        let users = rows
            .into_iter()
            .map(to_domain)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(users, page, |u| u.id.to_string()))
    }

    async fn set_disabled(
        &self,
        id: UserId,
        at: Option<OffsetDateTime>,
    ) -> Result<(), UserRepoError> {
        self.update_user(
            id,
            Column::DisabledAt,
            Expr::value(at.map_or_else(null_time, |t| self.at(t))),
        )
        .await
    }

    async fn set_platform_admin(&self, id: UserId, admin: bool) -> Result<(), UserRepoError> {
        self.update_user(id, Column::IsPlatformAdmin, Expr::value(admin))
            .await
    }

    async fn verify_email(
        &self,
        id: UserId,
        remove_password: bool,
        now: OffsetDateTime,
    ) -> Result<bool, UserRepoError> {
        // One conditional UPDATE: of concurrent first proofs exactly one changes the row.
        let mut update = Entity::update_many()
            .col_expr(Column::EmailVerifiedAt, Expr::value(self.at(now)))
            .col_expr(Column::UpdatedAt, Expr::value(self.at_now()));
        if remove_password {
            update = update.col_expr(Column::PasswordHash, Expr::value(Option::<String>::None));
        }
        let changed = update
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::EmailVerifiedAt.is_null())
            .exec(&self.db)
            .await
            .context("verifying an email")?
            .rows_affected;
        if changed == 0 && self.find_by_id(id).await?.is_none() {
            return Err(UserRepoError::NotFound);
        }
        Ok(changed == 1)
    }
}

impl SqlStore {
    async fn update_user(
        &self,
        id: UserId,
        column: Column,
        value: sea_orm::sea_query::SimpleExpr,
    ) -> Result<(), UserRepoError> {
        let changed = Entity::update_many()
            .col_expr(column, value)
            .col_expr(Column::UpdatedAt, Expr::value(self.at_now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .context("updating a user")?
            .rows_affected;
        if changed == 0 {
            return Err(UserRepoError::NotFound);
        }
        Ok(())
    }
}
