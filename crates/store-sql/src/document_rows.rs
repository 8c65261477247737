//! The rows of `documents` that more than the document repository reads: the job queue reads
//! (and updates) a job's document in the transaction of its claim or completion.

use anyhow::Context as _;
use documents::{DocumentId, StoreError};
use kernel::TenantId;
use sea_orm::{ColumnTrait, DatabaseTransaction, QueryFilter};

use crate::entity::document::{Column, Entity, Model};
use crate::scope;

/// The document, read inside `txn`.
pub(crate) async fn find_in(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    id: DocumentId,
) -> Result<Option<Model>, StoreError> {
    Ok(scope::select::<Entity>(tenant)
        .filter(Column::Id.eq(id.as_uuid()))
        .one(txn)
        .await
        .context("reading a document")?)
}
