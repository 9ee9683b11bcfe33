#!/usr/bin/env bash
# Smoke test of the Debian package, run by .ci/run (as root, on Debian): builds it
# (dist/build-deb.sh), installs it with dpkg, checks what an operator relies on, upgrades it in
# place, then removes and purges it and checks that nothing is left. Needs root, dpkg and
# cargo-deb; refuses to run where a sesgate package is already installed, and purges its own
# install on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
ok() {
  passed=$((passed + 1))
  echo "deb-smoke: ok: $*"
}
fail() {
  echo "deb-smoke: FAILED: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (dpkg -i)"
if dpkg-query -W -f='${Status}' sesgate 2>/dev/null | grep -q 'install ok'; then
  fail "a sesgate package is already installed; remove it first (dpkg -P sesgate)"
fi

deb=$(dist/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "dist/build-deb.sh made no package ($deb)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  if dpkg-query -W -f='${Status}' sesgate 2>/dev/null | grep -q 'installed'; then
    dpkg -P sesgate >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Every systemctl or deb-systemd-invoke call in the maintainer scripts is guarded by
# `[ -d /run/systemd/system ]`: nothing is started or reloaded where systemd is not running.
dpkg-deb -e "$deb" "$work/control"
python3 - "$work/control" <<'EOF' || fail "an unguarded systemctl call in the maintainer scripts"
import pathlib, sys
for script in ("preinst", "postinst", "prerm", "postrm"):
    path = pathlib.Path(sys.argv[1], script)
    if not path.exists():
        continue
    guards = []  # one entry per open `if`: whether it tests /run/systemd/system
    heredoc = None  # the end marker while inside a here-document (text, not commands)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        code = line.split("#", 1)[0].strip()
        if "<<" in code:
            heredoc = code.split("<<", 1)[1].strip().strip("'\"-")
        if code.startswith("if "):
            guards.append("/run/systemd/system" in code)
        elif code == "fi":
            guards.pop()
        elif ("systemctl" in code or "deb-systemd-invoke" in code) and not any(guards):
            sys.exit(f"{script}:{number}: {line.strip()}")
EOF
ok "every systemctl call is guarded by [ -d /run/systemd/system ]"

# Attack: a `sesgate` account that is not a system user (someone's login) must not be handed the
# configuration: the install fails. It needs the name free, so it runs where no sesgate user
# exists, or in CI (CI=true), where a system user left by an earlier run is deleted first.
if getent passwd sesgate >/dev/null && [ "${CI:-}" != true ]; then
  echo "deb-smoke: notice: a sesgate user exists; not trying the install over a login user (CI=true does)"
else
  if getent passwd sesgate >/dev/null; then userdel sesgate; fi
  if getent group sesgate >/dev/null; then groupdel sesgate; fi
  useradd --no-create-home --shell /bin/sh sesgate
  if dpkg -i "$deb" >"$work/hijack.log" 2>&1; then
    fail "installed over a login user named sesgate"
  fi
  grep -q 'not a system user' "$work/hijack.log" || fail "dpkg -i: $(cat "$work/hijack.log")"
  dpkg -P sesgate >/dev/null 2>&1 || fail "purging the failed install"
  userdel sesgate
  if getent group sesgate >/dev/null; then groupdel sesgate; fi
  ok "refused: a login user named sesgate"
fi

dpkg -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "dpkg -i $deb"; }
grep -q 'sesgate is installed but not enabled' "$work/install.log" || fail "postinst printed no next steps"
ok "dpkg -i $deb"

# The binary.
[ "$(command -v sesgate)" = /usr/bin/sesgate ] || fail "sesgate is not /usr/bin/sesgate"
[ "$(sesgate --version)" = "sesgate $version" ] || fail "sesgate --version: $(sesgate --version)"
ok "sesgate --version is sesgate $version"

# Man pages, one per subcommand, and completions for bash, zsh and fish.
for page in sesgate sesgate-serve sesgate-check sesgate-simulate sesgate-simulate-custom-policy \
  sesgate-smtp-password sesgate-hash-password sesgate-replay sesgate-promote sesgate-import \
  sesgate-queue sesgate-queue-list; do
  [ -f "/usr/share/man/man1/$page.1.gz" ] || fail "no man page $page.1.gz"
done
if command -v man >/dev/null 2>&1; then
  [ "$(man -w sesgate)" = /usr/share/man/man1/sesgate.1.gz ] || fail "man -w sesgate: $(man -w sesgate)"
  man -P cat sesgate-check 2>/dev/null | grep -q -- '--strict' || fail "man sesgate-check does not render"
fi
ok "man pages"
for file in /usr/share/bash-completion/completions/sesgate /usr/share/zsh/vendor-completions/_sesgate \
  /usr/share/fish/vendor_completions.d/sesgate.fish; do
  [ -s "$file" ] && grep -q 'simulate-custom-policy' "$file" || fail "completion $file"
done
bash -n /usr/share/bash-completion/completions/sesgate || fail "the bash completion does not parse"
ok "completions"
python3 -m json.tool /usr/share/sesgate/grafana/sesgate.json >/dev/null || fail "the Grafana dashboard"
ok "Grafana dashboard"

# The system user, and the configuration readable by it and root only.
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd sesgate) || fail "no sesgate user"
[ "$uid" -lt 1000 ] && [ "$home" = /var/lib/sesgate ] || fail "sesgate is not a system user ($uid, $home)"
case "$shell" in */nologin | */false) ;; *) fail "sesgate has a login shell: $shell" ;; esac
getent group sesgate >/dev/null || fail "no sesgate group"
for dir in /etc/sesgate /etc/sesgate/policies; do
  [ "$(stat -c '%U:%G %a' "$dir")" = "root:sesgate 750" ] || fail "$dir is $(stat -c '%U:%G %a' "$dir")"
done
[ "$(stat -c '%U:%G %a' /var/lib/sesgate)" = "sesgate:sesgate 750" ] || fail "/var/lib/sesgate"
if runuser -u nobody -- cat /etc/sesgate/policies/iam.toml >/dev/null 2>&1; then
  fail "another user can read iam.toml"
fi
ok "sesgate system user; /etc/sesgate root:sesgate 0750"

# Conffiles, and the unit: installed, verified, neither enabled nor started.
conffiles=$(dpkg-query -W -f='${Conffiles}' sesgate)
for file in /etc/sesgate/sesgate.toml /etc/sesgate/policies/iam.toml /etc/sesgate/policies/AllowSendingOnly.json; do
  grep -q " $file " <<<"$conffiles" || fail "$file is not a conffile"
done
ok "conffiles"
unit=$(dpkg -L sesgate | grep '/systemd/system/sesgate.service$')
if ! systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || [ -s "$work/verify.log" ]; then
  cat "$work/verify.log" >&2
  fail "systemd-analyze verify $unit"
fi
[ ! -e /etc/systemd/system/multi-user.target.wants/sesgate.service ] || fail "the unit was enabled"
ok "systemd-analyze verify $unit; not enabled"

# check on the shipped configuration, found without --config: outside the service the upstream
# password (a systemd credential) is absent, so exit 2 with that error on stderr and a note.
set +e
(cd / && sesgate check >"$work/check.out" 2>"$work/check.err")
status=$?
set -e
[ "$status" -eq 2 ] || fail "check exited $status: $(cat "$work/check.out" "$work/check.err")"
grep -q '^configuration: /etc/sesgate/sesgate.toml (the system configuration)$' "$work/check.err" ||
  fail "check did not use /etc/sesgate/sesgate.toml: $(cat "$work/check.err")"
grep -q '^error: upstream: password_file /run/credentials/sesgate.service/upstream: No such file' "$work/check.err" ||
  fail "check: $(cat "$work/check.err")"
! grep -q '^error' "$work/check.out" || fail "an error on stdout: $(cat "$work/check.out")"
grep -q 'is a systemd credential' "$work/check.out" || fail "check: no credential note"
ok "sesgate check: exit 2, the missing credential on stderr"

# The README's walkthrough: a user added to iam.toml with a hash from `sesgate hash-password`.
hash=$(printf 'app password\n' | sesgate hash-password)
cat >>/etc/sesgate/policies/iam.toml <<EOF
[[group]]
name = "senders"
policies = ["AllowSendingOnly"]

[[user]]
name = "billing-app"
groups = ["senders"]

[[user.credentials]]
username = "billing-app"
password_hash = "$hash"
EOF
ok "a user added as the README shows"

# With a password it can read, the sesgate user checks and serves the shipped configuration
# (listeners moved to free loopback ports); serve generates the certificate in /var/lib/sesgate.
install -d -m 0755 "$work/run"
printf 'example\n' >"$work/run/upstream"
chmod 0644 "$work/run/upstream"
chmod 0755 "$work"
port1=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
port3=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#/run/credentials/sesgate.service/upstream#$work/run/upstream#" \
  -e "s#0.0.0.0:587#127.0.0.1:$port1#" -e "s#0.0.0.0:465#127.0.0.1:$port2#" \
  -e "s#127.0.0.1:9187#127.0.0.1:$port3#" /etc/sesgate/sesgate.toml >"$work/run/sesgate.toml"
chmod 0644 "$work/run/sesgate.toml"
runuser -u sesgate -- sesgate check --config "$work/run/sesgate.toml" >"$work/check2.out" 2>&1 ||
  fail "check with a password: $(cat "$work/check2.out")"
grep -q '0 error(s), 1 warning(s); 1 user(s)' "$work/check2.out" || fail "check: $(cat "$work/check2.out")"
ok "sesgate check as sesgate with a password: 0 errors, 1 user"
(cd /var/lib/sesgate && exec runuser -u sesgate -- sesgate serve --config "$work/run/sesgate.toml") >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  grep -q 'sesgate ready' "$work/serve.log" && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
grep -q 'sesgate ready' "$work/serve.log" || fail "serve did not start: $(cat "$work/serve.log")"
python3 - "$port1" "$port3" <<'EOF' || fail "no STARTTLS, AUTH or /health"
import smtplib, ssl, sys, urllib.request
# The certificate is the self-signed one serve just generated: not verified here.
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as smtp:
    smtp.starttls(context=ssl._create_unverified_context())
    code, _ = smtp.login("billing-app", "app password")
    assert code == 235, code
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/health", timeout=5) as r:
    assert r.status == 200, r.status
EOF
kill "$server"
wait "$server" 2>/dev/null || true
server=""
[ "$(stat -c '%U %a' /var/lib/sesgate/tls/sesgate.key)" = "sesgate 600" ] ||
  fail "the generated key is $(stat -c '%U %a' /var/lib/sesgate/tls/sesgate.key)"
ok "sesgate serve as sesgate: STARTTLS, AUTH as the new user, /health, key in /var/lib/sesgate/tls"

# An upgrade in place (same package again) keeps the user and the overrides.
dpkg -i "$deb" >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log" >&2; fail "reinstall"; }
[ "$(stat -c '%U:%G %a' /etc/sesgate)" = "root:sesgate 750" ] || fail "upgrade lost the override"
! grep -q 'installed but not enabled' "$work/upgrade.log" || fail "upgrade printed the first-install notice"
ok "upgrade in place"

# Remove keeps the configuration; purge leaves nothing but the user.
dpkg -r sesgate >/dev/null
[ ! -e /usr/bin/sesgate ] || fail "dpkg -r left /usr/bin/sesgate"
[ -f /etc/sesgate/sesgate.toml ] || fail "dpkg -r removed the configuration"
ok "dpkg -r"
dpkg -P sesgate >/dev/null
[ ! -e /etc/sesgate ] || fail "dpkg -P left /etc/sesgate: $(ls -la /etc/sesgate)"
[ ! -e /var/lib/sesgate ] || fail "dpkg -P left /var/lib/sesgate"
! dpkg-statoverride --list | grep -q /etc/sesgate || fail "dpkg -P left a statoverride"
! dpkg-query -W sesgate >/dev/null 2>&1 || fail "dpkg still knows sesgate"
ok "dpkg -P"

echo "deb-smoke: all $passed checks passed"
