#!/usr/bin/env python3
"""System calls per relayed message (issue 15 §2: at most 8 at 100 messages per connection).

Starts smtp-sink and a release sesgate (as benches/anchor.py does), warms up, then attaches
`strace -c -f` to every thread of sesgate while smtp-source sends MESSAGES messages of 10 KB
over 20 sessions (PER_SESSION messages each), and prints strace's table and the calls per
message. strace slows the traced process a lot; the counts, not the rate, are the result.

    apt-get install strace postfix
    cargo build --release --bin sesgate
    python3 benches/syscalls.py                     # 2000 messages, 100 per session
    python3 benches/syscalls.py --per-session 1
    python3 benches/syscalls.py --client pipelined  # MAIL, RCPT and DATA in one write
    python3 benches/syscalls.py --client pipelined-across  # ... and the message with the next ones
    python3 benches/syscalls.py --client pipelined --threads  # calls per thread, not a table

--threads traces every call (strace -f, not -c) and prints, per thread (its name from
/proc/PID/task/TID/comm: tokio-runtime-w, sesgate-log, ...), each call's count per message.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anchor  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--per-session", type=int, default=100)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--client", choices=["smtp-source", "pipelined", "pipelined-across"],
                    default="smtp-source",
                    help="smtp-source (one command per write), pipelined_source.py (RFC 2920) with "
                         "one transaction per group, or with the message and the next "
                         "transaction's commands in one group (--groups across)")
    ap.add_argument("--threads", action="store_true",
                    help="count the calls of each thread (strace -f) instead of strace -c's table")
    ap.add_argument("--binary", default=os.path.join(anchor.ROOT, "target", "release", "sesgate"))
    args = ap.parse_args()
    if not shutil.which("strace"):
        sys.exit("strace not found: apt-get install strace")
    workdir = tempfile.mkdtemp(prefix="sesgate-syscalls-")
    os.chmod(workdir, 0o755)
    sink = anchor.Sink(workdir)
    try:
        sesgate = anchor.Sesgate(workdir, sink.port, args.binary)
    except BaseException:
        sink.stop()
        raise
    try:
        anchor.run_source(sesgate.port, 200, args.per_session, args.sessions, args.size)
        out = os.path.join(workdir, "strace.txt")
        names = thread_names(sesgate.proc.pid)
        mode = ["-qq"] if args.threads else ["-c"]
        strace = subprocess.Popen(["strace", *mode, "-f", "-o", out, "-p", str(sesgate.proc.pid)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attach to every thread
        base = sink.count()
        if args.client.startswith("pipelined"):
            groups = "across" if args.client == "pipelined-across" else "transaction"
            subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "pipelined_source.py"),
                            str(sesgate.port), "--sessions", str(args.sessions), "--messages",
                            str(args.messages), "--per-session", str(args.per_session),
                            "--size", str(args.size), "--groups", groups], check=True)
        else:
            anchor.run_source(sesgate.port, args.messages, args.per_session, args.sessions, args.size)
        deadline = time.monotonic() + 120
        while sink.count() - base < args.messages and time.monotonic() < deadline:
            time.sleep(0.01)
        relayed = sink.count() - base
        strace.send_signal(signal.SIGINT)
        strace.wait()
        names.update(thread_names(sesgate.proc.pid))
        if args.threads:
            calls = per_thread(out, names, relayed)
            print(f"{relayed} messages relayed, {args.per_session} per session, {args.client}: "
                  f"{calls} system calls, {calls / max(relayed, 1):.1f} per message")
            return
        table = open(out).read()
        print(table)
        total = next((line.split() for line in table.splitlines() if line.strip().endswith("total")), None)
        calls = int(total[3]) if total and len(total) >= 5 else 0
        print(f"{relayed} messages relayed, {args.per_session} per session, {args.client}: "
              f"{calls} system calls, {calls / max(relayed, 1):.1f} per message")
    finally:
        sesgate.stop()
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def thread_names(pid):
    """Thread id -> name (comm) of every thread of pid."""
    names = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names[tid] = f.read().strip()
        except OSError:
            pass
    return names


def per_thread(trace, names, relayed):
    """Prints each thread name's calls per message from strace -f output ("TID call(...")."""
    counts = {}
    total = 0
    with open(trace, errors="replace") as f:
        for line in f:
            tid, _, rest = line.partition(" ")
            rest = rest.lstrip()
            if rest.startswith("<... "):
                continue  # the end of a call counted when it started
            call = rest.split("(", 1)[0]
            if not call.isidentifier():
                continue  # signals, exits
            name = names.get(tid, "?")
            counts.setdefault(name, {}).setdefault(call, 0)
            counts[name][call] += 1
            total += 1
    for name, calls in sorted(counts.items()):
        listed = ", ".join(f"{n / max(relayed, 1):.2f} {call}"
                           for call, n in sorted(calls.items(), key=lambda c: -c[1]))
        print(f"{name}: {listed}")
    return total


if __name__ == "__main__":
    main()
