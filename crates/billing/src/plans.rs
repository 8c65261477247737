//! [`TenantPlans`] over tenancy's organization repository.

use std::sync::Arc;

use async_trait::async_trait;
use kernel::TenantId;
use tenancy::ports::OrganizationRepository;

use crate::ports::TenantPlans;

/// Reads each organization's plan from where organizations live.
#[derive(Debug, Clone)]
pub struct OrganizationPlans(pub Arc<dyn OrganizationRepository>);

#[async_trait]
impl TenantPlans for OrganizationPlans {
    async fn plan_of(&self, tenant: TenantId) -> anyhow::Result<Option<String>> {
        Ok(self
            .0
            .find_by_id(tenant)
            .await
            .map_err(anyhow::Error::new)?
            .map(|o| o.plan))
    }
}
