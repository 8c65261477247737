//! Row-level security on PostgreSQL (docs/security.md, "Row-level security"): which role and
//! which tenant a pooled connection runs as.
//!
//! The migration `m20261207_000024_row_level_security` puts every tenant table under a policy
//! keyed on the setting `quire.tenant`, and creates the roles `quire_app` (subject to the
//! policies) and `quire_platform` (the narrow role of the cross-tenant paths). Every
//! connection the pool hands out — idle or new — first runs [`SET_SCOPE`], one round trip,
//! with the role and tenant of the task that takes it: the tenant of the enclosing
//! [`tenant`] future, `quire_platform` inside [`platform`], the login user itself inside
//! [`owner`] (migrations and DDL), and otherwise `quire_app` with no tenant, which sees no
//! tenant row at all. The setting is rewritten on every checkout, so nothing of one task's
//! tenant stays on a connection for the next; a transaction keeps its connection, hence its
//! tenant, until it ends.
//!
//! The scope is a task-local: a future spawned onto another task starts outside any scope
//! (no tenant), which fails closed.
//!
//! SQLite has neither roles nor policies: there the scopes change nothing and the
//! application-level scoping ([`crate::scope`]) is the only guard.

// A build without PostgreSQL (the embedded default's binary) keeps the scopes as markers and
// reads none of them.
#![cfg_attr(not(feature = "postgres"), allow(dead_code))]

use std::future::Future;

use kernel::TenantId;
use uuid::Uuid;

/// The application role: subject to the tenant policies.
pub const APP_ROLE: &str = "quire_app";
/// The narrow role of the cross-tenant paths.
pub const PLATFORM_ROLE: &str = "quire_platform";

/// What every checked-out PostgreSQL connection runs first: its role and its tenant
/// (empty: none).
/// Before the migration that creates the roles and grants them the schema has run there (a
/// new database, or one about to be upgraded, whose migration runs as the owner anyway), the
/// schema has no policy either: the connection then stays the login user's.
pub(crate) const SET_SCOPE: &str = "SELECT set_config('role', \
     CASE WHEN to_regrole($1) IS NOT NULL \
       AND coalesce(has_schema_privilege($1, current_schema(), 'USAGE'), false) \
     THEN $1 ELSE 'none' END, false), \
     set_config('quire.tenant', $2, false)";

#[derive(Debug, Clone, Copy)]
enum Scope {
    Tenant(Uuid),
    Platform,
    Owner,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `f` with its connections scoped to `tenant`: under row-level security they see and
/// write only that tenant's rows.
pub(crate) async fn tenant<F: Future>(tenant: TenantId, f: F) -> F::Output {
    SCOPE.scope(Scope::Tenant(tenant.as_uuid()), f).await
}

/// [`tenant`] when the work names one, else [`platform`] (audit events of the platform
/// itself, the platform admins' reads across tenants).
pub(crate) async fn maybe_tenant<F: Future>(t: Option<TenantId>, f: F) -> F::Output {
    match t {
        Some(t) => tenant(t, f).await,
        None => platform(f).await,
    }
}

/// Narrows the rest of the transaction `txn` to `tenant` (`SET LOCAL`): a cross-tenant claim,
/// once it has picked its row, touches that row's tenant's other tables through it.
pub(crate) async fn narrow(
    txn: &sea_orm::DatabaseTransaction,
    tenant: TenantId,
) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait as _;
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT set_config('quire.tenant', $1, true)",
            [tenant.as_uuid().to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Runs `f` as the platform role: every row of the tables the cross-tenant paths need
/// (`migration::PLATFORM_TABLES`), no row of the other tenant tables. Only the paths listed
/// in docs/security.md use it.
pub(crate) async fn platform<F: Future>(f: F) -> F::Output {
    SCOPE.scope(Scope::Platform, f).await
}

/// Runs `f` as the login user (the schema's owner): migrations and DDL only.
pub(crate) async fn owner<F: Future>(f: F) -> F::Output {
    SCOPE.scope(Scope::Owner, f).await
}

/// The role and tenant a connection taken now, by this task, runs as.
pub(crate) fn current() -> (&'static str, String) {
    match SCOPE.try_with(|s| *s) {
        Ok(Scope::Tenant(id)) => (APP_ROLE, id.to_string()),
        Ok(Scope::Platform) => (PLATFORM_ROLE, String::new()),
        Ok(Scope::Owner) => ("none", String::new()),
        Err(_) => (APP_ROLE, String::new()),
    }
}

#[cfg(feature = "postgres")]
pub(crate) fn set_scope(
    conn: &mut sea_orm::sqlx::postgres::PgConnection,
) -> futures_util::future::BoxFuture<'_, Result<(), sea_orm::sqlx::Error>> {
    // Read now, in the task that takes the connection: the future may be polled elsewhere.
    let (role, tenant) = current();
    Box::pin(async move {
        sea_orm::sqlx::query(SET_SCOPE)
            .bind(role)
            .bind(tenant)
            .execute(conn)
            .await
            .map(|_| ())
    })
}
