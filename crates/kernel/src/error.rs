//! Error plumbing shared by every domain: field-level validation errors.
//!
//! Each port and use case still has its own `thiserror` enum; an input that fails a domain
//! rule is reported as [`InvalidInput`], which the HTTP layer turns into a 422 with `errors[]`.

use std::fmt;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's wire name (`email`, `members[2].role`).
    pub field: String,
    /// A human-readable reason, safe to show to the client.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One or more fields that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidInput(pub Vec<FieldError>);

impl InvalidInput {
    /// A single failing field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError::new(field, message)])
    }

    /// `Ok(())` when `errors` is empty, else the errors.
    ///
    /// # Errors
    /// [`InvalidInput`] holding `errors` when there is any.
    pub fn check(errors: Vec<FieldError>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self(errors))
        }
    }
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid input: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}
