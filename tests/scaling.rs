//! Issue 12, several instances: two sesgate instances behind a real HAProxy (TCP mode, PROXY
//! protocol v2, health checks on `/ready`) sharing one real Redis, configured exactly as
//! `docs/scaling.md` says (its two configuration blocks are read from the file). Shows that
//! `aws:SourceIp` is the client's address, not HAProxy's, and that the daily quota holds across
//! both instances. Skipped with a notice when haproxy or redis-server is absent, unless
//! SESGATE_REQUIRE_INTEROP=1.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sesgate::config::Config;
use support::redis::{RedisServer, free_port};
use support::*;

const DAILY: &str = "454 4.7.0 Throttling failure: Daily message quota exceeded";
const MESSAGE: &str = "From: a@example.com\r\nSubject: scaling\r\n\r\nHello.\r\n";
/// Only clients from 127.0.0.2 may send: a condition on aws:SourceIp.
const FROM_TWO_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:SendRawEmail","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.2/32"}}}]}"#;

/// The fenced block of `language` in `docs/scaling.md`.
fn doc_block(language: &str) -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scaling.md"))
            .unwrap();
    let fence = format!("```{language}\n");
    let start = doc.find(&fence).expect("the block is in docs/scaling.md") + fence.len();
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_owned()
}

/// HAProxy, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One instance, from the documented block with its ports (and Redis's) put in.
async fn instance(
    dir: &Path,
    smtp: u16,
    metrics: u16,
    redis: u16,
    certificate: Option<&Path>,
) -> sesgate::gateway::Running {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/FromTwoOnly.json"), FROM_TWO_ONLY).unwrap();
    std::fs::write(
        dir.join("policies/iam.toml"),
        user_toml(
            "test-app",
            "/apps/",
            USER,
            PASSWORD,
            "policies = [\"FromTwoOnly\"]",
        ),
    )
    .unwrap();
    let documented = doc_block("toml")
        .replace("127.0.0.1:2601", &format!("127.0.0.1:{smtp}"))
        .replace("127.0.0.1:9601", &format!("127.0.0.1:{metrics}"))
        .replace("127.0.0.1:6379", &format!("127.0.0.1:{redis}"))
        .replace("max_24_hour_send = 50000", "max_24_hour_send = 4");
    let mut text =
        format!("hostname = \"gw.test\"\n[upstream]\nurl = \"file://outbox\"\n{documented}");
    if let Some(certificate) = certificate {
        // Every instance behind one name presents the same certificate.
        text.push_str(&format!(
            "[tls]\ncertificate = {:?}\nprivate_key = {:?}\n",
            certificate.join("sesgate.crt"),
            certificate.join("sesgate.key")
        ));
    }
    let file = dir.join("sesgate.toml");
    std::fs::write(&file, &text).unwrap();
    let config = Config::load(&file).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.listeners[0].proxy_protocol_from.len(), 1);
    sesgate::gateway::start(&config).await.unwrap()
}

fn outbox(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(dir.join("outbox"))
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let path = e.ok()?.path();
                    (path.extension()? == "json")
                        .then(|| serde_json::from_slice(&std::fs::read(path).ok()?).ok())?
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One transaction through HAProxy from the loopback address `source`.
async fn through(frontend: u16, source: &str, certificate: &[u8]) -> String {
    let stream = connect_from(source, frontend).await;
    let mut client = Client::new(Box::new(stream), certificate.to_vec());
    client.hello(true).await;
    client.login().await;
    client
        .transaction("a@example.com", &["b@example.com"], MESSAGE)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_with_proxy_v2_in_front_of_two_instances() {
    if !tool_available("haproxy", &["-v"]) {
        return;
    }
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let root: PathBuf =
        std::env::temp_dir().join(format!("sesgate-scaling-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (one, two) = (root.join("one"), root.join("two"));
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let (smtp1, smtp2, metrics1, metrics2, frontend) =
        (ports[0], ports[1], ports[2], ports[3], ports[4]);
    let first = instance(&one, smtp1, metrics1, redis.port, None).await;
    let second = instance(&two, smtp2, metrics2, redis.port, Some(&one.join("certs"))).await;
    let certificate = std::fs::read(one.join("certs/sesgate.crt")).unwrap();

    let haproxy_cfg = doc_block("haproxy")
        .replace("127.0.0.1:2525", &format!("127.0.0.1:{frontend}"))
        .replace("127.0.0.1:2601", &format!("127.0.0.1:{smtp1}"))
        .replace("127.0.0.1:2602", &format!("127.0.0.1:{smtp2}"))
        .replace("port 9601", &format!("port {metrics1}"))
        .replace("port 9602", &format!("port {metrics2}"));
    let cfg = root.join("haproxy.cfg");
    std::fs::write(&cfg, &haproxy_cfg).unwrap();
    let log = std::fs::File::create(root.join("haproxy.log")).unwrap();
    let _haproxy = Haproxy(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("haproxy starts"),
    );
    // Up once a connection through it gets sesgate's greeting.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let greeted = async {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", frontend))
                .await
                .ok()?;
            let mut client = Client::new(Box::new(stream), certificate.clone());
            let greeting = tokio::time::timeout(Duration::from_secs(2), client.reply())
                .await
                .ok()?;
            greeting.starts_with("220 gw.test").then_some(())
        };
        if greeted.await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no greeting through haproxy: {}",
            std::fs::read_to_string(root.join("haproxy.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // aws:SourceIp is the client's address from the PROXY header: 127.0.0.3 is refused by the
    // policy (on whichever instance), and the refusal consumes no quota.
    for _ in 0..2 {
        let reply = through(frontend, "127.0.0.3", &certificate).await;
        assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    }
    // 127.0.0.2 is allowed, until the shared daily quota of 4 is used, across both instances.
    let mut replies = Vec::new();
    for _ in 0..6 {
        replies.push(through(frontend, "127.0.0.2", &certificate).await);
    }
    let relayed = replies.iter().filter(|r| r.starts_with("250 ")).count();
    let refused = replies.iter().filter(|r| *r == DAILY).count();
    assert_eq!((relayed, refused), (4, 2), "{replies:?}");
    let (stored1, stored2) = (outbox(&one), outbox(&two));
    assert_eq!(stored1.len() + stored2.len(), 4);
    assert!(
        !stored1.is_empty() && !stored2.is_empty(),
        "round robin reaches both instances: {} and {}",
        stored1.len(),
        stored2.len()
    );
    for envelope in stored1.iter().chain(&stored2) {
        assert_eq!(envelope["client"], "127.0.0.2", "{envelope}");
    }
    // A connection straight to an instance, without HAProxy's header, is refused.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", smtp1))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"EHLO x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(15))
            .await
            .is_some()
    );

    first.stop().await;
    second.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}
