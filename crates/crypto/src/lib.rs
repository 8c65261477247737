//! Cryptographic adapters for the identity ports: password hashing, access tokens, refresh
//! tokens, and the signing-key file.
//!
//! - [`Argon2Hasher`]: [`identity::ports::PasswordHasher`] with argon2id (PHC strings), bounded
//!   concurrency and re-hash detection;
//! - [`PasetoTokens`]: [`identity::ports::AccessTokens`] as PASETO `v4.public` (Ed25519) with a
//!   key ring (newest key signs, every listed key verifies);
//! - [`OpaqueTokens`]: [`identity::ports::RefreshTokens`], 256 random bits, stored as SHA-256;
//! - [`load_or_create_key_file`]: the signing keys of a single-node install, created on first
//!   start.
//!
//! Nothing here logs a password, a token or a key.

mod access;
mod keyfile;
mod password;
mod refresh;
mod seal;

pub use access::{MAX_TOKEN_LEN, PasetoTokens};
pub use keyfile::load_or_create_key_file;
pub use password::{Argon2Hasher, Argon2Settings};
pub use refresh::{ApiKeySecrets, OpaqueTokens};
pub use seal::HmacSealer;
