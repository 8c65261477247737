//! Attacks on `/chat/ws`, through a real WebSocket client: an open socket must follow its
//! credentials (revoked key, removed or demoted member, logout, password change elsewhere,
//! disabled account, expired token), an unauthenticated socket must close at its deadline
//! whatever it sends, and one address may hold only so many sockets.
//!
//! Revocations live in storage and caches, so those run on both backends.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use kernel::{Clock as _, Role, SystemClock, TenantId, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy::MembershipRepository as _;
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::{TestApp, TestOptions, spawn_app_with};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PASSWORD: &str = "correct horse battery";

const HANDBOOK: &str = "Travel policy.\n\nEmployees book flights through the travel desk.\n\n\
Expenses.\n\nReceipts must be uploaded within thirty days.";

const QUESTION: &str = "How many days for receipts?";

/// Re-checks every second, so that an idle socket notices a revocation quickly.
fn fast(s: &mut settings::Settings) {
    s.chat.ws_reauth_secs = 1;
    s.chat.ws_idle_timeout_secs = 30;
}

fn options(production: bool) -> TestOptions {
    let base = if production {
        TestOptions::production()
    } else {
        TestOptions::default()
    };
    base.tweak(fast)
}

/// Both backends, unless the services are skipped.
fn backends() -> Vec<bool> {
    if testkit::services_skipped("PostgreSQL + Redis") {
        vec![false]
    } else {
        vec![false, true]
    }
}

struct Person {
    id: UserId,
    access: String,
    refresh: String,
}

async fn register(app: &TestApp, name: &str) -> Person {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": format!("{name}@example.com"), "password": PASSWORD, "name": name}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "registering {name}");
    let b: Value = res.json().await.expect("json");
    Person {
        id: UserId::parse(b["user"]["id"].as_str().expect("id")).expect("uuid"),
        access: b["tokens"]["access_token"]
            .as_str()
            .expect("access")
            .to_owned(),
        refresh: b["tokens"]["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    }
}

async fn login(app: &TestApp, name: &str) -> Value {
    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": format!("{name}@example.com"), "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "login of {name}");
    res.json().await.expect("json")
}

/// An organization owned by `owner`, with one ready document in a collection.
struct Org {
    id: String,
    collection: String,
}

async fn org(app: &TestApp, owner: &Person, slug: &str) -> Org {
    let (s, o) = app
        .call(
            &owner.access,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": slug, "slug": slug})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["id"].as_str().expect("org id").to_owned();
    let collection = app.collection(&owner.access, &id, "Handbook").await;
    app.ready_document(&owner.access, &id, "handbook.txt", HANDBOOK, &collection)
        .await;
    Org { id, collection }
}

async fn join(app: &TestApp, org: &Org, who: &Person, role: Role) {
    app.store()
        .await
        .add(
            TenantId::parse(&org.id).expect("org id"),
            who.id,
            role,
            SystemClock.now(),
        )
        .await
        .expect("membership");
}

/// A chat session over the organization's collection, made by `token`.
async fn chat_session(app: &TestApp, token: &str, org: &Org) -> String {
    let (s, b) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({"collection_ids": [org.collection]})),
            Some(&org.id),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().expect("id").to_owned()
}

fn ws_url(app: &TestApp) -> String {
    app.url("/api/v1/chat/ws").replacen("http://", "ws://", 1)
}

async fn connect(app: &TestApp) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let req = ws_url(app).into_client_request().expect("a request");
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The next JSON text frame, skipping pings; `None` when the socket closed.
async fn next_json(ws: &mut Socket) -> Option<Value> {
    while let Some(m) = ws.next().await {
        match m.ok()? {
            Ws::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Ws::Close(_) => return None,
            _ => {}
        }
    }
    None
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Ws::text(v.to_string())).await.expect("sent");
}

/// A socket authenticated by a first `auth` frame.
async fn authed(app: &TestApp, token: &str, tenant: &str) -> Socket {
    let mut ws = connect(app).await.expect("connected");
    send(
        &mut ws,
        json!({"type": "auth", "token": token, "tenant": tenant}),
    )
    .await;
    let ready = next_json(&mut ws).await.expect("a frame");
    assert_eq!(ready["type"], "ready", "{ready}");
    ws
}

/// Asks and reads the answer to its end: the text, and whether citations came.
async fn answer(ws: &mut Socket, session: &str) -> (String, bool) {
    send(
        ws,
        json!({"type": "message", "session_id": session, "content": QUESTION}),
    )
    .await;
    let mut text = String::new();
    let mut cited = false;
    while let Some(v) = next_json(ws).await {
        match v["type"].as_str() {
            Some("delta") => text.push_str(v["text"].as_str().unwrap_or_default()),
            Some("citations") => cited = v["citations"].as_array().is_some_and(|c| !c.is_empty()),
            Some("done") => return (text, cited),
            _ => panic!("unexpected frame {v}"),
        }
    }
    panic!("the socket closed during the answer");
}

/// What the server said last before closing: the error frames' codes, then the close code and
/// reason. Fails when nothing closes within `within`.
async fn closing(ws: &mut Socket, within: Duration) -> (Vec<String>, u16, String) {
    let mut errors = Vec::new();
    let read = async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Ws::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                    assert_ne!(v["type"], "delta", "an answer after access ended: {v}");
                    assert_ne!(v["type"], "citations", "citations after access ended: {v}");
                    if v["type"] == "error" {
                        errors.push(v["code"].as_str().unwrap_or_default().to_owned());
                    }
                }
                Ok(Ws::Close(f)) => {
                    return f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                }
                Ok(_) => {}
                Err(e) => panic!("the socket failed instead of closing: {e}"),
            }
        }
        None
    };
    let close = tokio::time::timeout(within, read)
        .await
        .expect("the socket was not closed in time")
        .expect("a close frame with a code");
    (errors, close.0, close.1)
}

/// Everything a revocation test needs: an owner, a second member, their organization.
struct World {
    ann: Person,
    bob: Person,
    org: Org,
}

async fn world(app: &TestApp) -> World {
    let ann = register(app, "ann").await;
    let bob = register(app, "bob").await;
    let org = org(app, &ann, "acme").await;
    join(app, &org, &bob, Role::Member).await;
    World { ann, bob, org }
}

/// The shape of every revocation test: two sockets of the same credentials answer with
/// citations; `$revoke` takes the access away; then a question on one socket is refused and
/// closes it (every question is authorized at that moment), and the other, idle, closes by
/// itself at the next re-check. Both say `access_revoked` and close with 1008 "access revoked".
macro_rules! revoked_then {
    ($app:expr, $token:expr, $tenant:expr, $session:expr, $revoke:expr) => {{
        let app: &TestApp = $app;
        let mut asking = authed(app, $token, $tenant).await;
        let mut idle = authed(app, $token, $tenant).await;
        let (text, cited) = answer(&mut asking, $session).await;
        assert!(text.contains("thirty days") && cited, "{text}");
        $revoke;
        // A question right away: refused, never answered, the socket closed.
        send(
            &mut asking,
            json!({"type": "message", "session_id": $session, "content": QUESTION}),
        )
        .await;
        let (errors, code, reason) = closing(&mut asking, Duration::from_secs(5)).await;
        assert_eq!(
            (errors.as_slice(), code, reason.as_str()),
            (&["access_revoked".to_owned()][..], 1008, "access revoked")
        );
        // Silence: the periodic re-check closes it.
        let (errors, code, reason) = closing(&mut idle, Duration::from_secs(5)).await;
        assert_eq!(
            (errors.as_slice(), code, reason.as_str()),
            (&["access_revoked".to_owned()][..], 1008, "access revoked")
        );
    }};
}

async fn revoked_api_key(production: bool) {
    let app = spawn_app_with(options(production)).await;
    let w = world(&app).await;
    let (s, created) = app
        .call(
            &w.ann.access,
            Method::POST,
            &format!("/api/v1/orgs/{}/api-keys", w.org.id),
            Some(json!({"name": "bot", "role": "member"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let key = created["secret"].as_str().expect("secret").to_owned();
    let key_id = created["api_key"]["id"].as_str().expect("id").to_owned();
    let session = chat_session(&app, &key, &w.org).await;
    revoked_then!(&app, &key, &w.org.id, &session, {
        let (s, _) = app
            .call(
                &w.ann.access,
                Method::DELETE,
                &format!("/api/v1/orgs/{}/api-keys/{key_id}", w.org.id),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_api_key_closes_open_socket() {
    for production in backends() {
        revoked_api_key(production).await;
    }
}

async fn removed_member(production: bool) {
    let app = spawn_app_with(options(production)).await;
    let w = world(&app).await;
    let session = chat_session(&app, &w.bob.access, &w.org).await;
    revoked_then!(&app, &w.bob.access, &w.org.id, &session, {
        let (s, b) = app
            .call(
                &w.ann.access,
                Method::DELETE,
                &format!("/api/v1/orgs/{}/members/{}", w.org.id, w.bob.id),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_member_socket_closes() {
    for production in backends() {
        removed_member(production).await;
    }
}

async fn demoted_member(production: bool) {
    let app = spawn_app_with(options(production)).await;
    let w = world(&app).await;
    let session = chat_session(&app, &w.bob.access, &w.org).await;
    revoked_then!(&app, &w.bob.access, &w.org.id, &session, {
        let (s, b) = app
            .call(
                &w.ann.access,
                Method::PATCH,
                &format!("/api/v1/orgs/{}/members/{}", w.org.id, w.bob.id),
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_demoted_to_viewer_socket_closes() {
    for production in backends() {
        demoted_member(production).await;
    }
}

async fn logged_out(production: bool) {
    let app = spawn_app_with(options(production)).await;
    let w = world(&app).await;
    let session = chat_session(&app, &w.bob.access, &w.org).await;
    revoked_then!(&app, &w.bob.access, &w.org.id, &session, {
        let res = app
            .post_json(
                "/api/v1/auth/logout",
                &json!({"refresh_token": w.bob.refresh}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logged_out_session_socket_closes() {
    for production in backends() {
        logged_out(production).await;
    }
}

async fn password_changed(production: bool) {
    let app = spawn_app_with(options(production)).await;
    let w = world(&app).await;
    let session = chat_session(&app, &w.bob.access, &w.org).await;
    // Bob changes his password from another device (another session).
    let elsewhere = login(&app, "bob").await;
    let elsewhere = elsewhere["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    revoked_then!(&app, &w.bob.access, &w.org.id, &session, {
        let (s, b) = app
            .call(
                &elsewhere,
                Method::POST,
                "/api/v1/auth/password/change",
                Some(json!({"current_password": PASSWORD, "new_password": "a brand new secret"})),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    });
    // The session that made the change keeps its socket.
    let mut ws = authed(&app, &elsewhere, &w.org.id).await;
    let (text, _) = answer(&mut ws, &session).await;
    assert!(text.contains("thirty days"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_change_closes_other_sessions_sockets() {
    for production in backends() {
        password_changed(production).await;
    }
}

async fn disabled_user(production: bool) {
    let app = spawn_app_with(options(production)).await;
    let w = world(&app).await;
    let root = register(&app, "root").await;
    app.make_platform_admin(root.id).await;
    let session = chat_session(&app, &w.bob.access, &w.org).await;
    revoked_then!(&app, &w.bob.access, &w.org.id, &session, {
        let (s, b) = app
            .call(
                &root.access,
                Method::PATCH,
                &format!("/api/v1/admin/users/{}", w.bob.id),
                Some(json!({"disabled": true})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabled_user_socket_closes() {
    for production in backends() {
        disabled_user(production).await;
    }
}

async fn answer_in_flight(production: bool) {
    let fake = FakeOpenAi::builder()
        .dimensions(1536)
        .chat_models(&["gpt-4o-mini"])
        .reply_with(|_: &Value| "Receipts must be uploaded within thirty days. [S1]".to_owned())
        .start();
    let base = if production {
        TestOptions::production()
    } else {
        TestOptions::default()
    };
    let app = spawn_app_with(
        TestOptions {
            provider: Some((fake.base_url(), "text-embedding-3-small".to_owned())),
            ..base
        }
        .tweak(|s| {
            fast(s);
            s.provider.chat_models = vec!["gpt-4o-mini".to_owned()];
            s.provider.first_token_timeout_secs = 5;
            s.chat.resume_grace_ms = 0;
        }),
    )
    .await;
    let w = world(&app).await;
    let session = chat_session(&app, &w.bob.access, &w.org).await;
    // One piece, then the provider stalls: only a cancel ends the answer.
    fake.push_faults([Fault::StallAfter(1, Duration::from_secs(60))]);
    let mut ws = authed(&app, &w.bob.access, &w.org.id).await;
    send(
        &mut ws,
        json!({"type": "message", "session_id": session, "content": QUESTION}),
    )
    .await;
    let first = next_json(&mut ws).await.expect("a frame");
    assert_eq!(first["type"], "delta", "{first}");
    let (s, _) = app
        .call(
            &w.ann.access,
            Method::DELETE,
            &format!("/api/v1/orgs/{}/members/{}", w.org.id, w.bob.id),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (errors, code, reason) = closing(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(
        (errors.as_slice(), code, reason.as_str()),
        (&["access_revoked".to_owned()][..], 1008, "access revoked")
    );
    // The answer stopped: the provider's stream was dropped (it would have stalled 60 s).
    let mut waited = 0;
    while fake.abandoned_streams() == 0 && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(fake.abandoned_streams() >= 1, "the answer went on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_socket_stops_the_answer_in_flight() {
    for production in backends() {
        answer_in_flight(production).await;
    }
}

async fn token_expiry(production: bool) {
    let base = if production {
        TestOptions::production()
    } else {
        TestOptions::default()
    };
    let app = spawn_app_with(base.tweak(|s| {
        fast(s);
        // Below the configurable minimum, for the test's sake.
        s.auth.access_token_ttl_secs = 6;
    }))
    .await;
    let w = world(&app).await;
    let session = chat_session(&app, &w.bob.access, &w.org).await;
    // Bob's own token (no refresh): the socket ends with it.
    let started = std::time::Instant::now();
    let fresh = login(&app, "bob").await;
    let mut expiring = authed(&app, fresh["access_token"].as_str().expect("t"), &w.org.id).await;
    let (errors, code, reason) = closing(&mut expiring, Duration::from_secs(8)).await;
    assert_eq!(
        (errors.as_slice(), code, reason.as_str()),
        (&["token_expired".to_owned()][..], 1008, "token expired")
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "closed too early"
    );

    // A socket given a fresh token (same account, same organization) lives on past the first
    // token's expiry, until the fresh one's.
    let tokens = login(&app, "bob").await;
    let mut ws = connect(&app).await.expect("connected");
    send(
        &mut ws,
        json!({"type": "auth", "token": tokens["access_token"], "tenant": w.org.id}),
    )
    .await;
    let ready = next_json(&mut ws).await.expect("ready");
    let first_expiry = ready["expires_at"].as_str().expect("expires_at").to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let res = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let refreshed: Value = res.json().await.expect("json");
    send(
        &mut ws,
        json!({"type": "auth", "token": refreshed["access_token"]}),
    )
    .await;
    let ready = next_json(&mut ws).await.expect("ready again");
    assert_eq!(ready["type"], "ready", "{ready}");
    assert!(
        ready["expires_at"].as_str().expect("expires_at") > first_expiry.as_str(),
        "{ready}"
    );
    // Past the first token's expiry: still answering.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (text, _) = answer(&mut ws, &session).await;
    assert!(text.contains("thirty days"), "{text}");
    let (errors, code, reason) = closing(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(
        (errors.as_slice(), code, reason.as_str()),
        (&["token_expired".to_owned()][..], 1008, "token expired")
    );

    // A fresh token of another account cannot take over an open socket.
    let bob = login(&app, "bob").await;
    let mut ws = authed(&app, bob["access_token"].as_str().expect("t"), &w.org.id).await;
    let ann = login(&app, "ann").await;
    send(
        &mut ws,
        json!({"type": "auth", "token": ann["access_token"], "tenant": w.org.id}),
    )
    .await;
    let (errors, code, _) = closing(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(
        (errors.as_slice(), code),
        (&["validation_failed".to_owned()][..], 1008)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_access_token_closes_socket_unless_refreshed() {
    for production in backends() {
        token_expiry(production).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_socket_closes_at_deadline_despite_pongs() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.chat.ws_idle_timeout_secs = 2;
    }))
    .await;
    let mut ws = connect(&app).await.expect("connected");
    let started = std::time::Instant::now();
    // Keep talking, never authenticating: pongs, pings and frames that are not JSON.
    let close = loop {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "an unauthenticated socket is still open"
        );
        ws.send(Ws::Pong(Vec::new().into())).await.ok();
        ws.send(Ws::Ping(Vec::new().into())).await.ok();
        ws.send(Ws::text("hello")).await.ok();
        match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
            Ok(Some(Ok(Ws::Close(f)))) => break f,
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close frame with a reason");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1008, "authentication timeout")
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_address_socket_cap() {
    let app = spawn_app_with(TestOptions::default().tweak(|s| {
        s.chat.ws_max_per_address = 3;
        s.chat.ws_idle_timeout_secs = 30;
    }))
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&app).await.expect("under the cap"));
    }
    // One more from the same address: 429 with a clear code, before any upgrade.
    match connect(&app).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 429);
            let body: Value =
                serde_json::from_slice(res.body().as_deref().unwrap_or_default()).expect("JSON");
            assert_eq!(body["code"], "too_many_sockets", "{body}");
        }
        Err(e) => panic!("expected 429, got {e}"),
        Ok(_) => panic!("a fourth socket was opened"),
    }
    // Authenticated or not, every socket counts: a valid token does not lift the cap.
    let ann = register(&app, "ann").await;
    let (s, acme) = app
        .call(
            &ann.access,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": "acme", "slug": "acme"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{acme}");
    let mut req = ws_url(&app).into_client_request().expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("bearer, {}", ann.access).parse().expect("header"),
    );
    req.headers_mut().insert(
        "X-Tenant-ID",
        acme["id"].as_str().expect("id").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 429);
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }

    // Sockets that go away give their place back: one dropped without a close handshake,
    // one closed properly.
    drop(open.pop());
    let mut polite = open.pop().expect("a socket");
    polite.close(None).await.ok();
    drop(polite);
    let mut reopened = Vec::new();
    let started = std::time::Instant::now();
    while reopened.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed sockets still count"
        );
        match connect(&app).await {
            Ok(ws) => reopened.push(ws),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(connect(&app).await.is_err(), "the cap holds again");
}

/// The `resume` frame (issue 15, item 5) is the stream route's access check over a socket:
/// a stranger in her own organization naming another tenant's session and answer, or her own
/// session with the other tenant's answer, gets `not_found` and not a word of it.
async fn resume_of_another_tenant(production: bool) {
    let app = spawn_app_with(options(production)).await;
    let w = world(&app).await;
    let session = chat_session(&app, &w.ann.access, &w.org).await;
    let mut ann = authed(&app, &w.ann.access, &w.org.id).await;
    send(
        &mut ann,
        json!({"type": "message", "session_id": session, "content": QUESTION}),
    )
    .await;
    let message = loop {
        let v = next_json(&mut ann).await.expect("a frame");
        if v["type"] == "done" {
            break v["message_id"].as_str().expect("a message id").to_owned();
        }
    };
    let eve = register(&app, "eve").await;
    let evil = org(&app, &eve, "evil").await;
    let own = chat_session(&app, &eve.access, &evil).await;
    for target in [&session, &own] {
        let mut ws = authed(&app, &eve.access, &evil.id).await;
        send(
            &mut ws,
            json!({"type": "resume", "session_id": target, "last_event_id": format!("{message}:d0")}),
        )
        .await;
        let v = next_json(&mut ws).await.expect("a frame");
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], "not_found", "{v}");
    }
    // The same frame from its owner replays it: the refusals above are about who asks.
    send(
        &mut ann,
        json!({"type": "resume", "session_id": session, "last_event_id": format!("{message}:d0")}),
    )
    .await;
    let v = next_json(&mut ann).await.expect("a frame");
    assert_eq!(v["type"], "delta", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_answer_cannot_be_resumed_over_a_socket() {
    for production in backends() {
        resume_of_another_tenant(production).await;
    }
}
