#!/usr/bin/env python3
"""The anchor bench (issue 15 §3): Postfix's own load tools, three paths, one run.

    smtp-source -> smtp-sink                               (direct)
    smtp-source -> sesgate -> smtp-sink                    (sesgate, network principal, no AUTH)
    smtp-source -> a private Postfix relay -> smtp-sink    (postfix)

For each path and each messages-per-session setting it prints msg/s (from the first connection
to the last message received by smtp-sink) and the CPU time per message of sesgate, of all the
Postfix relay's processes (master and its children, reaped or alive) and of smtp-sink, read
from /proc/PID/stat (utime+stime, plus cutime+cstime of reaped children) before and after.

Usage (root, or a user allowed to start Postfix; Debian's postfix package installed):

    cargo build --release --bin sesgate
    python3 benches/anchor.py                       # 20 sessions, 10 KB, 1 and 100 per session
    python3 benches/anchor.py --messages 4000 --per-session 1,100 --paths direct,sesgate,postfix

"""

import argparse
import statistics
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tool(name):
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/usr/lib/postfix/sbin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    sys.exit(f"{name} not found: apt-get install postfix")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def ticks(pid, children=True):
    """utime+stime (+cutime+cstime) of one process, in clock ticks; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # After the ")": field 3 is state; utime is field 14, so index 11 here.
    t = int(fields[11]) + int(fields[12])
    if children:
        t += int(fields[13]) + int(fields[14])
    return t


def descendants(pid):
    """Every live descendant of pid."""
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return out


def tree_ticks(pid):
    """A process tree's CPU: the root with its reaped children, plus every live descendant
    (with theirs). A child that exits between two readings moves its time into its parent's
    cutime, so the difference of two readings counts it once."""
    return ticks(pid) + sum(ticks(p) for p in descendants(pid))


class Sink:
    """Postfix's smtp-sink, counting DATA completions (-c) on its stdout."""

    def __init__(self, workdir):
        self.port = free_port()
        args = [tool("smtp-sink"), "-c"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        args += [f"127.0.0.1:{self.port}", "1024"]
        self.out = open(os.path.join(workdir, "sink.out"), "w+b")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.DEVNULL, cwd=workdir)
        wait_port(self.port)

    def count(self):
        # -c writes "sess=N quit=N mesg=N\r" as sessions and messages complete.
        with open(self.out.name, "rb") as f:
            f.seek(max(0, os.path.getsize(self.out.name) - 128))
            tail = f.read()
        # Only lines that ended in "\r" are complete.
        for line in reversed(tail.split(b"\r")[:-1]):
            for word in line.split():
                if word.startswith(b"mesg=") and word[5:].isdigit():
                    return int(word[5:])
        return 0

    def cpu(self):
        return ticks(self.proc.pid, children=False)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Sesgate:
    """sesgate relaying to sink_port. The one user, `load-generator`, is identified by its
    network (127.0.0.0/8, no AUTH), or with `login=(username, password_hash)` by AUTH on a
    plaintext listener (allow_plaintext_auth)."""

    def __init__(self, workdir, sink_port, binary, tls=False, login=None):
        self.port = free_port()
        self.dir = os.path.join(workdir, "sesgate")
        os.makedirs(os.path.join(self.dir, "policies"), exist_ok=True)
        shutil.copy(
            os.path.join(ROOT, "policies", "AllowSendingOnly.json"),
            os.path.join(self.dir, "policies"),
        )
        user = '[[user]]\nname = "load-generator"\npolicies = ["AllowSendingOnly"]\n'
        if login:
            user += f'[[user.credentials]]\nusername = "{login[0]}"\npassword_hash = "{login[1]}"\n'
        else:
            user += 'networks = ["127.0.0.0/8"]\n'
        write(os.path.join(self.dir, "policies", "iam.toml"), user)
        upstream = f"smtp://127.0.0.1:{sink_port}"
        listener = 'tls = "none"\nauth = "none"\n'
        if login:
            listener = 'tls = "none"\nallow_plaintext_auth = true\n'
        if tls:
            listener = 'tls = "starttls"\nauth = "optional"\n'
        write(
            os.path.join(self.dir, "sesgate.toml"),
            f'hostname = "sesgate.test"\n[account]\nidentities = ["example.com"]\n'
            f'[iam]\ndir = "policies"\n'
            f'[[listener]]\naddress = "127.0.0.1:{self.port}"\n{listener}'
            f'[upstream]\nurl = "{upstream}"\npool_size = 32\n'
            f"[limits]\nmax_connections = 20000\nmax_connections_per_ip = 20000\n",
        )
        self.log = open(os.path.join(workdir, "sesgate.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", os.path.join(self.dir, "sesgate.toml")],
            stdout=self.log,
            stderr=self.log,
        )
        try:
            wait_port(self.port)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def cpu(self):
        return ticks(self.proc.pid, children=False)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Postfix:
    """A private Postfix instance: its own config and queue directories, one smtpd on a
    loopback port, relaying everything from 127.0.0.0/8 to [127.0.0.1]:sink without DNS."""

    def __init__(self, workdir, sink_port):
        self.port = free_port()
        self.conf = os.path.join(workdir, "postfix-etc")
        self.queue = os.path.join(workdir, "postfix-spool")
        self.data = os.path.join(workdir, "postfix-data")
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        shutil.chown(self.data, "postfix", "postfix")
        write(
            os.path.join(self.conf, "main.cf"),
            f"""compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = anchor-relay.test
mydomain = anchor.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{sink_port}
smtp_host_lookup = native
disable_dns_lookups = yes
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
default_process_limit = 100
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {workdir}/postfix.log
maillog_file_prefixes = {workdir}
""",
        )
        write(
            os.path.join(self.conf, "master.cf"),
            f"""127.0.0.1:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""",
        )
        subprocess.run(["postfix", "-c", self.conf, "start"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                self.master = int(f.read().strip())
            wait_port(self.port)
        except BaseException:
            self.stop()
            raise

    def cpu(self):
        return tree_ticks(self.master)

    def stop(self):
        subprocess.run(["postfix", "-c", self.conf, "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_source(port, messages, per_session, sessions, size):
    args = [tool("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-M", "client.test", "-f", "sender@example.com", "-t", "rcpt@example.com"]
    if per_session > 1:
        args.insert(1, "-d")
    args.append(f"127.0.0.1:{port}")
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def measure(name, target_port, sink, relay, messages, per_session, sessions, size):
    # With -d, smtp-source's sessions share the message count: each connection sends about
    # messages / sessions, so the count is chosen to make that per_session.
    total = messages if per_session == 1 else sessions * per_session * max(1, messages // (sessions * per_session))
    base = sink.count()
    relay_before = relay.cpu() if relay else 0
    sink_before = sink.cpu()
    started = time.monotonic()
    run_source(target_port, total, per_session, sessions, size)
    deadline = time.monotonic() + 120
    while sink.count() - base < total and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    received = sink.count() - base
    relay_us = (relay.cpu() - relay_before) / CLK_TCK / max(received, 1) * 1e6 if relay else None
    sink_us = (sink.cpu() - sink_before) / CLK_TCK / max(received, 1) * 1e6
    return {
        "path": name, "per_session": per_session, "messages": received, "sent": total,
        "rate": received / elapsed, "relay_us": relay_us, "sink_us": sink_us,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--per-session", default="1,100")
    ap.add_argument("--paths", default="direct,sesgate,postfix")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "sesgate"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds to wait (after a sync) before each measured path")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure the paths this many times in turn (direct, sesgate, postfix, direct, ...) "
                         "and summarize each ratio by its median over the rounds: on a shared machine one "
                         "round's ratio moves by 20 %% from run to run")
    args = ap.parse_args()
    paths = args.paths.split(",")
    workdir = tempfile.mkdtemp(prefix="sesgate-anchor-")
    os.chmod(workdir, 0o755)
    sink = sesgate = postfix = None
    results = []
    try:
        # Inside the try: whatever started is stopped even if a later start fails.
        sink = Sink(workdir)
        sesgate = Sesgate(workdir, sink.port, args.binary) if "sesgate" in paths else None
        postfix = Postfix(workdir, sink.port) if "postfix" in paths else None
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(f"load average before: {load}; {args.sessions} sessions, {args.size} bytes", flush=True)
        for per_session in [int(p) for p in args.per_session.split(",")]:
            # Warm-up: connections, pools, caches; not measured.
            for name in paths:
                port = {"direct": sink.port,
                        "sesgate": sesgate and sesgate.port,
                        "postfix": postfix and postfix.port}[name]
                run_source(port, min(200, args.messages), per_session, args.sessions, args.size)
            time.sleep(0.5)
            for round_no in range(1, args.rounds + 1):
              for name in paths:
                  port, relay = {"direct": (sink.port, None),
                                 "sesgate": (sesgate and sesgate.port, sesgate),
                                 "postfix": (postfix and postfix.port, postfix)}[name]
                  # Each path starts on a settled machine: the Postfix relay leaves its queue
                  # files to be written back and its processes to exit after the sink has the
                  # last message, which otherwise lands on the next path's measurement.
                  subprocess.run(["sync"], check=False)
                  time.sleep(args.settle)
                  r = measure(name, port, sink, relay, args.messages, per_session, args.sessions, args.size)
                  r["round"] = round_no
                  results.append(r)
                  relay_us = f"{r['relay_us']:.1f}" if r["relay_us"] is not None else "-"
                  print(f"{name:8} per_session={per_session:<4} {r['messages']}/{r['sent']} msgs "
                        f"{r['rate']:9.0f} msg/s  relay CPU {relay_us:>7} us/msg  "
                        f"smtp-sink CPU {r['sink_us']:.1f} us/msg", flush=True)
        print()
        for per_session in sorted({r["per_session"] for r in results}):
            rounds = {}
            for r in results:
                if r["per_session"] == per_session:
                    rounds.setdefault(r["round"], {})[r["path"]] = r
            throughput, cpu, cpu_fed, postfix_ratio = [], [], [], []
            for row in rounds.values():
                if "sesgate" in row and row["sesgate"]["sink_us"]:
                    s = row["sesgate"]
                    cpu_fed.append(s["relay_us"] / s["sink_us"])
                if "direct" in row and "sesgate" in row:
                    d, s = row["direct"], row["sesgate"]
                    throughput.append(s["rate"] / d["rate"])
                    if d["sink_us"]:
                        cpu.append(s["relay_us"] / d["sink_us"])
                if "postfix" in row and "sesgate" in row:
                    postfix_ratio.append(row["sesgate"]["rate"] / row["postfix"]["rate"])

            def summary(values, digits):
                each = ", ".join(f"{v:.{digits}f}" for v in values)
                return f"{statistics.median(values):.{digits}f}" + (f" (rounds: {each})" if len(values) > 1 else "")

            if throughput:
                print(f"per_session={per_session}: sesgate/direct throughput {summary(throughput, 2)}; "
                      "sesgate CPU / smtp-sink CPU (direct run) "
                      + (summary(cpu, 2) if cpu else "n/a (no sink CPU measured)"))
            if cpu_fed:
                # SPEC §12's frame: the sink as sesgate's upstream, fed over its pooled
                # connections, so at 1 per session only sesgate pays for a connection each.
                print(f"per_session={per_session}: sesgate CPU / smtp-sink CPU (same run, behind "
                      f"sesgate) {summary(cpu_fed, 2)}")
            if postfix_ratio:
                print(f"per_session={per_session}: sesgate/postfix throughput {summary(postfix_ratio, 1)}")
        with open("/proc/loadavg") as f:
            print("load average after:", f.read().split()[0])
    finally:
        if postfix:
            postfix.stop()
        if sesgate:
            sesgate.stop()
        if sink:
            sink.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("work directory:", workdir)


if __name__ == "__main__":
    main()
