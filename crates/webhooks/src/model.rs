//! Endpoints, their secrets, deliveries (the queue) and attempts (the log).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kernel::{EventKind, InvalidInput, TenantId};
use time::OffsetDateTime;
use uuid::Uuid;

kernel::define_id!(
    /// A webhook endpoint.
    WebhookId
);
kernel::define_id!(
    /// One delivery of one event to one endpoint (a row of the queue; its retries share it).
    DeliveryId
);
kernel::define_id!(
    /// One attempt of a delivery (a row of the log).
    AttemptId
);

/// The most endpoints an organization may register.
pub const MAX_ENDPOINTS: usize = 20;
/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2_000;
/// The longest error kept on an attempt (characters).
pub const MAX_ERROR_LEN: usize = 300;

/// An endpoint's signing secret: 32 random bytes, shown once as `whsec_` + base64.
/// Its `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// Bytes of a generated secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;

impl Secret {
    /// A fresh random secret.
    ///
    /// # Errors
    /// When the operating system's randomness is unavailable.
    pub fn generate() -> anyhow::Result<Self> {
        let mut bytes = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("reading the system's randomness: {e}"))?;
        Ok(Self(bytes))
    }

    /// The secret from its raw bytes (as stored).
    ///
    /// # Errors
    /// When there are fewer than 24 or more than 64 bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (24..=64).contains(&bytes.len()),
            "a stored webhook secret of {} bytes",
            bytes.len()
        );
        Ok(Self(bytes))
    }

    /// The secret from its `whsec_…` form.
    ///
    /// # Errors
    /// When it is not `whsec_` followed by base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let b64 = text
            .strip_prefix("whsec_")
            .ok_or_else(|| anyhow::anyhow!("a webhook secret starts with whsec_"))?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| anyhow::anyhow!("a webhook secret is base64 after whsec_"))?;
        Self::from_bytes(bytes)
    }

    /// The raw bytes (the HMAC key).
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_` + base64: the form shown to the client, once.
    #[must_use]
    pub fn reveal(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Id.
    pub id: WebhookId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// Where deliveries are posted.
    pub url: String,
    /// The events it receives (sorted, no duplicates, at least one).
    pub events: Vec<EventKind>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// The signing secret.
    pub secret: Secret,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

impl Endpoint {
    /// Whether it receives `kind` now.
    #[must_use]
    pub fn wants(&self, kind: EventKind) -> bool {
        self.enabled && self.events.contains(&kind)
    }
}

/// What a client registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    /// The URL.
    pub url: String,
    /// Event names.
    pub events: Vec<String>,
    /// Default: true.
    pub enabled: Option<bool>,
}

/// A change to an endpoint: absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointChange {
    /// A new URL.
    pub url: Option<String>,
    /// New event names.
    pub events: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// The event names of a request as kinds: sorted, without duplicates, at least one, all known.
///
/// # Errors
/// [`InvalidInput`] on `events`.
pub fn parse_events(names: &[String]) -> Result<Vec<EventKind>, InvalidInput> {
    if names.is_empty() {
        return Err(InvalidInput::field("events", "name at least one event"));
    }
    let mut kinds = Vec::with_capacity(names.len());
    for name in names {
        let kind = EventKind::parse(name).ok_or_else(|| {
            let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            InvalidInput::field(
                "events",
                format!("unknown event (expected some of {})", known.join(", ")),
            )
        })?;
        kinds.push(kind);
    }
    kinds.sort_unstable();
    kinds.dedup();
    Ok(kinds)
}

/// The URL's shape, before any address is looked at: `https://` (or `http://` when
/// `allow_http`), at most [`MAX_URL_LEN`] characters, no spaces or control characters, no
/// user name or password. The destination check is the [`crate::Sender`]'s.
///
/// # Errors
/// [`InvalidInput`] on `url`.
pub fn check_url_shape(url: &str, allow_http: bool) -> Result<(), InvalidInput> {
    let bad = |m: &str| Err(InvalidInput::field("url", m));
    if url.len() > MAX_URL_LEN {
        return bad("is longer than 2000 characters");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("has spaces or control characters");
    }
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://") {
        if !allow_http {
            return bad("must be https");
        }
        rest
    } else {
        return bad(if allow_http {
            "must be an http or https URL"
        } else {
            "must be https"
        });
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return bad("must not carry a user name or password");
    }
    if authority.is_empty() {
        return bad("has no host");
    }
    Ok(())
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Queued,
    /// Leased by a worker.
    Running,
    /// Answered with a 2xx.
    Succeeded,
    /// Given up (attempts used up, a refused destination, or `410 Gone`).
    Failed,
    /// Not sent: its endpoint was disabled or deleted before the attempt.
    Dropped,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Dropped,
    ];

    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }

    /// The status with this stored name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One event to one endpoint: the queue's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Id.
    pub id: DeliveryId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// The endpoint.
    pub webhook_id: WebhookId,
    /// The `webhook-id` header: the event's id, the same on every attempt and redelivery.
    pub message_id: String,
    /// The event.
    pub kind: EventKind,
    /// The body, exactly as signed and sent.
    pub payload: String,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts started (claims).
    pub attempts: u32,
    /// Not before this time.
    pub run_at: OffsetDateTime,
    /// Queued.
    pub created_at: OffsetDateTime,
}

impl Delivery {
    /// A new queued delivery, due at `now`.
    #[must_use]
    pub fn queued(
        endpoint: &Endpoint,
        message_id: String,
        kind: EventKind,
        payload: String,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: DeliveryId::new(),
            tenant_id: endpoint.tenant_id,
            webhook_id: endpoint.id,
            message_id,
            kind,
            payload,
            status: DeliveryStatus::Queued,
            attempts: 0,
            run_at: now,
            created_at: now,
        }
    }
}

/// A delivery leased by a worker, and the lease token that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The delivery (`attempts` already counts this one).
    pub delivery: Delivery,
    /// The lease token.
    pub lease: Uuid,
}

/// One attempt, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Id.
    pub id: AttemptId,
    /// Owning organization.
    pub tenant_id: TenantId,
    /// The endpoint.
    pub webhook_id: WebhookId,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The event.
    pub kind: EventKind,
    /// 1 for the first attempt of the delivery.
    pub attempt: u32,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed, when it did (a short sentence, never the response body).
    pub error: Option<String>,
    /// When it was made.
    pub created_at: OffsetDateTime,
}

/// What becomes of a claimed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Delivered.
    Done,
    /// Try again at this time.
    RetryAt(OffsetDateTime),
    /// Give up (`failed`).
    GiveUp,
    /// Not sent (`dropped`).
    Drop,
}

impl Next {
    /// The delivery's status after it, and its next `run_at` when it is retried.
    #[must_use]
    pub const fn outcome(self) -> (DeliveryStatus, Option<OffsetDateTime>) {
        match self {
            Self::Done => (DeliveryStatus::Succeeded, None),
            Self::RetryAt(at) => (DeliveryStatus::Queued, Some(at)),
            Self::GiveUp => (DeliveryStatus::Failed, None),
            Self::Drop => (DeliveryStatus::Dropped, None),
        }
    }
}

/// `text` cut to [`MAX_ERROR_LEN`] characters.
#[must_use]
pub fn short_error(text: &str) -> String {
    text.chars().take(MAX_ERROR_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_never_print() {
        let s = Secret::generate().expect("random");
        assert_eq!(s.bytes().len(), 32);
        let shown = s.reveal();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(Secret::parse(&shown).expect("parse"), s);
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_ne!(Secret::generate().expect("random"), s);
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err());
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    }

    #[test]
    fn events_are_checked_sorted_and_deduplicated() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parse_events(&names(&[
                "usage.threshold",
                "document.ready",
                "document.ready"
            ]))
            .expect("valid"),
            vec![EventKind::DocumentReady, EventKind::UsageThreshold]
        );
        assert!(parse_events(&names(&["workflow.completed"])).is_ok());
        assert!(parse_events(&[]).is_err());
        assert!(parse_events(&names(&["document.*"])).is_err());
    }

    #[test]
    fn url_shapes() {
        assert!(check_url_shape("https://hooks.example.com/q", false).is_ok());
        assert!(check_url_shape("HTTPS://hooks.example.com", false).is_ok());
        assert!(check_url_shape("http://hooks.example.com/q", false).is_err());
        assert!(check_url_shape("http://hooks.example.com/q", true).is_ok());
        assert!(check_url_shape("ftp://hooks.example.com/q", true).is_err());
        assert!(check_url_shape("https://user:pw@hooks.example.com/", false).is_err());
        assert!(check_url_shape("https:///path", false).is_err());
        assert!(check_url_shape("https://a b.example.com/", false).is_err());
        assert!(check_url_shape(&format!("https://e.com/{}", "a".repeat(2_000)), false).is_err());
    }
}
