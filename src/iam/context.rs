//! The request context: condition keys and their values for one request.
//!
//! Each value is parsed into every type it can be read as when it is added, so evaluating a
//! policy never parses: a `Numeric*` operator reads the number, a `Date*` operator the instant.

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine as _;
use jiff::Timestamp;

use super::pattern::Resolve;
use super::scalar::{Decimal, Instant, parse_bool, parse_instant, parse_ip};

/// One value of a context key, with its typed readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    text: Box<str>,
    pub(crate) number: Option<Decimal>,
    pub(crate) time: Option<Instant>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) boolean: Option<bool>,
    pub(crate) binary: Option<Box<[u8]>>,
}

impl Value {
    /// A value given as text (the form every context value has in AWS's simulator).
    pub fn new(text: impl Into<Box<str>>) -> Self {
        let text = text.into();
        Value {
            number: text.parse().ok(),
            time: parse_instant(&text),
            ip: parse_ip(&text),
            boolean: parse_bool(&text),
            binary: None,
            text,
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
        Value::new(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    }

    /// The value as text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The values of one key. `multi` marks a multivalued key (`ArrayOf...` types such as
/// `ses:Recipients`), which matters even when it holds one value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub(crate) values: Vec<Value>,
    pub(crate) multi: bool,
}

impl Entry {
    /// The values, in the order given.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// True for a multivalued key.
    pub fn is_multi(&self) -> bool {
        self.multi
    }
}

/// The keys a transaction's context always has (SPEC §3). They get fixed slots, so a compiled
/// condition finds its key by index instead of hashing a string on every evaluation.
const KNOWN_KEYS: [&str; 16] = [
    "ses:apiversion",
    "ses:fromaddress",
    "ses:fromdisplayname",
    "ses:feedbackaddress",
    "ses:recipients",
    "aws:currenttime",
    "aws:epochtime",
    "aws:securetransport",
    "aws:sourceip",
    "aws:useragent",
    "aws:username",
    "aws:userid",
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principaltype",
    "aws:requestedregion",
];

/// A condition key name, case-folded once (key names are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    lower: Box<str>,
    slot: Option<usize>,
}

impl Key {
    /// The key `name`, in any case.
    pub fn new(name: &str) -> Key {
        let lower = name.to_ascii_lowercase();
        let slot = KNOWN_KEYS.iter().position(|k| *k == lower);
        Key {
            lower: lower.into(),
            slot,
        }
    }

    /// The lower-cased name.
    pub fn as_str(&self) -> &str {
        &self.lower
    }
}

/// A key as it was spelled when set, with its values.
type Slot = (Box<str>, Entry);

/// Condition keys (case-insensitive) and their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    known: [Option<Slot>; KNOWN_KEYS.len()],
    other: HashMap<Box<str>, Slot>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a single-valued key.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        self.insert(key, vec![value], false)
    }

    /// Sets a multivalued key (possibly empty).
    pub fn set_multi(&mut self, key: &str, values: Vec<Value>) -> &mut Self {
        self.insert(key, values, true)
    }

    fn insert(&mut self, name: &str, values: Vec<Value>, multi: bool) -> &mut Self {
        let key = Key::new(name);
        let slot = (name.into(), Entry { values, multi });
        match key.slot {
            Some(index) => self.known[index] = Some(slot),
            None => {
                self.other.insert(key.lower, slot);
            }
        }
        self
    }

    /// The entry of a compiled key.
    #[inline]
    pub fn entry(&self, key: &Key) -> Option<&Entry> {
        let slot = match key.slot {
            Some(index) => self.known[index].as_ref(),
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
            .known
            .iter()
            .flatten()
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
            Some(Entry {
                values,
                multi: false,
            }) if values.len() == 1 => Some(values[0].text()),
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
        assert!(epoch.number.is_some() && epoch.time.is_some());
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
        assert_eq!(Value::time(at).time, Some(Instant::from_timestamp(at)));
    }

    #[test]
    fn binary_values_decode_base64() {
        assert_eq!(
            Value::binary("aGk=").unwrap().binary.as_deref(),
            Some(&b"hi"[..])
        );
        assert!(Value::binary("not base64!").is_none());
    }
}
