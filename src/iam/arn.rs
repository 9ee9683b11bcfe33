//! ARN patterns: `Resource`/`NotResource` elements and the `Arn*` condition operators.
//!
//! An ARN has six colon-separated components (`arn:partition:service:region:account:resource`);
//! the resource component may itself contain colons. Patterns are matched component by
//! component, so a `*` in the region cannot swallow the account. Two documented rules differ:
//! - `Arn*` operators: strictly per component (IAM-UG's `ArnLike` vs `StringLike` example).
//! - `Resource`: a `*` that ends a component may also match across colons (AWS's current text,
//!   SPEC §5). This only widens patterns such as `arn:aws:ses:*:123456789012:identity/*`.
//!
//! Components are found after policy variables are substituted (a variable's value is literal
//! text, and may hold colons, as `${aws:PrincipalArn}` does), so a variable may sit anywhere in
//! an `Arn*` value. A `Resource` must be `*` or a six-component ARN with a literal service and
//! variables only in the resource part (checked at load, as IAM checks it).
//!
//! Every match is linear in the ARN for a pattern of bounded size: the value is split once, each
//! component is matched by the single-backtrack glob, and the colon-spanning Resource rule runs
//! as one pass of a small automaton.

use super::pattern::{Pattern, PatternError, Resolve, Syntax, Token, steps};

/// Number of components in an ARN.
const COMPONENTS: usize = 6;

/// A compiled ARN pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnPattern {
    /// The pattern as written in the policy.
    text: Box<str>,
    /// The whole pattern, variables unresolved.
    whole: Pattern,
    /// The components, when the pattern has no variable (else they are found per request).
    components: Option<Vec<Pattern>>,
    /// The whole pattern when it has no wildcard and no variable: then matching is equality.
    literal: Option<Box<str>>,
    /// The whole pattern as one wildcard pattern, when that means the same as matching component
    /// by component: a Resource pattern whose every `*` ends a component (so may span colons)
    /// and whose `?` all sit in the resource part (where colons are ordinary characters).
    flat: Option<Pattern>,
    /// Whether a component ending in `*` may match across colons (Resource, not `Arn*`).
    trailing_star_spans: bool,
}

impl ArnPattern {
    /// A `Resource`/`NotResource` pattern: `*`, or `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`
    /// with a literal, non-empty service, non-empty partition and resource, wildcards anywhere
    /// else, and variables only in the resource part.
    pub fn resource(text: &str, variables: bool) -> Result<Self, PatternError> {
        let pattern = Self::compile(text, variables, true)?;
        if pattern.is_match_all() {
            return Ok(pattern);
        }
        let refuse = |why: &str| {
            Err(PatternError(format!(
                "{text:?} is not an ARN or \"*\": {why} (a Resource is arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE, for example arn:aws:ses:us-east-1:123456789012:identity/example.com)"
            )))
        };
        let components = split_components(pattern.whole.tokens());
        if components.first().map(Pattern::as_literal) != Some(Some("arn")) {
            return refuse("it does not start with arn:");
        }
        if components.len() < COMPONENTS {
            return refuse(&format!(
                "it has {} of the six colon-separated components (IAM would fill the missing ones with *; write them out)",
                components.len()
            ));
        }
        if components[1].tokens().is_empty() {
            return refuse("the partition is empty");
        }
        if components[2].as_literal().is_none_or(str::is_empty) {
            return refuse("the service must be written out, without wildcard or variable");
        }
        if components[5].tokens().is_empty() {
            return refuse("the resource part is empty");
        }
        if components[..COMPONENTS - 1]
            .iter()
            .any(Pattern::has_variables)
        {
            return refuse(
                "a policy variable in a Resource may appear only in the resource part, after the fifth colon",
            );
        }
        Ok(pattern)
    }

    /// A pattern for `ArnEquals`/`ArnLike` and their negations. A value with fewer than six
    /// components loads (AWS does not refuse it) but is never compared: see [`Self::compare`].
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
        let whole = Pattern::compile(text, syntax)?;
        let has_variables = whole.has_variables();
        let components = (!has_variables).then(|| split_components(whole.tokens()));
        let literal = whole.as_literal().map(Into::into);
        let flat = match &components {
            Some(components) if trailing_star_spans && literal.is_none() => {
                flat_equivalent(components).then(|| whole.clone())
            }
            _ => None,
        };
        Ok(ArnPattern {
            text: text.into(),
            whole,
            components,
            literal,
            flat,
            trailing_star_spans,
        })
    }

    /// The whole pattern, when it has no wildcard and no variable.
    pub fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    /// The pattern as written in the policy.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when the pattern is exactly `*`.
    pub fn is_match_all(&self) -> bool {
        self.whole.is_match_all()
    }

    /// The whole compiled pattern (its variables, for the keys a condition reads).
    pub fn pattern(&self) -> &Pattern {
        &self.whole
    }

    /// Number of components when the pattern has no variable (the linter's short-ARN warning).
    pub fn static_component_count(&self) -> Option<usize> {
        self.components.as_ref().map(Vec::len)
    }

    /// Matches a whole resource ARN (case-sensitive). Unresolvable variables match nothing.
    pub fn matches(&self, arn: &str, vars: &dyn Resolve) -> bool {
        if let Some(literal) = &self.literal {
            return **literal == *arn;
        }
        if let Some(flat) = &self.flat {
            return flat.matches(arn, false, vars);
        }
        if self.is_match_all() {
            return true;
        }
        if let Some(components) = &self.components {
            return run_atoms(&resource_atoms(components), arn);
        }
        // Variables (only in the resource part, checked at load): substitute, then match as
        // the same pattern without variables would.
        let Some(resolved) = self.whole.resolved(vars) else {
            return false;
        };
        let components = split_components(resolved.tokens());
        if flat_equivalent(&components) {
            resolved.matches(arn, false, &NoVariables)
        } else {
            run_atoms(&resource_atoms(&components), arn)
        }
    }

    /// Compares a request value under `Arn*` (positive form). `None` when the comparison has no
    /// defined meaning: the policy value (after substitution) or the request value has fewer
    /// than six components. The caller then fails closed (an Allow does not apply, a Deny
    /// does). An unresolvable variable is `Some(false)`, as for every other operator.
    pub fn compare(&self, value: &str, vars: &dyn Resolve) -> Option<bool> {
        let resolved = self.resolved_components(vars);
        let components: &[Pattern] = match &resolved {
            Some(Components::Ready(components)) => components,
            Some(Components::Resolved(components)) => components,
            None => return Some(false),
        };
        if components.len() < COMPONENTS {
            return None;
        }
        let parts: Vec<&str> = value.splitn(COMPONENTS, ':').collect();
        if parts.len() < COMPONENTS {
            return None;
        }
        Some(
            components
                .iter()
                .zip(parts)
                .all(|(pattern, part)| pattern.matches(part, false, vars)),
        )
    }

    fn resolved_components(&self, vars: &dyn Resolve) -> Option<Components<'_>> {
        match &self.components {
            Some(components) => Some(Components::Ready(components)),
            None => Some(Components::Resolved(split_components(
                self.whole.resolved(vars)?.tokens(),
            ))),
        }
    }
}

/// Components either compiled once or found for this request.
enum Components<'a> {
    Ready(&'a [Pattern]),
    Resolved(Vec<Pattern>),
}

/// Resolved patterns hold no variables.
struct NoVariables;
impl Resolve for NoVariables {
    fn resolve(&self, _: &super::context::Key) -> Option<&str> {
        None
    }
}

/// Splits tokens into at most six components at the colons of their literal text; the sixth
/// keeps any further colons. Variables must have been resolved (or are kept whole: a colon in a
/// variable's name is not a separator).
fn split_components(tokens: &[Token]) -> Vec<Pattern> {
    let mut components = Vec::with_capacity(COMPONENTS);
    let mut current: Vec<Token> = Vec::new();
    for token in tokens {
        let Token::Lit(text) = token else {
            current.push(token.clone());
            continue;
        };
        let mut rest: &str = text;
        while components.len() + 1 < COMPONENTS
            && let Some((before, after)) = rest.split_once(':')
        {
            current.push(Token::Lit(before.into()));
            components.push(Pattern::from_tokens(std::mem::take(&mut current)));
            rest = after;
        }
        current.push(Token::Lit(rest.into()));
    }
    components.push(Pattern::from_tokens(current));
    components
}

/// True when every `*` of the leading components ends its component and no `?` sits there:
/// then the whole pattern as one glob means the same as the component-wise rule.
fn flat_equivalent(components: &[Pattern]) -> bool {
    let leading = &components[..components.len().saturating_sub(1)];
    components.len() == COMPONENTS
        && leading.iter().all(|c| {
            let tokens = c.tokens();
            let body = tokens.strip_suffix(&[Token::Star]).unwrap_or(tokens);
            !body
                .iter()
                .any(|t| matches!(t, Token::Star | Token::AnyChar))
        })
}

/// One step of the Resource automaton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atom {
    Char(char),
    /// `?`: one character; `colon` says whether that may be a colon.
    One {
        colon: bool,
    },
    /// `*`: any run of characters; `colon` says whether it may hold colons.
    Many {
        colon: bool,
    },
}

/// The atoms of a component-wise Resource pattern: in the leading components `?` and a
/// mid-component `*` never match a colon, a component-ending `*` may; in the resource part
/// colons are ordinary characters.
fn resource_atoms(components: &[Pattern]) -> Vec<Atom> {
    let mut atoms = Vec::new();
    let last = components.len() - 1;
    for (index, component) in components.iter().enumerate() {
        let tokens = component.tokens();
        for (at, token) in tokens.iter().enumerate() {
            let resource_part = index == last;
            match token {
                Token::Lit(text) => atoms.extend(text.chars().map(Atom::Char)),
                Token::Var(_) => unreachable!("variables are resolved before matching"),
                Token::AnyChar => atoms.push(Atom::One {
                    colon: resource_part,
                }),
                Token::Star => atoms.push(Atom::Many {
                    colon: resource_part || at + 1 == tokens.len(),
                }),
            }
        }
        if index != last {
            atoms.push(Atom::Char(':'));
        }
    }
    atoms
}

/// Runs the atoms over `text` as a nondeterministic automaton: one pass over the characters,
/// each step touching every atom once, so O(text * atoms) whatever the input.
fn run_atoms(atoms: &[Atom], text: &str) -> bool {
    if atoms.len() < 128 {
        run_atoms_bits(atoms, text)
    } else {
        run_atoms_plain(atoms, text)
    }
}

/// [`run_atoms`] for any number of atoms, one flag per atom.
fn run_atoms_plain(atoms: &[Atom], text: &str) -> bool {
    // active[i]: the first i atoms have matched the text read so far.
    let mut active = vec![false; atoms.len() + 1];
    let mut next = vec![false; atoms.len() + 1];
    active[0] = true;
    close(atoms, &mut active);
    for c in text.chars() {
        steps::count(atoms.len());
        next.iter_mut().for_each(|n| *n = false);
        let mut any = false;
        for (i, atom) in atoms.iter().enumerate() {
            if !active[i] {
                continue;
            }
            let fits = |colon: bool| c != ':' || colon;
            match *atom {
                Atom::Char(want) if want == c => next[i + 1] = true,
                Atom::Char(_) => continue,
                Atom::One { colon } if fits(colon) => next[i + 1] = true,
                Atom::One { .. } => continue,
                Atom::Many { colon } if fits(colon) => next[i] = true,
                Atom::Many { .. } => continue,
            }
            any = true;
        }
        if !any {
            return false;
        }
        std::mem::swap(&mut active, &mut next);
        close(atoms, &mut active);
    }
    active[atoms.len()]
}

/// [`run_atoms`] for up to 127 atoms, one bit per atom (bit i: the first i atoms matched), so
/// each character costs a few word operations (Shift-And).
fn run_atoms_bits(atoms: &[Atom], text: &str) -> bool {
    let mut ascii = [0u128; 128];
    let (mut one_any, mut one_plain, mut many_any, mut many_plain) = (0u128, 0u128, 0u128, 0u128);
    for (i, atom) in atoms.iter().enumerate() {
        let bit = 1u128 << i;
        match *atom {
            Atom::Char(c) if c.is_ascii() => ascii[c as usize] |= bit,
            Atom::Char(_) => {}
            Atom::One { colon: true } => one_any |= bit,
            Atom::One { colon: false } => one_plain |= bit,
            Atom::Many { colon: true } => many_any |= bit,
            Atom::Many { colon: false } => many_plain |= bit,
        }
    }
    let many = many_any | many_plain;
    let close = |mut active: u128| loop {
        let wider = active | ((active & many) << 1);
        if wider == active {
            return active;
        }
        active = wider;
    };
    let mut active = close(1);
    for c in text.chars() {
        steps::count(1);
        let literal = if c.is_ascii() {
            ascii[c as usize]
        } else {
            atoms
                .iter()
                .enumerate()
                .filter(|(_, a)| **a == Atom::Char(c))
                .fold(0, |mask, (i, _)| mask | 1u128 << i)
        };
        let (advance, stay) = if c == ':' {
            (literal | one_any, many_any)
        } else {
            (literal | one_any | one_plain, many)
        };
        active = close(((active & advance) << 1) | (active & stay));
        if active == 0 {
            return false;
        }
    }
    active & (1u128 << atoms.len()) != 0
}

/// A `*` may match nothing: whoever reaches it also reaches the atom after it.
fn close(atoms: &[Atom], active: &mut [bool]) {
    for (i, atom) in atoms.iter().enumerate() {
        if active[i] && matches!(atom, Atom::Many { .. }) {
            active[i + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::pattern::tests::{NoVars, Vars};

    #[test]
    fn flat_and_component_matching_agree() {
        let patterns = [
            "arn:aws:ses:*:123456789012:identity/*",
            "arn:aws:ses:*:*:*",
            "arn:*:ses:*:*:*",
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
            assert!(flat.flat.is_some(), "{pattern} takes the flat path");
            let atoms = resource_atoms(flat.components.as_ref().unwrap());
            for value in values {
                assert_eq!(
                    flat.matches(value, &NoVars),
                    run_atoms(&atoms, value),
                    "{pattern} vs {value}"
                );
                assert_eq!(
                    run_atoms_bits(&atoms, value),
                    run_atoms_plain(&atoms, value),
                    "{pattern} vs {value}"
                );
            }
        }
        let mid_star = ArnPattern::resource("arn:aws:ses:us*1:1:identity/x", true).unwrap();
        assert!(mid_star.flat.is_none());
    }

    #[test]
    fn resources_that_are_not_arns_are_refused() {
        for bad in [
            "identity/example.com",
            "",
            "arn:aws:ses",
            "arn:*",
            "arn:aws:ses:us-east-1:*",
            "arn:aws:*:us-east-1:123456789012:identity/x",
            "arn:aws:s?s:us-east-1:123456789012:identity/x",
            "arn:aws::us-east-1:123456789012:identity/x",
            "arn::ses:us-east-1:123456789012:identity/x",
            "arn:aws:ses:us-east-1:123456789012:",
            "Arn:aws:ses:us-east-1:123456789012:identity/x",
            "aws:ses:us-east-1:123456789012:identity/x:y",
            "arn:aws:ses:us-east-1:${aws:PrincipalAccount}:identity/x",
            "arn:aws:${x:y}:us-east-1:1:identity/x",
        ] {
            let err = ArnPattern::resource(bad, true).unwrap_err();
            assert!(err.0.contains("is not an ARN"), "{bad:?}: {err:?}");
        }
        for good in [
            "*",
            "arn:aws:ses:*:*:*",
            "arn:*:ses:*:*:identity/*",
            "arn:aws:ses:us-east-?:123456789012:identity/*",
            "arn:aws:ses:*:*:identity/*",
            "arn:aws:s3:::bucket/key",
            "arn:aws:ses:us-east-1:123456789012:identity/${aws:username}@example.com",
            "arn:aws:ses:us-east-1:123456789012:identity/a:b",
        ] {
            assert!(ArnPattern::resource(good, true).is_ok(), "{good:?}");
        }
        // Under 2008-10-17 `${...}` is literal text, so it may appear anywhere.
        assert!(ArnPattern::resource("arn:aws:ses:${x}:1:identity/x", false).is_ok());
    }

    #[test]
    fn arn_condition_values_with_variables_anywhere() {
        let p = ArnPattern::condition("arn:aws:iam::${aws:PrincipalAccount}:user/*", true).unwrap();
        let vars = Vars(&[("aws:principalaccount", "123456789012")]);
        assert_eq!(
            p.compare("arn:aws:iam::123456789012:user/apps/billing", &vars),
            Some(true)
        );
        assert_eq!(
            p.compare("arn:aws:iam::999999999999:user/apps/billing", &vars),
            Some(false)
        );
        assert_eq!(
            p.compare("arn:aws:iam::123456789012:user/x", &NoVars),
            Some(false)
        );
        // A variable holding a whole ARN is split after substitution, component by component.
        let whole = ArnPattern::condition("${aws:PrincipalArn}", true).unwrap();
        let arn = Vars(&[("aws:principalarn", "arn:aws:iam::1:user/a*")]);
        assert_eq!(whole.compare("arn:aws:iam::1:user/a*", &arn), Some(true));
        assert_eq!(
            whole.compare("arn:aws:iam::1:user/ab", &arn),
            Some(false),
            "literal *"
        );
        // Substitution comes first (SPEC §5): a colon in a value separates components.
        let vars = Vars(&[("aws:principalaccount", "1:user")]);
        assert_eq!(p.compare("arn:aws:iam::1:user:user/x", &vars), Some(true));
    }

    #[test]
    fn short_condition_values_are_not_compared() {
        for short in ["arn:aws:*", "arn:aws:iam::*", "*", "arn:aws:iam::1"] {
            let p = ArnPattern::condition(short, true).unwrap();
            assert_eq!(p.compare("arn:aws:iam::1:user/x", &NoVars), None, "{short}");
        }
        let p = ArnPattern::condition("arn:aws:iam::*:user/*", true).unwrap();
        assert_eq!(p.compare("not-an-arn", &NoVars), None);
        assert_eq!(p.compare("arn:aws:iam::1:user/x:y", &NoVars), Some(true));
    }

    #[test]
    fn hostile_values_cost_linear_work() {
        use crate::iam::pattern::steps;
        let mib = 1 << 20;
        let colons = ":".repeat(mib);
        let mut mixed = String::with_capacity(mib + 64);
        while mixed.len() < mib {
            mixed.push_str("arn:aws:ses:a:b:identity/");
        }
        let inputs = [
            colons.clone(),
            format!("arn:aws:ses:us-east-1:1:{colons}"),
            format!("arn{colons}x"),
            mixed,
            "a".repeat(mib),
            format!("arn:aws:ses:{}", "a:".repeat(mib / 2)),
        ];
        let resources = [
            "arn:aws:ses:*:*:identity/*",
            "arn:aws:ses:us*1:*:identity/*x",
            "arn:aws:ses:us-east-?:*:*:*:*:identity/*",
            "arn:*:ses:*?:*:*a*b*c*",
            "arn:aws:ses:*:*:identity/${aws:username}*",
            // Two spanning stars, one not flat: quadratic and worse with the old recursion.
            "arn:aws:ses:*:?*:identity/*",
        ];
        let conditions = [
            "arn:aws:ses:*:*:identity/*",
            "arn:*:*:*a*:*?*:*a*b*c*",
            "arn:aws:iam::${aws:PrincipalAccount}:user/*?*?*",
        ];
        let vars = Vars(&[("aws:username", "x"), ("aws:principalaccount", "1")]);
        for input in &inputs {
            let limit = 64 * input.len() as u64;
            for text in resources {
                let p = ArnPattern::resource(text, true).unwrap();
                steps::take();
                let _ = p.matches(input, &vars);
                let work = steps::take();
                assert!(
                    work <= limit,
                    "{text}: {work} steps for {} bytes",
                    input.len()
                );
            }
            for text in conditions {
                let p = ArnPattern::condition(text, true).unwrap();
                steps::take();
                let _ = p.compare(input, &vars);
                let work = steps::take();
                assert!(
                    work <= limit,
                    "{text}: {work} steps for {} bytes",
                    input.len()
                );
            }
        }
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
                "arn:aws:ses:us-east-1:*:*",
                "arn:aws:ses:us-east-1:123456789012:identity/x",
                true,
            ),
            (
                "arn:aws:ses:us-east-?:*:identity/*",
                "arn:aws:ses:us-east:1:identity/x",
                false,
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
        assert_eq!(p.compare(value, &NoVars), Some(false));
        assert_eq!(
            p.compare(
                "arn:aws:someservice:us-east-2:111122223333:finance/x:y",
                &NoVars
            ),
            Some(true)
        );
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

    proptest::proptest! {
        #[test]
        fn both_automata_agree(pattern in "[a:*?]{0,10}", text in "[a:b]{0,12}") {
            let atoms: Vec<Atom> = pattern.chars().enumerate().map(|(i, c)| match c {
                '*' => Atom::Many { colon: i % 2 == 0 },
                '?' => Atom::One { colon: i % 2 == 0 },
                c => Atom::Char(c),
            }).collect();
            proptest::prop_assert_eq!(run_atoms_bits(&atoms, &text), run_atoms_plain(&atoms, &text));
        }
    }
}
