//! `check` loads exactly what `serve` loads: the same broken configurations fed to both, and a
//! reload that cannot apply a change says so (log and metric).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::serve::{ServeProcess, free_port, policy_dir};
use support::*;

/// A config directory: `sesgate.toml` listening on `port` plus `extra`, and `policies/`.
fn config_dir(name: &str, port: u16, extra: &str) -> PathBuf {
    let dir = policy_dir(
        &format!("load-{name}"),
        &user_toml("app", "/", "app", "pw", "policies = [\"AllowSendingOnly\"]"),
    );
    std::fs::write(dir.join("sesgate.toml"), config_toml(port, extra)).unwrap();
    dir
}

/// One STARTTLS listener on `port`, plus `extra`.
fn config_toml(port: u16, extra: &str) -> String {
    format!(
        "[account]\nidentities = [\"example.com\"]\n[[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"starttls\"\n{extra}"
    )
}

fn sesgate(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sesgate"));
    command
        .args(args)
        .arg("--config")
        .arg(dir.join("sesgate.toml"))
        .env_remove("SESGATE_CONFIG")
        .env_remove("SESGATE_TEST_UNSET_PASSWORD");
    command
}

/// `Ok(())` when serve started (then it is stopped), else its stderr.
fn serve_outcome(dir: &Path, port: u16) -> Result<(), String> {
    let mut child = sesgate(dir, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            assert_eq!(status.code(), Some(2));
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            child.kill().unwrap();
            child.wait().unwrap();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("serve neither started nor failed");
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn check_fails_exactly_when_serve_fails() {
    let unattached_broken = |dir: &Path| {
        std::fs::write(
            dir.join("policies/Broken.json"),
            r#"{"Statement":{"Effect":"allow"}}"#,
        )
        .unwrap()
    };
    let half_pair = |dir: &Path| std::fs::write(dir.join("only.crt"), "x").unwrap();
    let nothing = |_: &Path| {};
    type Prepare = fn(&Path);
    let cases: &[(&str, &str, Prepare, Option<&str>)] = &[
        ("good", "", nothing, None),
        (
            "password-file-missing",
            "[upstream]\nurl = \"smtp://127.0.0.1:1\"\nusername = \"u\"\npassword_file = \"no-such-file\"\n",
            nothing,
            Some("password_file"),
        ),
        (
            "password-env-unset",
            "[upstream]\nurl = \"smtp://127.0.0.1:1\"\nusername = \"u\"\npassword_env = \"SESGATE_TEST_UNSET_PASSWORD\"\n",
            nothing,
            Some("SESGATE_TEST_UNSET_PASSWORD is not set"),
        ),
        (
            "unattached-broken-policy",
            "",
            unattached_broken,
            Some("Broken.json"),
        ),
        (
            "plain-smtp-over-the-network",
            "[upstream]\nurl = \"smtp://mail.example.net:25\"\n",
            nothing,
            Some("plain smtp:// to a host that is not this machine"),
        ),
        (
            "half-a-certificate-pair",
            "[tls]\ncertificate = \"only.crt\"\nprivate_key = \"only.key\"\n",
            half_pair,
            Some("only.key: missing"),
        ),
    ];
    for (name, extra, prepare, expected) in cases {
        let port = free_port();
        let dir = config_dir(name, port, extra);
        prepare(&dir);
        let checked = sesgate(&dir, &["check"]).output().unwrap();
        let served = serve_outcome(&dir, port);
        match (expected, served) {
            (None, Ok(())) => {
                assert_eq!(checked.status.code(), Some(0), "{name}: {}", text(&checked))
            }
            (Some(expected), Err(stderr)) => {
                assert_eq!(checked.status.code(), Some(2), "{name}: {}", text(&checked));
                let error = stderr
                    .lines()
                    .find_map(|l| l.strip_prefix("sesgate: error: "))
                    .unwrap_or_else(|| panic!("{name}: no error line in {stderr}"));
                assert!(error.contains(expected), "{name}: {error}");
                let check_errors = String::from_utf8_lossy(&checked.stderr);
                assert!(
                    check_errors.contains(&format!("error: {error}")),
                    "{name}: check says {check_errors} but serve {error}"
                );
            }
            (expected, served) => panic!("{name}: expected {expected:?}, serve gave {served:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn check_reports_the_new_findings() {
    let port = free_port();
    let dir = config_dir(
        "findings",
        port,
        "[[listener]]\naddress = \"0.0.0.0:0\"\ntls = \"none\"\nallow_plaintext_auth = true\n",
    );
    // A self-signed certificate for another name, as serve generates it.
    let names = vec!["other.example.net".to_owned()];
    let cert = dir.join("certs/sesgate.crt");
    sesgate::smtp::tls::load_or_generate(&cert, &dir.join("certs/sesgate.key"), &names).unwrap();
    let toml = std::fs::read_to_string(dir.join("sesgate.toml")).unwrap();
    let toml = toml.replace("identities = [\"example.com\"]", "identities = []");
    std::fs::write(
        dir.join("sesgate.toml"),
        format!("hostname = \"mail.example.com\"\n{toml}"),
    )
    .unwrap();
    let output = sesgate(&dir, &["check"]).output().unwrap();
    let text = text(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    for expected in [
        "[account] identities is empty, so every From and MAIL FROM domain counts as verified",
        "[[listener]] 0.0.0.0:0: allow_plaintext_auth on an address that is not loopback",
        "the certificate is self-signed",
        "not the hostname \"mail.example.com\"",
    ] {
        assert!(text.contains(expected), "{text} lacks {expected:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn certificate_warnings_for_expiry() {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let dir = std::env::temp_dir().join(format!("sesgate-load-cert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cert = dir.join("a.crt");
    sesgate::smtp::tls::load_or_generate(&cert, &dir.join("a.key"), &names).unwrap();
    let pem = std::fs::read_to_string(&cert).unwrap();
    let expiry = sesgate::certificate::not_after(&pem).unwrap();
    let now = jiff::Timestamp::now();
    let days = (expiry.as_second() - now.as_second()) / 86_400;
    assert!((360..=366).contains(&days), "valid for {days} days");
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE").count(), 1);
    let at = |days: i64| {
        expiry
            .checked_sub(jiff::SignedDuration::from_hours(24 * days))
            .unwrap()
    };
    let soon = sesgate::certificate::warnings(&pem, "localhost", at(10));
    assert!(soon.iter().any(|w| w.contains("expires in")), "{soon:?}");
    let later = sesgate::certificate::warnings(&pem, "localhost", at(-2));
    assert!(
        later.iter().any(|w| w.contains("expired 2 day(s) ago")),
        "{later:?}"
    );
    let fine = sesgate::certificate::warnings(&pem, "localhost", now);
    assert_eq!(fine.len(), 1, "only self-signed: {fine:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn http_get(port: u16, path: &str) -> String {
    http_get_with(port, path, "")
}

fn http_get_with(port: u16, path: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_that_cannot_apply_a_change_says_so() {
    let (port, metrics_port) = (free_port(), free_port());
    let metrics = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    let dir = config_dir("reload-unapplied", port, &metrics);
    let serve = ServeProcess::start_with(&dir, &[], None, |port| config_toml(port, &metrics));
    let log_text = || serve.log();
    wait_for("serve", || {
        std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
    });
    let hangup = || serve.signal("HUP");
    // A limit changed: users and policies reload, the limit needs a restart.
    let toml = std::fs::read_to_string(dir.join("sesgate.toml")).unwrap();
    std::fs::write(
        dir.join("sesgate.toml"),
        format!("{toml}[limits]\nmax_recipients = 3\n"),
    )
    .unwrap();
    hangup();
    wait_for("the reload line", || log_text().contains("not_applied"));
    assert!(log_text().contains("not_applied=limits"), "{}", log_text());
    let scraped = http_get(metrics_port, "/metrics");
    assert!(
        scraped.contains("sesgate_reload_unapplied_sections 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains("sesgate_reloads_total{result=\"success\"} 1"),
        "{scraped}"
    );
    assert!(
        !scraped.contains("sesgate_last_reload_timestamp_seconds 0\n"),
        "{scraped}"
    );
    // A broken file: the reload fails and is counted.
    std::fs::write(dir.join("policies/Broken.json"), "{").unwrap();
    hangup();
    wait_for("the failed reload", || log_text().contains("reload failed"));
    let scraped = http_get(metrics_port, "/metrics");
    assert!(
        scraped.contains("sesgate_reloads_total{result=\"failure\"} 1"),
        "{scraped}"
    );
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_keeps_its_state_in_the_state_directory() {
    let state = std::env::temp_dir().join(format!("sesgate-load-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut config = sesgate::config::Config::embedded_default(state.clone());
    // Port 0 and plaintext, so the test neither collides with a running gateway nor needs TLS.
    config.listeners.truncate(1);
    config.listeners[0].address = "127.0.0.1:0".parse().unwrap();
    config.listeners[0].tls = sesgate::smtp::TlsMode::None;
    config.listeners[0].allow_plaintext_auth = true;
    let running = sesgate::gateway::start(&config).await.unwrap();
    assert!(state.join("certs/sesgate.crt").exists());
    let stream = tokio::net::TcpStream::connect(running.addresses[0])
        .await
        .unwrap();
    let mut client = Client::new(Box::new(stream), Vec::new());
    assert!(client.reply().await.starts_with("220"));
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    client.login_as("demo", "sesgate-demo").await;
    assert!(client.send_plain().await.starts_with("250"), "sent");
    let stored: Vec<_> = std::fs::read_dir(state.join("outbox"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(stored.len(), 1);
    running.stop().await;
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn sesgate_config_is_used_and_config_flag_wins() {
    let port = free_port();
    let env_dir = config_dir("env-config", port, "");
    let flag_dir = config_dir("flag-config", port, "");
    let run = |flag: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sesgate"));
        command
            .arg("check")
            .env("SESGATE_CONFIG", env_dir.join("sesgate.toml"));
        if let Some(dir) = flag {
            command.arg("--config").arg(dir.join("sesgate.toml"));
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let from_env = run(None);
    assert!(
        from_env.contains(&format!(
            "{} (SESGATE_CONFIG)",
            env_dir.join("sesgate.toml").display()
        )),
        "{from_env}"
    );
    let from_flag = run(Some(&flag_dir));
    assert!(
        from_flag.contains(&format!(
            "{} (--config)",
            flag_dir.join("sesgate.toml").display()
        )),
        "{from_flag}"
    );
    let _ = std::fs::remove_dir_all(&env_dir);
    let _ = std::fs::remove_dir_all(&flag_dir);
}

/// Every metric name a query of the shipped Grafana dashboard uses is one sesgate exports.
#[test]
fn grafana_dashboard_queries_only_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/grafana/sesgate.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                        _ => exprs(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 8, "{queries:?}");
    // A family with labels is written once it has a child: touch each.
    let metrics = sesgate::metrics::Metrics::default();
    metrics.count_transaction("allowed");
    metrics.count_auth(true);
    metrics.count_upstream("ok", 0.1);
    metrics.count_reload(false, 0);
    metrics.quota.count_throttled("rate");
    metrics.quota.count_store_error("data", "refused");
    let account = sesgate::metrics::ScopeLabel {
        scope: "account",
        name: "".into(),
    };
    metrics.quota.remaining_24h.get_or_create(&account).set(1);
    let rendered = metrics.render();
    let families: Vec<&str> = rendered
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut checked = 0;
    for query in &queries {
        let names = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|token| token.starts_with("sesgate_"));
        for name in names {
            let exported = families.iter().any(|family| {
                ["", "_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name == format!("{family}{suffix}"))
            });
            assert!(exported, "{query}: {name} is not exported ({families:?})");
            checked += 1;
        }
    }
    assert!(checked >= queries.len());
}

/// Refusals before DATA are logged, with the session id of that session's transaction lines.
#[test]
fn refusals_before_data_are_logged_with_the_session_id() {
    use std::io::{BufRead, BufReader, Write};
    let (port, tls_port) = (free_port(), free_port());
    let dir = config_dir(
        "refusals",
        port,
        &format!(
            "tls = \"none\"\nallow_plaintext_auth = true\n[[listener]]\naddress = \"127.0.0.1:{tls_port}\"\ntls = \"implicit\"\n[limits]\nmax_message_bytes = 1000\n"
        ),
    );
    let toml = std::fs::read_to_string(dir.join("sesgate.toml")).unwrap();
    std::fs::write(
        dir.join("sesgate.toml"),
        toml.replacen("tls = \"starttls\"\n", "", 1),
    )
    .unwrap();
    let log = dir.join("serve.log");
    let mut child = sesgate(&dir, &["serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .env("NO_COLOR", "1")
        .spawn()
        .unwrap();
    wait_for("serve", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut command = |line: &str| {
        if !line.is_empty() {
            write!(writer, "{line}\r\n").unwrap();
        }
        let mut reply = String::new();
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            reply.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    };
    assert!(command("").starts_with("220"));
    assert!(command("EHLO client.test").starts_with("250"));
    assert!(command("MAIL FROM:<a@example.com>").starts_with("530"));
    let plain = base64_encode(b"\0app\0pw");
    assert!(command(&format!("AUTH PLAIN {plain}")).starts_with("235"));
    assert!(command("MAIL FROM:<a@example.com> SIZE=5000").starts_with("552"));
    assert!(command("QUIT").starts_with("221"));
    // A failed implicit-TLS handshake.
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    garbage.write_all(b"EHLO not-tls\r\n\r\n").unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the TLS failure", || {
        log_text().contains("TLS handshake failed")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let text = log_text();
    let line_of = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {text}"))
            .to_owned()
    };
    let session_of = |line: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix("session="))
            .unwrap_or_else(|| panic!("no session in {line}"))
            .to_owned()
    };
    let authenticated = session_of(&line_of("authenticated"));
    for needle in ["code=530", "code=552"] {
        let line = line_of(needle);
        assert!(line.contains("refused"), "{line}");
        assert_eq!(session_of(&line), authenticated, "{line}");
    }
    session_of(&line_of("TLS handshake failed"));
    assert!(
        !text.contains("\0app\0pw") && !text.contains(&plain),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
