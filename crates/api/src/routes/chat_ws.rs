//! `GET /chat/ws`: chat over a WebSocket, a second view of the same streaming core as SSE.
//!
//! - **Origin**: a browser's `Origin` must be one of `chat.ws_allowed_origins` (or, when that
//!   is empty, of `http.cors_allowed_origins`), else 403 before the upgrade. Clients that send
//!   no `Origin` (not browsers) are let through; they still need a token.
//! - **Sockets per address**: one client address holds at most `chat.ws_max_per_address` open
//!   sockets on this server (authenticated or not); one more is refused before the upgrade with
//!   429 `too_many_sockets`. The count lives in the process ([`crate::sockets::OpenSockets`]), so behind a load
//!   balancer an address may hold that many on each server; a socket's place is given back
//!   when its task ends, however the connection ended.
//! - **Auth at the handshake**: `Sec-WebSocket-Protocol: bearer, <token>` (the server answers
//!   with the `bearer` subprotocol) and the tenant in `X-Tenant-ID` or `?tenant=`; a bad token
//!   or tenant is refused with the usual 401/404 before the upgrade (`Authorization: Bearer`
//!   works the same for clients that can set headers). **Or by a first frame**
//!   `{"type":"auth","token","tenant"}`; a failure gets an `error` frame and close code 1008.
//!   A socket not authenticated `chat.ws_idle_timeout_secs` after it opened is closed (1008,
//!   "authentication timeout") whatever it sent meanwhile: pings, pongs and junk do not
//!   extend that deadline.
//! - **Access follows the credentials** ([`Grant`]): the socket keeps what it authenticated
//!   with and runs it again through [`crate::tenant::resolve`], the check every HTTP request
//!   passes (token or key live, session active, account enabled, member with role ≥ member),
//!   before every question and every `chat.ws_reauth_secs`, idle or not. When that check says
//!   the access ended (signed out, password changed elsewhere, key revoked, removed, demoted
//!   to viewer, account disabled), the answer in flight is cancelled, an `error` frame with
//!   code `access_revoked` is sent and the socket closes with 1008 "access revoked". A passing
//!   fault of storage keeps the socket until the next check (a question is refused meanwhile).
//!   An access token's expiry closes the socket at that instant (`error` `token_expired`,
//!   1008 "token expired"): `ready` carries `expires_at` (null for API keys, which do not
//!   expire but are re-checked), and the client extends the socket by sending another
//!   `{"type":"auth","token"}` with a fresh token (from `/auth/refresh`) of the same account
//!   and organization (`tenant` may be left out), answered by a new `ready`; any other token
//!   closes the socket with 1008.
//! - **Frames**: `{"type":"message","session_id","content","locale"?}` starts an answer
//!   (one at a time), `{"type":"resume","session_id","last_event_id"}` resumes one after the
//!   `id` of the last frame received (as `Last-Event-ID` does over SSE, from any server),
//!   `{"type":"cancel"}` cancels the answer being sent. The server sends
//!   `{"type":"delta"|"citations"|"done"|"error","id",…}` with the SSE payloads, and
//!   `{"type":"ready","expires_at"}` after each authentication.
//! - **Limits**: pings every `chat.ws_ping_secs`; no frame from the client (pongs count) for
//!   `chat.ws_idle_timeout_secs` closes an authenticated socket (1000, "idle"); a frame over
//!   `chat.ws_max_frame_bytes` closes it with 1009. Closing the socket drops the viewer, which
//!   cancels the answer unless another viewer is attached.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, web};
use actix_ws::{AggregatedMessage as WsMessage, CloseCode, CloseReason, ProtocolError};
use chat::{ChatSessionId, Locale, Subscription};
use serde::Deserialize;
use tokio::time::Instant;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, Problem, problem_response, rfc3339};
use crate::limits::ChatRate;
use crate::routes::chat::event_payload;
use crate::sockets::SocketSlot;
use crate::state::AppState;
use crate::tenant::{Access, Caller, Member};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(chat_ws);
}

/// A client frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Auth {
        token: String,
        /// Required the first time; a fresh token later may leave it out (same organization).
        tenant: Option<String>,
    },
    Message {
        session_id: String,
        content: String,
        locale: Option<String>,
    },
    Resume {
        session_id: String,
        last_event_id: String,
    },
    Cancel,
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    tenant: Option<String>,
}

/// What an authenticated socket acts with, checked again through [`crate::tenant::resolve`]
/// (the HTTP extractors' check) before every question and every `chat.ws_reauth_secs`.
struct Grant {
    /// The access token or API key presented (never logged).
    token: String,
    /// The organization's id (not the slug the client named: a slug can change).
    tenant: String,
    /// The result of the last check.
    access: Access<Member, ChatRate>,
    /// When an access token stops verifying; `None` for API keys, which do not expire.
    expires_at: Option<time::OffsetDateTime>,
}

impl Grant {
    async fn new(
        state: &web::Data<AppState>,
        token: String,
        tenant: String,
    ) -> Result<Self, ApiError> {
        let access = crate::tenant::resolve::<Member, ChatRate>(
            state.clone(),
            Ok(token.clone()),
            Ok(tenant),
        )
        .await?;
        let expires_at = match access.caller {
            // The token verified a moment ago; if it no longer does, it has just expired.
            Caller::User(_) => Some(
                state
                    .accounts
                    .access_expires_at(&token)
                    .unwrap_or_else(time::OffsetDateTime::now_utc),
            ),
            Caller::ApiKey(_) => None,
        };
        Ok(Self {
            tenant: access.org.id.to_string(),
            token,
            access,
            expires_at,
        })
    }

    /// The same check again, as an HTTP request would pass it now.
    async fn recheck(&mut self, state: &web::Data<AppState>) -> Result<(), ApiError> {
        self.access = crate::tenant::resolve::<Member, ChatRate>(
            state.clone(),
            Ok(self.token.clone()),
            Ok(self.tenant.clone()),
        )
        .await?;
        Ok(())
    }

    /// When the socket must close because its token expires.
    fn expiry(&self) -> Option<Instant> {
        let left = self.expires_at? - time::OffsetDateTime::now_utc();
        Some(Instant::now() + left.try_into().unwrap_or(std::time::Duration::ZERO))
    }

    fn expired(&self) -> bool {
        self.expires_at
            .is_some_and(|t| t <= time::OffsetDateTime::now_utc())
    }

    fn ready(&self) -> serde_json::Value {
        serde_json::json!({"type": "ready", "expires_at": self.expires_at.map(rfc3339)})
    }
}

/// Whether a failed check means the access ended (rather than a passing fault of storage).
fn access_ended(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Unauthenticated(_)
            | ApiError::Forbidden
            | ApiError::ForbiddenBecause(_)
            | ApiError::NotFound
    )
}

fn origin_allowed(req: &HttpRequest, state: &AppState) -> bool {
    let Some(origin) = req.headers().get("origin") else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let list = if state.ws.allowed_origins.is_empty() {
        &state.http.cors_allowed_origins
    } else {
        &state.ws.allowed_origins
    };
    list.iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The token of `Sec-WebSocket-Protocol: bearer, <token>`.
fn protocol_token(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get("sec-websocket-protocol")?.to_str().ok()?;
    let mut parts = v.split(',').map(str::trim);
    (parts.next()? == "bearer")
        .then(|| parts.next().map(str::to_owned))
        .flatten()
        .filter(|t| !t.is_empty())
}

/// Chat over a WebSocket (see the module docs for the protocol).
#[utoipa::path(
    tag = "chat",
    security((), ("bearer" = [])),
    params(
        ("Sec-WebSocket-Protocol" = Option<String>, Header, description = "`bearer, <token>` (browsers), or `Authorization: Bearer`; or sign in with the first message"),
        ("X-Tenant-ID" = Option<String>, Header, description = "organization id or slug (or `?tenant=`)"),
        ("tenant" = Option<String>, Query, description = "organization id or slug, for clients that cannot set headers")
    ),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 429, body = Problem, description = "`too_many_sockets`: this address holds `chat.ws_max_per_address` open sockets on this server")
    )
)]
#[get("/chat/ws")]
async fn chat_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    if !origin_allowed(&req, &state) {
        tracing::warn!("WebSocket from an origin not allowed");
        return Err(ApiError::ForbiddenBecause(
            "this origin may not open a WebSocket",
        ));
    }
    let ip = crate::auth::client_ip(&req);
    // Before any work for the socket: a flood from one address stops here.
    let Some(slot) = state.ws_open.open(&ip, state.ws.max_per_address) else {
        tracing::info!("WebSocket refused: too many open from this address");
        let mut res = problem_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sockets",
            format!(
                "this address already holds {} open WebSockets; close one first",
                state.ws.max_per_address
            ),
            None,
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(5));
        return Ok(res);
    };
    let tenant = req
        .headers()
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.into_inner().tenant);
    // Non-browser clients may send `Authorization: Bearer` instead.
    let token = protocol_token(&req).or_else(|| crate::auth::bearer(&req).ok().map(str::to_owned));
    let grant = match token {
        Some(token) => {
            let tenant = tenant.ok_or(ApiError::BadRequest {
                code: "tenant_required",
                detail: "name the organization in X-Tenant-ID or ?tenant=".to_owned(),
            })?;
            Some(Grant::new(&state, token, tenant).await?)
        }
        None => None,
    };
    let (response, session, stream) = actix_ws::handle_with_protocols(&req, body, &["bearer"])
        .map_err(|e| ApiError::BadRequest {
            code: "validation_failed",
            detail: format!("not a WebSocket handshake: {e}"),
        })?;
    let stream = stream
        .max_frame_size(state.ws.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(state.ws.max_frame_bytes);
    actix_web::rt::spawn(serve(state, grant, ip, slot, session, stream));
    Ok(response)
}

async fn send_json(session: &mut actix_ws::Session, v: &serde_json::Value) -> bool {
    session.text(v.to_string()).await.is_ok()
}

async fn send_error(session: &mut actix_ws::Session, code: &str, detail: &str) -> bool {
    send_json(
        session,
        &serde_json::json!({"type": "error", "code": code, "detail": detail}),
    )
    .await
}

/// What an error frame says: the problem's detail, with the failing fields spelled out.
fn problem_detail(e: &ApiError) -> String {
    match e {
        ApiError::Validation(fields) => fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.detail(),
    }
}

/// The next event of the current answer, or never when there is none.
async fn next_event(sub: &mut Option<Subscription>) -> Option<chat::stream::Sequenced> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn policy(description: &'static str) -> CloseReason {
    CloseReason {
        code: CloseCode::Policy,
        description: Some(description.into()),
    }
}

/// The access of `grant` ended: the answer in flight stops, the client is told why, and the
/// socket closes with 1008.
async fn access_ended_close(
    grant: &Grant,
    session: &mut actix_ws::Session,
    current: &mut Option<Subscription>,
) -> CloseReason {
    if let Some(s) = current.take() {
        s.cancel();
    }
    if grant.expired() {
        tracing::info!("WebSocket closed: its access token expired");
        let _ = send_error(
            session,
            "token_expired",
            "the access token expired; send {\"type\":\"auth\",\"token\"} with a fresh one before `expires_at`",
        )
        .await;
        policy("token expired")
    } else {
        tracing::info!("WebSocket closed: its access was revoked");
        let _ = send_error(
            session,
            "access_revoked",
            "this socket's access ended (signed out, key revoked, membership or role changed, or account disabled)",
        )
        .await;
        policy("access revoked")
    }
}

/// The outcome of checking a grant again.
enum Check {
    /// Access holds.
    Holds,
    /// Access ended: close the socket.
    Ended,
    /// Storage failed; nothing is known.
    Fault(ApiError),
}

async fn check(state: &web::Data<AppState>, grant: &mut Grant) -> Check {
    if grant.expired() {
        return Check::Ended;
    }
    match grant.recheck(state).await {
        Ok(()) => Check::Holds,
        Err(e) if access_ended(&e) || grant.expired() => Check::Ended,
        Err(e) => Check::Fault(e),
    }
}

async fn serve(
    state: web::Data<AppState>,
    mut grant: Option<Grant>,
    ip: String,
    slot: SocketSlot,
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    // Held until the socket's task ends, however it ends.
    let _slot = slot;
    let idle = state.ws.idle_timeout;
    let mut ping = tokio::time::interval(state.ws.ping_interval);
    ping.tick().await;
    let every = state.ws.reauth_interval;
    let mut reauth = tokio::time::interval_at(Instant::now() + every, every);
    reauth.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Absolute: nothing the client sends moves it.
    let auth_deadline = Instant::now() + idle;
    let mut deadline = Instant::now() + idle;
    let mut current: Option<Subscription> = None;
    if let Some(g) = &grant
        && !send_json(&mut session, &g.ready()).await
    {
        return;
    }
    let close = loop {
        let expiry = grant.as_ref().and_then(Grant::expiry);
        tokio::select! {
            () = tokio::time::sleep_until(auth_deadline), if grant.is_none() => {
                let _ = send_error(&mut session, "unauthenticated", "authenticate with {\"type\":\"auth\"} before the deadline").await;
                break Some(policy("authentication timeout"));
            }
            () = tokio::time::sleep_until(deadline), if grant.is_some() => {
                break Some(CloseReason { code: CloseCode::Normal, description: Some("idle".into()) });
            }
            () = tokio::time::sleep_until(expiry.unwrap_or(deadline)), if expiry.is_some() => {
                if let Some(g) = &grant {
                    break Some(Box::pin(access_ended_close(g, &mut session, &mut current)).await);
                }
            }
            _ = reauth.tick(), if grant.is_some() => {
                if let Some(g) = grant.as_mut() {
                    match Box::pin(check(&state, g)).await {
                        Check::Holds => {}
                        Check::Ended => break Some(Box::pin(access_ended_close(g, &mut session, &mut current)).await),
                        Check::Fault(e) => tracing::warn!(
                            code = e.code(),
                            "re-checking a WebSocket's access failed; checked again at the next interval"
                        ),
                    }
                }
            }
            _ = ping.tick() => {
                if session.ping(b"").await.is_err() {
                    break None;
                }
            }
            event = next_event(&mut current) => {
                match event {
                    Some(e) => {
                        let mut v = event_payload(&e.event);
                        if let Some(o) = v.as_object_mut() {
                            o.insert("type".into(), e.event.name().into());
                            o.insert("id".into(), e.id.clone().into());
                        }
                        if !send_json(&mut session, &v).await {
                            break None;
                        }
                        if e.event.is_last() {
                            current = None;
                        }
                    }
                    None => current = None,
                }
            }
            msg = stream.recv() => {
                deadline = Instant::now() + idle;
                match msg {
                    None => break None,
                    Some(Err(ProtocolError::Overflow)) => {
                        break Some(CloseReason {
                            code: CloseCode::Size,
                            description: Some("frame too large".into()),
                        });
                    }
                    Some(Err(_)) => {
                        break Some(CloseReason { code: CloseCode::Protocol, description: None });
                    }
                    Some(Ok(WsMessage::Ping(p))) => {
                        if session.pong(&p).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(WsMessage::Close(_))) => break None,
                    Some(Ok(WsMessage::Text(text))) => {
                        match Box::pin(on_frame(&state, &mut grant, &ip, &mut current, &mut session, &text)).await {
                            Ok(()) => {}
                            Err(reason) => break reason,
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        if !send_error(&mut session, "validation_failed", "send JSON text frames").await {
                            break None;
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    };
    drop(current);
    if let Some(reason) = close {
        let _ = session.close(Some(reason)).await;
    }
}

/// A failed authentication: an error frame, then close 1008.
async fn auth_failed(
    session: &mut actix_ws::Session,
    code: &str,
    detail: &str,
) -> Option<CloseReason> {
    tracing::info!(code, "WebSocket authentication refused");
    let _ = send_error(session, code, detail).await;
    Some(policy("authentication failed"))
}

/// An `auth` frame: the first authentication, or a fresh token for the same account (or key)
/// and organization.
async fn on_auth(
    state: &web::Data<AppState>,
    grant: &mut Option<Grant>,
    session: &mut actix_ws::Session,
    token: String,
    tenant: Option<String>,
) -> Result<(), Option<CloseReason>> {
    let Some(tenant) = tenant.or_else(|| grant.as_ref().map(|g| g.tenant.clone())) else {
        return Err(auth_failed(
            session,
            "tenant_required",
            "name the organization in `tenant`",
        )
        .await);
    };
    let fresh = match Grant::new(state, token, tenant).await {
        Ok(g) => g,
        Err(e) => return Err(auth_failed(session, e.code(), &problem_detail(&e)).await),
    };
    if let Some(old) = grant.as_ref()
        && (old.access.org.id != fresh.access.org.id
            || old.access.ctx.principal() != fresh.access.ctx.principal())
    {
        return Err(auth_failed(
            session,
            "validation_failed",
            "a fresh token must be for the same account (or key) and organization",
        )
        .await);
    }
    let ready = fresh.ready();
    *grant = Some(fresh);
    if send_json(session, &ready).await {
        Ok(())
    } else {
        Err(None)
    }
}

/// Handles one text frame; `Err` closes the socket (with a reason when there is one).
async fn on_frame(
    state: &web::Data<AppState>,
    grant: &mut Option<Grant>,
    ip: &str,
    current: &mut Option<Subscription>,
    session: &mut actix_ws::Session,
    text: &str,
) -> Result<(), Option<CloseReason>> {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(_) => {
            let ok = send_error(
                session,
                "validation_failed",
                "frames are {\"type\":\"auth\"|\"message\"|\"resume\"|\"cancel\", ...}",
            )
            .await;
            return if ok { Ok(()) } else { Err(None) };
        }
    };
    let sent = match (frame, grant.as_mut()) {
        (ClientFrame::Auth { token, tenant }, _) => {
            return on_auth(state, grant, session, token, tenant).await;
        }
        (_, None) => {
            let _ = send_error(session, "unauthenticated", "authenticate first").await;
            return Err(Some(policy("authentication required")));
        }
        (ClientFrame::Cancel, Some(_)) => {
            if let Some(s) = current.as_ref() {
                s.cancel();
            }
            true
        }
        (frame @ (ClientFrame::Message { .. } | ClientFrame::Resume { .. }), Some(g)) => {
            if current.is_some() {
                send_error(
                    session,
                    "conflict",
                    "an answer is already streaming; cancel it first",
                )
                .await
            } else {
                // Each question (or resume) is authorized as an HTTP request would be now.
                match check(state, g).await {
                    Check::Holds => match frame {
                        ClientFrame::Message {
                            session_id,
                            content,
                            locale,
                        } => {
                            ask(
                                state,
                                &g.access,
                                ip,
                                current,
                                session,
                                &session_id,
                                &content,
                                locale.as_deref(),
                            )
                            .await
                        }
                        ClientFrame::Resume {
                            session_id,
                            last_event_id,
                        } => {
                            resume(
                                state,
                                &g.access,
                                current,
                                session,
                                &session_id,
                                &last_event_id,
                            )
                            .await
                        }
                        // Matched by the arms above.
                        ClientFrame::Auth { .. } | ClientFrame::Cancel => true,
                    },
                    Check::Ended => {
                        return Err(Some(access_ended_close(g, session, current).await));
                    }
                    Check::Fault(e) => send_error(session, e.code(), &problem_detail(&e)).await,
                }
            }
        }
    };
    if sent { Ok(()) } else { Err(None) }
}

/// Resumes an answer after `last_event_id`, as `GET /chat/sessions/{id}/stream` does: live
/// when it runs here, followed when it runs on another server (a `cancel` frame then
/// reaches it within a second), replayed when it ended; false when the socket is gone.
async fn resume(
    state: &web::Data<AppState>,
    access: &Access<Member, ChatRate>,
    current: &mut Option<Subscription>,
    session: &mut actix_ws::Session,
    session_id: &str,
    last_event_id: &str,
) -> bool {
    let resumed = match ChatSessionId::parse(session_id) {
        Ok(id) => state
            .chat
            .resume(&access.ctx, id, last_event_id)
            .await
            .map_err(ApiError::from),
        Err(_) => Err(ApiError::NotFound),
    };
    match resumed {
        Ok(sub) => {
            *current = Some(sub);
            true
        }
        Err(e) => send_error(session, e.code(), &problem_detail(&e)).await,
    }
}

/// Starts an answer for an authorized question; false when the socket is gone.
#[allow(clippy::too_many_arguments)]
async fn ask(
    state: &web::Data<AppState>,
    access: &Access<Member, ChatRate>,
    ip: &str,
    current: &mut Option<Subscription>,
    session: &mut actix_ws::Session,
    session_id: &str,
    content: &str,
    locale: Option<&str>,
) -> bool {
    // Each question counts against the chat budgets, as over HTTP.
    let admitted = crate::limits::admit::<ChatRate>(state, ip.to_owned(), Some(&access.ctx)).await;
    let started = match (admitted, ChatSessionId::parse(session_id)) {
        (Err(e), _) => Err(e),
        (Ok(()), Ok(id)) => state
            .chat
            .send(&access.ctx, id, content, locale.map(Locale::from_tag))
            .await
            .map_err(ApiError::from),
        (Ok(()), Err(_)) => Err(ApiError::NotFound),
    };
    match started {
        Ok(sub) => {
            *current = Some(sub);
            true
        }
        Err(e) => send_error(session, e.code(), &problem_detail(&e)).await,
    }
}
