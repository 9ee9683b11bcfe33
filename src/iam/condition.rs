//! Condition operators: parsed once from `"ForAnyValue:StringLikeIfExists"`-style names and
//! typed values, then evaluated against a [`Context`] without parsing or allocating.
//!
//! The rules, with their sources in `ses-iam-facts.md` §C3–C5 and the choices of SPEC §5:
//! - several values for one key: OR; a negated operator: none may match (NOR);
//! - a missing (or empty) key: `IfExists` true, `ForAllValues` true, `ForAnyValue` false (also with
//!   a negated operator), plain positive false, plain negated true; `Null` tests exactly this;
//! - a plain operator on a multivalued key fails closed: every value must match in an Allow,
//!   any value matching applies a Deny;
//! - a request value that cannot be read as the operator's type (a number operator on a name)
//!   fails closed the same way: the Allow does not apply, the Deny does.

use base64::Engine as _;
use ipnet::IpNet;

use super::arn::ArnPattern;
use super::context::{Context, Key, Value};
use super::pattern::{Pattern, PatternError, Syntax};
use super::policy::Effect;
use super::scalar::{Decimal, Instant, parse_bool, parse_cidr, parse_instant};

/// How a condition treats the values of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    /// No prefix.
    Plain,
    /// `ForAllValues:`: every request value must match.
    ForAllValues,
    /// `ForAnyValue:`: at least one request value must match.
    ForAnyValue,
}

/// Ordering comparisons shared by the Numeric and Date families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

impl Ordering {
    fn holds<T: Ord>(self, request: &T, policy: &T) -> bool {
        match self {
            Ordering::Equals => request == policy,
            Ordering::LessThan => request < policy,
            Ordering::LessThanEquals => request <= policy,
            Ordering::GreaterThan => request > policy,
            Ordering::GreaterThanEquals => request >= policy,
        }
    }
}

/// The operator family, with the policy values compiled for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// StringEquals / StringEqualsIgnoreCase (patterns without wildcards).
    StringEquals {
        values: Vec<Pattern>,
        ignore_case: bool,
    },
    /// StringLike (patterns with `*` and `?`, case-sensitive).
    StringLike(Vec<Pattern>),
    Numeric(Ordering, Vec<Decimal>),
    Date(Ordering, Vec<Instant>),
    /// Bool: literal values, or variables resolved and read at request time.
    Bool(Vec<Pattern>),
    Binary(Vec<Box<[u8]>>),
    Ip(Vec<IpNet>),
    /// ArnEquals and ArnLike behave identically.
    Arn(Vec<ArnPattern>),
    /// Null: `true` tests that the key is missing, `false` that it is present.
    Null(Vec<bool>),
}

/// One compiled `"Operator": {"key": values}` pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The operator as written, for explanations and lints.
    pub operator: Box<str>,
    /// The key as written.
    pub key: Box<str>,
    /// The key, compiled for lookups.
    pub(crate) key_id: Key,
    pub set: SetQualifier,
    pub negated: bool,
    pub if_exists: bool,
    pub test: Test,
}

/// Why a condition cannot be compiled: a problem with the operator name, or with the key and
/// its values (so the loader can point at the right JSON path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    Operator(String),
    Value(String),
}

impl CompileError {
    /// The reason, wherever it belongs.
    pub fn reason(&self) -> &str {
        match self {
            CompileError::Operator(r) | CompileError::Value(r) => r,
        }
    }
}

/// The parts of an operator name.
struct OperatorName {
    set: SetQualifier,
    base: &'static str,
    negated: bool,
    if_exists: bool,
}

/// Every base operator IAM knows, and whether it is a negation.
const BASE_OPERATORS: &[(&str, bool)] = &[
    ("StringEquals", false),
    ("StringNotEquals", true),
    ("StringEqualsIgnoreCase", false),
    ("StringNotEqualsIgnoreCase", true),
    ("StringLike", false),
    ("StringNotLike", true),
    ("NumericEquals", false),
    ("NumericNotEquals", true),
    ("NumericLessThan", false),
    ("NumericLessThanEquals", false),
    ("NumericGreaterThan", false),
    ("NumericGreaterThanEquals", false),
    ("DateEquals", false),
    ("DateNotEquals", true),
    ("DateLessThan", false),
    ("DateLessThanEquals", false),
    ("DateGreaterThan", false),
    ("DateGreaterThanEquals", false),
    ("Bool", false),
    ("BinaryEquals", false),
    ("IpAddress", false),
    ("NotIpAddress", true),
    ("ArnEquals", false),
    ("ArnNotEquals", true),
    ("ArnLike", false),
    ("ArnNotLike", true),
    ("Null", false),
];

fn parse_operator_name(name: &str) -> Result<OperatorName, String> {
    let (set, rest) = if let Some(rest) = name.strip_prefix("ForAllValues:") {
        (SetQualifier::ForAllValues, rest)
    } else if let Some(rest) = name.strip_prefix("ForAnyValue:") {
        (SetQualifier::ForAnyValue, rest)
    } else {
        (SetQualifier::Plain, name)
    };
    let (rest, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let &(base, negated) = BASE_OPERATORS
        .iter()
        .find(|(known, _)| *known == rest)
        .ok_or_else(|| format!("unknown condition operator {name:?}"))?;
    if base == "Null" && if_exists {
        return Err("the Null operator cannot take the IfExists suffix".into());
    }
    if base == "Null" && set != SetQualifier::Plain {
        return Err(format!(
            "the Null operator cannot take a set qualifier: {name:?}"
        ));
    }
    Ok(OperatorName {
        set,
        base,
        negated,
        if_exists,
    })
}

fn ordering_of(base: &str) -> Ordering {
    if base.ends_with("GreaterThanEquals") {
        Ordering::GreaterThanEquals
    } else if base.ends_with("GreaterThan") {
        Ordering::GreaterThan
    } else if base.ends_with("LessThanEquals") {
        Ordering::LessThanEquals
    } else if base.ends_with("LessThan") {
        Ordering::LessThan
    } else {
        Ordering::Equals
    }
}

impl Condition {
    /// Compiles one operator/key pair. `values` are the policy's values as text (numbers and
    /// booleans already turned into their JSON text). `variables` is true under 2012-10-17.
    /// Errors are reasons for the caller to put behind a JSON path.
    pub fn compile(
        operator: &str,
        key: &str,
        values: &[String],
        variables: bool,
    ) -> Result<Self, CompileError> {
        let name = parse_operator_name(operator).map_err(CompileError::Operator)?;
        Self::compile_values(operator, name, key, values, variables).map_err(CompileError::Value)
    }

    fn compile_values(
        operator: &str,
        name: OperatorName,
        key: &str,
        values: &[String],
        variables: bool,
    ) -> Result<Self, String> {
        if !key.contains(':') || key.starts_with(':') || key.ends_with(':') {
            return Err(format!(
                "condition key {key:?} is not of the form prefix:name (for example ses:FromAddress)"
            ));
        }
        if values.is_empty() {
            return Err("a condition key needs at least one value".into());
        }
        let base = name.base;
        let typed_family = base.starts_with("Numeric")
            || base.starts_with("Date")
            || base.starts_with("Binary")
            || base.ends_with("IpAddress")
            || base == "Null";
        if variables && typed_family && values.iter().any(|v| v.contains("${")) {
            return Err(format!(
                "policy variables cannot be used with the {base} operator"
            ));
        }
        let patterns = |wildcards: bool| -> Result<Vec<Pattern>, String> {
            values
                .iter()
                .map(|v| {
                    Pattern::compile(
                        v,
                        Syntax {
                            wildcards,
                            variables,
                        },
                    )
                })
                .collect::<Result<_, PatternError>>()
                .map_err(|e| e.0)
        };
        let each = |kind: &str, parse: &dyn Fn(&str) -> bool| -> Result<(), String> {
            match values.iter().find(|v| !parse(v)) {
                Some(bad) => Err(format!("{bad:?} is not a valid {kind} for {base}")),
                None => Ok(()),
            }
        };
        let test = match base {
            "StringEquals" | "StringNotEquals" => Test::StringEquals {
                values: patterns(false)?,
                ignore_case: false,
            },
            "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => Test::StringEquals {
                values: patterns(false)?,
                ignore_case: true,
            },
            "StringLike" | "StringNotLike" => Test::StringLike(patterns(true)?),
            b if b.starts_with("Numeric") => {
                each("number", &|v| v.parse::<Decimal>().is_ok())?;
                Test::Numeric(
                    ordering_of(b),
                    values.iter().filter_map(|v| v.parse().ok()).collect(),
                )
            }
            b if b.starts_with("Date") => {
                each("date (W3C ISO 8601 or epoch seconds)", &|v| {
                    parse_instant(v).is_some()
                })?;
                Test::Date(
                    ordering_of(b),
                    values.iter().filter_map(|v| parse_instant(v)).collect(),
                )
            }
            "Bool" => {
                if values.len() > 1 {
                    return Err("Bool takes a single value".into());
                }
                let value = &values[0];
                if !(variables && value.contains("${")) && parse_bool(value).is_none() {
                    return Err(format!(
                        "{value:?} is not a valid boolean (true or false) for Bool"
                    ));
                }
                Test::Bool(patterns(false)?)
            }
            "BinaryEquals" => {
                let engine = base64::engine::general_purpose::STANDARD;
                each("base64 value", &|v| engine.decode(v).is_ok())?;
                Test::Binary(
                    values
                        .iter()
                        .filter_map(|v| engine.decode(v).ok())
                        .map(Vec::into_boxed_slice)
                        .collect(),
                )
            }
            "IpAddress" | "NotIpAddress" => {
                each("IP address or CIDR range", &|v| parse_cidr(v).is_some())?;
                Test::Ip(values.iter().filter_map(|v| parse_cidr(v)).collect())
            }
            b if b.starts_with("Arn") => Test::Arn(
                values
                    .iter()
                    .map(|v| ArnPattern::condition(v, variables))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.0)?,
            ),
            "Null" => {
                each("boolean (true or false)", &|v| parse_bool(v).is_some())?;
                Test::Null(values.iter().filter_map(|v| parse_bool(v)).collect())
            }
            other => unreachable!("operator {other} is in BASE_OPERATORS but has no test"),
        };
        Ok(Condition {
            operator: operator.into(),
            key: key.into(),
            key_id: Key::new(key),
            set: name.set,
            negated: name.negated,
            if_exists: name.if_exists,
            test,
        })
    }

    /// The keys this condition reads: its own and those of the variables in its values.
    pub fn referenced_keys(&self) -> impl Iterator<Item = &Key> {
        let variable_keys: Vec<&Key> = match &self.test {
            Test::StringEquals { values, .. } | Test::StringLike(values) | Test::Bool(values) => {
                values.iter().flat_map(Pattern::variable_keys).collect()
            }
            Test::Arn(values) => values
                .iter()
                .flat_map(|a| a.pattern().variable_keys())
                .collect(),
            _ => Vec::new(),
        };
        std::iter::once(&self.key_id).chain(variable_keys)
    }

    /// Evaluates the condition for a statement of `effect`.
    pub fn evaluate(&self, ctx: &Context, effect: Effect) -> bool {
        let values = match ctx.entry(&self.key_id) {
            Some(entry) if !entry.values().is_empty() => entry,
            _ => return self.on_missing_key(),
        };
        if let Test::Null(expect_missing) = &self.test {
            return expect_missing.contains(&false);
        }
        // Deny statements fail closed by applying; Allow statements by not applying.
        let fail_closed = effect == Effect::Deny;
        let mut any = false;
        let mut all = true;
        for value in values.values() {
            let Some(matched) = self.matches_any(value, ctx) else {
                return fail_closed;
            };
            let satisfied = matched != self.negated;
            any |= satisfied;
            all &= satisfied;
        }
        match self.set {
            SetQualifier::ForAllValues => all,
            SetQualifier::ForAnyValue => any,
            SetQualifier::Plain if !values.multi => all,
            SetQualifier::Plain => match effect {
                Effect::Allow => all,
                Effect::Deny => any,
            },
        }
    }

    fn on_missing_key(&self) -> bool {
        if let Test::Null(expect_missing) = &self.test {
            return expect_missing.contains(&true);
        }
        if self.if_exists {
            return true;
        }
        match self.set {
            SetQualifier::ForAllValues => true,
            SetQualifier::ForAnyValue => false,
            SetQualifier::Plain => self.negated,
        }
    }

    /// Whether one request value matches any policy value under the positive form of the
    /// operator; `None` when the request value cannot be read as the operator's type.
    fn matches_any(&self, value: &Value, ctx: &Context) -> Option<bool> {
        let text = value.text();
        Some(match &self.test {
            Test::StringEquals {
                values,
                ignore_case,
            } => values.iter().any(|p| p.matches(text, *ignore_case, ctx)),
            Test::StringLike(values) => values.iter().any(|p| p.matches(text, false, ctx)),
            Test::Numeric(ord, values) => {
                let number = value.number()?;
                values.iter().any(|p| ord.holds(&number, p))
            }
            Test::Date(ord, values) => {
                let time = value.instant()?;
                values.iter().any(|p| ord.holds(time, p))
            }
            Test::Bool(values) => {
                let actual = value.boolean()?;
                values
                    .iter()
                    .any(|p| p.resolves(ctx) && bool_of_pattern(p, ctx) == Some(actual))
            }
            Test::Binary(values) => {
                let bytes = value.binary.as_deref()?;
                values.iter().any(|p| **p == *bytes)
            }
            Test::Ip(values) => {
                let ip = value.ip()?;
                values.iter().any(|net| net.contains(&ip))
            }
            // A value that cannot be compared (fewer than six components) makes the whole
            // condition fail closed, whatever the other values say.
            Test::Arn(values) => {
                let mut any = false;
                for pattern in values {
                    any |= pattern.compare(text, ctx)?;
                }
                any
            }
            Test::Null(_) => unreachable!("Null is decided before values are read"),
        })
    }
}

/// Reads a Bool policy value, resolving a variable in it.
fn bool_of_pattern(pattern: &Pattern, ctx: &Context) -> Option<bool> {
    if let Some(literal) = pattern.as_literal() {
        return parse_bool(literal);
    }
    [true, false]
        .into_iter()
        .find(|b| pattern.matches(if *b { "true" } else { "false" }, true, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(entries: &[(&str, &[&str], bool)]) -> Context {
        let mut ctx = Context::new();
        for (key, values, multi) in entries {
            let values: Vec<Value> = values.iter().map(|v| Value::new(*v)).collect();
            if *multi {
                ctx.set_multi(key, values);
            } else {
                ctx.set(key, values.into_iter().next().unwrap());
            }
        }
        ctx
    }

    fn eval(operator: &str, key: &str, values: &[&str], ctx: &Context, effect: Effect) -> bool {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        Condition::compile(operator, key, &values, true)
            .unwrap_or_else(|e| panic!("{operator}: {e:?}"))
            .evaluate(ctx, effect)
    }

    /// (operator, key, policy values, context, expected under Allow)
    type Case = (&'static str, &'static str, &'static [&'static str], bool);

    fn run_table(context: &Context, cases: &[Case]) {
        for (operator, key, values, want) in cases {
            assert_eq!(
                eval(operator, key, values, context, Effect::Allow),
                *want,
                "{operator} {key} {values:?}"
            );
        }
    }

    #[test]
    fn every_operator_both_outcomes() {
        let context = ctx(&[
            ("ses:FromAddress", &["marketing@example.com"], false),
            ("ses:FromDisplayName", &["Marketing"], false),
            ("aws:CurrentTime", &["2018-09-15T00:00:00Z"], false),
            ("aws:EpochTime", &["1536969600"], false),
            ("aws:SecureTransport", &["true"], false),
            ("aws:SourceIp", &["203.0.113.7"], false),
            ("test:Number", &["10.5"], false),
            ("test:Blob", &["aGk="], false),
            (
                "aws:PrincipalArn",
                &["arn:aws:iam::123456789012:user/apps/billing"],
                false,
            ),
        ]);
        let mut context = context;
        context.set("test:Blob", Value::binary("aGk=").unwrap());
        run_table(
            &context,
            &[
                (
                    "StringEquals",
                    "ses:FromAddress",
                    &["marketing@example.com"],
                    true,
                ),
                (
                    "StringEquals",
                    "ses:FromAddress",
                    &["Marketing@example.com"],
                    false,
                ),
                (
                    "StringNotEquals",
                    "ses:FromAddress",
                    &["other@example.com"],
                    true,
                ),
                (
                    "StringNotEquals",
                    "ses:FromAddress",
                    &["x@y.z", "marketing@example.com"],
                    false,
                ),
                (
                    "StringEqualsIgnoreCase",
                    "ses:FromAddress",
                    &["MARKETING@EXAMPLE.COM"],
                    true,
                ),
                (
                    "StringEqualsIgnoreCase",
                    "ses:FromAddress",
                    &["sales@example.com"],
                    false,
                ),
                (
                    "StringNotEqualsIgnoreCase",
                    "ses:FromAddress",
                    &["MARKETING@example.com"],
                    false,
                ),
                (
                    "StringNotEqualsIgnoreCase",
                    "ses:FromAddress",
                    &["sales@example.com"],
                    true,
                ),
                ("StringLike", "ses:FromAddress", &["*@example.com"], true),
                ("StringLike", "ses:FromAddress", &["*@example.org"], false),
                ("StringLike", "ses:FromDisplayName", &["Market?ng"], true),
                ("StringNotLike", "ses:FromAddress", &["*@example.org"], true),
                (
                    "StringNotLike",
                    "ses:FromAddress",
                    &["*@example.org", "marketing@*"],
                    false,
                ),
                ("StringEquals", "ses:FromAddress", &["*@example.com"], false),
                ("NumericEquals", "test:Number", &["10.50"], true),
                ("NumericEquals", "test:Number", &["10"], false),
                ("NumericNotEquals", "test:Number", &["10"], true),
                ("NumericNotEquals", "test:Number", &["10.5"], false),
                ("NumericLessThan", "test:Number", &["11"], true),
                ("NumericLessThan", "test:Number", &["10.5"], false),
                ("NumericLessThanEquals", "test:Number", &["10.5"], true),
                ("NumericLessThanEquals", "test:Number", &["10.4"], false),
                ("NumericGreaterThan", "test:Number", &["10"], true),
                ("NumericGreaterThan", "test:Number", &["10.5"], false),
                ("NumericGreaterThanEquals", "test:Number", &["10.5"], true),
                (
                    "NumericGreaterThanEquals",
                    "test:Number",
                    &["-3", "11"],
                    true,
                ),
                ("NumericGreaterThanEquals", "test:Number", &["11"], false),
                ("NumericLessThan", "aws:EpochTime", &["1536969601"], true),
                ("NumericLessThan", "aws:EpochTime", &["1536969600"], false),
                ("DateEquals", "aws:CurrentTime", &["2018-09-15"], true),
                ("DateEquals", "aws:CurrentTime", &["2018-09-16"], false),
                ("DateNotEquals", "aws:CurrentTime", &["2018-09-16"], true),
                ("DateNotEquals", "aws:CurrentTime", &["1536969600"], false),
                (
                    "DateLessThan",
                    "aws:CurrentTime",
                    &["2018-10-01T12:00Z"],
                    true,
                ),
                (
                    "DateLessThan",
                    "aws:CurrentTime",
                    &["2018-09-15T00:00Z"],
                    false,
                ),
                (
                    "DateLessThanEquals",
                    "aws:CurrentTime",
                    &["2018-09-15T00:00Z"],
                    true,
                ),
                ("DateLessThanEquals", "aws:CurrentTime", &["2018-09"], false),
                (
                    "DateGreaterThan",
                    "aws:CurrentTime",
                    &["2018-08-31T12:00Z"],
                    true,
                ),
                (
                    "DateGreaterThan",
                    "aws:CurrentTime",
                    &["2018-09-15T00:00:00Z"],
                    false,
                ),
                (
                    "DateGreaterThanEquals",
                    "aws:CurrentTime",
                    &["2018-09-15T02:00+02:00"],
                    true,
                ),
                ("DateGreaterThanEquals", "aws:CurrentTime", &["2019"], false),
                ("DateGreaterThan", "aws:EpochTime", &["2018-09-14"], true),
                ("DateGreaterThan", "aws:EpochTime", &["2018-09-16"], false),
                ("Bool", "aws:SecureTransport", &["true"], true),
                ("Bool", "aws:SecureTransport", &["false"], false),
                ("BinaryEquals", "test:Blob", &["aGk="], true),
                ("BinaryEquals", "test:Blob", &["aGo="], false),
                ("IpAddress", "aws:SourceIp", &["203.0.113.0/24"], true),
                ("IpAddress", "aws:SourceIp", &["203.0.113.8"], false),
                ("IpAddress", "aws:SourceIp", &["203.0.113.7"], true),
                ("IpAddress", "aws:SourceIp", &["::/0"], false),
                ("NotIpAddress", "aws:SourceIp", &["198.51.100.0/24"], true),
                (
                    "NotIpAddress",
                    "aws:SourceIp",
                    &["198.51.100.0/24", "203.0.113.0/24"],
                    false,
                ),
                (
                    "ArnLike",
                    "aws:PrincipalArn",
                    &["arn:aws:iam::*:user/apps/*"],
                    true,
                ),
                (
                    "ArnLike",
                    "aws:PrincipalArn",
                    &["arn:aws:iam::*:user/ops/*"],
                    false,
                ),
                (
                    "ArnEquals",
                    "aws:PrincipalArn",
                    &["arn:aws:iam::123456789012:user/apps/billing"],
                    true,
                ),
                (
                    "ArnEquals",
                    "aws:PrincipalArn",
                    &["arn:aws:iam::123456789012:user/apps/*x"],
                    false,
                ),
                (
                    "ArnNotLike",
                    "aws:PrincipalArn",
                    &["arn:aws:iam::*:user/ops/*"],
                    true,
                ),
                (
                    "ArnNotEquals",
                    "aws:PrincipalArn",
                    &["arn:aws:iam::*:user/apps/*"],
                    false,
                ),
                ("Null", "ses:FeedbackAddress", &["true"], true),
                ("Null", "ses:FeedbackAddress", &["false"], false),
                ("Null", "ses:FromAddress", &["false"], true),
                ("Null", "ses:FromAddress", &["true"], false),
            ],
        );
    }

    #[test]
    fn missing_keys() {
        let empty = Context::new();
        run_table(
            &empty,
            &[
                ("StringEquals", "ses:FromAddress", &["a@b.c"], false),
                ("StringNotEquals", "ses:FromAddress", &["a@b.c"], true),
                ("StringLike", "ses:FromAddress", &["*"], false),
                ("StringNotLike", "ses:FromAddress", &["*"], true),
                ("NumericLessThan", "test:N", &["1"], false),
                ("DateNotEquals", "aws:CurrentTime", &["2020"], true),
                ("IpAddress", "aws:SourceIp", &["0.0.0.0/0"], false),
                ("NotIpAddress", "aws:SourceIp", &["0.0.0.0/0"], true),
                ("StringEqualsIfExists", "ses:FromAddress", &["a@b.c"], true),
                (
                    "StringNotEqualsIfExists",
                    "ses:FromAddress",
                    &["a@b.c"],
                    true,
                ),
                (
                    "ForAllValues:StringLike",
                    "ses:Recipients",
                    &["*@example.com"],
                    true,
                ),
                (
                    "ForAnyValue:StringLike",
                    "ses:Recipients",
                    &["*@example.com"],
                    false,
                ),
                (
                    "ForAnyValue:StringNotLike",
                    "ses:Recipients",
                    &["*@example.com"],
                    false,
                ),
                (
                    "ForAllValues:StringNotLike",
                    "ses:Recipients",
                    &["*@example.com"],
                    true,
                ),
                (
                    "ForAnyValue:StringNotLikeIfExists",
                    "ses:Recipients",
                    &["*@example.com"],
                    true,
                ),
            ],
        );
        // An empty set behaves as a missing key.
        let empty_set = ctx(&[("ses:Recipients", &[], true)]);
        run_table(
            &empty_set,
            &[
                (
                    "ForAllValues:StringLike",
                    "ses:Recipients",
                    &["*@example.com"],
                    true,
                ),
                (
                    "ForAnyValue:StringLike",
                    "ses:Recipients",
                    &["*@example.com"],
                    false,
                ),
                ("Null", "ses:Recipients", &["true"], true),
            ],
        );
    }

    #[test]
    fn if_exists_applies_when_present() {
        let context = ctx(&[("ses:FromAddress", &["a@b.c"], false)]);
        run_table(
            &context,
            &[
                ("StringEqualsIfExists", "ses:FromAddress", &["a@b.c"], true),
                ("StringEqualsIfExists", "ses:FromAddress", &["x@b.c"], false),
            ],
        );
    }

    #[test]
    fn set_operators_on_recipients() {
        let context = ctx(&[("ses:Recipients", &["a@example.com", "b@other.com"], true)]);
        run_table(
            &context,
            &[
                (
                    "ForAllValues:StringLike",
                    "ses:Recipients",
                    &["*@example.com"],
                    false,
                ),
                (
                    "ForAllValues:StringLike",
                    "ses:Recipients",
                    &["*@example.com", "*@other.com"],
                    true,
                ),
                (
                    "ForAnyValue:StringLike",
                    "ses:Recipients",
                    &["*@other.com"],
                    true,
                ),
                (
                    "ForAnyValue:StringLike",
                    "ses:Recipients",
                    &["*@third.com"],
                    false,
                ),
                (
                    "ForAllValues:StringNotLike",
                    "ses:Recipients",
                    &["*@third.com"],
                    true,
                ),
                (
                    "ForAllValues:StringNotLike",
                    "ses:Recipients",
                    &["*@other.com"],
                    false,
                ),
                (
                    "ForAnyValue:StringNotLike",
                    "ses:Recipients",
                    &["*@other.com"],
                    true,
                ),
                (
                    "ForAnyValue:StringNotLike",
                    "ses:Recipients",
                    &["*@*"],
                    false,
                ),
            ],
        );
    }

    #[test]
    fn plain_operator_on_multivalued_key_fails_closed() {
        let context = ctx(&[("ses:Recipients", &["a@example.com", "b@other.com"], true)]);
        let like = |effect| {
            eval(
                "StringLike",
                "ses:Recipients",
                &["*@example.com"],
                &context,
                effect,
            )
        };
        assert!(
            !like(Effect::Allow),
            "an Allow needs every recipient to match"
        );
        assert!(
            like(Effect::Deny),
            "a Deny applies when any recipient matches"
        );
        let one = ctx(&[("ses:Recipients", &["a@example.com"], true)]);
        assert!(eval(
            "StringLike",
            "ses:Recipients",
            &["*@example.com"],
            &one,
            Effect::Allow
        ));
    }

    #[test]
    fn unreadable_request_values_fail_closed() {
        let context = ctx(&[("ses:FromAddress", &["a@b.c"], false)]);
        for op in ["NumericNotEquals", "NumericLessThan"] {
            assert!(
                !eval(op, "ses:FromAddress", &["5"], &context, Effect::Allow),
                "{op}"
            );
            assert!(
                eval(op, "ses:FromAddress", &["5"], &context, Effect::Deny),
                "{op}"
            );
        }
        assert!(!eval(
            "NotIpAddress",
            "ses:FromAddress",
            &["10.0.0.0/8"],
            &context,
            Effect::Allow
        ));
    }

    #[test]
    fn variables_in_string_and_bool_values() {
        let context = ctx(&[
            ("aws:username", &["bob"], false),
            ("ses:FromAddress", &["bob@example.com"], false),
            ("test:Flag", &["true"], false),
            ("aws:SecureTransport", &["true"], false),
        ]);
        run_table(
            &context,
            &[
                (
                    "StringEquals",
                    "ses:FromAddress",
                    &["${aws:username}@example.com"],
                    true,
                ),
                (
                    "StringLike",
                    "ses:FromAddress",
                    &["${aws:username}@*"],
                    true,
                ),
                (
                    "StringEquals",
                    "ses:FromAddress",
                    &["${aws:userid}@example.com"],
                    false,
                ),
                (
                    "StringNotEquals",
                    "ses:FromAddress",
                    &["${aws:userid}@example.com"],
                    true,
                ),
                (
                    "StringEquals",
                    "ses:FromAddress",
                    &["${aws:userid, 'bob'}@example.com"],
                    true,
                ),
                ("Bool", "aws:SecureTransport", &["${test:Flag}"], true),
            ],
        );
    }

    #[test]
    fn key_names_are_case_insensitive() {
        let context = ctx(&[("aws:SourceIp", &["203.0.113.7"], false)]);
        assert!(eval(
            "IpAddress",
            "AWS:SOURCEIP",
            &["203.0.113.0/24"],
            &context,
            Effect::Allow
        ));
    }

    #[test]
    fn ipv4_never_matches_ipv6_ranges() {
        let v6 = ctx(&[("aws:SourceIp", &["2001:db8::1"], false)]);
        assert!(!eval(
            "IpAddress",
            "aws:SourceIp",
            &["0.0.0.0/0"],
            &v6,
            Effect::Allow
        ));
        assert!(eval(
            "IpAddress",
            "aws:SourceIp",
            &["2001:db8::/32"],
            &v6,
            Effect::Allow
        ));
        assert!(eval(
            "IpAddress",
            "aws:SourceIp",
            &["2001:DB8::1"],
            &v6,
            Effect::Allow
        ));
        let mapped = ctx(&[("aws:SourceIp", &["::ffff:203.0.113.7"], false)]);
        assert!(eval(
            "IpAddress",
            "aws:SourceIp",
            &["203.0.113.0/24"],
            &mapped,
            Effect::Allow
        ));
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, &str, &[&str], &str)] = &[
            (
                "StringLikee",
                "ses:FromAddress",
                &["x"],
                "unknown condition operator \"StringLikee\"",
            ),
            (
                "NullIfExists",
                "ses:FromAddress",
                &["true"],
                "Null operator cannot take the IfExists",
            ),
            (
                "DateLessThan",
                "aws:CurrentTime",
                &["tomorrow"],
                "\"tomorrow\" is not a valid date",
            ),
            (
                "IpAddress",
                "aws:SourceIp",
                &["10.0.0.0/33"],
                "not a valid IP address or CIDR range",
            ),
            (
                "NumericLessThan",
                "test:N",
                &["ten"],
                "\"ten\" is not a valid number",
            ),
            (
                "Bool",
                "aws:SecureTransport",
                &["yes"],
                "not a valid boolean",
            ),
            (
                "Bool",
                "aws:SecureTransport",
                &["true", "false"],
                "Bool takes a single value",
            ),
            (
                "BinaryEquals",
                "test:B",
                &["***"],
                "not a valid base64 value",
            ),
            (
                "DateLessThan",
                "aws:CurrentTime",
                &["${aws:username}"],
                "policy variables cannot be used with the DateLessThan",
            ),
            (
                "NumericEquals",
                "test:N",
                &["${x:y}"],
                "policy variables cannot be used with the NumericEquals",
            ),
            (
                "IpAddress",
                "aws:SourceIp",
                &["${x:y}"],
                "policy variables cannot be used with the IpAddress",
            ),
            (
                "Null",
                "aws:SourceIp",
                &["${x:y}"],
                "policy variables cannot be used with the Null",
            ),
            (
                "StringEquals",
                "FromAddress",
                &["x"],
                "not of the form prefix:name",
            ),
            ("StringEquals", "ses:FromAddress", &[], "at least one value"),
        ];
        for (operator, key, values, want) in cases {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            let err = Condition::compile(operator, key, &values, true).unwrap_err();
            let err = err.reason();
            assert!(err.contains(want), "{operator}: {err:?} lacks {want:?}");
        }
    }
}
