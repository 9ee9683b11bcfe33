//! Postfix's `smtp-source` (no AUTH) drives load through sesgate from a bound network to
//! Postfix's `smtp-sink`: every message must arrive. CI runs 500 messages;
//! `SESGATE_SMTP_SOURCE_MESSAGES=5000` is the full run (benches/README.md).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sesgate::config::Listener;
use sesgate::smtp::{AuthMode, TlsMode};
use support::{Setup, TestServer};

/// A Postfix test tool, from PATH or /usr/sbin (where Debian's `postfix` puts them).
fn postfix_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("SESGATE_REQUIRE_INTEROP").is_none(),
            "{name} is required (SESGATE_REQUIRE_INTEROP is set): install the postfix package"
        );
        eprintln!("notice: {name} is not installed (Debian package postfix); skipping");
    }
    found
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_source_without_auth_from_a_bound_network_delivers_everything() {
    let (Some(source), Some(sink)) = (postfix_tool("smtp-source"), postfix_tool("smtp-sink"))
    else {
        return;
    };
    let messages: usize = std::env::var("SESGATE_SMTP_SOURCE_MESSAGES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(500);
    let sink_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dump = std::env::temp_dir().join(format!("sesgate-smtp-sink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dump);
    std::fs::create_dir_all(&dump).unwrap();
    // smtp-sink drops root for this user (it refuses to run as root otherwise).
    let _ = Command::new("chmod").arg("777").arg(&dump).status();
    let mut sink_args: Vec<String> = Vec::new();
    if nix_is_root() {
        sink_args.extend(["-u".into(), "nobody".into()]);
    }
    sink_args.extend([
        "-d".into(),
        format!("{}/%Y%m%d%H/%M.", dump.display()),
        format!("127.0.0.1:{sink_port}"),
        "256".into(),
    ]);
    let mut sink = Command::new(&sink)
        .args(&sink_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", sink_port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut setup = Setup {
        users: Some(
            "[[user]]\nname = \"load-generator\"\nnetworks = [\"127.0.0.1/32\"]\npolicies = [\"AllowSendingOnly\"]\n"
                .into(),
        ),
        extra_listeners: vec![Listener {
            address: "127.0.0.1:0".parse().unwrap(),
            tls: TlsMode::None,
            auth: AuthMode::None,
            ..Listener::default()
        }],
        ..Setup::default()
    };
    setup.config.upstream.url = format!("smtp://127.0.0.1:{sink_port}");
    let server = TestServer::start_setup(setup).await;
    let port = server.port(4);
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(source)
            .args([
                "-s",
                "20",
                "-m",
                &messages.to_string(),
                "-l",
                "10240",
                "-M",
                "client.test",
                "-f",
                "sender@example.com",
                "-t",
                "rcpt@example.com",
                &format!("127.0.0.1:{port}"),
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "smtp-source failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut delivered = 0;
    for _ in 0..500 {
        delivered = count_files(&dump);
        if delivered >= messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "smtp-source: {messages} messages of 10 KiB over 20 sessions in {:.2} s ({:.0} msg/s)",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64()
    );
    let _ = sink.kill();
    let _ = sink.wait();
    let _ = std::fs::remove_dir_all(&dump);
    server.stop().await;
    assert_eq!(delivered, messages, "every message reaches smtp-sink");
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
