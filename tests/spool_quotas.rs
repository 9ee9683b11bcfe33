//! The quotas with a spool (issues 12 and 13 joined): a real sesgate on loopback storing into
//! its spool and delivering to a real SMTP sink. Acceptance consumes only the 24-hour quotas
//! (a burst is stored, never answered 454 for its rate); the delivery workers consume the
//! rates and follow the instance's pace, so the spool drains at the account's rate.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sesgate::config;
use support::metrics::{account_recipients, metric};
use support::quotas::{DAILY, client, rcpts_against_daily_quota};
use support::sink::{DataReply, Sink};
use support::*;

/// A server relaying to `sink` through a spool, with `quotas` and `spool` adjusted.
async fn start(
    sink: &Sink,
    quotas: impl FnOnce(&mut config::Quotas),
    spool: impl FnOnce(&mut config::Spool),
) -> TestServer {
    let mut setup = Setup {
        upstream: Some(sink.clone()),
        ..Setup::default()
    };
    setup.config.metrics.listen = "127.0.0.1:0".into();
    quotas(&mut setup.config.quotas);
    let mut settings = config::Spool {
        dir: "spool".into(),
        retry_schedule_secs: vec![1],
        ..config::Spool::default()
    };
    spool(&mut settings);
    setup.config.spool = Some(settings);
    TestServer::start_setup(setup).await
}

fn message(subject: &str) -> String {
    format!("From: a@example.com\r\nSubject: {subject}\r\n\r\nBODY-{subject}\r\n")
}

/// Recipients the sink took.
fn delivered(sink: &Sink) -> usize {
    sink.accepted().iter().map(|a| a.recipients.len()).sum()
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A burst past the account's rate, with no wait allowed at acceptance: every message is
/// stored and acknowledged (no 454), and the spool delivers them at about 2 a second.
#[tokio::test]
async fn a_burst_past_the_rate_is_all_accepted_and_drains_at_the_rate() {
    let sink = Sink::start().await;
    let server = start(
        &sink,
        |q| {
            q.max_send_rate = 2.0;
            // Without a spool this answers 454 to the third message at once.
            q.max_rate_wait_ms = 0;
        },
        |_| {},
    )
    .await;
    let mut client = client(&server).await;
    for i in 0..10 {
        client.command("RSET").await;
        let reply = client
            .transaction(
                "a@example.com",
                &[&format!("r{i}@example.com")],
                &message(&format!("burst-{i}")),
            )
            .await;
        assert!(reply.starts_with("250 2.0.0 Ok "), "message {i}: {reply}");
    }
    let last_ack = Instant::now();
    // 2 at once (the bucket holds a second of sending), then one every 0.5 s: about 4 s for 10.
    // A loaded machine only delivers later, never sooner.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(last_ack.elapsed())).await;
    let early = delivered(&sink);
    assert!(
        early < 10,
        "all {early} delivered within 1.5 s of the last 250: not paced"
    );
    wait_until("all 10 delivered", Duration::from_secs(30), || {
        delivered(&sink) == 10
    })
    .await;
    let took = last_ack.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "10 recipients at 2/s delivered in {took:?}"
    );
    assert_eq!(sink.accepted().len(), 10, "each delivered exactly once");
    assert_eq!(
        metric(&server, "sesgate_throttled_total{cause=\"rate\"}").await,
        0.0
    );
    assert_eq!(account_recipients(&server).await, 10.0);
    server.stop().await;
}

/// A message with more recipients than the rate's one-second burst still goes (alone, when
/// the bucket is full): a hostile or careless client cannot wedge the spool with it.
#[tokio::test]
async fn a_message_wider_than_the_rate_is_delivered_not_starved() {
    let sink = Sink::start().await;
    let server = start(
        &sink,
        |q| {
            q.max_send_rate = 1.0;
            q.max_rate_wait_ms = 0;
        },
        |_| {},
    )
    .await;
    let mut client = client(&server).await;
    let recipients: Vec<String> = (0..6).map(|i| format!("w{i}@example.com")).collect();
    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let reply = client
        .transaction("a@example.com", &recipients, &message("wide"))
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok "), "{reply}");
    client.command("RSET").await;
    let reply = client
        .transaction("a@example.com", &["after@example.com"], &message("after"))
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok "), "{reply}");
    wait_until("both delivered", Duration::from_secs(30), || {
        delivered(&sink) == 7
    })
    .await;
    server.stop().await;
}

/// The 24-hour quota holds at acceptance: the 4th recipient is refused with SES's text, and
/// two transactions that both passed RCPT cannot both be stored past it. Delivery does not
/// count them a second time (else the accepted ones would never leave the spool).
#[tokio::test]
async fn the_daily_quota_is_taken_at_acceptance_and_never_over_accepted() {
    let sink = Sink::start().await;
    let server = start(&sink, |q| q.max_24_hour_send = 3, |_| {}).await;
    let mut client = client(&server).await;
    rcpts_against_daily_quota(&mut client, "d", 4, 3).await;
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(message("daily").as_bytes()).await;
    client.send(b".\r\n").await;
    assert!(client.reply().await.starts_with("250 2.0.0 Ok "));
    client.command("RSET").await;
    assert_eq!(
        client
            .transaction("a@example.com", &["late@example.com"], &message("late"))
            .await,
        DAILY
    );
    wait_until("3 delivered", Duration::from_secs(15), || {
        delivered(&sink) == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(delivered(&sink), 3);
    server.stop().await;

    // Two clients pass RCPT against an unused quota of 3 (2 recipients each), then both send
    // their DATA: only one fits and is stored; the other hears the daily text at its end.
    let sink = Sink::start().await;
    let server = start(&sink, |q| q.max_24_hour_send = 3, |_| {}).await;
    drop(client);
    let (mut first, mut second) = (self::client(&server).await, self::client(&server).await);
    for (client, name) in [(&mut first, "f"), (&mut second, "s")] {
        assert!(
            client
                .command("MAIL FROM:<a@example.com>")
                .await
                .starts_with("250")
        );
        for i in 0..2 {
            let reply = client
                .command(&format!("RCPT TO:<{name}{i}@example.com>"))
                .await;
            assert!(reply.starts_with("250"), "{reply}");
        }
        assert!(client.command("DATA").await.starts_with("354"));
    }
    let mut replies = Vec::new();
    for client in [&mut first, &mut second] {
        client.send(message("race").as_bytes()).await;
        client.send(b".\r\n").await;
        replies.push(client.reply().await);
    }
    assert!(replies[0].starts_with("250 2.0.0 Ok "), "{replies:?}");
    assert_eq!(replies[1], DAILY);
    wait_until("2 delivered", Duration::from_secs(15), || {
        delivered(&sink) == 2
    })
    .await;
    server.stop().await;
}

/// A message the spool cannot store (452) gives its recipients back to the 24-hour quota.
#[tokio::test]
async fn a_message_the_spool_cannot_store_consumes_no_daily_quota() {
    let sink = Sink::start().await;
    let server = start(&sink, |q| q.max_24_hour_send = 1, |s| s.max_bytes = 4000).await;
    let mut client = client(&server).await;
    let big = format!(
        "From: a@example.com\r\nSubject: big\r\n\r\n{}",
        format!("{}\r\n", "x".repeat(98)).repeat(60)
    );
    for _ in 0..3 {
        client.command("RSET").await;
        let reply = client
            .transaction("a@example.com", &["big@example.com"], &big)
            .await;
        assert!(reply.starts_with("452 4.3.1"), "{reply}");
    }
    client.command("RSET").await;
    let reply = client
        .transaction("a@example.com", &["small@example.com"], &message("small"))
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok "), "{reply}");
    wait_until("the small one delivered", Duration::from_secs(15), || {
        delivered(&sink) == 1
    })
    .await;
    client.command("RSET").await;
    assert_eq!(
        client
            .transaction("a@example.com", &["more@example.com"], &message("more"))
            .await,
        DAILY
    );
    server.stop().await;
}

/// An upstream 454 on a spooled delivery: the client already has its 250; the delivery is
/// retried, and the instance's pace slows down (the same adaptive pace as pass-through).
#[tokio::test]
async fn an_upstream_454_slows_the_spool_and_the_message_is_retried() {
    let sink = Sink::start().await;
    sink.set_reply(DataReply::Reply(
        "454 Throttling failure: Maximum sending rate exceeded".into(),
    ));
    let server = start(&sink, |q| q.upstream_recovery_secs = 2, |_| {}).await;
    let mut client = client(&server).await;
    let reply = client
        .transaction("a@example.com", &["t@example.com"], &message("throttled"))
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok "), "{reply}");
    wait_until("an upstream attempt", Duration::from_secs(15), || {
        sink.data_attempts.load(Ordering::Relaxed) >= 1
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&server, "sesgate_throttled_total{cause=\"upstream\"}").await < 1.0 {
        assert!(Instant::now() < deadline, "the pace never heard the 454");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metric(&server, "sesgate_upstream_pace").await >= 1.0);
    sink.set_reply(DataReply::Accept);
    wait_until(
        "delivered after the throttle",
        Duration::from_secs(30),
        || delivered(&sink) == 1,
    )
    .await;
    server.stop().await;
}
