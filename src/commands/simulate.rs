//! `sesgate simulate`: the gateway's own decision for one hypothetical transaction, through the
//! same `Authorizer::decide` that `serve` calls, so the two cannot disagree.

use serde_json::{Value as Json, json};

use crate::gateway::Ruling;
use crate::gateway::replies::SIMULATED_ALLOWED;
use crate::iam::{Context, Decision, Outcome};

/// The decision as the transaction log spells it (`simulate-custom-policy` keeps AWS's
/// `explicitDeny`, as it mirrors `aws iam simulate-custom-policy`).
fn outcome_name(decision: &Decision) -> &'static str {
    match decision.outcome {
        Outcome::Allowed => "allowed",
        Outcome::ExplicitDeny => "explicit-deny",
        Outcome::ImplicitDeny => "implicit-deny",
    }
}

fn context_json(context: &Context) -> Json {
    let mut map = serde_json::Map::new();
    for (key, entry) in context.iter() {
        let values: Vec<&str> = entry.values().iter().map(|v| v.text()).collect();
        let value = if entry.is_multi() {
            json!(values)
        } else {
            json!(values.first())
        };
        map.insert(key.to_owned(), value);
    }
    Json::Object(map)
}

/// How the policy types combined: the identity-based side alone, or with the identity's
/// resource-based policies in the same account or across accounts.
fn evaluation(decision: &Decision) -> &'static str {
    match decision.sides {
        None => "identity-based policies only",
        Some(sides) if sides.same_account => {
            "same account: the IAM policies (within the boundary) or a resource policy naming the user"
        }
        Some(_) => {
            "cross-account: both the IAM policies (within the boundary) and the identity's resource policy must allow"
        }
    }
}

/// The ruling as JSON.
pub fn to_json(ruling: &Ruling) -> Json {
    match ruling {
        Ruling::Refused { kind, why, reply } => json!({
            "decision": "refused",
            "refusal": kind,
            "reason": why,
            "reply": reply.to_string(),
        }),
        Ruling::Denied {
            request,
            resource,
            decision,
            reply,
        } => json!({
            "decision": outcome_name(decision),
            "reason": decision.reason(),
            "denied_resource": resource,
            "resources": request.resources,
            "statements": decision.statements.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "statement_types": decision.statements.iter().map(|s| s.role.label()).collect::<Vec<_>>(),
            "policy_types": decision.policy_types.roles().map(|r| r.label()).collect::<Vec<_>>(),
            "evaluation": evaluation(decision),
            "missing_context_keys": decision.missing_keys,
            "context": context_json(&request.context),
            "reply": reply.to_string(),
        }),
        Ruling::Allowed { request, decision } => json!({
            "decision": "allowed",
            "reason": decision.reason(),
            "resources": request.resources,
            "statements": decision.statements.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "statement_types": decision.statements.iter().map(|s| s.role.label()).collect::<Vec<_>>(),
            "policy_types": decision.policy_types.roles().map(|r| r.label()).collect::<Vec<_>>(),
            "evaluation": evaluation(decision),
            "context": context_json(&request.context),
            "reply": SIMULATED_ALLOWED,
        }),
    }
}

/// The ruling as text for a person.
pub fn to_text(ruling: &Ruling) -> String {
    let json = to_json(ruling);
    let mut out = String::new();
    let field = |name: &str| {
        json.get(name)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    out.push_str(&format!("decision: {}\n", field("decision")));
    if let Some(kind) = json.get("refusal").and_then(Json::as_str) {
        out.push_str(&format!("refused before any policy: {kind}\n"));
    }
    out.push_str(&format!("reason:   {}\n", field("reason")));
    if let Some(resources) = json.get("resources").and_then(Json::as_array) {
        out.push_str("resources:\n");
        for resource in resources {
            out.push_str(&format!("  {}\n", resource.as_str().unwrap_or_default()));
        }
    }
    if let Some(types) = json.get("policy_types").and_then(Json::as_array) {
        let types: Vec<&str> = types.iter().filter_map(Json::as_str).collect();
        out.push_str(&format!("policy types: {}\n", types.join(", ")));
        out.push_str(&format!("evaluation: {}\n", field("evaluation")));
    }
    if let Some(statements) = json
        .get("statements")
        .and_then(Json::as_array)
        .filter(|s| !s.is_empty())
    {
        let types = json.get("statement_types").and_then(Json::as_array);
        out.push_str("deciding statements:\n");
        for (i, statement) in statements.iter().enumerate() {
            let kind = types
                .and_then(|t| t.get(i))
                .and_then(Json::as_str)
                .unwrap_or_default();
            out.push_str(&format!(
                "  [{kind}] {}\n",
                statement.as_str().unwrap_or_default()
            ));
        }
    }
    if let Some(context) = json.get("context").and_then(Json::as_object) {
        out.push_str("context:\n");
        for (key, value) in context {
            out.push_str(&format!("  {key} = {value}\n"));
        }
    }
    out.push_str(&format!("reply:    {}", field("reply")));
    out
}
