#!/usr/bin/env python3
"""Memory and latency under an AUTH flood (issue 8 §4): starts a sesgate from a throwaway config
(one plaintext-AUTH listener, one user), sends N parallel wrong AUTH PLAIN exchanges spread over A
loopback source addresses (127.0.0.2, 127.0.0.3, ...), and, while they run, times two valid
logins from other addresses: a first login (argon2 must run) and the login of a credential
verified once before the attack (answered from the verified cache). Reports the sesgate process's peak RSS (VmHWM), the replies by code, and the
valid login's latency.

usage: auth_flood.py [--binary target/debug/sesgate] [--connections 100] [--addresses 1]
"""
import argparse, asyncio, base64, collections, os, shutil, socket, subprocess, sys, tempfile, time

USER, PASSWORD = "AKIAFLOODTEST0000001", "the right password"
CACHED_USER, CACHED_PASSWORD = "AKIAFLOODTEST0000002", "another right password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])


async def auth(port, source, user, password):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    async def reply():
        while True:
            line = await reader.readline()
            if not line or line[3:4] != b"-":
                return line.decode(errors="replace").strip()
    try:
        await reply()
        writer.write(b"EHLO flood.test\r\n")
        await reply()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        writer.write(f"AUTH PLAIN {token}\r\n".encode())
        return await reply()
    finally:
        writer.close()


async def flood(port, connections, addresses):
    sources = [f"127.0.0.{2 + i % addresses}" for i in range(connections)]
    assert (await auth(port, "127.0.0.201", CACHED_USER, CACHED_PASSWORD)).startswith("235")
    attack = [asyncio.create_task(auth(port, s, USER, "wrong")) for s in sources]
    await asyncio.sleep(0.05)
    logins = []
    for source, user, password in [("127.0.0.200", USER, PASSWORD),
                                   ("127.0.0.202", CACHED_USER, CACHED_PASSWORD)]:
        started = time.monotonic()
        reply = await auth(port, source, user, password)
        logins.append((reply, time.monotonic() - started))
    replies = await asyncio.gather(*attack, return_exceptions=True)
    codes = collections.Counter(r[:3] if isinstance(r, str) else type(r).__name__ for r in replies)
    return logins, codes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/debug/sesgate")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--addresses", type=int, default=1)
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    policies = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "policies")
    work = tempfile.mkdtemp(prefix="sesgate-auth-flood-")
    try:
        os.makedirs(f"{work}/policies")
        shutil.copy(f"{policies}/AllowSendingOnly.json", f"{work}/policies/")
        with open(f"{work}/policies/iam.toml", "w") as f:
            for name, user in [("flood", USER), ("cached", CACHED_USER)]:
                password = PASSWORD if user == USER else CACHED_PASSWORD
                hashed = subprocess.run([binary, "hash-password"], input=password,
                                        capture_output=True, text=True, check=True).stdout.strip()
                f.write(f'[[user]]\nname = "{name}"\npath = "/"\npolicies = ["AllowSendingOnly"]\n'
                        f'[[user.credentials]]\nusername = "{user}"\npassword_hash = "{hashed}"\n')
        port = free_port()
        with open(f"{work}/sesgate.toml", "w") as f:
            f.write(f'[[listener]]\naddress = "127.0.0.1:{port}"\ntls = "none"\n'
                    f'allow_plaintext_auth = true\n[limits]\nmax_connections_per_ip = 1000\n'
                    f'[upstream]\nurl = "file://outbox"\n')
        server = subprocess.Popen([binary, "serve", "--config", f"{work}/sesgate.toml"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    time.sleep(0.05)
            time.sleep(0.2)
            before = status(server.pid, "VmRSS")
            started = time.monotonic()
            logins, codes = asyncio.run(flood(port, args.connections, args.addresses))
            elapsed = time.monotonic() - started
            peak = status(server.pid, "VmHWM")
            print(f"{args.connections} wrong AUTHs from {args.addresses} address(es) in {elapsed:.2f} s:"
                  f" replies {dict(codes)}")
            print(f"RSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB")
            for what, (reply, seconds) in zip(["first", "cached"], logins):
                print(f"{what} valid login from another address: {reply!r} after {seconds:.2f} s")
        finally:
            server.terminate()
            server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
