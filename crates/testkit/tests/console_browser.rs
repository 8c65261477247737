//! The web console (`GET /`, `/console/*`): how it is served (content types, `ETag` and 304,
//! gzip, the console's Content-Security-Policy, its size, no address outside the origin and no
//! HTML parsing of data in its scripts), then every journey in a real browser.
//!
//! The browser part runs `tests/python/console_browser.py`: Selenium (PyPI `selenium`) drives
//! headless Chromium through chromedriver (Debian's `chromium` and `chromium-driver`) against
//! a live server, on the embedded default and on PostgreSQL + Redis. Its interpreter is
//! `CONSOLE_BROWSER_PYTHON` (`.ci/run` makes a venv with the pinned package), else `python3`;
//! chromedriver is `CHROMEDRIVER` or the one on `PATH`. When either is missing the test is
//! skipped with a message, or fails when `CI` is set. Screenshots of the main pages go to
//! `$CARGO_TARGET_DIR/console-screenshots/<backend>` (printed), which CI keeps.
//!
//! The script reads the mails the server sends (sign-in codes, reset tokens, invitations) from
//! the development outbox through a small endpoint this test serves beside the app
//! (`GET /mail/{address}`): the console itself talks to `/api/v1` only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use reqwest::StatusCode;
use store_sql::SqlStore;
use testkit::fake_openai::{FakeOpenAi, Fault};
use testkit::{TestOptions, spawn_app, spawn_app_with};

/// Every file of the console, with the media type it must be served with.
const ASSETS: &[(&str, &str)] = &[
    ("/", "text/html; charset=utf-8"),
    ("/console/style.css", "text/css; charset=utf-8"),
    ("/console/icon.svg", "image/svg+xml"),
    ("/console/app.js", "text/javascript; charset=utf-8"),
    ("/console/api.js", "text/javascript; charset=utf-8"),
    ("/console/dom.js", "text/javascript; charset=utf-8"),
    ("/console/auth.js", "text/javascript; charset=utf-8"),
    ("/console/documents.js", "text/javascript; charset=utf-8"),
    ("/console/chat.js", "text/javascript; charset=utf-8"),
    ("/console/org.js", "text/javascript; charset=utf-8"),
    ("/console/usage.js", "text/javascript; charset=utf-8"),
    ("/console/admin.js", "text/javascript; charset=utf-8"),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_its_headers() {
    let app = spawn_app().await;
    // A client that asks for gzip and does not decode it: the bytes as they travel.
    let raw = testkit::http_client()
        .no_gzip()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut compressed = 0usize;
    for (path, media) in ASSETS {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, "content-type"), *media, "{path}");
        assert_eq!(header(&res, "content-security-policy"), CSP, "{path}");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&res, "cache-control"), "no-cache", "{path}");
        let etag = header(&res, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 2, "{path}: {etag}");
        let body = res.bytes().await.expect("body");
        let text = String::from_utf8_lossy(&body);
        // Nothing from another origin: no absolute address but the SVG namespace.
        let outside = text
            .replace("http://www.w3.org/2000/svg", "")
            .contains("://");
        assert!(!outside, "{path} names an address outside the origin");
        if path.ends_with(".js") {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "localStorage",
            ] {
                assert!(!text.contains(sink), "{path} uses {sink}");
            }
        }
        // The copy a browser holds is revalidated: 304 without a body.
        let again = app
            .client
            .get(app.url(path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("sent");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&again, "etag"), etag);
        let gz = raw
            .get(app.url(path))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .expect("sent");
        let encoded = header(&gz, "content-encoding").to_owned();
        let bytes = gz.bytes().await.expect("body");
        if body.len() > 1024 {
            assert_eq!(encoded, "gzip", "{path} is not compressed");
        }
        compressed += bytes.len();
    }
    eprintln!("console: {compressed} bytes compressed in all");
    assert!(compressed <= 300 * 1024, "{compressed} bytes compressed");
    // `/console` leads to the page; an unknown file is a plain 404.
    let res = app.get("/console").await;
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&res, "location"), "/");
    for missing in [
        "/console/nope.js",
        "/console/index.html",
        "/console/..%2Fapp.js",
    ] {
        let res = app.get(missing).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(header(&res, "content-type"), "application/problem+json");
    }
    // The API keeps its own policy: a browser opening an answer runs nothing.
    let res = app.get("/api/v1/openapi.json").await;
    assert!(
        header(&res, "content-security-policy").starts_with("default-src 'none'; frame-ancestors")
    );
}

/// A local endpoint the browser script reads mails from: `GET /mail/{address}` → the newest
/// mail's body to that address (404 when there is none).
async fn mail_reader(store: SqlStore) -> (String, actix_web::dev::ServerHandle) {
    async fn latest(store: web::Data<SqlStore>, to: web::Path<String>) -> HttpResponse {
        match store.outbox(200).await {
            Ok(mails) => mails
                .into_iter()
                .filter(|m| m.to == to.as_str())
                .max_by_key(|m| m.at)
                .map_or_else(
                    || HttpResponse::NotFound().finish(),
                    |m| HttpResponse::Ok().body(m.body),
                ),
            Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
        }
    }
    let data = web::Data::new(store);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/mail/{to}", web::get().to(latest))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

/// chromedriver (`CHROMEDRIVER`, else on `PATH`), or `None` after saying why the test skips.
///
/// # Panics
/// Under `CI` when there is none.
fn chromedriver(test: &str) -> Option<String> {
    let path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
    let found = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: no chromedriver at {path}; CI must run this test (.ci/run installs chromium and chromium-driver)"
    );
    eprintln!(
        "SKIPPED ({test}): no chromedriver (apt-get install chromium chromium-driver, or set CHROMEDRIVER)"
    );
    None
}

/// The answer the fake model streams: long enough to stop and to reload while it streams, with
/// markup a careless client would render, and a citation of the first source.
const REPLY: &str = "The tenant pays a monthly rent of 1,200 euros, and the landlord keeps \
    the deposit in a separate account. <img src=x onerror=\"window.__xss='answer'\"> The lease \
    runs from April 2025 to March 2027, and either side may end it with three months of notice \
    in writing. Rent is paid monthly on the first day. [S1, S2]";

fn screenshots(backend: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("console-screenshots").join(backend);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

async fn in_the_browser(test: &str, backend: &str, opts: fn(String) -> TestOptions) {
    let Some(python) = testkit::python::interpreter(test, "CONSOLE_BROWSER_PYTHON", "selenium")
    else {
        return;
    };
    let Some(driver) = chromedriver(test) else {
        return;
    };
    let started = Instant::now();
    let fake = FakeOpenAi::builder().reply(REPLY).start();
    // Every streamed answer is paced (about 4 s in all), so there is time to stop one and to
    // reload the page while one streams; the other requests ignore the fault.
    fake.push_faults(std::iter::repeat_n(
        Fault::Paced(Duration::from_millis(50)),
        2000,
    ));
    let app = spawn_app_with(opts(fake.base_url())).await;
    let admin_email = "root@example.com";
    let (admin_token, admin_org) = app.owner("root").await;
    let (_, me) = app
        .call(&admin_token, reqwest::Method::GET, "/api/v1/auth/me", None)
        .await;
    let id = kernel::UserId::parse(me["user"]["id"].as_str().unwrap_or_default()).expect("id");
    app.make_platform_admin(id).await;
    let (mail, mail_handle) = mail_reader(app.store().await).await;
    let files = tempfile::tempdir().expect("a folder for the uploads");
    let page = |n: usize| {
        format!(
            "Page {n} of the lease. The tenant pays the monthly rent on the first day of each month. {}",
            "The landlord keeps the deposit in a separate bank account and returns it within thirty days. "
                .repeat(25)
        )
    };
    let pages = [page(1), page(2), page(3)];
    std::fs::write(
        files.path().join("lease.pdf"),
        extract::fixtures::pdf(&pages.iter().map(String::as_str).collect::<Vec<_>>()),
    )
    .expect("pdf");
    let shots = screenshots(backend);
    eprintln!("console screenshots ({backend}): {}", shots.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/console_browser.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script)
        .env("CONSOLE_BASE_URL", &app.address)
        .env("CONSOLE_MAIL_URL", &mail)
        .env("CONSOLE_FILES", files.path())
        .env("CONSOLE_SCREENSHOTS", &shots)
        .env("CONSOLE_ADMIN_EMAIL", admin_email)
        .env("CONSOLE_ADMIN_PASSWORD", "correct horse battery")
        .env("CONSOLE_ADMIN_ORG", &admin_org)
        .env("CONSOLE_CHROMEDRIVER", driver)
        .env("NO_PROXY", "127.0.0.1,localhost");
    testkit::python::run_checks("console browser", cmd).await;
    mail_handle.stop(false).await;
    eprintln!(
        "console browser test ({backend}): {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_journey_in_a_real_browser_on_the_embedded_default() {
    in_the_browser(
        "every_journey_in_a_real_browser_on_the_embedded_default",
        "embedded",
        |fake| TestOptions::default().chatting_with(fake),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_journey_in_a_real_browser_on_postgres_and_redis() {
    if testkit::services_skipped("PostgreSQL + Redis") {
        return;
    }
    in_the_browser(
        "every_journey_in_a_real_browser_on_postgres_and_redis",
        "postgres",
        |fake| TestOptions::production().chatting_with(fake),
    )
    .await;
}
