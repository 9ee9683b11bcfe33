//! The DATA reader judges a line where it lies in the connection's read buffer and gathers only
//! a line split across reads. A hostile client controls where its reads end: the same messages
//! (the smuggling near-misses, bare CR, NUL, dot lines, a line past the limit, a message past
//! the size limit) dripped in tiny TCP writes must get the same replies, and the upstream the
//! same bytes, as when each is sent in one write.

mod support;

use std::time::Duration;

use support::sink::Sink;
use support::*;

/// Messages after DATA, each ending with a real end of data and a NOOP (so that a near-miss
/// end that were taken for an end would show as an extra reply).
fn messages() -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = [
        &b"\n.\n"[..],
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r.\r\n",
        b"\r\n.\r\r\n",
        b"\r\n\x00.\r\n",
        b"\n..\n",
        b"\r\n..\r\n",
        b"\r\n...\r\n",
        b"\r\nbare\rcr\r\n",
        b"\r\nnul\x00byte\r\n",
    ]
    .iter()
    .enumerate()
    .map(|(n, middle)| {
        let mut m = format!("From: a@example.com\r\nSubject: v{n}\r\n\r\nFIRST").into_bytes();
        m.extend_from_slice(middle);
        m.extend_from_slice(b"SECOND\r\n.\r\n");
        m
    })
    .collect();
    // A line past the 100-byte line limit, and a message past the 2,000-byte size limit.
    let mut long = b"Subject: long\r\n\r\n".to_vec();
    long.extend_from_slice(&[b'x'; 150]);
    long.extend_from_slice(b"\r\n.\r\n");
    messages.push(long);
    let mut large = b"Subject: large\r\n\r\n".to_vec();
    for _ in 0..40 {
        large.extend_from_slice(&[b'y'; 60]);
        large.extend_from_slice(b"\r\n");
    }
    large.extend_from_slice(b".\r\n");
    messages.push(large);
    messages
}

/// Sends one transaction's message whole or in writes of 1, 2, 3 and 37 bytes (no Nagle, a
/// pause between writes so most arrive in reads of their own); returns the replies to the
/// message and to the NOOP that follows it.
async fn send(client: &mut Client, message: &[u8], dripped: bool) -> (String, String) {
    client.begin_data("a@example.com", &["b@example.com"]).await;
    let mut wire = message.to_vec();
    wire.extend_from_slice(b"NOOP\r\n");
    if dripped {
        let mut at = 0;
        for size in [1, 2, 3, 37].into_iter().cycle() {
            if at == wire.len() {
                break;
            }
            let end = (at + size).min(wire.len());
            client.send(&wire[at..end]).await;
            at = end;
            if size < 37 {
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
        }
    } else {
        client.send(&wire).await;
    }
    let reply = client.reply().await;
    let noop = client.reply().await;
    // The message id differs between two relayed messages; the rest may not.
    let reply = match reply.strip_prefix("250 2.0.0 Ok ") {
        Some(id) if !id.is_empty() && !id.contains(' ') => "250 2.0.0 Ok ID".to_owned(),
        _ => reply,
    };
    (reply, noop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_dripped_in_tiny_writes_read_as_when_sent_whole() {
    let sink = Sink::start().await;
    let mut setup = Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    };
    setup.config.limits.smtp.max_line_length = 100;
    setup.config.limits.smtp.max_message_bytes = 2000;
    let server = TestServer::start_setup(setup).await;
    let stream = connect_from("127.0.0.2", server.port(PLAINTEXT_AUTH)).await;
    stream.set_nodelay(true).unwrap();
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    client.hello(false).await;
    client.login().await;

    let mut refused = 0;
    for message in messages() {
        let relayed_before = sink.accepted().len();
        let whole = send(&mut client, &message, false).await;
        let dripped = send(&mut client, &message, true).await;
        let label = String::from_utf8_lossy(&message[..message.len().min(60)]).into_owned();
        assert_eq!(whole, dripped, "{label:?}");
        assert_eq!(
            whole.1, "250 2.0.0 Ok",
            "{label:?}: the NOOP is answered as a command"
        );
        let accepted = sink.accepted();
        if whole.0.starts_with("250") {
            assert_eq!(accepted.len(), relayed_before + 2, "{label:?}");
            let [.., first, second] = accepted.as_slice() else {
                unreachable!()
            };
            assert_eq!(
                strip_trace(&first.data),
                strip_trace(&second.data),
                "{label:?}: the upstream got other bytes"
            );
        } else {
            assert!(whole.0.starts_with('5'), "{label:?}: {}", whole.0);
            assert_eq!(accepted.len(), relayed_before, "{label:?}");
            refused += 1;
        }
    }
    // Bare CR (four forms), the long line and the large message are refused.
    assert!(refused >= 6, "{refused} refused");
    server.stop().await;
}
