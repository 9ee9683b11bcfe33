//! The quota stores on their own: the Redis scripts against a real `redis-server` (skipped with
//! a notice when it is not installed, unless SESGATE_REQUIRE_INTEROP=1), checked to count as the
//! memory store does and to stay exact when many callers race.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sesgate::quota::{Limit, QuotaStore, Scope, Verdict};
use support::redis::RedisServer;

fn limit(scope: Scope, rate: f64, daily: u64) -> Limit {
    Limit {
        scope,
        max_send_rate: rate,
        max_24_hour_send: daily,
    }
}

fn redis_store(server: &RedisServer, account: &str) -> QuotaStore {
    QuotaStore::open(&server.url(), account, Duration::from_secs(2)).unwrap()
}

fn allowed(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Allowed(_))
}

/// Both stores answer the same sequence the same way (all within one minute, with rates far
/// from refilling in between).
#[tokio::test]
async fn redis_counts_as_the_memory_store_does() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let stores = [
        QuotaStore::open("memory", "111111111111", Duration::from_secs(1)).unwrap(),
        redis_store(&server, "111111111111"),
    ];
    let user = Scope::User("app".into());
    let group = Scope::Group("senders".into());
    let daily = [
        limit(Scope::Account, 0.0, 20),
        limit(group.clone(), 1000.0, 12),
        limit(user.clone(), 0.0, 8),
    ];
    let slow = [
        limit(Scope::Account, 0.0, 20),
        limit(user.clone(), 0.001, 0),
    ];
    let mut outcomes: Vec<Vec<String>> = Vec::new();
    for store in &stores {
        let mut seen = Vec::new();
        // (limits, recipients, refund: as if the relay failed)
        let steps: [(&[Limit], u32, bool); 11] = [
            (&daily, 3, true),
            (&daily, 3, false),
            (&daily, 1, false),
            (&daily, 5, false),
            (&daily, 2, false),
            (&daily, 2, false),
            (&daily, 1, false),
            (&slow, 2, true),
            (&slow, 2, false),
            (&slow, 1, false),
            (&daily, 1, false),
        ];
        for (limits, recipients, refund) in steps {
            let verdict = store.check_and_consume(limits, recipients).await.unwrap();
            seen.push(match &verdict {
                Verdict::Allowed(r) => format!("allowed {:?}", r.used_24h),
                Verdict::RateExceeded { scope, .. } => format!("rate {scope}"),
                Verdict::DailyExceeded { scope } => format!("daily {scope}"),
            });
            if let (Verdict::Allowed(r), true) = (&verdict, refund) {
                store.refund(r).await.unwrap();
            }
        }
        seen.push(format!(
            "exceeds {:?}",
            store.daily_exceeded(&daily, 1).await.unwrap()
        ));
        outcomes.push(seen);
    }
    assert_eq!(outcomes[0], outcomes[1]);
    let used = |a: u64, g: u64, u: u64| {
        format!(
            "allowed [(Account, Some({a})), (Group(\"senders\"), Some({g})), (User(\"app\"), Some({u}))]"
        )
    };
    let expected = [
        used(3, 3, 3),
        used(3, 3, 3), // the refund gave the first three back
        used(4, 4, 4),
        "daily user:app".to_owned(), // 4 + 5 > 8
        used(6, 6, 6),
        used(8, 8, 8),
        "daily user:app".to_owned(),
        "allowed [(Account, Some(10)), (User(\"app\"), None)]".to_owned(),
        // Refunded: the bucket is full again, so two more go (a burst past one second)...
        "allowed [(Account, Some(10)), (User(\"app\"), None)]".to_owned(),
        // ...and then it is in debt.
        "rate user:app".to_owned(),
        "daily user:app".to_owned(),
        "exceeds Some(User(\"app\"))".to_owned(),
    ];
    assert_eq!(outcomes[0], expected);
}

/// Many callers at once, on two connections (two instances): exactly the quota is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_callers_take_exactly_the_quota() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let instances = [
        Arc::new(redis_store(&server, "222222222222")),
        Arc::new(redis_store(&server, "222222222222")),
    ];
    let limits = Arc::new(vec![limit(Scope::Account, 0.0, 57)]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (store, limits) = (Arc::clone(&instances[i % 2]), Arc::clone(&limits));
        tasks.push(tokio::spawn(async move {
            store.check_and_consume(&limits, 1).await.unwrap()
        }));
    }
    let mut taken = 0;
    for task in tasks {
        if allowed(&task.await.unwrap()) {
            taken += 1;
        }
    }
    assert_eq!(taken, 57);
    assert_eq!(
        instances[0].daily_exceeded(&limits, 1).await.unwrap(),
        Some(Scope::Account)
    );
}

/// Another account's counters are its own: the keys carry the account id.
#[tokio::test]
async fn accounts_do_not_share_counters() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = redis_store(&server, "333333333333");
    let b = redis_store(&server, "444444444444");
    let limits = [limit(Scope::Account, 0.0, 1)];
    assert!(allowed(&a.check_and_consume(&limits, 1).await.unwrap()));
    assert!(allowed(&b.check_and_consume(&limits, 1).await.unwrap()));
    assert!(!allowed(&a.check_and_consume(&limits, 1).await.unwrap()));
    // (Reservation records aside: `sesgate:{ACCOUNT}:reservation:...`.)
    let keys = server.command("KEYS sesgate:*:account").unwrap();
    assert!(keys.starts_with("*2"), "{keys}");
    let ttl = server
        .command("PTTL sesgate:{333333333333}:account")
        .unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!(ttl > 24 * 3600 * 1000 && ttl <= 1442 * 60 * 1000, "{ttl}");
}

/// SES's SentLast24Hours raises the count, never lowers it.
#[tokio::test]
async fn raising_the_count_is_idempotent() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = redis_store(&server, "555555555555");
    assert_eq!(store.raise_daily(&Scope::Account, 40).await.unwrap(), 40);
    assert_eq!(store.raise_daily(&Scope::Account, 10).await.unwrap(), 40);
    let limits = [limit(Scope::Account, 0.0, 42)];
    assert!(allowed(&store.check_and_consume(&limits, 2).await.unwrap()));
    assert_eq!(
        store.check_and_consume(&limits, 1).await.unwrap(),
        Verdict::DailyExceeded {
            scope: Scope::Account
        }
    );
}

/// A stopped server is an error within the timeout, and the store works again once it is back.
#[tokio::test]
async fn a_restarted_server_is_used_again() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let store =
        QuotaStore::open(&server.url(), "666666666666", Duration::from_millis(300)).unwrap();
    let limits = [limit(Scope::Account, 0.0, 100)];
    assert!(allowed(&store.check_and_consume(&limits, 1).await.unwrap()));
    server.stop();
    let started = std::time::Instant::now();
    assert!(store.check_and_consume(&limits, 1).await.is_err());
    assert!(store.ping().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match store.check_and_consume(&limits, 1).await {
            Ok(verdict) => {
                assert!(allowed(&verdict));
                break;
            }
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "{error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(store.ping().await.is_ok());
}

/// The Lua window over days, on a clock the test sets: `redis.lua` with its `now_ms` reading a
/// key instead of the server's TIME, step for step against the memory store on the same clock.
#[tokio::test]
async fn the_lua_window_slides_as_the_memory_store_does() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let Some(server) = RedisServer::start() else {
        return;
    };
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/quota/redis.lua"))
            .unwrap();
    let section = |name: &str| {
        let marker = format!("--@{name}\n");
        let start = source.find(&marker).unwrap() + marker.len();
        let end = source[start..]
            .find("\n--@")
            .map_or(source.len(), |e| start + e + 1);
        source[start..end].to_owned()
    };
    let prelude = section("PRELUDE");
    let clock_at = prelude.find("local function now_ms()").unwrap();
    let clock_end = clock_at + prelude[clock_at..].find("\nend\n").unwrap() + 5;
    let prelude = format!(
        "{}local function now_ms() return tonumber(redis.call('GET', 'test:now')) end\n{}",
        &prelude[..clock_at],
        &prelude[clock_end..]
    );
    let reserve = redis::Script::new(&format!("{prelude}\n{}", section("RESERVE")));
    let exceeds = redis::Script::new(&format!("{prelude}\n{}", section("EXCEEDS")));
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();

    let now = Arc::new(AtomicU64::new(1_000_000 * 60_000));
    let clock = Arc::clone(&now);
    let memory =
        sesgate::quota::MemoryStore::with_clock(Arc::new(move || clock.load(Ordering::Relaxed)));
    let limits = [limit(Scope::Account, 0.0, 3)];
    const MINUTE: u64 = 60_000;
    // (ms after the start, recipients to reserve)
    let steps: [(u64, u32); 10] = [
        (10_000, 2),
        (5 * MINUTE, 1),
        (10 * MINUTE, 1),
        (1440 * MINUTE, 1),     // 24 h after the start: the first two still count
        (1441 * MINUTE - 1, 1), // not yet: their minute is not wholly 24 h old
        (1441 * MINUTE, 2),     // now they are gone: 1 + 2
        (1441 * MINUTE + 1_000, 1), // full again
        (1446 * MINUTE, 1),     // the one of minute 5 is gone
        (4 * 1440 * MINUTE, 3), // days later: everything is gone
        (4 * 1440 * MINUTE + 1, 1),
    ];
    let start = now.load(Ordering::Relaxed);
    let mut seen = Vec::new();
    for (step, (at, recipients)) in steps.into_iter().enumerate() {
        now.store(start + at, Ordering::Relaxed);
        let _: () = redis::cmd("SET")
            .arg("test:now")
            .arg(start + at)
            .query_async(&mut connection)
            .await
            .unwrap();
        let would_exceed: i64 = exceeds
            .key("w")
            .arg(recipients)
            .arg("0")
            .arg(3)
            .invoke_async(&mut connection)
            .await
            .unwrap();
        let reply: Vec<i64> = reserve
            .key("w")
            .key(format!("test:reservation:{step}"))
            .arg(recipients)
            .arg("0")
            .arg(3)
            .invoke_async(&mut connection)
            .await
            .unwrap();
        let expected = memory.check_and_consume(&limits, recipients);
        let lua = match reply[0] {
            0 => "daily".to_owned(),
            2 => format!("allowed {}", reply[4]),
            other => format!("status {other}"),
        };
        let rust = match &expected {
            Verdict::Allowed(r) => format!("allowed {}", r.used_24h[0].1.unwrap()),
            Verdict::DailyExceeded { .. } => "daily".to_owned(),
            other => format!("{other:?}"),
        };
        assert_eq!(lua, rust, "at +{at} ms, {recipients} recipients");
        assert_eq!(would_exceed == 1, lua == "daily", "at +{at} ms");
        seen.push(lua);
    }
    let allowed = |n: u32| format!("allowed {n}");
    let daily = || "daily".to_owned();
    assert_eq!(
        seen,
        [
            allowed(2),
            allowed(3),
            daily(),
            daily(),
            daily(),
            allowed(3),
            daily(),
            allowed(3),
            allowed(3),
            daily()
        ]
    );
}

/// CANCEL, sent after a RESERVE whose reply timed out, whichever runs first: after the RESERVE
/// it gives back what it took (once, however often it is sent); before it (the RESERVE still
/// on its way over a connection being replaced) it leaves a tombstone and the RESERVE takes
/// nothing.
#[tokio::test]
async fn a_cancelled_reservation_takes_nothing_whichever_runs_first() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/quota/redis.lua"))
            .unwrap();
    let section = |name: &str| {
        let marker = format!("--@{name}\n");
        let start = source.find(&marker).unwrap() + marker.len();
        let end = source[start..]
            .find("\n--@")
            .map_or(source.len(), |e| start + e + 1);
        source[start..end].to_owned()
    };
    let prelude = section("PRELUDE");
    let reserve = redis::Script::new(&format!("{prelude}\n{}", section("RESERVE")));
    let cancel = redis::Script::new(&format!("{prelude}\n{}", section("CANCEL")));
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    // One scope with a rate of 1 per second and a 24-hour quota of 5.
    fn run<'a>(script: &'a redis::Script, record: &str) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.key("scope").key(record).arg(1).arg("1").arg(5);
        invocation
    }
    let total = |server: &RedisServer| server.command("HGET scope total").unwrap();
    // RESERVE first, then CANCEL twice: taken, then given back once.
    let reply: Vec<i64> = run(&reserve, "r1")
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(reply[0], 2);
    let given: i64 = run(&cancel, "r1")
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(given, 1);
    let again: i64 = run(&cancel, "r1")
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(total(&server), "$1");
    assert_eq!(server.command("HGET scope tokens").unwrap(), "$1");
    // CANCEL first: the late RESERVE takes nothing.
    let given: i64 = run(&cancel, "r2")
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(given, 0);
    let reply: Vec<i64> = run(&reserve, "r2")
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(reply[0], 3);
    // Nothing counted: the whole quota is left (a bucket of one recipient, full).
    let reply: Vec<i64> = run(&reserve, "r3")
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!((reply[0], reply[4]), (2, 1));
    let ttl = server.command("PTTL r2").unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0 && ttl <= 10 * 60 * 1000, "{ttl}");
}
