//! The [`JobQueue`](documents::JobQueue) contract: exactly-once claims under concurrency,
//! fairness across tenants, backoff, lease takeover, and the lease guard on every later write.
//!
//! Each case takes the ports of one fresh store (see [`super::documents::DocumentPorts`]);
//! every `now` is an explicit time, never the wall clock, and nothing sleeps.

use std::collections::BTreeSet;
use std::time::Duration;

use documents::{DocumentStatus, Failure, Ingested, JobStatus, Progress, Stage};
use kernel::PageRequest;

use super::documents::{DocumentPorts, T0, at_ms, document, drafts, two_tenants, upload};

const MINUTE: Duration = Duration::from_secs(60);

/// 50 jobs over three tenants, 8 claimers looping until nothing is due: every job is claimed
/// exactly once and no claimer fails.
pub async fn claims_are_exactly_once(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    let c = p
        .orgs
        .create(tenancy::NewOrganization {
            name: tenancy::OrgName::parse("tenant-c").expect("name"),
            slug: tenancy::OrgSlug::parse("tenant-c").expect("slug"),
        })
        .await
        .expect("organization")
        .id;
    let mut expected = BTreeSet::new();
    for i in 0..50_u64 {
        let tenant = [a, b, c][(i % 3) as usize];
        let d = upload(p, tenant, None, &format!("h{i}"), at_ms(i)).await;
        expected.insert(d.job_id.expect("job"));
    }
    let now = at_ms(60_000);
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let jobs = p.jobs.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(claim) = jobs.claim(now, MINUTE).await? {
                    assert_eq!(claim.job.status, JobStatus::Running);
                    assert_eq!(claim.job.attempts, 1);
                    mine.push(claim.job.id);
                }
                Ok::<_, documents::StoreError>(mine)
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(
            claimer
                .await
                .expect("claimer task")
                .expect("no claimer fails"),
        );
    }
    let unique: BTreeSet<_> = claimed.iter().copied().collect();
    assert_eq!(unique.len(), claimed.len(), "no job claimed twice");
    assert_eq!(unique, expected, "every job claimed");
    assert!(
        p.jobs.claim(now, MINUTE).await.expect("claim").is_none(),
        "all leased"
    );
}

/// Tenant A has 200 queued jobs older than tenant B's one: A's oldest goes first, but while
/// A has a job running, B's job comes next.
pub async fn claims_are_fair_across_tenants(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    for i in 0..200_u64 {
        upload(p, a, None, &format!("a{i}"), at_ms(i)).await;
    }
    let only_b = upload(p, b, None, "b", at_ms(10_000)).await;
    let now = at_ms(20_000);
    let first = p
        .jobs
        .claim(now, MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(
        first.job.tenant_id, a,
        "nobody runs anything: the oldest job"
    );
    assert_eq!(first.job.run_at, T0);
    let second = p
        .jobs
        .claim(now, MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(
        second.job.document_id,
        Some(only_b.id),
        "A has a job running, B none: B's job, despite A's older backlog"
    );
    let third = p
        .jobs
        .claim(now, MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(third.job.tenant_id, a, "B has nothing left due");
    assert_eq!(third.job.run_at, at_ms(1), "A's next oldest");

    // Once A's running jobs end, A is served in run_at order again.
    for claim in [&first, &third] {
        assert!(
            p.jobs
                .complete(
                    claim,
                    Ingested {
                        pages: None,
                        chunks: drafts(1, 1),
                        ocr_pages: 0,
                    },
                    now,
                )
                .await
                .expect("complete")
        );
    }
    let fourth = p
        .jobs
        .claim(now, MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(
        (fourth.job.tenant_id, fourth.job.run_at),
        (a, at_ms(2)),
        "B still runs one, A none: A"
    );
}

/// With nothing running (one worker finishing each job before the next claim), tenants take
/// turns: the tenant served longest ago, or never, goes first.
pub async fn claims_take_turns_between_tenants(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    for i in 0..20_u64 {
        upload(p, a, None, &format!("a{i}"), at_ms(i)).await;
    }
    let only_b = upload(p, b, None, "b", at_ms(10_000)).await;
    let mut order = Vec::new();
    for step in 0..4_u64 {
        let now = at_ms(20_000 + step);
        let claim = p
            .jobs
            .claim(now, MINUTE)
            .await
            .expect("claim")
            .expect("due");
        order.push((claim.job.tenant_id, claim.job.document_id));
        assert!(
            p.jobs
                .complete(
                    &claim,
                    Ingested {
                        pages: None,
                        chunks: drafts(1, 1),
                        ocr_pages: 0,
                    },
                    now,
                )
                .await
                .expect("complete"),
            "finished before the next claim"
        );
    }
    assert_eq!(order[0].0, a, "the oldest job first");
    assert_eq!(
        order[1],
        (b, Some(only_b.id)),
        "then B, never served, before A's backlog: {order:?}"
    );
    assert!(
        order[2..].iter().all(|(t, _)| *t == a),
        "then A again: {order:?}"
    );
}

/// A job released for an outage (`Release(t)`) waits until `t` like a retry, but its run is
/// not counted: however many outages, the next claim sees the attempts of before them, and
/// the document waits `queued` with no error.
pub async fn outages_use_no_attempt(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let d = upload(p, a, None, "waits", T0).await;
    let mut at = T0;
    for outage in 0..7_u64 {
        let claim = p.jobs.claim(at, MINUTE).await.expect("claim").expect("due");
        assert_eq!(claim.job.attempts, 1, "outage {outage} counted no attempt");
        at = at_ms(10_000 * (outage + 1));
        assert!(
            p.jobs
                .fail(
                    &claim,
                    "the cache was unavailable",
                    Failure::Release(at),
                    at
                )
                .await
                .expect("release")
        );
        assert!(
            p.jobs
                .claim(at - Duration::from_micros(1), MINUTE)
                .await
                .expect("claim")
                .is_none(),
            "not claimable before its time"
        );
        let doc = p.documents.find(a, d.id).await.expect("find").expect("doc");
        assert_eq!(doc.status, DocumentStatus::Queued);
        assert_eq!(doc.error, None);
    }
    let job = p
        .jobs
        .find(a, d.job_id.expect("job"))
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.error.as_deref(), Some("the cache was unavailable"));
}

/// A job that failed with `RetryAt(t)` is not claimable before `t`, and is at `t`.
pub async fn retries_wait_for_their_time(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let d = upload(p, a, None, "flaky", T0).await;
    assert!(
        p.jobs
            .claim(T0 - Duration::from_micros(1), MINUTE)
            .await
            .expect("claim")
            .is_none(),
        "not due before its run_at"
    );
    let first = p
        .jobs
        .claim(T0, MINUTE)
        .await
        .expect("claim")
        .expect("due at its run_at");
    assert_eq!(
        p.documents
            .find(a, d.id)
            .await
            .expect("find")
            .expect("doc")
            .status,
        DocumentStatus::Processing
    );
    // Retry at a time with a fraction of a second, then at a whole second.
    let retry = at_ms(30_500);
    assert!(
        p.jobs
            .fail(
                &first,
                "the extractor is unavailable",
                Failure::RetryAt(retry),
                at_ms(1_000),
            )
            .await
            .expect("fail")
    );
    let job = p
        .jobs
        .find(a, first.job.id)
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.run_at, retry);
    assert_eq!(job.error.as_deref(), Some("the extractor is unavailable"));
    assert_eq!(job.finished_at, None);
    let doc = p.documents.find(a, d.id).await.expect("find").expect("doc");
    assert_eq!(
        doc.status,
        DocumentStatus::Queued,
        "the document waits again"
    );
    assert_eq!(doc.error, None, "with no error to show while retrying");

    for early in [at_ms(30_000), retry - Duration::from_micros(1)] {
        assert!(
            p.jobs.claim(early, MINUTE).await.expect("claim").is_none(),
            "not claimable at {early}"
        );
    }
    assert!(
        !p.jobs
            .progress(&first, beat(Stage::Extracting, 0.1), at_ms(90_000))
            .await
            .expect("progress"),
        "the old claim's lease ended with the failure"
    );
    let second = p
        .jobs
        .claim(retry, MINUTE)
        .await
        .expect("claim")
        .expect("due at retry time");
    assert_eq!(second.job.id, first.job.id);
    assert_eq!(second.job.attempts, 2);

    let whole = at_ms(60_000);
    assert!(
        p.jobs
            .fail(&second, "again", Failure::RetryAt(whole), at_ms(31_000))
            .await
            .expect("fail")
    );
    assert!(
        p.jobs
            .claim(whole - Duration::from_micros(1), MINUTE)
            .await
            .expect("claim")
            .is_none()
    );
    let third = p
        .jobs
        .claim(whole + Duration::from_millis(250), MINUTE)
        .await
        .expect("claim")
        .expect("due a quarter second after a whole-second run_at");
    assert_eq!(third.job.attempts, 3);
    assert_eq!(
        third.job.error.as_deref(),
        Some("again"),
        "the last error is kept"
    );
}

/// A job whose lease ended is taken over; the first worker's claim then changes nothing.
pub async fn expired_leases_are_taken_over(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    let d = upload(p, a, None, "slow", T0).await;
    let lease = Duration::from_secs(30);
    let old = p.jobs.claim(T0, lease).await.expect("claim").expect("due");
    assert_eq!(old.job.attempts, 1);
    assert_eq!(old.job.stage, None);
    assert!(
        p.jobs
            .progress(&old, beat(Stage::Extracting, 0.2), T0 + lease)
            .await
            .expect("progress"),
        "a live claim heartbeats"
    );
    for during in [at_ms(10_000), T0 + lease] {
        assert!(
            p.jobs.claim(during, lease).await.expect("claim").is_none(),
            "leased until {}, not free at {during}",
            T0 + lease
        );
    }
    let new = p
        .jobs
        .claim(T0 + lease + Duration::from_secs(1), lease)
        .await
        .expect("claim")
        .expect("the expired lease is taken over");
    assert_eq!(new.job.id, old.job.id);
    assert_eq!(new.job.attempts, 2);
    assert_eq!(new.job.stage, None, "the new run starts over");
    assert_ne!(new.lease, old.lease, "a fresh lease token");

    // The first worker wakes up: nothing it writes lands.
    let later = T0 + Duration::from_secs(45);
    assert!(
        !p.jobs
            .progress(&old, beat(Stage::Chunking, 0.5), later + lease)
            .await
            .expect("progress")
    );
    assert!(
        !p.jobs
            .complete(
                &old,
                Ingested {
                    pages: None,
                    chunks: drafts(3, 1),
                    ocr_pages: 0,
                },
                later,
            )
            .await
            .expect("complete")
    );
    assert!(
        !p.jobs
            .fail(&old, "stale", Failure::Final(JobStatus::Failed), later)
            .await
            .expect("fail")
    );
    assert!(!p.jobs.cancel(&old, later).await.expect("cancel"));
    let job = p
        .jobs
        .find(a, old.job.id)
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.attempts, 2);
    assert_eq!(job.stage, None);
    assert_eq!(job.error, None);
    let doc = p.documents.find(a, d.id).await.expect("find").expect("doc");
    assert_eq!(doc.status, DocumentStatus::Processing);
    assert_eq!(doc.chunks, 0, "no chunks from the stale worker");
    assert!(
        p.documents
            .chunks(a, d.id, &PageRequest::first(10).expect("page"))
            .await
            .expect("chunks")
            .items
            .is_empty()
    );

    // The new holder's writes land, and its heartbeat keeps the job from being taken again.
    let beat_until = T0 + Duration::from_secs(120);
    assert!(
        p.jobs
            .progress(
                &new,
                Progress {
                    stage: Stage::Embedding,
                    fraction: 0.6,
                    done: 64,
                    total: 200,
                },
                beat_until,
            )
            .await
            .expect("progress")
    );
    assert!(
        p.jobs
            .claim(T0 + Duration::from_secs(100), lease)
            .await
            .expect("claim")
            .is_none(),
        "the heartbeat extended the lease"
    );
    let job = p
        .jobs
        .find(a, new.job.id)
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.stage, Some(Stage::Embedding));
    assert!((job.progress - 0.6).abs() < 1e-6);
    assert_eq!(
        (job.done, job.total),
        (64, 200),
        "the job counts its stage's units"
    );
    let doc = p.documents.find(a, d.id).await.expect("find").expect("doc");
    assert!(
        (doc.progress - 0.6).abs() < 1e-6,
        "the document shows the progress"
    );
    assert_eq!(
        (doc.stage, doc.done, doc.total),
        (Some(Stage::Embedding), 64, 200),
        "the document shows the stage and its units"
    );

    // Another tenant's document and job show nothing of it.
    let other = p.jobs.find(b, new.job.id).await.expect("find");
    assert!(other.is_none(), "another tenant does not see the job");
}

/// The stage and units of a progress are the running job's: none once it ended.
fn beat(stage: Stage, fraction: f32) -> Progress {
    Progress {
        stage,
        fraction,
        done: 0,
        total: 0,
    }
}

/// Completing stores the chunks (replacing earlier ones) and the document's totals.
pub async fn complete_replaces_chunks(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let d = upload(p, a, None, "book", T0).await;
    let claim = p
        .jobs
        .claim(at_ms(1), MINUTE)
        .await
        .expect("claim")
        .expect("due");
    let counted = Progress {
        stage: Stage::Indexing,
        fraction: 0.9,
        done: 0,
        total: 5,
    };
    assert!(
        p.jobs
            .progress(&claim, counted, at_ms(60_000))
            .await
            .expect("progress")
    );
    assert!(
        p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: Some(3),
                    chunks: drafts(5, 11),
                    ocr_pages: 0,
                },
                at_ms(2),
            )
            .await
            .expect("complete")
    );
    let doc = p.documents.find(a, d.id).await.expect("find").expect("doc");
    assert_eq!(doc.status, DocumentStatus::Ready);
    assert!((doc.progress - 1.0).abs() < f32::EPSILON);
    assert_eq!(doc.pages, Some(3));
    assert_eq!(doc.chunks, 5);
    assert_eq!(doc.tokens, 55);
    assert_eq!(doc.error, None);
    assert_eq!(doc.updated_at, at_ms(2));
    assert_eq!(
        (doc.stage, doc.done, doc.total),
        (None, 0, 0),
        "a ready document shows no stage"
    );
    let job = p
        .jobs
        .find(a, claim.job.id)
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.finished_at, Some(at_ms(2)));
    assert!((job.progress - 1.0).abs() < f32::EPSILON);
    assert_eq!((job.stage, job.done, job.total), (None, 0, 0));
    assert!(
        !p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: None,
                    chunks: drafts(1, 1),
                    ocr_pages: 0,
                },
                at_ms(3),
            )
            .await
            .expect("complete"),
        "a finished job's claim is spent"
    );

    // A reindex replaces the chunks.
    let again = documents::Job::for_document(a, documents::JobKind::Reindex, d.id, at_ms(10));
    p.documents
        .reindex(a, d.id, again)
        .await
        .expect("reindex")
        .expect("found");
    let claim = p
        .jobs
        .claim(at_ms(11), MINUTE)
        .await
        .expect("claim")
        .expect("due");
    let mut fewer = drafts(2, 4);
    fewer[1].draft.text = "the new text".into();
    assert!(
        p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: None,
                    chunks: fewer,
                    ocr_pages: 0,
                },
                at_ms(12),
            )
            .await
            .expect("complete")
    );
    let chunks = p
        .documents
        .chunks(a, d.id, &PageRequest::first(100).expect("page"))
        .await
        .expect("chunks")
        .items;
    assert_eq!(chunks.len(), 2, "the earlier chunks are gone");
    assert_eq!(chunks[1].text, "the new text");
    let doc = p.documents.find(a, d.id).await.expect("find").expect("doc");
    assert_eq!((doc.chunks, doc.tokens, doc.pages), (2, 8, None));

    // Completing with no chunks at all is allowed (an empty but readable file).
    let empty = documents::Job::for_document(a, documents::JobKind::Reindex, d.id, at_ms(20));
    p.documents
        .reindex(a, d.id, empty)
        .await
        .expect("reindex")
        .expect("found");
    let claim = p
        .jobs
        .claim(at_ms(21), MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert!(
        p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: None,
                    chunks: Vec::new(),
                    ocr_pages: 0,
                },
                at_ms(22),
            )
            .await
            .expect("complete")
    );
    let doc = p.documents.find(a, d.id).await.expect("find").expect("doc");
    assert_eq!(
        (doc.status, doc.chunks, doc.tokens),
        (DocumentStatus::Ready, 0, 0)
    );
}

/// `Final(failed | dead)` ends the job and fails the document with the error.
pub async fn final_failures_fail_the_document(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    for (hash, status) in [("bad", JobStatus::Failed), ("tired", JobStatus::Dead)] {
        let d = upload(p, a, None, hash, T0).await;
        let claim = p
            .jobs
            .claim(at_ms(1), MINUTE)
            .await
            .expect("claim")
            .expect("due");
        assert_eq!(claim.job.document_id, Some(d.id));
        assert!(
            p.jobs
                .progress(&claim, beat(Stage::Extracting, 0.3), at_ms(60_000))
                .await
                .expect("progress")
        );
        let error = format!("{hash}: the file could not be read");
        assert!(
            p.jobs
                .fail(&claim, &error, Failure::Final(status), at_ms(2))
                .await
                .expect("fail")
        );
        let doc = p.documents.find(a, d.id).await.expect("find").expect("doc");
        assert_eq!(doc.status, DocumentStatus::Failed);
        assert_eq!(doc.error.as_deref(), Some(error.as_str()));
        assert!(doc.progress.abs() < f32::EPSILON);
        let job = p
            .jobs
            .find(a, claim.job.id)
            .await
            .expect("find")
            .expect("job");
        assert_eq!(job.status, status);
        assert_eq!(job.error.as_deref(), Some(error.as_str()));
        assert_eq!(job.finished_at, Some(at_ms(2)));
        assert!(
            !p.jobs
                .progress(&claim, beat(Stage::Chunking, 0.5), at_ms(60_000))
                .await
                .expect("progress"),
            "the lease ended"
        );
    }
    assert!(
        p.jobs
            .claim(at_ms(3_600_000), MINUTE)
            .await
            .expect("claim")
            .is_none(),
        "failed and dead jobs never run again"
    );

    // Succeeded is no failure.
    let d = upload(p, a, None, "odd", at_ms(5)).await;
    let claim = p
        .jobs
        .claim(at_ms(6), MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert!(
        p.jobs
            .fail(&claim, "x", Failure::Final(JobStatus::Succeeded), at_ms(7))
            .await
            .is_err()
    );
    assert_eq!(
        p.documents
            .find(a, d.id)
            .await
            .expect("find")
            .expect("doc")
            .status,
        DocumentStatus::Processing,
        "the refused failure changed nothing"
    );
}

/// Cancelled jobs, by `cancel` or by deleting their document, are never claimed.
pub async fn cancelled_jobs_are_never_claimed(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let d1 = upload(p, a, None, "one", T0).await;
    let d2 = upload(p, a, None, "two", at_ms(1)).await;
    let claim = p
        .jobs
        .claim(at_ms(2), MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(claim.job.document_id, Some(d1.id));
    assert!(p.jobs.cancel(&claim, at_ms(3)).await.expect("cancel"));
    assert!(
        !p.jobs.cancel(&claim, at_ms(4)).await.expect("cancel"),
        "once"
    );
    let job = p
        .jobs
        .find(a, claim.job.id)
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.finished_at, Some(at_ms(3)));
    p.documents
        .delete(a, d2.id, at_ms(5))
        .await
        .expect("delete")
        .expect("found");
    // Far in the future: every lease would have ended, every backoff passed.
    assert!(
        p.jobs
            .claim(at_ms(86_400_000), MINUTE)
            .await
            .expect("claim")
            .is_none()
    );
}

/// A claim whose document was deleted meanwhile cannot complete, and stores nothing.
pub async fn deleted_document_claim_cannot_complete(p: &DocumentPorts) {
    let (a, _) = two_tenants(p).await;
    let (d, job) = document(a, None, "vanishing", T0);
    p.documents.create(d.clone(), job).await.expect("create");
    let claim = p
        .jobs
        .claim(at_ms(1), MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(
        p.documents.delete(a, d.id, at_ms(2)).await.expect("delete"),
        Some(d.blob_key.clone())
    );
    assert!(
        !p.jobs
            .complete(
                &claim,
                Ingested {
                    pages: None,
                    chunks: drafts(3, 1),
                    ocr_pages: 0,
                },
                at_ms(3),
            )
            .await
            .expect("complete")
    );
    assert!(
        !p.jobs
            .progress(&claim, beat(Stage::Indexing, 0.95), at_ms(60_000))
            .await
            .expect("progress")
    );
    assert!(
        p.documents
            .chunks(a, d.id, &PageRequest::first(10).expect("page"))
            .await
            .expect("chunks")
            .items
            .is_empty(),
        "no orphan chunks"
    );
    let job = p
        .jobs
        .find(a, claim.job.id)
        .await
        .expect("find")
        .expect("job");
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.finished_at, Some(at_ms(2)));
}

/// `claim_within` skips a tenant at its cap of running jobs, even for 8 claimers at once, and
/// serves it again when one of its jobs ends.
pub async fn claims_respect_the_cap_per_tenant(p: &DocumentPorts) {
    let (a, b) = two_tenants(p).await;
    for i in 0..10_u64 {
        upload(p, a, None, &format!("a{i}"), at_ms(i)).await;
    }
    let now = at_ms(20_000);
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let jobs = p.jobs.clone();
            tokio::spawn(async move { jobs.claim_within(now, MINUTE, 2).await })
        })
        .collect();
    let mut held = Vec::new();
    for claimer in claimers {
        if let Some(claim) = claimer.await.expect("claimer task").expect("claim") {
            held.push(claim);
        }
    }
    // PostgreSQL: a claimer that found the tenant's lock taken skipped it; never more than 2.
    assert!(
        !held.is_empty() && held.len() <= 2,
        "A runs at most 2 jobs: {}",
        held.len()
    );
    while held.len() < 2 {
        held.push(
            p.jobs
                .claim_within(now, MINUTE, 2)
                .await
                .expect("claim")
                .expect("A is under its cap"),
        );
    }
    assert!(
        p.jobs
            .claim_within(now, MINUTE, 2)
            .await
            .expect("claim")
            .is_none(),
        "A is at its cap"
    );
    let only_b = upload(p, b, None, "b", at_ms(30)).await;
    let next = p
        .jobs
        .claim_within(now, MINUTE, 2)
        .await
        .expect("claim")
        .expect("B is due");
    assert_eq!(
        next.job.document_id,
        Some(only_b.id),
        "B is served beside A"
    );
    assert!(
        p.jobs
            .complete(
                &held[0],
                Ingested {
                    pages: None,
                    chunks: drafts(1, 1),
                    ocr_pages: 0,
                },
                now,
            )
            .await
            .expect("complete")
    );
    let again = p
        .jobs
        .claim_within(now, MINUTE, 2)
        .await
        .expect("claim")
        .expect("A has room again");
    assert_eq!(again.job.tenant_id, a);
    // An expired lease does not count as running.
    let later = now + MINUTE + Duration::from_secs(1);
    let taken = p
        .jobs
        .claim_within(later, MINUTE, 2)
        .await
        .expect("claim")
        .expect("leases ended: A is under its cap");
    assert_eq!(taken.job.tenant_id, a);
}

/// `list`: the tenant's jobs only, newest first, filtered by kind, status and document, in
/// pages.
pub async fn jobs_are_listed_per_tenant_with_filters(p: &DocumentPorts) {
    use documents::{JobFilter, JobKind};
    let (a, b) = two_tenants(p).await;
    let d1 = upload(p, a, None, "one", T0).await;
    let d2 = upload(p, a, None, "two", at_ms(1)).await;
    upload(p, b, None, "theirs", at_ms(2)).await;
    let claim = p
        .jobs
        .claim(at_ms(3), MINUTE)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(claim.job.document_id, Some(d1.id));
    let all = JobFilter::default();
    let page = p
        .jobs
        .list(a, &all, &PageRequest::first(1).expect("page"))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].document_id, Some(d2.id), "newest first");
    let cursor = page.next_cursor.expect("more");
    let rest = p
        .jobs
        .list(
            a,
            &all,
            &PageRequest::parse(Some(10), Some(&cursor.encode())).expect("page"),
        )
        .await
        .expect("list");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].document_id, Some(d1.id));
    assert!(rest.next_cursor.is_none());
    let running = JobFilter {
        status: Some(JobStatus::Running),
        ..JobFilter::default()
    };
    let got = p
        .jobs
        .list(a, &running, &PageRequest::first(10).expect("page"))
        .await
        .expect("list");
    assert_eq!(got.items.len(), 1);
    assert_eq!(got.items[0].id, claim.job.id);
    let of_d2 = JobFilter {
        document_id: Some(d2.id),
        kind: Some(JobKind::Ingest),
        ..JobFilter::default()
    };
    let got = p
        .jobs
        .list(a, &of_d2, &PageRequest::first(10).expect("page"))
        .await
        .expect("list");
    assert_eq!(got.items.len(), 1);
    let reindexes = JobFilter {
        kind: Some(JobKind::Reindex),
        ..JobFilter::default()
    };
    assert!(
        p.jobs
            .list(a, &reindexes, &PageRequest::first(10).expect("page"))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    // The other tenant sees its one job, and never a's.
    let theirs = p
        .jobs
        .list(b, &all, &PageRequest::first(10).expect("page"))
        .await
        .expect("list");
    assert_eq!(theirs.items.len(), 1);
    assert!(theirs.items.iter().all(|j| j.tenant_id == b));
}
