//! Workflows through the HTTP API, on SQLite and on PostgreSQL with Redis: the kinds, each kind
//! run to its result (a collection summarized by the local answerer and metered, documents
//! analyzed, a collection re-indexed, usage exported as a CSV download), the `workflow.completed`
//! webhook, and the attacker's moves: another tenant's run ids (read, cancel, download), a
//! removed member, a viewer's and a member's keys, bad names and inputs, a bad cron expression.
//! Then a queued run cancelled, a run whose worker died taken over by another server, and the
//! run of a member removed before it started refused by the worker; triggering rate limited as
//! the AI tasks; a run past the monthly quota failing without spending.

use std::time::Duration;

use kernel::{Clock as _, Role, SystemClock, TenantId, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy::MembershipRepository as _;
use testkit::receiver::Receiver;
use testkit::{TestApp, TestOptions, spawn_app_with};
use workflows::WorkflowStore as _;

const WAIT: Duration = Duration::from_secs(60);

fn local_receivers(s: &mut settings::Settings) {
    s.webhooks.allow_http = true;
    s.webhooks.allow_private_destinations = true;
    s.webhooks.poll_interval_ms = 50;
}

fn no_workflow_workers(s: &mut settings::Settings) {
    s.workflows.workers = 0;
}

fn one_workflow_worker(s: &mut settings::Settings) {
    s.workflows.workers = 1;
    // No ingestion here: the first server ingests.
    s.documents.workers = 0;
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

async fn trigger(app: &TestApp, token: &str, org: &str, body: Value) -> (StatusCode, Value) {
    app.call_in(
        token,
        Method::POST,
        "/api/v1/workflows/trigger",
        Some(body),
        Some(org),
    )
    .await
}

async fn queued(app: &TestApp, token: &str, org: &str, body: Value) -> String {
    let (s, r) = trigger(app, token, org, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["run"]["status"], "queued", "{r}");
    r["run"]["id"].as_str().expect("run id").to_owned()
}

async fn get_run(app: &TestApp, token: &str, org: &str, id: &str) -> (StatusCode, Value) {
    app.call_in(
        token,
        Method::GET,
        &format!("/api/v1/workflows/runs/{id}"),
        None,
        Some(org),
    )
    .await
}

/// Polls the run until it ends.
async fn ended(app: &TestApp, token: &str, org: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, run) = get_run(app, token, org, id).await;
        assert_eq!(s, StatusCode::OK, "{run}");
        let p = run["progress"].as_f64().expect("progress");
        assert!((0.0..=1.0).contains(&p), "{run}");
        if ["succeeded", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or("")) {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {id} still {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario(app: &TestApp) {
    let receiver = Receiver::start().await;
    let (ann, ann_org) = app.owner("ann").await;
    let (bob, _) = app.owner("bob").await;

    // The kinds.
    let (s, kinds) = app
        .call_in(&ann, Method::GET, "/api/v1/workflows", None, Some("ann"))
        .await;
    assert_eq!(s, StatusCode::OK, "{kinds}");
    let names: Vec<&str> = kinds["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|k| k["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "summarize_collection",
            "analyze_documents",
            "reindex_collection",
            "export_usage"
        ]
    );
    assert!(kinds["items"][0]["input_schema"].is_object());

    let (s, hook) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": receiver.url, "events": ["workflow.completed"]})),
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");

    let coll = app.collection(&ann, "ann", "Handbook").await;
    let doc = app
        .ready_document(
            &ann,
            "ann",
            "leave.txt",
            "Employees take twenty-five days of paid leave each year. Leave is booked in the \
             portal two weeks ahead. Unused leave carries over to March.",
            &coll,
        )
        .await;

    // Summarize the collection: the local answerer, metered as chat.
    let run = queued(
        app,
        &ann,
        "ann",
        json!({"workflow": "summarize_collection", "input": {"collection_id": coll}}),
    )
    .await;
    let done = ended(app, &ann, "ann", &run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 1.0);
    assert_eq!(done["input"]["style"], "concise", "defaults filled in");
    assert_eq!(done["result"]["documents"][0]["document_id"], doc.as_str());
    assert!(
        !done["result"]["summary"]
            .as_str()
            .expect("summary")
            .is_empty(),
        "{done}"
    );
    assert!(done["finished_at"].is_string());
    let (s, usage) = app
        .call_in(&ann, Method::GET, "/api/v1/usage", None, Some("ann"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        usage["totals"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "the summary was metered: {usage}"
    );

    // The webhook names the run and how it ended.
    let got = receiver.wait_for(1, WAIT).await;
    let event: Value = serde_json::from_str(&got[0].body).expect("json");
    assert_eq!(event["type"], "workflow.completed", "{event}");
    assert_eq!(event["data"]["run_id"], run.as_str());
    assert_eq!(event["data"]["status"], "succeeded");
    assert_eq!(event["data"]["workflow"], "summarize_collection");

    // Analyze documents.
    let run = queued(
        app,
        &ann,
        "ann",
        json!({"workflow": "analyze_documents", "input": {"document_ids": [doc]}}),
    )
    .await;
    let done = ended(app, &ann, "ann", &run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let first = &done["result"]["documents"][0];
    assert!(first["chunks"].as_u64().expect("chunks") >= 1, "{done}");
    assert!(first["analysis"].is_object(), "{done}");

    // Re-index the collection: one ingestion job per document.
    let run = queued(
        app,
        &ann,
        "ann",
        json!({"workflow": "reindex_collection", "input": {"collection_id": coll}}),
    )
    .await;
    let done = ended(app, &ann, "ann", &run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["documents"], 1, "{done}");
    let job = done["result"]["jobs"][0]["job_id"].as_str().expect("job");
    let (s, j) = app
        .call_in(
            &ann,
            Method::GET,
            &format!("/api/v1/jobs/{job}"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["kind"], "reindex");
    app.settled(&ann, "ann", &doc).await;

    // GET /jobs: the organization's ingestion jobs, filtered and paged; none of them bob's.
    let (s, jobs) = app
        .call_in(
            &ann,
            Method::GET,
            "/api/v1/jobs?kind=reindex",
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{jobs}");
    assert_eq!(jobs["items"][0]["id"], job, "{jobs}");
    assert!(
        jobs["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|j| j["kind"] == "reindex")
    );
    let (s, jobs) = app
        .call_in(
            &ann,
            Method::GET,
            &format!("/api/v1/jobs?document_id={doc}&limit=1"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{jobs}");
    assert_eq!(jobs["items"][0]["id"], job, "newest first: {jobs}");
    let cursor = jobs["next_cursor"]
        .as_str()
        .expect("the ingest job is next");
    let (_, older) = app
        .call_in(
            &ann,
            Method::GET,
            &format!("/api/v1/jobs?document_id={doc}&cursor={cursor}"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(older["items"][0]["kind"], "ingest", "{older}");
    let (s, ingest) = app
        .call_in(
            &ann,
            Method::GET,
            "/api/v1/jobs?kind=ingest&status=succeeded",
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!ingest["items"].as_array().expect("items").is_empty());
    let (s, theirs) = app
        .call_in(&bob, Method::GET, "/api/v1/jobs", None, Some("bob"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(theirs["items"], json!([]), "bob sees none of ann's jobs");
    for bad in [
        "kind=workflow",
        "status=done",
        "document_id=x",
        "limit=500",
        "colour=red",
    ] {
        let (s, e) = app
            .call_in(
                &ann,
                Method::GET,
                &format!("/api/v1/jobs?{bad}"),
                None,
                Some("ann"),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
    }

    // Export usage: a CSV to download.
    let export = queued(
        app,
        &ann,
        "ann",
        json!({"workflow": "export_usage", "input": {"window": "7d"}}),
    )
    .await;
    let done = ended(app, &ann, "ann", &export).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let res = app
        .client
        .get(app.url(&format!("/api/v1/workflows/runs/{export}/download")))
        .bearer_auth(&ann)
        .header("X-Tenant-ID", "ann")
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let csv = res.text().await.expect("csv");
    assert!(csv.starts_with("dimension,key,events,"), "{csv}");
    assert!(
        csv.contains("\nkind,chat,"),
        "the summaries are in it: {csv}"
    );

    // The list, filtered and paged.
    let (s, page) = app
        .call_in(
            &ann,
            Method::GET,
            "/api/v1/workflows/runs?status=succeeded&limit=2",
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().expect("items").len(), 2);
    assert_eq!(page["items"][0]["id"], export.as_str(), "newest first");
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (s, rest) = app
        .call_in(
            &ann,
            Method::GET,
            &format!("/api/v1/workflows/runs?status=succeeded&cursor={cursor}"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rest["items"].as_array().expect("items").len(), 2);
    let (s, only) = app
        .call_in(
            &ann,
            Method::GET,
            "/api/v1/workflows/runs?workflow=export_usage",
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(only["items"].as_array().expect("items").len(), 1);
    for bad in ["status=done", "workflow=nope", "limit=0", "cursor=zz"] {
        let (s, e) = app
            .call_in(
                &ann,
                Method::GET,
                &format!("/api/v1/workflows/runs?{bad}"),
                None,
                Some("ann"),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
    }

    // An ended run cannot be cancelled.
    let (s, e) = app
        .call_in(
            &ann,
            Method::POST,
            &format!("/api/v1/workflows/runs/{export}/cancel"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");

    // Bad names and inputs: 422 naming the field; another tenant's collection is "no such".
    let bob_coll = app.collection(&bob, "bob", "Secret").await;
    for (bad, field) in [
        (json!({"workflow": "rm_rf", "input": {}}), "workflow"),
        (json!({"workflow": "summarize_collection"}), "input"),
        (
            json!({"workflow": "summarize_collection", "input": {}}),
            "input.collection_id",
        ),
        (
            json!({"workflow": "summarize_collection", "input": {"collection_id": bob_coll}}),
            "input.collection_id",
        ),
        (
            json!({"workflow": "analyze_documents", "input": {"document_ids": ["x"]}}),
            "input.document_ids[0]",
        ),
        (
            json!({"workflow": "export_usage", "input": {"window": "1y"}}),
            "input.window",
        ),
        (
            json!({"workflow": "export_usage", "schedule": "every day"}),
            "schedule",
        ),
    ] {
        let (s, e) = trigger(app, &ann, "ann", bad.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
        assert_eq!(e["errors"][0]["field"], field, "{bad}: {e}");
    }
    let (s, _) = trigger(app, &ann, "ann", json!({"workflow": 7})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Another tenant: ann's run is not found, whichever way bob asks.
    for (method, path) in [
        (Method::GET, format!("/api/v1/workflows/runs/{run}")),
        (Method::POST, format!("/api/v1/workflows/runs/{run}/cancel")),
        (
            Method::GET,
            format!("/api/v1/workflows/runs/{export}/download"),
        ),
    ] {
        let (s, _) = app
            .call_in(&bob, method.clone(), &path, None, Some("bob"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path} as bob in bob");
        let (s, _) = app
            .call_in(&bob, method.clone(), &path, None, Some("ann"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path} as bob in ann");
    }
    let (s, list) = app
        .call_in(
            &bob,
            Method::GET,
            "/api/v1/workflows/runs",
            None,
            Some("bob"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"], json!([]), "bob sees none of ann's runs");

    // Roles: a viewer reads but cannot trigger or schedule; a member triggers but cannot
    // export usage nor read an export.
    let viewer = key(app, &ann, &ann_org, "viewer").await;
    let (s, _) = get_run(app, &viewer, "ann", &run).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = trigger(
        app,
        &viewer,
        "ann",
        json!({"workflow": "reindex_collection", "input": {"collection_id": coll}}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let member = key(app, &ann, &ann_org, "member").await;
    let (s, e) = trigger(app, &member, "ann", json!({"workflow": "export_usage"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, e) = app
        .call_in(
            &member,
            Method::GET,
            &format!("/api/v1/workflows/runs/{export}/download"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, e) = trigger(
        app,
        &member,
        "ann",
        json!({"workflow": "export_usage", "schedule": "0 3 * * *"}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a member does not schedule: {e}");

    // A member who is removed is refused at once.
    let (carl, _) = app.owner("carl").await;
    let (_, me) = app.call(&carl, Method::GET, "/api/v1/auth/me", None).await;
    let carl_id = UserId::parse(me["user"]["id"].as_str().expect("id")).expect("uuid");
    app.store()
        .await
        .add(
            TenantId::parse(&ann_org).expect("org"),
            carl_id,
            Role::Member,
            SystemClock.now(),
        )
        .await
        .expect("membership");
    let carls = queued(
        app,
        &carl,
        "ann",
        json!({"workflow": "reindex_collection", "input": {"collection_id": coll}}),
    )
    .await;
    let (s, _) = app
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/orgs/{ann_org}/members/{carl_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(600)).await; // past the credential recheck
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/workflows/runs/{carls}"), None),
        (Method::GET, "/api/v1/workflows/runs".to_owned(), None),
        (
            Method::POST,
            "/api/v1/workflows/trigger".to_owned(),
            Some(json!({"workflow": "reindex_collection", "input": {"collection_id": coll}})),
        ),
        (
            Method::POST,
            format!("/api/v1/workflows/runs/{carls}/cancel"),
            None,
        ),
    ] {
        let (s, e) = app
            .call_in(&carl, method.clone(), &path, body, Some("ann"))
            .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "removed carl: {method} {path}: {e}"
        );
    }

    // Schedules: admins; listed, deleted; another tenant cannot delete one.
    let (s, sched) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/workflows/schedules",
            Some(json!({"workflow": "export_usage", "cron": "0 3 * * MON"})),
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sched}");
    let sid = sched["id"].as_str().expect("id");
    assert!(sched["next_run_at"].as_str().expect("next").ends_with('Z'));
    let (s, e) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/workflows/schedules",
            Some(json!({"workflow": "export_usage", "cron": "0 0 30 2 *"})),
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["errors"][0]["field"], "cron");
    let (s, e) = app
        .call_in(
            &bob,
            Method::DELETE,
            &format!("/api/v1/workflows/schedules/{sid}"),
            None,
            Some("bob"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, list) = app
        .call_in(
            &ann,
            Method::GET,
            "/api/v1/workflows/schedules",
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    let (s, _) = app
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/workflows/schedules/{sid}"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_on_sqlite() {
    let app = spawn_app_with(TestOptions {
        tweaks: vec![local_receivers],
        ..TestOptions::default()
    })
    .await;
    scenario(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_on_postgres_and_redis() {
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

/// With no workflow worker: a queued run is cancelled at once (and says so to webhooks); a
/// run claimed by a worker that then dies is taken over, once its lease ends, by another
/// server's worker, and completed.
async fn takeover(app: &TestApp) {
    let (ann, ann_org) = app.owner("ann").await;
    let coll = app.collection(&ann, "ann", "Handbook").await;
    app.ready_document(&ann, "ann", "a.txt", "Some text to re-index.", &coll)
        .await;
    let body = json!({"workflow": "reindex_collection", "input": {"collection_id": coll}});

    let run = queued(app, &ann, "ann", body.clone()).await;
    let (s, cancelled) = app
        .call_in(
            &ann,
            Method::POST,
            &format!("/api/v1/workflows/runs/{run}/cancel"),
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");

    // A worker claims the next run with a one-second lease, and dies.
    let run = queued(app, &ann, "ann", body).await;
    let store = app.store().await;
    let claim = store
        .claim(SystemClock.now(), Duration::from_secs(1))
        .await
        .expect("claim")
        .expect("the queued run");
    assert_eq!(claim.run.id.to_string(), run);
    let (_, running) = get_run(app, &ann, "ann", &run).await;
    assert_eq!(running["status"], "running");

    // A member queues a run and is removed before any worker takes it: the run must not act
    // for them.
    let (carl, _) = app.owner("carl").await;
    let (_, me) = app.call(&carl, Method::GET, "/api/v1/auth/me", None).await;
    let carl_id = UserId::parse(me["user"]["id"].as_str().expect("id")).expect("uuid");
    store
        .add(
            TenantId::parse(&ann_org).expect("org"),
            carl_id,
            Role::Member,
            SystemClock.now(),
        )
        .await
        .expect("membership");
    let carls = queued(
        app,
        &carl,
        "ann",
        json!({"workflow": "reindex_collection", "input": {"collection_id": coll}}),
    )
    .await;
    let (s, _) = app
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/orgs/{ann_org}/members/{carl_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let other = app.sibling(Some(one_workflow_worker)).await;
    let refused = ended(app, &ann, "ann", &carls).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .expect("error")
            .contains("no longer holds the role"),
        "{refused}"
    );
    let done = ended(app, &ann, "ann", &run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "claimed twice: {done}");
    // The dead worker's late writes change nothing.
    let late = store
        .finish(
            &claim,
            &workflows::Ending::Failed("late".to_owned()),
            SystemClock.now(),
        )
        .await
        .expect("finish");
    assert!(!late, "a lost lease writes nothing");
    let (_, still) = get_run(app, &ann, "ann", &run).await;
    assert_eq!(still["status"], "succeeded");
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_run_is_taken_over_on_sqlite() {
    let app = spawn_app_with(TestOptions {
        tweaks: vec![no_workflow_workers],
        ..TestOptions::default()
    })
    .await;
    takeover(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_run_is_taken_over_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions {
        tweaks: vec![no_workflow_workers],
        ..TestOptions::production()
    })
    .await;
    takeover(&app).await;
}

fn two_triggers_per_user(s: &mut settings::Settings) {
    s.rate_limits.chat.per_user = 2;
    s.rate_limits.chat.per_ip = 0;
}

/// Triggering counts against the AI tasks' budget: the third in the window is 429 with
/// `Retry-After`, and the limit headers are on every answer; reading runs is not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggering_is_rate_limited() {
    let app = spawn_app_with(TestOptions {
        tweaks: vec![two_triggers_per_user],
        ..TestOptions::default()
    })
    .await;
    let (ann, _) = app.owner("ann").await;
    let send = || {
        app.client
            .post(app.url("/api/v1/workflows/trigger"))
            .bearer_auth(&ann)
            .header("X-Tenant-ID", "ann")
            .json(&json!({"workflow": "export_usage"}))
            .send()
    };
    for remaining in ["1", "0"] {
        let res = send().await.expect("sent");
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert_eq!(res.headers()["ratelimit-remaining"], remaining);
    }
    let res = send().await.expect("sent");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let problem: Value = res.json().await.expect("json");
    assert_eq!(problem["code"], "rate_limited");
    for _ in 0..3 {
        let (s, _) = app
            .call_in(
                &ann,
                Method::GET,
                "/api/v1/workflows/runs",
                None,
                Some("ann"),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
}

/// The model calls of a run are reserved against the organization's monthly quota, as chat's
/// are: with the quota spent, a summary run fails saying so, and the ledger gains nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_the_quota_fails_and_says_so() {
    let app = spawn_app_with(TestOptions::default()).await;
    let (ann, ann_org) = app.owner("ann").await;
    let coll = app.collection(&ann, "ann", "Handbook").await;
    app.ready_document(
        &ann,
        "ann",
        "a.txt",
        "Leave is booked two weeks ahead.",
        &coll,
    )
    .await;
    let (root, _) = app.owner("root").await;
    let (_, me) = app.call(&root, Method::GET, "/api/v1/auth/me", None).await;
    app.make_platform_admin(UserId::parse(me["user"]["id"].as_str().expect("id")).expect("uuid"))
        .await;
    let (s, plan) = app
        .call_in(&ann, Method::GET, "/api/v1/billing/plan", None, Some("ann"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let used = plan["used"].as_u64().expect("used");
    let (s, patched) = app
        .call(
            &root,
            Method::PATCH,
            &format!("/api/v1/admin/orgs/{ann_org}"),
            Some(json!({"monthly_token_limit": used + 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    let run = queued(
        &app,
        &ann,
        "ann",
        json!({"workflow": "summarize_collection", "input": {"collection_id": coll}}),
    )
    .await;
    let done = ended(&app, &ann, "ann", &run).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"].as_str().expect("error").contains("quota"),
        "{done}"
    );
    let (_, after) = app
        .call_in(&ann, Method::GET, "/api/v1/billing/plan", None, Some("ann"))
        .await;
    assert_eq!(after["used"], used, "nothing was spent");
}
