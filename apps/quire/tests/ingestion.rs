//! Ingestion through the real `quire` binary: extraction isolated in child processes (a
//! hostile file kills only its child), and a worker killed with SIGKILL in the middle of a
//! job whose job another worker takes over and finishes once the lease expires; a workflow
//! run taken by a `quire worker` process when no server runs workflows.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::multipart::Form;
use tokio::process::{Child, Command};

mod common;

/// The binary with a clean environment and the given settings.
fn quire(data: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = common::quire();
    cmd.env("QUIRE_DATA_DIR", data)
        .env("QUIRE_LOG__FILTER", "warn")
        // Cheap hashing for the test accounts.
        .env("QUIRE_AUTH__ARGON2_MEMORY_KIB", "8")
        .env("QUIRE_AUTH__ARGON2_ITERATIONS", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts `quire serve` and reads the address it prints once bound.
async fn serve(data: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = quire(data, env);
    cmd.args(["serve", "--addr", "127.0.0.1:0"])
        .stderr(Stdio::null());
    common::serving(cmd).await
}

struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
    org: String,
}

impl Api {
    async fn sign_up(url: &str) -> Self {
        quire::install_crypto_provider();
        let client = reqwest::Client::new();
        let reg: Value = client
            .post(format!("{url}/api/v1/auth/register"))
            .json(&json!({"email": "ann@example.com", "password": "correct horse battery", "name": "Ann"}))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let token = reg["tokens"]["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        let org: Value = client
            .post(format!("{url}/api/v1/orgs"))
            .bearer_auth(&token)
            .json(&json!({"name": "Acme", "slug": "acme"}))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        Self {
            client,
            url: url.to_owned(),
            token,
            org: org["id"].as_str().expect("org").to_owned(),
        }
    }

    async fn upload(&self, name: &str, bytes: &[u8]) -> Value {
        let (ct, body) = Form::new().file("file", name, bytes).finish();
        let res = self
            .client
            .post(format!("{}/api/v1/documents", self.url))
            .bearer_auth(&self.token)
            .header("x-tenant-id", &self.org)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        res.json().await.expect("json")
    }

    async fn get(&self, path: &str) -> Value {
        let res = self
            .client
            .get(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .header("x-tenant-id", &self.org)
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        res.json().await.expect("json")
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token)
            .header("x-tenant-id", &self.org)
            .json(body)
            .send()
            .await
            .expect("sent");
        let status = res.status();
        (status, res.json().await.expect("json"))
    }

    /// Polls `path` until `done` holds, for at most `limit`.
    async fn until(&self, path: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.get(path).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} did not settle: {v}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_file_that_crashes_the_extractor_kills_only_its_child() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut server, url) = serve(
        dir.path(),
        &[("QUIRE_DOCUMENTS__EXTRACT_MEMORY_MIB", "512")],
    )
    .await;
    let api = Api::sign_up(&url).await;
    let formats = api.get("/documents/formats").await;
    assert_eq!(formats["isolation"], "process", "{formats}");
    let hostile = api
        .upload("deep.pdf", &extract::fixtures::stack_overflow_pdf())
        .await;
    let good = api
        .upload("fine.pdf", &extract::fixtures::pdf(&["Still standing."]))
        .await;
    for (up, expected) in [(hostile, "failed"), (good, "ready")] {
        let id = up["document"]["id"].as_str().expect("id");
        let doc = api
            .until(&format!("/documents/{id}"), Duration::from_secs(120), |d| {
                d["status"] == "ready" || d["status"] == "failed"
            })
            .await;
        assert_eq!(doc["status"], expected, "{doc}");
        if expected == "failed" {
            let error = doc["error"].as_str().expect("an error");
            assert!(
                error.contains("the extractor failed on it"),
                "the child died, not the server: {error}"
            );
            assert!(
                !error.contains("signal") && !error.contains('('),
                "the crash's reason stays in the log: {error}"
            );
        }
    }
    quire::install_crypto_provider();
    let res = reqwest::get(format!("{url}/health/live"))
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK, "the server lives");
    assert!(
        server.try_wait().expect("status").is_none(),
        "the server process is still running"
    );
}

#[tokio::test]
async fn a_job_survives_kill_9_of_its_worker() {
    let dir = tempfile::tempdir().expect("dir");
    // No workers in the server: `quire worker` processes do the work.
    let (_server, url) = serve(dir.path(), &[("QUIRE_DOCUMENTS__WORKERS", "0")]).await;
    let api = Api::sign_up(&url).await;
    // Big enough that a debug build takes seconds to chunk it.
    let text =
        "Every sentence here is one more thing to tokenize and chunk, slowly. ".repeat(40_000);
    let up = api.upload("long.txt", text.as_bytes()).await;
    let job = up["job_id"].as_str().expect("job").to_owned();
    let doc_id = up["document"]["id"].as_str().expect("id").to_owned();
    let settings = [
        ("QUIRE_DOCUMENTS__LEASE_SECS", "3"),
        ("QUIRE_DOCUMENTS__EXTRACT_TIMEOUT_SECS", "2"),
        ("QUIRE_DOCUMENTS__POLL_INTERVAL_MS", "50"),
    ];
    let mut first = quire(dir.path(), &settings)
        .args(["worker", "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns a worker");
    // Wait until the worker holds the job, then kill it without warning.
    let running = api
        .until(&format!("/jobs/{job}"), Duration::from_secs(60), |j| {
            j["status"] != "queued"
        })
        .await;
    assert_eq!(
        running["status"], "running",
        "the job is in the first worker's hands: {running}"
    );
    let pid = first.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    first.wait().await.expect("reaped");
    let orphan = api.get(&format!("/jobs/{job}")).await;
    assert_eq!(orphan["status"], "running", "nobody finished it: {orphan}");
    assert_eq!(orphan["attempts"], 1);

    // A new worker takes the job over once the dead one's lease expires, and finishes it.
    let _second = quire(dir.path(), &settings)
        .args(["worker", "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns a worker");
    let done = api
        .until(&format!("/jobs/{job}"), Duration::from_secs(180), |j| {
            j["status"] != "running" && j["status"] != "queued"
        })
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "taken over once: {done}");
    let doc = api.get(&format!("/documents/{doc_id}")).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert!(doc["chunks"].as_u64().expect("chunks") > 100, "{doc}");
}

#[tokio::test]
async fn a_worker_process_runs_workflows_when_no_server_does() {
    let dir = tempfile::tempdir().expect("dir");
    // The server runs no ingestion and no workflow worker: without a `quire worker` process,
    // nothing below would ever leave `queued`.
    let quiet = [
        ("QUIRE_DOCUMENTS__WORKERS", "0"),
        ("QUIRE_WORKFLOWS__WORKERS", "0"),
    ];
    let (_server, url) = serve(dir.path(), &quiet).await;
    let api = Api::sign_up(&url).await;
    let up = api
        .upload(
            "notes.txt",
            b"Quire keeps the minutes of every board meeting in one place.",
        )
        .await;
    let doc_id = up["document"]["id"].as_str().expect("id").to_owned();
    let (status, triggered) = api
        .post(
            "/workflows/trigger",
            &json!({"workflow": "analyze_documents", "input": {"document_ids": [doc_id]}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{triggered}");
    let run = triggered["run"]["id"].as_str().expect("run id").to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = api.get(&format!("/workflows/runs/{run}")).await;
    assert_eq!(waiting["status"], "queued", "no server takes it: {waiting}");

    let fast = [
        ("QUIRE_DOCUMENTS__POLL_INTERVAL_MS", "50"),
        ("QUIRE_WORKFLOWS__POLL_INTERVAL_MS", "50"),
    ];
    let mut worker = quire(dir.path(), &fast)
        .args(["worker", "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawns a worker");
    let doc = api
        .until(
            &format!("/documents/{doc_id}"),
            Duration::from_secs(60),
            |d| d["status"] == "ready" || d["status"] == "failed",
        )
        .await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let done = api
        .until(
            &format!("/workflows/runs/{run}"),
            Duration::from_secs(60),
            |r| r["status"] != "queued" && r["status"] != "running",
        )
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["result"]["documents"][0]["document_id"], doc_id,
        "the worker analyzed the document: {done}"
    );
    worker.kill().await.expect("stopped");
}
