//! `/api/v1/orgs` and the tenant extractors, black-box: roles, last owner, isolation.

use kernel::{Clock as _, Role, SystemClock, TenantId, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy::MembershipRepository as _;
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

struct Person {
    id: UserId,
    token: String,
}

async fn person(app: &TestApp, name: &str) -> Person {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": format!("{name}@example.com"), "password": "correct horse battery", "name": name}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    Person {
        id: UserId::parse(body["user"]["id"].as_str().expect("id")).expect("uuid"),
        token: body["tokens"]["access_token"]
            .as_str()
            .expect("token")
            .to_owned(),
    }
}

async fn join(app: &TestApp, org: &str, who: &Person, role: Role) {
    let store = app.store().await;
    store
        .add(
            TenantId::parse(org).expect("org id"),
            who.id,
            role,
            SystemClock.now(),
        )
        .await
        .expect("membership");
}

async fn scenario(app: &TestApp) {
    let ann = person(app, "ann").await;
    let bob = person(app, "bob").await;
    let eve = person(app, "eve").await;

    let (s, org) = app
        .call(
            &ann.token,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": "Acme", "slug": "acme"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{org}");
    assert_eq!(
        (
            org["slug"].as_str(),
            org["role"].as_str(),
            org["plan"].as_str()
        ),
        (Some("acme"), Some("owner"), Some("free"))
    );
    let id = org["id"].as_str().expect("id").to_owned();

    let (s, taken) = app
        .call(
            &bob.token,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": "Other", "slug": "acme"})),
        )
        .await;
    assert_eq!(
        (s, taken["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (s, bad) = app
        .call(
            &bob.token,
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": " ", "slug": "Bad Slug"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad["errors"].as_array().map(Vec::len), Some(2), "{bad}");

    // The owner sees it by id and by slug, in /orgs and in /auth/me.
    for r in [&id, "acme"] {
        let (s, got) = app
            .call(&ann.token, Method::GET, &format!("/api/v1/orgs/{r}"), None)
            .await;
        assert_eq!((s, got["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    }
    let (_, list) = app
        .call(&ann.token, Method::GET, "/api/v1/orgs", None)
        .await;
    assert_eq!(list["items"][0]["slug"], "acme");
    assert_eq!(list["next_cursor"], Value::Null);
    let (_, me) = app
        .call(&ann.token, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert_eq!(
        me["memberships"],
        json!([{"org_id": id, "org_slug": "acme", "org_name": "Acme", "role": "owner"}])
    );

    // A stranger learns nothing: 404 for the id, the slug and everything under it.
    for path in [
        format!("/api/v1/orgs/{id}"),
        "/api/v1/orgs/acme".to_owned(),
        format!("/api/v1/orgs/{id}/members"),
    ] {
        let (s, p) = app.call(&eve.token, Method::GET, &path, None).await;
        assert_eq!(
            (s, p["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{path}"
        );
    }
    let (s, _) = app
        .call(
            &eve.token,
            Method::DELETE,
            &format!("/api/v1/orgs/acme/members/{}", ann.id),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call(
            &eve.token,
            Method::PATCH,
            "/api/v1/orgs/acme",
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call(&eve.token, Method::DELETE, "/api/v1/orgs/acme", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, eve_orgs) = app
        .call(&eve.token, Method::GET, "/api/v1/orgs", None)
        .await;
    assert_eq!(eve_orgs["items"], json!([]));

    // Roles: bob joins as a viewer.
    join(app, &id, &bob, Role::Viewer).await;
    let (s, _) = app
        .call(&bob.token, Method::GET, "/api/v1/orgs/acme", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, p) = app
        .call(
            &bob.token,
            Method::PATCH,
            "/api/v1/orgs/acme",
            Some(json!({"name": "Hijacked"})),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, _) = app
        .call(
            &bob.token,
            Method::PATCH,
            &format!("/api/v1/orgs/acme/members/{}", bob.id),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a viewer cannot promote itself");

    // The tenant header route needs member: viewer 403, owner 200, stranger 404, none 400.
    let tenant = |who: &Person, header: Option<&str>| {
        let mut req = app
            .client
            .get(app.url("/__test/tenant"))
            .bearer_auth(&who.token);
        if let Some(h) = header {
            req = req.header("x-tenant-id", h);
        }
        req.send()
    };
    assert_eq!(
        tenant(&bob, Some("acme")).await.expect("sent").status(),
        StatusCode::FORBIDDEN
    );
    let ok = tenant(&ann, Some(&id)).await.expect("sent");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<Value>().await.expect("json")["role"], "owner");
    assert_eq!(
        tenant(&eve, Some("acme")).await.expect("sent").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        tenant(&eve, Some("not a slug!"))
            .await
            .expect("sent")
            .status(),
        StatusCode::NOT_FOUND
    );
    let missing = tenant(&ann, None).await.expect("sent");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.json::<Value>().await.expect("json")["code"],
        "tenant_required"
    );

    // The owner promotes bob to admin; an admin manages members but not ownership.
    let (s, m) = app
        .call(
            &ann.token,
            Method::PATCH,
            &format!("/api/v1/orgs/acme/members/{}", bob.id),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!((s, m["role"].as_str()), (StatusCode::OK, Some("admin")));
    let (s, _) = app
        .call(
            &bob.token,
            Method::PATCH,
            "/api/v1/orgs/acme",
            Some(json!({"name": "Acme Inc"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "the cached role was invalidated");
    let (s, _) = app
        .call(
            &bob.token,
            Method::PATCH,
            &format!("/api/v1/orgs/acme/members/{}", bob.id),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only an owner grants ownership");
    let (s, _) = app
        .call(
            &bob.token,
            Method::DELETE,
            &format!("/api/v1/orgs/acme/members/{}", ann.id),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only an owner removes an owner");
    let (s, _) = app
        .call(&bob.token, Method::DELETE, "/api/v1/orgs/acme", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only an owner deletes");
    let (s, p) = app
        .call(
            &ann.token,
            Method::PATCH,
            &format!("/api/v1/orgs/acme/members/{}", bob.id),
            Some(json!({"role": "god"})),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role"))
    );

    // The last owner stays.
    let (s, p) = app
        .call(
            &ann.token,
            Method::PATCH,
            &format!("/api/v1/orgs/acme/members/{}", ann.id),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (s, _) = app
        .call(
            &ann.token,
            Method::DELETE,
            &format!("/api/v1/orgs/acme/members/{}", ann.id),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Members list; unknown members are 404.
    let (s, members) = app
        .call(
            &bob.token,
            Method::GET,
            "/api/v1/orgs/acme/members?limit=1",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(members["items"].as_array().map(Vec::len), Some(1));
    assert!(members["next_cursor"].is_string());
    let (s, _) = app
        .call(
            &ann.token,
            Method::DELETE,
            &format!("/api/v1/orgs/acme/members/{}", UserId::new()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .call(
            &ann.token,
            Method::DELETE,
            "/api/v1/orgs/acme/members/not-an-id",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Bob reads the organization's documents: the page is kept (`documents.list_recheck_ms`).
    let documents = "/api/v1/documents?limit=20";
    let (s, _) = app
        .call_in(&bob.token, Method::GET, documents, None, Some("acme"))
        .await;
    assert_eq!(s, StatusCode::OK);

    // Bob leaves; then he is a stranger.
    let (s, _) = app
        .call(
            &bob.token,
            Method::DELETE,
            &format!("/api/v1/orgs/acme/members/{}", bob.id),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .call(&bob.token, Method::GET, "/api/v1/orgs/acme", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "leaving takes effect at once");
    let (s, _) = app
        .call_in(&bob.token, Method::GET, documents, None, Some("acme"))
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a kept page of documents is never served to a former member"
    );
    let (s, _) = app
        .call_in(&ann.token, Method::GET, documents, None, Some("acme"))
        .await;
    assert_eq!(s, StatusCode::OK, "the owner still reads them");

    // The owner deletes the organization.
    let (s, _) = app
        .call(&ann.token, Method::DELETE, "/api/v1/orgs/acme", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .call(&ann.token, Method::GET, "/api/v1/orgs/acme", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn organizations_on_sqlite() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn organizations_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}

#[tokio::test]
async fn org_routes_need_a_signed_in_user() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/api/v1/orgs"),
        (Method::POST, "/api/v1/orgs"),
        (Method::GET, "/api/v1/orgs/acme"),
        (Method::PATCH, "/api/v1/orgs/acme"),
        (Method::POST, "/api/v1/auth/password/change"),
        (Method::PUT, "/api/v1/users/me/preferences"),
    ] {
        // Even with a body that fails validation, the missing token is what is reported.
        let res = app
            .client
            .request(method, app.url(path))
            .json(&json!([1]))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

/// The members list names each member (email, name) of this organization only: never a
/// member of another organization, not a removed member; a viewer reads it (the existing
/// rule: any member), a stranger gets 404.
async fn members_list_names_its_own_members(app: &TestApp) {
    let ann = person(app, "ann").await;
    let vic = person(app, "vic").await;
    let bob = person(app, "bob").await;
    let eve = person(app, "eve").await;
    let mut ids = Vec::new();
    for (who, slug) in [(&ann, "acme"), (&eve, "evil")] {
        let (s, org) = app
            .call(
                &who.token,
                Method::POST,
                "/api/v1/orgs",
                Some(json!({"name": slug, "slug": slug})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{org}");
        ids.push(org["id"].as_str().expect("id").to_owned());
    }
    join(app, &ids[0], &vic, Role::Viewer).await;
    join(app, &ids[0], &bob, Role::Member).await;
    let list = |who: &str, org: &str| {
        let path = format!("/api/v1/orgs/{org}/members?limit=100");
        let token = who.to_owned();
        async move { app.call(&token, Method::GET, &path, None).await }
    };
    let emails = |page: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| {
                (
                    m["email"].as_str().expect("email").to_owned(),
                    m["name"].as_str().expect("name").to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let pair = |n: &str| (format!("{n}@example.com"), n.to_owned());
    let (s, page) = list(&vic.token, "acme").await;
    assert_eq!(s, StatusCode::OK, "a viewer reads the members: {page}");
    assert_eq!(emails(&page), vec![pair("ann"), pair("bob"), pair("vic")]);
    let (s, page) = list(&eve.token, "evil").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(emails(&page), vec![pair("eve")], "only its own member");
    let (s, page) = list(&eve.token, "acme").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a stranger: {page}");
    let (s, page) = list(&eve.token, &ids[0]).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a stranger, by id: {page}");
    let (s, _) = app
        .call(
            &ann.token,
            Method::DELETE,
            &format!("/api/v1/orgs/acme/members/{}", bob.id),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, page) = list(&ann.token, "acme").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(
        emails(&page),
        vec![pair("ann"), pair("vic")],
        "removed: gone"
    );
    let (s, page) = list(&bob.token, "acme").await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a removed member reads no list: {page}"
    );
}

#[tokio::test]
async fn members_list_on_sqlite() {
    members_list_names_its_own_members(&spawn_app().await).await;
}

#[tokio::test]
async fn members_list_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    members_list_names_its_own_members(&spawn_app_with(TestOptions::production()).await).await;
}
