//! Per-tenant metrics (docs/configuration.md, `http.metrics_top_tenants`): with N = 2 and five
//! active organizations `/metrics` shows at most three organization label values, each an
//! organization id or `other` (never a name or an email); `/metrics` answers as before; every
//! metric the Grafana dashboard (`deploy/grafana/quire-tenants.json`) queries exists.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::{TestOptions, spawn_app_with};

#[tokio::test]
async fn top_n_organizations_plus_other() {
    let app =
        spawn_app_with(TestOptions::default().tweak(|s| s.http.metrics_top_tenants = 2)).await;
    let mut orgs = Vec::new();
    for (i, who) in ["ann", "bob", "cat", "dan", "eve"].iter().enumerate() {
        let (token, org) = app.owner(who).await;
        for _ in 0..(3 * (i + 1)) {
            let (s, _) = app
                .call(&token, Method::GET, &format!("/api/v1/orgs/{org}"), None)
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        orgs.push(org);
    }
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.expect("metrics");
    let mut labels: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("quire_tenant_"))
        .filter_map(|l| Some(l.split("org=\"").nth(1)?.split('"').next()?.to_owned()))
        .collect();
    labels.sort_unstable();
    labels.dedup();
    assert!(labels.len() <= 3, "{labels:?}");
    assert!(labels.iter().any(|l| l == "other"), "{labels:?}");
    for l in &labels {
        assert!(
            l == "other" || orgs.contains(l),
            "{l} is not an organization id"
        );
    }
    for secret in ["ann", "eve@example.com", "example.com"] {
        assert!(
            !labels.iter().any(|l| l.contains(secret)),
            "{secret} in a label"
        );
    }
    // The two busiest have their own label.
    for org in &orgs[3..] {
        assert!(labels.contains(org), "{org} missing from {labels:?}");
    }

    // Every metric the dashboard queries is served.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana/quire-tenants.json"
        ))
        .expect("the dashboard"),
    )
    .expect("valid JSON");
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            exprs += 1;
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("quire_") {
                    let family = ["_bucket", "_count", "_sum", "_total"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    assert!(
                        text.contains(&format!("# TYPE {family} ")),
                        "{word} of {expr} is not in /metrics"
                    );
                }
            }
        }
    }
    assert!(exprs >= 4);
}
