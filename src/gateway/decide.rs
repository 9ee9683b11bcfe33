//! The decision for one transaction, shared by `serve`, `simulate` and `replay` so that they can
//! never disagree: refusals before any policy (ambiguous From, unverified identities), then the
//! policies on every resource, and the exact SMTP reply of each outcome (`replies.rs`).
//!
//! Each resource is decided as IAM decides it (`iam::PolicySet::evaluate_for`): the user's
//! identity-based policies within its boundary and, for an identity with sending authorization
//! policies or owned by another account, that identity's resource-based policies (SPEC §4; IAM-UG
//! "Policy evaluation logic" and "Cross-account policy evaluation logic"; ses-iam-facts.md, the
//! sending-authorization addendum: SES "accepts the email if the delegate sender is authorized to
//! use the specified 'From' address and 'Return Path' address").

use jiff::Timestamp;

use super::directory::{Directory, UserEntry};
use super::headers;
use super::identities::Identities;
use super::replies;
use super::request::{self, Account, Refusal, SendRequest, TransactionFacts};
use crate::iam::{Authorization, Caller, Context, Decision, SEND_RAW_EMAIL};
use crate::smtp::Reply;

/// Decides transactions: the account, its users with their policies, and the header bounds.
/// Part of the reloadable snapshot, so a transaction is decided on one consistent set.
#[derive(Debug, Clone)]
pub struct Authorizer {
    pub account: Account,
    pub directory: Directory,
    /// Identities with owners and sending authorization policies (`[[identity]]`).
    pub identities: Identities,
    /// Bounds on the header section (`[limits]`).
    pub header_limits: headers::Limits,
    /// `[iam] enforce`: whether users without their own (or a group's) `enforce` are enforced.
    pub enforce: bool,
}

/// One transaction, as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The IAM user name the session authenticated as.
    pub user: &'a str,
    pub facts: TransactionFacts<'a>,
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

impl Ruling {
    /// The policy types that took part in the decision, as logs name them (`IAM policy`,
    /// `permissions boundary`, `resource policy`); none for a refusal before any policy.
    pub fn policy_types(&self) -> Vec<&'static str> {
        match self {
            Ruling::Refused { .. } => Vec::new(),
            Ruling::Denied { decision, .. } | Ruling::Allowed { decision, .. } => {
                decision.policy_types.roles().map(|r| r.label()).collect()
            }
        }
    }
}

/// The ruling and SES's reply for a refusal before any policy, in `region`.
pub(super) fn refused(refusal: Refusal, region: &str) -> Ruling {
    let (kind, why, reply) = match refusal {
        Refusal::Ambiguous(why) => ("ambiguous", why.clone(), replies::transaction_failed(&why)),
        Refusal::Unverified(addresses) => {
            let list = addresses.join(", ");
            let reply = replies::unverified(region, &list);
            ("unverified", list, reply)
        }
        Refusal::InvalidArn(arn) => {
            let reply = replies::invalid_arn(&arn);
            ("invalid-arn", reply.lines.join(" "), reply)
        }
        Refusal::Misaligned { address, arn } => {
            let reply = replies::misaligned(&address, &arn);
            ("misaligned", reply.lines.join(" "), reply)
        }
    };
    Ruling::Refused { kind, why, reply }
}

impl Authorizer {
    /// Whether `user`'s policy refusals refuse (false: report-only, relayed anyway). Refusals
    /// before any policy (ambiguous headers, unverified identities...) always refuse.
    pub fn enforced(&self, user: &str) -> bool {
        self.directory
            .user(user)
            .and_then(|u| u.enforce)
            .unwrap_or(self.enforce)
    }

    /// Every user that is not enforced, by name.
    pub fn not_enforced(&self) -> Vec<String> {
        self.directory
            .users()
            .into_iter()
            .filter(|u| !u.enforce.unwrap_or(self.enforce))
            .map(|u| u.principal.name.clone())
            .collect()
    }

    /// Decides `ses:SendRawEmail` by `user` on every resource: its identity-based policies, and
    /// each resource's sending authorization policies where it has a resource-based side.
    pub fn authorize(
        &self,
        user: &UserEntry,
        resources: &[String],
        context: &Context,
    ) -> Authorization {
        let principal = &user.principal;
        let caller = Caller {
            arn: &principal.arn,
            account: &principal.account,
            id: principal.id.as_deref(),
            has_boundary: false,
        };
        let sides: Vec<_> = resources
            .iter()
            .map(|r| (r.as_str(), self.identities.side(r, &principal.account)))
            .collect();
        user.policies
            .authorize_for(&caller, SEND_RAW_EMAIL, &sides, context)
    }

    pub fn decide(&self, input: Input<'_>, now: Timestamp) -> Ruling {
        let Some(user) = self.directory.user(input.user) else {
            // Credentials and users come from one file; a gap would be a bug. Fail closed.
            return Ruling::Refused {
                kind: "no-iam-user",
                why: format!("no IAM user {:?}", input.user),
                reply: replies::internal_failure(),
            };
        };
        let request = match request::build(
            input.message,
            input.facts,
            &user.principal,
            &self.account,
            &self.header_limits,
            now,
        ) {
            Ok(request) => request,
            Err(refusal) => return refused(refusal, &self.account.region),
        };
        let authorization = self.authorize(user, &request.resources, &request.context);
        if let Some((resource, decision)) = authorization.first_denied() {
            return Ruling::Denied {
                reply: replies::access_denied(&user.principal.arn, resource),
                resource: resource.to_owned(),
                decision: decision.clone(),
                request: Box::new(request),
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
