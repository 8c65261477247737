//! The [`OrganizationRepository`] contract.

use kernel::{PageRequest, TenantId};
use tenancy::{NewOrganization, OrgName, OrgRepoError, OrgSlug, OrganizationRepository};

fn new_org(name: &str, slug: &str) -> NewOrganization {
    NewOrganization {
        name: OrgName::parse(name).expect("valid name"),
        slug: OrgSlug::parse(slug).expect("valid slug"),
    }
}

/// Runs every case against `repo`, which must hold no organizations.
pub async fn run(repo: &dyn OrganizationRepository) {
    create_and_find(repo).await;
    slugs_are_unique(repo).await;
    list_pages_in_creation_order(repo).await;
}

async fn create_and_find(repo: &dyn OrganizationRepository) {
    let created = repo
        .create(new_org("Acme Corp", "acme"))
        .await
        .expect("create");
    assert_eq!(created.name.as_str(), "Acme Corp");
    assert_eq!(created.slug.as_str(), "acme");
    assert_eq!(created.plan, "free");
    assert_eq!(created.id.as_uuid().get_version_num(), 7);

    let by_id = repo.find_by_id(created.id).await.expect("find by id");
    assert_eq!(
        by_id.as_ref(),
        Some(&created),
        "read back equals what was written"
    );
    let by_slug = repo
        .find_by_slug(&OrgSlug::parse("acme").expect("slug"))
        .await
        .expect("find by slug");
    assert_eq!(by_slug, Some(created));

    assert_eq!(
        repo.find_by_id(TenantId::new()).await.expect("unknown id"),
        None
    );
    let unknown = OrgSlug::parse("nobody-here").expect("slug");
    assert_eq!(
        repo.find_by_slug(&unknown).await.expect("unknown slug"),
        None
    );
}

async fn slugs_are_unique(repo: &dyn OrganizationRepository) {
    repo.create(new_org("First", "taken")).await.expect("first");
    match repo.create(new_org("Second", "taken")).await {
        Err(OrgRepoError::SlugTaken) => {}
        other => panic!("expected SlugTaken, got {other:?}"),
    }
}

async fn list_pages_in_creation_order(repo: &dyn OrganizationRepository) {
    for i in 0..5 {
        repo.create(new_org(&format!("Org {i}"), &format!("org-{i}")))
            .await
            .expect("create");
    }
    let mut all = Vec::new();
    let mut page = PageRequest::first(3).expect("page");
    let mut pages = 0;
    loop {
        let got = repo.list(&page).await.expect("list");
        assert!(got.items.len() <= 3);
        pages += 1;
        all.extend(got.items);
        match got.next_cursor {
            Some(cursor) => page = page.next(cursor),
            None => break,
        }
    }
    // acme, taken, org-0..org-4 = 7 organizations in 3 pages.
    assert_eq!(pages, 3);
    let slugs: Vec<&str> = all.iter().map(|o| o.slug.as_str()).collect();
    assert_eq!(
        slugs,
        ["acme", "taken", "org-0", "org-1", "org-2", "org-3", "org-4"],
        "oldest first, no duplicates, none missing"
    );
    // A cursor whose key is not an id is the client's error, not the store's.
    let bad = page.next(kernel::Cursor::after("not-an-id"));
    match repo.list(&bad).await {
        Err(OrgRepoError::Invalid(e)) => assert_eq!(e.0[0].field, "cursor"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}
