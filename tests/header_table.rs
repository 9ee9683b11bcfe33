//! The hostile header table (`tests/data/hostile_headers.txt`) over SMTP against a real sesgate:
//! end to end through a restricted user relaying to the in-repo sink (refused cases get 554 and
//! nothing is relayed), and differentially against Python's `email` package (`policy.default`):
//! for every case sesgate allows, the From address it evaluated is the one Python reads from the
//! relayed bytes, `Received:` header included.

mod support;

#[path = "common/hostile.rs"]
mod hostile;

use hostile::{Case, Expect};
use support::sink::Sink;
use support::*;

const RESTRICTED: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "OnlyAllowedCom",
      "Effect": "Allow",
      "Action": "ses:SendRawEmail",
      "Resource": [
        "arn:aws:ses:us-east-1:123456789012:identity/allowed.com",
        "arn:aws:ses:us-east-1:123456789012:identity/*@allowed.com",
        "arn:aws:ses:us-east-1:123456789012:configuration-set/*"
      ],
      "Condition": {"StringLike": {"ses:FromAddress": "*@allowed.com"}}
    },
    {
      "Sid": "NeverTheCeo",
      "Effect": "Deny",
      "Action": "ses:SendRawEmail",
      "Resource": "*",
      "Condition": {"StringEquals": {"ses:FromAddress": "ceo@example.com"}}
    }
  ]
}"#;

/// MAIL FROM, RCPT TO, DATA and `message` sent as is (dot-stuffed, ended with CRLF . CRLF).
pub async fn raw_transaction(client: &mut Client, message: &[u8]) -> String {
    raw_transaction_from(client, "bounce@allowed.com", message).await
}

pub async fn raw_transaction_from(client: &mut Client, mail_from: &str, message: &[u8]) -> String {
    let mail = format!("MAIL FROM:<{mail_from}>");
    for command in [mail.as_str(), "RCPT TO:<rcpt@example.net>"] {
        let reply = client.command(command).await;
        assert!(reply.starts_with("250"), "{command}: {reply}");
    }
    assert!(client.command("DATA").await.starts_with("354"));
    let mut wire = Vec::with_capacity(message.len() + 8);
    let mut at_line_start = true;
    for &byte in message {
        if at_line_start && byte == b'.' {
            wire.push(b'.');
        }
        wire.push(byte);
        at_line_start = byte == b'\n';
    }
    if !wire.ends_with(b"\r\n") {
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b".\r\n");
    client.send(&wire).await;
    client.reply().await
}

async fn restricted_server(sink: &Sink) -> TestServer {
    let mut setup = Setup {
        users: Some(user_toml(
            "restricted",
            "/apps/",
            USER,
            PASSWORD,
            "policies = [\"Restricted\"]",
        )),
        policies: vec![("Restricted".into(), RESTRICTED.into())],
        upstream: Some(sink.clone()),
        ..Setup::default()
    };
    setup.config.limits.smtp.max_errors = 10_000;
    TestServer::start_setup(setup).await
}

async fn logged_in(server: &TestServer) -> Client {
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    client.login().await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_end_to_end() {
    let sink = Sink::start().await;
    let server = restricted_server(&sink).await;
    let mut client = logged_in(&server).await;
    let mut relayed = 0;
    let cases = hostile::cases();
    for Case {
        line,
        expect,
        message,
    } in &cases
    {
        let reply = raw_transaction(&mut client, message).await;
        match expect {
            Expect::Allow { from, resource }
                if from.ends_with("@allowed.com") && resource == "identity/allowed.com" =>
            {
                assert!(reply.starts_with("250 2.0.0 Ok"), "line {line}: {reply}");
                relayed += 1;
                let accepted = sink.accepted();
                let data = &accepted.last().unwrap().data;
                assert!(data.ends_with(message), "line {line}: relayed as sent");
            }
            Expect::Allow { .. } => {
                assert!(
                    reply.starts_with("554 5.7.1 Access denied: User `arn:aws:iam::123456789012:user/apps/restricted'"),
                    "line {line}: {reply}"
                );
            }
            Expect::Refuse { reply: text } => {
                assert!(
                    reply.starts_with("554 5.") && reply.contains(text.as_str()),
                    "line {line}: {reply}"
                );
            }
        }
        assert_eq!(sink.accepted().len(), relayed, "line {line}: {reply}");
    }
    assert!(relayed >= 15, "{relayed} relayed");
    server.stop().await;
}

const PYTHON_READER: &str = r#"
import email, email.policy, json, sys
for path in sys.argv[1:]:
    raw = open(path, 'rb').read()
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        froms = msg.get_all('From') or []
        if len(froms) != 1:
            print(json.dumps({"error": "%d From headers" % len(froms)}))
            continue
        header = froms[0]
        addresses = header.addresses
        if len(addresses) != 1:
            print(json.dumps({"error": "%d addresses" % len(addresses)}))
            continue
        print(json.dumps({"addr_spec": addresses[0].addr_spec,
                          "defects": [type(d).__name__ for d in header.defects]}))
    except Exception as e:
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_read_as_python_reads_the_relayed_bytes() {
    if !tool_available("python3", &["-c", "import email.policy"]) {
        return;
    }
    // A user allowed everything, relaying to the outbox: every case sesgate does not refuse is
    // relayed, and Python reads the relayed file.
    let mut setup = Setup::default();
    setup.config.limits.smtp.max_errors = 10_000;
    let server = TestServer::start_setup(setup).await;
    let mut client = logged_in(&server).await;
    let mut compared = Vec::new();
    for case in hostile::cases() {
        let before = server.outbox_raw().len();
        let reply = raw_transaction(&mut client, &case.message).await;
        let outbox = server.outbox_raw();
        match &case.expect {
            // Another account's identity without a sending authorization policy: denied.
            Expect::Allow { resource, .. } if resource.starts_with("arn:") => {
                assert!(
                    reply.starts_with("554 5.7.1 Access denied:"),
                    "line {}: {reply}",
                    case.line
                );
                assert_eq!(outbox.len(), before, "line {}", case.line);
            }
            Expect::Allow { from, .. } => {
                assert!(reply.starts_with("250"), "line {}: {reply}", case.line);
                assert_eq!(outbox.len(), before + 1, "line {}", case.line);
                let (data, _) = outbox.last().unwrap();
                assert!(data.starts_with(b"Received: "), "line {}", case.line);
                let file = server.dir.join(format!("relayed-{}.eml", case.line));
                std::fs::write(&file, data).unwrap();
                compared.push((case.line, from.clone(), file));
            }
            Expect::Refuse { .. } => {
                assert!(reply.starts_with("554 5."), "line {}: {reply}", case.line);
                assert_eq!(outbox.len(), before, "line {}: nothing relayed", case.line);
            }
        }
    }
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(PYTHON_READER)
        .args(compared.iter().map(|(_, _, file)| file))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let readings: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(readings.len(), compared.len());
    for ((line, from, _), reading) in compared.iter().zip(&readings) {
        let python = reading["addr_spec"]
            .as_str()
            .unwrap_or_else(|| panic!("line {line}: Python could not read it: {reading}"));
        let canonical = match python.rsplit_once('@') {
            Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
            None => python.to_owned(),
        };
        assert_eq!(&canonical, from, "line {line}: Python reads {reading}");
        assert_eq!(
            reading["defects"],
            serde_json::json!([]),
            "line {line}: Python found defects in a From sesgate accepted"
        );
    }
    assert!(compared.len() >= 25, "{} compared", compared.len());
    server.stop().await;
}

/// Sender, a client Return-Path header and every named identity must be verified identities;
/// a RETURN-PATH-ARN has nothing to stand for with a null reverse-path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_return_path_and_named_identities_must_be_verified() {
    let sink = Sink::start().await;
    let mut setup = Setup {
        users: Some(user_toml(
            "restricted",
            "/apps/",
            USER,
            PASSWORD,
            "policies = [\"Restricted\"]",
        )),
        policies: vec![("Restricted".into(), RESTRICTED.into())],
        upstream: Some(sink.clone()),
        ..Setup::default()
    };
    setup.config.account.identities = vec!["allowed.com".into(), "example.com".into()];
    setup.config.limits.smtp.max_errors = 10_000;
    let server = TestServer::start_setup(setup).await;
    let mut client = logged_in(&server).await;
    let unverified = "554 5.7.1 Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: ";
    let arn = "arn:aws:ses:us-east-1:123456789012:identity";
    let cases: Vec<(&str, String, String)> = vec![
        (
            "bounce@allowed.com",
            "From: news@allowed.com\r\nSender: a@unverified.org\r\n\r\nx\r\n".into(),
            format!("{unverified}a@unverified.org"),
        ),
        (
            "bounce@allowed.com",
            "From: news@allowed.com\r\nReturn-Path: <ceo@unverified.org>\r\n\r\nx\r\n".into(),
            format!("{unverified}ceo@unverified.org"),
        ),
        (
            "bounce@allowed.com",
            "From: news@allowed.com\r\nSender: a@unverified.org\r\nReturn-Path: <a@unverified.org>\r\n\r\nx\r\n".into(),
            format!("{unverified}a@unverified.org"),
        ),
        (
            "bounce@allowed.com",
            format!("From: news@mail.allowed.com\r\nX-SES-FROM-ARN: {arn}/mail.allowed.com\r\n\r\nx\r\n"),
            format!("{unverified}mail.allowed.com"),
        ),
        (
            "",
            format!("From: news@allowed.com\r\nX-SES-RETURN-PATH-ARN: {arn}/allowed.com\r\n\r\nx\r\n"),
            format!("554 5.7.1 Message rejected: The address '<>' does not align with the given ARN '{arn}/allowed.com'"),
        ),
        (
            "bounce@example.com",
            format!("From: news@allowed.com\r\nX-SES-SOURCE-ARN: {arn}/allowed.com\r\n\r\nx\r\n"),
            format!("554 5.7.1 Message rejected: The address 'bounce@example.com' does not align with the given ARN '{arn}/allowed.com'"),
        ),
        (
            "bounce@allowed.com",
            format!("From: ceo@example.com\r\nX-SES-SOURCE-ARN: {arn}/allowed.com\r\n\r\nx\r\n"),
            format!("554 5.7.1 Message rejected: The address 'ceo@example.com' does not align with the given ARN '{arn}/allowed.com'"),
        ),
        (
            "bounce@allowed.com",
            format!("From: news@allowed.com\r\nX-SES-FROM-ARN: {arn}/allowed.com\x01\r\n\r\nx\r\n"),
            format!("554 5.6.0 Transaction failed: Invalid ARN '{arn}/allowed.com?'"),
        ),
        (
            "bounce@allowed.com",
            format!("From: news@allowed.com\r\nX-SES-FROM-ARN: {arn}/allowed.com{}\r\n\r\nx\r\n", ":".repeat(900)),
            format!("554 5.6.0 Transaction failed: Invalid ARN '{arn}/allowed.com{}...'", ":".repeat(200 - arn.len() - 12)),
        ),
    ];
    for (mail_from, message, expected) in &cases {
        let reply = raw_transaction_from(&mut client, mail_from, message.as_bytes()).await;
        assert_eq!(&reply, expected, "{message:?}");
    }
    assert_eq!(sink.accepted().len(), 0, "nothing refused is relayed");
    // Verified Sender and Return-Path, aligned ARNs: relayed, ARN resources evaluated.
    for message in [
        "From: news@allowed.com\r\nSender: other@allowed.com\r\nReturn-Path: <bounce@allowed.com>\r\n\r\nx\r\n".to_owned(),
        format!("From: news@allowed.com\r\nX-SES-FROM-ARN: {arn}/allowed.com\r\nX-SES-SOURCE-ARN: {arn}/allowed.com\r\nX-SES-RETURN-PATH-ARN: {arn}/allowed.com\r\n\r\nx\r\n"),
    ] {
        let reply = raw_transaction(&mut client, message.as_bytes()).await;
        assert!(reply.starts_with("250 2.0.0 Ok"), "{message:?}: {reply}");
    }
    assert_eq!(sink.accepted().len(), 2);
    server.stop().await;
}

/// The header section is bounded: fields, total size, one field (SPEC §6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_section_limits_over_smtp() {
    let mut setup = Setup::default();
    setup.config.limits.smtp.max_errors = 10_000;
    let server = TestServer::start_setup(setup).await;
    let mut client = logged_in(&server).await;
    let fields = |count: usize| {
        let mut message = b"From: news@allowed.com\r\n".to_vec();
        for i in 1..count {
            message.extend_from_slice(format!("X-F: {i}\r\n").as_bytes());
        }
        message.extend_from_slice(b"\r\nbody\r\n");
        message
    };
    let failed = "554 5.6.0 Transaction failed: ";
    assert!(
        raw_transaction(&mut client, &fields(10_000))
            .await
            .starts_with("250 ")
    );
    assert_eq!(
        raw_transaction(&mut client, &fields(10_001)).await,
        format!("{failed}more than 10000 header fields")
    );
    // 9,000 fields of 120 bytes: 1.08 MB.
    let mut big = b"From: news@allowed.com\r\n".to_vec();
    for i in 0..9_000 {
        big.extend_from_slice(format!("X-F: {i:0>5} {}\r\n", "y".repeat(107)).as_bytes());
    }
    big.extend_from_slice(b"\r\nbody\r\n");
    assert_eq!(
        raw_transaction(&mut client, &big).await,
        format!("{failed}header section larger than 1048576 bytes")
    );
    // One field folded over 110 lines of 1,000 bytes.
    let mut long = b"From: news@allowed.com\r\nX-Long: start\r\n".to_vec();
    for _ in 0..110 {
        long.extend_from_slice(format!(" {}\r\n", "z".repeat(997)).as_bytes());
    }
    long.extend_from_slice(b"\r\nbody\r\n");
    assert_eq!(
        raw_transaction(&mut client, &long).await,
        format!("{failed}header field longer than 102400 bytes")
    );
    assert_eq!(
        server.outbox().len(),
        1,
        "only the message within the limits"
    );
    server.stop().await;
}

/// `[limits]` sets the bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits_are_configurable() {
    let mut setup = Setup::default();
    setup.config.limits.headers.max_header_fields = 3;
    setup.config.limits.headers.max_header_bytes = 200;
    setup.config.limits.headers.max_header_field_bytes = 100;
    let server = TestServer::start_setup(setup).await;
    let mut client = logged_in(&server).await;
    let failed = "554 5.6.0 Transaction failed: ";
    let field = |name: &str, length: usize| format!("{name}: {}\r\n", "1".repeat(length - 3));
    let cases = [
        (
            format!(
                "From: a@allowed.com\r\n{}{}\r\nx\r\n",
                field("A", 100),
                field("B", 70)
            ),
            "250 ".to_owned(),
        ),
        (
            format!(
                "From: a@allowed.com\r\n{}{}{}\r\nx\r\n",
                field("A", 5),
                field("B", 5),
                field("C", 5)
            ),
            format!("{failed}more than 3 header fields"),
        ),
        (
            format!("From: a@allowed.com\r\n{}\r\nx\r\n", field("A", 101)),
            format!("{failed}header field longer than 100 bytes"),
        ),
        (
            format!(
                "From: a@allowed.com\r\n{}{}\r\nx\r\n",
                field("A", 100),
                field("B", 80)
            ),
            format!("{failed}header section larger than 200 bytes"),
        ),
    ];
    for (message, expected) in &cases {
        let reply = raw_transaction(&mut client, message.as_bytes()).await;
        assert!(reply.starts_with(expected.as_str()), "{message:?}: {reply}");
    }
    assert_eq!(server.outbox().len(), 1);
    server.stop().await;
}

/// Postfix's cleanup parses From and Sender into at most `header_address_token_limit` (10,240)
/// tokens and, when it rewrites the header (a client matching `local_header_rewrite_clients`,
/// loopback by default: sesgate on the same host), writes back only those: `From: ceo ()()...
/// <x@allowed.com>` with 10,240 comments becomes `From: ceo@$myorigin ()()...`. A mailbox field
/// is therefore bounded far below that many bytes (a token is at least one byte).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_fields_stay_below_postfix_token_limit() {
    let sink = Sink::start().await;
    let server = restricted_server(&sink).await;
    let mut client = logged_in(&server).await;
    // 10,240 comments folded over 256 lines (each line within the DATA line limit).
    let comments = format!("\r\n {}", "()".repeat(40)).repeat(256);
    let failed = "554 5.6.0 Transaction failed: ";
    for (header, message) in [
        (
            "From",
            format!("From: ceo{comments} <x@allowed.com>\r\n\r\nx\r\n"),
        ),
        (
            "Sender",
            format!("From: x@allowed.com\r\nSender: ceo{comments} <x@allowed.com>\r\n\r\nx\r\n"),
        ),
        (
            "Return-Path",
            format!("From: x@allowed.com\r\nReturn-Path: <x@allowed.com>{comments}\r\n\r\nx\r\n"),
        ),
    ] {
        let reply = raw_transaction(&mut client, message.as_bytes()).await;
        assert!(
            reply.starts_with(failed) && reply.contains(header),
            "{header}: {reply}"
        );
    }
    assert_eq!(sink.accepted().len(), 0, "nothing refused is relayed");
    // The longest display name sesgate evaluates, with a comment, is well within the bound.
    // Two words, 998 bytes with the space between them, folded within the DATA line limit.
    let name = format!("{}\r\n {}", "N".repeat(499), "M".repeat(498));
    let message = format!("From: {name}\r\n (team) <x@allowed.com>\r\n\r\nx\r\n");
    let reply = raw_transaction(&mut client, message.as_bytes()).await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    assert_eq!(sink.accepted().len(), 1);
    server.stop().await;
}
