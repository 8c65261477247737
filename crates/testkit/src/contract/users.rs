//! The [`UserRepository`] contract.

use identity::model::{DisplayName, EmailAddress, NewUser, Profile};
use identity::ports::{UserRepoError, UserRepository};
use kernel::{Clock as _, SystemClock, UserId};

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: EmailAddress::parse(email).expect("email"),
        name: DisplayName::parse("Ann Lee", "name").expect("name"),
        password_hash: Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned()),
        email_verified_at: None,
    }
}

/// Runs every case against `repo`, which must hold no users.
pub async fn run(repo: &dyn UserRepository) {
    let now = SystemClock.now();
    let ann = repo
        .create(new_user("ann@example.com"), now)
        .await
        .expect("create");
    assert_eq!(ann.email.as_str(), "ann@example.com");
    assert!(!ann.is_platform_admin && ann.disabled_at.is_none());
    assert_eq!(ann.created_at, now);

    let by_id = repo.find_by_id(ann.id).await.expect("by id");
    assert_eq!(by_id.as_ref(), Some(&ann), "read back equals written");
    let by_email = repo
        .find_by_email(&EmailAddress::parse("ANN@example.com").expect("email"))
        .await
        .expect("by email");
    assert_eq!(by_email, Some(ann.clone()), "emails are stored normalized");

    match repo.create(new_user("Ann@Example.com"), now).await {
        Err(UserRepoError::EmailTaken) => {}
        other => panic!("expected EmailTaken, got {other:?}"),
    }

    repo.set_password_hash(ann.id, "$argon2id$new")
        .await
        .expect("set hash");
    let updated = repo
        .find_by_id(ann.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(updated.password_hash.as_deref(), Some("$argon2id$new"));

    let unknown = UserId::new();
    assert_eq!(repo.find_by_id(unknown).await.expect("unknown"), None);
    let nobody = EmailAddress::parse("nobody@example.com").expect("email");
    assert_eq!(repo.find_by_email(&nobody).await.expect("unknown"), None);
    assert!(matches!(
        repo.set_password_hash(unknown, "x").await,
        Err(UserRepoError::NotFound)
    ));

    let code_user = NewUser {
        password_hash: None,
        ..new_user("code@example.com")
    };
    let c = repo.create(code_user, now).await.expect("passwordless");
    assert_eq!(c.password_hash, None);

    // The first proof of the address verifies it (once) and may remove the password.
    let eve = repo
        .create(new_user("eve@example.com"), now)
        .await
        .expect("create");
    assert!(
        eve.email_verified_at.is_none(),
        "registration does not verify"
    );
    assert!(repo.verify_email(eve.id, true, now).await.expect("verify"));
    let eve = repo
        .find_by_id(eve.id)
        .await
        .expect("read")
        .expect("exists");
    assert!(eve.email_verified_at.is_some() && eve.password_hash.is_none());
    repo.set_password_hash(eve.id, "$argon2id$owner")
        .await
        .expect("set hash");
    assert!(
        !repo.verify_email(eve.id, true, now).await.expect("again"),
        "only the first proof counts"
    );
    let eve = repo
        .find_by_id(eve.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        eve.password_hash.as_deref(),
        Some("$argon2id$owner"),
        "a later proof keeps the owner's password"
    );
    let kept = repo
        .create(new_user("kept@example.com"), now)
        .await
        .expect("create");
    assert!(
        repo.verify_email(kept.id, false, now)
            .await
            .expect("verify")
    );
    let kept = repo
        .find_by_id(kept.id)
        .await
        .expect("read")
        .expect("exists");
    assert!(
        kept.password_hash.is_some(),
        "remove_password: false keeps it"
    );
    assert!(matches!(
        repo.verify_email(unknown, false, now).await,
        Err(UserRepoError::NotFound)
    ));

    // Profile and preferences.
    assert_eq!(ann.profile, Profile::default());
    let profile = Profile {
        avatar_url: Some("https://example.com/a.png".to_owned()),
        locale: Some("fa-IR".to_owned()),
        timezone: Some("Asia/Tehran".to_owned()),
    };
    let name = DisplayName::parse("Ann B. Lee", "name").expect("name");
    let updated = repo
        .update_profile(ann.id, name.clone(), profile.clone())
        .await
        .expect("profile");
    assert_eq!(
        (updated.name.clone(), updated.profile.clone()),
        (name, profile.clone())
    );
    let read = repo
        .find_by_id(ann.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.profile, profile);
    assert_eq!(repo.preferences(ann.id).await.expect("prefs"), None);
    repo.set_preferences(ann.id, r#"{"theme":"dark"}"#)
        .await
        .expect("set prefs");
    assert_eq!(
        repo.preferences(ann.id).await.expect("prefs").as_deref(),
        Some(r#"{"theme":"dark"}"#)
    );
    assert!(matches!(
        repo.preferences(unknown).await,
        Err(UserRepoError::NotFound)
    ));

    // Deletion.
    repo.delete(c.id).await.expect("delete");
    assert_eq!(repo.find_by_id(c.id).await.expect("gone"), None);
    assert!(matches!(
        repo.delete(c.id).await,
        Err(UserRepoError::NotFound)
    ));
    assert!(
        repo.find_by_id(ann.id)
            .await
            .expect("others stay")
            .is_some()
    );
}
