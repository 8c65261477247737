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
    let store = Arc::new(InMemoryOrganizations::new(Arc::new(SystemClock)));
    let users = [UserId::new(), UserId::new(), UserId::new()];
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
