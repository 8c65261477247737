//! The `quire` binary: `config`, `migrate`, and `serve` (printing where the console is) stopped
//! by SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use migration::MigratorTrait as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};

mod common;

use common::quire;

#[tokio::test]
async fn config_prints_the_effective_settings_with_secrets_redacted() {
    let out = quire()
        .args(["config", "--addr", "0.0.0.0:9999"])
        .env("QUIRE_ADDR", "127.0.0.1:7000")
        .env(
            "QUIRE_DATABASE__URL",
            "postgres://quire:hunter2@db.internal/quire",
        )
        .env("QUIRE_CACHE__BACKEND", "redis")
        .env("QUIRE_CACHE__REDIS_URL", "redis://:s3cret@cache:6379")
        .env("QUIRE_HTTP__WORKERS", "3")
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
    assert!(
        text.contains("addr = \"0.0.0.0:9999\""),
        "the flag beats the environment: {text}"
    );
    assert!(
        text.contains("workers = 3"),
        "the environment beats defaults: {text}"
    );
}

#[tokio::test]
async fn config_refuses_unknown_or_malformed_settings() {
    for (key, value) in [
        ("QUIRE_HTTP__WORKERZ", "3"),
        ("QUIRE_HTTP__WORKERS", "many"),
        ("QUIRE_CACHE__BACKEND", "redis"),
    ] {
        let out = quire()
            .arg("config")
            .env(key, value)
            .output()
            .await
            .expect("runs");
        assert!(!out.status.success(), "{key}={value} must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid configuration"), "{key}: {err}");
    }
}

#[tokio::test]
async fn create_admin_creates_then_promotes() {
    let dir = tempfile::tempdir().expect("dir");
    let run = || {
        let mut cmd = quire();
        cmd.args(["create-admin", "Root@Example.com", "--data-dir"])
            .arg(dir.path());
        cmd
    };
    let out = run().output().await.expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("created the platform administrator Root@Example.com"),
        "{text}"
    );
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("one-time password (sign in and change it): "))
        .expect("a password line");
    assert!(password.len() >= 40, "a long random password: {password}");

    let again = run().output().await.expect("runs");
    assert!(again.status.success());
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("is now a platform administrator"), "{text}");
    assert!(
        !text.contains("password"),
        "no new password for an existing account: {text}"
    );

    let bad = quire()
        .args(["create-admin", "not-an-email", "--data-dir"])
        .arg(dir.path())
        .output()
        .await
        .expect("runs");
    assert!(!bad.status.success());
}

#[tokio::test]
async fn outbox_reads_the_development_mailbox() {
    let dir = tempfile::tempdir().expect("dir");
    let migrated = quire()
        .args(["migrate", "--data-dir"])
        .arg(dir.path())
        .output()
        .await
        .expect("runs");
    assert!(migrated.status.success());
    let out = quire()
        .args(["outbox", "--data-dir"])
        .arg(dir.path())
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("the outbox is empty"));
}

#[tokio::test]
async fn keygen_prints_a_usable_signing_key() {
    let out = quire().arg("keygen").output().await.expect("runs");
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).expect("utf-8");
    assert!(key.trim().starts_with("k4.secret."), "{key}");
    let again = quire().arg("keygen").output().await.expect("runs");
    assert_ne!(again.stdout, key.as_bytes(), "every key is new");
}

#[tokio::test]
async fn serve_on_postgres_requires_shared_signing_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let out = quire()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env(
            "QUIRE_DATABASE__URL",
            "postgres://postgres@127.0.0.1:5432/test",
        )
        .env("QUIRE_DATABASE__MIGRATE_ON_START", "false")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.signing_keys"), "{err}");
}

#[tokio::test]
async fn serve_refuses_an_invalid_log_filter() {
    let dir = tempfile::tempdir().expect("dir");
    let out = quire()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("QUIRE_LOG__FILTER", "info,[[[")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.filter"), "{err}");
}

#[tokio::test]
async fn migrate_creates_a_missing_postgres_schema() {
    if std::env::var("QUIRE_TEST_SKIP_SERVICES").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED (PostgreSQL): QUIRE_TEST_SKIP_SERVICES=1");
        return;
    }
    let url = std::env::var("QUIRE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("t_cli_{}", std::process::id());
    let out = quire()
        .arg("migrate")
        .env("QUIRE_DATABASE__URL", &url)
        .env("QUIRE_DATABASE__SCHEMA", &schema)
        .output()
        .await
        .expect("runs");
    // Clean up before asserting, so a failure leaves nothing behind.
    let _ = std::process::Command::new("psql")
        .args([
            &url,
            "-qc",
            &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        ])
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let all = migration::Migrator::migrations().len();
    assert!(
        text.contains(&format!("migrated the postgres database: {all} applied")),
        "{text}"
    );
}

#[tokio::test]
async fn migrate_applies_once_then_finds_nothing_pending() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let all = migration::Migrator::migrations().len();
    for expected in [
        format!("{all} applied (m2026"),
        "0 applied (none pending)".to_owned(),
    ] {
        let out = quire()
            .args(["migrate", "--data-dir"])
            .arg(&data)
            .output()
            .await
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("migrated the sqlite database: {expected}")),
            "{text}"
        );
    }
    assert!(data.join("quire.db").is_file());
}

#[tokio::test]
async fn serve_answers_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = quire()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("QUIRE_LOG__FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();

    let url = common::listening_address(&mut lines).await;
    // The next line tells the person where to open the console (README's first command).
    let console = lines.next_line().await.expect("reads").unwrap_or_default();
    assert_eq!(console, format!("console: {url}/ (open it in a browser)"));
    assert!(
        dir.path().join("quire.db").is_file(),
        "the embedded default keeps its SQLite file in the data folder"
    );

    quire::install_crypto_provider();
    let res = reqwest::get(format!("{url}/health/ready"))
        .await
        .expect("request");
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let page =
        reqwest::get(&console["console: ".len()..console.len() - " (open it in a browser)".len()])
            .await
            .expect("request");
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(page.text().await.expect("page").contains("/console/app.js"));

    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("exits within the shutdown timeout")
        .expect("waits");
    assert!(
        status.success(),
        "a SIGTERM ends with exit code 0, got {status}"
    );

    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(
        rest.contains("server stopped"),
        "the shutdown is logged: {rest}"
    );
    let entry = rest
        .lines()
        .find(|l| l.contains("\"request\""))
        .unwrap_or_else(|| panic!("an access log line in JSON: {rest}"));
    let json: serde_json::Value = serde_json::from_str(entry).expect("JSON log line");
    assert!(
        json["span"]["request_id"].is_string(),
        "logs carry the request id: {entry}"
    );
    assert_eq!(json["span"]["route"], "/health/ready", "{entry}");
}
