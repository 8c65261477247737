//! Graceful shutdown: a stop lets the in-flight request finish. (The binary's SIGTERM path is
//! tested in apps/quire/tests/cli.rs; actix routes SIGTERM/SIGINT to this same graceful stop.)

use reqwest::StatusCode;
use testkit::{SLOW_GATE, spawn_app};

#[tokio::test]
async fn in_flight_requests_finish_when_the_server_stops() {
    let mut app = spawn_app().await;
    let client = app.client.clone();
    let url = app.url("/__test/slow");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });

    // The handler is running: now ask the server to stop gracefully.
    SLOW_GATE.started.notified().await;
    let handle = app.handle();
    let stopping = tokio::spawn(async move { handle.stop(true).await });

    // While stopping, new connections are refused...
    // (A bounded client: a connection parked in the backlog must not hang the test.)
    let probe = testkit::http_client()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("client");
    let refused = {
        let mut refused = false;
        for _ in 0..200 {
            match probe.get(app.url("/health/live")).send().await {
                Err(e) if e.is_connect() => {
                    refused = true;
                    break;
                }
                _ => tokio::task::yield_now().await,
            }
        }
        refused
    };
    assert!(refused, "the listener closes once a stop begins");

    // ...and the in-flight request still completes.
    SLOW_GATE.release.notify_one();
    let res = in_flight
        .await
        .expect("task")
        .expect("the in-flight request completes");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.expect("body"), "finished");
    stopping.await.expect("stop");
    app.wait_stopped().await.expect("the server exits cleanly");
}
