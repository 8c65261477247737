//! The mailer port: login codes, password resets and invitations go out through it. Adapters:
//! the development outbox (stored, readable with `quire outbox`) and, later, SMTP.

use std::fmt;

use async_trait::async_trait;

/// One plain-text mail.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line (never a secret in it; still never logged).
    pub subject: String,
    /// The text (may hold a one-time secret: never log it).
    pub body: String,
}

impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither subject nor body: a mail exists to carry secrets (codes, tokens).
        f.debug_struct("Mail").finish_non_exhaustive()
    }
}

/// Sending failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MailError(#[from] pub anyhow::Error);

/// Sends mail.
///
/// # Errors
/// [`MailError`] when the mail could not be handed over.
#[async_trait]
pub trait Mailer: Send + Sync + fmt::Debug {
    /// Sends (or, for the outbox, stores) one mail.
    async fn send(&self, mail: Mail) -> Result<(), MailError>;
}
