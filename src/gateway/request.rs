//! One SMTP transaction as one `ses:SendRawEmail` request (SPEC §2–4): the condition context
//! from the envelope, the `From:` header and the connection, and the resources from the
//! verified identities, the `X-SES-*` headers and the sandbox rule. Pure: the clock is an
//! argument, nothing is read or written.
//!
//! Ambiguity fails closed (SPEC §3): no `From:`, several `From:` headers, several mailboxes or a
//! group in it, or an address sesgate cannot read are refused, never evaluated against a guess.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser};

use crate::iam::{Context, Value};

/// The IAM user a session authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// `arn:aws:iam::ACCOUNT:user/PATH/NAME`.
    pub arn: String,
    pub id: Option<String>,
}

/// The account facts that shape requests (`[account]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub region: String,
    /// Verified identities, canonical (domains lower-cased; email identities keep their local
    /// part). Empty: the From domain is the identity.
    pub identities: Vec<String>,
    /// Identity -> configuration set applied to mail sent through it.
    pub default_configuration_sets: BTreeMap<String, String>,
    pub sandbox: bool,
}

impl Account {
    fn arn(&self, kind: &str, name: &str) -> String {
        format!("arn:aws:ses:{}:{}:{kind}/{name}", self.region, self.id)
    }

    /// The most specific verified identity covering `address` (canonical): the address itself,
    /// else its domain or the nearest verified parent domain. With no identities configured,
    /// the address's domain.
    pub fn identity_for(&self, address: &str) -> Option<String> {
        let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
        if self.identities.is_empty() {
            return Some(domain.to_owned());
        }
        if self.identities.iter().any(|i| i == address) {
            return Some(address.to_owned());
        }
        let mut candidate = domain;
        loop {
            if self.identities.iter().any(|i| i == candidate) {
                return Some(candidate.to_owned());
            }
            candidate = candidate.split_once('.')?.1;
        }
    }
}

/// What the transaction is, beyond the message.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
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
}

/// Lower-cases the domain part, keeps the local part as sent (SPEC §3).
pub fn canonical_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
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

/// The single From mailbox: (address, display name).
fn from_mailbox(parsed: Option<&Message<'_>>) -> Result<(String, Option<String>), Refusal> {
    let ambiguous = |why: &str| Refusal::Ambiguous(why.to_owned());
    let parsed = parsed.ok_or_else(|| ambiguous("the message has no From header"))?;
    // `from()` would silently return the last of several From fields: read them all.
    let froms: Vec<&HeaderValue<'_>> = parsed.header_values(HeaderName::From).collect();
    let from = match froms.as_slice() {
        [] => return Err(ambiguous("the message has no From header")),
        [one] => *one,
        _ => return Err(ambiguous("Duplicate header 'From'")),
    };
    let mailbox = match from {
        HeaderValue::Address(Address::List(list)) if list.len() == 1 => &list[0],
        HeaderValue::Address(Address::List(list)) if list.len() > 1 => {
            return Err(ambiguous("the From header holds more than one mailbox"));
        }
        HeaderValue::Address(Address::Group(_)) => {
            return Err(ambiguous("the From header is a group"));
        }
        _ => return Err(ambiguous("the From header cannot be parsed")),
    };
    let address = mailbox
        .address()
        .filter(|a| is_plain_address(a))
        .ok_or_else(|| ambiguous("the From header cannot be parsed"))?;
    let display_name = mailbox
        .name()
        .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|n| !n.is_empty());
    Ok((canonical_address(address), display_name))
}

/// `local@domain`, ASCII, no spaces or angle brackets.
fn is_plain_address(address: &str) -> bool {
    address.is_ascii()
        && !address.contains(|c: char| c.is_ascii_whitespace() || c == '<' || c == '>')
        && address
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
}

/// The first value of a header (case-insensitive name), as SES reads its `X-SES-*` headers.
fn first_header(parsed: Option<&Message<'_>>, name: &str) -> Option<String> {
    parsed?
        .headers()
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .and_then(|h| h.value().as_text().map(|t| t.trim().to_owned()))
        .filter(|t| !t.is_empty())
}

/// Builds the request for one transaction of `principal` at `now`.
pub fn build(
    message: &[u8],
    connection: Connection<'_>,
    principal: &Principal,
    account: &Account,
    now: Timestamp,
) -> Result<SendRequest, Refusal> {
    // One header-only parse serves every header read below.
    let parsed_message = MessageParser::new().parse_headers(message);
    let parsed = parsed_message.as_ref();
    let (from, display_name) = from_mailbox(parsed)?;
    let mail_from =
        (!connection.mail_from.is_empty()).then(|| canonical_address(connection.mail_from));
    let recipients: Vec<String> = connection
        .recipients
        .iter()
        .map(|r| canonical_address(r))
        .collect();

    // Verification, as SES checks it: From and Return-Path, and in the sandbox every recipient.
    let mut unverified = Vec::new();
    let from_identity = account.identity_for(&from);
    if from_identity.is_none() {
        unverified.push(from.clone());
    }
    if let Some(mail_from) = &mail_from
        && account.identity_for(mail_from).is_none()
        && !unverified.contains(mail_from)
    {
        unverified.push(mail_from.clone());
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
    let from_identity = from_identity.expect("checked above");

    let mut resources = Vec::new();
    let explicit: Vec<String> = ["X-SES-SOURCE-ARN", "X-SES-FROM-ARN"]
        .iter()
        .filter_map(|name| first_header(parsed, name))
        .collect();
    if explicit.is_empty() {
        resources.push(account.arn("identity", &from_identity));
    } else {
        for arn in explicit {
            if !resources.contains(&arn) {
                resources.push(arn);
            }
        }
    }
    let configuration_set = first_header(parsed, "X-SES-CONFIGURATION-SET").or_else(|| {
        account
            .default_configuration_sets
            .get(&from_identity)
            .cloned()
    });
    if let Some(set) = configuration_set {
        resources.push(account.arn("configuration-set", &set));
    }
    for identity in recipient_identities {
        let arn = account.arn("identity", &identity);
        if !resources.contains(&arn) {
            resources.push(arn);
        }
    }

    let mut context = Context::new();
    context
        .set("ses:ApiVersion", Value::new("2"))
        .set("ses:FromAddress", Value::new(from.as_str()))
        .set_multi(
            "ses:Recipients",
            recipients.iter().map(|r| Value::new(r.as_str())).collect(),
        )
        .set("aws:CurrentTime", Value::time(now))
        .set("aws:EpochTime", Value::new(now.as_second().to_string()))
        .set(
            "aws:SecureTransport",
            Value::new(connection.tls.to_string()),
        )
        .set(
            "aws:SourceIp",
            Value::new(connection.client.to_canonical().to_string()),
        )
        .set("aws:username", Value::new(principal.name.as_str()))
        .set("aws:PrincipalArn", Value::new(principal.arn.as_str()))
        .set("aws:PrincipalAccount", Value::new(account.id.as_str()))
        .set("aws:PrincipalType", Value::new("User"))
        .set("aws:RequestedRegion", Value::new(account.region.as_str()));
    if let Some(id) = &principal.id {
        context.set("aws:userid", Value::new(id.as_str()));
    }
    if let Some(name) = &display_name {
        context.set("ses:FromDisplayName", Value::new(name.as_str()));
    }
    if let Some(mail_from) = &mail_from {
        context.set("ses:FeedbackAddress", Value::new(mail_from.as_str()));
    }
    if let Some(agent) =
        first_header(parsed, "User-Agent").or_else(|| first_header(parsed, "X-Mailer"))
    {
        context.set("aws:UserAgent", Value::new(agent));
    }
    Ok(SendRequest {
        context,
        resources,
        from,
        display_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(identities: &[&str]) -> Account {
        Account {
            id: "123456789012".into(),
            region: "us-east-1".into(),
            identities: identities.iter().map(|s| s.to_string()).collect(),
            default_configuration_sets: BTreeMap::new(),
            sandbox: false,
        }
    }

    fn principal() -> Principal {
        Principal {
            name: "app".into(),
            arn: "arn:aws:iam::123456789012:user/apps/app".into(),
            id: Some("AIDAEXAMPLE".into()),
        }
    }

    fn run(message: &str, account: &Account) -> Result<SendRequest, Refusal> {
        let recipients = vec!["Rcpt@Example.COM".to_owned()];
        let connection = Connection {
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
            identity("From: news@example.com\r\nX-SES-FROM-ARN: arn:aws:ses:us-east-1:999999999999:identity/partner.com\r\n\r\n").unwrap(),
            ["arn:aws:ses:us-east-1:999999999999:identity/partner.com"]
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
        let connection = |mail_from| Connection {
            tls: true,
            client: "127.0.0.1".parse().unwrap(),
            mail_from,
            recipients: &recipients,
        };
        let now = Timestamp::UNIX_EPOCH;
        let message = b"From: x@example.com\r\n\r\n";
        assert_eq!(
            build(
                message,
                connection("bounce@elsewhere.net"),
                &principal(),
                &account,
                now
            )
            .unwrap_err(),
            Refusal::Unverified(vec!["bounce@elsewhere.net".into()])
        );
        assert!(
            build(message, connection(""), &principal(), &account, now).is_ok(),
            "a null reverse-path is not checked"
        );
        account.sandbox = true;
        assert_eq!(
            build(message, connection(""), &principal(), &account, now).unwrap_err(),
            Refusal::Unverified(vec!["b@elsewhere.net".into()])
        );
        account.identities.push("elsewhere.net".into());
        let request = build(message, connection(""), &principal(), &account, now).unwrap();
        assert_eq!(
            request.resources,
            [
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
                "arn:aws:ses:us-east-1:123456789012:identity/elsewhere.net"
            ]
        );
    }
}
