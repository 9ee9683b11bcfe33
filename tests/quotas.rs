//! Issue 12: SES's sending quotas, enforced by sesgate itself and shared by every instance.
//! Real sesgate servers on loopback, real SMTP, a real upstream sink, and a real `redis-server`
//! (skipped with a notice when absent, unless SESGATE_REQUIRE_INTEROP=1). Rates are tiny (one
//! recipient per 100 s) so that every assertion is a count, never a duration.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sesgate::config::OnStoreError;
use support::metrics::{account_recipients, account_remaining_24h, http_get, metric};
use support::quotas::*;
use support::redis::RedisServer;
use support::sink::{DataReply, Sink};
use support::*;

/// The recipient past a 24-hour quota is refused at RCPT with SES's text; the transaction
/// goes on with the others; the next one is refused at its first RCPT.
#[tokio::test]
async fn a_daily_quota_refuses_at_rcpt_the_recipient_past_it() {
    let server = Gateway::default()
        .quotas(|q| q.max_24_hour_send = 5)
        .start()
        .await;
    let mut client = client(&server).await;
    rcpts_against_daily_quota(&mut client, "r", 7, 5).await;
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"From: a@example.com\r\n\r\nx\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.0.0 Ok"));
    let outbox = server.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].1["recipients"].as_array().unwrap().len(), 5);
    assert_eq!(
        client
            .transaction("a@example.com", &["x@example.com"], MESSAGE)
            .await,
        DAILY
    );
    // Pipelined: every RCPT past the quota gets its own 454, in order.
    client
        .send(b"RSET\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<p@example.com>\r\nRCPT TO:<q@example.com>\r\nDATA\r\n")
        .await;
    assert!(client.reply().await.starts_with("250"));
    assert!(client.reply().await.starts_with("250"));
    assert_eq!(client.reply().await, DAILY);
    assert_eq!(client.reply().await, DAILY);
    assert!(client.reply().await.starts_with("554 5.5.1"));
    assert_eq!(relayed_recipients(&server), 5);
    assert!(metric(&server, "sesgate_throttled_total{cause=\"daily\"}").await >= 5.0);
    assert_eq!(account_remaining_24h(&server).await, 0.0);
    assert_eq!(account_recipients(&server).await, 5.0);
    server.stop().await;
}

/// A rate with no room answers SES's rate text at the end of DATA; what a policy refused, or
/// the upstream did not take, consumes nothing.
#[tokio::test]
async fn refused_and_failed_messages_consume_nothing() {
    let sink = Sink::start().await;
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ses:SendRawEmail","Resource":"*","Condition":{"StringEquals":{"ses:FromAddress":"blocked@example.com"}}}]}"#;
    let mut setup = Gateway {
        upstream: Some(sink.clone()),
        users: Some(user_toml(
            "test-app",
            "/apps/",
            USER,
            PASSWORD,
            "policies = [\"AllowSendingOnly\", \"DenyBlocked\"]",
        )),
        ..Gateway::default()
    }
    .quotas(|q| {
        q.max_send_rate = 0.01;
        q.max_24_hour_send = 2;
    });
    setup
        .files
        .push(("policies/DenyBlocked.json".into(), deny.as_bytes().to_vec()));
    let server = setup.start().await;
    let mut client = client(&server).await;
    // Refused by policy: counted nowhere.
    let reply = client
        .transaction(
            "a@example.com",
            &["b@example.com"],
            "From: blocked@example.com\r\n\r\nx\r\n",
        )
        .await;
    assert!(reply.starts_with("554 5.7.1 Access denied"), "{reply}");
    // Deferred by the upstream: given back.
    sink.set_reply(DataReply::Reply("451 4.3.0 Try again later".into()));
    let reply = client
        .transaction("a@example.com", &["b@example.com"], MESSAGE)
        .await;
    assert_eq!(reply, "451 4.4.1 Temporary service failure");
    // Rejected by the upstream: given back.
    sink.set_reply(DataReply::Reply("550 5.7.1 No".into()));
    let reply = client
        .transaction("a@example.com", &["b@example.com"], MESSAGE)
        .await;
    assert!(reply.starts_with("550"), "{reply}");
    sink.set_reply(DataReply::Accept);
    let reply = client
        .transaction("a@example.com", &["b@example.com"], MESSAGE)
        .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    // The rate (one recipient per 100 s, none waited for: 100 s is past max_rate_wait_ms).
    let reply = client
        .transaction("a@example.com", &["c@example.com"], MESSAGE)
        .await;
    assert_eq!(reply, RATE);
    assert_eq!(sink.accepted().len(), 1);
    assert_eq!(sink.data_attempts.load(Ordering::Relaxed), 3);
    // The rate refusal took nothing either: one recipient of the day is left.
    assert_eq!(account_remaining_24h(&server).await, 1.0);
    assert_eq!(
        metric(&server, "sesgate_throttled_total{cause=\"rate\"}").await,
        1.0
    );
    server.stop().await;
}

/// One message, as many recipients as SES would count: duplicates too.
#[tokio::test]
async fn recipients_are_counted_not_messages() {
    let server = Gateway::default()
        .quotas(|q| q.max_24_hour_send = 3)
        .start()
        .await;
    let mut client = client(&server).await;
    let same = ["d@example.com", "d@example.com", "d@example.com"];
    assert!(
        client
            .transaction("a@example.com", &same, MESSAGE)
            .await
            .starts_with("250")
    );
    assert_eq!(
        client
            .transaction("a@example.com", &["e@example.com"], MESSAGE)
            .await,
        DAILY
    );
    server.stop().await;
}

/// Sends `count` one-recipient messages from each of `clients` connections per server, all at
/// once; every reply to the end of DATA (or the refusal before it).
async fn burst(servers: &[&TestServer], clients: usize, count: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for server in servers {
        for c in 0..clients {
            let mut client = client(server).await;
            tasks.push(tokio::spawn(async move {
                let mut replies = Vec::new();
                for m in 0..count {
                    let to = format!("c{c}m{m}@example.com");
                    replies.push(client.transaction("a@example.com", &[&to], MESSAGE).await);
                    client.command("RSET").await;
                }
                replies
            }));
        }
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.extend(task.await.unwrap());
    }
    replies
}

/// How many of `replies` were relayed (250) and how many were `refusal`.
fn tally(replies: &[String], refusal: &str) -> (usize, usize) {
    let relayed = replies.iter().filter(|r| r.starts_with("250 ")).count();
    let refused = replies.iter().filter(|r| *r == refusal).count();
    (relayed, refused)
}

/// Two instances counting in one Redis, both with `quotas`.
async fn two_instances(
    redis: &RedisServer,
    quotas: impl Fn(&mut sesgate::config::Quotas) + Copy + Send + 'static,
) -> (TestServer, TestServer) {
    let start = || {
        Gateway {
            store: Some(redis.url()),
            ..Gateway::default()
        }
        .quotas(quotas)
        .start()
    };
    (start().await, start().await)
}

/// Concurrent clients of one instance (memory store) race for the last recipients: exactly
/// the quota goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_of_one_instance_take_exactly_the_quota() {
    let server = Gateway::default()
        .quotas(|q| q.max_24_hour_send = 7)
        .start()
        .await;
    let replies = burst(&[&server], 4, 4).await;
    assert_eq!(tally(&replies, DAILY), (7, 9), "{replies:?}");
    assert_eq!(relayed_recipients(&server), 7);
    server.stop().await;
}

/// Report-only concerns policies: a report-only user is still held to SES's quotas, which the
/// upstream would enforce anyway.
#[tokio::test]
async fn report_only_users_are_held_to_quotas() {
    let server = Gateway {
        users: Some(user_toml(
            "test-app",
            "/apps/",
            USER,
            PASSWORD,
            "policies = []\nenforce = false\nmax_24_hour_send = 1",
        )),
        ..Gateway::default()
    }
    .start()
    .await;
    let mut client = client(&server).await;
    // Implicitly denied, relayed anyway (report-only), and counted.
    relayed(&mut client, "b@example.com").await;
    assert_eq!(send_to(&mut client, &["c@example.com"]).await, DAILY);
    server.stop().await;
}

/// Two instances on one Redis: a burst across both relays exactly the daily quota and refuses
/// the rest with SES's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_daily_quota_exactly() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_instances(&redis, |q| q.max_24_hour_send = 10).await;
    let replies = burst(&[&a, &b], 3, 4).await;
    assert_eq!(replies.len(), 24);
    assert_eq!(tally(&replies, DAILY), (10, 14), "{replies:?}");
    assert_eq!(relayed_recipients(&a) + relayed_recipients(&b), 10);
    a.stop().await;
    b.stop().await;
}

/// The account's rate is one for both instances too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_rate() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = two_instances(&redis, |q| {
        q.max_send_rate = 0.01;
        q.max_rate_wait_ms = 200;
    })
    .await;
    let replies = burst(&[&a, &b], 2, 3).await;
    assert_eq!(tally(&replies, RATE), (1, 11), "{replies:?}");
    a.stop().await;
    b.stop().await;
}

const BULK_USER: &str = "AKIAEXAMPLEBULK00001";
const OTHER_BULK_USER: &str = "AKIAEXAMPLEBULK00002";

/// One message from `username`, on a connection of its own.
async fn send(server: &TestServer, username: &str) -> String {
    let mut client = client_as(server, username).await;
    client
        .transaction("a@example.com", &["z@example.com"], MESSAGE)
        .await
}

/// A user's own quota, and a group's shared by its members, each below the account's; on two
/// instances sharing Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_and_per_group_quotas() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let policies = "policies = [\"AllowSendingOnly\"]";
    let users = [
        user_toml(
            "test-app",
            "/apps/",
            USER,
            PASSWORD,
            &format!("{policies}\nmax_24_hour_send = 2"),
        ),
        user_toml(
            "bulk-1",
            "/",
            BULK_USER,
            PASSWORD,
            &format!("{policies}\ngroups = [\"bulk\"]"),
        ),
        user_toml(
            "bulk-2",
            "/",
            OTHER_BULK_USER,
            PASSWORD,
            &format!("{policies}\ngroups = [\"bulk\"]"),
        ),
    ]
    .join("\n");
    let start = || {
        Gateway {
            store: Some(redis.url()),
            users: Some(users.clone()),
            groups: "[[group]]\nname = \"bulk\"\nmax_24_hour_send = 3\n".into(),
            ..Gateway::default()
        }
        .quotas(|q| q.max_24_hour_send = 6)
        .start()
    };
    let (a, b) = (start().await, start().await);
    // The user's own 2, whichever instance it uses.
    assert!(send(&a, USER).await.starts_with("250"));
    assert!(send(&b, USER).await.starts_with("250"));
    assert_eq!(send(&a, USER).await, DAILY);
    // The group's 3, shared by its two members.
    assert!(send(&a, BULK_USER).await.starts_with("250"));
    assert!(send(&b, OTHER_BULK_USER).await.starts_with("250"));
    assert!(send(&b, BULK_USER).await.starts_with("250"));
    assert_eq!(send(&a, OTHER_BULK_USER).await, DAILY);
    // 5 of the account's 6 are used; the group and the user are full; nobody else sends.
    assert_eq!(relayed_recipients(&a) + relayed_recipients(&b), 5);
    // Per-user metrics name only configured users and groups; b relayed the group's last one.
    let scraped = http_get(&b, "/metrics").await;
    assert!(
        scraped.contains("sesgate_quota_remaining_24h{scope=\"group\",name=\"bulk\"} 0"),
        "{scraped}"
    );
    a.stop().await;
    b.stop().await;
}

/// Redis stopped mid-run: `refuse` answers 451 (and /ready says not ready), `allow` relays
/// uncounted; both recover once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_gives_the_configured_behaviour() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let start = |on_error: OnStoreError| {
        Gateway {
            store: Some(redis.url()),
            ..Gateway::default()
        }
        .quotas(move |q| {
            q.max_24_hour_send = 100;
            q.on_store_error = on_error;
            q.store_timeout_ms = 300;
        })
        .start()
    };
    let closed = start(OnStoreError::Refuse).await;
    let open = start(OnStoreError::Allow).await;
    let (mut to_closed, mut to_open) = (client(&closed).await, client(&open).await);
    async fn one(client: &mut Client) -> String {
        send_to(client, &["r@example.com"]).await
    }
    assert!(one(&mut to_closed).await.starts_with("250"));
    assert!(one(&mut to_open).await.starts_with("250"));
    assert!(
        http_get(&closed, "/ready")
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    redis.stop();
    let started = Instant::now();
    assert_eq!(one(&mut to_closed).await, UNAVAILABLE);
    assert!(one(&mut to_open).await.starts_with("250"));
    // Bounded: each refusal took about the store timeout, not a TCP timeout.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let ready = http_get(&closed, "/ready").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("not ready: quota store"), "{ready}");
    assert!(
        http_get(&closed, "/health")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        metric(
            &closed,
            "sesgate_quota_store_errors_total{operation=\"data\",outcome=\"refused\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        metric(
            &open,
            "sesgate_quota_store_errors_total{operation=\"data\",outcome=\"allowed\"}"
        )
        .await
            >= 1.0
    );
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = one(&mut to_closed).await;
        if reply.starts_with("250") {
            break;
        }
        assert_eq!(reply, UNAVAILABLE);
        assert!(Instant::now() < deadline, "still refused after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        http_get(&closed, "/ready")
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    closed.stop().await;
    open.stop().await;
}

/// An upstream that answers 454: the client sees SES's 454 (never a 5xx), and the instance
/// slows down instead of passing on a stream of upstream 454s; once the upstream accepts
/// again, the pace recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_454_is_passed_on_and_slows_the_instance() {
    let sink = Sink::start().await;
    sink.set_reply(DataReply::Reply(
        "454 Throttling failure: Maximum sending rate exceeded".into(),
    ));
    let server = Gateway {
        upstream: Some(sink.clone()),
        ..Gateway::default()
    }
    .quotas(|q| {
        q.max_rate_wait_ms = 0;
        q.upstream_recovery_secs = 2;
    })
    .start()
    .await;
    let mut client = client(&server).await;
    let first = client
        .transaction("a@example.com", &["b@example.com"], MESSAGE)
        .await;
    assert_eq!(first, RATE);
    let started = Instant::now();
    let sent = 20;
    let mut throttled = 0;
    for _ in 0..sent {
        let reply = send_to(&mut client, &["b@example.com"]).await;
        assert_eq!(reply, RATE);
        throttled += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let attempts = sink.data_attempts.load(Ordering::Relaxed);
    // At most about one recipient per second reaches the upstream now (the floor of the pace),
    // however fast the client sends.
    assert!(
        (attempts as f64) <= 2.0 + 2.0 * elapsed,
        "{attempts} upstream attempts for {sent} messages in {elapsed:.1} s"
    );
    if elapsed < 5.0 {
        assert!(attempts < sent / 2, "{attempts} of {sent}");
    }
    assert_eq!(throttled, sent);
    assert!(metric(&server, "sesgate_throttled_total{cause=\"pace\"}").await >= 1.0);
    assert!(metric(&server, "sesgate_throttled_total{cause=\"upstream\"}").await >= 1.0);
    assert!(metric(&server, "sesgate_upstream_pace").await >= 1.0);
    // Daily-quota throttling upstream reads as SES's daily text.
    sink.set_reply(DataReply::Reply(
        "454 4.7.0 Throttling failure: Daily message quota exceeded".into(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = sink.data_attempts.load(Ordering::Relaxed);
        let reply = send_to(&mut client, &["b@example.com"]).await;
        if sink.data_attempts.load(Ordering::Relaxed) > before {
            assert_eq!(reply, DAILY);
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The upstream takes mail again: it goes through once the pace allows, and the pace lifts.
    sink.set_reply(DataReply::Accept);
    loop {
        let reply = send_to(&mut client, &["b@example.com"]).await;
        if reply.starts_with("250") {
            break;
        }
        assert_eq!(reply, RATE);
        assert!(Instant::now() < deadline, "never relayed again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        if metric(&server, "sesgate_upstream_pace").await == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the pace never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        let reply = send_to(&mut client, &["b@example.com"]).await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    server.stop().await;
}

/// `from_upstream`: SES's figures lower the account's limits and seed the 24-hour count; a
/// reload reads the file again.
#[tokio::test]
async fn ses_figures_from_a_file_are_read_at_start_and_on_reload() {
    let quota = |max: u32, sent: u32| {
        format!(r#"{{"Max24HourSend": {max}.0, "MaxSendRate": 14.0, "SentLast24Hours": {sent}.0}}"#)
            .into_bytes()
    };
    let mut gateway = Gateway::default().quotas(|q| q.from_upstream = "send-quota.json".into());
    gateway.files.push(("send-quota.json".into(), quota(3, 2)));
    let server = gateway.start().await;
    let mut client = client(&server).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // The seeding runs in the background at start: wait until it shows.
    while metric(&server, "sesgate_quota_store_latency_seconds_count").await < 1.0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relayed(&mut client, "b@example.com").await;
    assert_eq!(send_to(&mut client, &["c@example.com"]).await, DAILY);
    // The operator refreshes the file and reloads.
    std::fs::write(server.dir.join("send-quota.json"), quota(5, 0)).unwrap();
    let running = server.running.as_ref().unwrap();
    let mut reload = running_config(&server);
    reload.quotas.from_upstream = "send-quota.json".into();
    running.reload(Ok(reload)).unwrap();
    client.command("RSET").await;
    assert!(
        client
            .transaction(
                "a@example.com",
                &["d@example.com", "e@example.com"],
                MESSAGE
            )
            .await
            .starts_with("250")
    );
    assert_eq!(send_to(&mut client, &["f@example.com"]).await, DAILY);
    // A broken file keeps the running limits.
    std::fs::write(server.dir.join("send-quota.json"), b"{\"Max24HourSend\": 5").unwrap();
    let mut broken = running_config(&server);
    broken.quotas.from_upstream = "send-quota.json".into();
    let error = running.reload(Ok(broken)).unwrap_err().to_string();
    assert!(error.contains("send-quota.json"), "{error}");
    server.stop().await;
}

/// The configuration a test server runs (for a reload): its directory's policies and outbox.
fn running_config(server: &TestServer) -> sesgate::config::Config {
    let mut config = sesgate::config::Config {
        hostname: "gw.test".into(),
        base_dir: server.dir.clone(),
        ..Default::default()
    };
    config.upstream.url = "file://outbox".into();
    config.metrics.listen = "127.0.0.1:0".into();
    config.metrics.per_user = true;
    config
}

/// A user with no quota and an account with none: nothing is counted, no store is asked.
#[tokio::test]
async fn no_quota_configured_counts_nothing() {
    let server = Gateway::default().start().await;
    let mut client = client(&server).await;
    for _ in 0..3 {
        relayed(&mut client, "b@example.com").await;
    }
    assert_eq!(
        metric(&server, "sesgate_quota_store_latency_seconds_count").await,
        0.0
    );
    assert!(
        http_get(&server, "/ready")
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    server.stop().await;
}
