//! A real sesgate on loopback for the SMTP tests: started in-process from a config built in a
//! temporary directory (its own certificate, `iam.toml` and outbox), plus a raw SMTP client
//! that speaks over TCP or TLS and reads whole replies.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod common;
pub mod metrics;
pub mod quotas;
pub mod redis;
pub mod sending_authorization;
pub mod serve;
pub mod sink;

#[allow(unused_imports)] // not every test crate uses it
pub use common::GUIDE_POLICIES;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sesgate::config::{Config, Limits, Listener};
use sesgate::credentials::hash_password;
use sesgate::gateway::{self, Running};
use sesgate::smtp::TlsMode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const USER: &str = "AKIAEXAMPLETEST00001";
pub const PASSWORD: &str = "correct horse battery staple";

/// Listener positions in every test server.
pub const STARTTLS: usize = 0;
pub const IMPLICIT: usize = 1;
pub const PLAINTEXT_AUTH: usize = 2;
pub const BEHIND_PROXY: usize = 3;

pub struct TestServer {
    pub running: Option<Running>,
    pub dir: PathBuf,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl TestServer {
    /// Starts a server with the default limits.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed its limits.
    pub async fn start_with(adjust: impl FnOnce(&mut Limits)) -> TestServer {
        let mut setup = Setup::default();
        adjust(&mut setup.config.limits);
        Self::start_setup(setup).await
    }

    /// Starts a server from a full setup.
    pub async fn start_setup(setup: Setup) -> TestServer {
        let dir = std::env::temp_dir().join(format!(
            "sesgate-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        copy_guide_policies(&dir.join("policies"));
        for (name, json) in &setup.policies {
            std::fs::write(dir.join(format!("policies/{name}.json")), json).unwrap();
        }
        for (path, contents) in &setup.files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        let users = setup.users.unwrap_or_else(|| {
            user_toml(
                "test-app",
                "/apps/",
                USER,
                PASSWORD,
                "policies = [\"AllowSendingOnly\"]",
            )
        });
        std::fs::write(
            dir.join("policies/iam.toml"),
            format!("{}\n{users}", setup.groups),
        )
        .unwrap();
        let listener = |tls, allow_plaintext_auth, proxy: &[&str]| Listener {
            address: "127.0.0.1:0".parse().unwrap(),
            tls,
            allow_plaintext_auth,
            proxy_protocol_from: proxy.iter().map(|p| p.parse().unwrap()).collect(),
            ..Listener::default()
        };
        let mut config = setup.config;
        config.hostname = "gw.test".into();
        config.listeners = vec![
            listener(TlsMode::Starttls, false, &[]),
            listener(TlsMode::Implicit, false, &[]),
            listener(TlsMode::None, true, &[]),
            listener(TlsMode::Starttls, false, &["127.0.0.0/8"]),
        ];
        config.listeners.extend(setup.extra_listeners);
        config.base_dir = dir.clone();
        if config.upstream.url == "file://./outbox" {
            config.upstream.url = "file://outbox".into();
        }
        if let Some(sink) = &setup.upstream {
            std::fs::write(dir.join("sink-ca.pem"), &sink.cert_pem).unwrap();
            std::fs::write(
                dir.join("sink-password"),
                format!(
                    "{}
",
                    sink::SINK_PASSWORD
                ),
            )
            .unwrap();
            config.upstream.url = format!("smtp://localhost:{}?tls=required", sink.port);
            config.upstream.username = sink::SINK_USER.into();
            config.upstream.password_file = "sink-password".into();
            config.upstream.ca_certificate = "sink-ca.pem".into();
        }
        let clock = setup
            .clock
            .unwrap_or_else(|| std::sync::Arc::new(jiff::Timestamp::now));
        let running = gateway::start_with_clock(&config, clock)
            .await
            .expect("the test server starts");
        TestServer {
            running: Some(running),
            dir,
        }
    }

    pub fn port(&self, listener: usize) -> u16 {
        self.running.as_ref().unwrap().addresses[listener].port()
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("certs/sesgate.crt")
    }

    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.cert_path()).unwrap()
    }

    /// Every stored message (without the `Received:` line sesgate adds) with its envelope
    /// JSON, oldest first.
    pub fn outbox(&self) -> Vec<(Vec<u8>, serde_json::Value)> {
        self.outbox_raw()
            .into_iter()
            .map(|(m, e)| (strip_trace(&m).to_vec(), e))
            .collect()
    }

    /// Every stored message as stored, with its envelope JSON, oldest first.
    pub fn outbox_raw(&self) -> Vec<(Vec<u8>, serde_json::Value)> {
        let dir = self.dir.join("outbox");
        let mut ids: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| {
                        e.ok()?
                            .file_name()
                            .to_str()?
                            .strip_suffix(".eml")
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_by_key(|id| id.rsplit('.').next().and_then(|n| n.parse::<u64>().ok()));
        ids.iter()
            .map(|id| {
                let message = std::fs::read(dir.join(format!("{id}.eml"))).unwrap();
                let envelope =
                    serde_json::from_slice(&std::fs::read(dir.join(format!("{id}.json"))).unwrap())
                        .unwrap();
                (message, envelope)
            })
            .collect()
    }

    pub async fn connect(&self, listener: usize) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port(listener)))
            .await
            .unwrap();
        let mut client = Client::new(Box::new(stream), self.cert_pem());
        if listener == IMPLICIT {
            client.start_tls().await;
        }
        client
    }

    /// A client on the plaintext-AUTH listener from the loopback address `source` (127.0.0.2,
    /// ...: another client address), past the greeting and EHLO.
    pub async fn client_from(&self, source: &str) -> Client {
        let stream = connect_from(source, self.port(PLAINTEXT_AUTH)).await;
        let mut client = Client::new(Box::new(stream), self.cert_pem());
        client.hello(false).await;
        client
    }

    /// Connections the server still counts as open once it has had up to `within` to notice
    /// that the clients are gone (a closed socket frees its slot when its task ends).
    pub async fn open_connections_after(&self, within: Duration) -> usize {
        let running = self.running.as_ref().expect("server running");
        let deadline = Instant::now() + within;
        while running.open_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.open_connections()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a test server is built from; `Default` is the standard test user (AllowSendingOnly,
/// no identities, file outbox).
#[derive(Default)]
pub struct Setup {
    pub config: Config,
    /// `[[group]]` tables for iam.toml.
    pub groups: String,
    /// `[[user]]` tables for iam.toml; `None`: the standard test user.
    pub users: Option<String>,
    /// Extra policy files: (name, JSON).
    pub policies: Vec<(String, String)>,
    /// Relay to this sink (STARTTLS required, AUTH) instead of the file outbox.
    pub upstream: Option<sink::Sink>,
    /// The clock requests are stamped with.
    pub clock: Option<gateway::Clock>,
    /// Listeners after the four standard ones (index 4 on).
    pub extra_listeners: Vec<Listener>,
    /// Files written into the test directory before start: (relative path, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Copies the guide's policies (`policies/*.json`) into `dir`.
pub fn copy_guide_policies(dir: &Path) {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&guide).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// A `[[user]]` table with one credential; `extra` adds fields such as `policies = [...]`.
pub fn user_toml(name: &str, path: &str, username: &str, password: &str, extra: &str) -> String {
    format!(
        "[[user]]\nname = \"{name}\"\npath = \"{path}\"\n{extra}\n[[user.credentials]]\nusername = \"{username}\"\npassword_hash = \"{}\"\n",
        hash_password(password)
    )
}

/// A message without the leading `Received:` header (and its folded lines).
pub fn strip_trace(message: &[u8]) -> &[u8] {
    if !message.starts_with(b"Received:") {
        return message;
    }
    let mut at = 0;
    loop {
        let Some(end) = message[at..].windows(2).position(|w| w == b"\r\n") else {
            return &message[message.len()..];
        };
        at += end + 2;
        if !matches!(message.get(at), Some(b' ' | b'\t')) {
            return &message[at..];
        }
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A raw SMTP client: writes bytes, reads whole (multi-line) replies.
pub struct Client {
    io: Option<Box<dyn Stream>>,
    buffer: Vec<u8>,
    cert: Vec<u8>,
}

impl Client {
    pub fn new(io: Box<dyn Stream>, cert: Vec<u8>) -> Self {
        Client {
            io: Some(io),
            buffer: Vec::new(),
            cert,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let io = self.io.as_mut().unwrap();
        io.write_all(bytes).await.unwrap();
        io.flush().await.unwrap();
    }

    /// Reads one reply; all its lines joined by `\n`. Empty when the server closed.
    pub async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let Some(line) = self.line().await else {
                return lines.join("\n");
            };
            let last = line.len() < 4 || line.as_bytes()[3] == b' ';
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(newline) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=newline).collect();
                return Some(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .io
                .as_mut()
                .unwrap()
                .read(&mut chunk)
                .await
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// What has been read from the server but not yet returned by [`Client::reply`]: after a
    /// reply, the replies that arrived in the same read as it.
    pub fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    /// Sends a command line and returns the reply.
    pub async fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// True when the server has closed the connection.
    pub async fn is_closed(&mut self) -> bool {
        self.line().await.is_none()
    }

    /// TLS handshake trusting the test server's certificate (after `220` to STARTTLS, or at
    /// once on the implicit port).
    pub async fn start_tls(&mut self) {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.cert) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let plain = self.io.take().unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), plain)
            .await
            .expect("TLS handshake with the test server");
        self.io = Some(Box::new(tls));
    }

    /// Greeting, EHLO, and (on a STARTTLS listener) STARTTLS and EHLO again.
    pub async fn hello(&mut self, starttls: bool) {
        assert!(self.reply().await.starts_with("220 gw.test ESMTP"));
        assert!(
            self.command("EHLO client.test")
                .await
                .starts_with("250-gw.test")
        );
        if starttls {
            assert_eq!(
                self.command("STARTTLS").await,
                "220 2.0.0 Ready to start TLS"
            );
            self.start_tls().await;
            assert!(
                self.command("EHLO client.test")
                    .await
                    .starts_with("250-gw.test")
            );
        }
    }

    pub async fn login(&mut self) {
        self.login_as(USER, PASSWORD).await;
    }

    pub async fn login_as(&mut self, user: &str, password: &str) {
        let plain = base64_encode(format!("\0{user}\0{password}").as_bytes());
        assert_eq!(
            self.command(&format!("AUTH PLAIN {plain}")).await,
            "235 2.7.0 Authentication successful."
        );
    }

    /// One plain message from a@example.com to b@example.com; the reply to its end of data.
    pub async fn send_plain(&mut self) -> String {
        self.transaction(
            "a@example.com",
            &["b@example.com"],
            "From: a@example.com\r\n\r\nx\r\n",
        )
        .await
    }

    /// MAIL, each RCPT and DATA one at a time, each reply asserted (250s, then 354): the start
    /// of a transaction whose message the test writes itself.
    pub async fn begin_data(&mut self, mail_from: &str, recipients: &[&str]) {
        let reply = self.command(&format!("MAIL FROM:<{mail_from}>")).await;
        assert!(reply.starts_with("250"), "{reply}");
        for recipient in recipients {
            let reply = self.command(&format!("RCPT TO:<{recipient}>")).await;
            assert!(reply.starts_with("250"), "{reply}");
        }
        let reply = self.command("DATA").await;
        assert!(reply.starts_with("354"), "{reply}");
    }

    /// One transaction; the reply to its end of data (or the first refusal before it). Lines
    /// of `data` are sent with CR LF and dot-stuffed.
    pub async fn transaction(
        &mut self,
        mail_from: &str,
        recipients: &[&str],
        data: &str,
    ) -> String {
        let reply = self.command(&format!("MAIL FROM:<{mail_from}>")).await;
        if !reply.starts_with("250") {
            return reply;
        }
        for recipient in recipients {
            let reply = self.command(&format!("RCPT TO:<{recipient}>")).await;
            if !reply.starts_with("250") {
                return reply;
            }
        }
        let reply = self.command("DATA").await;
        if !reply.starts_with("354") {
            return reply;
        }
        let mut wire = String::new();
        for line in data.lines() {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.send(wire.as_bytes()).await;
        self.reply().await
    }
}

/// A TCP connection to `port` on 127.0.0.1 from the loopback address `source`.
pub async fn connect_from(source: &str, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Waits until the server closes `stream` (reading and dropping anything it sends); the time
/// it took, or `None` when it is still open after `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whether an outside tool may be missing: skip with a notice, unless CI requires it.
pub fn tool_available(tool: &str, probe: &[&str]) -> bool {
    let present = std::process::Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("SESGATE_REQUIRE_INTEROP").is_none(),
            "{tool} is required (SESGATE_REQUIRE_INTEROP is set) but not usable"
        );
        eprintln!("notice: {tool} is not installed; skipping this interop test");
    }
    present
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}
