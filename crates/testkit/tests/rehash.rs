//! A password hashed with older argon2 settings is re-hashed with the current ones at the next
//! successful login: two servers on one data folder, the second with stronger settings.

use identity::model::EmailAddress;
use identity::ports::UserRepository as _;
use quire::Application;
use reqwest::StatusCode;
use serde_json::json;
use testkit::spawn_app;

#[tokio::test]
async fn login_rehashes_with_the_current_settings() {
    let old = spawn_app().await;
    let res = old
        .post_json("/api/v1/auth/register", &json!({"email": "ann@example.com", "password": "correct horse battery", "name": "Ann"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let email = EmailAddress::parse("ann@example.com").expect("email");
    let stored = |phc: Option<String>| phc.expect("a password hash");
    let before = stored(
        old.store()
            .await
            .find_by_email(&email)
            .await
            .expect("read")
            .expect("ann")
            .password_hash,
    );
    assert!(before.contains("m=8,t=1,p=1"), "{before}");

    // The same data folder, stronger settings.
    let mut settings = old.settings.clone();
    settings.auth.argon2_memory_kib = 16;
    settings.auth.argon2_iterations = 2;
    let new = Application::build(settings).await.expect("a second server");
    let url = format!("http://127.0.0.1:{}/api/v1/auth/login", new.port());
    let handle = new.handle();
    let server = tokio::spawn(new.run_until_stopped());

    let client = testkit::http_client().build().expect("a client");
    let wrong = client
        .post(&url)
        .json(&json!({"email": "ann@example.com", "password": "not the password"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let unchanged = stored(
        old.store()
            .await
            .find_by_email(&email)
            .await
            .expect("read")
            .expect("ann")
            .password_hash,
    );
    assert_eq!(unchanged, before, "a failed login changes nothing");

    let ok = client
        .post(&url)
        .json(&json!({"email": "ann@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status(), StatusCode::OK);
    let after = stored(
        old.store()
            .await
            .find_by_email(&email)
            .await
            .expect("read")
            .expect("ann")
            .password_hash,
    );
    assert!(after.starts_with("$argon2id$v=19$m=16,t=2,p=1$"), "{after}");

    // And the re-hashed password still works, on either server.
    let again = old
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "ann@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    handle.stop(true).await;
    server.await.expect("task").expect("clean stop");
}
