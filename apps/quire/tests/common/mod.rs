//! What the tests of the `quire` binary share: the binary with a clean environment, and the
//! address a starting server prints.

use std::time::Duration;

use std::process::Stdio;

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_quire");

/// The binary with a clean environment (no stray `QUIRE_*` from the caller).
pub fn quire() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().kill_on_drop(true);
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// Reads a starting server's output up to the line that says where it listens, and returns
/// that address. No sleeping: the server prints it once bound.
pub async fn listening_address<R: AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> String {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("reads") {
            if let Some(rest) = line.strip_prefix("Quire listening on ") {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("the server starts within a minute")
    .expect("the server prints its address")
}

/// Spawns `cmd` (a `quire serve` command) with its output piped, waits for the address it
/// prints once bound, and keeps reading its output (a closed pipe would fail the server's
/// next line).
#[allow(dead_code)] // `cli.rs` reads a server's output itself
pub async fn serving(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = listening_address(&mut lines).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}
