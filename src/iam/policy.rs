//! Loading one policy document: validation as IAM does it at creation time, then compilation into
//! statements that evaluate without parsing. A policy is identity-based (attached to a user or a
//! group, or a permissions boundary: `Principal` is refused, as IAM refuses it) or resource-based
//! (an SES identity's sending authorization policy: every statement names its `Principal` or
//! `NotPrincipal`, and a `Sid` may be any string, as SES-DG `policy-anatomy.md` allows).
//!
//! Choices where IAM's text is silent (documented in the README):
//! - `Id` is accepted and ignored (the grammar says identity policies do not use it; whether IAM
//!   refuses it is unverified, and ignoring it cannot change a decision).
//! - Anything IAM's grammar does not define is refused: unknown elements, duplicate keys, empty
//!   lists, wrong JSON types. A policy sesgate cannot read exactly is never half-applied.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::arn::ArnPattern;
use super::condition::{CompileError, Condition};
use super::context::{Context, Key};
use super::json::{Json, Span, first_forbidden_char, statement_spans};
use super::pattern::{Pattern, Resolve, Syntax};
use super::principal::{self, Principals};

/// What a policy is attached to, which decides whether it names principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A user's or group's policy, or a permissions boundary: no `Principal`.
    IdentityBased,
    /// A policy attached to a resource (an SES identity): every statement has a `Principal` or
    /// `NotPrincipal`.
    ResourceBased,
}

/// `Effect`: exactly `Allow` or `Deny` (case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        })
    }
}

/// `Version`. Policy variables exist only in 2012-10-17; absent means 2008-10-17.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2008,
    V2012,
}

/// Why a policy cannot be loaded: the policy, where in it (a JSON path such as
/// `Statement[2].Condition.StringLikee`), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy:?}: {}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct LoadError {
    pub policy: String,
    pub path: String,
    pub reason: String,
}

/// `Action`/`NotAction` or `Resource`/`NotResource`: the listed patterns, and whether the
/// element is the negated form.
#[derive(Debug, Clone, PartialEq)]
pub struct Element<P> {
    pub patterns: Vec<P>,
    pub negated: bool,
    /// True when one of the patterns is `*`, so the element lists everything.
    pub lists_everything: bool,
}

/// One compiled statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Position in the policy's `Statement` list (0-based).
    pub index: usize,
    pub sid: Option<Arc<str>>,
    pub effect: Effect,
    pub actions: Element<Pattern>,
    pub resources: Element<ArnPattern>,
    pub conditions: Vec<Condition>,
    /// `Principal`/`NotPrincipal`: present exactly in resource-based policies.
    pub principal: Option<Principals>,
    /// Where the statement is in the policy text, for the simulator's output.
    pub span: Option<Span>,
}

impl Statement {
    /// True when the statement applies to this action on this resource in this context.
    pub fn applies(&self, action: &str, resource: &str, ctx: &Context) -> bool {
        self.matches_target(action, resource, ctx) && self.conditions_hold(ctx)
    }

    /// True when the action and resource elements match, conditions aside.
    pub fn matches_target(&self, action: &str, resource: &str, ctx: &Context) -> bool {
        self.matches_action(action) && self.matches_resource(resource, ctx)
    }

    /// True when the Action (or NotAction) element covers `action` (case-insensitive).
    pub fn matches_action(&self, action: &str) -> bool {
        let listed = self
            .actions
            .patterns
            .iter()
            .any(|p| p.matches(action, true, &NoVariables));
        listed != self.actions.negated
    }

    /// True when the Resource (or NotResource) element covers `resource`.
    pub fn matches_resource(&self, resource: &str, ctx: &Context) -> bool {
        let listed = self.resources.lists_everything
            || self
                .resources
                .patterns
                .iter()
                .any(|p| p.matches(resource, ctx));
        listed != self.resources.negated
    }

    /// True when every condition holds.
    pub fn conditions_hold(&self, ctx: &Context) -> bool {
        self.conditions.iter().all(|c| c.evaluate(ctx, self.effect))
    }
}

/// Actions never hold policy variables (they compile with variables off).
struct NoVariables;

impl Resolve for NoVariables {
    fn resolve(&self, _: &Key) -> Option<&str> {
        None
    }
}

/// A compiled policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: Arc<str>,
    pub version: Version,
    pub kind: PolicyKind,
    pub statements: Vec<Statement>,
    /// Whether `Statement` is an array (JSON paths are `Statement[i]`) or one object
    /// (`Statement`).
    pub statement_array: bool,
}

impl Policy {
    /// The JSON path of statement `index`, as load errors write it.
    pub fn statement_path(&self, index: usize) -> String {
        if self.statement_array {
            format!("Statement[{index}]")
        } else {
            "Statement".to_owned()
        }
    }
}

impl Policy {
    /// Parses and validates an identity-based policy document named `name`.
    pub fn parse(name: &str, text: &str) -> Result<Policy, LoadError> {
        Self::parse_as(name, text, PolicyKind::IdentityBased)
    }

    /// Parses and validates a resource-based policy document (an SES identity's sending
    /// authorization policy, or the simulator's `--resource-policy`).
    pub fn parse_resource(name: &str, text: &str) -> Result<Policy, LoadError> {
        Self::parse_as(name, text, PolicyKind::ResourceBased)
    }

    /// Parses and validates a policy document of `kind`.
    pub fn parse_as(name: &str, text: &str, kind: PolicyKind) -> Result<Policy, LoadError> {
        let error = |path: &str, reason: String| LoadError {
            policy: name.to_owned(),
            path: path.to_owned(),
            reason,
        };
        if let Some((c, at)) = first_forbidden_char(text) {
            return Err(error(
                "",
                format!(
                    "character {c:?} (U+{:04X}) at line {} column {} is not allowed in a policy (IAM accepts TAB, LF, CR and U+0020-U+00FF)",
                    c as u32, at.line, at.column
                ),
            ));
        }
        let json = Json::parse(text).map_err(|e| error("", format!("invalid JSON: {e}")))?;
        let Json::Object(members) = &json else {
            return Err(error(
                "",
                format!("a policy must be a JSON object, not {}", json.kind()),
            ));
        };
        let mut version = Version::V2008;
        let mut statement_json = None;
        for (key, value) in members {
            match key.as_str() {
                "Version" => {
                    version = match value {
                        Json::String(v) if v == "2012-10-17" => Version::V2012,
                        Json::String(v) if v == "2008-10-17" => Version::V2008,
                        other => {
                            return Err(error(
                                "Version",
                                format!(
                                    "must be \"2012-10-17\" or \"2008-10-17\", not {}",
                                    show(other)
                                ),
                            ));
                        }
                    }
                }
                "Id" => {
                    if !matches!(value, Json::String(_)) {
                        return Err(error(
                            "Id",
                            format!("must be a string, not {}", value.kind()),
                        ));
                    }
                }
                "Statement" => statement_json = Some(value),
                other => {
                    return Err(error(
                        other,
                        "unknown policy element (expected Version, Id, Statement)".into(),
                    ));
                }
            }
        }
        let statement_json =
            statement_json.ok_or_else(|| error("Statement", "is required".into()))?;
        let (items, in_array): (Vec<&Json>, bool) = match statement_json {
            Json::Array(items) if items.is_empty() => {
                return Err(error(
                    "Statement",
                    "must hold at least one statement".into(),
                ));
            }
            Json::Array(items) => (items.iter().collect(), true),
            object @ Json::Object(_) => (vec![object], false),
            other => {
                return Err(error(
                    "Statement",
                    format!(
                        "must be an object or an array of objects, not {}",
                        other.kind()
                    ),
                ));
            }
        };
        let spans = statement_spans(text);
        let mut sids = HashSet::new();
        let mut statements = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let path = if in_array {
                format!("Statement[{index}]")
            } else {
                "Statement".to_owned()
            };
            let mut statement = parse_statement(item, index, version, kind)
                .map_err(|(sub, reason)| error(&format!("{path}{sub}"), reason))?;
            if let Some(sid) = &statement.sid
                && !sids.insert(sid.clone())
            {
                return Err(error(
                    &format!("{path}.Sid"),
                    format!("duplicate Sid {sid:?}: each Sid must be unique within a policy"),
                ));
            }
            statement.span = spans.get(index).copied();
            statements.push(statement);
        }
        Ok(Policy {
            name: name.into(),
            version,
            kind,
            statements,
            statement_array: in_array,
        })
    }
}

/// An error inside a statement: the path below the statement (`.Condition.X`) and the reason.
type StatementError = (String, String);

fn show(json: &Json) -> String {
    match json {
        Json::String(s) => format!("{s:?}"),
        other => other.kind().to_owned(),
    }
}

fn parse_statement(
    json: &Json,
    index: usize,
    version: Version,
    kind: PolicyKind,
) -> Result<Statement, StatementError> {
    let at = |sub: &str, reason: String| (format!(".{sub}"), reason);
    let Json::Object(members) = json else {
        return Err((
            String::new(),
            format!("a statement must be an object, not {}", json.kind()),
        ));
    };
    let variables = version == Version::V2012;
    let mut sid = None;
    let mut effect = None;
    let mut actions: Option<(&str, &Json)> = None;
    let mut resources: Option<(&str, &Json)> = None;
    let mut conditions = Vec::new();
    let mut principals: Option<(&str, Principals)> = None;
    for (key, value) in members {
        match key.as_str() {
            "Sid" => {
                let Json::String(s) = value else {
                    return Err(at("Sid", format!("must be a string, not {}", value.kind())));
                };
                if kind == PolicyKind::IdentityBased
                    && !s.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    return Err(at(
                        "Sid",
                        format!(
                            "{s:?} has characters IAM does not allow in a Sid (only A-Z, a-z, 0-9)"
                        ),
                    ));
                }
                sid = (!s.is_empty()).then(|| Arc::<str>::from(s.as_str()));
            }
            "Effect" => {
                effect = Some(match value {
                    Json::String(s) if s == "Allow" => Effect::Allow,
                    Json::String(s) if s == "Deny" => Effect::Deny,
                    other => {
                        return Err(at(
                            "Effect",
                            format!(
                                "must be exactly \"Allow\" or \"Deny\" (case-sensitive), not {}",
                                show(other)
                            ),
                        ));
                    }
                })
            }
            "Action" | "NotAction" => {
                if let Some((first, _)) = actions {
                    return Err(at(
                        key,
                        format!("a statement cannot have both {first} and {key}"),
                    ));
                }
                actions = Some((key, value));
            }
            "Resource" | "NotResource" => {
                if let Some((first, _)) = resources {
                    return Err(at(
                        key,
                        format!("a statement cannot have both {first} and {key}"),
                    ));
                }
                resources = Some((key, value));
            }
            "Condition" => conditions = parse_conditions(value, variables)?,
            "Principal" | "NotPrincipal" if kind == PolicyKind::IdentityBased => {
                return Err(at(
                    key,
                    "an identity-based policy should not specify a principal (IAM: MalformedPolicyDocument)".into(),
                ));
            }
            "Principal" | "NotPrincipal" => {
                if let Some((first, _)) = principals {
                    return Err(at(
                        key,
                        format!("a statement cannot have both {first} and {key}"),
                    ));
                }
                let parsed = principal::parse(value, key == "NotPrincipal")
                    .map_err(|(sub, reason)| (format!(".{key}{sub}"), reason))?;
                principals = Some((key, parsed));
            }
            other if kind == PolicyKind::IdentityBased => {
                return Err(at(
                    other,
                    "unknown statement element (expected Sid, Effect, Action, NotAction, Resource, NotResource, Condition)".into(),
                ));
            }
            other => {
                return Err(at(
                    other,
                    "unknown statement element (expected Sid, Effect, Principal, NotPrincipal, Action, NotAction, Resource, NotResource, Condition)".into(),
                ));
            }
        }
    }
    if kind == PolicyKind::ResourceBased && principals.is_none() {
        return Err(at(
            "Principal",
            "a resource-based policy statement needs Principal or NotPrincipal (who it applies to)"
                .into(),
        ));
    }
    let effect = effect.ok_or_else(|| at("Effect", "is required".into()))?;
    let (action_key, action_json) =
        actions.ok_or_else(|| at("Action", "a statement needs Action or NotAction".into()))?;
    let (resource_key, resource_json) = resources.ok_or_else(|| {
        at(
            "Resource",
            "a statement needs Resource or NotResource".into(),
        )
    })?;

    let action_syntax = Syntax {
        wildcards: true,
        variables: false,
    };
    let action_patterns: Vec<Pattern> = string_list(action_json, action_key)?
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let valid = text == "*"
                || text
                    .split_once(':')
                    .is_some_and(|(service, name)| !service.is_empty() && !name.is_empty() && !service.contains(['*', '?']));
            if !valid {
                return Err(at(
                    &format!("{action_key}[{i}]"),
                    format!("{text:?} is not an action (expected service:Name, for example ses:SendRawEmail, or *)"),
                ));
            }
            Pattern::compile(text, action_syntax).map_err(|e| at(action_key, e.0))
        })
        .collect::<Result<_, _>>()?;
    let resource_patterns: Vec<ArnPattern> = string_list(resource_json, resource_key)?
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            ArnPattern::resource(text, variables)
                .map_err(|e| at(&format!("{resource_key}[{i}]"), e.0))
        })
        .collect::<Result<_, _>>()?;
    Ok(Statement {
        index,
        sid,
        effect,
        actions: Element {
            lists_everything: action_patterns.iter().any(Pattern::is_match_all),
            patterns: action_patterns,
            negated: action_key == "NotAction",
        },
        resources: Element {
            lists_everything: resource_patterns.iter().any(ArnPattern::is_match_all),
            patterns: resource_patterns,
            negated: resource_key == "NotResource",
        },
        conditions,
        principal: principals.map(|(_, p)| p),
        span: None,
    })
}

/// A string or a non-empty array of strings.
fn string_list<'a>(json: &'a Json, element: &str) -> Result<Vec<&'a str>, StatementError> {
    let at = |sub: String, reason: String| (format!(".{sub}"), reason);
    match json {
        Json::String(s) => Ok(vec![s.as_str()]),
        Json::Array(items) if items.is_empty() => {
            Err(at(element.to_owned(), "must not be an empty list".into()))
        }
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::String(s) => Ok(s.as_str()),
                other => Err(at(
                    format!("{element}[{i}]"),
                    format!("must be a string, not {}", other.kind()),
                )),
            })
            .collect(),
        other => Err(at(
            element.to_owned(),
            format!(
                "must be a string or an array of strings, not {}",
                other.kind()
            ),
        )),
    }
}

fn parse_conditions(json: &Json, variables: bool) -> Result<Vec<Condition>, StatementError> {
    let Json::Object(operators) = json else {
        return Err((
            ".Condition".into(),
            format!("must be an object, not {}", json.kind()),
        ));
    };
    let mut conditions = Vec::new();
    for (operator, block) in operators {
        let path = format!(".Condition.{operator}");
        let Json::Object(keys) = block else {
            return Err((
                path,
                format!("must be an object of condition keys, not {}", block.kind()),
            ));
        };
        if keys.is_empty() {
            return Err((path, "must name at least one condition key".into()));
        }
        for (key, values) in keys {
            let key_path = format!("{path}.{key}");
            let items: Vec<&Json> = match values {
                Json::Array(items) => items.iter().collect(),
                scalar => vec![scalar],
            };
            let texts = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.scalar_text().ok_or_else(|| {
                        (
                            format!("{key_path}[{i}]"),
                            format!(
                                "a condition value must be a string, number or boolean, not {}",
                                item.kind()
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let condition =
                Condition::compile(operator, key, &texts, variables).map_err(|e| match e {
                    CompileError::Operator(reason) => (path.clone(), reason),
                    CompileError::Value(reason) => (key_path.clone(), reason),
                })?;
            conditions.push(condition);
        }
    }
    Ok(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(policy: &str) -> String {
        Policy::parse("Test", policy).unwrap_err().to_string()
    }

    #[test]
    fn accepts_every_documented_shape() {
        let shapes = [
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ses:*"],"Resource":"*"}]}"#,
            r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":["*"]}}"#,
            r#"{"Statement":{"Sid":"A1","Effect":"Deny","NotAction":"ses:Get*","NotResource":"arn:aws:ses:*:*:identity/x"}}"#,
            r#"{"Version":"2012-10-17","Id":"any","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericLessThan":{"test:N":10},"Bool":{"aws:SecureTransport":true}}}}"#,
        ];
        for shape in shapes {
            Policy::parse("Test", shape).unwrap_or_else(|e| panic!("{shape}: {e}"));
        }
    }

    #[test]
    fn refusals_name_path_and_reason() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:*","Resource":"*"},{"Effect":"Allow","Action":"ses:*","Resource":"*"},{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"StringLikee":{"ses:FromAddress":"x"}}}]}"#,
                "policy \"Test\": Statement[2].Condition.StringLikee: unknown condition operator \"StringLikee\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ses:*","Resource":"*"}}"#,
                "Statement.Principal: an identity-based policy should not specify a principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":"x"},"Action":"ses:*","Resource":"*"}}"#,
                "Statement.NotPrincipal: an identity-based policy should not specify a principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","NotAction":"ses:X","Resource":"*"}}"#,
                "Statement.NotAction: a statement cannot have both Action and NotAction",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Resource":"*","NotResource":"*","Action":"ses:*"}}"#,
                "Statement.NotResource: a statement cannot have both Resource and NotResource",
            ),
            (
                r#"{"Statement":{"Action":"ses:*","Resource":"*"}}"#,
                "Statement.Effect: is required",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#,
                "Statement.Action: a statement needs Action or NotAction",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*"}}"#,
                "Statement.Resource: a statement needs Resource or NotResource",
            ),
            (
                r#"{"Statement":{"Effect":"allow","Action":"ses:*","Resource":"*"}}"#,
                "Statement.Effect: must be exactly \"Allow\" or \"Deny\" (case-sensitive), not \"allow\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"NullIfExists":{"ses:FeedbackAddress":"true"}}}}"#,
                "Statement.Condition.NullIfExists: the Null operator cannot take the IfExists suffix",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-13-01"}}}}"#,
                "Statement.Condition.DateGreaterThan.aws:CurrentTime: \"2018-13-01\" is not a valid date",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.300/8"}}}}"#,
                "Statement.Condition.IpAddress.aws:SourceIp: \"10.0.0.300/8\" is not a valid IP address or CIDR range",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"NumericLessThan":{"test:N":"many"}}}}"#,
                "Statement.Condition.NumericLessThan.test:N: \"many\" is not a valid number",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"yes"}}}}"#,
                "Statement.Condition.Bool.aws:SecureTransport: \"yes\" is not a valid boolean",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"BinaryEquals":{"test:B":"%%%"}}}}"#,
                "Statement.Condition.BinaryEquals.test:B: \"%%%\" is not a valid base64 value",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"${aws:username}"}}}}"#,
                "Statement.Condition.DateLessThan.aws:CurrentTime: policy variables cannot be used with the DateLessThan operator",
            ),
            (
                r#"{"Statement":[{"Sid":"One","Effect":"Allow","Action":"ses:*","Resource":"*"},{"Sid":"One","Effect":"Deny","Action":"ses:*","Resource":"*"}]}"#,
                "Statement[1].Sid: duplicate Sid \"One\"",
            ),
            (
                r#"{"Statement":{"Sid":"not-alnum","Effect":"Allow","Action":"ses:*","Resource":"*"}}"#,
                "Statement.Sid: \"not-alnum\" has characters IAM does not allow",
            ),
            (
                "{\"Statement\":{\"Sid\":\"Caf\u{0151}\",\"Effect\":\"Allow\",\"Action\":\"ses:*\",\"Resource\":\"*\"}}",
                "character 'ő' (U+0151) at line 1 column 25 is not allowed",
            ),
            (
                r#"{"Version":"2012-10-18","Statement":[]}"#,
                "Version: must be \"2012-10-17\" or \"2008-10-17\", not \"2012-10-18\"",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":[]}"#,
                "Statement: must hold at least one statement",
            ),
            (r#"{"Version":"2012-10-17"}"#, "Statement: is required"),
            (
                r#"{"Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}"#,
                "Statement.Action: must not be an empty list",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"SendRawEmail","Resource":"*"}}"#,
                "Statement.Action[0]: \"SendRawEmail\" is not an action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Effect":"Deny"}}"#,
                "invalid JSON: duplicate key \"Effect\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*"},"Extra":1}"#,
                "Extra: unknown policy element",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Conditions":{}}}"#,
                "Statement.Conditions: unknown statement element",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*""#,
                "invalid JSON",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:*","Resource":"*","Condition":{"StringEquals":{"ses:FromAddress":{"a":"b"}}}}}"#,
                "Statement.Condition.StringEquals.ses:FromAddress[0]: a condition value must be a string, number or boolean",
            ),
        ];
        for (policy, want) in cases {
            let got = refusal(policy);
            assert!(got.contains(want), "\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn statements_keep_index_sid_and_span() {
        let policy = Policy::parse(
            "P",
            "{\"Version\":\"2012-10-17\",\"Statement\":[\n{\"Sid\":\"First\",\"Effect\":\"Allow\",\"Action\":\"ses:*\",\"Resource\":\"*\"},\n{\"Effect\":\"Deny\",\"Action\":\"ses:*\",\"Resource\":\"*\"}]}",
        )
        .unwrap();
        assert_eq!(policy.statements[0].sid.as_deref(), Some("First"));
        assert_eq!(policy.statements[1].index, 1);
        assert_eq!(policy.statements[1].span.unwrap().start.line, 3);
    }

    #[test]
    fn resource_based_policies_name_principals() {
        // SES-DG sending-authorization-policy-examples.md, "Specifying the Delegate Sender".
        let policy = Policy::parse_resource(
            "Delegate",
            r#"{"Id":"SampleAuthorizationPolicy","Version":"2012-10-17","Statement":[{"Sid":"Authorize Marketer","Effect":"Allow","Resource":"arn:aws:ses:us-east-1:888888888888:identity/example.com","Principal":{"AWS":["123456789012"]},"Action":["ses:SendEmail","ses:SendRawEmail"],"Condition":{"StringLike":{"ses:FromAddress":"marketing+.*@example.com"}}}]}"#,
        )
        .unwrap();
        assert_eq!(policy.kind, PolicyKind::ResourceBased);
        assert!(policy.statements[0].principal.is_some());
        assert_eq!(
            policy.statements[0].sid.as_deref(),
            Some("Authorize Marketer")
        );
        for (json, want) in [
            (
                r#"{"Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*"}}"#,
                "Statement.Principal: a resource-based policy statement needs Principal or NotPrincipal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","NotPrincipal":{"AWS":"123456789012"},"Action":"ses:SendRawEmail","Resource":"*"}}"#,
                "Statement.NotPrincipal: a statement cannot have both Principal and NotPrincipal",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["123456789012","arn:aws:iam::1:user/x"]},"Action":"ses:SendRawEmail","Resource":"*"}]}"#,
                "Statement[0].Principal.AWS[1]: \"arn:aws:iam::1:user/x\" is not a valid AWS principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ses:SendRawEmail","Resource":"*","Extra":1}}"#,
                "Statement.Extra: unknown statement element (expected Sid, Effect, Principal",
            ),
        ] {
            let got = Policy::parse_resource("P", json).unwrap_err().to_string();
            assert!(got.contains(want), "\n got: {got}\nwant: {want}");
        }
    }
}
