//! Typed scalars of the IAM language: numbers, dates, booleans, IP ranges.
//!
//! One parser per type serves both sides of a comparison (policy values at load time, request
//! values when the context is built), so a value can never parse one way in a policy and another
//! way in a request.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

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
pub fn parse_date(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.len() != 4 && bytes.iter().all(u8::is_ascii_digit) {
        return Timestamp::from_second(text.parse().ok()?).ok();
    }
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
    let Some(time_part) = time_part else {
        return TimeZone::UTC
            .to_timestamp(date.to_datetime(Time::midnight()))
            .ok();
    };
    // hh:mm, then optional :ss and .s, then a mandatory Z or ±hh:mm.
    let zone_at = time_part.find(['Z', '+', '-'])?;
    let (clock, zone) = time_part.split_at(zone_at);
    let zone_ok = zone == "Z"
        || (zone.len() == 6
            && digits(&zone[1..3], 2)
            && &zone[3..4] == ":"
            && digits(&zone[4..], 2));
    let mut clock_fields = clock.split(':');
    let (hh, mm, ss) = (
        clock_fields.next()?,
        clock_fields.next()?,
        clock_fields.next(),
    );
    let seconds_ok = ss.is_none_or(|s| {
        let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
        digits(whole, 2) && !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit())
    });
    if !zone_ok || clock_fields.next().is_some() || !digits(hh, 2) || !digits(mm, 2) || !seconds_ok
    {
        return None;
    }
    let full = match ss {
        Some(_) => format!("{date_part}T{clock}{zone}"),
        None => format!("{date_part}T{clock}:00{zone}"),
    };
    Timestamp::from_str(&full).ok()
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
