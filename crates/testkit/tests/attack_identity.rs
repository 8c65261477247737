//! Attacks on accounts and credentials (issue 13), black-box through HTTP, each on SQLite with
//! the in-process cache and on PostgreSQL with Redis: pre-hijacking an address to take over an
//! organization, spending an owner's recovery budget, secrets in the log, responses with
//! secrets kept by caches.

use std::io::Write;
use std::sync::{Mutex, Once};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestOptions, spawn_app_with};

const VICTIM: &str = "victim@corp.test";
const STRANGER_PASSWORD: &str = "stranger's chosen passphrase";

/// Everything every test of this binary logs, at `debug`, without colours or times.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber before any app starts (so `spawn_app`'s own one does not
/// take its place).
fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(|| Capture)
            .with_ansi(false)
            .without_time()
            .try_init()
            .expect("the first subscriber of this test binary");
    });
}

fn log_text() -> String {
    String::from_utf8_lossy(
        &LOG.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}

async fn app(production: bool) -> Option<TestApp> {
    capture_logs();
    if production && testkit::services_skipped("PostgreSQL + Redis") {
        return None;
    }
    let opts = if production {
        TestOptions::production()
    } else {
        TestOptions::default()
    };
    Some(
        spawn_app_with(opts.tweak(|s| {
            s.http.trust_forwarded_for = true;
        }))
        .await,
    )
}

async fn post_from(app: &TestApp, ip: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    let res = app
        .client
        .post(app.url(path))
        .header("x-forwarded-for", ip)
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn register(app: &TestApp, email: &str, password: &str) -> Value {
    let (s, body) = post_from(
        app,
        "192.0.2.1",
        "/api/v1/auth/register",
        &json!({"email": email, "password": password, "name": "Someone"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    body
}

async fn login(app: &TestApp, email: &str, password: &str) -> StatusCode {
    post_from(
        app,
        "192.0.2.2",
        "/api/v1/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
    .0
}

/// A mail in the development outbox.
struct Mail {
    subject: String,
    body: String,
}

/// Mails to `to` in the outbox, newest first.
async fn mails_to(app: &TestApp, to: &str) -> Vec<Mail> {
    app.store()
        .await
        .outbox(200)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|m| m.to == to)
        .map(|m| Mail {
            subject: m.subject,
            body: m.body,
        })
        .collect()
}

/// The owner of the organization `acme` inviting `email` as a member: the token.
async fn invite(app: &TestApp, email: &str) -> String {
    let (admin, _) = app.owner("acme").await;
    let (s, created) = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            Some(json!({"email": email, "role": "member"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    created["token"].as_str().expect("token").to_owned()
}

async fn stranger_loses_the_account(app: &TestApp) {
    // A stranger registers the victim's address with a password of their choosing.
    let stranger = register(app, VICTIM, STRANGER_PASSWORD).await;
    assert!(
        stranger["user"]["email_verified_at"].is_null(),
        "{stranger}"
    );
    let stranger_access = stranger["tokens"]["access_token"].as_str().expect("a");
    let stranger_refresh = stranger["tokens"]["refresh_token"].as_str().expect("r");

    // The real owner signs in with a code mailed to the address.
    let (s, _) = post_from(
        app,
        "198.51.100.10",
        "/api/v1/auth/code/request",
        &json!({"email": VICTIM}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let code = app.latest_code(VICTIM).await;
    let (s, tokens) = post_from(
        app,
        "198.51.100.10",
        "/api/v1/auth/code/verify",
        &json!({"email": VICTIM, "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let owner = tokens["access_token"].as_str().expect("a").to_owned();
    let (_, me) = app.call(&owner, Method::GET, "/api/v1/auth/me", None).await;
    assert!(me["user"]["email_verified_at"].is_string(), "{me}");

    // The stranger's password and sessions are gone.
    assert_eq!(
        login(app, VICTIM, STRANGER_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call(stranger_access, Method::GET, "/api/v1/auth/me", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "the stranger's access token died with its session"
    );
    let (s, _) = post_from(
        app,
        "192.0.2.1",
        "/api/v1/auth/refresh",
        &json!({"refresh_token": stranger_refresh}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The owner joins an organization; the stranger still cannot get in to read it.
    let token = invite(app, VICTIM).await;
    let (s, org) = app
        .call(
            &owner,
            Method::POST,
            &format!("/api/v1/invitations/{token}/accept"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{org}");
    assert_eq!(
        login(app, VICTIM, STRANGER_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn stranger_who_registered_first_loses_the_account_to_the_owner() {
    for production in [false, true] {
        if let Some(app) = app(production).await {
            stranger_loses_the_account(&app).await;
        }
    }
}

async fn unverified_cannot_accept(app: &TestApp) {
    let stranger = register(app, VICTIM, STRANGER_PASSWORD).await;
    let stranger = stranger["tokens"]["access_token"].as_str().expect("a");
    // Even holding the token (shared by an admin, or shown by a leaky client).
    let token = invite(app, VICTIM).await;
    let accept = format!("/api/v1/invitations/{token}/accept");
    let (s, problem) = app.call(stranger, Method::POST, &accept, None).await;
    assert_eq!(
        (s, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_unverified")),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("/auth/email/verify")),
        "the problem says how to verify: {problem}"
    );
    let (_, me) = app
        .call(stranger, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert!(me["memberships"].as_array().is_some_and(Vec::is_empty));

    // A wrong confirmation code does not verify.
    let (s, _) = app
        .call(
            stranger,
            Method::POST,
            "/api/v1/auth/email/verify",
            Some(json!({"code": "not a code"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.call(stranger, Method::POST, &accept, None).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn stranger_who_registered_first_cannot_accept_the_invitation() {
    for production in [false, true] {
        if let Some(app) = app(production).await {
            unverified_cannot_accept(&app).await;
        }
    }
}

async fn owner_confirms(app: &TestApp) {
    // The registrant who owns the mailbox confirms with the code from the registration mail,
    // keeps password and session, and may accept.
    let ann = register(app, "ann@corp.test", "ann's own passphrase").await;
    let ann_token = ann["tokens"]["access_token"].as_str().expect("a");
    let mail = mails_to(app, "ann@corp.test").await;
    assert_eq!(mail.len(), 1, "registration mails a confirmation code");
    assert!(!mail[0].subject.chars().any(|c| c.is_ascii_digit()));
    let code = app.latest_code("ann@corp.test").await;
    let (s, user) = app
        .call(
            ann_token,
            Method::POST,
            "/api/v1/auth/email/verify",
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{user}");
    assert!(user["email_verified_at"].is_string());
    assert_eq!(
        login(app, "ann@corp.test", "ann's own passphrase").await,
        StatusCode::OK
    );
    let token = invite(app, "ann@corp.test").await;
    assert_eq!(
        app.call(
            ann_token,
            Method::POST,
            &format!("/api/v1/invitations/{token}/accept"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );

    // A used reset token proves the address too (and sets the password it brings).
    register(app, "bo@corp.test", "bo's first passphrase").await;
    let (s, _) = post_from(
        app,
        "198.51.100.20",
        "/api/v1/auth/password/forgot",
        &json!({"email": "bo@corp.test"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let reset = reset_token(app, "bo@corp.test").await;
    let (s, _) = post_from(
        app,
        "198.51.100.20",
        "/api/v1/auth/password/reset",
        &json!({"token": reset, "new_password": "bo's new passphrase"}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, tokens) = post_from(
        app,
        "198.51.100.20",
        "/api/v1/auth/login",
        &json!({"email": "bo@corp.test", "password": "bo's new passphrase"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, me) = app
        .call(
            tokens["access_token"].as_str().expect("a"),
            Method::GET,
            "/api/v1/auth/me",
            None,
        )
        .await;
    assert!(me["user"]["email_verified_at"].is_string(), "{me}");
}

#[tokio::test]
async fn owner_who_registered_keeps_the_password_when_confirming_the_address() {
    for production in [false, true] {
        if let Some(app) = app(production).await {
            owner_confirms(&app).await;
        }
    }
}

async fn reset_token(app: &TestApp, to: &str) -> String {
    let mails = mails_to(app, to).await;
    let mail = mails
        .iter()
        .find(|m| m.subject.contains("Reset"))
        .expect("a reset mail");
    mail.body
        .lines()
        .map(str::trim)
        .find(|l| l.len() >= 20 && !l.contains(' '))
        .expect("a token line")
        .to_owned()
}

async fn recovery_survives_a_stranger(app: &TestApp) {
    register(app, VICTIM, "the owner's passphrase").await;
    let (stranger_a, stranger_b, owner) = ("203.0.113.7", "203.0.113.8", "198.51.100.30");
    // The stranger asks for codes until the mail stops (3 an hour from one address).
    for _ in 0..4 {
        let (s, _) = post_from(
            app,
            stranger_a,
            "/api/v1/auth/code/request",
            &json!({"email": VICTIM}),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    // Registration mail + the stranger's 3 codes.
    assert_eq!(mails_to(app, VICTIM).await.len(), 4);

    // The owner still gets a code ...
    post_from(
        app,
        owner,
        "/api/v1/auth/code/request",
        &json!({"email": VICTIM}),
    )
    .await;
    assert_eq!(
        mails_to(app, VICTIM).await.len(),
        5,
        "the owner's code mail"
    );
    let code = app.latest_code(VICTIM).await;
    // ... which the stranger's wrong guesses from elsewhere do not kill.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..6 {
        let (s, _) = post_from(
            app,
            stranger_b,
            "/api/v1/auth/code/verify",
            &json!({"email": VICTIM, "code": wrong}),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // The stranger's own attempts are used up, even with the right code.
    let (s, _) = post_from(
        app,
        stranger_b,
        "/api/v1/auth/code/verify",
        &json!({"email": VICTIM, "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The owner gets a reset mail, and the code works.
    let (s, _) = post_from(
        app,
        owner,
        "/api/v1/auth/password/forgot",
        &json!({"email": VICTIM}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(
        mails_to(app, VICTIM)
            .await
            .iter()
            .any(|m| m.subject.contains("Reset")),
        "the owner's reset mail"
    );
    let (s, tokens) = post_from(
        app,
        owner,
        "/api/v1/auth/code/verify",
        &json!({"email": VICTIM, "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let reset = reset_token(app, VICTIM).await;
    let (s, _) = post_from(
        app,
        owner,
        "/api/v1/auth/password/reset",
        &json!({"token": reset, "new_password": "the owner's new passphrase"}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn stranger_cannot_spend_the_owners_recovery_budget_or_kill_the_owners_code() {
    for production in [false, true] {
        if let Some(app) = app(production).await {
            recovery_survives_a_stranger(&app).await;
        }
    }
}

async fn guessing_is_capped(app: &TestApp) {
    post_from(
        app,
        "198.51.100.40",
        "/api/v1/auth/code/request",
        &json!({"email": VICTIM}),
    )
    .await;
    let code = app.latest_code(VICTIM).await;
    let wrong = if code == "999999" { "999998" } else { "999999" };
    // Four addresses guess 5 times each: 20 attempts, the address's hourly cap.
    for i in 0..4 {
        for _ in 0..5 {
            post_from(
                app,
                &format!("203.0.113.{}", 50 + i),
                "/api/v1/auth/code/verify",
                &json!({"email": VICTIM, "code": wrong}),
            )
            .await;
        }
    }
    // Past the cap even the right code, from a fresh address, fails: at most 20 guesses an
    // hour reach an address's codes.
    let (s, _) = post_from(
        app,
        "203.0.113.99",
        "/api/v1/auth/code/verify",
        &json!({"email": VICTIM, "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn guessing_a_code_from_many_addresses_meets_the_hourly_cap_of_the_address() {
    for production in [false, true] {
        if let Some(app) = app(production).await {
            guessing_is_capped(&app).await;
        }
    }
}

/// True when `needle` is in `hay` as a whole word (not inside a longer run of letters,
/// digits or dots), so a 6-digit code is not found inside an id or a number.
fn contains_word(hay: &str, needle: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '.');
    hay.match_indices(needle).any(|(i, _)| {
        edge(hay[..i].chars().next_back()) && edge(hay[i + needle.len()..].chars().next())
    })
}

async fn every_credential_flow(app: &TestApp) -> Vec<(String, String)> {
    let mut secrets: Vec<(String, String)> = Vec::new();
    let mut keep = |what: &str, v: &str| {
        assert!(!v.is_empty(), "{what}");
        secrets.push((what.to_owned(), v.to_owned()));
    };
    let ip = "198.51.100.60";
    // Register, login, refresh, logout.
    let p1 = "first secret passphrase";
    keep("password", p1);
    let reg = register(app, "dora@corp.test", p1).await;
    keep(
        "access token",
        reg["tokens"]["access_token"].as_str().expect("a"),
    );
    keep(
        "refresh token",
        reg["tokens"]["refresh_token"].as_str().expect("r"),
    );
    keep(
        "registration code",
        &app.latest_code("dora@corp.test").await,
    );
    let (s, login) = post_from(
        app,
        ip,
        "/api/v1/auth/login",
        &json!({"email": "dora@corp.test", "password": p1}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    keep("access token", login["access_token"].as_str().expect("a"));
    let (s, refreshed) = post_from(
        app,
        ip,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": login["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    keep("refresh token", login["refresh_token"].as_str().expect("r"));
    keep(
        "access token",
        refreshed["access_token"].as_str().expect("a"),
    );
    keep(
        "refresh token",
        refreshed["refresh_token"].as_str().expect("r"),
    );
    let (s, _) = post_from(
        app,
        ip,
        "/api/v1/auth/logout",
        &json!({"refresh_token": refreshed["refresh_token"]}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Code request and verify (this first proof removes the password).
    post_from(
        app,
        ip,
        "/api/v1/auth/code/request",
        &json!({"email": "dora@corp.test"}),
    )
    .await;
    let code = app.latest_code("dora@corp.test").await;
    keep("sign-in code", &code);
    let (s, signed) = post_from(
        app,
        ip,
        "/api/v1/auth/code/verify",
        &json!({"email": "dora@corp.test", "code": code}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    keep("access token", signed["access_token"].as_str().expect("a"));
    keep(
        "refresh token",
        signed["refresh_token"].as_str().expect("r"),
    );

    // Forgot and reset.
    post_from(
        app,
        ip,
        "/api/v1/auth/password/forgot",
        &json!({"email": "dora@corp.test"}),
    )
    .await;
    let reset = reset_token(app, "dora@corp.test").await;
    keep("reset token", &reset);
    let p2 = "second secret passphrase";
    keep("password", p2);
    let (s, _) = post_from(
        app,
        ip,
        "/api/v1/auth/password/reset",
        &json!({"token": reset, "new_password": p2}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Password change.
    let (_, login) = post_from(
        app,
        ip,
        "/api/v1/auth/login",
        &json!({"email": "dora@corp.test", "password": p2}),
    )
    .await;
    let dora = login["access_token"].as_str().expect("a").to_owned();
    keep("access token", &dora);
    keep("refresh token", login["refresh_token"].as_str().expect("r"));
    let p3 = "third secret passphrase";
    keep("password", p3);
    let (s, _) = app
        .call(
            &dora,
            Method::POST,
            "/api/v1/auth/password/change",
            Some(json!({"current_password": p2, "new_password": p3})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Invitation create and accept; API key create.
    let (admin, _) = app.owner("globex").await;
    keep("access token", &admin);
    let (s, created) = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/orgs/globex/invitations",
            Some(json!({"email": "dora@corp.test", "role": "member"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let invitation = created["token"].as_str().expect("token");
    keep("invitation token", invitation);
    let (s, _) = app
        .call(
            &dora,
            Method::POST,
            &format!("/api/v1/invitations/{invitation}/accept"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, key) = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/orgs/globex/api-keys",
            Some(json!({"name": "CI", "role": "member"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    keep("API key", key["secret"].as_str().expect("secret"));
    secrets
}

async fn nothing_secret_in_the_log(app: &TestApp) {
    let secrets = every_credential_flow(app).await;
    let log = log_text();
    assert!(
        log.contains("DEBUG") && log.contains("request"),
        "the log is captured at debug"
    );
    for (what, secret) in &secrets {
        assert!(
            !contains_word(&log, secret),
            "a {what} reached the log at debug level"
        );
    }
}

#[tokio::test]
async fn credentials_never_reach_the_log_at_debug_level() {
    for production in [false, true] {
        if let Some(app) = app(production).await {
            nothing_secret_in_the_log(&app).await;
        }
    }
}

async fn no_store_everywhere(app: &TestApp) {
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "eli@corp.test", "password": "eli's passphrase", "name": "Eli"}),
        )
        .await;
    let no_store = |res: &reqwest::Response| {
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-store"))
    };
    assert!(no_store(&res), "registration (tokens)");
    let body: Value = res.json().await.expect("json");
    let token = body["tokens"]["access_token"]
        .as_str()
        .expect("a")
        .to_owned();
    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "eli@corp.test", "password": "eli's passphrase"}),
        )
        .await;
    assert!(no_store(&res), "login (tokens)");
    let login: Value = res.json().await.expect("json");
    let res = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": login["refresh_token"]}),
        )
        .await;
    assert!(no_store(&res), "refresh (tokens)");
    let res = app
        .post_json(
            "/api/v1/auth/code/verify",
            &json!({"email": "eli@corp.test", "code": "000000"}),
        )
        .await;
    assert!(no_store(&res), "code verify (and its errors)");
    app.client
        .post(app.url("/api/v1/orgs"))
        .bearer_auth(&token)
        .json(&json!({"name": "Initech", "slug": "initech"}))
        .send()
        .await
        .expect("sent");
    for (path, body) in [
        (
            "/api/v1/orgs/initech/api-keys",
            json!({"name": "CI", "role": "member"}),
        ),
        (
            "/api/v1/orgs/initech/invitations",
            json!({"email": "fay@corp.test", "role": "member"}),
        ),
    ] {
        let res = app
            .client
            .post(app.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::CREATED, "{path}");
        assert!(no_store(&res), "{path} (a secret)");
    }
    let res = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert!(no_store(&res), "any API answer by default");
}

#[tokio::test]
async fn responses_carrying_secrets_are_never_kept_by_caches() {
    for production in [false, true] {
        if let Some(app) = app(production).await {
            no_store_everywhere(&app).await;
        }
    }
}
