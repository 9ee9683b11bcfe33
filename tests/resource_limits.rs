//! One client cannot exhaust the gateway (issue 8 §4, SPEC §6): the per-address cap holds
//! before TLS and PROXY, handshakes / commands / messages / sessions have deadlines, a hung
//! upstream answers within its timeout, and EHLO and MAIL/RCPT parameters are strict. Each test
//! talks SMTP to a real sesgate on loopback with small limits.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_to_the_implicit_tls_port_cannot_lock_others_out() {
    let server = TestServer::start_with(|limits| {
        limits.smtp.max_connections = 10;
        limits.smtp.max_connections_per_ip = 3;
        limits.smtp.handshake_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    // Twice as many silent connections as the whole server takes, all from one address.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(connect_from("127.0.0.2", server.port(IMPLICIT)).await);
    }
    // Past the per-address cap they are closed at once, before any TLS.
    let mut closed_at_once = 0;
    for stream in &mut silent {
        if closed_within(stream, Duration::from_millis(300))
            .await
            .is_some()
        {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 17, "all but max_connections_per_ip");
    // Another address is served meanwhile.
    let stream = connect_from("127.0.0.3", server.port(IMPLICIT)).await;
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    client.start_tls().await;
    assert!(client.reply().await.starts_with("220 gw.test ESMTP"));
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye");
    // The three that hold slots are closed after the handshake timeout, not 30 s.
    for stream in &mut silent {
        let closed = closed_within(stream, Duration::from_secs(3)).await;
        assert!(closed.is_some(), "a silent handshake outlived its deadline");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_clients_are_capped_by_their_real_address_per_ipv6_slash_64() {
    let server = TestServer::start_with(|limits| {
        limits.smtp.max_connections_per_ip = 1;
        limits.smtp.handshake_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let proxied = |source: &str| format!("PROXY TCP6 {source} 2001:db8:ffff::1 40000 587\r\n");
    // Both clients come through the same trusted proxy; the cap applies to the client address.
    let mut first = TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
        .await
        .unwrap();
    first
        .write_all(proxied("2001:db8:1:2::1").as_bytes())
        .await
        .unwrap();
    let mut first = Client::new(Box::new(first), server.cert_pem());
    assert!(first.reply().await.starts_with("220 "));
    let mut other_client = TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
        .await
        .unwrap();
    other_client
        .write_all(proxied("2001:db8:9:9::1").as_bytes())
        .await
        .unwrap();
    let mut other_client = Client::new(Box::new(other_client), server.cert_pem());
    assert!(other_client.reply().await.starts_with("220 "));
    // Another address of the same /64 is the same client.
    let mut same_prefix = TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
        .await
        .unwrap();
    same_prefix
        .write_all(proxied("2001:db8:1:2:ffff::99").as_bytes())
        .await
        .unwrap();
    let mut same_prefix = Client::new(Box::new(same_prefix), server.cert_pem());
    assert_eq!(
        same_prefix.reply().await,
        "421 4.7.0 Too many concurrent SMTP connections"
    );
    assert!(same_prefix.is_closed().await);
    // A trusted proxy that never sends its header is dropped after the handshake timeout.
    let mut silent_proxy = TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
        .await
        .unwrap();
    let closed = closed_within(&mut silent_proxy, Duration::from_secs(3)).await;
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(800)),
        "{closed:?}"
    );
    server.stop().await;
}

/// A raw session whose writes may fail once the server has closed.
struct Dripper {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Dripper {
    async fn connect(server: &TestServer) -> Dripper {
        let stream = TcpStream::connect(("127.0.0.1", server.port(PLAINTEXT_AUTH)))
            .await
            .unwrap();
        let (read, writer) = stream.into_split();
        Dripper {
            reader: tokio::io::BufReader::new(read),
            writer,
        }
    }

    /// One reply line (multi-line replies: the last line), or "" when closed.
    async fn reply(&mut self) -> String {
        use tokio::io::AsyncBufReadExt;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return String::new();
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_owned();
            }
        }
    }

    async fn command(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// Greeting, EHLO, AUTH, MAIL, RCPT, DATA: ready for the message.
    async fn at_data(server: &TestServer) -> Dripper {
        let mut session = Dripper::connect(server).await;
        assert!(session.reply().await.starts_with("220 "));
        assert!(
            session
                .command("EHLO client.test")
                .await
                .starts_with("250 ")
        );
        let plain = base64_encode(format!("\0{USER}\0{PASSWORD}").as_bytes());
        assert!(
            session
                .command(&format!("AUTH PLAIN {plain}"))
                .await
                .starts_with("235 ")
        );
        assert!(
            session
                .command("MAIL FROM:<sender@example.com>")
                .await
                .starts_with("250 ")
        );
        assert!(
            session
                .command("RCPT TO:<rcpt@example.com>")
                .await
                .starts_with("250 ")
        );
        assert!(session.command("DATA").await.starts_with("354 "));
        session
    }

    /// Writes `bytes` one byte every 100 ms in the background, until a write fails.
    fn drip(self, bytes: &'static [u8]) -> tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf> {
        let mut writer = self.writer;
        tokio::spawn(async move {
            for byte in bytes.iter().cycle() {
                if writer.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        self.reader
    }
}

/// The last reply line before the server closes, and how long it took.
async fn final_reply(
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> (String, Duration) {
    use tokio::io::AsyncBufReadExt;
    let start = Instant::now();
    let mut lines = reader.lines();
    let mut last = String::new();
    let wait = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(line)) = lines.next_line().await {
            last = line;
        }
    })
    .await;
    assert!(wait.is_ok(), "the server never closed the dripping session");
    (last, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_dripped_byte_by_byte_times_out_and_frees_the_slot() {
    let server = TestServer::start_with(|limits| {
        limits.smtp.max_connections_per_ip = 1;
        limits.smtp.command_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut session = Dripper::connect(&server).await;
    assert!(session.reply().await.starts_with("220 "));
    // One byte per 100 ms: each read is far within the idle timeout, the line never ends.
    let reader = session.drip(b"NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    let (reply, took) = final_reply(reader).await;
    assert_eq!(reply, "451 4.4.2 Timeout waiting for data from client");
    assert!(took < Duration::from_secs(3), "{took:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = server.connect(PLAINTEXT_AUTH).await;
    assert!(next.reply().await.starts_with("220 "), "the slot is free");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_dripped_byte_by_byte_times_out_and_frees_the_slot() {
    let server = TestServer::start_with(|limits| {
        limits.smtp.max_connections_per_ip = 1;
        limits.smtp.message_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let session = Dripper::at_data(&server).await;
    let reader = session.drip(b"Subject: slow\r\n");
    let (reply, took) = final_reply(reader).await;
    assert_eq!(reply, "451 4.4.2 Timeout waiting for data from client");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(server.outbox().is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = server.connect(PLAINTEXT_AUTH).await;
    assert!(next.reply().await.starts_with("220 "), "the slot is free");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_session_ends_at_its_lifetime() {
    let server = TestServer::start_with(|limits| {
        limits.smtp.session_timeout = std::time::Duration::from_secs(1)
    })
    .await;
    let mut session = Dripper::connect(&server).await;
    assert!(session.reply().await.starts_with("220 "));
    // Complete commands, each well within every per-command limit.
    let reader = session.drip(b"NOOP\r\n");
    let (reply, took) = final_reply(reader).await;
    assert_eq!(
        reply,
        "421 4.4.2 Session time limit exceeded, closing connection"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    server.stop().await;
}

/// Accepts TCP connections and never says anything: a hung upstream.
async fn hung_upstream() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_hung_upstream_every_client_is_answered_within_the_upstream_timeout() {
    let (port, upstream) = hung_upstream().await;
    let mut setup = Setup::default();
    setup.config.upstream.url = format!("smtp://127.0.0.1:{port}");
    setup.config.upstream.pool_size = 1;
    setup.config.upstream.timeout_secs = 1;
    let server = TestServer::start_setup(setup).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = server.connect(STARTTLS).await;
        client.hello(true).await;
        client.login().await;
        clients.push(client);
    }
    // Three messages at once through a pool of one: none may wait for the others' timeouts.
    let sends = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            let start = Instant::now();
            let reply = client
                .transaction(
                    "a@example.com",
                    &["b@example.com"],
                    "From: a@example.com\r\n\r\nx\r\n",
                )
                .await;
            (reply, start.elapsed())
        })
    });
    for send in sends.collect::<Vec<_>>() {
        let (reply, took) = send.await.unwrap();
        assert!(reply.starts_with("451 4.4.1 "), "{reply}");
        assert!(
            took < Duration::from_millis(1800),
            "answered after {took:?}"
        );
    }
    upstream.abort();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ehlo_takes_a_domain_or_an_address_literal() {
    let server = TestServer::start_with(|limits| limits.smtp.max_errors = 100).await;
    let mut client = server.connect(PLAINTEXT_AUTH).await;
    assert!(client.reply().await.starts_with("220 "));
    for bad in [
        "EHLO bad<name>",
        "EHLO evil\x1b[2J",
        "EHLO a..b",
        "EHLO -a.example",
        "EHLO a-.example",
        "EHLO example.com.",
        "EHLO x\"y",
        "EHLO [300.1.1.1]",
        "EHLO [IPv6:not-an-address]",
        "EHLO [1.2.3.4",
        "EHLO [tag:anything]",
        "EHLO ü.example",
        "HELO ()",
        "HELO a;b",
    ] {
        assert_eq!(
            client.command(bad).await,
            "501 5.5.2 Invalid domain name",
            "{bad:?}"
        );
    }
    // A refused EHLO is not remembered.
    assert_eq!(
        client.command("MAIL FROM:<a@example.com>").await,
        "503 5.5.1 Bad sequence of commands: send EHLO first"
    );
    for good in [
        "HELO client.test",
        "EHLO localhost",
        "EHLO DESKTOP-1A2B_3C",
        "EHLO [192.0.2.1]",
        "EHLO [IPv6:2001:db8::1]",
    ] {
        assert!(client.command(good).await.starts_with("250"), "{good:?}");
    }
    // The validated name is what reaches the Received: header.
    client.login().await;
    let reply = client.send_plain().await;
    assert!(reply.starts_with("250 "), "{reply}");
    let (message, _) = &server.outbox_raw()[0];
    assert!(
        message.starts_with(b"Received: from [IPv6:2001:db8::1] "),
        "{}",
        String::from_utf8_lossy(message)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_and_rcpt_parameters_that_were_not_advertised_are_refused() {
    let server = TestServer::start_with(|limits| limits.smtp.max_errors = 100).await;
    let mut client = server.connect(PLAINTEXT_AUTH).await;
    client.hello(false).await;
    client.login().await;
    for parameters in [
        "SMTPUTF8",
        "REQUIRETLS",
        "RET=FULL",
        "ENVID=abc",
        "HOLDFOR=10",
        "HOLDUNTIL=1900000000",
        "MT-PRIORITY=3",
        "BY=120;R",
        "SOLICIT=org.example",
        "TRANSID=<x@y>",
        "MTRK=abc:10",
        "CONPERM",
        "BODY=BINARYMIME",
        "BODY=7BIT BODY=8BITMIME",
        "XFOO=1",
        "SIZE=10 XFOO",
    ] {
        assert_eq!(
            client
                .command(&format!("MAIL FROM:<a@example.com> {parameters}"))
                .await,
            "555 5.5.4 Unsupported option",
            "{parameters}"
        );
    }
    // What EHLO advertised (SIZE, 8BITMIME) and RFC 4954's AUTH= pass.
    for parameters in ["SIZE=100 BODY=8BITMIME", "BODY=7BIT", "AUTH=<>"] {
        assert_eq!(
            client
                .command(&format!("MAIL FROM:<a@example.com> {parameters}"))
                .await,
            "250 2.1.0 Ok",
            "{parameters}"
        );
        assert_eq!(client.command("RSET").await, "250 2.0.0 Ok");
    }
    assert_eq!(
        client.command("MAIL FROM:<a@example.com>").await,
        "250 2.1.0 Ok"
    );
    for parameters in [
        "NOTIFY=NEVER",
        "NOTIFY=SUCCESS,FAILURE",
        "ORCPT=rfc822;b@example.com",
        "RRVS=2014-04-03T23:01:00Z",
        "CONNEG",
        "XFOO=1",
    ] {
        assert_eq!(
            client
                .command(&format!("RCPT TO:<b@example.com> {parameters}"))
                .await,
            "555 5.5.4 Unsupported option",
            "{parameters}"
        );
    }
    assert_eq!(
        client.command("RCPT TO:<b@example.com>").await,
        "250 2.1.5 Ok"
    );
    server.stop().await;
}
