//! Webhooks through the HTTP API, on SQLite and on PostgreSQL with Redis: registration (the
//! secret shown once), signed deliveries verified with the Standard Webhooks scheme by a local
//! receiver, retries after a 500, the per-attempt log, redelivery, disabling and deleting, and
//! the attacker's moves: another tenant's ids, a member's or viewer's key, private and loopback
//! destinations (by address and by name), plain http.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::receiver::{Received, Receiver};
use testkit::{TestApp, TestOptions, spawn_app_with};
use webhooks::Secret;

/// Deliveries to the local receiver: http and loopback allowed, quick retries.
fn local_receivers(s: &mut settings::Settings) {
    s.webhooks.allow_http = true;
    s.webhooks.allow_private_destinations = true;
    s.webhooks.backoff_base_secs = 1;
    s.webhooks.max_attempts = 3;
    s.webhooks.poll_interval_ms = 50;
    s.webhooks.timeout_secs = 5;
}

/// `http://` allowed, but not private destinations.
fn http_only(s: &mut settings::Settings) {
    s.webhooks.allow_http = true;
}

const WAIT: Duration = Duration::from_secs(20);

/// The request's signature checked as a receiver would: `v1,` HMAC-SHA256 of
/// `{webhook-id}.{webhook-timestamp}.{body}` under the secret's bytes.
fn assert_signed(r: &Received, secret: &str) {
    let secret = Secret::parse(secret).expect("a whsec_ secret");
    let id = &r.headers["webhook-id"];
    let ts: i64 = r.headers["webhook-timestamp"].parse().expect("a timestamp");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - ts).abs() < 120, "a current timestamp: {ts}");
    let expected = webhooks::signature::sign(&secret, id, ts, r.body.as_bytes());
    assert!(
        r.headers["webhook-signature"]
            .split(' ')
            .any(|s| s == expected),
        "signature {} for {expected}",
        r.headers["webhook-signature"]
    );
    let wrong = Secret::generate().expect("another secret");
    assert_ne!(
        webhooks::signature::sign(&wrong, id, ts, r.body.as_bytes()),
        r.headers["webhook-signature"]
    );
    assert!(id.starts_with("msg_"), "{id}");
    assert_eq!(r.method, "POST");
    assert_eq!(r.headers["content-type"], "application/json");
}

fn body(r: &Received) -> Value {
    serde_json::from_str(&r.body).expect("a JSON body")
}

/// An API key of `org` with `role`.
async fn key(app: &TestApp, token: &str, org: &str, role: &str) -> String {
    let (s, created) = app
        .call(
            token,
            Method::POST,
            &format!("/api/v1/orgs/{org}/api-keys"),
            Some(json!({"name": role, "role": role})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    created["secret"].as_str().expect("secret").to_owned()
}

async fn deliveries(app: &TestApp, token: &str, org: &str, hook: &str) -> Vec<Value> {
    let (s, log) = app
        .call_in(
            token,
            Method::GET,
            &format!("/api/v1/webhooks/{hook}/deliveries"),
            None,
            Some(org),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    log["items"].as_array().expect("items").clone()
}

/// Waits until the endpoint's log has `n` attempts.
async fn logged(app: &TestApp, token: &str, org: &str, hook: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = deliveries(app, token, org, hook).await;
        if log.len() >= n || tokio::time::Instant::now() >= deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario(app: &TestApp) {
    let receiver = Receiver::start().await;
    let (ann, _) = app.owner("ann").await;
    let (bob, _) = app.owner("bob").await;

    // A member's and a viewer's keys cannot manage or read webhooks.
    for role in ["member", "viewer"] {
        let k = key(app, &ann, "ann", role).await;
        let (s, e) = app
            .call_in(
                &k,
                Method::POST,
                "/api/v1/webhooks",
                Some(json!({"url": receiver.url, "events": ["document.ready"]})),
                Some("ann"),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{role} creates: {e}");
        let (s, _) = app
            .call_in(&k, Method::GET, "/api/v1/webhooks", None, Some("ann"))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{role} lists");
    }

    // Bad input: clear 422s.
    for bad in [
        json!({"url": receiver.url, "events": []}),
        json!({"url": receiver.url, "events": ["document.*"]}),
        json!({"url": "ftp://example.com/x", "events": ["document.ready"]}),
        json!({"url": "http://user:pw@127.0.0.1/", "events": ["document.ready"]}),
        json!({"url": receiver.url, "events": ["document.ready"], "secret": "mine"}),
    ] {
        let (s, e) = app
            .call_in(
                &ann,
                Method::POST,
                "/api/v1/webhooks",
                Some(bad.clone()),
                Some("ann"),
            )
            .await;
        assert!(
            s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::BAD_REQUEST,
            "{bad}: {s} {e}"
        );
        assert_eq!(e["status"], s.as_u16(), "problem+json: {e}");
    }

    // Registration: the secret once.
    let (s, created) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({
                "url": receiver.url,
                "events": ["document.ready", "answer.completed", "workflow.completed"],
            })),
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let hook = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["enabled"], true);
    assert_eq!(
        created["events"],
        json!(["document.ready", "workflow.completed", "answer.completed"])
    );
    let (s, list) = app
        .call_in(&ann, Method::GET, "/api/v1/webhooks", None, Some("ann"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], hook.as_str());
    let (s, one) = app
        .call_in(
            &ann,
            Method::GET,
            &format!("/api/v1/webhooks/{hook}"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let secret_b64 = secret.trim_start_matches("whsec_");
    for shown in [&list, &one] {
        assert!(shown.to_string().find(secret_b64).is_none(), "{shown}");
        assert!(shown.to_string().find("secret").is_none(), "{shown}");
    }

    // A document becomes ready: a signed `document.ready`.
    let (s, up) = app
        .upload(
            &ann,
            "ann",
            "hooks.txt",
            b"Webhooks carry signed events.",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let document = up["document"]["id"].as_str().expect("document").to_owned();
    assert_eq!(app.settled(&ann, "ann", &document).await["status"], "ready");
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "one delivery");
    assert_signed(&got[0], &secret);
    assert_eq!(got[0].path, "/hook");
    let event = body(&got[0]);
    assert_eq!(event["type"], "document.ready", "{event}");
    assert_eq!(event["data"]["document_id"], document.as_str(), "{event}");
    assert!(event["timestamp"].is_string(), "{event}");
    assert!(!got[0].body.contains("Webhooks carry"), "no document text");

    // The endpoint fails once: retried with backoff, same id, fresh signature.
    receiver.respond_with(&[500]);
    let (s, up) = app
        .upload(&ann, "ann", "again.txt", b"A second document.", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3, "the 500 was retried");
    assert_eq!(got[1].headers["webhook-id"], got[2].headers["webhook-id"]);
    assert_signed(&got[2], &secret);
    let log = logged(app, &ann, "ann", &hook, 3).await;
    assert_eq!(log.len(), 3, "{log:?}");
    // Newest first: the success, the 500, the first delivery.
    assert_eq!(log[0]["status_code"], 204);
    assert_eq!(log[0]["attempt"], 2);
    assert_eq!(log[0]["error"], Value::Null);
    assert_eq!(log[1]["status_code"], 500);
    assert_eq!(log[1]["attempt"], 1);
    assert!(log[1]["error"].as_str().is_some_and(|e| e.contains("500")));
    assert_eq!(log[1]["event"], "document.ready");

    // Redelivery: the same event again, the same webhook-id.
    let failed = log[1]["id"].as_str().expect("attempt id").to_owned();
    let (s, queued) = app
        .call_in(
            &ann,
            Method::POST,
            &format!("/api/v1/webhooks/deliveries/{failed}/redeliver"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    let got = receiver.wait_for(4, WAIT).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].headers["webhook-id"], got[1].headers["webhook-id"]);
    assert_eq!(got[3].body, got[1].body);
    assert_signed(&got[3], &secret);

    // A chat answer: `answer.completed`, with ids and usage, never the text.
    let (s, session) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({"title": "t"})),
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    let session = session["id"].as_str().expect("session").to_owned();
    let (s, answer) = app
        .call_in(
            &ann,
            Method::POST,
            &format!("/api/v1/chat/sessions/{session}/messages"),
            Some(json!({"content": "What do webhooks carry?"})),
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    let got = receiver.wait_for(5, WAIT).await;
    assert_eq!(got.len(), 5);
    let completed = body(&got[4]);
    assert_eq!(completed["type"], "answer.completed", "{completed}");
    assert_eq!(completed["data"]["session_id"], session.as_str());
    assert_eq!(completed["data"]["message_id"], answer["message"]["id"]);
    assert_eq!(completed["data"]["status"], "complete");
    assert!(
        !got[4].body.contains("What do webhooks carry"),
        "no question"
    );
    assert_signed(&got[4], &secret);

    // Another tenant: not found, whatever the route.
    for (method, path) in [
        (Method::GET, format!("/api/v1/webhooks/{hook}")),
        (Method::PATCH, format!("/api/v1/webhooks/{hook}")),
        (Method::DELETE, format!("/api/v1/webhooks/{hook}")),
        (Method::GET, format!("/api/v1/webhooks/{hook}/deliveries")),
        (
            Method::POST,
            format!("/api/v1/webhooks/deliveries/{failed}/redeliver"),
        ),
    ] {
        let patch = (method == Method::PATCH).then(|| json!({"enabled": false}));
        let (s, e) = app
            .call_in(&bob, method.clone(), &path, patch, Some("bob"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {e}");
        // And with ann's tenant but bob's token: not a member.
        let (s, _) = app
            .call_in(&bob, method.clone(), &path, None, Some("ann"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path} in ann's tenant");
    }
    let (s, bobs) = app
        .call_in(&bob, Method::GET, "/api/v1/webhooks", None, Some("bob"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bobs["items"], json!([]));
    let (s, still) = app
        .call_in(
            &ann,
            Method::GET,
            &format!("/api/v1/webhooks/{hook}"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(still["enabled"], true, "bob changed nothing");

    // Disabled: nothing more is sent, even what was queued.
    let (s, off) = app
        .call_in(
            &ann,
            Method::PATCH,
            &format!("/api/v1/webhooks/{hook}"),
            Some(json!({"enabled": false})),
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{off}");
    assert_eq!(off["enabled"], false);
    let (s, up) = app
        .upload(&ann, "ann", "quiet.txt", b"Nobody hears this one.", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let quiet = up["document"]["id"].as_str().expect("document").to_owned();
    assert_eq!(app.settled(&ann, "ann", &quiet).await["status"], "ready");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        receiver.received().len(),
        5,
        "a disabled endpoint receives nothing"
    );

    // Deleted: gone with its log; nothing more is sent.
    let (s, _) = app
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/webhooks/{hook}"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .call_in(
            &ann,
            Method::GET,
            &format!("/api/v1/webhooks/{hook}"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call_in(
            &ann,
            Method::POST,
            &format!("/api/v1/webhooks/deliveries/{failed}/redeliver"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "its log went with it");
    let (s, _) = app
        .upload(&ann, "ann", "after.txt", b"After the delete.", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        receiver.received().len(),
        5,
        "a deleted endpoint receives nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_sqlite() {
    let app = spawn_app_with(TestOptions {
        tweaks: vec![local_receivers],
        ..TestOptions::default()
    })
    .await;
    scenario(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions {
        tweaks: vec![local_receivers],
        ..TestOptions::production()
    })
    .await;
    scenario(&app).await;
}

/// Private, loopback, link-local and unspecified destinations are refused at registration,
/// by address and by a name that resolves to loopback; plain http is refused unless allowed.
async fn destinations_refused(app: &TestApp, https_only: bool) {
    let receiver = Receiver::start().await;
    let (ann, _) = app.owner("ann").await;
    let mut urls = vec![
        receiver.url.clone(),
        receiver.url_by_name.clone(),
        "http://10.0.0.5/hook".to_owned(),
        "http://192.168.1.10/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]/hook".to_owned(),
        "http://[fd00::1]/hook".to_owned(),
        "http://0.0.0.0/hook".to_owned(),
        "http://2130706433/hook".to_owned(),
        "http://[::ffff:127.0.0.1]/hook".to_owned(),
    ];
    if https_only {
        urls.push("http://example.com/hook".to_owned());
    }
    for url in urls {
        let (s, e) = app
            .call_in(
                &ann,
                Method::POST,
                "/api/v1/webhooks",
                Some(json!({"url": url, "events": ["document.ready"]})),
                Some("ann"),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {e}");
        assert_eq!(e["errors"][0]["field"], "url", "{e}");
    }
    let https_loopback = receiver.url_by_name.replace("http://", "https://");
    let (s, e) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": https_loopback, "events": ["document.ready"]})),
            Some("ann"),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "https to loopback: {e}"
    );
    let (_, list) = app
        .call_in(&ann, Method::GET, "/api/v1/webhooks", None, Some("ann"))
        .await;
    assert_eq!(list["items"], json!([]), "nothing was registered");
    assert!(receiver.received().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_refused() {
    let app = spawn_app_with(TestOptions {
        tweaks: vec![http_only],
        ..TestOptions::default()
    })
    .await;
    destinations_refused(&app, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_is_refused_by_default() {
    let app = spawn_app_with(TestOptions::default()).await;
    destinations_refused(&app, true).await;
}

/// The documented receiver (`docs/examples/webhook_receiver.py`, Python's standard library)
/// verifies what Quire sends: it answers 204 only to a valid signature (401 otherwise) and
/// prints the event. Skipped without `python3`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_python_receiver_verifies_deliveries() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 not found: skipped");
        return;
    }
    let app = spawn_app_with(TestOptions {
        tweaks: vec![local_receivers],
        ..TestOptions::default()
    })
    .await;
    let (ann, _) = app.owner("ann").await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (s, created) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": format!("http://127.0.0.1:{port}/quire"), "events": ["document.ready"]})),
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let hook = created["id"].as_str().expect("id").to_owned();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/webhook_receiver.py"
    );
    let mut receiver = tokio::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .env(
            "WEBHOOK_SECRET",
            created["secret"].as_str().expect("secret"),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the receiver starts");
    // Until it listens.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, up) = app
        .upload(&ann, "ann", "py.txt", b"Checked by Python.", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{up}");
    let document = up["document"]["id"].as_str().expect("document").to_owned();
    let log = logged(&app, &ann, "ann", &hook, 1).await;
    assert_eq!(
        log[0]["status_code"], 204,
        "the receiver accepted the signature: {log:?}"
    );
    let mut out = tokio::io::BufReader::new(receiver.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
    )
    .await
    .expect("a line in time")
    .expect("read");
    assert!(line.starts_with("document.ready "), "{line}");
    assert!(line.contains(&document), "{line}");
    let _ = receiver.kill().await;
}
