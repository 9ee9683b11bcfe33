#!/usr/bin/env python3
"""Issue 15's own load generator: 32 Python clients (threads, smtplib), 10 KB messages,
AUTH PLAIN, plaintext on both sides, straight to Postfix's smtp-sink and through sesgate
(pass-through, release build) to the same smtp-sink, in one run.

This is the generator behind the issue's baseline figures ("measured today with a Python load
generator: 32 clients, 10 KB, AUTH PLAIN, plaintext both sides, pass-through to Postfix's
smtp-sink") and its throughput targets ("with the same generator in the same run"). The
anchor bench (benches/anchor.py) measures the same paths with Postfix's smtp-source instead.

Each client connects, says EHLO, logs in with AUTH PLAIN (smtp-sink answers 250, sesgate 235;
both are taken), sends PER_CONNECTION messages with smtplib's sendmail (MAIL, RCPT, DATA, one
command at a time) and QUITs, until the shared message count is spent. Rate: messages counted
by smtp-sink -c from the first connection to the last message received. CPU per message from
/proc/PID/stat (utime+stime) of sesgate, smtp-sink and the generator itself.

    cargo build --release --bin sesgate
    python3 benches/loadgen.py --messages 6000 --per-connection 1,100 --rounds 3
"""

import argparse
import base64
import os
import resource
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anchor  # noqa: E402  (Sink, Sesgate, /proc readings)

USER = "loadgen"
PASSWORD = "loadgen-password-15"


def message(size):
    head = (
        "From: Load Generator <sender@example.com>\r\n"
        "To: rcpt@example.com\r\n"
        "Subject: issue 15 load\r\n"
        "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
        "Message-ID: <loadgen@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    line = "x" * 76 + "\r\n"
    body = line * max(0, (size - len(head)) // len(line))
    return (head + body).encode()


def password_hash(binary):
    return subprocess.run(
        [binary, "hash-password"], input=PASSWORD.encode(), check=True, capture_output=True,
    ).stdout.decode().strip().splitlines()[-1]


def generate(port, total, per_connection, clients, body):
    """Sends `total` messages from `clients` threads; returns the failures seen."""
    remaining = [total]
    lock = threading.Lock()
    failures = []
    login = "PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()

    def take():
        with lock:
            n = min(per_connection, remaining[0])
            remaining[0] -= n
            return n

    def client():
        while (n := take()) > 0:
            try:
                with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=60) as s:
                    s.ehlo()
                    code, reply = s.docmd("AUTH", login)
                    if code not in (235, 250):
                        raise smtplib.SMTPAuthenticationError(code, reply)
                    for _ in range(n):
                        s.sendmail("sender@example.com", ["rcpt@example.com"], body)
            except (OSError, smtplib.SMTPException) as e:
                with lock:
                    failures.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def own_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(name, port, sink, relay, total, per_connection, clients, body):
    base = sink.count()
    relay_before = relay.cpu() if relay else 0
    sink_before = sink.cpu()
    gen_before = own_cpu()
    started = time.monotonic()
    failures = generate(port, total, per_connection, clients, body)
    deadline = time.monotonic() + 120
    while sink.count() - base < total and time.monotonic() < deadline:
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    received = sink.count() - base
    per_msg = 1e6 / max(received, 1)
    return {
        "path": name, "per_connection": per_connection, "messages": received, "sent": total,
        "failures": failures, "rate": received / elapsed,
        "relay_us": (relay.cpu() - relay_before) / anchor.CLK_TCK * per_msg if relay else None,
        "sink_us": (sink.cpu() - sink_before) / anchor.CLK_TCK * per_msg,
        "gen_us": (own_cpu() - gen_before) * per_msg,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=6000, help="per path, per round")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--per-connection", default="1,100")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--binary", default=os.path.join(anchor.ROOT, "target", "release", "sesgate"))
    args = ap.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: cargo build --release --bin sesgate")
    body = message(args.size)
    settings = [int(x) for x in args.per_connection.split(",")]
    work = tempfile.mkdtemp(prefix="sesgate-loadgen-")
    os.chmod(work, 0o755)
    sink = relay = None
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.clients} clients, "
          f"{len(body)} bytes, AUTH PLAIN, plaintext", flush=True)
    ratios = {}
    failed = 0
    try:
        sink = anchor.Sink(work)
        relay = anchor.Sesgate(work, sink.port, args.binary, login=(USER, password_hash(args.binary)))
        # Warm-up: the upstream pool, the AUTH cache, the page cache.
        for port in (sink.port, relay.port):
            generate(port, args.clients * 2, 2, args.clients, body)
        for _ in range(args.rounds):
            for per_connection in settings:
                results = [
                    measure("direct", sink.port, sink, None, args.messages, per_connection, args.clients, body),
                    measure("sesgate", relay.port, sink, relay, args.messages, per_connection, args.clients, body),
                ]
                for r in results:
                    relay_us = f"{r['relay_us']:7.1f}" if r["relay_us"] is not None else "      -"
                    print(f"{r['path']:8} per_connection={r['per_connection']:<4} "
                          f"{r['messages']}/{r['sent']} msgs {r['rate']:8.0f} msg/s  "
                          f"sesgate CPU {relay_us} us/msg  smtp-sink CPU {r['sink_us']:6.1f} us/msg  "
                          f"generator CPU {r['gen_us']:6.1f} us/msg", flush=True)
                    if r["failures"]:
                        failed += len(r["failures"])
                        print(f"  {len(r['failures'])} client failures, first: {r['failures'][0]}")
                direct, through = results
                ratios.setdefault(per_connection, []).append((
                    through["rate"] / direct["rate"],
                    through["relay_us"] / max(direct["sink_us"], 0.1),
                    through["relay_us"] / max(through["sink_us"], 0.1),
                ))
    finally:
        if relay:
            relay.stop()
        if sink:
            sink.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    def summary(values):
        return f"{statistics.median(values):.2f} (rounds: {', '.join(f'{v:.2f}' for v in values)})"

    for per_connection, rounds in ratios.items():
        rate, cpu, cpu_fed = (list(column) for column in zip(*rounds))
        # Two frames for the CPU ratio: against the sink in the direct run (it serves the same
        # connection per message sesgate does), and against the sink behind sesgate in the same
        # round (SPEC §12's frame: fed over pooled connections, no connection per message).
        print(f"per_connection={per_connection}: sesgate/direct throughput {summary(rate)}; "
              f"sesgate CPU / smtp-sink CPU (direct run) {summary(cpu)}; "
              f"(same run, behind sesgate) {summary(cpu_fed)}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if failed:
        sys.exit(f"{failed} client connections failed")


if __name__ == "__main__":
    main()
