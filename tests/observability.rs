//! Issue 14 points 8 and 10, the opt-in parts: `[metrics] per_user` counts transactions per
//! configured IAM user (never a client-supplied name), and `[log] recipients` puts the
//! recipient list, escaped, on the transaction line. Both off by default.

mod support;

use support::metrics::scrape;
use support::serve::{ServeProcess, policy_dir};
use support::*;

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

/// A `sesgate serve` process on a plaintext-AUTH listener, with the test user, in a directory
/// of its own that goes with it.
fn start_serve(name: &str, extra_toml: &str) -> ServeProcess {
    let dir = policy_dir(
        &format!("observability-{name}"),
        &user_toml(
            "app",
            "/",
            CLIENT_USER,
            CLIENT_PASSWORD,
            "policies = [\"AllowSendingOnly\"]",
        ),
    );
    ServeProcess::start(&dir, extra_toml).removing_dir()
}

/// Sends one message to `recipients` and returns the transaction log line.
async fn transaction_line(serve: &ServeProcess, recipients: &[&str]) -> String {
    let mut client = serve.client().await;
    client.login_as(CLIENT_USER, CLIENT_PASSWORD).await;
    let reply = client
        .transaction(
            "a@example.com",
            recipients,
            "From: a@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("250 "), "{reply}");
    serve.wait_for_log(" transaction ", 1).await;
    let log = serve.log();
    log.lines()
        .find(|l| l.contains(" transaction "))
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_recipients_lists_them_escaped_when_asked() {
    let serve = start_serve("rcpt-on", "[log]\nrecipients = true\n");
    // A quoted local part may hold a comma or a double quote: each recipient stays a quoted
    // item of the list, and the list stays inside its field, escaped.
    let line = transaction_line(&serve, &["b@example.com", "\"x\\\"y,z\"@example.com"]).await;
    assert!(
        line.contains(r#"rcpt_to="[\"b@example.com\", \"x\\\"y,z@example.com\"]""#),
        "{line}"
    );
    assert!(line.contains("recipients=2"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_recipients_is_off_by_default() {
    let serve = start_serve("rcpt-off", "");
    let line = transaction_line(&serve, &["b@example.com"]).await;
    assert!(line.contains("recipients=1"), "{line}");
    assert!(
        !line.contains("rcpt_to") && !line.contains("b@example.com"),
        "{line}"
    );
}
