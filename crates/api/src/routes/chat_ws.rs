//! `GET /chat/ws`: chat over a WebSocket, a second view of the same streaming core as SSE.
//!
//! - **Origin**: a browser's `Origin` must be one of `chat.ws_allowed_origins` (or, when that
//!   is empty, of `http.cors_allowed_origins`), else 403 before the upgrade. Clients that send
//!   no `Origin` (not browsers) are let through; they still need a token.
//! - **Auth at the handshake**: `Sec-WebSocket-Protocol: bearer, <token>` (the server answers
//!   with the `bearer` subprotocol) and the tenant in `X-Tenant-ID` or `?tenant=`; a bad token
//!   or tenant is refused with the usual 401/404 before the upgrade (`Authorization: Bearer`
//!   works the same for clients that can set headers). **Or by a first frame**
//!   `{"type":"auth","token","tenant"}` within the idle timeout; a failure gets an `error` frame
//!   and close code 1008.
//! - **Frames**: `{"type":"message","session_id","content","locale"?}` starts an answer
//!   (one at a time), `{"type":"cancel"}` cancels it. The server sends
//!   `{"type":"delta"|"citations"|"done"|"error","id",…}` with the SSE payloads, and
//!   `{"type":"ready"}` after authentication.
//! - **Limits**: pings every `chat.ws_ping_secs`; no frame from the client (pongs count) for
//!   `chat.ws_idle_timeout_secs` closes it (1000, "idle"); a frame over
//!   `chat.ws_max_frame_bytes` closes it with 1009. Closing the socket drops the viewer, which
//!   cancels the answer unless another viewer is attached.

use actix_web::{HttpRequest, HttpResponse, get, web};
use actix_ws::{AggregatedMessage as WsMessage, CloseCode, CloseReason, ProtocolError};
use chat::{ChatSessionId, Locale, Subscription};
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, Problem};
use crate::routes::chat::event_payload;
use crate::state::AppState;
use crate::tenant::{Access, Member};

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(chat_ws);
}

/// A client frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Auth {
        token: String,
        tenant: String,
    },
    Message {
        session_id: String,
        content: String,
        locale: Option<String>,
    },
    Cancel,
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    tenant: Option<String>,
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
    params(
        ("Sec-WebSocket-Protocol" = Option<String>, Header, description = "`bearer, <token>`"),
        ("X-Tenant-ID" = Option<String>, Header, description = "organization id or slug (or `?tenant=`)")
    ),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)
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
    let tenant = req
        .headers()
        .get("x-tenant-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.into_inner().tenant);
    // Non-browser clients may send `Authorization: Bearer` instead.
    let token = protocol_token(&req).or_else(|| crate::auth::bearer(&req).ok().map(str::to_owned));
    let access = match token {
        Some(token) => {
            let tenant = tenant.ok_or(ApiError::BadRequest {
                code: "tenant_required",
                detail: "name the organization in X-Tenant-ID or ?tenant=".to_owned(),
            })?;
            Some(
                crate::tenant::resolve::<Member, crate::limits::Unlimited>(
                    state.clone(),
                    Ok(token),
                    Ok(tenant),
                )
                .await?,
            )
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
    let ip = crate::auth::client_ip(&req);
    actix_web::rt::spawn(serve(state, access, ip, session, stream));
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

async fn serve(
    state: web::Data<AppState>,
    mut access: Option<Access<Member>>,
    ip: String,
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    let idle = state.ws.idle_timeout;
    let mut ping = tokio::time::interval(state.ws.ping_interval);
    ping.tick().await;
    let mut deadline = tokio::time::Instant::now() + idle;
    let mut current: Option<Subscription> = None;
    if access.is_some() && !send_json(&mut session, &serde_json::json!({"type": "ready"})).await {
        return;
    }
    let close = loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                break Some(CloseReason { code: CloseCode::Normal, description: Some("idle".into()) });
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
                deadline = tokio::time::Instant::now() + idle;
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
                        match on_frame(&state, &mut access, &ip, &mut current, &mut session, &text).await {
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

/// Handles one text frame; `Err` closes the socket (with a reason when there is one).
async fn on_frame(
    state: &web::Data<AppState>,
    access: &mut Option<Access<Member>>,
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
                "frames are {\"type\":\"auth\"|\"message\"|\"cancel\", ...}",
            )
            .await;
            return if ok { Ok(()) } else { Err(None) };
        }
    };
    let sent = match (frame, access.as_ref()) {
        (ClientFrame::Auth { token, tenant }, None) => {
            match crate::tenant::resolve::<Member, crate::limits::Unlimited>(
                state.clone(),
                Ok(token),
                Ok(tenant),
            )
            .await
            {
                Ok(a) => {
                    *access = Some(a);
                    send_json(session, &serde_json::json!({"type": "ready"})).await
                }
                Err(e) => {
                    tracing::info!(code = e.code(), "WebSocket authentication refused");
                    let _ = send_error(session, e.code(), &problem_detail(&e)).await;
                    return Err(Some(CloseReason {
                        code: CloseCode::Policy,
                        description: Some("authentication failed".into()),
                    }));
                }
            }
        }
        (ClientFrame::Auth { .. }, Some(_)) => {
            send_error(session, "validation_failed", "already authenticated").await
        }
        (_, None) => {
            let _ = send_error(session, "unauthenticated", "authenticate first").await;
            return Err(Some(CloseReason {
                code: CloseCode::Policy,
                description: Some("authentication required".into()),
            }));
        }
        (ClientFrame::Cancel, Some(_)) => {
            if let Some(s) = current.as_ref() {
                s.cancel();
            }
            true
        }
        (
            ClientFrame::Message {
                session_id,
                content,
                locale,
            },
            Some(a),
        ) => {
            if current.is_some() {
                send_error(
                    session,
                    "conflict",
                    "an answer is already streaming; cancel it first",
                )
                .await
            } else {
                // Each question counts against the chat budgets, as over HTTP.
                let decision = crate::limits::count(
                    state,
                    billing::RateClass::Chat,
                    ip.to_owned(),
                    Some(&a.ctx),
                )
                .await;
                let started = match (
                    crate::limits::verdict(billing::RateClass::Chat, decision),
                    ChatSessionId::parse(&session_id),
                ) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(id)) => state
                        .chat
                        .send(
                            &a.ctx,
                            id,
                            &content,
                            locale.as_deref().map(Locale::from_tag),
                        )
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
        }
    };
    if sent { Ok(()) } else { Err(None) }
}
