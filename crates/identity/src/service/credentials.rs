//! Credentials of an account: password changes, forgotten and reset passwords, and the emailed
//! codes that sign in and prove an address.

use kernel::{ClientInfo, InvalidInput};

use super::{Accounts, AuthError, CODE_TTL, TokenPair};
use crate::model::{DisplayName, EmailAddress, NewUser, Password, User};
use crate::ports::{SessionId, Verification};
use crate::throttle::MailPurpose;

impl Accounts {
    /// Changes the password after checking the current one; every other session of the
    /// account ends (the one making the change stays signed in).
    ///
    /// # Errors
    /// `Invalid` on `current_password` (wrong, counted by the throttle) or `new_password`
    /// (policy); `Throttled`.
    pub async fn change_password(
        &self,
        user: &User,
        session: SessionId,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let throttle = &self.ports.throttle;
        let ip = client.ip.as_str();
        if let Err(r) = throttle.check_account(&user.email, ip).await? {
            return Err(self
                .throttled(r.0, Some(user.email.as_str().to_owned()), client)
                .await);
        }
        let new = Password::new(new, &self.policy, "new_password")?;
        let current = Password::attempt(current)
            .map_err(|_| InvalidInput::field("current_password", "is required"))?;
        let matches = match &user.password_hash {
            Some(phc) => matches!(
                self.ports.hasher.verify(&current, phc).await?,
                Verification::Match { .. }
            ),
            None => false,
        };
        if !matches {
            throttle.failed(&user.email, ip).await?;
            return Err(
                InvalidInput::field("current_password", "is not your current password").into(),
            );
        }
        let phc = self.ports.hasher.hash(&new).await?;
        self.ports.users.set_password_hash(user.id, &phc).await?;
        self.ports
            .sessions
            .revoke_others(user.id, session, self.ports.clock.now())
            .await?;
        self.audit("auth.password.changed", Some(user.id), None, client)
            .await;
        Ok(())
    }

    /// Starts a password reset: if `email` names an enabled account with a password, a
    /// single-use token valid 30 minutes goes to it by mail. Answers the same in every case
    /// (nobody learns whether the email is registered); within the reset mail budget
    /// ([`crate::throttle::LoginThrottle::mail`]). Using the token proves the address.
    ///
    /// # Errors
    /// `Invalid` email; `Throttled` per client address.
    pub async fn forgot_password(&self, email: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let email = EmailAddress::parse(email)?;
        let user = self
            .ports
            .users
            .find_by_email(&email)
            .await?
            .filter(|u| u.disabled_at.is_none());
        self.audit(
            "auth.password.reset_requested",
            user.as_ref().map(|u| u.id),
            Some(email.as_str().to_owned()),
            client,
        )
        .await;
        let Some(user) = user else {
            return Ok(());
        };
        if !self
            .ports
            .throttle
            .mail(MailPurpose::Reset, &email, &client.ip)
            .await?
        {
            tracing::warn!("reset mail not sent: an hourly limit for this address is reached");
            return Ok(());
        }
        let (token, hash) = self.ports.refresh.generate()?;
        let now = self.ports.clock.now();
        self.ports
            .resets
            .create(
                hash,
                user.id,
                now,
                now + std::time::Duration::from_secs(30 * 60),
            )
            .await?;
        let mail = kernel::mail::Mail {
            to: email.as_str().to_owned(),
            subject: "Reset your Quire password".to_owned(),
            body: format!(
                "Someone asked to reset the password of your Quire account.\n\n\
                 Your reset token (valid 30 minutes, usable once):\n\n{token}\n\n\
                 If it was not you, ignore this mail: your password stays as it is.\n"
            ),
        };
        if let Err(e) = self.ports.mailer.send(mail).await {
            // Same answer either way; the failure is for the operators.
            tracing::error!(error = %e, "sending a reset mail failed");
        }
        Ok(())
    }

    /// Sends a 6-digit sign-in code to `email`, valid 10 minutes, single use, at most 5
    /// attempts per requester. Answers the same whatever the email (a first successful code
    /// creates the account); within the sign-in code mail budget
    /// ([`crate::throttle::LoginThrottle::mail`]). Nothing of the code is logged.
    ///
    /// # Errors
    /// `Invalid` email; `Throttled` per client address.
    pub async fn request_code(&self, email: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let email = EmailAddress::parse(email)?;
        self.audit(
            "auth.code.requested",
            None,
            Some(email.as_str().to_owned()),
            client,
        )
        .await;
        self.send_code(&email, MailPurpose::Code, client, |code| kernel::mail::Mail {
            to: email.as_str().to_owned(),
            // Never the code in the subject: subjects show in notifications and logs.
            subject: "Your Quire sign-in code".to_owned(),
            body: format!(
                "Your Quire sign-in code is {code}.\n\nIt is valid for 10 minutes and works once. \
                 If you did not ask for it, ignore this mail.\n"
            ),
        })
        .await
    }

    /// Makes a 6-digit code for `email`, stores its hash (replacing any earlier code) and
    /// mails what `mail` makes of it, within the mail budget of `purpose`.
    pub(super) async fn send_code(
        &self,
        email: &EmailAddress,
        purpose: MailPurpose,
        client: &ClientInfo,
        mail: impl FnOnce(&str) -> kernel::mail::Mail,
    ) -> Result<(), AuthError> {
        if !self.ports.throttle.mail(purpose, email, &client.ip).await? {
            tracing::warn!(
                ?purpose,
                "code mail not sent: an hourly limit for this address is reached"
            );
            return Ok(());
        }
        // Six digits from 64 random bits (the modulo bias is below 1e-13); the code's id (it
        // keys the attempt counters) from other random bits.
        let (_, random) = self.ports.refresh.generate()?;
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&random.0[..8]);
        let code = format!("{:06}", u64::from_le_bytes(eight) % 1_000_000);
        let id: String = random.0[8..16].iter().map(|b| format!("{b:02x}")).collect();
        self.ports
            .throttle
            .store_code(email, &id, &self.code_hash(email, &code), CODE_TTL)
            .await?;
        if let Err(e) = self.ports.mailer.send(mail(&code)).await {
            tracing::error!(error = %e, "sending a code mail failed");
        }
        Ok(())
    }

    /// Signs in with an emailed code, creating the account on its first sign-in. On an account
    /// whose address was not proven yet, this is the first proof: the password set before it
    /// is removed and every session ends (see `docs/security.md`, "Email ownership").
    ///
    /// # Errors
    /// `BadCredentials` for a wrong, used or expired code, and for attempts past the limits
    /// ([`crate::throttle::LoginThrottle::take_code`]); `Invalid` email.
    pub async fn verify_code(
        &self,
        email: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(User, TokenPair), AuthError> {
        let email = EmailAddress::parse(email)?;
        if !self.take_code(&email, code, client).await? {
            return Err(self.code_failed(&email, client).await);
        }
        let user = match self.ports.users.find_by_email(&email).await? {
            Some(u) if u.disabled_at.is_some() => {
                return Err(self.code_failed(&email, client).await);
            }
            Some(u) => {
                // The first proof of the address wins the account from whoever registered it:
                // a password set before it is removed and every session ends.
                self.proved_ownership(&u, true, client).await?;
                u
            }
            None => {
                let local = email.as_str().split('@').next().unwrap_or("user");
                let name = DisplayName::parse(local, "name")
                    .or_else(|_| DisplayName::parse("Quire user", "name"))?;
                self.ports
                    .users
                    .create(
                        NewUser {
                            email: email.clone(),
                            name,
                            password_hash: None,
                            email_verified_at: Some(self.ports.clock.now()),
                        },
                        self.ports.clock.now(),
                    )
                    .await?
            }
        };
        let tokens = self.start_session(&user).await?;
        self.audit(
            "auth.login.succeeded",
            Some(user.id),
            Some("email code".to_owned()),
            client,
        )
        .await;
        Ok((user, tokens))
    }

    /// Confirms the signed-in `user`'s address with a code mailed to it (at registration, or
    /// by `request_code`). The password stays: whoever holds this session knows it and has
    /// the mailbox. Already verified: nothing to do (the code is not spent).
    ///
    /// # Errors
    /// `Invalid` on `code` (wrong, used or expired; attempts are limited as for sign-in).
    pub async fn confirm_email(
        &self,
        user: &User,
        code: &str,
        client: &ClientInfo,
    ) -> Result<User, AuthError> {
        if user.email_verified_at.is_some() {
            return Ok(user.clone());
        }
        if !self.take_code(&user.email, code, client).await? {
            self.audit(
                "auth.code.failed",
                Some(user.id),
                Some("email confirmation".to_owned()),
                client,
            )
            .await;
            return Err(InvalidInput::field("code", "is wrong, used or expired").into());
        }
        self.proved_ownership(user, false, client).await?;
        self.admin_get(user.id).await
    }

    /// Checks a presented code for `email` from this client.
    async fn take_code(
        &self,
        email: &EmailAddress,
        code: &str,
        client: &ClientInfo,
    ) -> Result<bool, AuthError> {
        let code = code.trim();
        if code.is_empty() || code.len() > 32 {
            return Ok(false);
        }
        let hash = self.code_hash(email, code);
        Ok(self
            .ports
            .throttle
            .take_code(email, &client.ip, &hash, CODE_TTL)
            .await?)
    }

    /// Records a proof that the owner of `user`'s address acts (a mailed code or reset token
    /// used). The first proof verifies the address; with `takeover` (a proof that did not
    /// come from a session of the account, and sets no password) it also removes the
    /// password set before it and ends every session: whoever registered the address
    /// without owning it loses the account.
    async fn proved_ownership(
        &self,
        user: &User,
        takeover: bool,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        if user.email_verified_at.is_some() {
            return Ok(());
        }
        let now = self.ports.clock.now();
        let remove_password = takeover && user.password_hash.is_some();
        if !self
            .ports
            .users
            .verify_email(user.id, remove_password, now)
            .await?
        {
            return Ok(());
        }
        if takeover {
            self.ports.sessions.revoke_all(user.id, now).await?;
        }
        let what = if remove_password {
            "first proof of the address: the earlier password and every session were removed"
        } else {
            "first proof of the address"
        };
        self.audit(
            "auth.email.verified",
            Some(user.id),
            Some(what.to_owned()),
            client,
        )
        .await;
        Ok(())
    }

    async fn code_failed(&self, email: &EmailAddress, client: &ClientInfo) -> AuthError {
        self.audit(
            "auth.code.failed",
            None,
            Some(email.as_str().to_owned()),
            client,
        )
        .await;
        AuthError::BadCredentials
    }

    /// The stored form of a code: bound to the email, never the code itself.
    fn code_hash(&self, email: &EmailAddress, code: &str) -> String {
        let h = self
            .ports
            .refresh
            .hash(&format!("login-code:{}:{code}", email.as_str()));
        h.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sets a new password with a reset token: the token is spent, and every session of the
    /// account ends.
    ///
    /// # Errors
    /// `Invalid` on `token` (unknown, spent or expired) or `new_password` (policy);
    /// `Throttled` per client address.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let new = Password::new(new_password, &self.policy, "new_password")?;
        let invalid =
            || AuthError::from(InvalidInput::field("token", "is invalid, used or expired"));
        if token.is_empty() || token.len() > 512 {
            return Err(invalid());
        }
        let now = self.ports.clock.now();
        let user_id = self
            .ports
            .resets
            .consume(&self.ports.refresh.hash(token), now)
            .await?
            .ok_or_else(invalid)?;
        let phc = self.ports.hasher.hash(&new).await?;
        self.ports.users.set_password_hash(user_id, &phc).await?;
        // A used reset token proves the address; the password is the one just set, and
        // every session ends anyway.
        if self.ports.users.verify_email(user_id, false, now).await? {
            self.audit(
                "auth.email.verified",
                Some(user_id),
                Some("first proof of the address (a password reset)".to_owned()),
                client,
            )
            .await;
        }
        self.ports.sessions.revoke_all(user_id, now).await?;
        self.audit("auth.password.reset", Some(user_id), None, client)
            .await;
        Ok(())
    }
}
