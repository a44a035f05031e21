//! The string `format`s CRD schemas validate, as apiextensions keeps them
//! (every other format is ignored) and kube-openapi's registry checks them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use base64::Engine as _;
use regex::Regex;

/// Formats CRDs validate, with go-openapi's normalization (dashes removed).
const SUPPORTED: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "k8sshortname",
    "k8slongname",
];

fn normalize(format: &str) -> String {
    format.replace('-', "")
}

/// Whether a string `format` is one CRD validation checks.
pub(crate) fn is_supported(format: &str) -> bool {
    SUPPORTED.contains(&normalize(format).as_str())
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).unwrap_or_else(|_| Regex::new("$^").expect("valid")))
}

/// Whether `s` is valid for `format` (which [`is_supported`]).
pub(crate) fn check(format: &str, s: &str) -> bool {
    static HOSTNAME: OnceLock<Regex> = OnceLock::new();
    static UUID: OnceLock<Regex> = OnceLock::new();
    static UUID3: OnceLock<Regex> = OnceLock::new();
    static UUID4: OnceLock<Regex> = OnceLock::new();
    static UUID5: OnceLock<Regex> = OnceLock::new();
    static EMAIL: OnceLock<Regex> = OnceLock::new();
    static SSN: OnceLock<Regex> = OnceLock::new();
    static HEXCOLOR: OnceLock<Regex> = OnceLock::new();
    static RGBCOLOR: OnceLock<Regex> = OnceLock::new();
    static CREDITCARD: OnceLock<Regex> = OnceLock::new();
    static URI_SCHEME: OnceLock<Regex> = OnceLock::new();
    const HEX: &str = "[0-9a-f]";
    match normalize(format).as_str() {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => {
            !s.is_empty()
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && (s.starts_with('/')
                    || re(&URI_SCHEME, r"^[A-Za-z][A-Za-z0-9+.\-]*:").is_match(s))
        }
        "email" => re(
            &EMAIL,
            r"^(?:[^<>@]*<)?[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*>?$",
        )
        .is_match(s),
        "hostname" => {
            let label = r"[a-zA-Z0-9\p{S}\p{L}]";
            let pattern = format!(
                r"^({label}((-?{label}{{0,62}})?)|({label}(([a-zA-Z0-9\-\p{{S}}\p{{L}}]{{0,61}}{label})?)(\.)){{1,}}([a-zA-Z\p{{L}}]){{2,63}})$"
            );
            re(&HOSTNAME, &pattern).is_match(s)
                && s.len() <= 255
                && s.split('.').all(|p| p.len() <= 63)
        }
        "ipv4" => {
            s.contains('.') && (s.parse::<Ipv4Addr>().is_ok() || s.parse::<Ipv6Addr>().is_ok())
        }
        "ipv6" => s.contains(':') && s.parse::<IpAddr>().is_ok(),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "uuid" => re(&UUID, &format!("(?i)^{HEX}{{8}}-?{HEX}{{4}}-?{HEX}{{4}}-?{HEX}{{4}}-?{HEX}{{12}}$")).is_match(s),
        "uuid3" => re(&UUID3, &format!("(?i)^{HEX}{{8}}-?{HEX}{{4}}-?3{HEX}{{3}}-?{HEX}{{4}}-?{HEX}{{12}}$")).is_match(s),
        "uuid4" => re(&UUID4, &format!("(?i)^{HEX}{{8}}-?{HEX}{{4}}-?4{HEX}{{3}}-?[89ab]{HEX}{{3}}-?{HEX}{{12}}$")).is_match(s),
        "uuid5" => re(&UUID5, &format!("(?i)^{HEX}{{8}}-?{HEX}{{4}}-?5{HEX}{{3}}-?[89ab]{HEX}{{3}}-?{HEX}{{12}}$")).is_match(s),
        "isbn" => isbn10(s) || isbn13(s),
        "isbn10" => isbn10(s),
        "isbn13" => isbn13(s),
        "creditcard" => {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            re(
                &CREDITCARD,
                r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35[0-9]{3})[0-9]{11})$",
            )
            .is_match(&digits)
                && luhn(&digits)
        }
        "ssn" => re(&SSN, r"^[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}$").is_match(s),
        "hexcolor" => re(&HEXCOLOR, r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$").is_match(s),
        "rgbcolor" => {
            let c = r"\s*(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])\s*";
            re(&RGBCOLOR, &format!(r"^rgb\({c},{c},{c}\)$")).is_match(s)
        }
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "password" => true,
        "date" => date(s),
        "datetime" => datetime(s),
        "duration" => duration(s),
        "k8sshortname" => {
            kaji_core::validation::is_dns1123_label(s).is_empty()
        }
        "k8slongname" => {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|p| {
                    let b = p.as_bytes();
                    !b.is_empty()
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                })
        }
        _ => true,
    }
}

fn cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix.parse::<u32>().is_ok_and(|p| p <= max)
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx…`, `xx-xx…` or `xxxx.xxxx…`.
fn mac(s: &str) -> bool {
    let hex = |g: &str, n: usize| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit());
    let octets_ok = |n: usize| n == 6 || n == 8 || n == 20;
    if s.contains(':') || s.contains('-') {
        let sep = if s.contains(':') { ':' } else { '-' };
        let groups: Vec<&str> = s.split(sep).collect();
        octets_ok(groups.len()) && groups.iter().all(|g| hex(g, 2))
    } else if s.contains('.') {
        let groups: Vec<&str> = s.split('.').collect();
        octets_ok(groups.len() * 2) && groups.iter().all(|g| hex(g, 4))
    } else {
        false
    }
}

fn isbn_digits(s: &str) -> String {
    s.chars().filter(|c| *c != ' ' && *c != '-').collect()
}

fn isbn10(s: &str) -> bool {
    let d = isbn_digits(s);
    let b = d.as_bytes();
    if b.len() != 10 || !b[..9].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let last = match b[9] {
        b'X' => 10,
        c if c.is_ascii_digit() => u32::from(c - b'0'),
        _ => return false,
    };
    let sum: u32 = b[..9]
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u32 + 1) * u32::from(c - b'0'))
        .sum::<u32>()
        + 10 * last;
    sum.checked_rem(11) == Some(0)
}

fn isbn13(s: &str) -> bool {
    let d = isbn_digits(s);
    let b = d.as_bytes();
    if b.len() != 13 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..12]
        .iter()
        .enumerate()
        .map(|(i, c)| u32::from(c - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(b[12] - b'0')
}

fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.checked_rem(10) == Some(0)
}

/// RFC 3339 `full-date`, as Go's `time.Parse("2006-01-02", …)`.
fn date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// go-openapi's `IsDateTime`: a full date, `T` (any case), a time of day
/// with optional fraction, and `Z` or a `±hh:mm` offset.
fn datetime(s: &str) -> bool {
    static TIME: OnceLock<Regex> = OnceLock::new();
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    let [day, time] = parts.as_slice() else {
        return false;
    };
    if !date(day) {
        return false;
    }
    let Some(m) = re(
        &TIME,
        r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$",
    )
    .captures(time) else {
        return false;
    };
    &m[1] <= "23" && &m[2] <= "59" && &m[3] <= "59"
}

/// go-openapi's `IsDuration`: Go's `time.ParseDuration` syntax, or a number
/// and a unit word (`3 days`, `1w`).
fn duration(s: &str) -> bool {
    static GO: OnceLock<Regex> = OnceLock::new();
    static WORDS: OnceLock<Regex> = OnceLock::new();
    if s == "0"
        || re(
            &GO,
            r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$",
        )
        .is_match(s)
    {
        return true;
    }
    let Some(m) = re(&WORDS, r"^([0-9]+)\s*([A-Za-zµ]+)$").captures(s) else {
        return false;
    };
    matches!(
        &m[2],
        "ns" | "us"
            | "µs"
            | "ms"
            | "s"
            | "m"
            | "h"
            | "d"
            | "w"
            | "nanosecond"
            | "nanoseconds"
            | "microsecond"
            | "microseconds"
            | "millisecond"
            | "milliseconds"
            | "sec"
            | "secs"
            | "second"
            | "seconds"
            | "min"
            | "mins"
            | "minute"
            | "minutes"
            | "hr"
            | "hrs"
            | "hour"
            | "hours"
            | "day"
            | "days"
            | "wk"
            | "week"
            | "weeks"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_formats_kubernetes_validates_are_supported() {
        assert!(is_supported("date-time"));
        assert!(is_supported("uuid"));
        assert!(!is_supported("int32"));
        assert!(!is_supported("my-format"));
    }

    #[test]
    fn date_times_need_a_zone_and_a_real_date() {
        assert!(check("date-time", "2024-01-31T12:00:00Z"));
        assert!(check("date-time", "2024-01-31T12:00:00.123+02:00"));
        assert!(!check("date-time", "2024-01-31T12:00:00"));
        assert!(!check("date-time", "2024-02-30T12:00:00Z"));
        assert!(!check("date-time", "yesterday"));
    }

    #[test]
    fn addresses_are_checked_by_family() {
        assert!(check("ipv4", "10.0.0.1"));
        assert!(!check("ipv4", "::1"));
        assert!(check("ipv6", "fe80::1"));
        assert!(!check("ipv6", "10.0.0.1"));
        assert!(check("cidr", "10.0.0.0/8"));
        assert!(!check("cidr", "10.0.0.0/33"));
        assert!(check("mac", "00:00:5e:00:53:01"));
        assert!(!check("mac", "00:00:5e"));
    }

    #[test]
    fn identifiers_and_encodings_are_checked() {
        assert!(check("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(!check("uuid", "123e4567"));
        assert!(check("byte", "aGVsbG8="));
        assert!(!check("byte", "not base64!"));
        assert!(check("hostname", "example.com"));
        assert!(!check("hostname", "-bad-.com"));
        assert!(check("email", "a@example.com"));
        assert!(!check("email", "nobody"));
        assert!(check("isbn13", "978-0321751041"));
        assert!(check("duration", "1h30m"));
        assert!(check("duration", "3 days"));
        assert!(!check("duration", "soon"));
    }
}
