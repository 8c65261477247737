//! Cron expressions of schedules: the five standard fields (minute, hour, day of month, month,
//! day of week), names (`MON`, `JAN`) and nicknames (`@daily`), in UTC; parsed by `croner`.

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use kernel::InvalidInput;
use time::OffsetDateTime;

/// The longest expression accepted.
pub const MAX_CRON_LEN: usize = 120;

/// A valid cron expression.
#[derive(Clone)]
pub struct CronExpr {
    source: String,
    cron: Cron,
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpr").field(&self.source).finish()
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

fn to_chrono(t: OffsetDateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.unix_timestamp(), 0)
}

impl CronExpr {
    /// Parses an expression (field `field` in errors).
    ///
    /// # Errors
    /// [`InvalidInput`] when it is not five fields, a field is out of range, or it never
    /// matches (`0 0 30 2 *`).
    pub fn parse(s: &str, field: &str) -> Result<Self, InvalidInput> {
        let source = s.trim().to_owned();
        if source.is_empty() || source.len() > MAX_CRON_LEN {
            return Err(InvalidInput::field(
                field,
                format!("must be a cron expression of 1 to {MAX_CRON_LEN} characters"),
            ));
        }
        let cron = parser().parse(&source).map_err(|e| {
            InvalidInput::field(
                field,
                format!("is not a five-field cron expression (minute hour day month weekday): {e}"),
            )
        })?;
        let expr = Self { source, cron };
        if expr.next_after(OffsetDateTime::UNIX_EPOCH).is_none() {
            return Err(InvalidInput::field(field, "never matches a date"));
        }
        Ok(expr)
    }

    /// The expression as given (trimmed).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first occurrence strictly after `t` (whole minutes, UTC); `None` when there is none
    /// in the next few years.
    #[must_use]
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let next = self.cron.find_next_occurrence(&to_chrono(t)?, false).ok()?;
        OffsetDateTime::from_unix_timestamp(next.timestamp()).ok()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn next_occurrences_in_utc() {
        let hourly = CronExpr::parse(" 0 * * * * ", "cron").expect("valid");
        assert_eq!(hourly.as_str(), "0 * * * *");
        let t = datetime!(2026-12-06 10:30:15 UTC);
        assert_eq!(hourly.next_after(t), Some(datetime!(2026-12-06 11:00 UTC)));
        // Strictly after: an occurrence at `t` itself is not the next one.
        let on = datetime!(2026-12-06 11:00 UTC);
        assert_eq!(hourly.next_after(on), Some(datetime!(2026-12-06 12:00 UTC)));
        let mondays = CronExpr::parse("30 9 * * MON", "cron").expect("valid");
        assert_eq!(mondays.next_after(t), Some(datetime!(2026-12-07 09:30 UTC)));
        assert!(CronExpr::parse("@daily", "cron").is_ok());
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in [
            "",
            "* * * *",
            "0 0 * * * *",
            "0 0 * * * * 2030",
            "61 * * * *",
            "* 24 * * *",
            "0 0 30 2 *",
            "hello",
            &"1,".repeat(100),
        ] {
            let e = CronExpr::parse(bad, "schedule").expect_err(bad);
            assert_eq!(e.0[0].field, "schedule", "{bad}");
        }
    }
}
