//! The [`MembershipRepository`] contract (with the organization methods it relies on).

use std::sync::Arc;

use kernel::{Clock as _, PageRequest, Role, SystemClock, UserId};
use tenancy::{
    MemberRepoError, MembershipRepository, NewOrganization, OrgName, OrgSlug,
    OrganizationRepository,
};

fn org(slug: &str) -> NewOrganization {
    NewOrganization {
        name: OrgName::parse("Acme").expect("name"),
        slug: OrgSlug::parse(slug).expect("slug"),
    }
}

/// Runs every case. `users` must exist in the same store (three distinct accounts); `orgs`
/// and `members` must be the same store.
pub async fn run(
    orgs: &dyn OrganizationRepository,
    members: Arc<dyn MembershipRepository>,
    users: [UserId; 3],
) {
    let [ann, bob, cy] = users;
    let now = SystemClock.now();
    let acme = orgs
        .create_with_owner(org("acme"), ann, 10)
        .await
        .expect("create");
    assert_eq!(
        members.role_of(acme.id, ann).await.expect("role"),
        Some(Role::Owner)
    );
    assert_eq!(members.role_of(acme.id, bob).await.expect("role"), None);

    let added = members
        .add(acme.id, bob, Role::Member, now)
        .await
        .expect("add");
    assert_eq!(added.role, Role::Member);
    let again = members
        .add(acme.id, bob, Role::Admin, now)
        .await
        .expect("add twice");
    assert_eq!(
        again.role,
        Role::Member,
        "adding an existing member changes nothing"
    );

    // The last owner can be neither demoted nor removed.
    assert!(matches!(
        members.set_role(acme.id, ann, Role::Admin).await,
        Err(MemberRepoError::LastOwner)
    ));
    assert!(matches!(
        members.remove(acme.id, ann).await,
        Err(MemberRepoError::LastOwner)
    ));
    assert_eq!(
        members.role_of(acme.id, ann).await.expect("role"),
        Some(Role::Owner)
    );

    // With a second owner, one may go.
    members
        .set_role(acme.id, bob, Role::Owner)
        .await
        .expect("promote");
    members
        .set_role(acme.id, ann, Role::Viewer)
        .await
        .expect("demote");
    assert_eq!(
        members.role_of(acme.id, ann).await.expect("role"),
        Some(Role::Viewer)
    );

    // Unknown members.
    assert!(matches!(
        members.set_role(acme.id, cy, Role::Admin).await,
        Err(MemberRepoError::NotFound)
    ));
    assert!(matches!(
        members.remove(acme.id, cy).await,
        Err(MemberRepoError::NotFound)
    ));

    // Listing pages through every member of this tenant only.
    let other = orgs
        .create_with_owner(org("other-org"), cy, 10)
        .await
        .expect("other");
    let page = members
        .list(acme.id, &PageRequest::first(1).expect("page"))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    let cursor = page.next_cursor.expect("more");
    let rest = members
        .list(acme.id, &PageRequest::first(1).expect("page").next(cursor))
        .await
        .expect("list");
    // Each member with the account's email and name (the accounts are `ann`, `bob` and `cy`
    // at example.com); never another tenant's member.
    for m in page.items.iter().chain(&rest.items) {
        let who = if m.membership.user_id == ann {
            "ann"
        } else {
            "bob"
        };
        assert_eq!(m.email, format!("{who}@example.com"), "{m:?}");
        assert_eq!(m.name, who, "{m:?}");
        assert_eq!(m.membership.tenant_id, acme.id);
    }
    let others = members
        .list(other.id, &PageRequest::first(10).expect("page"))
        .await
        .expect("list");
    assert_eq!(
        others
            .items
            .iter()
            .map(|m| (m.membership.user_id, m.email.as_str()))
            .collect::<Vec<_>>(),
        vec![(cy, "cy@example.com")],
        "the other organization lists its own member only"
    );
    let mut seen = vec![
        page.items[0].membership.user_id,
        rest.items[0].membership.user_id,
    ];
    seen.sort();
    let mut expected = vec![ann, bob];
    expected.sort();
    assert_eq!(seen, expected);
    assert!(rest.next_cursor.is_none());
    assert_eq!(
        members.role_of(other.id, ann).await.expect("role"),
        None,
        "tenants are separate"
    );

    // A user's organizations, oldest membership first.
    let cys = members.for_user(cy).await.expect("for user");
    assert_eq!(cys.len(), 1);
    assert_eq!((cys[0].0.id, cys[0].1), (other.id, Role::Owner));
    members
        .add(other.id, ann, Role::Member, SystemClock.now())
        .await
        .expect("add");
    let anns: Vec<_> = members
        .for_user(ann)
        .await
        .expect("for user")
        .into_iter()
        .map(|(o, r)| (o.slug.as_str().to_owned(), r))
        .collect();
    assert_eq!(
        anns,
        [
            ("acme".to_owned(), Role::Viewer),
            ("other-org".to_owned(), Role::Member)
        ]
    );

    // Two owners demoting each other at once: exactly one succeeds.
    let duo = orgs
        .create_with_owner(org("duo-org"), ann, 10)
        .await
        .expect("duo");
    members
        .add(duo.id, bob, Role::Owner, now)
        .await
        .expect("second owner");
    let (m1, m2) = (Arc::clone(&members), Arc::clone(&members));
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { m1.set_role(duo.id, ann, Role::Member).await }),
        tokio::spawn(async move { m2.remove(duo.id, bob).await }),
    );
    let outcomes = [r1.expect("task").map(|_| ()), r2.expect("task")];
    let wins = outcomes.iter().filter(|r| r.is_ok()).count();
    let last_owner = outcomes
        .iter()
        .filter(|r| matches!(r, Err(MemberRepoError::LastOwner)))
        .count();
    assert_eq!((wins, last_owner), (1, 1), "{outcomes:?}");

    // Deleting an organization removes its memberships.
    assert!(orgs.delete(duo.id).await.expect("delete"));
    assert!(!orgs.delete(duo.id).await.expect("delete again"));
    assert_eq!(members.role_of(duo.id, ann).await.expect("role"), None);
    let renamed = orgs
        .rename(acme.id, OrgName::parse("Acme Inc").expect("name"))
        .await
        .expect("rename")
        .expect("exists");
    assert_eq!(renamed.name.as_str(), "Acme Inc");
    assert!(
        orgs.rename(duo.id, OrgName::parse("x").expect("name"))
            .await
            .expect("rename")
            .is_none()
    );

    // The cap on owned organizations holds under concurrency: cy owns one; with a cap of 3,
    // of four creations at once exactly two pass.
    let (r1, r2, r3, r4) = tokio::join!(
        orgs.create_with_owner(org("cap-one"), cy, 3),
        orgs.create_with_owner(org("cap-two"), cy, 3),
        orgs.create_with_owner(org("cap-three"), cy, 3),
        orgs.create_with_owner(org("cap-four"), cy, 3),
    );
    let outcomes = [r1, r2, r3, r4];
    let made = outcomes.iter().filter(|r| r.is_ok()).count();
    let capped = outcomes
        .iter()
        .filter(|r| matches!(r, Err(tenancy::OrgRepoError::TooManyOwned)))
        .count();
    assert_eq!((made, capped), (2, 2), "{outcomes:?}");
    // Owning is what counts: a membership of another role does not.
    assert!(matches!(
        orgs.create_with_owner(org("cap-five"), cy, 3).await,
        Err(tenancy::OrgRepoError::TooManyOwned)
    ));
    assert!(
        orgs.create_with_owner(org("ann-first"), ann, 1)
            .await
            .is_ok(),
        "ann is a member elsewhere but owns nothing"
    );
}
