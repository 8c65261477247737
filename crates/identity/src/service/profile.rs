//! An account's own profile, preferences and deletion, and the platform administrators' view
//! and changes of accounts.

use kernel::{ClientInfo, InvalidInput};

use super::{Accounts, AuthError};
use crate::model::{
    DisplayName, EmailAddress, MAX_PREFERENCES_BYTES, NewUser, Password, Profile, User,
};

impl Accounts {
    /// Replaces the display name and profile fields (already validated by the caller with
    /// [`DisplayName::parse`] and the [`Profile`] checks).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn update_profile(
        &self,
        user: &User,
        name: DisplayName,
        profile: Profile,
    ) -> Result<User, AuthError> {
        Ok(self
            .ports
            .users
            .update_profile(user.id, name, profile)
            .await?)
    }

    /// The preferences document (`{}` when none was stored).
    ///
    /// # Errors
    /// When storage fails.
    pub async fn preferences(&self, user: &User) -> Result<String, AuthError> {
        Ok(self
            .ports
            .users
            .preferences(user.id)
            .await?
            .unwrap_or_else(|| "{}".to_owned()))
    }

    /// Replaces the preferences document (a JSON object as text, checked by the caller).
    ///
    /// # Errors
    /// `Invalid` when larger than 16 KiB.
    pub async fn set_preferences(&self, user: &User, json: &str) -> Result<(), AuthError> {
        if json.len() > MAX_PREFERENCES_BYTES {
            return Err(InvalidInput::field("body", "must be at most 16 KiB").into());
        }
        Ok(self.ports.users.set_preferences(user.id, json).await?)
    }

    /// Deletes the account and ends all its sessions. Organization rules (an only owner with
    /// other members may not leave) are checked by the caller first.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn delete_account(&self, user: &User, client: &ClientInfo) -> Result<(), AuthError> {
        self.ports
            .sessions
            .revoke_all(user.id, self.ports.clock.now())
            .await?;
        self.ports.users.delete(user.id).await?;
        self.audit("user.deleted", Some(user.id), None, client)
            .await;
        Ok(())
    }

    /// Accounts whose email contains `query`, by id (platform administrators).
    ///
    /// # Errors
    /// `Invalid` for a bad cursor.
    pub async fn admin_search(
        &self,
        query: Option<&str>,
        page: &kernel::PageRequest,
    ) -> Result<kernel::Page<User>, AuthError> {
        Ok(self.ports.users.search(query, page).await?)
    }

    /// One account (platform administrators).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn admin_get(&self, id: kernel::UserId) -> Result<User, AuthError> {
        self.ports
            .users
            .find_by_id(id)
            .await?
            .ok_or(AuthError::NotFound)
    }

    /// Disables or enables an account and grants or takes away the platform-administrator
    /// flag. Disabling ends every session at once. Administrators cannot do either to
    /// themselves (so the platform cannot lose its last administrator by accident).
    ///
    /// # Errors
    /// `NotFound`; `Invalid` for a change to one's own account.
    pub async fn admin_update(
        &self,
        admin: &User,
        id: kernel::UserId,
        disabled: Option<bool>,
        platform_admin: Option<bool>,
        client: &ClientInfo,
    ) -> Result<User, AuthError> {
        let target = self.admin_get(id).await?;
        if target.id == admin.id && (disabled == Some(true) || platform_admin == Some(false)) {
            return Err(InvalidInput::field(
                if disabled == Some(true) {
                    "disabled"
                } else {
                    "is_platform_admin"
                },
                "administrators cannot disable or demote themselves",
            )
            .into());
        }
        let now = self.ports.clock.now();
        if let Some(d) = disabled {
            self.ports.users.set_disabled(id, d.then_some(now)).await?;
            if d {
                self.ports.sessions.revoke_all(id, now).await?;
            }
        }
        if let Some(a) = platform_admin {
            self.ports.users.set_platform_admin(id, a).await?;
        }
        let change = format!("user {id}: disabled={disabled:?} platform_admin={platform_admin:?}");
        self.audit("admin.user.updated", Some(admin.id), Some(change), client)
            .await;
        self.admin_get(id).await
    }

    /// Makes the account with `email` a platform administrator, creating it (with
    /// `password`) when there is none; `true` when it was created.
    ///
    /// # Errors
    /// `Invalid` email or password.
    pub async fn create_admin(&self, email: &str, password: &str) -> Result<bool, AuthError> {
        let email = EmailAddress::parse(email)?;
        let (user, created) = match self.ports.users.find_by_email(&email).await? {
            Some(u) => (u, false),
            None => {
                let password = Password::new(password, &self.policy, "password")?;
                let phc = self.ports.hasher.hash(&password).await?;
                let name = DisplayName::parse("Administrator", "name")?;
                let user = self
                    .ports
                    .users
                    .create(
                        NewUser {
                            email,
                            name,
                            password_hash: Some(phc),
                            // The operator vouches for the address.
                            email_verified_at: Some(self.ports.clock.now()),
                        },
                        self.ports.clock.now(),
                    )
                    .await?;
                (user, true)
            }
        };
        self.ports.users.set_platform_admin(user.id, true).await?;
        self.audit(
            "admin.user.updated",
            None,
            Some(format!(
                "user {}: platform_admin=Some(true) (command line)",
                user.id
            )),
            &ClientInfo::new("local", Some("quire create-admin")),
        )
        .await;
        Ok(created)
    }
}
