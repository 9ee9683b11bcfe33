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
        let components = text
            .splitn(COMPONENTS, ':')
            .map(|c| Pattern::compile(c, syntax))
            .collect::<Result<_, _>>()?;
        Ok(ArnPattern {
            components,
            trailing_star_spans,
        })
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
        self.components.iter().all(|c| c.resolves(vars)) && self.match_from(0, arn, vars)
    }

    fn match_from(&self, index: usize, rest: &str, vars: &dyn Resolve) -> bool {
        let component = &self.components[index];
        if index + 1 == self.components.len() {
            return component.matches(rest, false, vars);
        }
        let Some(colon) = rest.find(':') else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::pattern::tests::{NoVars, Vars};

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
