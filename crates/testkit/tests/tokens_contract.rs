//! Single-use tokens on SQL: password resets and invitations, on SQLite and PostgreSQL. Of
//! concurrent uses of one token exactly one succeeds; expired and spent tokens do nothing.

use std::sync::Arc;
use std::time::Duration;

use identity::model::{DisplayName, EmailAddress, NewUser};
use identity::ports::{PasswordResets, TokenHash, UserRepository};
use kernel::{Clock as _, Role, SystemClock};
use store_sql::SqlStore;
use tenancy::{Invitation, InvitationRepository, KeyHash, NewOrganization, OrgName, OrgSlug};

async fn resets_contract(store: SqlStore) {
    let now = SystemClock.now();
    let user = UserRepository::create(
        &store,
        NewUser {
            email: EmailAddress::parse("ann@example.com").expect("email"),
            name: DisplayName::parse("Ann", "name").expect("name"),
            password_hash: None,
            email_verified_at: None,
        },
        now,
    )
    .await
    .expect("user")
    .id;
    let store = Arc::new(store);
    let live = TokenHash([1; 32]);
    PasswordResets::create(&*store, live, user, now, now + Duration::from_secs(60))
        .await
        .expect("create");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&store);
            tokio::spawn(async move { s.consume(&live, now).await })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(u) = t.await.expect("task").expect("consume") {
            winners.push(u);
        }
    }
    assert_eq!(winners, vec![user], "exactly one concurrent consume wins");

    let expiring = TokenHash([2; 32]);
    PasswordResets::create(&*store, expiring, user, now, now + Duration::from_secs(60))
        .await
        .expect("create");
    let later = now + Duration::from_secs(61);
    assert_eq!(
        store.consume(&expiring, later).await.expect("consume"),
        None,
        "expired"
    );
    assert_eq!(
        store
            .consume(&TokenHash([3; 32]), now)
            .await
            .expect("consume"),
        None,
        "unknown"
    );
}

async fn invitations_contract(store: SqlStore) {
    let now = SystemClock.now();
    let org = tenancy::OrganizationRepository::create(
        &store,
        NewOrganization {
            name: OrgName::parse("Acme").expect("name"),
            slug: OrgSlug::parse("acme").expect("slug"),
        },
    )
    .await
    .expect("org");
    let store = Arc::new(store);
    let invitation = |expires_in: u64| Invitation {
        id: uuid::Uuid::now_v7(),
        tenant_id: org.id,
        email: "bob@example.com".to_owned(),
        role: Role::Member,
        invited_by: None,
        created_at: now,
        expires_at: now + Duration::from_secs(expires_in),
    };
    let live = KeyHash([1; 32]);
    let inv = invitation(3600);
    InvitationRepository::create(&*store, inv.clone(), live)
        .await
        .expect("create");
    assert_eq!(store.find(&live, now).await.expect("find"), Some(inv));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&store);
            tokio::spawn(async move { s.accept(&live, now).await })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        if t.await.expect("task").expect("accept") {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "exactly one concurrent accept wins");
    assert_eq!(store.find(&live, now).await.expect("find"), None, "spent");

    let short = KeyHash([2; 32]);
    InvitationRepository::create(&*store, invitation(60), short)
        .await
        .expect("create");
    let later = now + Duration::from_secs(61);
    assert_eq!(
        store.find(&short, later).await.expect("find"),
        None,
        "expired"
    );
    assert!(!store.accept(&short, later).await.expect("accept"));
}

#[tokio::test]
async fn sqlite_meets_the_contracts() {
    let (store, _dir) = testkit::sqlite_store().await;
    resets_contract(store.clone()).await;
    invitations_contract(store).await;
}

#[tokio::test]
async fn postgres_meets_the_contracts() {
    let Some((store, _guard)) = testkit::postgres_store().await else {
        return;
    };
    resets_contract(store.clone()).await;
    invitations_contract(store).await;
}
