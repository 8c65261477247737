//! The [`UsageLedger`] contract: an event is stored once per id (a retry is recognised, even
//! when racing); the sums count exactly the tenant's events at or after `since` (to the
//! microsecond, whatever the offset), grouped by kind, model and actor (users, API keys and
//! background work), or by tenant, kind and model for the platform; tenants never see each
//! other's events or overrides; counts up to SQL's `BIGINT` round trip and larger ones are
//! refused, never wrapped; concurrent appends are all counted; limit overrides are set,
//! replaced and removed; an organization's deletion takes its ledger.
//!
//! Each case takes [`BillingPorts`] over one fresh store. Organizations are made through their
//! own port, since the SQL rows reference them; users and API keys are only ids (the ledger
//! has no foreign keys to them: it outlives them). Times are explicit values, never the wall
//! clock.

use super::CascadingOrganizations;
use std::sync::Arc;
use std::time::Duration;

use billing::model::{TenantUsageRow, Totals, UsageEvent, UsageRow};
use billing::ports::UsageLedger;
use kernel::{ApiKeyId, Principal, TenantId, UsageKind, UserId};
use tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository};
use time::OffsetDateTime;

use super::documents::{T0, at_ms};

/// The ports of one store, as the ledger's cases need them.
#[derive(Debug, Clone)]
pub struct BillingPorts {
    /// Organizations (the tenants must exist: foreign keys on SQL).
    pub orgs: Arc<dyn OrganizationRepository>,
    /// The ledger under test.
    pub ledger: Arc<dyn UsageLedger>,
}

impl BillingPorts {
    /// The SQL store: [`store_sql::SqlUsageLedger`] beside the store's organizations.
    #[must_use]
    pub fn sql(store: store_sql::SqlStore) -> Self {
        Self {
            ledger: Arc::new(store_sql::SqlUsageLedger::new(&store)),
            orgs: Arc::new(store),
        }
    }

    /// The in-memory adapters: [`memory::InMemoryUsageLedger`] beside in-memory
    /// organizations whose delete cascades into it, as `ON DELETE CASCADE` does on SQL.
    #[must_use]
    pub fn in_memory() -> Self {
        let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
        let ledger = Arc::new(memory::InMemoryUsageLedger::new());
        Self {
            orgs: Arc::new(CascadingOrganizations::new(
                memory::InMemoryOrganizations::new(clock),
                Box::new({
                    let ledger = ledger.clone();
                    move |id| ledger.remove_tenant(id)
                }),
            )),
            ledger,
        }
    }
}

// --- fixtures -------------------------------------------------------------------------------

/// Two organizations and the callers of the cases.
#[derive(Debug, Clone, Copy)]
pub struct World {
    /// The organization most cases work in.
    pub a: TenantId,
    /// The other organization.
    pub b: TenantId,
    /// A user.
    pub ann: Principal,
    /// Another user.
    pub bob: Principal,
    /// An API key.
    pub key: Principal,
}

/// The organization `slug`.
pub async fn organization(p: &BillingPorts, slug: &str) -> TenantId {
    p.orgs
        .create(NewOrganization {
            name: OrgName::parse(slug).expect("name"),
            slug: OrgSlug::parse(slug).expect("slug"),
        })
        .await
        .expect("organization")
        .id
}

/// Organizations `usage-a` and `usage-b`, users Ann and Bob and an API key (ids only).
pub async fn world(p: &BillingPorts) -> World {
    World {
        a: organization(p, "usage-a").await,
        b: organization(p, "usage-b").await,
        ann: Principal::User(UserId::new()),
        bob: Principal::User(UserId::new()),
        key: Principal::ApiKey(ApiKeyId::new()),
    }
}

/// A new chat call of `actor` in `tenant` on `gpt-4o`: 100 prompt tokens, 20 completion
/// tokens, 7 micro-units, at `at`.
#[must_use]
pub fn event(tenant: TenantId, actor: Option<Principal>, at: OffsetDateTime) -> UsageEvent {
    UsageEvent {
        id: uuid::Uuid::now_v7(),
        tenant,
        actor,
        model: "gpt-4o".to_owned(),
        kind: UsageKind::Chat,
        reference: format!("message:{}", uuid::Uuid::now_v7()),
        request_id: Some("req-1".to_owned()),
        prompt_tokens: 100,
        completion_tokens: 20,
        cost_micros: 7,
        bytes: 0,
        at,
    }
}

/// `e` with these counts.
#[must_use]
pub fn counted(e: UsageEvent, prompt: u64, completion: u64, cost: i64) -> UsageEvent {
    UsageEvent {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_micros: cost,
        ..e
    }
}

/// `e` as an embedding call of `model` (embeddings have no completion tokens).
#[must_use]
pub fn embedding(e: UsageEvent, model: &str) -> UsageEvent {
    UsageEvent {
        kind: UsageKind::Embedding,
        model: model.to_owned(),
        completion_tokens: 0,
        reference: format!("document:{}", uuid::Uuid::now_v7()),
        request_id: None,
        ..e
    }
}

/// Sums, literally.
#[must_use]
pub const fn sums(prompt: u64, completion: u64, cost: i64, events: u64) -> Totals {
    Totals {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_micros: cost,
        events,
        bytes: 0,
    }
}

/// A row of [`UsageLedger::totals`].
#[must_use]
pub fn row(kind: UsageKind, model: &str, actor: Option<Principal>, totals: Totals) -> UsageRow {
    UsageRow {
        kind,
        model: model.to_owned(),
        actor,
        bucket: None,
        totals,
    }
}

/// A row of [`UsageLedger::totals_by_tenant`].
#[must_use]
pub fn tenant_row(
    tenant: TenantId,
    kind: UsageKind,
    model: &str,
    totals: Totals,
) -> TenantUsageRow {
    TenantUsageRow {
        tenant,
        kind,
        model: model.to_owned(),
        totals,
    }
}

/// A caller as a sort key: users, then API keys, then none.
fn actor_key(actor: Option<Principal>) -> (u8, uuid::Uuid) {
    match actor {
        Some(Principal::User(u)) => (0, u.as_uuid()),
        Some(Principal::ApiKey(k)) => (1, k.as_uuid()),
        None => (2, uuid::Uuid::nil()),
    }
}

/// `rows` in one order (the port promises none).
fn sorted(mut rows: Vec<UsageRow>) -> Vec<UsageRow> {
    rows.sort_by(|x, y| {
        (x.kind.as_str(), &x.model, actor_key(x.actor)).cmp(&(
            y.kind.as_str(),
            &y.model,
            actor_key(y.actor),
        ))
    });
    rows
}

/// `rows` in one order (the port promises none).
fn sorted_by_tenant(mut rows: Vec<TenantUsageRow>) -> Vec<TenantUsageRow> {
    rows.sort_by(|x, y| {
        (x.tenant, x.kind.as_str(), &x.model).cmp(&(y.tenant, y.kind.as_str(), &y.model))
    });
    rows
}

/// Appends every event, each of which must be new.
async fn appended(p: &BillingPorts, events: &[UsageEvent]) {
    for e in events {
        assert!(
            p.ledger.append(e).await.expect("append"),
            "a new id is stored"
        );
    }
}

async fn totals(
    p: &BillingPorts,
    tenant: TenantId,
    since: OffsetDateTime,
    actor: Option<Principal>,
) -> Vec<UsageRow> {
    sorted(
        p.ledger
            .totals(tenant, since, actor, None)
            .await
            .expect("totals"),
    )
}

async fn tokens(p: &BillingPorts, tenant: TenantId, since: OffsetDateTime) -> u64 {
    p.ledger
        .tokens_since(tenant, since)
        .await
        .expect("tokens since")
}

// --- cases ----------------------------------------------------------------------------------

/// A second append of an id answers `false` and changes nothing, even with other values:
/// the event is counted once, as first written.
pub async fn append_is_idempotent_by_id(p: &BillingPorts) {
    let w = world(p).await;
    let first = counted(event(w.a, Some(w.ann), T0), 300, 40, 11);
    assert!(p.ledger.append(&first).await.expect("append"), "new");
    assert!(
        !p.ledger.append(&first).await.expect("append again"),
        "the same event again is recognised"
    );
    let altered = UsageEvent {
        prompt_tokens: 9_999,
        actor: Some(w.bob),
        model: "gpt-4o-mini".to_owned(),
        ..first.clone()
    };
    assert!(
        !p.ledger.append(&altered).await.expect("append altered"),
        "an id is stored once, whatever it carries"
    );
    assert_eq!(tokens(p, w.a, T0).await, 340);
    assert_eq!(
        totals(p, w.a, T0, None).await,
        vec![row(
            UsageKind::Chat,
            "gpt-4o",
            Some(w.ann),
            sums(300, 40, 11, 1)
        )],
        "counted once, as first written"
    );
    assert!(
        totals(p, w.a, T0, Some(w.bob)).await.is_empty(),
        "the altered actor was not stored"
    );
}

/// `tokens_since` sums prompt and completion tokens of the tenant's events at or after
/// `since`: the bound is inclusive, exact to the microsecond, and the same instant in
/// another offset is the same bound.
pub async fn tokens_since_counts_the_tenants_events_from_since(p: &BillingPorts) {
    let w = world(p).await;
    let micro = Duration::from_micros(1);
    assert_eq!(tokens(p, w.a, T0).await, 0, "nothing yet");
    appended(
        p,
        &[
            counted(event(w.a, Some(w.ann), T0 - micro), 1, 2, 0),
            counted(event(w.a, Some(w.key), T0), 10, 20, 0),
            counted(event(w.a, None, T0 + micro), 100, 200, 0),
            counted(event(w.a, Some(w.bob), at_ms(1_500)), 1_000, 2_000, 0),
            // Another tenant's, in the window.
            counted(event(w.b, Some(w.ann), T0 + micro), 10_000, 20_000, 0),
            // Written in another offset: 12:00:01 at +02:00 is 10:00:01 UTC.
            counted(
                event(
                    w.a,
                    Some(w.ann),
                    (at_ms(1_000)).to_offset(time::macros::offset!(+2)),
                ),
                100_000,
                0,
                0,
            ),
        ],
    )
    .await;
    assert_eq!(tokens(p, w.a, T0 - micro).await, 103_333, "everything of A");
    assert_eq!(tokens(p, w.a, T0).await, 103_330, "`since` is inclusive");
    assert_eq!(tokens(p, w.a, T0 + micro).await, 103_300);
    assert_eq!(tokens(p, w.a, at_ms(1_000)).await, 103_000);
    assert_eq!(
        tokens(p, w.a, at_ms(1_000).to_offset(time::macros::offset!(-5))).await,
        103_000,
        "the same instant in another offset"
    );
    assert_eq!(tokens(p, w.a, at_ms(1_500) + micro).await, 0, "after all");
    assert_eq!(tokens(p, w.b, T0 - micro).await, 30_000, "B's own");
    assert_eq!(tokens(p, TenantId::new(), T0 - micro).await, 0);
}

/// `totals` groups the window's events by kind, model and actor (a user, an API key, or
/// none for background work) with exact sums and counts; with an actor, only that actor's.
pub async fn totals_group_by_kind_model_and_actor(p: &BillingPorts) {
    let w = world(p).await;
    appended(
        p,
        &[
            counted(event(w.a, Some(w.ann), at_ms(1)), 100, 20, 5),
            counted(event(w.a, Some(w.ann), at_ms(2)), 300, 40, 9),
            counted(
                UsageEvent {
                    model: "gpt-4o-mini".to_owned(),
                    ..event(w.a, Some(w.ann), at_ms(3))
                },
                50,
                5,
                1,
            ),
            counted(
                embedding(event(w.a, Some(w.ann), at_ms(4)), "text-embedding-3-small"),
                70,
                0,
                2,
            ),
            counted(event(w.a, Some(w.key), at_ms(5)), 1_000, 200, 30),
            counted(
                embedding(event(w.a, Some(w.key), at_ms(6)), "text-embedding-3-small"),
                400,
                0,
                8,
            ),
            counted(
                embedding(event(w.a, None, at_ms(7)), "text-embedding-3-small"),
                5_000,
                0,
                100,
            ),
            counted(
                embedding(event(w.a, None, at_ms(8)), "text-embedding-3-small"),
                6_000,
                0,
                120,
            ),
            counted(event(w.a, Some(w.bob), at_ms(9)), 10, 1, 0),
            // Before the window.
            counted(
                event(w.a, Some(w.ann), T0 - Duration::from_secs(1)),
                77,
                7,
                7,
            ),
            // Another tenant's, by the same user.
            counted(event(w.b, Some(w.ann), at_ms(1)), 88, 8, 8),
        ],
    )
    .await;
    let embed = "text-embedding-3-small";
    let ann = vec![
        row(UsageKind::Chat, "gpt-4o", Some(w.ann), sums(400, 60, 14, 2)),
        row(
            UsageKind::Chat,
            "gpt-4o-mini",
            Some(w.ann),
            sums(50, 5, 1, 1),
        ),
        row(UsageKind::Embedding, embed, Some(w.ann), sums(70, 0, 2, 1)),
    ];
    let key = vec![
        row(
            UsageKind::Chat,
            "gpt-4o",
            Some(w.key),
            sums(1_000, 200, 30, 1),
        ),
        row(UsageKind::Embedding, embed, Some(w.key), sums(400, 0, 8, 1)),
    ];
    let bob = vec![row(
        UsageKind::Chat,
        "gpt-4o",
        Some(w.bob),
        sums(10, 1, 0, 1),
    )];
    let background = row(UsageKind::Embedding, embed, None, sums(11_000, 0, 220, 2));
    let everyone = sorted([ann.clone(), key.clone(), bob.clone(), vec![background]].concat());
    assert_eq!(totals(p, w.a, T0, None).await, everyone, "every actor");
    assert_eq!(totals(p, w.a, T0, Some(w.ann)).await, sorted(ann), "Ann's");
    assert_eq!(
        totals(p, w.a, T0, Some(w.key)).await,
        sorted(key),
        "the key's"
    );
    assert_eq!(totals(p, w.a, T0, Some(w.bob)).await, bob, "Bob's");
    assert!(
        totals(p, w.a, T0, Some(Principal::User(UserId::new())))
            .await
            .is_empty(),
        "a user without events has no rows"
    );
    assert_eq!(
        totals(p, w.a, at_ms(7), None).await,
        vec![
            row(UsageKind::Chat, "gpt-4o", Some(w.bob), sums(10, 1, 0, 1)),
            row(UsageKind::Embedding, embed, None, sums(11_000, 0, 220, 2)),
        ],
        "only the window's events"
    );
    assert!(totals(p, w.a, at_ms(10), None).await.is_empty());
}

/// Nothing of one tenant shows in another's sums or overrides, whoever the actor.
pub async fn tenants_never_see_each_others_rows(p: &BillingPorts) {
    let w = world(p).await;
    let mine = counted(event(w.a, Some(w.ann), at_ms(1)), 100, 10, 3);
    let theirs = counted(event(w.b, Some(w.ann), at_ms(1)), 200, 20, 6);
    let their_key = counted(event(w.b, Some(w.key), at_ms(2)), 400, 40, 12);
    appended(p, &[mine, theirs, their_key]).await;
    p.ledger
        .set_limit_override(w.b, Some(5_000))
        .await
        .expect("override");

    assert_eq!(tokens(p, w.a, T0).await, 110);
    assert_eq!(tokens(p, w.b, T0).await, 660);
    assert_eq!(
        totals(p, w.a, T0, None).await,
        vec![row(
            UsageKind::Chat,
            "gpt-4o",
            Some(w.ann),
            sums(100, 10, 3, 1)
        )]
    );
    assert_eq!(
        totals(p, w.a, T0, Some(w.ann)).await,
        vec![row(
            UsageKind::Chat,
            "gpt-4o",
            Some(w.ann),
            sums(100, 10, 3, 1)
        )],
        "the same user's events elsewhere are not counted here"
    );
    assert!(
        totals(p, w.a, T0, Some(w.key)).await.is_empty(),
        "B's key has nothing in A"
    );
    assert_eq!(
        totals(p, w.b, T0, None).await,
        sorted(vec![
            row(UsageKind::Chat, "gpt-4o", Some(w.ann), sums(200, 20, 6, 1)),
            row(UsageKind::Chat, "gpt-4o", Some(w.key), sums(400, 40, 12, 1)),
        ])
    );
    assert_eq!(p.ledger.limit_override(w.a).await.expect("read"), None);
    assert_eq!(
        p.ledger.limit_override(w.b).await.expect("read"),
        Some(5_000)
    );
}

/// `totals_by_tenant` sums every tenant's window by tenant, kind and model, whoever the
/// actor, with exact sums.
pub async fn totals_by_tenant_covers_every_tenant(p: &BillingPorts) {
    let w = world(p).await;
    let c = organization(p, "usage-c").await;
    let embed = "text-embedding-3-large";
    appended(
        p,
        &[
            counted(event(w.a, Some(w.ann), at_ms(1)), 100, 10, 1),
            counted(event(w.a, Some(w.key), at_ms(2)), 200, 20, 2),
            counted(event(w.a, None, at_ms(3)), 400, 40, 4),
            counted(embedding(event(w.a, None, at_ms(4)), embed), 800, 0, 8),
            counted(event(w.b, Some(w.bob), at_ms(5)), 1_000, 100, 10),
            counted(
                UsageEvent {
                    model: "gpt-4o-mini".to_owned(),
                    ..event(w.b, Some(w.bob), at_ms(6))
                },
                2_000,
                200,
                20,
            ),
            counted(embedding(event(c, None, at_ms(7)), embed), 3_000, 0, 30),
            // Before the window.
            counted(event(c, None, T0 - Duration::from_millis(1)), 9, 9, 9),
        ],
    )
    .await;
    let all = sorted_by_tenant(p.ledger.totals_by_tenant(T0).await.expect("totals"));
    assert_eq!(
        all,
        sorted_by_tenant(vec![
            tenant_row(w.a, UsageKind::Chat, "gpt-4o", sums(700, 70, 7, 3)),
            tenant_row(w.a, UsageKind::Embedding, embed, sums(800, 0, 8, 1)),
            tenant_row(w.b, UsageKind::Chat, "gpt-4o", sums(1_000, 100, 10, 1)),
            tenant_row(w.b, UsageKind::Chat, "gpt-4o-mini", sums(2_000, 200, 20, 1)),
            tenant_row(c, UsageKind::Embedding, embed, sums(3_000, 0, 30, 1)),
        ])
    );
    let later = sorted_by_tenant(p.ledger.totals_by_tenant(at_ms(6)).await.expect("totals"));
    assert_eq!(
        later,
        sorted_by_tenant(vec![
            tenant_row(w.b, UsageKind::Chat, "gpt-4o-mini", sums(2_000, 200, 20, 1)),
            tenant_row(c, UsageKind::Embedding, embed, sums(3_000, 0, 30, 1)),
        ]),
        "only the window's events"
    );
    assert!(
        p.ledger
            .totals_by_tenant(at_ms(8))
            .await
            .expect("totals")
            .is_empty()
    );
}

/// An override is absent until set, then replaced, then removed (removing twice is fine);
/// each tenant has its own; a limit past SQL's `BIGINT` is refused and changes nothing.
pub async fn limit_overrides_set_replace_remove(p: &BillingPorts) {
    let w = world(p).await;
    let read = |t: TenantId| {
        let ledger = p.ledger.clone();
        async move { ledger.limit_override(t).await.expect("read override") }
    };
    assert_eq!(read(w.a).await, None);
    p.ledger
        .set_limit_override(w.a, Some(2_000_000))
        .await
        .expect("set");
    assert_eq!(read(w.a).await, Some(2_000_000));
    p.ledger
        .set_limit_override(w.a, Some(0))
        .await
        .expect("replace");
    assert_eq!(read(w.a).await, Some(0), "replaced, and 0 is a limit");
    let huge = 1_000_000_000_000_000_u64;
    p.ledger
        .set_limit_override(w.b, Some(huge))
        .await
        .expect("set B");
    assert_eq!(read(w.b).await, Some(huge), "a large limit round trips");
    assert_eq!(read(w.a).await, Some(0), "A's is its own");
    assert!(
        p.ledger
            .set_limit_override(w.a, Some(u64::MAX))
            .await
            .is_err(),
        "past BIGINT: refused, not wrapped"
    );
    assert_eq!(read(w.a).await, Some(0), "a refused limit changes nothing");
    p.ledger
        .set_limit_override(w.a, None)
        .await
        .expect("remove");
    assert_eq!(read(w.a).await, None);
    p.ledger
        .set_limit_override(w.a, None)
        .await
        .expect("remove again");
    assert_eq!(read(w.a).await, None);
    assert_eq!(read(w.b).await, Some(huge), "B's stays");
}

/// Counts of 10^12 tokens and more sum exactly, up to `i64::MAX` (SQL's `BIGINT`); a count
/// past it and a negative cost are refused and store nothing.
pub async fn large_values_round_trip(p: &BillingPorts) {
    let w = world(p).await;
    let tera = 1_000_000_000_000_u64;
    let bigint = i64::MAX.unsigned_abs();
    appended(
        p,
        &[
            counted(
                event(w.a, Some(w.ann), at_ms(1)),
                tera,
                2 * tera,
                1_000_000_000_000_000,
            ),
            counted(
                event(w.a, Some(w.ann), at_ms(2)),
                3 * tera,
                4 * tera,
                2_000_000_000_000_000,
            ),
            counted(event(w.b, Some(w.ann), at_ms(1)), bigint, 0, i64::MAX),
        ],
    )
    .await;
    assert_eq!(tokens(p, w.a, T0).await, 10 * tera);
    assert_eq!(
        totals(p, w.a, T0, None).await,
        vec![row(
            UsageKind::Chat,
            "gpt-4o",
            Some(w.ann),
            sums(4 * tera, 6 * tera, 3_000_000_000_000_000, 2)
        )]
    );
    assert_eq!(tokens(p, w.b, T0).await, bigint, "BIGINT's largest");
    assert_eq!(
        totals(p, w.b, T0, None).await,
        vec![row(
            UsageKind::Chat,
            "gpt-4o",
            Some(w.ann),
            sums(bigint, 0, i64::MAX, 1)
        )]
    );

    let past = bigint + 1;
    for refused in [
        counted(event(w.a, None, at_ms(3)), past, 0, 0),
        counted(event(w.a, None, at_ms(3)), 0, u64::MAX, 0),
        counted(event(w.a, None, at_ms(3)), 1, 1, -1),
    ] {
        assert!(
            p.ledger.append(&refused).await.is_err(),
            "refused, not wrapped: {refused:?}"
        );
        assert!(
            p.ledger
                .append(&counted(refused.clone(), 1, 1, 0))
                .await
                .expect("append"),
            "nothing was stored under the refused event's id"
        );
    }
    assert_eq!(
        tokens(p, w.a, T0).await,
        10 * tera + 6,
        "three small events"
    );
}

/// Twenty distinct events appended at once are all counted; eight appends of one event at
/// once store it once, and exactly one of them says so.
pub async fn concurrent_appends_are_all_counted(p: &BillingPorts) {
    let w = world(p).await;
    let mut tasks = tokio::task::JoinSet::new();
    let actors = [Some(w.ann), Some(w.key), None].into_iter().cycle();
    for (i, actor) in (0..20_u64).zip(actors) {
        let ledger = p.ledger.clone();
        let e = counted(event(w.a, actor, at_ms(i)), i + 1, 2 * (i + 1), 1);
        tasks.spawn(async move { ledger.append(&e).await.expect("append") });
    }
    let fresh = tasks.join_all().await;
    assert_eq!(fresh, vec![true; 20], "every distinct event is new");
    // 1 + 2 + … + 20 = 210 prompt tokens, twice that completion.
    assert_eq!(tokens(p, w.a, T0).await, 630);
    let all = totals(p, w.a, T0, None).await;
    let mut sum = Totals::default();
    for r in &all {
        sum.add(&r.totals);
    }
    assert_eq!(sum, sums(210, 420, 20, 20));

    let once = counted(event(w.b, Some(w.bob), at_ms(1)), 5, 5, 5);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let ledger = p.ledger.clone();
        let e = once.clone();
        tasks.spawn(async move { ledger.append(&e).await.expect("append") });
    }
    let stored = tasks.join_all().await;
    assert_eq!(
        stored.iter().filter(|s| **s).count(),
        1,
        "exactly one append stored it: {stored:?}"
    );
    assert_eq!(
        totals(p, w.b, T0, None).await,
        vec![row(
            UsageKind::Chat,
            "gpt-4o",
            Some(w.bob),
            sums(5, 5, 5, 1)
        )]
    );
}

/// Deleting an organization takes its events and override (foreign keys cascade, on SQLite
/// too); another tenant keeps everything.
pub async fn organization_delete_takes_its_ledger(p: &BillingPorts) {
    let w = world(p).await;
    appended(
        p,
        &[
            counted(event(w.a, Some(w.ann), at_ms(1)), 10, 1, 1),
            counted(event(w.b, Some(w.ann), at_ms(1)), 20, 2, 2),
        ],
    )
    .await;
    for t in [w.a, w.b] {
        p.ledger
            .set_limit_override(t, Some(1_000))
            .await
            .expect("override");
    }
    assert!(p.orgs.delete(w.a).await.expect("delete organization"));
    assert_eq!(tokens(p, w.a, T0).await, 0);
    assert!(totals(p, w.a, T0, None).await.is_empty());
    assert_eq!(p.ledger.limit_override(w.a).await.expect("read"), None);
    assert_eq!(
        p.ledger.totals_by_tenant(T0).await.expect("totals"),
        vec![tenant_row(
            w.b,
            UsageKind::Chat,
            "gpt-4o",
            sums(20, 2, 2, 1)
        )],
        "only B's is left"
    );
    assert_eq!(tokens(p, w.b, T0).await, 22);
    assert_eq!(
        p.ledger.limit_override(w.b).await.expect("read"),
        Some(1_000)
    );
}

/// With a step, `totals` also splits by bucket `⌊(at − since) / step⌋`, exact to the
/// microsecond at both edges of a bucket (also from a `since` with a fraction of a second);
/// the buckets' sums add up to the unsplit totals; another tenant's events never appear.
pub async fn totals_split_by_bucket(p: &BillingPorts) {
    let w = world(p).await;
    let micro = Duration::from_micros(1);
    let hour = Duration::from_secs(3_600);
    let since = T0 + Duration::from_micros(700_123);
    appended(
        p,
        &[
            counted(event(w.a, Some(w.ann), since), 1, 1, 1),
            counted(event(w.a, Some(w.ann), since + hour - micro), 2, 2, 2),
            counted(event(w.a, Some(w.ann), since + hour), 4, 4, 4),
            counted(event(w.a, Some(w.key), since + hour + micro), 8, 8, 8),
            counted(
                event(w.a, Some(w.ann), since + hour * 3 + micro * 500_000),
                16,
                16,
                16,
            ),
            // Before the window.
            counted(event(w.a, Some(w.ann), since - micro), 32, 32, 32),
            // Another tenant's, in the same buckets.
            counted(event(w.b, Some(w.ann), since), 64, 64, 64),
            counted(event(w.b, Some(w.ann), since + hour), 64, 64, 64),
        ],
    )
    .await;
    let step = Some(time::Duration::hours(1));
    let split = |bucket: u32, actor: Principal, t: Totals| UsageRow {
        bucket: Some(bucket),
        ..row(UsageKind::Chat, "gpt-4o", Some(actor), t)
    };
    let mut expected = vec![
        split(0, w.ann, sums(3, 3, 3, 2)),
        split(1, w.ann, sums(4, 4, 4, 1)),
        split(1, w.key, sums(8, 8, 8, 1)),
        split(3, w.ann, sums(16, 16, 16, 1)),
    ];
    let mut got = p
        .ledger
        .totals(w.a, since, None, step)
        .await
        .expect("totals by bucket");
    let order = |r: &UsageRow| (r.bucket, format!("{:?}", r.actor));
    got.sort_by_key(order);
    expected.sort_by_key(order);
    assert_eq!(got, expected, "each event in its bucket, only tenant A's");
    let mut summed = Totals::default();
    for r in &got {
        summed.add(&r.totals);
    }
    let unsplit = totals(p, w.a, since, None).await;
    assert_eq!(unsplit.len(), 2, "Ann's and the key's rows");
    let mut whole = Totals::default();
    for r in &unsplit {
        whole.add(&r.totals);
    }
    assert_eq!(summed, whole, "the buckets add up to the totals");
    let key_only = p
        .ledger
        .totals(w.a, since, Some(w.key), step)
        .await
        .expect("one actor's buckets");
    assert_eq!(key_only, vec![split(1, w.key, sums(8, 8, 8, 1))]);
    let b = p
        .ledger
        .totals(w.b, since, None, step)
        .await
        .expect("tenant B's buckets");
    assert_eq!(b.len(), 2, "tenant B sees its own two buckets only");
    assert!(b.iter().all(|r| r.totals == sums(64, 64, 64, 1)));
}
