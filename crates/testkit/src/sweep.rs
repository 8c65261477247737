//! The two-tenant isolation sweep's route table.
//!
//! Every `/api/v1` route of the OpenAPI document must be listed here with how it is scoped;
//! `tests/isolation_sweep.rs` fails for a route that is missing (or listed but gone). Routes
//! scoped to an organization are then called by a member of another tenant with the first
//! tenant's ids and slug, and must answer 404 without any of its data.

/// How a route is scoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No authentication (registration, login, refresh, logout).
    Public,
    /// The signed-in account only, no tenant (`/auth/me`, `/orgs` list and create).
    User,
    /// The organization named by the `{org}` path segment.
    OrgPath,
    /// The organization named by `X-Tenant-ID`.
    TenantHeader,
    /// Platform administrators only: anyone else gets 403.
    Admin,
}

/// `(method, path template, scope)` of every `/api/v1` route.
pub const ROUTES: &[(&str, &str, Scope)] = &[
    ("POST", "/api/v1/auth/register", Scope::Public),
    ("POST", "/api/v1/auth/login", Scope::Public),
    ("POST", "/api/v1/auth/refresh", Scope::Public),
    ("POST", "/api/v1/auth/logout", Scope::Public),
    ("POST", "/api/v1/auth/password/forgot", Scope::Public),
    ("POST", "/api/v1/auth/code/request", Scope::Public),
    ("POST", "/api/v1/auth/code/verify", Scope::Public),
    ("POST", "/api/v1/auth/password/reset", Scope::Public),
    ("GET", "/api/v1/auth/me", Scope::User),
    ("POST", "/api/v1/auth/password/change", Scope::User),
    ("POST", "/api/v1/auth/email/verify", Scope::User),
    ("GET", "/api/v1/users/me/profile", Scope::User),
    ("PATCH", "/api/v1/users/me/profile", Scope::User),
    ("GET", "/api/v1/users/me/preferences", Scope::User),
    ("PUT", "/api/v1/users/me/preferences", Scope::User),
    ("DELETE", "/api/v1/users/me", Scope::User),
    ("POST", "/api/v1/orgs", Scope::User),
    ("GET", "/api/v1/orgs", Scope::User),
    ("GET", "/api/v1/orgs/{org}", Scope::OrgPath),
    ("PATCH", "/api/v1/orgs/{org}", Scope::OrgPath),
    ("DELETE", "/api/v1/orgs/{org}", Scope::OrgPath),
    ("GET", "/api/v1/orgs/{org}/members", Scope::OrgPath),
    (
        "PATCH",
        "/api/v1/orgs/{org}/members/{user_id}",
        Scope::OrgPath,
    ),
    (
        "DELETE",
        "/api/v1/orgs/{org}/members/{user_id}",
        Scope::OrgPath,
    ),
    ("POST", "/api/v1/orgs/{org}/api-keys", Scope::OrgPath),
    ("POST", "/api/v1/orgs/{org}/invitations", Scope::OrgPath),
    ("GET", "/api/v1/orgs/{org}/invitations", Scope::OrgPath),
    (
        "DELETE",
        "/api/v1/orgs/{org}/invitations/{id}",
        Scope::OrgPath,
    ),
    ("POST", "/api/v1/invitations/{token}/accept", Scope::User),
    ("GET", "/api/v1/orgs/{org}/api-keys", Scope::OrgPath),
    ("DELETE", "/api/v1/orgs/{org}/api-keys/{id}", Scope::OrgPath),
    ("GET", "/api/v1/admin/users", Scope::Admin),
    ("GET", "/api/v1/admin/users/{id}", Scope::Admin),
    ("PATCH", "/api/v1/admin/users/{id}", Scope::Admin),
    ("GET", "/api/v1/admin/orgs", Scope::Admin),
    ("PATCH", "/api/v1/admin/orgs/{id}", Scope::Admin),
    ("GET", "/api/v1/admin/audit-log", Scope::Admin),
    ("GET", "/api/v1/admin/usage", Scope::Admin),
    ("POST", "/api/v1/collections", Scope::TenantHeader),
    ("GET", "/api/v1/collections", Scope::TenantHeader),
    ("GET", "/api/v1/collections/{id}", Scope::TenantHeader),
    ("PATCH", "/api/v1/collections/{id}", Scope::TenantHeader),
    ("DELETE", "/api/v1/collections/{id}", Scope::TenantHeader),
    ("GET", "/api/v1/collections/{id}/stats", Scope::TenantHeader),
    ("GET", "/api/v1/documents/formats", Scope::TenantHeader),
    ("POST", "/api/v1/documents", Scope::TenantHeader),
    ("POST", "/api/v1/documents/extract", Scope::TenantHeader),
    ("GET", "/api/v1/documents", Scope::TenantHeader),
    ("GET", "/api/v1/documents/{id}", Scope::TenantHeader),
    ("GET", "/api/v1/documents/{id}/chunks", Scope::TenantHeader),
    ("DELETE", "/api/v1/documents/{id}", Scope::TenantHeader),
    (
        "POST",
        "/api/v1/documents/{id}/reindex",
        Scope::TenantHeader,
    ),
    ("GET", "/api/v1/jobs/{id}", Scope::TenantHeader),
    ("POST", "/api/v1/search", Scope::TenantHeader),
    ("POST", "/api/v1/embeddings", Scope::TenantHeader),
    ("POST", "/api/v1/vector/ingest", Scope::TenantHeader),
    ("POST", "/api/v1/ai/chat/completions", Scope::TenantHeader),
    ("GET", "/api/v1/usage", Scope::TenantHeader),
    ("GET", "/api/v1/usage/me", Scope::TenantHeader),
    ("POST", "/api/v1/usage/estimate", Scope::TenantHeader),
    ("GET", "/api/v1/billing/plan", Scope::TenantHeader),
    ("POST", "/api/v1/webhooks", Scope::TenantHeader),
    ("GET", "/api/v1/webhooks", Scope::TenantHeader),
    ("GET", "/api/v1/webhooks/{id}", Scope::TenantHeader),
    ("PATCH", "/api/v1/webhooks/{id}", Scope::TenantHeader),
    ("DELETE", "/api/v1/webhooks/{id}", Scope::TenantHeader),
    (
        "GET",
        "/api/v1/webhooks/{id}/deliveries",
        Scope::TenantHeader,
    ),
    (
        "POST",
        "/api/v1/webhooks/deliveries/{id}/redeliver",
        Scope::TenantHeader,
    ),
    ("GET", "/api/v1/ai/models", Scope::TenantHeader),
    ("GET", "/api/v1/ai/config", Scope::TenantHeader),
    ("POST", "/api/v1/ai/embeddings", Scope::TenantHeader),
    ("POST", "/api/v1/ai/summarize", Scope::TenantHeader),
    ("POST", "/api/v1/ai/qa", Scope::TenantHeader),
    // An API key alone names its own organization; with `X-Tenant-ID` it is checked as here.
    ("POST", "/api/v1/mcp", Scope::TenantHeader),
    ("POST", "/api/v1/ai/mindmap", Scope::TenantHeader),
    (
        "POST",
        "/api/v1/documents/{id}/analyze",
        Scope::TenantHeader,
    ),
    ("POST", "/api/v1/chat/sessions", Scope::TenantHeader),
    ("GET", "/api/v1/chat/sessions", Scope::TenantHeader),
    ("GET", "/api/v1/chat/sessions/{id}", Scope::TenantHeader),
    ("PATCH", "/api/v1/chat/sessions/{id}", Scope::TenantHeader),
    ("DELETE", "/api/v1/chat/sessions/{id}", Scope::TenantHeader),
    (
        "GET",
        "/api/v1/chat/sessions/{id}/messages",
        Scope::TenantHeader,
    ),
    (
        "POST",
        "/api/v1/chat/sessions/{id}/messages",
        Scope::TenantHeader,
    ),
    (
        "GET",
        "/api/v1/chat/sessions/{id}/stream",
        Scope::TenantHeader,
    ),
    (
        "POST",
        "/api/v1/chat/messages/{id}/feedback",
        Scope::TenantHeader,
    ),
    ("GET", "/api/v1/chat/ws", Scope::TenantHeader),
    ("POST", "/api/v1/assistants", Scope::TenantHeader),
    ("GET", "/api/v1/assistants", Scope::TenantHeader),
    ("GET", "/api/v1/assistants/{id}", Scope::TenantHeader),
    ("PATCH", "/api/v1/assistants/{id}", Scope::TenantHeader),
    ("DELETE", "/api/v1/assistants/{id}", Scope::TenantHeader),
    ("GET", "/api/v1/admin/orgs/{id}/models", Scope::Admin),
    ("PUT", "/api/v1/admin/orgs/{id}/models", Scope::Admin),
];
