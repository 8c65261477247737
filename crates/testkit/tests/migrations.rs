//! Migrations: one schema on both backends, idempotent, and safe when servers start together.

use migration::MigratorTrait as _;
use sea_orm::{
    ConnectOptions, ConnectionTrait as _, Database, DatabaseConnection, DbBackend, Statement,
};

#[tokio::test]
async fn sqlite_migrates_once_and_reports_nothing_pending() {
    let (store, _dir) = testkit::sqlite_store().await;
    assert!(store.pending_migrations().await.expect("status").is_empty());
    let again = store.migrate().await.expect("a second run is a no-op");
    assert!(again.is_empty(), "nothing left to apply: {again:?}");
}

#[tokio::test]
async fn concurrent_postgres_migrations_serialize() {
    if testkit::services_skipped("PostgreSQL") {
        return;
    }
    let schema = testkit::unique_name();
    let _guard = testkit::schema_guard(&schema);
    let a = testkit::postgres_store_in(&schema).await;
    let b = testkit::postgres_store_in(&schema).await;
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let ra = ra.expect("first migrator");
    let rb = rb.expect("second migrator waits on the advisory lock, then finds nothing to do");
    let mut applied = [ra, rb].concat();
    applied.sort();
    let mut all: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    all.sort();
    assert_eq!(
        applied, all,
        "each migration is applied exactly once across both servers"
    );
    assert!(a.pending_migrations().await.expect("status").is_empty());
    assert_eq!(a.backend_name(), "postgres");
}

/// The values of `{table}.{column}` that are not NULL, by `ORDER BY {column}`, as text.
async fn stored_texts(db: &DatabaseConnection, table: &str, column: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Sqlite,
        format!("SELECT {column} AS t FROM {table} WHERE {column} IS NOT NULL ORDER BY {column}"),
    ))
    .await
    .expect("reads")
    .iter()
    .map(|row| row.try_get::<String>("", "t").expect("text"))
    .collect()
}

/// One connection to the SQLite database at `url`, migrated up to (not including) the
/// migration `name`: the schema as it was before it.
async fn sqlite_before(url: String, name: &str) -> DatabaseConnection {
    let db = Database::connect(ConnectOptions::new(url).max_connections(1).to_owned())
        .await
        .expect("SQLite opens");
    let before = migration::Migrator::migrations()
        .iter()
        .position(|m| m.name() == name)
        .expect("the migration is listed");
    migration::Migrator::up(&db, Some(u32::try_from(before).expect("few migrations")))
        .await
        .expect("the schema as it was before");
    db
}

/// Times written on SQLite before `m20261206_000018_stored_times` (sqlx's RFC 3339, whose
/// fraction drops trailing zeros, so `…:05Z` sorts after `…:05.5Z`) are rewritten in the one
/// stored form (fixed-width, six fraction digits), whose text order is time order.
#[tokio::test]
async fn sqlite_times_written_in_sqlx_form_are_rewritten_fixed_width() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    // One connection, so that the pragma below holds for the inserts.
    let db = sqlite_before(url, "m20261206_000018_stored_times").await;
    // Rows as the old code wrote them (no organizations: this test is about the times).
    db.execute_unprepared("PRAGMA foreign_keys = OFF")
        .await
        .expect("pragma");
    let insert = |sql: String| {
        let db = &db;
        async move { db.execute_unprepared(&sql).await.expect("insert") }
    };
    for (tenant, at) in [
        (1, "2026-11-22T10:00:05.5Z"),
        (2, "2026-11-22T10:00:05Z"),
        (3, "2026-11-22T10:00:04.999999Z"),
        (4, "2026-11-22T10:00:05.000001Z"),
    ] {
        insert(format!(
            "INSERT INTO tenant_models (tenant_id, models, updated_at) \
             VALUES (x'{tenant:032x}', '[]', '{at}')"
        ))
        .await;
        insert(format!(
            "INSERT INTO dev_outbox (id, at, recipient, subject, body) \
             VALUES (x'{tenant:032x}', '{at}', 'a@example.com', 's', 'b')"
        ))
        .await;
        insert(format!(
            "INSERT INTO message_feedback \
             (tenant_id, message_id, principal_key, rating, comment, created_at) \
             VALUES (x'{tenant:032x}', x'{tenant:032x}', 'u:{tenant}', 'up', NULL, '{at}')"
        ))
        .await;
    }
    assert_eq!(
        stored_texts(&db, "tenant_models", "updated_at").await[3],
        "2026-11-22T10:00:05Z",
        "the old form sorts a whole second after its own fractions"
    );

    migration::Migrator::up(&db, None).await.expect("migrates");

    let expected = [
        "2026-11-22T10:00:04.999999Z",
        "2026-11-22T10:00:05.000000Z",
        "2026-11-22T10:00:05.000001Z",
        "2026-11-22T10:00:05.500000Z",
    ];
    assert_eq!(
        stored_texts(&db, "tenant_models", "updated_at").await,
        expected
    );
    assert_eq!(
        stored_texts(&db, "message_feedback", "created_at").await,
        expected
    );
    assert_eq!(stored_texts(&db, "dev_outbox", "at").await, expected);
    assert!(
        migration::Migrator::get_pending_migrations(&db)
            .await
            .expect("status")
            .is_empty()
    );
}

/// The rest of the times written on SQLite in sqlx's form before
/// `m20261206_000019_stored_times_rest` (the users', organizations', API keys', collections'
/// and documents') are rewritten in the one stored form, sort as time within a second, and
/// read back through the store as the same instants.
#[tokio::test]
async fn sqlite_rest_of_the_times_are_rewritten_fixed_width() {
    use documents::{CollectionId, CollectionRepository, DocumentId, DocumentRepository};
    use identity::ports::UserRepository;
    use kernel::{TenantId, UserId};
    use tenancy::{ApiKeyRepository as _, KeyHash, OrganizationRepository};
    use time::macros::datetime;

    let dir = tempfile::tempdir().expect("a temporary folder");
    let settings = testkit::test_settings(dir.path());
    let url = secrecy::ExposeSecret::expose_secret(&settings.database_url()).to_owned();
    let db = sqlite_before(url, "m20261206_000019_stored_times_rest").await;
    // Two of each, as the old code wrote them: row 1 at …:05.5, row 2 at …:05 (the old form
    // sorts it after row 1). Row 1's key is live (so the store can find it by its hash).
    let (half, whole) = ("2026-11-22T10:00:05.5Z", "2026-11-22T10:00:05Z");
    for (n, at) in [(1_u128, half), (2, whole)] {
        let id = format!("x'{n:032x}'");
        let revoked = if n == 1 {
            "NULL".to_owned()
        } else {
            format!("'{at}'")
        };
        for sql in [
            format!(
                "INSERT INTO organizations (id, name, slug, plan, created_at, updated_at) \
                 VALUES ({id}, 'Org {n}', 'org-{n}', 'free', '{at}', '{at}')"
            ),
            format!(
                "INSERT INTO users (id, email, name, is_platform_admin, disabled_at, created_at, \
                 updated_at, email_verified_at) \
                 VALUES ({id}, 'u{n}@example.com', 'User', false, '{at}', '{at}', '{at}', '{at}')"
            ),
            format!(
                "INSERT INTO api_keys (id, tenant_id, name, role, prefix, key_hash, scopes, \
                 created_at, last_used_at, revoked_at) \
                 VALUES ({id}, {id}, 'ci', 'member', 'qk_abcdefgh', x'{n:064x}', 'read', \
                 '{at}', '{at}', {revoked})"
            ),
            format!(
                "INSERT INTO collections (id, tenant_id, name, chunk_max_tokens, chunk_overlap, \
                 tokenizer, created_at, updated_at) \
                 VALUES ({id}, {id}, 'C', 400, 40, 'cl100k_base', '{at}', '{at}')"
            ),
            format!(
                "INSERT INTO documents (id, tenant_id, collection_id, name, format, bytes, \
                 content_hash, status, progress, chunk_count, token_count, metadata, blob_key, \
                 created_at, updated_at) \
                 VALUES ({id}, {id}, {id}, 'd.txt', 'text', 3, '00', 'ready', 1.0, 0, 0, '{{}}', \
                 'k{n}', '{at}', '{at}')"
            ),
        ] {
            db.execute_unprepared(&sql).await.expect("insert");
        }
    }
    assert_eq!(
        stored_texts(&db, "users", "created_at").await,
        [half, whole],
        "the old form sorts a whole second after its own fractions"
    );

    // The store's own start-up applies the migration.
    let store = store_sql::SqlStore::connect(&settings, std::sync::Arc::new(kernel::SystemClock))
        .await
        .expect("the store opens");
    let applied = store.migrate().await.expect("migrates");
    // It, then any later one.
    assert_eq!(
        applied.first().map(String::as_str),
        Some("m20261206_000019_stored_times_rest"),
        "{applied:?}"
    );

    let expected = ["2026-11-22T10:00:05.000000Z", "2026-11-22T10:00:05.500000Z"];
    for (table, column) in [
        ("users", "created_at"),
        ("users", "updated_at"),
        ("users", "disabled_at"),
        ("users", "email_verified_at"),
        ("organizations", "created_at"),
        ("organizations", "updated_at"),
        ("api_keys", "created_at"),
        ("api_keys", "last_used_at"),
        ("collections", "created_at"),
        ("collections", "updated_at"),
        ("documents", "created_at"),
        ("documents", "updated_at"),
    ] {
        assert_eq!(
            stored_texts(&db, table, column).await,
            expected,
            "{table}.{column}"
        );
    }
    assert_eq!(
        stored_texts(&db, "api_keys", "revoked_at").await,
        [expected[0]]
    );

    let (at_half, at_whole) = (
        datetime!(2026-11-22 10:00:05.5 UTC),
        datetime!(2026-11-22 10:00:05 UTC),
    );
    for (n, at) in [(1_u128, at_half), (2, at_whole)] {
        let id = uuid::Uuid::from_u128(n);
        let tenant = TenantId::from_uuid(id);
        let user = UserRepository::find_by_id(&store, UserId::from_uuid(id))
            .await
            .expect("reads")
            .expect("the user");
        assert_eq!(
            (user.created_at, user.disabled_at, user.email_verified_at),
            (at, Some(at), Some(at))
        );
        let org = OrganizationRepository::find_by_id(&store, tenant)
            .await
            .expect("reads")
            .expect("the organization");
        assert_eq!(org.created_at, at);
        let collection = CollectionRepository::find(&store, tenant, CollectionId::from_uuid(id))
            .await
            .expect("reads")
            .expect("the collection");
        assert_eq!((collection.created_at, collection.updated_at), (at, at));
        let document = DocumentRepository::find(&store, tenant, DocumentId::from_uuid(id))
            .await
            .expect("reads")
            .expect("the document");
        assert_eq!((document.created_at, document.updated_at), (at, at));
    }
    let key = store
        .find_by_hash(&KeyHash(key_hash(1)))
        .await
        .expect("reads")
        .expect("the live key");
    assert_eq!((key.created_at, key.last_used_at), (at_half, Some(at_half)));
}

/// `n` as 32 big-endian bytes (`x'{n:064x}'` in SQL).
fn key_hash(n: u8) -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes[31] = n;
    bytes
}

/// `m20261206_000021_keyword_postings` backfills the postings of the chunks stored before it
/// (PostgreSQL; a no-op on SQLite), and its triggers keep them in step afterwards.
/// Uploads a document `name` of `tenant` and completes its ingestion job with `texts` as its
/// chunks (each with its token count), through today's store: the chunks' ids.
async fn store_chunks(
    p: &testkit::contract::documents::DocumentPorts,
    tenant: kernel::TenantId,
    name: &str,
    texts: &[(&str, u32)],
) -> Vec<documents::ChunkId> {
    use documents::{ChunkDraft, NewChunk};
    use testkit::contract::documents as fixtures;

    fixtures::upload(p, tenant, None, name, fixtures::T0).await;
    let claim = p
        .jobs
        .claim(fixtures::T0, std::time::Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("due");
    let chunks = NewChunk::assign(
        texts
            .iter()
            .enumerate()
            .map(|(i, (t, tokens))| ChunkDraft {
                ordinal: u32::try_from(i).expect("few"),
                text: (*t).to_owned(),
                tokens: *tokens,
                tokens_by: None,
                page: None,
                start: 0,
                end: 10,
                ocr: false,
            })
            .collect(),
    );
    let ids: Vec<_> = chunks.iter().map(|c| c.id).collect();
    let ingested = documents::Ingested {
        pages: None,
        chunks,
        ocr_pages: 0,
    };
    assert!(
        p.jobs
            .complete(&claim, ingested, fixtures::T0)
            .await
            .expect("complete")
    );
    ids
}

#[tokio::test]
async fn postgres_keyword_postings_are_backfilled() {
    use retrieval::KeywordIndex as _;
    use testkit::contract::documents::{self as fixtures, DocumentPorts};

    if testkit::services_skipped("PostgreSQL") {
        return;
    }
    let schema = testkit::unique_name();
    let _guard = testkit::schema_guard(&schema);
    let store = testkit::postgres_store_in(&schema).await;
    let db = Database::connect(
        ConnectOptions::new(testkit::postgres_url())
            .set_schema_search_path(schema.clone())
            .max_connections(1)
            .to_owned(),
    )
    .await
    .expect("PostgreSQL connects");
    db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await
        .expect("schema");
    let before = migration::Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261206_000021_keyword_postings")
        .expect("the migration is listed");
    migration::Migrator::up(&db, Some(u32::try_from(before).expect("few migrations")))
        .await
        .expect("the schema as it was before");
    // Today's store writes the columns of later migrations (OCR, 28; reranking, 29; progress
    // units, 33): lend them to the old schema while it writes the old rows, and take them back
    // before migrating on.
    const LATER_COLUMNS: [(&str, &str, &str); 9] = [
        ("collections", "ocr_languages", "varchar(200) NULL"),
        ("collections", "rerank_top_n", "integer NULL"),
        ("documents", "ocr_pages", "integer NOT NULL DEFAULT 0"),
        ("chunks", "ocr", "boolean NOT NULL DEFAULT false"),
        ("documents", "stage", "varchar(20) NULL"),
        ("documents", "done_units", "integer NOT NULL DEFAULT 0"),
        ("documents", "total_units", "integer NOT NULL DEFAULT 0"),
        ("jobs", "done_units", "integer NOT NULL DEFAULT 0"),
        ("jobs", "total_units", "integer NOT NULL DEFAULT 0"),
    ];
    for (table, column, kind) in LATER_COLUMNS {
        db.execute_unprepared(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))
            .await
            .expect("a later column");
    }

    let p = DocumentPorts::of(store.clone());
    let (tenant, _) = fixtures::two_tenants(&p).await;
    let old = store_chunks(
        &p,
        tenant,
        "old",
        &[("zebra zebra crossing", 3), ("a plain crossing", 3)],
    )
    .await;
    for (table, column, _) in LATER_COLUMNS {
        db.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
            .await
            .expect("a later column taken back");
    }
    migration::Migrator::up(&db, None)
        .await
        .expect("the postings migration");
    let new = store_chunks(&p, tenant, "new", &[("one zebra here", 3)]).await;

    let found = store
        .search(tenant, None, "zebra", 10, None)
        .await
        .expect("search");
    let ids: Vec<_> = found.iter().map(|c| c.chunk_id).collect();
    assert_eq!(ids.len(), 2, "{found:?}");
    assert_eq!(ids[0], old[0], "tf 2 ranks first: the backfill kept tf");
    assert_eq!(ids[1], new[0], "a chunk stored after the migration");
    let found = store
        .search(tenant, None, "crossing", 10, None)
        .await
        .expect("search");
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|c| old.contains(&c.chunk_id)));
}

/// `m20261207_000035_keyword_lengths` backfills each stored chunk's length beside its FTS5
/// rowid (BM25 reads it there), and chunks stored afterwards get theirs from the trigger.
#[tokio::test]
async fn sqlite_keyword_lengths_are_backfilled() {
    use retrieval::KeywordIndex as _;
    use testkit::contract::documents::{self as fixtures, DocumentPorts};

    let dir = tempfile::tempdir().expect("a temporary folder");
    let settings = testkit::test_settings(dir.path());
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("quire.db").display()
    );
    let db = sqlite_before(url, "m20261207_000035_keyword_lengths").await;
    let store = store_sql::SqlStore::connect(&settings, std::sync::Arc::new(kernel::SystemClock))
        .await
        .expect("SQLite opens");
    let p = DocumentPorts::of(store.clone());
    let (tenant, _) = fixtures::two_tenants(&p).await;
    // The long chunk first: were lengths missing (all equal), ties would rank it first.
    let old = store_chunks(&p, tenant, "old", &[("zebra long", 40), ("zebra short", 4)]).await;
    migration::Migrator::up(&db, None)
        .await
        .expect("the lengths migration");
    let new = store_chunks(&p, tenant, "new", &[("zebra newer", 12)]).await;

    let lengths: Vec<i64> = db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT r.length AS n FROM chunk_fts_rows AS r ORDER BY r.rowid",
        ))
        .await
        .expect("reads")
        .iter()
        .map(|row| row.try_get::<i64>("", "n").expect("a length"))
        .collect();
    assert_eq!(
        lengths,
        [40, 4, 12],
        "backfilled, then written by the trigger"
    );
    let found = store
        .search(tenant, None, "zebra", 10, None)
        .await
        .expect("search");
    let ids: Vec<_> = found.iter().map(|c| c.chunk_id).collect();
    assert_eq!(ids, [old[1], new[0], old[0]], "shorter chunks rank higher");
}

/// The rows `m20261207_000030_blob_tenants` finds: a committed blob of `tenant` in two parts,
/// an upload in progress (no key) with a part, and a blob whose key has no tenant prefix.
fn old_blob_rows(backend: DbBackend, tenant: &str) -> Vec<String> {
    let uuid_of = |hex: &str| match backend {
        DbBackend::Postgres => format!("'{hex}'::uuid"),
        _ => format!("x'{}'", hex.replace('-', "")),
    };
    let data = |hex: &str| match backend {
        DbBackend::Postgres => format!("'\\x{hex}'::bytea"),
        _ => format!("x'{hex}'"),
    };
    let at = match backend {
        DbBackend::Postgres => "'2026-12-01T10:00:00Z'::timestamptz",
        _ => "'2026-12-01T10:00:00.000000Z'",
    };
    let (kept, open, stray) = (
        "0193b000-0000-7000-8000-000000000001",
        "0193b000-0000-7000-8000-000000000002",
        "0193b000-0000-7000-8000-000000000003",
    );
    vec![
        format!(
            "INSERT INTO blobs (upload, key, bytes, created_at) VALUES \
             ({}, '{tenant}/0193b000-0000-7000-8000-0000000000d1', 6, {at}), \
             ({}, NULL, NULL, {at}), ({}, 'no-tenant/d', 3, {at})",
            uuid_of(kept),
            uuid_of(open),
            uuid_of(stray)
        ),
        format!(
            "INSERT INTO blob_parts (upload, seq, data) VALUES \
             ({}, 0, {}), ({}, 1, {}), ({}, 0, {}), ({}, 0, {})",
            uuid_of(kept),
            data("616263"),
            uuid_of(kept),
            data("646566"),
            uuid_of(open),
            data("787878"),
            uuid_of(stray),
            data("797979"),
        ),
    ]
}

/// Per upload (in order: the committed blob, the stray one), the stored tenant of its row and
/// of its parts, as hex without hyphens (empty: NULL); and how many rows and parts there are.
async fn blob_tenants(db: &DatabaseConnection) -> (Vec<String>, Vec<String>, i64, i64) {
    let hex = match db.get_database_backend() {
        DbBackend::Postgres => "coalesce(replace(tenant_id::text, '-', ''), '')",
        _ => "coalesce(lower(hex(tenant_id)), '')",
    };
    let texts = |sql: String| async move {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("reads")
            .iter()
            .map(|row| row.try_get::<String>("", "t").expect("text"))
            .collect::<Vec<_>>()
    };
    let count = |sql: &'static str| async move {
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("a count")
            .expect("a row");
        row.try_get::<i64>("", "n").expect("a number")
    };
    (
        texts(format!("SELECT {hex} AS t FROM blobs ORDER BY upload")).await,
        texts(format!(
            "SELECT DISTINCT {hex} AS t FROM blob_parts ORDER BY 1"
        ))
        .await,
        count("SELECT COUNT(*) AS n FROM blobs").await,
        count("SELECT COUNT(*) AS n FROM blob_parts").await,
    )
}

/// `m20261207_000030_blob_tenants` gives every committed blob and its parts the tenant of its
/// key, removes uploads in progress (no key: no known tenant) with their parts, and leaves a
/// key without a tenant prefix without one; the blob then reads through the store (on
/// PostgreSQL under row-level security).
async fn blobs_get_their_tenant(db: &DatabaseConnection, store: &store_sql::SqlStore) {
    use documents::BlobStore as _;
    let tenant = "0193b000-0000-7000-8000-0000000000aa";
    let before = migration::Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261207_000030_blob_tenants")
        .expect("the migration is listed");
    migration::Migrator::up(db, Some(u32::try_from(before).expect("few migrations")))
        .await
        .expect("the schema as it was before");
    for sql in old_blob_rows(db.get_database_backend(), tenant) {
        db.execute_unprepared(&sql).await.expect("an old row");
    }
    migration::Migrator::up(db, None).await.expect("migrates");
    let plain = tenant.replace('-', "");
    let (rows, parts, n_rows, n_parts) = blob_tenants(db).await;
    assert_eq!(rows, [plain.clone(), String::new()], "the blobs' tenants");
    assert_eq!(parts, [String::new(), plain], "the parts' tenants");
    assert_eq!((n_rows, n_parts), (2, 3), "the upload in progress is gone");
    let key =
        documents::BlobKey::from_stored(format!("{tenant}/0193b000-0000-7000-8000-0000000000d1"));
    assert_eq!(store.read(&key).await.expect("the blob reads"), b"abcdef");
}

#[tokio::test]
async fn sqlite_blobs_get_their_tenant() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("quire.db").display()
    );
    let db = Database::connect(ConnectOptions::new(url).max_connections(1).to_owned())
        .await
        .expect("SQLite opens");
    db.execute_unprepared("PRAGMA foreign_keys = OFF")
        .await
        .expect("pragma");
    let settings = testkit::test_settings(dir.path());
    let store = store_sql::SqlStore::connect(&settings, std::sync::Arc::new(kernel::SystemClock))
        .await
        .expect("the store");
    blobs_get_their_tenant(&db, &store).await;
}

#[tokio::test]
async fn postgres_blobs_get_their_tenant() {
    if testkit::services_skipped("PostgreSQL") {
        return;
    }
    let schema = testkit::unique_name();
    let _guard = testkit::schema_guard(&schema);
    let store = testkit::postgres_store_in(&schema).await;
    let db = Database::connect(
        ConnectOptions::new(testkit::postgres_url())
            .set_schema_search_path(schema.clone())
            .max_connections(1)
            .to_owned(),
    )
    .await
    .expect("PostgreSQL connects");
    db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await
        .expect("schema");
    blobs_get_their_tenant(&db, &store).await;
}
