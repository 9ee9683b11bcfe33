//! `sesgate simulate-custom-policy`: AWS's `iam simulate-custom-policy`, same flags, same output
//! shape, decided by sesgate's engine, so anyone can put both side by side.
//!
//! Input forms follow the AWS CLI: a policy is JSON text or `file://PATH`; a context entry is the
//! CLI shorthand `ContextKeyName=k,ContextKeyValues=v1,v2,ContextKeyType=stringList` or JSON (an
//! entry object or a list of them). Anything unreadable is an error, never a guess.
//!
//! With `--resource-policy` (and the `--caller-arn` it needs, as in AWS), each resource is decided
//! as IAM decides a request with a resource-based policy (`iam::PolicySet::evaluate_for`): in the
//! caller's account either side may allow (a grant to the account delegates to the IAM policies),
//! across accounts both must. A resource's owner is the account in its ARN, else
//! `--resource-owner` (`arn:aws:iam::ACCOUNT:root`), else the caller's account, as AWS documents
//! `ResourceOwner`. `--resource-handling-option` takes AWS's values; SES actions have no EC2
//! resource scenarios, so it does not change a decision.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::iam::{
    self, Caller, Context, Decision, Outcome, Policy, PolicySet, ResourceSide, Value,
};

/// Invalid simulator input; the message says what and where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// One `--context-entries` item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextEntry {
    #[serde(rename = "ContextKeyName")]
    pub name: String,
    #[serde(rename = "ContextKeyValues")]
    pub values: Vec<String>,
    #[serde(rename = "ContextKeyType")]
    pub kind: String,
}

/// Everything one simulation needs, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Policy documents (already read from `file://` where given).
    pub policies: Vec<String>,
    /// At most one permissions boundary document.
    pub boundaries: Vec<String>,
    pub actions: Vec<String>,
    /// Defaults to `*`, as in AWS.
    pub resources: Vec<String>,
    pub context: Vec<ContextEntry>,
    /// A resource-based policy attached to every simulated resource (already read).
    pub resource_policy: Option<String>,
    /// `arn:aws:iam::ACCOUNT:root`: the owner of resources whose ARN names no account.
    pub resource_owner: Option<String>,
    /// The simulated caller, an IAM user ARN (required with a resource policy).
    pub caller_arn: Option<String>,
    /// AWS's `ResourceHandlingOption` (EC2 scenarios).
    pub resource_handling_option: Option<String>,
}

/// AWS's `ResourceHandlingOption` values (`SimulateCustomPolicy` API reference).
pub const RESOURCE_HANDLING_OPTIONS: &[&str] = &[
    "EC2-VPC-InstanceStore",
    "EC2-VPC-InstanceStore-Subnet",
    "EC2-VPC-EBS",
    "EC2-VPC-EBS-Subnet",
];

/// The response, shaped as AWS's `SimulatePolicyResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    pub evaluation_results: Vec<EvaluationResult>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EvaluationResult {
    pub eval_action_name: String,
    pub eval_resource_name: String,
    pub eval_decision: &'static str,
    pub matched_statements: Vec<MatchedStatement>,
    pub missing_context_values: Vec<String>,
    /// Per policy type (`IAM Policy`, `Resource Policy`) for a cross-account simulation; empty
    /// for a named resource in the caller's account; absent for `*` (as AWS prints it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_decision_details: Option<BTreeMap<&'static str, &'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions_boundary_decision_detail: Option<BoundaryDetail>,
    /// The decision for the named resource (absent for `*`): read per-resource decisions here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_specific_results: Option<Vec<ResourceSpecificResult>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceSpecificResult {
    pub eval_resource_name: String,
    pub eval_resource_decision: &'static str,
    pub matched_statements: Vec<MatchedStatement>,
    pub missing_context_values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_decision_details: Option<BTreeMap<&'static str, &'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions_boundary_decision_detail: Option<BoundaryDetail>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BoundaryDetail {
    pub allowed_by_permissions_boundary: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MatchedStatement {
    pub source_policy_id: String,
    pub source_policy_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_position: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_position: Option<Position>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Reads a CLI argument that may be `file://PATH`, as the AWS CLI does.
pub fn read_argument(arg: &str) -> Result<String, InputError> {
    match arg.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| InputError(format!("cannot read {path}: {e}"))),
        None => Ok(arg.to_owned()),
    }
}

/// Parses one `--context-entries` argument: JSON or CLI shorthand.
pub fn parse_context_entries(arg: &str) -> Result<Vec<ContextEntry>, InputError> {
    let text = read_argument(arg)?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed)
            .map_err(|e| InputError(format!("invalid context entries JSON: {e}")));
    }
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed)
            .map(|entry| vec![entry])
            .map_err(|e| InputError(format!("invalid context entry JSON: {e}")));
    }
    parse_shorthand(&text).map(|entry| vec![entry])
}

/// `ContextKeyName=k,ContextKeyValues=v1,v2,ContextKeyType=t`; values may be quoted or in `[...]`.
fn parse_shorthand(text: &str) -> Result<ContextEntry, InputError> {
    let error = |why: String| InputError(format!("invalid context entry {text:?}: {why}"));
    let mut name = None;
    let mut values: Option<Vec<String>> = None;
    let mut kind = None;
    let mut current = "";
    for piece in split_top_level(text).map_err(error)? {
        let (field, value) = match piece.split_once('=') {
            Some((field @ ("ContextKeyName" | "ContextKeyValues" | "ContextKeyType"), value)) => {
                (field, value)
            }
            _ if current == "ContextKeyValues" => (current, piece),
            _ => {
                return Err(error(format!(
                    "unexpected {piece:?} (expected ContextKeyName=, ContextKeyValues= or ContextKeyType=)"
                )));
            }
        };
        let is_continuation = field == current;
        current = field;
        match field {
            "ContextKeyName" => name = Some(unquote(value).to_owned()),
            "ContextKeyType" => kind = Some(unquote(value).to_owned()),
            _ => {
                let list = values.get_or_insert_with(Vec::new);
                if !is_continuation {
                    list.clear();
                }
                let inner = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
                match inner {
                    Some(inner) => list.extend(
                        split_top_level(inner)
                            .map_err(error)?
                            .into_iter()
                            .map(|v| unquote(v).to_owned()),
                    ),
                    None => list.push(unquote(value).to_owned()),
                }
            }
        }
    }
    Ok(ContextEntry {
        name: name.ok_or_else(|| error("ContextKeyName is missing".into()))?,
        values: values.ok_or_else(|| error("ContextKeyValues is missing".into()))?,
        kind: kind.ok_or_else(|| error("ContextKeyType is missing".into()))?,
    })
}

/// Splits at commas outside quotes and brackets.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut pieces = Vec::new();
    let mut quote = None;
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.checked_sub(1).ok_or("unbalanced ]")?,
            (None, ',') if depth == 0 => {
                pieces.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    if quote.is_some() || depth != 0 {
        return Err("unbalanced quote or bracket".into());
    }
    pieces.push(&text[start..]);
    Ok(pieces)
}

fn unquote(value: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// Builds the request context from the entries, checking each value against its type.
pub fn build_context(entries: &[ContextEntry]) -> Result<Context, InputError> {
    let mut ctx = Context::new();
    for entry in entries {
        let error = |why: String| InputError(format!("context key {}: {why}", entry.name));
        let (base, multi) = match entry.kind.strip_suffix("List") {
            Some(base) => (base, true),
            None => (entry.kind.as_str(), false),
        };
        let valid: fn(&str) -> bool = match base {
            "string" => |_| true,
            "numeric" => |v| v.parse::<iam::Decimal>().is_ok(),
            "boolean" => |v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
            "ip" => |v| iam::parse_ip(v).is_some(),
            "date" => |v| iam::parse_instant(v).is_some(),
            "binary" => |v| Value::binary(v).is_some(),
            _ => {
                return Err(error(format!(
                    "unknown ContextKeyType {:?} (expected string, numeric, boolean, ip, date, binary, or one of them with List)",
                    entry.kind
                )));
            }
        };
        if let Some(bad) = entry.values.iter().find(|v| !valid(v)) {
            return Err(error(format!("{bad:?} is not a valid {base} value")));
        }
        let values: Vec<Value> = entry
            .values
            .iter()
            .map(|v| {
                if base == "binary" {
                    Value::binary(v).expect("checked above")
                } else {
                    Value::new(v.as_str())
                }
            })
            .collect();
        if multi {
            ctx.set_multi(&entry.name, values);
        } else {
            match <[Value; 1]>::try_from(values) {
                Ok([value]) => ctx.set(&entry.name, value),
                Err(values) => {
                    return Err(error(format!(
                        "ContextKeyType {} takes exactly one value, got {} (use {}List)",
                        entry.kind,
                        values.len(),
                        entry.kind
                    )));
                }
            };
        }
    }
    Ok(ctx)
}

const POLICY_LIST: &str = "PolicyInputList";
const BOUNDARY_LIST: &str = "PermissionsBoundaryPolicyInputList";
/// The `SourcePolicyId` AWS gives the resource policy's statements.
const RESOURCE_POLICY: &str = "ResourcePolicy";

/// The 12-digit account of `arn:PARTITION:iam::ACCOUNT:RESOURCE` when `resource_ok` accepts its
/// resource part (`user/NAME` for a caller, `root` for an owner).
fn iam_arn_account(arn: &str, resource_ok: impl Fn(&str) -> bool) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if !partition.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource_ok(resource) =>
        {
            Some(account)
        }
        _ => None,
    }
}

/// The owner of `resource`: the account in its ARN, else `default`.
fn owner_of<'a>(resource: &'a str, default: &'a str) -> &'a str {
    match resource.split(':').nth(4) {
        Some(account) if !account.is_empty() => account,
        _ => default,
    }
}

/// Runs the simulation: one result per action and resource.
pub fn simulate(input: &Input) -> Result<Output, InputError> {
    if input.policies.is_empty() {
        return Err(InputError(
            "--policy-input-list needs at least one policy".into(),
        ));
    }
    if input.boundaries.len() > 1 {
        return Err(InputError(format!(
            "--permissions-boundary-policy-input-list takes at most one policy, got {}",
            input.boundaries.len()
        )));
    }
    if input.actions.is_empty() {
        return Err(InputError(
            "--action-names needs at least one action".into(),
        ));
    }
    if let Some(action) = input.actions.iter().find(|a| a.contains(['*', '?'])) {
        return Err(InputError(format!(
            "action names cannot contain wildcards: {action:?}"
        )));
    }
    let load = |list: &str, texts: &[String]| -> Result<Vec<Arc<Policy>>, InputError> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Policy::parse(&format!("{list}.{}", i + 1), text)
                    .map(Arc::new)
                    .map_err(|e| InputError(e.to_string()))
            })
            .collect()
    };
    let set = PolicySet::new(
        load(POLICY_LIST, &input.policies)?,
        load(BOUNDARY_LIST, &input.boundaries)?.pop(),
    );
    let ctx = build_context(&input.context)?;
    if let Some(option) = &input.resource_handling_option
        && !RESOURCE_HANDLING_OPTIONS.contains(&option.as_str())
    {
        return Err(InputError(format!(
            "--resource-handling-option {option:?}: expected one of {}",
            RESOURCE_HANDLING_OPTIONS.join(", ")
        )));
    }
    let caller_account = match &input.caller_arn {
        Some(arn) => Some(iam_arn_account(arn, |r| r.strip_prefix("user/").is_some_and(|n| !n.is_empty())).ok_or_else(|| {
            InputError(format!(
                "--caller-arn {arn:?}: the caller must be an IAM user ARN (arn:aws:iam::ACCOUNT:user/NAME), as in AWS"
            ))
        })?),
        None => None,
    };
    let resource_owner = match &input.resource_owner {
        Some(arn) => Some(iam_arn_account(arn, |r| r == "root").ok_or_else(|| {
            InputError(format!(
                "--resource-owner {arn:?}: an account is written arn:aws:iam::ACCOUNT:root, as in AWS"
            ))
        })?),
        None => None,
    };
    let resource_policy = match &input.resource_policy {
        Some(text) => {
            if caller_account.is_none() {
                return Err(InputError(
                    "--resource-policy needs --caller-arn: the policy's Principal is matched against the caller (AWS requires CallerArn with ResourcePolicy)".into(),
                ));
            }
            Some(Arc::new(
                Policy::parse_resource(RESOURCE_POLICY, text)
                    .map_err(|e| InputError(e.to_string()))?,
            ))
        }
        None => None,
    };
    let resource_policies: Vec<Arc<Policy>> = resource_policy.into_iter().collect();
    let caller = input
        .caller_arn
        .as_deref()
        .zip(caller_account)
        .map(|(arn, account)| Caller {
            arn,
            account,
            id: None,
            has_boundary: false,
        });
    let default_resources = ["*".to_owned()];
    let resources = if input.resources.is_empty() {
        &default_resources[..]
    } else {
        &input.resources[..]
    };
    let mut results = Vec::new();
    for action in &input.actions {
        for resource in resources {
            let side = match (&caller, resource_policies.is_empty()) {
                (Some(caller), false) => Some(ResourceSide {
                    owner: owner_of(resource, resource_owner.unwrap_or(caller.account)),
                    policies: &resource_policies,
                }),
                _ => None,
            };
            let decision = match (&caller, side) {
                (Some(caller), Some(side)) => {
                    set.evaluate_for(caller, action, resource, Some(side), &ctx)
                }
                _ => set.evaluate(action, resource, &ctx),
            };
            let missing = if decision.missing_keys.is_empty() {
                set.missing_context_keys(action, resource, &ctx)
            } else {
                decision.missing_keys.clone()
            };
            let boundary = decision.allowed_by_boundary.map(|allowed| BoundaryDetail {
                allowed_by_permissions_boundary: allowed,
            });
            // AWS prints per-policy-type details for a cross-account simulation only.
            let details = (resource != "*").then(|| match decision.sides {
                Some(sides) if !sides.same_account => BTreeMap::from([
                    ("IAM Policy", sides.identity.as_str()),
                    ("Resource Policy", sides.resource.as_str()),
                ]),
                _ => BTreeMap::new(),
            });
            let specific = (resource != "*").then(|| {
                vec![ResourceSpecificResult {
                    eval_resource_name: resource.clone(),
                    eval_resource_decision: decision.outcome.as_str(),
                    matched_statements: matched_statements(&decision),
                    missing_context_values: missing.clone(),
                    eval_decision_details: details.clone().filter(|d| !d.is_empty()),
                    permissions_boundary_decision_detail: boundary,
                }]
            });
            results.push(EvaluationResult {
                eval_action_name: action.clone(),
                eval_resource_name: resource.clone(),
                eval_decision: decision.outcome.as_str(),
                matched_statements: matched_statements(&decision),
                missing_context_values: missing,
                eval_decision_details: details,
                permissions_boundary_decision_detail: boundary,
                resource_specific_results: specific,
            });
        }
    }
    Ok(Output {
        evaluation_results: results,
    })
}

/// AWS lists no statement for an implicit deny; otherwise the deciding ones.
fn matched_statements(decision: &Decision) -> Vec<MatchedStatement> {
    if decision.outcome == Outcome::ImplicitDeny {
        return Vec::new();
    }
    decision
        .statements
        .iter()
        .map(|s| MatchedStatement {
            // The resource policy's id is AWS's `ResourcePolicy`; the others are their list
            // position (`PolicyInputList.1`).
            source_policy_id: s.policy.to_string(),
            source_policy_type: s.role.source_policy_type(),
            start_position: s.span.map(|span| Position {
                line: span.start.line,
                column: span.start.column,
            }),
            end_position: s.span.map(|span| Position {
                line: span.end.line,
                column: span.end.column,
            }),
        })
        .collect()
}

/// The output as the AWS CLI prints it: JSON indented by four spaces.
pub fn render(output: &Output) -> String {
    let mut buffer = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut buffer, formatter);
    output
        .serialize(&mut serializer)
        .expect("the output types always serialize");
    String::from_utf8(buffer).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_forms() {
        let entries = parse_context_entries("ContextKeyName=ses:Recipients,ContextKeyValues=x@y.com,z@y.com,ContextKeyType=stringList").unwrap();
        assert_eq!(entries[0].values, ["x@y.com", "z@y.com"]);
        let entries = parse_context_entries("ContextKeyName='aws:CurrentTime',ContextKeyValues='2019-04-25T11:00:00Z',ContextKeyType=date").unwrap();
        assert_eq!(
            (entries[0].name.as_str(), entries[0].values[0].as_str()),
            ("aws:CurrentTime", "2019-04-25T11:00:00Z")
        );
        let entries = parse_context_entries("ContextKeyType=stringList,ContextKeyValues=[\"a,b@c.d\",e@f.g],ContextKeyName=ses:Recipients").unwrap();
        assert_eq!(entries[0].values, ["a,b@c.d", "e@f.g"]);
        for bad in [
            "ContextKeyName=a:b,ContextKeyType=string",
            "Name=a:b",
            "ContextKeyName='a:b,ContextKeyValues=x,ContextKeyType=string",
        ] {
            assert!(parse_context_entries(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_forms() {
        let one = parse_context_entries(r#"{"ContextKeyName":"ses:FromAddress","ContextKeyValues":["a@b.c"],"ContextKeyType":"string"}"#).unwrap();
        let list = parse_context_entries(r#"[{"ContextKeyName":"ses:FromAddress","ContextKeyValues":["a@b.c"],"ContextKeyType":"string"}]"#).unwrap();
        assert_eq!(one, list);
        assert!(parse_context_entries(r#"{"ContextKeyName":"a:b","ContextKeyValues":[],"ContextKeyType":"string","Extra":1}"#).is_err());
    }

    #[test]
    fn typed_values_are_checked() {
        let entry = |kind: &str, values: &[&str]| ContextEntry {
            name: "test:Key".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            kind: kind.into(),
        };
        assert!(build_context(&[entry("numeric", &["12.5"])]).is_ok());
        assert!(build_context(&[entry("numeric", &["twelve"])]).is_err());
        assert!(build_context(&[entry("date", &["2018-08-31T12:00Z"])]).is_ok());
        assert!(build_context(&[entry("date", &["31/08/2018"])]).is_err());
        assert!(build_context(&[entry("ip", &["300.1.1.1"])]).is_err());
        assert!(build_context(&[entry("boolean", &["maybe"])]).is_err());
        assert!(build_context(&[entry("binary", &["!!"])]).is_err());
        assert!(build_context(&[entry("string", &["a", "b"])]).is_err());
        assert!(build_context(&[entry("strings", &["a"])]).is_err());
        let ctx = build_context(&[entry("stringList", &["a", "b"])]).unwrap();
        assert!(ctx.get("TEST:KEY").unwrap().is_multi());
    }

    #[test]
    fn aws_cli_example_reproduces() {
        let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}"#;
        let mut input = Input {
            policies: vec![policy.into()],
            actions: vec!["dynamodb:CreateBackup".into()],
            context: parse_context_entries("ContextKeyName='aws:CurrentTime',ContextKeyValues='2019-04-25T11:00:00Z',ContextKeyType=date").unwrap(),
            ..Input::default()
        };
        let json: serde_json::Value =
            serde_json::from_str(&render(&simulate(&input).unwrap())).unwrap();
        let result = &json["EvaluationResults"][0];
        assert_eq!(result["EvalDecision"], "allowed");
        assert_eq!(result["EvalResourceName"], "*");
        assert_eq!(
            result["MatchedStatements"][0]["SourcePolicyId"],
            "PolicyInputList.1"
        );
        assert_eq!(
            result["MatchedStatements"][0]["StartPosition"],
            serde_json::json!({"Line": 1, "Column": 38})
        );
        assert_eq!(
            result["MatchedStatements"][0]["EndPosition"],
            serde_json::json!({"Line": 1, "Column": 167})
        );
        input.context = parse_context_entries("ContextKeyName=aws:CurrentTime,ContextKeyValues=2017-04-25T11:00:00Z,ContextKeyType=date").unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&render(&simulate(&input).unwrap())).unwrap();
        assert_eq!(json["EvaluationResults"][0]["EvalDecision"], "implicitDeny");
        assert_eq!(
            json["EvaluationResults"][0]["MatchedStatements"],
            serde_json::json!([])
        );
    }

    #[test]
    fn invalid_input_is_refused() {
        let base = Input {
            policies: vec![
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*"}}"#.into(),
            ],
            actions: vec!["ses:SendRawEmail".into()],
            ..Input::default()
        };
        assert!(simulate(&base).is_ok());
        let wildcard = Input {
            actions: vec!["ses:Send*".into()],
            ..base.clone()
        };
        assert!(simulate(&wildcard).unwrap_err().0.contains("wildcards"));
        let two_boundaries = Input {
            boundaries: vec![base.policies[0].clone(); 2],
            ..base.clone()
        };
        assert!(simulate(&two_boundaries).is_err());
        let principal = Input {
            policies: vec![r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ses:*","Resource":"*"}}"#.into()],
            ..base.clone()
        };
        let err = simulate(&principal).unwrap_err().0;
        assert!(
            err.starts_with("policy \"PolicyInputList.1\": Statement.Principal"),
            "{err}"
        );
    }
}
