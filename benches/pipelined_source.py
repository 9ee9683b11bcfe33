#!/usr/bin/env python3
"""A pipelining SMTP load generator (RFC 2920), for benches/syscalls.py: smtp-source waits for
each reply before its next command, so every message costs the relay a read and a write per
command; a pipelining client (as Postfix's smtp client is, and most MTAs) sends MAIL, RCPT and
DATA in one write.

    python3 benches/pipelined_source.py PORT --sessions 20 --messages 2000 --per-session 100
"""

import argparse
import asyncio
import time


async def session(port, count, body, errors):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply():
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO pipelined.test\r\n")
    await reply()
    envelope = b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.com>\r\nDATA\r\n"
    for _ in range(count):
        writer.write(envelope)
        for expected in (b"250", b"250", b"354"):
            line = await reply()
            if not line.startswith(expected):
                errors.append(line)
        writer.write(body)
        line = await reply()
        if not line.startswith(b"250"):
            errors.append(line)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def run(port, sessions, messages, per_session, size):
    headers = b"From: <sender@example.com>\r\nTo: <rcpt@example.com>\r\nSubject: load\r\n\r\n"
    line = b"x" * 78 + b"\r\n"
    body = headers + line * max(1, (size - len(headers)) // len(line)) + b".\r\n"
    errors = []
    left = messages
    started = time.monotonic()
    while left > 0:
        batch = []
        for _ in range(sessions):
            n = min(per_session, left)
            if n <= 0:
                break
            left -= n
            batch.append(session(port, n, body, errors))
        await asyncio.gather(*batch)
    elapsed = time.monotonic() - started
    return errors, elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--per-session", type=int, default=100)
    ap.add_argument("--size", type=int, default=10240)
    args = ap.parse_args()
    errors, elapsed = asyncio.run(run(args.port, args.sessions, args.messages, args.per_session, args.size))
    print(f"{args.messages} messages in {elapsed:.2f} s, {len(errors)} not accepted")
    for e in errors[:5]:
        print("  ", e)


if __name__ == "__main__":
    main()
