//! One connection: the only code in `smtp` that awaits. It frames command lines, runs the SASL
//! and DATA exchanges, upgrades to TLS, enforces timeouts, and asks the [`Session`] what to do.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info};

use super::data::DataReader;
use super::limits::AuthRefusal;
use super::reply::{self, Reply};
use super::sasl;
use super::session::{AuthFailure, Mechanism, Session, Step, Transaction};
use super::{AuthOutcome, Authenticator, Handler, Shared};

/// Anything a session can run over: TCP, PROXY-wrapped TCP, or TLS over either.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The longest command line (RFC 5321 allows 512; AUTH PLAIN initial responses need more).
const MAX_COMMAND_LINE: usize = 4096;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Replies held back for one write before they are flushed anyway.
const MAX_PENDING_REPLIES: usize = 4096;

/// Why a connection ends without a normal QUIT.
#[derive(Debug)]
enum End {
    /// The client went away.
    Closed,
    /// No data within the timeout, or a command or message not complete by its deadline.
    Timeout,
    /// The connection reached its lifetime (`session_timeout`).
    Expired,
    /// The server is shutting down.
    Shutdown,
    /// A socket or TLS error.
    Io(std::io::Error),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Io(e)
    }
}

/// A command line (its length: the line is the first bytes of the input buffer, left there
/// for the caller to read in place and then consume), or the fact that one was too long (and
/// has been discarded).
enum Line {
    Complete(usize),
    TooLong,
}

pub(super) struct Connection<H, A> {
    io: Option<Box<dyn Io>>,
    input: Vec<u8>,
    output: Vec<u8>,
    session: Session,
    shared: Arc<Shared<H, A>>,
    client: IpAddr,
    id: String,
    shutdown: watch::Receiver<bool>,
    /// When the connection is closed whatever it is doing (`session_timeout`).
    session_deadline: Instant,
    /// The listener's own TLS acceptor (one that asks for client certificates), if any.
    tls: Option<super::TlsSource>,
}

impl<H: Handler, A: Authenticator> Connection<H, A> {
    pub(super) fn new(
        io: Box<dyn Io>,
        session: Session,
        shared: Arc<Shared<H, A>>,
        client: IpAddr,
        id: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let session_deadline = Instant::now() + shared.limits.session_timeout;
        Connection {
            io: Some(io),
            input: Vec::new(),
            output: Vec::new(),
            session,
            shared,
            client,
            id,
            shutdown,
            session_deadline,
            tls: None,
        }
    }

    pub(super) fn with_tls_source(mut self, tls: Option<super::TlsSource>) -> Self {
        self.tls = tls;
        self
    }

    /// Counts the session's lifetime from `deadline` (set from the accept, so that the
    /// handshakes count too) instead of from now.
    pub(super) fn with_session_deadline(mut self, deadline: Instant) -> Self {
        self.session_deadline = deadline;
        self
    }

    /// Runs the session to its end. Errors are logged, never returned: a connection's failure
    /// concerns only that connection.
    pub(super) async fn run(mut self) {
        let greeting = reply::greeting(&self.session.config().hostname);
        self.send(&greeting);
        let end = self.serve().await;
        let reply = match &end {
            Ok(()) | Err(End::Closed) | Err(End::Io(_)) => None,
            Err(End::Timeout) => Some(reply::timeout()),
            Err(End::Expired) => Some(reply::session_expired()),
            Err(End::Shutdown) => Some(reply::shutting_down()),
        };
        if let Some(reply) = reply {
            self.send(&reply);
        }
        let _ = self.flush().await;
        if let Some(io) = self.io.as_mut() {
            let _ = io.shutdown().await;
        }
        match end {
            Err(End::Io(e)) => {
                debug!(session = %self.id, client = %self.client, error = %e, "connection error")
            }
            Err(End::Timeout) => info!(session = %self.id, client = %self.client, "timeout"),
            Err(End::Expired) => {
                info!(session = %self.id, client = %self.client, "session lifetime reached")
            }
            _ => debug!(session = %self.id, client = %self.client, "connection closed"),
        }
    }

    async fn serve(&mut self) -> Result<(), End> {
        loop {
            // Replies to pipelined commands are batched until more input is needed; a client
            // that pipelines without reading must not make that batch grow with its input.
            if self.output.len() >= MAX_PENDING_REPLIES {
                self.flush().await?;
            }
            let step = match self
                .read_line(self.shared.limits.idle_timeout, true)
                .await?
            {
                Line::Complete(length) => {
                    let step = self.session.on_line(&self.input[..length]);
                    self.input.drain(..length);
                    step
                }
                Line::TooLong => self.session.on_line_too_long(),
            };
            match step {
                Step::Reply(reply) => {
                    let reply = self.check_recipient().await.unwrap_or(reply);
                    self.log_refusal(&reply);
                    self.send(&reply);
                }
                Step::Close(reply) => {
                    self.log_refusal(&reply);
                    self.send(&reply);
                    return Ok(());
                }
                Step::StartTls => self.start_tls().await?,
                Step::Auth { mechanism, initial } => {
                    let result = self.authenticate(mechanism, initial).await?;
                    match self.session.on_auth_result(result) {
                        Step::Close(reply) => {
                            self.send(&reply);
                            return Ok(());
                        }
                        Step::Reply(reply) => self.send(&reply),
                        other => unreachable!("on_auth_result returns replies only, not {other:?}"),
                    }
                }
                Step::ReadData => {
                    self.send(&reply::start_data());
                    let data = self.read_data().await?;
                    let reply = match self.session.on_data_end(data) {
                        Err(reply) => reply,
                        Ok((envelope, message)) => {
                            let (user, identified_by) = self
                                .session
                                .identity()
                                .expect("MAIL is only accepted from an identified client");
                            let transaction = Transaction {
                                session_id: self.id.clone(),
                                user: user.to_owned(),
                                identified_by,
                                tls: self.session.is_tls(),
                                client: self.client,
                                ehlo: self.session.ehlo_name().unwrap_or_default().to_owned(),
                                envelope,
                                message,
                            };
                            self.shared.handler.deliver(transaction).await
                        }
                    };
                    self.send(&reply);
                }
            }
        }
    }

    /// When the line just handled added a recipient, asks the handler about it; its refusal
    /// (the recipient taken back) replaces the `250`.
    async fn check_recipient(&mut self) -> Option<Reply> {
        let envelope = self.session.added_recipient()?;
        let (user, identified_by) = self.session.identity()?;
        let check = super::RecipientCheck {
            session_id: &self.id,
            user,
            identified_by,
            client: self.client,
            mail_from: &envelope.mail_from,
            recipients: &envelope.recipients,
        };
        let refusal = self.shared.handler.check_recipient(&check).await?;
        self.session.withdraw_recipient();
        Some(refusal)
    }

    /// One line for every refusal of a command before DATA (530 without AUTH, 552 SIZE, 5xx
    /// syntax, 421 closes), with the session id the transaction lines carry. AUTH outcomes are
    /// logged where they are decided; DATA's reply is the transaction line.
    fn log_refusal(&self, reply: &Reply) {
        if reply.code >= 400 {
            let text = reply.lines.first().map_or("", |l| l.as_ref());
            info!(session = %self.id, client = %self.client, code = reply.code, reply = %text, "refused");
        }
    }

    fn send(&mut self, reply: &Reply) {
        reply.write_wire(&mut self.output);
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.output.is_empty() {
            return Ok(());
        }
        // A client that never reads must not hold the connection: writes share the read
        // deadlines.
        let deadline = self.deadline(Instant::now() + self.shared.limits.idle_timeout);
        let io = self.io.as_mut().ok_or(End::Closed)?;
        let write = async {
            io.write_all(&self.output).await?;
            io.flush().await
        };
        timeout_at(deadline, write)
            .await
            .map_err(|_| self.timed_out())??;
        self.output.clear();
        Ok(())
    }

    /// The earlier of `deadline` and the session's end.
    fn deadline(&self, deadline: Instant) -> Instant {
        deadline.min(self.session_deadline)
    }

    /// The end a missed deadline means: the session's lifetime, or a single wait.
    fn timed_out(&self) -> End {
        if Instant::now() >= self.session_deadline {
            End::Expired
        } else {
            End::Timeout
        }
    }

    /// Reads more input, flushing pending replies first (so pipelined commands are answered in
    /// one write, and nothing waits on a reply that was never sent). Waits at most `wait` for
    /// the next bytes, and never past `deadline` (the end of the command or message being read)
    /// or the session's end: a client dripping one byte per `wait` cannot hold a slot forever.
    async fn fill(
        &mut self,
        wait: Duration,
        deadline: Instant,
        interruptible: bool,
    ) -> Result<(), End> {
        self.flush().await?;
        let until = self.deadline(deadline.min(Instant::now() + wait));
        let io = self.io.as_mut().ok_or(End::Closed)?;
        self.input.reserve(READ_CHUNK);
        let read = io.read_buf(&mut self.input);
        let outcome = if interruptible {
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                r = timeout_at(until, read) => r,
                _ = shutdown.wait_for(|stop| *stop) => return Err(End::Shutdown),
            }
        } else {
            timeout_at(until, read).await
        };
        match outcome {
            Err(_) => Err(self.timed_out()),
            Ok(Ok(0)) => Err(End::Closed),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(End::Io(e)),
        }
    }

    /// The next line. A line longer than the command limit is discarded up to its end. The
    /// whole line must arrive within `command_timeout`, however it is spread over reads.
    async fn read_line(&mut self, wait: Duration, interruptible: bool) -> Result<Line, End> {
        let deadline = Instant::now() + self.shared.limits.command_timeout;
        let mut discarding = false;
        loop {
            if let Some(newline) = memchr::memchr(b'\n', &self.input) {
                let length = newline + 1;
                return Ok(if discarding || length > MAX_COMMAND_LINE {
                    self.input.drain(..length);
                    Line::TooLong
                } else {
                    Line::Complete(length)
                });
            }
            if self.input.len() > MAX_COMMAND_LINE {
                discarding = true;
                self.input.clear();
            }
            // Between transactions a shutdown may interrupt the wait; inside an exchange it
            // may not.
            self.fill(wait, deadline, interruptible && !discarding)
                .await?;
        }
    }

    async fn read_data(&mut self) -> Result<Result<Vec<u8>, super::data::DataError>, End> {
        let limits = &self.shared.limits;
        let mut reader = DataReader::new(limits.max_message_bytes, limits.max_line_length);
        // The whole message, not only each read, has a deadline.
        let deadline = Instant::now() + self.shared.limits.message_timeout;
        loop {
            if let Some(consumed) = reader.ingest(&self.input) {
                self.input.drain(..consumed);
                return Ok(reader.finish());
            }
            self.input.clear();
            self.fill(self.shared.limits.data_timeout, deadline, false)
                .await?;
        }
    }

    async fn start_tls(&mut self) -> Result<(), End> {
        self.send(&reply::ready_for_tls());
        self.flush().await?;
        // Anything the client pipelined after STARTTLS was sent in plaintext: it must never be
        // executed inside the TLS session (CVE-2011-0411 class).
        if !self.input.is_empty() {
            info!(session = %self.id, client = %self.client, bytes = self.input.len(), "discarded plaintext pipelined after STARTTLS");
            self.input.clear();
        }
        let plain = self.io.take().ok_or(End::Closed)?;
        let acceptor = self
            .tls
            .as_ref()
            .map_or_else(|| self.shared.tls_acceptor(), |tls| tls());
        let deadline = self.deadline(Instant::now() + self.shared.limits.handshake_timeout);
        let tls = match timeout_at(deadline, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                info!(session = %self.id, client = %self.client, error = %e, "TLS handshake failed");
                return Err(e.into());
            }
            Err(_) => {
                info!(session = %self.id, client = %self.client, "TLS handshake timed out");
                return Err(self.timed_out());
            }
        };
        let certificate = super::peer_certificate(&tls);
        self.io = Some(Box::new(tls));
        self.session.on_tls_established();
        self.identify_peer(certificate.as_deref());
        Ok(())
    }

    /// Asks the authenticator who the peer is without AUTH, where the listener allows it.
    pub(super) fn identify_peer(&mut self, certificate: Option<&[u8]>) {
        if self.session.config().auth == super::AuthMode::Required {
            return;
        }
        let identity = self.shared.authenticator.identify(&super::Peer {
            client: self.client,
            certificate,
        });
        if let Some((user, how)) = &identity {
            info!(session = %self.id, client = %self.client, user = %user, identified_by = how.as_str(), "identified without AUTH");
        }
        self.session.set_peer_identity(identity);
    }

    /// Runs the SASL exchange and checks the credentials.
    async fn authenticate(
        &mut self,
        mechanism: Mechanism,
        initial: Option<String>,
    ) -> Result<Result<String, AuthFailure>, End> {
        let credentials = match self.read_credentials(mechanism, initial).await? {
            Ok(credentials) => credentials,
            Err(failure) => return Ok(Err(failure)),
        };
        // The failure budget is taken before the (costly) check, so parallel attempts cannot
        // all run when fewer failures remain.
        let shared = Arc::clone(&self.shared);
        let reservation = match shared.throttle.reserve(self.client, &credentials.username) {
            Ok(reservation) => reservation,
            Err(refusal) => {
                let why = match refusal {
                    AuthRefusal::LockedOut => "too many recent failures",
                    AuthRefusal::TooManyInFlight => "too many checks in flight from this address",
                };
                info!(session = %self.id, client = %self.client, reason = why, "AUTH refused");
                return Ok(Err(AuthFailure::Throttled));
            }
        };
        let username = credentials.username.clone();
        match shared.authenticator.authenticate(credentials).await {
            AuthOutcome::Authenticated(user) => {
                reservation.succeeded();
                info!(session = %self.id, client = %self.client, smtp_user = %username, user = %user, "authenticated");
                Ok(Ok(user))
            }
            AuthOutcome::Invalid => {
                reservation.failed();
                info!(session = %self.id, client = %self.client, smtp_user = %username, "authentication failed");
                Ok(Err(AuthFailure::Invalid))
            }
            AuthOutcome::Unavailable => {
                reservation.not_checked();
                info!(session = %self.id, client = %self.client, "AUTH not checked: verifier busy");
                Ok(Err(AuthFailure::Unavailable))
            }
        }
    }

    async fn read_credentials(
        &mut self,
        mechanism: Mechanism,
        initial: Option<String>,
    ) -> Result<Result<sasl::Credentials, AuthFailure>, End> {
        match mechanism {
            Mechanism::Plain => {
                let response = match initial {
                    Some(response) => response,
                    None => {
                        self.send(&Reply::new(334, ""));
                        self.read_response().await?
                    }
                };
                Ok(sasl::decode_plain(&response))
            }
            Mechanism::Login => {
                let username = match initial {
                    Some(response) => response,
                    None => {
                        self.send(&reply::auth_challenge("VXNlcm5hbWU6"));
                        self.read_response().await?
                    }
                };
                let username = match sasl::decode_text(&username) {
                    Ok(username) => username,
                    Err(failure) => return Ok(Err(failure)),
                };
                self.send(&reply::auth_challenge("UGFzc3dvcmQ6"));
                let password = match sasl::decode_text(&self.read_response().await?) {
                    Ok(password) => password,
                    Err(failure) => return Ok(Err(failure)),
                };
                Ok(Ok(sasl::Credentials { username, password }))
            }
        }
    }

    /// A SASL response line; an over-long one reads as malformed.
    async fn read_response(&mut self) -> Result<String, End> {
        match self
            .read_line(self.shared.limits.idle_timeout, false)
            .await?
        {
            Line::Complete(length) => {
                let line = String::from_utf8(self.input[..length].to_vec()).unwrap_or_default();
                self.input.drain(..length);
                Ok(line)
            }
            Line::TooLong => Ok(String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;
    use tokio_rustls::TlsAcceptor;

    use super::super::{
        AuthMode, Credentials, IdentifiedBy, Limits, Server, SessionConfig, TlsMode,
    };
    use super::*;

    /// A client whose writes arrive one per read, in order (then end of file), and which
    /// records every write of the server separately.
    struct Scripted {
        reads: VecDeque<Vec<u8>>,
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(chunk) = self.reads.pop_front() {
                assert!(chunk.len() <= buf.remaining(), "one client write per read");
                buf.put_slice(&chunk);
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bytes: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes.lock().unwrap().push(bytes.to_vec());
            Poll::Ready(Ok(bytes.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Accepts every message after a pause (as a relay waits for its upstream), except from
    /// `refused@example.com`.
    struct Relaying;

    impl Handler for Relaying {
        async fn deliver(&self, transaction: Transaction) -> Reply {
            tokio::task::yield_now().await;
            if transaction.envelope.mail_from == "refused@example.com" {
                Reply::new(554, "5.7.1 refused")
            } else {
                Reply::new(250, "2.0.0 Ok relayed")
            }
        }
    }

    /// Knows every client as `device` by its address.
    struct Device;

    impl Authenticator for Device {
        async fn authenticate(&self, _: Credentials) -> AuthOutcome {
            AuthOutcome::Invalid
        }
        fn identify(&self, _: &super::super::Peer<'_>) -> Option<(String, IdentifiedBy)> {
            Some(("device".into(), IdentifiedBy::Network))
        }
    }

    /// The server's writes for a client whose writes are `reads`, one write per element.
    async fn writes_for(reads: &[&[u8]]) -> Vec<String> {
        let no_tls: super::super::TlsSource =
            Arc::new(|| -> TlsAcceptor { unreachable!("no TLS in this test") });
        let server = Server::new(
            "gw.test".into(),
            Limits::default(),
            no_tls,
            Relaying,
            Device,
        );
        let session = Session::new(
            SessionConfig {
                hostname: "gw.test".into(),
                tls_mode: TlsMode::None,
                allow_plaintext_auth: false,
                auth: AuthMode::None,
                limits: Arc::clone(&server.shared.limits),
            },
            false,
        );
        let writes = Arc::new(Mutex::new(Vec::new()));
        let io = Scripted {
            reads: reads.iter().map(|r| r.to_vec()).collect(),
            writes: Arc::clone(&writes),
        };
        let (_stop, shutdown) = watch::channel(false);
        let mut connection = Connection::new(
            Box::new(io),
            session,
            Arc::clone(&server.shared),
            "192.0.2.1".parse().unwrap(),
            "00000001".into(),
            shutdown,
        );
        connection.identify_peer(None);
        connection.run().await;
        let writes = writes.lock().unwrap();
        writes
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    const ENVELOPE: &str = "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n";
    const ACCEPTED: &str =
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n";

    #[tokio::test]
    async fn the_message_and_the_next_envelope_are_answered_in_one_write() {
        let first = format!("EHLO c.test\r\n{ENVELOPE}");
        let second = format!("Subject: 1\r\n\r\none\r\n.\r\n{ENVELOPE}");
        let refused = format!(
            "Subject: 2\r\n\r\ntwo\r\n.\r\n{}",
            ENVELOPE.replace("a@example.com", "refused@example.com")
        );
        let last = "Subject: 3\r\n\r\nthree\r\n.\r\nQUIT\r\n";
        let writes = writes_for(&[
            first.as_bytes(),
            second.as_bytes(),
            refused.as_bytes(),
            last.as_bytes(),
        ])
        .await;
        assert_eq!(writes.len(), 5, "one write per group: {writes:#?}");
        assert!(writes[0].starts_with("220 gw.test"), "{}", writes[0]);
        assert!(
            writes[1].starts_with("250-gw.test") && writes[1].ends_with(ACCEPTED),
            "{}",
            writes[1]
        );
        // The message's reply (given by the handler, so after it decided), then the next
        // envelope's replies, in the order of the commands.
        assert_eq!(writes[2], format!("250 2.0.0 Ok relayed\r\n{ACCEPTED}"));
        assert_eq!(writes[3], writes[2]);
        assert_eq!(writes[4], "554 5.7.1 refused\r\n221 2.0.0 Bye\r\n");
    }

    /// Lines after DATA, before its 354, are the message: answered with the envelope's replies
    /// and the message's in one write, never executed.
    #[tokio::test]
    async fn lines_pipelined_after_data_are_content() {
        let group = format!("EHLO c.test\r\n{ENVELOPE}RSET\r\nQUIT\r\n.\r\nNOOP\r\n");
        let writes = writes_for(&[group.as_bytes()]).await;
        assert_eq!(writes.len(), 2, "{writes:#?}");
        assert!(
            writes[1].ends_with(&format!(
                "{ACCEPTED}250 2.0.0 Ok relayed\r\n250 2.0.0 Ok\r\n"
            )),
            "{}",
            writes[1]
        );
    }
}
