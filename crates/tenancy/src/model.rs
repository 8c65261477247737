//! Organizations and their validated fields.

use kernel::{InvalidInput, TenantId};
use time::OffsetDateTime;

/// A URL-safe organization handle: 3–48 characters of `a-z`, `0-9` and single inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgSlug(String);

/// Slugs that would shadow routes or confuse people.
const RESERVED_SLUGS: &[&str] = &["admin", "api", "new", "me", "orgs", "settings", "www"];

impl OrgSlug {
    /// Shortest slug.
    pub const MIN_LEN: usize = 3;
    /// Longest slug.
    pub const MAX_LEN: usize = 48;

    /// Validates a slug. Slugs are case-sensitive lower case: `Acme` is rejected, not folded,
    /// so that what a client sends is what it gets back.
    ///
    /// # Errors
    /// [`InvalidInput`] on `slug` with the reason.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let err = |m: &str| InvalidInput::field("slug", m);
        if s.len() < Self::MIN_LEN || s.len() > Self::MAX_LEN {
            return Err(err("must be 3 to 48 characters long"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err("may contain only a-z, 0-9 and hyphens"));
        }
        if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
            return Err(err("hyphens must sit between letters or digits"));
        }
        if RESERVED_SLUGS.contains(&s) {
            return Err(err("is reserved"));
        }
        if uuid_like(s) {
            return Err(err("must not look like an id"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `X-Tenant-ID` takes an id or a slug, so a slug must never parse as an id, in any of the
/// forms an id is read in (simple or hyphenated).
fn uuid_like(s: &str) -> bool {
    TenantId::parse(s).is_ok()
}

/// An organization's display name: 1–120 characters after trimming, no control characters, its
/// invisible characters removed ([`kernel::text::clean_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    /// Longest name, in characters.
    pub const MAX_CHARS: usize = 120;

    /// Validates and trims a name.
    ///
    /// # Errors
    /// [`InvalidInput`] on `name` with the reason.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let cleaned = kernel::text::clean_name(s);
        let trimmed = cleaned.as_str();
        if trimmed.is_empty() {
            return Err(InvalidInput::field("name", "must not be empty"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput::field(
                "name",
                "must be at most 120 characters",
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(InvalidInput::field(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What it takes to create an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrganization {
    /// Display name.
    pub name: OrgName,
    /// Unique handle.
    pub slug: OrgSlug,
}

/// An organization: the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Its id, which is the tenant id.
    pub id: TenantId,
    /// Display name.
    pub name: OrgName,
    /// Unique handle.
    pub slug: OrgSlug,
    /// The billing plan's name (`free` until billing says otherwise).
    pub plan: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// What its admins set.
    pub settings: OrgSettings,
}

/// An organization's settings (`PATCH /orgs/{org}`, admin+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OrgSettings {
    /// Since when the document-access trail keeps the search query or question of an
    /// event (`None`, the default: the trail keeps ids only).
    pub audit_question_text_since: Option<OffsetDateTime>,
    /// Days chat history is kept (`None`: forever).
    pub chat_retention_days: Option<u32>,
    /// Days a failed document is kept (`None`: forever).
    pub failed_documents_retention_days: Option<u32>,
    /// Days document-access events are kept (`None`: forever).
    pub access_trail_retention_days: Option<u32>,
}

/// The longest retention window one may set, in days (about ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

impl OrgSettings {
    /// Whether the trail keeps questions now.
    #[must_use]
    pub const fn audit_question_text(&self) -> bool {
        self.audit_question_text_since.is_some()
    }
}

/// A change of some settings: `None` keeps the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsChange {
    /// See [`OrgSettings::audit_question_text`].
    pub audit_question_text: Option<bool>,
    /// `Some(None)`: keep chat history forever.
    pub chat_retention_days: Option<Option<u32>>,
    /// `Some(None)`: keep failed documents forever.
    pub failed_documents_retention_days: Option<Option<u32>>,
    /// `Some(None)`: keep access events forever.
    pub access_trail_retention_days: Option<Option<u32>>,
}

impl SettingsChange {
    /// `current` with this change applied at `now` (turning the opt-in on again keeps its
    /// first time).
    #[must_use]
    pub fn apply(self, mut current: OrgSettings, now: OffsetDateTime) -> OrgSettings {
        match self.audit_question_text {
            Some(true) => {
                current.audit_question_text_since.get_or_insert(now);
            }
            Some(false) => current.audit_question_text_since = None,
            None => {}
        }
        for (change, value) in [
            (self.chat_retention_days, &mut current.chat_retention_days),
            (
                self.failed_documents_retention_days,
                &mut current.failed_documents_retention_days,
            ),
            (
                self.access_trail_retention_days,
                &mut current.access_trail_retention_days,
            ),
        ] {
            if let Some(days) = change {
                *value = days;
            }
        }
        current
    }

    /// Every retention window it sets is 1 to [`MAX_RETENTION_DAYS`] days.
    ///
    /// # Errors
    /// Each field out of range.
    pub fn validate(&self) -> Result<(), kernel::InvalidInput> {
        let mut errors = Vec::new();
        for (field, days) in [
            ("chat_retention_days", self.chat_retention_days),
            (
                "failed_documents_retention_days",
                self.failed_documents_retention_days,
            ),
            (
                "access_trail_retention_days",
                self.access_trail_retention_days,
            ),
        ] {
            if let Some(Some(d)) = days
                && !(1..=MAX_RETENTION_DAYS).contains(&d)
            {
                errors.push(kernel::FieldError::new(
                    field,
                    format!(
                        "must be between 1 and {MAX_RETENTION_DAYS} days, or null to keep forever"
                    ),
                ));
            }
        }
        kernel::InvalidInput::check(errors)
    }

    /// Whether it changes nothing.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_slugs() {
        for s in ["acme", "acme-corp", "a1b", "x".repeat(48).as_str()] {
            assert_eq!(
                OrgSlug::parse(s).map(|v| v.as_str().to_owned()),
                Ok(s.to_owned())
            );
        }
    }

    #[test]
    fn bad_slugs() {
        let long = "x".repeat(49);
        for s in [
            "",
            "ab",
            &long,
            "Acme",
            "acme corp",
            "-acme",
            "acme-",
            "ac--me",
            "admin",
            "acmé",
            "acme\n",
            "0190f3a2b0c47000800000000000000a",
            "0190f3a2-b0c4-7000-8000-00000000000a",
        ] {
            let e = OrgSlug::parse(s).expect_err(s);
            assert_eq!(e.0[0].field, "slug");
        }
    }

    #[test]
    fn default_scopes_never_manage() {
        use kernel::Role;
        assert_eq!(Scope::defaults_for(Role::Viewer), vec![Scope::Read]);
        for role in [Role::Member, Role::Admin, Role::Owner] {
            let d = Scope::defaults_for(role);
            assert_eq!(d, vec![Scope::Read, Scope::Write, Scope::Chat]);
        }
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()).ok(), Some(s));
        }
        assert!(Scope::parse("admin").is_err());
        assert_eq!(
            Scope::split("chat read bogus read"),
            vec![Scope::Read, Scope::Chat]
        );
    }

    #[test]
    fn a_key_never_acts_above_its_creator() {
        use kernel::Role;
        let key = ApiKey {
            id: kernel::ApiKeyId::new(),
            tenant_id: TenantId::new(),
            name: "k".into(),
            role: Role::Admin,
            scopes: vec![Scope::Read],
            prefix: "qk_x".into(),
            created_by: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
            last_used_at: None,
        };
        assert_eq!(key.acting_role(Some(Role::Owner)), Some(Role::Admin));
        assert_eq!(key.acting_role(Some(Role::Viewer)), Some(Role::Viewer));
        assert_eq!(key.acting_role(None), None);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            OrgName::parse("  Acme  ").map(|n| n.as_str().to_owned()),
            Ok("Acme".into())
        );
        assert!(OrgName::parse("   ").is_err());
        assert!(OrgName::parse("a\u{0}b").is_err());
        assert!(OrgName::parse(&"é".repeat(120)).is_ok());
        assert!(OrgName::parse(&"é".repeat(121)).is_err());
    }
}

/// A user's place in an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The organization.
    pub tenant_id: kernel::TenantId,
    /// The member.
    pub user_id: kernel::UserId,
    /// Their role.
    pub role: kernel::Role,
    /// When they joined.
    pub created_at: OffsetDateTime,
}

/// A member as the members list shows them: the membership with the account's email and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The membership.
    pub membership: Membership,
    /// The account's email address.
    pub email: String,
    /// The account's display name.
    pub name: String,
}

/// An organization API key (`qk_…`). Only the hash of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id.
    pub id: kernel::ApiKeyId,
    /// The organization it acts for.
    pub tenant_id: kernel::TenantId,
    /// A label chosen by its creator.
    pub name: String,
    /// The highest role it acts with (never owner); it acts with less when its creator's
    /// current role is lower (see [`ApiKey::acting_role`]).
    pub role: kernel::Role,
    /// What it may do (see [`Scope`]); never more than its role allows.
    pub scopes: Vec<Scope>,
    /// The first characters of the secret, to recognise it (`qk_AbCd1234`).
    pub prefix: String,
    /// Who made it.
    pub created_by: Option<kernel::UserId>,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<OffsetDateTime>,
}

impl ApiKey {
    /// The role the key acts with now: its own role, capped by its creator's current role in
    /// the organization. `None` when the creator is no longer a member (removed, left, account
    /// deleted) or unknown: such a key is dead.
    #[must_use]
    pub fn acting_role(&self, creator_role: Option<kernel::Role>) -> Option<kernel::Role> {
        creator_role.map(|c| self.role.min(c))
    }

    /// True when the key holds `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// What an API key may do, on top of its role. The HTTP layer names the scope each route
/// needs; a key without it gets 403. Users (signed in) are not scoped: their role decides.
///
/// Managing people and keys is in no default scope: a leaked key cannot make a new human
/// admin, invite one, or mint more keys unless it was made for that on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read the organization's data (lists, documents, search, usage).
    Read,
    /// Write documents, collections, sessions and the like.
    Write,
    /// Ask the models: chat answers, completions, AI tasks (spends the quota).
    Chat,
    /// Change members' roles and remove members.
    MembersManage,
    /// Create, list and revoke invitations.
    InvitationsManage,
    /// List and revoke API keys (only signed-in users create keys).
    KeysManage,
}

impl Scope {
    /// Every scope, in wire order.
    pub const ALL: [Scope; 6] = [
        Scope::Read,
        Scope::Write,
        Scope::Chat,
        Scope::MembersManage,
        Scope::InvitationsManage,
        Scope::KeysManage,
    ];

    /// The wire and storage name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Chat => "chat",
            Scope::MembersManage => "members:manage",
            Scope::InvitationsManage => "invitations:manage",
            Scope::KeysManage => "keys:manage",
        }
    }

    /// The lowest role that may hold this scope.
    #[must_use]
    pub const fn min_role(self) -> kernel::Role {
        match self {
            Scope::Read => kernel::Role::Viewer,
            Scope::Write | Scope::Chat => kernel::Role::Member,
            Scope::MembersManage | Scope::InvitationsManage | Scope::KeysManage => {
                kernel::Role::Admin
            }
        }
    }

    /// The scopes a key of `role` gets when none are asked for: read, and for members and
    /// above write and chat. Never a managing scope.
    #[must_use]
    pub fn defaults_for(role: kernel::Role) -> Vec<Scope> {
        [Scope::Read, Scope::Write, Scope::Chat]
            .into_iter()
            .filter(|s| role.satisfies(s.min_role()))
            .collect()
    }

    /// Reads a wire name.
    ///
    /// # Errors
    /// [`InvalidInput`] on `scopes` naming the known scopes.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                InvalidInput::field(
                    "scopes",
                    "each must be one of read, write, chat, members:manage, \
                     invitations:manage, keys:manage",
                )
            })
    }

    /// Scopes as stored: space-separated names.
    #[must_use]
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Reads stored scopes; unknown names are dropped (a key never gains from a bad row).
    #[must_use]
    pub fn split(stored: &str) -> Vec<Scope> {
        let mut out: Vec<Scope> = stored
            .split_whitespace()
            .filter_map(|s| Scope::parse(s).ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An invitation to join an organization, for one email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// Its id.
    pub id: uuid::Uuid,
    /// The organization.
    pub tenant_id: kernel::TenantId,
    /// The invitee's normalized email: only the account with this email may accept.
    pub email: String,
    /// The role the invitee gets.
    pub role: kernel::Role,
    /// Who invited.
    pub invited_by: Option<kernel::UserId>,
    /// When.
    pub created_at: OffsetDateTime,
    /// Until when it can be accepted.
    pub expires_at: OffsetDateTime,
}
