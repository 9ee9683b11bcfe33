//! The eight example policies of the SES guide (`policies/`), each with an SMTP context it
//! allows and one it denies, and the evaluation pitfalls of `ses-iam-facts.md` §E.

mod common;

use common::{IDENTITY, Smtp, guide_policy, user_with};
use sesgate::iam::{Outcome, Policy, PolicySet, SEND_RAW_EMAIL};

fn outcome(policy: &str, smtp: &Smtp) -> Outcome {
    user_with(policy)
        .evaluate(SEND_RAW_EMAIL, IDENTITY, &smtp.context())
        .outcome
}

fn assert_allows_and_denies(policy: &str, allowed: Smtp, denied: Smtp) {
    assert_eq!(
        outcome(policy, &allowed),
        Outcome::Allowed,
        "{policy} should allow"
    );
    assert_eq!(
        outcome(policy, &denied),
        Outcome::ImplicitDeny,
        "{policy} should deny"
    );
}

#[test]
fn full_access() {
    let set = user_with("AllowAllSesActions");
    assert!(
        set.evaluate(SEND_RAW_EMAIL, IDENTITY, &Smtp::default().context())
            .is_allowed()
    );
    assert!(
        set.evaluate("SES:getsendquota", "*", &Smtp::default().context())
            .is_allowed()
    );
    // Only ses: actions.
    assert!(
        !set.evaluate("sns:Publish", "*", &Smtp::default().context())
            .is_allowed()
    );
}

#[test]
fn api_version_2_only() {
    let set = user_with("AllowApiVersion2Only");
    assert!(
        set.evaluate(SEND_RAW_EMAIL, IDENTITY, &Smtp::default().context())
            .is_allowed()
    );
    let mut v1 = Smtp::default().context();
    v1.set("ses:ApiVersion", sesgate::iam::Value::new("1"));
    assert_eq!(
        set.evaluate(SEND_RAW_EMAIL, IDENTITY, &v1).outcome,
        Outcome::ImplicitDeny
    );
}

#[test]
fn sending_actions_only() {
    let set = user_with("AllowSendingOnly");
    let ctx = Smtp::default().context();
    assert!(set.evaluate(SEND_RAW_EMAIL, IDENTITY, &ctx).is_allowed());
    assert_eq!(
        set.evaluate("ses:GetSendStatistics", "*", &ctx).outcome,
        Outcome::ImplicitDeny
    );
}

#[test]
fn september_2018_only() {
    assert_allows_and_denies(
        "AllowSendingSeptember2018",
        Smtp::default(),
        Smtp {
            time: "2018-10-01T12:00:01Z",
            ..Smtp::default()
        },
    );
    // Both bounds are strict.
    let at_start = Smtp {
        time: "2018-08-31T12:00:00Z",
        ..Smtp::default()
    };
    assert_eq!(
        outcome("AllowSendingSeptember2018", &at_start),
        Outcome::ImplicitDeny
    );
}

#[test]
fn recipients_at_example_com() {
    assert_allows_and_denies(
        "AllowRecipientsAtExampleCom",
        Smtp::default(),
        Smtp {
            recipients: vec!["alice@example.com", "eve@example.org"],
            ..Smtp::default()
        },
    );
}

#[test]
fn from_marketing_address() {
    assert_allows_and_denies(
        "AllowFromMarketingAddress",
        Smtp::default(),
        Smtp {
            from_address: "sales@example.com",
            ..Smtp::default()
        },
    );
}

#[test]
fn display_name_marketing() {
    assert_allows_and_denies(
        "AllowDisplayNameMarketing",
        Smtp::default(),
        Smtp {
            display_name: Some("Sales"),
            ..Smtp::default()
        },
    );
}

#[test]
fn feedback_address() {
    assert_allows_and_denies(
        "AllowFeedbackAddress",
        Smtp::default(),
        Smtp {
            mail_from: Some("bounces@example.com"),
            ..Smtp::default()
        },
    );
    // A null reverse-path (`MAIL FROM:<>`) leaves ses:FeedbackAddress out: no match.
    assert_eq!(
        outcome(
            "AllowFeedbackAddress",
            &Smtp {
                mail_from: None,
                ..Smtp::default()
            }
        ),
        Outcome::ImplicitDeny
    );
}

#[test]
fn the_guides_send_bounce_example_never_allows_smtp() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ses:SendBounce"],"Resource":"*","Condition":{"StringEquals":{"ses:FromAddress":"bounce@example.com"}}}]}"#;
    let set = PolicySet::new(
        vec![std::sync::Arc::new(
            Policy::parse("SendBounce", policy).unwrap(),
        )],
        None,
    );
    let smtp = Smtp {
        from_address: "bounce@example.com",
        ..Smtp::default()
    };
    assert_eq!(
        set.evaluate(SEND_RAW_EMAIL, IDENTITY, &smtp.context())
            .outcome,
        Outcome::ImplicitDeny
    );
}

// Pitfalls, ses-iam-facts.md §E.

#[test]
fn pitfall_stringlike_marketing_is_exact() {
    // The guide says "includes Marketing"; IAM's StringLike without a wildcard is equality.
    for name in ["Marketing Team", "The Marketing", "marketing"] {
        let smtp = Smtp {
            display_name: Some(name),
            ..Smtp::default()
        };
        assert_eq!(
            outcome("AllowDisplayNameMarketing", &smtp),
            Outcome::ImplicitDeny,
            "{name}"
        );
    }
    // And with no display name at all, the key is missing: no match.
    assert_eq!(
        outcome(
            "AllowDisplayNameMarketing",
            &Smtp {
                display_name: None,
                ..Smtp::default()
            }
        ),
        Outcome::ImplicitDeny
    );
}

#[test]
fn pitfall_dot_star_is_literal_in_stringlike() {
    let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringLike":{"ses:FromAddress":"marketing+.*@example.com"}}}}"#;
    let set = PolicySet::new(
        vec![std::sync::Arc::new(
            Policy::parse("Regexish", policy).unwrap(),
        )],
        None,
    );
    let decide = |from: &'static str| {
        set.evaluate(
            SEND_RAW_EMAIL,
            IDENTITY,
            &Smtp {
                from_address: from,
                ..Smtp::default()
            }
            .context(),
        )
        .outcome
    };
    assert_eq!(decide("marketing+foo@example.com"), Outcome::ImplicitDeny);
    assert_eq!(decide("marketing+.foo@example.com"), Outcome::Allowed);
}

#[test]
fn pitfall_for_all_values_allows_an_empty_recipient_set() {
    let empty = Smtp {
        recipients: vec![],
        ..Smtp::default()
    };
    assert_eq!(
        outcome("AllowRecipientsAtExampleCom", &empty),
        Outcome::Allowed
    );
}

#[test]
fn pitfall_values_are_case_sensitive() {
    let upper = Smtp {
        recipients: vec!["alice@EXAMPLE.COM"],
        ..Smtp::default()
    };
    assert_eq!(
        outcome("AllowRecipientsAtExampleCom", &upper),
        Outcome::ImplicitDeny
    );
    let from_upper = Smtp {
        from_address: "Marketing@example.com",
        ..Smtp::default()
    };
    assert_eq!(
        outcome("AllowFromMarketingAddress", &from_upper),
        Outcome::ImplicitDeny
    );
}

#[test]
fn pitfall_negated_leading_star_also_matches_subdomains() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:*","Resource":"*"},{"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringLike":{"ses:FromAddress":"*admin*example.com"}}}]}"#;
    let set = PolicySet::new(
        vec![std::sync::Arc::new(
            Policy::parse("NoAdmin", policy).unwrap(),
        )],
        None,
    );
    for from in [
        "sender@admin.example.com",
        "\"admin\"@example.com",
        "admin@example.com",
    ] {
        let smtp = Smtp {
            from_address: from,
            ..Smtp::default()
        };
        assert_eq!(
            set.evaluate(SEND_RAW_EMAIL, IDENTITY, &smtp.context())
                .outcome,
            Outcome::ExplicitDeny,
            "{from}"
        );
    }
}

#[test]
fn deny_for_any_recipient_at_a_competitor() {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*"},{"Sid":"NoCompetitors","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ForAnyValue:StringLike":{"ses:Recipients":"*@competitor.com"}}}]}"#;
    let set = PolicySet::new(
        vec![std::sync::Arc::new(
            Policy::parse("NoCompetitors", policy).unwrap(),
        )],
        None,
    );
    let decide = |recipients: Vec<&'static str>| {
        set.evaluate(
            SEND_RAW_EMAIL,
            IDENTITY,
            &Smtp {
                recipients,
                ..Smtp::default()
            }
            .context(),
        )
    };
    let denied = decide(vec!["a@example.com", "x@competitor.com"]);
    assert_eq!(denied.outcome, Outcome::ExplicitDeny);
    assert_eq!(
        denied.reason(),
        "explicitly denied by NoCompetitors Statement[1] Sid NoCompetitors"
    );
    assert_eq!(decide(vec!["a@example.com"]).outcome, Outcome::Allowed);
}

#[test]
fn every_guide_policy_loads() {
    let dir = format!("{}/policies", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            guide_policy(path.file_stem().unwrap().to_str().unwrap());
            count += 1;
        }
    }
    assert_eq!(count, 8);
}
