//! Event time: microseconds since the Unix epoch, UTC.
//!
//! The Parquet datasets store timestamps as UTC microseconds, so the core
//! works in the same unit and never converts twice.

use chrono::{DateTime, NaiveDate};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// One second in [`Micros`].
pub const SECOND: Micros = 1_000_000;
/// One day in [`Micros`].
pub const DAY: Micros = 86_400 * SECOND;

/// The earliest event time we accept: 2000-01-01T00:00:00Z.
///
/// Older or far-future timestamps are almost always a crawler bug, and one of
/// them would drag the watermark (and every window) decades away.
pub const EARLIEST_ACCEPTED: Micros = 946_684_800 * SECOND;
/// The latest event time we accept (exclusive): 2100-01-01T00:00:00Z.
pub const LATEST_ACCEPTED: Micros = 4_102_444_800 * SECOND;

/// Parses an RFC 3339 timestamp that carries an explicit offset (`Z` or
/// `+hh:mm`) into UTC microseconds.
pub fn parse_rfc3339(text: &str) -> Result<Micros, String> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("not an RFC 3339 timestamp with offset: {e}"))?;
    Ok(parsed.timestamp_micros())
}

/// Formats UTC microseconds as `YYYY-MM-DD`, the value of the Hive-style
/// `date=` partition directories.
pub fn date_of(micros: Micros) -> String {
    let days = micros.div_euclid(DAY);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (epoch + chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (a partition value read
/// back from a table log), or `None` if it is no such date.
pub fn days_of_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    i32::try_from((date - epoch).num_days()).ok()
}

/// The start of the tumbling window of length `size` that holds `t`.
pub fn window_start(t: Micros, size: Micros) -> Micros {
    t - t.rem_euclid(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_back_as_days_since_the_epoch() {
        assert_eq!(days_of_date("1970-01-01"), Some(0));
        assert_eq!(days_of_date("1969-12-31"), Some(-1));
        assert_eq!(days_of_date("2026-11-30"), Some(20_787));
        assert_eq!(days_of_date(&date_of(20_787 * DAY)), Some(20_787));
        assert_eq!(days_of_date("2026-13-01"), None);
        assert_eq!(days_of_date("yesterday"), None);
    }

    #[test]
    fn parses_offsets_to_utc() {
        assert_eq!(
            parse_rfc3339("2026-11-01T12:00:00+02:00").unwrap(),
            parse_rfc3339("2026-11-01T10:00:00Z").unwrap()
        );
        assert!(parse_rfc3339("2026-11-01T10:00:00").is_err(), "no offset");
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn dates_and_windows() {
        let t = parse_rfc3339("2026-11-01T10:59:59.999999Z").unwrap();
        assert_eq!(date_of(t), "2026-11-01");
        assert_eq!(date_of(-1), "1969-12-31");
        let hour = 3600 * SECOND;
        assert_eq!(
            window_start(t, hour),
            parse_rfc3339("2026-11-01T10:00:00Z").unwrap()
        );
    }
}
