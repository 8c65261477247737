//! [`Mailer`] over SMTP (lettre), for production. The embedded default uses the development
//! outbox of the SQL store instead.
//!
//! `smtp_url` takes lettre's URL form: `smtps://user:password@host:465` (TLS from the start),
//! `smtp://user:password@host:587?tls=required` (STARTTLS), or `smtp://host:25` (plain, for a
//! local relay).

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::mail::{Mail, MailError, Mailer};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

/// Sends mail through one SMTP relay, with pooled connections.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("SmtpMailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for the relay at `smtp_url`, sending as `from` (`Quire <no-reply@example.com>`).
    /// Call it inside the Tokio runtime: the connection pool lives there.
    ///
    /// # Errors
    /// When the URL or the sender address is malformed (neither is echoed: the URL may hold a
    /// password).
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|_| anyhow::anyhow!("mail.smtp_url is not a valid smtp:// or smtps:// URL"))?
            .build();
        let from: Mailbox = from
            .parse()
            .context("mail.from is not an address such as `Quire <no-reply@example.com>`")?;
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| MailError(anyhow::anyhow!("the recipient is not an address: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .body(mail.body)
            .map_err(|e| MailError(anyhow::anyhow!("building a mail: {e}")))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError(anyhow::anyhow!("the SMTP relay refused or failed: {e}")))?;
        Ok(())
    }
}
