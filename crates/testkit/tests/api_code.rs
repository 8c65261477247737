//! Email-code sign-in, black-box: a code works once, within 10 minutes and 5 attempts; the
//! first success creates the account.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

async fn request(app: &TestApp, email: &str) -> StatusCode {
    app.post_json("/api/v1/auth/code/request", &json!({"email": email}))
        .await
        .status()
}

async fn verify(app: &TestApp, email: &str, code: &str) -> (StatusCode, Value) {
    let res = app
        .post_json(
            "/api/v1/auth/code/verify",
            &json!({"email": email, "code": code}),
        )
        .await;
    let s = res.status();
    (s, res.json().await.unwrap_or(Value::Null))
}

async fn latest_code(app: &TestApp, to: &str) -> String {
    let code = app.latest_code(to).await;
    let mails = app.store().await.outbox(20).await.expect("outbox");
    let mail = mails.iter().find(|m| m.to == to).expect("a code mail");
    assert!(
        !mail.subject.contains(&code),
        "the code is never in the subject: {}",
        mail.subject
    );
    code
}

async fn scenario(app: &TestApp) {
    assert_eq!(
        request(app, "New.Person@Example.com").await,
        StatusCode::ACCEPTED
    );
    let code = latest_code(app, "new.person@example.com").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (s, p) = verify(app, "new.person@example.com", wrong).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );

    // The right code signs in and creates the account, once.
    let (s, tokens) = verify(app, "NEW.person@example.com", &code).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access");
    let (_, me) = app.call(access, Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(me["user"]["email"], "new.person@example.com");
    assert_eq!(
        verify(app, "new.person@example.com", &code).await.0,
        StatusCode::UNAUTHORIZED,
        "single use"
    );

    // Five wrong attempts from one address burn the code for that address: the right one no
    // longer works from there.
    assert_eq!(
        request(app, "new.person@example.com").await,
        StatusCode::ACCEPTED
    );
    let code = latest_code(app, "new.person@example.com").await;
    let wrong = if code == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        assert_eq!(
            verify(app, "new.person@example.com", wrong).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        verify(app, "new.person@example.com", &code).await.0,
        StatusCode::UNAUTHORIZED
    );

    // An existing password account signs in with a code too, as itself (its email was not
    // confirmed, so the code is the first proof: the password goes, see attack_identity).
    let reg = app
        .post_json("/api/v1/auth/register", &json!({"email": "ann@example.com", "password": "correct horse battery", "name": "Ann"}))
        .await;
    let ann_id = reg.json::<Value>().await.expect("json")["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    request(app, "ann@example.com").await;
    let code = latest_code(app, "ann@example.com").await;
    let (s, tokens) = verify(app, "ann@example.com", &code).await;
    assert_eq!(s, StatusCode::OK);
    let (_, me) = app
        .call(
            tokens["access_token"].as_str().expect("a"),
            Method::GET,
            "/api/v1/auth/me",
            None,
        )
        .await;
    assert_eq!(me["user"]["id"], ann_id.as_str());
    assert_eq!(
        verify(app, "nobody@example.com", "123456").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn codes_on_sqlite() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn codes_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}
