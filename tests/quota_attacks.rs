//! Attacks on the SES sending quotas (issue 12): a hostile authenticated client trying to relay
//! more than its quotas allow, to make the gateway refuse others' mail, or to make the counts
//! wrong. Real sesgate servers on loopback, real SMTP, a real upstream sink where the upstream
//! matters, and a real `redis-server` where the store matters (skipped with a notice when absent,
//! unless SESGATE_REQUIRE_INTEROP=1). Every assertion is a count; waits are deadline loops.

mod support;

use std::time::{Duration, Instant};

use support::quotas::*;
use support::redis::RedisServer;
use support::sink::{DataReply, Sink};
use support::*;

/// The Redis key of the test account's own counters.
const ACCOUNT_KEY: &str = "sesgate:{123456789012}:account";

/// A gateway counting in `redis` with `quotas`, and a client of it whose first message
/// (to `first`) went.
async fn counting_in(
    redis: &RedisServer,
    quotas: impl FnOnce(&mut sesgate::config::Quotas) + Send + 'static,
    first: &str,
) -> (TestServer, Client) {
    let server = Gateway {
        store: Some(redis.url()),
        ..Gateway::default()
    }
    .quotas(quotas)
    .start()
    .await;
    let mut client = client(&server).await;
    relayed(&mut client, first).await;
    (server, client)
}

fn recipients(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i}@example.com")).collect()
}

/// Recipients accepted at RCPT and then reset (RSET, a new MAIL after RSET, QUIT) take
/// nothing: the quota is taken at the end of DATA only, so the client gets exactly the quota.
#[tokio::test]
async fn recipients_reset_before_data_take_nothing() {
    let server = Gateway::default()
        .quotas(|q| q.max_24_hour_send = 2)
        .start()
        .await;
    let mut client = client(&server).await;
    for _ in 0..5 {
        client
            .send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\nRSET\r\n")
            .await;
        for _ in 0..4 {
            assert!(client.reply().await.starts_with("250"));
        }
    }
    // A connection dropped after its RCPTs takes nothing either.
    let mut dropped = self::client(&server).await;
    dropped.command("MAIL FROM:<a@example.com>").await;
    assert!(
        dropped
            .command("RCPT TO:<z@example.com>")
            .await
            .starts_with("250")
    );
    drop(dropped);
    assert!(
        send_to(&mut client, &["p@example.com", "q@example.com"])
            .await
            .starts_with("250")
    );
    assert_eq!(send_to(&mut client, &["s@example.com"]).await, DAILY);
    assert_eq!(relayed_recipients(&server), 2);
    server.stop().await;
}

/// A message the upstream refuses is given back exactly once: a second refund would give back
/// another message's recipients, and the client would relay more than the quota.
#[tokio::test]
async fn a_failed_message_is_given_back_once() {
    let sink = Sink::start().await;
    let server = Gateway {
        upstream: Some(sink.clone()),
        ..Gateway::default()
    }
    .quotas(|q| q.max_24_hour_send = 2)
    .start()
    .await;
    let mut client = client(&server).await;
    relayed(&mut client, "a1@example.com").await;
    sink.set_reply(DataReply::Reply("550 5.7.1 No".into()));
    for _ in 0..3 {
        assert!(
            send_to(&mut client, &["b@example.com"])
                .await
                .starts_with("550")
        );
    }
    sink.set_reply(DataReply::Reply("451 4.3.0 Later".into()));
    assert!(
        send_to(&mut client, &["b@example.com"])
            .await
            .starts_with("451")
    );
    sink.set_reply(DataReply::Accept);
    relayed(&mut client, "a2@example.com").await;
    assert_eq!(send_to(&mut client, &["a3@example.com"]).await, DAILY);
    assert_eq!(sink.accepted().len(), 2);
    server.stop().await;
}

/// A message with more recipients than one second of sending goes from a full bucket (SES's
/// short burst), but only once: the debt is paid before anything else goes, and a refused
/// burst gives back no more than a full bucket, so bursts cannot repeat.
#[tokio::test]
async fn a_burst_larger_than_the_bucket_goes_once_then_waits() {
    let sink = Sink::start().await;
    let server = Gateway {
        upstream: Some(sink.clone()),
        ..Gateway::default()
    }
    .quotas(|q| {
        q.max_send_rate = 1.0;
        q.max_rate_wait_ms = 200;
    })
    .start()
    .await;
    let mut client = client(&server).await;
    let fifty = recipients(50);
    let fifty: Vec<&str> = fifty.iter().map(String::as_str).collect();
    // Refused upstream: given back, but to a full bucket only.
    sink.set_reply(DataReply::Reply("550 5.7.1 No".into()));
    assert!(send_to(&mut client, &fifty).await.starts_with("550"));
    sink.set_reply(DataReply::Accept);
    assert!(send_to(&mut client, &fifty).await.starts_with("250"));
    // 49 recipients of debt: neither another burst nor a single recipient goes now.
    assert_eq!(send_to(&mut client, &fifty).await, RATE);
    assert_eq!(send_to(&mut client, &["one@example.com"]).await, RATE);
    // From another connection too (the bucket is the account's).
    let mut other = self::client(&server).await;
    assert_eq!(send_to(&mut other, &["two@example.com"]).await, RATE);
    assert_eq!(sink.accepted().len(), 1);
    server.stop().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The store's clock stepped back an hour (NTP correcting a fast clock) while the account's
/// rate bucket was empty: the bucket refills from the new time at once. Before, nothing
/// refilled until the clock caught up with the bucket's last update, and every message of
/// every user got `454 Maximum sending rate exceeded` for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_stepping_back_does_not_stop_the_rate_for_that_long() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (server, mut client) = counting_in(
        &redis,
        |q| {
            q.max_send_rate = 10.0;
            q.max_rate_wait_ms = 3000;
        },
        "first@example.com",
    )
    .await;
    // The bucket as the server's clock an hour ahead left it: empty, last updated "now".
    let ahead = now_ms() + 3_600_000;
    let reply = redis
        .command(&format!("HSET {ACCOUNT_KEY} tokens 0 at {ahead}"))
        .unwrap();
    assert!(reply.starts_with(':'), "{reply}");
    // Its expiry is the server's wall clock too: an hour back, the key lives an hour longer.
    let reply = redis
        .command(&format!("PEXPIRE {ACCOUNT_KEY} 3600000"))
        .unwrap();
    assert_eq!(reply, ":1");
    // One recipient needs 100 ms at 10 per second: within max_rate_wait_ms.
    let started = Instant::now();
    relayed(&mut client, "second@example.com").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

/// A user listed in one group twice (`groups = ["bulk", "bulk"]`) is held to the group's quota
/// once: its recipients are counted once, so it sends exactly the quota (counted twice, it got
/// half in memory; in Redis the minute's count and the window's total disagreed, and the window
/// let through more than the quota once that minute left it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_listed_twice_counts_once() {
    let redis = RedisServer::start();
    let users = user_toml(
        "test-app",
        "/apps/",
        USER,
        PASSWORD,
        "policies = [\"AllowSendingOnly\"]\ngroups = [\"bulk\", \"bulk\"]",
    );
    for store in [None, redis.as_ref().map(RedisServer::url)] {
        let redis_store = store.is_some();
        let server = Gateway {
            store,
            users: Some(users.clone()),
            groups: "[[group]]\nname = \"bulk\"\nmax_24_hour_send = 4\n".into(),
            ..Gateway::default()
        }
        .start()
        .await;
        let mut client = client(&server).await;
        for i in 0..4 {
            let reply = send_to(&mut client, &[&format!("g{i}@example.com")]).await;
            assert!(reply.starts_with("250"), "{i}: {reply}");
        }
        assert_eq!(send_to(&mut client, &["over@example.com"]).await, DAILY);
        if let (true, Some(redis)) = (redis_store, &redis) {
            let key = "sesgate:{123456789012}:group:bulk";
            assert_eq!(redis.command(&format!("HGET {key} total")).unwrap(), "$1");
            // The minute buckets hold what the total says: 4 in all.
            let mut counted = 0;
            let minute = now_ms() / 60_000;
            for m in minute - 2..=minute + 1 {
                let line = redis.command(&format!("HGET {key} {m}")).unwrap();
                if line.starts_with('$') && line != "$-1" {
                    let value = redis_value(redis, &format!("HGET {key} {m}"));
                    counted += value.parse::<u64>().unwrap();
                }
            }
            assert_eq!(counted, 4);
        }
        server.stop().await;
    }
}

/// A bulk string reply's value (`RedisServer::command` gives the first line only).
fn redis_value(redis: &RedisServer, line: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(format!("{line}\r\nQUIT\r\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.lines().nth(1).unwrap_or_default().to_owned()
}

/// Redis forgets its scripts (SCRIPT FLUSH, a failover to a replica): the next check loads them
/// again (NOSCRIPT is not a store error), and the counts are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_scripts_are_loaded_again() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (server, mut client) =
        counting_in(&redis, |q| q.max_24_hour_send = 3, "a@example.com").await;
    assert_eq!(redis.command("SCRIPT FLUSH").unwrap(), "+OK");
    relayed(&mut client, "b@example.com").await;
    assert_eq!(redis.command("SCRIPT FLUSH").unwrap(), "+OK");
    relayed(&mut client, "c@example.com").await;
    assert_eq!(send_to(&mut client, &["d@example.com"]).await, DAILY);
    server.stop().await;
}

/// A frozen Redis (SIGSTOP: the connection open, nothing answering): each message is refused
/// with 451 after about the store timeout, never held longer; once Redis runs again, messages
/// go again, and what the refused messages asked for is not counted against the quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_store_refuses_in_bounded_time_and_counts_nothing_refused() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (server, mut client) = counting_in(
        &redis,
        |q| {
            q.max_24_hour_send = 3;
            q.store_timeout_ms = 300;
        },
        "a@example.com",
    )
    .await;
    redis.pause();
    for i in 0..3 {
        let started = Instant::now();
        assert_eq!(
            send_to(&mut client, &[&format!("f{i}@example.com")]).await,
            UNAVAILABLE
        );
        // One RCPT check and one end-of-DATA check, each bounded by the store timeout.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = send_to(&mut client, &["b@example.com"]).await;
        if reply.starts_with("250") {
            break;
        }
        assert_eq!(reply, UNAVAILABLE);
        assert!(Instant::now() < deadline, "still refused after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two relayed: the quota of 3 has one left, whatever the frozen server ran late.
    relayed(&mut client, "c@example.com").await;
    assert_eq!(send_to(&mut client, &["d@example.com"]).await, DAILY);
    assert_eq!(relayed_recipients(&server), 3);
    server.stop().await;
}
