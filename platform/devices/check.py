#!/usr/bin/env python3
"""The devices end to end, from the host: boot a kernel on QEMU virt with a virtio disk, rng,
network and console (on virtio-mmio or PCIe), run the blk, entropy and net workloads, drive the
HTTP server with concurrent clients and check every answer, check the disk image's bytes and the
console's first line from here, then boot again with `verify` and let the kernel check what the
first boot wrote.

    platform/devices/check.py KERNEL.elf [--transport mmio|pci] [--machine virt,gic-version=3]
        [--smp N] [--clients N] [--requests N] [--no-verify] [--json FILE]

The guest's network is QEMU's user network with restrict=on: the only way in is the forward of
one port on 127.0.0.1, and every client here connects to 127.0.0.1 only. Exits 0 only if every
check passed; prints what it measured (requests/s, the kernel's blk MB/s) and, with --json, writes
it to FILE (the bench reads it).
"""

import argparse
import http.client
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "..", "qemu", "run.sh")
LOOPBACK = "127.0.0.1"
SECTOR = 512
ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def body_bytes(n):
    """What GET /bytes/N answers (src/net/http.rs, body_byte)."""
    reps = ALPHABET * (n // len(ALPHABET) + 1)
    return reps[:n]


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class Boot:
    """One QEMU boot in the background; its console lines collected."""

    def __init__(self, cmd):
        print("check: " + " ".join(cmd), flush=True)
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace")
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            sys.stdout.write("  | " + line)
            with self.cv:
                self.lines.append(line.rstrip("\r\n"))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_for(self, text, timeout):
        end = time.time() + timeout
        with self.cv:
            while True:
                if any(text in l for l in self.lines):
                    return True
                if self.p.poll() is not None or time.time() > end:
                    return False
                self.cv.wait(0.2)

    def finish(self, timeout):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        time.sleep(0.2)
        return rc

    def results(self):
        out = {}
        for l in self.lines:
            m = re.match(r"result (\{.*\})$", l)
            if m:
                r = json.loads(m.group(1))
                out[r["name"]] = r
        return out


def client(port, n, seed, errors, counts):
    """n keep-alive requests on one connection, alternating / and /bytes/K; checks each."""
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        for i in range(n):
            if i % 2 == 0:
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read()
                if r.status != 200 or not re.fullmatch(rb"initmm: hello from cpu\d+\n", body):
                    errors.append(f"GET / answered {r.status} {body[:80]!r}")
                    return
                counts["cpus"].add(body.strip().split(b"cpu")[-1].decode())
            else:
                k = rnd.choice([0, 1, 61, 62, 1000, 4096, 65536, rnd.randrange(1, 200_000)])
                conn.request("GET", f"/bytes/{k}")
                r = conn.getresponse()
                body = r.read()
                if r.status != 200 or body != body_bytes(k):
                    errors.append(f"GET /bytes/{k} answered {r.status} with {len(body)} bytes, not the pattern")
                    return
                counts["bytes"] += len(body)
            counts["ok"] += 1
    except Exception as e:  # noqa: BLE001 - any failure of a client is reported as such
        errors.append(f"client {seed}: {type(e).__name__}: {e}")
    finally:
        conn.close()


def raw(port, data, read_all=True, read_some=0):
    """Send raw bytes; return what came back (all of it, or read_some bytes and hang up)."""
    with socket.create_connection((LOOPBACK, port), timeout=30) as s:
        s.sendall(data)
        got = b""
        while True:
            want = 65536 if read_all else max(1, read_some - len(got))
            chunk = s.recv(want)
            if not chunk:
                return got
            got += chunk
            if not read_all and len(got) >= read_some:
                return got


def check_image(path):
    """The blk workload's regions, checked byte for byte from the host (src/workload/blk.rs)."""
    with open(path, "rb") as f:
        data = f.read()
    hdr = data[:SECTOR]
    if hdr[:10] != b"INITMM-BLK":
        return "the image's sector 0 has no INITMM-BLK header", 0
    seed, cpus, first, per_cpu = struct.unpack_from("<QIII", hdr, 16)
    bodies = [bytes(((b + 7 * i) & 0xFF) for i in range(496)) for b in range(256)]
    checked = 0
    for c in range(cpus):
        for k in range(per_cpu):
            s = first + c * per_cpu + k
            sec = data[s * SECTOR:(s + 1) * SECTOR]
            want_hdr = struct.pack("<QII", seed, c, s)
            base = ((seed & 0xFF) + (s & 0xFF) * 131 + (c & 0xFF) * 13) & 0xFF
            if sec[:16] != want_hdr or sec[16:] != bodies[base]:
                return f"sector {s} (cpu {c}'s region) differs from what the kernel wrote", checked
            checked += 1
    return None, checked


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kernel")
    ap.add_argument("--transport", default="mmio")
    ap.add_argument("--machine", default="virt")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--requests", type=int, default=20, help="per client")
    ap.add_argument("--disk-mb", type=int, default=16)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--timeout", type=int, default=240)
    a = ap.parse_args()

    failures = []
    tmp = tempfile.mkdtemp(prefix="initmm-devices-")
    img = os.path.join(tmp, "disk.img")
    with open(img, "wb") as f:
        f.truncate(a.disk_mb << 20)
    con = os.path.join(tmp, "console2.txt")
    port = free_port()
    base = [RUN, "--machine", a.machine, "--smp", str(a.smp), "--transport", a.transport,
            "--disk", img, "--timeout", str(a.timeout)]
    b = Boot(base + ["--rng", "--net", str(port), "--console2", con, a.kernel, "workload=blk,entropy,net",
                     "iterations=100", f"seconds={a.timeout - 30}"])
    measured = {"transport": a.transport, "machine": a.machine, "smp": a.smp}
    if not b.wait_for("net: serving HTTP", a.timeout):
        failures.append("the kernel never said it serves HTTP")
    else:
        errors, counts = [], {"ok": 0, "bytes": 0, "cpus": set()}
        # The forward is up once QEMU runs; the first connection may still race the listener.
        t0 = time.time()
        threads = [threading.Thread(target=client, args=(port, a.requests, i, errors, counts))
                   for i in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.time() - t0
        failures += errors
        want = a.clients * a.requests
        if counts["ok"] != want:
            failures.append(f"{counts['ok']} of {want} requests answered right")
        measured.update(requests=counts["ok"], seconds=round(dt, 3),
                        requests_per_s=round(counts["ok"] / dt, 1), clients=a.clients,
                        answered_by_cpus=sorted(counts["cpus"]))
        print(f"check: {counts['ok']}/{want} answers right from {a.clients} concurrent clients in "
              f"{dt:.2f} s ({counts['ok'] / dt:.1f} requests/s), answered by cpus {sorted(counts['cpus'])}")
        bad = raw(port, b"GARBAGE\r\n\r\n")
        if not bad.startswith(b"HTTP/1.1 400 "):
            failures.append(f"a malformed request got {bad[:40]!r}, not 400")
        got = raw(port, b"GET /bytes/8000000 HTTP/1.1\r\n\r\n", read_all=False, read_some=4000)
        if not got.startswith(b"HTTP/1.1 200 "):
            failures.append(f"the big request got {got[:40]!r}")
        time.sleep(0.5)
        after = raw(port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        if b"initmm: hello" not in after:
            failures.append("the server did not answer after a client went away mid-answer")
        quit_ = raw(port, b"GET /quit HTTP/1.1\r\n\r\n")
        if b"bye" not in quit_:
            failures.append(f"/quit got {quit_[:40]!r}")
    rc = b.finish(a.timeout)
    res = b.results()
    if rc != 0:
        failures.append(f"the first boot exited with status {rc}")
    for w in ["blk", "entropy", "net"]:
        if not res.get(w, {}).get("passed"):
            failures.append(f"workload {w} did not pass: {res.get(w)}")
    n = res.get("net", {})
    if n and (n.get("bad_requests", 0) < 1 or n.get("clients_gone", 0) < 1):
        failures.append(f"the kernel counted {n.get('bad_requests')} malformed requests and "
                        f"{n.get('clients_gone')} clients gone, expected at least one of each")
    if "blk" in res:
        measured.update(blk_written_mb_s=res["blk"]["written_mb_s"], blk_read_mb_s=res["blk"]["read_mb_s"])
    said = open(con, errors="replace").read() if os.path.exists(con) else ""
    if "initmm: second console at" not in said:
        failures.append(f"the virtio console's file holds {said[:80]!r}, not the kernel's first line")
    else:
        print(f"check: the virtio console wrote {said.strip()!r}")
    err, sectors = check_image(img)
    if err:
        failures.append(f"disk image: {err}")
    else:
        print(f"check: the disk image holds every byte the kernel wrote ({sectors} sectors checked from the host)")
    if not a.no_verify:
        v = Boot(base + [a.kernel, "workload=blk", "verify"])
        rc = v.finish(a.timeout)
        r = v.results().get("blk", {})
        if rc != 0 or not r.get("passed") or r.get("verify") is not True:
            failures.append(f"the verify boot failed (status {rc}): {r}")
        else:
            print("check: the second boot read back and checked everything the first wrote")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(measured, f)
    for fl in failures:
        print(f"check: FAILED: {fl}", file=sys.stderr)
    try:
        for f in (img, con):
            if os.path.exists(f):
                os.remove(f)
        os.rmdir(tmp)
    except OSError:
        pass
    print(f"check: {a.transport} on {a.machine} -smp {a.smp}: "
          + ("ok" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
