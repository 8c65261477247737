//! [`OrganizationRepository`] on SQL.

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::{InvalidInput, Page, PageRequest, TenantId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
};
use tenancy::{
    NewOrganization, OrgName, OrgRepoError, OrgSlug, Organization, OrganizationRepository,
};
use uuid::Uuid;

use crate::SqlStore;
use crate::entity::organization::{ActiveModel, Column, Entity, Model};

fn to_domain(m: Model) -> Result<Organization, OrgRepoError> {
    // Rows were validated on the way in; a row that fails now is corrupt, not a client error.
    let name = OrgName::parse(&m.name).map_err(|e| anyhow::anyhow!("stored name: {e}"))?;
    let slug = OrgSlug::parse(&m.slug).map_err(|e| anyhow::anyhow!("stored slug: {e}"))?;
    Ok(Organization {
        id: TenantId::from_uuid(m.id),
        name,
        slug,
        plan: m.plan,
        created_at: m.created_at,
    })
}

#[async_trait]
impl OrganizationRepository for SqlStore {
    async fn create(&self, new: NewOrganization) -> Result<Organization, OrgRepoError> {
        let now = self.now();
        let row = ActiveModel {
            id: Set(TenantId::new().as_uuid()),
            name: Set(new.name.as_str().to_owned()),
            slug: Set(new.slug.as_str().to_owned()),
            plan: Set("free".to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        match row.insert(&self.db).await {
            Ok(m) => to_domain(m),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Err(OrgRepoError::SlugTaken)
            }
            Err(e) => Err(anyhow::Error::new(e)
                .context("inserting an organization")
                .into()),
        }
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
        if let Some(cursor) = page.after() {
            let after = Uuid::try_parse(cursor.key())
                .map_err(|_| InvalidInput::field("cursor", "is not a valid cursor"))?;
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
