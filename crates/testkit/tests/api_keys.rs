//! Organization API keys: the repository contract on every adapter, and the routes.

use kernel::{ApiKeyId, Clock as _, Role, SystemClock, TenantId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy::{ApiKey, ApiKeyRepository, KeyHash};
use testkit::{TestApp, TestOptions, spawn_app, spawn_app_with};

async fn contract(repo: &dyn ApiKeyRepository, tenant: TenantId, other: TenantId) {
    let now = SystemClock.now();
    let key = |tenant| ApiKey {
        id: ApiKeyId::new(),
        tenant_id: tenant,
        name: "ci".to_owned(),
        role: Role::Member,
        scopes: vec![tenancy::Scope::Read, tenancy::Scope::Chat],
        prefix: "qk_abcdefgh".to_owned(),
        created_by: None,
        created_at: now,
        last_used_at: None,
    };
    let (k1, k2) = (key(tenant), key(other));
    repo.create(k1.clone(), KeyHash([1; 32]))
        .await
        .expect("create");
    repo.create(k2.clone(), KeyHash([2; 32]))
        .await
        .expect("create");
    assert_eq!(
        repo.find_by_hash(&KeyHash([1; 32])).await.expect("find"),
        Some(k1.clone())
    );
    assert_eq!(
        repo.find_by_hash(&KeyHash([9; 32])).await.expect("find"),
        None
    );
    let listed = repo
        .list(tenant, &kernel::PageRequest::first(10).expect("page"))
        .await
        .expect("list");
    assert_eq!(listed.items, vec![k1.clone()], "only this tenant's keys");
    assert!(
        !repo.revoke(tenant, k2.id, now).await.expect("revoke"),
        "not through another tenant"
    );
    assert!(
        repo.find_by_hash(&KeyHash([2; 32]))
            .await
            .expect("find")
            .is_some()
    );
    repo.touch(tenant, k1.id, now).await.expect("touch");
    let touched = repo
        .find_by_hash(&KeyHash([1; 32]))
        .await
        .expect("find")
        .expect("live");
    assert_eq!(touched.last_used_at, Some(now));
    assert!(repo.revoke(tenant, k1.id, now).await.expect("revoke"));
    assert!(!repo.revoke(tenant, k1.id, now).await.expect("again"));
    assert_eq!(
        repo.find_by_hash(&KeyHash([1; 32])).await.expect("find"),
        None,
        "revoked keys stop at once"
    );
    assert!(
        repo.list(tenant, &kernel::PageRequest::first(10).expect("page"))
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn in_memory_meets_the_contract() {
    contract(
        &memory::InMemoryApiKeys::new(),
        TenantId::new(),
        TenantId::new(),
    )
    .await;
}

async fn two_orgs(store: &store_sql::SqlStore) -> (TenantId, TenantId) {
    use tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository};
    let mut ids = Vec::new();
    for slug in ["one-org", "two-org"] {
        let new = NewOrganization {
            name: OrgName::parse("Org").expect("name"),
            slug: OrgSlug::parse(slug).expect("slug"),
        };
        let org = OrganizationRepository::create(store, new)
            .await
            .expect("org");
        ids.push(org.id);
    }
    (ids[0], ids[1])
}

#[tokio::test]
async fn sqlite_meets_the_contract() {
    let (store, _dir) = testkit::sqlite_store().await;
    let (a, b) = two_orgs(&store).await;
    contract(&store, a, b).await;
}

#[tokio::test]
async fn postgres_meets_the_contract() {
    let Some((store, _guard)) = testkit::postgres_store().await else {
        return;
    };
    let (a, b) = two_orgs(&store).await;
    contract(&store, a, b).await;
}

async fn scenario(app: &TestApp) {
    let res = app
        .post_json("/api/v1/auth/register", &json!({"email": "ann@example.com", "password": "correct horse battery", "name": "Ann"}))
        .await;
    let ann = res.json::<Value>().await.expect("json")["tokens"]["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    app.call_in(
        &ann,
        Method::POST,
        "/api/v1/orgs",
        Some(json!({"name": "Acme", "slug": "acme"})),
        None,
    )
    .await;
    app.call_in(
        &ann,
        Method::POST,
        "/api/v1/orgs",
        Some(json!({"name": "Other", "slug": "other-org"})),
        None,
    )
    .await;

    let (s, created) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/orgs/acme/api-keys",
            Some(json!({"name": "CI", "role": "member"})),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("qk_") && secret.len() >= 40, "{secret}");
    assert!(secret.starts_with(created["api_key"]["prefix"].as_str().expect("prefix")));
    let key_id = created["api_key"]["id"].as_str().expect("id").to_owned();

    // The key acts for acme, as a member.
    let (s, t) = app
        .call_in(&secret, Method::GET, "/__test/tenant", None, Some("acme"))
        .await;
    assert_eq!((s, t["role"].as_str()), (StatusCode::OK, Some("member")));
    assert_eq!(
        app.call_in(&secret, Method::GET, "/api/v1/orgs/acme", None, None)
            .await
            .0,
        StatusCode::OK
    );
    // Not for another organization of the same owner; not as an admin; not as a user.
    assert_eq!(
        app.call_in(
            &secret,
            Method::GET,
            "/__test/tenant",
            None,
            Some("other-org")
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call_in(
            &secret,
            Method::PATCH,
            "/api/v1/orgs/acme",
            Some(json!({"name": "X"})),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call_in(&secret, Method::GET, "/api/v1/auth/me", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call_in(&secret, Method::GET, "/__test/tenant", None, None)
            .await
            .0,
        StatusCode::BAD_REQUEST,
        "keys still name their tenant"
    );

    // Listing shows the prefix and the last use, never the secret.
    let (s, list) = app
        .call_in(&ann, Method::GET, "/api/v1/orgs/acme/api-keys", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!list.to_string().contains(&secret));
    assert!(list["items"][0]["last_used_at"].is_string(), "{list}");
    assert_eq!(
        list["items"][0]["created_by"]["email"], "ann@example.com",
        "{list}"
    );
    assert_eq!(
        list["items"][0]["scopes"],
        json!(["read", "write", "chat"]),
        "the default scopes: {list}"
    );

    // Rules: no owner keys, no keys above one's role, no keys made by keys.
    let (s, p) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/orgs/acme/api-keys",
            Some(json!({"name": "x", "role": "owner"})),
            None,
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role"))
    );
    let (_, admin_key) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/orgs/acme/api-keys",
            Some(json!({"name": "ops", "role": "admin"})),
            None,
        )
        .await;
    let admin_secret = admin_key["secret"].as_str().expect("secret").to_owned();
    let (s, _) = app
        .call_in(
            &admin_secret,
            Method::POST,
            "/api/v1/orgs/acme/api-keys",
            Some(json!({"name": "spawn", "role": "viewer"})),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app
        .call_in(
            &admin_secret,
            Method::GET,
            "/api/v1/orgs/acme/api-keys",
            None,
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "managing keys is in no default scope"
    );
    let (s, ops) = app
        .call_in(
            &ann,
            Method::POST,
            "/api/v1/orgs/acme/api-keys",
            Some(json!({"name": "ops", "role": "admin", "scopes": ["read", "keys:manage"]})),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ops}");
    assert_eq!(ops["api_key"]["scopes"], json!(["read", "keys:manage"]));
    let ops_secret = ops["secret"].as_str().expect("secret");
    let (s, _) = app
        .call_in(
            ops_secret,
            Method::GET,
            "/api/v1/orgs/acme/api-keys",
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "a key with keys:manage may list keys");

    // Revocation takes effect at once.
    let (s, _) = app
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/orgs/acme/api-keys/{key_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        app.call_in(&secret, Method::GET, "/api/v1/orgs/acme", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = app
        .call_in(
            &ann,
            Method::DELETE,
            &format!("/api/v1/orgs/acme/api-keys/{key_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call_in("qk_forged", Method::GET, "/api/v1/orgs/acme", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn api_keys_on_sqlite() {
    scenario(&spawn_app().await).await;
}

#[tokio::test]
async fn api_keys_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    scenario(&spawn_app_with(TestOptions::production()).await).await;
}
