//! Architecture invariant: no domain crate depends, directly or transitively, on a web
//! framework, an ORM or SQL driver, an HTTP client or server, or a cache driver. The domain
//! talks to those only through its ports.
//!
//! Reads `cargo metadata` (the resolved graph, normal and build dependencies; dev-dependencies
//! are allowed to be anything) and walks it from each domain crate.

use std::collections::{BTreeMap, VecDeque};
use std::process::Command;

use serde_json::Value;

/// The pure crates: the shared kernel and the domains.
const DOMAIN: &[&str] = &[
    "kernel",
    "identity",
    "tenancy",
    "documents",
    "retrieval",
    "chat",
    "billing",
    "webhooks",
    "workflows",
];

fn forbidden(name: &str) -> bool {
    [
        "actix",
        "sea-orm",
        "sea-query",
        "sea-schema",
        "sqlx",
        "hyper",
        "deadpool",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || ["reqwest", "redis"].contains(&name)
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// For each domain crate, the first forbidden crate it reaches and the path to it.
fn violations(meta: &Value) -> Vec<String> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    let edges: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .expect("dep_kinds")
                        .iter()
                        .any(|k| k["kind"].as_str() != Some("dev"))
                })
                .map(|d| d["pkg"].as_str().expect("pkg"))
                .collect();
            (n["id"].as_str().expect("id"), deps)
        })
        .collect();
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m.as_str().expect("member id"))
        .collect();

    let mut found = Vec::new();
    for domain in DOMAIN {
        let root = members
            .iter()
            .copied()
            .find(|id| names.get(id) == Some(domain))
            .unwrap_or_else(|| panic!("the domain crate `{domain}` is missing from the workspace"));
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([root]);
        while let Some(id) = queue.pop_front() {
            if forbidden(names[id]) {
                let mut path = vec![names[id]];
                let mut at = id;
                while let Some(p) = parent.get(at) {
                    path.push(names[p]);
                    at = p;
                }
                path.reverse();
                found.push(path.join(" -> "));
                break;
            }
            for dep in edges.get(id).into_iter().flatten() {
                if *dep != root && !parent.contains_key(dep) {
                    parent.insert(dep, id);
                    queue.push_back(dep);
                }
            }
        }
    }
    found
}

#[test]
fn domain_crates_depend_on_no_infrastructure() {
    let found = violations(&metadata());
    assert!(
        found.is_empty(),
        "domain crates must reach infrastructure only through ports:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_check_recognizes_infrastructure() {
    for name in [
        "actix-web",
        "actix-http",
        "sea-orm",
        "sqlx-core",
        "reqwest",
        "redis",
        "deadpool-redis",
        "hyper",
        "hyper-util",
    ] {
        assert!(forbidden(name), "{name}");
    }
    for name in [
        "kernel",
        "serde",
        "thiserror",
        "tokio",
        "uuid",
        "time",
        "redis-protocol-docs",
    ] {
        assert!(!forbidden(name), "{name}");
    }
}
