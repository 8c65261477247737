//! How long a route has to produce its response head, as a type on the route (like its rate
//! class).
//!
//! [`timeout`], in the middleware stack, gives every request `http.request_timeout_secs` and
//! answers 503 `timeout` when the handler has not produced a response head by then. Streams
//! are not cut: the limit covers the time to the head, not the body. A route that needs
//! longer names its class in its attribute, e.g.
//! `#[post("/documents", wrap = "actix_web::middleware::from_fn(crate::timeouts::limit::<crate::timeouts::Upload>)")]`:
//! [`limit`] moves the request's deadline before the handler runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, web};

use crate::error::ApiError;
use crate::state::AppState;

/// A route's time to its response head, as a type.
pub trait TimeLimit: 'static {
    /// Seconds, from the configuration.
    fn secs(state: &AppState) -> u64;
}

/// Uploads, which read a file of up to 25 MiB first: `http.upload_timeout_secs`.
#[derive(Debug)]
pub struct Upload;
/// A non-streamed answer or AI task waits for the whole model output:
/// `chat.answer_timeout_secs`.
#[derive(Debug)]
pub struct Answer;

impl TimeLimit for Upload {
    fn secs(state: &AppState) -> u64 {
        state.http.upload_timeout_secs
    }
}
impl TimeLimit for Answer {
    fn secs(state: &AppState) -> u64 {
        state.chat_answer_timeout_secs
    }
}

/// The seconds, from the request's arrival, the request has to produce its response head.
#[derive(Debug, Clone)]
struct Deadline(Arc<AtomicU64>);

impl Deadline {
    fn secs(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Answers 503 `timeout` when the handler has not produced a response head within the
/// request's limit: `http.request_timeout_secs`, or the route's [`TimeLimit`].
pub async fn timeout(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = tokio::time::Instant::now();
    let secs = req
        .app_data::<web::Data<AppState>>()
        .map_or(30, |s| s.http.request_timeout_secs);
    let deadline = Deadline(Arc::new(AtomicU64::new(secs)));
    req.extensions_mut().insert(deadline.clone());
    let call = next.call(req);
    tokio::pin!(call);
    loop {
        let until = started + Duration::from_secs(deadline.secs());
        match tokio::time::timeout_at(until, call.as_mut()).await {
            Ok(res) => return res.map(ServiceResponse::map_into_boxed_body),
            // The route moved its deadline meanwhile ([`limit`]): wait for the new one.
            Err(_) if started + Duration::from_secs(deadline.secs()) > until => {}
            Err(_) => return Err(ApiError::Timeout.into()),
        }
    }
}

/// Gives the route `T`'s time instead of `http.request_timeout_secs`.
pub async fn limit<T: TimeLimit>(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let deadline = req.extensions().get::<Deadline>().cloned();
    if let (Some(deadline), Some(state)) = (deadline, req.app_data::<web::Data<AppState>>()) {
        deadline.0.store(T::secs(state), Ordering::Relaxed);
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}
