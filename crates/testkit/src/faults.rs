//! The fault harness: private Redis and PostgreSQL servers that a test stops, restarts and
//! pauses mid-request, without touching the shared services other tests use.
//!
//! - [`PrivateRedis`]: Debian's `redis-server` on a free port, no persistence. `stop` kills it,
//!   `start` brings up an empty one on the same port (a real restart loses the data too),
//!   `pause`/`resume` send `SIGSTOP`/`SIGCONT` (a stalled server: connections open, no answer).
//! - [`PrivatePostgres`]: `initdb` into a temporary folder and `pg_ctl start` on a free port,
//!   trust authentication, database `test`. `stop` is `pg_ctl stop -m immediate` (a crash);
//!   `start` brings the same data back (after crash recovery).
//!
//! Both are stopped when dropped. The binaries: `redis-server` on `PATH`; PostgreSQL's from
//! `QUIRE_TEST_PG_BIN` or else the newest `/usr/lib/postgresql/*/bin` (Debian's packages,
//! which `.ci/run` installs). As root (initdb refuses root) the PostgreSQL binaries run as
//! the system user `quirepg`, as `.ci/pgvector.sh` does.
//!
//! A fault test calls [`available`] first: it answers `false` (and says so) when a binary is
//! missing on a developer's machine, and panics when `CI` is set, so CI never skips them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The system user the PostgreSQL binaries run as when the tests run as root.
const PG_USER: &str = "quirepg";

/// How long a server may take to answer after a start.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// True when `redis-server` and the PostgreSQL binaries are there. When they are not: `false`
/// with a line saying what is skipped, or a panic when `CI` is set (CI runs every fault test).
#[must_use]
pub fn available(test: &str) -> bool {
    let mut missing = Vec::new();
    if which("redis-server").is_none() {
        missing.push("redis-server (Debian package redis-server)".to_owned());
    }
    if pg_bin().is_none() {
        missing.push(
            "PostgreSQL binaries (QUIRE_TEST_PG_BIN or /usr/lib/postgresql/*/bin, Debian package postgresql)"
                .to_owned(),
        );
    }
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    assert!(
        std::env::var_os("CI").is_none(),
        "fault test {test}: missing {what}; CI must run every fault test"
    );
    eprintln!("SKIPPED ({test}): missing {what}");
    false
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// The folder of `initdb`, `pg_ctl` and `createdb`.
fn pg_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("QUIRE_TEST_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return dir.join("pg_ctl").is_file().then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid} failed");
}

/// Waits until `ready` answers true, for at most [`READY_WITHIN`].
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY_WITHIN;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis server of one test.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
    paused: bool,
}

impl PrivateRedis {
    /// Starts one on a free port and waits until it answers.
    #[must_use]
    pub fn start_new() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
            paused: false,
        };
        redis.start();
        redis
    }

    /// `redis://127.0.0.1:{port}`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port (the same across restarts).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True while it runs (stopped or not).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it (empty) on its port and waits until it answers `PING`. No-op when running.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        self.paused = false;
        let port = self.port;
        wait_until("redis-server", || redis_ping(port));
    }

    /// Kills it (its data is lost, as in a crash). No-op when stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                signal(child.id(), "-CONT");
                self.paused = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops answering (`SIGSTOP`): connections stay open, requests hang.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child
            && !self.paused
        {
            signal(child.id(), "-STOP");
            self.paused = true;
        }
    }

    /// Answers again (`SIGCONT`).
    pub fn resume(&mut self) {
        if let Some(child) = &self.child
            && self.paused
        {
            signal(child.id(), "-CONT");
            self.paused = false;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when Redis on `port` answers `PING` with `+PONG`.
fn redis_ping(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A PostgreSQL server of one test.
#[derive(Debug)]
pub struct PrivatePostgres {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    running: bool,
    // Last: the folder goes once the server is stopped.
    _dir: TempDir,
}

impl PrivatePostgres {
    /// Creates a cluster in a temporary folder, starts it on a free port and creates the
    /// database `test`.
    #[must_use]
    pub fn start_new() -> Self {
        let bin = pg_bin().expect("PostgreSQL binaries (see testkit::faults::available)");
        let dir = tempfile::Builder::new()
            .prefix("quire-fault-pg")
            .tempdir()
            .expect("a temporary folder");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("the data folder");
        if is_root() {
            ensure_pg_user();
            // The server's user owns its data (the folder above it only needs to be crossed).
            run(Command::new("chown").args([PG_USER, &data.to_string_lossy()]));
            run(Command::new("chmod").args(["755", &dir.path().to_string_lossy()]));
        }
        run(pg_command(&bin, "initdb").args([
            "--pgdata",
            &data.to_string_lossy(),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]));
        let mut pg = Self {
            port: free_port(),
            bin,
            data,
            running: false,
            _dir: dir,
        };
        pg.start();
        run(pg_command(&pg.bin, "createdb").args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "test",
        ]));
        pg
    }

    /// `postgres://postgres@127.0.0.1:{port}/test`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    /// Its port (the same across restarts).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts it on its port with its data and waits until it accepts connections. No-op
    /// when running.
    pub fn start(&mut self) {
        if self.running {
            return;
        }
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off -c max_connections=100",
            self.port,
            self.data.display()
        );
        run(pg_command(&self.bin, "pg_ctl").args([
            "--pgdata",
            &self.data.to_string_lossy(),
            "--log",
            &self.data.join("server.log").to_string_lossy(),
            "--wait",
            "--timeout=60",
            "-o",
            &options,
            "start",
        ]));
        self.running = true;
        let port = self.port;
        wait_until("PostgreSQL", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops it at once (`pg_ctl stop -m immediate`: no checkpoint, as in a crash). No-op
    /// when stopped.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        run(&mut self.stop_command());
        self.running = false;
    }

    fn stop_command(&self) -> Command {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.args([
            "--pgdata",
            &self.data.to_string_lossy(),
            "--wait",
            "-m",
            "immediate",
            "stop",
        ]);
        c
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .stop_command()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Creates the system user the PostgreSQL binaries run as, when missing (as root only).
fn ensure_pg_user() {
    let exists = Command::new("id")
        .arg(PG_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        // Two tests may race to create it: the loser's failure is fine if the user exists.
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_USER,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `bin/program`, run as [`PG_USER`] when the tests run as root.
fn pg_command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_USER, "--"]).arg(path);
        c
    } else {
        Command::new(path)
    };
    // A folder the server's user may enter (pg_ctl and initdb need their working directory).
    c.current_dir(std::env::temp_dir());
    c
}

/// Runs `command`, panicking with its output when it fails.
fn run(command: &mut Command) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not run: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
