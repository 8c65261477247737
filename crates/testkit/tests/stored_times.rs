//! Every time the SQL store writes is stored in the one form (`store_sql`'s `stored::at_value`),
//! on SQLite and PostgreSQL: the users', organizations', API keys', collections' and documents'
//! times, through every writer, sort and compare as time within one second (on SQLite sqlx's
//! own form put `…:00Z` after `…:00.5Z`) and read back as the instant written. On SQLite each
//! writer is checked to leave only the fixed-width form behind.
//!
//! Every pair below is written within one second, at `T0` (a whole second, which sqlx's form
//! wrote without a fraction) and `T0 + 0.5 s`, the later one first where the writer takes its
//! time from the caller, so that neither insertion nor id order is time order.

use std::sync::Arc;
use std::time::Duration;

use documents::{CollectionPatch, Failure, Ingested, Job, JobKind, JobStatus, Progress, Stage};
use identity::model::{DisplayName, EmailAddress, NewUser, Profile};
use identity::ports::UserRepository;
use kernel::{ApiKeyId, ManualClock, Role, TenantId, UserId};
use sea_orm::{ConnectionTrait as _, DbBackend, Statement, Value};
use tenancy::{
    ApiKey, ApiKeyRepository, KeyHash, NewOrganization, OrgName, OrgSlug, OrganizationRepository,
};
use testkit::SqlDb;
use testkit::contract::documents::{DocumentPorts, T0, at_ms, collection, drafts, upload};
use time::OffsetDateTime;
use uuid::Uuid;

/// The time columns whose writers this file covers.
const COLUMNS: [(&str, &str); 13] = [
    ("users", "created_at"),
    ("users", "updated_at"),
    ("users", "disabled_at"),
    ("users", "email_verified_at"),
    ("organizations", "created_at"),
    ("organizations", "updated_at"),
    ("api_keys", "created_at"),
    ("api_keys", "last_used_at"),
    ("api_keys", "revoked_at"),
    ("collections", "created_at"),
    ("collections", "updated_at"),
    ("documents", "created_at"),
    ("documents", "updated_at"),
];

/// On SQLite: no value of [`COLUMNS`] is in any other form than the fixed-width one
/// (`2026-11-22T10:00:00.500000Z`). `after` names the writer just run.
async fn fixed_width(db: &SqlDb, after: &str) {
    if db.raw.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    for (table, column) in COLUMNS {
        let rows = db
            .raw
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                format!(
                    "SELECT {column} AS t FROM {table} WHERE {column} IS NOT NULL \
                     AND NOT (length({column}) = 27 \
                              AND {column} LIKE '____-__-__T__:__:__.______Z')"
                ),
            ))
            .await
            .expect("reads");
        let other: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("", "t").expect("text"))
            .collect();
        assert!(
            other.is_empty(),
            "after {after}: {table}.{column} holds {other:?}, not the fixed-width form"
        );
    }
}

/// The rows of `table` with a `column`, by `ORDER BY column`, as (id, time) pairs: must be
/// `expected` (earliest first). Then compared in SQL: exactly the first is earlier than the
/// second.
async fn in_time_order(
    db: &SqlDb,
    table: &str,
    column: &str,
    expected: [(Uuid, OffsetDateTime); 2],
) {
    let backend = db.raw.get_database_backend();
    let rows = db
        .raw
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT id, {column} AS t FROM {table} WHERE {column} IS NOT NULL ORDER BY {column}"
            ),
        ))
        .await
        .expect("reads");
    let listed: Vec<(Uuid, OffsetDateTime)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").expect("an id"),
                r.try_get("", "t").expect("a time"),
            )
        })
        .collect();
    assert_eq!(listed, expected, "{table}.{column} in time order");
    for (id, earlier) in [(expected[1].0, 1), (expected[0].0, 0)] {
        let row = db
            .raw
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT COUNT(*) AS n FROM {table} \
                     WHERE {column} < (SELECT {column} FROM {table} WHERE id = $1)"
                ),
                [Value::from(id)],
            ))
            .await
            .expect("a count")
            .expect("a row");
        let n: i64 = row.try_get("", "n").expect("a number");
        assert_eq!(n, earlier, "{table}.{column}: rows earlier than {id}");
    }
}

fn new_user(email: &str, verified: Option<OffsetDateTime>) -> NewUser {
    NewUser {
        email: EmailAddress::parse(email).expect("email"),
        name: DisplayName::parse("Someone", "name").expect("name"),
        password_hash: None,
        email_verified_at: verified,
    }
}

fn new_org(slug: &str) -> NewOrganization {
    NewOrganization {
        name: OrgName::parse(slug).expect("name"),
        slug: OrgSlug::parse(slug).expect("slug"),
    }
}

fn api_key(tenant: TenantId, at: OffsetDateTime) -> ApiKey {
    ApiKey {
        id: ApiKeyId::new(),
        tenant_id: tenant,
        name: "ci".to_owned(),
        role: Role::Member,
        scopes: vec![tenancy::Scope::Read],
        prefix: "qk_abcdefgh".to_owned(),
        created_by: None,
        created_at: at,
        last_used_at: None,
    }
}

/// Every writer of [`COLUMNS`], the store's clock at `T0` and then at `T0 + 0.5 s`.
async fn every_writer_stores_time_in_order(db: &SqlDb, clock: &ManualClock) {
    let store = &db.store;
    let half = at_ms(500);
    let users: &dyn UserRepository = store;
    let orgs: &dyn OrganizationRepository = store;
    let keys: &dyn ApiKeyRepository = store;
    let p = DocumentPorts::of(store.clone());

    // Users, the clock at T0.
    let bob = users
        .create(new_user("bob@example.com", None), half)
        .await
        .expect("bob");
    fixed_width(db, "users.create").await;
    let ann = users
        .create(new_user("ann@example.com", Some(half)), T0)
        .await
        .expect("ann");
    assert!(users.verify_email(bob.id, false, T0).await.expect("verify"));
    fixed_width(db, "users.verify_email").await;
    users
        .set_disabled(ann.id, Some(half))
        .await
        .expect("disable");
    users.set_disabled(bob.id, Some(T0)).await.expect("disable");
    fixed_width(db, "users.set_disabled").await;
    users
        .set_password_hash(ann.id, "$argon2id$x")
        .await
        .expect("password");
    fixed_width(db, "users.set_password_hash").await;
    let profile = Profile {
        locale: Some("en".to_owned()),
        ..Profile::default()
    };
    let name = DisplayName::parse("Ann", "name").expect("name");
    users
        .update_profile(ann.id, name, profile)
        .await
        .expect("profile");
    fixed_width(db, "users.update_profile").await;
    users.set_platform_admin(ann.id, true).await.expect("admin");
    fixed_width(db, "users.set_platform_admin").await;

    // Organizations, the clock at T0.
    let alpha = orgs.create(new_org("alpha")).await.expect("alpha");
    fixed_width(db, "organizations.create").await;
    orgs.rename(alpha.id, OrgName::parse("Alpha").expect("name"))
        .await
        .expect("rename");
    orgs.set_plan(alpha.id, "pro").await.expect("plan");
    fixed_width(db, "organizations.rename, set_plan").await;

    // API keys: their times come from the caller.
    let (k1, k2) = (api_key(alpha.id, half), api_key(alpha.id, T0));
    keys.create(k1.clone(), KeyHash([1; 32]))
        .await
        .expect("key");
    keys.create(k2.clone(), KeyHash([2; 32]))
        .await
        .expect("key");
    fixed_width(db, "api_keys.create").await;
    keys.touch(alpha.id, k1.id, T0).await.expect("touch");
    keys.touch(alpha.id, k2.id, half).await.expect("touch");
    fixed_width(db, "api_keys.touch").await;
    let found = keys
        .find_by_hash(&KeyHash([1; 32]))
        .await
        .expect("find")
        .expect("live");
    assert_eq!(
        (found.created_at, found.last_used_at),
        (half, Some(T0)),
        "read back as written"
    );
    assert!(keys.revoke(alpha.id, k2.id, T0).await.expect("revoke"));
    assert!(keys.revoke(alpha.id, k1.id, half).await.expect("revoke"));
    fixed_width(db, "api_keys.revoke").await;

    // Collections: their times come from the caller.
    let c1 = collection(alpha.id, "First", half);
    let c2 = collection(alpha.id, "Second", T0);
    assert_eq!(p.collections.create(c1.clone()).await.expect("c1"), c1);
    assert_eq!(p.collections.create(c2.clone()).await.expect("c2"), c2);
    fixed_width(db, "collections.create").await;
    let patch = || CollectionPatch {
        description: Some(None),
        ..CollectionPatch::default()
    };
    let c1 = p
        .collections
        .update(alpha.id, c1.id, patch(), T0)
        .await
        .expect("update")
        .expect("c1");
    assert_eq!((c1.created_at, c1.updated_at), (half, T0), "read back");
    p.collections
        .update(alpha.id, c2.id, patch(), half)
        .await
        .expect("update")
        .expect("c2");
    fixed_width(db, "collections.update").await;

    // Documents: created by the caller's time; then claimed, heartbeat, completed, failed and
    // reindexed, each moving `updated_at`.
    let d1 = upload(&p, alpha.id, Some(c1.id), "d1", half).await;
    let d2 = upload(&p, alpha.id, Some(c1.id), "d2", T0).await;
    fixed_width(db, "documents.create").await;
    let lease = Duration::from_secs(60);
    let claim = p
        .jobs
        .claim(T0, lease)
        .await
        .expect("claim")
        .expect("d2's job is due");
    assert_eq!(claim.job.document_id, Some(d2.id));
    fixed_width(db, "jobs.claim").await;
    assert!(
        p.jobs
            .progress(&claim, Progress::of(Stage::Chunking, 0, 0), at_ms(60_000),)
            .await
            .expect("heartbeat")
    );
    fixed_width(db, "jobs.progress").await;
    let ingested = Ingested {
        pages: None,
        chunks: drafts(1, 5),
        ocr_pages: 0,
    };
    assert!(
        p.jobs
            .complete(&claim, ingested, half)
            .await
            .expect("complete")
    );
    fixed_width(db, "jobs.complete").await;
    let claim = p
        .jobs
        .claim(half, lease)
        .await
        .expect("claim")
        .expect("d1's job is due");
    assert_eq!(claim.job.document_id, Some(d1.id));
    assert!(
        p.jobs
            .fail(&claim, "no", Failure::Final(JobStatus::Failed), half)
            .await
            .expect("fail")
    );
    fixed_width(db, "jobs.fail").await;
    let again = Job::for_document(alpha.id, JobKind::Ingest, d1.id, T0);
    let d1 = p
        .documents
        .reindex(alpha.id, d1.id, again)
        .await
        .expect("reindex")
        .expect("d1");
    assert_eq!((d1.created_at, d1.updated_at), (half, T0), "read back");
    fixed_width(db, "documents.reindex").await;

    // The clock at T0 + 0.5 s: what takes its time from the store's clock.
    clock.advance(Duration::from_millis(500));
    users
        .set_preferences(bob.id, "{}")
        .await
        .expect("preferences");
    fixed_width(db, "users.set_preferences").await;
    let beta = orgs
        .create_with_owner(new_org("beta"), ann.id, 10)
        .await
        .expect("beta");
    fixed_width(db, "organizations.create_with_owner").await;

    let stored = users.find_by_id(ann.id).await.expect("find").expect("ann");
    assert_eq!(
        (
            stored.created_at,
            stored.disabled_at,
            stored.email_verified_at
        ),
        (T0, Some(half), Some(half)),
        "read back as written"
    );
    let stored = orgs.find_by_id(beta.id).await.expect("find").expect("beta");
    assert_eq!(stored.created_at, half);
    assert_eq!(stored, beta, "create returns what reads back");

    let u = |id: UserId| id.as_uuid();
    in_time_order(
        db,
        "users",
        "created_at",
        [(u(ann.id), T0), (u(bob.id), half)],
    )
    .await;
    in_time_order(
        db,
        "users",
        "updated_at",
        [(u(ann.id), T0), (u(bob.id), half)],
    )
    .await;
    in_time_order(
        db,
        "users",
        "disabled_at",
        [(u(bob.id), T0), (u(ann.id), half)],
    )
    .await;
    in_time_order(
        db,
        "users",
        "email_verified_at",
        [(u(bob.id), T0), (u(ann.id), half)],
    )
    .await;
    let t = |id: TenantId| id.as_uuid();
    for column in ["created_at", "updated_at"] {
        in_time_order(
            db,
            "organizations",
            column,
            [(t(alpha.id), T0), (t(beta.id), half)],
        )
        .await;
    }
    let (k1, k2) = (k1.id.as_uuid(), k2.id.as_uuid());
    in_time_order(db, "api_keys", "created_at", [(k2, T0), (k1, half)]).await;
    in_time_order(db, "api_keys", "last_used_at", [(k1, T0), (k2, half)]).await;
    in_time_order(db, "api_keys", "revoked_at", [(k2, T0), (k1, half)]).await;
    let (c1, c2) = (c1.id.as_uuid(), c2.id.as_uuid());
    in_time_order(db, "collections", "created_at", [(c2, T0), (c1, half)]).await;
    in_time_order(db, "collections", "updated_at", [(c1, T0), (c2, half)]).await;
    let (d1, d2) = (d1.id.as_uuid(), d2.id.as_uuid());
    in_time_order(db, "documents", "created_at", [(d2, T0), (d1, half)]).await;
    in_time_order(db, "documents", "updated_at", [(d1, T0), (d2, half)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_times_sort_as_time_within_a_second() {
    let clock = Arc::new(ManualClock::new(T0));
    let db = SqlDb::sqlite_with(clock.clone()).await;
    every_writer_stores_time_in_order(&db, &clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_times_sort_as_time_within_a_second() {
    let clock = Arc::new(ManualClock::new(T0));
    let Some(db) = SqlDb::postgres_with(clock.clone()).await else {
        return;
    };
    every_writer_stores_time_in_order(&db, &clock).await;
}
