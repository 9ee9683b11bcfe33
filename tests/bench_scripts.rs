//! Short bounded runs of the load scripts under `benches/` (issue 15), so that they keep
//! working: the anchor bench and issue 15's own Python generator (`loadgen.py`, AUTH PLAIN)
//! through the debug binary (direct and through sesgate; the Postfix relay path needs root
//! and is left to the full run), and the concurrent-connections script with a few hundred
//! connections. The figures of these runs mean nothing.

use std::process::Command;

fn available(tool: &str) -> bool {
    let found = Command::new("sh")
        .args([
            "-c",
            &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("SESGATE_REQUIRE_INTEROP").is_none(),
            "{tool} is required (SESGATE_REQUIRE_INTEROP is set)"
        );
        eprintln!("notice: {tool} is not installed; skipping");
    }
    found
}

fn script(args: &[&str]) -> String {
    let output = Command::new("python3")
        .args(args)
        .args(["--binary", env!("CARGO_BIN_EXE_sesgate")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The script printed `rows` result rows (" msgs "), each with all `messages` delivered.
fn assert_rows_all_delivered(out: &str, rows: usize, messages: usize) {
    let found: Vec<&str> = out.lines().filter(|l| l.contains(" msgs ")).collect();
    assert_eq!(found.len(), rows, "{out}");
    let delivered = format!(" {messages}/{messages} msgs");
    for row in found {
        assert!(row.contains(&delivered), "{row}");
    }
}

#[test]
fn anchor_script_relays_every_message() {
    if !available("python3") || !available("smtp-source") || !available("smtp-sink") {
        return;
    }
    let out = script(&[
        "benches/anchor.py",
        "--messages",
        "40",
        "--per-session",
        "1,2",
        "--sessions",
        "4",
        "--paths",
        "direct,sesgate",
        "--rounds",
        "2",
        "--settle",
        "0",
    ]);
    assert_rows_all_delivered(&out, 8, 40);
    assert!(out.contains("sesgate/direct throughput"), "{out}");
    assert!(
        out.contains("(rounds: "),
        "each round's ratio is listed: {out}"
    );
}

#[test]
fn loadgen_script_relays_every_message_with_auth() {
    if !available("python3") || !available("smtp-sink") {
        return;
    }
    let out = script(&[
        "benches/loadgen.py",
        "--messages",
        "24",
        "--per-connection",
        "1,3",
        "--clients",
        "4",
        "--rounds",
        "2",
    ]);
    assert_rows_all_delivered(&out, 8, 24);
    assert!(!out.contains("client failures"), "{out}");
    assert!(out.contains("sesgate/direct throughput"), "{out}");
}

#[test]
fn connections_script_holds_idle_and_mid_data_connections() {
    if !available("python3") || !available("smtp-sink") {
        return;
    }
    let out = script(&["benches/connections.py", "--connections", "200"]);
    assert!(
        out.contains("200 greeted, 100 idle, 100 of 100 mid-DATA"),
        "{out}"
    );
    assert!(
        out.contains("a new client while they are held: b'220 "),
        "{out}"
    );
}

/// strace installed and allowed to trace here (a container may forbid ptrace).
fn strace_works() -> bool {
    if !available("strace") {
        return false;
    }
    let works = Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        assert!(
            std::env::var_os("SESGATE_REQUIRE_INTEROP").is_none(),
            "strace cannot trace here (SESGATE_REQUIRE_INTEROP is set)"
        );
        eprintln!("notice: strace cannot trace here; skipping");
    }
    works
}

#[test]
fn syscalls_script_counts_per_message_and_per_thread() {
    if !available("python3") || !available("smtp-source") || !available("smtp-sink") {
        return;
    }
    if !strace_works() {
        return;
    }
    let bounded = [
        "benches/syscalls.py",
        "--messages",
        "40",
        "--per-session",
        "4",
        "--sessions",
        "5",
    ];
    let out = script(&[&bounded[..], &["--client", "pipelined-across"]].concat());
    assert!(out.contains("0 not accepted"), "{out}");
    assert!(
        out.contains("40 messages relayed, 4 per session, pipelined-across:"),
        "{out}"
    );
    assert!(out.contains(" per message"), "{out}");
    let out = script(&[&bounded[..], &["--client", "pipelined", "--threads"]].concat());
    assert!(
        out.lines()
            .any(|l| l.starts_with("tokio-rt") && l.contains(" recvfrom")),
        "{out}"
    );
    assert!(out.contains("40 messages relayed"), "{out}");
}
