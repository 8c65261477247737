//! Forgot and reset password, black-box, with the development outbox as the mailbox.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

async fn forgot(app: &TestApp, email: &str) -> (StatusCode, String) {
    let res = app
        .post_json("/api/v1/auth/password/forgot", &json!({"email": email}))
        .await;
    (res.status(), res.text().await.expect("body"))
}

async fn reset(app: &TestApp, token: &str, password: &str) -> (StatusCode, Value) {
    let res = app
        .post_json(
            "/api/v1/auth/password/reset",
            &json!({"token": token, "new_password": password}),
        )
        .await;
    let s = res.status();
    (s, res.json().await.unwrap_or(Value::Null))
}

async fn login(app: &TestApp, password: &str) -> StatusCode {
    app.post_json(
        "/api/v1/auth/login",
        &json!({"email": "ann@example.com", "password": password}),
    )
    .await
    .status()
}

fn token_in(body: &str) -> String {
    body.lines()
        .map(str::trim)
        .find(|l| l.starts_with("qr_"))
        .expect("a token line")
        .to_owned()
}

async fn scenario(app: &TestApp) {
    let res = app
        .post_json("/api/v1/auth/register", &json!({"email": "ann@example.com", "password": "correct horse battery", "name": "Ann"}))
        .await;
    let access = res.json::<Value>().await.expect("json")["tokens"]["access_token"]
        .as_str()
        .expect("t")
        .to_owned();

    // The same answer for a registered and an unknown email; mail only for the account.
    assert_eq!(
        forgot(app, "ANN@example.com").await,
        (StatusCode::ACCEPTED, String::new())
    );
    assert_eq!(
        forgot(app, "nobody@example.com").await,
        (StatusCode::ACCEPTED, String::new())
    );
    let store = app.store().await;
    let outbox = store.outbox(10).await.expect("outbox");
    // The registration's confirmation mail, then the reset mail.
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox[0].to, "ann@example.com");
    assert!(outbox[0].subject.contains("Reset"), "{}", outbox[0].subject);
    let token = token_in(&outbox[0].body);

    // Wrong token, weak password: refused, and the token survives.
    let (s, p) = reset(app, "qr_not-the-token", "a brand new secret").await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("token"))
    );
    let (s, p) = reset(app, &token, "password").await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password"))
    );

    // The reset: new password works, old does not, every session ended, token spent.
    assert_eq!(
        reset(app, &token, "a brand new secret").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        login(app, "correct horse battery").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(login(app, "a brand new secret").await, StatusCode::OK);
    assert_eq!(
        app.call(&access, Method::GET, "/api/v1/auth/me", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, p) = reset(app, &token, "yet another secret").await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("token"))
    );

    // At most 3 reset mails an hour to one address from one requester, whatever the number of
    // requests (other requesters have their own budget: see attack_identity).
    for _ in 0..4 {
        assert_eq!(forgot(app, "ann@example.com").await.0, StatusCode::ACCEPTED);
    }
    let to_ann = store
        .outbox(100)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|m| m.to == "ann@example.com" && m.subject.contains("Reset"))
        .count();
    assert_eq!(to_ann, 3);
    assert_eq!(
        forgot(app, "not an email").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn reset_on_sqlite() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn reset_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}
