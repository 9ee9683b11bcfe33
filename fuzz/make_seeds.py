#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere; idempotent).

Each target's input format is described at the top of its fuzz_targets/<target>.rs.
"""
import base64, hashlib, pathlib, re

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def write(target, name, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# --- smtp_session: [flags, limits, client bytes] -------------------------------------------
NONE, STARTTLS, IMPLICIT, PLAINTEXT_AUTH, HANDSHAKE_FAILS = 0, 1, 2, 4, 8
LIMITS = 0x3F  # 1024-byte messages, 4 recipients, 3 errors
PLAIN = base64.b64encode(b"\0fuzz-user\0secret")
PLAIN_BAD = base64.b64encode(b"\0fuzz-user\0wrong")
PLAIN_AUTHZ = base64.b64encode(b"other\0fuzz-user\0secret")
USER, PASS = base64.b64encode(b"fuzz-user"), base64.b64encode(b"secret")
TX = b"MAIL FROM:<a@allowed.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nFrom: a@allowed.com\r\n\r\nhi\r\n.\r\n"
sessions = {
    "implicit_plain": (IMPLICIT, b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\n" + TX + b"QUIT\r\n"),
    "implicit_plain_challenge": (IMPLICIT, b"EHLO c\r\nAUTH PLAIN\r\n" + PLAIN + b"\r\n" + TX + b"QUIT\r\n"),
    "implicit_login": (IMPLICIT, b"EHLO c\r\nAUTH LOGIN\r\n" + USER + b"\r\n" + PASS + b"\r\n" + TX),
    "implicit_login_initial": (IMPLICIT, b"EHLO c\r\nAUTH LOGIN " + USER + b"\r\n" + PASS + b"\r\n" + TX),
    "starttls_then_auth": (STARTTLS, b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\n" + TX),
    "starttls_pipelined": (STARTTLS, b"EHLO c\r\nSTARTTLS\r\nAUTH PLAIN " + PLAIN + b"\r\nMAIL FROM:<a@b.c>\r\n"),
    "starttls_handshake_fails": (STARTTLS | HANDSHAKE_FAILS, b"EHLO c\r\nSTARTTLS\r\nEHLO c\r\n"),
    "plaintext_auth": (NONE | PLAINTEXT_AUTH, b"HELO c\r\nAUTH PLAIN " + PLAIN + b"\r\n" + TX),
    "plaintext_refused": (NONE, b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\nMAIL FROM:<a@b.c>\r\n"),
    "auth_failures": (IMPLICIT, b"EHLO c\r\nAUTH PLAIN " + PLAIN_BAD + b"\r\nAUTH PLAIN " + PLAIN_AUTHZ + b"\r\nAUTH PLAIN *\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN !!\r\nAUTH CRAM-MD5\r\n"),
    "auth_twice": (IMPLICIT, b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\nAUTH PLAIN " + PLAIN + b"\r\n"),
    "auth_throttled": (IMPLICIT, b"EHLO c\r\nAUTH PLAIN " + base64.b64encode(b"\0throttled\0x") + b"\r\n"),
    "pipelined": (IMPLICIT, b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\nMAIL FROM:<a@allowed.com> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n..dot\r\nx\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<d@e.f>\r\nRSET\r\nNOOP\r\nVRFY x\r\nHELP\r\nQUIT\r\n"),
    "sequence_errors": (IMPLICIT, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<a@b.c>\r\nDATA\r\nSTARTTLS\r\nBDAT 10 LAST\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    "data_errors": (IMPLICIT, b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\na\rb\r\n.\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n" + b"x" * 200 + b"\r\n.\r\n"),
    "too_many_recipients": (IMPLICIT, b"EHLO c\r\nAUTH PLAIN " + PLAIN + b"\r\nMAIL FROM:<a@b.c>\r\n" + b"".join(b"RCPT TO:<r%d@y.z>\r\n" % i for i in range(6)) + b"DATA\r\n.\r\n"),
    "long_line": (IMPLICIT, b"EHLO " + b"x" * 5000 + b"\r\nEHLO c\r\n"),
    "non_ascii": (IMPLICIT, "EHLO c\r\nAUTH PLAIN ".encode() + PLAIN + "\r\nMAIL FROM:<jürgen@example.com>\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<ü@x.y>\r\n".encode()),
    "bare_lf": (IMPLICIT, b"EHLO c\nAUTH PLAIN " + PLAIN + b"\nMAIL FROM:<a@b.c>\nRCPT TO:<x@y.z>\nDATA\na\n.\n.\r\n"),
}
for name, (flags, data) in sessions.items():
    write("smtp_session", name, bytes([flags, LIMITS]) + data)

# --- data_reader: [max_line - 3, max_bytes / 4, chunk seed, stream] ------------------------
bodies = {
    "simple": b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    "empty": b".\r\n",
    "stuffed": b"..x\r\na\r\n..\r\n...\r\n.\r\n",
    "bare_lf": b"a\nb\r\n.\r\n",
    "lf_dot_lf": b"a\n.\nb\r\n.\r\n",
    "crlf_dot_lf": b"a\r\n.\nb\r\n.\r\n",
    "lf_dot_crlf": b"a\n.\r\nb\r\n.\r\n",
    "bare_cr": b"a\rb\r\n.\r\n",
    "cr_before_crlf": b"a\r\r\n.\r\n",
    "cr_dot": b"a\r\n.\r\r\n.\r\n",
    "trailing": b"x\r\n.\r\nMAIL FROM:<a@b.c>\r\n",
    "long_line": b"y" * 300 + b"\r\n.\r\n",
    "too_large": b"0123456789\r\n" * 120 + b".\r\n",
    "no_end": b"a\r\nb\n.\n",
    "dot_only_lines": b".\n..\n.\r\n\r\n.\r\n",
}
for name, body in bodies.items():
    write("data_reader", name, bytes([97, 255, len(name)]) + body)
write("data_reader", "small_limits", bytes([0, 4, 7]) + b"abc\r\n..\r\nx\r\n.\r\n")

# --- policy_json: [mode, text] --------------------------------------------------------------
policies = [p.read_text() for p in sorted((ROOT / "policies").glob("*.json"))]
for test in sorted((ROOT / "tests").rglob("*.rs")) + sorted((ROOT / "src").rglob("*.rs")):
    for m in re.finditer(r'r#"(\{.*?"Statement".*?\})"#', test.read_text(), re.S):
        policies.append(m.group(1))
for text in policies:
    name = hashlib.sha1(text.encode()).hexdigest()[:12]
    write("policy_json", "policy_" + name, b"\0" + text.encode())
contexts = [
    "ContextKeyName=aws:SourceIp,ContextKeyValues=203.0.113.7,ContextKeyType=ip",
    "ContextKeyName=ses:Recipients,ContextKeyValues=[a@example.com,'b@x.org'],ContextKeyType=stringList",
    "ContextKeyName=aws:CurrentTime,ContextKeyValues=2018-09-01T00:00Z,ContextKeyType=date",
    "ContextKeyName=aws:EpochTime,ContextKeyValues=1535716800,ContextKeyType=numeric",
    "ContextKeyName=aws:SecureTransport,ContextKeyValues=true,ContextKeyType=boolean",
    '[{"ContextKeyName":"ses:FromAddress","ContextKeyValues":["marketing@example.com"],"ContextKeyType":"string"},'
    '{"ContextKeyName":"ses:FromDisplayName","ContextKeyValues":["Marketing"],"ContextKeyType":"string"}]',
    '{"ContextKeyName":"aws:SourceIp","ContextKeyValues":["2001:db8::1"],"ContextKeyType":"ip"}',
    '{"ContextKeyName":"k","ContextKeyValues":["aGVsbG8="],"ContextKeyType":"binary"}',
]
for i, text in enumerate(contexts):
    write("policy_json", f"context_{i}", b"\1" + text.encode())
for i, text in enumerate(policies[:6]):
    write("policy_json", f"simulate_{i}", b"\2" + text.encode() + b"\0" + contexts[i % len(contexts)].encode())

# --- request_builder: [mode, header bytes] --------------------------------------------------
PREFIX_FROM, IDENTITIES, SANDBOX, BODY = 1, 2, 4, 8
hostile = [
    b"From: <ceo@example.com> a@allowed.com",
    b"From: <ceo@example.com>\r\n a@allowed.com",
    b"From: ceo@example.com)x@allowed.com",
    b'From: CEO <"x@allowed.com>"@example.com>',
    b"From: Marketing.ceo@example.com<news@allowed.com>",
    b'From: CEO <"ceo"@example.com>',
    b' From: x@allowed.com\r\nFrom: ceo@example.com',
    b"no colon here\r\nFrom: x@allowed.com",
    b"Fr om: ceo@example.com\r\nFrom: x@allowed.com",
    b"\x0cFrom: ceo@example.com\r\nFrom: x@allowed.com",
    b":From: ceo@example.com\r\nFrom: x@allowed.com",
    b"From: x@allowed.com\r\nX-SES-CONFIGURATION-SET: a\r\nX-SES-CONFIGURATION-SET: denied",
    b"From: x@allowed.com\r\nX-SES-CONFIGURATION-SET:\r\nX-SES-CONFIGURATION-SET: denied",
    b"From: ceo@example.com\r\nX-SES-SOURCE-ARN: arn:aws:ses:us-east-1:123456789012:identity/allowed.com",
    b"From: ceo@example.com\r\nX-SES-FROM-ARN: arn:aws:ses:us-east-1:123456789012:identity/allowed.com",
    b"From: x@allowed.com\r\nSender: a@unverified.org",
    b"From: x@allowed.com\r\nReturn-Path: <ceo@example.com>",
    b"From: (comment) x@allowed.com (another)",
    b"From: x(comment)@allowed.com",
    b"From: <@route.example:x@allowed.com>",
    b"From: =?utf-8?q?x=40allowed.com?= <ceo@example.com>",
    b"From: =?utf-8?q?ceo?=@example.com",
    b"From: x@allowed.com.",
    b"From: x@allowed..com",
    b"From: .x@allowed.com",
    b"From: x@[127.0.0.1]",
    b"From: J\xc3\xbcrgen <x@allowed.com>",
    b"From: x@all\xc3\xb6wed.com",
    b"From: x @ allowed . com",
    b"From: x@allowed.com\rFrom: ceo@example.com",
    b"From: x@allowed.com\nFrom: ceo@example.com",
    b"From: x@allowed.com,\r\n ceo@example.com",
    b"From: group: x@allowed.com, ceo@example.com;",
    b"From: \"x@allowed.com\" <ceo@example.com>",
    b"From: \"unterminated <x@allowed.com>",
    b"From: x\x00@allowed.com",
    b"FROM: x@allowed.com\r\nfrom: ceo@example.com",
    b"From:x@allowed.com",
    b"From: <x@allowed.com>>",
    b"From: <<x@allowed.com>",
    b"Sender: x@allowed.com\r\nFrom: ceo@example.com\r\nFrom: y@allowed.com",
    b"User-Agent: \x1b[31mred\r\nFrom: x@allowed.com",
    b"X-SES-CONFIGURATION-SET: " + b":" * 2000 + b"\r\nFrom: x@allowed.com",
    b"Subject: hi\r\n\r\nFrom: ceo@example.com",
    # Found by request_builder (artifacts-found/): kept as seeds so every run replays them.
    b"From: \x19x@allowed.com",
    b"From: M <a;b@allowed.com>",
    b"From: ceo[@allowed.com",
    b"From: x@allowed.com\r\nX-SES-SOURCE-ARN: :",
]
for i, h in enumerate(hostile):
    write("request_builder", f"hostile_{i:02}", bytes([IDENTITIES | BODY]) + h)
write("request_builder", "valid_prefixed", bytes([PREFIX_FROM | IDENTITIES | BODY]) + b"Subject: hi\r\nTo: rcpt@allowed.com")
write("request_builder", "valid_sandbox", bytes([IDENTITIES | SANDBOX | BODY]) + b"From: Display Name <news@example.com>\r\nX-SES-CONFIGURATION-SET: audit\r\nX-Mailer: m")
write("request_builder", "valid_no_identities", bytes([BODY]) + b"From: a@b.example")
print("seeds written")
