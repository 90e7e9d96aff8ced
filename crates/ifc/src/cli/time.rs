//! Times as people read them in table output: RFC 3339 in UTC and spans like
//! `4m12s`. JSON output keeps the raw milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, now.
pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `2026-11-28T04:23:08Z` for a time in ms since the epoch.
pub(super) fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// `1h2m3s`, `4m12s`, `12s`, `250ms`: a span of milliseconds, largest units first.
pub(super) fn span(ms: i64) -> String {
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if value > 0 || (unit == "s" && out.is_empty()) {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// `2026-11-28T04:27:20Z (in 4m12s)` or `… (3s ago)`.
pub(super) fn when(ms: i64) -> String {
    let delta = ms - now_ms();
    let relative =
        if delta >= 0 { format!("in {}", span(delta)) } else { format!("{} ago", span(delta)) };
    format!("{} ({relative})", rfc3339(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_839_769_398), "2026-11-28T04:22:49Z");
        assert_eq!(rfc3339(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn spans_read_largest_unit_first() {
        assert_eq!(span(250), "250ms");
        assert_eq!(span(12_000), "12s");
        assert_eq!(span(252_000), "4m12s");
        assert_eq!(span(3_600_000), "1h");
        assert_eq!(span(90_061_000), "1d1h1m1s");
    }
}
