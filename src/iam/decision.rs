//! Combining statements into a decision, as IAM does for an IAM user in its own account
//! (`ses-iam-facts.md` §C6):
//! 1. an explicit Deny in any applicable policy (identity or permissions boundary) wins;
//! 2. else the request is allowed when some identity statement allows it and, when a permissions
//!    boundary is set, some boundary statement allows it too;
//! 3. else it is implicitly denied. Deny is also the fail-safe: nothing here returns an error.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::SEND_RAW_EMAIL;
use super::context::Context;
use super::json::Span;
use super::policy::{Effect, Policy, Statement};

/// The outcome, named as AWS's simulator names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    ExplicitDeny,
    ImplicitDeny,
}

impl Outcome {
    /// `allowed`, `explicitDeny` or `implicitDeny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::ExplicitDeny => "explicitDeny",
            Outcome::ImplicitDeny => "implicitDeny",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which list a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRole {
    Identity,
    PermissionsBoundary,
}

/// A statement that took part in a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementRef {
    pub policy: Arc<str>,
    pub role: PolicyRole,
    /// Position in the policy's `Statement` list (0-based, as in the JSON path `Statement[0]`).
    pub index: usize,
    pub sid: Option<Arc<str>>,
    pub effect: Effect,
    pub span: Option<Span>,
}

impl fmt::Display for StatementRef {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.policy)?;
        if self.role == PolicyRole::PermissionsBoundary {
            f.write_str(" (permissions boundary)")?;
        }
        write!(f, " Statement[{}]", self.index)?;
        if let Some(sid) = &self.sid {
            write!(f, " Sid {sid}")?;
        }
        Ok(())
    }
}

/// A decision for one action on one resource, with its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The deciding statements: the Deny statements for an explicit deny; the allowing identity
    /// and boundary statements for an allow; for an implicit deny, the identity statements that
    /// allowed when the permissions boundary did not (else empty: "no statement allows").
    pub statements: Vec<StatementRef>,
    /// Whether the permissions boundary allowed; `None` when no boundary is set.
    pub allowed_by_boundary: Option<bool>,
    /// For an implicit deny: the condition keys that statements for this action and resource
    /// reference and the request lacks (what the deny may be waiting for). Empty otherwise.
    pub missing_keys: Vec<String>,
}

impl Decision {
    /// True when allowed.
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allowed
    }

    /// A one-line reason for logs and the CLI.
    pub fn reason(&self) -> String {
        let list = || {
            self.statements
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.outcome {
            Outcome::Allowed => format!("allowed by {}", list()),
            Outcome::ExplicitDeny => format!("explicitly denied by {}", list()),
            Outcome::ImplicitDeny if self.statements.is_empty() && self.missing_keys.is_empty() => {
                "no statement allows".to_owned()
            }
            Outcome::ImplicitDeny if self.statements.is_empty() => format!(
                "no statement allows (the request lacks {}, which the policies test)",
                self.missing_keys.join(", ")
            ),
            Outcome::ImplicitDeny => {
                format!("allowed by {} but not by the permissions boundary", list())
            }
        }
    }
}

/// The decision for one request over several resources: allowed only if allowed on every one.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    /// Each resource with its decision, in the order given.
    pub resources: Vec<(String, Decision)>,
}

impl Authorization {
    /// The first resource that was not allowed, with its decision.
    pub fn first_denied(&self) -> Option<(&str, &Decision)> {
        self.resources
            .iter()
            .find(|(_, d)| !d.is_allowed())
            .map(|(r, d)| (r.as_str(), d))
    }
}

/// The policies that apply to one principal: its identity policies (user and group, inline and
/// managed) and its optional permissions boundary.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    identity: Vec<Arc<Policy>>,
    boundary: Option<Arc<Policy>>,
    /// (policy, statement) positions whose action element covers `ses:SendRawEmail`, the action
    /// of every SMTP transaction: found once here instead of on every message.
    send_raw_email: Vec<(usize, usize)>,
}

impl PolicySet {
    /// A set of identity policies and an optional permissions boundary.
    pub fn new(identity: Vec<Arc<Policy>>, boundary: Option<Arc<Policy>>) -> Self {
        let mut set = PolicySet {
            identity,
            boundary,
            send_raw_email: Vec::new(),
        };
        set.send_raw_email = set
            .all()
            .enumerate()
            .flat_map(|(p, (_, policy))| {
                policy
                    .statements
                    .iter()
                    .filter(|s| s.matches_action(SEND_RAW_EMAIL))
                    .map(move |s| (p, s.index))
            })
            .collect();
        set
    }

    fn policy_at(&self, position: usize) -> (PolicyRole, &Policy) {
        match self.identity.get(position) {
            Some(policy) => (PolicyRole::Identity, policy),
            None => (
                PolicyRole::PermissionsBoundary,
                self.boundary.as_deref().expect("positions come from all()"),
            ),
        }
    }

    /// The identity policies.
    pub fn identity(&self) -> &[Arc<Policy>] {
        &self.identity
    }

    /// The permissions boundary.
    pub fn boundary(&self) -> Option<&Arc<Policy>> {
        self.boundary.as_ref()
    }

    fn all(&self) -> impl Iterator<Item = (PolicyRole, &Policy)> {
        self.identity
            .iter()
            .map(|p| (PolicyRole::Identity, &**p))
            .chain(
                self.boundary
                    .iter()
                    .map(|p| (PolicyRole::PermissionsBoundary, &**p)),
            )
    }

    /// Decides `action` on `resource` in `ctx`. Pure; allocates only for the reasons it returns.
    pub fn evaluate(&self, action: &str, resource: &str, ctx: &Context) -> Decision {
        self.decide(
            action,
            resource,
            ctx,
            action.eq_ignore_ascii_case(SEND_RAW_EMAIL),
        )
    }

    /// `evaluate`, with the statements found through the `ses:SendRawEmail` index or by matching
    /// every statement's action element.
    fn decide(&self, action: &str, resource: &str, ctx: &Context, use_index: bool) -> Decision {
        let mut denies = Vec::new();
        let mut identity_allows = Vec::new();
        let mut boundary_allows = Vec::new();
        let mut consider = |role: PolicyRole, policy: &Policy, statement: &Statement| {
            if !(statement.matches_resource(resource, ctx) && statement.conditions_hold(ctx)) {
                return;
            }
            let found = reference(policy, role, statement);
            match (statement.effect, role) {
                (Effect::Deny, _) => denies.push(found),
                (Effect::Allow, PolicyRole::Identity) => identity_allows.push(found),
                (Effect::Allow, PolicyRole::PermissionsBoundary) => boundary_allows.push(found),
            }
        };
        if use_index {
            for &(position, index) in &self.send_raw_email {
                let (role, policy) = self.policy_at(position);
                consider(role, policy, &policy.statements[index]);
            }
        } else {
            for (role, policy) in self.all() {
                for statement in policy
                    .statements
                    .iter()
                    .filter(|s| s.matches_action(action))
                {
                    consider(role, policy, statement);
                }
            }
        }
        let allowed_by_boundary = self.boundary.as_ref().map(|_| !boundary_allows.is_empty());
        let (outcome, statements) = if !denies.is_empty() {
            (Outcome::ExplicitDeny, denies)
        } else if identity_allows.is_empty() {
            (Outcome::ImplicitDeny, Vec::new())
        } else if allowed_by_boundary == Some(false) {
            (Outcome::ImplicitDeny, identity_allows)
        } else {
            identity_allows.extend(boundary_allows);
            (Outcome::Allowed, identity_allows)
        };
        // Only the deny path pays for the explanation of what was missing.
        let missing_keys = if outcome == Outcome::ImplicitDeny {
            self.missing_context_keys(action, resource, ctx)
        } else {
            Vec::new()
        };
        Decision {
            outcome,
            statements,
            allowed_by_boundary,
            missing_keys,
        }
    }

    /// Decides `action` on every resource.
    pub fn authorize<S: AsRef<str>>(
        &self,
        action: &str,
        resources: &[S],
        ctx: &Context,
    ) -> Authorization {
        Authorization {
            resources: resources
                .iter()
                .map(|r| {
                    (
                        r.as_ref().to_owned(),
                        self.evaluate(action, r.as_ref(), ctx),
                    )
                })
                .collect(),
        }
    }

    /// The condition keys (as written in the policies) that statements matching this action and
    /// resource reference but the context lacks: what an implicit deny may be waiting for.
    pub fn missing_context_keys(&self, action: &str, resource: &str, ctx: &Context) -> Vec<String> {
        let mut missing = BTreeMap::new();
        for (_, policy) in self.all() {
            for statement in &policy.statements {
                if !statement.matches_target(action, resource, ctx) {
                    continue;
                }
                for condition in &statement.conditions {
                    for key in condition.referenced_keys() {
                        if ctx.entry(key).is_none_or(|e| e.values().is_empty()) {
                            let spelled = if *key == condition.key_id {
                                &*condition.key
                            } else {
                                key.as_str()
                            };
                            missing
                                .entry(key.as_str().to_owned())
                                .or_insert_with(|| spelled.to_owned());
                        }
                    }
                }
            }
        }
        missing.into_values().collect()
    }
}

fn reference(policy: &Policy, role: PolicyRole, statement: &Statement) -> StatementRef {
    StatementRef {
        policy: policy.name.clone(),
        role,
        index: statement.index,
        sid: statement.sid.clone(),
        effect: statement.effect,
        span: statement.span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::context::Value;

    const ACTION: &str = "ses:SendRawEmail";
    const RESOURCE: &str = "arn:aws:ses:us-east-1:123456789012:identity/example.com";

    fn policy(name: &str, json: &str) -> Arc<Policy> {
        Arc::new(Policy::parse(name, json).unwrap())
    }

    fn from(address: &str) -> Context {
        let mut ctx = Context::new();
        ctx.set("ses:FromAddress", Value::new(address));
        ctx
    }

    const ALLOW_ALL: &str = r#"{"Version":"2012-10-17","Statement":{"Sid":"All","Effect":"Allow","Action":"ses:*","Resource":"*"}}"#;
    const DENY_ADMIN: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:GetSendQuota","Resource":"*"},{"Sid":"NoAdmin","Effect":"Deny","Action":"SES:sendrawemail","Resource":"*","Condition":{"StringEquals":{"ses:FromAddress":"admin@example.com"}}}]}"#;

    #[test]
    fn the_send_raw_email_index_agrees_with_the_general_path() {
        let boundary = policy(
            "Boundary",
            r#"{"Statement":[{"Effect":"Allow","Action":"ses:Send*","Resource":"*"},{"Effect":"Deny","NotAction":"ses:SendRawEmail","Resource":"*"}]}"#,
        );
        let set = PolicySet::new(
            vec![policy("User", ALLOW_ALL), policy("Group", DENY_ADMIN)],
            Some(boundary),
        );
        for address in ["admin@example.com", "info@example.com"] {
            let ctx = from(address);
            let indexed = set.decide(ACTION, RESOURCE, &ctx, true);
            assert_eq!(
                indexed,
                set.decide(ACTION, RESOURCE, &ctx, false),
                "{address}"
            );
            assert_eq!(
                indexed,
                set.evaluate("SES:SENDRAWEMAIL", RESOURCE, &ctx),
                "{address}"
            );
        }
    }

    #[test]
    fn explicit_deny_beats_allow() {
        let set = PolicySet::new(
            vec![policy("User", ALLOW_ALL), policy("Group", DENY_ADMIN)],
            None,
        );
        let denied = set.evaluate(ACTION, RESOURCE, &from("admin@example.com"));
        assert_eq!(denied.outcome, Outcome::ExplicitDeny);
        assert_eq!(
            denied.reason(),
            "explicitly denied by Group Statement[1] Sid NoAdmin"
        );
        let allowed = set.evaluate(ACTION, RESOURCE, &from("info@example.com"));
        assert_eq!(allowed.outcome, Outcome::Allowed);
        assert_eq!(allowed.reason(), "allowed by User Statement[0] Sid All");
    }

    #[test]
    fn nothing_allows_is_implicit_deny() {
        let set = PolicySet::new(vec![policy("Group", DENY_ADMIN)], None);
        let decision = set.evaluate(ACTION, RESOURCE, &from("info@example.com"));
        assert_eq!(decision.outcome, Outcome::ImplicitDeny);
        assert_eq!(decision.reason(), "no statement allows");
        assert!(
            PolicySet::default()
                .evaluate(ACTION, RESOURCE, &Context::new())
                .outcome
                == Outcome::ImplicitDeny
        );
    }

    #[test]
    fn permissions_boundary_narrows_an_allow() {
        let boundary = policy(
            "Boundary",
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringLike":{"ses:FromAddress":"*@example.com"}}}}"#,
        );
        let set = PolicySet::new(vec![policy("User", ALLOW_ALL)], Some(boundary));
        let inside = set.evaluate(ACTION, RESOURCE, &from("a@example.com"));
        assert_eq!(inside.outcome, Outcome::Allowed);
        assert_eq!(inside.allowed_by_boundary, Some(true));
        assert_eq!(inside.statements.len(), 2);
        let outside = set.evaluate(ACTION, RESOURCE, &from("a@example.org"));
        assert_eq!(outside.outcome, Outcome::ImplicitDeny);
        assert_eq!(outside.allowed_by_boundary, Some(false));
        assert_eq!(
            outside.reason(),
            "allowed by User Statement[0] Sid All but not by the permissions boundary"
        );
        // A boundary alone grants nothing.
        let only_boundary = PolicySet::new(vec![], set.boundary().cloned());
        assert_eq!(
            only_boundary
                .evaluate(ACTION, RESOURCE, &from("a@example.com"))
                .outcome,
            Outcome::ImplicitDeny
        );
    }

    #[test]
    fn deny_in_boundary_wins() {
        let boundary = policy(
            "Boundary",
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*"}]}"#,
        );
        let set = PolicySet::new(vec![policy("User", ALLOW_ALL)], Some(boundary));
        let decision = set.evaluate(ACTION, RESOURCE, &Context::new());
        assert_eq!(decision.outcome, Outcome::ExplicitDeny);
        assert_eq!(
            decision.reason(),
            "explicitly denied by Boundary (permissions boundary) Statement[1]"
        );
    }

    #[test]
    fn every_resource_must_be_allowed() {
        let scoped = policy(
            "Scoped",
            r#"{"Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"arn:aws:ses:us-east-1:123456789012:identity/*"}}"#,
        );
        let set = PolicySet::new(vec![scoped], None);
        let config_set = "arn:aws:ses:us-east-1:123456789012:configuration-set/marketing";
        let auth = set.authorize(ACTION, &[RESOURCE, config_set], &Context::new());
        let (denied, decision) = auth.first_denied().unwrap();
        assert_eq!(
            (denied, decision.outcome),
            (config_set, Outcome::ImplicitDeny)
        );
        assert!(
            set.authorize(ACTION, &[RESOURCE], &Context::new())
                .first_denied()
                .is_none()
        );
    }

    #[test]
    fn not_action_and_not_resource() {
        let set = PolicySet::new(
            vec![policy(
                "P",
                r#"{"Statement":[{"Effect":"Allow","NotAction":"ses:Delete*","NotResource":"arn:aws:ses:*:*:identity/secret.com"}]}"#,
            )],
            None,
        );
        assert!(set.evaluate(ACTION, RESOURCE, &Context::new()).is_allowed());
        assert!(
            !set.evaluate("ses:DeleteIdentity", RESOURCE, &Context::new())
                .is_allowed()
        );
        assert!(
            !set.evaluate(
                ACTION,
                "arn:aws:ses:us-east-1:1:identity/secret.com",
                &Context::new()
            )
            .is_allowed()
        );
    }

    #[test]
    fn missing_keys_are_reported_as_written() {
        let set = PolicySet::new(
            vec![policy(
                "P",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringEquals":{"ses:FromAddress":"${aws:username}@example.com"},"DateLessThan":{"aws:CurrentTime":"2030"}}},{"Effect":"Allow","Action":"ses:GetSendQuota","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#,
            )],
            None,
        );
        let ctx = from("bob@example.com");
        assert_eq!(
            set.missing_context_keys(ACTION, RESOURCE, &ctx),
            ["aws:CurrentTime", "aws:username"]
        );
        let decision = set.evaluate(ACTION, RESOURCE, &ctx);
        assert_eq!(decision.missing_keys, ["aws:CurrentTime", "aws:username"]);
        assert_eq!(
            decision.reason(),
            "no statement allows (the request lacks aws:CurrentTime, aws:username, which the policies test)"
        );
    }
}
