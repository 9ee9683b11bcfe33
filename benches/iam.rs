//! Decision time (SPEC §12): each guide example on a typical SMTP context (target: median under
//! 1 µs), and a user with 20 policies of 10 statements (target: under 10 µs). Policies and
//! contexts are built outside the timed closure; only `PolicySet::evaluate` is measured.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;

use common::{GUIDE_POLICIES, IDENTITY, Smtp, user_with};
use criterion::{Criterion, criterion_group, criterion_main};
use sesgate::iam::{Caller, Policy, PolicySet, ResourceSide, SEND_RAW_EMAIL};

fn guide_examples(c: &mut Criterion) {
    let ctx = Smtp::default().context();
    let mut group = c.benchmark_group("guide_example");
    for name in GUIDE_POLICIES {
        let set = user_with(name);
        assert!(
            set.evaluate(SEND_RAW_EMAIL, IDENTITY, &ctx).is_allowed(),
            "{name} allows the typical context"
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                set.evaluate(
                    black_box(SEND_RAW_EMAIL),
                    black_box(IDENTITY),
                    black_box(&ctx),
                )
            })
        });
    }
    group.finish();
}

/// Ten statements of the kinds operators write: identity-scoped allows, recipient and sender
/// restrictions, time windows, source-IP denies. Only the last policy's last statement allows
/// the benchmark's transaction, so every statement is evaluated.
fn policy_of_ten(n: usize, allows: bool) -> Arc<Policy> {
    let from = if allows {
        "marketing@example.com"
    } else {
        "nobody@example.net"
    };
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":[
 {{"Sid":"S0","Effect":"Allow","Action":["ses:SendEmail","ses:SendRawEmail"],"Resource":"arn:aws:ses:us-east-1:123456789012:identity/team{n}.example.com"}},
 {{"Sid":"S1","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{{"ForAnyValue:StringLike":{{"ses:Recipients":["*@competitor{n}.com","*@rival{n}.org"]}}}}}},
 {{"Sid":"S2","Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{{"StringEquals":{{"ses:FromAddress":"team{n}@example.com"}}}}}},
 {{"Sid":"S3","Effect":"Deny","Action":"ses:*","Resource":"*","Condition":{{"NotIpAddress":{{"aws:SourceIp":["203.0.113.0/24","198.51.100.0/24","2001:db8::/32"]}}}}}},
 {{"Sid":"S4","Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{{"DateGreaterThan":{{"aws:CurrentTime":"2030-01-01T00:00Z"}}}}}},
 {{"Sid":"S5","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{{"StringLike":{{"ses:FromAddress":"*admin{n}*"}}}}}},
 {{"Sid":"S6","Effect":"Allow","Action":"ses:Get*","Resource":"*"}},
 {{"Sid":"S7","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{{"Bool":{{"aws:SecureTransport":"false"}}}}}},
 {{"Sid":"S8","Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{{"StringEquals":{{"ses:FeedbackAddress":"bounces{n}@example.com"}}}}}},
 {{"Sid":"S9","Effect":"Allow","Action":"ses:SendRawEmail","Resource":"arn:aws:ses:*:123456789012:identity/*","Condition":{{"StringEquals":{{"ses:FromAddress":"{from}"}},"ForAllValues:StringLike":{{"ses:Recipients":"*@example.com"}}}}}}
]}}"#
    );
    Arc::new(Policy::parse(&format!("Policy{n}"), &text).expect("bench policy parses"))
}

fn twenty_by_ten(c: &mut Criterion) {
    let policies = (0..20).map(|n| policy_of_ten(n, n == 19)).collect();
    let set = PolicySet::new(policies, None);
    let ctx = Smtp::default().context();
    let decision = set.evaluate(SEND_RAW_EMAIL, IDENTITY, &ctx);
    assert!(decision.is_allowed(), "{}", decision.reason());
    c.bench_function("user_20_policies_x_10_statements", |b| {
        b.iter(|| {
            set.evaluate(
                black_box(SEND_RAW_EMAIL),
                black_box(IDENTITY),
                black_box(&ctx),
            )
        })
    });
}

/// Issue 8 §4: a client-controlled resource ARN of 16,000 colons (an `X-SES-*-ARN` header took
/// 2.2 s per message with the old recursive matcher) against Resource patterns that take each
/// matching path: flat glob, the spanning-star automaton, and a literal.
fn hostile_resource(c: &mut Criterion) {
    let hostile = format!("arn:aws:ses:{}", "a:".repeat(8_000));
    let text = r#"{"Version":"2012-10-17","Statement":[
 {"Effect":"Deny","Action":"ses:SendRawEmail","Resource":["arn:aws:ses:*:?*:identity/*","arn:aws:ses:us*1:*:identity/*"]},
 {"Effect":"Allow","Action":"ses:SendRawEmail","Resource":["arn:aws:ses:*:*:identity/*@example.com","arn:aws:ses:us-east-1:123456789012:identity/example.com"]}
]}"#;
    let set = PolicySet::new(
        vec![Arc::new(Policy::parse("Hostile", text).expect("parses"))],
        None,
    );
    let ctx = Smtp::default().context();
    assert!(!set.evaluate(SEND_RAW_EMAIL, &hostile, &ctx).is_allowed());
    c.bench_function("hostile_resource_16000_colons", |b| {
        b.iter(|| {
            set.evaluate(
                black_box(SEND_RAW_EMAIL),
                black_box(&hostile),
                black_box(&ctx),
            )
        })
    });
}

/// Issue 15 §4: what one transaction really pays before the relay, through the gateway's own
/// `Authorizer::decide` on the embedded default configuration (user `demo`, AllowSendingOnly):
/// the strict header read, the request (context, resources, identities) and the decision, for
/// a 10 KB message with 20 header fields and two recipients.
fn whole_decision_path(c: &mut Criterion) {
    use sesgate::gateway::request::TransactionFacts;
    use sesgate::gateway::{Input, Ruling};
    let config = sesgate::config::Config::embedded_default(std::env::temp_dir());
    let (authorizer, ..) = sesgate::gateway::load_authorizer(&config).expect("embedded config");
    let mut message = String::from(
        "From: Marketing <marketing@example.com>\r\nTo: alice@example.com, bob@example.com\r\n\
         Subject: the monthly letter\r\nDate: Sat, 15 Sep 2018 10:00:00 +0000\r\n\
         Message-ID: <1234567890.abcdef@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\
         Return-Path: <feedback@example.com>\r\nReply-To: marketing@example.com\r\n",
    );
    for n in 0..10 {
        message.push_str(&format!(
            "X-Campaign-{n}: spring-{n}; segment=all; batch={n}\r\n"
        ));
    }
    message.push_str("\r\n");
    while message.len() < 10 * 1024 {
        message
            .push_str("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiu.\r\n");
    }
    let recipients = vec!["alice@example.com".to_owned(), "bob@example.com".to_owned()];
    let input = Input {
        user: "demo",
        facts: TransactionFacts {
            tls: true,
            client: "203.0.113.7".parse().unwrap(),
            mail_from: "feedback@example.com",
            recipients: &recipients,
        },
        message: message.as_bytes(),
    };
    let now = jiff::Timestamp::now();
    let ruling = authorizer.decide(input, now);
    assert!(matches!(ruling, Ruling::Allowed { .. }), "{ruling:?}");
    c.bench_function("whole_decision_path_10kb_20_fields", |b| {
        b.iter(|| authorizer.decide(black_box(input), black_box(now)))
    });
}

/// Issue 11: a delegate of another account sending through an identity with the SES guide's
/// sending authorization policy (a grant to the delegate's account with a From condition, and a
/// Deny): both sides are evaluated.
fn delegate_with_sending_authorization(c: &mut Criterion) {
    let set = user_with("AllowSendingOnly");
    let text = format!(
        r#"{{"Version":"2012-10-17","Statement":[
 {{"Sid":"AuthorizePartner","Effect":"Allow","Principal":{{"AWS":["444455556666"]}},"Action":["ses:SendEmail","ses:SendRawEmail"],"Resource":"{IDENTITY}","Condition":{{"StringLike":{{"ses:FromAddress":"*@example.com"}}}}}},
 {{"Sid":"NeverAdmin","Effect":"Deny","Principal":"*","Action":"ses:Send*","Resource":"{IDENTITY}","Condition":{{"StringEquals":{{"ses:FromAddress":"admin@example.com"}}}}}}
]}}"#
    );
    let policies = [Arc::new(
        Policy::parse_resource("DelegateToPartner", &text).expect("bench policy parses"),
    )];
    let side = ResourceSide {
        owner: "123456789012",
        policies: &policies,
    };
    let caller = Caller {
        arn: "arn:aws:iam::444455556666:user/partner",
        account: "444455556666",
        id: None,
        has_boundary: false,
    };
    let ctx = Smtp::default().context();
    let decision = set.evaluate_for(&caller, SEND_RAW_EMAIL, IDENTITY, Some(side), &ctx);
    assert!(decision.is_allowed(), "{}", decision.reason());
    c.bench_function("delegate_with_sending_authorization", |b| {
        b.iter(|| {
            set.evaluate_for(
                black_box(&caller),
                black_box(SEND_RAW_EMAIL),
                black_box(IDENTITY),
                black_box(Some(side)),
                black_box(&ctx),
            )
        })
    });
}

criterion_group!(
    benches,
    guide_examples,
    twenty_by_ten,
    hostile_resource,
    whole_decision_path,
    delegate_with_sending_authorization
);
criterion_main!(benches);
