//! Erasing an organization (docs/security.md, "Erasure"): what holds a tenant's data beyond
//! the rows that go with the organization's row (its files, its vector indexes) answers
//! [`TenantData::erase_tenant`], which the organization use case calls before and after it
//! deletes the organization.

use std::fmt;

use async_trait::async_trait;

use crate::id::TenantId;

/// Something holding data of tenants that deleting the organization's row does not remove.
#[async_trait]
pub trait TenantData: Send + Sync + fmt::Debug {
    /// What it counts, for the tombstone (`blobs`, `vector_spaces`): a fixed lower-case word.
    fn kind(&self) -> &'static str;

    /// Removes everything of `tenant` it holds; returns how many items. Idempotent: erasing
    /// an erased tenant succeeds with 0.
    ///
    /// # Errors
    /// When the backing store fails (the caller retries: nothing is half-removed in a way a
    /// second call cannot finish).
    async fn erase_tenant(&self, tenant: TenantId) -> anyhow::Result<u64>;
}
