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

/// A session is over from its end on, to the microsecond, on SQLite too: its times are
/// compared as stored text, which sqlx's own form put out of order within a second (an end at
/// `…:00Z` sorted after a `now` of `…:00.5Z`, so the session lived on for up to a second).
#[tokio::test]
async fn sqlite_sessions_end_on_time_within_a_second() {
    use identity::ports::{NewRefreshToken, SessionId, TokenHash};
    use time::macros::datetime;

    let (store, _dir) = testkit::sqlite_store().await;
    let user = a_user(&store).await;
    let end = datetime!(2026-11-22 10:00:00 UTC);
    let session = SessionId::new();
    store
        .start(NewRefreshToken {
            hash: TokenHash([7; 32]),
            session,
            user_id: user,
            created_at: end - time::Duration::hours(1),
            expires_at: end,
        })
        .await
        .expect("start");
    let microsecond = time::Duration::microseconds(1);
    assert!(
        store
            .is_active(session, end - microsecond)
            .await
            .expect("check")
    );
    for now in [
        end,
        end + microsecond,
        end + time::Duration::milliseconds(500),
    ] {
        assert!(
            !store.is_active(session, now).await.expect("check"),
            "over at {now}"
        );
    }
}
