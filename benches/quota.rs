//! The cost of a quota check per message (issue 12): `check_and_consume` of one recipient
//! against two scopes (the account and the user, each with a rate and a 24-hour quota), in
//! memory and through a real `redis-server` (started here on a free loopback port; skipped with
//! a notice when it is not installed). Through Redis both one check at a time (the latency a
//! message waits) and 32 callers at once on the one multiplexed connection (the cost per check
//! when many sessions end DATA together).

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sesgate::quota::{Limit, QuotaStore, Scope, Verdict};

fn limits() -> Vec<Limit> {
    // Never reached: the bench measures the check, not a refusal.
    let limit = |scope| Limit {
        scope,
        max_send_rate: 1e12,
        max_24_hour_send: 1 << 50,
    };
    vec![
        limit(Scope::Account),
        limit(Scope::User("bench-app".into())),
    ]
}

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(redis)
}

fn check(runtime: &tokio::runtime::Runtime, store: &QuotaStore, limits: &[Limit]) {
    let verdict = runtime
        .block_on(store.check_and_consume(black_box(limits), 1))
        .expect("the store answers");
    assert!(matches!(verdict, Verdict::Allowed(_)));
}

fn quota(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let limits = limits();
    let mut group = c.benchmark_group("quota_check");
    let memory = QuotaStore::open("memory", "123456789012", Duration::from_secs(1)).unwrap();
    group.bench_function("memory", |b| b.iter(|| check(&runtime, &memory, &limits)));

    let Some(redis) = start_redis() else {
        eprintln!("notice: redis-server is not installed; skipping the Redis benchmarks");
        group.finish();
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", redis.1);
    let store = runtime.block_on(async {
        QuotaStore::open(&url, "123456789012", Duration::from_secs(2)).unwrap()
    });
    check(&runtime, &store, &limits);
    group.bench_function("redis", |b| b.iter(|| check(&runtime, &store, &limits)));

    let store = Arc::new(store);
    let limits = Arc::new(limits);
    group.bench_function("redis_32_concurrent", |b| {
        b.iter_custom(|iterations| {
            let per_task = iterations.div_ceil(32);
            let started = Instant::now();
            runtime.block_on(async {
                let tasks: Vec<_> = (0..32)
                    .map(|_| {
                        let (store, limits) = (Arc::clone(&store), Arc::clone(&limits));
                        tokio::spawn(async move {
                            for _ in 0..per_task {
                                let verdict = store.check_and_consume(&limits, 1).await;
                                assert!(matches!(verdict, Ok(Verdict::Allowed(_))));
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
            started
                .elapsed()
                .mul_f64(iterations as f64 / (per_task * 32) as f64)
        })
    });
    group.finish();
}

criterion_group!(benches, quota);
criterion_main!(benches);
