//! The membership contract on every adapter: in-memory, SQLite, PostgreSQL.

use std::sync::Arc;

use identity::model::{DisplayName, EmailAddress, NewUser};
use identity::ports::UserRepository;
use kernel::{Clock as _, SystemClock, UserId};
use memory::InMemoryOrganizations;
use tenancy::MembershipRepository;

async fn three_users(users: &dyn UserRepository) -> [UserId; 3] {
    let mut ids = Vec::new();
    for name in ["ann", "bob", "cy"] {
        let user = users
            .create(
                NewUser {
                    email: EmailAddress::parse(&format!("{name}@example.com")).expect("email"),
                    name: DisplayName::parse(name, "name").expect("name"),
                    password_hash: None,
                    email_verified_at: None,
                },
                SystemClock.now(),
            )
            .await
            .expect("user");
        ids.push(user.id);
    }
    [ids[0], ids[1], ids[2]]
}

#[tokio::test]
async fn in_memory_meets_the_contract() {
    let accounts = Arc::new(memory::InMemoryUsers::new());
    let users = three_users(&*accounts).await;
    let store = Arc::new(InMemoryOrganizations::new(Arc::new(SystemClock)).with_users(accounts));
    let members: Arc<dyn MembershipRepository> = store.clone();
    testkit::contract::memberships::run(&*store, members, users).await;
}

#[tokio::test]
async fn sqlite_meets_the_contract() {
    let (store, _dir) = testkit::sqlite_store().await;
    let users = three_users(&store).await;
    let members: Arc<dyn MembershipRepository> = Arc::new(store.clone());
    testkit::contract::memberships::run(&store, members, users).await;
}

#[tokio::test]
async fn postgres_meets_the_contract() {
    let Some((store, _guard)) = testkit::postgres_store().await else {
        return;
    };
    let users = three_users(&store).await;
    let members: Arc<dyn MembershipRepository> = Arc::new(store.clone());
    testkit::contract::memberships::run(&store, members, users).await;
}

/// A user's memberships list oldest first to the microsecond on SQLite too: sqlx's own form
/// of a time put a join at `…:00Z` after one at `…:00.5Z` of the same second.
#[tokio::test]
async fn sqlite_memberships_list_oldest_first_within_a_second() {
    use kernel::Role;
    use tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository};
    use time::macros::datetime;

    let (store, _dir) = testkit::sqlite_store().await;
    let [ann, ..] = three_users(&store).await;
    let t0 = datetime!(2026-11-22 10:00:00 UTC);
    let mut joined = Vec::new();
    for (slug, at) in [
        ("later-org", t0 + time::Duration::milliseconds(500)),
        ("first-org", t0),
    ] {
        let new = NewOrganization {
            name: OrgName::parse(slug).expect("name"),
            slug: OrgSlug::parse(slug).expect("slug"),
        };
        let org = OrganizationRepository::create(&store, new)
            .await
            .expect("organization");
        store
            .add(org.id, ann, Role::Member, at)
            .await
            .expect("member");
        joined.push(org.id);
    }
    let listed: Vec<_> = store
        .for_user(ann)
        .await
        .expect("memberships")
        .into_iter()
        .map(|(org, _)| org.id)
        .collect();
    assert_eq!(listed, [joined[1], joined[0]], "oldest membership first");
}

/// Deleting an organization cascades through tables its workers write in another order, and
/// PostgreSQL may make the deletion a deadlock's victim (it did, under an ingestion step,
/// in the erasure test): the deletion is tried again and succeeds. Here the deadlock is made on
/// purpose: a transaction holds the organization's membership row, the deletion locks the
/// organization row and waits for that membership, then the transaction asks for the
/// organization row. The deletion, waiting first, is the one PostgreSQL's detector cancels.
#[tokio::test]
async fn postgres_deletion_is_tried_again_after_losing_a_deadlock() {
    use sea_orm::{ConnectionTrait as _, Statement, TransactionTrait as _};
    use tenancy::OrganizationRepository as _;
    if testkit::services_skipped("PostgreSQL") {
        return;
    }
    let schema = testkit::unique_name();
    let store = Arc::new(testkit::postgres_store_in(&schema).await);
    let _guard = testkit::schema_guard_at(&testkit::postgres_url(), &schema);
    store.migrate().await.expect("migrate");
    let [ann, _, _] = three_users(&*store).await;
    let org = store
        .create_with_owner(
            tenancy::NewOrganization {
                name: tenancy::OrgName::parse("Deadlock").expect("name"),
                slug: tenancy::OrgSlug::parse("deadlock").expect("slug"),
            },
            ann,
            10,
        )
        .await
        .expect("organization");

    // The other party: the login user (a superuser: no row-level security) in the schema.
    let raw = sea_orm::Database::connect(testkit::postgres_url())
        .await
        .expect("a raw connection");
    let txn = raw.begin().await.expect("begin");
    let run = |sql: String| Statement::from_string(sea_orm::DbBackend::Postgres, sql);
    txn.execute_raw(run(format!("SET LOCAL search_path TO \"{schema}\"")))
        .await
        .expect("search path");
    txn.execute_raw(run(format!(
        "SELECT 1 FROM memberships WHERE tenant_id = '{}' FOR UPDATE",
        org.id.as_uuid()
    )))
    .await
    .expect("lock the membership");

    let deleting = tokio::spawn({
        let store = Arc::clone(&store);
        async move { tenancy::OrganizationRepository::delete(&*store, org.id).await }
    });
    // The deletion now holds the organization row and waits for the membership.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !deleting.is_finished(),
        "the deletion waits for the membership"
    );
    txn.execute_raw(run(format!(
        "SELECT 1 FROM organizations WHERE id = '{}' FOR UPDATE",
        org.id.as_uuid()
    )))
    .await
    .expect("this side is not the deadlock's victim: the deletion, waiting longer, is");
    txn.commit().await.expect("commit");

    let deleted = deleting.await.expect("the deletion's task");
    assert!(
        matches!(deleted, Ok(true)),
        "the deletion lost the deadlock, was tried again and removed the organization: {deleted:?}"
    );
    let left = tenancy::OrganizationRepository::find_by_id(&*store, org.id)
        .await
        .expect("read");
    assert_eq!(left, None);
}
