//! The [`SessionRepository`] contract. Needs a user to exist (foreign key on SQL).

use std::sync::Arc;
use std::time::Duration;

use identity::ports::{NewRefreshToken, Rotation, SessionId, SessionRepository, TokenHash};
use kernel::{Clock as _, SystemClock, UserId};

/// A distinct hash per (token number, generation).
fn hash(n: u8, generation: u8) -> TokenHash {
    let mut h = [0u8; 32];
    h[0] = n;
    h[1] = generation;
    TokenHash(h)
}

/// Runs every case against `repo`; `user` must exist in the same store.
pub async fn run(repo: Arc<dyn SessionRepository>, user: UserId) {
    let now = SystemClock.now();
    let hour = Duration::from_secs(3600);
    let start = |h: TokenHash, session: SessionId, expires: time::OffsetDateTime| NewRefreshToken {
        hash: h,
        session,
        user_id: user,
        created_at: now,
        expires_at: expires,
    };

    // Rotation spends the presented token and keeps session, user and absolute end.
    let s1 = SessionId::new();
    repo.start(start(hash(1, 0), s1, now + hour))
        .await
        .expect("start");
    assert!(repo.is_active(s1, now).await.expect("active"));
    let r = repo
        .rotate(&hash(1, 0), hash(1, 1), now)
        .await
        .expect("rotate");
    assert_eq!(
        r,
        Rotation::Rotated {
            user_id: user,
            session: s1,
            expires_at: now + hour
        }
    );
    let r2 = repo
        .rotate(&hash(1, 1), hash(1, 2), now)
        .await
        .expect("rotate the new one");
    assert!(matches!(r2, Rotation::Rotated { .. }));

    // Replaying a spent token revokes the whole session, the newest token included.
    let replay = repo
        .rotate(&hash(1, 0), hash(1, 9), now)
        .await
        .expect("replay");
    assert_eq!(
        replay,
        Rotation::Reused {
            user_id: user,
            session: s1
        }
    );
    assert!(!repo.is_active(s1, now).await.expect("inactive"));
    assert_eq!(
        repo.rotate(&hash(1, 2), hash(1, 3), now)
            .await
            .expect("newest"),
        Rotation::Invalid,
        "the newest token died with its session"
    );

    // Unknown and expired tokens are invalid; expiry ends the session.
    assert_eq!(
        repo.rotate(&hash(2, 0), hash(2, 1), now)
            .await
            .expect("unknown"),
        Rotation::Invalid
    );
    let s3 = SessionId::new();
    repo.start(start(hash(3, 0), s3, now + Duration::from_secs(60)))
        .await
        .expect("start");
    let later = now + Duration::from_secs(61);
    assert_eq!(
        repo.rotate(&hash(3, 0), hash(3, 1), later)
            .await
            .expect("expired"),
        Rotation::Invalid
    );
    assert!(!repo.is_active(s3, later).await.expect("expired session"));

    // Logout revokes one session; revoke_all revokes every session of the user.
    let (s4, s5) = (SessionId::new(), SessionId::new());
    repo.start(start(hash(4, 0), s4, now + hour))
        .await
        .expect("start");
    repo.start(start(hash(5, 0), s5, now + hour))
        .await
        .expect("start");
    repo.revoke_by_token(&hash(4, 0), now)
        .await
        .expect("logout");
    repo.revoke_by_token(&hash(99, 0), now)
        .await
        .expect("unknown logout is fine");
    assert!(!repo.is_active(s4, now).await.expect("s4"));
    assert!(repo.is_active(s5, now).await.expect("s5 untouched"));
    repo.revoke_all(user, now).await.expect("revoke all");
    assert!(!repo.is_active(s5, now).await.expect("s5"));
    assert_eq!(
        repo.rotate(&hash(5, 0), hash(5, 1), now)
            .await
            .expect("revoked"),
        Rotation::Invalid
    );

    // revoke_others keeps exactly the named session.
    let (s7, s8) = (SessionId::new(), SessionId::new());
    repo.start(start(hash(7, 0), s7, now + hour))
        .await
        .expect("start");
    repo.start(start(hash(8, 0), s8, now + hour))
        .await
        .expect("start");
    repo.revoke_others(user, s8, now)
        .await
        .expect("revoke others");
    assert!(!repo.is_active(s7, now).await.expect("s7"));
    assert!(repo.is_active(s8, now).await.expect("s8 kept"));

    // Of N concurrent rotations of one live token, exactly one wins.
    let s6 = SessionId::new();
    repo.start(start(hash(6, 0), s6, now + hour))
        .await
        .expect("start");
    let tasks: Vec<_> = (0..10u8)
        .map(|i| {
            let repo = Arc::clone(&repo);
            tokio::spawn(async move { repo.rotate(&hash(6, 0), hash(6, i + 1), now).await })
        })
        .collect();
    let mut rotated = 0;
    let mut reused = 0;
    for t in tasks {
        match t.await.expect("task").expect("rotate") {
            Rotation::Rotated { .. } => rotated += 1,
            Rotation::Reused { .. } => reused += 1,
            Rotation::Invalid => {}
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent refresh succeeds");
    assert!(reused >= 1, "the losers are treated as replays");
    assert!(
        !repo.is_active(s6, now).await.expect("s6"),
        "a replay revokes the session"
    );
}
