#!/usr/bin/env python3
"""Memory per idle connection (SPEC §12: under 64 KiB): opens N connections to a running sesgate
on loopback, reads each greeting (and completes TLS on an implicit-TLS port), and reports the
growth of the sesgate process's RSS per connection.

usage: idle_memory.py PID PORT N plain|tls
"""
import socket, ssl, sys, time, resource, os
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
pid, port, n, tls = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "tls"
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
before = rss()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        s = ctx.wrap_socket(s)
    s.recv(100)
    socks.append(s)
time.sleep(1)
after = rss()
print(f"{n} idle {'TLS' if tls else 'plain'} connections: RSS {before} KiB -> {after} KiB, {(after-before)/n:.1f} KiB per connection")
