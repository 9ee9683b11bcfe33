//! What the quota tests (tests/quotas.rs, tests/quota_attacks.rs) share: SES's throttling
//! replies, a test server with `[quotas]` set, and logged-in clients.

use super::sink::Sink;
use super::{Client, PASSWORD, PLAINTEXT_AUTH, Setup, TestServer, USER};

pub const DAILY: &str = "454 4.7.0 Throttling failure: Daily message quota exceeded";
pub const RATE: &str = "454 4.7.0 Throttling failure: Maximum sending rate exceeded";
pub const UNAVAILABLE: &str = "451 4.3.0 Temporary service failure";
pub const MESSAGE: &str = "From: a@example.com\r\nSubject: quota\r\n\r\nHello.\r\n";

/// A change to a test server's `[quotas]`.
pub type QuotasChange = Box<dyn FnOnce(&mut sesgate::config::Quotas) + Send>;

/// What a test server is started with (a metrics listener with per-user series included).
#[derive(Default)]
pub struct Gateway {
    pub store: Option<String>,
    pub quotas: Vec<QuotasChange>,
    pub users: Option<String>,
    pub groups: String,
    pub upstream: Option<Sink>,
    pub files: Vec<(String, Vec<u8>)>,
}

impl Gateway {
    pub fn quotas(mut self, f: impl FnOnce(&mut sesgate::config::Quotas) + Send + 'static) -> Self {
        self.quotas.push(Box::new(f));
        self
    }

    pub async fn start(self) -> TestServer {
        let mut setup = Setup {
            users: self.users,
            groups: self.groups,
            upstream: self.upstream,
            files: self.files,
            ..Setup::default()
        };
        setup.config.metrics.listen = "127.0.0.1:0".into();
        setup.config.metrics.per_user = true;
        if let Some(store) = self.store {
            setup.config.quotas.store = store;
        }
        for adjust in self.quotas {
            adjust(&mut setup.config.quotas);
        }
        TestServer::start_setup(setup).await
    }
}

/// A client logged in as the test user on the plaintext-AUTH listener.
pub async fn client(server: &TestServer) -> Client {
    client_as(server, USER).await
}

pub async fn client_as(server: &TestServer, username: &str) -> Client {
    let mut client = server.connect(PLAINTEXT_AUTH).await;
    client.hello(false).await;
    client.login_as(username, PASSWORD).await;
    client
}

/// One message to `recipients` on a fresh transaction (RSET first): the reply to its end of
/// data, or the refusal before it.
pub async fn send_to(client: &mut Client, recipients: &[&str]) -> String {
    client.command("RSET").await;
    client
        .transaction("a@example.com", recipients, MESSAGE)
        .await
}

/// One message to `recipient` on a fresh transaction, which must be relayed.
pub async fn relayed(client: &mut Client, recipient: &str) {
    let reply = send_to(client, &[recipient]).await;
    assert!(reply.starts_with("250"), "{recipient}: {reply}");
}

/// MAIL FROM, then `RCPT TO:<{prefix}{i}@example.com>` for `i` in `1..=count`: each accepted up
/// to the `quota`-th, each past it refused with SES's daily text.
pub async fn rcpts_against_daily_quota(
    client: &mut Client,
    prefix: &str,
    count: usize,
    quota: usize,
) {
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .await
            .starts_with("250")
    );
    for i in 1..=count {
        let reply = client
            .command(&format!("RCPT TO:<{prefix}{i}@example.com>"))
            .await;
        if i <= quota {
            assert!(reply.starts_with("250"), "{i}: {reply}");
        } else {
            assert_eq!(reply, DAILY, "{i}");
        }
    }
}

/// Recipients the server relayed to its outbox.
pub fn relayed_recipients(server: &TestServer) -> usize {
    server
        .outbox()
        .iter()
        .map(|(_, envelope)| envelope["recipients"].as_array().unwrap().len())
        .sum()
}
