//! Issue 15, item 5: any server resumes any live answer. Two servers share one PostgreSQL and
//! one Redis (the production setup); an answer runs on server A and its client reconnects to
//! server B, which follows the answer's stored message (checkpointed by A at most every
//! second), keeps A's run alive while it watches, and passes a cancel on to it; if A dies, B's
//! viewer gets the end the sweeper gives the answer.
//!
//! These tests inject no outage: they run on the shared PostgreSQL and Redis.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::{TestApp, TestOptions, spawn_app_with};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const FAKE_MODEL: &str = "gpt-4o-mini";

/// Thirty words, as in the trial; 38 pieces of the fake's 4 characters.
const REPLY: &str = "One two three four five six seven eight nine ten eleven twelve thirteen \
fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two \
twenty-three twenty-four twenty-five twenty-six twenty-seven twenty-eight twenty-nine thirty.";

/// A server on the shared PostgreSQL and Redis whose provider (the fake) serves
/// [`FAKE_MODEL`] for chat, with the production `resume_grace` (3 s).
fn production(fake: &FakeOpenAi) -> TestOptions {
    TestOptions::production()
        .chatting_with(fake.base_url())
        .tweak(|s| {
            s.provider.first_token_timeout_secs = 5;
            s.provider.idle_timeout_secs = 600;
        })
}

/// [`production`] with a grace of 1 s, so that an answer outlives several of them.
fn short_grace(fake: &FakeOpenAi) -> TestOptions {
    production(fake).tweak(|s| s.chat.resume_grace_ms = 1_000)
}

/// Two servers (A, B) over one database and cache, an owner and a session, the provider
/// streaming [`REPLY`] one piece every `pace`: `(fake, a, b, token, org, session)`.
async fn two_servers(
    options: fn(&FakeOpenAi) -> TestOptions,
    pace: Duration,
) -> Option<(FakeOpenAi, TestApp, TestApp, String, String, String)> {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return None;
    }
    let fake = FakeOpenAi::builder()
        .chat_models(&[FAKE_MODEL])
        .reply(REPLY)
        .start();
    let a = spawn_app_with(options(&fake)).await;
    let b = a.sibling(None).await;
    let (token, org) = a.owner("ada").await;
    let session = new_session(&a, &token, &org).await;
    fake.push_faults([Fault::Paced(pace)]);
    Some((fake, a, b, token, org, session))
}

async fn new_session(app: &TestApp, token: &str, org: &str) -> String {
    let (status, s) = app
        .call_in(
            token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({})),
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    s["id"].as_str().expect("id").to_owned()
}

/// One SSE event: `(id, name, data)`.
type Event = (String, String, Value);

/// The complete events of an SSE text (a block cut off at its end is left out).
fn events(text: &str) -> Vec<Event> {
    let complete = text.rfind("\n\n").map_or("", |end| &text[..end]);
    complete
        .split("\n\n")
        .filter_map(|block| {
            let field = |f: &str| block.lines().find_map(|l| l.strip_prefix(f));
            let name = field("event: ")?;
            let data = field("data: ")?;
            Some((
                field("id: ").unwrap_or_default().to_owned(),
                name.to_owned(),
                serde_json::from_str(data).ok()?,
            ))
        })
        .collect()
}

fn text_of(events: &[Event]) -> String {
    events
        .iter()
        .filter(|(_, n, _)| n == "delta")
        .filter_map(|(_, _, d)| d["text"].as_str())
        .collect()
}

/// Every delta's id says how many characters the viewer has after it (`…:d<n>`), counting
/// from `before`: nothing repeated, nothing skipped.
fn assert_positions(events: &[Event], before: usize) {
    let mut has = before;
    for (id, name, data) in events.iter().filter(|(_, n, _)| n == "delta") {
        has += data["text"].as_str().unwrap_or_default().chars().count();
        assert!(id.ends_with(&format!(":d{has}")), "{name} {id} after {has}");
    }
}

/// Asks on `app` with `stream: true` and reads until `deltas` whole delta events came: the
/// open body and the events read.
async fn ask_streamed(
    app: &TestApp,
    token: &str,
    org: &str,
    session: &str,
    deltas: usize,
) -> (
    impl futures_util::Stream<Item = reqwest::Result<impl AsRef<[u8]> + use<>>> + Unpin + use<>,
    Vec<Event>,
) {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/chat/sessions/{session}/messages")))
        .bearer_auth(token)
        .header("X-Tenant-ID", org)
        .json(&json!({"content": "Count to thirty.", "stream": true}))
        .send()
        .await
        .expect("a response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    loop {
        let got = events(&seen);
        if got.iter().filter(|(_, n, _)| n == "delta").count() >= deltas {
            return (body, got);
        }
        let chunk = body.next().await.expect("more").expect("bytes");
        seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
    }
}

/// `GET /chat/sessions/{session}/stream` after `last` on `app`, as `token` in `org`.
async fn resume(
    app: &TestApp,
    token: &str,
    org: &str,
    session: &str,
    last: &str,
) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/v1/chat/sessions/{session}/stream")))
        .bearer_auth(token)
        .header("X-Tenant-ID", org)
        .header("Last-Event-ID", last)
        .send()
        .await
        .expect("a response")
}

/// Reads a resumed stream to its end.
async fn read_to_end(resp: reqwest::Response) -> Vec<Event> {
    assert_eq!(resp.status(), StatusCode::OK);
    let text = tokio::time::timeout(Duration::from_secs(60), resp.text())
        .await
        .expect("the stream ended within a minute")
        .expect("the body");
    events(&text)
}

/// The session's last message, read on `app`.
async fn last_message(app: &TestApp, token: &str, org: &str, session: &str) -> Value {
    let (status, page) = app
        .call_in(
            token,
            Method::GET,
            &format!("/api/v1/chat/sessions/{session}/messages"),
            None,
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default()
}

/// The id of the last event of `read`.
fn last_id(read: &[Event]) -> String {
    read.last().map(|(id, _, _)| id.clone()).expect("an event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnecting_to_another_server_gets_the_rest_of_a_live_answer() {
    // About 2 s of answer: it ends within A's grace (3 s) after its client left.
    let Some((fake, a, b, token, org, s)) =
        two_servers(production, Duration::from_millis(50)).await
    else {
        return;
    };
    let (body, first) = ask_streamed(&a, &token, &org, &s, 3).await;
    drop(body);
    let resumed = read_to_end(resume(&b, &token, &org, &s, &last_id(&first)).await).await;

    let (_, last, end) = resumed.last().cloned().expect("events");
    assert_eq!(last, "done", "{resumed:?}");
    let before = text_of(&first);
    assert_positions(&resumed, before.chars().count());
    assert_eq!(format!("{before}{}", text_of(&resumed)), REPLY);
    assert!(resumed.iter().any(|(_, n, _)| n == "citations"));
    let stored = last_message(&b, &token, &org, &s).await;
    assert_eq!(stored["id"], end["message_id"]);
    assert_eq!(stored["status"], "complete", "{stored}");
    assert_eq!(stored["content"], REPLY);
    assert_eq!(fake.request_count(), 1, "asked once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_another_server_keeps_the_answer_running_past_the_grace() {
    // About 9 s of answer, against a grace of 1 s.
    let Some((fake, a, b, token, org, s)) =
        two_servers(short_grace, Duration::from_millis(250)).await
    else {
        return;
    };
    let (body, first) = ask_streamed(&a, &token, &org, &s, 3).await;
    drop(body);
    let left = Instant::now();
    let resumed = read_to_end(resume(&b, &token, &org, &s, &last_id(&first)).await).await;
    let away = left.elapsed();

    let (_, last, _) = resumed.last().cloned().expect("events");
    assert_eq!(last, "done", "{resumed:?}");
    let before = text_of(&first);
    assert_positions(&resumed, before.chars().count());
    assert_eq!(format!("{before}{}", text_of(&resumed)), REPLY);
    // Text arrives as A checkpoints it: in several pieces, not all at the end.
    let pieces = resumed.iter().filter(|(_, n, _)| n == "delta").count();
    assert!(pieces >= 3, "{pieces} pieces: {resumed:?}");
    assert!(
        away > Duration::from_secs(4),
        "the answer outlived several graces: {away:?}"
    );
    assert_eq!(fake.abandoned_streams(), 0, "the run was never cancelled");
    let stored = last_message(&a, &token, &org, &s).await;
    assert_eq!(stored["status"], "complete", "{stored}");
    assert_eq!(stored["content"], REPLY);
}

/// A WebSocket authenticated on `app` by a first frame.
async fn socket(
    app: &TestApp,
    token: &str,
    org: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = app.url("/api/v1/chat/ws").replacen("http://", "ws://", 1);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(url.into_client_request().expect("a request"))
            .await
            .expect("connected");
    let auth = json!({"type": "auth", "token": token, "tenant": org});
    ws.send(Ws::text(auth.to_string())).await.expect("sent");
    let ready = next_frame(&mut ws).await.expect("a frame");
    assert_eq!(ready["type"], "ready", "{ready}");
    ws
}

/// The next JSON text frame (pings skipped); `None` once the socket closed.
async fn next_frame(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Value> {
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("a frame within 30 s")
    {
        match m.ok()? {
            Ws::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Ws::Close(_) => return None,
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_another_server_stops_the_run() {
    let Some((fake, a, b, token, org, s)) =
        two_servers(short_grace, Duration::from_millis(250)).await
    else {
        return;
    };
    // A's client stays connected: only the cancel can stop the run.
    let (_body, first) = ask_streamed(&a, &token, &org, &s, 3).await;
    let mut ws = socket(&b, &token, &org).await;
    let frame = json!({"type": "resume", "session_id": s, "last_event_id": last_id(&first)});
    ws.send(Ws::text(frame.to_string())).await.expect("sent");
    let delta = next_frame(&mut ws).await.expect("a frame");
    assert_eq!(delta["type"], "delta", "{delta}");
    ws.send(Ws::text(json!({"type": "cancel"}).to_string()))
        .await
        .expect("sent");
    let asked = Instant::now();
    assert!(
        fake.until(Duration::from_secs(3), |f| f.abandoned_streams() == 1)
            .await,
        "the provider's stream was dropped"
    );
    let stopped = asked.elapsed();
    assert!(stopped < Duration::from_millis(2_500), "{stopped:?}");
    // B's viewer gets the end, as stored.
    let end = loop {
        let f = next_frame(&mut ws).await.expect("a frame");
        if f["type"] == "error" || f["type"] == "done" {
            break f;
        }
    };
    assert_eq!(end["type"], "error", "{end}");
    assert_eq!(end["code"], "incomplete", "{end}");
    let stored = last_message(&b, &token, &org, &s).await;
    assert_eq!(stored["status"], "incomplete", "{stored}");
    let content = stored["content"].as_str().unwrap_or_default();
    assert!(
        REPLY.starts_with(content) && content.len() < REPLY.len(),
        "{content}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_answer_resumes_on_another_server_only_for_its_tenant_and_session() {
    let Some((fake, a, b, token, org, s)) =
        two_servers(short_grace, Duration::from_millis(100)).await
    else {
        return;
    };
    let (_body, first) = ask_streamed(&a, &token, &org, &s, 3).await;
    let last = last_id(&first);
    // Another organization's owner, on B, with the message's id.
    let (eve, eve_org) = b.owner("eve").await;
    let eve_session = new_session(&b, &eve, &eve_org).await;
    for (who, tenant, session) in [
        (&eve, &eve_org, &s),
        (&eve, &eve_org, &eve_session),
        (&eve, &org, &s),
    ] {
        let resp = resume(&b, who, tenant, session, &last).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{tenant} {session}");
    }
    // The owner, in another of her sessions.
    let other = new_session(&b, &token, &org).await;
    let resp = resume(&b, &token, &org, &other, &last).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Her session: followed.
    let resumed = read_to_end(resume(&b, &token, &org, &s, &last).await).await;
    assert_eq!(
        resumed.last().map(|(_, n, _)| n.as_str()),
        Some("done"),
        "{resumed:?}"
    );
    assert_eq!(format!("{}{}", text_of(&first), text_of(&resumed)), REPLY);
    drop(fake);
}

/// A server on its own runtime, so that the test can kill it (every task dropped where it
/// stands, as `kill -9` would).
fn on_own_runtime(opts: TestOptions) -> (tokio::runtime::Runtime, TestApp) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let app = std::thread::scope(|s| {
        s.spawn(|| rt.block_on(spawn_app_with(opts)))
            .join()
            .expect("the app started")
    });
    (rt, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_following_an_answer_whose_server_died_gets_its_end_once_it_is_swept() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let fake = FakeOpenAi::builder()
        .chat_models(&[FAKE_MODEL])
        .reply(REPLY)
        .start();
    // Leases of 3 s, swept 2 s after they ran out (usage and end retried 1 s each).
    let (doomed, a) = on_own_runtime(production(&fake).tweak(|s| {
        s.chat.answer_lease_secs = 3;
        s.chat.answer_store_retry_secs = 1;
        s.billing.ledger_retry_secs = 1;
    }));
    let b = a.sibling(None).await;
    let (token, org) = a.owner("kim").await;
    let s = new_session(&a, &token, &org).await;
    // Six pieces, then the provider stalls for ten minutes.
    fake.push_faults([Fault::StallAfter(6, Duration::from_secs(600))]);
    let (body, first) = ask_streamed(&a, &token, &org, &s, 6).await;
    // Let a checkpoint hold some of it, then kill A.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    doomed.shutdown_background();
    drop(body);

    let resumed = read_to_end(resume(&b, &token, &org, &s, &last_id(&first)).await).await;
    let (_, last, end) = resumed.last().cloned().expect("events");
    assert_eq!(last, "error", "{resumed:?}");
    assert_eq!(end["code"], "incomplete", "{end}");
    let stored = last_message(&b, &token, &org, &s).await;
    assert_eq!(stored["status"], "incomplete", "{stored}");
    let content = stored["content"].as_str().unwrap_or_default();
    assert!(
        !content.is_empty() && REPLY.starts_with(content),
        "{stored}"
    );
    // The viewer had more than the checkpoint, or got the checkpoint's rest: never a
    // character twice.
    let seen = format!("{}{}", text_of(&first), text_of(&resumed));
    assert!(
        seen.starts_with(content) || content.starts_with(&seen),
        "{seen}"
    );
    assert_positions(&resumed, text_of(&first).chars().count());
    drop(b);
    drop(a);
}
