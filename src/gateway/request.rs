//! One SMTP transaction as one `ses:SendRawEmail` request (SPEC §2–4): the condition context
//! from the envelope, the `From:` header and the connection, and the resources from the
//! verified identities, the `X-SES-*` headers and the sandbox rule. Pure: the clock is an
//! argument, nothing is read or written.
//!
//! Ambiguity fails closed (SPEC §3): the header section is read once by sesgate's own strict
//! reader (`headers.rs`), the From and Sender mailboxes by its own strict address reader
//! (`address.rs`), so that what is evaluated is what the upstream and every mail client read
//! from the relayed bytes. A malformed header section, no `From:`, a security-relevant header
//! (From, Sender, Return-Path, User-Agent, X-Mailer, any `X-SES-*`) given twice, empty or with
//! 8-bit bytes, an address sesgate cannot read unambiguously, an `X-SES-*-ARN` that is not an
//! identity ARN of this region or does not cover the address it stands for: each is refused,
//! never evaluated against a guess.
//!
//! Sending authorization (SPEC §4): an `X-SES-*-ARN` may name an identity of another account
//! (its owner). Such an identity is verified by its owner, so the sender needs no verified
//! identity of its own for the addresses it covers; whether the sender may use it is decided by
//! the policies (the caller's and the identity's, `decide.rs`). An identity the gateway knows
//! nothing of is never taken as verified for the caller's own account.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use mail_parser::MessageParser;

use super::address::{self, Mailbox, MailboxError};
use super::headers::{self, Field, Section};
use crate::iam::{Context, Value};

/// The IAM user a session authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// `arn:aws:iam::ACCOUNT:user/PATH/NAME`.
    pub arn: String,
    pub id: Option<String>,
    /// The 12-digit account the user belongs to (`account` in `iam.toml`, else `[account] id`).
    pub account: String,
}

/// The account facts that shape requests (`[account]`, and the owners of `[[identity]]`s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub region: String,
    /// Verified identities of this account, canonical (domains lower-cased; email identities
    /// keep their local part). Empty: the From domain is the identity.
    pub identities: Vec<String>,
    /// Identity -> configuration set applied to mail sent through it.
    pub default_configuration_sets: BTreeMap<String, String>,
    pub sandbox: bool,
    /// The verified identities of other accounts (`[[identity]]` with their `account`), by
    /// owner, canonical. An account absent here has no identity the gateway knows.
    pub others: BTreeMap<String, Vec<String>>,
}

impl Account {
    fn arn(&self, kind: &str, name: &str) -> String {
        self.arn_in(&self.id, kind, name)
    }

    /// The ARN of a resource of `owner`.
    pub fn arn_in(&self, owner: &str, kind: &str, name: &str) -> String {
        // Pieces pushed into one exact allocation: this runs for every resource of every
        // transaction, and `format!` costs several times more.
        let partition = partition(&self.region);
        let mut arn = String::with_capacity(
            "arn::ses:::/".len()
                + partition.len()
                + self.region.len()
                + owner.len()
                + kind.len()
                + name.len(),
        );
        for piece in [
            "arn:",
            partition,
            ":ses:",
            &self.region,
            ":",
            owner,
            ":",
            kind,
            "/",
            name,
        ] {
            arn.push_str(piece);
        }
        arn
    }

    /// The most specific verified identity of `owner` covering `address`: this account's as
    /// [`Self::identity_for`] finds it; another account's among its configured identities only.
    pub fn identity_of(&self, owner: &str, address: &str) -> Option<String> {
        self.identity_of_ref(owner, address).map(str::to_owned)
    }

    /// [`Self::identity_of`], borrowed from the configuration or from `address`: no allocation
    /// for the checks every transaction makes.
    fn identity_of_ref<'s>(&'s self, owner: &str, address: &'s str) -> Option<&'s str> {
        if owner == self.id {
            return self.identity_for_ref(address);
        }
        let identities = self.others.get(owner)?;
        most_specific(identities, address)
    }

    /// Whether `identity` (canonical) is a verified identity of `owner`. This account with no
    /// identities configured takes every name as verified (the From domain rule); an account
    /// the gateway knows no identity of, none.
    fn verifies(&self, owner: &str, identity: &str) -> bool {
        if owner == self.id {
            self.identities.is_empty() || self.identities.iter().any(|i| i == identity)
        } else {
            self.others
                .get(owner)
                .is_some_and(|list| list.iter().any(|i| i == identity))
        }
    }

    /// The most specific verified identity covering `address` (canonical): the address itself,
    /// else its domain or the nearest verified parent domain. With no identities configured,
    /// the address's domain.
    pub fn identity_for(&self, address: &str) -> Option<String> {
        self.identity_for_ref(address).map(str::to_owned)
    }

    fn identity_for_ref<'s>(&'s self, address: &'s str) -> Option<&'s str> {
        let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
        if self.identities.is_empty() {
            return Some(domain);
        }
        most_specific(&self.identities, address)
    }
}

/// The most specific of `identities` covering `address`: the address itself, else its domain or
/// the nearest listed parent domain.
fn most_specific<'s>(identities: &'s [String], address: &'s str) -> Option<&'s str> {
    if identities.iter().any(|i| i == address) {
        return Some(address);
    }
    let mut candidate = address.rsplit_once('@').map_or(address, |(_, d)| d);
    loop {
        if identities.iter().any(|i| i == candidate) {
            return Some(candidate);
        }
        candidate = candidate.split_once('.')?.1;
    }
}

/// What the transaction is, beyond the message and who sent it: the SMTP facts the request
/// is built from (not `smtp::conn::Connection`, the socket).
#[derive(Debug, Clone, Copy)]
pub struct TransactionFacts<'a> {
    pub tls: bool,
    pub client: IpAddr,
    pub mail_from: &'a str,
    pub recipients: &'a [String],
}

/// The request to authorize.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub context: Context,
    /// Every resource the request must be allowed on, the identity first.
    pub resources: Vec<String>,
    /// The canonical From address and display name, for logs.
    pub from: String,
    pub display_name: Option<String>,
}

/// Why a transaction is refused before any policy is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The message cannot be read unambiguously: `554 Transaction failed: ...`.
    Ambiguous(String),
    /// Addresses no verified identity covers: SES's `554 Message rejected: ...`.
    Unverified(Vec<String>),
    /// An `X-SES-*-ARN` header that is not an identity ARN of the configured region: `554
    /// 5.6.0 Transaction failed: Invalid ARN ...`. Holds the value as sent.
    InvalidArn(String),
    /// A named identity that does not cover the address it stands for: SES's `554 5.7.1
    /// Message rejected: The address ... does not align with the given ARN ...`.
    Misaligned { address: String, arn: String },
}

/// An address as `Display` writes it; an IPv4 address (every IPv4 client, and every IPv4-mapped
/// one once canonical) without the formatting machinery, which costs more than the rest.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (index, octet) in v4.octets().into_iter().enumerate() {
        if index > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Lower-cases the domain part, keeps the local part as sent (SPEC §3).
pub fn canonical_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let mut canonical = String::with_capacity(address.len());
            canonical.push_str(local);
            canonical.push('@');
            canonical.push_str(domain);
            canonical[local.len() + 1..].make_ascii_lowercase();
            canonical
        }
        None => address.to_owned(),
    }
}

/// A configured identity in canonical form: an email identity as an address, a domain
/// lower-cased.
pub fn canonical_identity(identity: &str) -> String {
    if identity.contains('@') {
        canonical_address(identity)
    } else {
        identity.to_ascii_lowercase()
    }
}

/// Headers whose every occurrence matters to the decision: given twice, or empty, or with 8-bit
/// bytes, they are ambiguous (SPEC §3). Besides these, every `X-SES-*` header.
const SECURITY_HEADERS: &[&str] = &["From", "Sender", "Return-Path", "User-Agent", "X-Mailer"];

/// The headers whose values sesgate reads.
const READ_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Return-Path",
    "User-Agent",
    "X-Mailer",
    "X-SES-CONFIGURATION-SET",
    "X-SES-SOURCE-ARN",
    "X-SES-FROM-ARN",
    "X-SES-RETURN-PATH-ARN",
];

/// The longest `aws:UserAgent` value sesgate evaluates.
pub const MAX_USER_AGENT: usize = 998;
/// The longest ARN sesgate reads from a header.
pub const MAX_ARN: usize = 1024;

fn ambiguous(why: impl Into<String>) -> Refusal {
    Refusal::Ambiguous(why.into())
}

/// The name a reply uses for a security-relevant field: its canonical spelling, or for another
/// `X-SES-*` header the name as sent (printable ASCII), shortened.
fn reply_name(field: &Field<'_>) -> String {
    SECURITY_HEADERS
        .iter()
        .find(|known| field.is(known))
        .map(|known| known.to_string())
        .unwrap_or_else(|| field.name_str().chars().take(64).collect())
}

fn is_security_relevant(field: &Field<'_>) -> bool {
    SECURITY_HEADERS.iter().any(|known| field.is(known))
        || field
            .name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"X-SES-"))
}

/// The security-relevant fields of a well-formed header section, each read once: every one at
/// most once, not empty, ASCII only.
struct SecurityFields<'s> {
    /// A value on one line is borrowed from the message; only a folded one is copied.
    fields: Vec<(Field<'s>, Cow<'s, str>)>,
}

impl<'s> SecurityFields<'s> {
    fn read(section: &Section<'s>) -> Result<Self, Refusal> {
        let relevant: Vec<&Field<'s>> = section
            .fields
            .iter()
            .filter(|f| is_security_relevant(f))
            .collect();
        // Duplicates by sorting references: linear-logarithmic and no copies, even for
        // thousands of distinct `X-SES-*` names.
        let mut sorted = relevant.clone();
        sorted.sort_by(|a, b| {
            let a = a.name.iter().map(u8::to_ascii_lowercase);
            let b = b.name.iter().map(u8::to_ascii_lowercase);
            a.cmp(b)
        });
        if let Some(pair) = sorted
            .windows(2)
            .find(|w| w[0].name.eq_ignore_ascii_case(w[1].name))
        {
            return Err(ambiguous(format!(
                "Duplicate header '{}'",
                reply_name(pair[1])
            )));
        }
        let mut fields = Vec::with_capacity(relevant.len());
        for field in relevant {
            // Checked on the raw bytes: no copy of a field sesgate does not read.
            if field
                .raw_value
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                let name = reply_name(field);
                return Err(ambiguous(format!("Empty header '{name}'")));
            }
            if !field.raw_value.is_ascii() {
                let name = reply_name(field);
                return Err(ambiguous(format!("8-bit characters in header '{name}'")));
            }
            if !READ_HEADERS.iter().any(|read| field.is(read)) {
                continue;
            }
            fields.push((*field, unfolded_value(field)));
        }
        Ok(SecurityFields { fields })
    }

    /// The unfolded, trimmed value of the single `name` field.
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field.is(name))
            .map(|(_, value)| value.as_ref())
    }
}

/// The unfolded, trimmed value of an ASCII field, as [`Field::unfolded`] gives it. A field on
/// one line (no LF in its value; the strict reader allows no CR but in a CRLF) needs no
/// unfolding: its value is the raw value trimmed of spaces and tabs, borrowed.
fn unfolded_value<'s>(field: &Field<'s>) -> Cow<'s, str> {
    let raw = field.raw_value;
    if memchr::memchr(b'\n', raw).is_some() {
        return Cow::Owned(String::from_utf8(field.unfolded()).expect("ASCII"));
    }
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t');
    let start = raw.iter().position(|b| !is_blank(b)).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |i| i + 1);
    Cow::Borrowed(std::str::from_utf8(&raw[start..end]).expect("ASCII"))
}

/// The one mailbox of a `From:` or `Sender:` value.
fn mailbox(header: &str, value: &str) -> Result<Mailbox, Refusal> {
    address::parse_mailbox(value.as_bytes()).map_err(|error| match error {
        MailboxError::Empty => ambiguous(format!("Empty header '{header}'")),
        MailboxError::Several => {
            ambiguous(format!("the {header} header holds more than one mailbox"))
        }
        MailboxError::Group => ambiguous(format!("the {header} header is a group")),
        MailboxError::Invalid(why) => {
            ambiguous(format!("the {header} header cannot be parsed: {why}"))
        }
    })
}

/// The display name for `ses:FromDisplayName`: encoded-words decoded (RFC 2047; mail-parser
/// decodes only this phrase, never anything that is evaluated as an address), white space
/// collapsed.
fn display_name(mailbox: &Mailbox) -> Option<String> {
    let raw = mailbox.display_name.as_deref()?;
    let decoded: Cow<'_, str> = if mailbox.encoded {
        let header = format!("Subject: {raw}\r\n\r\n");
        Cow::Owned(
            MessageParser::new()
                .parse_headers(header.as_bytes())
                .and_then(|m| m.subject().map(str::to_owned))
                .unwrap_or_else(|| raw.to_owned()),
        )
    } else {
        Cow::Borrowed(raw)
    };
    // White space runs collapsed to one space, in place of split/collect/join.
    let mut name = String::with_capacity(decoded.len());
    for word in decoded.split_whitespace() {
        if !name.is_empty() {
            name.push(' ');
        }
        name.push_str(word);
    }
    (!name.is_empty()).then_some(name)
}

/// A client `Return-Path:` header: `<>` (nothing to check) or one address.
fn return_path(value: &str) -> Result<Option<String>, Refusal> {
    // `<>` with any spaces and tabs around or between, compared without a copy.
    let compact = value.chars().filter(|c| !matches!(c, ' ' | '\t'));
    if compact.eq("<>".chars()) {
        return Ok(None);
    }
    match address::parse_mailbox(value.as_bytes()) {
        Ok(Mailbox {
            address,
            display_name: None,
            ..
        }) => Ok(Some(address)),
        _ => Err(ambiguous("the Return-Path header cannot be parsed")),
    }
}

/// An identity ARN named by an `X-SES-*-ARN` header.
#[derive(Debug, Clone)]
struct NamedIdentity {
    /// The ARN as sent, for replies.
    given: String,
    /// The identity, canonical.
    identity: String,
    /// The account that owns it (the ARN's account).
    owner: String,
}

/// The partition of a region's ARNs.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Reads `arn:aws:ses:REGION:ACCOUNT:identity/NAME` of the configured region (SPEC §4), of any
/// owner: whether the caller may use another account's identity is the policies' to decide.
fn named_identity(given: &str, account: &Account) -> Result<NamedIdentity, Refusal> {
    let invalid = || Refusal::InvalidArn(given.to_owned());
    if given.len() > MAX_ARN {
        return Err(invalid());
    }
    let parts: Vec<&str> = given.splitn(6, ':').collect();
    let [prefix, arn_partition, service, region, owner, resource] = parts.as_slice() else {
        return Err(invalid());
    };
    let name = resource.strip_prefix("identity/").ok_or_else(invalid)?;
    if *prefix != "arn"
        || *arn_partition != partition(&account.region)
        || *service != "ses"
        || *region != account.region
        || owner.len() != 12
        || !owner.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let identity = parse_identity_name(name).ok_or_else(invalid)?;
    Ok(NamedIdentity {
        given: given.to_owned(),
        identity,
        owner: (*owner).to_owned(),
    })
}

/// An identity name (a domain, or an address read strictly) in canonical form; `None` when it is
/// neither, or when reading it would change it beyond the domain's case (SES looks the name up,
/// it never unquotes `"x"@example.com` into another identity).
pub fn parse_identity_name(name: &str) -> Option<String> {
    let identity = if name.contains('@') {
        address::parse_addr_spec(name).ok()?
    } else if address::is_domain(name) {
        name.to_ascii_lowercase()
    } else {
        return None;
    };
    (identity == canonical_identity(name)).then_some(identity)
}

/// Whether `identity` (canonical: an address or a domain) covers `address` (canonical): the
/// address itself, its domain or a parent domain.
pub fn covers(identity: &str, address: &str) -> bool {
    if identity.contains('@') {
        return identity == address;
    }
    let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
    domain == identity
        || domain
            .strip_suffix(identity)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// A configuration set name as SES accepts it: 1-64 of `[A-Za-z0-9_-]`.
fn is_configuration_set_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Builds the request for one transaction of `principal` at `now`.
pub fn build(
    message: &[u8],
    connection: TransactionFacts<'_>,
    principal: &Principal,
    account: &Account,
    limits: &headers::Limits,
    now: Timestamp,
) -> Result<SendRequest, Refusal> {
    // The header section, read once and strictly; every header below comes from it.
    let section = headers::read(message, limits).map_err(|m| Refusal::Ambiguous(m.0))?;
    let fields = SecurityFields::read(&section)?;
    let from_mailbox = mailbox(
        "From",
        fields
            .get("From")
            .ok_or_else(|| ambiguous("the message has no From header"))?,
    )?;
    let display_name = display_name(&from_mailbox);
    let from = from_mailbox.address;
    if display_name
        .as_ref()
        .is_some_and(|n| n.len() > address::MAX_DISPLAY_NAME)
    {
        return Err(ambiguous("the From display name is longer than 998 bytes"));
    }
    let sender = fields
        .get("Sender")
        .map(|value| mailbox("Sender", value).map(|m| m.address))
        .transpose()?;
    let return_path_header = fields
        .get("Return-Path")
        .map(return_path)
        .transpose()?
        .flatten();
    let configuration_set = match fields.get("X-SES-CONFIGURATION-SET") {
        Some(name) if !is_configuration_set_name(name) => {
            return Err(ambiguous("Invalid configuration set name"));
        }
        given => given.map(str::to_owned),
    };
    let user_agent = fields.get("User-Agent").or_else(|| fields.get("X-Mailer"));
    if user_agent.is_some_and(|agent| agent.len() > MAX_USER_AGENT) {
        return Err(ambiguous("the User-Agent header is longer than 998 bytes"));
    }
    let named = |name: &str| {
        fields
            .get(name)
            .map(|arn| named_identity(arn, account))
            .transpose()
    };
    let from_arn = named("X-SES-FROM-ARN")?;
    let source_arn = named("X-SES-SOURCE-ARN")?;
    let return_path_arn = named("X-SES-RETURN-PATH-ARN")?;

    let mail_from =
        (!connection.mail_from.is_empty()).then(|| canonical_address(connection.mail_from));
    let recipients: Vec<String> = connection
        .recipients
        .iter()
        .map(|r| canonical_address(r))
        .collect();
    let caller_account = principal.account.as_str();

    // Each named identity must cover the address it stands for (SPEC §4). With no identities
    // configured, only the address's own domain (or the address) counts as this account's
    // verified identity: a parent such as `identity/com` would otherwise stand for every `.com`
    // sender and dodge a Deny written on `identity/example.com`.
    let stands_for = |named: &NamedIdentity, address: &str| {
        if named.owner == account.id && account.identities.is_empty() {
            let identity = named.identity.as_str();
            identity == address || address.rsplit_once('@').is_some_and(|(_, d)| d == identity)
        } else {
            covers(&named.identity, address)
        }
    };
    let misaligned = |address: &str, named: &NamedIdentity| Refusal::Misaligned {
        address: address.to_owned(),
        arn: named.given.clone(),
    };
    if let Some(named) = &from_arn
        && !stands_for(named, &from)
    {
        return Err(misaligned(&from, named));
    }
    if let Some(named) = &source_arn {
        if from_arn.is_none() && !stands_for(named, &from) {
            return Err(misaligned(&from, named));
        }
        if let Some(mail_from) = &mail_from
            && !stands_for(named, mail_from)
        {
            return Err(misaligned(mail_from, named));
        }
    }
    if let Some(named) = &return_path_arn {
        match &mail_from {
            Some(mail_from) if stands_for(named, mail_from) => {}
            // A null reverse-path has no address for the ARN to stand for.
            Some(mail_from) => return Err(misaligned(mail_from, named)),
            None => return Err(misaligned("<>", named)),
        }
    }

    // Verification, as SES checks it: From, Sender, a client Return-Path header, MAIL FROM,
    // every named identity, and in the sandbox every recipient. An address is verified by an
    // identity of the caller's own account that covers it, or by the named identity that
    // stands for it (verified by its owner: a delegate needs no identity of its own).
    let from_named = from_arn.as_ref().or(source_arn.as_ref());
    let mail_from_named = return_path_arn.as_ref().or(source_arn.as_ref());
    let own = |address: &str| account.identity_of_ref(caller_account, address).is_some();
    let named_covers = |named: Option<&NamedIdentity>, address: &str| {
        named.is_some_and(|n| stands_for(n, address))
    };
    let mut unverified = Vec::new();
    let mut check = |address: &String, verified: bool| {
        if !verified && !unverified.contains(address) {
            unverified.push(address.clone());
        }
    };
    // Aligned above: a From named identity stands for From, a MAIL FROM one for MAIL FROM.
    check(&from, from_named.is_some() || own(&from));
    if let Some(sender) = &sender {
        check(sender, named_covers(from_named, sender) || own(sender));
    }
    if let Some(header) = &return_path_header {
        let named = named_covers(mail_from_named, header) || named_covers(from_named, header);
        check(header, named || own(header));
    }
    if let Some(mail_from) = &mail_from {
        check(mail_from, mail_from_named.is_some() || own(mail_from));
    }
    for named in [&from_arn, &source_arn, &return_path_arn]
        .into_iter()
        .flatten()
    {
        // An identity of an account the gateway knows nothing of is another account's: the
        // policy evaluation decides (and, with no policy of it known, refuses). The caller's own
        // account and every configured owner verify their identities here.
        let unknown_owner = named.owner != account.id && !account.others.contains_key(&named.owner);
        let delegated = unknown_owner && named.owner != caller_account;
        if !delegated
            && !account.verifies(&named.owner, &named.identity)
            && !unverified.contains(&named.identity)
        {
            unverified.push(named.identity.clone());
        }
    }
    let mut recipient_identities = Vec::new();
    if account.sandbox {
        for recipient in &recipients {
            match account.identity_for(recipient) {
                Some(identity) => recipient_identities.push(identity),
                None if !unverified.contains(recipient) => unverified.push(recipient.clone()),
                None => {}
            }
        }
    }
    if !unverified.is_empty() {
        return Err(Refusal::Unverified(unverified));
    }

    // The From address's resource: its named identity (of its owner), else the caller's own
    // account's verified identity covering it.
    let (from_owner, from_identity) = match from_named {
        Some(named) => (named.owner.clone(), named.identity.clone()),
        None => (
            caller_account.to_owned(),
            account
                .identity_of(caller_account, &from)
                .expect("checked above"),
        ),
    };
    let mut resources = vec![account.arn_in(&from_owner, "identity", &from_identity)];
    for named in [&source_arn, &return_path_arn].into_iter().flatten() {
        let arn = account.arn_in(&named.owner, "identity", &named.identity);
        if !resources.contains(&arn) {
            resources.push(arn);
        }
    }
    // A named identity never stands in for the identity its owner would use for the same
    // address without the header: naming `identity/example.com` for `ceo@example.com` must not
    // skip the Deny (or the sending authorization policies) written on the more specific
    // `identity/ceo@example.com`, since "policies that you attach to email address identities
    // take precedence over policies that you attach to their corresponding domain identities"
    // (ses-iam-facts.md B6); and with no identities configured (the From domain is the
    // identity), naming `identity/ceo@example.com` must not skip a Deny on
    // `identity/example.com`. Both are evaluated, so the request needs both to allow it.
    let more_specific = |named: Option<&NamedIdentity>, address: &str| {
        let named = named.filter(|n| stands_for(n, address))?;
        let default = account.identity_of_ref(&named.owner, address)?;
        (default != named.identity).then(|| account.arn_in(&named.owner, "identity", default))
    };
    let addresses_named = [
        (from_named, Some(&from)),
        (mail_from_named, mail_from.as_ref()),
        (from_named, sender.as_ref()),
        (mail_from_named, return_path_header.as_ref()),
        (from_named, return_path_header.as_ref()),
    ];
    for (named, address) in addresses_named {
        if let Some(arn) = address.and_then(|a| more_specific(named, a))
            && !resources.contains(&arn)
        {
            resources.push(arn);
        }
    }
    // Configuration sets are the sender's own (SES applies the caller account's sets); an
    // identity's default set (`[account] default_configuration_sets`) is this account's, for
    // this account's senders.
    let configuration_set = configuration_set.or_else(|| {
        (from_owner == account.id && caller_account == account.id)
            .then(|| {
                account
                    .default_configuration_sets
                    .get(&from_identity)
                    .cloned()
            })
            .flatten()
    });
    if let Some(set) = configuration_set {
        resources.push(account.arn_in(caller_account, "configuration-set", &set));
    }
    for identity in recipient_identities {
        let arn = account.arn("identity", &identity);
        if !resources.contains(&arn) {
            resources.push(arn);
        }
    }

    let mut context = Context::new();
    context
        .set("ses:ApiVersion", Value::from_static("2"))
        .set("ses:FromAddress", Value::new(from.as_str()))
        .set_multi(
            "ses:Recipients",
            // The canonical recipients are not needed past here: moved, not copied.
            recipients.into_iter().map(Value::new).collect(),
        )
        .set("aws:CurrentTime", Value::time(now))
        .set("aws:EpochTime", Value::new(now.as_second().to_string()))
        .set(
            "aws:SecureTransport",
            Value::from_static(if connection.tls { "true" } else { "false" }),
        )
        .set(
            "aws:SourceIp",
            Value::new(ip_text(connection.client.to_canonical())),
        )
        .set("aws:username", Value::new(principal.name.as_str()))
        .set("aws:PrincipalArn", Value::new(principal.arn.as_str()))
        .set("aws:PrincipalAccount", Value::new(caller_account))
        .set("aws:PrincipalType", Value::from_static("User"))
        .set("aws:RequestedRegion", Value::new(account.region.as_str()));
    if let Some(id) = &principal.id {
        context.set("aws:userid", Value::new(id.as_str()));
    }
    if let Some(name) = &display_name {
        context.set("ses:FromDisplayName", Value::new(name.as_str()));
    }
    if let Some(mail_from) = mail_from {
        context.set("ses:FeedbackAddress", Value::new(mail_from));
    }
    if let Some(agent) = user_agent {
        context.set("aws:UserAgent", Value::new(agent));
    }
    Ok(SendRequest {
        context,
        resources,
        from,
        display_name,
    })
}

/// The hostile header table shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/common/hostile.rs"]
mod hostile_table;

#[cfg(test)]
mod tests {
    use super::hostile_table as hostile;
    use super::*;

    #[test]
    fn ip_text_is_display() {
        for ip in [
            "0.0.0.0",
            "203.0.113.7",
            "10.9.99.100",
            "255.255.255.255",
            "1.20.199.250",
            "2001:db8::1",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for n in 0..=255u8 {
            let ip = IpAddr::from([n, 255 - n, n / 3, 7]);
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn account(identities: &[&str]) -> Account {
        Account {
            id: "123456789012".into(),
            region: "us-east-1".into(),
            identities: identities.iter().map(|s| s.to_string()).collect(),
            default_configuration_sets: BTreeMap::new(),
            sandbox: false,
            others: BTreeMap::new(),
        }
    }

    fn principal() -> Principal {
        Principal {
            name: "app".into(),
            arn: "arn:aws:iam::123456789012:user/apps/app".into(),
            id: Some("AIDAEXAMPLE".into()),
            account: "123456789012".into(),
        }
    }

    fn run(message: &str, account: &Account) -> Result<SendRequest, Refusal> {
        let recipients = vec!["Rcpt@Example.COM".to_owned()];
        let connection = TransactionFacts {
            tls: true,
            client: "::ffff:203.0.113.7".parse().unwrap(),
            mail_from: "bounce@Example.com",
            recipients: &recipients,
        };
        build(
            message.as_bytes(),
            connection,
            &principal(),
            account,
            &headers::Limits::default(),
            Timestamp::from_second(1_535_716_800).unwrap(),
        )
    }

    fn text(ctx: &Context, key: &str) -> Option<String> {
        ctx.get(key).map(|e| e.values()[0].text().to_owned())
    }

    #[test]
    fn context_keys() {
        let request = run(
            "From: \"Marketing Team\" <News@EXAMPLE.com>\r\nUser-Agent: legacy/1.0\r\nSubject: x\r\n\r\nbody\r\n",
            &account(&[]),
        )
        .unwrap();
        let ctx = &request.context;
        assert_eq!(
            text(ctx, "ses:FromAddress").as_deref(),
            Some("News@example.com")
        );
        assert_eq!(
            text(ctx, "ses:FromDisplayName").as_deref(),
            Some("Marketing Team")
        );
        assert_eq!(
            text(ctx, "ses:FeedbackAddress").as_deref(),
            Some("bounce@example.com")
        );
        assert_eq!(
            text(ctx, "ses:Recipients").as_deref(),
            Some("Rcpt@example.com")
        );
        assert!(ctx.get("ses:Recipients").unwrap().is_multi());
        assert_eq!(text(ctx, "ses:ApiVersion").as_deref(), Some("2"));
        assert_eq!(
            text(ctx, "aws:CurrentTime").as_deref(),
            Some("2018-08-31T12:00:00Z")
        );
        assert_eq!(text(ctx, "aws:EpochTime").as_deref(), Some("1535716800"));
        assert_eq!(text(ctx, "aws:SecureTransport").as_deref(), Some("true"));
        assert_eq!(text(ctx, "aws:SourceIp").as_deref(), Some("203.0.113.7"));
        assert_eq!(text(ctx, "aws:UserAgent").as_deref(), Some("legacy/1.0"));
        assert_eq!(text(ctx, "aws:username").as_deref(), Some("app"));
        assert_eq!(text(ctx, "aws:userid").as_deref(), Some("AIDAEXAMPLE"));
        assert_eq!(
            request.resources,
            ["arn:aws:ses:us-east-1:123456789012:identity/example.com"]
        );
    }

    #[test]
    fn encoded_display_names_are_decoded() {
        let request = run(
            "From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <j@example.com>\r\n\r\n",
            &account(&[]),
        )
        .unwrap();
        assert_eq!(request.display_name.as_deref(), Some("Jürgen Müller"));
        let request = run(
            "From: j@example.com\r\nX-Mailer: mailer 2\r\n\r\n",
            &account(&[]),
        )
        .unwrap();
        assert_eq!(request.display_name, None);
        assert!(request.context.get("ses:FromDisplayName").is_none());
        assert_eq!(
            text(&request.context, "aws:UserAgent").as_deref(),
            Some("mailer 2")
        );
    }

    #[test]
    fn ambiguous_from_is_refused() {
        let cases = [
            ("Subject: none\r\n\r\nx\r\n", "no From header"),
            (
                "From: a@example.com\r\nFrom: b@evil.test\r\n\r\n",
                "Duplicate header 'From'",
            ),
            (
                "From: a@example.com, b@example.com\r\n\r\n",
                "more than one mailbox",
            ),
            ("From: Team: a@example.com, b@example.com;\r\n\r\n", "group"),
            ("From: not an address\r\n\r\n", "cannot be parsed"),
        ];
        for (message, why) in cases {
            match run(message, &account(&[])) {
                Err(Refusal::Ambiguous(reason)) => {
                    assert!(reason.contains(why), "{message:?}: {reason}")
                }
                other => panic!("{message:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn identities_and_resources() {
        let account = Account {
            default_configuration_sets: [("example.com".to_owned(), "marketing".to_owned())].into(),
            ..account(&[
                "example.com",
                "news@example.com",
                "sub.other.org",
                "other.org",
            ])
        };
        let identity = |message: &str| run(message, &account).map(|r| r.resources);
        assert_eq!(
            identity("From: news@example.com\r\n\r\n").unwrap(),
            ["arn:aws:ses:us-east-1:123456789012:identity/news@example.com"],
            "the email identity is preferred over its domain"
        );
        assert_eq!(
            identity("From: x@example.com\r\n\r\n").unwrap(),
            [
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
                "arn:aws:ses:us-east-1:123456789012:configuration-set/marketing"
            ]
        );
        assert_eq!(
            identity("From: x@deep.sub.other.org\r\n\r\n").unwrap(),
            ["arn:aws:ses:us-east-1:123456789012:identity/sub.other.org"],
            "the deepest verified parent domain"
        );
        assert_eq!(
            identity("From: x@example.com\r\nX-SES-CONFIGURATION-SET: audit\r\n\r\n").unwrap()[1],
            "arn:aws:ses:us-east-1:123456789012:configuration-set/audit"
        );
        assert_eq!(
            identity(
                "From: news@partner.com\r\nX-SES-FROM-ARN: arn:aws:ses:us-east-1:999999999999:identity/partner.com\r\n\r\n"
            ),
            Ok(vec![
                "arn:aws:ses:us-east-1:999999999999:identity/partner.com".to_owned()
            ]),
            "another account's identity is the resource: its owner verified it, the policies decide"
        );
        assert_eq!(
            identity("From: x@unverified.net\r\n\r\n"),
            Err(Refusal::Unverified(vec!["x@unverified.net".into()]))
        );
    }

    #[test]
    fn unverified_mail_from_and_sandbox_recipients() {
        let mut account = account(&["example.com"]);
        let recipients = vec!["a@example.com".to_owned(), "b@elsewhere.net".to_owned()];
        let connection = |mail_from| TransactionFacts {
            tls: true,
            client: "127.0.0.1".parse().unwrap(),
            mail_from,
            recipients: &recipients,
        };
        let now = Timestamp::UNIX_EPOCH;
        let message = b"From: x@example.com\r\n\r\n";
        let limits = headers::Limits::default();
        assert_eq!(
            build(
                message,
                connection("bounce@elsewhere.net"),
                &principal(),
                &account,
                &headers::Limits::default(),
                now
            )
            .unwrap_err(),
            Refusal::Unverified(vec!["bounce@elsewhere.net".into()])
        );
        assert!(
            build(
                message,
                connection(""),
                &principal(),
                &account,
                &limits,
                now
            )
            .is_ok(),
            "a null reverse-path is not checked"
        );
        account.sandbox = true;
        assert_eq!(
            build(
                message,
                connection(""),
                &principal(),
                &account,
                &limits,
                now
            )
            .unwrap_err(),
            Refusal::Unverified(vec!["b@elsewhere.net".into()])
        );
        account.identities.push("elsewhere.net".into());
        let request = build(
            message,
            connection(""),
            &principal(),
            &account,
            &limits,
            now,
        )
        .unwrap();
        assert_eq!(
            request.resources,
            [
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
                "arn:aws:ses:us-east-1:123456789012:identity/elsewhere.net"
            ]
        );
    }

    #[test]
    fn hostile_header_table() {
        let cases = hostile::cases();
        assert!(cases.len() >= 60, "{} cases", cases.len());
        let recipients = vec!["rcpt@example.net".to_owned()];
        for case in cases {
            let connection = TransactionFacts {
                tls: true,
                client: "127.0.0.1".parse().unwrap(),
                mail_from: "bounce@allowed.com",
                recipients: &recipients,
            };
            let account = account(&[]);
            let built = build(
                &case.message,
                connection,
                &principal(),
                &account,
                &headers::Limits::default(),
                Timestamp::UNIX_EPOCH,
            );
            let line = case.line;
            match (&case.expect, built) {
                (hostile::Expect::Allow { from, resource }, Ok(request)) => {
                    assert_eq!(&request.from, from, "line {line}");
                    assert_eq!(
                        text(&request.context, "ses:FromAddress").as_ref(),
                        Some(from),
                        "line {line}"
                    );
                    let expected = if resource.starts_with("arn:") {
                        resource.clone()
                    } else {
                        format!("arn:aws:ses:us-east-1:123456789012:{resource}")
                    };
                    assert_eq!(request.resources[0], expected, "line {line}");
                }
                (hostile::Expect::Refuse { reply }, Err(refusal)) => {
                    let super::super::decide::Ruling::Refused { reply: got, .. } =
                        super::super::decide::refused(refusal, "us-east-1")
                    else {
                        unreachable!()
                    };
                    let got = got.to_string();
                    assert!(got.starts_with("554 5."), "line {line}: {got}");
                    assert!(got.contains(reply.as_str()), "line {line}: {got}");
                }
                (expect, got) => panic!("line {line}: expected {expect:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn named_identities_replace_the_default_resource() {
        let account = account(&["example.com", "news@example.com", "bounces.example.com"]);
        let arn = "arn:aws:ses:us-east-1:123456789012:identity";
        let resources = |headers: &str| {
            run(
                &format!("From: news@example.com\r\n{headers}\r\nx\r\n"),
                &account,
            )
            .map(|r| r.resources)
        };
        assert_eq!(
            resources(&format!("X-SES-FROM-ARN: {arn}/EXAMPLE.com\r\n")).unwrap(),
            [
                format!("{arn}/example.com"),
                format!("{arn}/news@example.com")
            ],
            "the FROM-ARN is evaluated, canonical, and so is the more specific news@example.com \
             identity it would otherwise stand in for"
        );
        assert_eq!(
            resources(&format!("X-SES-SOURCE-ARN: {arn}/example.com\r\n")).unwrap(),
            [
                format!("{arn}/example.com"),
                format!("{arn}/news@example.com")
            ],
            "SOURCE-ARN covers From and MAIL FROM bounce@example.com"
        );
        assert_eq!(
            resources(&format!(
                "X-SES-FROM-ARN: {arn}/news@example.com\r\nX-SES-SOURCE-ARN: {arn}/example.com\r\nX-SES-RETURN-PATH-ARN: {arn}/example.com\r\n"
            ))
            .unwrap(),
            [format!("{arn}/news@example.com"), format!("{arn}/example.com")]
        );
        assert_eq!(
            resources(&format!("X-SES-FROM-ARN: {arn}/bounces.example.com\r\n")),
            Err(Refusal::Misaligned {
                address: "news@example.com".into(),
                arn: format!("{arn}/bounces.example.com")
            })
        );
        assert_eq!(
            resources(&format!(
                "X-SES-RETURN-PATH-ARN: {arn}/news@example.com\r\n"
            )),
            Err(Refusal::Misaligned {
                address: "bounce@example.com".into(),
                arn: format!("{arn}/news@example.com")
            })
        );
        assert_eq!(
            resources(&format!("X-SES-FROM-ARN: {arn}/com\r\n")),
            Err(Refusal::Unverified(vec!["com".into()])),
            "a named identity must itself be verified"
        );
        assert_eq!(
            resources(&format!("X-SES-FROM-ARN: {arn}/xample.com\r\n")),
            Err(Refusal::Misaligned {
                address: "news@example.com".into(),
                arn: format!("{arn}/xample.com")
            }),
            "a parent domain is a whole label"
        );
        assert!(covers("example.com", "a@sub.example.com"));
        assert!(!covers("example.com", "a@badexample.com"));
        assert!(!covers("a@example.com", "b@example.com"));
    }

    #[test]
    fn delegates_of_other_accounts() {
        // The gateway account 888888888888 owns example.com; 123456789012 has its own identity
        // partner.example; 555566667777 is unknown.
        let mut account = account(&["example.com"]);
        account.id = "888888888888".into();
        account.default_configuration_sets = [("example.com".into(), "owners".into())].into();
        account
            .others
            .insert("123456789012".into(), vec!["partner.example".into()]);
        let delegate = Principal {
            name: "partner".into(),
            arn: "arn:aws:iam::123456789012:user/partner".into(),
            id: None,
            account: "123456789012".into(),
        };
        let recipients = vec!["x@example.org".to_owned()];
        let build_as = |principal: &Principal, mail_from: &str, message: &str| {
            build(
                message.as_bytes(),
                TransactionFacts {
                    tls: true,
                    client: "127.0.0.1".parse().unwrap(),
                    mail_from,
                    recipients: &recipients,
                },
                principal,
                &account,
                &headers::Limits::default(),
                Timestamp::UNIX_EPOCH,
            )
        };
        let owner_arn = "arn:aws:ses:us-east-1:888888888888:identity";
        let source = format!("X-SES-SOURCE-ARN: {owner_arn}/example.com\r\n");
        let request = build_as(
            &delegate,
            "b@example.com",
            &format!("From: a@example.com\r\n{source}X-SES-CONFIGURATION-SET: mine\r\n\r\n"),
        )
        .unwrap();
        assert_eq!(
            request.resources,
            [
                format!("{owner_arn}/example.com"),
                "arn:aws:ses:us-east-1:123456789012:configuration-set/mine".into()
            ],
            "the identity is the owner's, the configuration set the delegate's own"
        );
        assert_eq!(
            text(&request.context, "aws:PrincipalAccount").as_deref(),
            Some("123456789012")
        );
        // The owner's default configuration set is not the delegate's.
        let request = build_as(
            &delegate,
            "b@example.com",
            &format!("From: a@example.com\r\n{source}\r\n"),
        )
        .unwrap();
        assert_eq!(request.resources, [format!("{owner_arn}/example.com")]);
        // A Sender or Return-Path header the named identity does not cover is the delegate's to
        // verify, and its account has no identity covering it.
        for header in ["Sender: s@evil.example", "Return-Path: <r@evil.example>"] {
            let refused = build_as(
                &delegate,
                "b@example.com",
                &format!("From: a@example.com\r\n{source}{header}\r\n\r\n"),
            );
            assert!(
                matches!(&refused, Err(Refusal::Unverified(list)) if list[0].ends_with("@evil.example")),
                "{header}: {refused:?}"
            );
        }
        // The delegate's own identity needs no ARN header; an unknown name of the owner account
        // is not verified; its own account's unknown identity neither.
        let own = build_as(
            &delegate,
            "b@partner.example",
            "From: a@partner.example\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            own.resources,
            ["arn:aws:ses:us-east-1:123456789012:identity/partner.example"]
        );
        assert_eq!(
            build_as(
                &delegate,
                "b@other.example",
                &format!(
                    "From: a@other.example\r\nX-SES-SOURCE-ARN: {owner_arn}/other.example\r\n\r\n"
                )
            )
            .unwrap_err(),
            Refusal::Unverified(vec!["other.example".into()])
        );
        assert_eq!(
            build_as(
                &delegate,
                "b@other.example",
                "From: a@other.example\r\nX-SES-SOURCE-ARN: arn:aws:ses:us-east-1:123456789012:identity/other.example\r\n\r\n"
            )
            .unwrap_err(),
            Refusal::Unverified(vec!["other.example".into()])
        );
        // An account the gateway knows nothing of: no verification here, the policies refuse.
        let unknown = "arn:aws:ses:us-east-1:555566667777:identity/example.com";
        let request = build_as(
            &delegate,
            "b@example.com",
            &format!("From: a@example.com\r\nX-SES-SOURCE-ARN: {unknown}\r\n\r\n"),
        )
        .unwrap();
        assert_eq!(request.resources, [unknown]);
    }

    #[test]
    fn many_distinct_ses_headers_cost_little() {
        let mut message = String::from("From: a@example.com\r\n");
        for i in 0..9_999 {
            message.push_str(&format!("X-SES-H{i}: {i}\r\n"));
        }
        message.push_str("\r\n");
        let started = std::time::Instant::now();
        assert!(run(&message, &account(&[])).is_ok());
        let elapsed = started.elapsed();
        eprintln!("10,000 header fields: {elapsed:?}");
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
    }
}
