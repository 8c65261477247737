//! `/api/v1/admin`, black-box: users (search, disable, enable, the administrator flag),
//! organizations (plans), the audit log with filters.

use kernel::UserId;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

async fn register(app: &TestApp, name: &str) -> (UserId, String) {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": format!("{name}@example.com"), "password": PASSWORD, "name": name}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let b: Value = res.json().await.expect("json");
    (
        UserId::parse(b["user"]["id"].as_str().expect("id")).expect("uuid"),
        b["tokens"]["access_token"]
            .as_str()
            .expect("token")
            .to_owned(),
    )
}

async fn login(app: &TestApp, name: &str) -> StatusCode {
    app.post_json(
        "/api/v1/auth/login",
        &json!({"email": format!("{name}@example.com"), "password": PASSWORD}),
    )
    .await
    .status()
}

async fn scenario(app: &TestApp) {
    let (root_id, root) = register(app, "root").await;
    let (bob_id, bob) = register(app, "bob").await;
    assert_eq!(
        app.call(&root, Method::GET, "/api/v1/admin/users", None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    app.make_platform_admin(root_id).await;

    // Search and get.
    let (s, found) = app
        .call(
            &root,
            Method::GET,
            "/api/v1/admin/users?q=BOB&limit=5",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["items"][0]["email"], "bob@example.com");
    let (s, all) = app
        .call(&root, Method::GET, "/api/v1/admin/users?limit=1", None)
        .await;
    assert_eq!(
        (s, all["items"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    assert!(all["next_cursor"].is_string());
    let path = format!("/api/v1/admin/users/{bob_id}");
    let (s, got) = app.call(&root, Method::GET, &path, None).await;
    assert_eq!(
        (s, got["disabled"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    for missing in [
        format!("/api/v1/admin/users/{}", UserId::new()),
        "/api/v1/admin/users/nope".to_owned(),
    ] {
        assert_eq!(
            app.call(&root, Method::GET, &missing, None).await.0,
            StatusCode::NOT_FOUND
        );
    }

    // Disabling ends bob's sessions at once; enabling lets him back in.
    let (s, p) = app
        .call(&root, Method::PATCH, &path, Some(json!({"disabled": true})))
        .await;
    assert_eq!((s, p["disabled"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(
        app.call(&bob, Method::GET, "/api/v1/auth/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(login(app, "bob").await, StatusCode::UNAUTHORIZED);
    app.call(
        &root,
        Method::PATCH,
        &path,
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(login(app, "bob").await, StatusCode::OK);

    // No self-harm; unknown fields refused; the flag can be granted.
    let me = format!("/api/v1/admin/users/{root_id}");
    let (s, p) = app
        .call(&root, Method::PATCH, &me, Some(json!({"disabled": true})))
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("disabled"))
    );
    let (s, _) = app
        .call(
            &root,
            Method::PATCH,
            &me,
            Some(json!({"is_platform_admin": false})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app
        .call(&root, Method::PATCH, &path, Some(json!({"role": "god"})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, p) = app
        .call(
            &root,
            Method::PATCH,
            &path,
            Some(json!({"is_platform_admin": true})),
        )
        .await;
    assert_eq!(
        (s, p["is_platform_admin"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    // Organizations and plans.
    let (_, org) = app
        .call(
            &root,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": "Acme", "slug": "acme"})),
        )
        .await;
    let org_path = format!("/api/v1/admin/orgs/{}", org["id"].as_str().expect("id"));
    let (s, orgs) = app
        .call(&root, Method::GET, "/api/v1/admin/orgs", None)
        .await;
    assert_eq!(
        (s, orgs["items"][0]["slug"].as_str()),
        (StatusCode::OK, Some("acme"))
    );
    let (s, p) = app
        .call(
            &root,
            Method::PATCH,
            &org_path,
            Some(json!({"plan": "pro"})),
        )
        .await;
    assert_eq!((s, p["plan"].as_str()), (StatusCode::OK, Some("pro")));
    let (s, p) = app
        .call(
            &root,
            Method::PATCH,
            &org_path,
            Some(json!({"plan": "platinum"})),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("plan"))
    );
    let (s, _) = app
        .call(
            &root,
            Method::PATCH,
            &format!("/api/v1/admin/orgs/{}", kernel::TenantId::new()),
            Some(json!({"plan": "pro"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, acme) = app
        .call(&root, Method::GET, "/api/v1/orgs/acme", None)
        .await;
    assert_eq!(acme["plan"], "pro", "the plan shows to members");

    // The audit log, filtered.
    let (s, log) = app
        .call(
            &root,
            Method::GET,
            "/api/v1/admin/audit-log?action=admin.user.updated",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let items = log["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{log}");
    assert!(items.iter().all(|e| e["actor"] == root_id.to_string()));
    let (_, bobs) = app
        .call(
            &root,
            Method::GET,
            &format!("/api/v1/admin/audit-log?actor={bob_id}&limit=100"),
            None,
        )
        .await;
    let actions: Vec<&str> = bobs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"auth.registered") && actions.contains(&"auth.login.succeeded"),
        "{actions:?}"
    );
    let (_, recent) = app
        .call(
            &root,
            Method::GET,
            "/api/v1/admin/audit-log?from=2999-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(recent["items"], json!([]));
    for bad in [
        "actor=x",
        "tenant=x",
        "action=nope",
        "from=yesterday",
        "cursor=AAAA",
    ] {
        let (s, p) = app
            .call(
                &root,
                Method::GET,
                &format!("/api/v1/admin/audit-log?{bad}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {p}");
    }
}

#[tokio::test]
async fn administration_on_sqlite() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn administration_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}
