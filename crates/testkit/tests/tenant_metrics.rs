//! Per-tenant metrics (docs/configuration.md, `http.metrics_top_tenants`): with N = 2 and five
//! active organizations `/metrics` shows at most three organization label values, each an
//! organization id or `other` (never a name or an email); `/metrics` answers as before; every
//! metric the Grafana dashboard (`deploy/grafana/quire-tenants.json`) queries exists. The
//! token series of an organization equal its ledger (`GET /usage`), kind by kind, and its
//! document series count its ingestions that ended, on both backends; another
//! organization's activity never lands on its series.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app_with};

testkit::on_both_backends!(tokens_and_documents);

/// A server that ingests nothing: `quire worker` processes do.
fn no_ingestion(s: &mut quire::Settings) {
    s.documents.workers = 0;
}

#[tokio::test]
async fn a_worker_serves_its_metrics_on_sqlite() {
    a_worker_serves_its_metrics(&spawn_app_with(TestOptions::default().tweak(no_ingestion)).await)
        .await;
}

#[tokio::test]
async fn a_worker_serves_its_metrics_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    a_worker_serves_its_metrics(
        &spawn_app_with(TestOptions::production().tweak(no_ingestion)).await,
    )
    .await;
}

/// A `quire worker` with `telemetry.worker_metrics_addr` serves `GET /metrics`: the documents
/// it ingested and the embedding tokens it billed, on the organization's own series and equal
/// to the ledger; the server, which ingested nothing, counts none of them; another
/// organization's series stay empty. Without the setting the worker binds nothing.
/// (Checked to fail when the worker's meter is not observed: its tokens are on no series.)
async fn a_worker_serves_its_metrics(app: &TestApp) {
    use quire::worker_process::WorkerProcess;
    let mut settings = app.settings.clone();
    settings.database.migrate_on_start = false;
    let silent = WorkerProcess::build(settings.clone(), Some(1))
        .await
        .expect("a worker without metrics");
    assert_eq!(silent.metrics_port(), None);
    drop(silent);
    settings.telemetry.worker_metrics_addr = Some(([127, 0, 0, 1], 0).into());
    let worker = WorkerProcess::build(settings, Some(1))
        .await
        .expect("a worker with metrics");
    let port = worker.metrics_port().expect("a metrics port");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));

    let (ann, a) = app.owner("ann").await;
    let (bob, b) = app.owner("bob").await;
    let notes = app.collection(&ann, &a, "notes").await;
    // Ingested by the worker (the server has no ingestion workers).
    app.ready_document(
        &ann,
        &a,
        "zebras.txt",
        "The zebras cross the river in spring, when the grass on the far bank is green.",
        &notes,
    )
    .await;
    // The document's event is counted just after its status is stored: polled until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = app
            .client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("the worker's metrics")
            .error_for_status()
            .expect("200")
            .text()
            .await
            .expect("text");
        if series(
            &text,
            "quire_tenant_documents_total",
            &a,
            "outcome=\"ready\"",
        ) > 0
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let billed = ledger(app, &ann, &a, "embedding").await;
    assert!(billed > 0, "no embedding tokens in the ledger");
    assert_eq!(
        series(&text, "quire_tenant_tokens_total", &a, "kind=\"embedding\""),
        billed,
        "the worker's series is not the ledger\n{text}"
    );
    assert_eq!(
        series(
            &text,
            "quire_tenant_documents_total",
            &a,
            "outcome=\"ready\""
        ),
        1,
        "{text}"
    );
    assert_eq!(ledger(app, &bob, &b, "embedding").await, 0);
    assert_eq!(
        series(&text, "quire_tenant_tokens_total", &b, "kind=\"embedding\""),
        0
    );
    assert!(text.contains("# TYPE quire_pool_connections "), "{text}");
    // The server ingested nothing, so it counts nothing twice.
    let served = app.get("/metrics").await.text().await.expect("metrics");
    assert_eq!(
        series(
            &served,
            "quire_tenant_documents_total",
            &a,
            "outcome=\"ready\""
        ),
        0
    );
    let _ = stop.send(());
    running
        .await
        .expect("the worker task")
        .expect("the worker stops");
}

/// The value of the `name` series of `org` whose other label is `label` (0 when absent).
fn series(text: &str, name: &str, org: &str, label: &str) -> u64 {
    let head = format!("{name}{{org=\"{org}\",{label}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// `org`'s prompt plus completion tokens of `kind` in its ledger over the last 24 hours.
async fn ledger(app: &TestApp, token: &str, org: &str, kind: &str) -> u64 {
    let (status, report) = app
        .call_in(
            token,
            Method::GET,
            "/api/v1/usage?window=24h",
            None,
            Some(org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    testkit::usage_of_kind(&report, kind).map_or(0, |k| {
        k["prompt_tokens"].as_u64().unwrap_or_default()
            + k["completion_tokens"].as_u64().unwrap_or_default()
    })
}

async fn tokens_and_documents(app: &TestApp) {
    let (ann, a) = app.owner("ann").await;
    let (bob, b) = app.owner("bob").await;
    // Ann's organization: a document indexed (embedding tokens) and a question answered
    // (chat tokens).
    let notes = app.collection(&ann, &a, "notes").await;
    app.ready_document(
        &ann,
        &a,
        "zebras.txt",
        "The zebras cross the river in spring, when the grass on the far bank is green.",
        &notes,
    )
    .await;
    let (status, session) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({})),
            Some(&a),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session = session["id"].as_str().expect("a session id");
    let (status, answer) = app
        .call_in(
            &ann,
            Method::POST,
            &format!("/api/v1/chat/sessions/{session}/messages"),
            Some(json!({"content": "When do the zebras cross the river?", "stream": false})),
            Some(&a),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Bob's organization: one document that fails, and nothing billed.
    let (status, up) = app.upload(&bob, &b, "blank.txt", b"  \n\t ", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let id = up["document"]["id"].as_str().expect("a document id");
    assert_eq!(app.settled(&bob, &b, id).await["status"], "failed");

    let text = app.get("/metrics").await.text().await.expect("metrics");
    for kind in ["chat", "embedding"] {
        let billed = ledger(app, &ann, &a, kind).await;
        assert!(billed > 0, "no {kind} tokens in the ledger");
        let label = format!("kind=\"{kind}\"");
        assert_eq!(
            series(&text, "quire_tenant_tokens_total", &a, &label),
            billed,
            "{kind}: the series is not the ledger\n{text}"
        );
        assert_eq!(ledger(app, &bob, &b, kind).await, 0);
        assert_eq!(series(&text, "quire_tenant_tokens_total", &b, &label), 0);
    }
    let documents = |org: &str, outcome: &str| {
        series(
            &text,
            "quire_tenant_documents_total",
            org,
            &format!("outcome=\"{outcome}\""),
        )
    };
    assert_eq!((documents(&a, "ready"), documents(&a, "failed")), (1, 0));
    assert_eq!((documents(&b, "ready"), documents(&b, "failed")), (0, 1));
}

#[tokio::test]
async fn top_n_organizations_plus_other() {
    let app =
        spawn_app_with(TestOptions::default().tweak(|s| s.http.metrics_top_tenants = 2)).await;
    let mut orgs = Vec::new();
    let mut busiest = String::new();
    for (i, who) in ["ann", "bob", "cat", "dan", "eve"].iter().enumerate() {
        let (token, org) = app.owner(who).await;
        for _ in 0..(3 * (i + 1)) {
            let (s, _) = app
                .call(&token, Method::GET, &format!("/api/v1/orgs/{org}"), None)
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        orgs.push(org);
        busiest = token;
    }
    // The busiest indexes a document, so that the token and document series have a value
    // (an empty family is not served) and the dashboard check below reaches them.
    let eve = &orgs[4];
    let notes = app.collection(&busiest, eve, "notes").await;
    app.ready_document(&busiest, eve, "notes.txt", "Zebras cross rivers.", &notes)
        .await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.expect("metrics");
    let mut labels: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("quire_tenant_"))
        .filter_map(|l| Some(l.split("org=\"").nth(1)?.split('"').next()?.to_owned()))
        .collect();
    labels.sort_unstable();
    labels.dedup();
    assert!(labels.len() <= 3, "{labels:?}");
    assert!(labels.iter().any(|l| l == "other"), "{labels:?}");
    for l in &labels {
        assert!(
            l == "other" || orgs.contains(l),
            "{l} is not an organization id"
        );
    }
    for secret in ["ann", "eve@example.com", "example.com"] {
        assert!(
            !labels.iter().any(|l| l.contains(secret)),
            "{secret} in a label"
        );
    }
    // The two busiest have their own label.
    for org in &orgs[3..] {
        assert!(labels.contains(org), "{org} missing from {labels:?}");
    }

    // Every metric the dashboard queries is served.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana/quire-tenants.json"
        ))
        .expect("the dashboard"),
    )
    .expect("valid JSON");
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            exprs += 1;
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("quire_") {
                    let family = ["_bucket", "_count", "_sum", "_total"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    assert!(
                        text.contains(&format!("# TYPE {family} ")),
                        "{word} of {expr} is not in /metrics"
                    );
                }
            }
        }
    }
    assert!(exprs >= 4);
}
