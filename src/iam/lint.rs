//! SES-aware warnings about policies that load but probably do not say what their author meant
//! (`sesgate check`). Each warning names the statement and a fix. Pure, like the rest of `iam`.

use std::fmt;

use super::condition::{Condition, SetQualifier, Test};
use super::pattern::Token;
use super::policy::{Effect, Policy, Statement};

/// One warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub policy: String,
    /// `Statement[i]` and its Sid, when the warning is about one statement.
    pub statement: Option<(usize, Option<String>)>,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.policy)?;
        if let Some((index, sid)) = &self.statement {
            write!(f, " Statement[{index}]")?;
            if let Some(sid) = sid {
                write!(f, " (Sid {sid})")?;
            }
        }
        write!(f, ": {} Fix: {}", self.message, self.fix)
    }
}

/// The condition keys SES fills for `SendRawEmail` over SMTP (lower-cased), and whether each
/// is multivalued.
const SMTP_KEYS: &[(&str, bool)] = &[
    ("ses:recipients", true),
    ("ses:fromaddress", false),
    ("ses:fromdisplayname", false),
    ("ses:feedbackaddress", false),
    ("ses:apiversion", false),
    ("aws:currenttime", false),
    ("aws:epochtime", false),
    ("aws:securetransport", false),
    ("aws:sourceip", false),
    ("aws:useragent", false),
    ("aws:username", false),
    ("aws:userid", false),
    ("aws:principalarn", false),
    ("aws:principalaccount", false),
    ("aws:principaltype", false),
    ("aws:requestedregion", false),
];

/// Sending actions other than the one SMTP performs.
const OTHER_SEND_ACTIONS: &[&str] = &[
    "ses:SendEmail",
    "ses:SendTemplatedEmail",
    "ses:SendBulkEmail",
    "ses:SendBulkTemplatedEmail",
];

/// Every warning for one policy.
pub fn lint(policy: &Policy) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for statement in &policy.statements {
        let mut warn = |message: String, fix: &str| {
            warnings.push(Warning {
                policy: policy.name.to_string(),
                statement: Some((statement.index, statement.sid.as_deref().map(str::to_owned))),
                message,
                fix: fix.to_owned(),
            })
        };
        lint_actions(statement, &mut warn);
        for condition in &statement.conditions {
            lint_condition(statement, condition, &mut warn);
        }
    }
    warnings
}

/// Warnings about a sending authorization policy attached to the identity `identity_arn`, besides
/// [`lint`]'s: who it lets in, and what else it names.
pub fn lint_identity_policy(policy: &Policy, identity_arn: &str) -> Vec<Warning> {
    use super::principal::PrincipalEntry;
    let mut warnings = Vec::new();
    for statement in &policy.statements {
        let mut warn = |message: String, fix: &str| {
            warnings.push(Warning {
                policy: policy.name.to_string(),
                statement: Some((statement.index, statement.sid.as_deref().map(str::to_owned))),
                message,
                fix: fix.to_owned(),
            })
        };
        let Some(principals) = &statement.principal else {
            continue;
        };
        if statement.effect == Effect::Allow
            && principals.is_everyone()
            && statement.conditions.is_empty()
        {
            warn(
                format!(
                    "Principal \"*\" without a Condition lets every AWS account send as {identity_arn} (in its own account, every user its IAM policies allow)."
                ),
                "name the delegate accounts or users in Principal, or add a Condition that limits who may send.",
            );
        }
        if principals.negated && statement.effect == Effect::Allow {
            warn(
                "NotPrincipal with Allow grants every principal not listed, in every AWS account."
                    .into(),
                "name the principals to allow in Principal instead.",
            );
        }
        if principals.negated && statement.effect == Effect::Deny {
            warn(
                "NotPrincipal with Deny always denies a user that has a permissions boundary, whatever it lists (IAM-UG, permissions boundaries).".into(),
                "use Principal \"*\" with a Condition ArnNotEquals on aws:PrincipalArn instead.",
            );
        }
        for entry in &principals.entries {
            if let PrincipalEntry::Other { kind, value } = entry {
                warn(
                    format!(
                        "Principal {kind} {value} is never a user of the gateway, so this entry never applies to an SMTP sender."
                    ),
                    "name the IAM users or accounts that send through sesgate.",
                );
            }
        }
        for resource in &statement.resources.patterns {
            if resource.literal() != Some(identity_arn) {
                warn(
                    format!(
                        "Resource {:?} also covers identities other than {identity_arn}; SES requires the ARN of the identity the policy is attached to.",
                        resource.text()
                    ),
                    &format!("write \"{identity_arn}\"."),
                );
            }
        }
    }
    warnings
}

fn lint_actions(statement: &Statement, warn: &mut impl FnMut(String, &str)) {
    let sends_other = OTHER_SEND_ACTIONS
        .iter()
        .any(|a| statement.matches_action(a));
    if statement.effect == Effect::Allow
        && sends_other
        && !statement.matches_action(super::SEND_RAW_EMAIL)
    {
        warn(
            "this Allow covers SES sending actions but not ses:SendRawEmail, so it never allows an SMTP send.".into(),
            "add \"ses:SendRawEmail\" to Action (the SMTP interface is SendRawEmail).",
        );
    }
}

fn lint_condition(
    statement: &Statement,
    condition: &Condition,
    warn: &mut impl FnMut(String, &str),
) {
    let key = condition.key_id.as_str();
    let known = SMTP_KEYS.iter().find(|(k, _)| *k == key);
    let (operator, shown_key) = (&condition.operator, &condition.key);
    let why = match key {
        // SES-DG confused-deputy guidance: set when a service acts for the identity owner.
        "aws:sourceaccount" | "aws:sourcearn" => {
            " (SES sets it when an AWS service acts for the identity owner through a Service principal, never for an IAM user's request)"
        }
        "aws:principalorgid" => " (sesgate does not model AWS Organizations)",
        _ => "",
    };
    match known {
        None if !key.starts_with("aws:principaltag/") => warn(
            format!(
                "{shown_key} is not a condition key SES sets for SendRawEmail over SMTP{why}; the condition always sees it missing."
            ),
            "use one of ses:Recipients, ses:FromAddress, ses:FromDisplayName, ses:FeedbackAddress, ses:ApiVersion, aws:CurrentTime, aws:EpochTime, aws:SecureTransport, aws:SourceIp, aws:UserAgent.",
        ),
        Some((_, true))
            if condition.set == SetQualifier::Plain && !matches!(condition.test, Test::Null(_)) =>
        {
            warn(
                format!(
                    "{operator} on the multivalued key {shown_key} without ForAnyValue:/ForAllValues:; sesgate then requires every value to match in an Allow and any value in a Deny."
                ),
                "write ForAllValues:/ForAnyValue: to say which one you mean.",
            )
        }
        Some((_, false)) if condition.set != SetQualifier::Plain => warn(
            format!("{operator} is a set operator on the single-valued key {shown_key}."),
            "drop the ForAllValues:/ForAnyValue: prefix.",
        ),
        _ => {}
    }
    if key == "ses:recipients"
        && condition.set == SetQualifier::ForAllValues
        && statement.effect == Effect::Allow
        && !condition.if_exists
        && !requires_present(statement, &condition.key_id)
    {
        warn(
            "ForAllValues with Allow is also true when ses:Recipients is missing or empty (IAM: overly permissive).".into(),
            "add a \"Null\": {\"ses:Recipients\": \"false\"} condition, or restrict recipients with a Deny and ForAnyValue:StringNotLike.",
        );
    }
    if let Test::StringLike(patterns) = &condition.test {
        for pattern in patterns {
            if key.starts_with("ses:") && !pattern.has_wildcards() && !pattern.has_variables() {
                let text = literal_text(pattern.tokens());
                warn(
                    format!(
                        "StringLike {shown_key} \"{text}\" has no wildcard, so it matches exactly \"{text}\" (not values that contain it)."
                    ),
                    &format!(
                        "write \"*{text}*\" to match values containing it, or StringEquals for an exact match."
                    ),
                );
            }
            let regex_like = pattern
                .tokens()
                .windows(2)
                .any(|w| matches!(w, [Token::Lit(s), Token::Star] if s.ends_with('.')));
            if regex_like {
                warn(
                    format!(
                        "StringLike {shown_key} contains \".*\": in IAM \".\" is a literal dot, not \"any character\"."
                    ),
                    "write \"*\" for \"any string\" (for example marketing+*@example.com).",
                );
            }
        }
    }
    if let Test::Arn(patterns) = &condition.test {
        for pattern in patterns {
            if let Some(count) = pattern.static_component_count()
                && count < 6
            {
                warn(
                    format!(
                        "{operator} {shown_key} \"{}\" has {count} of the six ARN components; AWS does not define how it compares, so sesgate never compares it: an Allow with this condition never applies and a Deny always applies.",
                        pattern.text(),
                    ),
                    "write all six components, with * for any (for example arn:aws:iam::*:user/*).",
                );
            }
        }
    }
    if key == "ses:apiversion"
        && let Test::StringEquals { values, .. } = &condition.test
        && values
            .iter()
            .any(|v| v.as_literal().is_some_and(|l| l != "2"))
    {
        warn(
            format!(
                "{shown_key} is compared with a value other than \"2\"; the SMTP interface is SES API version 2."
            ),
            "compare ses:ApiVersion with \"2\".",
        );
    }
}

/// True when the statement also has `"Null": {key: "false"}`: the key must be present, so a
/// `ForAllValues` condition on it cannot be satisfied by a missing or empty key.
fn requires_present(statement: &Statement, key: &super::context::Key) -> bool {
    statement.conditions.iter().any(|c| {
        c.key_id == *key
            && matches!(&c.test, Test::Null(expect_missing) if !expect_missing.is_empty() && expect_missing.iter().all(|m| !m))
    })
}

fn literal_text(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| match t {
            Token::Lit(s) => s.to_string(),
            _ => String::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(statement: &str) -> Vec<String> {
        let policy = Policy::parse(
            "P",
            &format!(r#"{{"Version":"2012-10-17","Statement":{statement}}}"#),
        )
        .unwrap();
        lint(&policy).iter().map(ToString::to_string).collect()
    }

    fn one(statement: &str, expected: &str) {
        let found = warnings(statement);
        assert!(
            found.iter().any(|w| w.contains(expected)),
            "{found:?} lacks {expected:?}"
        );
    }

    #[test]
    fn each_lint() {
        one(
            r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringLike":{"ses:FromDisplayName":"Marketing"}}}"#,
            "P Statement[0]: StringLike ses:FromDisplayName \"Marketing\" has no wildcard",
        );
        one(
            r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringLike":{"ses:FromAddress":"marketing+.*@example.com"}}}"#,
            "contains \".*\"",
        );
        one(
            r#"{"Sid":"R","Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ForAllValues:StringLike":{"ses:Recipients":"*@example.com"}}}"#,
            "P Statement[0] (Sid R): ForAllValues with Allow is also true when ses:Recipients is missing",
        );
        one(
            r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"ses:FromAddress":"a@b.c"}}}"#,
            "set operator on the single-valued key ses:FromAddress",
        );
        one(
            r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringLike":{"ses:Recipients":"*@example.com"}}}"#,
            "on the multivalued key ses:Recipients without ForAnyValue",
        );
        one(
            r#"{"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:*"}}}"#,
            "\"arn:aws:*\" has 3 of the six ARN components",
        );
        one(
            r#"{"Effect":"Allow","Action":"ses:SendEmail","Resource":"*"}"#,
            "never allows an SMTP send",
        );
        one(
            r#"{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"StringEquals":{"ses:ApiVersion":"1"}}}"#,
            "other than \"2\"",
        );
        one(
            r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringEquals":{"ses:FromDomain":"example.com"}}}"#,
            "ses:FromDomain is not a condition key SES sets",
        );
        one(
            r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringEquals":{"aws:SourceAccount":"123456789012"}}}"#,
            "aws:SourceAccount is not a condition key SES sets for SendRawEmail over SMTP (SES sets it when an AWS service acts",
        );
    }

    #[test]
    fn clean_policies_have_no_warnings() {
        assert!(
            warnings(
                r#"{"Effect":"Allow","Action":["ses:SendEmail","ses:SendRawEmail"],"Resource":"*"}"#
            )
            .is_empty()
        );
        assert!(warnings(r#"{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"StringEquals":{"ses:ApiVersion":"2"}}}"#).is_empty());
        assert!(warnings(r#"{"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ForAnyValue:StringLike":{"ses:Recipients":"*@competitor.com"}}}"#).is_empty());
        assert!(warnings(r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringLike":{"ses:FromAddress":"*@example.com"},"Null":{"ses:Recipients":"false"}}}"#).is_empty());
        // The Null condition that the ForAllValues warning asks for silences it (any key case).
        assert!(warnings(r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ForAllValues:StringLike":{"ses:Recipients":"*@example.com"},"Null":{"SES:recipients":"false"}}}"#).is_empty());
        assert!(warnings(r#"{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:user/*"}}}"#).is_empty());
    }

    #[test]
    fn identity_policy_lints() {
        let identity = "arn:aws:ses:us-east-1:888888888888:identity/example.com";
        let lints = |statement: &str| -> Vec<String> {
            let policy = Policy::parse_resource(
                "Delegate",
                &format!(r#"{{"Version":"2012-10-17","Statement":{statement}}}"#),
            )
            .unwrap();
            lint_identity_policy(&policy, identity)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let has = |found: &[String], want: &str| {
            assert!(
                found.iter().any(|w| w.contains(want)),
                "{found:?} lacks {want:?}"
            )
        };
        has(
            &lints(&format!(
                r#"{{"Effect":"Allow","Principal":"*","Action":"ses:SendRawEmail","Resource":"{identity}"}}"#
            )),
            "Delegate Statement[0]: Principal \"*\" without a Condition lets every AWS account send",
        );
        has(
            &lints(
                r#"{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"ses:SendRawEmail","Resource":"arn:aws:ses:*:888888888888:identity/*"}"#,
            ),
            "also covers identities other than",
        );
        has(
            &lints(&format!(
                r#"{{"Effect":"Deny","NotPrincipal":{{"AWS":"123456789012"}},"Action":"ses:SendRawEmail","Resource":"{identity}"}}"#
            )),
            "always denies a user that has a permissions boundary",
        );
        has(
            &lints(&format!(
                r#"{{"Effect":"Allow","Principal":{{"Service":"cognito-idp.amazonaws.com"}},"Action":"ses:SendRawEmail","Resource":"{identity}"}}"#
            )),
            "is never a user of the gateway",
        );
        assert!(lints(&format!(r#"{{"Effect":"Allow","Principal":{{"AWS":"123456789012"}},"Action":"ses:SendRawEmail","Resource":"{identity}"}}"#)).is_empty());
        assert!(lints(&format!(r#"{{"Effect":"Allow","Principal":"*","Action":"ses:SendRawEmail","Resource":"{identity}","Condition":{{"StringEquals":{{"aws:PrincipalAccount":"123456789012"}}}}}}"#)).is_empty());
    }
}
