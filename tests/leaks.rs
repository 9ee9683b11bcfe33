//! Nothing secret, forged or internal leaks (issue 8 §5): no credential or body in the log at
//! any level, no client text that starts a log line or fakes a field, the published demo
//! password serves only in the embedded default, no internal detail in replies, outbox files
//! not world-readable. The log tests run the real `sesgate` binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::serve::{ServeProcess, plaintext_config, policy_dir};
use support::sink::{DataReply, SINK_PASSWORD, SINK_USER, Sink};
use support::*;

const CLIENT_USER: &str = "AKIALEAKTESTCLIENT01";
const CLIENT_PASSWORD: &str = "client-Pa55word-never-logged";
const BODY_MARKER: &str = "BODY-MARKER-3f9a61c2-never-logged";

/// A config directory with the guide's policies and the client user (AllowSendingOnly).
fn temp_dir(name: &str) -> PathBuf {
    policy_dir(
        &format!("leaks-{name}"),
        &user_toml(
            "app",
            "/",
            CLIENT_USER,
            CLIENT_PASSWORD,
            "policies = [\"AllowSendingOnly\"]",
        ),
    )
}

/// The `[upstream]` table relaying to `sink` (STARTTLS required, AUTH), its CA certificate and
/// password written into `dir`.
fn sink_upstream(dir: &Path, sink: &Sink) -> String {
    std::fs::write(dir.join("sink-ca.pem"), &sink.cert_pem).unwrap();
    std::fs::write(dir.join("upstream.secret"), format!("{SINK_PASSWORD}\n")).unwrap();
    format!(
        "[upstream]\nurl = \"smtp://localhost:{}?tls=required\"\nusername = \"{SINK_USER}\"\npassword_file = \"upstream.secret\"\nca_certificate = \"sink-ca.pem\"\n",
        sink.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_log_holds_no_credential_and_no_body() {
    let sink = Sink::start().await;
    let dir = temp_dir("trace");
    let upstream = sink_upstream(&dir, &sink);
    // Every way a user could ask for the wire log.
    for (round, filter) in ["trace", "lettre=trace,rustls=trace,sesgate=trace,trace"]
        .iter()
        .enumerate()
    {
        let serve = ServeProcess::start_with(&dir, &[], Some(filter), |port| {
            plaintext_config(port, &upstream)
        });
        let mut client = serve.client().await;
        // AUTH LOGIN: user name and password each in base64.
        assert_eq!(client.command("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
        assert_eq!(
            client.command(&base64_encode(CLIENT_USER.as_bytes())).await,
            "334 UGFzc3dvcmQ6"
        );
        assert_eq!(
            client
                .command(&base64_encode(CLIENT_PASSWORD.as_bytes()))
                .await,
            "235 2.7.0 Authentication successful."
        );
        let message = format!("From: a@example.com\r\nSubject: s\r\n\r\n{BODY_MARKER}\r\n");
        let reply = client
            .transaction("a@example.com", &["b@example.com"], &message)
            .await;
        assert!(reply.starts_with("250 2.0.0 Ok 0100018c-sink-"), "{reply}");
        // A second session with AUTH PLAIN.
        let mut client = serve.client().await;
        client.login_as(CLIENT_USER, CLIENT_PASSWORD).await;
        serve.wait_for_log("transaction", 1).await;
        assert_eq!(sink.accepted().len(), round + 1);
        assert!(
            String::from_utf8_lossy(&sink.accepted()[round].data).contains(BODY_MARKER),
            "the message really went through the upstream"
        );
        let log = serve.log();
        assert!(
            log.contains("DEBUG") || log.contains("TRACE"),
            "sesgate's own debug lines still appear: {log}"
        );
        for secret in [
            SINK_PASSWORD.to_owned(),
            base64_encode(SINK_PASSWORD.as_bytes()),
            base64_encode(format!("\0{SINK_USER}\0{SINK_PASSWORD}").as_bytes()),
            CLIENT_PASSWORD.to_owned(),
            base64_encode(CLIENT_PASSWORD.as_bytes()),
            base64_encode(format!("\0{CLIENT_USER}\0{CLIENT_PASSWORD}").as_bytes()),
            BODY_MARKER.to_owned(),
            "Subject: s".to_owned(),
        ] {
            assert!(
                !log.contains(&secret),
                "RUST_LOG={filter}: the log holds {secret:?}:\n{log}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A user name that, written raw, would end the log line and start a genuine-looking one.
const FORGED: &str = "x\n2026-01-01T00:00:00Z  INFO sesgate::gateway: transaction session=00000001 decision=\"allowed\"";

/// A session that tries to forge log lines: AUTH PLAIN with `FORGED` as user name, then a
/// transaction with control characters in MAIL FROM and From.
async fn forge(serve: &ServeProcess) {
    let mut client = serve.client().await;
    let blob = base64_encode(format!("\0{FORGED}\0wrong").as_bytes());
    assert!(
        client
            .command(&format!("AUTH PLAIN {blob}"))
            .await
            .starts_with("535")
    );
    client.login_as(CLIENT_USER, CLIENT_PASSWORD).await;
    let _ = client
        .transaction(
            "a\x1b[2J\x7f@example.com",
            &["b@example.com"],
            "From: c\x1b[31m\x0b\x7f@example.com\r\n\r\nx\r\n",
        )
        .await;
    serve.wait_for_log("authentication failed", 1).await;
    serve.wait_for_log("transaction", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_text_cannot_forge_a_text_log_line() {
    let dir = temp_dir("forge-text");
    let serve = ServeProcess::start(&dir, "");
    forge(&serve).await;
    let log = serve.log();
    for line in log.lines() {
        assert!(
            line.starts_with("20") && line.as_bytes().get(10) == Some(&b'T'),
            "a line that is not an event of its own: {line:?}\n{log}"
        );
        assert!(
            !line.starts_with("2026-01-01T00:00:00Z"),
            "a forged line: {line:?}"
        );
        assert!(
            line.bytes().all(|b| (b' '..=b'~').contains(&b)),
            "a raw control or non-ASCII character: {line:?}"
        );
    }
    let escaped = r#"smtp_user="x\n2026-01-01T00:00:00Z  INFO sesgate::gateway: transaction session=00000001 decision=\"allowed\"""#;
    assert!(log.contains(escaped), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_text_cannot_forge_a_json_log_line() {
    let dir = temp_dir("forge-json");
    let serve = ServeProcess::start_with(&dir, &["--log-format", "json"], None, |port| {
        plaintext_config(port, "")
    });
    forge(&serve).await;
    let log = serve.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}\n{log}")))
        .collect();
    assert!(
        events.iter().any(|e| e["smtp_user"] == FORGED),
        "the user name is kept whole inside its field: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A config directory whose `iam.toml` is the shipped one: the demo user and its password.
fn demo_copy(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/iam.toml"),
        dir.join("policies/iam.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("sesgate.toml"),
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"none\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn serve_with_a_config_refuses_the_demo_password() {
    let dir = demo_copy("demo-serve");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args(["serve", "--config"])
        .arg(dir.join("sesgate.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It must exit at once; one that serves is killed and fails the test.
    let mut status = None;
    for _ in 0..400 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{stderr}");
    let iam = dir.join("policies/iam.toml");
    assert!(
        stderr.contains(&format!(
            "{}: SMTP user \"demo\" has the demo password",
            iam.display()
        )),
        "{stderr}"
    );
    // A password of its own starts.
    std::fs::write(
        dir.join("policies/iam.toml"),
        user_toml("demo", "/", "demo", "a password of its own", ""),
    )
    .unwrap();
    let serve = ServeProcess::start(&dir, "");
    // The port opens before the batched log writer has written the ready line: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !serve.log().contains("sesgate ready") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(serve.log().contains("sesgate ready"), "{}", serve.log());
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_with_a_config_errors_on_the_demo_password() {
    let dir = demo_copy("demo-check");
    let output = Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args(["check", "--config"])
        .arg(dir.join("sesgate.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {}: SMTP user \"demo\" has the demo password",
            dir.join("policies/iam.toml").display()
        )),
        "{stderr}"
    );
    // The embedded default (no --config, the shipped files) is where the demo user belongs.
    let output = Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .arg("check")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_carry_no_internal_detail() {
    // An upstream that is down: SES's text, the cause only in the log.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let mut setup = Setup::default();
    setup.config.upstream.url = format!("smtp://127.0.0.1:{port}?tls=required");
    let server = TestServer::start_setup(setup).await;
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    client.login().await;
    let message = "From: a@example.com\r\n\r\nx\r\n";
    let reply = client
        .transaction("a@example.com", &["b@example.com"], message)
        .await;
    assert_eq!(reply, "451 4.4.1 Temporary service failure");
    server.stop().await;

    // An upstream refusal passes on as one printable line: the upstream cannot add lines.
    let sink = Sink::start().await;
    let server = TestServer::start_setup(Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    })
    .await;
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    client.login().await;
    sink.set_reply(DataReply::Reply(
        "554-5.6.1 first line\r\n554 5.6.1 second\tline".into(),
    ));
    let reply = client
        .transaction("a@example.com", &["b@example.com"], message)
        .await;
    assert!(reply.starts_with("554 5.6.1 first line"), "{reply}");
    assert!(
        !reply.contains('\n') && reply.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "{reply:?}"
    );
    // A 4xx from the upstream: SES's text too.
    sink.set_reply(DataReply::Reply(
        "451 4.3.0 internal queue /var/spool full".into(),
    ));
    let reply = client
        .transaction("a@example.com", &["b@example.com"], message)
        .await;
    assert_eq!(reply, "451 4.4.1 Temporary service failure");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_files_are_not_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    client.login().await;
    let reply = client.send_plain().await;
    assert!(reply.starts_with("250 "), "{reply}");
    let outbox = server.dir.join("outbox");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&outbox) & !0o750, 0, "outbox {:o}", mode(&outbox));
    let mut files = 0;
    for entry in std::fs::read_dir(&outbox).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files += 1;
            assert_eq!(
                mode(&path) & !0o640,
                0,
                "{} {:o}",
                path.display(),
                mode(&path)
            );
        }
    }
    assert_eq!(files, 2, "the message and its envelope");
    server.stop().await;
}

/// Issue 14 §9: the upstream's own id (Postfix's queue id, SES's message id) is logged as
/// `upstream_id` on the transaction line, so the logs of both sides can be joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_queue_id_is_logged_on_the_transaction_line() {
    let sink = Sink::start().await;
    let dir = temp_dir("upstream-id");
    let upstream = sink_upstream(&dir, &sink);
    let serve = ServeProcess::start(&dir, &upstream);

    // Postfix: `250 2.0.0 Ok: queued as <id>`; the client hears sesgate's own id.
    sink.set_reply(DataReply::Reply("250 2.0.0 Ok: queued as 4XyzQ1abc".into()));
    let mut client = serve.client().await;
    client.login_as(CLIENT_USER, CLIENT_PASSWORD).await;
    let reply = client
        .transaction(
            "a@example.com",
            &["b@example.com"],
            "From: a@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    assert!(!reply.contains("4XyzQ1abc"), "{reply}");
    serve.wait_for_log("upstream_id=4XyzQ1abc", 1).await;
    let log = serve.log();
    let line = log.lines().find(|l| l.contains("transaction")).unwrap();
    assert!(line.contains("upstream_id=4XyzQ1abc"), "{line}");

    // SES: `250 Ok <message id>`, which the client hears too.
    sink.set_reply(DataReply::Accept);
    let reply = client
        .transaction(
            "a@example.com",
            &["b@example.com"],
            "From: a@example.com\r\n\r\nx\r\n",
        )
        .await;
    let ses_id = reply
        .strip_prefix("250 2.0.0 Ok ")
        .expect(&reply)
        .to_owned();
    assert!(ses_id.starts_with("0100018c-sink-"), "{reply}");
    serve
        .wait_for_log(&format!("upstream_id={ses_id}"), 1)
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 14 §8: a connection refused for the per-address cap is logged with a session id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refusal_is_logged_with_a_session_id() {
    let dir = temp_dir("connection-limit");
    let serve = ServeProcess::start(&dir, "[limits]\nmax_connections_per_ip = 1\n");
    // Hold the address's one slot (the start-up probe's connection may still hold it briefly).
    let mut held = None;
    for _ in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", serve.port()))
            .await
            .unwrap();
        let mut greeting = [0u8; 3];
        let _ = tokio::io::AsyncReadExt::read_exact(&mut stream, &mut greeting).await;
        if &greeting == b"220" {
            held = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _held = held.expect("a first connection is served");
    let mut refused = tokio::net::TcpStream::connect(("127.0.0.1", serve.port()))
        .await
        .unwrap();
    let mut reply = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(&mut refused, &mut reply).await;
    assert!(
        reply.starts_with("421 4.7.0 Too many concurrent SMTP connections"),
        "{reply}"
    );
    serve
        .wait_for_log("refused: too many connections from this address", 1)
        .await;
    let log = serve.log();
    let line = log
        .lines()
        .find(|l| l.contains("refused: too many connections from this address"))
        .unwrap();
    assert!(
        line.split_whitespace()
            .any(|w| w.strip_prefix("session=").is_some_and(|id| id.len() == 8)),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
