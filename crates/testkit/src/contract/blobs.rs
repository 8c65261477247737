//! The [`BlobStore`] contract: a write is invisible until its commit, which makes the whole
//! file visible at once (replacing any blob of the key); an abandoned write leaves nothing
//! readable; delete is idempotent; keys of different tenants are different blobs. Every
//! check of a blob's bytes reads it whole and part by part (`open`).
//!
//! Each case takes one fresh store. The files are larger than one part of the database store
//! (1 MiB) and written in parts of odd sizes that straddle its part boundaries; their bytes
//! depend on their position, so a part lost, repeated or out of order shows.

use std::sync::Arc;

use documents::{BlobError, BlobKey, BlobStore};

/// 2.5 MiB in parts of odd sizes: the second and fourth end just before and just after a
/// 1 MiB boundary.
const PARTS: [usize; 6] = [1, 65_537, 1_048_575, 2, 1_048_577, 458_748];

/// The tenants the cases' keys name as `t1` and `t2`: a key starts with its tenant's id (the
/// database store scopes every statement to it).
pub const TENANTS: [&str; 2] = [
    "0193a000-0000-7000-8000-000000000001",
    "0193a000-0000-7000-8000-000000000002",
];

/// A key: `t1/…` and `t2/…` under the tenants of [`TENANTS`].
#[must_use]
pub fn key(s: &str) -> BlobKey {
    let stored = match s.split_once('/') {
        Some(("t1", rest)) => format!("{}/{rest}", TENANTS[0]),
        Some(("t2", rest)) => format!("{}/{rest}", TENANTS[1]),
        _ => s.to_owned(),
    };
    BlobKey::from_stored(stored)
}

/// `len` bytes that depend on `seed` and on their position (a linear congruential sequence).
#[must_use]
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state.to_be_bytes()[0]
        })
        .collect()
}

/// Writes `bytes` to `k` in parts of `sizes` (cycled), commits, and checks the count.
pub async fn put(store: &dyn BlobStore, k: &BlobKey, bytes: &[u8], sizes: &[usize]) {
    let mut writer = store.writer(k).await.expect("a writer");
    for part in split(bytes, sizes) {
        writer.write(part).await.expect("write");
    }
    let written = writer.commit().await.expect("commit");
    assert_eq!(written, bytes.len() as u64, "commit counts every byte");
}

/// `bytes` cut in parts of `sizes`, cycled.
fn split<'a>(mut bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    for size in sizes.iter().copied().cycle() {
        if bytes.is_empty() {
            break;
        }
        let (part, rest) = bytes.split_at(size.clamp(1, bytes.len()));
        parts.push(part);
        bytes = rest;
    }
    parts
}

async fn assert_missing(store: &dyn BlobStore, k: &BlobKey, when: &str) {
    match store.read(k).await {
        Err(BlobError::NotFound) => {}
        Ok(b) => panic!(
            "{when}: {} bytes are readable under {}",
            b.len(),
            k.as_str()
        ),
        Err(e) => panic!("{when}: {e:#}"),
    }
    match store.open(k).await {
        Err(BlobError::NotFound) => {}
        Ok(r) => panic!("{when}: {} bytes are open under {}", r.size(), k.as_str()),
        Err(e) => panic!("{when}: {e:#}"),
    }
}

async fn assert_holds(store: &dyn BlobStore, k: &BlobKey, expected: &[u8], when: &str) {
    let got = store
        .read(k)
        .await
        .unwrap_or_else(|e| panic!("{when}: reading {}: {e:#}", k.as_str()));
    assert!(
        got == expected,
        "{when}: {} holds {} bytes, not the {} expected (or not those bytes)",
        k.as_str(),
        got.len(),
        expected.len()
    );
    // Part by part: the size first, then parts of 1 to 1 MiB that add up to the same bytes.
    let mut reader = store
        .open(k)
        .await
        .unwrap_or_else(|e| panic!("{when}: opening {}: {e:#}", k.as_str()));
    assert_eq!(reader.size(), expected.len() as u64, "{when}: the size");
    let mut parts = Vec::new();
    while let Some(part) = reader
        .next_part()
        .await
        .unwrap_or_else(|e| panic!("{when}: a part of {}: {e:#}", k.as_str()))
    {
        assert!(
            (1..=documents::BLOB_PART_SIZE).contains(&part.len()),
            "{when}: a part of {} bytes",
            part.len()
        );
        parts.extend_from_slice(&part);
    }
    assert!(
        parts == expected,
        "{when}: {} read in parts holds {} bytes, not the {} expected (or not those bytes)",
        k.as_str(),
        parts.len(),
        expected.len()
    );
}

/// 2.5 MiB written in parts of odd sizes: nothing is readable before the commit, however
/// many parts went in; the commit counts the bytes; the read returns them, in order.
pub async fn parts_become_visible_at_commit(store: &Arc<dyn BlobStore>) {
    let k = key("t1/d1");
    let bytes = content(PARTS.iter().sum(), 1);
    assert_eq!(bytes.len(), 2_621_440);
    let mut writer = store.writer(&k).await.expect("a writer");
    assert_missing(&**store, &k, "a writer begun").await;
    let mut at = 0;
    for size in PARTS {
        writer.write(&bytes[at..at + size]).await.expect("write");
        at += size;
        assert_missing(&**store, &k, &format!("{at} bytes written, not committed")).await;
    }
    assert_eq!(writer.commit().await.expect("commit"), 2_621_440);
    assert_holds(&**store, &k, &bytes, "after the commit").await;
    assert_holds(&**store, &k, &bytes, "read again").await;
}

/// A commit replaces the blob of its key at once: before it, readers see the old file whole;
/// after it, the new one, longer or shorter, with nothing of the old left.
pub async fn a_commit_replaces_at_once(store: &Arc<dyn BlobStore>) {
    let k = key("t1/d1");
    let old = content(1_572_864, 2);
    put(&**store, &k, &old, &PARTS).await;

    let longer = content(2_621_440 + 3, 3);
    let mut writer = store.writer(&k).await.expect("a writer");
    for part in split(&longer, &PARTS) {
        writer.write(part).await.expect("write");
        assert_holds(&**store, &k, &old, "while the new file is written").await;
    }
    assert_eq!(writer.commit().await.expect("commit"), longer.len() as u64);
    assert_holds(&**store, &k, &longer, "after the longer file's commit").await;

    let shorter = content(700_000, 4);
    put(&**store, &k, &shorter, &[300_001]).await;
    assert_holds(&**store, &k, &shorter, "after the shorter file's commit").await;
}

/// A writer dropped without commit leaves nothing readable: no new blob, and an existing blob
/// of the key unchanged.
pub async fn an_abandoned_writer_leaves_nothing(store: &Arc<dyn BlobStore>) {
    let fresh = key("t1/d1");
    let mut writer = store.writer(&fresh).await.expect("a writer");
    for part in split(&content(2_621_440, 5), &PARTS) {
        writer.write(part).await.expect("write");
    }
    drop(writer);
    assert_missing(&**store, &fresh, "after an abandoned write").await;

    let existing = key("t1/d2");
    let kept = content(1_100_000, 6);
    put(&**store, &existing, &kept, &PARTS).await;
    let mut writer = store.writer(&existing).await.expect("a writer");
    writer
        .write(&content(2_000_000, 7))
        .await
        .expect("write in one part");
    drop(writer);
    assert_holds(&**store, &existing, &kept, "after an abandoned overwrite").await;

    // The key still takes a new file.
    let next = content(10, 8);
    put(&**store, &fresh, &next, &[3]).await;
    assert_holds(&**store, &fresh, &next, "after a later write").await;
}

/// Delete, then read: not found. Deleting again, or a key never written, succeeds.
pub async fn delete_is_idempotent(store: &Arc<dyn BlobStore>) {
    let k = key("t1/d1");
    put(&**store, &k, &content(2_621_440, 9), &PARTS).await;
    store.delete(&k).await.expect("delete");
    assert_missing(&**store, &k, "after delete").await;
    store.delete(&k).await.expect("delete again");
    store
        .delete(&key("t1/never"))
        .await
        .expect("delete a key never written");
    assert_missing(&**store, &k, "after deleting twice").await;

    // A key deleted takes a new file.
    let again = content(5, 10);
    put(&**store, &k, &again, &[5]).await;
    assert_holds(&**store, &k, &again, "written after delete").await;
}

/// A blob of 0 bytes is a blob: committed with no write, or with empty writes, it reads back
/// empty (not "not found"), and it replaces a larger one.
pub async fn empty_blobs_round_trip(store: &Arc<dyn BlobStore>) {
    let k = key("t1/empty");
    let writer = store.writer(&k).await.expect("a writer");
    assert_eq!(writer.commit().await.expect("commit"), 0);
    assert_holds(&**store, &k, &[], "an empty blob").await;

    let other = key("t1/d1");
    put(&**store, &other, &content(1_048_576, 11), &[1_048_576]).await;
    let mut writer = store.writer(&other).await.expect("a writer");
    writer.write(&[]).await.expect("an empty write");
    writer.write(&[]).await.expect("another");
    assert_eq!(writer.commit().await.expect("commit"), 0);
    assert_holds(&**store, &other, &[], "emptied").await;
    store.delete(&other).await.expect("delete");
    assert_missing(&**store, &other, "deleted").await;
}

/// `t1/d1` and `t2/d1` are two blobs: writing, replacing or deleting one leaves the other.
pub async fn tenant_keys_are_distinct(store: &Arc<dyn BlobStore>) {
    let (a, b) = (key("t1/d1"), key("t2/d1"));
    let (bytes_a, bytes_b) = (content(1_500_000, 12), content(1_500_000, 13));
    put(&**store, &a, &bytes_a, &PARTS).await;
    assert_missing(&**store, &b, "the other tenant's key").await;
    put(&**store, &b, &bytes_b, &PARTS).await;
    assert_holds(&**store, &a, &bytes_a, "t1 after t2's write").await;
    assert_holds(&**store, &b, &bytes_b, "t2").await;

    let replaced = content(10, 14);
    put(&**store, &b, &replaced, &[4]).await;
    assert_holds(&**store, &a, &bytes_a, "t1 after t2's overwrite").await;
    store.delete(&a).await.expect("delete t1's");
    assert_missing(&**store, &a, "t1 deleted").await;
    assert_holds(&**store, &b, &replaced, "t2 after t1's delete").await;
}

/// Four writers of one key committing at once: every commit succeeds and the key holds one
/// of the four files, whole. (Two end on a part boundary, so their commits have no last part
/// to store and race straight to the key.)
pub async fn concurrent_commits_leave_one_whole_file(store: &Arc<dyn BlobStore>) {
    let k = key("t1/d1");
    put(&**store, &k, &content(1_200_000, 15), &PARTS).await;
    let files = [
        content(1_048_576, 16),
        content(2_097_152, 17),
        content(1_572_864, 18),
        content(2_097_153, 19),
    ];
    let mut writers = Vec::new();
    for file in &files {
        let mut writer = store.writer(&k).await.expect("a writer");
        for part in split(file, &PARTS) {
            writer.write(part).await.expect("write");
        }
        writers.push(writer);
    }
    let commits: Vec<_> = writers
        .into_iter()
        .map(|writer| tokio::spawn(writer.commit()))
        .collect();
    for (commit, file) in commits.into_iter().zip(&files) {
        let written = commit
            .await
            .expect("commit task")
            .expect("a concurrent commit succeeds");
        assert_eq!(written, file.len() as u64);
    }
    let got = store.read(&k).await.expect("read");
    assert!(
        files.contains(&got),
        "{} bytes: none of the files whole",
        got.len()
    );
}

/// Erasing a tenant removes every blob of it, and only its: another tenant's blobs stay;
/// erasing again, or a tenant with no blob, succeeds with 0.
pub async fn delete_tenant_removes_only_its_blobs(store: &Arc<dyn BlobStore>) {
    let (t1, t2) = (kernel::TenantId::new(), kernel::TenantId::new());
    let a: Vec<BlobKey> = (0..3).map(|i| key(&format!("{t1}/d{i}"))).collect();
    let b = key(&format!("{t2}/d0"));
    for (i, k) in a.iter().enumerate() {
        put(&**store, k, &content(10 + i, 20), &[3]).await;
    }
    let kept = content(1_500_000, 21);
    put(&**store, &b, &kept, &PARTS).await;
    assert_eq!(store.delete_tenant(t1).await.expect("erase"), 3);
    for k in &a {
        assert_missing(&**store, k, "an erased tenant's blob").await;
    }
    assert_holds(&**store, &b, &kept, "the other tenant's blob").await;
    assert_eq!(store.delete_tenant(t1).await.expect("erase again"), 0);
    assert_eq!(
        store
            .delete_tenant(kernel::TenantId::new())
            .await
            .expect("a tenant with none"),
        0
    );
}
