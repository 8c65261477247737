//! [`OrganizationRepository`] on SQL.

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::{Page, PageRequest, Role, TenantId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    SqlErr,
};
use tenancy::{
    NewOrganization, OrgName, OrgRepoError, OrgSettings, OrgSlug, Organization,
    OrganizationRepository,
};

use crate::SqlStore;
use crate::entity::organization::{ActiveModel, Column, Entity, Model};
use crate::stored::{execute_timed, utc_micros};

fn new_row(new: &NewOrganization, now: time::OffsetDateTime) -> Model {
    let now = utc_micros(now);
    Model {
        id: TenantId::new().as_uuid(),
        name: new.name.as_str().to_owned(),
        slug: new.slug.as_str().to_owned(),
        plan: "free".to_owned(),
        created_at: now,
        updated_at: now,
        audit_question_text_since: None,
        chat_retention_days: None,
        failed_documents_retention_days: None,
        access_trail_retention_days: None,
    }
}

/// The insert of a new organization: the columns creation sets; the settings keep their
/// column defaults (so an insert works on every schema version since the table's first).
fn insert_row(m: &Model) -> ActiveModel {
    let mut row = ActiveModel::from(m.clone());
    row.audit_question_text_since = sea_orm::ActiveValue::NotSet;
    row.chat_retention_days = sea_orm::ActiveValue::NotSet;
    row.failed_documents_retention_days = sea_orm::ActiveValue::NotSet;
    row.access_trail_retention_days = sea_orm::ActiveValue::NotSet;
    row
}

fn days(stored: Option<i32>) -> Option<u32> {
    stored.and_then(|d| u32::try_from(d).ok())
}

fn stored_days(days: Option<u32>) -> Option<i32> {
    days.and_then(|d| i32::try_from(d).ok())
}

pub(crate) fn to_domain(m: Model) -> Result<Organization, OrgRepoError> {
    // Rows were validated on the way in; a row that fails now is corrupt, not a client error.
    let name = OrgName::parse(&m.name).map_err(|e| anyhow::anyhow!("stored name: {e}"))?;
    let slug = OrgSlug::parse(&m.slug).map_err(|e| anyhow::anyhow!("stored slug: {e}"))?;
    Ok(Organization {
        id: TenantId::from_uuid(m.id),
        name,
        slug,
        plan: m.plan,
        created_at: m.created_at,
        settings: OrgSettings {
            audit_question_text_since: m.audit_question_text_since,
            chat_retention_days: days(m.chat_retention_days),
            failed_documents_retention_days: days(m.failed_documents_retention_days),
            access_trail_retention_days: days(m.access_trail_retention_days),
        },
    })
}

fn slug_taken(e: sea_orm::DbErr, what: &'static str) -> OrgRepoError {
    if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        OrgRepoError::SlugTaken
    } else {
        anyhow::Error::new(e).context(what).into()
    }
}

/// How many times an organization's deletion is tried when it loses a deadlock.
const DELETE_ATTEMPTS: u64 = 5;

/// PostgreSQL rolled the statement's transaction back as a deadlock's victim (SQLSTATE
/// 40P01): nothing of it stayed, so running it again is safe.
fn is_deadlock(e: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    let (DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err))) = e
    else {
        return false;
    };
    matches!(&**err, sqlx::Error::Database(d) if d.code().as_deref() == Some("40P01"))
}

#[async_trait]
impl OrganizationRepository for SqlStore {
    async fn create_with_owner(
        &self,
        new: NewOrganization,
        owner: UserId,
        max_owned: u32,
    ) -> Result<Organization, OrgRepoError> {
        // Across tenants: an account's owned organizations are counted in all of them.
        crate::rls::platform(async {
            use crate::entity::membership;
            let now = self.now();
            // The cap holds under concurrency: on SQLite the transaction takes the one write lock
            // first (`BEGIN IMMEDIATE`); on PostgreSQL the owner's account row is locked
            // (`FOR UPDATE`), so one account's creations count and insert one at a time.
            let txn = self
                .begin_write()
                .await
                .context("starting an organization")?;
            if self.db.get_database_backend() == DbBackend::Postgres {
                crate::entity::user::Entity::find_by_id(owner.as_uuid())
                    .lock_exclusive()
                    .one(&txn)
                    .await
                    .context("locking the owner's account")?;
            }
            let owned = membership::Entity::find()
                .filter(membership::Column::UserId.eq(owner.as_uuid()))
                .filter(membership::Column::Role.eq(Role::Owner.as_str()))
                .count(&txn)
                .await
                .context("counting owned organizations")?;
            if owned >= u64::from(max_owned) {
                return Err(OrgRepoError::TooManyOwned);
            }
            let org = new_row(&new, now);
            execute_timed(&txn, &Entity::insert(insert_row(&org)))
                .await
                .map_err(|e| slug_taken(e, "inserting an organization"))?;
            let owner_row = membership::ActiveModel {
                tenant_id: Set(org.id),
                user_id: Set(owner.as_uuid()),
                role: Set(Role::Owner.as_str().to_owned()),
                created_at: Set(now),
            };
            execute_timed(&txn, &membership::Entity::insert(owner_row))
                .await
                .context("adding the owner")?;
            txn.commit().await.context("committing an organization")?;
            to_domain(org)
        })
        .await
    }

    async fn rename(
        &self,
        id: TenantId,
        name: OrgName,
    ) -> Result<Option<Organization>, OrgRepoError> {
        let changed = Entity::update_many()
            .col_expr(Column::Name, Expr::value(name.as_str().to_owned()))
            .col_expr(Column::UpdatedAt, Expr::value(self.at_now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .context("renaming an organization")?
            .rows_affected;
        if changed == 0 {
            return Ok(None);
        }
        self.find_by_id(id).await
    }

    async fn with_retention(&self) -> Result<Vec<Organization>, OrgRepoError> {
        let rows = Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(Column::ChatRetentionDays.is_not_null())
                    .add(Column::FailedDocumentsRetentionDays.is_not_null())
                    .add(Column::AccessTrailRetentionDays.is_not_null()),
            )
            .order_by_asc(Column::Id)
            .all(&self.db)
            .await
            .context("listing organizations with retention")?;
        rows.into_iter().map(to_domain).collect()
    }

    async fn set_settings(
        &self,
        id: TenantId,
        settings: OrgSettings,
    ) -> Result<Option<Organization>, OrgRepoError> {
        let changed = Entity::update_many()
            .col_expr(
                Column::AuditQuestionTextSince,
                Expr::value(match settings.audit_question_text_since {
                    Some(t) => self.at(t),
                    None => sea_orm::Value::TimeDateTimeWithTimeZone(None),
                }),
            )
            .col_expr(
                Column::ChatRetentionDays,
                Expr::value(stored_days(settings.chat_retention_days)),
            )
            .col_expr(
                Column::FailedDocumentsRetentionDays,
                Expr::value(stored_days(settings.failed_documents_retention_days)),
            )
            .col_expr(
                Column::AccessTrailRetentionDays,
                Expr::value(stored_days(settings.access_trail_retention_days)),
            )
            .col_expr(Column::UpdatedAt, Expr::value(self.at_now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .context("changing an organization's settings")?
            .rows_affected;
        if changed == 0 {
            return Ok(None);
        }
        self.find_by_id(id).await
    }

    async fn set_plan(
        &self,
        id: TenantId,
        plan: &str,
    ) -> Result<Option<Organization>, OrgRepoError> {
        let changed = Entity::update_many()
            .col_expr(Column::Plan, Expr::value(plan.to_owned()))
            .col_expr(Column::UpdatedAt, Expr::value(self.at_now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .context("changing a plan")?
            .rows_affected;
        if changed == 0 {
            return Ok(None);
        }
        self.find_by_id(id).await
    }

    async fn delete(&self, id: TenantId) -> Result<bool, OrgRepoError> {
        crate::rls::tenant(id, async {
            // Every row of the organization goes with it (ON DELETE CASCADE), across tables its
            // workers may be writing at that moment in another order (an ingestion step
            // updates its job, then its document): PostgreSQL may choose this statement as a
            // deadlock's victim, rolled back whole, so it is run again.
            let mut attempt = 1;
            loop {
                match Entity::delete_by_id(id.as_uuid()).exec(&self.db).await {
                    Ok(done) => return Ok(done.rows_affected > 0),
                    Err(e) if attempt < DELETE_ATTEMPTS && is_deadlock(&e) => {
                        tracing::warn!(
                            tenant = %id,
                            attempt,
                            "deleting an organization lost a deadlock; trying again"
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context("deleting an organization")
                            .into());
                    }
                }
            }
        })
        .await
    }

    async fn create(&self, new: NewOrganization) -> Result<Organization, OrgRepoError> {
        let row = new_row(&new, self.now());
        execute_timed(&self.db, &Entity::insert(insert_row(&row)))
            .await
            .map_err(|e| slug_taken(e, "inserting an organization"))?;
        to_domain(row)
    }

    async fn find_by_id(&self, id: TenantId) -> Result<Option<Organization>, OrgRepoError> {
        Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await
            .context("reading an organization by id")?
            .map(to_domain)
            .transpose()
    }

    async fn find_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organization>, OrgRepoError> {
        Entity::find()
            .filter(Column::Slug.eq(slug.as_str()))
            .one(&self.db)
            .await
            .context("reading an organization by slug")?
            .map(to_domain)
            .transpose()
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Organization>, OrgRepoError> {
        let mut query = Entity::find().order_by_asc(Column::Id);
        if let Some(after) = page.after_uuid()? {
            query = query.filter(Column::Id.gt(after));
        }
        let rows = query
            .limit(u64::from(page.limit()) + 1)
            .all(&self.db)
            .await
            .context("listing organizations")?;
        let orgs = rows
            .into_iter()
            .map(to_domain)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(orgs, page, |o| o.id.to_string()))
    }
}
