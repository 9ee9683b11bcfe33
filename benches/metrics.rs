//! The metric updates one relayed message makes (issue 15, "static metric labels"): the
//! transaction by decision, the upstream result and latency, the decision latency, the
//! recipients against the account's and the user's quota scopes, what is left of the account's
//! 24-hour quota, and the transaction by user (`[metrics] per_user`). Timed by criterion, and the
//! heap allocations per message counted by a counting allocator (noise-free on a shared
//! machine) and printed before the timing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use sesgate::metrics::Metrics;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the gateway updates for one allowed, relayed message of user `demo` with one
/// recipient and per-user metrics on (handler.rs, quota.rs).
fn per_message(metrics: &Metrics) {
    metrics.decision_latency.observe(black_box(0.000_004));
    metrics.quota.count_recipients("account", "", 1);
    metrics.quota.count_recipients("user", black_box("demo"), 1);
    metrics.quota.set_remaining_24h("account", "", 49_999);
    metrics.count_upstream(black_box("ok"), black_box(0.002));
    metrics.count_transaction(black_box("allowed"));
    metrics.count_user_transaction(black_box("demo"), "allowed");
}

fn metric_updates(c: &mut Criterion) {
    let metrics = Metrics::default();
    // The first message creates the series; every later one only finds them.
    per_message(&metrics);
    let messages = 10_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..messages {
        per_message(&metrics);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "metric updates of one relayed message: {:.1} heap allocations",
        allocations as f64 / messages as f64
    );
    c.bench_function("metric_updates_per_message", |b| {
        b.iter(|| per_message(&metrics))
    });
}

criterion_group!(benches, metric_updates);
criterion_main!(benches);
