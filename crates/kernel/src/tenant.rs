//! Who is acting, for which tenant, with which role.

use std::fmt;
use std::str::FromStr;

use crate::id::{ApiKeyId, TenantId, UserId};

/// A role inside an organization. Ordered: `Owner > Admin > Member > Viewer`.
///
/// Viewers read; members write documents and chat; admins manage members, collections and API
/// keys; owners manage the plan and delete the organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read-only access.
    Viewer,
    /// Writes documents and chats.
    Member,
    /// Manages members, collections and API keys.
    Admin,
    /// Manages the plan and may delete the organization.
    Owner,
}

impl Role {
    /// All roles, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Member, Role::Admin, Role::Owner];

    /// The wire and storage name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// True when this role is at least `required`.
    #[must_use]
    pub fn satisfies(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role (expected one of owner, admin, member, viewer)")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRole)
    }
}

/// The actor behind a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A signed-in user.
    User(UserId),
    /// An organization API key.
    ApiKey(ApiKeyId),
}

/// The verified tenant of a request: built only by the HTTP layer's tenant extractor after it
/// checked membership (or the API key's organization), never from a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantContext {
    tenant_id: TenantId,
    principal: Principal,
    role: Role,
}

impl TenantContext {
    /// A context for `principal` acting in `tenant_id` with `role`.
    #[must_use]
    pub const fn new(tenant_id: TenantId, principal: Principal, role: Role) -> Self {
        Self {
            tenant_id,
            principal,
            role,
        }
    }

    /// The organization the request acts in.
    #[must_use]
    pub const fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// Who acts.
    #[must_use]
    pub const fn principal(&self) -> Principal {
        self.principal
    }

    /// The role the principal holds in the tenant.
    #[must_use]
    pub const fn role(&self) -> Role {
        self.role
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Owner.satisfies(Role::Admin));
        assert!(Role::Member.satisfies(Role::Member));
        assert!(!Role::Viewer.satisfies(Role::Member));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole));
        assert_eq!("Owner".parse::<Role>(), Err(UnknownRole));
    }
}
