//! Request extractors that answer bad input with a clear problem+json 4xx:
//! - [`ValidJson`]: content type checked (415), size bounded (413), malformed JSON → 400,
//!   wrong or missing fields → 422 naming the field. Rules on the values (lengths, formats,
//!   ranges) belong to the domain's value types, which report every failing field at once as
//!   [`kernel::InvalidInput`] (422 with one error per field): one place for each rule;
//! - [`PathId`]: the id in the path, parsed into its type (404 when it does not parse);
//! - [`PageQuery`]: `?limit=&cursor=` → [`kernel::PageRequest`];
//! - configs for actix's own `Json`, `Query` and `Path` extractors with the same error shape.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::str::FromStr;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use kernel::{FieldError, PageRequest};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON object body of the right media type and size, deserialized into `T` with errors
/// that name the field.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

fn body_limit(req: &HttpRequest) -> usize {
    req.app_data::<web::Data<crate::AppState>>()
        .map_or(1024 * 1024, |s| s.http.body_limit_bytes)
}

pub(crate) fn payload_error(e: &PayloadError, limit: usize) -> ApiError {
    match e {
        PayloadError::Overflow => ApiError::PayloadTooLarge { limit },
        other => ApiError::BadRequest {
            code: "validation_failed",
            detail: format!("the body could not be read: {other}"),
        },
    }
}

/// Turns a deserialization failure into 400 (not JSON) or 422 (JSON of the wrong shape).
pub(crate) fn deserialize_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let inner = e.inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::BadRequest {
            code: "validation_failed",
            detail: format!(
                "the body is not valid JSON (line {}, column {})",
                inner.line(),
                inner.column()
            ),
        },
        Category::Data => {
            let path = e.path().to_string();
            let message = inner.to_string();
            // serde_json appends " at line L column C"; the position means nothing to a client
            // of a structured error, and the field says where.
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            let (field, message) = match (path.as_str(), missing_field(&message)) {
                (".", Some(name)) => (name.to_owned(), "is required".to_owned()),
                (".", None) => ("body".to_owned(), message),
                (p, Some(name)) => (format!("{p}.{name}"), "is required".to_owned()),
                (p, None) => (p.to_owned(), message),
            };
            ApiError::Validation(vec![FieldError::new(field, message)])
        }
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

impl<T: DeserializeOwned + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let limit = body_limit(req);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be application/json".to_owned(),
                ));
            }
            let bytes = body.await.map_err(|e| {
                e.as_error::<PayloadError>()
                    .map_or(ApiError::PayloadTooLarge { limit }, |pe| {
                        payload_error(pe, limit)
                    })
            })?;
            // serde reads a struct from an array too; an API body is an object.
            if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "body",
                    "must be a JSON object",
                )]));
            }
            let de = &mut serde_json::Deserializer::from_slice(&bytes);
            let value: T =
                serde_path_to_error::deserialize(de).map_err(|e| deserialize_error(&e))?;
            Ok(ValidJson(value))
        })
    }
}

/// A body on a route that also authenticates: extraction never fails, so the authentication
/// and tenant extractors answer first (actix polls a handler's extractors together, and a bad
/// body would otherwise be refused before a missing token or a foreign tenant). Unwrap it in
/// the handler: `let ValidJson(body) = body?;`.
pub type Body<T> = Result<ValidJson<T>, ApiError>;

/// The id a route names in its path (`{id}`, `{user_id}`: the one segment besides `{org}`),
/// parsed into its type. A segment that does not parse names nothing that exists: 404, on
/// every route alike.
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<T: FromStr> FromRequest for PathId<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req
            .match_info()
            .iter()
            .filter(|(name, _)| *name != "org")
            .last()
            .and_then(|(_, segment)| segment.parse().ok());
        ready(id.map(PathId).ok_or(ApiError::NotFound))
    }
}

/// A path id on a route that also authenticates: like [`Body`], extraction never fails, so the
/// authentication and tenant extractors answer first (401/404/403 before a bad id's 404).
/// Unwrap it first in the handler, before the body: `let PathId(id) = id?;`.
pub type Id<T> = Result<PathId<T>, ApiError>;

/// `?limit=&cursor=` of every list route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–100 (default 20).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The validated page request.
    ///
    /// # Errors
    /// 422 on `limit` or `cursor`.
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::parse(self.limit, self.cursor.as_deref())?)
    }
}

/// actix's `Json` extractor, answering like [`ValidJson`].
#[must_use]
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let api = match &err {
                JsonPayloadError::ContentType => {
                    ApiError::UnsupportedMediaType("the body must be application/json".to_owned())
                }
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::PayloadTooLarge { limit }
                }
                other => ApiError::BadRequest {
                    code: "validation_failed",
                    detail: format!("the body is not valid JSON: {other}"),
                },
            };
            api.into()
        })
}

/// Query-string errors → 422 on the query.
#[must_use]
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let message = match &err {
            QueryPayloadError::Deserialize(e) => e.to_string(),
            other => other.to_string(),
        };
        ApiError::Validation(vec![FieldError::new("query", message)]).into()
    })
}

/// A path segment that does not parse names nothing that exists → 404.
#[must_use]
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err: PathError, _req| ApiError::NotFound.into())
}

/// `deserialize_with` for a field where absent, `null` and a value differ: absent stays
/// `None` (with `#[serde(default)]`), `null` is `Some(None)` (clear it), a value `Some(Some(v))`.
pub(crate) fn double_option<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Parses collection ids, reporting each bad one as `{field}[i]`.
pub(crate) fn collection_ids(
    ids: &[String],
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<documents::CollectionId> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, s)| match documents::CollectionId::parse(s) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError::new(
                    format!("{field}[{i}]"),
                    "must be a collection id",
                ));
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
        count: u8,
    }

    fn parse(body: &str) -> Result<Probe, ApiError> {
        let de = &mut serde_json::Deserializer::from_str(body);
        serde_path_to_error::deserialize(de).map_err(|e| deserialize_error(&e))
    }

    fn fields(err: ApiError) -> Vec<(String, String)> {
        match err {
            ApiError::Validation(f) => f.into_iter().map(|f| (f.field, f.message)).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_a_400() {
        assert!(matches!(
            parse("{\"name\": "),
            Err(ApiError::BadRequest { .. })
        ));
        assert!(matches!(
            parse("not json"),
            Err(ApiError::BadRequest { .. })
        ));
    }

    #[test]
    fn missing_and_wrong_fields_are_named() {
        let missing = fields(parse(r#"{"name":"abc"}"#).expect_err("missing"));
        assert_eq!(
            missing,
            vec![("count".to_owned(), "is required".to_owned())]
        );
        let wrong = fields(parse(r#"{"name":"abc","count":300}"#).expect_err("range"));
        assert_eq!(wrong[0].0, "count");
    }
}
