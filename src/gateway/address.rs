//! sesgate's own strict reader of one RFC 5322 mailbox (`From:`, `Sender:`) and of an addr-spec
//! (SPEC §3). It accepts only what every strict reader reads the same way and refuses the rest:
//!
//! - `[display-name] <addr-spec>` or a bare `addr-spec`; a display name is one or more atoms,
//!   quoted strings or encoded-words (RFC 2047) separated by white space or comments. No
//!   obs-phrase (`Marketing.ceo` is not a phrase), no group, no second mailbox, nothing after
//!   the mailbox but white space and comments.
//! - Comments only outside the angle brackets of a `name-addr` (never inside or next to an
//!   addr-spec, where readers disagree about them, and never beside a bare addr-spec, where some
//!   clients show them as the display name). White space inside `< ... >` is allowed.
//! - The local part is a dot-atom, or a quoted string whose content is a dot-atom (`"ceo"@x` is
//!   `ceo@x`); any other quoted local part is ambiguous. No obs-route (`<@a,@b:x@y>`), no
//!   obs-local-part, no encoded-word in the addr-spec (`=?utf-8?q?x?=@example.com`).
//! - The domain is dot-separated letter-digit-hyphen labels (no empty label, no trailing dot, no
//!   domain literal), lower-cased. ASCII only (SES does not support SMTPUTF8).
//! - An address is at most 320 bytes, a display name at most 998, the whole value at most 4,096
//!   (below Postfix's `header_address_token_limit`; see [`MAX_MAILBOX_FIELD`]).

use std::borrow::Cow;

/// The longest address sesgate evaluates (RFC 3696 errata: 64 + 1 + 255).
pub const MAX_ADDRESS: usize = 320;
/// The longest display name sesgate evaluates (RFC 5322's line length).
pub const MAX_DISPLAY_NAME: usize = 998;
/// The longest mailbox field value (unfolded) sesgate reads: room for the longest display name
/// and address with quoting and comments, and far below Postfix's `header_address_token_limit`
/// (10,240 tokens, each at least one byte). Past that limit Postfix's cleanup keeps only the
/// first tokens when it rewrites a From or Sender header, so that `From: ceo ()()...()
/// <x@allowed.com>` would leave as `From: ceo@$myorigin ()()...`.
pub const MAX_MAILBOX_FIELD: usize = 4096;

/// One mailbox read strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// `local@domain`, local part unquoted, domain lower-cased.
    pub address: String,
    /// The display name as the words stand (quotes removed, one space between words), not yet
    /// RFC 2047 decoded; `None` when there is none.
    pub display_name: Option<String>,
    /// True when the display name holds an encoded-word to decode.
    pub encoded: bool,
}

/// Why a mailbox is refused (text for `554 5.6.0 Transaction failed: ...`, after the header
/// name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxError {
    Empty,
    Several,
    Group,
    Invalid(&'static str),
}

const SPECIALS_OK_IN_ATEXT: &[u8] = b"!#$%&'*+-/=?^_`{|}~";

/// atext (RFC 5322 §3.2.3) by byte: one load per byte in the address loops.
const ATEXT: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < SPECIALS_OK_IN_ATEXT.len() {
        table[SPECIALS_OK_IN_ATEXT[i] as usize] = true;
        i += 1;
    }
    table
};

#[inline]
fn is_atext(b: u8) -> bool {
    ATEXT[usize::from(b)]
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_wsp(&mut self) {
        while self.peek().is_some_and(is_wsp) {
            self.at += 1;
        }
    }

    /// Skips white space and comments (nested, with quoted pairs); counts the comments.
    fn skip_cfws(&mut self) -> Result<usize, MailboxError> {
        let mut comments = 0;
        loop {
            self.skip_wsp();
            if self.peek() != Some(b'(') {
                return Ok(comments);
            }
            comments += 1;
            let mut depth = 0usize;
            loop {
                match self.peek() {
                    None => return Err(MailboxError::Invalid("unterminated comment")),
                    Some(b'(') => depth += 1,
                    Some(b')') => {
                        depth -= 1;
                        if depth == 0 {
                            self.at += 1;
                            break;
                        }
                    }
                    Some(b'\\') => {
                        self.at += 1;
                        if self.peek().is_none() {
                            return Err(MailboxError::Invalid("unterminated comment"));
                        }
                    }
                    Some(_) => {}
                }
                self.at += 1;
            }
        }
    }

    fn atom(&mut self) -> &[u8] {
        let start = self.at;
        while self.peek().is_some_and(is_atext) {
            self.at += 1;
        }
        &self.bytes[start..self.at]
    }

    /// A quoted string starting at `"`: its content with quoted pairs resolved, and whether it
    /// held a quoted pair.
    fn quoted_string(&mut self) -> Result<(String, bool), MailboxError> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.at += 1;
        let mut content = String::new();
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(MailboxError::Invalid("unterminated quoted string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok((content, escaped));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(next) = self.peek() else {
                        return Err(MailboxError::Invalid("unterminated quoted string"));
                    };
                    escaped = true;
                    content.push(next as char);
                }
                Some(b) => content.push(b as char),
            }
            self.at += 1;
        }
    }
}

/// One whole RFC 2047 encoded-word `=?charset?B|Q?text?=` (charset may carry `*language`).
fn is_encoded_word(atom: &[u8]) -> bool {
    let Some(inner) = atom
        .strip_prefix(b"=?")
        .and_then(|rest| rest.strip_suffix(b"?="))
    else {
        return false;
    };
    let parts: Vec<&[u8]> = inner.split(|&b| b == b'?').collect();
    matches!(parts.as_slice(),
        [charset, encoding, text]
            if !charset.is_empty()
                && matches!(*encoding, b"B" | b"b" | b"Q" | b"q")
                && !text.is_empty())
}

/// A dot-atom-text: atext runs separated by single dots.
fn is_dot_atom(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .split(|&b| b == b'.')
            .all(|run| !run.is_empty() && run.iter().all(|&b| is_atext(b)))
}

/// A domain of letter-digit-hyphen labels, none empty, none starting or ending with a hyphen,
/// at most 63 bytes each.
pub fn is_domain(domain: &str) -> bool {
    crate::smtp::session::is_domain_name(domain, b"-")
}

/// Reads one addr-spec at the cursor (no white space or comment inside it).
fn addr_spec(cursor: &mut Cursor<'_>) -> Result<String, MailboxError> {
    let local = match cursor.peek() {
        Some(b'"') => {
            let (content, escaped) = cursor.quoted_string()?;
            if escaped || !is_dot_atom(content.as_bytes()) {
                return Err(MailboxError::Invalid(
                    "a quoted local part that is not a plain dot-atom is ambiguous",
                ));
            }
            Cow::Owned(content)
        }
        Some(b'@') => return Err(MailboxError::Invalid("route addresses are not accepted")),
        _ => {
            let start = cursor.at;
            while cursor.peek().is_some_and(|b| is_atext(b) || b == b'.') {
                cursor.at += 1;
            }
            let local = &cursor.bytes[start..cursor.at];
            if !is_dot_atom(local) {
                return Err(MailboxError::Invalid("invalid local part"));
            }
            // atext and dots: ASCII, so borrowed as is.
            String::from_utf8_lossy(local)
        }
    };
    if local.contains("=?") {
        return Err(MailboxError::Invalid(
            "an encoded-word inside an address is not accepted",
        ));
    }
    if cursor.peek() != Some(b'@') {
        return Err(MailboxError::Invalid(
            "the address has no '@' after its local part",
        ));
    }
    cursor.at += 1;
    if cursor.peek() == Some(b'[') {
        return Err(MailboxError::Invalid("domain literals are not accepted"));
    }
    let start = cursor.at;
    // Read as far as a dot-atom would go, so that a bad character reads as a bad domain.
    while cursor.peek().is_some_and(|b| is_atext(b) || b == b'.') {
        cursor.at += 1;
    }
    let domain = std::str::from_utf8(&cursor.bytes[start..cursor.at]).unwrap_or_default();
    if !is_domain(domain) {
        return Err(MailboxError::Invalid("invalid domain"));
    }
    let mut address = String::with_capacity(local.len() + 1 + domain.len());
    address.push_str(&local);
    address.push('@');
    address.push_str(domain);
    address[local.len() + 1..].make_ascii_lowercase();
    if address.len() > MAX_ADDRESS {
        return Err(MailboxError::Invalid("address longer than 320 bytes"));
    }
    Ok(address)
}

/// Reads a whole value that must be exactly one addr-spec (an identity in an ARN, a bare
/// address): no white space, comment or angle brackets.
pub fn parse_addr_spec(text: &str) -> Result<String, MailboxError> {
    let mut cursor = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let address = addr_spec(&mut cursor)?;
    if cursor.at != text.len() {
        return Err(MailboxError::Invalid("text after the address"));
    }
    Ok(address)
}

/// What may follow a complete mailbox: white space and comments only.
fn end(cursor: &mut Cursor<'_>, comments_allowed: bool) -> Result<(), MailboxError> {
    let comments = cursor.skip_cfws()?;
    if comments > 0 && !comments_allowed {
        return Err(MailboxError::Invalid(
            "a comment beside a bare address is not accepted",
        ));
    }
    match cursor.peek() {
        None => Ok(()),
        Some(b',') => Err(MailboxError::Several),
        Some(_) => Err(MailboxError::Invalid("text after the address")),
    }
}

/// Reads an unfolded `From:`/`Sender:` value (ASCII) as exactly one mailbox.
pub fn parse_mailbox(value: &[u8]) -> Result<Mailbox, MailboxError> {
    if value.len() > MAX_MAILBOX_FIELD {
        return Err(MailboxError::Invalid("longer than 4096 bytes"));
    }
    if !value.is_ascii() {
        return Err(MailboxError::Invalid("8-bit characters are not accepted"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(MailboxError::Invalid("control characters are not accepted"));
    }
    let mut cursor = Cursor {
        bytes: value,
        at: 0,
    };
    let leading_comments = cursor.skip_cfws()?;
    if cursor.peek().is_none() {
        return Err(MailboxError::Empty);
    }
    // A display name (phrase) up to `<`, or else a bare addr-spec from the start.
    let phrase_start = cursor.at;
    // The words of the phrase joined by single spaces, as they are read (no list of words).
    let mut phrase = String::new();
    let mut words = 0usize;
    let mut push_word = |word: &str| {
        if words > 0 {
            phrase.push(' ');
        }
        phrase.push_str(word);
        words += 1;
    };
    let mut encoded = false;
    // What would make the phrase read differently by different readers; refused only once the
    // phrase turns out to be a display name (a bare addr-spec has its own, stricter rules).
    let mut phrase_ambiguity: Option<&'static str> = None;
    let mut separated = true;
    loop {
        let word_start = cursor.at;
        match cursor.peek() {
            Some(b'"') => {
                let (content, _) = cursor.quoted_string()?;
                if content.contains("=?") {
                    // RFC 2047 forbids it, yet Python and many clients decode it.
                    phrase_ambiguity
                        .get_or_insert("an encoded-word inside a quoted string is ambiguous");
                }
                push_word(&content);
            }
            Some(b) if is_atext(b) => {
                let atom = cursor.atom();
                if is_encoded_word(atom) {
                    encoded = true;
                } else if atom.windows(2).any(|w| w == b"=?") {
                    // Glued to other text, two in one atom, broken by a fold, an unknown
                    // encoding: some readers decode it, others show it raw.
                    phrase_ambiguity
                        .get_or_insert("a malformed encoded-word in the display name is ambiguous");
                }
                push_word(&String::from_utf8_lossy(atom));
            }
            _ => break,
        }
        if !separated {
            // `C"E"O`: one reader joins the words, another puts spaces between them.
            phrase_ambiguity.get_or_insert(
                "words of the display name not separated by white space are ambiguous",
            );
        }
        debug_assert!(cursor.at > word_start);
        let word_end = cursor.at;
        cursor.skip_cfws()?;
        separated = cursor.at > word_end;
    }
    match cursor.peek() {
        Some(b'<') => {
            if let Some(why) = phrase_ambiguity {
                return Err(MailboxError::Invalid(why));
            }
            cursor.at += 1;
            cursor.skip_wsp();
            let address = addr_spec(&mut cursor)?;
            cursor.skip_wsp();
            if cursor.peek() != Some(b'>') {
                return Err(MailboxError::Invalid("the address does not end with '>'"));
            }
            cursor.at += 1;
            end(&mut cursor, true)?;
            let display_name = (words > 0).then_some(phrase);
            if display_name
                .as_ref()
                .is_some_and(|n| n.len() > MAX_DISPLAY_NAME)
            {
                return Err(MailboxError::Invalid("display name longer than 998 bytes"));
            }
            Ok(Mailbox {
                address,
                display_name,
                encoded,
            })
        }
        Some(b':') if words > 0 => Err(MailboxError::Group),
        Some(b',') if words > 0 => Err(MailboxError::Several),
        _ => {
            // Not a name-addr: the whole value must be one bare addr-spec.
            if leading_comments > 0 {
                return Err(MailboxError::Invalid(
                    "a comment beside a bare address is not accepted",
                ));
            }
            cursor.at = phrase_start;
            let address = addr_spec(&mut cursor)?;
            end(&mut cursor, false)?;
            Ok(Mailbox {
                address,
                display_name: None,
                encoded: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_atext_table_is_the_rule() {
        for b in 0..=255u8 {
            let rule = b.is_ascii_alphanumeric() || SPECIALS_OK_IN_ATEXT.contains(&b);
            assert_eq!(is_atext(b), rule, "{b:#x}");
        }
    }

    fn ok(value: &str) -> (String, Option<String>) {
        let mailbox =
            parse_mailbox(value.as_bytes()).unwrap_or_else(|e| panic!("{value:?} refused: {e:?}"));
        (mailbox.address, mailbox.display_name)
    }

    #[test]
    fn accepted_mailboxes() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("ceo@Example.COM", "ceo@example.com", None),
            ("  ceo@example.com  ", "ceo@example.com", None),
            ("<ceo@example.com>", "ceo@example.com", None),
            ("< ceo@example.com >", "ceo@example.com", None),
            ("CEO <ceo@example.com>", "ceo@example.com", Some("CEO")),
            (
                "\"Marketing, Team\" <News@example.com>",
                "News@example.com",
                Some("Marketing, Team"),
            ),
            (
                "Big  (the boss)  Boss <b@example.com> (work)",
                "b@example.com",
                Some("Big Boss"),
            ),
            ("CEO <\"ceo\"@example.com>", "ceo@example.com", Some("CEO")),
            ("\"ceo.x\"@example.com", "ceo.x@example.com", None),
            (
                "first.last+tag@sub.example.com",
                "first.last+tag@sub.example.com",
                None,
            ),
            (
                "=?utf-8?q?J=C3=BCrgen?= <j@example.com>",
                "j@example.com",
                Some("=?utf-8?q?J=C3=BCrgen?="),
            ),
        ];
        for (value, address, name) in cases {
            assert_eq!(
                ok(value),
                (address.to_string(), name.map(str::to_owned)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn refused_mailboxes() {
        use MailboxError::*;
        let cases: &[(&str, MailboxError)] = &[
            ("", Empty),
            ("  (just a comment) ", Empty),
            (
                "<ceo@example.com> a@allowed.com",
                Invalid("text after the address"),
            ),
            (
                "ceo@example.com)x@allowed.com",
                Invalid("text after the address"),
            ),
            (
                "CEO <\"x@allowed.com>\"@example.com>",
                Invalid("a quoted local part that is not a plain dot-atom is ambiguous"),
            ),
            (
                "Marketing.ceo@example.com<news@allowed.com>",
                Invalid("text after the address"),
            ),
            ("a@example.com, b@example.com", Several),
            ("A <a@example.com>, b@example.com", Several),
            ("Team: a@example.com;", Group),
            (
                "ceo(x)@example.com",
                Invalid("the address has no '@' after its local part"),
            ),
            ("ceo@(x)example.com", Invalid("invalid domain")),
            (
                "ceo@example.com (CEO)",
                Invalid("a comment beside a bare address is not accepted"),
            ),
            (
                "(CEO) ceo@example.com",
                Invalid("a comment beside a bare address is not accepted"),
            ),
            (
                "A <ceo(x)@example.com>",
                Invalid("the address has no '@' after its local part"),
            ),
            (
                "<@a.com,@b.com:x@y.com>",
                Invalid("route addresses are not accepted"),
            ),
            (
                "=?utf-8?q?x?=@example.com",
                Invalid("an encoded-word inside an address is not accepted"),
            ),
            (
                "\"=?utf-8?q?x?=\"@example.com",
                Invalid("an encoded-word inside an address is not accepted"),
            ),
            ("ceo@example.com.", Invalid("invalid domain")),
            (
                "ceo@[192.0.2.1]",
                Invalid("domain literals are not accepted"),
            ),
            ("ceo@exa_mple.com", Invalid("invalid domain")),
            ("ceo.@example.com", Invalid("invalid local part")),
            ("ceo..x@example.com", Invalid("invalid local part")),
            (
                "ceo @example.com",
                Invalid("the address has no '@' after its local part"),
            ),
            (
                "\"a b\"@example.com",
                Invalid("a quoted local part that is not a plain dot-atom is ambiguous"),
            ),
            (
                "\"a\\\"b\"@example.com",
                Invalid("a quoted local part that is not a plain dot-atom is ambiguous"),
            ),
            (
                "ce\u{f6}@example.com",
                Invalid("8-bit characters are not accepted"),
            ),
            (
                "not an address",
                Invalid("the address has no '@' after its local part"),
            ),
            (
                "CEO <ceo@example.com",
                Invalid("the address does not end with '>'"),
            ),
            ("CEO <ceo@example.com>>", Invalid("text after the address")),
            (
                "CEO (unterminated <ceo@example.com>",
                Invalid("unterminated comment"),
            ),
            (
                "\"CEO <ceo@example.com>",
                Invalid("unterminated quoted string"),
            ),
            ("a@b@example.com", Invalid("text after the address")),
        ];
        for (value, error) in cases {
            assert_eq!(
                parse_mailbox(value.as_bytes()),
                Err(error.clone()),
                "{value:?}"
            );
        }
        let long = format!("<{}@example.com>", "a".repeat(320));
        assert_eq!(
            parse_mailbox(long.as_bytes()),
            Err(Invalid("address longer than 320 bytes"))
        );
        let comments = format!("ceo{} <a@example.com>", " ()".repeat(1_400));
        assert_eq!(
            parse_mailbox(comments.as_bytes()),
            Err(Invalid("longer than 4096 bytes"))
        );
        let long = format!("{} <a@example.com>", "n".repeat(999));
        assert_eq!(
            parse_mailbox(long.as_bytes()),
            Err(Invalid("display name longer than 998 bytes"))
        );
    }
}
