//! The SQL store: one sea-orm adapter for SQLite (the embedded default, WAL mode) and
//! PostgreSQL (production), implementing the repository ports of the domain crates.
//!
//! - [`SqlStore::connect`] builds the pool from [`settings::Settings`];
//! - [`SqlStore::migrate`] applies the `migration` crate (under an advisory lock on PostgreSQL
//!   so that several servers starting at once migrate once);
//! - `entity` holds the sea-orm entities, private to this crate: no `DbErr` or entity type ever
//!   crosses into a port signature;
//! - `collections`, `documents` and `jobs` implement the documents domain's storage ports, the
//!   job queue included (see `jobs` for how a claim is exactly-once and fair);
//! - `billing` implements billing's usage ledger ([`SqlUsageLedger`]).
//! - `stored` holds `at_value`, the one encoder of a stored time: every time column is written
//!   through it (fixed-width UTC text on SQLite, whose text order is time order; `timestamptz`
//!   on PostgreSQL).

mod api_keys;
mod audit;
mod billing;
mod blobs;
mod catalog;
mod chat;
mod collections;
mod document_rows;
mod documents;
mod entity;
mod evaluations;
mod invitations;
mod job_rows;
mod jobs;
mod keyword;
mod keyword_cache;
mod mail;
mod memberships;
mod organizations;
#[cfg(feature = "postgres")]
mod pgvector;
mod rls;
mod scope;
mod sessions;
mod spaces;
mod stored;
mod tenant_export;
mod users;
mod vector_rows;
mod webhooks;
mod workflows;

pub use billing::SqlUsageLedger;
pub use chat::SqlChatStore;
pub use keyword_cache::{KeywordCacheConfig, KeywordCacheStats};
pub use mail::OutboxMail;
#[cfg(feature = "postgres")]
pub use pgvector::PgVectorIndex;
pub use tenant_export::{EXPORTED, ExportedMember, Import, LEFT_OUT, PAGE_ROWS};

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use kernel::Clock;
use kernel::health::{HealthCheck, Outage, PoolStats};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, QuerySelect, Select, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use secrecy::ExposeSecret;
use settings::Settings;

/// Any fixed number: the PostgreSQL advisory lock that serializes migrations across servers.
const MIGRATION_LOCK_KEY: i64 = 0x5155_4952_455f_4d31; // "QUIRE_M1"

/// A pooled connection to the SQL store.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    schema: Option<String>,
    /// SQLite keyword search: the most tokens of matched chunks it reads to count term
    /// frequencies (`keyword::TEXTS_UP_TO`; tests set -1 to count them from FTS5's index).
    keyword_texts_up_to: i64,
    /// SQLite: the in-process keyword cache of large scopes (`keyword_cache`), shared by
    /// the store's clones; `None` on PostgreSQL or when turned off.
    keyword_cache: Option<Arc<keyword_cache::KeywordCache>>,
}

/// Creates `dir` and its missing parents readable by the owner only (0700 on Unix); an
/// existing folder is left as it is.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty database file readable by the owner only (0600 on Unix) unless it exists,
/// before SQLite opens it: SQLite would create it 0644, and gives its `-wal` and `-shm` files
/// the database file's mode.
fn private_file(file: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The file of a SQLite URL (`sqlite://path?mode=rwc`), none for an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:") && !url.contains("mode=memory"))
        .then(|| std::path::PathBuf::from(path))
}

impl SqlStore {
    /// Connects as `settings` say: SQLite in the data folder unless `database.url` is set.
    ///
    /// # Errors
    /// When the data folder cannot be created or the database cannot be reached.
    pub async fn connect(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let url = settings.database_url();
        let db_settings = &settings.database;
        #[cfg(not(feature = "postgres"))]
        if settings.is_postgres() {
            anyhow::bail!(
                "database.url names PostgreSQL, which needs Quire built with the `postgres` \
                 feature (`cargo run --release --features postgres`, or `full`)"
            );
        }
        if !settings.is_postgres() {
            private_dir(&settings.data_dir).with_context(|| {
                format!("creating the data folder {}", settings.data_dir.display())
            })?;
            if let Some(file) = sqlite_file(url.expose_secret()) {
                private_file(&file)
                    .with_context(|| format!("creating the database {}", file.display()))?;
            }
        }
        let mut opts = ConnectOptions::new(url.expose_secret().to_owned());
        opts.max_connections(db_settings.max_connections)
            .min_connections(db_settings.min_connections)
            .acquire_timeout(Duration::from_secs(db_settings.acquire_timeout_secs))
            .connect_timeout(Duration::from_secs(db_settings.acquire_timeout_secs))
            .sqlx_logging(false);
        // A SQLite connection cannot be dropped by anyone: never pinged on checkout. A
        // PostgreSQL connection is not pinged either: every checkout, of an idle connection or
        // a new one, first sets its role and tenant (`rls`, one round trip), and that query
        // fails on a connection a server, proxy or firewall dropped, which the pool then
        // replaces.
        opts.test_before_acquire(false);
        #[cfg(feature = "postgres")]
        if settings.is_postgres() {
            let schema = db_settings.schema.clone();
            opts.map_sqlx_postgres_opts(move |o| match &schema {
                // The name was validated to [a-z0-9_]{1,63} in settings.
                Some(schema) => o.options([("search_path", schema.as_str())]),
                None => o,
            });
            opts.map_sqlx_postgres_before_acquire(|conn, _| {
                let set = rls::set_scope(conn);
                Box::pin(async move { set.await.map(|()| true) })
            });
            opts.map_sqlx_postgres_pool_opts(|o| o.after_connect(|conn, _| rls::set_scope(conn)));
        }
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                .create_if_missing(true)
        });
        let db = Database::connect(opts)
            .await
            .context("connecting to the database")?;
        Ok(Self {
            db,
            clock,
            schema: db_settings.schema.clone(),
            keyword_texts_up_to: keyword::TEXTS_UP_TO,
            keyword_cache: (!settings.is_postgres()
                && settings.retrieval.keyword_cache_min_chunks >= 0)
                .then(|| {
                    Arc::new(keyword_cache::KeywordCache::new(KeywordCacheConfig {
                        min_chunks: settings.retrieval.keyword_cache_min_chunks,
                        max_postings: settings.retrieval.keyword_cache_max_postings,
                        ..KeywordCacheConfig::default()
                    }))
                }),
        })
    }

    /// The same store, whose SQLite keyword search reads the matched chunks' texts to count
    /// term frequencies when they hold at most `tokens` (estimated), and else counts them
    /// from FTS5's index (docs/retrieval.md, "The keyword index"). The default is
    /// `keyword::TEXTS_UP_TO`; a negative number always counts from the index (its tests).
    #[must_use]
    pub fn with_keyword_texts_up_to(mut self, tokens: i64) -> Self {
        self.keyword_texts_up_to = tokens;
        self
    }

    /// The same store with its own keyword cache of this configuration on SQLite, or none
    /// (`None`: every search in SQL). The default is [`KeywordCacheConfig::default`].
    #[must_use]
    pub fn with_keyword_cache(mut self, config: Option<KeywordCacheConfig>) -> Self {
        self.keyword_cache = config
            .filter(|_| self.db.get_database_backend() == DbBackend::Sqlite)
            .map(|c| Arc::new(keyword_cache::KeywordCache::new(c)));
        self
    }

    /// What the keyword cache holds (`None` without one).
    #[must_use]
    pub fn keyword_cache_stats(&self) -> Option<KeywordCacheStats> {
        self.keyword_cache.as_ref().map(|c| c.stats())
    }

    /// Waits until the keyword cache has no load under way (benchmarks and tests).
    pub async fn keyword_cache_settled(&self) {
        while self.keyword_cache.as_ref().is_some_and(|c| c.loading()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Applies pending migrations. On PostgreSQL it first creates the configured schema and
    /// holds a transaction-scoped advisory lock, so concurrent servers migrate one at a time.
    ///
    /// Returns the names of the migrations it applied.
    ///
    /// # Errors
    /// When a migration fails; nothing of that migration is kept on PostgreSQL.
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        rls::owner(self.migrate_as_owner()).await
    }

    async fn migrate_as_owner(&self) -> anyhow::Result<Vec<String>> {
        Ok(match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let txn = self.db.begin().await.context("starting the migration")?;
                // The lock comes first: even `CREATE SCHEMA IF NOT EXISTS` races without it.
                txn.execute_unprepared(&format!(
                    "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
                ))
                .await
                .context("taking the migration lock")?;
                if let Some(schema) = &self.schema {
                    // The name was validated to [a-z0-9_]{1,63} in settings.
                    txn.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                        .await
                        .context("creating the schema")?;
                }
                let pending = pending_names(&txn).await?;
                Migrator::up(&txn, None)
                    .await
                    .context("applying migrations")?;
                txn.commit().await.context("committing migrations")?;
                pending
            }
            _ => {
                let pending = pending_names(&self.db).await?;
                Migrator::up(&self.db, None)
                    .await
                    .context("applying migrations")?;
                pending
            }
        })
    }

    /// Names of the migrations not applied yet.
    ///
    /// # Errors
    /// When the database cannot be read (on PostgreSQL: also before the schema exists).
    pub async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
        rls::owner(pending_names(&self.db)).await
    }

    /// The role a pooled connection runs as outside any tenant scope, and whether row-level
    /// security is active for it (`on`/`off`; on SQLite `("sqlite", "off")`): on PostgreSQL
    /// `quire_app` and `on` (`rls`).
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn session_role(&self) -> anyhow::Result<(String, String)> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(("sqlite".to_owned(), "off".to_owned()));
        }
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_user::text AS r, current_setting('row_security') AS s",
            ))
            .await
            .context("reading the session's role")?
            .context("no row")?;
        Ok((
            row.try_get("", "r").context("role")?,
            row.try_get("", "s").context("row_security")?,
        ))
    }

    /// `sqlite` or `postgres`.
    #[must_use]
    pub fn backend_name(&self) -> &'static str {
        match self.db.get_database_backend() {
            DbBackend::Postgres => "postgres",
            DbBackend::Sqlite => "sqlite",
            _ => "other",
        }
    }

    /// Closes the pool.
    ///
    /// # Errors
    /// When closing fails.
    pub async fn close(&self) -> anyhow::Result<()> {
        self.db.close_by_ref().await.context("closing the pool")
    }

    fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the one write
    /// lock is taken up front (waiting up to the busy timeout), so a transaction that reads
    /// before it writes cannot fail with "database is locked" when it comes to write, and what
    /// it read stays current until it commits. On PostgreSQL it is a plain `BEGIN`.
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }

    /// The first row of `select` in a write transaction begun for a claim ([`Self::begin_write`]:
    /// on SQLite one writer at a time), on PostgreSQL locked with `FOR UPDATE SKIP LOCKED` so
    /// that concurrent claimers take different rows. The caller leases the row in that
    /// transaction, with an update that checks it is still due, and commits. A plain read
    /// first: an idle queue costs no write transaction. Nothing found: `None`. The queues of
    /// workflow runs, webhook deliveries and vector-space builds claim through this.
    async fn lock_first<E: EntityTrait>(
        &self,
        select: Select<E>,
    ) -> Result<Option<(DatabaseTransaction, E::Model)>, DbErr> {
        if select.clone().one(&self.db).await?.is_none() {
            return Ok(None);
        }
        let txn = self.begin_write().await?;
        let select = if txn.get_database_backend() == DbBackend::Postgres {
            select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        } else {
            select
        };
        match select.one(&txn).await? {
            Some(row) => Ok(Some((txn, row))),
            None => {
                txn.rollback().await?;
                Ok(None)
            }
        }
    }
}

async fn pending_names(db: &impl ConnectionTrait) -> anyhow::Result<Vec<String>> {
    let pending = Migrator::get_pending_migrations(db)
        .await
        .context("reading migration status")?;
    Ok(pending.iter().map(|m| m.name().to_owned()).collect())
}

/// Whether `e` says the database could not be reached (no connection could be had while
/// the pool was not full, the connection broke, or the server is shutting down or starting
/// up: SQLSTATE classes 08 and 57P) or was busy (no connection within the acquire timeout
/// while every pooled one was in use).
fn outage_of(e: &DbErr, pool_full: bool) -> Option<Outage> {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{ConnAcquireErr, RuntimeErr};
    let timed_out = || {
        Some(if pool_full {
            Outage::Busy
        } else {
            Outage::Down
        })
    };
    match e {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => timed_out(),
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) | DbErr::Conn(_) => {
            Some(Outage::Down)
        }
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match &**e {
                Sqlx::Io(_) | Sqlx::PoolClosed | Sqlx::WorkerCrashed => Some(Outage::Down),
                Sqlx::PoolTimedOut => timed_out(),
                Sqlx::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
                    .then_some(Outage::Down),
                _ => None,
            }
        }
        _ => None,
    }
}

#[async_trait]
impl HealthCheck for SqlStore {
    fn component(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.db.ping().await.context("database ping")
    }

    fn explains(&self, error: &(dyn std::error::Error + 'static)) -> Option<Outage> {
        // A pool that timed out while every connection was busy is load, not an outage.
        let pool_full = self
            .pool_stats()
            .is_some_and(|p| p.size >= p.max && p.idle == 0);
        kernel::health::chain(error)
            .filter_map(|e| e.downcast_ref::<DbErr>())
            .find_map(|e| outage_of(e, pool_full))
    }

    fn every_request_needs(&self) -> bool {
        true
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let (size, idle, max) = match self.db.get_database_backend() {
            #[cfg(feature = "postgres")]
            DbBackend::Postgres => {
                let p = self.db.get_postgres_connection_pool();
                (p.size(), p.num_idle(), p.options().get_max_connections())
            }
            DbBackend::Sqlite => {
                let p = self.db.get_sqlite_connection_pool();
                (p.size(), p.num_idle(), p.options().get_max_connections())
            }
            _ => return None,
        };
        Some(PoolStats {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{ConnAcquireErr, RuntimeErr};

    use super::*;

    #[test]
    fn outages_are_told_from_load_and_from_refusals() {
        let timeout = DbErr::ConnectionAcquire(ConnAcquireErr::Timeout);
        assert_eq!(outage_of(&timeout, false), Some(Outage::Down));
        assert_eq!(outage_of(&timeout, true), Some(Outage::Busy));
        let reset = DbErr::Query(RuntimeErr::SqlxError(Arc::new(Sqlx::Io(
            std::io::ErrorKind::ConnectionReset.into(),
        ))));
        assert_eq!(outage_of(&reset, true), Some(Outage::Down));
        let pool = DbErr::Exec(RuntimeErr::SqlxError(Arc::new(Sqlx::PoolTimedOut)));
        assert_eq!(outage_of(&pool, true), Some(Outage::Busy));
        assert_eq!(outage_of(&DbErr::RecordNotFound("x".into()), false), None);
        let decode = DbErr::Query(RuntimeErr::SqlxError(Arc::new(Sqlx::RowNotFound)));
        assert_eq!(outage_of(&decode, false), None);
    }
}
