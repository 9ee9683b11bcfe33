//! Shared by the policy tests and the benches: the guide's policies from `policies/`, and the
//! context an SMTP transaction produces (the keys of SPEC §3).
#![allow(dead_code)]

use std::sync::Arc;

use sesgate::iam::{Context, Policy, PolicySet, Value};

/// The eight example policies of the SES guide, as named in `policies/`.
pub const GUIDE_POLICIES: [&str; 8] = [
    "AllowAllSesActions",
    "AllowApiVersion2Only",
    "AllowSendingOnly",
    "AllowSendingSeptember2018",
    "AllowRecipientsAtExampleCom",
    "AllowFromMarketingAddress",
    "AllowDisplayNameMarketing",
    "AllowFeedbackAddress",
];

pub const IDENTITY: &str = "arn:aws:ses:us-east-1:123456789012:identity/example.com";

/// The policy `policies/NAME.json`, compiled.
pub fn guide_policy(name: &str) -> Arc<Policy> {
    let path = format!("{}/policies/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Arc::new(Policy::parse(name, &text).unwrap_or_else(|e| panic!("{e}")))
}

/// A user whose only policy is `policies/NAME.json`.
pub fn user_with(name: &str) -> PolicySet {
    PolicySet::new(vec![guide_policy(name)], None)
}

/// One SMTP transaction's facts, with typical defaults.
#[derive(Clone)]
pub struct Smtp {
    pub from_address: &'static str,
    pub display_name: Option<&'static str>,
    pub mail_from: Option<&'static str>,
    pub recipients: Vec<&'static str>,
    pub time: &'static str,
    pub tls: bool,
    pub source_ip: &'static str,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            from_address: "marketing@example.com",
            display_name: Some("Marketing"),
            mail_from: Some("feedback@example.com"),
            recipients: vec!["alice@example.com", "bob@example.com"],
            time: "2018-09-15T10:00:00Z",
            tls: true,
            source_ip: "203.0.113.7",
        }
    }
}

impl Smtp {
    /// The context SPEC §3 defines for this transaction.
    pub fn context(&self) -> Context {
        let mut ctx = Context::new();
        let epoch = sesgate::iam::parse_date(self.time)
            .expect("test time parses")
            .as_second();
        ctx.set("ses:ApiVersion", Value::new("2"))
            .set("ses:FromAddress", Value::new(self.from_address))
            .set_multi(
                "ses:Recipients",
                self.recipients.iter().map(|r| Value::new(*r)).collect(),
            )
            .set("aws:CurrentTime", Value::new(self.time))
            .set("aws:EpochTime", Value::new(epoch.to_string()))
            .set("aws:SecureTransport", Value::new(self.tls.to_string()))
            .set("aws:SourceIp", Value::new(self.source_ip))
            .set("aws:username", Value::new("marketing-app"))
            .set(
                "aws:PrincipalArn",
                Value::new("arn:aws:iam::123456789012:user/apps/marketing-app"),
            );
        if let Some(name) = self.display_name {
            ctx.set("ses:FromDisplayName", Value::new(name));
        }
        if let Some(mail_from) = self.mail_from {
            ctx.set("ses:FeedbackAddress", Value::new(mail_from));
        }
        ctx
    }
}
