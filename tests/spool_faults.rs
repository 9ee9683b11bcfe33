//! The spool under faults (issue 13): the sesgate binary with a `[spool]`, several client
//! threads sending numbered messages, the upstream sink stopped and restarted, and sesgate
//! itself killed with SIGKILL and restarted several times. Afterwards every message that got a
//! 250 was delivered at least once (acked ⊆ delivered), nothing was delivered that was never
//! sent (delivered ⊆ sent), and nothing that got an explicit refusal was delivered. A message
//! whose 250 was lost with the kill may legitimately be delivered: it is in `sent` only.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::serve::{ServeProcess, policy_dir};
use support::sink::{self, Sink};
use support::*;

const CLIENTS: usize = 4;
const ROUNDS: usize = 4;

/// What the clients saw, by message number.
#[derive(Default)]
struct Seen {
    /// The whole message was sent (the final dot written).
    sent: BTreeSet<usize>,
    /// Answered 250.
    acked: BTreeSet<usize>,
    /// Answered with an explicit refusal (4xx/5xx) to the end of data.
    refused: BTreeSet<usize>,
}

/// A blocking SMTP client session: greeting, EHLO, AUTH PLAIN, then messages until `stop` or
/// an I/O error (sesgate killed).
fn session(
    port: u16,
    next: &AtomicUsize,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut reply = || -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return Ok(all);
            }
        }
    };
    let expect = |text: String, code: &str| {
        if text.starts_with(code) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("expected {code}: {text}")))
        }
    };
    expect(reply()?, "220")?;
    writer.write_all(b"EHLO client.test\r\n")?;
    expect(reply()?, "250")?;
    let plain = base64_encode(format!("\0{USER}\0{PASSWORD}").as_bytes());
    writer.write_all(format!("AUTH PLAIN {plain}\r\n").as_bytes())?;
    expect(reply()?, "235")?;
    while !stop.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        writer.write_all(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")?;
        expect(reply()?, "250")?;
        expect(reply()?, "250")?;
        expect(reply()?, "354")?;
        writer.write_all(
            format!("From: a@example.com\r\nSubject: fault-{n}\r\n\r\nmessage {n}\r\n.\r\n")
                .as_bytes(),
        )?;
        seen.lock().unwrap().sent.insert(n);
        let answer = reply()?;
        let mut seen = seen.lock().unwrap();
        if answer.starts_with("250 ") {
            seen.acked.insert(n);
        } else {
            seen.refused.insert(n);
        }
    }
    Ok(())
}

fn number(data: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(data)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: fault-")?.trim().parse().ok())
}

/// The policies, the test user and the upstream's password; `config` is the rest.
fn config_dir() -> PathBuf {
    let dir = policy_dir(
        "spool-faults",
        &user_toml(
            "test-app",
            "/apps/",
            USER,
            PASSWORD,
            "policies = [\"AllowSendingOnly\"]",
        ),
    );
    std::fs::write(dir.join("sink-password"), sink::SINK_PASSWORD).unwrap();
    dir
}

/// A spool with a one-second retry, relaying to the sink on `sink_port`.
fn config(port: u16, sink_port: u16) -> String {
    format!(
        r#"hostname = "gw.test"
[iam]
dir = "policies"
[[listener]]
address = "127.0.0.1:{port}"
tls = "none"
allow_plaintext_auth = true
[upstream]
url = "smtp://127.0.0.1:{sink_port}"
username = "{}"
password_file = "sink-password"
timeout_secs = 5
[spool]
dir = "spool"
retry_schedule_secs = [1]
"#,
        sink::SINK_USER
    )
}

#[test]
fn acknowledged_mail_survives_upstream_outages_and_sigkill() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut sink = runtime.block_on(Sink::start_with(true, true));
    let dir = config_dir();
    let started = Instant::now();
    let sink_port = sink.port;
    let mut gateway = ServeProcess::start_with(&dir, &[], None, |port| config(port, sink_port));
    let port = gateway.port();

    let next = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, seen, stop) = (Arc::clone(&next), Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // An error is sesgate going away mid-session: connect again.
                    if session(port, &next, &seen, &stop).is_err() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();

    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(1200));
        // The upstream goes away every other round and comes back on the next.
        if round % 2 == 0 {
            sink.stop();
        } else {
            sink = runtime.block_on(sink.restart());
        }
        std::thread::sleep(Duration::from_millis(800));
        gateway.restart();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let seen = seen.lock().unwrap();

    // Everything acknowledged reaches the sink (the spool drains).
    let delivered = || -> (BTreeSet<usize>, usize) {
        let accepted = sink.accepted();
        let numbers: Vec<usize> = accepted.iter().filter_map(|a| number(&a.data)).collect();
        (numbers.iter().copied().collect(), numbers.len())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.acked.is_subset(&delivered().0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (delivered, copies) = delivered();
    gateway.kill();
    println!(
        "spool faults: {} sent, {} acknowledged, {} refused, {} delivered ({} copies), {} SIGKILLs, {:.1} s",
        seen.sent.len(),
        seen.acked.len(),
        seen.refused.len(),
        delivered.len(),
        copies,
        ROUNDS,
        started.elapsed().as_secs_f64()
    );
    let lost: Vec<_> = seen.acked.difference(&delivered).collect();
    let log = gateway.log();
    let tail: String = log
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}\n{tail}"
    );
    let invented: Vec<_> = delivered.difference(&seen.sent).collect();
    assert!(
        invented.is_empty(),
        "delivered but never sent: {invented:?}"
    );
    let refused_delivered: Vec<_> = seen.refused.intersection(&delivered).collect();
    assert!(
        refused_delivered.is_empty(),
        "refused yet delivered: {refused_delivered:?}"
    );
    assert!(
        seen.acked.len() >= 20,
        "too little load to mean anything: {}",
        seen.acked.len()
    );
    drop(seen);
    let _ = std::fs::remove_dir_all(&dir);
}
