//! Human-readable ages and durations, as `k8s.io/apimachinery/pkg/util/duration` prints them.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::Value;

/// Formats `d` the way Kubernetes' `duration.HumanDuration` does: two to three
/// significant figures, e.g. `"90s"`, `"2m30s"`, `"15m"`, `"3h20m"`, `"5d2h"`.
///
/// # Guarantees
/// - Up to one second in the future still reads `"0s"` (clock skew);
///   further in the future reads `"<invalid>"`.
/// - Below two minutes the exact number of seconds is shown; below ten
///   minutes minutes and seconds; below three hours minutes; below eight
///   hours hours and minutes; below two days hours; below eight days days
///   and hours; below two years days; below eight years years and days;
///   after that years.
pub fn human_duration(d: Duration) -> String {
    // Go's int(d.Seconds()) truncates toward zero, as num_seconds does.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses an RFC 3339 timestamp (`metav1.Time` or `metav1.MicroTime`).
///
/// Anything missing, not a string, or unparseable is `None`, which the
/// printers treat like Go's zero time.
pub(crate) fn timestamp(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `translateTimestampSince`: the age of `t` at `now`, or `"<unknown>"` when unset.
pub(crate) fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// The age cell of an object: `metadata.creationTimestamp` relative to `now`.
pub(crate) fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    Value::from(since(
        timestamp(obj.pointer("/metadata/creationTimestamp")),
        now,
    ))
}

/// `creationTimestamp` as the default table convertor prints it: RFC 3339 in
/// UTC to the second, Go's zero time when unset.
pub(crate) fn created_at(obj: &Value) -> Value {
    let text = match timestamp(obj.pointer("/metadata/creationTimestamp")) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => "0001-01-01T00:00:00Z".to_string(),
    };
    Value::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secs(s: i64) -> String {
        human_duration(Duration::seconds(s))
    }

    #[test]
    fn human_duration_should_tolerate_one_second_of_clock_skew() {
        assert_eq!(human_duration(Duration::milliseconds(-1500)), "0s");
        assert_eq!(secs(-1), "0s");
        assert_eq!(secs(-2), "<invalid>");
    }

    #[test]
    fn human_duration_should_print_plain_seconds_below_two_minutes() {
        assert_eq!(secs(0), "0s");
        assert_eq!(secs(5), "5s");
        assert_eq!(secs(60), "60s");
        assert_eq!(secs(119), "119s");
    }

    #[test]
    fn human_duration_should_print_minutes_and_seconds_below_ten_minutes() {
        assert_eq!(secs(120), "2m");
        assert_eq!(secs(150), "2m30s");
        assert_eq!(secs(599), "9m59s");
    }

    #[test]
    fn human_duration_should_print_whole_minutes_below_three_hours() {
        assert_eq!(secs(600), "10m");
        assert_eq!(secs(659), "10m");
        assert_eq!(secs(3 * 3600 - 1), "179m");
    }

    #[test]
    fn human_duration_should_print_hours_and_minutes_below_eight_hours() {
        assert_eq!(secs(3 * 3600), "3h");
        assert_eq!(secs(3 * 3600 + 20 * 60), "3h20m");
        assert_eq!(secs(8 * 3600 - 1), "7h59m");
    }

    #[test]
    fn human_duration_should_print_whole_hours_below_two_days() {
        assert_eq!(secs(8 * 3600), "8h");
        assert_eq!(secs(47 * 3600 + 3599), "47h");
    }

    #[test]
    fn human_duration_should_print_days_and_hours_below_eight_days() {
        assert_eq!(secs(48 * 3600), "2d");
        assert_eq!(secs(5 * 86400 + 2 * 3600), "5d2h");
        assert_eq!(secs(8 * 86400 - 1), "7d23h");
    }

    #[test]
    fn human_duration_should_print_days_below_two_years() {
        assert_eq!(secs(8 * 86400), "8d");
        assert_eq!(secs(729 * 86400), "729d");
    }

    #[test]
    fn human_duration_should_print_years_and_days_below_eight_years() {
        assert_eq!(secs(730 * 86400), "2y");
        assert_eq!(secs(731 * 86400), "2y1d");
        assert_eq!(secs(8 * 365 * 86400 - 1), "7y364d");
    }

    #[test]
    fn human_duration_should_print_whole_years_from_eight_years() {
        assert_eq!(secs(8 * 365 * 86400), "8y");
        assert_eq!(secs(20 * 365 * 86400 + 86400), "20y");
    }

    #[test]
    fn since_should_print_unknown_for_a_missing_or_garbled_timestamp() {
        let now = Utc::now();
        assert_eq!(since(timestamp(None), now), "<unknown>");
        assert_eq!(
            since(timestamp(Some(&json!("yesterday"))), now),
            "<unknown>"
        );
        assert_eq!(since(timestamp(Some(&json!(42))), now), "<unknown>");
    }

    #[test]
    fn timestamp_should_accept_micro_time_and_offsets() {
        let t = timestamp(Some(&json!("2024-05-01T10:00:00.123456Z"))).unwrap();
        assert_eq!(t.timestamp(), 1_714_557_600);
        let t = timestamp(Some(&json!("2024-05-01T12:00:00+02:00"))).unwrap();
        assert_eq!(t.timestamp(), 1_714_557_600);
    }

    #[test]
    fn created_at_should_print_seconds_in_utc_or_go_zero_time() {
        let obj = json!({"metadata": {"creationTimestamp": "2024-05-01T12:00:00.5+02:00"}});
        assert_eq!(created_at(&obj), json!("2024-05-01T10:00:00Z"));
        assert_eq!(created_at(&json!({})), json!("0001-01-01T00:00:00Z"));
    }
}
