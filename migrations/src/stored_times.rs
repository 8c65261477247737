//! The one stored form of a time on SQLite (`store_sql`'s `stored::at_value`: fixed-width UTC
//! text with six fraction digits, `2026-11-22T10:00:05.000000Z`, whose text order is time
//! order), for the migrations that move columns to it from sqlx's own form (RFC 3339 text whose
//! fraction drops trailing zeros: `2026-11-22T10:00:05Z`, `2026-11-22T10:00:05.5Z`). Both forms
//! read back as the same instant. PostgreSQL stores `timestamptz`, whose form does not change:
//! nothing to do there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

/// On SQLite, rewrites every value of each `(table, column)` in the fixed-width form; on
/// other backends, nothing.
pub(crate) async fn rewrite_fixed_width(
    manager: &SchemaManager<'_>,
    columns: &[(&str, &str)],
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    let db = manager.get_connection();
    for (table, column) in columns {
        db.execute_unprepared(&rewrite(table, column)).await?;
    }
    Ok(())
}

/// Rewrites the UTC RFC 3339 values of `table.column` that are not fixed-width yet: the
/// seconds, then the fraction (if any) padded with zeros to six digits, then `Z`.
fn rewrite(table: &str, column: &str) -> String {
    format!(
        "UPDATE {table} SET {column} = substr({column}, 1, 19) || '.' || substr(\
             CASE WHEN substr({column}, 20, 1) = '.' \
                  THEN substr({column}, 21, length({column}) - 21) ELSE '' END \
             || '000000', 1, 6) || 'Z' \
         WHERE {column} LIKE '____-__-__T__:__:__%Z' AND length({column}) <> 27"
    )
}
