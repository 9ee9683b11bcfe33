//! Rolling out enforcement with the real binary: report-only users logged and relayed, a
//! shadow set's disagreements logged, reloaded with SIGHUP and promoted, and a decision log
//! replayed against another set (exit 0 no change, 1 changes).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::serve::ServeProcess;

const OTHER: &str = "From: a@example.com\r\n\r\nx\r\n";
const DENY_OTHERS: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"OnlyMarketing","Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringNotEquals":{"ses:FromAddress":"marketing@example.com"}}}]}"#;

fn iam_toml(device_policy: &str) -> String {
    format!(
        r#"[[user]]
name = "device"
networks = ["127.0.0.7/32"]
policies = ["{device_policy}"]

[[user]]
name = "legacy"
networks = ["127.0.0.8/32"]
policies = ["AllowSendingOnly", "DenyOthers"]
enforce = false
"#
    )
}

fn write_set(dir: &Path, device_policy: &str) {
    std::fs::create_dir_all(dir).unwrap();
    support::copy_guide_policies(dir);
    std::fs::write(dir.join("DenyOthers.json"), DENY_OTHERS).unwrap();
    std::fs::write(dir.join("iam.toml"), iam_toml(device_policy)).unwrap();
}

/// Live and shadow policy sets, a decision log, an outbox, and a listener that identifies
/// users by their source network.
fn config(port: u16) -> String {
    format!(
        "hostname = \"gw.test\"\n[iam]\ndir = \"policies\"\nshadow_dir = \"policies.next\"\n[log]\ndecisions = \"decisions.jsonl\"\n[upstream]\nurl = \"file://outbox\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\nauth = \"optional\"\n"
    )
}

async fn send_from(serve: &ServeProcess, source: &str) -> String {
    let mut client = serve.client_from(source).await;
    client
        .transaction("a@example.com", &["b@example.com"], OTHER)
        .await
}

/// Another `sesgate` command, run in the served directory.
fn sesgate(serve: &ServeProcess, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .current_dir(serve.dir())
        .args(args)
        .output()
        .unwrap()
}

const RELOADED: &str = "reloaded users, policies, credentials and certificate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_only_shadow_replay_and_promote() {
    let dir = std::env::temp_dir().join(format!("sesgate-rollout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_set(&dir.join("policies"), "AllowSendingOnly");
    write_set(&dir.join("policies.next"), "AllowFromMarketingAddress");
    let serve = ServeProcess::start_with(&dir, &[], None, config);
    serve.wait_for_log("sesgate ready", 1).await;
    let startup = serve.log();
    assert!(
        startup.contains("report-only") && startup.contains("users=legacy"),
        "{startup}"
    );

    // Report-only: decided, logged as a refusal with enforced=false, relayed anyway.
    assert!(send_from(&serve, "127.0.0.8").await.starts_with("250"));
    serve.wait_for_log("enforced=false", 1).await;
    let log = serve.log();
    let line = log.lines().find(|l| l.contains("enforced=false")).unwrap();
    assert!(
        line.contains("decision=\"explicit-deny\"")
            && line.contains("user=legacy")
            && line.contains("identified_by=\"network\"")
            && line.contains("OnlyMarketing"),
        "{line}"
    );

    // Shadow: the live set allows, the shadow set would refuse.
    assert!(send_from(&serve, "127.0.0.7").await.starts_with("250"));
    serve.wait_for_log("shadow disagreement", 1).await;
    let log = serve.log();
    let line = log
        .lines()
        .find(|l| l.contains("shadow disagreement"))
        .unwrap();
    assert!(
        line.contains("user=device")
            && line.contains("direction=\"newly-refused\"")
            && line.contains("live_decision=\"allowed\"")
            && line.contains("shadow_decision=\"implicit-deny\""),
        "{line}"
    );

    // Replay of the recorded log: against the shadow set exactly the device's transaction
    // changes; against the live set nothing does.
    for _ in 0..200 {
        let lines = std::fs::read_to_string(dir.join("decisions.jsonl")).unwrap_or_default();
        if lines.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let replay = sesgate(
        &serve,
        &[
            "replay",
            "--config",
            "sesgate.toml",
            "--policies",
            "policies.next",
            "decisions.jsonl",
        ],
    );
    let out = String::from_utf8_lossy(&replay.stdout);
    assert_eq!(replay.status.code(), Some(1), "{out}");
    assert!(
        out.starts_with("replayed 2 transactions (0 refused before policy, not re-decided): 1 would change (1 newly refused, 0 newly allowed)"),
        "{out}"
    );
    assert!(out.contains("user device: 1 newly-refused"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" session ")).count(),
        1,
        "{out}"
    );
    assert!(
        out.contains("user device newly-refused: allowed -> implicit-deny"),
        "{out}"
    );
    let same = sesgate(
        &serve,
        &[
            "replay",
            "--config",
            "sesgate.toml",
            "--policies",
            "policies",
            "decisions.jsonl",
        ],
    );
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );

    // SIGHUP reloads the shadow set: once it agrees, no new disagreement.
    std::fs::write(
        dir.join("policies.next/iam.toml"),
        iam_toml("AllowSendingOnly"),
    )
    .unwrap();
    serve.signal("HUP");
    serve.wait_for_log(RELOADED, 1).await;
    assert!(send_from(&serve, "127.0.0.7").await.starts_with("250"));
    serve.wait_for_log("transaction", 3).await;

    // Tighten the shadow again, promote it, SIGHUP: now the live set refuses.
    std::fs::write(
        dir.join("policies.next/iam.toml"),
        iam_toml("AllowFromMarketingAddress"),
    )
    .unwrap();
    let promoted = sesgate(&serve, &["promote", "--config", "sesgate.toml"]);
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    assert!(dir.join("policies.previous/iam.toml").exists());
    serve.signal("HUP");
    serve.wait_for_log(RELOADED, 2).await;
    let refused = send_from(&serve, "127.0.0.7").await;
    assert!(refused.starts_with("554 5.7.1 Access denied"), "{refused}");
    assert_eq!(serve.log().matches("shadow disagreement").count(), 1);
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_reports_principals_without_auth_and_their_listeners() {
    let dir = std::env::temp_dir().join(format!("sesgate-rollout-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_set(&dir.join("policies"), "AllowSendingOnly");
    let mut iam = iam_toml("AllowSendingOnly");
    iam.push_str(&format!(
        "\n[[user]]\nname = \"scanner\"\nclient_certificates = [\"sha256:{}\"]\npolicies = [\"AllowSendingOnly\"]\n",
        "ab".repeat(32)
    ));
    std::fs::write(dir.join("policies/iam.toml"), iam).unwrap();
    let check = |listeners: &str| {
        std::fs::write(
            dir.join("sesgate.toml"),
            format!("hostname = \"gw.test\"\n[upstream]\nurl = \"file://outbox\"\n{listeners}"),
        )
        .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_sesgate"))
            .current_dir(&dir)
            .args(["check", "--config", "sesgate.toml"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let out = check(
        "[[listener]]\naddress = \"127.0.0.1:2587\"\n[[listener]]\naddress = \"127.0.0.1:2525\"\ntls = \"none\"\nauth = \"none\"\n",
    );
    assert!(
        out.contains("note: user \"device\" sends without AUTH from 127.0.0.7/32 through 127.0.0.1:2525 (auth = \"none\")"),
        "{out}"
    );
    assert!(out.contains("note: report-only (enforce = false"), "{out}");
    assert!(
        out.contains("note: report-only") && out.contains(": legacy"),
        "{out}"
    );
    assert!(
        out.contains("warning: user \"scanner\" has client_certificates but no listener"),
        "{out}"
    );
    let out = check("[[listener]]\naddress = \"127.0.0.1:2587\"\n");
    assert!(
        out.contains("warning: user \"device\" has networks 127.0.0.7/32 but every listener has auth = \"required\""),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
