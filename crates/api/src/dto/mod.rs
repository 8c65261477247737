//! Wire types more than one route module speaks: pages of lists, usage and plans, answers'
//! citations and tokens, embeddings.

pub(crate) mod answers;
pub(crate) mod audit;
pub(crate) mod chunking;
pub(crate) mod embeddings;
pub(crate) mod usage;

use kernel::Page;
use serde::Serialize;
use utoipa::ToSchema;

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageDto<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

impl<T> PageDto<T> {
    pub(crate) fn from_page<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Self {
        Self {
            next_cursor: page.next_cursor.as_ref().map(kernel::Cursor::encode),
            items: page.items.into_iter().map(f).collect(),
        }
    }
}
