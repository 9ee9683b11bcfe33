#!/usr/bin/env python3
"""A pipelining SMTP load generator (RFC 2920), for benches/syscalls.py: smtp-source waits for
each reply before its next command, so every message costs the relay a read and a write per
command; a pipelining client (as Postfix's smtp client is, and most MTAs) sends MAIL, RCPT and
DATA in one write.

Two ways of grouping (--groups):

- `transaction` (the default): MAIL, RCPT and DATA in one write, then, after the 354, the
  message in another; the 250 to the message is read before the next MAIL is sent.
- `across`: after the first transaction, the message and the next transaction's MAIL, RCPT and
  DATA go in one write (RFC 2920 §3.1: "The actual transfer of message content is explicitly
  allowed to be the first command in a group"). A client that sends many messages down one
  connection can do it (most MTAs wait for the message's reply first). The server can then
  answer the message and the next envelope in one write: two client-side system calls per
  message for the relay instead of four.

    python3 benches/pipelined_source.py PORT --sessions 20 --messages 2000 --per-session 100
    python3 benches/pipelined_source.py PORT --groups across
"""

import argparse
import asyncio
import time


async def session(port, count, body, errors, across):
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

    async def expect(*codes):
        for expected in codes:
            line = await reply()
            if not line.startswith(expected):
                errors.append(line)

    if across:
        writer.write(envelope)
        await expect(b"250", b"250", b"354")
        for sent in range(1, count + 1):
            if sent < count:
                # The message, then the next envelope, in one write.
                writer.write(body + envelope)
                await expect(b"250", b"250", b"250", b"354")
            else:
                writer.write(body)
                await expect(b"250")
    else:
        for _ in range(count):
            writer.write(envelope)
            await expect(b"250", b"250", b"354")
            writer.write(body)
            await expect(b"250")
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def run(port, sessions, messages, per_session, size, across=False):
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
            batch.append(session(port, n, body, errors, across))
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
    ap.add_argument("--groups", choices=["transaction", "across"], default="transaction",
                    help="transaction: MAIL/RCPT/DATA, then the message; across: the message and "
                         "the next MAIL/RCPT/DATA in one write (see the module doc)")
    args = ap.parse_args()
    errors, elapsed = asyncio.run(run(args.port, args.sessions, args.messages, args.per_session,
                                      args.size, args.groups == "across"))
    print(f"{args.messages} messages in {elapsed:.2f} s, {len(errors)} not accepted")
    for e in errors[:5]:
        print("  ", e)


if __name__ == "__main__":
    main()
