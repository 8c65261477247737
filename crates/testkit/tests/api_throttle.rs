//! Sign-in throttling, black-box: per address, per account and address, per account; the
//! owner is never locked out by someone else's address; spoofed headers are ignored unless
//! the proxy is trusted.

use reqwest::StatusCode;
use serde_json::json;
use testkit::{TestApp, TestOptions, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

async fn login_from(app: &TestApp, ip: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": "ann@example.com", "password": password}))
        .send()
        .await
        .expect("sent")
}

async fn with_ann(tweak: fn(&mut settings::Settings)) -> TestApp {
    let app = spawn_app_with(TestOptions::default().tweak(tweak)).await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::CREATED);
    app
}

async fn assert_throttled(res: reqwest::Response, max_wait: u64) {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=max_wait).contains(&wait), "Retry-After {wait}");
    let body: serde_json::Value = res.json().await.expect("problem");
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn failures_lock_the_address_out_of_the_account_but_not_its_owner() {
    let app = with_ann(|s| {
        s.http.trust_forwarded_for = true;
        s.auth.failures_per_account_ip = 3;
        s.auth.failures_per_account = 6;
    })
    .await;
    let attacker = "203.0.113.7";
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, attacker, "wrong guess!").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused from that address now, before any hashing.
    assert_throttled(login_from(&app, attacker, PASSWORD).await, 15 * 60).await;
    // The owner, elsewhere, signs in.
    assert_eq!(
        login_from(&app, "198.51.100.1", PASSWORD).await.status(),
        StatusCode::OK
    );

    // Guessing from many addresses meets the per-account cap (6 failures an hour).
    for ip in ["203.0.113.8", "203.0.113.9", "203.0.113.10"] {
        assert_eq!(
            login_from(&app, ip, "wrong guess!").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_throttled(
        login_from(&app, "203.0.113.11", "wrong guess!").await,
        60 * 60,
    )
    .await;
}

#[tokio::test]
async fn a_success_forgives_the_address_failures() {
    let app = with_ann(|s| {
        s.http.trust_forwarded_for = true;
        s.auth.failures_per_account_ip = 3;
    })
    .await;
    let ip = "198.51.100.1";
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, ip, "typo typo typo").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(&app, ip, PASSWORD).await.status(),
        StatusCode::OK
    );
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, ip, "typo typo typo").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(&app, ip, PASSWORD).await.status(),
        StatusCode::OK,
        "counter was reset"
    );
}

#[tokio::test]
async fn each_address_has_a_budget_of_attempts_per_minute() {
    let app = with_ann(|s| {
        s.http.trust_forwarded_for = true;
        s.auth.attempts_per_ip_per_minute = 3;
    })
    .await;
    // Registration used one attempt of 198.51.100.1; every answer states the budget.
    let header = |res: &reqwest::Response, name: &str| -> u64 {
        res.headers()[name]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("a number")
    };
    for remaining in [1, 0] {
        let res = login_from(&app, "198.51.100.1", PASSWORD).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit-limit"), 3);
        assert_eq!(header(&res, "ratelimit-remaining"), remaining);
        assert!((1..=60).contains(&header(&res, "ratelimit-reset")));
    }
    let refused = login_from(&app, "198.51.100.1", PASSWORD).await;
    assert_eq!(header(&refused, "ratelimit-remaining"), 0);
    assert_throttled(refused, 60).await;
    let refresh = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"refresh_token": "qr_x"}))
        .send()
        .await
        .expect("sent");
    assert_throttled(refresh, 60).await;
    // Routes that spend no credentials carry no budget.
    let me = app.get("/api/v1/auth/me").await;
    assert!(!me.headers().contains_key("ratelimit-limit"));
    assert_eq!(
        login_from(&app, "198.51.100.2", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_proxy_is_trusted() {
    let app = with_ann(|s| s.auth.failures_per_account_ip = 3).await;
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_eq!(
            login_from(&app, ip, "wrong guess!").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // All three came from the test's own address, whatever the header claimed.
    assert_throttled(login_from(&app, "203.0.113.4", PASSWORD).await, 15 * 60).await;
}

#[tokio::test]
async fn only_the_address_the_proxy_saw_counts() {
    let app = with_ann(|s| {
        s.http.trust_forwarded_for = true;
        s.auth.failures_per_account_ip = 3;
    })
    .await;
    // The client forges the left-hand entries; the proxy appends what it saw.
    for forged in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
        let res = login_from(&app, &format!("{forged}, 203.0.113.50"), "wrong guess!").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(
        login_from(&app, "4.4.4.4, 203.0.113.50", PASSWORD).await,
        15 * 60,
    )
    .await;
}

#[tokio::test]
async fn throttling_holds_on_redis_too() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production().tweak(|s| {
        s.http.trust_forwarded_for = true;
        s.auth.failures_per_account_ip = 2;
    }))
    .await;
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, "203.0.113.5", "wrong guess!")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_throttled(login_from(&app, "203.0.113.5", PASSWORD).await, 15 * 60).await;
    assert_eq!(
        login_from(&app, "203.0.113.6", PASSWORD).await.status(),
        StatusCode::OK
    );
}
