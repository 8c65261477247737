//! Invitations, black-box: invite by email, the mail, acceptance only by that account, once.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

async fn register(app: &TestApp, name: &str) -> String {
    let res = app
        .post_json("/api/v1/auth/register", &json!({"email": format!("{name}@example.com"), "password": "correct horse battery", "name": name}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.expect("json")["tokens"]["access_token"]
        .as_str()
        .expect("t")
        .to_owned()
}

async fn scenario(app: &TestApp) {
    let ann = register(app, "ann").await;
    app.call(
        &ann,
        Method::POST,
        "/api/v1/orgs",
        Some(json!({"name": "Acme", "slug": "acme"})),
    )
    .await;

    let (s, created) = app
        .call(
            &ann,
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            Some(json!({"email": " Bob@Example.com ", "role": "member"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["invitation"]["email"], "bob@example.com");
    let token = created["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("qi_"));
    let mails = app.store().await.outbox(10).await.expect("outbox");
    assert_eq!(mails[0].to, "bob@example.com");
    assert!(mails[0].body.contains(&token) && mails[0].subject.contains("Acme"));

    let accept = format!("/api/v1/invitations/{token}/accept");
    let eve = register(app, "eve").await;
    let (s, p) = app.call(&eve, Method::POST, &accept, None).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "only bob may accept"
    );
    assert_eq!(
        app.client
            .post(app.url(&accept))
            .send()
            .await
            .expect("sent")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call(
            &eve,
            Method::POST,
            "/api/v1/invitations/qi_forged/accept",
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    let bob = register(app, "bob").await;
    app.verify_email(&bob, "bob@example.com").await;
    let (s, org) = app.call(&bob, Method::POST, &accept, None).await;
    assert_eq!(
        (s, org["slug"].as_str(), org["role"].as_str()),
        (StatusCode::OK, Some("acme"), Some("member"))
    );
    assert_eq!(
        app.call(&bob, Method::GET, "/api/v1/orgs/acme", None)
            .await
            .0,
        StatusCode::OK
    );
    let (_, me) = app.call(&bob, Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(me["memberships"][0]["org_slug"], "acme");
    assert_eq!(
        app.call(&bob, Method::POST, &accept, None).await.0,
        StatusCode::NOT_FOUND,
        "used once"
    );

    // Who may invite whom.
    let (s, _) = app
        .call(
            &bob,
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            Some(json!({"email": "cy@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "members do not invite");
    let (_, members) = app
        .call(&ann, Method::GET, "/api/v1/orgs/acme/members", None)
        .await;
    let bob_id = members["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| m["role"] == "member")
        .and_then(|m| m["user_id"].as_str())
        .expect("bob")
        .to_owned();
    app.call(
        &ann,
        Method::PATCH,
        &format!("/api/v1/orgs/acme/members/{bob_id}"),
        Some(json!({"role": "admin"})),
    )
    .await;
    let (s, _) = app
        .call(
            &bob,
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            Some(json!({"email": "cy@example.com", "role": "owner"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not above the inviter's role");
    let (s, p) = app
        .call(
            &bob,
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            Some(json!({"email": "not an email", "role": "viewer"})),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("email"))
    );
    let (s, p) = app
        .call(
            &bob,
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            Some(json!({"email": "cy@example.com", "role": "boss"})),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role"))
    );
    let (s, _) = app
        .call(
            &bob,
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            Some(json!({"email": "cy@example.com", "role": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn invitations_on_sqlite() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn invitations_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}
