//! Password hashing with argon2id (RFC 9106), stored as PHC strings.
//!
//! Hashing is deliberately expensive in CPU and memory, so it runs on tokio's blocking pool and
//! a semaphore bounds how many hashes run at once: a flood of logins queues briefly and is then
//! refused with [`HashError::Busy`] instead of exhausting memory.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use argon2::password_hash::{Error as PhcError, PasswordHasher as _, PasswordVerifier as _};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, Version};
use async_trait::async_trait;
use identity::Password;
use identity::ports::{HashError, PasswordHasher, Verification};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory per hash, in KiB (`m`).
    pub memory_kib: u32,
    /// Passes over the memory (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl Argon2Settings {
    /// The OWASP recommendation for argon2id: 19 MiB, 2 iterations, 1 lane
    /// (`$argon2id$v=19$m=19456,t=2,p=1$…`). The default.
    pub const OWASP: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };

    /// The cheapest settings argon2 accepts (8 KiB, 1 iteration, 1 lane). For tests only:
    /// offers no protection against offline guessing.
    pub const TESTING: Self = Self {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn params(self) -> anyhow::Result<Params> {
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(Params::DEFAULT_OUTPUT_LEN),
        )
        .map_err(|e| anyhow!("invalid argon2 settings {self:?}: {e}"))
    }
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self::OWASP
    }
}

/// [`PasswordHasher`] with argon2id, version 0x13 (19), a fresh 16-byte salt per hash and a
/// 32-byte output.
///
/// At most `max_concurrent` hashes (or verifications) run at once; a caller waits at most
/// `wait` for a turn, then gets [`HashError::Busy`]. Each running hash holds
/// `memory_kib` KiB, so `max_concurrent × memory_kib` bounds the memory spent on passwords.
///
/// Hashing and verifying run on tokio's blocking pool (`spawn_blocking`), never on the async
/// workers.
///
/// [`PasswordHasher::verify`] answers `Match { rehash: true }` when the stored hash was made
/// with another algorithm variant, version or parameters than the current settings, so the
/// service can upgrade it at login.
#[derive(Clone)]
pub struct Argon2Hasher {
    settings: Argon2Settings,
    params: Params,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    wait: Duration,
}

impl fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("settings", &self.settings)
            .field("max_concurrent", &self.max_concurrent)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// A hasher with `settings`, running at most `max_concurrent` hashes at once and waiting
    /// at most `wait` for a turn.
    ///
    /// # Errors
    /// When argon2 rejects the settings (e.g. memory below 8 KiB per lane) or
    /// `max_concurrent` is 0 or absurdly large.
    pub fn new(
        settings: Argon2Settings,
        max_concurrent: usize,
        wait: Duration,
    ) -> anyhow::Result<Self> {
        let params = settings.params()?;
        if max_concurrent == 0 || max_concurrent > Semaphore::MAX_PERMITS {
            anyhow::bail!(
                "the number of concurrent password hashes must be between 1 and {}, not {max_concurrent}",
                Semaphore::MAX_PERMITS
            );
        }
        Ok(Self {
            settings,
            params,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            wait,
        })
    }

    /// The current settings.
    #[must_use]
    pub fn settings(&self) -> Argon2Settings {
        self.settings
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// A turn to hash: waits at most `wait`, else [`HashError::Busy`].
    async fn permit(&self) -> Result<OwnedSemaphorePermit, HashError> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(HashError::Unknown(
                anyhow::Error::new(closed).context("the password hashing semaphore is closed"),
            )),
            Err(_elapsed) => {
                tracing::warn!(
                    max_concurrent = self.max_concurrent,
                    wait_ms = u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
                    "password hashing is saturated; refusing"
                );
                Err(HashError::Busy)
            }
        }
    }

    /// Runs `work` on the blocking pool while holding a permit. The permit moves into the
    /// blocking task, so it is released when the hash finishes even if the caller gave up.
    async fn run_blocking<T, F>(&self, work: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, HashError> + Send + 'static,
    {
        let permit = self.permit().await?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .context("the password hashing task failed")?
    }

    /// Whether a hash with this algorithm, version and parameters differs from what
    /// [`PasswordHasher::hash`] makes today.
    fn needs_rehash(&self, hash: &PasswordHash, stored: &Params) -> bool {
        hash.algorithm != ARGON2ID_IDENT
            || hash.version != Some(u32::from(Version::V0x13))
            || stored.m_cost() != self.params.m_cost()
            || stored.t_cost() != self.params.t_cost()
            || stored.p_cost() != self.params.p_cost()
            || stored.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
                != self
                    .params
                    .output_len()
                    .unwrap_or(Params::DEFAULT_OUTPUT_LEN)
            || !stored.keyid().is_empty()
            || !stored.data().is_empty()
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.clone();
        let params = self.params.clone();
        self.run_blocking(move || {
            Self::argon2(params)
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Unknown(anyhow!("argon2 hashing failed: {e}")))
        })
        .await
    }

    async fn verify(&self, password: &Password, phc: &str) -> Result<Verification, HashError> {
        // Parse first (cheap): a malformed stored hash needs no permit. The PHC string is not
        // echoed into the error: it is a credential too.
        let hash = PasswordHash::new(phc)
            .map_err(|e| anyhow!("the stored password hash is not a valid PHC string: {e}"))?;
        if Algorithm::try_from(hash.algorithm.as_str()).is_err() {
            return Err(HashError::Unknown(anyhow!(
                "the stored password hash uses an unsupported algorithm"
            )));
        }
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err(HashError::Unknown(anyhow!(
                "the stored password hash lacks a salt or an output"
            )));
        }
        let stored = Params::try_from(&hash)
            .map_err(|e| anyhow!("the stored password hash has invalid argon2 parameters: {e}"))?;
        let rehash = self.needs_rehash(&hash, &stored);

        let password = password.clone();
        let current = self.params.clone();
        self.run_blocking(move || {
            // The algorithm, version and parameters of `hash` are used, not `current`.
            match Self::argon2(current).verify_password(password.expose().as_bytes(), &hash) {
                Ok(()) => Ok(Verification::Match { rehash }),
                Err(PhcError::PasswordInvalid) => Ok(Verification::Mismatch),
                Err(e) => Err(HashError::Unknown(anyhow!(
                    "checking the password against the stored hash failed: {e}"
                ))),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::attempt(s).unwrap()
    }

    fn testing() -> Argon2Hasher {
        Argon2Hasher::new(Argon2Settings::TESTING, 4, Duration::from_secs(5)).unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify_round_trips() {
        let h = testing();
        let phc = h.hash(&pw("correct horse battery")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert_eq!(
            h.verify(&pw("correct horse battery"), &phc).await.unwrap(),
            Verification::Match { rehash: false }
        );
    }

    #[tokio::test]
    async fn salts_differ_between_hashes() {
        let h = testing();
        let a = h.hash(&pw("same password")).await.unwrap();
        let b = h.hash(&pw("same password")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn wrong_password_is_a_mismatch() {
        let h = testing();
        let phc = h.hash(&pw("correct horse battery")).await.unwrap();
        assert_eq!(
            h.verify(&pw("correct horse batterz"), &phc).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn hash_with_other_params_asks_for_rehash() {
        let old = Argon2Hasher::new(
            Argon2Settings {
                memory_kib: 16,
                iterations: 2,
                parallelism: 1,
            },
            1,
            Duration::from_secs(5),
        )
        .unwrap();
        let phc = old.hash(&pw("correct horse battery")).await.unwrap();
        let h = testing();
        assert_eq!(
            h.verify(&pw("correct horse battery"), &phc).await.unwrap(),
            Verification::Match { rehash: true }
        );
        assert_eq!(
            h.verify(&pw("wrong horse battery"), &phc).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn other_variant_asks_for_rehash() {
        // An argon2i hash with the same parameters.
        let phc = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Argon2Settings::TESTING.params().unwrap(),
        )
        .hash_password(b"correct horse battery")
        .unwrap()
        .to_string();
        assert!(phc.starts_with("$argon2i$"));
        assert_eq!(
            testing()
                .verify(&pw("correct horse battery"), &phc)
                .await
                .unwrap(),
            Verification::Match { rehash: true }
        );
    }

    #[tokio::test]
    async fn malformed_phc_is_unknown() {
        let h = testing();
        for phc in [
            "",
            "garbage",
            "$argon2id$v=19$m=8,t=1,p=1",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
            "$bcrypt$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            let r = h.verify(&pw("correct horse battery"), phc).await;
            assert!(matches!(r, Err(HashError::Unknown(_))), "{phc:?}: {r:?}");
        }
    }

    #[tokio::test]
    async fn owasp_settings_make_the_expected_phc_prefix() {
        let h = Argon2Hasher::new(Argon2Settings::default(), 1, Duration::from_secs(5)).unwrap();
        let phc = h.hash(&pw("correct horse battery")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            h.verify(&pw("correct horse battery"), &phc).await.unwrap(),
            Verification::Match { rehash: false }
        );
    }

    #[tokio::test]
    async fn saturated_hasher_is_busy() {
        let h = Argon2Hasher::new(Argon2Settings::TESTING, 1, Duration::from_millis(10)).unwrap();
        let held = h.permit().await.unwrap();
        assert!(matches!(
            h.hash(&pw("correct horse battery")).await,
            Err(HashError::Busy)
        ));
        let phc = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        assert!(matches!(
            h.verify(&pw("correct horse battery"), phc).await,
            Err(HashError::Busy)
        ));
        drop(held);
        assert!(h.hash(&pw("correct horse battery")).await.is_ok());
    }

    #[test]
    fn invalid_settings_are_refused() {
        let too_little = Argon2Settings {
            memory_kib: 1,
            ..Argon2Settings::TESTING
        };
        assert!(Argon2Hasher::new(too_little, 1, Duration::ZERO).is_err());
        assert!(Argon2Hasher::new(Argon2Settings::TESTING, 0, Duration::ZERO).is_err());
    }
}
