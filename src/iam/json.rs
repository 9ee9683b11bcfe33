//! The JSON layer of policy loading: a document tree that keeps key order and refuses duplicate
//! keys (serde_json's `Value` silently keeps the last one, and IAM refuses repeated elements), the
//! character set IAM accepts, and the text positions of statements for the simulator's output.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value. A number is its text as written in the document (IAM: "quotes are
/// optional around numeric and Boolean JSON values"), so `10` reads as `"10"` and `5.0` as
/// `"5.0"`: under a String operator `5.0` does not equal `5`, under a Numeric one it does.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses a document; the error names the line and column.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut json: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
        // serde_json hands numbers over as values (`5.0` as 5, `1e2` as 100); put back the text
        // as written. The tree keeps document order, so the n-th number in it is the n-th
        // number token in the text.
        let mut written = number_tokens(text);
        json.restore_numbers(&mut written);
        if written.next().is_some() {
            return Err("a number could not be read as written".into());
        }
        Ok(json)
    }

    fn restore_numbers<'t>(&mut self, written: &mut impl Iterator<Item = &'t str>) {
        match self {
            Json::Number(text) => {
                // Same count by construction; if not, the parsed text stays and `parse` fails.
                if let Some(token) = written.next() {
                    *text = token.to_owned();
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|i| i.restore_numbers(written)),
            Json::Object(members) => members
                .iter_mut()
                .for_each(|(_, v)| v.restore_numbers(written)),
            Json::Null | Json::Bool(_) | Json::String(_) => {}
        }
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as JSON text, indented by two spaces, keys in document order and numbers as
    /// written: a policy written back means exactly what was read.
    pub fn to_pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0);
        out
    }

    fn write_pretty(&self, out: &mut String, depth: usize) {
        let indent = |out: &mut String, depth: usize| {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(text) => out.push_str(text),
            Json::String(text) => {
                out.push_str(&serde_json::to_string(text).expect("strings serialize"))
            }
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, depth + 1);
                    item.write_pretty(out, depth + 1);
                }
                indent(out, depth);
                out.push(']');
            }
            Json::Object(members) if members.is_empty() => out.push_str("{}"),
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    indent(out, depth + 1);
                    out.push_str(&serde_json::to_string(key).expect("strings serialize"));
                    out.push_str(": ");
                    value.write_pretty(out, depth + 1);
                }
                indent(out, depth);
                out.push('}');
            }
        }
    }

    /// A scalar as the text IAM compares: strings as they are, numbers and booleans unquoted.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Json::String(s) | Json::Number(s) => Some(s.clone()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// The number tokens of a JSON text (already known to be valid JSON), in order.
fn number_tokens(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let (mut at, mut in_string, mut escaped) = (0, false, false);
    std::iter::from_fn(move || {
        while at < bytes.len() {
            let b = bytes[at];
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else if b == b'"' {
                in_string = true;
            } else if b == b'-' || b.is_ascii_digit() {
                let start = at;
                while at < bytes.len()
                    && matches!(bytes[at], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    at += 1;
                }
                return Some(&text[start..at]);
            }
            at += 1;
        }
        None
    })
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members: Vec<(String, Json)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value()?;
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

/// The length of a JSON text without the white space between tokens: what IAM counts against
/// its size limits ("IAM does not count white space"), and SES presumably too.
pub fn significant_len(text: &str) -> usize {
    let (mut length, mut in_string, mut escaped) = (0, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            continue;
        }
        length += c.len_utf8();
    }
    length
}

/// A position in the policy text, as AWS's simulator reports it (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where a statement's text starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

/// The first character IAM does not accept in a policy document (TAB, LF, CR, U+0020–U+00FF
/// only), with its position.
pub fn first_forbidden_char(text: &str) -> Option<(char, Position)> {
    let mut position = Position { line: 1, column: 1 };
    for c in text.chars() {
        if !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}') {
            return Some((c, position));
        }
        advance(&mut position, c);
    }
    None
}

fn advance(position: &mut Position, c: char) {
    if c == '\n' {
        position.line += 1;
        position.column = 1;
    } else {
        position.column += 1;
    }
}

/// The span of each statement of a well-formed policy, in order. Positions follow AWS's
/// simulator: the column just after the statement's `{` and just after its `}` (AWS's CLI
/// example reports 38 and 167 for a statement whose braces sit at columns 37 and 166).
pub fn statement_spans(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut position = Position { line: 1, column: 1 };
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_start = 0usize;
    let mut last_key_at_top: Option<&str> = None;
    // Depth at which statement objects open: 2 for `"Statement": {`, 3 inside an array.
    let mut statement_depth: Option<usize> = None;
    let mut open: Option<Position> = None;
    for (at, c) in text.char_indices() {
        let here = position;
        advance(&mut position, c);
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                if depth == 1 {
                    last_key_at_top = Some(&text[string_start..at]);
                }
            }
            continue;
        }
        let after = Position {
            line: here.line,
            column: here.column + 1,
        };
        match c {
            '"' => {
                in_string = true;
                string_start = at + 1;
            }
            ':' if depth == 1 && last_key_at_top == Some("Statement") => {
                statement_depth = Some(2);
            }
            ',' if depth == 1 => {
                last_key_at_top = None;
                statement_depth = None;
            }
            '[' | '{' => {
                depth += 1;
                if c == '[' && statement_depth == Some(2) && depth == 2 {
                    statement_depth = Some(3);
                } else if c == '{' && statement_depth == Some(depth) {
                    open = Some(after);
                }
            }
            ']' | '}' => {
                if c == '}'
                    && statement_depth == Some(depth)
                    && let Some(start) = open.take()
                {
                    spans.push(Span { start, end: after });
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_back_it_reads_the_same() {
        let text = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Condition":{"NumericLessThan":{"k":1e2,"j":5.0}},"Action":[],"Resource":"a\"b\u00e9"}],"Z":{},"A":null}"#;
        let json = Json::parse(text).unwrap();
        let pretty = json.to_pretty();
        assert_eq!(Json::parse(&pretty).unwrap(), json);
        assert!(
            pretty.contains("\"k\": 1e2") && pretty.contains("\"j\": 5.0"),
            "{pretty}"
        );
        assert!(
            pretty.starts_with("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {"),
            "{pretty}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err =
            Json::parse(r#"{"Statement": {"Effect": "Allow", "Effect": "Deny"}}"#).unwrap_err();
        assert!(err.contains("duplicate key \"Effect\""), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn numbers_keep_their_text() {
        let json =
            Json::parse(r#"[10, -3, 2.5, 5.0, 1e2, 1.50, true, "x 7", {"k\"9": 0.0}]"#).unwrap();
        let Json::Array(items) = json else { panic!() };
        let texts: Vec<_> = items[..8]
            .iter()
            .map(|i| i.scalar_text().unwrap())
            .collect();
        assert_eq!(
            texts,
            ["10", "-3", "2.5", "5.0", "1e2", "1.50", "true", "x 7"]
        );
        assert_eq!(
            items[8],
            Json::Object(vec![("k\"9".into(), Json::Number("0.0".into()))])
        );
    }

    #[test]
    fn forbidden_characters_have_positions() {
        assert_eq!(first_forbidden_char("{\"a\":\n \"ok é\"}"), None);
        let (c, at) = first_forbidden_char("{\n  \"Sid\": \"caf\u{0100}\"}").unwrap();
        assert_eq!((c, at.line, at.column), ('\u{0100}', 2, 14));
    }

    #[test]
    fn statement_span_matches_the_aws_cli_example() {
        // The policy and positions of the AWS CLI simulate-custom-policy example.
        let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}"#;
        let spans = statement_spans(policy);
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].start,
            Position {
                line: 1,
                column: 38
            }
        );
        assert_eq!(
            spans[0].end,
            Position {
                line: 1,
                column: 167
            }
        );
    }

    #[test]
    fn statement_spans_in_arrays() {
        let policy = "{\"Statement\": [\n {\"Sid\": \"A\", \"Condition\": {\"X\": {\"a:b\": \"}\"}}},\n {\"Sid\": \"B\"}\n], \"Version\": \"2012-10-17\"}";
        let spans = statement_spans(policy);
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].start.line, spans[0].start.column), (2, 3));
        assert_eq!((spans[1].start.line, spans[1].end.line), (3, 3));
    }
}
