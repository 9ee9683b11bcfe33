//! What SES requires of a sending authorization policy attached to an identity, checked when the
//! policy is loaded (SES-DG `policy-anatomy.md`, "Policy requirements" and "Statements specific
//! to the policy"): at least one statement, each naming its principal (an AWS account, IAM user
//! or service), an email sending action, and as its one resource the ARN of the identity the
//! policy is attached to; at most 4 KB; at most 20 policies per identity, each named with at
//! most 64 of `[A-Za-z0-9_-]`. What SES would refuse is refused here, with the JSON path.
//!
//! A `Resource` wildcard that also matches the identity's ARN is accepted (the policy means that
//! identity); `sesgate check` warns that it covers others too.

use super::json::significant_len;
use super::policy::{LoadError, Policy, PolicyKind};
use super::principal::PrincipalEntry;

/// The email sending actions an identity policy may grant (SES-DG `policy-anatomy.md`, plus the
/// v2 `SendBulkEmail`).
pub const SENDING_ACTIONS: &[&str] = &[
    "ses:SendEmail",
    "ses:SendRawEmail",
    "ses:SendTemplatedEmail",
    "ses:SendBulkTemplatedEmail",
    "ses:SendBulkEmail",
];

/// Policies one identity may have.
pub const MAX_POLICIES_PER_IDENTITY: usize = 20;

/// The largest policy, white space between tokens not counted.
pub const MAX_POLICY_BYTES: usize = 4096;

/// A policy name SES accepts: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn is_policy_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `policy` (parsed from `text`) as a sending authorization policy attached to the
/// identity `identity_arn`.
pub fn check(policy: &Policy, text: &str, identity_arn: &str) -> Result<(), LoadError> {
    let error = |path: String, reason: String| LoadError {
        policy: policy.name.to_string(),
        path,
        reason,
    };
    if policy.kind != PolicyKind::ResourceBased {
        return Err(error(
            String::new(),
            "an identity's policy must be a resource-based policy".into(),
        ));
    }
    let size = significant_len(text);
    if size > MAX_POLICY_BYTES {
        return Err(error(
            String::new(),
            format!(
                "{size} bytes without white space; SES accepts sending authorization policies of at most {MAX_POLICY_BYTES}"
            ),
        ));
    }
    for statement in &policy.statements {
        let path = policy.statement_path(statement.index);
        if let Some(principals) = &statement.principal
            && let Some(PrincipalEntry::Other { kind, value }) = principals
                .entries
                .iter()
                .find(|e| matches!(e, PrincipalEntry::Other { kind, .. } if &**kind != "AWS" && &**kind != "Service"))
        {
            let element = if principals.negated {
                "NotPrincipal"
            } else {
                "Principal"
            };
            return Err(error(
                format!("{path}.{element}.{kind}"),
                format!(
                    "{value:?}: SES identity policies name AWS accounts, IAM users (\"AWS\") or services (\"Service\"), not {kind} principals"
                ),
            ));
        }
        let action_key = if statement.actions.negated {
            "NotAction"
        } else {
            "Action"
        };
        if statement.actions.negated {
            return Err(error(
                format!("{path}.NotAction"),
                "SES identity policies list the allowed sending actions in Action (NotAction is not accepted)".into(),
            ));
        }
        for (i, pattern) in statement.actions.patterns.iter().enumerate() {
            let covers_sending = SENDING_ACTIONS
                .iter()
                .any(|a| pattern.matches(a, true, &super::context::Context::new()));
            if !covers_sending {
                let text = pattern_text(pattern);
                return Err(error(
                    format!("{path}.{action_key}[{i}]"),
                    format!(
                        "{text:?} is not an email sending action (SES accepts {}, or ses:Send*)",
                        SENDING_ACTIONS.join(", ")
                    ),
                ));
            }
        }
        if statement.resources.negated {
            return Err(error(
                format!("{path}.NotResource"),
                format!(
                    "SES identity policies name their identity in Resource ({identity_arn}); NotResource is not accepted"
                ),
            ));
        }
        for (i, pattern) in statement.resources.patterns.iter().enumerate() {
            if !pattern.matches(identity_arn, &super::context::Context::new()) {
                return Err(error(
                    format!("{path}.Resource[{i}]"),
                    format!(
                        "{:?} is not the ARN of the identity this policy is attached to ({identity_arn})",
                        pattern.text()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn pattern_text(pattern: &super::pattern::Pattern) -> String {
    use super::pattern::Token;
    pattern
        .tokens()
        .iter()
        .map(|t| match t {
            Token::Lit(s) => s.to_string(),
            Token::Star => "*".into(),
            Token::AnyChar => "?".into(),
            Token::Var(_) => "${...}".into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: &str = "arn:aws:ses:us-east-1:888888888888:identity/example.com";

    fn checked(statement: &str) -> Result<(), String> {
        let text = format!(r#"{{"Version":"2012-10-17","Statement":[{statement}]}}"#);
        let policy = Policy::parse_resource("Delegate", &text).map_err(|e| e.to_string())?;
        check(&policy, &text, IDENTITY).map_err(|e| e.to_string())
    }

    #[test]
    fn the_guide_examples_pass() {
        // SES-DG sending-authorization-policy-examples.md: each example's statement.
        for statement in [
            r#"{"Sid":"AuthorizeMarketer","Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Principal":{"AWS":["123456789012"]},"Action":["ses:SendEmail","ses:SendRawEmail"],"Condition":{"StringLike":{"ses:FromAddress":"marketing+.*@example.com"}}}"#,
            r#"{"Sid":"AuthorizeIAMUser","Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Principal":{"AWS":["arn:aws:iam::111122223333:user/John","arn:aws:iam::444455556666:user/Jane"]},"Action":["ses:SendEmail","ses:SendRawEmail"]}"#,
            r#"{"Sid":"AuthorizeService","Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Principal":{"Service":["cognito-idp.amazonaws.com"]},"Action":["ses:SendEmail","ses:SendRawEmail"]}"#,
            r#"{"Sid":"ControlAction","Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Principal":{"AWS":["123456789012"]},"Action":["ses:SendRawEmail"]}"#,
            r#"{"Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/*","Principal":"*","Action":"ses:Send*"}"#,
        ] {
            checked(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }

    #[test]
    fn what_ses_refuses_is_refused() {
        for (statement, want) in [
            (
                r#"{"Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/other.com","Principal":"*","Action":"ses:SendRawEmail"}"#,
                "Statement[0].Resource[0]: \"arn:aws:ses:us-east-1:888888888888:identity/other.com\" is not the ARN of the identity this policy is attached to",
            ),
            (
                r#"{"Effect":"Allow","Resource":"arn:aws:ses:eu-west-1:888888888888:identity/example.com","Principal":"*","Action":"ses:SendRawEmail"}"#,
                "is not the ARN of the identity",
            ),
            (
                r#"{"Effect":"Allow","Resource":"arn:aws:ses:us-east-1:999999999999:identity/example.com","Principal":"*","Action":"ses:SendRawEmail"}"#,
                "is not the ARN of the identity",
            ),
            (
                r#"{"Effect":"Allow","NotResource":"arn:aws:ses:us-east-1:888888888888:identity/other.com","Principal":"*","Action":"ses:SendRawEmail"}"#,
                "Statement[0].NotResource: SES identity policies name their identity in Resource",
            ),
            (
                r#"{"Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Principal":"*","Action":["ses:SendRawEmail","ses:DeleteIdentity"]}"#,
                "Statement[0].Action[1]: \"ses:DeleteIdentity\" is not an email sending action",
            ),
            (
                r#"{"Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Principal":"*","NotAction":"ses:DeleteIdentity"}"#,
                "Statement[0].NotAction: SES identity policies list the allowed sending actions in Action",
            ),
            (
                r#"{"Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Principal":{"Federated":"cognito-identity.amazonaws.com"},"Action":"ses:SendRawEmail"}"#,
                "Statement[0].Principal.Federated: \"cognito-identity.amazonaws.com\": SES identity policies name AWS accounts",
            ),
            (
                r#"{"Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Action":"ses:SendRawEmail"}"#,
                "Statement[0].Principal: a resource-based policy statement needs Principal or NotPrincipal",
            ),
        ] {
            let got = checked(statement).unwrap_err();
            assert!(got.contains(want), "\n got: {got}\nwant: {want}");
        }
        let big = format!(
            r#"{{"Sid":"{}","Effect":"Allow","Resource":"{IDENTITY}","Principal":"*","Action":"ses:SendRawEmail"}}"#,
            "x".repeat(4000)
        );
        assert!(checked(&big).unwrap_err().contains("at most 4096"));
        // White space does not count.
        let spaced = format!(
            "{{\"Sid\":\"{}\",      \n\n\"Effect\":\"Allow\",\"Resource\":\"{IDENTITY}\",\"Principal\":\"*\",\"Action\":\"ses:SendRawEmail\"}}",
            "x".repeat(3900)
        );
        let spaced = spaced.replace(',', &format!(",{}", " ".repeat(100)));
        assert!(spaced.len() > MAX_POLICY_BYTES);
        checked(&spaced).unwrap();
    }

    #[test]
    fn policy_names() {
        assert!(is_policy_name("Delegate_To-Partner1"));
        assert!(!is_policy_name(""));
        assert!(!is_policy_name("a.b"));
        assert!(!is_policy_name(&"a".repeat(65)));
    }
}
