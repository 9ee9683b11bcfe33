//! Policy JSON parsing and compiling (`sesgate::iam::Policy::parse`, the load path of every
//! policy file and of `simulate-custom-policy`) and the simulator's context-entry helpers.
//!
//! Input: `[mode, text...]`.
//! - mode 0: text is a policy: parse never panics; a loaded policy is linted and evaluated, as an
//!   identity policy and as a permissions boundary, on a fixed sendmail-like context.
//! - mode 1: text is a `--context-entries` argument (JSON or shorthand): parsing and
//!   `build_context` never panic; a built context is evaluated against the guide's policies.
//! - mode 2: text is `policy NUL context-entries`: `simulate` never panics.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sesgate::commands::simulate_custom_policy as simulator;
use sesgate::iam::{Context, Policy, PolicySet, SEND_RAW_EMAIL, Value, lint};

/// An identity-based policy that allows everything, so the resource policy decides.
const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;

const RESOURCES: [&str; 3] = [
    "arn:aws:ses:us-east-1:123456789012:identity/example.com",
    "arn:aws:ses:us-east-1:123456789012:identity/marketing@example.com",
    "arn:aws:ses:us-east-1:123456789012:configuration-set/audit",
];

fn fixed_context() -> Context {
    let mut ctx = Context::new();
    ctx.set("ses:ApiVersion", Value::new("2"))
        .set("ses:FromAddress", Value::new("marketing@example.com"))
        .set("ses:FromDisplayName", Value::new("Marketing"))
        .set("ses:FeedbackAddress", Value::new("bounce@example.com"))
        .set_multi(
            "ses:Recipients",
            vec![Value::new("a@example.com"), Value::new("b@other.org")],
        )
        .set(
            "aws:CurrentTime",
            Value::time(jiff::Timestamp::from_second(1_535_716_800).unwrap()),
        )
        .set("aws:EpochTime", Value::new("1535716800"))
        .set("aws:SecureTransport", Value::new("true"))
        .set("aws:SourceIp", Value::new("203.0.113.7"))
        .set("aws:username", Value::new("app"))
        .set(
            "aws:PrincipalArn",
            Value::new("arn:aws:iam::123456789012:user/apps/app"),
        )
        .set("aws:PrincipalAccount", Value::new("123456789012"))
        .set("aws:userid", Value::new("AIDAEXAMPLE"))
        .set("aws:RequestedRegion", Value::new("us-east-1"));
    ctx
}

fn evaluate(set: &PolicySet, ctx: &Context) {
    for action in [SEND_RAW_EMAIL, "ses:SendEmail", "iam:PassRole"] {
        let authorization = set.authorize(action, &RESOURCES, ctx);
        let denied = authorization
            .first_denied()
            .map(|(resource, _)| resource.to_owned());
        let mut first_denied = None;
        for resource in RESOURCES {
            let decision = set.evaluate(action, resource, ctx);
            if !decision.is_allowed() && first_denied.is_none() {
                first_denied = Some(resource.to_string());
            }
            let _ = decision.reason();
            let _ = set.missing_context_keys(action, resource, ctx);
        }
        assert_eq!(
            denied, first_denied,
            "authorize and evaluate disagree on the first denied resource"
        );
    }
}

fn guide_policies() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        let texts = [
            include_str!("../../policies/AllowApiVersion2Only.json"),
            include_str!("../../policies/AllowDisplayNameMarketing.json"),
            include_str!("../../policies/AllowFeedbackAddress.json"),
            include_str!("../../policies/AllowFromMarketingAddress.json"),
            include_str!("../../policies/AllowRecipientsAtExampleCom.json"),
            include_str!("../../policies/AllowSendingSeptember2018.json"),
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["198.51.100.0/24","2001:db8::/32"]},"Bool":{"aws:SecureTransport":"false"},"NumericLessThan":{"aws:EpochTime":"1798761600"},"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::${aws:PrincipalAccount}:user/*"},"Null":{"ses:FromDisplayName":"true"},"ForAllValues:StringLikeIfExists":{"ses:Recipients":["*@example.com","${aws:username}@*"]}}}]}"#,
        ];
        let policies = texts
            .iter()
            .enumerate()
            .filter_map(|(i, text)| Policy::parse(&format!("guide{i}"), text).ok())
            .map(Arc::new)
            .collect();
        PolicySet::new(policies, None)
    })
}

fuzz_target!(|input: &[u8]| {
    let [mode, text @ ..] = input else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // `file://` makes the simulator read a file: never from a fuzz input.
    if text.trim_start().starts_with("file://") || text.contains("\0file://") {
        return;
    }
    match mode % 3 {
        0 => {
            let Ok(policy) = Policy::parse("fuzz", text) else {
                return;
            };
            let _ = lint(&policy);
            let policy = Arc::new(policy);
            let ctx = fixed_context();
            evaluate(&PolicySet::new(vec![policy.clone()], None), &ctx);
            let allow_all = Policy::parse(
                "all",
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
            )
            .unwrap();
            evaluate(
                &PolicySet::new(vec![Arc::new(allow_all)], Some(policy)),
                &ctx,
            );
        }
        1 => {
            let Ok(entries) = simulator::parse_context_entries(text) else {
                return;
            };
            let Ok(ctx) = simulator::build_context(&entries) else {
                return;
            };
            evaluate(guide_policies(), &ctx);
        }
        _ => {
            let (policy, context) = text.split_once('\0').unwrap_or((text, ""));
            let context = if context.is_empty() {
                Vec::new()
            } else {
                match simulator::parse_context_entries(context) {
                    Ok(entries) => entries,
                    Err(_) => return,
                }
            };
            let input = simulator::Input {
                policies: vec![policy.to_owned()],
                boundaries: Vec::new(),
                actions: vec![SEND_RAW_EMAIL.to_owned(), "ses:SendEmail".to_owned()],
                resources: RESOURCES.iter().map(|r| (*r).to_owned()).collect(),
                context,
                ..simulator::Input::default()
            };
            if let Ok(output) = simulator::simulate(&input) {
                let _ = simulator::render(&output);
            }
            // The same document as an identity's sending authorization policy (resource-based,
            // with Principal), for a caller of another account whose IAM policy allows all.
            let input = simulator::Input {
                policies: vec![ALLOW_ALL.to_owned()],
                resource_policy: Some(policy.to_owned()),
                caller_arn: Some("arn:aws:iam::444455556666:user/apps/delegate".to_owned()),
                ..input
            };
            if let Ok(output) = simulator::simulate(&input) {
                let _ = simulator::render(&output);
            }
        }
    }
});
