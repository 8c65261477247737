//! [`BlobStore`] in memory (domain and pipeline tests): committed blobs in a map, writes
//! buffered in their writer until `commit` puts them in the map at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use documents::{BLOB_PART_SIZE, BlobError, BlobKey, BlobReader, BlobStore, BlobWriter};

#[derive(Debug, Default)]
struct Shared {
    blobs: Mutex<BTreeMap<String, Arc<Vec<u8>>>>,
    /// Writers started and neither committed nor dropped yet.
    open: AtomicUsize,
}

impl Shared {
    fn blobs(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>> {
        // Every update is one insert or remove: a poisoned map is still consistent.
        self.blobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Original files in a map. A write is invisible until its commit, which replaces any blob of
/// the same key in one step; a writer dropped without committing leaves nothing.
#[derive(Debug, Clone, Default)]
pub struct InMemoryBlobs {
    shared: Arc<Shared>,
}

impl InMemoryBlobs {
    /// No blobs.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys of the committed blobs, in order.
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        self.shared.blobs().keys().cloned().collect()
    }

    /// Committed blobs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.blobs().len()
    }

    /// True when no blob is committed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes in progress (started, neither committed nor dropped).
    #[must_use]
    pub fn open_writers(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl BlobStore for InMemoryBlobs {
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.shared.open.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(MemWriter {
            shared: self.shared.clone(),
            key: key.as_str().to_owned(),
            buffer: Vec::new(),
        }))
    }

    async fn read(&self, key: &BlobKey) -> Result<Vec<u8>, BlobError> {
        self.shared
            .blobs()
            .get(key.as_str())
            .map(|b| b.as_ref().clone())
            .ok_or(BlobError::NotFound)
    }

    async fn open(&self, key: &BlobKey) -> Result<Box<dyn BlobReader>, BlobError> {
        let blob = self
            .shared
            .blobs()
            .get(key.as_str())
            .cloned()
            .ok_or(BlobError::NotFound)?;
        Ok(Box::new(MemoryReader { blob, at: 0 }))
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        self.shared.blobs().remove(key.as_str());
        Ok(())
    }

    async fn delete_tenant(&self, tenant: kernel::TenantId) -> Result<u64, BlobError> {
        let prefix = BlobKey::tenant_prefix(tenant);
        let mut blobs = self.shared.blobs();
        let before = blobs.len();
        blobs.retain(|k, _| !k.starts_with(&prefix));
        Ok((before - blobs.len()) as u64)
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// A blob being written: its bytes live only in the writer until `commit`.
#[derive(Debug)]
struct MemWriter {
    shared: Arc<Shared>,
    key: String,
    buffer: Vec<u8>,
}

#[async_trait]
impl BlobWriter for MemWriter {
    async fn write(&mut self, part: &[u8]) -> Result<(), BlobError> {
        self.buffer.extend_from_slice(part);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        let bytes = std::mem::take(&mut self.buffer);
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.shared
            .blobs()
            .insert(std::mem::take(&mut self.key), Arc::new(bytes));
        Ok(len)
    }
}

impl Drop for MemWriter {
    fn drop(&mut self) {
        // Committed or not, this write is over; an uncommitted buffer goes with the writer.
        self.shared.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> BlobKey {
        BlobKey::from_stored(s.to_owned())
    }

    #[tokio::test]
    async fn write_commit_read_delete() {
        let store = InMemoryBlobs::new();
        let k = key("t1/d1");
        let mut w = store.writer(&k).await.unwrap();
        assert_eq!(store.open_writers(), 1);
        w.write(b"hello ").await.unwrap();
        assert!(matches!(store.read(&k).await, Err(BlobError::NotFound)));
        w.write(b"world").await.unwrap();
        assert_eq!(w.commit().await.unwrap(), 11);
        assert_eq!(store.open_writers(), 0);
        assert_eq!(store.read(&k).await.unwrap(), b"hello world");
        assert_eq!(store.keys(), vec!["t1/d1".to_owned()]);
        store.delete(&k).await.unwrap();
        assert!(matches!(store.read(&k).await, Err(BlobError::NotFound)));
        store.delete(&k).await.unwrap();
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn an_abandoned_write_leaves_nothing() {
        let store = InMemoryBlobs::new();
        let k = key("t1/d2");
        let mut w = store.writer(&k).await.unwrap();
        w.write(b"partial").await.unwrap();
        drop(w);
        assert!(matches!(store.read(&k).await, Err(BlobError::NotFound)));
        assert!(store.is_empty());
        assert_eq!(store.open_writers(), 0);
    }

    #[tokio::test]
    async fn a_commit_replaces_at_once() {
        let store = InMemoryBlobs::new();
        let k = key("t1/d3");
        let mut first = store.writer(&k).await.unwrap();
        first.write(b"old").await.unwrap();
        first.commit().await.unwrap();
        let mut second = store.writer(&k).await.unwrap();
        second.write(b"new, longer").await.unwrap();
        assert_eq!(
            store.read(&k).await.unwrap(),
            b"old",
            "not before the commit"
        );
        second.commit().await.unwrap();
        assert_eq!(store.read(&k).await.unwrap(), b"new, longer");
        assert_eq!(store.len(), 1);
        assert_eq!(store.backend(), "memory");
    }
}

/// A committed blob read in parts (the map's copy is shared, not copied).
#[derive(Debug)]
struct MemoryReader {
    blob: Arc<Vec<u8>>,
    at: usize,
}

#[async_trait]
impl BlobReader for MemoryReader {
    fn size(&self) -> u64 {
        self.blob.len() as u64
    }

    async fn next_part(&mut self) -> Result<Option<Vec<u8>>, BlobError> {
        let end = (self.at + BLOB_PART_SIZE).min(self.blob.len());
        if self.at >= end {
            return Ok(None);
        }
        let part = self.blob[self.at..end].to_vec();
        self.at = end;
        Ok(Some(part))
    }
}
