#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 30), one after the other.
# Exits non-zero when any target crashes; the crashing input is in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Stable toolchain: `-s none` (no sanitizer) needs no nightly flag; see README.md. New corpus
# entries go to fuzz/work/<target>/ (ignored by git); fuzz/corpus/<target>/ holds the committed
# seeds and is only read.
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD

seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(smtp_session data_reader policy_json request_builder)
fi

command -v cargo-fuzz >/dev/null 2>&1 || {
  echo "fuzz: cargo-fuzz is missing: cargo install --locked cargo-fuzz" >&2
  exit 2
}

# The fuzz crate's Cargo.lock must be complete: fail instead of resolving anew.
cargo fetch --locked
cargo fuzz build -s none -a

failed=()
for target in "${targets[@]}"; do
  mkdir -p "$here/work/$target" "$here/artifacts/$target"
  echo "fuzz: $target for ${seconds}s"
  if ! cargo fuzz run -s none -a "$target" "$here/work/$target" "$here/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
      -dict="$here/dict/$target.dict" -print_final_stats=1 2>"$here/work/$target.log"; then
    failed+=("$target")
    tail -n 60 "$here/work/$target.log" >&2
  else
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$here/work/$target.log" || true
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crash"
