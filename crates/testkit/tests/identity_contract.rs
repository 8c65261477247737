//! The user and session repository contracts on every adapter: in-memory, SQLite, PostgreSQL.

use std::sync::Arc;

use identity::model::{DisplayName, EmailAddress, NewUser};
use identity::ports::{SessionRepository, UserRepository};
use kernel::{Clock as _, SystemClock, UserId};
use memory::{InMemorySessions, InMemoryUsers};

async fn a_user(users: &dyn UserRepository) -> UserId {
    users
        .create(
            NewUser {
                email: EmailAddress::parse("owner@example.com").expect("email"),
                name: DisplayName::parse("Owner", "name").expect("name"),
                password_hash: None,
                email_verified_at: None,
            },
            SystemClock.now(),
        )
        .await
        .expect("a user")
        .id
}

#[tokio::test]
async fn in_memory_meets_the_contracts() {
    testkit::contract::users::run(&InMemoryUsers::new()).await;
    let users = InMemoryUsers::new();
    let user = a_user(&users).await;
    testkit::contract::sessions::run(Arc::new(InMemorySessions::new()), user).await;
}

#[tokio::test]
async fn sqlite_meets_the_contracts() {
    let (store, _dir) = testkit::sqlite_store().await;
    testkit::contract::users::run(&store).await;
    let (store, _dir) = testkit::sqlite_store().await;
    let user = a_user(&store).await;
    let sessions: Arc<dyn SessionRepository> = Arc::new(store);
    testkit::contract::sessions::run(sessions, user).await;
}

#[tokio::test]
async fn postgres_meets_the_contracts() {
    let Some((store, _guard)) = testkit::postgres_store().await else {
        return;
    };
    testkit::contract::users::run(&store).await;
    let Some((store, _guard2)) = testkit::postgres_store().await else {
        return;
    };
    let user = a_user(&store).await;
    let sessions: Arc<dyn SessionRepository> = Arc::new(store);
    testkit::contract::sessions::run(sessions, user).await;
}
