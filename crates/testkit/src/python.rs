//! Official Python clients from PyPI driving a live server: the OpenAI SDK
//! (`tests/openai_sdk.rs`) and the MCP SDK (`tests/api_mcp.rs`). `.ci/run` installs them in a
//! venv and names its interpreter in an environment variable; a test skips, saying so, where
//! the package is missing, except under `CI`, where it fails.

use std::process::Command;

/// The interpreter `env_var` names (else `python3`) when it can import `module`; `None` after
/// printing why the test `test` skips when it cannot.
///
/// # Panics
/// Under `CI` when the interpreter cannot import `module`: CI must run these tests.
#[must_use]
pub fn interpreter(test: &str, env_var: &str, module: &str) -> Option<String> {
    let python = std::env::var(env_var).unwrap_or_else(|_| "python3".to_owned());
    let probe = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output();
    let why = match probe {
        Ok(out) if out.status.success() => return Some(python),
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    };
    let package = module.split('.').next().unwrap_or(module);
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {python} cannot import {module} ({why}); CI must run this test \
         (.ci/run makes a venv with {package} and sets {env_var})"
    );
    eprintln!(
        "SKIPPED ({test}): {python} cannot import {module}; `pip install {package}` or set {env_var}"
    );
    None
}

/// Runs `script` (a check script printing `N passed, M failed` last) off the test's runtime,
/// where the server under test runs; fails with its output unless it exits 0 with ` 0 failed`.
///
/// # Panics
/// When the script cannot run or any of its checks failed.
pub async fn run_checks(what: &str, mut script: Command) {
    let out = tokio::task::spawn_blocking(move || script.output())
        .await
        .expect("joined")
        .expect("the script ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the {what} script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
