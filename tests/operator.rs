//! What an operator touches: `sesgate check`, `sesgate simulate` (agreeing with `serve`), SIGHUP
//! reload under load, SIGTERM drain, and the systemd unit.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::serve::{ServeProcess, policy_dir};
use support::*;

fn sesgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args(args)
        .output()
        .expect("sesgate runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A directory with `sesgate.toml` (embedded-default listeners replaced by `listeners`) and a
/// `policies/` of the guide's policies plus `iam_toml`.
fn config_dir(name: &str, sesgate_toml: &str, iam_toml: &str) -> PathBuf {
    let dir = policy_dir(&format!("operator-{name}"), iam_toml);
    std::fs::write(dir.join("sesgate.toml"), sesgate_toml).unwrap();
    dir
}

fn check(dir: &Path, strict: bool) -> Output {
    let config = dir.join("sesgate.toml");
    let mut args = vec!["check", "--config", config.to_str().unwrap()];
    if strict {
        args.push("--strict");
    }
    sesgate(&args)
}

#[test]
fn check_reports_config_errors_with_file_line_and_field() {
    let user = user_toml("app", "/", "app", "pw", "policies = [\"AllowSendingOnly\"]");
    let cases: &[(&str, &str, String, &str)] = &[
        (
            "unknown-field",
            "[limits]\nmax_recipients = 5\nmax_recipent = 3\n",
            user.clone(),
            "sesgate.toml: line 3, column 1: unknown field `max_recipent`",
        ),
        (
            "missing-policy",
            "",
            user_toml("app", "/", "app", "pw", "policies = [\"NoSuchPolicy\"]"),
            "iam.toml: line 4, column 13: user \"app\" policies: policy \"NoSuchPolicy\"",
        ),
        (
            "missing-group",
            "",
            user_toml("app", "/", "app", "pw", "groups = [\"nobody\"]"),
            "iam.toml: line 4, column 11: user \"app\" groups: no group named \"nobody\"",
        ),
        (
            "duplicate-smtp-user",
            "",
            [
                user_toml("a", "/", "same", "pw", ""),
                user_toml("b", "/", "same", "pw", ""),
            ]
            .concat(),
            "iam.toml: line 13, column 12: credentials.username: SMTP user name \"same\" is given twice",
        ),
        (
            "iam-unknown-field",
            "",
            "[[user]]\nname = \"a\"\npasword = \"x\"\n".into(),
            "iam.toml: line 3, column 1: unknown field `pasword`",
        ),
        (
            "listener-host-name",
            "[[listener]]\naddress = \"localhost:4465\"\ntls = \"none\"\n",
            user.clone(),
            "sesgate.toml: line 2, column 11: \"localhost:4465\" is not an IP:port address",
        ),
        (
            "bad-password-hash",
            "",
            "[[user]]\nname = \"app\"\n[[user.credentials]]\nusername = \"app\"\npassword_hash = \"not-a-hash\"\n".into(),
            "iam.toml: line 5, column 17: credentials.password_hash of SMTP user \"app\" is not an argon2 PHC string",
        ),
    ];
    for (name, toml, iam, expected) in cases {
        let dir = config_dir(name, toml, iam);
        let output = check(&dir, false);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", stderr(&output));
        // Errors go to stderr, as every command's; stdout carries the report only.
        assert!(
            stderr(&output).contains("error: ") && stderr(&output).contains(expected),
            "{name}: {} lacks {expected:?}",
            stderr(&output)
        );
        assert!(
            !stdout(&output).lines().any(|l| l.contains("error:")),
            "{name}: an error on stdout: {}",
            stdout(&output)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn check_warns_and_strict_fails() {
    let iam = [
        user_toml("app", "/", "app", "pw", "policies = [\"Scoped\"]"),
        "[[user]]\nname = \"nologin\"\n".to_owned(),
    ]
    .concat();
    let dir = config_dir(
        "warnings",
        "[account]\nidentities = [\"example.com\"]\n",
        &iam,
    );
    std::fs::write(
        dir.join("policies/Scoped.json"),
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"arn:aws:ses:us-east-1:123456789012:identity/typo.example"}}"#,
    )
    .unwrap();
    let output = check(&dir, false);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    for expected in [
        "Scoped Statement[0]: resource arn:aws:ses:us-east-1:123456789012:identity/typo.example names no configured identity",
        "user \"nologin\" has no [[user.credentials]]",
        "AllowDisplayNameMarketing Statement[0]: StringLike ses:FromDisplayName \"Marketing\" has no wildcard",
    ] {
        assert!(text.contains(expected), "{text} lacks {expected:?}");
    }
    assert_eq!(check(&dir, true).status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_on_the_shipped_policies_prints_the_marketing_warning() {
    // From a directory that holds no policies: the embedded default's are compiled in.
    let dir =
        std::env::temp_dir().join(format!("sesgate-operator-anywhere-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .arg("check")
        .current_dir(&dir)
        .env_remove("SESGATE_CONFIG")
        .env("SESGATE_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("(embedded)/AllowDisplayNameMarketing.json: AllowDisplayNameMarketing Statement[0]: StringLike ses:FromDisplayName \"Marketing\" has no wildcard"));
    // check writes nothing, not even the state directory.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_agrees_with_serve_on_the_guide_examples() {
    let sink = sink::Sink::start().await;
    let users: String = GUIDE_POLICIES
        .iter()
        .map(|p| user_toml(p, "/guide/", p, "pw", &format!("policies = [\"{p}\"]")))
        .collect();
    let september = 1_536_969_600; // 2018-09-15
    let server = TestServer::start_setup(Setup {
        users: Some(users),
        upstream: Some(sink.clone()),
        clock: Some(std::sync::Arc::new(move || {
            jiff::Timestamp::from_second(september).unwrap()
        })),
        ..Setup::default()
    })
    .await;
    // The same users and policies, read by the CLI.
    std::fs::write(server.dir.join("sesgate.toml"), "").unwrap();
    let config = server.dir.join("sesgate.toml");
    let transactions: [(&str, &[&str], &str); 4] = [
        (
            "feedback@example.com",
            &["alice@example.com"],
            "Marketing <marketing@example.com>",
        ),
        (
            "bounces@example.com",
            &["alice@example.com", "eve@example.org"],
            "Marketing Team <marketing@example.com>",
        ),
        (
            "feedback@example.com",
            &["x@example.com"],
            "Sales <sales@example.com>",
        ),
        (
            "feedback@example.com",
            &["x@example.com"],
            "marketing@example.com",
        ),
    ];
    let mut compared = 0;
    for policy in GUIDE_POLICIES {
        let mut client = server.connect(STARTTLS).await;
        client.hello(true).await;
        client.login_as(policy, "pw").await;
        for (mail_from, recipients, from) in transactions {
            let served = client
                .transaction(mail_from, recipients, &format!("From: {from}\r\n\r\nx\r\n"))
                .await;
            let mut args = vec![
                "simulate",
                "--config",
                config.to_str().unwrap(),
                "--user",
                policy,
                "--mail-from",
                mail_from,
                "--from",
                from,
                "--time",
                "2018-09-15T00:00:00Z",
                "--output",
                "json",
            ];
            for recipient in recipients {
                args.extend(["--rcpt", recipient]);
            }
            let output = sesgate(&args);
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let simulated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            let reply = simulated["reply"].as_str().unwrap();
            if served.starts_with("250 ") {
                assert_eq!(
                    simulated["decision"], "allowed",
                    "{policy} {from}: served {served}"
                );
            } else {
                assert_eq!(reply, served, "{policy} {from}");
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 32);
    server.stop().await;
}

/// A client of `process` logged in as the test's user `app`.
async fn logged_in(process: &ServeProcess) -> Client {
    let mut client = process.client().await;
    client.login_as("app", "pw").await;
    client
}

const RELOADED: &str = "reloaded users, policies, credentials and certificate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_keeps_the_good_set_when_a_file_breaks() {
    let dir = config_dir(
        "reload",
        "",
        &user_toml("app", "/", "app", "pw", "policies = [\"Current\"]"),
    );
    let allow = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*"}}"#;
    let deny_all = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*"}}"#;
    std::fs::write(dir.join("policies/Current.json"), allow).unwrap();
    let process = ServeProcess::start(&dir, "");
    let message = "From: a@example.com\r\n\r\nx\r\n";
    // A client sends continuously while the configuration is reloaded ten times.
    let port_client = logged_in(&process).await;
    let sender = tokio::spawn(async move {
        let mut client = port_client;
        let mut replies = Vec::new();
        for _ in 0..60 {
            replies.push(
                client
                    .transaction("a@example.com", &["b@example.com"], message)
                    .await,
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        replies
    });
    // Signals sent while a reload runs coalesce into one, so each waits for the previous.
    for reloads in 1..=10 {
        process.signal("HUP");
        process.wait_for_log(RELOADED, reloads).await;
    }
    let replies = sender.await.unwrap();
    assert!(
        replies.iter().all(|r| r.starts_with("250 ")),
        "a reply was not 250: {replies:?}"
    );
    assert_eq!(
        process
            .log()
            .matches("reloaded users, policies, credentials and certificate")
            .count(),
        10
    );
    // A broken policy file: the reload fails with the exact error and the good set stays.
    std::fs::write(dir.join("policies/Current.json"), "{ not json").unwrap();
    process.signal("HUP");
    process
        .wait_for_log("reload failed; keeping the running configuration", 1)
        .await;
    assert!(
        process
            .log()
            .contains("reload failed; keeping the running configuration"),
        "{}",
        process.log()
    );
    assert!(
        process
            .log()
            .contains("Current.json: policy \\\"Current\\\": invalid JSON")
            || process
                .log()
                .contains("Current.json: policy \"Current\": invalid JSON"),
        "{}",
        process.log()
    );
    let mut client = logged_in(&process).await;
    assert!(
        client
            .transaction("a@example.com", &["b@example.com"], message)
            .await
            .starts_with("250 ")
    );
    // A good change takes effect.
    std::fs::write(dir.join("policies/Current.json"), deny_all).unwrap();
    process.signal("HUP");
    process.wait_for_log(RELOADED, 11).await;
    let reply = client
        .transaction("a@example.com", &["b@example.com"], message)
        .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_transaction_in_flight() {
    let dir = config_dir(
        "drain",
        "",
        &user_toml("app", "/", "app", "pw", "policies = [\"AllowSendingOnly\"]"),
    );
    let mut process = ServeProcess::start(&dir, "[limits]\ndrain_timeout_secs = 20\n");
    let mut client = logged_in(&process).await;
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .await
            .starts_with("250")
    );
    assert!(
        client
            .command("RCPT TO:<b@example.com>")
            .await
            .starts_with("250")
    );
    assert!(client.command("DATA").await.starts_with("354"));
    client
        .send(b"From: a@example.com\r\nSubject: in flight\r\n\r\nfirst half\r\n")
        .await;
    let mut idle = logged_in(&process).await;
    process.signal("TERM");
    process
        .wait_for_log("stopping: no new connections", 1)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are refused...
    let mut refused = false;
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", process.port())).is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the listener still accepts");
    // ...an idle session is told to go...
    assert_eq!(idle.reply().await, "421 4.3.2 Service shutting down");
    // ...and the DATA in flight completes and is delivered.
    client.send(b"second half\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.0.0 Ok "));
    assert_eq!(client.reply().await, "421 4.3.2 Service shutting down");
    let status = tokio::task::spawn_blocking(move || {
        let status = process.wait();
        (status, process)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}", status.1.log());
    // Log lines are written in batches: the last ones (the drained transaction's, the final
    // "stopped", logged just before exit) are written out before the process ends.
    let log = status.1.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("stopped"), "{log}");
    assert!(
        log.lines()
            .any(|line| line.contains("transaction session=")
                && line.contains("decision=\"allowed\"")),
        "{log}"
    );
    let outbox: Vec<_> = std::fs::read_dir(dir.join("outbox"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(
        outbox
            .iter()
            .any(|e| e.file_name().to_string_lossy().ends_with(".eml"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn systemd_unit_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/sesgate.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for directive in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "LoadCredential=upstream",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(text.contains(directive), "the unit lacks {directive}");
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/sesgate.toml");
    let config = sesgate::config::Config::load(&example).expect("the production example parses");
    assert!(config.upstream.url.starts_with("smtp://email-smtp."));
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("notice: systemd-analyze is not installed; skipping `systemd-analyze verify`");
        return;
    }
    let output = Command::new("systemd-analyze")
        .args(["verify", unit.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The binary path does not exist on a build machine; everything else must verify.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("/usr/local/bin/sesgate") && !l.trim().is_empty())
        .collect();
    assert!(problems.is_empty(), "{stderr}");
}

/// README "Operations", threads: `serve` builds its runtime with `Runtime::new()`, so
/// `TOKIO_WORKER_THREADS` (a systemd `Environment=` line) sets how many workers run the
/// sessions; unset, one per core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_worker_threads_sets_the_session_workers() {
    let dir = config_dir(
        "threads",
        "",
        &user_toml("app", "/", "app", "pw", "policies = [\"AllowSendingOnly\"]"),
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (env, workers) in [(Some("1"), 1), (Some("3"), 3), (None, cores)] {
        if env.is_none() && std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
            continue; // the process inherits the test's own setting
        }
        let env: Vec<(&str, &str)> = env
            .map(|n| ("TOKIO_WORKER_THREADS", n))
            .into_iter()
            .collect();
        let process = ServeProcess::start_with_env(&dir, "", &env);
        let mut client = logged_in(&process).await;
        // Counted before the message: the file outbox's writes start blocking-pool threads,
        // which tokio names as its workers.
        assert_eq!(process.threads_named("tokio-rt-worker"), workers, "{env:?}");
        assert!(
            client
                .transaction(
                    "a@example.com",
                    &["b@example.com"],
                    "From: a@example.com\r\n\r\nx\r\n"
                )
                .await
                .starts_with("250 "),
            "{env:?}"
        );
        assert!(process.stop().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped() {
    let mut setup = Setup::default();
    setup.config.metrics.listen = "127.0.0.1:0".into();
    let server = TestServer::start_setup(setup).await;
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    let wrong = base64_encode(format!("\0{USER}\0wrong").as_bytes());
    assert!(
        client
            .command(&format!("AUTH PLAIN {wrong}"))
            .await
            .starts_with("535")
    );
    client.login().await;
    assert!(
        client
            .transaction(
                "a@example.com",
                &["b@example.com"],
                "From: a@example.com\r\n\r\nx\r\n"
            )
            .await
            .starts_with("250 ")
    );
    assert!(
        client
            .transaction(
                "a@example.com",
                &["b@example.com"],
                "Subject: no from\r\n\r\nx\r\n"
            )
            .await
            .starts_with("554 ")
    );
    let response = support::metrics::scrape(&server).await;
    for line in [
        "sesgate_transactions_total{decision=\"allowed\"} 1",
        "sesgate_transactions_total{decision=\"ambiguous\"} 1",
        "sesgate_auth_total{result=\"failure\"} 1",
        "sesgate_auth_total{result=\"success\"} 1",
        "sesgate_upstream_total{result=\"ok\"} 1",
        "sesgate_upstream_latency_seconds_count 1",
        "sesgate_decision_latency_seconds_count 2",
        "sesgate_open_connections 1",
    ] {
        assert!(
            response.lines().any(|l| l == line),
            "missing {line:?} in\n{response}"
        );
    }
    server.stop().await;
}

/// Issue 14 §11: `simulate` on an unknown user is an error (exit 2), not a 451 transaction;
/// its decisions are spelled as the transaction log spells them.
#[test]
fn simulate_unknown_user_is_an_error_and_decisions_are_spelled_as_in_the_log() {
    let dir = config_dir(
        "simulate-spelling",
        "",
        &user_toml(
            "marketing",
            "/",
            "AKIASIMULATESPELL001",
            "pw",
            "policies = [\"AllowFromMarketingAddress\"]",
        ),
    );
    let config = dir.join("sesgate.toml");
    let run = |user: &str, from: &str| {
        sesgate(&[
            "simulate",
            "--config",
            config.to_str().unwrap(),
            "--user",
            user,
            "--from",
            from,
            "--rcpt",
            "x@example.com",
            "--output",
            "json",
        ])
    };
    let unknown = run("nosuch", "marketing@example.com");
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(unknown.stdout.is_empty(), "{}", stdout(&unknown));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("\"nosuch\"") && stderr.contains("no such"),
        "{stderr}"
    );

    let denied = run("marketing", "sales@example.com");
    assert!(denied.status.success(), "{denied:?}");
    let json: serde_json::Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(json["decision"], "implicit-deny", "{json}");
    // The SMTP user name resolves to the same IAM user.
    let allowed = run("AKIASIMULATESPELL001", "marketing@example.com");
    let json: serde_json::Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(json["decision"], "allowed", "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 14 §11: `smtp-password` refuses a region that is not an AWS region name, on stderr,
/// before reading the secret.
#[test]
fn smtp_password_refuses_a_region_that_is_not_a_region_name() {
    use std::io::Write;
    for (region, ok) in [
        ("us-east1", false),
        ("eu-west-1a", false),
        ("eu-west-1", true),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sesgate"))
            .args(["smtp-password", "--region", region])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n");
        let output = child.wait_with_output().unwrap();
        if ok {
            assert!(output.status.success(), "{output:?}");
            assert!(!output.stdout.is_empty());
        } else {
            assert_eq!(output.status.code(), Some(2), "{region}: {output:?}");
            assert!(output.stdout.is_empty(), "{output:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("not an AWS region name"), "{stderr}");
        }
    }
}

/// Issue 14 §11: `hash-password` at a terminal prompts on stderr and does not echo what is
/// typed (a pseudo-terminal via Python's `pty`); the hash it prints verifies that password.
#[test]
fn hash_password_at_a_terminal_prompts_without_echo() {
    const TYPED: &str = "Typed-Secret-4711";
    let script = r#"
import os, pty, sys, select, signal
signal.alarm(20)  # fail, never hang, if the prompt or the hash does not come
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "hash-password"])
out = b""
while b"not echoed" not in out:
    out += os.read(fd, 1024)
os.write(fd, sys.argv[2].encode() + b"\n")
while True:
    r, _, _ = select.select([fd], [], [], 10)
    if not r:
        break
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let output = Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_sesgate"), TYPED])
        .output()
        .expect("python3 runs");
    let terminal = stdout(&output);
    assert!(output.status.success(), "{terminal} {output:?}");
    assert!(terminal.contains("Password (not echoed):"), "{terminal}");
    assert!(
        !terminal.contains(TYPED),
        "the password was echoed: {terminal}"
    );
    let hash = terminal
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash in {terminal}"));
    use argon2::password_hash::PasswordVerifier;
    let parsed = argon2::password_hash::phc::PasswordHash::new(hash).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(TYPED.as_bytes(), &parsed)
            .is_ok()
    );
}

/// Issue 14 §11: the README's examples never put a secret on a command line (where shell
/// history and process lists keep it), and its Postfix snippet verifies the gateway's
/// certificate before sending the SASL password.
#[test]
fn readme_keeps_secrets_off_command_lines_and_postfix_verifies_the_gateway() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for line in readme.lines() {
        let command = line.trim_start().trim_start_matches("$ ");
        assert!(
            !(command.starts_with("echo ") && command.contains('|')),
            "a secret echoed into a pipe: {line}"
        );
        assert!(
            !command.contains("<<<"),
            "a secret in a here-string: {line}"
        );
        if let Some(at) = command.find("--auth-password ") {
            // Only the published demo password may appear (it is no secret).
            assert!(
                command[at..].starts_with("--auth-password sesgate-demo"),
                "{line}"
            );
        }
    }
    assert!(readme.contains("smtp_tls_security_level = secure"));
    assert!(!readme.contains("smtp_tls_security_level = encrypt"));
}

#[test]
fn check_errors_go_to_stderr_and_the_report_to_stdout() {
    // An error: stderr has it, stdout only the summary.
    let broken = config_dir(
        "streams-error",
        "",
        &user_toml("app", "/", "app", "pw", "groups = [\"nobody\"]"),
    );
    let output = check(&broken, false);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output)
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains("no group named \"nobody\"")),
        "{}",
        stderr(&output)
    );
    assert!(
        !stdout(&output).lines().any(|l| l.starts_with("error")),
        "an error line on stdout: {}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains("1 error(s), 0 warning(s)"),
        "{}",
        stdout(&output)
    );
    // Warnings are the report, on stdout, as a linter's; stderr names the configuration only.
    let warned = config_dir(
        "streams-warning",
        "",
        &[
            user_toml("app", "/", "app", "pw", "policies = [\"AllowSendingOnly\"]"),
            "[[user]]\nname = \"nologin\"\n".to_owned(),
        ]
        .concat(),
    );
    let output = check(&warned, false);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("warning: ")
            && stdout(&output).contains("\"nologin\" has no [[user.credentials]]"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output)
            .lines()
            .all(|l| l.starts_with("configuration: ")),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(&broken);
    let _ = std::fs::remove_dir_all(&warned);
}
