//! Attacks on the parts rewritten for speed (issue 15): the in-place DATA reader, the merged
//! strict header scan, the lazily parsed context with known keys found by their own spelling,
//! and borrowed one-line header values. Each attack is a real SMTP client against a real sesgate
//! relaying to a real sink: what the policy evaluated must be what the sink (the upstream, and
//! the recipient's mail client after it) reads from the relayed bytes.

mod support;

use std::time::Duration;

use support::sink::Sink;
use support::*;

/// Sends MAIL, RCPTs and DATA, then `pieces` (the message and its end of data, in the given
/// writes, a short pause between them so most arrive in reads of their own) and a NOOP; returns
/// the reply to the end of data and the NOOP's.
async fn send_pieces(
    client: &mut Client,
    mail_from: &str,
    recipients: &[&str],
    pieces: &[&[u8]],
) -> (String, String) {
    client.begin_data(mail_from, recipients).await;
    let count = pieces.len();
    for (n, piece) in pieces.iter().enumerate() {
        if n + 1 == count {
            let mut last = piece.to_vec();
            last.extend_from_slice(b"NOOP\r\n");
            client.send(&last).await;
        } else {
            client.send(piece).await;
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    let reply = client.reply().await;
    let noop = client.reply().await;
    (reply, noop)
}

/// A second transaction hidden inside the first (the SMTP smuggling forms), its bytes split
/// across reads at every place around the near-miss end: sesgate never ends the message there,
/// so the sink gets one message, to the real recipient only, and no line that is a lone dot
/// before its real end (the upstream could not end it early either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_transactions_split_at_every_seam_stay_one_message() {
    let sink = Sink::start().await;
    let server = TestServer::start_setup(Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let stream = connect_from("127.0.0.2", server.port(PLAINTEXT_AUTH)).await;
    stream.set_nodelay(true).unwrap();
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    client.hello(false).await;
    client.login().await;

    let smuggled: &[u8] = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nFrom: a@example.com\r\n\r\nsmuggled\r\n";
    let mut relayed = 0;
    let mut refused = 0;
    for form in [
        &b"\n.\n"[..],
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r\n.\r",
        b"\r.\r",
        b"\r\n.\x00\r\n",
        b"\r\n. \r\n",
    ] {
        let head: &[u8] = b"From: a@example.com\r\nSubject: s\r\n\r\nbody";
        let message = [head, form, smuggled, b".\r\n"].concat();
        // Every split from two bytes before the near-miss to two after it, and one whole write.
        let seam = head.len();
        let mut splits: Vec<Option<usize>> = (seam - 2..=seam + form.len() + 2).map(Some).collect();
        splits.push(None);
        for split in splits {
            let label = format!("{:?} split at {split:?}", String::from_utf8_lossy(form));
            let before = sink.accepted().len();
            let (reply, noop) = match split {
                Some(at) => {
                    send_pieces(
                        &mut client,
                        "a@example.com",
                        &["b@example.com"],
                        &[&message[..at], &message[at..]],
                    )
                    .await
                }
                None => {
                    send_pieces(
                        &mut client,
                        "a@example.com",
                        &["b@example.com"],
                        &[&message],
                    )
                    .await
                }
            };
            assert_eq!(
                noop, "250 2.0.0 Ok",
                "{label}: the NOOP is the next command"
            );
            let accepted = sink.accepted();
            if reply.starts_with("250") {
                relayed += 1;
                assert_eq!(accepted.len(), before + 1, "{label}");
                let got = accepted.last().unwrap();
                assert_eq!(got.recipients, ["b@example.com"], "{label}");
                let data = strip_trace(&got.data);
                assert!(
                    data.ends_with(b"smuggled\r\n"),
                    "{label}: ended early: {:?}",
                    String::from_utf8_lossy(data)
                );
                assert!(
                    !data
                        .split(|&b| b == b'\n')
                        .any(|line| line == b"." || line == b".\r"),
                    "{label}: a lone dot line reached the upstream"
                );
            } else {
                refused += 1;
                assert!(reply.starts_with('5'), "{label}: {reply}");
                assert_eq!(accepted.len(), before, "{label}");
            }
            assert!(
                accepted
                    .iter()
                    .all(|m| !m.recipients.iter().any(|r| r.contains("victim"))),
                "{label}: a smuggled transaction was relayed"
            );
        }
    }
    assert!(
        relayed > 0 && refused > 0,
        "{relayed} relayed, {refused} refused"
    );
    server.stop().await;
}

/// A policy whose condition keys are spelled in odd cases (key names are case-insensitive):
/// only `a@example.com`, only from 127.0.0.0/29, never to `*@blocked.example`, never with the
/// display name "mallory" in any case.
const ODD_CASE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*",
  "Condition":{"StringEquals":{"SES:fromADDRESS":"a@example.com"},
               "IpAddress":{"AWS:SOURCEIP":["127.0.0.0/29"]}}},
 {"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*",
  "Condition":{"ForAnyValue:StringLike":{"ses:RECIPIENTS":"*@blocked.example"}}},
 {"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*",
  "Condition":{"StringEqualsIgnoreCase":{"Ses:FromDisplayName":"mallory"}}}
]}"#;

async fn odd_case_server(sink: &Sink) -> TestServer {
    TestServer::start_setup(Setup {
        users: Some(user_toml(
            "odd",
            "/",
            "odd",
            "pw",
            "policies = [\"OddCase\"]",
        )),
        policies: vec![("OddCase".into(), ODD_CASE_POLICY.into())],
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await
}

async fn odd_client(server: &TestServer, source: &str) -> Client {
    let stream = connect_from(source, server.port(PLAINTEXT_AUTH)).await;
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    client.hello(false).await;
    client.login_as("odd", "pw").await;
    client
}

/// Condition keys in odd cases find the context's values (set in the gateway's own spelling):
/// the source address, the From address, the recipients (domain lower-cased) and the decoded
/// display name all decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condition_keys_in_any_case_decide() {
    let sink = Sink::start().await;
    let server = odd_case_server(&sink).await;
    let mut client = odd_client(&server, "127.0.0.2").await;
    let ok = "From: a@example.com\r\n\r\nx\r\n";
    let cases: &[(&[&str], &str, bool)] = &[
        (&["b@example.com"], ok, true),
        (
            &["b@example.com"],
            "From: evil@example.com\r\n\r\nx\r\n",
            false,
        ),
        (&["b@example.com", "x@BLOCKED.example"], ok, false),
        (
            &["b@example.com"],
            "From: Mallory <a@example.com>\r\n\r\nx\r\n",
            false,
        ),
        (
            &["b@example.com"],
            "From: =?UTF-8?Q?MALLORY?= <a@example.com>\r\n\r\nx\r\n",
            false,
        ),
        (
            &["b@example.com"],
            "From: Mallory2 <a@example.com>\r\n\r\nx\r\n",
            true,
        ),
    ];
    let mut expected = 0;
    for (recipients, data, allowed) in cases {
        let reply = client.transaction("a@example.com", recipients, data).await;
        if *allowed {
            expected += 1;
            assert!(
                reply.starts_with("250 "),
                "{data:?} {recipients:?}: {reply}"
            );
        } else {
            assert!(
                reply.starts_with("554 5.7.1"),
                "{data:?} {recipients:?}: {reply}"
            );
        }
        assert_eq!(sink.accepted().len(), expected, "{data:?}");
    }
    // Outside 127.0.0.0/29: the AWS:SOURCEIP condition fails.
    let mut outside = odd_client(&server, "127.0.0.9").await;
    let reply = outside
        .transaction("a@example.com", &["b@example.com"], ok)
        .await;
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    assert_eq!(sink.accepted().len(), expected);
    server.stop().await;
}

/// Header sections built so that a reader other than the policy's could find another From:
/// a second From in another case or behind a bare LF, after NULs, behind a name with a space
/// or DEL, folded into the first, behind a bare CR. Each is refused and nothing reaches the
/// sink; the legitimate folded and tab-led forms are relayed with the From the policy saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_from_the_policy_did_not_see_never_reaches_the_sink() {
    let sink = Sink::start().await;
    let server = odd_case_server(&sink).await;
    let mut client = odd_client(&server, "127.0.0.2").await;
    let nuls = "\0".repeat(200);
    let refused: Vec<Vec<u8>> = [
        "From: a@example.com\r\nFROM: evil@evil.example\r\n\r\nx\r\n".to_owned(),
        "From: a@example.com\r\nSubject: s\nFrom: evil@evil.example\r\n\r\nx\r\n".to_owned(),
        format!("From: a@example.com\r\nX-Pad: {nuls}\r\nFrom: evil@evil.example\r\n\r\nx\r\n"),
        format!("From: a@example.com\r\nX-Pad: {nuls}\r\n\r\nx\r\n"),
        "From: a@example.com\r\n\0From: evil@evil.example\r\n\r\nx\r\n".to_owned(),
        "From : evil@evil.example\r\nFrom: a@example.com\r\n\r\nx\r\n".to_owned(),
        "From: a@example.com\r\nFrom\t: evil@evil.example\r\n\r\nx\r\n".to_owned(),
        "From: a@example.com\r\nFr\x7fom: evil@evil.example\r\n\r\nx\r\n".to_owned(),
        "From: a@example.com\r\n\tevil@evil.example\r\n\r\nx\r\n".to_owned(),
        "From: a@example.com\r\n \r\n\r\nx\r\n".to_owned(),
        "From: a@example.com\r\nSubject: s\rFrom: evil@evil.example\r\n\r\nx\r\n".to_owned(),
        " From: evil@evil.example\r\nFrom: a@example.com\r\n\r\nx\r\n".to_owned(),
        "From:   \r\n\r\nx\r\n".to_owned(),
        "From: a@example.com\r\nSender: a@example.com\r\nsender: evil@evil.example\r\n\r\nx\r\n"
            .to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    for data in &refused {
        let mut wire = data.clone();
        wire.extend_from_slice(b".\r\n");
        let (reply, noop) =
            send_pieces(&mut client, "a@example.com", &["b@example.com"], &[&wire]).await;
        assert!(
            reply.starts_with('5'),
            "{:?}: {reply}",
            String::from_utf8_lossy(data)
        );
        assert_eq!(noop, "250 2.0.0 Ok");
        assert!(
            sink.accepted().is_empty(),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    let allowed = [
        &b"From:\r\n a@example.com\r\n\r\nx\r\n"[..],
        b"From:\ta@example.com \t\r\n\r\nx\r\n",
        b"From: a@example.com\r\nSubject: s\n\nFrom: evil@evil.example\r\n",
    ];
    for (n, data) in allowed.iter().enumerate() {
        let wire = [*data, b".\r\n"].concat();
        let (reply, _) =
            send_pieces(&mut client, "a@example.com", &["b@example.com"], &[&wire]).await;
        assert!(reply.starts_with("250 "), "{data:?}: {reply}");
        let accepted = sink.accepted();
        assert_eq!(accepted.len(), n + 1);
        // What the sink got reads with exactly one From, the one evaluated.
        let got = strip_trace(&accepted[n].data);
        let header_end = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(got.len(), |at| at + 2);
        let froms: Vec<&[u8]> = got[..header_end]
            .split(|&b| b == b'\n')
            .filter(|line| line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"from:"))
            .collect();
        assert_eq!(froms.len(), 1, "{:?}", String::from_utf8_lossy(got));
        assert!(
            !got[..header_end].windows(4).any(|w| w == b"evil"),
            "{:?}",
            String::from_utf8_lossy(got)
        );
    }
    server.stop().await;
}
