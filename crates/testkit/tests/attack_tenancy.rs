//! Attacks on organizations, invitations and API keys (issue 13), black-box through HTTP, each
//! on SQLite with the in-process cache and on PostgreSQL with Redis. Each test is named after
//! the threat it closes.
//!
//! The cast: `ann` owns the organization `ann`; `adam` joins it as an admin through an
//! invitation; `vic` is someone adam invites. Invitees sign in with a mailed code, so they
//! own their address.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app_with};

testkit::on_both_backends!(
    removed_admins_invitation_no_longer_admits,
    demoted_admins_invitation_no_longer_admits,
    deleted_inviters_invitation_no_longer_admits,
    invitation_never_gives_more_than_its_inviters_current_role,
    invitations_are_listed_without_tokens_and_revoked_at_once,
    admin_key_cannot_promote_members,
    key_cannot_hold_a_scope_its_role_does_not_allow,
    read_only_key_cannot_write_or_chat,
    key_never_acts_above_its_demoted_creator,
    key_dies_with_its_creators_membership,
    key_dies_when_its_creator_leaves,
    key_dies_with_its_creators_account,
);

async fn invite(app: &TestApp, token: &str, email: &str, role: &str) -> (StatusCode, Value) {
    app.call(
        token,
        Method::POST,
        "/api/v1/orgs/ann/invitations",
        Some(json!({"email": email, "role": role})),
    )
    .await
}

async fn accept(app: &TestApp, token: &str, invitation: &Value) -> (StatusCode, Value) {
    let t = invitation["token"].as_str().expect("invitation token");
    app.call(
        token,
        Method::POST,
        &format!("/api/v1/invitations/{t}/accept"),
        None,
    )
    .await
}

async fn set_role(app: &TestApp, token: &str, user: &str, role: &str) -> StatusCode {
    app.call(
        token,
        Method::PATCH,
        &format!("/api/v1/orgs/ann/members/{user}"),
        Some(json!({"role": role})),
    )
    .await
    .0
}

async fn remove(app: &TestApp, token: &str, user: &str) -> StatusCode {
    app.call(
        token,
        Method::DELETE,
        &format!("/api/v1/orgs/ann/members/{user}"),
        None,
    )
    .await
    .0
}

/// Makes an API key of `ann` (the organization) as `token`; returns the created body.
async fn key(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.call(token, Method::POST, "/api/v1/orgs/ann/api-keys", Some(body))
        .await
}

async fn secret_of(app: &TestApp, token: &str, body: Value) -> String {
    let (s, k) = key(app, token, body).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    k["secret"].as_str().expect("secret").to_owned()
}

/// The role a credential acts with in `ann` (`GET /orgs/ann` answers the caller's role), or
/// the status when refused.
async fn acting_role(app: &TestApp, credential: &str) -> Result<String, StatusCode> {
    let (s, org) = app
        .call(credential, Method::GET, "/api/v1/orgs/ann", None)
        .await;
    if s == StatusCode::OK {
        Ok(org["role"].as_str().expect("role").to_owned())
    } else {
        Err(s)
    }
}

struct Team {
    ann: String,
    adam: String,
    adam_id: String,
}

/// `ann` owns `ann`; `adam` is its admin.
async fn team(app: &TestApp) -> Team {
    let (ann, _) = app.owner("ann").await;
    let (adam, adam_id) = app.sign_in_by_code("adam").await;
    let (s, inv) = invite(app, &ann, "adam@example.com", "admin").await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    let (s, joined) = accept(app, &adam, &inv).await;
    assert_eq!(s, StatusCode::OK, "{joined}");
    assert_eq!(joined["role"], "admin");
    Team { ann, adam, adam_id }
}

async fn removed_admins_invitation_no_longer_admits(app: &TestApp) {
    let t = team(app).await;
    let (s, inv) = invite(app, &t.adam, "vic@example.com", "admin").await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    assert_eq!(
        remove(app, &t.ann, &t.adam_id).await,
        StatusCode::NO_CONTENT
    );

    let (vic, _) = app.sign_in_by_code("vic").await;
    let (s, p) = accept(app, &vic, &inv).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(acting_role(app, &vic).await, Err(StatusCode::NOT_FOUND));
}

async fn demoted_admins_invitation_no_longer_admits(app: &TestApp) {
    let t = team(app).await;
    let (s, inv) = invite(app, &t.adam, "vic@example.com", "member").await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    assert_eq!(
        set_role(app, &t.ann, &t.adam_id, "member").await,
        StatusCode::OK
    );

    let (vic, _) = app.sign_in_by_code("vic").await;
    let (s, p) = accept(app, &vic, &inv).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(acting_role(app, &vic).await, Err(StatusCode::NOT_FOUND));

    // Promoted again, the same invitation works (it was never spent).
    assert_eq!(
        set_role(app, &t.ann, &t.adam_id, "admin").await,
        StatusCode::OK
    );
    let (s, joined) = accept(app, &vic, &inv).await;
    assert_eq!(
        (s, joined["role"].as_str()),
        (StatusCode::OK, Some("member"))
    );
}

async fn deleted_inviters_invitation_no_longer_admits(app: &TestApp) {
    let t = team(app).await;
    let (s, inv) = invite(app, &t.adam, "vic@example.com", "admin").await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    let (s, p) = app
        .call(&t.adam, Method::DELETE, "/api/v1/users/me", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{p}");

    let (vic, _) = app.sign_in_by_code("vic").await;
    let (s, p) = accept(app, &vic, &inv).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(acting_role(app, &vic).await, Err(StatusCode::NOT_FOUND));
}

async fn invitation_never_gives_more_than_its_inviters_current_role(app: &TestApp) {
    let t = team(app).await;
    // An admin cannot invite an owner.
    let (s, _) = invite(app, &t.adam, "vic@example.com", "owner").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An owner can; made an admin afterwards, the owner invitation is worth nothing.
    assert_eq!(
        set_role(app, &t.ann, &t.adam_id, "owner").await,
        StatusCode::OK
    );
    let (s, inv) = invite(app, &t.adam, "vic@example.com", "owner").await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    assert_eq!(
        set_role(app, &t.ann, &t.adam_id, "admin").await,
        StatusCode::OK
    );

    let (vic, _) = app.sign_in_by_code("vic").await;
    let (s, p) = accept(app, &vic, &inv).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    assert_eq!(acting_role(app, &vic).await, Err(StatusCode::NOT_FOUND));
}

async fn invitations_are_listed_without_tokens_and_revoked_at_once(app: &TestApp) {
    let t = team(app).await;
    let (_, first) = invite(app, &t.ann, "vic@example.com", "member").await;
    let (_, second) = invite(app, &t.adam, "val@example.com", "viewer").await;
    let tokens = [
        first["token"].as_str().expect("token"),
        second["token"].as_str().expect("token"),
    ];

    // Listed by admins, a page at a time, never with a token.
    let (s, page) = app
        .call(
            &t.adam,
            Method::GET,
            "/api/v1/orgs/ann/invitations?limit=1",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (s, rest) = app
        .call(
            &t.adam,
            Method::GET,
            &format!("/api/v1/orgs/ann/invitations?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");
    let (i1, i2) = (&page["items"][0], &rest["items"][0]);
    assert_eq!(i1["id"], first["invitation"]["id"]);
    assert_eq!(
        (i1["email"].as_str(), i1["role"].as_str()),
        (Some("vic@example.com"), Some("member"))
    );
    assert_eq!(
        (i2["email"].as_str(), i2["role"].as_str()),
        (Some("val@example.com"), Some("viewer"))
    );
    assert_eq!(i2["invited_by"].as_str(), Some(t.adam_id.as_str()));
    for field in ["expires_at", "created_at", "invited_by"] {
        assert!(i1[field].is_string(), "{field}: {i1}");
    }
    for t in tokens {
        assert!(!page.to_string().contains(t) && !rest.to_string().contains(t));
    }
    // A member sees no invitations.
    assert_eq!(
        set_role(app, &t.ann, &t.adam_id, "member").await,
        StatusCode::OK
    );
    let (s, _) = app
        .call(&t.adam, Method::GET, "/api/v1/orgs/ann/invitations", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Another organization's admin cannot revoke them, through either organization.
    let (bob, _) = app.owner("bob").await;
    let id = first["invitation"]["id"].as_str().expect("id");
    for path in [
        format!("/api/v1/orgs/bob/invitations/{id}"),
        format!("/api/v1/orgs/ann/invitations/{id}"),
    ] {
        let (s, _) = app.call(&bob, Method::DELETE, &path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    // Revoked: gone from the list, and the token no longer admits.
    let path = format!("/api/v1/orgs/ann/invitations/{id}");
    let (s, _) = app.call(&t.ann, Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.call(&t.ann, Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = app
        .call(&t.ann, Method::GET, "/api/v1/orgs/ann/invitations", None)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    let (vic, _) = app.sign_in_by_code("vic").await;
    let (s, _) = accept(app, &vic, &first).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(acting_role(app, &vic).await, Err(StatusCode::NOT_FOUND));
}

async fn admin_key_cannot_promote_members(app: &TestApp) {
    let t = team(app).await;
    assert_eq!(
        set_role(app, &t.ann, &t.adam_id, "member").await,
        StatusCode::OK
    );
    let (s, created) = key(app, &t.ann, json!({"name": "ops", "role": "admin"})).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["api_key"]["scopes"],
        json!(["read", "write", "chat"])
    );
    let admin_key = created["secret"].as_str().expect("secret");
    let key_id = created["api_key"]["id"].as_str().expect("id");

    // The key is an admin for everything but people and keys.
    assert_eq!(acting_role(app, admin_key).await, Ok("admin".to_owned()));
    assert_eq!(
        set_role(app, admin_key, &t.adam_id, "admin").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        remove(app, admin_key, &t.adam_id).await,
        StatusCode::FORBIDDEN
    );
    let (s, _) = invite(app, admin_key, "mallory@example.com", "admin").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (method, path) in [
        (Method::GET, "/api/v1/orgs/ann/invitations".to_owned()),
        (Method::GET, "/api/v1/orgs/ann/api-keys".to_owned()),
        (
            Method::DELETE,
            format!("/api/v1/orgs/ann/api-keys/{key_id}"),
        ),
    ] {
        let (s, p) = app.call(admin_key, method.clone(), &path, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {p}");
    }
    let (_, members) = app
        .call(&t.ann, Method::GET, "/api/v1/orgs/ann/members", None)
        .await;
    assert!(
        members["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|m| m["user_id"] == t.adam_id.as_str() && m["role"] == "member"),
        "{members}"
    );

    // Only a key made for it, on purpose, manages members.
    let people = secret_of(
        app,
        &t.ann,
        json!({"name": "hr", "role": "admin", "scopes": ["members:manage"]}),
    )
    .await;
    assert_eq!(
        set_role(app, &people, &t.adam_id, "viewer").await,
        StatusCode::OK
    );
}

async fn key_cannot_hold_a_scope_its_role_does_not_allow(app: &TestApp) {
    let t = team(app).await;
    for (role, scopes) in [
        ("member", json!(["members:manage"])),
        ("member", json!(["invitations:manage"])),
        ("member", json!(["keys:manage"])),
        ("viewer", json!(["write"])),
        ("viewer", json!(["chat"])),
        ("admin", json!(["root"])),
        ("admin", json!([])),
    ] {
        let (s, p) = key(
            app,
            &t.adam,
            json!({"name": "k", "role": role, "scopes": scopes}),
        )
        .await;
        assert_eq!(
            (s, p["errors"][0]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("scopes")),
            "{role} {scopes}: {p}"
        );
    }
    // Nor a role above its creator's (an admin makes no owner key, a member no key at all).
    let (s, _) = key(app, &t.adam, json!({"name": "k", "role": "owner"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        set_role(app, &t.ann, &t.adam_id, "member").await,
        StatusCode::OK
    );
    let (s, _) = key(app, &t.adam, json!({"name": "k", "role": "member"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A viewer key gets only `read` by default.
    let (s, v) = key(app, &t.ann, json!({"name": "v", "role": "viewer"})).await;
    assert_eq!(
        (s, &v["api_key"]["scopes"]),
        (StatusCode::CREATED, &json!(["read"]))
    );
}

async fn read_only_key_cannot_write_or_chat(app: &TestApp) {
    let t = team(app).await;
    let reader = secret_of(
        app,
        &t.ann,
        json!({"name": "r", "role": "member", "scopes": ["read"]}),
    )
    .await;
    let chatter = secret_of(
        app,
        &t.ann,
        json!({"name": "c", "role": "member", "scopes": ["chat"]}),
    )
    .await;
    let call = |cred: &str, method: Method, path: &'static str, body: Option<Value>| {
        let cred = cred.to_owned();
        async move { app.call_in(&cred, method, path, body, Some("ann")).await.0 }
    };
    assert_eq!(
        call(&reader, Method::GET, "/api/v1/collections", None).await,
        StatusCode::OK
    );
    let write = json!({"title": "x"});
    let ask = json!({"question": "what is in here?"});
    assert_eq!(
        call(
            &reader,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(write.clone())
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&reader, Method::POST, "/api/v1/ai/qa", Some(ask.clone())).await,
        StatusCode::FORBIDDEN
    );
    // A chat key asks, but neither reads the data directly nor writes.
    assert_eq!(
        call(&chatter, Method::GET, "/api/v1/collections", None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&chatter, Method::POST, "/api/v1/chat/sessions", Some(write)).await,
        StatusCode::FORBIDDEN
    );
    let asked = call(&chatter, Method::POST, "/api/v1/ai/qa", Some(ask)).await;
    assert!(
        asked != StatusCode::FORBIDDEN && asked != StatusCode::UNAUTHORIZED,
        "{asked}"
    );
}

async fn key_never_acts_above_its_demoted_creator(app: &TestApp) {
    let t = team(app).await;
    let secret = secret_of(app, &t.adam, json!({"name": "adam's", "role": "admin"})).await;
    let collection = |name: &str| {
        let body = json!({ "name": name });
        let secret = secret.clone();
        async move {
            app.call_in(
                &secret,
                Method::POST,
                "/api/v1/collections",
                Some(body),
                Some("ann"),
            )
            .await
            .0
        }
    };
    assert_eq!(acting_role(app, &secret).await, Ok("admin".to_owned()));
    assert_eq!(collection("before").await, StatusCode::CREATED);

    assert_eq!(
        set_role(app, &t.ann, &t.adam_id, "viewer").await,
        StatusCode::OK
    );
    assert_eq!(acting_role(app, &secret).await, Ok("viewer".to_owned()));
    assert_eq!(collection("after").await, StatusCode::FORBIDDEN);
    let (s, _) = app
        .call(&secret, Method::GET, "/api/v1/orgs/ann/members", None)
        .await;
    assert_eq!(s, StatusCode::OK, "a viewer may still read");

    // The key list says who made it.
    let (_, keys) = app
        .call(&t.ann, Method::GET, "/api/v1/orgs/ann/api-keys", None)
        .await;
    let made = &keys["items"][0]["created_by"];
    assert_eq!(
        (made["id"].as_str(), made["email"].as_str()),
        (Some(t.adam_id.as_str()), Some("adam@example.com")),
        "{keys}"
    );
}

async fn key_dies_with_its_creators_membership(app: &TestApp) {
    let t = team(app).await;
    let secret = secret_of(app, &t.adam, json!({"name": "adam's", "role": "admin"})).await;
    // Used once, so the creator's membership is cached.
    assert_eq!(acting_role(app, &secret).await, Ok("admin".to_owned()));
    assert_eq!(
        remove(app, &t.ann, &t.adam_id).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        acting_role(app, &secret).await,
        Err(StatusCode::UNAUTHORIZED)
    );
    // Back as a member, the key does not come back as an admin.
    let (s, inv) = invite(app, &t.ann, "adam@example.com", "viewer").await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(accept(app, &t.adam, &inv).await.0, StatusCode::OK);
    assert_eq!(acting_role(app, &secret).await, Ok("viewer".to_owned()));
}

async fn key_dies_when_its_creator_leaves(app: &TestApp) {
    let t = team(app).await;
    let secret = secret_of(app, &t.adam, json!({"name": "adam's", "role": "member"})).await;
    assert_eq!(acting_role(app, &secret).await, Ok("member".to_owned()));
    assert_eq!(
        remove(app, &t.adam, &t.adam_id).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        acting_role(app, &secret).await,
        Err(StatusCode::UNAUTHORIZED)
    );
}

async fn key_dies_with_its_creators_account(app: &TestApp) {
    let t = team(app).await;
    let secret = secret_of(app, &t.adam, json!({"name": "adam's", "role": "admin"})).await;
    assert_eq!(acting_role(app, &secret).await, Ok("admin".to_owned()));
    let (s, p) = app
        .call(&t.adam, Method::DELETE, "/api/v1/users/me", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{p}");
    assert_eq!(
        acting_role(app, &secret).await,
        Err(StatusCode::UNAUTHORIZED)
    );
    let (s, _) = app
        .call_in(
            &secret,
            Method::GET,
            "/api/v1/collections",
            None,
            Some("ann"),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

// --- Organizations per account -------------------------------------------------------------

fn cap_of_three(s: &mut quire::Settings) {
    s.orgs.max_owned_per_account = 3;
}

async fn create_org(app: &TestApp, token: &str, slug: &str) -> (StatusCode, Value) {
    app.call(
        token,
        Method::POST,
        "/api/v1/orgs",
        Some(json!({"name": slug, "slug": slug})),
    )
    .await
}

async fn one_account_cannot_create_organizations_without_limit(app: &TestApp) {
    let (ann, _) = app.owner("ann").await;
    for slug in ["ann-two", "ann-three"] {
        assert_eq!(create_org(app, &ann, slug).await.0, StatusCode::CREATED);
    }
    let (s, p) = create_org(app, &ann, "ann-four").await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("org_limit_reached")),
        "{p}"
    );
    // Deleting one frees its place.
    let (s, _) = app
        .call(&ann, Method::DELETE, "/api/v1/orgs/ann-three", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        create_org(app, &ann, "ann-four").await.0,
        StatusCode::CREATED
    );
}

async fn parallel_creations_cannot_pass_the_org_cap(app: &TestApp) {
    let (eve, _) = app.sign_in_by_code("eve").await;
    let slugs: Vec<String> = (0..8).map(|i| format!("eve-org-{i}")).collect();
    let results =
        futures_util::future::join_all(slugs.iter().map(|slug| create_org(app, &eve, slug))).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let refused = results
        .iter()
        .filter(|(s, p)| *s == StatusCode::FORBIDDEN && p["code"] == "org_limit_reached")
        .count();
    assert_eq!((created, refused), (3, 5), "{results:?}");
    let (_, mine) = app.call(&eve, Method::GET, "/api/v1/orgs", None).await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(3), "{mine}");
}

#[tokio::test]
async fn one_account_cannot_create_organizations_without_limit_on_sqlite() {
    let app = spawn_app_with(TestOptions::default().tweak(cap_of_three)).await;
    one_account_cannot_create_organizations_without_limit(&app).await;
}

#[tokio::test]
async fn one_account_cannot_create_organizations_without_limit_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production().tweak(cap_of_three)).await;
    one_account_cannot_create_organizations_without_limit(&app).await;
}

#[tokio::test]
async fn parallel_creations_cannot_pass_the_org_cap_on_sqlite() {
    let app = spawn_app_with(TestOptions::default().tweak(cap_of_three)).await;
    parallel_creations_cannot_pass_the_org_cap(&app).await;
}

#[tokio::test]
async fn parallel_creations_cannot_pass_the_org_cap_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions::production().tweak(cap_of_three)).await;
    parallel_creations_cannot_pass_the_org_cap(&app).await;
}
