//! The filesystem adapter of the [`BlobStore`] port: original files under a root folder (the
//! data folder's `blobs/` in the embedded default), named by their [`BlobKey`]
//! (`{tenant}/{document}`), never by a client's file name.
//!
//! A write goes to `tmp/{random}` and is renamed into place on commit after an fsync, so a
//! reader never sees half a file and a crash leaves at most a temporary file (removed on
//! drop, and swept at start-up). Folders are created 0700 and files 0600 (owner only).

use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{BLOB_PART_SIZE, BlobError, BlobKey, BlobReader, BlobStore, BlobWriter};
use tokio::fs;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Temporary files older than this are leftovers of a crash.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3_600);

/// Original files on the local filesystem.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

/// Folders of the store are the owner's only.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;
/// Files of the store are the owner's only.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

impl FsBlobStore {
    /// A store under `root` (created if missing). Temporary files older than
    /// [`STALE_AFTER`] (left by a crash) are removed; younger ones may belong to an upload in
    /// another process sharing the folder.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let root = root.into();
        let tmp = root.join("tmp");
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            dirs.mode(DIR_MODE);
        }
        dirs.create(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let store = Self { root };
        store.sweep(STALE_AFTER);
        Ok(store)
    }

    /// Removes temporary files older than `age`; returns how many.
    pub fn sweep(&self, age: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed >= age);
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The path of a key; refuses anything that is not plain relative segments of
    /// `[0-9a-zA-Z-_.]` (keys are made by [`BlobKey::for_document`], but the adapter does not
    /// trust that).
    fn path(&self, key: &BlobKey) -> Result<PathBuf, BlobError> {
        let rel = Path::new(key.as_str());
        let plain = !key.as_str().is_empty()
            && key
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
            && !key.as_str().starts_with("tmp/");
        if !plain {
            return Err(BlobError::Unknown(anyhow::anyhow!(
                "refusing a malformed blob key"
            )));
        }
        Ok(self.root.join(rel))
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError> {
        let target = self.path(key)?;
        let tmp = self
            .root
            .join("tmp")
            .join(uuid::Uuid::now_v7().simple().to_string());
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(FILE_MODE);
        let file = options
            .open(&tmp)
            .await
            .with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Box::new(FsWriter {
            file: Some(file),
            tmp,
            target,
            written: 0,
        }))
    }

    async fn read(&self, key: &BlobKey) -> Result<Vec<u8>, BlobError> {
        let path = self.path(key)?;
        match fs::read(&path).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound),
            Err(e) => Err(BlobError::Unknown(
                anyhow::Error::new(e).context(format!("reading {}", path.display())),
            )),
        }
    }

    async fn open(&self, key: &BlobKey) -> Result<Box<dyn BlobReader>, BlobError> {
        let path = self.path(key)?;
        let file = match fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => {
                return Err(BlobError::Unknown(
                    anyhow::Error::new(e).context(format!("opening {}", path.display())),
                ));
            }
        };
        let size = file
            .metadata()
            .await
            .with_context(|| format!("the size of {}", path.display()))?
            .len();
        Ok(Box::new(FsBlobReader {
            file,
            size,
            read: 0,
            path,
        }))
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::Unknown(
                anyhow::Error::new(e).context(format!("removing {}", path.display())),
            )),
        }
    }

    async fn delete_tenant(&self, tenant: kernel::TenantId) -> Result<u64, BlobError> {
        let prefix = BlobKey::tenant_prefix(tenant);
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let mut removed = 0u64;
        let mut entries = match fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(BlobError::Unknown(
                    anyhow::Error::new(e).context(format!("listing {}", dir.display())),
                ));
            }
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .with_context(|| format!("listing {}", dir.display()))?
        {
            if entry.file_type().await.is_ok_and(|t| t.is_file()) {
                removed += 1;
            }
        }
        match fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(removed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(removed),
            Err(e) => Err(BlobError::Unknown(
                anyhow::Error::new(e).context(format!("removing {}", dir.display())),
            )),
        }
    }

    fn backend(&self) -> &'static str {
        "filesystem"
    }
}

/// A blob being written to a temporary file.
#[derive(Debug)]
struct FsWriter {
    file: Option<fs::File>,
    tmp: PathBuf,
    target: PathBuf,
    written: u64,
}

#[async_trait]
impl BlobWriter for FsWriter {
    async fn write(&mut self, part: &[u8]) -> Result<(), BlobError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the blob was already committed"))?;
        file.write_all(part).await.context("writing a blob")?;
        self.written += u64::try_from(part.len()).unwrap_or(u64::MAX);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| anyhow::anyhow!("the blob was already committed"))?;
        file.flush().await.context("flushing a blob")?;
        file.sync_all().await.context("syncing a blob")?;
        drop(file);
        if let Some(dir) = self.target.parent() {
            let mut dirs = fs::DirBuilder::new();
            dirs.recursive(true);
            #[cfg(unix)]
            dirs.mode(DIR_MODE);
            dirs.create(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::rename(&self.tmp, &self.target)
            .await
            .with_context(|| format!("moving a blob into {}", self.target.display()))?;
        // Committed: nothing for Drop to clean up.
        self.tmp = PathBuf::new();
        Ok(self.written)
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            // Never committed (an aborted upload): leave nothing behind.
            let _ = std::fs::remove_file(&self.tmp);
        }
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
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path()).unwrap();
        let k = key("t1/d1");
        let mut w = store.writer(&k).await.unwrap();
        w.write(b"hello ").await.unwrap();
        assert!(matches!(store.read(&k).await, Err(BlobError::NotFound)));
        w.write(b"world").await.unwrap();
        assert_eq!(w.commit().await.unwrap(), 11);
        assert_eq!(store.read(&k).await.unwrap(), b"hello world");
        store.delete(&k).await.unwrap();
        assert!(matches!(store.read(&k).await, Err(BlobError::NotFound)));
        store.delete(&k).await.unwrap();
    }

    #[tokio::test]
    async fn an_abandoned_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path()).unwrap();
        let k = key("t1/d2");
        let mut w = store.writer(&k).await.unwrap();
        w.write(b"partial").await.unwrap();
        drop(w);
        assert!(matches!(store.read(&k).await, Err(BlobError::NotFound)));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn malformed_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path()).unwrap();
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "",
            "tmp/x",
            "a b",
            "a\\b",
        ] {
            assert!(store.read(&key(bad)).await.is_err(), "{bad}");
            assert!(store.writer(&key(bad)).await.is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn only_stale_leftovers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/fresh"), b"x").unwrap();
        let store = FsBlobStore::new(dir.path()).unwrap();
        // Young files may be another process's upload in progress: kept.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            1
        );
        assert_eq!(store.sweep(std::time::Duration::ZERO), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}

/// A file read 1 MiB at a time. A file is replaced by a rename, never rewritten in place, so
/// the open handle reads the blob as it was opened even if it is replaced or removed meanwhile.
#[derive(Debug)]
struct FsBlobReader {
    file: fs::File,
    size: u64,
    read: u64,
    path: PathBuf,
}

#[async_trait]
impl BlobReader for FsBlobReader {
    fn size(&self) -> u64 {
        self.size
    }

    async fn next_part(&mut self) -> Result<Option<Vec<u8>>, BlobError> {
        let left = self.size.saturating_sub(self.read);
        if left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(BLOB_PART_SIZE);
        let mut part = vec![0_u8; want];
        self.file
            .read_exact(&mut part)
            .await
            .with_context(|| format!("reading {}", self.path.display()))?;
        self.read += want as u64;
        Ok(Some(part))
    }
}
