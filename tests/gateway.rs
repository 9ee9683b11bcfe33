//! End to end: a real sesgate on loopback relaying to a real SMTP sink (STARTTLS required, AUTH),
//! driven by real clients. Every allowed message arrives intact; every denied one gets a 5xx and
//! never reaches the sink; no 250 is ever given for a message the sink did not accept.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use support::sink::{DataReply, Sink};
use support::*;

fn password_of(user: &str) -> String {
    format!("{user}-password")
}

/// A user per guide policy (named after it), relaying to `sink`, with a settable clock.
async fn guide_server(sink: &Sink, now: Arc<AtomicI64>) -> TestServer {
    let users: String = GUIDE_POLICIES
        .iter()
        .map(|p| {
            user_toml(
                p,
                "/guide/",
                p,
                &password_of(p),
                &format!("policies = [\"{p}\"]"),
            )
        })
        .collect();
    TestServer::start_setup(Setup {
        users: Some(users),
        upstream: Some(sink.clone()),
        clock: Some(Arc::new(move || {
            jiff::Timestamp::from_second(now.load(Ordering::Relaxed)).unwrap()
        })),
        ..Setup::default()
    })
    .await
}

async fn session(server: &TestServer, listener: usize, user: &str, password: &str) -> Client {
    let mut client = server.connect(listener).await;
    client
        .hello(listener == STARTTLS || listener == BEHIND_PROXY)
        .await;
    client.login_as(user, password).await;
    client
}

const SEPTEMBER_2018: i64 = 1_536_969_600; // 2018-09-15T00:00:00Z

fn typical(from_header: &str) -> String {
    format!("From: {from_header}\r\nTo: alice@example.com\r\nSubject: guide\r\n\r\nHello.\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_guide_policy_allows_and_denies() {
    let sink = Sink::start().await;
    let now = Arc::new(AtomicI64::new(SEPTEMBER_2018));
    let server = guide_server(&sink, Arc::clone(&now)).await;
    let allowed_from = "Marketing <marketing@example.com>";
    // (policy, an allowed transaction, a denied one: (mail from, recipients, From header))
    type Tx = (&'static str, &'static [&'static str], &'static str);
    let cases: &[(&str, Tx, Option<Tx>)] = &[
        (
            "AllowAllSesActions",
            (
                "feedback@example.com",
                &["x@elsewhere.net"],
                "Anyone <a@other.org>",
            ),
            None,
        ),
        (
            "AllowApiVersion2Only",
            (
                "feedback@example.com",
                &["x@elsewhere.net"],
                "Anyone <a@other.org>",
            ),
            None,
        ),
        (
            "AllowSendingOnly",
            (
                "feedback@example.com",
                &["x@elsewhere.net"],
                "Anyone <a@other.org>",
            ),
            None,
        ),
        (
            "AllowSendingSeptember2018",
            ("feedback@example.com", &["alice@example.com"], allowed_from),
            None,
        ),
        (
            "AllowRecipientsAtExampleCom",
            (
                "feedback@example.com",
                &["alice@example.com", "bob@example.com"],
                allowed_from,
            ),
            Some((
                "feedback@example.com",
                &["alice@example.com", "eve@example.org"],
                allowed_from,
            )),
        ),
        (
            "AllowFromMarketingAddress",
            ("feedback@example.com", &["alice@example.com"], allowed_from),
            Some((
                "feedback@example.com",
                &["alice@example.com"],
                "Sales <sales@example.com>",
            )),
        ),
        (
            "AllowDisplayNameMarketing",
            ("feedback@example.com", &["alice@example.com"], allowed_from),
            Some((
                "feedback@example.com",
                &["alice@example.com"],
                "Marketing Team <marketing@example.com>",
            )),
        ),
        (
            "AllowFeedbackAddress",
            ("feedback@example.com", &["alice@example.com"], allowed_from),
            Some(("bounces@example.com", &["alice@example.com"], allowed_from)),
        ),
    ];
    let mut expected_at_sink = 0;
    for (policy, allowed, denied) in cases {
        let mut client = session(&server, STARTTLS, policy, &password_of(policy)).await;
        let (mail_from, recipients, from) = allowed;
        let data = typical(from);
        let reply = client.transaction(mail_from, recipients, &data).await;
        assert!(
            reply.starts_with("250 2.0.0 Ok 0100018c-sink-"),
            "{policy} should allow: {reply}"
        );
        expected_at_sink += 1;
        let accepted = sink.accepted();
        assert_eq!(accepted.len(), expected_at_sink, "{policy}");
        let last = accepted.last().unwrap();
        assert_eq!(last.mail_from, *mail_from);
        assert_eq!(
            last.recipients,
            recipients.iter().map(|r| r.to_string()).collect::<Vec<_>>()
        );
        assert!(last.data.starts_with(
            b"Received: from client.test ([127.0.0.1])\r\n\tby gw.test (sesgate) with ESMTPSA id "
        ));
        assert!(
            last.data.ends_with(data.as_bytes()),
            "{policy}: body intact"
        );
        if let Some((mail_from, recipients, from)) = denied {
            let reply = client
                .transaction(mail_from, recipients, &typical(from))
                .await;
            assert_eq!(
                reply,
                format!(
                    "554 5.7.1 Access denied: User `arn:aws:iam::123456789012:user/guide/{policy}' is not authorized to perform `ses:SendRawEmail' on resource `arn:aws:ses:us-east-1:123456789012:identity/example.com'"
                ),
                "{policy} should deny"
            );
            assert_eq!(
                sink.accepted().len(),
                expected_at_sink,
                "{policy}: nothing denied reaches the sink"
            );
        }
    }
    // The time-window policy denies outside September 2018.
    now.store(1_767_225_600, Ordering::Relaxed); // 2026-01-01
    let mut client = session(
        &server,
        STARTTLS,
        "AllowSendingSeptember2018",
        &password_of("AllowSendingSeptember2018"),
    )
    .await;
    let reply = client
        .transaction(
            "feedback@example.com",
            &["alice@example.com"],
            &typical(allowed_from),
        )
        .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    assert_eq!(sink.accepted().len(), expected_at_sink);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_deny_beats_user_allow_and_boundary_narrows() {
    let sink = Sink::start().await;
    let no_admin = r#"{"Version":"2012-10-17","Statement":{"Sid":"NoAdmin","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringEquals":{"ses:FromAddress":"admin@example.com"}}}}"#;
    let no_competitors = r#"{"Version":"2012-10-17","Statement":{"Sid":"NoCompetitors","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"ForAnyValue:StringLike":{"ses:Recipients":"*@competitor.com"}}}}"#;
    let groups = format!(
        "[[group]]\nname = \"guarded\"\ninline_policies = {{ NoAdmin = '{no_admin}' }}\npolicies = [\"NoCompetitors\"]\n"
    );
    let users = [
        user_toml("grouped", "/", "grouped", "pw-grouped", "groups = [\"guarded\"]\npolicies = [\"AllowAllSesActions\"]"),
        user_toml("bounded", "/", "bounded", "pw-bounded", "policies = [\"AllowAllSesActions\"]\npermissions_boundary = \"AllowRecipientsAtExampleCom\""),
    ]
    .concat();
    let server = TestServer::start_setup(Setup {
        groups,
        users: Some(users),
        policies: vec![("NoCompetitors".into(), no_competitors.into())],
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = session(&server, STARTTLS, "grouped", "pw-grouped").await;
    let reply = client
        .transaction(
            "a@example.com",
            &["x@example.com"],
            "From: admin@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(
        reply.starts_with("554 5.7.1 Access denied: User `arn:aws:iam::123456789012:user/grouped'"),
        "{reply}"
    );
    // Domains are compared lower-cased: the Deny on *@competitor.com also stops COMPETITOR.COM.
    let reply = client
        .transaction(
            "a@example.com",
            &["ok@example.com", "x@COMPETITOR.COM"],
            "From: info@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    let reply = client
        .transaction(
            "a@example.com",
            &["ok@example.com"],
            "From: info@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    let mut client = session(&server, STARTTLS, "bounded", "pw-bounded").await;
    let reply = client
        .transaction(
            "a@example.com",
            &["x@example.com"],
            "From: info@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    let reply = client
        .transaction(
            "a@example.com",
            &["x@example.org"],
            "From: info@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(
        reply.starts_with("554 5.7.1 Access denied"),
        "the boundary does not allow it: {reply}"
    );
    assert_eq!(sink.accepted().len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_from_is_rejected_and_never_relayed() {
    let sink = Sink::start().await;
    let server = TestServer::start_setup(Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = session(&server, STARTTLS, USER, PASSWORD).await;
    let cases = [
        (
            "From: a@example.com\r\nFrom: b@evil.test\r\n\r\nx\r\n",
            "554 5.6.0 Transaction failed: Duplicate header 'From'",
        ),
        (
            "From: a@example.com, b@example.com\r\n\r\nx\r\n",
            "554 5.6.0 Transaction failed: the From header holds more than one mailbox",
        ),
        (
            "From: Team: a@example.com, b@example.com;\r\n\r\nx\r\n",
            "554 5.6.0 Transaction failed: the From header is a group",
        ),
        (
            "Subject: no from\r\n\r\nx\r\n",
            "554 5.6.0 Transaction failed: the message has no From header",
        ),
    ];
    for (data, expected) in cases {
        assert_eq!(
            client
                .transaction("a@example.com", &["b@example.com"], data)
                .await,
            expected
        );
    }
    assert!(sink.accepted().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_display_name_is_decoded_before_matching() {
    let sink = Sink::start().await;
    let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringEquals":{"ses:FromDisplayName":"Jürgen Müller"}}}}"#;
    let server = TestServer::start_setup(Setup {
        users: Some(user_toml(
            "juergen",
            "/",
            "juergen",
            "pw",
            "policies = [\"Juergen\"]",
        )),
        policies: vec![("Juergen".into(), policy.into())],
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = session(&server, STARTTLS, "juergen", "pw").await;
    let encoded = "From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <j@example.com>\r\n\r\nx\r\n";
    assert!(
        client
            .transaction("j@example.com", &["b@example.com"], encoded)
            .await
            .starts_with("250 ")
    );
    let other = "From: =?UTF-8?Q?J=C3=BCrgen_Meier?= <j@example.com>\r\n\r\nx\r\n";
    assert!(
        client
            .transaction("j@example.com", &["b@example.com"], other)
            .await
            .starts_with("554 5.7.1")
    );
    assert_eq!(sink.accepted().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_keys_secure_transport_source_ip_and_time() {
    let sink = Sink::start().await;
    let tls_only = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}"#;
    let from_office = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"198.51.100.0/24"}}}}"#;
    let window = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00Z"},"DateLessThan":{"aws:EpochTime":"1798761600"}}}}"#;
    let users = [
        user_toml("tls", "/", "tls", "pw", "policies = [\"TlsOnly\"]"),
        user_toml("office", "/", "office", "pw", "policies = [\"FromOffice\"]"),
        user_toml("window", "/", "window", "pw", "policies = [\"Window2026\"]"),
    ]
    .concat();
    let now = Arc::new(AtomicI64::new(1_780_000_000)); // 2026-05-28
    let clock_now = Arc::clone(&now);
    let server = TestServer::start_setup(Setup {
        users: Some(users),
        policies: vec![
            ("TlsOnly".into(), tls_only.into()),
            ("FromOffice".into(), from_office.into()),
            ("Window2026".into(), window.into()),
        ],
        upstream: Some(sink.clone()),
        clock: Some(Arc::new(move || {
            jiff::Timestamp::from_second(clock_now.load(Ordering::Relaxed)).unwrap()
        })),
        ..Setup::default()
    })
    .await;
    let message = "From: a@example.com\r\n\r\nx\r\n";
    for listener in [STARTTLS, IMPLICIT] {
        let mut client = session(&server, listener, "tls", "pw").await;
        assert!(
            client
                .transaction("a@example.com", &["b@example.com"], message)
                .await
                .starts_with("250 ")
        );
    }
    let mut plain = session(&server, PLAINTEXT_AUTH, "tls", "pw").await;
    assert!(
        plain
            .transaction("a@example.com", &["b@example.com"], message)
            .await
            .starts_with("554 5.7.1")
    );
    // aws:SourceIp from a PROXY v2 header.
    assert!(
        proxied(&server, [198, 51, 100, 9], message)
            .await
            .starts_with("250 ")
    );
    assert!(
        proxied(&server, [192, 0, 2, 9], message)
            .await
            .starts_with("554 5.7.1")
    );
    // aws:CurrentTime and aws:EpochTime window.
    let mut client = session(&server, STARTTLS, "window", "pw").await;
    assert!(
        client
            .transaction("a@example.com", &["b@example.com"], message)
            .await
            .starts_with("250 ")
    );
    now.store(1_800_000_000, Ordering::Relaxed); // 2027-01-15
    assert!(
        client
            .transaction("a@example.com", &["b@example.com"], message)
            .await
            .starts_with("554 5.7.1")
    );
    assert_eq!(sink.accepted().len(), 4);
    server.stop().await;
}

/// One transaction of user `office` through the PROXY listener, as if from `source`.
async fn proxied(server: &TestServer, source: [u8; 4], message: &str) -> String {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[203, 0, 113, 1]);
    header.extend_from_slice(&40000u16.to_be_bytes());
    header.extend_from_slice(&587u16.to_be_bytes());
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &header)
        .await
        .unwrap();
    let mut client = Client::new(Box::new(stream), server.cert_pem());
    client.hello(true).await;
    client.login_as("office", "pw").await;
    client
        .transaction("a@example.com", &["b@example.com"], message)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_identities_and_configuration_sets() {
    let sink = Sink::start().await;
    let scoped = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":["arn:aws:ses:us-east-1:123456789012:identity/news@example.com","arn:aws:ses:us-east-1:123456789012:identity/other.org","arn:aws:ses:us-east-1:123456789012:configuration-set/audit"]}}"#;
    let mut setup = Setup {
        users: Some(user_toml(
            "scoped",
            "/",
            "scoped",
            "pw",
            "policies = [\"Scoped\"]",
        )),
        policies: vec![("Scoped".into(), scoped.into())],
        upstream: Some(sink.clone()),
        ..Setup::default()
    };
    setup.config.account.identities = vec![
        "example.com".into(),
        "news@example.com".into(),
        "Other.org".into(),
    ];
    setup.config.account.default_configuration_sets =
        [("other.org".to_owned(), "audit".to_owned())].into();
    let server = TestServer::start_setup(setup).await;
    let mut client = session(&server, STARTTLS, "scoped", "pw").await;
    // The email identity is preferred over its domain (the policy allows only the former).
    assert!(
        client
            .transaction(
                "news@example.com",
                &["b@example.net"],
                "From: news@example.com\r\n\r\nx\r\n"
            )
            .await
            .starts_with("250 ")
    );
    let reply = client
        .transaction(
            "news@example.com",
            &["b@example.net"],
            "From: sales@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(
        reply.ends_with("on resource `arn:aws:ses:us-east-1:123456789012:identity/example.com'"),
        "{reply}"
    );
    // A subdomain is covered by its verified parent, whose default configuration set applies.
    assert!(
        client
            .transaction(
                "news@example.com",
                &["b@example.net"],
                "From: x@mail.other.org\r\n\r\nx\r\n"
            )
            .await
            .starts_with("250 ")
    );
    // X-SES-CONFIGURATION-SET adds its resource, which this policy does not allow.
    let reply = client
        .transaction(
            "news@example.com",
            &["b@example.net"],
            "From: news@example.com\r\nX-SES-CONFIGURATION-SET: marketing\r\n\r\nx\r\n",
        )
        .await;
    assert!(
        reply.ends_with(
            "on resource `arn:aws:ses:us-east-1:123456789012:configuration-set/marketing'"
        ),
        "{reply}"
    );
    // Unverified From and unverified MAIL FROM, with SES's text.
    let reply = client
        .transaction(
            "news@example.com",
            &["b@example.net"],
            "From: x@unverified.net\r\n\r\nx\r\n",
        )
        .await;
    assert_eq!(
        reply,
        "554 5.7.1 Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: x@unverified.net"
    );
    let reply = client
        .transaction(
            "bounce@unverified.net",
            &["b@example.net"],
            "From: news@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(
        reply.ends_with("in region US-EAST-1: bounce@unverified.net"),
        "{reply}"
    );
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 2);
    // X-SES-* headers pass through unchanged for SES to act on.
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_never_get_250() {
    let sink = Sink::start().await;
    let server = TestServer::start_setup(Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = session(&server, STARTTLS, USER, PASSWORD).await;
    let message = "From: a@example.com\r\nX-SES-CONFIGURATION-SET: tracking\r\n\r\nx\r\n";
    assert!(
        client
            .transaction("a@example.com", &["b@example.com"], message)
            .await
            .starts_with("250 2.0.0 Ok 0100018c-sink-")
    );
    assert!(
        sink.accepted()[0]
            .data
            .windows(34)
            .any(|w| w == b"X-SES-CONFIGURATION-SET: tracking\r"),
        "X-SES headers pass through"
    );
    sink.set_reply(DataReply::Reply("451 4.3.0 Try again later".into()));
    let reply = client
        .transaction("a@example.com", &["b@example.com"], message)
        .await;
    assert_eq!(reply, "451 4.4.1 Temporary service failure");
    sink.set_reply(DataReply::Reply(
        "554 5.6.1 Message content rejected".into(),
    ));
    let reply = client
        .transaction("a@example.com", &["b@example.com"], message)
        .await;
    assert_eq!(reply, "554 5.6.1 Message content rejected");
    sink.set_reply(DataReply::CloseMidData);
    let reply = client
        .transaction("a@example.com", &["b@example.com"], message)
        .await;
    assert!(reply.starts_with("451 4.4.1"), "{reply}");
    assert_eq!(
        sink.accepted().len(),
        1,
        "only the first message was accepted by the sink"
    );
    server.stop().await;

    // An upstream that is down.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let mut setup = Setup::default();
    setup.config.upstream.url = format!("smtp://127.0.0.1:{port}?tls=required");
    let server = TestServer::start_setup(setup).await;
    let mut client = session(&server, STARTTLS, USER, PASSWORD).await;
    let reply = client
        .transaction("a@example.com", &["b@example.com"], message)
        .await;
    // SES's text; the cause (connection refused) is in the log only.
    assert_eq!(reply, "451 4.4.1 Temporary service failure");
    assert!(
        !reply.contains("os error") && !reply.contains("Connection refused"),
        "{reply}"
    );
    server.stop().await;
}

/// The smallest message the gateway allows, from a@example.com to b@example.com.
async fn plain_message(client: &mut Client) -> String {
    client.send_plain().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_upstream_connections_are_reused() {
    let sink = Sink::start().await;
    let server = TestServer::start_setup(Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = session(&server, STARTTLS, USER, PASSWORD).await;
    for _ in 0..5 {
        let reply = plain_message(&mut client).await;
        assert!(reply.starts_with("250 "), "{reply}");
    }
    assert_eq!(sink.accepted().len(), 5);
    assert_eq!(
        *sink.connections.lock().unwrap(),
        1,
        "one upstream connection served all five"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pooled_connection_is_replaced() {
    let sink = Sink::start().await;
    *sink.close_after_accept.lock().unwrap() = true;
    let server = TestServer::start_setup(Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = session(&server, STARTTLS, USER, PASSWORD).await;
    for _ in 0..3 {
        // Each pooled connection was closed by the upstream after its message: the next
        // message still goes through, on a fresh connection.
        let reply = plain_message(&mut client).await;
        assert!(reply.starts_with("250 2.0.0 Ok 0100018c-sink-"), "{reply}");
    }
    assert_eq!(sink.accepted().len(), 3);
    assert_eq!(*sink.connections.lock().unwrap(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettre_client_through_the_gateway() {
    use lettre::address::Envelope;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let sink = Sink::start().await;
    let server = TestServer::start_setup(Setup {
        users: Some(user_toml(
            "marketing",
            "/",
            "marketing",
            "pw",
            "policies = [\"AllowFromMarketingAddress\"]",
        )),
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(server.port(STARTTLS))
        .tls(Tls::Required(
            TlsParameters::builder("localhost".to_owned())
                .add_root_certificate(Certificate::from_pem(&server.cert_pem()).unwrap())
                .build_rustls()
                .unwrap(),
        ))
        .credentials(Credentials::new("marketing".into(), "pw".into()))
        .build();
    let envelope = Envelope::new(
        Some("marketing@example.com".parse().unwrap()),
        vec!["x@example.org".parse().unwrap()],
    )
    .unwrap();
    let allowed = b"From: Marketing <marketing@example.com>\r\nSubject: ok\r\n\r\nallowed\r\n";
    let response = transport
        .send_raw(&envelope, allowed)
        .await
        .expect("allowed");
    assert!(
        response
            .message()
            .next()
            .unwrap()
            .starts_with("2.0.0 Ok 0100018c-sink-")
    );
    let denied = b"From: Sales <sales@example.com>\r\nSubject: no\r\n\r\ndenied\r\n";
    let error = transport.send_raw(&envelope, denied).await.unwrap_err();
    assert!(error.is_permanent());
    assert!(
        error
            .to_string()
            .contains("Access denied: User `arn:aws:iam::123456789012:user/marketing'"),
        "{error}"
    );
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    // lettre (as a client) ends DATA with CR LF . CR LF after a message that already ends in
    // CR LF, so one empty line more arrives; everything it sent arrives unchanged.
    assert!(
        accepted[0]
            .data
            .ends_with(&[&allowed[..], b"\r\n"].concat())
    );
    server.stop().await;
}
