//! The SMTP session state machine (`sesgate::smtp::session::Session`) driven the way
//! `smtp/conn.rs` drives it, from raw client bytes: command lines split at LF (over-long ones
//! discarded), SASL PLAIN/LOGIN exchanges read from the following lines, STARTTLS "handshakes",
//! and DATA bytes through the real `DataReader`.
//!
//! Input: `[flags, limits, client bytes...]`. flags: bits 0-1 the listener's TLS mode, bit 2
//! `allow_plaintext_auth`, bit 3 the TLS handshake fails. Checked: no panic; every reply has a
//! 3-digit 2xx-5xx code and no CR or LF inside a line; the SASL outcome is a reply, never another
//! step; AUTH is started only where allowed and only once; a transaction is delivered only after
//! an authenticated MAIL, at least one accepted RCPT and a completed DATA, with the envelope the
//! replies acknowledged; TLS forgets EHLO, the user and the envelope.
//!
//! Hardening checks (on by default, `SESGATE_FUZZ_STRICT=0` turns them off): reply lines printable ASCII and at most 512
//! bytes on the wire (RFC 5321 §4.5.3.1.5).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesgate::smtp::data::DataReader;
use sesgate::smtp::sasl;
use sesgate::smtp::session::{AuthFailure, Mechanism, Session, SessionConfig, Step, TlsMode};
use sesgate::smtp::{Limits, Reply};

/// As in conn.rs.
const MAX_COMMAND_LINE: usize = 4096;
const USER: &str = "fuzz-user";

enum Line<'a> {
    Complete(&'a [u8]),
    TooLong,
}

struct Client<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Client<'a> {
    /// The next line, or `None` when the client stops sending (the connection ends).
    fn line(&mut self) -> Option<Line<'a>> {
        let rest = &self.bytes[self.at..];
        let newline = rest.iter().position(|&b| b == b'\n')?;
        self.at += newline + 1;
        let line = &rest[..=newline];
        Some(if line.len() > MAX_COMMAND_LINE {
            Line::TooLong
        } else {
            Line::Complete(line)
        })
    }

    /// A SASL response line, as conn.rs reads it.
    fn response(&mut self) -> Option<String> {
        Some(match self.line()? {
            Line::Complete(line) => String::from_utf8(line.to_vec()).unwrap_or_default(),
            Line::TooLong => String::new(),
        })
    }
}

fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("SESGATE_FUZZ_STRICT").is_none_or(|v| v != "0"))
}

fn check_reply(reply: &Reply) {
    assert!(
        (200..600).contains(&reply.code),
        "reply code {} is not 2xx-5xx",
        reply.code
    );
    assert!(!reply.lines.is_empty(), "a reply without a line");
    for line in &reply.lines {
        assert!(
            !line.contains(['\r', '\n']),
            "CR or LF inside a reply line: {line:?}"
        );
        if strict() {
            assert!(
                line.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "reply line not printable ASCII: {line:?}"
            );
        }
    }
    let wire = reply.to_wire();
    let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), reply.lines.len(), "reply lines on the wire");
    for line in lines {
        assert!(line.ends_with(b"\r\n") && line.len() >= 6, "{line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit) && matches!(line[3], b' ' | b'-'));
        if strict() {
            assert!(line.len() <= 512, "reply line of {} bytes", line.len());
        }
    }
}

/// The authenticator: one valid user; the name `throttled` stands for a throttled address.
fn authenticate(
    credentials: Result<sasl::Credentials, AuthFailure>,
) -> Result<String, AuthFailure> {
    let credentials = credentials?;
    match (credentials.username.as_str(), credentials.password.as_str()) {
        ("throttled", _) => Err(AuthFailure::Throttled),
        (USER, "secret") => Ok(USER.to_owned()),
        _ => Err(AuthFailure::Invalid),
    }
}

/// The SASL exchange, as conn.rs runs it; `None` when the client went away.
fn read_credentials(
    client: &mut Client<'_>,
    mechanism: Mechanism,
    initial: Option<String>,
) -> Option<Result<sasl::Credentials, AuthFailure>> {
    match mechanism {
        Mechanism::Plain => {
            let response = match initial {
                Some(response) => response,
                None => client.response()?,
            };
            Some(sasl::decode_plain(&response))
        }
        Mechanism::Login => {
            let username = match initial {
                Some(response) => response,
                None => client.response()?,
            };
            let username = match sasl::decode_text(&username) {
                Ok(username) => username,
                Err(failure) => return Some(Err(failure)),
            };
            let password = match sasl::decode_text(&client.response()?) {
                Ok(password) => password,
                Err(failure) => return Some(Err(failure)),
            };
            Some(Ok(sasl::Credentials { username, password }))
        }
    }
}

/// What the replies so far have acknowledged.
#[derive(Default)]
struct Acknowledged {
    mail: bool,
    recipients: usize,
}

/// The command as the session's parser reads it (smtp-proto, as in session.rs).
#[derive(PartialEq, Eq)]
enum Verb {
    Mail,
    Rcpt,
    Reset,
    Ehlo,
    Data,
    Other,
}

fn verb(line: &[u8]) -> Verb {
    // The session refuses a command line with a control character (tab aside) before its end
    // without parsing it; smtp-proto would drop a CR and parse the rest.
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if body.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Verb::Other;
    }
    match smtp_proto::Request::parse(&mut line.iter()) {
        Ok(smtp_proto::Request::Mail { .. }) => Verb::Mail,
        Ok(smtp_proto::Request::Rcpt { .. }) => Verb::Rcpt,
        Ok(smtp_proto::Request::Rset | smtp_proto::Request::Helo { .. }) => Verb::Reset,
        Ok(smtp_proto::Request::Ehlo { .. }) => Verb::Ehlo,
        Ok(smtp_proto::Request::Data) => Verb::Data,
        _ => Verb::Other,
    }
}

fuzz_target!(|input: &[u8]| {
    let [flags, limits, bytes @ ..] = input else {
        return;
    };
    let tls_mode = match flags & 3 {
        0 => TlsMode::None,
        2 => TlsMode::Implicit,
        _ => TlsMode::Starttls,
    };
    let allow_plaintext_auth = flags & 4 != 0;
    let handshake_fails = flags & 8 != 0;
    let config = SessionConfig {
        hostname: "gw.fuzz.test".into(),
        tls_mode,
        allow_plaintext_auth,
        auth: sesgate::smtp::AuthMode::Required,
        limits: std::sync::Arc::new(Limits {
            max_message_bytes: 64 + usize::from(limits & 0x0f) * 64,
            max_recipients: 1 + usize::from((limits >> 4) & 3),
            max_line_length: 80,
            max_errors: 3 + u32::from(limits >> 6) * 4,
            max_auth_failures: 2,
            ..Limits::default()
        }),
    };
    let mut session = Session::new(config.clone(), tls_mode == TlsMode::Implicit);
    let mut client = Client { bytes, at: 0 };
    let mut acked = Acknowledged::default();

    while let Some(line) = client.line() {
        let (step, verb) = match line {
            Line::Complete(line) => (session.on_line(line), verb(line)),
            Line::TooLong => (session.on_line_too_long(), Verb::Other),
        };
        match step {
            Step::Reply(reply) => {
                check_reply(&reply);
                let ok = reply.code == 250;
                match verb {
                    Verb::Mail if ok => {
                        assert!(session.user().is_some(), "MAIL accepted without AUTH");
                        assert!(!acked.mail, "nested MAIL accepted");
                        acked = Acknowledged {
                            mail: true,
                            recipients: 0,
                        };
                    }
                    Verb::Rcpt if ok => {
                        assert!(acked.mail, "RCPT accepted without MAIL");
                        acked.recipients += 1;
                        assert!(acked.recipients <= config.limits.max_recipients);
                    }
                    Verb::Reset if ok => acked = Acknowledged::default(),
                    Verb::Ehlo if ok => {
                        acked = Acknowledged::default();
                        let offers = |what: &str| reply.lines.iter().any(|l| l == what);
                        if offers("AUTH PLAIN LOGIN") {
                            assert!(session.is_tls() || allow_plaintext_auth);
                            assert!(session.user().is_none(), "AUTH offered after AUTH");
                        }
                        if offers("STARTTLS") {
                            assert!(tls_mode == TlsMode::Starttls && !session.is_tls());
                        }
                    }
                    // DATA without recipients ends the transaction.
                    Verb::Data => acked = Acknowledged::default(),
                    _ => {}
                }
            }
            Step::Close(reply) => {
                check_reply(&reply);
                return;
            }
            Step::StartTls => {
                assert_eq!(tls_mode, TlsMode::Starttls);
                assert!(!session.is_tls(), "STARTTLS inside TLS");
                assert!(session.ehlo_name().is_some(), "STARTTLS before EHLO");
                if handshake_fails {
                    return;
                }
                session.on_tls_established();
                assert!(session.is_tls());
                assert!(session.user().is_none() && session.ehlo_name().is_none());
                acked = Acknowledged::default();
            }
            Step::Auth { mechanism, initial } => {
                assert!(
                    session.is_tls() || allow_plaintext_auth,
                    "AUTH started in plaintext"
                );
                assert!(session.user().is_none(), "second AUTH started");
                assert!(!acked.mail, "AUTH inside a transaction");
                let Some(credentials) = read_credentials(&mut client, mechanism, initial) else {
                    return;
                };
                let result = authenticate(credentials);
                let succeeded = result.is_ok();
                match session.on_auth_result(result) {
                    Step::Reply(reply) => {
                        check_reply(&reply);
                        assert_eq!(reply.code == 235, succeeded, "{reply}");
                    }
                    Step::Close(reply) => {
                        check_reply(&reply);
                        assert!(!succeeded && reply.code >= 400);
                        return;
                    }
                    other => panic!("the SASL outcome must be a reply, not {other:?}"),
                }
                assert_eq!(session.user(), succeeded.then_some(USER));
            }
            Step::ReadData => {
                assert!(session.user().is_some(), "DATA without AUTH");
                assert!(acked.mail && acked.recipients > 0, "DATA without MAIL/RCPT");
                let mut reader = DataReader::new(
                    config.limits.max_message_bytes,
                    config.limits.max_line_length,
                );
                let Some(consumed) = reader.ingest(&client.bytes[client.at..]) else {
                    return; // the client never ended the message
                };
                client.at += consumed;
                let sent = std::mem::take(&mut acked);
                match session.on_data_end(reader.finish()) {
                    Ok((envelope, message)) => {
                        assert_eq!(envelope.recipients.len(), sent.recipients);
                        assert!(message.len() <= config.limits.max_message_bytes);
                        assert!(message.is_empty() || message.ends_with(b"\r\n"));
                    }
                    Err(reply) => {
                        check_reply(&reply);
                        assert!(reply.code >= 400, "{reply}");
                    }
                }
            }
        }
    }
});
