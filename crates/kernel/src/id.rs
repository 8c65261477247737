//! Typed ids over UUIDv7: a `UserId` can never be passed where a `TenantId` is expected.
//!
//! UUIDv7 ids sort by creation time, so keyset pagination can order by id alone.

/// Defines a typed id: a newtype over a UUIDv7 with `new`, `parse`, `Display` and `FromStr`.
///
/// Domain crates define their own ids with it: `kernel::define_id!(DocumentId);`.
#[macro_export]
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(::uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered (v7) id.
            #[must_use]
            pub fn new() -> Self {
                Self(::uuid::Uuid::now_v7())
            }

            /// Wraps an existing UUID (as read back from storage).
            #[must_use]
            pub const fn from_uuid(uuid: ::uuid::Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            #[must_use]
            pub const fn as_uuid(&self) -> ::uuid::Uuid {
                self.0
            }

            /// Parses the canonical hyphenated (or simple) form.
            ///
            /// # Errors
            /// [`$crate::id::InvalidId`] when `s` is not a UUID.
            pub fn parse(s: &str) -> ::std::result::Result<Self, $crate::id::InvalidId> {
                ::uuid::Uuid::try_parse(s.trim())
                    .map(Self)
                    .map_err(|_| $crate::id::InvalidId { kind: stringify!($name) })
            }
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::id::InvalidId;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

/// A string that is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}")]
pub struct InvalidId {
    /// The id type that was expected, e.g. `TenantId`.
    pub kind: &'static str,
}

define_id!(
    /// An organization: the unit of tenancy. Every tenant-scoped row carries one.
    TenantId
);
define_id!(
    /// A user account (platform-wide; a user may belong to several organizations).
    UserId
);
define_id!(
    /// An API key of one organization.
    ApiKeyId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_and_time_ordered() {
        let a = UserId::new();
        let b = UserId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b, "v7 ids must sort by creation");
    }

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let id = TenantId::new();
        assert_eq!(TenantId::parse(&id.to_string()), Ok(id));
        assert_eq!(
            TenantId::parse("not-a-uuid"),
            Err(InvalidId { kind: "TenantId" })
        );
        assert!(format!("{id:?}").starts_with("TenantId("));
    }
}
