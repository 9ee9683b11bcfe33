//! An attacker against the SMTP front end (issue 8 §4, §5): slot exhaustion by slow or silent
//! clients, memory by long lines and floods, AUTH tricks and lockout keys, protocol order,
//! smuggled ends of data through a real upstream, and what the trace log shows. Every test talks
//! to a real sesgate on loopback with small limits; clients bind 127.0.0.x to play different
//! addresses.

mod support;

use std::time::{Duration, Instant};

use support::sink::Sink;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes `bytes` one byte every 100 ms in the background until a write fails.
fn drip(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: &'static [u8]) {
    tokio::spawn(async move {
        for byte in bytes.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// A legitimate client from `source` logs in and sends one message.
async fn legit_transaction(server: &TestServer, source: &str) {
    let started = Instant::now();
    let mut client = server.client_from(source).await;
    client.login().await;
    let reply = client.send_plain().await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served promptly"
    );
}

async fn small_server() -> TestServer {
    TestServer::start_with(|limits| {
        limits.smtp.max_connections = 30;
        limits.smtp.max_connections_per_ip = 2;
        limits.smtp.handshake_timeout = Duration::from_secs(1);
        limits.smtp.command_timeout = Duration::from_secs(1);
        limits.smtp.idle_timeout = Duration::from_secs(1);
        limits.smtp.message_timeout = Duration::from_secs(2);
    })
    .await
}

/// Slow TLS handshakes (implicit port), STARTTLS then silence, PROXY headers dripped by a
/// trusted peer and by an untrusted one: each ends at its deadline, each address holds at most
/// its cap, and a client from another address is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handshakes_and_proxy_headers_are_bounded() {
    let server = small_server().await;
    // A TLS ClientHello prefix, one byte per 100 ms, five times from one address.
    const CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
    const PROXY_V1: &[u8] = b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 25\r\n";
    let mut held = Vec::new();
    for _ in 0..5 {
        let stream = connect_from("127.0.0.2", server.port(IMPLICIT)).await;
        let (read, write) = stream.into_split();
        drip(write, CLIENT_HELLO);
        held.push(read);
    }
    // A trusted proxy that drips its header.
    let mut proxy_drips = Vec::new();
    for _ in 0..3 {
        let stream = connect_from("127.0.0.3", server.port(BEHIND_PROXY)).await;
        let (read, write) = stream.into_split();
        drip(write, PROXY_V1);
        proxy_drips.push(read);
    }
    // An untrusted peer dripping a PROXY header as its first command line.
    let stream = connect_from("127.0.0.4", server.port(STARTTLS)).await;
    let (untrusted, write) = stream.into_split();
    drip(write, PROXY_V1);
    // STARTTLS, then silence.
    let mut silent_tls = connect_from("127.0.0.5", server.port(STARTTLS)).await;
    silent_tls
        .write_all(b"EHLO client.test\r\nSTARTTLS\r\n")
        .await
        .unwrap();
    legit_transaction(&server, "127.0.0.9").await;
    let started = Instant::now();
    let mut all = held;
    all.extend(proxy_drips);
    all.push(untrusted);
    for mut read in all {
        let wait = tokio::time::timeout(Duration::from_secs(3), async {
            let mut buffer = [0u8; 512];
            while read.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        assert!(wait.is_ok(), "a dripping connection outlived its deadline");
    }
    assert!(
        closed_within(&mut silent_tls, Duration::from_secs(3))
            .await
            .is_some(),
        "STARTTLS then silence outlived the handshake deadline"
    );
    // Every deadline here is 1-2 s (the idle timeout too); the bound leaves room for a loaded
    // CI machine while still far below anything a drip could reach without deadlines.
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(
        server.open_connections_after(Duration::from_secs(2)).await,
        0
    );
    server.stop().await;
}

/// Dripping an AUTH LOGIN continuation, a DATA line, or a command: each hits its deadline (one
/// second here), whatever the per-read idle timeout allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripped_auth_continuations_end_at_the_command_deadline() {
    let server = TestServer::start_with(|limits| {
        limits.smtp.idle_timeout = Duration::from_secs(30);
        limits.smtp.command_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = connect_from("127.0.0.2", server.port(PLAINTEXT_AUTH)).await;
    stream
        .write_all(b"EHLO client.test\r\nAUTH LOGIN\r\n")
        .await
        .unwrap();
    let (mut read, write) = stream.into_split();
    let started = Instant::now();
    drip(write, b"QUtJQUVYQU1QTEVURVNUMDAwMDE=");
    legit_transaction(&server, "127.0.0.3").await;
    let mut replies = Vec::new();
    let wait = tokio::time::timeout(Duration::from_secs(3), read.read_to_end(&mut replies)).await;
    assert!(
        wait.is_ok(),
        "the dripped continuation outlived its deadline"
    );
    let replies = String::from_utf8_lossy(&replies);
    assert!(replies.contains("334 VXNlcm5hbWU6"), "{replies}");
    assert!(
        replies
            .trim_end()
            .ends_with("451 4.4.2 Timeout waiting for data from client"),
        "{replies}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    server.stop().await;
}

/// A client that pipelines commands and never reads its replies: once its receive window and
/// the server's buffers are full, the server's write waits at most the idle timeout and the
/// session ends; the server never buffers more than a bounded amount for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped() {
    let server = small_server().await;
    let stream = connect_from("127.0.0.2", server.port(PLAINTEXT_AUTH)).await;
    let (_read, mut write) = stream.into_split();
    let flood = tokio::spawn(async move {
        // EHLO: the largest reply for the fewest bytes.
        let chunk = b"EHLO a\r\n".repeat(8192);
        let mut sent = 0usize;
        while sent < 200 << 20 {
            match tokio::time::timeout(Duration::from_secs(6), write.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                Ok(Err(_)) => return (sent, true),
                Err(_) => return (sent, false),
            }
        }
        (sent, false)
    });
    legit_transaction(&server, "127.0.0.3").await;
    let (sent, reset) = flood.await.unwrap();
    assert!(
        reset,
        "the server still held the session after {sent} bytes"
    );
    assert!(sent < 64 << 20, "the server kept reading: {sent} bytes");
    server.stop().await;
}

/// An authenticated client on the plaintext-AUTH listener, from `source`.
async fn logged_in(server: &TestServer, source: &str) -> Client {
    let mut client = server.client_from(source).await;
    client.login().await;
    client
}

/// Very long command lines, a pipelined flood, and recipients past the limit: each answered,
/// nothing unbounded kept, the session still usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_floods_and_recipients_are_bounded() {
    let server = TestServer::start_with(|limits| limits.smtp.max_errors = 5).await;
    let mut client = logged_in(&server, "127.0.0.2").await;
    // 1 MB without a line end, then its end: one refusal, the session goes on.
    let mut long = vec![b'A'; 1 << 20];
    long.extend_from_slice(b"\r\n");
    client.send(&long).await;
    assert!(client.reply().await.starts_with("500 "));
    let mut mail = format!("MAIL FROM:<{}@example.com>", "a".repeat(5000)).into_bytes();
    mail.extend_from_slice(b"\r\n");
    client.send(&mail).await;
    assert!(client.reply().await.starts_with("500 "));
    assert_eq!(client.command("NOOP").await, "250 2.0.0 Ok");
    // 20,000 pipelined commands, read as they come.
    client.send(&b"RSET\r\n".repeat(20_000)).await;
    for _ in 0..20_000 {
        assert_eq!(client.reply().await, "250 2.0.0 Ok");
    }
    // 200 recipients against a limit of 50.
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .await
            .starts_with("250")
    );
    let mut rcpts = Vec::new();
    for n in 0..200 {
        rcpts.extend_from_slice(format!("RCPT TO:<r{n}@example.com>\r\n").as_bytes());
    }
    client.send(&rcpts).await;
    let mut accepted = 0;
    for _ in 0..200 {
        let reply = client.reply().await;
        if reply.starts_with("250") {
            accepted += 1;
        } else {
            assert!(reply.starts_with("452 "), "{reply}");
        }
    }
    assert_eq!(accepted, 50);
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"From: a@example.com\r\n\r\nx\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.0.0 Ok"));
    let outbox = server.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        outbox[0].1["recipients"].as_array().map(Vec::len),
        Some(50),
        "{}",
        outbox[0].1
    );
    server.stop().await;
}

/// A 10 MB message of 2 million tiny header lines (the issue measured 8 million: the cost is
/// linear, the debug build is slow), and a huge header section of long fields:
/// refused after the end of data is read, nothing stored, the session usable; the same size of
/// tiny body lines (a million) is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millions_of_tiny_lines_are_refused_or_stored_bounded() {
    let server = TestServer::start().await;
    let mut client = logged_in(&server, "127.0.0.2").await;
    let started = Instant::now();
    let mut tiny = b"From: a@example.com\r\n".to_vec();
    tiny.extend_from_slice(&b"a:b\r\n".repeat(2_000_000));
    tiny.extend_from_slice(b"\r\nx\r\n.\r\n");
    assert!(tiny.len() < 41_943_040);
    client.begin_data("a@example.com", &["b@example.com"]).await;
    client.send(&tiny).await;
    drop(tiny);
    let reply = client.reply().await;
    assert!(reply.starts_with("554 5.6.0 Transaction failed"), "{reply}");
    // Long fields: 20 × 990 bytes each, folded or not, past the header-section limit.
    let mut wide = b"From: a@example.com\r\n".to_vec();
    for n in 0..2000 {
        wide.extend_from_slice(format!("X-{n}: {}\r\n", "v".repeat(980)).as_bytes());
    }
    wide.extend_from_slice(b"\r\nx\r\n.\r\n");
    client.begin_data("a@example.com", &["b@example.com"]).await;
    client.send(&wide).await;
    let reply = client.reply().await;
    assert!(reply.starts_with("554 5.6.0 Transaction failed"), "{reply}");
    assert!(server.outbox().is_empty());
    // A body of 4 million tiny lines is a normal message.
    let mut body = b"From: a@example.com\r\n\r\n".to_vec();
    body.extend_from_slice(&b"x\r\n".repeat(1_000_000));
    body.extend_from_slice(b".\r\n");
    client.begin_data("a@example.com", &["b@example.com"]).await;
    client.send(&body).await;
    assert!(client.reply().await.starts_with("250 2.0.0 Ok"));
    assert_eq!(server.outbox().len(), 1);
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye");
    eprintln!("tiny-line messages took {:?}", started.elapsed());
    server.stop().await;
}

/// AUTH tricks: an authorization identity naming someone else, NUL games, `=`, huge base64,
/// cancelled and empty LOGIN steps, BDAT and MAIL before AUTH: none authenticates or relays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tricks_never_authenticate() {
    const OTHER: &str = "AKIAOTHERUSER0000002";
    let users = format!(
        "{}{}",
        user_toml(
            "test-app",
            "/apps/",
            USER,
            PASSWORD,
            "policies = [\"AllowSendingOnly\"]"
        ),
        user_toml(
            "other",
            "/apps/",
            OTHER,
            "other password",
            "policies = [\"AllowSendingOnly\"]"
        )
    );
    let server = TestServer::start_setup(Setup {
        users: Some(users),
        config: {
            let mut config = sesgate::config::Config::default();
            config.limits.smtp.max_auth_failures = 100;
            config.limits.smtp.max_errors = 100;
            config
        },
        ..Setup::default()
    })
    .await;
    let mut client = server.client_from("127.0.0.2").await;
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .await
            .starts_with("530 ")
    );
    assert!(client.command("BDAT 5 LAST").await.starts_with("502 "));
    let plain = |raw: &str| format!("AUTH PLAIN {}", base64_encode(raw.as_bytes()));
    let refusals: &[(String, &str)] = &[
        // The right password of USER, asking to act as OTHER, and the other way round.
        (plain(&format!("{OTHER}\0{USER}\0{PASSWORD}")), "535 "),
        (plain(&format!("{USER}\0{OTHER}\0{PASSWORD}")), "535 "),
        // NUL games.
        (plain(&format!("\0{USER}\0{PASSWORD}\0")), "501 "),
        (plain(&format!("\0{USER}\0\0{PASSWORD}")), "501 "),
        (plain(&format!("{USER}\0\0{PASSWORD}")), "535 "),
        (plain(&format!("\0\0{USER}\0{PASSWORD}")), "501 "),
        (plain(&format!("\0{USER}{PASSWORD}")), "501 "),
        (plain(&format!("\0{USER}\0{PASSWORD}\0{PASSWORD}")), "501 "),
        (plain(&format!("\0{USER} \0{PASSWORD}")), "535 "),
        (plain(&format!("\0{USER}\0{PASSWORD} ")), "535 "),
        (
            plain(&format!("\0{}\0{PASSWORD}", USER.to_lowercase())),
            "535 ",
        ),
        // `=` is an empty response: no credentials at all.
        ("AUTH PLAIN =".to_owned(), "501 "),
        (format!("AUTH PLAIN {}", "QUFB".repeat(5000)), "500 "),
        ("AUTH PLAIN *".to_owned(), "501 "),
        ("AUTH CRAM-MD5".to_owned(), "504 "),
        (format!("AUTH LOGIN {}", base64_encode(b"")), "501 "),
    ];
    for (command, expected) in refusals {
        let reply = client.command(command).await;
        if reply.starts_with("334 ") {
            // A continuation: cancel it.
            let reply = client.command("*").await;
            assert!(reply.starts_with("501 "), "{command:.60}: {reply}");
            continue;
        }
        assert!(reply.starts_with(expected), "{command:.60}: {reply}");
    }
    // The continuation forms: huge, `=`, empty user name.
    for response in ["QUFB".repeat(5000), "=".to_owned(), String::new()] {
        assert_eq!(client.command("AUTH PLAIN").await, "334");
        let reply = client.command(&response).await;
        assert!(reply.starts_with("501 "), "{response:.20}: {reply}");
    }
    assert_eq!(client.command("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(client.command("").await, "334 UGFzc3dvcmQ6");
    let reply = client.command(&base64_encode(PASSWORD.as_bytes())).await;
    assert!(reply.starts_with("535 "), "{reply}");
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .await
            .starts_with("530 ")
    );
    // The genuine login still works afterwards, as itself.
    client.login().await;
    assert!(server.outbox().is_empty());
    server.stop().await;
}

/// SMTP smuggling: every near-miss end of data, sent through a real upstream. Each is one
/// message (both halves inside it, the upstream seeing the same end) or refused; never two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_ends_of_data_never_make_two_messages() {
    let sink = Sink::start().await;
    let server = TestServer::start_setup(Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = logged_in(&server, "127.0.0.2").await;
    let variants: &[&[u8]] = &[
        b"\n.\n",
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r.\r\n",
        b"\r\n.\r\r\n",
        b"\r\n\x00.\r\n",
        b"\n..\n",
        b"\r\n.\x00\r\n",
    ];
    let mut relayed = 0;
    for (n, variant) in variants.iter().enumerate() {
        let mut data =
            format!("From: a@example.com\r\nSubject: v{n}\r\n\r\nFIRST-{n}").into_bytes();
        data.extend_from_slice(variant);
        data.extend_from_slice(
            format!(
                "MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: evil@example.com\r\n\r\nSMUGGLED-{n}\r\n.\r\n"
            )
            .as_bytes(),
        );
        client.begin_data("a@example.com", &["b@example.com"]).await;
        client.send(&data).await;
        let reply = client.reply().await;
        if reply.starts_with("250") {
            relayed += 1;
        } else {
            assert!(reply.starts_with("5"), "{variant:?}: {reply}");
        }
        // Nothing was left over to be read as commands: the next reply answers NOOP.
        assert_eq!(client.command("NOOP").await, "250 2.0.0 Ok", "{variant:?}");
    }
    let accepted = sink.accepted();
    assert_eq!(
        accepted.len(),
        relayed,
        "one upstream message per accepted one"
    );
    for message in &accepted {
        assert_eq!(message.mail_from, "a@example.com");
        assert_eq!(message.recipients, ["b@example.com"]);
        let text = String::from_utf8_lossy(&message.data);
        let n = text
            .split("Subject: v")
            .nth(1)
            .unwrap()
            .split('\r')
            .next()
            .unwrap();
        assert!(
            text.contains(&format!("FIRST-{n}")) && text.contains(&format!("SMUGGLED-{n}")),
            "the upstream saw another end of data: {text:?}"
        );
    }
    assert!(
        relayed > 0,
        "the bare-LF forms are normalized and relayed whole"
    );
    server.stop().await;
}

/// Commands out of order, EHLO arguments that are not names, MAIL FROM with control, 8-bit
/// and non-ASCII bytes or too long: refused, nothing relayed, no client text echoed raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_and_malformed_commands_are_refused() {
    let server = TestServer::start_with(|limits| limits.smtp.max_errors = 100).await;
    let stream = connect_from("127.0.0.2", server.port(PLAINTEXT_AUTH)).await;
    let mut client = Client::new(Box::new(stream), Vec::new());
    assert!(client.reply().await.starts_with("220 "));
    for (command, expected) in [
        ("MAIL FROM:<a@example.com>", "503 "),
        ("RCPT TO:<a@example.com>", "503 "),
        ("DATA", "503 "),
        ("AUTH PLAIN", "503 "),
        ("STARTTLS", "502 "),
        ("EHLO a\x01b", "501 "),
        ("EHLO a\r\x1b[2Jb", "501 "),
        ("EHLO <a@b>", "501 "),
        ("HELO a\"b", "501 "),
    ] {
        let reply = client.command(command).await;
        assert!(reply.starts_with(expected), "{command:?}: {reply}");
        assert!(!reply.contains('\x1b') && !reply.contains('\x01'));
    }
    // Words after the name are ignored (as smtp-proto parses EHLO): only the checked name is
    // kept and echoed.
    let reply = client.command("EHLO a.test <b@c> \"x\"").await;
    assert!(reply.starts_with("250-gw.test greets a.test\n"), "{reply}");
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .await
            .starts_with("530 ")
    );
    client.login().await;
    for from in [
        "a\x01b@example.com".to_owned(),
        "a\x7fb@example.com".to_owned(),
        "a\u{e9}@example.com".to_owned(),
        "a@exa mple.com".to_owned(),
        "\"a\rb\"@example.com".to_owned(),
        format!("{}@example.com", "a".repeat(3000)),
    ] {
        let reply = client.command(&format!("MAIL FROM:<{from}>")).await;
        assert!(!reply.starts_with("250"), "{from:?}: {reply}");
        assert!(
            reply
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) || b == b'\n'),
            "{reply:?}"
        );
    }
    // Raw 8-bit bytes (not UTF-8) in MAIL FROM.
    client.send(b"MAIL FROM:<a\xff\xfe@example.com>\r\n").await;
    assert!(!client.reply().await.starts_with("250"));
    assert!(
        client
            .command("RCPT TO:<b@example.com>")
            .await
            .starts_with("503 ")
    );
    assert!(client.command("DATA").await.starts_with("503 "));
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .await
            .starts_with("250")
    );
    assert!(client.command("DATA").await.starts_with("554 "));
    assert!(
        client
            .command("RCPT TO:<b@example.com> NOTIFY=NEVER")
            .await
            .starts_with("555 ")
    );
    assert!(server.outbox().is_empty());
    server.stop().await;
}

/// Lockout keys: a bad client rotating wrong passwords over other user names from a shared
/// address, and many addresses failing as the victim's own name, never lock out the victim's
/// valid (cached) login from its own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_failures_never_lock_out_a_valid_login() {
    let server = TestServer::start_with(|limits| {
        limits.smtp.auth_failures_per_user = 3;
        limits.smtp.auth_failures_per_ip = 30;
        limits.smtp.max_auth_failures = 100;
    })
    .await;
    // The valid credential is verified (and cached) once.
    logged_in(&server, "127.0.0.21").await;
    let mut attacks = Vec::new();
    // The shared address: five other names, three wrong passwords each, in parallel.
    for n in 0..5 {
        let server_port = server.port(PLAINTEXT_AUTH);
        attacks.push(tokio::spawn(async move {
            let stream = connect_from("127.0.0.21", server_port).await;
            let mut client = Client::new(Box::new(stream), Vec::new());
            client.reply().await;
            client.command("EHLO x.test").await;
            for _ in 0..4 {
                let blob = base64_encode(format!("\0AKIAATTACK{n:010}\0wrong").as_bytes());
                let reply = client.command(&format!("AUTH PLAIN {blob}")).await;
                assert!(
                    reply.starts_with("535") || reply.starts_with("454"),
                    "{reply}"
                );
                if reply.starts_with("454") || reply.is_empty() {
                    break;
                }
            }
        }));
    }
    // Other addresses failing as the victim.
    for n in 30..40 {
        let server_port = server.port(PLAINTEXT_AUTH);
        attacks.push(tokio::spawn(async move {
            let stream = connect_from(&format!("127.0.0.{n}"), server_port).await;
            let mut client = Client::new(Box::new(stream), Vec::new());
            client.reply().await;
            client.command("EHLO x.test").await;
            for _ in 0..4 {
                let blob = base64_encode(format!("\0{USER}\0wrong").as_bytes());
                let reply = client.command(&format!("AUTH PLAIN {blob}")).await;
                if !reply.starts_with("535") {
                    assert!(reply.starts_with("454"), "{reply}");
                    break;
                }
            }
        }));
    }
    for attack in attacks {
        attack.await.unwrap();
    }
    // The attackers are locked out...
    let mut attacker = server.client_from("127.0.0.30").await;
    let blob = base64_encode(format!("\0{USER}\0{PASSWORD}").as_bytes());
    assert!(
        attacker
            .command(&format!("AUTH PLAIN {blob}"))
            .await
            .starts_with("454")
    );
    // ...the victim is not.
    let started = Instant::now();
    logged_in(&server, "127.0.0.21").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    server.stop().await;
}
