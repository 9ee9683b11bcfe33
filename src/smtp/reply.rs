//! Every SMTP reply sesgate writes, in one place. Texts keep Amazon SES's wording (SPEC §6,
//! `ses-iam-facts.md` §A5) so that legacy applications matching on them keep working; enhanced
//! status codes follow RFC 3463.

use std::borrow::Cow;
use std::fmt;

/// One SMTP reply: a code and one or more lines of text (the enhanced code is part of the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// The reply as sent on the wire: `250-first\r\n250 last\r\n`. A control character in a
    /// line (text that came from a client or an upstream) is sent as `?`, so no reply can end
    /// early or carry a second one.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_wire(&mut out);
        out
    }

    /// Appends the reply's wire form to `out` (a connection's output buffer): no allocation
    /// of its own.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        // The code is three digits (100..=599 by construction); written without formatting.
        let code = [
            b'0' + (self.code / 100 % 10) as u8,
            b'0' + (self.code / 10 % 10) as u8,
            b'0' + (self.code % 10) as u8,
        ];
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(&code);
            out.push(if i == last { b' ' } else { b'-' });
            out.extend(
                line.bytes()
                    .map(|b| if b < 0x20 || b == 0x7f { b'?' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

pub fn greeting(hostname: &str) -> Reply {
    Reply::new(220, format!("{hostname} ESMTP sesgate"))
}

/// The EHLO reply. AUTH is listed only when it may be used on this connection.
pub fn ehlo(hostname: &str, client: &str, max_size: usize, starttls: bool, auth: bool) -> Reply {
    let mut lines: Vec<Cow<'static, str>> = vec![format!("{hostname} greets {client}").into()];
    lines.push("PIPELINING".into());
    lines.push(format!("SIZE {max_size}").into());
    lines.push("8BITMIME".into());
    lines.push("ENHANCEDSTATUSCODES".into());
    if starttls {
        lines.push("STARTTLS".into());
    }
    if auth {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    Reply { code: 250, lines }
}

pub fn helo(hostname: &str) -> Reply {
    Reply::new(250, hostname.to_owned())
}
pub fn ok() -> Reply {
    Reply::new(250, "2.0.0 Ok")
}
pub fn sender_ok() -> Reply {
    Reply::new(250, "2.1.0 Ok")
}
pub fn recipient_ok() -> Reply {
    Reply::new(250, "2.1.5 Ok")
}
pub fn ready_for_tls() -> Reply {
    Reply::new(220, "2.0.0 Ready to start TLS")
}
pub fn start_data() -> Reply {
    Reply::new(354, "End data with <CR><LF>.<CR><LF>")
}
pub fn bye() -> Reply {
    Reply::new(221, "2.0.0 Bye")
}
pub fn vrfy() -> Reply {
    Reply::new(
        252,
        "2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
    )
}
pub fn help() -> Reply {
    Reply::new(
        214,
        "2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
    )
}
/// AUTH continuation with a base64 challenge (`VXNlcm5hbWU6` is "Username:").
pub fn auth_challenge(base64: &'static str) -> Reply {
    Reply::new(334, base64)
}
pub fn auth_succeeded() -> Reply {
    Reply::new(235, "2.7.0 Authentication successful.")
}
pub fn auth_required() -> Reply {
    Reply::new(530, "5.7.0 Authentication required")
}
pub fn starttls_first() -> Reply {
    Reply::new(530, "5.7.0 Must issue a STARTTLS command first")
}
pub fn auth_invalid() -> Reply {
    Reply::new(535, "5.7.8 Authentication Credentials Invalid")
}
pub fn auth_cancelled() -> Reply {
    Reply::new(501, "5.7.0 Authentication cancelled")
}
pub fn auth_mechanism_unsupported() -> Reply {
    Reply::new(504, "5.5.4 Unrecognized authentication type")
}
pub fn auth_malformed() -> Reply {
    Reply::new(501, "5.5.2 Cannot decode AUTH response")
}
pub fn already_authenticated() -> Reply {
    Reply::new(503, "5.5.1 Already authenticated")
}
pub fn too_many_auth_failures() -> Reply {
    Reply::new(421, "4.7.0 Too many authentication failures")
}
pub fn auth_throttled() -> Reply {
    Reply::new(454, "4.7.0 Temporary authentication failure")
}
pub fn bad_sequence(what: &'static str) -> Reply {
    Reply::new(503, format!("5.5.1 Bad sequence of commands: {what}"))
}
pub fn syntax(hint: &'static str) -> Reply {
    Reply::new(501, format!("5.5.4 Syntax: {hint}"))
}
pub fn unrecognized() -> Reply {
    Reply::new(500, "5.5.2 Command unrecognized")
}
pub fn not_implemented() -> Reply {
    Reply::new(502, "5.5.1 Command not implemented")
}
pub fn line_too_long() -> Reply {
    Reply::new(500, "5.5.2 Line too long")
}
pub fn too_many_errors() -> Reply {
    Reply::new(421, "4.7.0 Too many errors, closing connection")
}
pub fn invalid_domain_name() -> Reply {
    Reply::new(501, "5.5.2 Invalid domain name")
}
/// A MAIL/RCPT parameter that was not advertised (or is malformed); the name is not echoed.
pub fn unsupported_option() -> Reply {
    Reply::new(555, "5.5.4 Unsupported option")
}
pub fn invalid_sender(address: &str) -> Reply {
    Reply::new(553, format!("5.1.7 <{address}> Invalid email address"))
}
pub fn invalid_recipient(address: &str) -> Reply {
    Reply::new(553, format!("5.1.3 <{address}> address unknown"))
}
pub fn non_ascii_address() -> Reply {
    Reply::new(
        553,
        "5.6.7 Addresses must be ASCII (SMTPUTF8 is not supported)",
    )
}
pub fn message_too_long() -> Reply {
    Reply::new(552, "5.3.4 Message is too long.")
}
pub fn too_many_recipients() -> Reply {
    Reply::new(452, "4.5.3 Too many recipients")
}
pub fn no_recipients() -> Reply {
    Reply::new(
        554,
        "5.5.1 Transaction failed: There are no recipients specified",
    )
}
pub fn bare_cr() -> Reply {
    Reply::new(554, "5.6.0 Transaction failed: message contains a bare CR")
}
pub fn data_line_too_long(max: usize) -> Reply {
    Reply::new(
        554,
        format!("5.6.0 Transaction failed: line longer than {max} characters"),
    )
}
pub fn too_many_connections() -> Reply {
    Reply::new(421, "4.7.0 Too many concurrent SMTP connections")
}
pub fn timeout() -> Reply {
    Reply::new(451, "4.4.2 Timeout waiting for data from client")
}
/// The connection reached `session_timeout`.
pub fn session_expired() -> Reply {
    Reply::new(421, "4.4.2 Session time limit exceeded, closing connection")
}
pub fn untrusted_proxy() -> Reply {
    Reply::new(
        421,
        "4.7.0 PROXY protocol is not accepted from this address",
    )
}
pub fn shutting_down() -> Reply {
    Reply::new(421, "4.3.2 Service shutting down")
}
/// A client-supplied value echoed in a reply: printable ASCII only (anything else becomes `?`),
/// at most 200 characters, so nothing a client sends can break or flood a reply line.
pub fn echo(text: &str) -> String {
    printable(text, 200)
}
/// `text` as [`echo`] makes it, cut at `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        assert_eq!(
            auth_invalid().to_wire(),
            b"535 5.7.8 Authentication Credentials Invalid\r\n"
        );
        let ehlo = ehlo("gw", "client", 41943040, true, false);
        let text = String::from_utf8(ehlo.to_wire()).unwrap();
        assert_eq!(
            text,
            "250-gw greets client\r\n250-PIPELINING\r\n250-SIZE 41943040\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
        );
    }

    #[test]
    fn control_characters_never_reach_the_wire() {
        let injected = Reply::new(554, "5.6.0 Transaction failed: x\r\n250 2.0.0 Ok\u{7f}");
        assert_eq!(
            injected.to_wire(),
            b"554 5.6.0 Transaction failed: x??250 2.0.0 Ok?\r\n"
        );
    }
}
