#!/usr/bin/env python3
"""10,000 concurrent connections (issue 15 §5): starts a release sesgate (the bench config
allows 20,000 connections), opens N connections from loopback addresses, half left idle after
the greeting and half left mid-transaction (EHLO, MAIL, RCPT, DATA and the first 1 KB of a
message), checks that every one got its greeting and 354, and that a new client is still
served, then reports sesgate's RSS per connection (kernel socket buffers not included).

    cargo build --release --bin sesgate
    python3 benches/connections.py               # 10,000 connections
    python3 benches/connections.py --connections 2000

The soft file-descriptor limit of this script and of the sesgate it starts is raised to the
connections plus 1,000 (the hard limit must allow it; the systemd units set LimitNOFILE=65536).
"""

import argparse
import os
import resource
import selectors
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anchor  # noqa: E402


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def expect(socks, prefix, timeout=120):
    """Waits until every socket received a line starting with prefix; returns how many did."""
    sel = selectors.DefaultSelector()
    pending = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        pending[s] = b""
    done = 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            pending[s] += data
            if not data or b"\n" in pending[s]:
                sel.unregister(s)
                if pending.pop(s).startswith(prefix):
                    done += 1
    sel.close()
    return done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--binary", default=os.path.join(anchor.ROOT, "target", "release", "sesgate"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 1000  # per process: this script and sesgate each hold one end
    if hard != resource.RLIM_INFINITY and hard < want:
        sys.exit(f"the hard file-descriptor limit is {hard}; {want} are needed (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    workdir = tempfile.mkdtemp(prefix="sesgate-connections-")
    os.chmod(workdir, 0o755)
    sink = anchor.Sink(workdir)
    try:
        sesgate = anchor.Sesgate(workdir, sink.port, args.binary)
    except BaseException:
        sink.stop()
        raise
    socks = []
    try:
        time.sleep(0.5)
        before = rss_kib(sesgate.proc.pid)
        started = time.monotonic()
        batch = 500
        greeted = 0
        for first in range(0, args.connections, batch):
            new = []
            for i in range(first, min(first + batch, args.connections)):
                # Spread over 127.0.0.0/8 sources: one address has only ~28,000 ports.
                s = socket.socket()
                s.bind((f"127.0.{1 + i // 5000}.{1 + i % 250}", 0))
                s.connect(("127.0.0.1", sesgate.port))
                new.append(s)
            greeted += expect(new, b"220")
            socks += new
        idle = socks[: len(socks) // 2]
        busy = socks[len(socks) // 2:]
        for s in busy:
            s.sendall(b"EHLO load.test\r\nMAIL FROM:<sender@example.com>\r\n"
                      b"RCPT TO:<rcpt@example.com>\r\nDATA\r\n")
        # EHLO's reply is multi-line; read until the 354 for each.
        sel = selectors.DefaultSelector()
        buf = {}
        for s in busy:
            sel.register(s, selectors.EVENT_READ)
            buf[s] = b""
        in_data = 0
        deadline = time.monotonic() + 120
        while buf and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                data = s.recv(65536)
                buf[s] += data
                if not data or b"\n354 " in buf[s] or buf[s].startswith(b"354 "):
                    sel.unregister(s)
                    if b"354 " in buf.pop(s):
                        in_data += 1
        body = b"From: sender@example.com\r\nTo: rcpt@example.com\r\nSubject: held\r\n\r\n" + b"x" * 950 + b"\r\n"
        for s in busy:
            s.sendall(body)
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        after = rss_kib(sesgate.proc.pid)
        # A new client is still served while all of those are held.
        probe = socket.create_connection(("127.0.0.1", sesgate.port), timeout=10)
        probe_greeting = probe.recv(512)
        probe.close()
        n = len(socks)
        print(f"{n} connections opened in {elapsed:.1f} s: {greeted} greeted, {len(idle)} idle, "
              f"{in_data} of {len(busy)} mid-DATA (1 KB of the message sent)")
        print(f"sesgate RSS {before} KiB -> {after} KiB: {(after - before) / n:.1f} KiB per connection")
        print(f"a new client while they are held: {probe_greeting[:40]!r}")
    finally:
        for s in socks:
            s.close()
        sesgate.stop()
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
