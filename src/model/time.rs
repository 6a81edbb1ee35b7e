//! Times as the platform and the departments write them: RFC 3339, always shown in +08:00
//! (Asia/Shanghai has had no daylight saving time since 1991).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone};

/// Asia/Shanghai.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// RFC 3339 with `+08:00`, seconds precision.
pub fn rfc3339(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&cst())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Milliseconds since the epoch as RFC 3339 `+08:00` (the number itself if out of range).
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| rfc3339(t.with_timezone(&cst())))
        .unwrap_or_else(|| ms.to_string())
}

/// Parses RFC 3339 with an offset.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// A moment, a date or a time of day, read from the forms that the platform and the departments use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Moment {
    At(DateTime<FixedOffset>),
    Date(NaiveDate),
    Time(NaiveTime),
}

impl Moment {
    /// Reads RFC 3339 (shown in +08:00), `YYYY-MM-DD HH:MM[:SS]` (+08:00), `YYYY-MM-DD` or `HH:MM[:SS]`.
    pub fn parse(s: &str) -> Option<Moment> {
        let s = s.trim();
        if let Some(t) = parse_rfc3339(s) {
            return Some(Moment::At(t.with_timezone(&cst())));
        }
        for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
            if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
                return cst().from_local_datetime(&n).single().map(Moment::At);
            }
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Some(Moment::Date(d));
        }
        for fmt in ["%H:%M:%S", "%H:%M"] {
            if let Ok(t) = NaiveTime::parse_from_str(s, fmt) {
                return Some(Moment::Time(t));
            }
        }
        None
    }
}

/// Reads a department's local time with a strftime format (no offset: +08:00) and gives RFC 3339.
pub fn parse_local(s: &str, fmt: &str) -> Option<String> {
    if let Ok(t) = DateTime::parse_from_str(s, fmt) {
        return Some(rfc3339(t));
    }
    let n = NaiveDateTime::parse_from_str(s, fmt).ok()?;
    cst().from_local_datetime(&n).single().map(rfc3339)
}
