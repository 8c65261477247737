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
