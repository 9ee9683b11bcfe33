//! AUTH cannot exhaust the gateway (SPEC §6, issue 8 §4): argon2 runs behind a bounded gate, the
//! failure budget is taken before verifying, lockouts key on (address, user name) under a
//! per-address ceiling, IPv6 counts per /64, trusted networks can be exempted. Every test talks
//! SMTP to a real sesgate on loopback, from distinct source addresses (127.0.0.2, 127.0.0.3, ...).

mod support;

use std::time::{Duration, Instant};

use sesgate::config::Limits;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const OTHER_USER: &str = "AKIAEXAMPLETEST00002";
const OTHER_PASSWORD: &str = "another right password";
const TEMPORARY: &str = "454 4.7.0 Temporary authentication failure";
const INVALID: &str = "535 5.7.8 Authentication Credentials Invalid";
const SUCCESS: &str = "235 2.7.0 Authentication successful.";

/// A server with two users, after `adjust` has changed its limits.
async fn server(adjust: impl FnOnce(&mut Limits)) -> TestServer {
    let mut setup = Setup::default();
    adjust(&mut setup.config.limits);
    setup.users = Some(format!(
        "{}\n{}",
        user_toml(
            "test-app",
            "/apps/",
            USER,
            PASSWORD,
            "policies = [\"AllowSendingOnly\"]"
        ),
        user_toml(
            "other-app",
            "/apps/",
            OTHER_USER,
            OTHER_PASSWORD,
            "policies = [\"AllowSendingOnly\"]"
        ),
    ));
    TestServer::start_setup(setup).await
}

fn auth_plain(user: &str, password: &str) -> String {
    format!(
        "AUTH PLAIN {}",
        base64_encode(format!("\0{user}\0{password}").as_bytes())
    )
}

/// One AUTH on a fresh connection from `source`; the reply.
async fn auth_from(server: &TestServer, source: &str, user: &str, password: &str) -> String {
    server
        .client_from(source)
        .await
        .command(&auth_plain(user, password))
        .await
}

/// `n` clients from `source` connect, then all send a wrong AUTH at once; their replies.
async fn parallel_wrong_auths(server: &TestServer, source: &str, n: usize) -> Vec<String> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(server.client_from(source).await);
    }
    let command = auth_plain(USER, "wrong");
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let command = command.clone();
            tokio::spawn(async move { client.command(&command).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn verifications(server: &TestServer) -> u64 {
    server
        .running
        .as_ref()
        .unwrap()
        .metrics()
        .auth_verifications
        .get()
}

fn count(replies: &[String], reply: &str) -> usize {
    replies.iter().filter(|r| *r == reply).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_auths_from_one_address_run_at_most_the_remaining_budget() {
    let server = server(|limits| {
        limits.smtp.auth_failures_per_user = 5;
        limits.smtp.auth_failures_per_ip = 20;
        limits.smtp.auth_in_flight_per_ip = 100;
        limits.max_auth_verifications = 1;
        limits.max_auth_queue = 100;
    })
    .await;
    let replies = parallel_wrong_auths(&server, "127.0.0.2", 40).await;
    let invalid = count(&replies, INVALID);
    assert_eq!(invalid + count(&replies, TEMPORARY), 40, "{replies:?}");
    assert!(
        (1..=5).contains(&invalid),
        "{invalid} checks ran: {replies:?}"
    );
    assert_eq!(
        verifications(&server),
        invalid as u64,
        "the refused attempts never ran argon2"
    );
    // The budget is spent: the right password is refused too, without running argon2.
    assert_eq!(
        auth_from(&server, "127.0.0.2", USER, PASSWORD).await,
        TEMPORARY
    );
    assert_eq!(verifications(&server), invalid as u64);
    let metrics = server.running.as_ref().unwrap().metrics().render();
    assert!(
        metrics.contains(&format!("sesgate_auth_verifications_total {invalid}")),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_client_does_not_lock_out_other_users_of_its_address() {
    // A Postfix smarthost: one address, many users; one of them has a wrong password.
    let server = server(|limits| {
        limits.smtp.auth_failures_per_user = 3;
        limits.smtp.auth_failures_per_ip = 50;
    })
    .await;
    for _ in 0..5 {
        auth_from(&server, "127.0.0.3", USER, "wrong").await;
    }
    assert_eq!(
        auth_from(&server, "127.0.0.3", USER, PASSWORD).await,
        TEMPORARY,
        "the failing user name is locked out from this address"
    );
    assert_eq!(
        auth_from(&server, "127.0.0.3", OTHER_USER, OTHER_PASSWORD).await,
        SUCCESS,
        "another user of the same address is not"
    );
    assert_eq!(
        auth_from(&server, "127.0.0.4", USER, PASSWORD).await,
        SUCCESS,
        "nor is the same user from another address"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_ceiling_stops_a_user_name_rotating_attacker() {
    let server = server(|limits| {
        limits.smtp.auth_failures_per_user = 2;
        limits.smtp.auth_failures_per_ip = 6;
        limits.smtp.max_auth_failures = 100;
    })
    .await;
    let mut attacker = server.client_from("127.0.0.5").await;
    let mut replies = Vec::new();
    for n in 0..10 {
        let reply = attacker
            .command(&auth_plain(&format!("AKIAGUESS{n:011}"), "guess"))
            .await;
        let refused = reply == TEMPORARY;
        replies.push(reply);
        if refused {
            break;
        }
    }
    assert_eq!(count(&replies, INVALID), 6, "{replies:?}");
    assert_eq!(replies.last().unwrap(), TEMPORARY);
    assert!(attacker.is_closed().await);
    assert_eq!(verifications(&server), 6);
    // Every user name is now refused from that address, the right password too...
    assert_eq!(
        auth_from(&server, "127.0.0.5", OTHER_USER, OTHER_PASSWORD).await,
        TEMPORARY
    );
    // ...but not from elsewhere.
    assert_eq!(
        auth_from(&server, "127.0.0.6", OTHER_USER, OTHER_PASSWORD).await,
        SUCCESS
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exempt_networks_are_not_locked_out() {
    let server = server(|limits| {
        limits.smtp.auth_failures_per_user = 1;
        limits.smtp.auth_failures_per_ip = 1;
        limits.smtp.auth_throttle_exempt = vec!["127.0.0.7/32".parse().unwrap()];
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            auth_from(&server, "127.0.0.7", USER, "wrong").await,
            INVALID
        );
    }
    assert_eq!(
        auth_from(&server, "127.0.0.7", USER, PASSWORD).await,
        SUCCESS
    );
    // The same limits apply in full to everyone else.
    assert_eq!(
        auth_from(&server, "127.0.0.8", USER, "wrong").await,
        INVALID
    );
    assert_eq!(
        auth_from(&server, "127.0.0.8", USER, PASSWORD).await,
        TEMPORARY
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_verifier_answers_454_without_running_argon2() {
    // One verification at a time and no queue: parallel attempts that find it busy are
    // answered at once with a temporary failure, not 535, and do not count as failures.
    let server = server(|limits| {
        limits.smtp.auth_failures_per_user = 1000;
        limits.smtp.auth_failures_per_ip = 1000;
        limits.smtp.auth_in_flight_per_ip = 1000;
        limits.max_auth_verifications = 1;
        limits.max_auth_queue = 0;
    })
    .await;
    let replies = parallel_wrong_auths(&server, "127.0.0.9", 30).await;
    let (invalid, busy) = (count(&replies, INVALID), count(&replies, TEMPORARY));
    assert_eq!(invalid + busy, 30, "{replies:?}");
    assert!(busy > 0 && invalid > 0, "{replies:?}");
    assert_eq!(verifications(&server), invalid as u64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_logins_from_another_address_succeed_promptly_during_an_attack() {
    let server = server(|limits| {
        limits.smtp.auth_failures_per_user = 100_000;
        limits.smtp.auth_failures_per_ip = 100_000;
        limits.smtp.auth_in_flight_per_ip = 4;
        limits.max_auth_verifications = 1;
        limits.max_auth_queue = 64;
        limits.smtp.max_auth_failures = 1000;
    })
    .await;
    // A credential checked once is cached.
    assert_eq!(
        auth_from(&server, "127.0.0.20", USER, PASSWORD).await,
        SUCCESS
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for source in ["127.0.0.21", "127.0.0.22", "127.0.0.23"] {
        for _ in 0..8 {
            let mut client = server.client_from(source).await;
            let stop = std::sync::Arc::clone(&stop);
            attackers.push(tokio::spawn(async move {
                let command = auth_plain(USER, "wrong");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if client.command(&command).await.is_empty() {
                        break;
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during_attack = verifications(&server);
    // The cached credential never waits for the verifier.
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(
            auth_from(&server, "127.0.0.24", USER, PASSWORD).await,
            SUCCESS
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // A first login queues behind at most 4 checks per attacking address.
    let started = Instant::now();
    assert_eq!(
        auth_from(&server, "127.0.0.25", OTHER_USER, OTHER_PASSWORD).await,
        SUCCESS
    );
    let waited = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for attacker in attackers {
        attacker.await.unwrap();
    }
    assert!(during_attack > 1, "the attack was running");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_throttled_per_slash_64() {
    let server = server(|limits| {
        limits.smtp.auth_failures_per_user = 2;
        limits.smtp.auth_failures_per_ip = 100;
    })
    .await;
    // The trusted-proxy listener takes the client address from the PROXY header.
    let auth_via_proxy = async |source: &str, password: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port(BEHIND_PROXY)))
            .await
            .unwrap();
        stream
            .write_all(format!("PROXY TCP6 {source} 2001:db8::25 40000 587\r\n").as_bytes())
            .await
            .unwrap();
        let mut client = Client::new(Box::new(stream), server.cert_pem());
        client.hello(true).await;
        client.command(&auth_plain(USER, password)).await
    };
    assert_eq!(auth_via_proxy("2001:db8:1:2::1", "wrong").await, INVALID);
    assert_eq!(
        auth_via_proxy("2001:db8:1:2:ffff:ffff:ffff:fffe", "wrong").await,
        INVALID
    );
    assert_eq!(
        auth_via_proxy("2001:db8:1:2::abcd", PASSWORD).await,
        TEMPORARY,
        "another address of the same /64 shares the budget"
    );
    assert_eq!(
        auth_via_proxy("2001:db8:1:3::1", PASSWORD).await,
        SUCCESS,
        "the next /64 does not"
    );
    server.stop().await;
}
