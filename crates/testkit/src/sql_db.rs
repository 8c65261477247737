//! A migrated SQL store with a second connection to the same database, for contract tests
//! that check what only SQL has (rows, constraints, cascades) by reading and writing its
//! tables directly.

use std::sync::Arc;

use kernel::Clock;
use sea_orm::{ConnectOptions, ConnectionTrait as _, Database, DatabaseConnection};
use secrecy::{ExposeSecret as _, SecretString};
use store_sql::SqlStore;

/// A migrated SQL store and a second connection to the same database that reads and writes
/// its tables directly.
#[allow(missing_debug_implementations)]
pub struct SqlDb {
    /// The store under test.
    pub store: SqlStore,
    /// A second connection to its database.
    pub raw: DatabaseConnection,
    _dir: tempfile::TempDir,
    _guard: Option<Box<dyn std::fmt::Debug>>,
}

impl SqlDb {
    /// On a fresh SQLite file.
    pub async fn sqlite() -> Self {
        Self::sqlite_with(Arc::new(kernel::SystemClock)).await
    }

    /// On a fresh SQLite file, the store telling the time by `clock`.
    pub async fn sqlite_with(clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let settings = crate::test_settings(dir.path());
        Self::open(settings, dir, None, clock).await
    }

    /// In a schema of its own, dropped with it; `None` when services are skipped.
    pub async fn postgres() -> Option<Self> {
        Self::postgres_with(Arc::new(kernel::SystemClock)).await
    }

    /// In a schema of its own, dropped with it, the store telling the time by `clock`; `None`
    /// when services are skipped.
    pub async fn postgres_with(clock: Arc<dyn Clock>) -> Option<Self> {
        if crate::services_skipped("PostgreSQL") {
            return None;
        }
        let schema = crate::unique_name();
        let guard = crate::schema_guard_at(&crate::postgres_url(), &schema);
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut settings = crate::test_settings(dir.path());
        settings.database.url = Some(SecretString::from(crate::postgres_url()));
        settings.database.schema = Some(schema);
        Some(Self::open(settings, dir, Some(Box::new(guard)), clock).await)
    }

    async fn open(
        settings: quire::Settings,
        dir: tempfile::TempDir,
        guard: Option<Box<dyn std::fmt::Debug>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let store = SqlStore::connect(&settings, clock)
            .await
            .unwrap_or_else(|e| panic!("the store opens: {e:#}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("the store migrates: {e:#}"));
        let mut opts = ConnectOptions::new(settings.database_url().expose_secret().to_owned());
        opts.max_connections(1).sqlx_logging(false);
        if let Some(schema) = &settings.database.schema {
            opts.set_schema_search_path(schema.clone());
        }
        let raw = Database::connect(opts).await.expect("a second connection");
        Self {
            store,
            raw,
            _dir: dir,
            _guard: guard,
        }
    }

    /// The `n` column of the one row `sql` answers.
    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .raw
            .query_one_raw(sea_orm::Statement::from_string(
                self.raw.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect("a count")
            .expect("a row");
        row.try_get("", "n").expect("a number")
    }

    /// Runs `sql` on the second connection.
    ///
    /// # Errors
    /// What the database answers.
    pub async fn execute(&self, sql: &str) -> Result<(), sea_orm::DbErr> {
        self.raw.execute_unprepared(sql).await.map(|_| ())
    }
}
