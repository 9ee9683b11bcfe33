#!/usr/bin/env bash
# Builds the Debian package: the release binary, then its man pages and shell completions from
# the binary's own CLI definition (`sesgate generate-assets`, hidden), then `cargo deb` on the
# [package.metadata.deb] of Cargo.toml. The assets are made here, at package-build time, not by
# a build.rs on every build. Prints the path of the .deb on its last line.
#
#   dist/build-deb.sh            # needs cargo-deb: cargo install --locked cargo-deb
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null 2>&1 || {
  echo "build-deb: cargo-deb is missing: cargo install --locked cargo-deb" >&2
  exit 1
}

cargo build --release --locked --bin sesgate
target_dir=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# Cargo.toml's assets name target/deb-assets/ (relative to this checkout), whatever the target
# directory; start clean so no page of a removed subcommand is packaged.
rm -rf target/deb-assets
"$target_dir/release/sesgate" generate-assets --out target/deb-assets >&2

cargo deb --no-build --locked --output target/debian/ "$@" | tail -n 1
