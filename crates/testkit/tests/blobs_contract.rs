//! The blob store contract on every adapter: the filesystem (a temporary folder), memory, and
//! the database on SQLite and on PostgreSQL, every case on a fresh store. Then what only the
//! database store has: its rows (nothing left behind by a replace or a delete) and the sweep
//! of abandoned uploads, with a manual clock so that every cutoff is exact.

use std::sync::Arc;
use std::time::Duration;

use documents::{BlobError, BlobStore};
use kernel::ManualClock;
use sea_orm::{ConnectOptions, ConnectionTrait as _, Database, DatabaseConnection};
use secrecy::{ExposeSecret as _, SecretString};
use store_sql::SqlStore;
use testkit::contract::blobs::{content, key, put};
use testkit::contract::documents::{DocumentPorts, two_tenants, upload};
use time::OffsetDateTime;
use time::macros::datetime;

/// One test per case and adapter: `filesystem::case`, `memory::case`, `sqlite::case` and
/// `postgres::case`.
macro_rules! on_every_adapter {
    ($($case:ident),* $(,)?) => {
        mod filesystem {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().expect("a temporary folder");
                    let store: Arc<dyn BlobStore> =
                        Arc::new(blob_fs::FsBlobStore::new(dir.path()).expect("a blob folder"));
                    testkit::contract::blobs::$case(&store).await;
                }
            )*
        }

        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store: Arc<dyn BlobStore> = Arc::new(::memory::InMemoryBlobs::new());
                    testkit::contract::blobs::$case(&store).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    let store: Arc<dyn BlobStore> = Arc::new(store);
                    testkit::contract::blobs::$case(&store).await;
                }
            )*
        }

        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((store, _guard)) = testkit::postgres_store().await else {
                        return;
                    };
                    let store: Arc<dyn BlobStore> = Arc::new(store);
                    testkit::contract::blobs::$case(&store).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    parts_become_visible_at_commit,
    a_commit_replaces_at_once,
    an_abandoned_writer_leaves_nothing,
    delete_is_idempotent,
    empty_blobs_round_trip,
    tenant_keys_are_distinct,
    concurrent_commits_leave_one_whole_file,
    delete_tenant_removes_only_its_blobs,
);

/// A whole second: on SQLite a time without a fraction is where text comparison would go
/// wrong if the store wrote sqlx's own form.
const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);
const HOUR: Duration = Duration::from_secs(3_600);
const MICRO: Duration = Duration::from_micros(1);
const MIB: usize = 1 << 20;

/// A migrated database store whose clock is `clock`, and a second connection to the same
/// database that reads its tables.
struct Db {
    store: SqlStore,
    raw: DatabaseConnection,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Db {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let settings = testkit::test_settings(dir.path());
        Self::open(settings, dir).await
    }

    /// In `schema`, which the caller drops (`testkit::schema_guard`).
    async fn postgres(schema: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut settings = testkit::test_settings(dir.path());
        settings.database.url = Some(SecretString::from(testkit::postgres_url()));
        settings.database.schema = Some(schema.to_owned());
        Self::open(settings, dir).await
    }

    async fn open(settings: quire::Settings, dir: tempfile::TempDir) -> Self {
        let clock = Arc::new(ManualClock::new(T0));
        let store = SqlStore::connect(&settings, clock.clone())
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
            clock,
            _dir: dir,
        }
    }

    fn blobs(&self) -> &dyn BlobStore {
        &self.store
    }

    async fn count(&self, sql: &str) -> i64 {
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

    /// Rows of `blobs` (committed and in progress) and of `blob_parts`.
    async fn rows(&self) -> (i64, i64) {
        (
            self.count("SELECT COUNT(*) AS n FROM blobs").await,
            self.count("SELECT COUNT(*) AS n FROM blob_parts").await,
        )
    }

    async fn sweep(&self, now: OffsetDateTime, older_than: Duration) -> u64 {
        self.store
            .sweep_blob_parts(now, older_than)
            .await
            .unwrap_or_else(|e| panic!("sweep: {e:#}"))
    }
}

/// Uploads that never committed are swept once older than the cutoff (strictly), with their
/// parts; younger ones and committed blobs are kept. An upload swept while its writer is
/// still open can never commit.
async fn sweep_removes_only_abandoned_uploads(db: Db) {
    let kept = content(2 * MIB + MIB / 2, 1);
    put(db.blobs(), &key("t1/kept"), &kept, &[MIB / 3]).await;
    assert_eq!(db.rows().await, (1, 3), "2.5 MiB: three parts");

    // Abandoned at T0 + 0.5 s: two full parts stored, the last half part only in memory.
    db.clock.advance(Duration::from_millis(500));
    let gone_at = T0 + Duration::from_millis(500);
    let mut gone = db.blobs().writer(&key("t1/gone")).await.expect("a writer");
    gone.write(&content(2 * MIB + MIB / 2, 2))
        .await
        .expect("write");
    drop(gone);

    // Still open at T0 + 1 s: one with a full part stored, one with nothing written yet.
    db.clock.advance(Duration::from_millis(500));
    let open_at = T0 + Duration::from_secs(1);
    let mut live = db.blobs().writer(&key("t1/live")).await.expect("a writer");
    live.write(&content(MIB + 1, 3)).await.expect("write");
    let idle = db.blobs().writer(&key("t1/idle")).await.expect("a writer");
    assert_eq!(db.rows().await, (4, 6));

    // A cutoff before their creation, or at it exactly: nothing is older.
    assert_eq!(db.sweep(gone_at, HOUR).await, 0);
    assert_eq!(
        db.sweep(gone_at + HOUR, HOUR).await,
        0,
        "not strictly older"
    );
    assert_eq!(db.sweep(gone_at, Duration::ZERO).await, 0);
    assert_eq!(db.rows().await, (4, 6));

    // Just after the abandoned upload began: its row and its two parts go; the rest stays.
    assert_eq!(db.sweep(gone_at + HOUR + MICRO, HOUR).await, 2);
    assert_eq!(db.rows().await, (3, 4));
    // Just after the open ones began: they go too (one part between them).
    assert_eq!(db.sweep(open_at + MICRO, Duration::ZERO).await, 1);
    assert_eq!(db.rows().await, (1, 3));
    // Committed blobs are never swept, however old.
    assert_eq!(
        db.sweep(datetime!(2100-01-01 00:00 UTC), Duration::ZERO)
            .await,
        0
    );
    assert_eq!(db.rows().await, (1, 3));
    assert_eq!(db.blobs().read(&key("t1/kept")).await.expect("read"), kept);

    // The swept writers can neither store a part nor publish anything.
    assert!(
        live.write(&content(MIB, 4)).await.is_err(),
        "a part of a swept upload"
    );
    assert!(
        live.commit().await.is_err(),
        "a commit after a failed write"
    );
    assert!(idle.commit().await.is_err(), "a commit of a swept upload");
    for gone in ["t1/gone", "t1/live", "t1/idle"] {
        assert!(
            matches!(db.blobs().read(&key(gone)).await, Err(BlobError::NotFound)),
            "{gone}"
        );
    }
    assert_eq!(db.rows().await, (1, 3));
}

/// What uploads, replaces and deletes leave in the tables: nothing but the committed blobs'
/// rows and parts (and an upload's row and full parts while it runs). A writer commits its
/// tail as one more part; an empty blob has a row and no parts.
async fn rows_follow_the_blobs(db: Db) {
    assert_eq!(db.blobs().backend(), "database");
    let k = key("t1/d1");
    put(db.blobs(), &k, &content(2 * MIB + 7, 1), &[MIB + 1]).await;
    assert_eq!(db.rows().await, (1, 3));
    let smaller = content(MIB, 2);
    put(db.blobs(), &k, &smaller, &[MIB]).await;
    assert_eq!(db.rows().await, (1, 1), "the old file's parts went with it");
    assert_eq!(db.blobs().read(&k).await.expect("read"), smaller);

    // An upload in progress has a row (and its full parts) before it commits.
    let mut writer = db.blobs().writer(&k).await.expect("a writer");
    assert_eq!(db.rows().await, (2, 1));
    writer.write(&content(MIB + 2, 3)).await.expect("write");
    assert_eq!(db.rows().await, (2, 2));
    writer.commit().await.expect("commit");
    assert_eq!(db.rows().await, (1, 2));

    let empty = key("t1/empty");
    put(db.blobs(), &empty, &[], &[1]).await;
    assert_eq!(db.rows().await, (2, 2), "an empty blob has no parts");
    db.blobs().delete(&k).await.expect("delete");
    db.blobs().delete(&empty).await.expect("delete");
    assert_eq!(db.rows().await, (0, 0));
    assert_eq!(
        db.sweep(datetime!(2100-01-01 00:00 UTC), Duration::ZERO)
            .await,
        0
    );
}

/// Files that no document names any more (an organization deleted with its rows) are swept
/// once older than the cutoff; a document's file never is.
async fn orphan_blobs_are_swept(db: Db) {
    let ports = DocumentPorts::of(db.store.clone());
    let (a, b) = two_tenants(&ports).await;
    let named = upload(&ports, a, None, "named", T0).await;
    put(db.blobs(), &named.blob_key, b"kept", &[2]).await;
    let gone = upload(&ports, b, None, "gone", T0).await;
    put(db.blobs(), &gone.blob_key, b"orphaned", &[3]).await;
    let sweep = |now| {
        let store = db.store.clone();
        async move {
            store
                .sweep_orphan_blobs(now, Duration::ZERO)
                .await
                .unwrap_or_else(|e| panic!("sweep: {e:#}"))
        }
    };
    let far = datetime!(2100-01-01 00:00 UTC);
    // An export archive is named by no document and is not an orphan.
    let archive = documents::BlobKey::for_export(a, "run");
    put(db.blobs(), &archive, b"zip", &[3]).await;
    assert_eq!(
        sweep(far).await,
        0,
        "both files are named by a document, the archive is an export"
    );
    assert_eq!(db.blobs().read(&archive).await.expect("kept"), b"zip");
    assert!(ports.orgs.delete(b).await.expect("delete the organization"));
    assert_eq!(
        db.blobs().read(&gone.blob_key).await.expect("still there"),
        b"orphaned"
    );
    assert_eq!(
        sweep(T0 - Duration::from_secs(1)).await,
        0,
        "too young to sweep"
    );
    assert_eq!(sweep(far).await, 1, "the deleted organization's file");
    assert!(matches!(
        db.blobs().read(&gone.blob_key).await,
        Err(BlobError::NotFound)
    ));
    assert_eq!(
        db.blobs().read(&named.blob_key).await.expect("kept"),
        b"kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_orphan_blobs_are_swept() {
    orphan_blobs_are_swept(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_orphan_blobs_are_swept() {
    if testkit::services_skipped("PostgreSQL") {
        return;
    }
    let schema = testkit::unique_name();
    let _guard = testkit::schema_guard(&schema);
    orphan_blobs_are_swept(Db::postgres(&schema).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sweep_removes_only_abandoned_uploads() {
    sweep_removes_only_abandoned_uploads(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sweep_removes_only_abandoned_uploads() {
    if testkit::services_skipped("PostgreSQL") {
        return;
    }
    let schema = testkit::unique_name();
    let _guard = testkit::schema_guard(&schema);
    sweep_removes_only_abandoned_uploads(Db::postgres(&schema).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_follow_the_blobs() {
    rows_follow_the_blobs(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_follow_the_blobs() {
    if testkit::services_skipped("PostgreSQL") {
        return;
    }
    let schema = testkit::unique_name();
    let _guard = testkit::schema_guard(&schema);
    rows_follow_the_blobs(Db::postgres(&schema).await).await;
}
