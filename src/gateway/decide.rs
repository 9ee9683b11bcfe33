//! The decision for one transaction, shared by `serve` and `simulate` so that they can never
//! disagree: refusals before any policy (ambiguous From, unverified identities), then the user's
//! policies on every resource, and the exact SMTP reply of each outcome.

use std::net::IpAddr;

use jiff::Timestamp;

use super::directory::Directory;
use super::headers;
use super::request::{self, Account, Connection, Refusal, SendRequest};
use crate::iam::{Decision, SEND_RAW_EMAIL};
use crate::smtp::{Reply, reply};

/// Everything a decision depends on besides the transaction: immutable, swapped whole on
/// reload, so a transaction is decided on one consistent set.
#[derive(Debug, Clone)]
pub struct Policies {
    pub account: Account,
    pub directory: Directory,
    /// Bounds on the header section (`[limits]`).
    pub header_limits: headers::Limits,
}

/// One transaction, as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The IAM user name the session authenticated as.
    pub user: &'a str,
    pub tls: bool,
    pub client: IpAddr,
    pub mail_from: &'a str,
    pub recipients: &'a [String],
    pub message: &'a [u8],
}

/// What was decided.
#[derive(Debug, Clone)]
pub enum Ruling {
    /// Refused before any policy was read: `kind` is `ambiguous`, `unverified` or `no-iam-user`.
    Refused {
        kind: &'static str,
        why: String,
        reply: Reply,
    },
    /// A policy did not allow it on `resource`.
    Denied {
        request: Box<SendRequest>,
        resource: String,
        decision: Decision,
        reply: Reply,
    },
    /// Allowed on every resource; relay it.
    Allowed {
        request: Box<SendRequest>,
        decision: Decision,
    },
}

/// The ruling and SES's reply for a refusal before any policy, in `region`.
pub(crate) fn refused(refusal: Refusal, region: &str) -> Ruling {
    let (kind, why, reply) = match refusal {
        Refusal::Ambiguous(why) => ("ambiguous", why.clone(), reply::transaction_failed(&why)),
        Refusal::Unverified(addresses) => {
            let list = addresses.join(", ");
            let reply = reply::unverified(&region.to_uppercase(), &list);
            ("unverified", list, reply)
        }
        Refusal::InvalidArn(arn) => {
            let reply = reply::invalid_arn(&arn);
            ("invalid-arn", reply.lines.join(" "), reply)
        }
        Refusal::OtherAccount(arn) => {
            let reply = reply::other_account_arn(&arn);
            ("other-account", reply.lines.join(" "), reply)
        }
        Refusal::Misaligned { address, arn } => {
            let reply = reply::misaligned(&address, &arn);
            ("misaligned", reply.lines.join(" "), reply)
        }
    };
    Ruling::Refused { kind, why, reply }
}

impl Policies {
    pub fn decide(&self, input: Input<'_>, now: Timestamp) -> Ruling {
        let Some(user) = self.directory.user(input.user) else {
            // Credentials and users come from one file; a gap would be a bug. Fail closed.
            return Ruling::Refused {
                kind: "no-iam-user",
                why: format!("no IAM user {:?}", input.user),
                reply: reply::temporary_failure(),
            };
        };
        let connection = Connection {
            tls: input.tls,
            client: input.client,
            mail_from: input.mail_from,
            recipients: input.recipients,
        };
        let request = match request::build(
            input.message,
            connection,
            &user.principal,
            &self.account,
            &self.header_limits,
            now,
        ) {
            Ok(request) => request,
            Err(refusal) => return refused(refusal, &self.account.region),
        };
        let authorization =
            user.policies
                .authorize(SEND_RAW_EMAIL, &request.resources, &request.context);
        if let Some((resource, decision)) = authorization.first_denied() {
            let reply = Reply::new(
                554,
                format!(
                    "5.7.1 Access denied: User `{}' is not authorized to perform `{SEND_RAW_EMAIL}' on resource `{resource}'",
                    user.principal.arn
                ),
            );
            return Ruling::Denied {
                resource: resource.to_owned(),
                decision: decision.clone(),
                request: Box::new(request),
                reply,
            };
        }
        let decision = authorization
            .resources
            .into_iter()
            .next()
            .map(|(_, decision)| decision)
            .expect("a request always has its identity resource");
        Ruling::Allowed {
            request: Box::new(request),
            decision,
        }
    }
}
