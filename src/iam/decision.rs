//! Combining statements into a decision, as IAM does for an IAM user (`ses-iam-facts.md` §C6;
//! IAM-UG "Policy evaluation logic", "Cross-account policy evaluation logic", "Permissions
//! boundaries"):
//! 1. an explicit Deny in any applicable policy (identity-based, permissions boundary, or the
//!    resource's resource-based policies) wins;
//! 2. identity-based side: some identity statement allows and, when a permissions boundary is
//!    set, some boundary statement allows too;
//! 3. without a resource-based side (the resource has no policies to consult), the identity-based
//!    side decides; in the caller's own account the request is allowed when the identity-based
//!    side allows OR a resource policy statement grants the caller's own ARN (such a grant is not
//!    limited by the boundary; a grant to the account, to `*` or through `NotPrincipal` only
//!    delegates to the identity-based side); for another account's resource both sides must allow;
//! 4. else it is implicitly denied. Deny is also the fail-safe: nothing here returns an error.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::SEND_RAW_EMAIL;
use super::context::Context;
use super::json::Span;
use super::policy::{Effect, Policy, Statement};
use super::principal::{Caller, Grant};

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

/// Which list a policy came from: its policy type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyRole {
    /// An identity-based policy of the user or one of its groups.
    Identity,
    PermissionsBoundary,
    /// A resource-based policy attached to the resource (an SES identity's sending
    /// authorization policy).
    ResourcePolicy,
}

impl PolicyRole {
    /// The policy type as logs and `sesgate simulate` name it.
    pub fn label(self) -> &'static str {
        match self {
            PolicyRole::Identity => "IAM policy",
            PolicyRole::PermissionsBoundary => "permissions boundary",
            PolicyRole::ResourcePolicy => "resource policy",
        }
    }

    /// The policy type as AWS's simulator names it (`MatchedStatements[].SourcePolicyType`).
    pub fn source_policy_type(self) -> &'static str {
        match self {
            PolicyRole::Identity => "IAM Policy",
            PolicyRole::PermissionsBoundary => "PermissionsBoundaryPolicy",
            PolicyRole::ResourcePolicy => "Resource Policy",
        }
    }
}

/// The resource-based side of a request: the owner of the resource and the policies attached
/// to it (possibly none: another account's resource without policies lets nobody in).
#[derive(Debug, Clone, Copy)]
pub struct ResourceSide<'a> {
    /// The 12-digit account that owns the resource.
    pub owner: &'a str,
    pub policies: &'a [Arc<Policy>],
}

/// How the two sides of a request with a resource-based side decided, each on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideOutcomes {
    /// Whether the caller and the resource are in the same account.
    pub same_account: bool,
    /// The identity-based side (identity policies within the boundary).
    pub identity: Outcome,
    /// The resource-based side (any grant, the account's included).
    pub resource: Outcome,
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
        if self.role != PolicyRole::Identity {
            write!(f, " ({})", self.role.label())?;
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
    /// The two sides' own outcomes, when a resource-based side took part.
    pub sides: Option<SideOutcomes>,
    /// Every policy type that was evaluated.
    pub policy_types: PolicyTypes,
}

/// The policy types evaluated for a decision: the IAM policies always, the permissions boundary
/// when set, the resource's policies when it has a resource-based side. A value, so that the
/// hot path does not allocate for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyTypes {
    pub boundary: bool,
    pub resource: bool,
}

impl PolicyTypes {
    /// The types, in the order IAM policy, permissions boundary, resource policy.
    pub fn roles(self) -> impl Iterator<Item = PolicyRole> {
        [
            Some(PolicyRole::Identity),
            self.boundary.then_some(PolicyRole::PermissionsBoundary),
            self.resource.then_some(PolicyRole::ResourcePolicy),
        ]
        .into_iter()
        .flatten()
    }
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
                let boundary_blocked = self.allowed_by_boundary == Some(false)
                    && self
                        .statements
                        .iter()
                        .any(|s| s.role == PolicyRole::Identity);
                let missing = match self.sides {
                    _ if boundary_blocked => "the permissions boundary",
                    Some(sides) if !sides.same_account && sides.identity == Outcome::Allowed => {
                        "a resource policy of the identity (it is another account's: both sides must allow)"
                    }
                    Some(sides) if !sides.same_account => {
                        "the user's IAM policies (the identity is another account's: both sides must allow)"
                    }
                    Some(_) => {
                        "the user's IAM policies (a grant to the account, to \"*\" or through NotPrincipal delegates to them)"
                    }
                    None => "the permissions boundary",
                };
                format!("allowed by {} but not by {missing}", list())
            }
        }
    }

    /// The policy types that took part, as logs name them (`IAM policy, resource policy`).
    pub fn policy_types_label(&self) -> String {
        self.policy_types
            .roles()
            .map(|r| r.label())
            .collect::<Vec<_>>()
            .join(", ")
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

    /// Decides `action` on `resource` in `ctx` on the identity-based side alone (the resource
    /// has no resource-based policies to consult). Pure; allocates only for the reasons it
    /// returns.
    pub fn evaluate(&self, action: &str, resource: &str, ctx: &Context) -> Decision {
        let parts = self.identity_parts(action, resource, ctx);
        self.assemble(parts, None, action, resource, ctx)
    }

    /// Decides `action` on `resource` for `caller`, with the resource's owner and its
    /// resource-based policies when it has a resource-based side (see the module's rules).
    pub fn evaluate_for(
        &self,
        caller: &Caller<'_>,
        action: &str,
        resource: &str,
        side: Option<ResourceSide<'_>>,
        ctx: &Context,
    ) -> Decision {
        let mut parts = self.identity_parts(action, resource, ctx);
        let Some(side) = side else {
            return self.assemble(parts, None, action, resource, ctx);
        };
        let caller = Caller {
            has_boundary: self.boundary.is_some(),
            ..*caller
        };
        let mut resource_allows = ResourceAllows {
            caller,
            user: Vec::new(),
            account: Vec::new(),
        };
        for policy in side.policies {
            for statement in policy.statements.iter().filter(|s| {
                s.matches_action(action)
                    && s.matches_resource(resource, ctx)
                    && s.conditions_hold(ctx)
            }) {
                let Some(principals) = &statement.principal else {
                    // Resource-based policies always name principals (checked at load).
                    continue;
                };
                let found = reference(policy, PolicyRole::ResourcePolicy, statement);
                match statement.effect {
                    Effect::Deny if principals.deny_applies(&caller) => parts.denies.push(found),
                    Effect::Deny => {}
                    Effect::Allow => match principals.allow_grant(&caller) {
                        Grant::User => resource_allows.user.push(found),
                        Grant::Account => resource_allows.account.push(found),
                        Grant::None => {}
                    },
                }
            }
        }
        let same_account = side.owner == caller.account;
        self.assemble(
            parts,
            Some((same_account, resource_allows, side)),
            action,
            resource,
            ctx,
        )
    }

    /// The identity-based side's applicable statements, found through the `ses:SendRawEmail`
    /// index or by matching every statement's action element.
    fn identity_parts(&self, action: &str, resource: &str, ctx: &Context) -> Parts {
        self.collect(
            action,
            resource,
            ctx,
            action.eq_ignore_ascii_case(SEND_RAW_EMAIL),
        )
    }

    fn collect(&self, action: &str, resource: &str, ctx: &Context, use_index: bool) -> Parts {
        let mut parts = Parts::default();
        let mut consider = |role: PolicyRole, policy: &Policy, statement: &Statement| {
            if !(statement.matches_resource(resource, ctx) && statement.conditions_hold(ctx)) {
                return;
            }
            let found = reference(policy, role, statement);
            match (statement.effect, role) {
                (Effect::Deny, _) => parts.denies.push(found),
                (Effect::Allow, PolicyRole::PermissionsBoundary) => {
                    parts.boundary_allows.push(found)
                }
                (Effect::Allow, _) => parts.identity_allows.push(found),
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
        parts
    }

    /// Combines the sides into the decision (the module's rules).
    fn assemble(
        &self,
        parts: Parts,
        resource_side: Option<(bool, ResourceAllows<'_>, ResourceSide<'_>)>,
        action: &str,
        resource: &str,
        ctx: &Context,
    ) -> Decision {
        let Parts {
            denies,
            mut identity_allows,
            boundary_allows,
        } = parts;
        let allowed_by_boundary = self.boundary.as_ref().map(|_| !boundary_allows.is_empty());
        let identity_ok = !identity_allows.is_empty() && allowed_by_boundary != Some(false);
        let mut policy_types = PolicyTypes {
            boundary: self.boundary.is_some(),
            resource: false,
        };
        let side_policies = resource_side
            .as_ref()
            .map(|(_, grants, side)| (side.policies, grants.caller));
        let (outcome, statements, sides) = match resource_side {
            None => {
                let (outcome, statements) = if !denies.is_empty() {
                    (Outcome::ExplicitDeny, denies)
                } else if identity_allows.is_empty() {
                    (Outcome::ImplicitDeny, Vec::new())
                } else if !identity_ok {
                    (Outcome::ImplicitDeny, identity_allows)
                } else {
                    identity_allows.extend(boundary_allows);
                    (Outcome::Allowed, identity_allows)
                };
                (outcome, statements, None)
            }
            Some((same_account, grants, side)) => {
                if !side.policies.is_empty() || !same_account {
                    policy_types.resource = true;
                }
                let resource_denies = denies.iter().any(|d| d.role == PolicyRole::ResourcePolicy);
                let identity_denies = denies.iter().any(|d| d.role != PolicyRole::ResourcePolicy);
                let side_outcome = |denied: bool, allowed: bool| match (denied, allowed) {
                    (true, _) => Outcome::ExplicitDeny,
                    (false, true) => Outcome::Allowed,
                    (false, false) => Outcome::ImplicitDeny,
                };
                let resource_grants = !grants.user.is_empty() || !grants.account.is_empty();
                let sides = SideOutcomes {
                    same_account,
                    identity: side_outcome(identity_denies, identity_ok),
                    resource: side_outcome(resource_denies, resource_grants),
                };
                let allowed = if same_account {
                    identity_ok || !grants.user.is_empty()
                } else {
                    identity_ok && resource_grants
                };
                let mut contributing = Vec::new();
                let (outcome, statements) = if !denies.is_empty() {
                    (Outcome::ExplicitDeny, denies)
                } else if allowed {
                    if identity_ok {
                        contributing.extend(identity_allows);
                        contributing.extend(boundary_allows);
                        contributing.extend(grants.user);
                        contributing.extend(grants.account);
                    } else {
                        contributing.extend(grants.user);
                    }
                    (Outcome::Allowed, contributing)
                } else {
                    // What allowed, so that the reason can say which side was missing.
                    if !identity_ok {
                        contributing.extend(identity_allows);
                    } else {
                        contributing.extend(identity_allows);
                        contributing.extend(boundary_allows);
                    }
                    contributing.extend(grants.user);
                    contributing.extend(grants.account);
                    (Outcome::ImplicitDeny, contributing)
                };
                (outcome, statements, Some(sides))
            }
        };
        // Only the deny path pays for the explanation of what was missing.
        let missing_keys = if outcome == Outcome::ImplicitDeny {
            let mut keys = self.missing_context_keys(action, resource, ctx);
            if let Some((policies, caller)) = side_policies {
                // Only the statements whose principal is the caller could apply.
                keys.extend(missing_keys_of(
                    policies.iter().map(|p| (PolicyRole::ResourcePolicy, &**p)),
                    action,
                    resource,
                    ctx,
                    |statement| {
                        statement
                            .principal
                            .as_ref()
                            .is_some_and(|p| match statement.effect {
                                Effect::Allow => p.allow_grant(&caller) != Grant::None,
                                Effect::Deny => p.deny_applies(&caller),
                            })
                    },
                ));
                keys.sort_by_key(|k| k.to_ascii_lowercase());
                keys.dedup_by_key(|k| k.to_ascii_lowercase());
            }
            keys
        } else {
            Vec::new()
        };
        Decision {
            outcome,
            statements,
            allowed_by_boundary,
            missing_keys,
            sides,
            policy_types,
        }
    }

    /// Decides `action` on every resource (identity-based side only).
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

    /// Decides `action` for `caller` on every resource, each with its resource-based side.
    pub fn authorize_for(
        &self,
        caller: &Caller<'_>,
        action: &str,
        resources: &[(&str, Option<ResourceSide<'_>>)],
        ctx: &Context,
    ) -> Authorization {
        Authorization {
            resources: resources
                .iter()
                .map(|(r, side)| {
                    (
                        (*r).to_owned(),
                        self.evaluate_for(caller, action, r, *side, ctx),
                    )
                })
                .collect(),
        }
    }

    /// The condition keys (as written in the policies) that statements matching this action and
    /// resource reference but the context lacks: what an implicit deny may be waiting for.
    pub fn missing_context_keys(&self, action: &str, resource: &str, ctx: &Context) -> Vec<String> {
        missing_keys_of(self.all(), action, resource, ctx, |_| true)
    }
}

/// The applicable statements of the identity-based side.
#[derive(Default)]
struct Parts {
    /// Every applicable Deny, the resource side's included.
    denies: Vec<StatementRef>,
    identity_allows: Vec<StatementRef>,
    boundary_allows: Vec<StatementRef>,
}

/// The resource side's applicable Allow statements, by how they grant the caller.
struct ResourceAllows<'c> {
    /// Who the statements were matched against.
    caller: Caller<'c>,
    /// Naming the caller's own ARN.
    user: Vec<StatementRef>,
    /// Through `*`, the caller's account or `NotPrincipal`.
    account: Vec<StatementRef>,
}

/// The condition keys that statements of `policies` matching this action and resource
/// reference but the context lacks, as first written, sorted by key.
fn missing_keys_of<'p>(
    policies: impl Iterator<Item = (PolicyRole, &'p Policy)>,
    action: &str,
    resource: &str,
    ctx: &Context,
    applies: impl Fn(&Statement) -> bool,
) -> Vec<String> {
    let mut missing = BTreeMap::new();
    for (_, policy) in policies {
        for statement in &policy.statements {
            if !statement.matches_target(action, resource, ctx) || !applies(statement) {
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
            let decide = |use_index| {
                let parts = set.collect(ACTION, RESOURCE, &ctx, use_index);
                set.assemble(parts, None, ACTION, RESOURCE, &ctx)
            };
            let indexed = decide(true);
            assert_eq!(indexed, decide(false), "{address}");
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

    const OWNER: &str = "888888888888";
    const IDENTITY: &str = "arn:aws:ses:us-east-1:888888888888:identity/example.com";

    fn caller(account: &'static str, arn: &'static str) -> Caller<'static> {
        Caller {
            arn,
            account,
            id: None,
            has_boundary: false,
        }
    }

    fn resource_policy(json: &str) -> Arc<Policy> {
        Arc::new(Policy::parse_resource("Delegate", json).unwrap())
    }

    fn grant(principal: &str) -> Arc<Policy> {
        resource_policy(&format!(
            r#"{{"Version":"2012-10-17","Statement":{{"Sid":"Grant","Effect":"Allow","Principal":{principal},"Action":"ses:SendRawEmail","Resource":"{IDENTITY}"}}}}"#
        ))
    }

    #[test]
    fn same_account_resource_grants() {
        let user = caller(OWNER, "arn:aws:iam::888888888888:user/apps/app");
        let nothing = PolicySet::new(vec![], None);
        let side = |policies: &[Arc<Policy>]| {
            Some(ResourceSide {
                owner: OWNER,
                policies: leaked(policies),
            })
        };
        // A grant naming the user's ARN suffices on its own.
        let direct = [grant(
            r#"{"AWS":"arn:aws:iam::888888888888:user/apps/app"}"#,
        )];
        let decision =
            nothing.evaluate_for(&user, ACTION, IDENTITY, side(&direct), &Context::new());
        assert_eq!(decision.outcome, Outcome::Allowed);
        assert_eq!(
            decision.reason(),
            "allowed by Delegate (resource policy) Statement[0] Sid Grant"
        );
        assert_eq!(
            decision.policy_types.roles().collect::<Vec<_>>(),
            [PolicyRole::Identity, PolicyRole::ResourcePolicy]
        );
        // A grant to the account delegates to the identity-based policies.
        for principal in [
            r#"{"AWS":"888888888888"}"#,
            r#"{"AWS":"arn:aws:iam::888888888888:root"}"#,
            r#""*""#,
        ] {
            let account = [grant(principal)];
            let decision =
                nothing.evaluate_for(&user, ACTION, IDENTITY, side(&account), &Context::new());
            assert_eq!(decision.outcome, Outcome::ImplicitDeny, "{principal}");
            assert!(
                decision.reason().ends_with("but not by the user's IAM policies (a grant to the account, to \"*\" or through NotPrincipal delegates to them)"),
                "{}",
                decision.reason()
            );
            let allowed = PolicySet::new(vec![policy("User", ALLOW_ALL)], None).evaluate_for(
                &user,
                ACTION,
                IDENTITY,
                side(&account),
                &Context::new(),
            );
            assert_eq!(allowed.outcome, Outcome::Allowed, "{principal}");
        }
        // Not limited by the boundary when it names the user...
        let bounded = PolicySet::new(
            vec![policy("User", ALLOW_ALL)],
            Some(policy(
                "Boundary",
                r#"{"Statement":{"Effect":"Allow","Action":"ses:GetSendQuota","Resource":"*"}}"#,
            )),
        );
        assert_eq!(
            bounded
                .evaluate_for(&user, ACTION, IDENTITY, side(&direct), &Context::new())
                .outcome,
            Outcome::Allowed
        );
        // ...but a grant to the account is.
        let account = [grant(r#"{"AWS":"888888888888"}"#)];
        let decision =
            bounded.evaluate_for(&user, ACTION, IDENTITY, side(&account), &Context::new());
        assert_eq!(decision.outcome, Outcome::ImplicitDeny);
        assert!(
            decision
                .reason()
                .ends_with("but not by the permissions boundary"),
            "{}",
            decision.reason()
        );
    }

    #[test]
    fn cross_account_needs_both_sides() {
        let delegate = caller("123456789012", "arn:aws:iam::123456789012:user/partner");
        let allow_all = PolicySet::new(vec![policy("User", ALLOW_ALL)], None);
        let nothing = PolicySet::new(vec![], None);
        let granted = [grant(r#"{"AWS":["123456789012"]}"#)];
        let side = |policies: &'static [Arc<Policy>]| {
            Some(ResourceSide {
                owner: OWNER,
                policies,
            })
        };
        let granted: &'static [Arc<Policy>] = Box::leak(Box::new(granted));
        let decision =
            allow_all.evaluate_for(&delegate, ACTION, IDENTITY, side(granted), &Context::new());
        assert_eq!(decision.outcome, Outcome::Allowed);
        assert_eq!(decision.statements.len(), 2);
        assert_eq!(
            decision.sides,
            Some(SideOutcomes {
                same_account: false,
                identity: Outcome::Allowed,
                resource: Outcome::Allowed
            })
        );
        let decision =
            nothing.evaluate_for(&delegate, ACTION, IDENTITY, side(granted), &Context::new());
        assert_eq!(decision.outcome, Outcome::ImplicitDeny);
        assert!(
            decision
                .reason()
                .contains("but not by the user's IAM policies (the identity is another account's"),
            "{}",
            decision.reason()
        );
        let decision =
            allow_all.evaluate_for(&delegate, ACTION, IDENTITY, side(&[]), &Context::new());
        assert_eq!(decision.outcome, Outcome::ImplicitDeny);
        assert!(
            decision
                .reason()
                .contains("but not by a resource policy of the identity"),
            "{}",
            decision.reason()
        );
        // Even a grant naming the delegate's ARN needs its own account's allow.
        let named: &'static [Arc<Policy>] = Box::leak(Box::new([grant(
            r#"{"AWS":"arn:aws:iam::123456789012:user/partner"}"#,
        )]));
        assert_eq!(
            nothing
                .evaluate_for(&delegate, ACTION, IDENTITY, side(named), &Context::new())
                .outcome,
            Outcome::ImplicitDeny
        );
        // A grant to yet another account does not apply.
        let other: &'static [Arc<Policy>] =
            Box::leak(Box::new([grant(r#"{"AWS":"444455556666"}"#)]));
        assert_eq!(
            allow_all
                .evaluate_for(&delegate, ACTION, IDENTITY, side(other), &Context::new())
                .outcome,
            Outcome::ImplicitDeny
        );
    }

    #[test]
    fn a_deny_anywhere_wins() {
        let delegate = caller("123456789012", "arn:aws:iam::123456789012:user/partner");
        let allow_all = PolicySet::new(vec![policy("User", ALLOW_ALL)], None);
        let policies: &'static [Arc<Policy>] = Box::leak(Box::new([resource_policy(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"ses:SendRawEmail","Resource":"{IDENTITY}"}},{{"Sid":"NoAdmin","Effect":"Deny","Principal":{{"AWS":"123456789012"}},"Action":"ses:Send*","Resource":"{IDENTITY}","Condition":{{"StringEquals":{{"ses:FromAddress":"admin@example.com"}}}}}}]}}"#
        ))]));
        let side = Some(ResourceSide {
            owner: OWNER,
            policies,
        });
        let denied = allow_all.evaluate_for(
            &delegate,
            ACTION,
            IDENTITY,
            side,
            &from("admin@example.com"),
        );
        assert_eq!(denied.outcome, Outcome::ExplicitDeny);
        assert_eq!(
            denied.reason(),
            "explicitly denied by Delegate (resource policy) Statement[1] Sid NoAdmin"
        );
        assert_eq!(denied.sides.unwrap().resource, Outcome::ExplicitDeny);
        assert!(
            allow_all
                .evaluate_for(&delegate, ACTION, IDENTITY, side, &from("news@example.com"))
                .is_allowed()
        );
        // An identity-based Deny beats a resource policy's Allow naming the user.
        let user = caller(OWNER, "arn:aws:iam::888888888888:user/app");
        let direct: &'static [Arc<Policy>] = Box::leak(Box::new([grant(
            r#"{"AWS":"arn:aws:iam::888888888888:user/app"}"#,
        )]));
        let denying = PolicySet::new(vec![policy("Group", DENY_ADMIN)], None);
        let decision = denying.evaluate_for(
            &user,
            ACTION,
            IDENTITY,
            Some(ResourceSide {
                owner: OWNER,
                policies: direct,
            }),
            &from("admin@example.com"),
        );
        assert_eq!(decision.outcome, Outcome::ExplicitDeny);
        assert_eq!(decision.statements[0].role, PolicyRole::Identity);
    }

    #[test]
    fn without_a_resource_side_nothing_changes() {
        let set = PolicySet::new(
            vec![policy("User", ALLOW_ALL), policy("Group", DENY_ADMIN)],
            None,
        );
        let user = caller("123456789012", "arn:aws:iam::123456789012:user/app");
        for address in ["admin@example.com", "info@example.com"] {
            assert_eq!(
                set.evaluate_for(&user, ACTION, RESOURCE, None, &from(address)),
                set.evaluate(ACTION, RESOURCE, &from(address))
            );
        }
    }

    /// The test policies live for the whole test run.
    fn leaked(policies: &[Arc<Policy>]) -> &'static [Arc<Policy>] {
        Box::leak(policies.to_vec().into_boxed_slice())
    }
}
