//! Conversions between domain values and stored columns: counts are unsigned in the domain and
//! signed integers in SQL; times are written in UTC at microsecond precision.

use std::fmt::Display;

use time::{OffsetDateTime, UtcOffset};

/// `value` in the column's (or the domain's) integer type; out of range is a storage error.
pub(crate) fn fit<T, U>(value: T, what: &'static str) -> anyhow::Result<U>
where
    T: Copy + Display,
    U: TryFrom<T>,
{
    U::try_from(value).map_err(|_| anyhow::anyhow!("{what} out of range: {value}"))
}

/// `t` in UTC, truncated to microseconds: what both backends store exactly (the job queue
/// writes its times in this form, see `crate::jobs`).
pub(crate) fn utc_micros(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

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
