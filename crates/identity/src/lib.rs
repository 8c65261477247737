//! Identity: accounts, credentials, sessions and tokens.
//!
//! - [`model`]: validated newtypes (`EmailAddress`, `Password`, `DisplayName`) and the `User`;
//! - [`ports`]: what the domain needs from outside: users and sessions storage, a password
//!   hasher, access-token signing, opaque refresh-token generation;
//! - [`service`]: the use cases ([`service::Accounts`]: register, login, refresh, logout,
//!   authenticate).

pub mod model;
pub mod ports;
pub mod service;
pub mod throttle;

pub use model::{DisplayName, EmailAddress, NewUser, Password, PasswordPolicy, Profile, User};
pub use service::{Accounts, AuthError, TokenPair};
pub use throttle::{LoginThrottle, ThrottlePolicy};
