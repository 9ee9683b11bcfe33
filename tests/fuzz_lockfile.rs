//! The fuzz crate (`fuzz/`) has its own lockfile, and `fuzz/run.sh` (run by `.ci/run`) builds it
//! with `--locked`. A dependency added to sesgate must be added there too, or CI's fuzzing step
//! fails only after the whole test suite: catch it here, at once.

use std::process::Command;

#[test]
fn the_fuzz_lockfile_is_current() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "fuzz/Cargo.lock is out of date: run `cargo fetch --manifest-path fuzz/Cargo.toml` and commit it\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
