//! Real SMTP clients against a real sesgate on loopback: lettre (Rust), Python's smtplib and
//! swaks. The outside tools skip with a notice when absent, unless SESGATE_REQUIRE_INTEROP=1.

mod support;

use std::process::Command;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use support::*;

fn lettre_client(
    server: &TestServer,
    listener: usize,
    mechanism: Mechanism,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let parameters = TlsParameters::builder("localhost".to_owned())
        .add_root_certificate(Certificate::from_pem(&server.cert_pem()).unwrap())
        .build_rustls()
        .unwrap();
    let tls = if listener == IMPLICIT {
        Tls::Wrapper(parameters)
    } else {
        Tls::Required(parameters)
    };
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(server.port(listener))
        .tls(tls)
        .credentials(Credentials::new(USER.into(), PASSWORD.into()))
        .authentication(vec![mechanism])
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettre_starttls_plain_and_login_and_implicit_tls() {
    let server = TestServer::start().await;
    let runs = [
        (STARTTLS, Mechanism::Plain),
        (STARTTLS, Mechanism::Login),
        (IMPLICIT, Mechanism::Plain),
    ];
    for (i, (listener, mechanism)) in runs.into_iter().enumerate() {
        let transport = lettre_client(&server, listener, mechanism);
        let envelope = Envelope::new(
            Some("sender@example.com".parse().unwrap()),
            vec!["rcpt@example.com".parse().unwrap()],
        )
        .unwrap();
        let message =
            format!("From: sender@example.com\r\nSubject: lettre {i}\r\n\r\nbody {i}\r\n");
        let response = transport
            .send_raw(&envelope, message.as_bytes())
            .await
            .expect("lettre sends");
        assert_eq!(response.code().to_string(), "250");
        assert!(response.message().next().unwrap().starts_with("2.0.0 Ok "));
    }
    let stored = server.outbox();
    assert_eq!(stored.len(), 3);
    for (i, (message, envelope)) in stored.iter().enumerate() {
        let text = String::from_utf8_lossy(message);
        assert!(text.contains(&format!("body {i}")), "{text}");
        assert_eq!(envelope["tls"], true);
        assert_eq!(envelope["mail_from"], "sender@example.com");
    }
    // Wrong credentials surface as lettre's permanent error with SES's text.
    let wrong = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("localhost")
        .port(server.port(IMPLICIT))
        .tls(Tls::Wrapper(
            TlsParameters::builder("localhost".to_owned())
                .add_root_certificate(Certificate::from_pem(&server.cert_pem()).unwrap())
                .build_rustls()
                .unwrap(),
        ))
        .credentials(Credentials::new(USER.into(), "nope".into()))
        .build();
    let envelope = Envelope::new(None, vec!["rcpt@example.com".parse().unwrap()]).unwrap();
    let error = wrong
        .send_raw(&envelope, b"Subject: x\r\n\r\nx\r\n")
        .await
        .unwrap_err();
    assert!(error.is_permanent());
    assert!(
        error
            .to_string()
            .contains("Authentication Credentials Invalid"),
        "{error}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib() {
    if !tool_available("python3", &["-c", "import smtplib, ssl"]) {
        return;
    }
    let server = TestServer::start().await;
    let script = format!(
        "{}/tests/interop/smtplib_client.py",
        env!("CARGO_MANIFEST_DIR")
    );
    for (listener, mode) in [(STARTTLS, "starttls"), (IMPLICIT, "implicit")] {
        let args = vec![
            script.clone(),
            server.port(listener).to_string(),
            path_str(&server.cert_path()).to_owned(),
            USER.to_owned(),
            PASSWORD.to_owned(),
            mode.to_owned(),
        ];
        let output = tokio::task::spawn_blocking(move || {
            Command::new("python3").args(args).output().unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if mode == "starttls" {
            assert!(
                stdout.contains("auth-before-tls 530 5.7.0 Must issue a STARTTLS command first"),
                "{stdout}"
            );
            assert!(
                stdout.contains("mail-before-auth 530 5.7.0 Authentication required"),
                "{stdout}"
            );
        }
        assert!(
            stdout.contains("wrong-password 535 5.7.8 Authentication Credentials Invalid"),
            "{stdout}"
        );
        assert!(
            stdout.contains("login ok")
                && stdout.contains("sendmail refused={}")
                && stdout.contains("noop 250"),
            "{stdout}"
        );
    }
    let stored = server.outbox();
    assert_eq!(stored.len(), 2);
    // smtplib stuffs the leading dot; sesgate unstuffs it.
    assert!(
        stored[0].0.windows(14).any(|w| w == b"\r\n.leading dot"),
        "{:?}",
        String::from_utf8_lossy(&stored[0].0)
    );
    assert_eq!(
        stored[0].1["recipients"],
        serde_json::json!(["rcpt@example.com", "other@example.com"])
    );
    server.stop().await;
}

/// Runs swaks off the async threads.
async fn swaks(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new("swaks").args(args).output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_auth_login_and_implicit_tls() {
    if !tool_available("swaks", &["--version"]) {
        return;
    }
    let server = TestServer::start().await;
    for (listener, tls_flag) in [(STARTTLS, "-tls"), (IMPLICIT, "-tlsc")] {
        let args: Vec<String> = [
            "--server",
            "127.0.0.1",
            "--port",
            &server.port(listener).to_string(),
            tls_flag,
            "--auth",
            "LOGIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
            "--from",
            "sender@example.com",
            "--to",
            "rcpt@example.com",
            "--header",
            "Subject: swaks",
            "--body",
            "hello from swaks",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let output = swaks(args).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("<~  235 2.7.0 Authentication successful."),
            "{stdout}"
        );
        assert!(stdout.contains("<~  250 2.0.0 Ok "), "{stdout}");
    }
    // Bad password: swaks reports the 535 and fails.
    let args: Vec<String> = [
        "--server",
        "127.0.0.1",
        "--port",
        &server.port(STARTTLS).to_string(),
        "-tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        USER,
        "--auth-password",
        "wrong",
        "--from",
        "sender@example.com",
        "--to",
        "rcpt@example.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let output = swaks(args).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("535 5.7.8 Authentication Credentials Invalid")
    );
    let stored = server.outbox();
    assert_eq!(stored.len(), 2);
    assert!(String::from_utf8_lossy(&stored[1].0).contains("hello from swaks"));
    server.stop().await;
}

#[test]
fn smtp_password_and_hash_password_commands() {
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sesgate"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let output = run(
        &["smtp-password", "--region", "us-east-1"],
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    );
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9"
    );
    let output = run(&["hash-password"], "sesgate-demo\n");
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    let empty = run(&["hash-password"], "");
    assert_eq!(empty.status.code(), Some(2));
}
