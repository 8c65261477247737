//! The signed-in account's routes, black-box: password change, profile, preferences,
//! deletion.

use kernel::{Clock as _, Role, SystemClock, TenantId, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy::MembershipRepository as _;
use testkit::{TestApp, spawn_app};

const PASSWORD: &str = "correct horse battery";

struct Session {
    id: UserId,
    access: String,
    refresh: String,
}

async fn register(app: &TestApp, name: &str) -> Session {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": format!("{name}@example.com"), "password": PASSWORD, "name": name}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let b: Value = res.json().await.expect("json");
    Session {
        id: UserId::parse(b["user"]["id"].as_str().expect("id")).expect("uuid"),
        access: b["tokens"]["access_token"].as_str().expect("a").to_owned(),
        refresh: b["tokens"]["refresh_token"].as_str().expect("r").to_owned(),
    }
}

async fn login(app: &TestApp, name: &str, password: &str) -> (StatusCode, Value) {
    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": format!("{name}@example.com"), "password": password}),
        )
        .await;
    let s = res.status();
    (s, res.json().await.unwrap_or(Value::Null))
}

fn fields(p: &Value) -> Vec<String> {
    p["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions() {
    let app = spawn_app().await;
    let here = register(&app, "ann").await;
    let (_, other) = login(&app, "ann", PASSWORD).await;
    let other_access = other["access_token"].as_str().expect("a").to_owned();
    let other_refresh = other["refresh_token"].as_str().expect("r").to_owned();

    let path = "/api/v1/auth/password/change";
    let (s, p) = app
        .call(
            &here.access,
            Method::POST,
            path,
            Some(
                json!({"current_password": "not it at all", "new_password": "a brand new secret"}),
            ),
        )
        .await;
    assert_eq!(
        (s, fields(&p)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["current_password".to_owned()]
        )
    );
    let (s, p) = app
        .call(
            &here.access,
            Method::POST,
            path,
            Some(json!({"current_password": PASSWORD, "new_password": "password"})),
        )
        .await;
    assert_eq!(
        (s, fields(&p)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["new_password".to_owned()]
        )
    );

    let (s, _) = app
        .call(
            &here.access,
            Method::POST,
            path,
            Some(json!({"current_password": PASSWORD, "new_password": "a brand new secret"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // This session goes on; the other one is over, access and refresh alike.
    assert_eq!(
        app.call(&here.access, Method::GET, "/api/v1/auth/me", None)
            .await
            .0,
        StatusCode::OK
    );
    let refreshed = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": here.refresh}),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(
        app.call(&other_access, Method::GET, "/api/v1/auth/me", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let dead = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": other_refresh}),
        )
        .await;
    assert_eq!(dead.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(
        login(&app, "ann", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "ann", "a brand new secret").await.0,
        StatusCode::OK
    );
    let (s, _) = app
        .call(
            "not-a-token",
            Method::POST,
            path,
            Some(json!({"current_password": "a", "new_password": "b"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_profile_is_patched_field_by_field() {
    let app = spawn_app().await;
    let ann = register(&app, "ann").await;
    let path = "/api/v1/users/me/profile";
    let (s, p) = app.call(&ann.access, Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        p,
        json!({"display_name": "ann", "avatar_url": null, "locale": null, "timezone": null})
    );

    let (s, p) = app.call(&ann.access, Method::PATCH, path, Some(json!({
        "display_name": "Ann Lee", "avatar_url": "https://cdn.example.com/ann.png", "locale": "fa-IR", "timezone": "Asia/Tehran"
    }))).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["locale"], "fa-IR");
    let (_, p) = app
        .call(
            &ann.access,
            Method::PATCH,
            path,
            Some(json!({"avatar_url": null})),
        )
        .await;
    assert_eq!(
        p,
        json!({"display_name": "Ann Lee", "avatar_url": null, "locale": "fa-IR", "timezone": "Asia/Tehran"})
    );

    let (s, p) = app.call(&ann.access, Method::PATCH, path, Some(json!({
        "display_name": "", "avatar_url": "javascript:alert(1)", "locale": "english please", "timezone": "../etc/passwd"
    }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        fields(&p),
        ["avatar_url", "display_name", "locale", "timezone"]
    );
    let (s, _) = app
        .call(
            &ann.access,
            Method::PATCH,
            path,
            Some(json!({"is_platform_admin": true})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused, not ignored"
    );
    let (_, me) = app
        .call(&ann.access, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert_eq!(
        (
            me["user"]["name"].as_str(),
            me["user"]["is_platform_admin"].as_bool()
        ),
        (Some("Ann Lee"), Some(false))
    );
}

#[tokio::test]
async fn preferences_are_any_object_up_to_16_kib() {
    let app = spawn_app().await;
    let ann = register(&app, "ann").await;
    let path = "/api/v1/users/me/preferences";
    assert_eq!(
        app.call(&ann.access, Method::GET, path, None).await,
        (StatusCode::OK, json!({}))
    );
    let prefs = json!({"theme": "dark", "sidebar": {"width": 280}, "recent": [1, 2, 3]});
    assert_eq!(
        app.call(&ann.access, Method::PUT, path, Some(prefs.clone()))
            .await,
        (StatusCode::OK, prefs.clone())
    );
    assert_eq!(
        app.call(&ann.access, Method::GET, path, None).await,
        (StatusCode::OK, prefs.clone())
    );
    for bad in [
        json!([1, 2]),
        json!("dark"),
        json!({"big": "x".repeat(17 * 1024)}),
    ] {
        let (s, p) = app.call(&ann.access, Method::PUT, path, Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    }
    assert_eq!(
        app.call(&ann.access, Method::GET, path, None).await.1,
        prefs,
        "refusals change nothing"
    );
    let bob = register(&app, "bob").await;
    assert_eq!(
        app.call(&bob.access, Method::GET, path, None).await.1,
        json!({}),
        "per account"
    );
}

#[tokio::test]
async fn deleting_the_account_respects_organization_owners() {
    let app = spawn_app().await;
    let ann = register(&app, "ann").await;
    let bob = register(&app, "bob").await;
    let (_, shared) = app
        .call(
            &ann.access,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": "Shared", "slug": "shared"})),
        )
        .await;
    let (_, solo) = app
        .call(
            &ann.access,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": "Solo", "slug": "solo"})),
        )
        .await;
    let shared_id = TenantId::parse(shared["id"].as_str().expect("id")).expect("uuid");
    app.store()
        .await
        .add(shared_id, bob.id, Role::Member, SystemClock.now())
        .await
        .expect("bob joins");

    let (s, p) = app
        .call(&ann.access, Method::DELETE, "/api/v1/users/me", None)
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("shared")),
        "{p}"
    );

    let (s, _) = app
        .call(
            &ann.access,
            Method::PATCH,
            &format!("/api/v1/orgs/shared/members/{}", bob.id),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .call(&ann.access, Method::DELETE, "/api/v1/users/me", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    assert_eq!(
        app.call(&ann.access, Method::GET, "/api/v1/auth/me", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "ann", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let refresh = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": ann.refresh}),
        )
        .await;
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
    // Bob's organization lives on without ann; ann's solo organization went with her.
    let (s, members) = app
        .call(
            &bob.access,
            Method::GET,
            "/api/v1/orgs/shared/members",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(members["items"].as_array().map(Vec::len), Some(1));
    let solo_id = TenantId::parse(solo["id"].as_str().expect("id")).expect("uuid");
    assert!(
        tenancy::OrganizationRepository::find_by_id(&app.store().await, solo_id)
            .await
            .expect("read")
            .is_none()
    );
    // The email is free again.
    register(&app, "ann").await;
}
