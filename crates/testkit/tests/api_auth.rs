//! `/api/v1/auth`, black-box: registration, login, refresh rotation and reuse, logout, `me`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

async fn register(app: &TestApp, email: &str) -> Value {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": "correct horse battery", "name": "Ann Lee"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.expect("json")
}

async fn me(app: &TestApp, access: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(access)
        .send()
        .await
        .expect("sent")
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let res = app.post_json(path, &body).await;
    let status = res.status();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn full_flow(app: &TestApp) {
    let body = register(app, "Ann.Lee@Example.com").await;
    assert_eq!(
        body["user"]["email"], "ann.lee@example.com",
        "emails are normalized"
    );
    assert_eq!(body["user"]["name"], "Ann Lee");
    assert_eq!(body["user"]["is_platform_admin"], false);
    let tokens = &body["tokens"];
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().expect("access");
    assert!(access.starts_with("v4.public."), "{access}");
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();

    let res = me(app, access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let me_body: Value = res.json().await.expect("json");
    assert_eq!(me_body["user"]["id"], body["user"]["id"]);
    assert_eq!(me_body["memberships"], json!([]));

    // Login with a case variant of the email.
    let (status, login) = post(
        app,
        "/api/v1/auth/login",
        json!({"email": "ANN.LEE@example.com", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert!(
        login["access_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("v4.public."))
    );

    // Refresh rotates: new tokens, the old refresh token is spent.
    let (status, rotated) = post(
        app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_refresh = rotated["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let new_access = rotated["access_token"].as_str().expect("access").to_owned();
    assert_ne!(new_refresh, refresh);
    assert_eq!(me(app, &new_access).await.status(), StatusCode::OK);

    // Replaying the spent token revokes the session: the newest tokens die too.
    let (status, replay) = post(
        app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{replay}");
    assert_eq!(replay["code"], "unauthenticated");
    let (status, _) = post(
        app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": new_refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(app, &new_access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The login session is separate and still works; logout ends it at once.
    let login_access = login["access_token"].as_str().expect("access").to_owned();
    let login_refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
    assert_eq!(me(app, &login_access).await.status(), StatusCode::OK);
    let res = app
        .post_json(
            "/api/v1/auth/logout",
            &json!({"refresh_token": login_refresh}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        me(app, &login_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = post(
        app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": login_refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn register_login_refresh_logout_on_sqlite() {
    full_flow(&spawn_app().await).await;
}

#[tokio::test]
async fn register_login_refresh_logout_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    full_flow(&spawn_app_with(TestOptions::production()).await).await;
}

#[tokio::test]
async fn a_taken_email_is_409_whatever_its_case() {
    let app = spawn_app().await;
    register(&app, "ann@example.com").await;
    let (status, body) = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": " ANN@example.COM ", "password": "another good one", "name": "Imposter"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "conflict");
}

#[tokio::test]
async fn registration_reports_every_bad_field() {
    let app = spawn_app().await;
    let (status, body) = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "not-an-email", "password": "password1", "name": "  "}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["email", "name", "password"], "{body}");

    for (email, password, name, field) in [
        (
            format!("{}@example.com", "a".repeat(250)),
            "good long pass".to_owned(),
            "Ann".to_owned(),
            "email",
        ),
        (
            "ann@example.com".to_owned(),
            "short".to_owned(),
            "Ann".to_owned(),
            "password",
        ),
        (
            "ann@example.com".to_owned(),
            "x".repeat(129),
            "Ann".to_owned(),
            "password",
        ),
        (
            "ann@example.com".to_owned(),
            "qwertyuiop".to_owned(),
            "Ann".to_owned(),
            "password",
        ),
        (
            "ann@example.com".to_owned(),
            "good long pass".to_owned(),
            "A\u{0}nn".to_owned(),
            "name",
        ),
        (
            "ann@example.com".to_owned(),
            "good long pass".to_owned(),
            "n".repeat(101),
            "name",
        ),
    ] {
        let (status, body) = post(
            &app,
            "/api/v1/auth/register",
            json!({"email": email, "password": password, "name": name}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    let (status, body) = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    register(&app, "ann@example.com").await;
    let (s1, wrong) = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": "ann@example.com", "password": "not the password"}),
    )
    .await;
    let (s2, unknown) = post(
        &app,
        "/api/v1/auth/login",
        json!({"email": "nobody@example.com", "password": "not the password"}),
    )
    .await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    for key in ["type", "title", "status", "detail", "code"] {
        assert_eq!(wrong[key], unknown[key], "{key}");
    }
    assert_eq!(wrong["detail"], "wrong email or password");
}

#[tokio::test]
async fn me_refuses_missing_malformed_and_forged_tokens() {
    let app = spawn_app().await;
    let body = register(&app, "ann@example.com").await;
    let access = body["tokens"]["access_token"].as_str().expect("access");
    let refresh = body["tokens"]["refresh_token"].as_str().expect("refresh");

    let res = app.get("/api/v1/auth/me").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    let mut tampered = access.to_owned();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for header in [
        "Basic YW5uOnB3".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer garbage".to_owned(),
        format!("Bearer {refresh}"),
        format!("Bearer {tampered}"),
        format!("Bearer {}", "v4.public.".to_owned() + &"A".repeat(5000)),
    ] {
        let res = app
            .client
            .get(app.url("/api/v1/auth/me"))
            .header("authorization", &header)
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{header:.40}");
        let p: Value = res.json().await.expect("problem");
        assert_eq!(p["code"], "unauthenticated");
    }
}

#[tokio::test]
async fn refresh_and_logout_refuse_junk_without_error() {
    let app = spawn_app().await;
    for token in ["", "qr_unknown", &"x".repeat(10_000)] {
        let (status, _) = post(
            &app,
            "/api/v1/auth/refresh",
            json!({"refresh_token": token}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:.20}");
        let res = app
            .post_json("/api/v1/auth/logout", &json!({"refresh_token": token}))
            .await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "{token:.20}");
    }
}
