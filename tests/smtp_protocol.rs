//! The SMTP front end over loopback with a raw client: every reply rule of SPEC §6, pipelining,
//! smuggling, STARTTLS injection, limits, timeouts, PROXY.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn authenticated(server: &TestServer) -> Client {
    let mut client = server.connect(STARTTLS).await;
    client.hello(true).await;
    client.login().await;
    client
}

/// Sends one message and returns the reply to its end of data.
async fn send_message(client: &mut Client, data: &[u8]) -> String {
    assert_eq!(
        client.command("MAIL FROM:<sender@example.com>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(
        client.command("RCPT TO:<rcpt@example.com>").await,
        "250 2.1.5 Ok"
    );
    assert_eq!(
        client.command("DATA").await,
        "354 End data with <CR><LF>.<CR><LF>"
    );
    client.send(data).await;
    client.reply().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_starttls_replies() {
    let server = TestServer::start().await;
    let mut client = server.connect(STARTTLS).await;
    assert!(client.reply().await.starts_with("220 gw.test ESMTP"));
    let ehlo = client.command("EHLO client.test").await;
    for capability in [
        "PIPELINING",
        "SIZE 41943040",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(ehlo.contains(capability), "{ehlo}");
    }
    assert!(
        !ehlo.contains("AUTH"),
        "AUTH is offered only under TLS: {ehlo}"
    );
    assert_eq!(
        client.command("AUTH LOGIN").await,
        "530 5.7.0 Must issue a STARTTLS command first"
    );
    assert_eq!(
        client.command("MAIL FROM:<a@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    assert_eq!(
        client.command("STARTTLS").await,
        "220 2.0.0 Ready to start TLS"
    );
    client.start_tls().await;
    assert_eq!(
        client.command("MAIL FROM:<a@example.com>").await,
        "503 5.5.1 Bad sequence of commands: send EHLO first"
    );
    let ehlo = client.command("EHLO client.test").await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert_eq!(
        client.command("MAIL FROM:<a@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    let wrong = base64_encode(format!("\0{USER}\0wrong").as_bytes());
    assert_eq!(
        client.command(&format!("AUTH PLAIN {wrong}")).await,
        "535 5.7.8 Authentication Credentials Invalid"
    );
    // AUTH PLAIN without an initial response, then AUTH LOGIN.
    assert_eq!(client.command("AUTH PLAIN").await, "334");
    assert_eq!(
        client.command(&wrong).await,
        "535 5.7.8 Authentication Credentials Invalid"
    );
    assert_eq!(client.command("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(
        client.command(&base64_encode(USER.as_bytes())).await,
        "334 UGFzc3dvcmQ6"
    );
    assert_eq!(
        client.command(&base64_encode(PASSWORD.as_bytes())).await,
        "235 2.7.0 Authentication successful."
    );
    assert_eq!(
        client.command("AUTH LOGIN").await,
        "503 5.5.1 Already authenticated"
    );
    assert_eq!(
        client.command("VRFY postmaster").await.split(' ').next(),
        Some("252")
    );
    assert_eq!(client.command("NOOP").await, "250 2.0.0 Ok");
    assert!(client.command("HELP").await.starts_with("214 "));
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye");
    assert!(client.is_closed().await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_auth_failures_close_and_the_address_is_throttled() {
    let server = TestServer::start_with(|limits| limits.smtp.auth_failures_per_ip = 4).await;
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    let wrong = base64_encode(format!("\0{USER}\0wrong").as_bytes());
    for _ in 0..2 {
        assert_eq!(
            client.command(&format!("AUTH PLAIN {wrong}")).await,
            "535 5.7.8 Authentication Credentials Invalid"
        );
    }
    assert_eq!(
        client.command(&format!("AUTH PLAIN {wrong}")).await,
        "421 4.7.0 Too many authentication failures"
    );
    assert!(client.is_closed().await);
    // One more failure reaches the per-address limit of 4...
    let mut second = server.connect(IMPLICIT).await;
    second.hello(false).await;
    assert_eq!(
        second.command(&format!("AUTH PLAIN {wrong}")).await,
        "535 5.7.8 Authentication Credentials Invalid"
    );
    // ...after which even the right password is refused from this address.
    let right = base64_encode(format!("\0{USER}\0{PASSWORD}").as_bytes());
    assert_eq!(
        second.command(&format!("AUTH PLAIN {right}")).await,
        "454 4.7.0 Temporary authentication failure"
    );
    assert!(second.is_closed().await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_listener_needs_allow_plaintext_auth() {
    let server = TestServer::start().await;
    let mut client = server.connect(PLAINTEXT_AUTH).await;
    client.hello(false).await;
    client.login().await;
    assert_eq!(
        send_message(
            &mut client,
            b"From: a@example.com\r\nSubject: plain\r\n\r\nhi\r\n.\r\n"
        )
        .await
        .split(' ')
        .next(),
        Some("250")
    );
    let stored = server.outbox();
    assert_eq!(stored[0].1["tls"], false);
    assert_eq!(stored[0].1["user"], "test-app");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_transaction_is_answered_in_order() {
    let server = TestServer::start().await;
    let mut client = server.connect(IMPLICIT).await;
    assert!(client.reply().await.starts_with("220 "));
    let plain = base64_encode(format!("\0{USER}\0{PASSWORD}").as_bytes());
    let batch = format!(
        "EHLO client.test\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n"
    );
    client.send(batch.as_bytes()).await;
    assert!(client.reply().await.starts_with("250-gw.test"));
    assert_eq!(client.reply().await, "235 2.7.0 Authentication successful.");
    assert_eq!(client.reply().await, "250 2.1.0 Ok");
    assert_eq!(client.reply().await, "250 2.1.5 Ok");
    assert_eq!(client.reply().await, "250 2.1.5 Ok");
    assert_eq!(client.reply().await, "354 End data with <CR><LF>.<CR><LF>");
    client
        .send(b"From: a@example.com\r\nSubject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nQUIT\r\n")
        .await;
    assert!(client.reply().await.starts_with("250 2.0.0 Ok "));
    assert_eq!(client.reply().await, "250 2.0.0 Ok");
    assert_eq!(client.reply().await, "221 2.0.0 Bye");
    let stored = server.outbox();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].0,
        b"From: a@example.com\r\nSubject: pipelined\r\n\r\nbody\r\n"
    );
    assert_eq!(
        stored[0].1["recipients"],
        serde_json::json!(["b@example.com", "c@example.com"])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_injection_is_discarded() {
    let server = TestServer::start().await;
    let mut client = server.connect(STARTTLS).await;
    assert!(client.reply().await.starts_with("220 "));
    assert!(client.command("EHLO client.test").await.starts_with("250-"));
    // The classic probe: a command pipelined in plaintext right behind STARTTLS.
    client.send(b"STARTTLS\r\nRSET\r\n").await;
    assert_eq!(client.reply().await, "220 2.0.0 Ready to start TLS");
    client.start_tls().await;
    // Had RSET been executed inside TLS, its 250 would arrive before the EHLO reply.
    let first = client.command("EHLO client.test").await;
    assert!(
        first.starts_with("250-gw.test"),
        "the injected RSET was answered: {first}"
    );
    assert_eq!(client.command("NOOP").await, "250 2.0.0 Ok");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_stuffing_round_trips() {
    let server = TestServer::start().await;
    let mut client = authenticated(&server).await;
    let cases: &[(&[u8], &[u8])] = &[
        // A line that is a single dot, sent stuffed.
        (
            b"From: a@example.com\r\n\r\nbefore\r\n..\r\nafter\r\n.\r\n",
            b"From: a@example.com\r\n\r\nbefore\r\n.\r\nafter\r\n",
        ),
        // A message whose first line starts with a dot.
        (
            b"..first: line\r\nFrom: a@example.com\r\n\r\nx\r\n.\r\n",
            b".first: line\r\nFrom: a@example.com\r\n\r\nx\r\n",
        ),
    ];
    for (wire, _) in cases {
        assert!(
            send_message(&mut client, wire)
                .await
                .starts_with("250 2.0.0 Ok ")
        );
    }
    // An empty message: its end is found at once (no hang), and with no From it is refused.
    assert_eq!(
        send_message(&mut client, b".\r\n").await,
        "554 5.6.0 Transaction failed: the message has no From header"
    );
    let stored: Vec<Vec<u8>> = server.outbox().into_iter().map(|(m, _)| m).collect();
    let expected: Vec<Vec<u8>> = cases.iter().map(|(_, m)| m.to_vec()).collect();
    assert_eq!(stored, expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_is_normalized_and_bare_cr_rejected() {
    let server = TestServer::start().await;
    let mut client = authenticated(&server).await;
    assert!(
        send_message(
            &mut client,
            b"From: a@example.com\nSubject: lf\n\nline one\nline two\r\n.\r\n"
        )
        .await
        .starts_with("250 ")
    );
    // `\n.\n` is not an end of data: what follows stays in the message, and nothing is
    // smuggled as a second transaction.
    let smuggle = b"From: a@example.com\r\n\r\nx\n.\nMAIL FROM:<evil@example.com>\r\n.\r\n";
    assert!(send_message(&mut client, smuggle).await.starts_with("250 "));
    assert_eq!(
        send_message(
            &mut client,
            b"From: a@example.com\r\n\r\nbad\rline\r\n.\r\n"
        )
        .await,
        "554 5.6.0 Transaction failed: message contains a bare CR"
    );
    assert_eq!(
        client.command("NOOP").await,
        "250 2.0.0 Ok",
        "the session goes on after a refusal"
    );
    let stored: Vec<Vec<u8>> = server.outbox().into_iter().map(|(m, _)| m).collect();
    assert_eq!(stored.len(), 2, "the bare-CR message was not stored");
    assert_eq!(
        stored[0],
        b"From: a@example.com\r\nSubject: lf\r\n\r\nline one\r\nline two\r\n"
    );
    assert_eq!(
        stored[1],
        b"From: a@example.com\r\n\r\nx\r\n\r\nMAIL FROM:<evil@example.com>\r\n"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_recipient_and_line_limits() {
    let server = TestServer::start_with(|limits| {
        limits.smtp.max_message_bytes = 1000;
        limits.smtp.max_recipients = 2;
    })
    .await;
    let mut client = authenticated(&server).await;
    assert!(
        client
            .command("EHLO client.test")
            .await
            .contains("SIZE 1000")
    );
    assert_eq!(
        client.command("MAIL FROM:<a@example.com> SIZE=1001").await,
        "552 5.3.4 Message is too long."
    );
    assert_eq!(
        client.command("MAIL FROM:<a@example.com> SIZE=900").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(
        client.command("RCPT TO:<1@example.com>").await,
        "250 2.1.5 Ok"
    );
    assert_eq!(
        client.command("RCPT TO:<2@example.com>").await,
        "250 2.1.5 Ok"
    );
    assert_eq!(
        client.command("RCPT TO:<3@example.com>").await,
        "452 4.5.3 Too many recipients"
    );
    assert_eq!(client.command("DATA").await.split(' ').next(), Some("354"));
    // Declared 900, sends 2000: refused while streaming, after reading to the end.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..40 {
        big.extend_from_slice(&[b'x'; 48]);
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b".\r\n");
    client.send(&big).await;
    assert_eq!(client.reply().await, "552 5.3.4 Message is too long.");
    // A data line over 1000 bytes (terminator included).
    let mut long = b"Subject: long\r\n\r\n".to_vec();
    long.extend_from_slice(&[b'y'; 999]);
    long.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(
        send_message(&mut client, &long).await,
        "554 5.6.0 Transaction failed: line longer than 1000 characters"
    );
    // A command line over 4096 bytes.
    let mut huge = vec![b'N'; 5000];
    huge.extend_from_slice(b"\r\n");
    client.send(&huge).await;
    assert_eq!(client.reply().await, "500 5.5.2 Line too long");
    assert_eq!(client.command("NOOP").await, "250 2.0.0 Ok");
    assert!(server.outbox().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_errors_close_the_session() {
    let server = TestServer::start().await;
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    for _ in 0..9 {
        assert_eq!(
            client.command("BOGUS").await,
            "500 5.5.2 Command unrecognized"
        );
    }
    assert_eq!(
        client.command("BOGUS").await,
        "421 4.7.0 Too many errors, closing connection"
    );
    assert!(client.is_closed().await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits() {
    let server = TestServer::start_with(|limits| limits.smtp.max_connections_per_ip = 2).await;
    let mut first = server.connect(STARTTLS).await;
    let mut second = server.connect(STARTTLS).await;
    assert!(first.reply().await.starts_with("220 "));
    assert!(second.reply().await.starts_with("220 "));
    let mut third = server.connect(STARTTLS).await;
    assert_eq!(
        third.reply().await,
        "421 4.7.0 Too many concurrent SMTP connections"
    );
    assert!(third.is_closed().await);
    // Closing one frees its slot.
    assert_eq!(first.command("QUIT").await, "221 2.0.0 Bye");
    assert!(first.is_closed().await);
    // The slot is freed when the server side of the connection has ended, shortly after the
    // client saw it close: retry until then, within a bound.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let greeting = loop {
        let mut fourth = server.connect(STARTTLS).await;
        let greeting = fourth.reply().await;
        if greeting.starts_with("220 ") || tokio::time::Instant::now() > deadline {
            break greeting;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(greeting.starts_with("220 "), "{greeting}");
    server.stop().await;

    let server = TestServer::start_with(|limits| limits.smtp.max_connections = 1).await;
    let mut only = server.connect(STARTTLS).await;
    assert!(only.reply().await.starts_with("220 "));
    let mut refused = server.connect(PLAINTEXT_AUTH).await;
    assert_eq!(
        refused.reply().await,
        "421 4.7.0 Too many concurrent SMTP connections"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_from_a_trusted_peer() {
    let server = TestServer::start().await;
    // v1: the client address comes from the header.
    let mut stream = TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
        .await
        .unwrap();
    stream
        .write_all(b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 587\r\n")
        .await
        .unwrap();
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    client.hello(true).await;
    client.login().await;
    assert!(
        send_message(&mut client, b"From: a@example.com\r\n\r\nv1\r\n.\r\n")
            .await
            .starts_with("250 ")
    );
    // v2, IPv6 source.
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
    let source: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let destination: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    header.extend_from_slice(&source.octets());
    header.extend_from_slice(&destination.octets());
    header.extend_from_slice(&40000u16.to_be_bytes());
    header.extend_from_slice(&587u16.to_be_bytes());
    let mut stream = TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
        .await
        .unwrap();
    stream.write_all(&header).await.unwrap();
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    client.hello(true).await;
    client.login().await;
    assert!(
        send_message(&mut client, b"From: a@example.com\r\n\r\nv2\r\n.\r\n")
            .await
            .starts_with("250 ")
    );
    let clients: Vec<String> = server
        .outbox()
        .iter()
        .map(|(_, e)| e["client"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(clients, ["198.51.100.22", "2001:db8::7"]);
    // A trusted peer that sends no header is dropped.
    let mut stream = TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
        .await
        .unwrap();
    stream
        .write_all(b"EHLO not-a-proxy-header\r\n")
        .await
        .unwrap();
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    assert!(client.is_closed().await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_from_an_untrusted_peer_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.connect(STARTTLS).await;
    assert!(client.reply().await.starts_with("220 "));
    assert_eq!(
        client
            .command("PROXY TCP4 198.51.100.22 203.0.113.7 35646 587")
            .await,
        "421 4.7.0 PROXY protocol is not accepted from this address"
    );
    assert!(client.is_closed().await);
    server.stop().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_timeout() {
    let server = TestServer::start().await;
    let mut client = server.connect(STARTTLS).await;
    assert!(client.reply().await.starts_with("220 "));
    // Nothing more is sent; the paused clock jumps to the server's idle timeout.
    assert_eq!(
        client.reply().await,
        "451 4.4.2 Timeout waiting for data from client"
    );
    assert!(client.is_closed().await);
    server.stop().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn data_timeout() {
    let server = TestServer::start().await;
    let mut client = server.connect(PLAINTEXT_AUTH).await;
    client.hello(false).await;
    client.login().await;
    assert_eq!(
        client.command("MAIL FROM:<a@example.com>").await,
        "250 2.1.0 Ok"
    );
    assert_eq!(
        client.command("RCPT TO:<b@example.com>").await,
        "250 2.1.5 Ok"
    );
    assert_eq!(client.command("DATA").await.split(' ').next(), Some("354"));
    client.send(b"Subject: half a message\r\n").await;
    assert_eq!(
        client.reply().await,
        "451 4.4.2 Timeout waiting for data from client"
    );
    assert!(server.outbox().is_empty());
    server.stop().await;
}
