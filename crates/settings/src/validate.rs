//! The checks that settings fit together, run by [`Settings::from_figment`] after the
//! layers are merged: each section's rules, and what one section needs from another.

use secrecy::ExposeSecret;

use crate::{CacheBackend, EmbedderKind, MailBackend, Settings, SettingsError, VectorIndexKind};

impl Settings {
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let bad = |m: &str| Err(SettingsError::Inconsistent(m.to_owned()));
        if self.cache.backend == CacheBackend::Redis && self.cache.redis_url.is_none() {
            return bad("cache.backend = \"redis\" needs cache.redis_url (QUIRE_CACHE__REDIS_URL)");
        }
        if self.database.max_connections == 0
            || self.database.min_connections > self.database.max_connections
        {
            return bad("database.max_connections must be ≥ 1 and ≥ database.min_connections");
        }
        if self.http.body_limit_bytes == 0
            || self.http.request_timeout_secs == 0
            || self.http.upload_timeout_secs < self.http.request_timeout_secs
        {
            return bad(
                "http.body_limit_bytes and http.request_timeout_secs must be positive, and \
                 http.upload_timeout_secs at least http.request_timeout_secs",
            );
        }
        if let Some(schema) = &self.database.schema
            && (schema.is_empty()
                || schema.len() > 63
                || !schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        {
            return bad("database.schema must be 1-63 characters of a-z, 0-9 and _");
        }
        if self.cache.key_prefix.is_empty() || self.cache.key_prefix.contains(char::is_whitespace) {
            return bad("cache.key_prefix must be a non-empty word");
        }
        if let Some(origin) = self
            .http
            .cors_allowed_origins
            .iter()
            .find(|o| !is_origin(o))
        {
            return Err(SettingsError::Inconsistent(format!(
                "http.cors_allowed_origins: {origin:?} is not an origin like \"https://app.example.com\" \
                 (scheme and host, optional port, no path, no wildcard)"
            )));
        }
        if !(1..=20).contains(&self.webhooks.max_attempts) {
            return bad("webhooks.max_attempts must be from 1 to 20");
        }
        if !(1..=60).contains(&self.webhooks.timeout_secs) {
            return bad("webhooks.timeout_secs must be from 1 to 60");
        }
        if self.webhooks.backoff_base_secs == 0
            || self.webhooks.backoff_max_secs < self.webhooks.backoff_base_secs
        {
            return bad(
                "webhooks.backoff_base_secs must be at least 1 and at most webhooks.backoff_max_secs",
            );
        }
        if self.webhooks.poll_interval_ms == 0 {
            return bad("webhooks.poll_interval_ms must be at least 1");
        }
        if self.workflows.poll_interval_ms == 0 || self.workflows.lease_secs < 10 {
            return bad(
                "workflows.poll_interval_ms must be at least 1 and workflows.lease_secs at least 10",
            );
        }
        if self.orgs.retention_sweep_secs == 0 {
            return bad("orgs.retention_sweep_secs must be at least 1");
        }
        if self.orgs.max_owned_per_account == 0 {
            return bad("orgs.max_owned_per_account must be at least 1");
        }
        self.validate_mail()?;
        self.validate_documents()?;
        self.validate_retrieval()?;
        self.validate_auth()
    }

    fn validate_documents(&self) -> Result<(), SettingsError> {
        let bad = |m: &str| Err(SettingsError::Inconsistent(m.to_owned()));
        let d = &self.documents;
        if d.max_file_bytes == 0 || d.max_pages == 0 || d.max_text_chars == 0 {
            return bad("documents.max_file_bytes, max_pages and max_text_chars must be positive");
        }
        if d.extract_timeout_secs == 0 || d.max_concurrent_extractions == 0 {
            return bad(
                "documents.extract_timeout_secs and max_concurrent_extractions must be positive",
            );
        }
        if d.list_recheck_ms > 1_000 {
            return bad(
                "documents.list_recheck_ms must be at most 1000: a list must show a change within a second",
            );
        }
        if d.max_running_jobs_per_tenant == Some(0) {
            return bad("documents.max_running_jobs_per_tenant must be positive");
        }
        if d.extract_memory_mib < 64 {
            return bad("documents.extract_memory_mib must be at least 64");
        }
        if d.lease_secs <= d.extract_timeout_secs {
            return bad(
                "documents.lease_secs must be longer than documents.extract_timeout_secs \
                 (a lease must outlive the longest step between heartbeats)",
            );
        }
        if d.max_attempts == 0 || d.retry_base_secs == 0 || d.poll_interval_ms == 0 {
            return bad(
                "documents.max_attempts, retry_base_secs and poll_interval_ms must be positive",
            );
        }
        let o = &d.ocr;
        if o.page_timeout_secs == 0 || o.max_pages == 0 {
            return bad("documents.ocr.page_timeout_secs and max_pages must be positive");
        }
        if !(36..=1_200).contains(&o.dpi) || !(500..=20_000).contains(&o.max_side_px) {
            return bad(
                "documents.ocr.dpi must be between 36 and 1200, max_side_px between 500 and 20000",
            );
        }
        if !ocr_languages_valid(&o.languages) {
            return bad(
                "documents.ocr.languages must be 1 to 8 Tesseract codes joined by + (eng, eng+deu, chi_sim)",
            );
        }
        Ok(())
    }

    fn validate_retrieval(&self) -> Result<(), SettingsError> {
        let bad = |m: &str| Err(SettingsError::Inconsistent(m.to_owned()));
        let r = &self.retrieval;
        if r.embedder == EmbedderKind::Provider && self.provider.embedding_model.is_none() {
            return bad(
                "retrieval.embedder = \"provider\" needs provider.embedding_model \
                 (QUIRE_PROVIDER__EMBEDDING_MODEL)",
            );
        }
        for name in r.local_models.keys() {
            let ok = !name.is_empty()
                && name.len() <= 100
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
            if !ok
                || name.starts_with("quire-local-")
                || ["local", "minilm", "static", "provider"].contains(&name.as_str())
            {
                return Err(SettingsError::Inconsistent(format!(
                    "retrieval.local_models: {name:?} must be 1 to 100 of letters, digits and \
                     . _ - : /, not local, minilm, static, provider nor starting with \
                     quire-local-"
                )));
            }
        }
        if let EmbedderKind::Named(name) = &r.embedder
            && !r.local_models.contains_key(name)
        {
            return Err(SettingsError::Inconsistent(format!(
                "retrieval.embedder = {name:?} is none of local, minilm, static, provider or a name of \
                 retrieval.local_models"
            )));
        }
        if r.local_dimensions == 0 || r.local_dimensions > 2_000 {
            return bad("retrieval.local_dimensions must be between 1 and 2000");
        }
        if r.hnsw_m < 2 || r.hnsw_ef_construction == 0 || r.hnsw_ef_search == 0 {
            return bad("retrieval.hnsw_m must be ≥ 2 and the ef settings positive");
        }
        if r.vector_index == VectorIndexKind::Pgvector && !self.is_postgres() {
            return bad("retrieval.vector_index = \"pgvector\" needs PostgreSQL (database.url)");
        }
        if r.reembed_lease_secs == 0 {
            return bad("retrieval.reembed_lease_secs must be positive");
        }
        if let Some(url) = &r.rerank.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad("retrieval.rerank.base_url must be an http(s) URL");
        }
        if r.rerank.timeout_ms == 0 || r.rerank.model.trim().is_empty() {
            return bad("retrieval.rerank needs a model and a positive timeout_ms");
        }
        let legs = std::iter::once((
            "retrieval.fusion".to_owned(),
            r.fusion.method.as_str(),
            r.fusion.keyword,
            r.fusion.vector,
        ))
        .chain(r.fusion.models.iter().map(|(name, l)| {
            (
                format!("retrieval.fusion.models.{name:?}"),
                l.method.as_str(),
                l.keyword,
                l.vector,
            )
        }));
        for (at, method, keyword, vector) in legs {
            if method != "rrf" && method != "minmax" {
                return bad(&format!("{at}.method must be \"rrf\" or \"minmax\""));
            }
            let ok = |w: f32| w.is_finite() && (0.0..=100.0).contains(&w);
            if !ok(keyword) || !ok(vector) || keyword + vector <= 0.0 {
                return bad(&format!(
                    "{at}: keyword and vector weights must be between 0 and 100, not both 0"
                ));
            }
        }
        let p = &self.provider;
        if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
            return bad("provider.base_url must be an http(s) URL");
        }
        if p.timeout_secs == 0 || p.connect_timeout_secs == 0 {
            return bad("provider.timeout_secs and connect_timeout_secs must be positive");
        }
        if p.first_token_timeout_secs == 0 || p.idle_timeout_secs == 0 {
            return bad("provider.first_token_timeout_secs and idle_timeout_secs must be positive");
        }
        let c = &self.chat;
        if !(1..=50).contains(&c.top_k) {
            return bad("chat.top_k must be between 1 and 50");
        }
        if c.max_answer_tokens == 0 || c.answer_timeout_secs == 0 {
            return bad("chat.max_answer_tokens and answer_timeout_secs must be positive");
        }
        if c.answer_lease_secs < 3 {
            return bad(
                "chat.answer_lease_secs must be at least 3 (an answer checkpoints every second)",
            );
        }
        if c.ws_idle_timeout_secs == 0 || c.ws_ping_secs == 0 || c.ws_max_frame_bytes < 1024 {
            return bad(
                "chat.ws_idle_timeout_secs and ws_ping_secs must be positive, \
                 ws_max_frame_bytes at least 1024",
            );
        }
        if c.ws_reauth_secs == 0 || c.ws_max_per_address == 0 {
            return bad("chat.ws_reauth_secs and ws_max_per_address must be positive");
        }
        let b = &self.billing;
        if !b.plans.contains_key(&b.fallback_plan) {
            return bad("billing.fallback_plan must name one of billing.plans");
        }
        for name in ["free", "pro", "enterprise"] {
            if !b.plans.contains_key(name) {
                return Err(SettingsError::Inconsistent(format!(
                    "billing.plans must keep the plan {name:?} (organizations start on free)"
                )));
            }
        }
        if b.quota_counter_secs == 0 || b.stream_slot_secs == 0 {
            return bad("billing.quota_counter_secs and stream_slot_secs must be positive");
        }
        if b.export_micros_per_gib < 0 {
            return bad("billing.export_micros_per_gib must not be negative");
        }
        if self.rate_limits.window_secs == 0 {
            return bad("rate_limits.window_secs must be positive");
        }
        Ok(())
    }

    fn validate_mail(&self) -> Result<(), SettingsError> {
        if self.mail.backend == MailBackend::Smtp && self.mail.smtp_url.is_none() {
            return Err(SettingsError::Inconsistent(
                "mail.backend = \"smtp\" needs mail.smtp_url (QUIRE_MAIL__SMTP_URL)".to_owned(),
            ));
        }
        if !self.mail.from.contains('@') {
            return Err(SettingsError::Inconsistent(
                "mail.from must be an address such as `Quire <no-reply@example.com>`".to_owned(),
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), SettingsError> {
        let bad = |m: &str| Err(SettingsError::Inconsistent(m.to_owned()));
        let a = &self.auth;
        if !(60..=900).contains(&a.access_token_ttl_secs) {
            return bad("auth.access_token_ttl_secs must be between 60 and 900");
        }
        if a.recheck_ms > 1_000 {
            return bad(
                "auth.recheck_ms must be at most 1000: a revocation must reach every server within a second",
            );
        }
        if !(1..=365).contains(&a.session_lifetime_days) {
            return bad("auth.session_lifetime_days must be between 1 and 365");
        }
        if !(8..=64).contains(&a.password_min_chars) {
            return bad("auth.password_min_chars must be between 8 and 64");
        }
        if a.attempts_per_ip_per_minute == 0
            || a.failures_per_account_ip == 0
            || a.failures_per_account < a.failures_per_account_ip
        {
            return bad("auth throttling: every limit must be positive, and \
                 auth.failures_per_account must be at least auth.failures_per_account_ip");
        }
        if a.max_concurrent_hashes == 0
            || a.issuer.trim().is_empty()
            || a.audience.trim().is_empty()
        {
            return bad("auth.max_concurrent_hashes, auth.issuer and auth.audience must be set");
        }
        if a.signing_keys
            .iter()
            .any(|k| !k.expose_secret().starts_with("k4.secret."))
        {
            return bad(
                "auth.signing_keys must be PASERK secret keys (k4.secret.…; see `quire keygen`)",
            );
        }
        Ok(())
    }
}

/// `http(s)://host[:port]`, nothing more.
pub(crate) fn is_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'))
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Tesseract's `-l` form: 1 to 8 codes joined by `+`, each three lower-case letters and at
/// most two `_` parts of 3 or 4 (the rule of `documents::OcrLanguages`).
fn ocr_languages_valid(s: &str) -> bool {
    let lower = |p: &str, min: usize, max: usize| {
        (min..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase())
    };
    let codes: Vec<&str> = s.split('+').collect();
    codes.len() <= 8
        && codes.iter().all(|code| {
            let mut parts = code.split('_');
            let first = parts.next().unwrap_or_default();
            let rest: Vec<&str> = parts.collect();
            lower(first, 3, 3) && rest.len() <= 2 && rest.iter().all(|p| lower(p, 3, 4))
        })
}
