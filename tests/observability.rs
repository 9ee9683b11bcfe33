//! Issue 14 points 8 and 10, the opt-in parts: `[metrics] per_user` counts transactions per
//! configured IAM user (never a client-supplied name), and `[log] recipients` puts the
//! recipient list, escaped, on the transaction line. Both off by default.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use support::*;

async fn scrape(server: &TestServer) -> String {
    let address = server
        .running
        .as_ref()
        .unwrap()
        .metrics_address
        .expect("metrics are on");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

/// One allowed and one refused transaction by the test user, plus an AUTH attempt with a
/// made-up user name (which must never become a label).
async fn traffic(server: &TestServer) {
    let mut client = server.connect(IMPLICIT).await;
    client.hello(false).await;
    let stranger = base64_encode(b"\0attacker-chosen-name\0wrong");
    assert!(
        client
            .command(&format!("AUTH PLAIN {stranger}"))
            .await
            .starts_with("535")
    );
    client.login().await;
    let allowed = client
        .transaction(
            "a@example.com",
            &["b@example.com"],
            "From: a@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(allowed.starts_with("250 "), "{allowed}");
    let refused = client
        .transaction(
            "a@example.com",
            &["b@example.com"],
            "Subject: no from\r\n\r\nx\r\n",
        )
        .await;
    assert!(refused.starts_with("554 "), "{refused}");
}

fn user_series(response: &str) -> Vec<&str> {
    response
        .lines()
        .filter(|l| l.starts_with("sesgate_user_transactions_total{"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_metrics_count_configured_users_only() {
    let mut setup = Setup::default();
    setup.config.metrics.listen = "127.0.0.1:0".into();
    setup.config.metrics.per_user = true;
    let server = TestServer::start_setup(setup).await;
    traffic(&server).await;
    let response = scrape(&server).await;
    let mut series = user_series(&response);
    series.sort();
    assert_eq!(
        series,
        [
            "sesgate_user_transactions_total{user=\"test-app\",decision=\"allowed\"} 1",
            "sesgate_user_transactions_total{user=\"test-app\",decision=\"ambiguous\"} 1",
        ],
        "{response}"
    );
    assert!(!response.contains("attacker-chosen-name"), "{response}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_metrics_are_off_by_default() {
    let mut setup = Setup::default();
    setup.config.metrics.listen = "127.0.0.1:0".into();
    let server = TestServer::start_setup(setup).await;
    traffic(&server).await;
    let response = scrape(&server).await;
    assert!(user_series(&response).is_empty(), "{response}");
    assert!(
        response
            .lines()
            .any(|l| l == "sesgate_transactions_total{decision=\"allowed\"} 1"),
        "{response}"
    );
    server.stop().await;
}

const CLIENT_USER: &str = "AKIAOBSERVABILITY001";
const CLIENT_PASSWORD: &str = "observability-test-password";

/// A `sesgate serve` process on a plaintext-AUTH listener, its output in `dir/serve.log`.
struct Serve {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Serve {
    fn start(name: &str, extra_toml: &str) -> Serve {
        let dir = std::env::temp_dir().join(format!(
            "sesgate-observability-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        copy_guide_policies(&dir.join("policies"));
        std::fs::write(
            dir.join("policies/iam.toml"),
            user_toml(
                "app",
                "/",
                CLIENT_USER,
                CLIENT_PASSWORD,
                "policies = [\"AllowSendingOnly\"]",
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.join("sesgate.toml"),
            format!(
                "hostname = \"gw.test\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = \"none\"\nallow_plaintext_auth = true\n{extra_toml}"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sesgate"))
            .args(["serve", "--config"])
            .arg(dir.join("sesgate.toml"))
            .env_remove("RUST_LOG")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let serve = Serve { child, port, dir };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return serve;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("serve did not start: {}", serve.log());
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("serve.log")).unwrap_or_default())
            .into_owned()
    }

    /// Sends one message to `recipients` and returns the transaction log line.
    async fn transaction_line(&self, recipients: &[&str]) -> String {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let mut client = Client::new(Box::new(stream), Vec::new());
        assert!(client.reply().await.starts_with("220 gw.test"));
        assert!(client.command("EHLO client.test").await.starts_with("250"));
        client.login_as(CLIENT_USER, CLIENT_PASSWORD).await;
        let reply = client
            .transaction(
                "a@example.com",
                recipients,
                "From: a@example.com\r\n\r\nx\r\n",
            )
            .await;
        assert!(reply.starts_with("250 "), "{reply}");
        for _ in 0..500 {
            if let Some(line) = self.log().lines().find(|l| l.contains(" transaction ")) {
                return line.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no transaction line: {}", self.log());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_recipients_lists_them_escaped_when_asked() {
    let serve = Serve::start("rcpt-on", "[log]\nrecipients = true\n");
    // A quoted local part may hold a comma or a double quote: each recipient stays a quoted
    // item of the list, and the list stays inside its field, escaped.
    let line = serve
        .transaction_line(&["b@example.com", "\"x\\\"y,z\"@example.com"])
        .await;
    assert!(
        line.contains(r#"rcpt_to="[\"b@example.com\", \"x\\\"y,z@example.com\"]""#),
        "{line}"
    );
    assert!(line.contains("recipients=2"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_recipients_is_off_by_default() {
    let serve = Serve::start("rcpt-off", "");
    let line = serve.transaction_line(&["b@example.com"]).await;
    assert!(line.contains("recipients=1"), "{line}");
    assert!(
        !line.contains("rcpt_to") && !line.contains("b@example.com"),
        "{line}"
    );
}
