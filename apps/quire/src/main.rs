//! The `quire` command: `serve` (default), `migrate`, `config`, `keygen`, `create-admin`,
//! `outbox`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use figment::providers::Serialized;
use quire::{Application, Settings, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "quire",
    version,
    about = "Chat with your documents: the Quire server"
)]
struct Cli {
    /// A TOML configuration file (optional; `QUIRE_*` variables override it).
    #[arg(long, global = true, env = "QUIRE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// The data folder (SQLite file, later uploads and keys) [env: QUIRE_DATA_DIR].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve {
        /// Where to listen, HOST:PORT [env: QUIRE_ADDR] [default: 127.0.0.1:8080].
        #[arg(long)]
        addr: Option<SocketAddr>,
        #[command(flatten)]
        common: Common,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Make EMAIL a platform administrator, creating the account (with a printed one-time
    /// password) when there is none.
    CreateAdmin {
        /// The administrator's email.
        email: String,
        #[command(flatten)]
        common: Common,
    },
    /// Print the newest mails of the development outbox (reset tokens, codes, invitations).
    Outbox {
        /// How many mails.
        #[arg(long, default_value_t = 10)]
        limit: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Run workers only (no HTTP): ingestion, webhook deliveries, workflow runs and their
    /// schedules, in scale-out processes sharing the database, the cache and the blob folder
    /// with the servers.
    Worker {
        /// Workers in this process [default: documents.workers, at least 1].
        #[arg(long)]
        workers: Option<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// Load an organization's export archive (from `GET /orgs/{org}/exports/{id}/download`)
    /// into this deployment: checks every checksum first, refuses an organization that
    /// exists here, maps members by email (see docs/exports.md).
    Import {
        /// The archive (a `.zip` file).
        archive: std::path::PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Run a golden set FILE (the format of crates/testkit/data/eval/*.json) against this
    /// deployment's indexes in each search mode, as `POST /evaluations` does, store it, and
    /// print recall@k, MRR and nDCG (docs/retrieval.md, "Evaluation").
    Eval {
        /// The golden set file.
        file: std::path::PathBuf,
        /// The organization (slug or id).
        #[arg(long)]
        org: String,
        /// The admin or owner of the organization it runs as (recorded with it).
        #[arg(long = "as", value_name = "EMAIL")]
        run_as: String,
        /// A collection to search (repeat for several) [default: every document].
        #[arg(long = "collection", value_name = "ID")]
        collections: Vec<String>,
        /// A mode: keyword, vector or hybrid (repeat for several) [default: all three].
        #[arg(long = "mode", value_name = "MODE")]
        modes: Vec<String>,
        /// recall@k's cut-off and each search's depth, 10 to 50 [default: 10].
        #[arg(long)]
        k: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// Extract one file read from stdin (used by the server's isolated extraction).
    #[command(name = quire::EXTRACT_CHILD_COMMAND, hide = true)]
    ExtractChild,
    /// Print a new access-token signing key (PASERK `k4.secret.…`) for `auth.signing_keys`.
    Keygen,
    /// Print the effective configuration (secrets redacted) and exit.
    Config {
        /// As for serve.
        #[arg(long)]
        addr: Option<SocketAddr>,
        #[command(flatten)]
        common: Common,
    },
}

fn settings(
    cli: &Cli,
    addr: Option<SocketAddr>,
    common: Option<&Common>,
) -> anyhow::Result<Settings> {
    let mut fig = Settings::figment(cli.config.as_deref());
    if let Some(addr) = addr {
        fig = fig.merge(Serialized::default("addr", addr));
    }
    if let Some(dir) = common.and_then(|c| c.data_dir.as_ref()) {
        fig = fig.merge(Serialized::default("data_dir", dir));
    }
    Ok(Settings::from_figment(fig)?)
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        None => serve(settings(&cli, None, None)?).await,
        Some(Command::Serve { addr, common }) => serve(settings(&cli, *addr, Some(common))?).await,
        Some(Command::Migrate { common }) => {
            let settings = settings(&cli, None, Some(common))?;
            telemetry::init(&settings.log)?;
            let store =
                store_sql::SqlStore::connect(&settings, Arc::new(kernel::SystemClock)).await?;
            let applied = store.migrate().await?;
            println!(
                "migrated the {} database: {} applied ({})",
                store.backend_name(),
                applied.len(),
                if applied.is_empty() {
                    "none pending".to_owned()
                } else {
                    applied.join(", ")
                }
            );
            store.close().await
        }
        Some(Command::CreateAdmin { email, common }) => {
            let settings = settings(&cli, None, Some(common))?;
            telemetry::init(&settings.log)?;
            let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
            let store = store_sql::SqlStore::connect(&settings, clock.clone()).await?;
            store.migrate().await?;
            let (cache, _) = quire::cache_from_settings(&settings)?;
            let mailer = quire::mailer_from_settings(&settings, &store)?;
            let accounts =
                quire::accounts_from_settings(&settings, &store, cache, mailer, clock).await?;
            let (password, _) =
                identity::ports::RefreshTokens::generate(&crypto::OpaqueTokens::new())?;
            let created = accounts.create_admin(email, &password).await?;
            if created {
                println!("created the platform administrator {email}");
                println!("one-time password (sign in and change it): {password}");
            } else {
                println!("{email} is now a platform administrator");
            }
            store.close().await
        }
        Some(Command::Outbox { limit, common }) => {
            let settings = settings(&cli, None, Some(common))?;
            telemetry::init(&settings.log)?;
            let store =
                store_sql::SqlStore::connect(&settings, Arc::new(kernel::SystemClock)).await?;
            let mails = store.outbox(*limit).await?;
            if mails.is_empty() {
                println!("the outbox is empty");
            }
            for m in mails {
                println!("--- {} to {}: {}", m.at, m.to, m.subject);
                println!("{}", m.body);
            }
            store.close().await
        }
        Some(Command::Worker { workers, common }) => {
            let settings = settings(&cli, None, Some(common))?;
            telemetry::init(&settings.log)?;
            worker(settings, *workers).await
        }
        Some(Command::Import { archive, common }) => {
            let settings = settings(&cli, None, Some(common))?;
            telemetry::init(&settings.log)?;
            let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
            let store = store_sql::SqlStore::connect(&settings, clock.clone()).await?;
            store.migrate().await?;
            let done = quire::export::import(&settings, &store, clock, archive).await;
            store.close().await?;
            let done = done?;
            println!(
                "imported the organization {} ({}): {} files, vectors rebuilding in {} spaces",
                done.slug, done.id, done.files, done.spaces
            );
            for (table, n) in &done.rows {
                println!("  {table}: {n} rows");
            }
            for email in &done.new_accounts {
                println!(
                    "  new account without a password (sign in with a code or reset): {email}"
                );
            }
            Ok(())
        }
        Some(Command::Eval {
            file,
            org,
            run_as,
            collections,
            modes,
            k,
            common,
        }) => {
            let settings = settings(&cli, None, Some(common))?;
            telemetry::init(&settings.log)?;
            let args = quire::eval::EvalArgs {
                file: file.clone(),
                org: org.clone(),
                run_as: run_as.clone(),
                collections: collections
                    .iter()
                    .map(|c| {
                        documents::CollectionId::parse(c)
                            .map_err(|_| anyhow::anyhow!("--collection {c:?} is not an id"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                modes: modes
                    .iter()
                    .map(|m| {
                        retrieval::SearchMode::parse(m).ok_or_else(|| {
                            anyhow::anyhow!("--mode {m:?} is none of keyword, vector, hybrid")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                k: *k,
            };
            let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
            let store = store_sql::SqlStore::connect(&settings, clock.clone()).await?;
            let done = quire::eval::evaluate_file(&settings, &store, clock, &args).await;
            store.close().await?;
            print!("{}", quire::eval::table(&done?));
            Ok(())
        }
        // Handled in `main` before the runtime starts.
        Some(Command::ExtractChild) => Ok(()),
        Some(Command::Keygen) => {
            println!("{}", crypto::PasetoTokens::generate_key()?);
            Ok(())
        }
        Some(Command::Config { addr, common }) => {
            let settings = settings(&cli, *addr, Some(common))?;
            print!(
                "{}",
                settings
                    .redacted_toml()
                    .context("printing the configuration")?
            );
            Ok(())
        }
    }
}

#[allow(clippy::print_stdout)]
async fn serve(settings: Settings) -> anyhow::Result<()> {
    telemetry::init(&settings.log)?;
    let app = Application::build(settings.clone()).await?;
    let data =
        std::path::absolute(&settings.data_dir).unwrap_or_else(|_| settings.data_dir.clone());
    let backend = if settings.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    // Not `println!`: a closed stdout must not take the server down.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "Quire listening on http://{}:{} (database: {backend}, data folder: {})",
        settings.addr.ip(),
        app.port(),
        data.display()
    );
    let _ = writeln!(
        out,
        "console: http://{}:{}/ (open it in a browser)",
        settings.addr.ip(),
        app.port()
    );
    let _ = writeln!(
        out,
        "API reference: http://{}:{}/docs/",
        settings.addr.ip(),
        app.port()
    );
    app.run_until_stopped().await
}

/// Runs ingestion, webhook-delivery and workflow workers until SIGTERM or SIGINT, then lets
/// the jobs in hand finish.
async fn worker(settings: Settings, workers: Option<usize>) -> anyhow::Result<()> {
    quire::worker_process::WorkerProcess::build(settings, workers)
        .await?
        .run_until(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    // rustls with ring for every HTTPS client (the model provider); before any client exists.
    quire::install_crypto_provider();
    // The isolated extractor: no runtime, no logging, just stdin to stdout.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == quire::EXTRACT_CHILD_COMMAND)
    {
        return ExitCode::from(u8::try_from(extract::child_main()).unwrap_or(1));
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quire: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quire: {e:#}");
            ExitCode::FAILURE
        }
    }
}
