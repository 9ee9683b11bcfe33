//! A real SMTP server standing in for the SES endpoint in tests: STARTTLS (required before
//! AUTH), AUTH PLAIN and LOGIN with one credential, and replies that a test can script (the
//! reply to DATA, or closing the connection in the middle of it). It records every message it
//! accepted, and only those. Self-contained, so the relay benchmark uses it too.

use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub const SINK_USER: &str = "AKIASINKUSER00000001";
pub const SINK_PASSWORD: &str = "sink-password";

/// What the sink answers to the end of DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataReply {
    /// `250 Ok <id>`, as SES answers; the message is recorded.
    Accept,
    /// Any other reply line, e.g. `451 4.3.0 Try again later`; nothing is recorded.
    Reply(String),
    /// Read part of the message, then close without a reply.
    CloseMidData,
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Clone)]
pub struct Sink {
    pub port: u16,
    pub cert_pem: Vec<u8>,
    pub accepted: Arc<Mutex<Vec<Accepted>>>,
    pub data_reply: Arc<Mutex<DataReply>>,
    pub connections: Arc<Mutex<usize>>,
    /// Offer AUTH without TLS too (for plaintext benchmark runs).
    pub plaintext_auth: bool,
    /// Close the connection after each accepted message, as an upstream that drops idle
    /// connections would.
    pub close_after_accept: Arc<Mutex<bool>>,
    /// Keep accepted messages (tests) or only count them (benchmarks).
    pub record: bool,
    pub count: Arc<std::sync::atomic::AtomicUsize>,
    /// Messages that reached the end of DATA, whatever the reply to them.
    pub data_attempts: Arc<std::sync::atomic::AtomicUsize>,
    /// Recipients answered at RCPT with a reply of their own (e.g. `550 5.1.1 ...`).
    pub refused_recipients: Arc<Mutex<Vec<(String, String)>>>,
    acceptor: tokio_rustls::TlsAcceptor,
    /// The accept loop and every session, so that `stop` can end them all.
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Sink {
    pub async fn start() -> Sink {
        Self::start_with(false, true).await
    }

    pub async fn start_with(plaintext_auth: bool, record: bool) -> Sink {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_pem = pair.cert.pem().into_bytes();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .map(|c| c.unwrap())
            .collect();
        let key =
            PrivateKeyDer::from_pem_slice(pair.signing_key.serialize_pem().as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let sink = Sink {
            port: 0,
            cert_pem,
            accepted: Arc::default(),
            data_reply: Arc::new(Mutex::new(DataReply::Accept)),
            connections: Arc::default(),
            plaintext_auth,
            close_after_accept: Arc::default(),
            record,
            count: Arc::default(),
            data_attempts: Arc::default(),
            refused_recipients: Arc::default(),
            acceptor,
            tasks: Arc::default(),
        };
        sink.listen(0).await
    }

    /// Listens on `port` (0: any) and serves until `stop`.
    async fn listen(mut self, port: u16) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        self.port = listener.local_addr().unwrap().port();
        let shared = self.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                *shared.connections.lock().unwrap() += 1;
                let (sink, acceptor) = (shared.clone(), shared.acceptor.clone());
                let session =
                    tokio::spawn(async move { sink.session(Box::new(stream), acceptor).await });
                shared.tasks.lock().unwrap().push(session.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accepting.abort_handle());
        self
    }

    /// Stops listening and drops every open connection, as a stopped server would.
    pub fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Stops, then listens again on the same port with the same certificate, keeping what
    /// was accepted before.
    pub async fn restart(&self) -> Sink {
        self.stop();
        self.clone().listen(self.port).await
    }

    /// Answers RCPT TO for `recipient` with `reply` (e.g. `550 5.1.1 No such user`).
    pub fn refuse_recipient(&self, recipient: &str, reply: &str) {
        self.refused_recipients
            .lock()
            .unwrap()
            .push((recipient.to_owned(), reply.to_owned()));
    }

    pub fn set_reply(&self, reply: DataReply) {
        *self.data_reply.lock().unwrap() = reply;
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }

    async fn session(self, stream: Box<dyn Stream>, acceptor: tokio_rustls::TlsAcceptor) {
        let mut io = BufReader::new(stream);
        let mut tls = false;
        let mut authenticated = false;
        let mut mail_from = None::<String>;
        let mut recipients = Vec::new();
        let mut counter = 0u32;
        macro_rules! say {
            ($($arg:tt)*) => {
                if io.get_mut().write_all(format!("{}\r\n", format!($($arg)*)).as_bytes()).await.is_err() {
                    return;
                }
            };
        }
        say!("220 sink.test ESMTP");
        loop {
            let mut line = String::new();
            if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = line.trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                let mut lines = vec![
                    "250-sink.test",
                    "250-8BITMIME",
                    "250-SIZE 41943040",
                    "250-PIPELINING",
                ];
                if !tls {
                    lines.push("250-STARTTLS");
                }
                if tls || self.plaintext_auth {
                    lines.push("250-AUTH PLAIN LOGIN");
                }
                lines.push("250 ENHANCEDSTATUSCODES");
                say!("{}", lines.join("\r\n"));
            } else if upper == "STARTTLS" && !tls {
                say!("220 2.0.0 Ready to start TLS");
                let plain = io.into_inner();
                let Ok(secured) = acceptor.accept(plain).await else {
                    return;
                };
                io = BufReader::new(Box::new(secured) as Box<dyn Stream>);
                tls = true;
            } else if upper.starts_with("AUTH PLAIN") && (tls || self.plaintext_auth) {
                let expected = base64_encode(format!("\0{SINK_USER}\0{SINK_PASSWORD}").as_bytes());
                let given = command
                    .split_whitespace()
                    .nth(2)
                    .unwrap_or_default()
                    .to_owned();
                if given == expected {
                    authenticated = true;
                    say!("235 2.7.0 Authentication successful.");
                } else {
                    say!("535 5.7.8 Authentication Credentials Invalid");
                }
            } else if upper.starts_with("AUTH LOGIN") && (tls || self.plaintext_auth) {
                say!("334 VXNlcm5hbWU6");
                let mut user = String::new();
                io.read_line(&mut user).await.unwrap_or(0);
                say!("334 UGFzc3dvcmQ6");
                let mut password = String::new();
                io.read_line(&mut password).await.unwrap_or(0);
                if user.trim() == base64_encode(SINK_USER.as_bytes())
                    && password.trim() == base64_encode(SINK_PASSWORD.as_bytes())
                {
                    authenticated = true;
                    say!("235 2.7.0 Authentication successful.");
                } else {
                    say!("535 5.7.8 Authentication Credentials Invalid");
                }
            } else if upper.starts_with("MAIL FROM:") {
                if !authenticated {
                    say!("530 5.7.0 Authentication required");
                    continue;
                }
                let address = command[10..].split_whitespace().next().unwrap_or_default();
                mail_from = Some(
                    address
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned(),
                );
                recipients.clear();
                say!("250 2.1.0 Ok");
            } else if upper.starts_with("RCPT TO:") {
                if mail_from.is_none() {
                    say!("503 5.5.1 MAIL first");
                    continue;
                }
                let address = command[8..].split_whitespace().next().unwrap_or_default();
                let address = address
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned();
                let refusal = self
                    .refused_recipients
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(r, _)| *r == address)
                    .map(|(_, reply)| reply.clone());
                if let Some(reply) = refusal {
                    say!("{reply}");
                    continue;
                }
                recipients.push(address);
                say!("250 2.1.5 Ok");
            } else if upper == "DATA" {
                if recipients.is_empty() {
                    say!("554 5.5.1 No valid recipients");
                    continue;
                }
                say!("354 End data with <CR><LF>.<CR><LF>");
                let reply = self.data_reply.lock().unwrap().clone();
                if reply == DataReply::CloseMidData {
                    let mut some = [0u8; 16];
                    let _ = io.read(&mut some).await;
                    return;
                }
                let mut data = Vec::new();
                loop {
                    let mut raw = Vec::new();
                    if io.read_until(b'\n', &mut raw).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if raw == b".\r\n" {
                        break;
                    }
                    let unstuffed = raw.strip_prefix(b".").unwrap_or(&raw);
                    data.extend_from_slice(unstuffed);
                }
                self.data_attempts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match reply {
                    DataReply::Accept => {
                        counter += 1;
                        self.count
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let accepted = Accepted {
                            mail_from: mail_from.take().unwrap_or_default(),
                            recipients: std::mem::take(&mut recipients),
                            data,
                        };
                        if self.record {
                            self.accepted.lock().unwrap().push(accepted);
                        }
                        say!("250 Ok 0100018c-sink-{}-{counter:06}", self.port);
                        if *self.close_after_accept.lock().unwrap() {
                            return;
                        }
                    }
                    DataReply::Reply(text) => {
                        mail_from = None;
                        recipients.clear();
                        say!("{text}");
                    }
                    DataReply::CloseMidData => unreachable!(),
                }
            } else if upper == "RSET" {
                mail_from = None;
                recipients.clear();
                say!("250 2.0.0 Ok");
            } else if upper == "NOOP" {
                say!("250 2.0.0 Ok");
            } else if upper == "QUIT" {
                say!("221 2.0.0 Bye");
                return;
            } else {
                say!("500 5.5.2 Command unrecognized");
            }
        }
    }
}
