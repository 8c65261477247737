//! The one tenant-scoping helper: every query of tenant data starts here, so the tenant filter
//! cannot be forgotten in one place and remembered in another.

use kernel::TenantId;
use sea_orm::{ColumnTrait, DeleteMany, EntityTrait, QueryFilter, Select, UpdateMany};

/// An entity whose rows each belong to one tenant.
pub(crate) trait TenantScoped: EntityTrait {
    /// The column holding the tenant id.
    fn tenant_column() -> Self::Column;
}

/// `SELECT … WHERE tenant_id = $tenant`.
pub(crate) fn select<E: TenantScoped>(tenant: TenantId) -> Select<E> {
    E::find().filter(E::tenant_column().eq(tenant.as_uuid()))
}

/// `UPDATE … WHERE tenant_id = $tenant`.
pub(crate) fn update<E: TenantScoped>(tenant: TenantId) -> UpdateMany<E> {
    E::update_many().filter(E::tenant_column().eq(tenant.as_uuid()))
}

/// `DELETE … WHERE tenant_id = $tenant`.
pub(crate) fn delete<E: TenantScoped>(tenant: TenantId) -> DeleteMany<E> {
    E::delete_many().filter(E::tenant_column().eq(tenant.as_uuid()))
}
