//! The hand-written JSON forms: timestamps, durations.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats `meta/v1 Time` (`micros = false`, whole seconds, as Go's `time.RFC3339`) or
/// `MicroTime` (`micros = true`, `2006-01-02T15:04:05.000000Z`), always in UTC.
pub(crate) fn format_time(seconds: i64, nanos: i32, micros: bool) -> Result<String, String> {
    let nanos = u32::try_from(nanos).map_err(|_| format!("negative nanos {nanos}"))?;
    let t = DateTime::<Utc>::from_timestamp(seconds, nanos)
        .ok_or_else(|| format!("timestamp {seconds}s {nanos}ns out of range"))?;
    Ok(if micros {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    } else {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    })
}

/// Parses an RFC 3339 timestamp into `(seconds, nanos)` since the Unix epoch.
pub(crate) fn parse_time(s: &str) -> Result<(i64, i32), String> {
    let t =
        DateTime::parse_from_rfc3339(s).map_err(|e| format!("invalid RFC 3339 time {s:?}: {e}"))?;
    let nanos = i32::try_from(t.timestamp_subsec_nanos()).expect("sub-second nanos fit in i32");
    Ok((t.timestamp(), nanos))
}

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
const MIN: u64 = 60 * S;
const HOUR: u64 = 60 * MIN;

/// Formats nanoseconds as Go's `time.Duration.String()` does (`1h2m3.5s`, `1.5ms`, `0s`).
pub(crate) fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if ns < 0 {
        out.push('-');
    }
    let u = ns.unsigned_abs();
    if u < S {
        let (unit, div) = if u < US {
            ("ns", NS)
        } else if u < MS {
            ("µs", US)
        } else {
            ("ms", MS)
        };
        out.push_str(&fraction(u, div));
        out.push_str(unit);
        return out;
    }
    let (h, rest) = (u / HOUR, u % HOUR);
    let (m, rest) = (rest / MIN, rest % MIN);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&fraction(rest, S));
    out.push('s');
    out
}

/// `v / div` with the remainder as trimmed decimal digits.
fn fraction(v: u64, div: u64) -> String {
    let (int, frac) = (v / div, v % div);
    if frac == 0 {
        return int.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// Parses a Go duration string (`300ms`, `-1.5h`, `2h45m`) into nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let int: i128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut part = int.checked_mul(scale).ok_or_else(bad)?;
        if !frac.is_empty() {
            let digits = &frac[..frac.len().min(18)];
            let f: i128 = digits.parse().map_err(|_| bad())?;
            part += f * scale / 10i128.pow(digits.len() as u32);
        }
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = after;
    }
    let total = if neg { -total } else { total };
    i64::try_from(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_should_print_as_go_prints_them() {
        for (ns, s) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(format_duration(ns), s);
            assert_eq!(parse_duration(s), Ok(ns), "{s}");
        }
        assert_eq!(parse_duration("2h45m"), Ok(9_900_000_000_000));
        assert_eq!(parse_duration("300us"), Ok(300_000));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn times_should_print_in_utc_with_go_precision() {
        assert_eq!(
            format_time(1_700_000_000, 0, false).unwrap(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            format_time(1_700_000_000, 123_456_789, true).unwrap(),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00").unwrap(),
            (1_700_000_000, 0)
        );
        assert!(parse_time("yesterday").is_err());
    }
}
