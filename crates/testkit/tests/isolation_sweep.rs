//! The two-tenant isolation sweep: a member of tenant B, with valid credentials, calls every
//! route scoped to an organization with tenant A's id and slug, and gets 404 with none of A's
//! data. The route list comes from the OpenAPI document, so a new route that nobody classified
//! in `testkit::sweep::ROUTES` fails this test. On PostgreSQL it runs under row-level security.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::sweep::{ROUTES, Scope};
use testkit::{TestApp, TestOptions, spawn_app_with};

struct Tenant {
    token: String,
    user_id: String,
    org_id: String,
    slug: String,
    name: String,
}

async fn tenant(app: &TestApp, who: &str, slug: &str, name: &str) -> Tenant {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": format!("{who}@example.com"), "password": "correct horse battery", "name": who}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    let token = body["tokens"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let user_id = body["user"]["id"].as_str().expect("id").to_owned();
    let org: Value = app
        .client
        .post(app.url("/api/v1/orgs"))
        .bearer_auth(&token)
        .json(&json!({"name": name, "slug": slug}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    Tenant {
        token,
        user_id,
        org_id: org["id"].as_str().expect("org id").to_owned(),
        slug: slug.to_owned(),
        name: name.to_owned(),
    }
}

/// A body every check but the object lookup accepts.
fn valid_body(template: &str) -> Value {
    if template.ends_with("/messages") {
        json!({"content": "b"})
    } else if template.contains("/chat/sessions") {
        json!({"title": "b"})
    } else if template.ends_with("/feedback") {
        json!({"rating": "up"})
    } else if template.ends_with("/analyze") {
        json!({"tasks": ["summary"]})
    } else if template.contains("/webhooks") {
        json!({"enabled": true})
    } else {
        json!({"name": "b"})
    }
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

async fn sweep(app: &TestApp) {
    let a = tenant(app, "ann", "acme", "Acme Secret Projects").await;
    let b = tenant(app, "bob", "bobco", "Bob Co").await;

    let doc: Value = app
        .get("/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("openapi");
    let documented = documented_routes(&doc);
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let unlisted: Vec<_> = documented.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "routes nobody registered with the isolation sweep (add them to testkit::sweep::ROUTES): {unlisted:?}"
    );
    let gone: Vec<_> = listed.difference(&documented).collect();
    assert!(
        gone.is_empty(),
        "routes in the sweep that no longer exist: {gone:?}"
    );

    // Each tenant has an API key; B's must be as powerless in A as B's user.
    let key = |t: &Tenant| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/orgs/{}/api-keys", t.slug)))
            .bearer_auth(&t.token)
            .json(&json!({"name": "ci", "role": "admin"}));
        async move {
            let created: Value = req.send().await.expect("sent").json().await.expect("json");
            (
                created["api_key"]["id"]
                    .as_str()
                    .expect("key id")
                    .to_owned(),
                created["secret"].as_str().expect("secret").to_owned(),
            )
        }
    };
    let (a_key_id, _) = key(&a).await;
    let (_, b_key) = key(&b).await;
    // A's pending invitation (its id is what `/invitations/{id}` names).
    let (status, inv) = app
        .call(
            &a.token,
            Method::POST,
            &format!("/api/v1/orgs/{}/invitations", a.slug),
            Some(json!({"email": "acme-invitee@example.com", "role": "member"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    let a_invitation = inv["invitation"]["id"]
        .as_str()
        .expect("invitation id")
        .to_owned();

    // A's webhook, which hears of A's document below (an attempt in its log).
    let receiver = testkit::receiver::Receiver::start().await;
    let (status, hook) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": receiver.url, "events": ["document.ready"]})),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let a_webhook = hook["id"].as_str().expect("webhook id").to_owned();

    // Tenant A's documents: a collection, a document (ingested) and its job.
    let (status, coll) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/collections",
            Some(json!({"name": "Acme Secret Collection"})),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{coll}");
    let a_collection = coll["id"].as_str().expect("collection id").to_owned();
    let (status, up) = app
        .upload(
            &a.token,
            &a.slug,
            "acme-secret-plans.txt",
            b"The acme launch date is the ninth of March.",
            Some(&a_collection),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let a_document = up["document"]["id"]
        .as_str()
        .expect("document id")
        .to_owned();
    let a_job = up["job_id"].as_str().expect("job id").to_owned();
    let ready = app.settled(&a.token, &a.slug, &a_document).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        receiver
            .wait_for(1, std::time::Duration::from_secs(20))
            .await
            .len(),
        1,
        "A's webhook heard of the document"
    );
    // A's workflow run (an export of its usage, with a CSV) and schedule.
    let (status, run) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/workflows/trigger",
            Some(json!({"workflow": "export_usage"})),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let a_run = run["run"]["id"].as_str().expect("run id").to_owned();
    let (status, sched) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/workflows/schedules",
            Some(json!({"workflow": "export_usage", "cron": "0 3 * * *"})),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sched}");
    let a_schedule = sched["id"].as_str().expect("schedule id").to_owned();
    let mut a_attempt = String::new();
    for _ in 0..200 {
        let (_, log) = app
            .call_in(
                &a.token,
                Method::GET,
                &format!("/api/v1/webhooks/{a_webhook}/deliveries"),
                None,
                Some(&a.slug),
            )
            .await;
        if let Some(id) = log["items"][0]["id"].as_str() {
            a_attempt = id.to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!a_attempt.is_empty(), "A's webhook logged its attempt");
    // A's conversation (with a cited answer) and assistant.
    let (status, s) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/chat/sessions",
            Some(json!({"title": "Acme secret chat", "collection_ids": [a_collection]})),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let a_session = s["id"].as_str().expect("session id").to_owned();
    let (status, answer) = app
        .call_in(
            &a.token,
            Method::POST,
            &format!("/api/v1/chat/sessions/{a_session}/messages"),
            Some(json!({"content": "When is the acme launch date?"})),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("ninth of March")
    );
    let a_answer = answer["message"]["id"]
        .as_str()
        .expect("message id")
        .to_owned();
    let (status, assistant) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/assistants",
            Some(json!({"name": "Acme secret assistant", "collection_ids": [a_collection]})),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{assistant}");
    let a_assistant = assistant["id"].as_str().expect("assistant id").to_owned();
    // A's usage: its answer and the indexing of its document are in its ledger, with A's user.
    let (status, usage) = app
        .call_in(&a.token, Method::GET, "/api/v1/usage", None, Some(&a.slug))
        .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert!(usage["totals"]["requests"].as_u64() > Some(1), "{usage}");
    assert!(usage.to_string().contains(a.user_id.as_str()), "{usage}");
    // A's evaluation of its collection.
    let (status, evaluation) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/evaluations",
            Some(json!({
                "collection_ids": [a_collection],
                "cases": [{"question": "launch date", "expected_document_ids": [a_document]}],
            })),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{evaluation}");
    let a_evaluation = evaluation["id"].as_str().expect("evaluation id").to_owned();
    // The id of A's object that a route names: `{id}` means a different thing per route.
    let object = |template: &str| -> String {
        if template.contains("/evaluations/") {
            a_evaluation.clone()
        } else if template.contains("/workflows/runs/") {
            a_run.clone()
        } else if template.contains("/workflows/schedules/") {
            a_schedule.clone()
        } else if template.contains("/webhooks/deliveries/") {
            a_attempt.clone()
        } else if template.contains("/webhooks/") {
            a_webhook.clone()
        } else if template.contains("/collections/") {
            a_collection.clone()
        } else if template.contains("/documents/") {
            a_document.clone()
        } else if template.contains("/jobs/") {
            a_job.clone()
        } else if template.contains("/chat/sessions/") {
            a_session.clone()
        } else if template.contains("/chat/messages/") {
            a_answer.clone()
        } else if template.contains("/assistants/") {
            a_assistant.clone()
        } else if template.contains("/invitations/") {
            a_invitation.clone()
        } else {
            a_key_id.clone()
        }
    };
    let a_secrets = [
        a.org_id.clone(),
        a.name.clone(),
        a_collection.clone(),
        a_document.clone(),
        a_job.clone(),
        "Acme Secret Collection".to_owned(),
        "acme-secret-plans".to_owned(),
        "ninth of March".to_owned(),
        "Acme secret chat".to_owned(),
        "Acme secret assistant".to_owned(),
        a_session.clone(),
        a_answer.clone(),
        a_assistant.clone(),
        a.user_id.clone(),
        a_webhook.clone(),
        a_attempt.clone(),
        a_run.clone(),
        a_schedule.clone(),
        a_evaluation.clone(),
    ];

    let mut checked = 0;
    for (method, template, scope) in ROUTES {
        if matches!(scope, Scope::Public | Scope::User) {
            continue;
        }
        if *scope == Scope::Admin {
            // Not an administrator: 403 on every administration route, whatever the ids.
            let path = template.replace("{id}", &a.user_id);
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let mut req = app
                .client
                .request(method.clone(), app.url(&path))
                .bearer_auth(&b.token);
            if method == Method::PATCH {
                // A body that fails validation: the 403 must come first.
                req = req.json(&json!([1]));
            }
            let res = req.send().await.expect("sent");
            let status = res.status();
            let text = res.text().await.expect("body");
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} as a non-administrator: {text}"
            );
            assert!(
                !text.contains(&a.user_id) && !text.contains("ann@example.com"),
                "{text}"
            );
            checked += 1;
            continue;
        }
        // As B's user and as B's API key, with A's id and A's slug.
        for (a_ref, b_credential) in [
            (&a.org_id, &b.token),
            (&a.slug, &b.token),
            (&a.org_id, &b_key),
            (&a.slug, &b_key),
        ] {
            let path = template
                .replace("{org}", a_ref)
                .replace("{user_id}", &a.user_id)
                .replace("{id}", &object(template));
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let mut req = app
                .client
                .request(method.clone(), app.url(&path))
                .bearer_auth(b_credential);
            if *scope == Scope::TenantHeader {
                req = req.header("x-tenant-id", a_ref.as_str());
            }
            if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                // A body that fails validation: the 404 must come first, whatever the body.
                req = req.json(&json!([1]));
            }
            let res = req.send().await.expect("sent");
            let status = res.status();
            let text = res.text().await.expect("body");
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{method} {path} as tenant B: {text}"
            );
            for secret in [&a.org_id, &a.slug, &a.name, &a.user_id] {
                assert!(
                    !text.contains(secret.as_str()),
                    "{method} {path} leaked {secret}: {text}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "the sweep checked no route");

    // Object-level isolation: B in its own tenant, naming A's objects, finds none of them.
    for (method, template, scope) in ROUTES {
        if *scope != Scope::TenantHeader {
            continue;
        }
        for b_credential in [&b.token, &b_key] {
            let path = template.replace("{id}", &object(template));
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let mut req = app
                .client
                .request(method.clone(), app.url(&path))
                .bearer_auth(b_credential)
                .header("x-tenant-id", b.slug.as_str());
            let names_a_collection = template.ends_with("/evaluations") && method == Method::POST;
            if names_a_collection {
                // A's collection in B's tenant: not found.
                req = req.json(&json!({
                    "collection_ids": [a_collection],
                    "cases": [{"question": "launch date", "expected_answer": "ninth"}],
                }));
            } else if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                // A valid body: only the object lookup can refuse.
                req = req.json(&valid_body(template));
            }
            let res = req.send().await.expect("sent");
            let status = res.status();
            let text = res.text().await.expect("body");
            if template.contains("{id}") || names_a_collection {
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{method} {path} in tenant B: {text}"
                );
            }
            for secret in &a_secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{method} {path} in tenant B leaked {secret}: {text}"
                );
            }
        }
    }
    // Search: B holds a document with A's very words; in every mode B finds only its own
    // chunk, never A's, and naming A's collection is "not found".
    let (status, b_coll) = app
        .call_in(
            &b.token,
            Method::POST,
            "/api/v1/collections",
            Some(json!({"name": "Bravo notes"})),
            Some(&b.slug),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b_coll}");
    let b_collection = b_coll["id"].as_str().expect("collection id").to_owned();
    let (status, up) = app
        .upload(
            &b.token,
            &b.slug,
            "bravo.txt",
            b"The bravo launch date is the ninth of March too.",
            Some(&b_collection),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{up}");
    let b_document = up["document"]["id"].as_str().expect("id").to_owned();
    let ready = app.settled(&b.token, &b.slug, &b_document).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    for mode in ["hybrid", "vector", "keyword"] {
        for b_credential in [&b.token, &b_key] {
            let (status, found) = app
                .call_in(
                    b_credential,
                    Method::POST,
                    "/api/v1/search",
                    Some(json!({"query": "acme launch date ninth of March", "mode": mode, "top_k": 50})),
                    Some(&b.slug),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{mode}: {found}");
            let results = found["results"].as_array().expect("results");
            assert!(
                results
                    .iter()
                    .all(|r| r["document_id"] == b_document.as_str()),
                "{mode}: B's search reached another tenant: {found}"
            );
            assert_eq!(results.len(), 1, "{mode}: B finds its own chunk: {found}");
            // B's own text shares "ninth of March"; A's sentence is "The acme launch …".
            let text = found.to_string();
            for secret in a_secrets
                .iter()
                .filter(|s| s.as_str() != "ninth of March")
                .chain(std::iter::once(&"acme launch".to_owned()))
            {
                assert!(
                    !text.contains(secret.as_str()),
                    "{mode} leaked {secret}: {text}"
                );
            }
            let (status, found) = app
                .call_in(
                    b_credential,
                    Method::POST,
                    "/api/v1/search",
                    Some(json!({"query": "acme", "mode": mode, "collection_ids": [a_collection]})),
                    Some(&b.slug),
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{mode}: {found}");
        }
    }
    // And A, searching its own tenant, finds its document (the sweep's data is searchable).
    let (status, found) = app
        .call_in(
            &a.token,
            Method::POST,
            "/api/v1/search",
            Some(json!({"query": "acme launch", "mode": "keyword"})),
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        found["results"][0]["document_id"],
        a_document.as_str(),
        "{found}"
    );

    // A's document survived B's deletes and reindexes, untouched.
    let (status, doc) = app
        .call_in(
            &a.token,
            Method::GET,
            &format!("/api/v1/documents/{a_document}"),
            None,
            Some(&a.slug),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(
        doc["job_id"],
        a_job.as_str(),
        "B's reindex did nothing: {doc}"
    );

    // Tenant A is untouched, and B still works in its own tenant.
    let res = app
        .client
        .get(app.url("/api/v1/orgs/acme"))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("sent");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["name"], a.name.as_str(), "tenant B changed tenant A");
    let res = app
        .client
        .get(app.url(&format!("/api/v1/orgs/{}", b.slug)))
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    // A's key still exists: B's calls revoked nothing.
    let res = app
        .client
        .get(app.url("/api/v1/orgs/acme/api-keys"))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("sent");
    let keys: Value = res.json().await.expect("json");
    assert_eq!(keys["items"][0]["id"], a_key_id.as_str());
}

#[tokio::test]
async fn tenant_b_never_reaches_tenant_a_on_sqlite() {
    sweep(
        &spawn_app_with(TestOptions {
            tweaks: vec![local_webhooks],
            ..TestOptions::default()
        })
        .await,
    )
    .await;
}

/// A's webhook posts to a local receiver.
fn local_webhooks(s: &mut settings::Settings) {
    s.webhooks.allow_http = true;
    s.webhooks.allow_private_destinations = true;
    s.webhooks.poll_interval_ms = 50;
}

#[tokio::test]
async fn tenant_b_never_reaches_tenant_a_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    let app = spawn_app_with(TestOptions {
        tweaks: vec![local_webhooks],
        ..TestOptions::production()
    })
    .await;
    // With row-level security on: the app's connections run as `quire_app`, which the
    // tenant policies bind (docs/security.md, "Row-level security"; row_level_security.rs).
    let (role, row_security) = app.store().await.session_role().await.expect("role");
    assert_eq!((role.as_str(), row_security.as_str()), ("quire_app", "on"));
    sweep(&app).await;
}
