//! The SMTP session as a state machine: one command line in, one [`Step`] out. No I/O and no
//! runtime, so every reply rule is tested directly; `conn.rs` is the only code that awaits.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MailFrom,
    RcptTo, Request,
};

use super::Limits;
use super::data::DataError;
use super::reply::{self, Reply};

/// How a listener offers TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS at all.
    None,
    /// Plaintext until the client sends STARTTLS.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// Whether a listener asks for AUTH (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every client authenticates (the default).
    #[default]
    Required,
    /// A client that does not authenticate is identified by its TLS client certificate, then
    /// by its address; AUTH, when given, wins.
    Optional,
    /// AUTH is not offered: clients are identified by certificate or address only.
    None,
}

/// How the session's user was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifiedBy {
    Auth,
    Certificate,
    Network,
}

impl IdentifiedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifiedBy::Auth => "auth",
            IdentifiedBy::Certificate => "certificate",
            IdentifiedBy::Network => "network",
        }
    }
}

/// What one session runs under: its listener's protocol settings and the server's limits
/// (shared, not copied).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub tls_mode: TlsMode,
    pub allow_plaintext_auth: bool,
    pub auth: AuthMode,
    pub limits: Arc<Limits>,
}

/// The envelope of the transaction in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path; empty for `MAIL FROM:<>`.
    pub mail_from: String,
    pub recipients: Vec<String>,
}

/// One completed transaction, handed to the [`Handler`](super::Handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Identifies the connection in logs.
    pub session_id: String,
    /// Who sent it, as the authenticator named them.
    pub user: String,
    /// How `user` was identified.
    pub identified_by: IdentifiedBy,
    /// True when the session is under TLS (STARTTLS or implicit).
    pub tls: bool,
    /// The client's address (from the PROXY header when the peer is a trusted proxy).
    pub client: IpAddr,
    /// The EHLO/HELO name.
    pub ehlo: String,
    pub envelope: Envelope,
    /// The message as received: unstuffed, CR LF line endings.
    pub message: Vec<u8>,
}

/// A SASL mechanism sesgate accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

/// Why an AUTH exchange did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong user name or password.
    Invalid,
    /// The client sent `*`.
    Cancelled,
    /// Not base64, or not the mechanism's shape.
    Malformed,
    /// This address (or this user name from it) failed too often recently.
    Throttled,
    /// The credentials could not be checked now; the client may retry.
    Unavailable,
}

/// What the connection must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reply(Reply),
    /// Write the reply, then close the connection.
    Close(Reply),
    /// Write `220 Ready to start TLS`, drop buffered input, and start the TLS handshake.
    StartTls,
    /// Run a SASL exchange; `initial` is the initial response, if the client sent one.
    Auth {
        mechanism: Mechanism,
        initial: Option<String>,
    },
    /// Write `354` and read the message.
    ReadData,
}

/// The state of one SMTP session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    tls: bool,
    ehlo: Option<String>,
    user: Option<String>,
    /// Who the peer is without AUTH (certificate or address), as the authenticator said;
    /// used only where the listener's `auth` is not `required`, and only when AUTH was not given.
    peer_identity: Option<(String, IdentifiedBy)>,
    envelope: Option<Envelope>,
    errors: u32,
    auth_failures: u32,
    /// The last line was a RCPT that added a recipient (the envelope's last), not yet confirmed
    /// by the handler (`Handler::check_recipient`).
    recipient_added: bool,
}

impl Session {
    /// A new session; `tls` is true on an implicit-TLS listener.
    pub fn new(config: SessionConfig, tls: bool) -> Self {
        Session {
            config,
            tls,
            ehlo: None,
            user: None,
            peer_identity: None,
            envelope: None,
            errors: 0,
            auth_failures: 0,
            recipient_added: false,
        }
    }

    /// The envelope, when the line just handled added a recipient (its last one): the connection
    /// asks the handler about it before the `250` goes out.
    pub fn added_recipient(&self) -> Option<&Envelope> {
        self.envelope.as_ref().filter(|_| self.recipient_added)
    }

    /// Takes back the recipient the last line added (the handler refused it).
    pub fn withdraw_recipient(&mut self) {
        if std::mem::take(&mut self.recipient_added)
            && let Some(envelope) = &mut self.envelope
        {
            envelope.recipients.pop();
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The user AUTH named.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Who sends the next transaction: the AUTH user, else (where the listener allows it) the
    /// identity of the peer.
    pub fn identity(&self) -> Option<(&str, IdentifiedBy)> {
        match (&self.user, &self.peer_identity) {
            (Some(user), _) => Some((user, IdentifiedBy::Auth)),
            (None, Some((user, how))) if self.config.auth != AuthMode::Required => {
                Some((user, *how))
            }
            _ => None,
        }
    }

    /// Sets who the peer is without AUTH (at connect, and again once TLS is up).
    pub fn set_peer_identity(&mut self, identity: Option<(String, IdentifiedBy)>) {
        self.peer_identity = identity;
    }

    fn auth_offered(&self) -> bool {
        self.config.auth != AuthMode::None && self.auth_allowed_here() && self.user.is_none()
    }

    pub fn ehlo_name(&self) -> Option<&str> {
        self.ehlo.as_deref()
    }

    fn auth_allowed_here(&self) -> bool {
        self.tls || self.config.allow_plaintext_auth
    }

    /// Counts a protocol error; past the limit the connection is closed.
    fn error(&mut self, reply: Reply) -> Step {
        self.errors += 1;
        if self.errors >= self.config.limits.max_errors {
            Step::Close(reply::too_many_errors())
        } else {
            Step::Reply(reply)
        }
    }

    /// A command line longer than the limit was received (and discarded).
    pub fn on_line_too_long(&mut self) -> Step {
        self.error(reply::line_too_long())
    }

    /// Handles one command line (terminator included).
    pub fn on_line(&mut self, line: &[u8]) -> Step {
        self.recipient_added = false;
        if line.starts_with(b"PROXY ") {
            // A PROXY header from a peer that is not a trusted proxy: refuse, never parse it.
            return Step::Close(reply::untrusted_proxy());
        }
        if has_control_character(line) {
            // smtp-proto silently drops CR inside a line and keeps DEL: the command it would
            // parse is not the one on the wire. Refused whole, whatever the command.
            let verb = line.get(..4).map(<[u8]>::to_ascii_uppercase);
            return self.error(match verb.as_deref() {
                Some(b"EHLO" | b"HELO") => reply::invalid_domain_name(),
                _ => reply::syntax("no control characters in a command"),
            });
        }
        match Request::parse(&mut line.iter()) {
            Ok(request) => self.on_request(request),
            Err(ParseError::UnknownCommand) => self.error(reply::unrecognized()),
            Err(ParseError::InvalidSenderAddress) => {
                self.error(reply::syntax("MAIL FROM:<address>"))
            }
            Err(ParseError::InvalidRecipientAddress) => {
                self.error(reply::syntax("RCPT TO:<address>"))
            }
            Err(ParseError::SyntaxError { syntax }) => self.error(reply::syntax(syntax)),
            Err(ParseError::InvalidParameter { .. } | ParseError::UnsupportedParameter { .. }) => {
                self.error(reply::unsupported_option())
            }
            Err(ParseError::ResponseTooLong) => self.on_line_too_long(),
            Err(ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. }) => {
                self.error(reply::syntax("command line"))
            }
        }
    }

    fn on_request(&mut self, request: Request<Cow<'_, str>>) -> Step {
        match request {
            Request::Ehlo { host } | Request::Helo { host } if !is_hello_name(&host) => {
                // Never stored, echoed or logged: it would reach the Received: header.
                self.error(reply::invalid_domain_name())
            }
            Request::Ehlo { host } => {
                self.envelope = None;
                self.ehlo = Some(host.into_owned());
                Step::Reply(reply::ehlo(
                    &self.config.hostname,
                    self.ehlo.as_deref().unwrap_or_default(),
                    self.config.limits.max_message_bytes,
                    self.config.tls_mode == TlsMode::Starttls && !self.tls,
                    self.auth_offered(),
                ))
            }
            Request::Helo { host } => {
                self.envelope = None;
                self.ehlo = Some(host.into_owned());
                Step::Reply(reply::helo(&self.config.hostname))
            }
            Request::StartTls => {
                if self.tls || self.config.tls_mode != TlsMode::Starttls {
                    self.error(reply::not_implemented())
                } else if self.ehlo.is_none() {
                    self.error(reply::bad_sequence("send EHLO first"))
                } else {
                    Step::StartTls
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.on_auth(mechanism, initial_response),
            Request::Mail { from } if !only_advertised_mail_parameters(&from) => {
                self.error(reply::unsupported_option())
            }
            Request::Rcpt { to } if !only_advertised_rcpt_parameters(&to) => {
                self.error(reply::unsupported_option())
            }
            Request::Mail { from } => self.on_mail(&from.address, from.size),
            Request::Rcpt { to } => self.on_rcpt(&to.address),
            Request::Data => match &self.envelope {
                None => self.error(reply::bad_sequence("send MAIL first")),
                Some(envelope) if envelope.recipients.is_empty() => {
                    self.envelope = None;
                    Step::Reply(reply::no_recipients())
                }
                Some(_) => Step::ReadData,
            },
            Request::Rset => {
                self.envelope = None;
                Step::Reply(reply::ok())
            }
            Request::Noop { .. } => Step::Reply(reply::ok()),
            Request::Vrfy { .. } => Step::Reply(reply::vrfy()),
            Request::Help { .. } => Step::Reply(reply::help()),
            Request::Quit => Step::Close(reply::bye()),
            Request::Lhlo { .. }
            | Request::Bdat { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.error(reply::not_implemented()),
        }
    }

    fn on_auth(&mut self, mechanism: u64, initial: Cow<'_, str>) -> Step {
        if self.ehlo.is_none() {
            return self.error(reply::bad_sequence("send EHLO first"));
        }
        if self.config.auth == AuthMode::None {
            return self.error(reply::not_implemented());
        }
        if self.user.is_some() {
            return self.error(reply::already_authenticated());
        }
        if self.envelope.is_some() {
            return self.error(reply::bad_sequence(
                "AUTH is not allowed during a mail transaction",
            ));
        }
        if !self.auth_allowed_here() {
            return match self.config.tls_mode {
                TlsMode::Starttls => Step::Reply(reply::starttls_first()),
                _ => Step::Reply(Reply::new(
                    538,
                    "5.7.11 Encryption required for requested authentication mechanism",
                )),
            };
        }
        let mechanism = match mechanism {
            AUTH_PLAIN => Mechanism::Plain,
            AUTH_LOGIN => Mechanism::Login,
            _ => return self.error(reply::auth_mechanism_unsupported()),
        };
        let initial = (!initial.is_empty()).then(|| initial.into_owned());
        Step::Auth { mechanism, initial }
    }

    /// The outcome of the SASL exchange started by [`Step::Auth`].
    pub fn on_auth_result(&mut self, result: Result<String, AuthFailure>) -> Step {
        match result {
            Ok(user) => {
                self.user = Some(user);
                Step::Reply(reply::auth_succeeded())
            }
            Err(AuthFailure::Invalid) => {
                self.auth_failures += 1;
                if self.auth_failures >= self.config.limits.max_auth_failures {
                    Step::Close(reply::too_many_auth_failures())
                } else {
                    Step::Reply(reply::auth_invalid())
                }
            }
            Err(AuthFailure::Throttled) => Step::Close(reply::auth_throttled()),
            // Not a failure of the credentials: not counted against them, but against the
            // session's error budget so a client cannot loop on it forever.
            Err(AuthFailure::Unavailable) => self.error(reply::auth_throttled()),
            Err(AuthFailure::Cancelled) => Step::Reply(reply::auth_cancelled()),
            Err(AuthFailure::Malformed) => self.error(reply::auth_malformed()),
        }
    }

    fn on_mail(&mut self, address: &str, declared_size: usize) -> Step {
        if self.ehlo.is_none() {
            return self.error(reply::bad_sequence("send EHLO first"));
        }
        if self.identity().is_none() {
            return Step::Reply(reply::auth_required());
        }
        if self.envelope.is_some() {
            return self.error(reply::bad_sequence("nested MAIL command"));
        }
        if !address.is_ascii() {
            return Step::Reply(reply::non_ascii_address());
        }
        if !address.is_empty() && !is_mailbox(address) {
            return self.error(reply::invalid_sender(address));
        }
        if declared_size > self.config.limits.max_message_bytes {
            return Step::Reply(reply::message_too_long());
        }
        self.envelope = Some(Envelope {
            mail_from: address.to_owned(),
            recipients: Vec::new(),
        });
        Step::Reply(reply::sender_ok())
    }

    fn on_rcpt(&mut self, address: &str) -> Step {
        let Some(envelope) = &self.envelope else {
            return self.error(reply::bad_sequence("send MAIL first"));
        };
        if envelope.recipients.len() >= self.config.limits.max_recipients {
            return Step::Reply(reply::too_many_recipients());
        }
        if !address.is_ascii() {
            return Step::Reply(reply::non_ascii_address());
        }
        if !is_mailbox(address) {
            return self.error(reply::invalid_recipient(address));
        }
        if let Some(envelope) = &mut self.envelope {
            envelope.recipients.push(address.to_owned());
            self.recipient_added = true;
        }
        Step::Reply(reply::recipient_ok())
    }

    /// The end of DATA: the message, or why it was refused. A message comes back as the
    /// transaction's parts; the envelope is consumed either way.
    pub fn on_data_end(
        &mut self,
        data: Result<Vec<u8>, DataError>,
    ) -> Result<(Envelope, Vec<u8>), Reply> {
        let envelope = self
            .envelope
            .take()
            .expect("ReadData is only stepped with an envelope");
        match data {
            Ok(message) => Ok((envelope, message)),
            Err(DataError::TooLarge) => Err(reply::message_too_long()),
            Err(DataError::BareCr) => Err(reply::bare_cr()),
            Err(DataError::LineTooLong) => Err(reply::data_line_too_long(
                self.config.limits.max_line_length,
            )),
        }
    }

    /// TLS is now active: RFC 3207 says forget everything learned before it.
    pub fn on_tls_established(&mut self) {
        self.tls = true;
        self.ehlo = None;
        self.user = None;
        self.peer_identity = None;
        self.envelope = None;
    }
}

/// An EHLO/HELO argument sesgate accepts (RFC 5321 §4.1.1.1): a domain of letter-digit-hyphen
/// labels (underscores tolerated, as Postfix does, for Windows host names), or an address
/// literal `[192.0.2.1]` / `[IPv6:2001:db8::1]`. Nothing else may reach a `Received:` header.
pub fn is_hello_name(name: &str) -> bool {
    if let Some(literal) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return match literal.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                literal[5..].parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
    }
    is_domain_name(name, b"-_")
}

/// A domain name: dot-separated labels of letters, digits and the bytes in `also` (a hyphen at
/// least), none empty, none starting or ending with a hyphen, at most 63 bytes each and 255 in
/// all. Shared by the EHLO check (which tolerates `_`) and the gateway's address reader.
pub fn is_domain_name(name: &str, also: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || also.contains(&b))
        })
}

/// MAIL FROM carries only what EHLO advertised: `SIZE=` and `BODY=7BIT`/`BODY=8BITMIME`, plus
/// `AUTH=` (RFC 4954 §5: allowed wherever AUTH is offered; its value is ignored, never trusted).
/// smtp-proto parses many more extensions (SMTPUTF8, REQUIRETLS, RET, ENVID, BY, HOLDFOR...)
/// into fields, so each of them must be looked at here.
fn only_advertised_mail_parameters(from: &MailFrom<Cow<'_, str>>) -> bool {
    let body = from.flags & (MAIL_BODY_7BIT | MAIL_BODY_8BITMIME);
    from.flags == body
        && body != (MAIL_BODY_7BIT | MAIL_BODY_8BITMIME)
        && from.trans_id.is_none()
        && from.by == 0
        && from.env_id.is_none()
        && from.solicit.is_none()
        && from.mtrk.is_none()
        && from.hold_for == 0
        && from.hold_until == 0
        && from.mt_priority == 0
}

/// RCPT TO carries no parameter: DSN (NOTIFY=, ORCPT=) and RRVS are not advertised.
fn only_advertised_rcpt_parameters(to: &RcptTo<Cow<'_, str>>) -> bool {
    to.flags == 0 && to.orcpt.is_none() && to.rrvs == 0
}

/// A control character (tab aside) in a command line before its CR LF or LF.
fn has_control_character(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.iter().any(|&b| b != b'\t' && b.is_ascii_control())
}

/// `local@domain` with both parts non-empty and no control character anywhere. smtp-proto
/// checks the rest of the grammar, but lets DEL (and, in quoted local parts, other controls)
/// through; RFC 5321 allows none of them, and an upstream or log reader may read them otherwise.
fn is_mailbox(address: &str) -> bool {
    !address.bytes().any(|b| b.is_ascii_control())
        && address
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls_mode: TlsMode) -> SessionConfig {
        SessionConfig {
            hostname: "gw.test".into(),
            tls_mode,
            allow_plaintext_auth: false,
            auth: AuthMode::Required,
            limits: Arc::new(Limits {
                max_message_bytes: 1000,
                max_recipients: 2,
                max_line_length: 1000,
                max_errors: 5,
                max_auth_failures: 3,
                ..Limits::default()
            }),
        }
    }

    fn reply_of(step: Step) -> String {
        match step {
            Step::Reply(r) | Step::Close(r) => r.to_string(),
            other => format!("{other:?}"),
        }
    }

    fn authenticated() -> Session {
        let mut s = Session::new(config(TlsMode::Implicit), true);
        s.on_line(b"EHLO client\r\n");
        assert!(matches!(
            s.on_line(b"AUTH PLAIN AGEAYg==\r\n"),
            Step::Auth {
                mechanism: Mechanism::Plain,
                ..
            }
        ));
        s.on_auth_result(Ok("user".into()));
        s
    }

    #[test]
    fn a_recipient_the_handler_refuses_is_taken_back() {
        let mut s = authenticated();
        s.on_line(b"MAIL FROM:<a@b.c>\r\n");
        assert!(s.added_recipient().is_none(), "MAIL adds no recipient");
        s.on_line(b"RCPT TO:<x@b.c>\r\n");
        assert_eq!(s.added_recipient().unwrap().recipients, ["x@b.c"]);
        s.on_line(b"RCPT TO:<y@b.c>\r\n");
        assert_eq!(s.added_recipient().unwrap().recipients, ["x@b.c", "y@b.c"]);
        s.withdraw_recipient();
        assert!(s.added_recipient().is_none());
        // Only once, and only the recipient the last line added.
        s.withdraw_recipient();
        s.on_line(b"NOOP\r\n");
        s.withdraw_recipient();
        // The refused one freed its place under max_recipients (2).
        assert_eq!(reply_of(s.on_line(b"RCPT TO:<z@b.c>\r\n")), "250 2.1.5 Ok");
        assert_eq!(s.added_recipient().unwrap().recipients, ["x@b.c", "z@b.c"]);
        // A refused RCPT (past the limit) added nothing to take back.
        assert!(reply_of(s.on_line(b"RCPT TO:<w@b.c>\r\n")).starts_with("452"));
        assert!(s.added_recipient().is_none());
        s.withdraw_recipient();
        assert_eq!(s.on_line(b"DATA\r\n"), Step::ReadData);
        let (envelope, _) = s.on_data_end(Ok(b"x\r\n".to_vec())).unwrap();
        assert_eq!(envelope.recipients, ["x@b.c", "z@b.c"]);
    }

    #[test]
    fn starttls_listener_requires_tls_before_auth() {
        let mut s = Session::new(config(TlsMode::Starttls), false);
        let ehlo = reply_of(s.on_line(b"EHLO client\r\n"));
        assert!(
            ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
            "{ehlo}"
        );
        assert_eq!(
            reply_of(s.on_line(b"AUTH LOGIN\r\n")),
            "530 5.7.0 Must issue a STARTTLS command first"
        );
        assert_eq!(
            reply_of(s.on_line(b"MAIL FROM:<a@b.c>\r\n")),
            "530 5.7.0 Authentication required"
        );
        assert_eq!(s.on_line(b"STARTTLS\r\n"), Step::StartTls);
        s.on_tls_established();
        assert!(s.ehlo_name().is_none(), "EHLO must be sent again");
        let ehlo = reply_of(s.on_line(b"EHLO client\r\n"));
        assert!(
            !ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"),
            "{ehlo}"
        );
        assert_eq!(
            reply_of(s.on_line(b"STARTTLS\r\n")),
            "502 5.5.1 Command not implemented"
        );
    }

    #[test]
    fn control_characters_in_a_command_are_refused_not_dropped() {
        let mut s = Session::new(config(TlsMode::Implicit), true);
        s.on_line(b"EHLO c\r\n");
        s.on_auth_result(Ok("u".into()));
        for line in [
            &b"MAIL FROM:<a\x7fb@example.com>\r\n"[..],
            b"MAIL FROM:<\"a\rb\"@example.com>\r\n",
            b"MAIL FROM:<ab@example.com>\r\r\n",
            b"MAIL FROM:<a@exa\x00mple.com>\r\n",
        ] {
            let reply = reply_of(s.on_line(line));
            assert!(reply.starts_with("501 "), "{line:?}: {reply}");
        }
        let mut fresh = Session::new(config(TlsMode::Implicit), true);
        assert!(reply_of(fresh.on_line(b"EHLO a\x1bb\r\n")).starts_with("501 5.5.2"));
        assert!(reply_of(s.on_line(b"MAIL FROM:<a@example.com>\tSIZE=10\n")).starts_with("250"));
    }

    #[test]
    fn plaintext_auth_only_when_allowed() {
        let mut closed = Session::new(config(TlsMode::None), false);
        closed.on_line(b"EHLO c\r\n");
        assert!(reply_of(closed.on_line(b"AUTH PLAIN\r\n")).starts_with("538 "));
        let mut open = Session::new(
            SessionConfig {
                allow_plaintext_auth: true,
                auth: AuthMode::Required,
                ..config(TlsMode::None)
            },
            false,
        );
        assert!(reply_of(open.on_line(b"EHLO c\r\n")).contains("AUTH PLAIN LOGIN"));
        assert_eq!(
            open.on_line(b"AUTH LOGIN dXNlcg==\r\n"),
            Step::Auth {
                mechanism: Mechanism::Login,
                initial: Some("dXNlcg==".into())
            }
        );
    }

    #[test]
    fn three_failures_close_the_session() {
        let mut s = Session::new(config(TlsMode::Implicit), true);
        s.on_line(b"EHLO c\r\n");
        assert_eq!(
            reply_of(s.on_auth_result(Err(AuthFailure::Invalid))),
            "535 5.7.8 Authentication Credentials Invalid"
        );
        assert_eq!(
            reply_of(s.on_auth_result(Err(AuthFailure::Invalid))),
            "535 5.7.8 Authentication Credentials Invalid"
        );
        assert!(
            matches!(s.on_auth_result(Err(AuthFailure::Invalid)), Step::Close(r) if r.code == 421)
        );
    }

    #[test]
    fn an_unchecked_auth_is_a_temporary_failure_that_keeps_the_session() {
        let mut s = Session::new(config(TlsMode::Implicit), true);
        s.on_line(b"EHLO c\r\n");
        for _ in 0..3 {
            assert_eq!(
                reply_of(s.on_auth_result(Err(AuthFailure::Unavailable))),
                "454 4.7.0 Temporary authentication failure"
            );
        }
        assert_eq!(
            reply_of(s.on_auth_result(Ok("u".into()))),
            "235 2.7.0 Authentication successful."
        );
    }

    #[test]
    fn envelope_rules() {
        let mut s = authenticated();
        assert_eq!(
            reply_of(s.on_line(b"RCPT TO:<x@y.z>\r\n")),
            "503 5.5.1 Bad sequence of commands: send MAIL first"
        );
        assert_eq!(
            reply_of(s.on_line(b"MAIL FROM:<a@b.c> SIZE=1001\r\n")),
            "552 5.3.4 Message is too long."
        );
        assert_eq!(
            reply_of(s.on_line(b"MAIL FROM:<a@b.c> SIZE=1000 BODY=8BITMIME\r\n")),
            "250 2.1.0 Ok"
        );
        assert_eq!(
            reply_of(s.on_line(b"DATA\r\n")),
            "554 5.5.1 Transaction failed: There are no recipients specified"
        );
        assert_eq!(reply_of(s.on_line(b"MAIL FROM:<>\r\n")), "250 2.1.0 Ok");
        assert_eq!(
            reply_of(s.on_line(b"MAIL FROM:<a@b.c>\r\n")),
            "503 5.5.1 Bad sequence of commands: nested MAIL command"
        );
        assert_eq!(
            reply_of(s.on_line(b"RCPT TO:<one@y.z>\r\n")),
            "250 2.1.5 Ok"
        );
        assert_eq!(
            reply_of(s.on_line(b"RCPT TO:<two@y.z>\r\n")),
            "250 2.1.5 Ok"
        );
        assert_eq!(
            reply_of(s.on_line(b"RCPT TO:<three@y.z>\r\n")),
            "452 4.5.3 Too many recipients"
        );
        assert_eq!(
            reply_of(s.on_line("RCPT TO:<ü@y.z>\r\n".as_bytes())),
            "452 4.5.3 Too many recipients"
        );
        assert_eq!(s.on_line(b"DATA\r\n"), Step::ReadData);
        let (envelope, message) = s.on_data_end(Ok(b"x\r\n".to_vec())).unwrap();
        assert_eq!(envelope.mail_from, "");
        assert_eq!(envelope.recipients, ["one@y.z", "two@y.z"]);
        assert_eq!(message, b"x\r\n");
        assert_eq!(
            reply_of(s.on_line(b"DATA\r\n")),
            "503 5.5.1 Bad sequence of commands: send MAIL first"
        );
    }

    #[test]
    fn non_ascii_addresses_are_refused() {
        let mut s = authenticated();
        assert!(
            reply_of(s.on_line("MAIL FROM:<jürgen@example.com>\r\n".as_bytes()))
                .starts_with("553 5.6.7")
        );
        s.on_line(b"MAIL FROM:<a@b.c>\r\n");
        assert!(
            reply_of(s.on_line("RCPT TO:<jürgen@example.com>\r\n".as_bytes()))
                .starts_with("553 5.6.7")
        );
    }

    #[test]
    fn errors_are_counted_and_close_the_session() {
        let mut s = Session::new(config(TlsMode::Implicit), true);
        for _ in 0..4 {
            assert!(matches!(s.on_line(b"BOGUS\r\n"), Step::Reply(r) if r.code == 500));
        }
        assert!(matches!(s.on_line(b"BOGUS\r\n"), Step::Close(r) if r.code == 421));
    }

    #[test]
    fn small_commands() {
        let mut s = Session::new(config(TlsMode::Implicit), true);
        assert_eq!(reply_of(s.on_line(b"NOOP\r\n")), "250 2.0.0 Ok");
        assert!(reply_of(s.on_line(b"VRFY postmaster\r\n")).starts_with("252 "));
        assert!(reply_of(s.on_line(b"HELP\r\n")).starts_with("214 "));
        assert_eq!(reply_of(s.on_line(b"RSET\r\n")), "250 2.0.0 Ok");
        assert!(
            matches!(s.on_line(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), Step::Close(r) if r.code == 421)
        );
        assert!(matches!(s.on_line(b"QUIT\r\n"), Step::Close(r) if r.code == 221));
    }

    #[test]
    fn hello_names() {
        for good in [
            "localhost",
            "mail.example.com",
            "a-b.c0",
            "WIN_PC",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "[ipv6:::1]",
        ] {
            assert!(is_hello_name(good), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["abc"; 65].join(".");
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "-a",
            "a-",
            "a b",
            "a<b>",
            "a\x1b",
            "[]",
            "[1.2.3]",
            "[::1]",
            "[IPv6:1.2.3.4]",
            "[x:y]",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_hello_name(bad), "{bad}");
        }
    }

    #[test]
    fn unadvertised_parameters_are_refused() {
        let mut s = authenticated();
        assert_eq!(
            reply_of(s.on_line(b"MAIL FROM:<a@b.c> SMTPUTF8\r\n")),
            "555 5.5.4 Unsupported option"
        );
        assert_eq!(
            reply_of(s.on_line(b"MAIL FROM:<a@b.c> AUTH=<>\r\n")),
            "250 2.1.0 Ok"
        );
        assert_eq!(
            reply_of(s.on_line(b"RCPT TO:<x@y.z> NOTIFY=NEVER\r\n")),
            "555 5.5.4 Unsupported option"
        );
        assert_eq!(
            reply_of(s.on_line(b"EHLO bad_\xff\r\n")),
            "501 5.5.2 Invalid domain name"
        );
    }

    #[test]
    fn data_errors_map_to_replies() {
        for (error, code) in [
            (DataError::TooLarge, 552),
            (DataError::BareCr, 554),
            (DataError::LineTooLong, 554),
        ] {
            let mut s = authenticated();
            s.on_line(b"MAIL FROM:<a@b.c>\r\n");
            s.on_line(b"RCPT TO:<x@y.z>\r\n");
            assert_eq!(s.on_data_end(Err(error)).unwrap_err().code, code);
        }
    }

    fn with_auth(auth: AuthMode, tls_mode: TlsMode) -> Session {
        let mut s = Session::new(
            SessionConfig {
                auth,
                allow_plaintext_auth: true,
                ..config(tls_mode)
            },
            false,
        );
        s.on_line(b"EHLO client.test\r\n");
        s
    }

    #[test]
    fn a_peer_identity_counts_only_where_the_listener_allows_it() {
        let device = || Some(("printer".to_owned(), IdentifiedBy::Network));
        let mut required = with_auth(AuthMode::Required, TlsMode::None);
        required.set_peer_identity(device());
        assert_eq!(
            reply_of(required.on_line(b"MAIL FROM:<a@example.com>\r\n")),
            "530 5.7.0 Authentication required"
        );
        let mut optional = with_auth(AuthMode::Optional, TlsMode::None);
        assert_eq!(
            reply_of(optional.on_line(b"MAIL FROM:<a@example.com>\r\n")),
            "530 5.7.0 Authentication required"
        );
        optional.set_peer_identity(device());
        assert_eq!(
            optional.identity(),
            Some(("printer", IdentifiedBy::Network))
        );
        assert!(reply_of(optional.on_line(b"MAIL FROM:<a@example.com>\r\n")).starts_with("250"));
    }

    #[test]
    fn auth_wins_and_none_listeners_neither_offer_nor_accept_it() {
        let mut optional = with_auth(AuthMode::Optional, TlsMode::None);
        optional.set_peer_identity(Some(("printer".into(), IdentifiedBy::Network)));
        optional.on_auth_result(Ok("app".into()));
        assert_eq!(optional.identity(), Some(("app", IdentifiedBy::Auth)));

        let mut none = with_auth(AuthMode::None, TlsMode::None);
        assert!(!reply_of(none.on_line(b"EHLO client.test\r\n")).contains("AUTH"));
        assert!(reply_of(none.on_line(b"AUTH PLAIN AGEAYg==\r\n")).starts_with("502"));
    }

    #[test]
    fn tls_forgets_the_plaintext_peer_identity() {
        let mut s = with_auth(AuthMode::Optional, TlsMode::Starttls);
        s.set_peer_identity(Some(("printer".into(), IdentifiedBy::Network)));
        s.on_tls_established();
        assert_eq!(s.identity(), None);
    }
}
