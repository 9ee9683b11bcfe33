//! The pipelined upstream client (issue 15) against a scripted upstream on loopback: MAIL,
//! RCPT and DATA arrive in one write, the message arrives dot-stuffed, and every failure path
//! of a pipelined transaction (a recipient refused, all refused with DATA's 554, the connection
//! lost after 354, hostile replies, data injected before TLS) ends without a 250 to the client
//! and without reusing the connection.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sesgate::relay::{SmtpUpstream, UpstreamOptions, UpstreamUrl};
use support::{Setup, TestServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the scripted upstream behaves.
#[derive(Clone, Default)]
struct Script {
    /// Recipients refused at RCPT with 550.
    refuse: Vec<String>,
    /// Replies to MAIL, RCPT and DATA only once DATA has arrived: a client that waits for each
    /// reply before its next command never gets one.
    require_pipelining: bool,
    /// After 354, read a little of the message and close.
    drop_after_354: bool,
    /// Instead of the greeting, this (hostile) reply.
    greeting: Option<Vec<u8>>,
    /// Offer STARTTLS and, after its 220, pipeline these bytes before any handshake.
    starttls_injection: Option<Vec<u8>>,
    /// An extra reply nobody asked for, in the same write as the 250 to a message.
    extra_after_accept: bool,
}

/// What the scripted upstream saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    /// Raw DATA content of each message completed with its final dot.
    messages: Vec<Vec<u8>>,
    /// Recipients of each completed message.
    recipients: Vec<Vec<String>>,
}

struct Upstream {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

impl Upstream {
    async fn start(script: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                tokio::spawn(session(stream, script.clone(), Arc::clone(&shared)));
            }
        });
        Upstream { port, seen }
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().messages.clone()
    }

    fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }
}

/// Reads one line (with its CR LF) from `buffer`, reading more as needed; None at EOF.
async fn line<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(at) = buffer.iter().position(|&b| b == b'\n') {
            return Some(buffer.drain(..=at).collect());
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    script: Script,
    seen: Arc<Mutex<Seen>>,
) {
    if let Some(greeting) = &script.greeting {
        let _ = stream.write_all(greeting).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        return;
    }
    let _ = stream.write_all(b"220 upstream.test ESMTP\r\n").await;
    let mut buffer = Vec::new();
    let mut pending = Vec::<u8>::new();
    let mut recipients = Vec::new();
    let mut accepted = 0;
    while let Some(command) = line(&mut stream, &mut buffer).await {
        let text = String::from_utf8_lossy(&command).trim_end().to_owned();
        let upper = text.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            if script.starttls_injection.is_some() {
                b"250-upstream.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
            } else {
                b"250-upstream.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n"
            }
        } else if upper == "STARTTLS" {
            let mut reply = b"220 2.0.0 go ahead\r\n".to_vec();
            reply.extend_from_slice(script.starttls_injection.as_deref().unwrap_or_default());
            let _ = stream.write_all(&reply).await;
            let _ = line(&mut stream, &mut buffer).await;
            return;
        } else if upper.starts_with("MAIL FROM:") {
            recipients.clear();
            accepted = 0;
            b"250 2.1.0 Ok\r\n"
        } else if let Some(rcpt) = upper.strip_prefix("RCPT TO:<") {
            let rcpt = rcpt.trim_end_matches('>').to_ascii_lowercase();
            if script.refuse.contains(&rcpt) {
                b"550 5.1.1 <refused> no such user\r\n"
            } else {
                accepted += 1;
                recipients.push(rcpt);
                b"250 2.1.5 Ok\r\n"
            }
        } else if upper == "DATA" {
            if accepted == 0 {
                b"554 5.5.1 Error: no valid recipients\r\n"
            } else {
                b"354 End data with <CR><LF>.<CR><LF>\r\n"
            }
        } else if upper == "NOOP" || upper == "RSET" {
            b"250 2.0.0 Ok\r\n"
        } else if upper == "QUIT" {
            let _ = stream.write_all(b"221 2.0.0 Bye\r\n").await;
            return;
        } else {
            b"502 5.5.2 unknown\r\n"
        };
        pending.extend_from_slice(reply);
        let flush_now = !script.require_pipelining || upper == "DATA" || upper.starts_with("EHLO");
        if flush_now {
            if stream.write_all(&pending).await.is_err() {
                return;
            }
            pending.clear();
        }
        if upper == "DATA" && accepted > 0 {
            if script.drop_after_354 {
                let _ = line(&mut stream, &mut buffer).await;
                return;
            }
            let mut message = Vec::new();
            loop {
                let Some(raw) = line(&mut stream, &mut buffer).await else {
                    return; // lost mid-message: nothing is delivered
                };
                if raw == b".\r\n" {
                    break;
                }
                message.extend_from_slice(&raw);
            }
            {
                let mut seen = seen.lock().unwrap();
                seen.messages.push(message);
                seen.recipients.push(std::mem::take(&mut recipients));
            }
            let reply: &[u8] = if script.extra_after_accept {
                b"250 2.0.0 Ok: queued as 4Xq1\r\n250 2.0.0 Ok: extra\r\n"
            } else {
                b"250 2.0.0 Ok: queued as 4Xq1\r\n"
            };
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}

async fn gateway(upstream: &Upstream, timeout_secs: u64) -> TestServer {
    let mut setup = Setup::default();
    setup.config.upstream.url = format!("smtp://127.0.0.1:{}", upstream.port);
    setup.config.upstream.timeout_secs = timeout_secs;
    TestServer::start_setup(setup).await
}

/// A logged-in plaintext session (listener 2 allows AUTH without TLS).
async fn client(server: &TestServer) -> support::Client {
    let mut client = server.connect(2).await;
    client.hello(false).await;
    client.login().await;
    client
}

fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in wire.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_is_pipelined_and_leading_dots_survive() {
    let upstream = Upstream::start(Script {
        require_pipelining: true,
        ..Script::default()
    })
    .await;
    let server = gateway(&upstream, 5).await;
    let mut client = client(&server).await;
    // Lines that start with a dot, and the end-of-data sequence inside the message.
    let message =
        "From: a@example.com\r\n\r\n.hidden\r\n.\r\n..two\r\nMAIL FROM:<x@evil.test>\r\nend\r\n";
    let reply = client
        .transaction(
            "a@example.com",
            &["b@example.com", "c@example.com"],
            message,
        )
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    let messages = upstream.messages();
    assert_eq!(messages.len(), 1);
    let wire = &messages[0];
    assert!(
        wire.windows(11).any(|w| w == b"\r\n..hidden\r"),
        "stuffed on the wire"
    );
    let received = unstuff(wire);
    assert!(received.starts_with(b"Received: from client.test"));
    assert!(
        received.ends_with(message.as_bytes()),
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(
        upstream.seen.lock().unwrap().recipients[0],
        ["b@example.com", "c@example.com"]
    );
    // The connection is pooled: the next message uses it.
    let reply = client.send_plain().await;
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(upstream.connections(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_recipient_fails_the_whole_message_and_the_connection_is_dropped() {
    let upstream = Upstream::start(Script {
        refuse: vec!["refused@example.com".into()],
        ..Script::default()
    })
    .await;
    let server = gateway(&upstream, 5).await;
    let mut client = client(&server).await;
    // The upstream accepts DATA (one recipient is valid) and would take the message.
    let reply = client
        .transaction(
            "a@example.com",
            &["b@example.com", "refused@example.com"],
            "From: a@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("550 "), "{reply}");
    // Nothing may be delivered to the accepted recipient: SES's all-or-nothing rule.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(upstream.messages().is_empty(), "no message was completed");
    // The connection was left after a 354 without a message: never reused.
    let reply = client.send_plain().await;
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(upstream.messages().len(), 1);
    assert_eq!(upstream.connections(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_recipients_refused_and_data_refused_is_not_a_250() {
    let upstream = Upstream::start(Script {
        refuse: vec!["b@example.com".into(), "c@example.com".into()],
        ..Script::default()
    })
    .await;
    let server = gateway(&upstream, 5).await;
    let mut client = client(&server).await;
    let reply = client
        .transaction(
            "a@example.com",
            &["b@example.com", "c@example.com"],
            "From: a@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("550 "), "{reply}");
    assert!(upstream.messages().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_lost_after_354_is_a_temporary_failure() {
    let upstream = Upstream::start(Script {
        drop_after_354: true,
        ..Script::default()
    })
    .await;
    let server = gateway(&upstream, 5).await;
    let mut client = client(&server).await;
    for _ in 0..2 {
        let reply = client.send_plain().await;
        assert!(reply.starts_with("451 4.4.1"), "{reply}");
    }
    assert!(upstream.messages().is_empty());
    assert_eq!(upstream.connections(), 2, "a lost connection is not reused");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstream_replies_are_bounded() {
    // An endless reply line, and a reply of endless continuation lines.
    for greeting in [
        vec![b'2'; 200_000],
        b"220-x\r\n".repeat(10_000),
        b"22x nonsense\r\n".to_vec(),
    ] {
        let upstream = Upstream::start(Script {
            greeting: Some(greeting),
            ..Script::default()
        })
        .await;
        let server = gateway(&upstream, 3).await;
        let mut client = client(&server).await;
        let started = std::time::Instant::now();
        let reply = client.send_plain().await;
        assert!(reply.starts_with("451 4.4.1"), "{reply}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "refused at once, not at the timeout"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_pipelined_before_the_tls_handshake_are_refused() {
    let upstream = Upstream::start(Script {
        starttls_injection: Some(b"250 2.1.0 injected\r\n".to_vec()),
        ..Script::default()
    })
    .await;
    let mut setup = Setup::default();
    setup.config.upstream.url = format!("smtp://127.0.0.1:{}?tls=required", upstream.port);
    setup.config.upstream.timeout_secs = 3;
    let server = TestServer::start_setup(setup).await;
    let mut client = client(&server).await;
    let started = std::time::Instant::now();
    let reply = client.send_plain().await;
    assert!(reply.starts_with("451 4.4.1"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_recipient_mode_sets_refused_recipients_aside() {
    let upstream = Upstream::start(Script {
        refuse: vec!["refused@example.com".into()],
        require_pipelining: true,
        ..Script::default()
    })
    .await;
    let url = UpstreamUrl::parse(&format!("smtp://127.0.0.1:{}", upstream.port)).unwrap();
    let client = SmtpUpstream::new(
        &url,
        UpstreamOptions {
            pool_size: 1,
            timeout: Duration::from_secs(5),
            hello_name: "gw.test".into(),
            ..UpstreamOptions::default()
        },
    )
    .unwrap();
    let recipients = vec!["refused@example.com".to_owned(), "b@example.com".to_owned()];
    let sent = client
        .send_each("a@example.com", &recipients, b"Subject: x\r\n\r\n.x\r\n")
        .await
        .unwrap();
    assert!(sent.text.unwrap().contains("queued as 4Xq1"));
    assert_eq!(sent.failed.len(), 1);
    assert_eq!(sent.failed[0].recipient, "refused@example.com");
    assert_eq!(
        upstream.seen.lock().unwrap().recipients[0],
        ["b@example.com"]
    );
    assert_eq!(upstream.messages()[0], b"Subject: x\r\n\r\n..x\r\n");
    // All refused: no message, and the refusals come back.
    let only_refused = vec!["refused@example.com".to_owned()];
    let sent = client
        .send_each("a@example.com", &only_refused, b"Subject: y\r\n\r\ny\r\n")
        .await
        .unwrap();
    assert!(sent.text.is_none());
    assert_eq!(sent.failed.len(), 1);
    assert_eq!(upstream.messages().len(), 1);
    // The pass-through mode refuses the whole message.
    let refused = client
        .send("a@example.com", &recipients, b"Subject: z\r\n\r\nz\r\n")
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(upstream.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_holding_an_unasked_reply_is_not_reused() {
    let upstream = Upstream::start(Script {
        extra_after_accept: true,
        ..Script::default()
    })
    .await;
    let server = gateway(&upstream, 5).await;
    let mut client = client(&server).await;
    for _ in 0..2 {
        // Read as the next transaction's replies, the extra one would shift them all.
        let reply = client.send_plain().await;
        assert!(reply.starts_with("250 "), "{reply}");
    }
    assert_eq!(upstream.messages().len(), 2);
    assert_eq!(upstream.connections(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_upstream_gets_the_pipelined_transaction() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = key.cert.pem();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![key.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            shared.lock().unwrap().connections += 1;
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let script = Script {
                require_pipelining: true,
                ..Script::default()
            };
            tokio::spawn(session(tls, script, Arc::clone(&shared)));
        }
    });
    let url = UpstreamUrl::parse(&format!("smtps://localhost:{port}")).unwrap();
    let upstream = SmtpUpstream::new(
        &url,
        UpstreamOptions {
            extra_root_pem: Some(cert_pem.into_bytes()),
            pool_size: 1,
            timeout: Duration::from_secs(5),
            hello_name: "gw.test".into(),
            ..UpstreamOptions::default()
        },
    )
    .unwrap();
    for n in 0..2 {
        let text = upstream
            .send_parts(
                "a@example.com",
                &["b@example.com".to_owned()],
                &[b"Received: x\r\n", format!(".{n}\r\n").as_bytes()],
            )
            .await
            .unwrap();
        assert!(text.contains("queued as"), "{text}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.messages,
        [b"Received: x\r\n..0\r\n", b"Received: x\r\n..1\r\n"]
    );
    assert_eq!(seen.connections, 1, "the TLS connection is pooled");
}

/// Dot-stuffing as RFC 5321 §4.5.2 asks: a "." before every line that starts with one.
fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out
}

/// The two messages of `relayed_bytes_are_the_trace_header_then_the_message_exactly`: what
/// the client sends after DATA (dot-stuffed, end included), and what the DATA reader yields.
const WIRE_CASES: [(&[u8], &[u8]); 2] = [
    (
        // Lines starting with dots, the end sequence and a command inside the message.
        b"From: a@example.com\r\nSubject: dots\r\n\r\n..hidden\r\n..\r\n...two\r\n....\r\nMAIL FROM:<x@evil.test>\r\nend\r\n.\r\n",
        b"From: a@example.com\r\nSubject: dots\r\n\r\n.hidden\r\n.\r\n..two\r\n...\r\nMAIL FROM:<x@evil.test>\r\nend\r\n",
    ),
    (
        // Bare LF line ends (stored as CR LF), a dot line after one, and the smuggling form of
        // the end (`\n.\r\n`) as the last line: the reader yields an empty line for it.
        b"From: a@example.com\nSubject: bare-lf\n\nbody\n..dot\nlast\n.\r\n.\r\n",
        b"From: a@example.com\r\nSubject: bare-lf\r\n\r\nbody\r\n.dot\r\nlast\r\n\r\n",
    ),
];

/// Sends each of `WIRE_CASES` in one session; every reply must be a 250.
async fn send_wire_cases(server: &TestServer) {
    let mut client = client(server).await;
    for (sent, _) in WIRE_CASES {
        client.begin_data("a@example.com", &["b@example.com"]).await;
        client.send(sent).await;
        let reply = client.reply().await;
        assert!(reply.starts_with("250 "), "{reply}");
    }
}

/// Splits a relayed (unstuffed) message into this hop's `Received:` header, checked to be
/// sesgate's, and the rest.
fn split_trace(message: &[u8]) -> (&[u8], &[u8]) {
    let rest = support::strip_trace(message);
    let header = &message[..message.len() - rest.len()];
    let text = String::from_utf8_lossy(header);
    assert!(
        text.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby ")
            && text.contains(" (sesgate) with ESMTPA id ")
            && text.contains("\r\n\tfor <b@example.com>;\r\n\t")
            && text.ends_with(" +0000\r\n"),
        "{text:?}"
    );
    (header, rest)
}

/// Whether relayed through the upstream while the client waits, stored and delivered by the
/// spool, or stored in the file outbox, a message is the bytes an earlier release sent (when
/// the header was joined to the message in one buffer): sesgate's `Received:` header, then
/// the message exactly as the DATA reader yielded it, dot-stuffed on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_bytes_are_the_trace_header_then_the_message_exactly() {
    for spooled in [false, true] {
        let upstream = Upstream::start(Script::default()).await;
        let mut setup = Setup::default();
        setup.config.upstream.url = format!("smtp://127.0.0.1:{}", upstream.port);
        setup.config.upstream.timeout_secs = 5;
        if spooled {
            setup.config.spool = Some(sesgate::config::Spool {
                dir: "spool".into(),
                ..sesgate::config::Spool::default()
            });
        }
        let server = TestServer::start_setup(setup).await;
        send_wire_cases(&server).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while upstream.messages().len() < WIRE_CASES.len() {
            assert!(std::time::Instant::now() < deadline, "not delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut messages = upstream.messages();
        // The spool's workers may deliver in either order.
        messages.sort_by_key(|wire| !wire.windows(12).any(|w| w == b"Subject: dot"));
        for (wire, (_, yielded)) in messages.iter().zip(WIRE_CASES) {
            let unstuffed = unstuff(wire);
            let (header, message) = split_trace(&unstuffed);
            assert_eq!(
                String::from_utf8_lossy(message),
                String::from_utf8_lossy(yielded),
                "spooled: {spooled}"
            );
            let mut joined = header.to_vec();
            joined.extend_from_slice(yielded);
            assert_eq!(
                String::from_utf8_lossy(wire),
                String::from_utf8_lossy(&stuff(&joined)),
                "stuffed on the wire, spooled: {spooled}"
            );
        }
        server.stop().await;
    }
    // The file outbox stores the same bytes, unstuffed.
    let server = TestServer::start().await;
    send_wire_cases(&server).await;
    let stored = server.outbox_raw();
    assert_eq!(stored.len(), WIRE_CASES.len());
    for ((file, _), (_, yielded)) in stored.iter().zip(WIRE_CASES) {
        let (_, message) = split_trace(file);
        assert_eq!(message, yielded);
    }
    server.stop().await;
}
