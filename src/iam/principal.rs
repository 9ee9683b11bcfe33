//! `Principal` and `NotPrincipal` of resource-based policies (an SES identity's sending
//! authorization policies): parsed once, then matched against the calling IAM user.
//!
//! Forms (IAM-UG "AWS JSON policy elements: Principal"; SES-DG `policy-anatomy.md`):
//! `"*"`, `{"AWS": "*"}`, `{"AWS": "123456789012"}`, `{"AWS": "arn:aws:iam::123456789012:root"}`,
//! `{"AWS": "arn:aws:iam::123456789012:user/path/name"}`, each value alone or in a list, and
//! `{"Service": "..."}` (a service never is an IAM user of the gateway). A wildcard inside an
//! ARN, or a value that is none of these, is refused at load, as IAM refuses it.
//!
//! How a principal is matched where AWS's text is silent, failing closed both ways (SPEC §4,
//! README "Sending authorization"):
//! - a user ARN in an Allow must be the caller's ARN exactly (path included, case-sensitive); in
//!   a Deny, the user name may differ in case and the path may differ or be missing (IAM user
//!   names are unique in an account ignoring case and path, so such an ARN can only mean the
//!   same user);
//! - `NotPrincipal` in an Allow excludes the caller when any entry could name it (its account
//!   included); in a Deny only the caller's exact ARN excludes it, and (IAM-UG "Permissions
//!   boundaries") a `NotPrincipal` Deny always applies to a caller with a permissions boundary;
//! - a grant "stands alone" in the caller's own account only when it names the caller's ARN: a
//!   grant to `*`, to the account or through `NotPrincipal` is a grant to the account, which
//!   delegates to the caller's identity-based policies and boundary.

use std::fmt;

/// The IAM user a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// `arn:PARTITION:iam::ACCOUNT:user/PATH/NAME`.
    pub arn: &'a str,
    /// The 12-digit account the user belongs to.
    pub account: &'a str,
    /// The unique id (`AIDA...`), when known.
    pub id: Option<&'a str>,
    /// Whether the user has a permissions boundary (see `NotPrincipal` above).
    pub has_boundary: bool,
}

/// One value of a `Principal`/`NotPrincipal` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalEntry {
    /// `"*"` or `{"AWS": "*"}`: everyone.
    Everyone,
    /// An account (`"123456789012"` or `arn:PARTITION:iam::123456789012:root`): every principal
    /// of it, as far as that account's own policies allow.
    Account {
        id: Box<str>,
        partition: Option<Box<str>>,
    },
    /// An IAM user ARN.
    User { arn: Box<str> },
    /// The unique id of a principal (IAM shows it once the principal is deleted).
    UniqueId(Box<str>),
    /// A role, assumed role, federated user, canonical user or service: never an IAM user.
    Other { kind: Box<str>, value: Box<str> },
}

impl fmt::Display for PrincipalEntry {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PrincipalEntry::Everyone => f.write_str("*"),
            PrincipalEntry::Account { id, .. } => write!(f, "account {id}"),
            PrincipalEntry::User { arn } => f.write_str(arn),
            PrincipalEntry::UniqueId(id) => f.write_str(id),
            PrincipalEntry::Other { kind, value } => write!(f, "{kind} {value}"),
        }
    }
}

/// A parsed `Principal` or `NotPrincipal` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principals {
    /// `NotPrincipal`.
    pub negated: bool,
    pub entries: Vec<PrincipalEntry>,
}

/// How a resource-based statement's principal element applies to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The element does not apply to the caller.
    None,
    /// It names the caller's own ARN.
    User,
    /// It applies through `*`, the caller's account or `NotPrincipal`.
    Account,
}

impl Principals {
    /// How an Allow statement with this element applies to `caller` (the narrow reading).
    pub fn allow_grant(&self, caller: &Caller<'_>) -> Grant {
        if self.negated {
            // Excluded when any entry could name the caller.
            if self.entries.iter().any(|e| e.covers(caller, true)) {
                Grant::None
            } else {
                Grant::Account
            }
        } else if self.entries.iter().any(|e| e.names_exactly(caller)) {
            Grant::User
        } else if self.entries.iter().any(|e| e.covers(caller, false)) {
            Grant::Account
        } else {
            Grant::None
        }
    }

    /// Whether a Deny statement with this element applies to `caller` (the broad reading).
    pub fn deny_applies(&self, caller: &Caller<'_>) -> bool {
        if self.negated {
            caller.has_boundary || !self.entries.iter().any(|e| e.names_exactly(caller))
        } else {
            self.entries.iter().any(|e| e.covers(caller, true))
        }
    }

    /// True when the element lets anyone at all in: `Principal: "*"` (or `{"AWS": "*"}`).
    pub fn is_everyone(&self) -> bool {
        !self.negated && self.entries.contains(&PrincipalEntry::Everyone)
    }
}

/// `arn:PARTITION:` of an ARN, and the rest.
fn partition_of(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    rest.split_once(':')
}

impl PrincipalEntry {
    /// True when the entry names exactly this caller's ARN.
    fn names_exactly(&self, caller: &Caller<'_>) -> bool {
        matches!(self, PrincipalEntry::User { arn } if **arn == *caller.arn)
    }

    /// True when the entry stands for the caller. `broad`: user ARNs compare ignoring the case
    /// of their user part, partitions are not compared, and the caller's unique id counts.
    fn covers(&self, caller: &Caller<'_>, broad: bool) -> bool {
        match self {
            PrincipalEntry::Everyone => true,
            PrincipalEntry::Account { id, partition } => {
                **id == *caller.account
                    && (broad
                        || partition.as_deref().is_none_or(|p| {
                            partition_of(caller.arn).is_some_and(|(own, _)| own == p)
                        }))
            }
            PrincipalEntry::User { arn } if broad => same_user_ignoring_case(arn, caller.arn),
            PrincipalEntry::User { arn } => **arn == *caller.arn,
            PrincipalEntry::UniqueId(id) => broad && caller.id == Some(&**id),
            PrincipalEntry::Other { .. } => false,
        }
    }
}

/// `arn:P:iam::A:user/PATH/NAME` of the same account with the same user name up to case,
/// whatever the path: IAM user names are unique in an account ignoring case and path, so such an
/// ARN can only mean that user (AWS refuses to store a principal ARN naming no user), and a Deny
/// or a `NotPrincipal` exclusion written with a wrong or missing path must still apply.
fn same_user_ignoring_case(a: &str, b: &str) -> bool {
    match (a.split_once(":user/"), b.split_once(":user/")) {
        (Some((head_a, user_a)), Some((head_b, user_b))) => {
            let name = |user: &str| user.rsplit('/').next().unwrap_or(user).to_owned();
            head_a == head_b && name(user_a).eq_ignore_ascii_case(&name(user_b))
        }
        _ => false,
    }
}

/// Reads one `"AWS"` value.
fn aws_entry(value: &str) -> Result<PrincipalEntry, String> {
    if value == "*" {
        return Ok(PrincipalEntry::Everyone);
    }
    if is_account_id(value) {
        return Ok(PrincipalEntry::Account {
            id: value.into(),
            partition: None,
        });
    }
    let invalid = |why: &str| {
        Err(format!(
            "{value:?} is not a valid AWS principal: {why} (expected \"*\", an account id such as \"123456789012\", \"arn:aws:iam::123456789012:root\" or an IAM user ARN \"arn:aws:iam::123456789012:user/NAME\")"
        ))
    };
    if value.contains(['*', '?']) {
        return invalid("IAM does not accept wildcards inside a principal");
    }
    if !value.starts_with("arn:") {
        if value.len() >= 16
            && value.starts_with('A')
            && value
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Ok(PrincipalEntry::UniqueId(value.into()));
        }
        return invalid("it is neither an account id nor an ARN");
    }
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts.as_slice() else {
        return invalid("an ARN has six colon-separated parts");
    };
    if partition.is_empty()
        || !partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
    {
        return invalid("the partition must be written in lower case (aws, aws-cn, aws-us-gov)");
    }
    if !region.is_empty() || !is_account_id(account) {
        return invalid("an IAM ARN has an empty region and a 12-digit account");
    }
    match (*service, *resource) {
        ("iam", "root") => Ok(PrincipalEntry::Account {
            id: (*account).into(),
            partition: Some((*partition).into()),
        }),
        ("iam", user) if user.starts_with("user/") => {
            let name = user.rsplit('/').next().unwrap_or_default();
            if name.is_empty() || !user.bytes().all(|b| b.is_ascii_graphic()) {
                return invalid("the user name is empty or has characters IAM names cannot hold");
            }
            Ok(PrincipalEntry::User { arn: value.into() })
        }
        ("iam", other) if other.starts_with("role/") => Ok(PrincipalEntry::Other {
            kind: "AWS".into(),
            value: value.into(),
        }),
        ("sts", other)
            if other.starts_with("assumed-role/") || other.starts_with("federated-user/") =>
        {
            Ok(PrincipalEntry::Other {
                kind: "AWS".into(),
                value: value.into(),
            })
        }
        _ => invalid("it names no account, IAM user or role"),
    }
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The principal keys an element may hold, and whether its values may be an account or user.
const KEYS: &[&str] = &["AWS", "Service", "Federated", "CanonicalUser"];

/// Parses a `Principal`/`NotPrincipal` value given as a JSON-like tree: `"*"`, or an object of
/// `KEY: value | [values]`. Errors are (JSON path below the element, reason).
pub(crate) fn parse(
    value: &super::json::Json,
    negated: bool,
) -> Result<Principals, (String, String)> {
    use super::json::Json;
    let element = if negated { "NotPrincipal" } else { "Principal" };
    let mut entries = Vec::new();
    match value {
        Json::String(s) if s == "*" => entries.push(PrincipalEntry::Everyone),
        Json::Object(members) if members.is_empty() => {
            return Err((
                String::new(),
                format!("{element} must name at least one principal"),
            ));
        }
        Json::Object(members) => {
            for (key, values) in members {
                if !KEYS.contains(&key.as_str()) {
                    return Err((
                        format!(".{key}"),
                        format!(
                            "unknown principal type {key:?} (expected AWS, Service, Federated or CanonicalUser)"
                        ),
                    ));
                }
                let items: Vec<(String, &Json)> = match values {
                    Json::Array(items) if items.is_empty() => {
                        return Err((format!(".{key}"), "must not be an empty list".into()));
                    }
                    Json::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| (format!(".{key}[{i}]"), item))
                        .collect(),
                    single => vec![(format!(".{key}"), single)],
                };
                for (path, item) in items {
                    let Json::String(text) = item else {
                        return Err((path, format!("must be a string, not {}", item.kind())));
                    };
                    let entry = match key.as_str() {
                        "AWS" => aws_entry(text).map_err(|why| (path.clone(), why))?,
                        _ if text.is_empty() || text.contains('*') => {
                            return Err((path, format!("{text:?} is not a valid {key} principal")));
                        }
                        _ => PrincipalEntry::Other {
                            kind: key.as_str().into(),
                            value: text.as_str().into(),
                        },
                    };
                    entries.push(entry);
                }
            }
        }
        other => {
            return Err((
                String::new(),
                format!(
                    "must be \"*\" or an object such as {{\"AWS\": \"123456789012\"}}, not {}",
                    match other {
                        Json::String(s) => format!("{s:?}"),
                        other => other.kind().to_owned(),
                    }
                ),
            ));
        }
    }
    if negated && entries.contains(&PrincipalEntry::Everyone) {
        return Err((
            String::new(),
            "NotPrincipal \"*\" excludes everyone, so the statement never applies; remove it"
                .into(),
        ));
    }
    Ok(Principals { negated, entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::json::Json;

    fn principals(json: &str, negated: bool) -> Result<Principals, String> {
        parse(&Json::parse(json).unwrap(), negated).map_err(|(path, why)| format!("{path}: {why}"))
    }

    const CALLER: Caller<'static> = Caller {
        arn: "arn:aws:iam::111122223333:user/apps/John",
        account: "111122223333",
        id: Some("AIDAJOHNEXAMPLE00001"),
        has_boundary: false,
    };

    #[test]
    fn forms_and_grants() {
        let grant = |json: &str| principals(json, false).unwrap().allow_grant(&CALLER);
        assert_eq!(grant(r#""*""#), Grant::Account);
        assert_eq!(grant(r#"{"AWS":"*"}"#), Grant::Account);
        assert_eq!(grant(r#"{"AWS":["111122223333"]}"#), Grant::Account);
        assert_eq!(
            grant(r#"{"AWS":"arn:aws:iam::111122223333:root"}"#),
            Grant::Account
        );
        assert_eq!(
            grant(r#"{"AWS":"arn:aws-cn:iam::111122223333:root"}"#),
            Grant::None,
            "another partition's account is another account"
        );
        assert_eq!(
            grant(r#"{"AWS":["444455556666","arn:aws:iam::111122223333:user/apps/John"]}"#),
            Grant::User
        );
        // The ARN carries the path, and is compared exactly in an Allow.
        assert_eq!(
            grant(r#"{"AWS":"arn:aws:iam::111122223333:user/John"}"#),
            Grant::None
        );
        assert_eq!(
            grant(r#"{"AWS":"arn:aws:iam::111122223333:user/apps/john"}"#),
            Grant::None
        );
        assert_eq!(
            grant(r#"{"Service":"cognito-idp.amazonaws.com"}"#),
            Grant::None
        );
        assert_eq!(
            grant(r#"{"AWS":"arn:aws:iam::111122223333:role/John"}"#),
            Grant::None
        );
        assert_eq!(grant(r#"{"AWS":"AIDAJOHNEXAMPLE00001"}"#), Grant::None);
    }

    #[test]
    fn denies_read_broadly() {
        let deny = |json: &str| principals(json, false).unwrap().deny_applies(&CALLER);
        assert!(deny(
            r#"{"AWS":"arn:aws:iam::111122223333:user/apps/JOHN"}"#
        ));
        assert!(deny(r#"{"AWS":"AIDAJOHNEXAMPLE00001"}"#));
        assert!(deny(r#"{"AWS":"111122223333"}"#));
        assert!(
            deny(r#"{"AWS":"arn:aws:iam::111122223333:user/John"}"#),
            "another path, the same user name: the same user"
        );
        assert!(deny(
            r#"{"AWS":"arn:aws:iam::111122223333:user/other/john"}"#
        ));
        assert!(!deny(
            r#"{"AWS":"arn:aws:iam::111122223333:user/apps/Johnny"}"#
        ));
        assert!(!deny(
            r#"{"AWS":"arn:aws:iam::444455556666:user/apps/John"}"#
        ));
        assert!(!deny(r#"{"AWS":"444455556666"}"#));
    }

    #[test]
    fn not_principal_fails_closed_both_ways() {
        let element = |json: &str| principals(json, true).unwrap();
        // Allow: excluded as soon as any entry could be the caller.
        assert_eq!(
            element(r#"{"AWS":"111122223333"}"#).allow_grant(&CALLER),
            Grant::None
        );
        assert_eq!(
            element(r#"{"AWS":"arn:aws:iam::111122223333:user/apps/JOHN"}"#).allow_grant(&CALLER),
            Grant::None
        );
        assert_eq!(
            element(r#"{"AWS":"444455556666"}"#).allow_grant(&CALLER),
            Grant::Account,
            "allowed as everyone else is: through the account"
        );
        // Deny: only the exact ARN escapes, and never with a permissions boundary.
        let exact = element(r#"{"AWS":"arn:aws:iam::111122223333:user/apps/John"}"#);
        assert!(!exact.deny_applies(&CALLER));
        assert!(exact.deny_applies(&Caller {
            has_boundary: true,
            ..CALLER
        }));
        assert!(element(r#"{"AWS":"111122223333"}"#).deny_applies(&CALLER));
        assert!(
            element(r#"{"AWS":"arn:aws:iam::111122223333:user/apps/JOHN"}"#).deny_applies(&CALLER)
        );
    }

    #[test]
    fn invalid_principals_are_refused() {
        for (json, want) in [
            (r#""someone""#, "must be \"*\" or an object"),
            (r#"{}"#, "at least one principal"),
            (r#"{"AWS":[]}"#, ".AWS: must not be an empty list"),
            (r#"{"Aws":"123456789012"}"#, ".Aws: unknown principal type"),
            (r#"{"AWS":"12345"}"#, "neither an account id nor an ARN"),
            (r#"{"AWS":"arn:aws:iam::111122223333:user/*"}"#, "wildcards"),
            (r#"{"AWS":"arn:aws:iam::*:root"}"#, "wildcards"),
            (
                r#"{"AWS":"ARN:AWS:IAM::111122223333:root"}"#,
                "neither an account id nor an ARN",
            ),
            (r#"{"AWS":"arn:AWS:iam::111122223333:root"}"#, "lower case"),
            (
                r#"{"AWS":"arn:aws:iam:us-east-1:111122223333:root"}"#,
                "empty region",
            ),
            (
                r#"{"AWS":"arn:aws:s3:::bucket"}"#,
                "empty region and a 12-digit account",
            ),
            (
                r#"{"AWS":"arn:aws:iam::111122223333:group/x"}"#,
                "names no account",
            ),
            (
                r#"{"AWS":["123456789012", 5]}"#,
                ".AWS[1]: must be a string",
            ),
            (r#"{"Service":"*"}"#, "not a valid Service principal"),
        ] {
            let err = principals(json, false).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
        assert!(
            principals(r#""*""#, true)
                .unwrap_err()
                .contains("excludes everyone")
        );
    }
}
