//! [`BlobStore`] in the database: original files in `blobs` and `blob_parts`, so that servers
//! and workers that share only the database (PostgreSQL in production) share the files too.
//!
//! A writer begins an upload: a `blobs` row with a fresh `upload` id, no key (nobody can read
//! it) and `created_at` now. `write` buffers up to [`PART_SIZE`] and stores each full part as
//! a `blob_parts` row, so a large file never sits whole in memory. `commit` stores the last
//! part, then in one transaction claims its upload row (which must still be there and still
//! keyless), checks that the stored parts are exactly what was written, deletes the blob the
//! key named before (its parts go with it, ON DELETE CASCADE) and gives the upload the key.
//! A reader therefore sees the old file or the new one, whole, never a mix or a half.
//! Concurrent commits of one key take turns (SQLite: the one write lock; PostgreSQL: an
//! advisory lock on the key, taken first in the transaction): the last one wins.
//!
//! `read` is one statement (the row and its parts, streamed in order), so it reads one
//! snapshot even while the blob is replaced or deleted, and checks the parts against the
//! committed size. `delete` removes the row and, by cascade, its parts.
//!
//! A writer dropped without `commit` cannot clean up (Drop cannot wait for the database): its
//! upload stays, keyless and unreadable, until [`SqlStore::sweep_blob_parts`] removes uploads
//! older than a cutoff. The sweep and a commit exclude each other on the upload row (a row
//! lock on PostgreSQL, the one write lock on SQLite): a commit that comes after a sweep
//! removed its upload fails rather than publish a partial file, and a sweep never removes a
//! committed upload.
//!
//! Times: `created_at` is written by the one time encoder ([`at_value`]: fixed-width text
//! on SQLite), so the sweep's comparison is exact on both backends.
//!
//! Tenancy: every row and part carries the `tenant_id` of its key's prefix
//! (`BlobKey::tenant`), every statement filters by it and runs inside that tenant
//! (`crate::rls::tenant`), so on PostgreSQL row-level security refuses another tenant's file
//! whatever a key says. A key without a tenant prefix is refused. The sweeps span tenants: they
//! list the tenants that have old blobs as the platform role, which may read only
//! `blobs.tenant_id` and `created_at` (migration `m20261207_000030_blob_tenants`), then work
//! inside each tenant.

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use documents::{BlobError, BlobKey, BlobReader, BlobStore, BlobWriter};
use futures_util::TryStreamExt as _;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, Statement, Value,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::SqlStore;
use crate::entity::{blob, blob_part};
use crate::stored::{at_value, fit};

/// The largest part a writer stores in one row (and so keeps in memory): 1 MiB.
pub(crate) const PART_SIZE: usize = 1 << 20;

/// The class of the PostgreSQL advisory locks that serialize the commits of one key
/// (`"QBLB"`). Two-key advisory locks never collide with the one-key migration lock.
const COMMIT_LOCK_CLASS: i32 = 0x5142_4C42;

/// Serializes the commits of one key on PostgreSQL, until the transaction ends.
const COMMIT_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/// Abandoned uploads removed per sweep transaction.
const SWEEP_BATCH: u64 = 100;

/// A blob's row and its parts, in order, in one statement (one snapshot). No row: no blob. A
/// blob of 0 bytes has no parts: one row with a NULL `seq`.
const READ_SQL: &str = "\
SELECT b.bytes, p.seq, p.data \
FROM blobs AS b LEFT JOIN blob_parts AS p ON p.upload = b.upload AND p.tenant_id = b.tenant_id \
WHERE b.\"key\" = $1 AND b.tenant_id = $2 \
ORDER BY p.seq";

/// How many parts an upload has stored, and their total size.
const PARTS_SQL: &str = "\
SELECT COUNT(*) AS parts, COALESCE(SUM(LENGTH(data)), 0) AS bytes \
FROM blob_parts WHERE upload = $1 AND tenant_id = $2";

/// The tenant of a blob key, which every statement on it is scoped to.
fn tenant_of(key: &BlobKey) -> Result<kernel::TenantId, BlobError> {
    key.tenant()
        .ok_or_else(|| anyhow::anyhow!("a blob key without a tenant prefix").into())
}

impl SqlStore {
    /// The age after which an upload that never committed is surely abandoned: no upload
    /// takes a day (the same as the filesystem store's `blob_fs::STALE_AFTER`).
    pub const BLOB_UPLOAD_STALE_AFTER: Duration = Duration::from_secs(24 * 3_600);

    /// Removes the uploads that never committed and began before `now - older_than` (their
    /// writer was dropped: an upload cut off, a crash), with their parts. Returns how many
    /// parts it removed (an upload dropped before its first full part has none; its row goes
    /// all the same).
    ///
    /// `serve` and `quire worker` call it at start and hourly with
    /// [`SqlStore::BLOB_UPLOAD_STALE_AFTER`]. Committed blobs are never touched. An upload still running when it is swept (one older than the
    /// cutoff) fails at its next write or at its commit; nothing partial is ever readable.
    ///
    /// # Errors
    /// When the database fails, or `now - older_than` is out of range.
    pub async fn sweep_blob_parts(
        &self,
        now: OffsetDateTime,
        older_than: Duration,
    ) -> anyhow::Result<u64> {
        let backend = self.db.get_database_backend();
        let cutoff = at_value(backend, cutoff(now, older_than)?);
        let mut removed = 0;
        for tenant in self.blob_tenants(cutoff.clone()).await? {
            removed +=
                crate::rls::tenant(tenant, self.sweep_uploads_of(tenant, cutoff.clone())).await?;
        }
        Ok(removed)
    }

    /// The tenants that have blobs or uploads created before `cutoff`, read as the platform
    /// role (which sees only `blobs.tenant_id` and `created_at`).
    async fn blob_tenants(&self, cutoff: Value) -> anyhow::Result<Vec<kernel::TenantId>> {
        let tenants: Vec<Uuid> = crate::rls::platform(
            blob::Entity::find()
                .select_only()
                .column(blob::Column::TenantId)
                .distinct()
                .filter(blob::Column::TenantId.is_not_null())
                .filter(blob::Column::CreatedAt.lt(cutoff))
                .into_tuple::<Option<Uuid>>()
                .all(&self.db),
        )
        .await
        .context("listing the tenants of old blobs")?
        .into_iter()
        .flatten()
        .collect();
        Ok(tenants
            .into_iter()
            .map(kernel::TenantId::from_uuid)
            .collect())
    }

    /// [`SqlStore::sweep_blob_parts`] within one tenant (inside its scope).
    async fn sweep_uploads_of(
        &self,
        tenant: kernel::TenantId,
        cutoff: Value,
    ) -> anyhow::Result<u64> {
        let backend = self.db.get_database_backend();
        let mut removed = 0;
        loop {
            let txn = self.begin_write().await.context("starting a blob sweep")?;
            let mut abandoned = blob::Entity::find()
                .select_only()
                .column(blob::Column::Upload)
                .filter(blob::Column::TenantId.eq(tenant.as_uuid()))
                .filter(blob::Column::Key.is_null())
                .filter(blob::Column::CreatedAt.lt(cutoff.clone()))
                .order_by_asc(blob::Column::CreatedAt)
                .limit(SWEEP_BATCH);
            if backend == DbBackend::Postgres {
                // A commit in flight holds its row: wait for it, then see it has a key.
                abandoned = abandoned.lock_exclusive();
            }
            let uploads: Vec<Uuid> = abandoned
                .into_tuple()
                .all(&txn)
                .await
                .context("finding abandoned uploads")?;
            if uploads.is_empty() {
                txn.rollback().await.context("ending a blob sweep")?;
                return Ok(removed);
            }
            let parts = blob_part::Entity::delete_many()
                .filter(blob_part::Column::TenantId.eq(tenant.as_uuid()))
                .filter(blob_part::Column::Upload.is_in(uploads.iter().copied()))
                .exec(&txn)
                .await
                .context("removing abandoned parts")?
                .rows_affected;
            blob::Entity::delete_many()
                .filter(blob::Column::TenantId.eq(tenant.as_uuid()))
                .filter(blob::Column::Upload.is_in(uploads.iter().copied()))
                .filter(blob::Column::Key.is_null())
                .exec(&txn)
                .await
                .context("removing abandoned uploads")?;
            txn.commit().await.context("committing a blob sweep")?;
            removed += parts;
        }
    }

    /// Removes committed blobs older than `now - older_than` that no document names any more:
    /// those of an organization that was deleted (its rows go by cascade, its files stay
    /// behind), or of a delete whose blob removal failed. Export archives
    /// (`documents::BlobKey::for_export`) are named by no document and are kept: their
    /// expiry is their own. Returns how many. The age keeps it
    /// off the moment between an upload's commit and its document's insert.
    ///
    /// # Errors
    /// When the database fails, or `now - older_than` is out of range.
    pub async fn sweep_orphan_blobs(
        &self,
        now: OffsetDateTime,
        older_than: Duration,
    ) -> anyhow::Result<u64> {
        const ORPHANS: &str = "DELETE FROM blobs WHERE tenant_id = $1 AND key IS NOT NULL \
             AND created_at < $2 AND key NOT LIKE $3 \
             AND NOT EXISTS (SELECT 1 FROM documents AS d \
                             WHERE d.tenant_id = blobs.tenant_id AND d.blob_key = blobs.key)";
        let backend = self.db.get_database_backend();
        let cutoff = at_value(backend, cutoff(now, older_than)?);
        // Export archives have no document and are kept (their own expiry removes them).
        let exports: sea_orm::Value = format!("%/{}%", documents::EXPORT_PREFIX).into();
        // Under row-level security a connection sees the documents of its tenant only, and a
        // blob whose document it cannot see would look orphaned: the sweep goes tenant by
        // tenant, each in its tenant. Parts go with their row (foreign key, on delete cascade).
        let mut removed = 0;
        for tenant in self.blob_tenants(cutoff.clone()).await? {
            let statement = sea_orm::Statement::from_sql_and_values(
                backend,
                ORPHANS,
                [tenant.as_uuid().into(), cutoff.clone(), exports.clone()],
            );
            removed += crate::rls::tenant(tenant, self.db.execute_raw(statement))
                .await
                .context("removing orphan blobs")?
                .rows_affected();
        }
        Ok(removed)
    }
}

/// `now - older_than`, the time before which a sweep removes.
fn cutoff(now: OffsetDateTime, older_than: Duration) -> anyhow::Result<OffsetDateTime> {
    time::Duration::try_from(older_than)
        .ok()
        .and_then(|age| now.checked_sub(age))
        .context("the sweep's cutoff is out of range")
}

#[async_trait]
impl BlobStore for SqlStore {
    async fn writer(&self, key: &BlobKey) -> Result<Box<dyn BlobWriter>, BlobError> {
        let tenant = tenant_of(key)?;
        let upload = Uuid::now_v7();
        let values: [Value; 5] = [
            upload.into(),
            tenant.as_uuid().into(),
            Option::<String>::None.into(),
            Option::<i64>::None.into(),
            at_value(self.db.get_database_backend(), self.now()),
        ];
        let insert = Query::insert()
            .into_table(blob::Entity)
            .columns([
                blob::Column::Upload,
                blob::Column::TenantId,
                blob::Column::Key,
                blob::Column::Bytes,
                blob::Column::CreatedAt,
            ])
            .values(values.map(Expr::value))
            .context("building a blob upload")?
            .to_owned();
        crate::rls::tenant(tenant, self.db.execute(&insert))
            .await
            .context("starting a blob upload")?;
        Ok(Box::new(SqlBlobWriter {
            store: self.clone(),
            tenant,
            key: key.as_str().to_owned(),
            upload,
            buffer: Vec::new(),
            parts: 0,
            written: 0,
            failed: false,
        }))
    }

    async fn read(&self, key: &BlobKey) -> Result<Vec<u8>, BlobError> {
        let tenant = tenant_of(key)?;
        crate::rls::tenant(tenant, self.read_in(tenant, key)).await
    }

    async fn open(&self, key: &BlobKey) -> Result<Box<dyn BlobReader>, BlobError> {
        let tenant = tenant_of(key)?;
        let row = crate::rls::tenant(
            tenant,
            blob::Entity::find()
                .filter(blob::Column::TenantId.eq(tenant.as_uuid()))
                .filter(blob::Column::Key.eq(key.as_str()))
                .one(&self.db),
        )
        .await
        .context("opening a blob")?
        .ok_or(BlobError::NotFound)?;
        let size: u64 = fit(row.bytes.context("a blob row without a size")?, "blob size")?;
        Ok(Box::new(SqlBlobReader {
            db: self.db.clone(),
            tenant,
            upload: row.upload,
            size,
            read: 0,
            seq: 0,
        }))
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let tenant = tenant_of(key)?;
        // Its parts go with it (ON DELETE CASCADE).
        crate::rls::tenant(
            tenant,
            blob::Entity::delete_many()
                .filter(blob::Column::TenantId.eq(tenant.as_uuid()))
                .filter(blob::Column::Key.eq(key.as_str()))
                .exec(&self.db),
        )
        .await
        .context("deleting a blob")?;
        Ok(())
    }

    async fn delete_tenant(&self, tenant: kernel::TenantId) -> Result<u64, BlobError> {
        // Committed blobs and uploads in progress alike; their parts go with them.
        let removed = crate::rls::tenant(
            tenant,
            blob::Entity::delete_many()
                .filter(blob::Column::TenantId.eq(tenant.as_uuid()))
                .exec(&self.db),
        )
        .await
        .context("deleting an organization's blobs")?
        .rows_affected;
        Ok(removed)
    }

    fn backend(&self) -> &'static str {
        "database"
    }
}

impl SqlStore {
    /// [`BlobStore::read`] inside `tenant`'s scope.
    async fn read_in(&self, tenant: kernel::TenantId, key: &BlobKey) -> Result<Vec<u8>, BlobError> {
        use sea_orm::StreamTrait as _;
        let statement = Statement::from_sql_and_values(
            self.db.get_database_backend(),
            READ_SQL,
            [Value::from(key.as_str()), tenant.as_uuid().into()],
        );
        let mut rows = self
            .db
            .stream_raw(statement)
            .await
            .context("reading a blob")?;
        let mut blob: Option<(u64, Vec<u8>)> = None;
        let mut next_seq = 0_i32;
        while let Some(row) = rows.try_next().await.context("reading a blob")? {
            let (size, out) = match &mut blob {
                Some(read) => read,
                None => {
                    let size: Option<i64> = row.try_get("", "bytes").context("a blob's size")?;
                    let size: u64 = fit(size.context("a blob row without a size")?, "blob size")?;
                    let capacity = usize::try_from(size).context("a blob too large to read")?;
                    blob.insert((size, Vec::with_capacity(capacity)))
                }
            };
            let seq: Option<i32> = row.try_get("", "seq").context("a blob part's number")?;
            let Some(seq) = seq else {
                // No parts: a blob of 0 bytes.
                continue;
            };
            if seq != next_seq {
                return Err(anyhow::anyhow!("blob part {next_seq} is missing").into());
            }
            next_seq += 1;
            let data: Vec<u8> = row.try_get("", "data").context("a blob part")?;
            out.extend_from_slice(&data);
            if u64::try_from(out.len()).unwrap_or(u64::MAX) > *size {
                return Err(anyhow::anyhow!("a blob's parts exceed its size").into());
            }
        }
        let Some((size, out)) = blob else {
            return Err(BlobError::NotFound);
        };
        if u64::try_from(out.len()).unwrap_or(u64::MAX) != size {
            return Err(anyhow::anyhow!(
                "a blob's parts hold {} bytes, not the {size} it was committed with",
                out.len()
            )
            .into());
        }
        Ok(out)
    }
}

/// One upload being written: at most one part in memory, the full ones in `blob_parts`.
struct SqlBlobWriter {
    store: SqlStore,
    tenant: kernel::TenantId,
    key: String,
    upload: Uuid,
    /// Bytes not stored yet (less than a part).
    buffer: Vec<u8>,
    /// Parts stored.
    parts: i32,
    /// Bytes written in all.
    written: u64,
    /// A part failed to store: the upload is incomplete for good.
    failed: bool,
}

impl std::fmt::Debug for SqlBlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBlobWriter")
            .field("tenant", &self.tenant)
            .field("key", &self.key)
            .field("upload", &self.upload)
            .field("buffered", &self.buffer.len())
            .field("parts", &self.parts)
            .field("written", &self.written)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl SqlBlobWriter {
    fn usable(&self) -> Result<(), BlobError> {
        if self.failed {
            return Err(anyhow::anyhow!("an earlier write of this blob failed").into());
        }
        Ok(())
    }

    /// Stores the buffer as the next part.
    async fn flush(&mut self) -> Result<(), BlobError> {
        let part = blob_part::ActiveModel {
            upload: Set(self.upload),
            seq: Set(self.parts),
            tenant_id: Set(Some(self.tenant.as_uuid())),
            data: Set(std::mem::take(&mut self.buffer)),
        };
        let stored = crate::rls::tenant(
            self.tenant,
            blob_part::Entity::insert(part).exec_without_returning(&self.store.db),
        )
        .await;
        if let Err(e) = stored {
            self.failed = true;
            return Err(anyhow::Error::new(e)
                .context("storing a part of a blob (was the upload swept?)")
                .into());
        }
        self.parts = self.parts.checked_add(1).context("too many blob parts")?;
        Ok(())
    }

    /// The commit's transaction (see the module documentation). On PostgreSQL it first takes
    /// the key's lock, so that concurrent commits of one key take turns (the later one
    /// replaces the earlier) instead of colliding on `ux_blobs_key`; the lock comes before
    /// the upload's row, so a commit never holds its row while it waits.
    async fn publish(&self, bytes: i64) -> anyhow::Result<()> {
        crate::rls::tenant(self.tenant, self.publish_in(bytes)).await
    }

    /// [`SqlBlobWriter::publish`] inside the tenant's scope.
    async fn publish_in(&self, bytes: i64) -> anyhow::Result<()> {
        let tenant = self.tenant.as_uuid();
        let txn = self
            .store
            .begin_write()
            .await
            .context("starting a blob commit")?;
        let backend = txn.get_database_backend();
        if backend == DbBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                COMMIT_LOCK_SQL,
                [
                    Value::from(COMMIT_LOCK_CLASS),
                    Value::from(self.key.as_str()),
                ],
            ))
            .await
            .context("locking a blob's key")?;
        }
        let claimed = blob::Entity::update_many()
            .col_expr(blob::Column::Bytes, Expr::value(bytes))
            .filter(blob::Column::TenantId.eq(tenant))
            .filter(blob::Column::Upload.eq(self.upload))
            .filter(blob::Column::Key.is_null())
            .exec(&txn)
            .await
            .context("claiming a blob upload")?
            .rows_affected;
        if claimed != 1 {
            anyhow::bail!("the blob upload is gone (it was abandoned too long and swept)");
        }
        let stored = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                PARTS_SQL,
                [Value::from(self.upload), tenant.into()],
            ))
            .await
            .context("counting a blob's parts")?
            .context("counting a blob's parts: no answer")?;
        let parts: i64 = stored
            .try_get("", "parts")
            .context("counting a blob's parts")?;
        let stored_bytes: i64 = stored
            .try_get("", "bytes")
            .context("measuring a blob's parts")?;
        if parts != i64::from(self.parts) || stored_bytes != bytes {
            anyhow::bail!(
                "a blob's stored parts ({parts} parts, {stored_bytes} bytes) are not what was \
                 written ({} parts, {bytes} bytes)",
                self.parts
            );
        }
        // The blob the key named before, if any, goes with its parts.
        blob::Entity::delete_many()
            .filter(blob::Column::TenantId.eq(tenant))
            .filter(blob::Column::Key.eq(self.key.as_str()))
            .exec(&txn)
            .await
            .context("replacing a blob")?;
        blob::Entity::update_many()
            .col_expr(blob::Column::Key, Expr::value(self.key.as_str()))
            .filter(blob::Column::TenantId.eq(tenant))
            .filter(blob::Column::Upload.eq(self.upload))
            .exec(&txn)
            .await
            .context("naming a blob")?;
        txn.commit().await.context("committing a blob")
    }

    /// Best effort, after a failed commit: remove the upload now rather than at the next
    /// sweep. Only while it has no key, so a committed blob is never touched.
    async fn discard(&self) {
        let removed = crate::rls::tenant(
            self.tenant,
            blob::Entity::delete_many()
                .filter(blob::Column::TenantId.eq(self.tenant.as_uuid()))
                .filter(blob::Column::Upload.eq(self.upload))
                .filter(blob::Column::Key.is_null())
                .exec(&self.store.db),
        )
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, upload = %self.upload, "a failed upload awaits the sweep");
        }
    }
}

#[async_trait]
impl BlobWriter for SqlBlobWriter {
    async fn write(&mut self, mut part: &[u8]) -> Result<(), BlobError> {
        self.usable()?;
        while !part.is_empty() {
            let take = (PART_SIZE - self.buffer.len()).min(part.len());
            let (now, rest) = part.split_at(take);
            self.buffer.extend_from_slice(now);
            self.written += u64::try_from(take).context("a part too large")?;
            part = rest;
            if self.buffer.len() == PART_SIZE {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        let mut done = self.usable();
        if done.is_ok() && !self.buffer.is_empty() {
            done = self.flush().await;
        }
        if done.is_ok() {
            done = match fit::<u64, i64>(self.written, "blob size") {
                Ok(bytes) => self.publish(bytes).await.map_err(BlobError::from),
                Err(e) => Err(e.into()),
            };
        }
        match done {
            Ok(()) => Ok(self.written),
            Err(e) => {
                self.discard().await;
                Err(e)
            }
        }
    }
}

/// A committed blob read one `blob_parts` row at a time (an upload's parts never change once
/// committed; a blob deleted meanwhile ends the read with an error).
struct SqlBlobReader {
    db: sea_orm::DatabaseConnection,
    tenant: kernel::TenantId,
    upload: Uuid,
    size: u64,
    read: u64,
    seq: i32,
}

impl std::fmt::Debug for SqlBlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlBlobReader")
            .field("upload", &self.upload)
            .field("size", &self.size)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl BlobReader for SqlBlobReader {
    fn size(&self) -> u64 {
        self.size
    }

    async fn next_part(&mut self) -> Result<Option<Vec<u8>>, BlobError> {
        if self.read >= self.size {
            return Ok(None);
        }
        let part = crate::rls::tenant(
            self.tenant,
            blob_part::Entity::find_by_id((self.upload, self.seq))
                .filter(blob_part::Column::TenantId.eq(self.tenant.as_uuid()))
                .one(&self.db),
        )
        .await
        .context("reading a blob part")?
        .with_context(|| format!("blob part {} is missing (was the blob deleted?)", self.seq))?;
        self.seq += 1;
        self.read += part.data.len() as u64;
        if part.data.is_empty() || self.read > self.size {
            return Err(anyhow::anyhow!("a blob's parts do not add up to its size").into());
        }
        Ok(Some(part.data))
    }
}
