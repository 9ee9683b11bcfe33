//! A client pipelining across transactions (RFC 2920 §3.1: "The actual transfer of message
//! content is explicitly allowed to be the first command in a group"): the message and the next
//! transaction's MAIL, RCPT and DATA in one write. sesgate relays to a real sink and answers the
//! whole group in one write, the message's reply first and only once the upstream (or the
//! policy) has decided; a client pipelining past DATA before its 354 gets what it always got.

mod support;

use support::sink::{DataReply, Sink};
use support::*;

const START_DATA: &str = "354 End data with <CR><LF>.<CR><LF>";
const ENVELOPE: &[u8] = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n";

/// A user allowed to send anything except with `From: admin@example.com` (an explicit Deny).
async fn server_with_deny(sink: &Sink) -> TestServer {
    let no_admin = r#"{"Version":"2012-10-17","Statement":{"Sid":"NoAdmin","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringEquals":{"ses:FromAddress":"admin@example.com"}}}}"#;
    let users = user_toml(
        "sender",
        "/",
        USER,
        PASSWORD,
        &format!(
            "policies = [\"AllowAllSesActions\"]\ninline_policies = {{ NoAdmin = '{no_admin}' }}"
        ),
    );
    TestServer::start_setup(Setup {
        users: Some(users),
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await
}

/// Past the greeting, EHLO and AUTH on the plaintext listener.
async fn logged_in(server: &TestServer) -> Client {
    let mut client = server.client_from("127.0.0.1").await;
    client.login().await;
    client
}

/// Reads the replies to one group: `expected` in order, and all of them in the read that
/// brought the first (the server answered the group in one write).
async fn group_replies(client: &mut Client, expected: &[&str]) {
    let first = client.reply().await;
    let rest = String::from_utf8_lossy(client.buffered()).into_owned();
    assert!(first.starts_with(expected[0]), "{first}");
    assert_eq!(
        rest.matches("\r\n").count(),
        expected.len() - 1,
        "the replies to one group arrive in one write: after {first:?} only {rest:?}"
    );
    for prefix in &expected[1..] {
        let reply = client.reply().await;
        assert!(reply.starts_with(prefix), "expected {prefix}: {reply}");
    }
}

fn message(from: &str, n: usize) -> Vec<u8> {
    format!("From: {from}\r\nSubject: message {n}\r\n\r\nbody {n}\r\n.\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_and_the_next_envelope_in_one_write_get_one_write_of_replies() {
    let sink = Sink::start().await;
    let server = server_with_deny(&sink).await;
    let mut client = logged_in(&server).await;
    client.send(ENVELOPE).await;
    group_replies(&mut client, &["250 2.1.0", "250 2.1.5", START_DATA]).await;
    for n in 1..3 {
        let mut group = message("info@example.com", n);
        group.extend_from_slice(ENVELOPE);
        client.send(&group).await;
        // The message's 250 (with the upstream's id) first, then the next envelope's.
        group_replies(
            &mut client,
            &[
                "250 2.0.0 Ok 0100018c-sink-",
                "250 2.1.0",
                "250 2.1.5",
                START_DATA,
            ],
        )
        .await;
        assert_eq!(sink.accepted().len(), n, "relayed before its 250");
    }
    client.send(&message("info@example.com", 3)).await;
    group_replies(&mut client, &["250 2.0.0 Ok 0100018c-sink-"]).await;
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 3);
    for (n, relayed) in accepted.iter().enumerate() {
        assert_eq!(relayed.recipients, ["b@example.com"]);
        let wanted = format!("body {}\r\n", n + 1);
        assert!(
            relayed.data.ends_with(wanted.as_bytes()),
            "message {} relayed intact: {:?}",
            n + 1,
            String::from_utf8_lossy(&relayed.data)
        );
    }
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_followed_by_a_pipelined_transaction() {
    let sink = Sink::start().await;
    let server = server_with_deny(&sink).await;
    let mut client = logged_in(&server).await;
    client.send(ENVELOPE).await;
    group_replies(&mut client, &["250 2.1.0", "250 2.1.5", START_DATA]).await;
    // Denied by policy: its refusal, then the next transaction goes on as if alone.
    let mut group = message("admin@example.com", 1);
    group.extend_from_slice(ENVELOPE);
    client.send(&group).await;
    group_replies(
        &mut client,
        &[
            "554 5.7.1 Access denied",
            "250 2.1.0",
            "250 2.1.5",
            START_DATA,
        ],
    )
    .await;
    assert!(sink.accepted().is_empty(), "the denied message never left");
    client.send(&message("info@example.com", 2)).await;
    group_replies(&mut client, &["250 2.0.0 Ok 0100018c-sink-"]).await;
    // The upstream refuses: the client hears it before the next envelope's replies, and no
    // 250 was given for the message.
    sink.set_reply(DataReply::Reply("451 4.3.0 Try again later".into()));
    client.send(ENVELOPE).await;
    group_replies(&mut client, &["250 2.1.0", "250 2.1.5", START_DATA]).await;
    let mut group = message("info@example.com", 3);
    group.extend_from_slice(ENVELOPE);
    client.send(&group).await;
    group_replies(
        &mut client,
        &["451 4.4.1", "250 2.1.0", "250 2.1.5", START_DATA],
    )
    .await;
    sink.set_reply(DataReply::Accept);
    client.send(&message("info@example.com", 4)).await;
    group_replies(&mut client, &["250 2.0.0 Ok 0100018c-sink-"]).await;
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 2);
    assert!(accepted[0].data.ends_with(b"body 2\r\n"));
    assert!(accepted[1].data.ends_with(b"body 4\r\n"));
    server.stop().await;
}

/// Commands pipelined after DATA, before its 354 (which RFC 2920 does not allow: DATA ends a
/// group), are the message's content, as they always were: never executed as commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_pipelined_after_data_are_the_message_not_commands() {
    let sink = Sink::start().await;
    let server = server_with_deny(&sink).await;
    let mut client = logged_in(&server).await;
    let mut group = ENVELOPE.to_vec();
    group.extend_from_slice(
        b"From: info@example.com\r\n\r\nRSET\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n.\r\nNOOP\r\n",
    );
    client.send(&group).await;
    assert!(client.reply().await.starts_with("250 2.1.0"));
    assert!(client.reply().await.starts_with("250 2.1.5"));
    assert_eq!(client.reply().await, START_DATA);
    assert!(
        client
            .reply()
            .await
            .starts_with("250 2.0.0 Ok 0100018c-sink-")
    );
    // Only the NOOP after the final dot is a command.
    assert_eq!(client.reply().await, "250 2.0.0 Ok");
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].mail_from, "a@example.com");
    assert_eq!(accepted[0].recipients, ["b@example.com"]);
    assert!(
        accepted[0]
            .data
            .ends_with(b"\r\n\r\nRSET\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"),
        "{:?}",
        String::from_utf8_lossy(&accepted[0].data)
    );
    assert_eq!(client.command("QUIT").await, "221 2.0.0 Bye");
    server.stop().await;
}
