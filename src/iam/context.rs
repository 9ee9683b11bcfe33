//! The request context: condition keys and their values for one request.
//!
//! Each value is read as a number, an instant or an IP address only when an operator of that
//! type first compares it, and that reading is kept (`OnceLock`), so a request pays for no
//! parse it does not use and never parses a value twice. Every reading comes from the same
//! parser as before (`scalar.rs`), so a value reads the same whether it is read first, last or
//! never.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine as _;
use jiff::Timestamp;

use super::pattern::Resolve;
use super::scalar::{Decimal, Instant, parse_bool, parse_instant, parse_ip};

/// One value of a context key, with its typed readings (parsed on first use).
#[derive(Debug, Clone)]
pub struct Value {
    text: Cow<'static, str>,
    number: OnceLock<Option<Decimal>>,
    time: OnceLock<Option<Instant>>,
    ip: OnceLock<Option<IpAddr>>,
    pub(crate) binary: Option<Box<[u8]>>,
}

/// Every reading is a function of the text, so the text (and a binary value's bytes) decide
/// equality, whatever has been parsed so far.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.binary == other.binary
    }
}

impl Value {
    /// A value given as text (the form every context value has in AWS's simulator).
    pub fn new(text: impl Into<Box<str>>) -> Self {
        Value::from_text(Cow::Owned(text.into().into_string()))
    }

    /// A value whose text lives for the whole program (`"true"`, `"User"`): no allocation.
    pub fn from_static(text: &'static str) -> Self {
        Value::from_text(Cow::Borrowed(text))
    }

    fn from_text(text: Cow<'static, str>) -> Self {
        Value {
            text,
            number: OnceLock::new(),
            time: OnceLock::new(),
            ip: OnceLock::new(),
            binary: None,
        }
    }

    /// A binary value, given base64-encoded as AWS's simulator takes it. `None` if not base64.
    pub fn binary(base64_text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(base64_text)
            .ok()?;
        Some(Value {
            binary: Some(bytes.into_boxed_slice()),
            ..Value::new(base64_text)
        })
    }

    /// An instant, written as AWS writes `aws:CurrentTime` (`2026-11-26T04:31:09Z`).
    pub fn time(at: Timestamp) -> Self {
        Value::new(current_time_text(at))
    }

    /// The value as text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value read as a number (`Numeric*` operators).
    #[inline]
    pub(crate) fn number(&self) -> Option<Decimal> {
        *self.number.get_or_init(|| self.text.parse().ok())
    }

    /// The value read as an instant (`Date*` operators).
    #[inline]
    pub(crate) fn instant(&self) -> Option<&Instant> {
        self.time.get_or_init(|| parse_instant(&self.text)).as_ref()
    }

    /// The value read as an IP address (`IpAddress`, `NotIpAddress`).
    #[inline]
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        *self.ip.get_or_init(|| parse_ip(&self.text))
    }

    /// The value read as a boolean (`Bool`): two case-insensitive comparisons, cheaper than
    /// keeping the result.
    #[inline]
    pub(crate) fn boolean(&self) -> Option<bool> {
        parse_bool(&self.text)
    }
}

/// `at` as `%Y-%m-%dT%H:%M:%SZ`, written directly (jiff's `strftime` parses its format on every
/// call); the same text as `strftime` for every year it writes with four digits.
fn current_time_text(at: Timestamp) -> String {
    let civil = jiff::tz::Offset::UTC.to_datetime(at);
    let year = civil.year();
    if !(0..=9999).contains(&year) {
        return at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    }
    let mut text = String::with_capacity(20);
    let fields = [
        (i32::from(year), 4, '-'),
        (i32::from(civil.month()), 2, '-'),
        (i32::from(civil.day()), 2, 'T'),
        (i32::from(civil.hour()), 2, ':'),
        (i32::from(civil.minute()), 2, ':'),
        (i32::from(civil.second()), 2, 'Z'),
    ];
    for (n, digits, after) in fields {
        for place in (0..digits).rev() {
            let digit = (n / 10i32.pow(place)) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
        text.push(after);
    }
    text
}

/// The values of one key. `multi` marks a multivalued key (`ArrayOf...` types such as
/// `ses:Recipients`), which matters even when it holds one value.
#[derive(Debug, Clone)]
pub struct Entry {
    values: Values,
    pub(crate) multi: bool,
}

/// A single-valued key's value is kept inline (no vector to allocate per key).
#[derive(Debug, Clone)]
enum Values {
    One(Value),
    Many(Vec<Value>),
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.multi == other.multi && self.values() == other.values()
    }
}

impl Entry {
    /// The values, in the order given.
    #[inline]
    pub fn values(&self) -> &[Value] {
        match &self.values {
            Values::One(value) => std::slice::from_ref(value),
            Values::Many(values) => values,
        }
    }

    /// True for a multivalued key.
    pub fn is_multi(&self) -> bool {
        self.multi
    }
}

/// The keys a transaction's context always has (SPEC §3), as the gateway spells them. They get
/// fixed slots, so a compiled condition finds its key by index instead of hashing a string on
/// every evaluation, and setting one allocates no key name.
const KNOWN_SPELLINGS: [&str; 16] = [
    "ses:ApiVersion",
    "ses:FromAddress",
    "ses:FromDisplayName",
    "ses:FeedbackAddress",
    "ses:Recipients",
    "aws:CurrentTime",
    "aws:EpochTime",
    "aws:SecureTransport",
    "aws:SourceIp",
    "aws:UserAgent",
    "aws:username",
    "aws:userid",
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:PrincipalType",
    "aws:RequestedRegion",
];

/// The slot of a known key, `name` in any case; no allocation.
#[inline]
fn known_slot(name: &str) -> Option<usize> {
    // The spelling the gateway uses first (a length and a memcmp each), then any case.
    KNOWN_SPELLINGS
        .iter()
        .position(|known| *known == name)
        .or_else(|| {
            KNOWN_SPELLINGS
                .iter()
                .position(|known| known.eq_ignore_ascii_case(name))
        })
}

/// A condition key name, case-folded once (key names are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    lower: Box<str>,
    slot: Option<usize>,
}

impl Key {
    /// The key `name`, in any case.
    pub fn new(name: &str) -> Key {
        Key {
            lower: name.to_ascii_lowercase().into(),
            slot: known_slot(name),
        }
    }

    /// The lower-cased name.
    pub fn as_str(&self) -> &str {
        &self.lower
    }
}

/// A key as it was spelled when set (borrowed when it is a known key's own spelling), with its
/// values.
type Slot = (Cow<'static, str>, Entry);

/// Condition keys (case-insensitive) and their values.
///
/// A known key's slot holds the index of its entry in `entries`: the context stays a few words
/// wide (it is moved into the request and the ruling) and its entries share one allocation.
#[derive(Debug, Clone, Default)]
pub struct Context {
    known: [Option<u8>; KNOWN_SPELLINGS.len()],
    entries: Vec<Slot>,
    other: HashMap<Box<str>, Slot>,
}

/// Equal when every key has the same spelling and entry, whatever order they were set in.
impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        (0..KNOWN_SPELLINGS.len()).all(|index| self.known_slot(index) == other.known_slot(index))
            && self.other == other.other
    }
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a single-valued key.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        self.insert(
            key,
            Entry {
                values: Values::One(value),
                multi: false,
            },
        )
    }

    /// Sets a multivalued key (possibly empty).
    pub fn set_multi(&mut self, key: &str, values: Vec<Value>) -> &mut Self {
        self.insert(
            key,
            Entry {
                values: Values::Many(values),
                multi: true,
            },
        )
    }

    fn insert(&mut self, name: &str, entry: Entry) -> &mut Self {
        match known_slot(name) {
            Some(index) => {
                let known = KNOWN_SPELLINGS[index];
                let spelling = if known == name {
                    Cow::Borrowed(known)
                } else {
                    Cow::Owned(name.to_owned())
                };
                match self.known[index] {
                    Some(at) => self.entries[usize::from(at)] = (spelling, entry),
                    None => {
                        if self.entries.capacity() == 0 {
                            self.entries.reserve_exact(KNOWN_SPELLINGS.len());
                        }
                        // At most one entry per known key: fewer than 256.
                        self.known[index] = Some(self.entries.len() as u8);
                        self.entries.push((spelling, entry));
                    }
                }
            }
            None => {
                self.other.insert(
                    name.to_ascii_lowercase().into(),
                    (Cow::Owned(name.to_owned()), entry),
                );
            }
        }
        self
    }

    /// The spelling and entry of the known key at `index`.
    #[inline]
    fn known_slot(&self, index: usize) -> Option<&Slot> {
        self.known[index].map(|at| &self.entries[usize::from(at)])
    }

    /// The entry of a compiled key.
    #[inline]
    pub fn entry(&self, key: &Key) -> Option<&Entry> {
        let slot = match key.slot {
            Some(index) => self.known_slot(index),
            None => self.other.get(&key.lower),
        };
        slot.map(|(_, entry)| entry)
    }

    /// The entry of `key`, in any case.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entry(&Key::new(key))
    }

    /// Every key as it was spelled when set, with its entry, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .chain(self.other.values())
            .map(|(k, e)| (&**k, e))
            .collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }
}

impl Resolve for Context {
    /// Only a single-valued key can be a policy variable (IAM-UG, policy variables).
    fn resolve(&self, key: &Key) -> Option<&str> {
        match self.entry(key) {
            Some(entry) if !entry.multi && entry.values().len() == 1 => {
                Some(entry.values()[0].text())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_typed() {
        let mut ctx = Context::new();
        ctx.set("aws:EpochTime", Value::new("1535716800"))
            .set_multi("ses:Recipients", vec![Value::new("a@b.c")]);
        let epoch = &ctx.get("AWS:epochtime").unwrap().values()[0];
        assert!(epoch.number().is_some() && epoch.instant().is_some());
        assert!(ctx.get("ses:recipients").unwrap().is_multi());
        assert_eq!(
            ctx.resolve(&Key::new("ses:recipients")),
            None,
            "multivalued keys are not variables"
        );
        assert_eq!(ctx.resolve(&Key::new("aws:epochtime")), Some("1535716800"));
    }

    #[test]
    fn time_values_read_back_as_the_same_instant() {
        let at = Timestamp::from_second(1_535_716_800).unwrap();
        assert_eq!(
            Value::time(at).instant(),
            Some(&Instant::from_timestamp(at))
        );
    }

    #[test]
    fn binary_values_decode_base64() {
        assert_eq!(
            Value::binary("aGk=").unwrap().binary.as_deref(),
            Some(&b"hi"[..])
        );
        assert!(Value::binary("not base64!").is_none());
    }

    #[test]
    fn readings_are_parsed_on_first_use_and_kept() {
        let value = Value::new("1535716800");
        assert!(value.number.get().is_none() && value.time.get().is_none());
        assert!(value.ip.get().is_none(), "nothing parsed before use");
        let number = value.number();
        assert_eq!(number, "1535716800".parse().ok());
        assert_eq!(value.number.get(), Some(&number), "kept");
        assert_eq!(value.number(), number, "read twice, the same");
        assert!(
            value.time.get().is_none(),
            "only the reading used is parsed"
        );
        assert_eq!(value.instant(), parse_instant("1535716800").as_ref());
        assert_eq!(value.ip(), None);
        assert_eq!(value.ip.get(), Some(&None), "a failed reading is kept too");
        assert_eq!(value.boolean(), None);
    }

    #[test]
    fn a_value_that_is_no_number_stays_no_number() {
        let value = Value::new("12abc");
        assert_eq!(value.number(), None);
        assert_eq!(value.number(), None, "read twice");
        assert_eq!(value.instant(), None);
        let value = Value::from_static("TRUE");
        assert_eq!((value.boolean(), value.number()), (Some(true), None));
        let value = Value::new("::ffff:192.0.2.1");
        assert_eq!(value.ip(), "192.0.2.1".parse().ok(), "IPv4-mapped is IPv4");
        assert_eq!(value.ip(), "192.0.2.1".parse().ok());
    }

    #[test]
    fn every_reading_is_the_eager_one() {
        // Whatever is read first, each reading equals what the parsers give for the text.
        let texts = [
            "",
            "0",
            "-1.5",
            "+.5",
            "2018",
            "2018-08-31T12:00Z",
            "1535716800",
            "true",
            "False",
            "10.0.0.1",
            "2001:db8::1",
            "1e3",
            " 1",
            "99999999999999999999999",
        ];
        for order in 0..3 {
            for text in texts {
                let value = Value::new(text);
                let read = |which: usize| match which {
                    0 => assert_eq!(value.number(), text.parse().ok(), "{text:?}"),
                    1 => assert_eq!(value.instant(), parse_instant(text).as_ref(), "{text:?}"),
                    _ => assert_eq!(value.ip(), parse_ip(text), "{text:?}"),
                };
                for step in 0..3 {
                    read((order + step) % 3);
                }
                let fresh = Value::new(text);
                assert_eq!(value, fresh, "parsed or not, the same value");
                assert_eq!(value.clone().number(), fresh.number());
                assert_eq!(value.boolean(), parse_bool(text));
            }
        }
    }

    #[test]
    fn current_time_text_is_strftime() {
        for seconds in [0, 1_535_716_800, 1_764_300_000, 253_402_000_000, -1, 86_399] {
            let at = Timestamp::from_second(seconds).unwrap();
            assert_eq!(
                current_time_text(at),
                at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            );
        }
        let at = Timestamp::new(1_535_716_800, 999_999_999).unwrap();
        assert_eq!(current_time_text(at), "2018-08-31T12:00:00Z", "no fraction");
        for at in [Timestamp::MIN, Timestamp::MAX] {
            assert_eq!(
                current_time_text(at),
                at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            );
        }
    }

    #[test]
    fn known_keys_keep_their_spelling_and_case() {
        let mut ctx = Context::new();
        ctx.set("AWS:SOURCEIP", Value::from_static("10.0.0.1"))
            .set("ses:FromAddress", Value::new("a@b.c"))
            .set("x:Other", Value::new("1"));
        let keys: Vec<&str> = ctx.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["AWS:SOURCEIP", "ses:FromAddress", "x:Other"]);
        assert_eq!(
            ctx.get("aws:sourceip").unwrap().values()[0].ip(),
            "10.0.0.1".parse().ok()
        );
        assert_eq!(ctx.get("X:OTHER").unwrap().values()[0].text(), "1");
    }

    /// Key names are case-insensitive: every known key, in every ASCII case a policy may use,
    /// finds the value the gateway set under its own spelling (and the reverse), as an unknown
    /// key does; a non-ASCII look-alike (`ı`, `ſ`, the Kelvin sign) is another key, as before
    /// the known spellings were matched first.
    #[test]
    fn known_keys_are_found_in_every_case_and_look_alikes_are_not() {
        let variants = |name: &str| -> Vec<String> {
            let upper = name.to_ascii_uppercase();
            let lower = name.to_ascii_lowercase();
            let alternate: String = name
                .chars()
                .enumerate()
                .map(|(n, c)| {
                    if n % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            vec![name.to_owned(), upper, lower, alternate]
        };
        for (index, known) in KNOWN_SPELLINGS.iter().enumerate() {
            for set_as in variants(known) {
                let mut ctx = Context::new();
                ctx.set(&set_as, Value::new(format!("v{index}")));
                for asked in variants(known) {
                    let key = Key::new(&asked);
                    assert_eq!(key.slot, Some(index), "{asked}");
                    assert_eq!(key.lower.as_ref(), known.to_ascii_lowercase(), "{asked}");
                    let entry = ctx
                        .entry(&key)
                        .unwrap_or_else(|| panic!("{set_as} / {asked}"));
                    assert_eq!(entry.values()[0].text(), format!("v{index}"));
                    assert_eq!(ctx.resolve(&key), Some(format!("v{index}").as_str()));
                }
            }
        }
        let mut ctx = Context::new();
        ctx.set("aws:SourceIp", Value::new("10.0.0.1"))
            .set("aws:username", Value::new("alice"))
            .set("ses:FromAddress", Value::new("a@b.c"));
        for look_alike in [
            "aws:Sourceıp",
            "aws:ſourceIp",
            "aws:userName\u{200b}",
            "aws:\u{212a}ey",
            "ses:FromAddress ",
            " ses:FromAddress",
            "ses:FromAddresś",
        ] {
            let key = Key::new(look_alike);
            assert_eq!(key.slot, None, "{look_alike:?}");
            assert!(ctx.entry(&key).is_none(), "{look_alike:?}");
        }
    }

    /// A value read lazily compares as the eager reading did for the odd forms a client or an
    /// upstream path could put in a context value: IPv4 with leading zeros or fewer parts, a
    /// zone, a mapped IPv6, padded numbers and dates. Each reading is also stable when asked
    /// again after the others.
    #[test]
    fn odd_forms_read_lazily_as_eagerly() {
        let texts = [
            "127.000.000.001",
            "127.1",
            "0x7f.0.0.1",
            "127.0.0.1 ",
            "127.0.0.1/32",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "fe80::1%eth0",
            "[::1]",
            "::1",
            "1_000",
            "0001",
            "1e3",
            "-0",
            "+1",
            ".5",
            "5.",
            "1535716800.0",
            "2018-02-30",
            "2018-08-31T12:00:60Z",
            "2018-08-31t12:00z",
            "١٢٣",
            "TRUE ",
        ];
        for text in texts {
            let lazy = Value::new(text);
            for _ in 0..2 {
                assert_eq!(lazy.ip(), parse_ip(text), "{text:?}");
                assert_eq!(lazy.number(), text.parse::<Decimal>().ok(), "{text:?}");
                assert_eq!(lazy.instant(), parse_instant(text).as_ref(), "{text:?}");
                assert_eq!(lazy.boolean(), parse_bool(text), "{text:?}");
            }
        }
        // The IPv4 forms that are no dotted quad are no address at all (never a wider match).
        for text in [
            "127.1",
            "0x7f.0.0.1",
            "127.000.000.001",
            "127.0.0.1 ",
            "[::1]",
        ] {
            assert_eq!(Value::new(text).ip(), None, "{text:?}");
        }
        assert_eq!(
            Value::new("::ffff:127.0.0.1").ip(),
            "127.0.0.1".parse().ok()
        );
    }
}
