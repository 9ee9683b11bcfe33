//! The cost of SMTP AUTH (SPEC §12: a repeated AUTH must not pay argon2 every time): a first
//! check of a credential (argon2id verify on the blocking pool) against a repeated check of the
//! same credential (served from the verified cache).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::time::Duration;

use sesgate::credentials::{CredentialStore, Login, VerificationGate, hash_password};

const USER: &str = "AKIAEXAMPLEBENCH0001";
const PASSWORD: &str = "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9";

fn store(hash: &str) -> CredentialStore {
    CredentialStore::new(vec![Login {
        smtp_username: USER.into(),
        iam_user: "bench".into(),
        password_hash: hash.into(),
    }])
    .expect("valid bench credential")
}

fn auth(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let hash = hash_password(PASSWORD);
    let gate = VerificationGate::new(0, 64, Duration::from_secs(60));
    let mut group = c.benchmark_group("auth");
    group.sample_size(20);
    group.bench_function("first", |b| {
        b.iter_batched(
            || store(&hash),
            |store| {
                let user =
                    runtime.block_on(store.check(black_box(USER), black_box(PASSWORD), &gate));
                assert!(user.iam_user().is_some());
            },
            BatchSize::PerIteration,
        )
    });
    let warm = store(&hash);
    assert!(
        runtime
            .block_on(warm.check(USER, PASSWORD, &gate))
            .iam_user()
            .is_some()
    );
    group.sample_size(100);
    group.bench_function("repeated", |b| {
        b.iter(|| {
            let user = runtime.block_on(warm.check(black_box(USER), black_box(PASSWORD), &gate));
            assert!(user.iam_user().is_some());
        })
    });
    group.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
