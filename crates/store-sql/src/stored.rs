//! Conversions between domain values and stored columns: counts are unsigned in the domain and
//! signed integers in SQL; times are written by [`at_value`], the one encoder of a stored time.
//!
//! Times: sqlx writes a time on SQLite as RFC 3339 text whose fraction drops trailing zeros,
//! and such text does not sort as time within a second (`…:05Z` sorts after `…:05.5Z`). Every
//! time column of the schema is therefore written through [`at_value`], by every writer of this
//! crate: on SQLite as fixed-width UTC text with six fraction digits, whose text order is time
//! order, so comparisons, `ORDER BY` and indexes are exact; on PostgreSQL as `timestamptz`.
//! Both read back as the same instant. An insert or update built from entity models runs
//! through [`execute_timed`], which binds every time it carries in that form; a time set by
//! `col_expr` or compared in a filter binds `SqlStore::at` / `at_now` (or [`at_value`] on a
//! transaction's backend). The migrations `m20261206_000018_stored_times` and
//! `m20261206_000019_stored_times_rest` rewrote the values written before in sqlx's form.

use std::fmt::Display;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, QueryTrait, Statement, Value};
use time::{OffsetDateTime, UtcOffset};

/// `value` in the column's (or the domain's) integer type; out of range is a storage error.
pub(crate) fn fit<T, U>(value: T, what: &'static str) -> anyhow::Result<U>
where
    T: Copy + Display,
    U: TryFrom<T>,
{
    U::try_from(value).map_err(|_| anyhow::anyhow!("{what} out of range: {value}"))
}

/// `t` in UTC, truncated to microseconds: what both backends store exactly (and what
/// [`at_value`] writes).
pub(crate) fn utc_micros(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// A lease taken at `now` for `lease`: `now` as stored (UTC, microseconds) and when the lease
/// ends; `None` when that end is past the representable times.
pub(crate) fn lease_window(
    now: OffsetDateTime,
    lease: std::time::Duration,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let now = utc_micros(now);
    let until = now.checked_add(time::Duration::try_from(lease).ok()?)?;
    Some((now, until))
}

/// `t` as a stored time on `backend`: UTC, microseconds; on SQLite fixed-width text
/// (`2026-11-22T10:00:00.000000Z`), so that text order is time order.
pub(crate) fn at_value(backend: DbBackend, t: OffsetDateTime) -> Value {
    let t = utc_micros(t);
    if backend == DbBackend::Postgres {
        Value::from(t)
    } else {
        Value::from(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ))
    }
}

/// Runs `query` (an insert or update built from entity models) on `db` with every time it
/// binds written by [`at_value`] instead of in sqlx's own form.
pub(crate) async fn execute_timed<Q, C>(db: &C, query: &Q) -> Result<ExecResult, DbErr>
where
    Q: QueryTrait + Sync,
    C: ConnectionTrait,
{
    db.execute_raw(stored_times(query.build(db.get_database_backend())))
        .await
}

/// `statement` with every time it binds in the stored form ([`at_value`]).
fn stored_times(mut statement: Statement) -> Statement {
    let backend = statement.db_backend;
    for value in statement.values.iter_mut().flat_map(|v| v.0.iter_mut()) {
        if let Value::TimeDateTimeWithTimeZone(Some(t)) = value {
            *value = at_value(backend, *t);
        }
    }
    statement
}

impl crate::SqlStore {
    /// `t` as a stored time on this store's backend ([`at_value`]).
    pub(crate) fn at(&self, t: OffsetDateTime) -> Value {
        at_value(self.db.get_database_backend(), t)
    }

    /// Now, by this store's clock, as a stored time ([`at_value`]).
    pub(crate) fn at_now(&self) -> Value {
        self.at(self.now())
    }
}

/// No time (a NULL column).
pub(crate) fn null_time() -> Value {
    Value::from(Option::<OffsetDateTime>::None)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn sqlite_text(t: OffsetDateTime) -> String {
        match at_value(DbBackend::Sqlite, t) {
            Value::String(Some(s)) => s,
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn sqlite_times_sort_as_time_and_read_back() {
        let times = [
            datetime!(2026-11-22 10:00:04.999_999 UTC),
            datetime!(2026-11-22 10:00:05 UTC),
            datetime!(2026-11-22 10:00:05.000_001 UTC),
            datetime!(2026-11-22 10:00:05.5 UTC),
            datetime!(2026-11-22 12:00:05.6 +02:00),
            datetime!(2026-11-22 10:00:06 UTC),
        ];
        let texts: Vec<_> = times.iter().copied().map(sqlite_text).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted, "text order is time order");
        assert_eq!(texts[1], "2026-11-22T10:00:05.000000Z");
        assert_eq!(texts[4], "2026-11-22T10:00:05.600000Z", "in UTC");
        for (t, text) in times.iter().zip(&texts) {
            let back = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .expect("RFC 3339, as sqlx reads it");
            assert_eq!(back, *t);
        }
        // sqlx's own form, for contrast: out of order within a second.
        let rfc = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .expect("formats")
        };
        assert!(rfc(times[1]) > rfc(times[3]));
    }

    #[test]
    fn statements_bind_times_in_the_stored_form() {
        let t = datetime!(2026-11-22 10:00:05 UTC);
        let statement = stored_times(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "UPDATE t SET a = $1, b = $2, c = $3",
            [Value::from(t), Value::from(7_i64), null_time()],
        ));
        let values = statement.values.map(|v| v.0).unwrap_or_default();
        assert_eq!(values[0], Value::from("2026-11-22T10:00:05.000000Z"));
        assert_eq!(values[1], Value::from(7_i64));
        assert_eq!(values[2], null_time());
    }

    #[test]
    fn counts_fit_or_fail() {
        assert_eq!(fit::<u32, i32>(7, "n").ok(), Some(7));
        assert!(fit::<u32, i32>(u32::MAX, "n").is_err());
        assert!(fit::<i64, u64>(-1, "n").is_err());
    }

    #[test]
    fn times_are_utc_microseconds() {
        let t = time::macros::datetime!(2026-11-22 10:00:00.123_456_789 +02:00);
        let s = utc_micros(t);
        assert_eq!(s.offset(), UtcOffset::UTC);
        assert_eq!(s.nanosecond(), 123_456_000);
        assert_eq!(s, time::macros::datetime!(2026-11-22 08:00:00.123_456 UTC));
    }
}
