//! ARN patterns: `Resource`/`NotResource` elements and the `Arn*` condition operators.
//!
//! An ARN has six colon-separated components (`arn:partition:service:region:account:resource`);
//! the resource component may itself contain colons. Patterns are matched component by
//! component, so a `*` in the region cannot swallow the account. Two documented rules differ:
//! - `Arn*` operators: strictly per component (IAM-UG's `ArnLike` vs `StringLike` example).
//! - `Resource`: a `*` that ends a component may also match across colons (AWS's current text,
//!   SPEC §5). This only widens patterns such as `arn:aws:ses:*:123456789012:identity/*`.
//!
//! A pattern with fewer than six components matches the rest of the ARN with its last
//! component, so `*` alone matches every resource.

use super::pattern::{Pattern, PatternError, Resolve, Syntax};

/// Number of components in an ARN.
const COMPONENTS: usize = 6;

/// A compiled ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnPattern {
    components: Vec<Pattern>,
    /// The whole pattern when it has no wildcard and no variable: then matching is equality.
    literal: Option<Box<str>>,
    /// The whole pattern as one wildcard pattern, when that means the same as matching component
    /// by component: a Resource pattern whose every `*` ends a component (so may span colons)
    /// and whose `?` all sit in the resource part (where colons are ordinary characters).
    flat: Option<Pattern>,
    has_variables: bool,
    /// Whether a component ending in `*` may match across colons.
    trailing_star_spans: bool,
}

impl ArnPattern {
    /// A `Resource`/`NotResource` pattern.
    pub fn resource(text: &str, variables: bool) -> Result<Self, PatternError> {
        Self::compile(text, variables, true)
    }

    /// A pattern for `ArnEquals`/`ArnLike` and their negations.
    pub fn condition(text: &str, variables: bool) -> Result<Self, PatternError> {
        Self::compile(text, variables, false)
    }

    fn compile(
        text: &str,
        variables: bool,
        trailing_star_spans: bool,
    ) -> Result<Self, PatternError> {
        let syntax = Syntax {
            wildcards: true,
            variables,
        };
        let components: Vec<Pattern> = text
            .splitn(COMPONENTS, ':')
            .map(|c| Pattern::compile(c, syntax))
            .collect::<Result<_, _>>()?;
        // Joined from the compiled components, so `${*}` and friends are already literal.
        let literal = components
            .iter()
            .map(Pattern::as_literal)
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join(":").into());
        let flat = if trailing_star_spans && literal.is_none() && flat_equivalent(text) {
            Some(Pattern::compile(text, syntax)?)
        } else {
            None
        };
        Ok(ArnPattern {
            flat,
            has_variables: components.iter().any(Pattern::has_variables),
            components,
            literal,
            trailing_star_spans,
        })
    }

    /// The whole pattern, when it has no wildcard and no variable.
    pub fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    /// True when the pattern is exactly `*`.
    pub fn is_match_all(&self) -> bool {
        self.components.len() == 1 && self.components[0].is_match_all()
    }

    /// The compiled components.
    pub fn components(&self) -> &[Pattern] {
        &self.components
    }

    /// Matches a whole ARN (case-sensitive).
    pub fn matches(&self, arn: &str, vars: &dyn Resolve) -> bool {
        if let Some(literal) = &self.literal {
            return **literal == *arn;
        }
        if let Some(flat) = &self.flat {
            return flat.matches(arn, false, vars);
        }
        let resolved = !self.has_variables || self.components.iter().all(|c| c.resolves(vars));
        resolved && self.match_from(0, arn, vars)
    }

    fn match_from(&self, index: usize, rest: &str, vars: &dyn Resolve) -> bool {
        let component = &self.components[index];
        if index + 1 == self.components.len() {
            return component.matches(rest, false, vars);
        }
        let Some(colon) = rest.bytes().position(|b| b == b':') else {
            return false;
        };
        if !component.matches(&rest[..colon], false, vars) {
            return false;
        }
        if self.match_from(index + 1, &rest[colon + 1..], vars) {
            return true;
        }
        // The component matched up to the first colon; when it ends in `*` that star may go on
        // across further colons, so the next component may start after any later colon.
        if !(self.trailing_star_spans && component.ends_with_star()) {
            return false;
        }
        rest.match_indices(':')
            .skip(1)
            .any(|(at, _)| self.match_from(index + 1, &rest[at + 1..], vars))
    }
}

/// True when every `*` of the pattern text ends a component or sits in the resource part, and
/// every `?` sits in the resource part. Variables keep the component-wise path.
fn flat_equivalent(text: &str) -> bool {
    if text.contains("${") {
        return false;
    }
    let components: Vec<&str> = text.splitn(COMPONENTS, ':').collect();
    let leading = &components[..components.len() - 1];
    leading
        .iter()
        .all(|c| !c.contains('?') && !c.trim_end_matches('*').contains('*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::pattern::tests::{NoVars, Vars};

    #[test]
    fn flat_and_component_matching_agree() {
        let patterns = [
            "*",
            "arn:aws:ses:*:123456789012:identity/*",
            "arn:aws:ses:*:*:*",
            "arn:*",
            "arn:aws:ses:us-east-1:*:identity/x?y",
            "arn:aws:someservice:*:111122223333:finance/*",
        ];
        let values = [
            "arn:aws:ses:us-east-1:123456789012:identity/example.com",
            "arn:aws:ses:us-east-1:999:identity/x:y",
            "arn:aws:ses:us-east-1:1:identity/xzy",
            "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt",
            "arn:aws:ses",
            "",
        ];
        for pattern in patterns {
            let flat = ArnPattern::resource(pattern, true).unwrap();
            assert!(
                flat.flat.is_some() || flat.literal.is_some(),
                "{pattern} takes the flat path"
            );
            let mut by_component = flat.clone();
            by_component.flat = None;
            for value in values {
                assert_eq!(
                    flat.matches(value, &NoVars),
                    by_component.match_from(0, value, &NoVars),
                    "{pattern} vs {value}"
                );
            }
        }
        let mid_star = ArnPattern::resource("arn:aws:ses:us*1:1:identity/x", true).unwrap();
        assert!(mid_star.flat.is_none());
    }

    #[test]
    fn resource_table() {
        let cases: &[(&str, &str, bool)] = &[
            (
                "*",
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
                true,
            ),
            (
                "arn:aws:ses:*:123456789012:identity/*",
                "arn:aws:ses:us-east-1:123456789012:identity/a@b.com",
                true,
            ),
            (
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
                true,
            ),
            (
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
                "arn:aws:ses:us-east-1:123456789012:identity/Example.com",
                false,
            ),
            (
                "arn:aws:ses:us-east-1:123456789012:identity/*@example.com",
                "arn:aws:ses:us-east-1:123456789012:identity/x@example.com",
                true,
            ),
            (
                "arn:aws:ses:us-east-1:123456789012:identity/*@example.com",
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
                false,
            ),
            (
                "arn:aws:ses:us-east-?:*:identity/*",
                "arn:aws:ses:us-east-1:123456789012:identity/x",
                true,
            ),
            (
                "arn:aws:ses:us-east-1:*",
                "arn:aws:ses:us-east-1:123456789012:identity/x",
                true,
            ),
            (
                "arn:aws:ses:*:123456789012:configuration-set/*",
                "arn:aws:ses:us-east-1:123456789012:identity/x",
                false,
            ),
            // A mid-component `*` never crosses a colon.
            (
                "arn:aws:ses:us*1:123456789012:identity/*",
                "arn:aws:ses:us:x:1:123456789012:identity/x",
                false,
            ),
            // A trailing `*` may (AWS's current text).
            (
                "arn:aws:someservice:*:111122223333:finance/*",
                "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt",
                true,
            ),
            (
                "arn:aws:ses:us-east-1:123456789012:identity/x",
                "arn:aws:ses:us-east-1:123456789012:identity/x:extra",
                false,
            ),
            (
                "arn:aws:ses:us-east-1:123456789012:identity/x",
                "not-an-arn",
                false,
            ),
        ];
        for (pattern, arn, want) in cases {
            let p = ArnPattern::resource(pattern, true).unwrap();
            assert_eq!(p.matches(arn, &NoVars), *want, "{pattern} vs {arn}");
        }
    }

    #[test]
    fn literal_patterns_resolve_special_variables() {
        let p = ArnPattern::resource("arn:aws:ses:us-east-1:1:identity/a${$}b", true).unwrap();
        assert!(p.matches("arn:aws:ses:us-east-1:1:identity/a$b", &NoVars));
        assert!(!p.matches("arn:aws:ses:us-east-1:1:identity/a${$}b", &NoVars));
    }

    #[test]
    fn arn_like_is_strictly_per_component() {
        // IAM-UG condition operators, ARN section: StringLike matches this, ArnLike does not.
        let p =
            ArnPattern::condition("arn:aws:someservice:*:111122223333:finance/*", true).unwrap();
        let value = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt";
        assert!(!p.matches(value, &NoVars));
        assert!(p.matches(
            "arn:aws:someservice:us-east-2:111122223333:finance/x:y",
            &NoVars
        ));
    }

    #[test]
    fn variables_in_the_resource_part() {
        let p = ArnPattern::resource(
            "arn:aws:ses:us-east-1:123456789012:identity/${aws:username}@example.com",
            true,
        )
        .unwrap();
        let vars = Vars(&[("aws:username", "bob")]);
        assert!(p.matches(
            "arn:aws:ses:us-east-1:123456789012:identity/bob@example.com",
            &vars
        ));
        assert!(!p.matches(
            "arn:aws:ses:us-east-1:123456789012:identity/eve@example.com",
            &vars
        ));
        assert!(!p.matches(
            "arn:aws:ses:us-east-1:123456789012:identity/bob@example.com",
            &NoVars
        ));
    }
}
