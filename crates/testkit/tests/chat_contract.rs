//! The chat storage contract on every adapter: in memory, SQLite and PostgreSQL, every case
//! on a fresh store (fresh maps; its own SQLite file; its own migrated PostgreSQL schema).
//! Then what only SQL has: its rows (one per rating, exactly one owner per session) and the
//! cascade from a deleted user, through a second connection to the same database.

use chat::{MessageRole, Rating};
use kernel::Principal;
use testkit::contract::chat::{ChatPorts, message, rating, session, world};
use testkit::contract::documents::{T0, at_ms};

/// One test per case and adapter: `memory::case`, `sqlite::case` and `postgres::case`.
macro_rules! on_every_adapter {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    testkit::contract::chat::$case(&ChatPorts::in_memory()).await;
                }
            )*
        }

        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = testkit::sqlite_store().await;
                    testkit::contract::chat::$case(&ChatPorts::sql(store)).await;
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
                    testkit::contract::chat::$case(&ChatPorts::sql(store)).await;
                }
            )*
        }
    };
}

on_every_adapter!(
    sessions_round_trip,
    sessions_list_by_owner_newest_first,
    session_update,
    sessions_name_only_their_tenants_assistants,
    messages_round_trip,
    messages_page_oldest_first_and_recent,
    append_needs_the_session_and_bumps_it,
    answer_runs_checkpoint_finish_and_sweep,
    a_question_and_its_answer_start_together,
    delete_session_takes_messages_and_feedback,
    assistants_round_trip_and_pages,
    delete_assistant_detaches_sessions,
    feedback_one_per_principal,
    allowed_models_per_tenant,
    everything_is_tenant_scoped,
    organization_delete_takes_everything,
);

use testkit::SqlDb as Db;

/// A second rating by the same principal replaces the row; a session row has exactly one
/// owner; deleting a user deletes their sessions and messages.
async fn sql_rows(db: &Db) {
    let p = ChatPorts::sql(db.store.clone());
    let w = world(&p).await;
    let s = session(w.a, w.ann, "Rows", T0);
    p.chat.create_session(&s).await.expect("session");
    let m = message(&s, MessageRole::Assistant, "answer", at_ms(1));
    assert!(p.chat.append_message(&m).await.expect("append"));
    for r in [Rating::Up, Rating::Up, Rating::Down] {
        p.chat
            .put_feedback(&rating(w.a, m.id, w.ann, r, at_ms(2)))
            .await
            .expect("feedback");
    }
    p.chat
        .put_feedback(&rating(w.a, m.id, w.key, Rating::Down, at_ms(3)))
        .await
        .expect("feedback");
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM message_feedback").await,
        2,
        "one row per principal"
    );
    assert_eq!(
        db.count(
            "SELECT COUNT(*) AS n FROM message_feedback \
             WHERE rating = 'down' AND principal_key LIKE 'u:%'"
        )
        .await,
        1,
        "the user's last rating"
    );

    // Exactly one owner, whatever writes the row: copies of the session's row with the
    // owners swapped (the API key is A's, so only the CHECK can refuse two owners).
    let new_id = match db.raw.get_database_backend() {
        sea_orm::DbBackend::Postgres => "gen_random_uuid()",
        _ => "randomblob(16)",
    };
    let copy = |user: &str, key: &str| {
        format!(
            "INSERT INTO chat_sessions (id, tenant_id, owner_user_id, owner_api_key_id, title, \
             collection_ids, created_at, updated_at) \
             SELECT {new_id}, s.tenant_id, {user}, {key}, 'copy', '[]', s.created_at, s.updated_at \
             FROM chat_sessions AS s JOIN api_keys AS k ON k.tenant_id = s.tenant_id \
             WHERE s.title = 'Rows'"
        )
    };
    for (user, key) in [("NULL", "NULL"), ("s.owner_user_id", "k.id")] {
        assert!(
            db.execute(&copy(user, key)).await.is_err(),
            "owners {user} and {key} are refused"
        );
    }
    for (user, key) in [("s.owner_user_id", "NULL"), ("NULL", "k.id")] {
        db.execute(&copy(user, key))
            .await
            .unwrap_or_else(|e| panic!("owners {user} and {key} are one: {e}"));
    }
    assert_eq!(db.count("SELECT COUNT(*) AS n FROM chat_sessions").await, 3);

    // Deleting the user takes their sessions, messages and feedback; the key's stays.
    let Principal::User(ann) = w.ann else {
        panic!("Ann is a user")
    };
    p.users.delete(ann).await.expect("delete user");
    assert_eq!(p.chat.find_session(w.a, s.id).await.expect("find"), None);
    assert_eq!(p.chat.find_message(w.a, m.id).await.expect("find"), None);
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM chat_sessions WHERE owner_user_id IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM message_feedback").await,
        0
    );
    assert_eq!(
        db.count("SELECT COUNT(*) AS n FROM chat_sessions WHERE owner_api_key_id IS NOT NULL")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows() {
    sql_rows(&Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    sql_rows(&db).await;
}

/// On SQLite the chat store writes its times in the one stored form (fixed-width UTC text), so
/// they sort as time within a second too: sqlx's own form put `…:00Z` after `…:00.5Z`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_times_sort_as_time() {
    use sea_orm::ConnectionTrait as _;

    let db = Db::sqlite().await;
    let p = ChatPorts::sql(db.store.clone());
    let w = world(&p).await;
    let s = session(w.a, w.ann, "Times", T0);
    p.chat.create_session(&s).await.expect("session");
    for (content, at) in [("later", at_ms(500)), ("first", T0)] {
        let m = message(&s, MessageRole::User, content, at);
        assert!(p.chat.append_message(&m).await.expect("append"));
    }
    let rows = db
        .raw
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT content, created_at FROM chat_messages ORDER BY created_at",
        ))
        .await
        .expect("reads");
    let stored: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "content").expect("content"),
                r.try_get("", "created_at").expect("text"),
            )
        })
        .collect();
    assert_eq!(
        stored,
        [
            ("first".to_owned(), "2026-11-22T10:00:00.000000Z".to_owned()),
            ("later".to_owned(), "2026-11-22T10:00:00.500000Z".to_owned()),
        ]
    );
    assert_eq!(
        db.count(
            "SELECT COUNT(*) AS n FROM chat_sessions \
             WHERE updated_at = '2026-11-22T10:00:00.000000Z'"
        )
        .await,
        1,
        "the session's updated_at, moved by the last message, in the same form"
    );
}
