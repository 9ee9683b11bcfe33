//! Typed scalars of the IAM language: numbers, dates, booleans, IP ranges.
//!
//! One parser per type serves both sides of a comparison (policy values at load time, request
//! values when the context is built), so a value can never parse one way in a policy and another
//! way in a request.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::Date;

/// An exact decimal number: the value times 10^18, so `0.1 + 0.2` problems cannot change a
/// decision (f64 would). Range: about ±1.7e20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal(i128);

const DECIMAL_SCALE_DIGITS: u32 = 18;

impl FromStr for Decimal {
    type Err = ();

    /// `[+-]digits[.digits]` or `[+-].digits`; no exponent, no spaces.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty())
            || !all_digits(int_part)
            || !all_digits(frac_part)
            || frac_part.len() > DECIMAL_SCALE_DIGITS as usize
        {
            return Err(());
        }
        let mut value: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(b - b'0')))
                .ok_or(())?;
        }
        let scale = 10i128.pow(DECIMAL_SCALE_DIGITS - frac_part.len() as u32);
        let value = value.checked_mul(scale).ok_or(())?;
        Ok(Decimal(if negative { -value } else { value }))
    }
}

/// Parses an IAM date: every W3C-profile ISO 8601 form (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mmTZD`, `...:ss`, `...:ss.s`) or epoch seconds. Reduced forms mean the start of
/// that period in UTC. A bare four-digit value is a year; any other run of digits is epoch
/// seconds (SPEC §5). A date-time without a zone designator is refused: its instant is unknown.
///
/// Returns a [`Timestamp`], so an epoch value past year 9999 (which [`parse_instant`] accepts)
/// is `None` here; the engine compares [`Instant`]s.
pub fn parse_date(text: &str) -> Option<Timestamp> {
    parse_instant(text)?.timestamp()
}

/// An instant as IAM compares it: seconds since 1970 (no upper bound: an epoch value may be
/// any run of digits, and larger is simply later) and nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    seconds: Seconds,
    nanos: u32,
}

/// Seconds since 1970: an `i64` (every ISO 8601 date, every epoch value up to 2^63-1), or the
/// decimal digits (no leading zero) of a larger epoch value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seconds {
    Within(i64),
    Beyond(Box<str>),
}

impl Ord for Seconds {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::{Greater, Less};
        match (self, other) {
            (Seconds::Within(a), Seconds::Within(b)) => a.cmp(b),
            (Seconds::Within(_), Seconds::Beyond(_)) => Less,
            (Seconds::Beyond(_), Seconds::Within(_)) => Greater,
            // Same digits without leading zeros: the longer number is larger, else digit order.
            (Seconds::Beyond(a), Seconds::Beyond(b)) => {
                a.len().cmp(&b.len()).then_with(|| a.cmp(b))
            }
        }
    }
}

impl PartialOrd for Seconds {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Instant {
    /// The instant of a [`Timestamp`].
    pub fn from_timestamp(at: Timestamp) -> Instant {
        // jiff gives a negative fraction before 1970; keep the fraction positive, as the ISO
        // parser does, so that both orderings agree.
        let (seconds, nanos) = (at.as_second(), at.subsec_nanosecond());
        if nanos < 0 {
            Instant::from_seconds(seconds - 1, (nanos + 1_000_000_000) as u32)
        } else {
            Instant::from_seconds(seconds, nanos as u32)
        }
    }

    /// The [`Timestamp`], when the instant is within jiff's range (years -9999..=9999).
    pub fn timestamp(&self) -> Option<Timestamp> {
        match self.seconds {
            Seconds::Within(s) => Timestamp::new(s, 0)
                .ok()?
                .checked_add(jiff::SignedDuration::new(0, self.nanos as i32))
                .ok(),
            Seconds::Beyond(_) => None,
        }
    }

    fn from_seconds(seconds: i64, nanos: u32) -> Instant {
        Instant {
            seconds: Seconds::Within(seconds),
            nanos,
        }
    }

    /// Epoch seconds from a run of ASCII digits of any length.
    fn from_epoch_digits(digits: &str) -> Instant {
        let significant = digits.trim_start_matches('0');
        let seconds = match significant.parse::<i64>() {
            Ok(s) => Seconds::Within(s),
            Err(_) if significant.is_empty() => Seconds::Within(0),
            Err(_) => Seconds::Beyond(significant.into()),
        };
        Instant { seconds, nanos: 0 }
    }
}

/// Parses an IAM date (the forms of [`parse_date`]) into an [`Instant`]. Epoch seconds have no
/// upper bound (SPEC §5); a bare four-digit value is a year.
pub fn parse_instant(text: &str) -> Option<Instant> {
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.len() != 4 && bytes.iter().all(u8::is_ascii_digit) {
        return Some(Instant::from_epoch_digits(text));
    }
    parse_iso_date(text)
}

/// The W3C profile forms of [`parse_date`], without epoch seconds.
fn parse_iso_date(text: &str) -> Option<Instant> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year = fields.next().filter(|y| digits(y, 4))?;
    let month = fields.next();
    let day = fields.next();
    if fields.next().is_some()
        || month.is_some_and(|m| !digits(m, 2))
        || day.is_some_and(|d| !digits(d, 2))
    {
        return None;
    }
    if time_part.is_some() && day.is_none() {
        return None;
    }
    let number = |s: Option<&str>| s.map_or(Some(1), |s| s.parse::<i8>().ok());
    let date = Date::new(year.parse().ok()?, number(month)?, number(day)?).ok()?;
    // Days since 1970 from the civil calendar, so the whole of year 9999 is representable
    // (jiff's Timestamp stops a day short of it).
    let days = i64::from(Date::constant(1970, 1, 1).until(date).ok()?.get_days());
    let Some(time_part) = time_part else {
        return Some(Instant::from_seconds(days * 86_400, 0));
    };
    // hh:mm, then optional :ss and .s, then a mandatory Z or ±hh:mm.
    let zone_at = time_part.find(['Z', '+', '-'])?;
    let (clock, zone) = time_part.split_at(zone_at);
    let two = |s: &str| s.parse::<i64>().ok();
    let offset = if zone == "Z" {
        0
    } else if zone.len() == 6
        && digits(&zone[1..3], 2)
        && &zone[3..4] == ":"
        && digits(&zone[4..], 2)
    {
        let (hours, minutes) = (two(&zone[1..3])?, two(&zone[4..])?);
        if hours > 25 || minutes > 59 {
            return None;
        }
        let magnitude = hours * 3600 + minutes * 60;
        if zone.starts_with('-') {
            -magnitude
        } else {
            magnitude
        }
    } else {
        return None;
    };
    let mut clock_fields = clock.split(':');
    let (hh, mm, ss) = (
        clock_fields.next()?,
        clock_fields.next()?,
        clock_fields.next(),
    );
    if clock_fields.next().is_some() || !digits(hh, 2) || !digits(mm, 2) {
        return None;
    }
    let (whole, fraction) = match ss {
        Some(s) => s.split_once('.').unwrap_or((s, "0")),
        None => ("00", "0"),
    };
    if !digits(whole, 2) || fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes, seconds) = (two(hh)?, two(mm)?, two(whole)?);
    // A leap second (:60) is read as :59, as jiff reads it.
    if hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    let seconds = days * 86_400 + hours * 3600 + minutes * 60 + seconds.min(59) - offset;
    Some(Instant::from_seconds(seconds, nanos))
}

/// Parses an IAM boolean: `true` or `false`, ignoring case.
pub fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parses a CIDR range; an address without a prefix is one host (/32 or /128).
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    if text.contains('/') {
        IpNet::from_str(text).ok()
    } else {
        IpAddr::from_str(text).ok().map(IpNet::from)
    }
}

/// Parses a request IP address. An IPv4-mapped IPv6 address is its IPv4 address (SPEC §3), so
/// dual-stack listeners cannot slip IPv4 clients past IPv4 ranges.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    IpAddr::from_str(text).ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> Option<i64> {
        parse_date(text).map(|t| t.as_second())
    }

    #[test]
    fn date_forms() {
        let cases: &[(&str, Option<i64>)] = &[
            ("2018-08-31T12:00Z", Some(1_535_716_800)),
            ("2018-08-31T12:00:00Z", Some(1_535_716_800)),
            ("2018-08-31T12:00:00.5Z", Some(1_535_716_800)),
            ("2018-08-31T14:00+02:00", Some(1_535_716_800)),
            ("2018-08-31T10:00:00-02:00", Some(1_535_716_800)),
            ("2018-08-31", Some(1_535_673_600)),
            ("2018-08", Some(1_533_081_600)),
            ("2018", Some(1_514_764_800)),
            ("1535716800", Some(1_535_716_800)),
            ("0", Some(0)),
            ("2018-08-31T12:00:00", None),
            ("2018-08-31T12Z", None),
            ("2018-02-30", None),
            ("2018-8-31", None),
            ("2018-08-31T25:00Z", None),
            ("yesterday", None),
            ("", None),
            ("2018-08-31 12:00Z", None),
            ("2018T12:00Z", None),
        ];
        for (text, want) in cases {
            assert_eq!(seconds(text), *want, "{text:?}");
        }
    }

    #[test]
    fn epoch_values_have_no_upper_bound() {
        let at = |s: &str| parse_instant(s).unwrap_or_else(|| panic!("{s:?} parses"));
        // Ascending: the year 9999 boundary, 13-digit (millisecond-looking) values, i64::MAX,
        // and beyond every fixed-width integer.
        let ascending = [
            "1970",
            "1535716800",
            "9999-12-31T23:59:59Z",
            "253402300800",
            "1700000000000",
            "9223372036854775807",
            "9223372036854775808",
            "00000000099999999999999999999",
            "100000000000000000000000000000000000000000",
            "100000000000000000000000000000000000000001",
        ];
        for pair in ascending.windows(2) {
            assert!(at(pair[0]) < at(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(at("253402300799"), at("9999-12-31T23:59:59Z"));
        assert_eq!(at("0001700000000000"), at("1700000000000"));
        assert_eq!(at("00000"), at("1970-01-01"));
        assert_eq!(parse_date("253402300800"), None, "beyond jiff's range");
        assert!(at("2018") < at("2019"), "four digits are a year");
    }

    #[test]
    fn decimals() {
        let d = |s: &str| s.parse::<Decimal>().ok();
        assert_eq!(d("10"), d("10.0"));
        assert_eq!(d("+10"), d("10"));
        assert!(d("0.1") < d("0.2"));
        assert!(d("-1") < d("0"));
        assert_eq!(d(".5"), d("0.5"));
        assert_eq!(d("5."), d("5"));
        for bad in [
            "",
            "-",
            ".",
            "1e3",
            "1,000",
            " 1",
            "0x10",
            "1.2.3",
            "999999999999999999999999",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cidrs_and_ips() {
        assert_eq!(parse_cidr("203.0.113.7").unwrap().prefix_len(), 32);
        assert_eq!(parse_cidr("2001:db8::1").unwrap().prefix_len(), 128);
        assert!(parse_cidr("203.0.113.0/33").is_none());
        assert!(parse_cidr("not-an-ip").is_none());
        assert_eq!(parse_ip("::ffff:192.0.2.1"), parse_ip("192.0.2.1"));
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
