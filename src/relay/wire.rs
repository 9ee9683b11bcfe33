//! sesgate's own SMTP client for the upstream: greeting, EHLO, STARTTLS (RFC 3207), AUTH PLAIN
//! and LOGIN (RFC 4954), and transactions pipelined when the upstream offers PIPELINING
//! (RFC 2920): MAIL, every RCPT and DATA in one write, their replies read together, then the
//! message in one vectored write.
//!
//! Why not lettre's client (measured, benches/README.md): lettre sends each command and waits
//! for its reply (four round trips per message), and re-stuffs the message byte by byte into a
//! new buffer. Here the message is dot-stuffed on the fly: the slices written point into the
//! message itself, with a one-byte "." slice before each line that starts with a dot, so the
//! body is never copied.
//!
//! A connection is only ever reused after a transaction that ended in the upstream's 2xx to
//! the message; every other outcome leaves it in a state this client does not track (a 354
//! that was not followed by a message, a reply not read) and the caller drops it.

use std::io::IoSlice;
use std::sync::Arc;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Anything a connection runs over: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The longest reply line read from an upstream, and the most lines in one reply: an upstream
/// (or whoever sits on the path to it) must not make sesgate buffer without bound.
const MAX_REPLY_LINE: usize = 2048;
const MAX_REPLY_LINES: usize = 64;
/// The most slices handed to one `writev` (Linux's IOV_MAX is 1024).
const MAX_SLICES: usize = 1024;

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply's text, its lines joined by a space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    fn is(&self, class: u16) -> bool {
        self.code / 100 == class
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum WireError {
    /// The connection failed or closed (TCP or TLS).
    Io(std::io::Error),
    /// The upstream broke the protocol, or lacks what is required (STARTTLS, an AUTH mechanism).
    Protocol(String),
    /// The upstream answered with a code other than the one expected.
    Reply(Reply),
}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e)
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Protocol(why) => f.write_str(why),
            WireError::Reply(reply) => write!(f, "{} {}", reply.code, reply.text()),
        }
    }
}

/// How to reach and greet the upstream.
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// `Some` for TLS: implicit (`implicit`) or STARTTLS, required.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub implicit_tls: bool,
    pub credentials: Option<(String, String)>,
    pub hello: String,
}

/// What the upstream's EHLO reply offers.
#[derive(Debug, Default, Clone, Copy)]
struct Extensions {
    pipelining: bool,
    eight_bit: bool,
    starttls: bool,
    auth_plain: bool,
    auth_login: bool,
}

impl Extensions {
    fn of(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split([' ', '=']);
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "8BITMIME" => ext.eight_bit = true,
                "STARTTLS" => ext.starttls = true,
                "AUTH" => {
                    for mechanism in words {
                        match mechanism.to_ascii_uppercase().as_str() {
                            "PLAIN" => ext.auth_plain = true,
                            "LOGIN" => ext.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }
}

/// How a transaction failed.
#[derive(Debug)]
pub enum TransferError {
    /// No reply to MAIL FROM was read: the connection was dead before the transaction, and
    /// nothing of it can have been accepted.
    BeforeMail(WireError),
    /// Anything later.
    Later(WireError),
    /// Every recipient was refused at RCPT (only when refusals are tolerated per recipient);
    /// by index, with the upstream's reply.
    NoRecipient(Vec<(usize, Reply)>),
    /// The upstream cannot take this message at all (sesgate's own reply text).
    Refused(String),
}

/// A message the upstream accepted: its reply, and the recipients it refused at RCPT (only
/// when refusals are tolerated per recipient).
#[derive(Debug)]
pub struct Accepted {
    pub reply: Reply,
    pub refused: Vec<(usize, Reply)>,
}

/// One open, greeted (and, when configured, secured and authenticated) connection.
pub struct Connection {
    stream: Box<dyn Stream>,
    /// Bytes read and not yet parsed.
    input: Vec<u8>,
    extensions: Extensions,
    /// Reused for the commands of each transaction.
    commands: Vec<u8>,
}

impl Connection {
    /// Connects, reads the greeting, says EHLO, upgrades with STARTTLS and authenticates as
    /// `settings` ask. TCP_NODELAY is set on every path, implicit TLS included: replies and
    /// messages are written whole, and Nagle's algorithm would hold their tails.
    pub async fn open(settings: &Settings) -> Result<Connection, WireError> {
        let tcp = TcpStream::connect((settings.host.as_str(), settings.port)).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match (&settings.tls, settings.implicit_tls) {
            (Some(config), true) => Box::new(handshake(config, &settings.host, tcp).await?),
            _ => Box::new(tcp),
        };
        let mut conn = Connection {
            stream,
            input: Vec::with_capacity(1024),
            extensions: Extensions::default(),
            commands: Vec::with_capacity(256),
        };
        conn.expect(220).await?;
        conn.ehlo(&settings.hello).await?;
        if let (Some(config), false) = (&settings.tls, settings.implicit_tls) {
            // Required, never opportunistic: an upstream (or an attacker on the path) that does
            // not offer STARTTLS gets nothing.
            if !conn.extensions.starttls {
                return Err(WireError::Protocol(
                    "the upstream does not offer STARTTLS".into(),
                ));
            }
            conn.command(b"STARTTLS\r\n", 220).await?;
            // Bytes after the 220 came before TLS: they must never be read as replies inside
            // it (the client side of CVE-2011-0411's class).
            if !conn.input.is_empty() {
                return Err(WireError::Protocol(
                    "the upstream sent data after its STARTTLS reply".into(),
                ));
            }
            let plain = std::mem::replace(&mut conn.stream, Box::new(tokio::io::empty()));
            conn.stream = Box::new(handshake(config, &settings.host, plain).await?);
            conn.ehlo(&settings.hello).await?;
        }
        if let Some((user, password)) = &settings.credentials {
            conn.authenticate(user, password).await?;
        }
        Ok(conn)
    }

    async fn ehlo(&mut self, hello: &str) -> Result<(), WireError> {
        let command = format!("EHLO {hello}\r\n");
        self.stream.write_all(command.as_bytes()).await?;
        let reply = self.read_reply().await?;
        if !reply.is(2) {
            return Err(WireError::Reply(reply));
        }
        self.extensions = Extensions::of(&reply);
        Ok(())
    }

    async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), WireError> {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        if self.extensions.auth_plain {
            let token = b64(format!("\0{user}\0{password}").as_bytes());
            self.command(format!("AUTH PLAIN {token}\r\n").as_bytes(), 235)
                .await
                .map(drop)
        } else if self.extensions.auth_login {
            self.command(b"AUTH LOGIN\r\n", 334).await?;
            self.command(format!("{}\r\n", b64(user.as_bytes())).as_bytes(), 334)
                .await?;
            self.command(format!("{}\r\n", b64(password.as_bytes())).as_bytes(), 235)
                .await
                .map(drop)
        } else {
            Err(WireError::Protocol(
                "the upstream offers neither AUTH PLAIN nor AUTH LOGIN".into(),
            ))
        }
    }

    /// Sends one command and expects `code`.
    async fn command(&mut self, command: &[u8], code: u16) -> Result<Reply, WireError> {
        self.stream.write_all(command).await?;
        self.expect(code).await
    }

    async fn expect(&mut self, code: u16) -> Result<Reply, WireError> {
        let reply = self.read_reply().await?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(WireError::Reply(reply))
        }
    }

    /// Whether the connection still answers (NOOP), for an idle pooled connection.
    pub async fn is_alive(&mut self) -> bool {
        self.command(b"NOOP\r\n", 250).await.is_ok()
    }

    /// Says QUIT without waiting for the answer; the connection is dropped either way.
    pub async fn quit(mut self) {
        let _ = self.stream.write_all(b"QUIT\r\n").await;
        let _ = self.stream.shutdown().await;
    }

    /// One reply, possibly of several lines. Bounded: see `MAX_REPLY_LINE`.
    async fn read_reply(&mut self) -> Result<Reply, WireError> {
        let mut lines = Vec::new();
        let mut scanned = 0;
        let mut start = 0;
        loop {
            let Some(newline) = memchr::memchr(b'\n', &self.input[scanned..]) else {
                if self.input.len() - start > MAX_REPLY_LINE {
                    return Err(WireError::Protocol(
                        "an upstream reply line is too long".into(),
                    ));
                }
                scanned = self.input.len();
                self.input.reserve(4096);
                if self.stream.read_buf(&mut self.input).await? == 0 {
                    return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                continue;
            };
            let end = scanned + newline;
            let line = &self.input[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let code = line
                .get(..3)
                .filter(|c| c.iter().all(u8::is_ascii_digit))
                .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c) || *c == 354 || *c == 334)
                .ok_or_else(|| WireError::Protocol("a malformed upstream reply".into()))?;
            let more = match line.get(3) {
                None | Some(b' ') => false,
                Some(b'-') => true,
                Some(_) => {
                    return Err(WireError::Protocol("a malformed upstream reply".into()));
                }
            };
            let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
            if lines.len() >= MAX_REPLY_LINES {
                return Err(WireError::Protocol(
                    "an upstream reply has too many lines".into(),
                ));
            }
            lines.push((code, text));
            start = end + 1;
            scanned = start;
            if !more {
                self.input.drain(..start);
                let code = lines[0].0;
                if lines.iter().any(|(c, _)| *c != code) {
                    return Err(WireError::Protocol(
                        "an upstream reply changes code between lines".into(),
                    ));
                }
                return Ok(Reply {
                    code,
                    lines: lines.into_iter().map(|(_, text)| text).collect(),
                });
            }
        }
    }

    /// One transaction: MAIL, RCPT for each recipient, DATA and the message (`parts`, in
    /// order, unstuffed, every line ending in CR LF), pipelined when the upstream offers it.
    /// With `per_recipient`, recipients refused at RCPT are set aside and the message goes to
    /// the others; without, one refused recipient fails the whole message (SES's
    /// all-or-nothing rule) and the message is not sent.
    pub async fn transfer(
        &mut self,
        mail_from: &str,
        recipients: &[String],
        parts: &[&[u8]],
        per_recipient: bool,
    ) -> Result<Accepted, TransferError> {
        if !self.input.is_empty() {
            // Bytes nobody asked for (an extra reply after the last one): read as the replies
            // to this transaction they would shift every reply by one. The connection is in
            // an unknown state; nothing of this transaction was sent on it.
            return Err(TransferError::BeforeMail(WireError::Protocol(
                "the upstream sent an unexpected reply".into(),
            )));
        }
        let eight_bit = !parts.iter().all(|p| p.is_ascii());
        if eight_bit && !self.extensions.eight_bit {
            return Err(TransferError::Refused(
                "5.6.3 the message has 8-bit content and the upstream does not offer 8BITMIME"
                    .into(),
            ));
        }
        let mut commands = std::mem::take(&mut self.commands);
        commands.clear();
        commands.extend_from_slice(b"MAIL FROM:<");
        commands.extend_from_slice(mail_from.as_bytes());
        commands.extend_from_slice(if eight_bit {
            b"> BODY=8BITMIME\r\n".as_slice()
        } else {
            b">\r\n".as_slice()
        });
        let mail_end = commands.len();
        let mut rcpt_ends = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            commands.extend_from_slice(b"RCPT TO:<");
            commands.extend_from_slice(recipient.as_bytes());
            commands.extend_from_slice(b">\r\n");
            rcpt_ends.push(commands.len());
        }
        commands.extend_from_slice(b"DATA\r\n");
        let outcome = if self.extensions.pipelining {
            self.envelope_pipelined(&commands, recipients.len()).await
        } else {
            self.envelope_in_turn(&commands, mail_end, &rcpt_ends, per_recipient)
                .await
        };
        self.commands = commands;
        let (mail, rcpts, data) = outcome?;
        let later = |reply| Err(TransferError::Later(WireError::Reply(reply)));
        if !mail.is(2) {
            return later(mail);
        }
        let refused: Vec<(usize, Reply)> = rcpts
            .into_iter()
            .enumerate()
            .filter(|(_, reply)| !reply.is(2))
            .collect();
        if !refused.is_empty() {
            if !per_recipient {
                // All or nothing: even if DATA got its 354, the message is not sent, and the
                // caller drops the connection (the upstream discards a message without its end).
                return later(refused[0].1.clone());
            }
            if refused.len() == recipients.len() {
                return Err(TransferError::NoRecipient(refused));
            }
        }
        let Some(data) = data else {
            return Err(TransferError::Later(WireError::Protocol(
                "DATA was not sent".into(),
            )));
        };
        if data.code != 354 {
            return later(data);
        }
        write_stuffed(&mut self.stream, parts)
            .await
            .map_err(|e| TransferError::Later(e.into()))?;
        let reply = self.read_reply().await.map_err(TransferError::Later)?;
        if !reply.is(2) {
            return later(reply);
        }
        Ok(Accepted { reply, refused })
    }

    /// MAIL, RCPTs and DATA in one write; their replies.
    async fn envelope_pipelined(
        &mut self,
        commands: &[u8],
        recipients: usize,
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), TransferError> {
        self.stream
            .write_all(commands)
            .await
            .map_err(|e| TransferError::BeforeMail(e.into()))?;
        let mail = self.read_reply().await.map_err(TransferError::BeforeMail)?;
        if !mail.is(2) {
            // The transaction failed with MAIL's reply; the rest is not read (an upstream may
            // close after a 421) and the connection is dropped.
            return Ok((mail, Vec::new(), None));
        }
        let mut rcpts = Vec::with_capacity(recipients);
        for _ in 0..recipients {
            rcpts.push(self.read_reply().await.map_err(TransferError::Later)?);
        }
        let data = self.read_reply().await.map_err(TransferError::Later)?;
        Ok((mail, rcpts, Some(data)))
    }

    /// Without PIPELINING: each command waits for its reply; DATA only once a recipient (every
    /// recipient, unless refusals are per recipient) was accepted.
    async fn envelope_in_turn(
        &mut self,
        commands: &[u8],
        mail_end: usize,
        rcpt_ends: &[usize],
        per_recipient: bool,
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), TransferError> {
        self.stream
            .write_all(&commands[..mail_end])
            .await
            .map_err(|e| TransferError::BeforeMail(e.into()))?;
        let mail = self.read_reply().await.map_err(TransferError::BeforeMail)?;
        if !mail.is(2) {
            return Ok((mail, Vec::new(), None));
        }
        let mut rcpts = Vec::with_capacity(rcpt_ends.len());
        let mut start = mail_end;
        for &end in rcpt_ends {
            let reply = self
                .command(&commands[start..end], 250)
                .await
                .or_else(|e| match e {
                    WireError::Reply(reply) => Ok(reply),
                    other => Err(other),
                })
                .map_err(TransferError::Later)?;
            rcpts.push(reply);
            start = end;
        }
        let accepted = rcpts.iter().filter(|r| r.is(2)).count();
        if accepted == 0 || (accepted < rcpts.len() && !per_recipient) {
            // The caller fails the transaction; DATA is not sent.
            return Ok((mail, rcpts, None));
        }
        self.stream
            .write_all(&commands[start..])
            .await
            .map_err(|e| TransferError::Later(e.into()))?;
        let data = self.read_reply().await.map_err(TransferError::Later)?;
        Ok((mail, rcpts, Some(data)))
    }
}

/// The TLS handshake with `host`'s name checked against its certificate.
async fn handshake<S: Stream>(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    stream: S,
) -> Result<tokio_rustls::client::TlsStream<S>, WireError> {
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| WireError::Protocol(format!("bad TLS server name {host:?}: {e}")))?;
    Ok(tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, stream)
        .await?)
}

/// The slices that put `parts` on the wire as DATA content: a "." before every line that
/// starts with one, and the end of data. The slices borrow the message: nothing is copied.
pub fn stuffed_slices<'a>(parts: &[&'a [u8]]) -> Vec<IoSlice<'a>> {
    const DOT: &[u8] = b".";
    let mut slices = Vec::with_capacity(parts.len() + 2);
    let mut at_line_start = true;
    let mut last = 0u8;
    let mut before_last = 0u8;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let mut from = 0;
        if at_line_start && part[0] == b'.' {
            slices.push(IoSlice::new(DOT));
        }
        for newline in memchr::memmem::find_iter(part, b"\n.") {
            slices.push(IoSlice::new(&part[from..=newline]));
            slices.push(IoSlice::new(DOT));
            from = newline + 1;
        }
        slices.push(IoSlice::new(&part[from..]));
        at_line_start = part.ends_with(b"\n");
        before_last = if part.len() >= 2 {
            part[part.len() - 2]
        } else {
            last
        };
        last = part[part.len() - 1];
    }
    let ends_in_crlf = before_last == b'\r' && last == b'\n';
    slices.push(IoSlice::new(if ends_in_crlf {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    }));
    slices
}

/// Writes the message, stuffed, in as few `writev` calls as the kernel allows.
async fn write_stuffed(stream: &mut Box<dyn Stream>, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices = stuffed_slices(parts);
    let mut rest = slices.as_mut_slice();
    while !rest.is_empty() {
        let batch = rest.len().min(MAX_SLICES);
        let written = stream.write_vectored(&rest[..batch]).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, written);
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(parts: &[&[u8]]) -> Vec<u8> {
        stuffed_slices(parts)
            .iter()
            .flat_map(|s| s.to_vec())
            .collect()
    }

    #[test]
    fn dots_are_stuffed_across_parts_and_the_end_is_added() {
        assert_eq!(wire(&[b"a\r\n"]), b"a\r\n.\r\n");
        assert_eq!(wire(&[]), b"\r\n.\r\n");
        assert_eq!(wire(&[b".x\r\n"]), b"..x\r\n.\r\n");
        assert_eq!(
            wire(&[b"H: v\r\n", b".\r\n..\r\nb\r\n.c\r\n"]),
            b"H: v\r\n..\r\n...\r\nb\r\n..c\r\n.\r\n"
        );
        // A dot not at a line start is data.
        assert_eq!(wire(&[b"a.b\r\n", b"x.\r\n"]), b"a.b\r\nx.\r\n.\r\n");
        // A part boundary inside a line is not a line start.
        assert_eq!(wire(&[b"ab", b".c\r\n"]), b"ab.c\r\n.\r\n");
        // Without a final CR LF, one is added before the end.
        assert_eq!(wire(&[b"a\r\n", b"b"]), b"a\r\nb\r\n.\r\n");
        assert_eq!(wire(&[b"a\r", b"\n"]), b"a\r\n.\r\n");
    }

    #[test]
    fn a_header_part_puts_the_same_bytes_on_the_wire_as_the_joined_message() {
        // What the relay sends since the trace header travels apart must be what it sent when
        // the header was copied in front of the message: for every message, whatever its
        // dots and line ends.
        let header: &[u8] = b"Received: from c ([127.0.0.1])\r\n\tby gw (sesgate);\r\n\tdate\r\n";
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        for length in 0..=6u32 {
            for mut code in 0..4usize.pow(length) {
                let mut message = Vec::new();
                for _ in 0..length {
                    message.push(alphabet[code % 4]);
                    code /= 4;
                }
                let joined = [header, &message].concat();
                assert_eq!(wire(&[header, &message]), wire(&[&joined]), "{message:?}");
            }
        }
    }

    #[test]
    fn a_stuffed_message_cannot_end_early() {
        // The end sequence inside the message comes out stuffed.
        let message = b"a\r\n.\r\nMAIL FROM:<x@evil>\r\n";
        let out = wire(&[message]);
        let end = memchr::memmem::find(&out, b"\r\n.\r\n").unwrap();
        assert_eq!(end + 5, out.len(), "only the real end: {out:?}");
    }

    #[test]
    fn extensions_are_read_from_ehlo() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "mx.test".into(),
                "PIPELINING".into(),
                "AUTH=LOGIN".into(),
                "8bitmime".into(),
            ],
        };
        let ext = Extensions::of(&reply);
        assert!(ext.pipelining && ext.auth_login && ext.eight_bit);
        assert!(!ext.starttls && !ext.auth_plain);
    }
}
