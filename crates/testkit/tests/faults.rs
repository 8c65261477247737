//! The fault suite: each test starts its own Redis or PostgreSQL ([`testkit::faults`]), stops,
//! pauses or restarts it mid-request, and checks the invariants of `docs/faults.md`.
//! Uploads and jobs here; the counters of answers in `faults_limits.rs`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::faults::{self, PrivatePostgres, PrivateRedis};
use testkit::{TestApp, TestOptions, spawn_app_with};

/// The harness itself: a restarted Redis is empty and on the same port; a paused one does
/// not answer until resumed.
#[test]
fn private_redis_restarts_empty_and_pauses() {
    if !faults::available("private_redis_restarts_empty_and_pauses") {
        return;
    }
    let mut redis = PrivateRedis::start_new();
    let port = redis.port();
    assert!(ping(port).is_some_and(|r| r.starts_with("+PONG")));
    redis.pause();
    assert_eq!(ping(port), None, "a paused Redis does not answer");
    redis.resume();
    assert!(ping(port).is_some_and(|r| r.starts_with("+PONG")));
    redis.stop();
    assert!(!redis.is_running());
    assert_eq!(ping(port), None, "a stopped Redis does not answer");
    redis.start();
    assert_eq!(redis.port(), port, "the same port after a restart");
    assert!(ping(port).is_some_and(|r| r.starts_with("+PONG")));
}

/// `PING` over a fresh connection with a 1 s read timeout: the first reply, or `None`.
fn ping(port: u16) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"PING\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The harness itself: a PostgreSQL crashed (`stop -m immediate`) and started again keeps
/// what was committed.
#[tokio::test]
async fn private_postgres_keeps_its_data_across_a_crash() {
    use sea_orm::ConnectionTrait as _;
    if !faults::available("private_postgres_keeps_its_data_across_a_crash") {
        return;
    }
    let mut pg = PrivatePostgres::start_new();
    let db = sea_orm::Database::connect(pg.url()).await.expect("connect");
    db.execute_unprepared("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        .await
        .expect("write");
    db.close().await.expect("close");
    pg.stop();
    assert!(
        sea_orm::Database::connect(pg.url()).await.is_err(),
        "a stopped PostgreSQL refuses connections"
    );
    pg.start();
    let db = sea_orm::Database::connect(pg.url()).await.expect("connect");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT v FROM kept",
        ))
        .await
        .expect("read")
        .expect("a row");
    assert_eq!(row.try_get::<i32>("", "v").expect("v"), 7);
}

/// Jobs give up after 2 attempts, retried after 1 s: an outage longer than that would have
/// used them all.
fn two_quick_attempts(s: &mut quire::Settings) {
    s.documents.max_attempts = 2;
    s.documents.retry_base_secs = 1;
}

/// Item 3 of issue 15: an upload acknowledged while Redis (the usage meter's cache) is down
/// ends `ready` once Redis is back, however many attempts the outage spanned, on SQLite and
/// on PostgreSQL. Before: `metering unavailable` used every attempt and the job went `dead`.
async fn upload_during_redis_outage_ends_ready(postgres: bool) {
    let mut redis = PrivateRedis::start_new();
    let mut opts = TestOptions::default()
        .on_redis(redis.url())
        .tweak(two_quick_attempts);
    opts.postgres = postgres;
    let app = spawn_app_with(opts).await;
    let (token, org) = app.owner("ula").await;

    redis.stop();
    let text = "Redis was down when this file came in. ".repeat(40);
    let (status, up) = app
        .upload(&token, &org, "outage.txt", text.as_bytes(), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let id = up["document"]["id"].as_str().expect("id").to_owned();
    let job = up["job_id"].as_str().expect("job").to_owned();
    // Long enough for more runs than max_attempts (one a second).
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.start();

    let doc = app.settled(&token, &org, &id).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let (status, job) = app
        .call_in(
            &token,
            Method::GET,
            &format!("/api/v1/jobs/{job}"),
            None,
            Some(&org),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1, "the outage used no attempt: {job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_during_redis_outage_ends_ready_on_sqlite() {
    if !faults::available("upload_during_redis_outage_ends_ready_on_sqlite") {
        return;
    }
    upload_during_redis_outage_ends_ready(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_during_redis_outage_ends_ready_on_postgres() {
    if !faults::available("upload_during_redis_outage_ends_ready_on_postgres")
        || testkit::services_skipped("PostgreSQL")
    {
        return;
    }
    upload_during_redis_outage_ends_ready(true).await;
}

/// A file the extractor refuses still fails for a reason about the file, with Redis up or
/// not: outages wait, files fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_still_fails_for_a_reason_about_the_file() {
    if !faults::available("a_bad_file_still_fails_for_a_reason_about_the_file") {
        return;
    }
    let redis = PrivateRedis::start_new();
    let app = spawn_app_with(TestOptions::default().on_redis(redis.url())).await;
    let (token, org) = app.owner("bea").await;
    let (status, up) = app
        .upload(&token, &org, "empty.txt", b"   \n  ", None)
        .await;
    if status == StatusCode::ACCEPTED {
        let doc = app
            .settled(&token, &org, up["document"]["id"].as_str().expect("id"))
            .await;
        assert_eq!(doc["status"], "failed", "{doc}");
        let error = doc["error"].as_str().expect("an error");
        assert!(!error.contains("unavailable"), "{error}");
    } else {
        assert!(status.is_client_error(), "{status} {up}");
    }
}

/// Item 6 of issue 15: PostgreSQL down for 12 s while a job runs (its heartbeat
/// fails) does not orphan the job until its lease ends (120 s): the heartbeat is tried again
/// and the job finishes soon after the database returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_blip_during_a_job_does_not_orphan_it() {
    if !faults::available("a_database_blip_during_a_job_does_not_orphan_it") {
        return;
    }
    let mut pg = PrivatePostgres::start_new();
    let fake = FakeOpenAi::start();
    let app = spawn_app_with(
        TestOptions {
            provider: Some((fake.base_url(), "text-embedding-3-small".to_owned())),
            tweaks: vec![|s| {
                s.provider.embedding_dimensions = Some(64);
                s.retrieval.embedder = settings::EmbedderKind::Provider;
                s.documents.lease_secs = 120;
                // Requests fail 1 s into the outage rather than wait it out.
                s.database.acquire_timeout_secs = 1;
            }],
            ..TestOptions::default()
        }
        .on_postgres(pg.url()),
    )
    .await;
    let (token, org) = app.owner("pia").await;
    // The embedding call takes 3 s: the database goes down during it, so the heartbeat
    // after it meets the outage.
    fake.push_faults([Fault::Delay(Duration::from_secs(3))]);
    let text = "A database blip must not orphan this job. ".repeat(40);
    let (status, up) = app
        .upload(&token, &org, "blip.txt", text.as_bytes(), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let id = up["document"]["id"].as_str().expect("id").to_owned();
    assert!(
        fake.until(Duration::from_secs(20), |f| f
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/embeddings")))
            .await,
        "the job reached its embedding call"
    );
    let started = Instant::now();
    pg.stop();
    // Longer than the usage ledger's own tries (3, each failing after the 1 s acquire
    // timeout), so that the heartbeat after the embedding call meets the outage.
    tokio::time::sleep(Duration::from_secs(12)).await;
    pg.start();

    let doc = settled_within(&app, &token, &org, &id, Duration::from_secs(40)).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(40),
        "the job finished {took:?} after the blip began (lease 120 s)"
    );
}

/// Polls the document until `ready` or `failed`, for at most `limit` (requests failing while
/// the database recovers are tried again).
async fn settled_within(app: &TestApp, token: &str, org: &str, id: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, doc) = app
            .call_in(
                token,
                Method::GET,
                &format!("/api/v1/documents/{id}"),
                None,
                Some(org),
            )
            .await;
        if status == StatusCode::OK && (doc["status"] == "ready" || doc["status"] == "failed") {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "document {id} still {status} {} after {limit:?}",
            doc["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
