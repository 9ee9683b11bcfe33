//! Compiled string patterns: literal text, IAM wildcards (`*`, `?`) and policy variables.
//!
//! A policy value is compiled once into a [`Pattern`]: a list of [`Token`]s. Policy variables stay
//! tokens and are resolved against the request while matching, so matching never allocates and a
//! variable's value is always literal text (a `*` inside `${aws:username}` is not a wildcard, as
//! `${*}` itself produces a literal `*`). This is why no glob crate is used: none can express a
//! literal `*` next to a wildcard one.

use super::context::Key;

/// Where the value of a policy variable comes from: the request context.
pub trait Resolve {
    /// The single value of `key`, or `None` when the key is absent or multi-valued.
    fn resolve(&self, key: &Key) -> Option<&str>;
}

/// One piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Literal text, matched exactly (or ignoring case).
    Lit(Box<str>),
    /// `*`: any run of characters, including none.
    Star,
    /// `?`: exactly one character.
    AnyChar,
    /// `${key}` or `${key, 'default'}`: the context value of `key`, as literal text.
    Var(Variable),
}

/// A policy variable reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Context key (key names are case-insensitive).
    pub key: Key,
    /// The value used when the key has no single value in the request.
    pub default: Option<Box<str>>,
}

/// A compiled pattern. Whether `*` and `?` are wildcards was decided at compile time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern {
    tokens: Vec<Token>,
    shape: Shape,
}

/// The forms almost every policy value takes, recognised at compile time so that matching them
/// is one comparison instead of a token walk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Shape {
    /// `text`
    Exact(Box<str>),
    /// `text*`
    Prefix(Box<str>),
    /// `*text`
    Suffix(Box<str>),
    /// `*text*`
    Contains(Box<str>),
    /// `*`
    Anything,
    /// Anything else, including every pattern with a variable.
    #[default]
    General,
}

impl Shape {
    fn of(tokens: &[Token]) -> Shape {
        let lit = |t: &Token| match t {
            Token::Lit(s) => Some(s.clone()),
            _ => None,
        };
        match tokens {
            [] => Shape::Exact("".into()),
            [Token::Star] => Shape::Anything,
            [only] => lit(only).map_or(Shape::General, Shape::Exact),
            [Token::Star, last] => lit(last).map_or(Shape::General, Shape::Suffix),
            [first, Token::Star] => lit(first).map_or(Shape::General, Shape::Prefix),
            [Token::Star, middle, Token::Star] => {
                lit(middle).map_or(Shape::General, Shape::Contains)
            }
            _ => Shape::General,
        }
    }
}

/// Why a pattern text could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

/// How the text of a policy value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    /// `*` and `?` are wildcards (StringLike, ArnLike, Action, Resource) or literal (StringEquals).
    pub wildcards: bool,
    /// `${...}` is a policy variable (Version 2012-10-17) or literal text (2008-10-17 or none).
    pub variables: bool,
}

impl Pattern {
    /// Compiles `text`. Under `variables`, an unterminated `${` or a malformed variable is an
    /// error rather than literal text: a typo must not silently become a string nobody sends.
    pub fn compile(text: &str, syntax: Syntax) -> Result<Self, PatternError> {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if syntax.variables && rest.starts_with("${") {
                let end = rest.find('}').ok_or_else(|| {
                    PatternError(format!("unterminated policy variable in {text:?}"))
                })?;
                let inner = &rest[2..end];
                match inner {
                    "*" => literal.push('*'),
                    "?" => literal.push('?'),
                    "$" => literal.push('$'),
                    _ => {
                        flush(&mut tokens, &mut literal);
                        tokens.push(Token::Var(parse_variable(inner, text)?));
                    }
                }
                rest = &rest[end + 1..];
                continue;
            }
            match c {
                '*' if syntax.wildcards => {
                    flush(&mut tokens, &mut literal);
                    // `**` matches what `*` matches; one token keeps backtracking linear.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' if syntax.wildcards => {
                    flush(&mut tokens, &mut literal);
                    tokens.push(Token::AnyChar);
                }
                _ => literal.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        flush(&mut tokens, &mut literal);
        let shape = Shape::of(&tokens);
        Ok(Pattern { tokens, shape })
    }

    /// A pattern from tokens (adjacent literals are merged, `**` collapsed).
    pub(crate) fn from_tokens(tokens: impl IntoIterator<Item = Token>) -> Pattern {
        let mut merged: Vec<Token> = Vec::new();
        for token in tokens {
            match (merged.last_mut(), token) {
                (_, Token::Lit(text)) if text.is_empty() => {}
                (Some(Token::Lit(previous)), Token::Lit(text)) => {
                    *previous = format!("{previous}{text}").into_boxed_str();
                }
                (Some(Token::Star), Token::Star) => {}
                (_, token) => merged.push(token),
            }
        }
        let shape = Shape::of(&merged);
        Pattern {
            tokens: merged,
            shape,
        }
    }

    /// The pattern with every variable replaced by its value as literal text; `None` when a
    /// variable has no value (AWS: such a value matches nothing).
    pub(crate) fn resolved(&self, vars: &dyn Resolve) -> Option<Pattern> {
        if !self.resolves(vars) {
            return None;
        }
        Some(Pattern::from_tokens(self.tokens.iter().map(|t| match t {
            Token::Var(_) => Token::Lit(literal_text(t, vars).into()),
            other => other.clone(),
        })))
    }

    /// The tokens, for inspection by the linter and tests.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// True when the pattern holds a policy variable.
    pub fn has_variables(&self) -> bool {
        self.tokens.iter().any(|t| matches!(t, Token::Var(_)))
    }

    /// True when the pattern holds a wildcard.
    pub fn has_wildcards(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::Star | Token::AnyChar))
    }

    /// True when the pattern is exactly `*`.
    pub fn is_match_all(&self) -> bool {
        self.tokens == [Token::Star]
    }

    /// The keys of the variables the pattern references.
    pub fn variable_keys(&self) -> impl Iterator<Item = &Key> {
        self.tokens.iter().filter_map(|t| match t {
            Token::Var(v) => Some(&v.key),
            _ => None,
        })
    }

    /// True when every variable resolves (from the context or its default). AWS: a value whose
    /// variable has no value matches nothing, so negated operators treat it as "not matched".
    pub fn resolves(&self, vars: &dyn Resolve) -> bool {
        self.tokens.iter().all(|t| match t {
            Token::Var(v) => v.default.is_some() || vars.resolve(&v.key).is_some(),
            _ => true,
        })
    }

    /// Matches `text` against the whole pattern. `fold` compares letters ignoring case.
    /// A pattern with an unresolvable variable matches nothing.
    #[inline]
    pub fn matches(&self, text: &str, fold: bool, vars: &dyn Resolve) -> bool {
        match &self.shape {
            Shape::Anything => true,
            Shape::Exact(lit) if !fold => **lit == *text,
            Shape::Exact(lit) => strip_literal(text, lit, fold) == Some(text.len()),
            Shape::Prefix(lit) if !fold => text.starts_with(&**lit),
            Shape::Suffix(lit) if !fold => text.ends_with(&**lit),
            Shape::Contains(lit) if !fold => find_literal(text, lit).is_some(),
            _ => self.resolves(vars) && glob(&self.tokens, text, fold, vars),
        }
    }

    /// The text of a pattern that is one literal (no wildcard, no variable).
    pub fn as_literal(&self) -> Option<&str> {
        match &self.shape {
            Shape::Exact(lit) => Some(lit),
            _ => None,
        }
    }

    /// True when the pattern ends in `*` (used by the ARN segment rule).
    pub fn ends_with_star(&self) -> bool {
        self.tokens.last() == Some(&Token::Star)
    }
}

fn flush(tokens: &mut Vec<Token>, literal: &mut String) {
    if !literal.is_empty() {
        tokens.push(Token::Lit(std::mem::take(literal).into_boxed_str()));
    }
}

/// Parses the inside of `${...}`: `key` or `key, 'default'`.
fn parse_variable(inner: &str, text: &str) -> Result<Variable, PatternError> {
    let (key, default) = match inner.split_once(',') {
        None => (inner.trim(), None),
        Some((key, default)) => {
            let default = default.trim();
            let quoted = default
                .strip_prefix('\'')
                .and_then(|d| d.strip_suffix('\''))
                .ok_or_else(|| {
                    PatternError(format!(
                        "policy variable default must be in single quotes, as ${{key, 'default'}}, in {text:?}"
                    ))
                })?;
            (key.trim(), Some(quoted.into()))
        }
    };
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-' | '.' | '@'));
    if !valid {
        return Err(PatternError(format!(
            "invalid policy variable ${{{inner}}} in {text:?}"
        )));
    }
    Ok(Variable {
        key: Key::new(key),
        default,
    })
}

/// The text a literal or variable token stands for in this request.
fn literal_text<'a>(token: &'a Token, vars: &'a dyn Resolve) -> &'a str {
    match token {
        Token::Lit(s) => s,
        Token::Var(v) => vars
            .resolve(&v.key)
            .or(v.default.as_deref())
            .expect("Pattern::resolves was checked before glob"),
        Token::Star | Token::AnyChar => unreachable!("wildcards are not literal"),
    }
}

/// Byte offset of the first occurrence of `needle` in `haystack`. `str::find` builds a
/// Two-Way searcher per call, which costs more than the short searches patterns need.
fn find_literal(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    let Some(&first) = needle.first() else {
        return Some(0);
    };
    let bytes = haystack.as_bytes();
    let mut from = 0;
    // `first` is a UTF-8 leading byte, so every hit is on a character boundary.
    while let Some(offset) = bytes[from..].iter().position(|&b| b == first) {
        let at = from + offset;
        if bytes[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Length in bytes of the prefix of `text` that equals `lit`, if it does.
fn strip_literal(text: &str, lit: &str, fold: bool) -> Option<usize> {
    if !fold {
        return text.starts_with(lit).then_some(lit.len());
    }
    // ASCII on both sides: byte-wise folding is exact. Otherwise fold per character, so that
    // letters outside ASCII compare as Unicode lower-casing says.
    let candidate = text.as_bytes().get(..lit.len());
    if let Some(candidate) = candidate
        && lit.is_ascii()
        && candidate.is_ascii()
    {
        return candidate
            .eq_ignore_ascii_case(lit.as_bytes())
            .then_some(lit.len());
    }
    let mut consumed = 0;
    let mut text_chars = text.chars();
    for want in lit.chars() {
        let got = text_chars.next()?;
        if got != want && !got.to_lowercase().eq(want.to_lowercase()) {
            return None;
        }
        consumed += got.len_utf8();
    }
    Some(consumed)
}

/// Iterative wildcard match with single-star backtracking: linear in practice, and never
/// exponential, because only the most recent `*` is ever re-tried (a later `*` can absorb
/// anything an earlier one could).
fn glob(tokens: &[Token], text: &str, fold: bool, vars: &dyn Resolve) -> bool {
    let mut ti = 0;
    let mut pos = 0;
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        steps::count(1);
        if let Some(token) = tokens.get(ti) {
            let advanced = match token {
                // A final `*` matches whatever is left.
                Token::Star if ti + 1 == tokens.len() => return true,
                Token::Star => {
                    backtrack = Some((ti + 1, pos));
                    Some(0)
                }
                Token::AnyChar => text[pos..].chars().next().map(char::len_utf8),
                Token::Lit(_) | Token::Var(_) => {
                    strip_literal(&text[pos..], literal_text(token, vars), fold)
                }
            };
            if let Some(n) = advanced {
                pos += n;
                ti += 1;
                continue;
            }
        } else if pos == text.len() {
            return true;
        }
        let Some((star_next, star_pos)) = backtrack else {
            return false;
        };
        let Some(c) = text[star_pos..].chars().next() else {
            return false;
        };
        let mut resume = star_pos + c.len_utf8();
        // When the star is followed by literal text, skip straight to its next occurrence.
        if !fold && let Some(next @ (Token::Lit(_) | Token::Var(_))) = tokens.get(star_next) {
            match find_literal(&text[resume..], literal_text(next, vars)) {
                Some(offset) => {
                    steps::count(offset);
                    resume += offset;
                }
                None => return false,
            }
        }
        backtrack = Some((star_next, resume));
        ti = star_next;
        pos = resume;
    }
}

/// Work done by the matchers, counted only in unit tests: tests assert that hostile input
/// costs a bounded number of steps per byte instead of timing the matcher.
pub(crate) mod steps {
    #[cfg(test)]
    thread_local! {
        static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// Adds `n` steps (a no-op outside tests).
    #[inline(always)]
    pub(crate) fn count(n: usize) {
        #[cfg(test)]
        STEPS.with(|s| s.set(s.get() + n as u64));
        #[cfg(not(test))]
        let _ = n;
    }

    /// Steps counted on this thread since the last call.
    #[cfg(test)]
    pub(crate) fn take() -> u64 {
        STEPS.with(|s| s.replace(0))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) struct NoVars;
    impl Resolve for NoVars {
        fn resolve(&self, _: &Key) -> Option<&str> {
            None
        }
    }

    pub(crate) struct Vars(pub &'static [(&'static str, &'static str)]);
    impl Resolve for Vars {
        fn resolve(&self, key: &Key) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| *k == key.as_str())
                .map(|(_, v)| *v)
        }
    }

    const LIKE: Syntax = Syntax {
        wildcards: true,
        variables: true,
    };
    const EQUALS: Syntax = Syntax {
        wildcards: false,
        variables: true,
    };

    fn like(pattern: &str, text: &str) -> bool {
        Pattern::compile(pattern, LIKE)
            .unwrap()
            .matches(text, false, &NoVars)
    }

    #[test]
    fn wildcard_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*@example.com", "alice@example.com", true),
            ("*@example.com", "alice@example.com.evil", false),
            ("*@example.com", "@example.com", true),
            ("*@example.com", "alice@EXAMPLE.COM", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "abbc", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("?", "é", true),
            ("Marketing", "Marketing", true),
            ("Marketing", "Marketing Team", false),
            ("*Marketing*", "Marketing Team", true),
            (
                "marketing+.*@example.com",
                "marketing+foo@example.com",
                false,
            ),
            (
                "marketing+.*@example.com",
                "marketing+.foo@example.com",
                true,
            ),
            ("*admin*example.com", "sender@admin.example.com", true),
            ("**a", "ba", true),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(like(pattern, text), *want, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn fold_ignores_case() {
        let p = Pattern::compile("Alice@Example.COM", EQUALS).unwrap();
        assert!(p.matches("alice@example.com", true, &NoVars));
        assert!(!p.matches("alice@example.com", false, &NoVars));
    }

    #[test]
    fn special_variables_are_literal() {
        let p = Pattern::compile("a${*}b${?}c${$}", LIKE).unwrap();
        assert_eq!(p.tokens(), &[Token::Lit("a*b?c$".into())]);
        assert!(p.matches("a*b?c$", false, &NoVars));
        assert!(!p.matches("aXXb?c$", false, &NoVars));
    }

    #[test]
    fn variables_resolve_as_literal_text() {
        let p = Pattern::compile("${aws:username}@*", LIKE).unwrap();
        let vars = Vars(&[("aws:username", "a*")]);
        assert!(p.matches("a*@example.com", false, &vars));
        assert!(
            !p.matches("abc@example.com", false, &vars),
            "value is literal"
        );
        assert!(!p.matches("a*@example.com", false, &NoVars), "unresolved");
    }

    #[test]
    fn variable_default_and_case() {
        let p = Pattern::compile("team-${AWS:PrincipalTag/team, 'company-wide'}", EQUALS).unwrap();
        let keys: Vec<&str> = p.variable_keys().map(Key::as_str).collect();
        assert_eq!(keys, ["aws:principaltag/team"]);
        assert!(p.matches("team-company-wide", false, &NoVars));
        let vars = Vars(&[("aws:principaltag/team", "red")]);
        assert!(p.matches("team-red", false, &vars));
    }

    #[test]
    fn old_version_keeps_variables_literal() {
        let syntax = Syntax {
            wildcards: true,
            variables: false,
        };
        let p = Pattern::compile("${aws:username}", syntax).unwrap();
        assert!(p.matches("${aws:username}", false, &NoVars));
    }

    #[test]
    fn malformed_variables_are_errors() {
        for bad in ["${aws:username", "${}", "${a b}", "${k, default}"] {
            assert!(Pattern::compile(bad, LIKE).is_err(), "{bad}");
        }
    }

    /// Reference matcher: exhaustive recursion straight from the definition.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && reference(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(pattern in "[ab*?]{0,8}", text in "[ab]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(like(&pattern, &text), reference(&p, &t));
        }

        #[test]
        fn shapes_agree_with_the_general_matcher(pattern in "[ab*]{0,6}", text in "[aAbB]{0,8}") {
            let p = Pattern::compile(&pattern, LIKE).unwrap();
            prop_assert_eq!(p.matches(&text, false, &NoVars), glob(p.tokens(), &text, false, &NoVars));
            prop_assert_eq!(p.matches(&text, true, &NoVars), glob(p.tokens(), &text, true, &NoVars));
        }

        #[test]
        fn pattern_without_wildcards_is_equality(text in "[a-c@.]{0,8}", other in "[a-c@.]{0,8}") {
            prop_assert_eq!(like(&text, &other), text == other);
        }
    }
}
