//! The request builder (`sesgate::gateway::request::build`) on arbitrary header sections, with a
//! fixed principal and account. Only `build_request` below
//! calls the product.
//!
//! Input: `[mode, header bytes...]`. mode: bit 0 prefixes a valid `From: news@allowed.com`,
//! bit 1 configures verified identities (else the From domain is the identity), bit 2 sandbox,
//! bit 3 appends an empty line and a body. Checked, when a request is built: the evaluated From
//! address is a syntactically valid addr-spec (ASCII, exactly one `@`, a dot-atom local part (a
//! quoted one is unquoted or refused), a lower-case letter-digit-hyphen domain) and is what
//! `ses:FromAddress` holds; every resource is an SES identity or configuration set ARN of the
//! configured region, of the gateway's account, of the one other account with a configured
//! identity, or of an account the client named in an `X-SES-*-ARN` header (the policies refuse
//! it unless its owner grants it; `tests/sending_authorization.rs` sends one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesgate::gateway::headers;
use sesgate::gateway::request::{
    Account, Principal, Refusal, SendRequest, TransactionFacts, build,
};

const REGION_ACCOUNT: &str = "arn:aws:ses:us-east-1:123456789012:";
/// The one other account with a configured identity (`[[identity]]` with an owner): its
/// identity's ARN may be named in an `X-SES-*-ARN` header, as a delegate sender does.
const PARTNER_ACCOUNT: &str = "arn:aws:ses:us-east-1:111122223333:";

fn build_request(message: &[u8], identities: bool, sandbox: bool) -> Result<SendRequest, Refusal> {
    let account = Account {
        id: "123456789012".into(),
        region: "us-east-1".into(),
        identities: if identities {
            vec!["allowed.com".into(), "news@example.com".into()]
        } else {
            Vec::new()
        },
        default_configuration_sets: [("allowed.com".to_owned(), "audit".to_owned())].into(),
        sandbox,
        others: [(
            "111122223333".to_owned(),
            vec!["partner.example".to_owned()],
        )]
        .into(),
    };
    let principal = Principal {
        name: "app".into(),
        arn: "arn:aws:iam::123456789012:user/apps/app".into(),
        id: Some("AIDAEXAMPLE".into()),
        account: "123456789012".into(),
    };
    let recipients = vec!["rcpt@allowed.com".to_owned()];
    let connection = TransactionFacts {
        tls: true,
        client: "203.0.113.7".parse().unwrap(),
        mail_from: "bounce@allowed.com",
        recipients: &recipients,
    };
    build(
        message,
        connection,
        &principal,
        &account,
        &headers::Limits::default(),
        jiff::Timestamp::from_second(1_535_716_800).unwrap(),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn is_dot_atom(s: &[u8]) -> bool {
    !s.is_empty()
        && s.split(|&b| b == b'.')
            .all(|atom| !atom.is_empty() && atom.iter().all(|&b| is_atext(b)))
}

/// Dot-separated letter-digit-hyphen labels, lower-case (domains are canonicalised).
fn is_domain(domain: &str) -> bool {
    domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

fn is_addr_spec(address: &str) -> bool {
    let bytes = address.as_bytes();
    if !address.is_ascii() || bytes.iter().filter(|&&b| b == b'@').count() != 1 {
        return false;
    }
    let (local, domain) = address.split_once('@').unwrap();
    // A quoted local part is either unquoted (its content is a dot-atom) or refused, so what
    // is evaluated is always a dot-atom.
    is_dot_atom(local.as_bytes()) && is_domain(domain)
}

fuzz_target!(|input: &[u8]| {
    let [mode, headers @ ..] = input else {
        return;
    };
    let mut message = Vec::with_capacity(headers.len() + 64);
    if mode & 1 != 0 {
        message.extend_from_slice(b"From: news@allowed.com\r\n");
    }
    message.extend_from_slice(headers);
    if mode & 8 != 0 {
        message.extend_from_slice(b"\r\n\r\nbody\r\n");
    }
    let Ok(request) = build_request(&message, mode & 2 != 0, mode & 4 != 0) else {
        return;
    };
    assert!(
        is_addr_spec(&request.from),
        "evaluated From {:?} is not a valid addr-spec",
        request.from
    );
    let from_key = request
        .context
        .get("ses:FromAddress")
        .map(|e| e.values()[0].text());
    assert_eq!(from_key, Some(request.from.as_str()), "ses:FromAddress");
    assert!(
        !request.resources.is_empty(),
        "a request without a resource"
    );
    for resource in &request.resources {
        // An identity of the gateway's account, of the configured partner, or of an account
        // the client named itself in an `X-SES-*-ARN` header: another account's identity is
        // the policies' to decide (refused unless its owner's policy grants it), never one
        // the client did not name.
        let account = resource
            .strip_prefix("arn:aws:ses:us-east-1:")
            .and_then(|rest| rest.split_once(':'))
            .filter(|(account, rest)| {
                account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && (rest.starts_with("identity/") || rest.starts_with("configuration-set/"))
            })
            .map(|(account, _)| account);
        let Some(account) = account else {
            panic!(
                "resource {resource:?} is not an SES identity or configuration set ARN of the region"
            );
        };
        let named_by_client = contains(
            &message,
            format!("arn:aws:ses:us-east-1:{account}:identity/").as_bytes(),
        );
        assert!(
            resource.starts_with(REGION_ACCOUNT)
                || resource.starts_with(PARTNER_ACCOUNT)
                || named_by_client,
            "resource {resource:?} is of an account nobody configured or named"
        );
    }
});
