//! Relay throughput (SPEC §12): one load generator sends the same load straight to an SMTP sink
//! and through sesgate (a separate release process) to the same sink, in the same run, and
//! prints messages per second, latency percentiles, the ratio, and sesgate's CPU time per
//! relayed message. Loopback only; every loop is bounded by a message count.
//!
//! `cargo bench --bench relay` runs the default matrix (32 clients, 10 KB messages, STARTTLS
//! and AUTH on every connection, 1 and 100 messages per connection). Environment overrides:
//! `RELAY_CLIENTS`, `RELAY_SIZE`, `RELAY_MESSAGES` (total per run), `RELAY_PER_CONNECTION`
//! (comma-separated), `RELAY_TLS` (`0` for plaintext).

#[path = "../tests/support/sink.rs"]
#[allow(dead_code)]
mod sink;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sesgate::credentials::hash_password;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The same credential opens the sink and sesgate, so both paths do the same AUTH.
const BENCH_USER: &str = sink::SINK_USER;
const BENCH_PASSWORD: &str = sink::SINK_PASSWORD;

#[derive(Clone, Copy)]
struct Load {
    clients: usize,
    per_connection: usize,
    messages: usize,
    size: usize,
    tls: bool,
}

struct Outcome {
    messages: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
    }
}

/// One SMTP client connection, reading replies line by line.
struct Conn {
    io: BufReader<Box<dyn Stream>>,
}

impl Conn {
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.io.read_line(&mut line).await.unwrap() > 0,
                "server closed: {all}"
            );
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }
    async fn command(&mut self, line: &str) -> String {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

async fn open(port: u16, load: Load, roots: Arc<rustls::ClientConfig>) -> Conn {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut conn = Conn {
        io: BufReader::new(Box::new(stream) as Box<dyn Stream>),
    };
    assert!(conn.reply().await.starts_with("220"));
    assert!(conn.command("EHLO load.test").await.starts_with("250"));
    if load.tls {
        assert!(conn.command("STARTTLS").await.starts_with("220"));
        let plain = conn.io.into_inner();
        let tls = tokio_rustls::TlsConnector::from(roots)
            .connect(ServerName::try_from("localhost").unwrap(), plain)
            .await
            .unwrap();
        conn = Conn {
            io: BufReader::new(Box::new(tls) as Box<dyn Stream>),
        };
        assert!(conn.command("EHLO load.test").await.starts_with("250"));
    }
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("\0{BENCH_USER}\0{BENCH_PASSWORD}"));
    let reply = conn.command(&format!("AUTH PLAIN {credentials}")).await;
    assert!(reply.starts_with("235"), "{reply}");
    conn
}

fn message(size: usize) -> Vec<u8> {
    let mut message =
        b"From: Load <load@example.com>\r\nTo: sink@example.com\r\nSubject: load\r\n\r\n".to_vec();
    while message.len() + 78 <= size {
        message.extend_from_slice(&[b'x'; 76]);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b".\r\n");
    message
}

async fn run(port: u16, load: Load, roots: Arc<rustls::ClientConfig>) -> Outcome {
    let body = Arc::new(message(load.size));
    let connections_per_client = (load.messages / load.clients / load.per_connection).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..load.clients {
        let (roots, body) = (Arc::clone(&roots), Arc::clone(&body));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..connections_per_client {
                let mut conn = open(port, load, Arc::clone(&roots)).await;
                for _ in 0..load.per_connection {
                    let begin = Instant::now();
                    conn.io.get_mut().write_all(b"MAIL FROM:<load@example.com>\r\nRCPT TO:<sink@example.com>\r\nDATA\r\n").await.unwrap();
                    for _ in 0..3 {
                        let reply = conn.reply().await;
                        assert!(reply.starts_with('2') || reply.starts_with('3'), "{reply}");
                    }
                    conn.io.get_mut().write_all(&body).await.unwrap();
                    let reply = conn.reply().await;
                    assert!(reply.starts_with("250"), "{reply}");
                    latencies.push(begin.elapsed());
                }
                conn.command("QUIT").await;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Outcome {
        messages: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

/// user+system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let per_second: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0);
    ticks / per_second
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_sesgate(dir: &Path, sink: &sink::Sink, load: Load, extra: &str) -> (Child, u16) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/AllowSendingOnly.json"),
        dir.join("policies/AllowSendingOnly.json"),
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/iam.toml"),
        format!(
            "[[user]]\nname = \"bench\"\npolicies = [\"AllowSendingOnly\"]\n[[user.credentials]]\nusername = \"{BENCH_USER}\"\npassword_hash = \"{}\"\n",
            hash_password(BENCH_PASSWORD)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("sink-ca.pem"), &sink.cert_pem).unwrap();
    std::fs::write(dir.join("sink-password"), sink::SINK_PASSWORD).unwrap();
    let port = free_port();
    let tls = if load.tls { "starttls" } else { "none" };
    std::fs::write(
        dir.join("sesgate.toml"),
        format!(
            "hostname = \"bench.local\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"{tls}\"\nallow_plaintext_auth = {}\n\
             [upstream]\nurl = \"smtp://localhost:{}?tls=required\"\nusername = \"{}\"\npassword_file = \"sink-password\"\nca_certificate = \"sink-ca.pem\"\npool_size = {}\n\
             [limits]\nmax_connections_per_ip = 1000\nauth_queue_timeout_ms = 60000\nauth_throttle_exempt = [\"127.0.0.0/8\"]\n{extra}",
            !load.tls,
            sink.port,
            sink::SINK_USER,
            load.clients
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sesgate.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesgate"))
        .args(["serve", "--config"])
        .arg(dir.join("sesgate.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting sesgate");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "sesgate did not start; see {}",
        dir.join("sesgate.log").display()
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list.
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sink = sink::Sink::start_with(true, false).await;
        let roots = {
            let mut store = rustls::RootCertStore::empty();
            for pem in [sink.cert_pem.clone()] {
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    store.add(cert.unwrap()).unwrap();
                }
            }
            store
        };
        let clients = env_or("RELAY_CLIENTS", 32usize);
        let size = env_or("RELAY_SIZE", 10_240usize);
        let messages = env_or("RELAY_MESSAGES", 3200usize);
        let tls = env_or("RELAY_TLS", 1u8) == 1;
        let per_connection: Vec<usize> = std::env::var("RELAY_PER_CONNECTION")
            .unwrap_or_else(|_| "1,100".into())
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        println!(
            "relay benchmark: {clients} clients, {size}-byte messages, {} and AUTH on every connection, {messages} messages per run",
            if tls { "STARTTLS" } else { "plaintext" }
        );
        println!(
            "{:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>14}",
            "per-conn", "path", "messages", "msg/s", "p50 ms", "p99 ms", "drain/s", "ratio", "sesgate CPU/msg"
        );
        for per_connection in per_connection {
            let load = Load { clients, per_connection, messages, size, tls };
            let dir = std::env::temp_dir().join(format!("sesgate-relay-bench-{}-{per_connection}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let (mut child, port) = start_sesgate(&dir, &sink, load, "");
            let gateway_cert = std::fs::read(dir.join("certs/sesgate.crt")).unwrap();
            let mut store = roots.clone();
            for cert in CertificateDer::pem_slice_iter(&gateway_cert) {
                store.add(cert.unwrap()).unwrap();
            }
            let client_config = Arc::new(rustls::ClientConfig::builder().with_root_certificates(store).with_no_client_auth());
            // Warm up both paths (TLS session setup, the AUTH cache, the upstream pool).
            let warm = Load { messages: clients, per_connection: 1, ..load };
            run(sink.port, warm, Arc::clone(&client_config)).await;
            run(port, warm, Arc::clone(&client_config)).await;
            let direct = run(sink.port, load, Arc::clone(&client_config)).await;
            let cpu_before = cpu_seconds(child.id());
            let relayed = run(port, load, Arc::clone(&client_config)).await;
            let cpu = cpu_seconds(child.id()) - cpu_before;
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{per_connection:>8} {:>9} {:>10} {:>10.0} {:>10.2} {:>10.2}",
                "direct",
                direct.messages,
                direct.rate(),
                ms(direct.percentile(0.5)),
                ms(direct.percentile(0.99))
            );
            println!(
                "{per_connection:>8} {:>9} {:>10} {:>10.0} {:>10.2} {:>10.2} {:>10} {:>7.1}% {:>11.3} ms",
                "sesgate",
                relayed.messages,
                relayed.rate(),
                ms(relayed.percentile(0.5)),
                ms(relayed.percentile(0.99)),
                "",
                100.0 * relayed.rate() / direct.rate(),
                1000.0 * cpu / relayed.messages as f64
            );
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            if env_or("RELAY_SPOOL", 1u8) == 1 {
                spooled(&sink, load, &dir, &roots).await;
            }
        }
    });
}

/// The same load through a sesgate with `[spool]` (fsync of file and directory before each
/// 250): the rate of 250s, then the rate until the sink has every message (the spool drained),
/// and sesgate's CPU per message over both, receipt and delivery.
async fn spooled(sink: &sink::Sink, load: Load, dir: &Path, roots: &rustls::RootCertStore) {
    let dir = dir.with_extension("spool");
    let _ = std::fs::remove_dir_all(&dir);
    let (mut child, port) = start_sesgate(&dir, sink, load, "[spool]\ndir = \"spool\"\n");
    let gateway_cert = std::fs::read(dir.join("certs/sesgate.crt")).unwrap();
    let mut store = roots.clone();
    for cert in CertificateDer::pem_slice_iter(&gateway_cert) {
        store.add(cert.unwrap()).unwrap();
    }
    let client_config = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(store)
            .with_no_client_auth(),
    );
    let counted = || sink.count.load(std::sync::atomic::Ordering::Relaxed);
    let warm = Load {
        messages: load.clients,
        per_connection: 1,
        ..load
    };
    let before = counted();
    let warmed = run(port, warm, Arc::clone(&client_config)).await;
    while counted() < before + warmed.messages {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (before, cpu_before, started) = (counted(), cpu_seconds(child.id()), Instant::now());
    let spooled = run(port, load, Arc::clone(&client_config)).await;
    while counted() < before + spooled.messages {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drained = started.elapsed();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:>8} {:>9} {:>10} {:>10.0} {:>10.2} {:>10.2} {:>10.0} {:>8} {:>11.3} ms",
        load.per_connection,
        "spool",
        spooled.messages,
        spooled.rate(),
        ms(spooled.percentile(0.5)),
        ms(spooled.percentile(0.99)),
        spooled.messages as f64 / drained.as_secs_f64(),
        "drained",
        1000.0 * cpu / spooled.messages as f64
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
