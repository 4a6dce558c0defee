#!/usr/bin/env python3
"""`just bench`: boot initmm's benchmarks on QEMU virt and report.

    platform/bench/bench.py BENCH_KERNEL_ELF [quick|full|baseline] [IMAGE]
                            [--profile-elf ELF] [--baseline FILE|none]
                            [--write-baseline FILE] [--commit REV]

BENCH_KERNEL_ELF is the benchmark kernel, the `initmm-bench` package (both designs and `bench=`,
no profiling probes); --profile-elf the same built with its `profile` feature (the probes compiled
in, for the breakdown; without it the breakdown is left out); IMAGE is the Image `just run` boots, whose size
and boot time are measured (default: the bench kernel's own).

What it runs, in this order:
1. Instructions per operation: one -smp 1 boot of the bench kernel under `-icount shift=0`
   (every guest instruction is 1 ns of virtual time, so the generic counter's 62.5 MHz counts 16
   instructions a tick and instructions/op = virtual ns / ops). Deterministic: it does not depend
   on the host being idle, so `quick` mode measures the real figure too. Loads a, b, c in both
   designs, the floor of a map + unmap, growth with live areas and with ioremap's size.
2. Throughput: pairs of boots, -smp 1 and -smp 2, alternately first (1,2 then 2,1: ABBA, so
   linear host drift falls on both alike), each boot running both designs back to back in every
   rep (seed first in even reps; in odd pairs the designs trade the halves of the vmalloc
   window they map into, `windows=swapped`, since placement moves throughput by a few percent
   under QEMU). A scaling figure is one ratio per pair of boots (the -smp 2
   boot's median over the -smp 1 boot's), with a CI over the pairs; seed/prepatch is the median
   of the in-boot per-rep ratios pooled over the boots. The first -smp 1 boot also times the
   floor, the first -smp 2 boot the seed on 1 CPU and on 2 in one boot (shown, not decided on).
3. The breakdown (profiled kernel): boots at -smp 1 and 2 with profiling on: per lock the time
   held and waited and the acquisitions (the heap's lock among them), the serial time (some
   global lock held, nested holds counted once), TLB and leaf-write time, table allocations,
   barriers, TLB invalidations and writes to shared cache lines per operation.
4. (`full`) one -smp 4 boot, oversubscribed (4 vCPUs on the 2 host cores): reported, never a
   verdict; boot time against a floor kernel.
5. Devices: the ELF beside IMAGE (IMAGE without `.img`) booted with a virtio disk, rng and
   network at -smp 1 and 2 (platform/devices/check.py): the blk workload's MB/s and HTTP
   requests/s from concurrent clients on the host's 127.0.0.1, every answer checked.

Host contention: every bench line is stamped with the QEMU vCPU threads' run and run-queue wait
time on the host (/proc/PID/task/TID/schedstat; QEMU names its threads with `-name
debug-threads=on`) since the previous line. On this 2-core development machine a measurement's
throughput follows the share of the time the host let its vCPU threads run; the report says how
much they waited, so that a reader can tell the kernel's figures from the host's.

Confidence intervals are distribution-free: for n sorted samples the interval [x(k), x(n+1-k)]
with the largest k for which a Binomial(n, 1/2) falls below k with probability at most 2.5%
covers the median with at least 95% (the coverage printed is the exact one; below 6 samples no
such k exists and the interval is the min-max, of coverage 1 - 2^(1-n)). Instruction counts are
deterministic up to the run's state (load c's frames); their interval is the reps' min-max.

`baseline` mode runs step 1 only and needs --write-baseline FILE: the instructions per operation
of a commit, against which `--baseline FILE` decides "load c's instructions per op halved"
(default: platform/bench/baseline-8936a7f.json, the figures of the commit the issue started
from; `--baseline none` leaves that target undecided). For commit OLD:

    mkdir /tmp/old && git archive OLD | tar -x -C /tmp/old
    (cd /tmp/old && cargo build --release --config profile.release.codegen-units=1 \\
        --features bench --target-dir target/bench-kernel)
    platform/bench/bench.py /tmp/old/target/bench-kernel/aarch64-unknown-none/release/initmm \\
        baseline --write-baseline platform/bench/baseline-OLD.json --commit OLD

(One codegen unit, as the `bench-kernel` cargo profile builds the bench kernels: with several,
instructions per operation move by several percent with changes to unrelated code.)
"""
import json
import math
import os
import re
import statistics
import struct
import subprocess
import sys
import time
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "platform", "qemu", "run.sh")
OUT = os.path.join(ROOT, "target", "bench")
DEFAULT_BASELINE = os.path.join(ROOT, "platform", "bench", "baseline-8936a7f.json")
# QEMU virt's device windows for the ioremap-size benchmark (board knowledge lives here, not in
# the kernel): the PCIe MMIO window (2 MiB aligned, ~750 MiB) and high PCIe MMIO (512 GiB).
VIRT_MMIO = "bench_mmio=0x10000000 bench_mmio_1g=0x8000000000"
# QEMU's options for every benchmark boot: thread names, so that the vCPU threads' host
# scheduling can be read (see `HostClock`).
NAME_THREADS = ["--qemu-arg", "-name", "--qemu-arg", "debug-threads=on"]
# -icount shift: 2^0 ns of virtual time per instruction.
ICOUNT_SHIFT = 0


# Booting, and what the host's scheduler did meanwhile.

def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(k) for k in f.read().split()]
                todo += kids
                out += kids
        except OSError:
            pass
    return out


class HostClock:
    """The QEMU vCPU threads' host scheduling: run time and run-queue wait (ns), summed over the
    threads QEMU names `CPU n/TCG`. None where /proc does not tell (another OS, no schedstats)."""

    def __init__(self, runner_pid):
        self.runner, self.qemu = runner_pid, None

    def read(self):
        if self.qemu is None:
            for d in descendants(self.runner):
                try:
                    with open(f"/proc/{d}/comm") as f:
                        if f.read().startswith("qemu-system"):
                            self.qemu = d
                except OSError:
                    pass
            if self.qemu is None:
                return None
        run = wait = 0
        found = False
        try:
            for t in os.listdir(f"/proc/{self.qemu}/task"):
                with open(f"/proc/{self.qemu}/task/{t}/comm") as f:
                    if not re.match(r"CPU \d+/TCG", f.read().strip()):
                        continue
                with open(f"/proc/{self.qemu}/task/{t}/schedstat") as f:
                    r, w = (int(x) for x in f.read().split()[:2])
                run, wait, found = run + r, wait + w, True
        except (OSError, ValueError):
            return None
        return (time.monotonic(), run, wait) if found else None


def boot(elf, smp, words, extra=(), timeout=900):
    """Boot once; return (exit status, output lines, bench records). Each record carries `host`:
    the vCPU threads' share of the wall time spent running (`run`, per vCPU) and the share of
    their runnable time spent waiting for a host CPU (`wait`), since the previous bench line."""
    cmd = [RUN, "--smp", str(smp), "--timeout", str(timeout), *NAME_THREADS, *extra, elf] + words.split()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    clock = HostClock(p.pid)
    lines, records, prev = [], [], None
    for line in p.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        if not line.startswith("bench {"):
            continue
        now = clock.read()
        rec = json.loads(line[len("bench "):])
        if now and prev and now[0] > prev[0]:
            run, wait = now[1] - prev[1], now[2] - prev[2]
            rec["host"] = {"run": run / 1e9 / (now[0] - prev[0]) / smp,
                           "wait": wait / (run + wait) if run + wait else 0.0}
        prev = now
        records.append(rec)
    rc = p.wait()
    print(f"bench:   {time.monotonic() - t0:.0f} s", flush=True)
    return rc, lines, records


def floor_kernel():
    """An arm64 Image whose first instructions exit QEMU through semihosting: QEMU's own floor."""
    code = [
        0x10000081,  # adr x1, block (16 bytes on)
        0x52800300,  # mov w0, #0x18 (SYS_EXIT)
        0xD45E0000,  # hlt #0xf000
        0x14000000,  # b .
    ]
    body = struct.pack("<4I", *code) + struct.pack("<QQ", 0x20026, 0)  # ADP_Stopped_ApplicationExit, 0
    header = struct.pack("<IIQQQQQQII", 0x14000010, 0, 0, 4096, 0xA, 0, 0, 0, 0x644D5241, 0)
    path = os.path.join(OUT, "floor.img")
    with open(path, "wb") as f:
        f.write(header + body)
    return path


def qemu_wall(img, smp, append=None):
    """Wall time and console of the QEMU process alone (as run.sh starts it, without its steps)."""
    cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", str(smp), "-m", "1G",
           "-nographic", "-nic", "none", "-semihosting-config", "enable=on,target=native",
           "-kernel", img]
    if append:
        cmd += ["-append", append]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"bench: {img} exited with {r.returncode}:\n{r.stdout[-2000:]}")
    return wall, r.stdout


def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# The plan.

# The CPU counts that decide: the host has 2 cores. -smp 4 puts 4 vCPUs on them.
VERDICT_CPUS = (1, 2)
OVERSUBSCRIBED = 4
PROJECT_TO = (4, 8, 16, 64, 128)
CI_LEVEL = 0.95
# A vCPU thread that waited for a host CPU more than this share of its runnable time: the
# measurement is the host's as much as the kernel's.
CONTENDED = 0.05

# Per mode: the -icount boot (reps, ms per measurement, ms per floor measurement, live areas for
# growth); the pairs of -smp 1/-smp 2 throughput boots (pairs, reps per boot, ms); the profiled
# boots per CPU count and their reps; the oversubscribed boot's reps; the boot-time runs.
# `full`: 6 pairs put the pairs' interval at their min-max, 97% coverage; 7 reps of 200 ms per
# boot give 42 in-boot pairs per CPU count for seed/prepatch (its interval at the 15th and 28th).
# A rep takes 0.4 s, so host drift slower than that cancels in its ratio. 6-7 minutes in all.
PLANS = {
    "quick": {"icount": (2, 300, 20, "10,1000"), "pairs": (1, 2, 40), "profiled": (1, 1),
              "oversubscribed": 0, "boot_reps": 1},
    "full": {"icount": (2, 300, 20, "10,1000,10000,100000"), "pairs": (6, 7, 200),
             "profiled": (2, 3), "oversubscribed": 5, "boot_reps": 11},
    "baseline": {"icount": (2, 300, 20, "10,1000,10000,100000"), "pairs": (0, 0, 0),
                 "profiled": (0, 0), "oversubscribed": 0, "boot_reps": 0},
}


def args():
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("elf", help="the bench kernel ELF (the initmm-bench package)")
    p.add_argument("mode", nargs="?", default="full", choices=list(PLANS))
    p.add_argument("image", nargs="?", help="the Image `just run` boots (default: ELF.img)")
    p.add_argument("--profile-elf", metavar="ELF",
                   help="the profiled kernel ELF (--features profile), for the breakdown")
    p.add_argument("--baseline", metavar="FILE", default=DEFAULT_BASELINE,
                   help="a --write-baseline file to decide load c's instructions against "
                        "(default: %(default)s; `none`: leave it undecided)")
    p.add_argument("--write-baseline", metavar="FILE",
                   help="write this run's instructions per operation")
    p.add_argument("--commit", metavar="REV",
                   help="the commit the bench kernel was built from, for --write-baseline "
                        "(default: `git describe` where the ELF is)")
    a = p.parse_args()
    if a.mode == "baseline" and not a.write_baseline:
        p.error("baseline mode needs --write-baseline FILE")
    return a


class Failures(list):
    def check(self, what, rc, lines, records):
        bad = [b for b in records if not b.get("ok", False)]
        if rc != 0 or bad or not records:
            self.append(f"{what}: exit {rc}, {len(bad)} failed checks: {bad[:3]}")
            print("\n".join(lines[-30:]))
            return False
        return True


def main():
    a = args()
    elf, mode = a.elf, a.mode
    plan = PLANS[mode]
    image = a.image or elf + ".img"
    baseline = None
    if mode != "baseline" and a.baseline != "none" and (
            a.baseline != DEFAULT_BASELINE or os.path.exists(a.baseline)):
        baseline = read_baseline(a.baseline)
    os.makedirs(OUT, exist_ok=True)
    failures = Failures()
    r = {"mode": mode, "plan": plan, "counter_hz": None, "icount": None, "boots": [], "runs": [],
         "profiled": [], "probe": {}, "scaling_runs": [], "floor_runs": [], "oversubscribed": [],
         "boot": {}, "devices": {}}

    # 1. Instructions per operation.
    reps, ms, floor_ms, lives = plan["icount"]
    words = (f"bench=designs,floor,growth reps={reps} ms={ms} floor_ms={floor_ms} lives={lives} "
             f"{VIRT_MMIO}")
    print(f"bench: -smp 1 under -icount shift={ICOUNT_SHIFT}: designs, floor, growth, {reps} reps "
          f"of {ms} ms of virtual time", flush=True)
    rc, lines, got = boot(elf, 1, words, ["--icount", str(ICOUNT_SHIFT)])
    if failures.check("-icount boot", rc, lines, got):
        r["icount"] = icount(got)
        r["counter_hz"] = r["icount"]["counter_hz"]
    if mode == "baseline":
        if r["icount"]:
            report_icount(r["icount"], None)
            write_baseline(a.write_baseline, elf, a.commit, r["icount"])
            print(f"\nbench: wrote {a.write_baseline}")
        if failures:
            sys.exit("bench: FAILED:\n  " + "\n  ".join(failures))
        return

    # 2. Throughput, in pairs of boots.
    npairs, reps, ms = plan["pairs"]
    for i in range(npairs):
        for smp in (1, 2) if i % 2 == 0 else (2, 1):
            groups = ["designs"]
            if i == 0:
                groups.append("floor" if smp == 1 else "scaling")
            words = f"bench={','.join(groups)} reps={reps} ms={ms}"
            if i % 2 == 1:
                # Where a design's areas lie moves its throughput by a few percent under QEMU:
                # the two designs trade halves of their window every other pair of boots.
                words += " windows=swapped"
            print(f"bench: pair {i + 1}/{npairs}, -smp {smp}: {','.join(groups)}, {reps} reps",
                  flush=True)
            rc, lines, got = boot(elf, smp, words)
            if not failures.check(f"pair {i + 1} -smp {smp}", rc, lines, got):
                continue
            bi = len(r["boots"])
            r["boots"].append({"pair": i, "cpus": smp})
            for b in got:
                b["boot"], b["pair"] = bi, i
                g = b["group"]
                if g == "info":
                    r["counter_hz"] = r["counter_hz"] or b["counter_hz"]
                elif g == "designs":
                    b["cpus"] = smp
                    r["runs"].append(b)
                elif g == "scaling":
                    r["scaling_runs"].append(b)
                elif g == "floor":
                    r["floor_runs"].append(b)

    # 3. The breakdown, in the profiled kernel.
    nprof, preps = plan["profiled"]
    if nprof and not a.profile_elf:
        print("bench: no --profile-elf: the breakdown and the serial fraction are left out")
        nprof = 0
    for i in range(nprof):
        for smp in (1, 2) if i % 2 == 0 else (2, 1):
            print(f"bench: profiled, -smp {smp}: breakdown, {preps} reps", flush=True)
            rc, lines, got = boot(a.profile_elf, smp, f"bench=breakdown preps={preps} ms={ms}")
            if not failures.check(f"profiled -smp {smp}", rc, lines, got):
                continue
            for b in got:
                if b["group"] == "probe":
                    r["probe"].setdefault(smp, []).append(b)
                elif b["group"] == "breakdown":
                    b["cpus"] = smp
                    r["profiled"].append(b)

    # 4. Oversubscribed, and boot time.
    if plan["oversubscribed"]:
        smp = OVERSUBSCRIBED
        print(f"bench: -smp {smp}: designs, {plan['oversubscribed']} reps (oversubscribed: "
              f"4 vCPUs on 2 host cores)", flush=True)
        rc, lines, got = boot(elf, smp, f"bench=designs reps={plan['oversubscribed']} ms={ms}")
        if failures.check(f"-smp {smp}", rc, lines, got):
            for b in got:
                if b["group"] == "designs":
                    b["cpus"] = smp
                    r["oversubscribed"].append(b)
    boot_times(r, image, plan["boot_reps"], failures)

    # 5. Devices: the kernel `just run` boots, with a virtio disk, rng and network.
    r["devices"] = devices_bench(image[:-4] if image.endswith(".img") else image, mode == "quick",
                                 failures)

    # Aggregate, report, decide.
    aggregate(r)
    report(r)
    r["baseline"] = baseline
    r["targets"] = check_targets(r, baseline)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(r, f, indent=1, default=str)
    if a.write_baseline and r["icount"]:
        write_baseline(a.write_baseline, elf, a.commit, r["icount"])
        print(f"bench: wrote {a.write_baseline}")
    chart(r)
    chart_projection(r)
    print(f"\nbench: wrote {OUT}/results.json, {OUT}/throughput.svg and {OUT}/projection.svg")
    if failures:
        print("bench: FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)


def boot_times(r, image, reps, failures):
    """The whole QEMU process, initmm with workload=none against the floor kernel, at -smp 1 and
    2, one run of each in turn so that host noise hits both (shown, not a target)."""
    if not reps:
        return
    floor_img = floor_kernel()
    for smp in VERDICT_CPUS:
        walls, fl, online = [], [], []
        for _ in range(reps):
            w, out = qemu_wall(image, smp, "semihosting workload=none")
            walls.append(w)
            fl.append(qemu_wall(floor_img, smp)[0])
            m = re.search(r"\[\s*([\d.]+) cpu0 INFO \] (\d+) of (\d+) CPUs online", out)
            if m and m.group(2) == m.group(3) == str(smp):
                online.append(float(m.group(1)) * 1000)
            else:
                failures.append(f"boot -smp {smp}: not every CPU came online")
        r["boot"][smp] = {"initmm_wall_s": stats(walls), "floor_wall_s": stats(fl),
                          "pair_ratios": [w / f for w, f in zip(walls, fl)],
                          "all_online_ms_since_entry": stats(online) if online else None}
    r["image_bytes"] = os.path.getsize(image)


def devices_bench(elf, quick, failures):
    """Device throughput at -smp 1 and 2 on virtio-mmio (GICv2): the blk workload's MB/s (the
    kernel measures them) and HTTP requests/s from concurrent host clients on 127.0.0.1
    (platform/devices/check.py, which checks every answer). Median over the reps."""
    out = {}
    reps, clients, requests = (1, 4, 10) if quick else (3, 4, 50)
    for smp in [1, 2]:
        runs = []
        for _ in range(reps):
            with tempfile.NamedTemporaryFile(suffix=".json") as j:
                cmd = [sys.executable, os.path.join(ROOT, "platform", "devices", "check.py"), elf,
                       "--smp", str(smp), "--no-verify", "--clients", str(clients),
                       "--requests", str(requests), "--json", j.name]
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode != 0:
                    failures.append(f"devices -smp {smp}: check.py failed: {p.stderr.strip()[-300:]}")
                    continue
                runs.append(json.load(open(j.name)))
        if runs:
            med = lambda k: statistics.median(float(r[k]) for r in runs)  # noqa: E731
            out[smp] = {"requests_per_s": med("requests_per_s"), "blk_written_mb_s": med("blk_written_mb_s"),
                        "blk_read_mb_s": med("blk_read_mb_s"), "reps": len(runs), "clients": clients,
                        "requests": clients * requests}
    return out


# Statistics.

def binom_cdf(k, n):
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n if k >= 0 else 0.0


def median_ci(xs, level=CI_LEVEL):
    """The median and a distribution-free interval for it: [x(k), x(n+1-k)] (1-based order
    statistics) with the largest k whose coverage 1 - 2 P(Bin(n, 1/2) <= k-1) is still >= level;
    the min-max when no k reaches it (n < 6 at 95%). Its exact coverage comes along."""
    xs = sorted(xs)
    n = len(xs)
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * binom_cdf(k, n) >= level:
        k += 1
    return {"median": statistics.median(xs), "lo": xs[k - 1], "hi": xs[n - k],
            "coverage": max(0.0, 1 - 2 * binom_cdf(k - 1, n)), "n": n, "samples": xs}


def min_max(xs):
    """A deterministic figure over its reps: the median, and the min-max as its interval."""
    xs = sorted(xs)
    return {"median": statistics.median(xs), "lo": xs[0], "hi": xs[-1], "coverage": None,
            "n": len(xs), "samples": xs}


def ratio_of(a, b):
    """a / b for two independent figures with intervals: the conservative interval."""
    return {"median": a["median"] / b["median"], "lo": a["lo"] / b["hi"], "hi": a["hi"] / b["lo"],
            "coverage": None, "n": min(a["n"], b["n"])}


# Instructions per operation (-icount).

def icount(records):
    """Instructions per operation from the -icount boot: with shift 0 one instruction is one ns
    of virtual time, so a figure of T counter ticks over N operations is T * 1e9 / hz / N
    instructions each (a growth line's nanoseconds are instructions already)."""
    info = next(b for b in records if b["group"] == "info")
    hz = info["counter_hz"]
    per_ns = 2 ** -ICOUNT_SHIFT
    instr = lambda t: t["ticks"] * 1e9 / hz * per_ns / max(t["ops"], 1)
    loads = {}
    for b in records:
        if b["group"] == "designs":
            loads.setdefault(b["load"], {}).setdefault(b["design"], []).append(instr(b))
    floor = {}
    for b in records:
        if b["group"] == "floor":
            for k in ("floor", "floor_batched", "real"):
                if k in b:
                    floor.setdefault(k, []).append(instr(b[k]))
                elif k + "_ns" in b:
                    # An older kernel's line: nanoseconds only, which are instructions here.
                    floor.setdefault(k, []).append(b[k + "_ns"] * per_ns)
    growth = {}
    for b in records:
        if b["group"] in ("slots", "areas"):
            growth.setdefault(b["group"], {})[b["live"]] = (
                instr(b["all"]) if "all" in b else b["median_ns"] * per_ns)
        elif b["group"] == "ioremap_size":
            growth.setdefault("ioremap_size", {})[b["size"]] = {
                "instructions": b["median_ns"] * per_ns, "table_pages": b["table_pages"],
                "leaf_level": b["leaf_level"]}
    return {"counter_hz": hz, "shift": ICOUNT_SHIFT, "ms": info["ms"],
            "instructions_per_op": {l: {d: min_max(v) for d, v in ds.items()}
                                    for l, ds in sorted(loads.items())},
            "floor": {k: min_max(v) for k, v in floor.items()}, "growth": growth}


# Throughput.

def aggregate(r):
    r["designs"] = throughput(r["runs"] + r["oversubscribed"])
    r["per_boot"] = per_boot(r["runs"])
    r["pairs_ratio"] = seed_prepatch(r["runs"] + r["oversubscribed"])
    r["boot_pairs"] = boot_pairs(r["per_boot"])
    r["scaling"] = in_boot_scaling(r["scaling_runs"])
    r["host"] = host_summary(r["runs"])
    fl = r["floor_runs"]
    r["floor"] = None
    if fl:
        r["floor"] = {"floor_ns": median_ci([b["floor"]["ns"] for b in fl]),
                      "floor_batched_ns": median_ci([b["floor_batched"]["ns"] for b in fl]),
                      "real_ns": median_ci([b["real"]["ns"] for b in fl]),
                      "ratio": median_ci([b["ratio"] for b in fl]),
                      "ratio_batched": median_ci([b["ratio_batched"] for b in fl])}
    r["probe"] = {c: {k: min(b[k] for b in bs) for k in PROBE_FIELDS} | {"n": len(bs)}
                  for c, bs in r["probe"].items()}
    r["breakdown"] = breakdown(r["profiled"], r["probe"], r["designs"], r["counter_hz"])
    r["projection"] = projection(r["designs"], r["breakdown"])


def throughput(runs):
    """{load: {design: {cpus: median_ci of ops/s over every rep of every boot}}}."""
    xs = {}
    for b in runs:
        xs.setdefault(b["load"], {}).setdefault(b["design"], {}).setdefault(b["cpus"], []).append(
            b["ops_per_sec"])
    return {load: {d: {c: median_ci(v) for c, v in sorted(per.items())} for d, per in ds.items()}
            for load, ds in sorted(xs.items())}


def per_boot(runs):
    """{load: {design: {boot: (cpus, pair, median ops/s, min, max)}}}."""
    xs = {}
    for b in runs:
        xs.setdefault(b["load"], {}).setdefault(b["design"], {}).setdefault(
            b["boot"], (b["cpus"], b["pair"], []))[2].append(b["ops_per_sec"])
    return {load: {d: {bi: {"cpus": c, "pair": p, "median": statistics.median(v), "min": min(v),
                            "max": max(v)} for bi, (c, p, v) in per.items()}
                   for d, per in ds.items()} for load, ds in xs.items()}


def seed_prepatch(runs):
    """{load: {cpus: seed/prepatch as the median_ci of the in-boot per-rep ratios, pooled over
    the boots}}, with the medians of the reps in which each design went first (the order
    effect that alternating cancels)."""
    by = {}
    for b in runs:
        by.setdefault((b["load"], b["cpus"], b.get("boot", -1), b["rep"]), {})[b["design"]] = b
    out = {}
    for (load, cpus, _, _), p in sorted(by.items()):
        if "seed" in p and "prepatch" in p:
            ratio = p["seed"]["ops_per_sec"] / p["prepatch"]["ops_per_sec"]
            e = out.setdefault(load, {}).setdefault(cpus, {"all": [], "seed": [], "prepatch": []})
            e["all"].append(ratio)
            e[p["seed"].get("first", "seed")].append(ratio)
    return {load: {c: {**median_ci(e["all"]),
                       "seed_first": statistics.median(e["seed"]) if e["seed"] else None,
                       "prepatch_first": statistics.median(e["prepatch"]) if e["prepatch"] else None}
                   for c, e in per.items()} for load, per in out.items()}


def boot_pairs(pb):
    """{load: {"ratio": median_ci over the pairs of (the -smp 2 boot's seed median / the -smp 1
    boot's), "cpu_time": of 2 X(1) / X(2), the per-op CPU time at -smp 2 over -smp 1}}."""
    out = {}
    for load, ds in pb.items():
        by = {}
        for bt in ds.get("seed", {}).values():
            by.setdefault(bt["pair"], {})[bt["cpus"]] = bt["median"]
        ratios = [p[2] / p[1] for _, p in sorted(by.items()) if 1 in p and 2 in p]
        if ratios:
            out[load] = {"ratio": median_ci(ratios),
                         "cpu_time": median_ci([2 / x for x in ratios])}
    return out


def in_boot_scaling(runs):
    """{load: {"ratio": median_ci of the per-rep 2-CPU/1-CPU ratios, "one": median_ci of the
    1-CPU ops/s, "all": of the 2-CPU ops/s, "cpus": CPUs in the second}}: the seed on one CPU and
    on all of them back to back in each rep of one -smp 2 boot."""
    by = {}
    for b in runs:
        by.setdefault((b["load"], b["rep"]), {})[b["cpus"]] = b["ops_per_sec"]
    out = {}
    for (load, _), p in sorted(by.items()):
        if 1 in p and len(p) == 2:
            n = max(p)
            e = out.setdefault(load, {"ratio": [], "one": [], "all": [], "cpus": n})
            e["ratio"].append(p[n] / p[1])
            e["one"].append(p[1])
            e["all"].append(p[n])
    return {load: {"ratio": median_ci(e["ratio"]), "one": median_ci(e["one"]),
                   "all": median_ci(e["all"]), "cpus": e["cpus"]} for load, e in out.items()}


def host_summary(runs):
    """Per CPU count: the vCPU threads' run-queue wait over the throughput reps (median, max), the
    reps above CONTENDED, and per boot the median wait."""
    out = {}
    for c in sorted({b["cpus"] for b in runs}):
        bs = [b for b in runs if b["cpus"] == c and "host" in b]
        if not bs:
            continue
        waits = [b["host"]["wait"] for b in bs]
        boots = {}
        for b in bs:
            boots.setdefault(b["boot"], []).append(b["host"]["wait"])
        out[c] = {"median": statistics.median(waits), "max": max(waits), "n": len(waits),
                  "contended": sum(w > CONTENDED for w in waits),
                  "per_boot": {bi: statistics.median(w) for bi, w in boots.items()}}
    return out


# The breakdown.

PROBE_FIELDS = ("hold", "wait", "section", "lock_on", "lock_off", "section_on", "section_off")


def breakdown(profiled, probe, thr, hz):
    """{load: {design: {cpus: totals over the profiled reps, per-op figures, serial fraction}}}.

    Profiling costs: each probe reads the counter, which QEMU makes a call into the host's clock,
    and part of that lands inside every hold it measures. The guest measures that part on an
    empty critical section (`probe`: ticks held and waited per acquisition); it is taken out of
    every lock's hold and wait here, per acquisition. Probes that run inside a hold (the
    pre-patch walk holds the page-table lock across its timed leaf writes, two counter reads
    each; a lock taken inside another's hold) are counted by `mm::profile` per lock
    (`inner_reads`) and taken out at what a read costs (half a timed section's cost, from the
    same `probe`). The CPU time per operation is the unprofiled one, from the throughput reps
    (cpus x counter_hz / ops per second), since the profiled kernel's probes slow it.

    The serial fraction is the time during which a CPU held at least one lock every CPU contends
    for (those `mm::profile::LOCKS` marks global: the page-table, virtual-area, frame and heap
    locks; the per-CPU vmap nodes' lock is shown but left out) over that CPU time: Amdahl's s,
    when measured at -smp 1. The global locks nest (the frame allocator allocates from the heap
    under its lock), so `mm::profile` counts that time itself (`serial`), each nested hold once,
    with the outermost holds' probe cost and the reads inside them taken out as for a lock.
    Counting them as one lock is the pessimistic reading: with several, the asymptote is really
    set by the most-held one."""
    groups = {}
    for b in profiled:
        groups.setdefault((b["load"], b["design"], b["cpus"]), []).append(b)
    out = {}
    for (load, design, cpus), bs in sorted(groups.items()):
        pc = probe.get(cpus, {})
        h0, w0 = pc.get("hold", 0.0), pc.get("wait", 0.0)
        # What one clock read costs: a timed section is two reads and a counter update.
        r0 = max(0.0, pc.get("section_on", 0.0) - pc.get("section_off", 0.0)) / 2
        tot = {"ops": sum(b["ops"] for b in bs), "cpu_ticks": sum(b["cpu_ticks"] for b in bs)}
        names = list(bs[0]["locks"])
        locks = {n: {k: sum(b["locks"][n].get(k, 0) for b in bs)
                     for k in ("wait", "hold", "acquired", "inner_reads")}
                 | {"global": bs[0]["locks"][n].get("global", True)} for n in names}
        ser = {k: sum(b["serial"][k] for b in bs) for k in ("hold", "holds", "inner_reads")}
        sections = {n: sum(b["sections"][n] for b in bs) for n in bs[0]["sections"]}
        events = {n: sum(b["events"][n] for b in bs) for n in bs[0]["events"]}
        tables = {n: sum(b["tables"][n] for b in bs) for n in bs[0]["tables"]}
        ops = max(tot["ops"], 1)
        u = thr.get(load, {}).get(design, {}).get(cpus)
        cpu_op = cpus * hz / u["median"] if u and hz else tot["cpu_ticks"] / ops

        def unclamped(hold, acquired, inner, n_ops):
            return (hold - acquired * h0 - inner * r0) / n_ops

        def held(lk, n_ops):
            return max(0.0, unclamped(lk["hold"], lk["acquired"], lk.get("inner_reads", 0), n_ops))

        def serial(s, n_ops):
            return max(0.0, unclamped(s["hold"], s["holds"], s["inner_reads"], n_ops)) / cpu_op

        global_sum = sum(held(lk, ops) for lk in locks.values() if lk["global"])
        out.setdefault(load, {}).setdefault(design, {})[cpus] = {
            "reps": len(bs), **tot, "locks": locks, "serial_totals": ser, "sections": sections,
            "events": events, "tables": tables,
            "per_op": {
                "cpu_ticks": cpu_op,
                "cpu_ticks_profiled": tot["cpu_ticks"] / ops,
                "locks": {n: {"hold": held(lk, ops),
                              "clamped": unclamped(lk["hold"], lk["acquired"],
                                                   lk.get("inner_reads", 0), ops) < 0,
                              "wait": max(0.0, lk["wait"] - lk["acquired"] * w0) / ops,
                              "acquired": lk["acquired"] / ops, "global": lk["global"]}
                          for n, lk in locks.items()},
                "serial_ticks": serial(ser, ops) * cpu_op,
                "global_holds_ticks": global_sum,
                "sections": {n: v / ops for n, v in sections.items()},
                "events": {n: v / ops for n, v in events.items()},
                "tables": {n: v / ops for n, v in tables.items()},
            },
            "serial": serial(ser, ops),
            "serial_ci": median_ci([serial(b["serial"], max(b["ops"], 1)) for b in bs]),
            "serial_raw": ser["hold"] / max(tot["cpu_ticks"], 1),
            "ops_per_sec": statistics.median(b["ops_per_sec"] for b in bs),
        }
    return out


def amdahl(x1, s, n):
    return x1 * n / (1 + s * (n - 1))


def usl(x1, sigma, kappa, n):
    return x1 * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def projection(designs, bd):
    """Per load and design: s from the -smp 1 breakdown, X(1) the measured -smp 1 median;
    Amdahl, and USL with sigma = s and kappa from the measured -smp 2 median (kappa < 0, a
    measurement better than Amdahl's, is clamped to 0), at 1, 2 and PROJECT_TO CPUs; and how far
    Amdahl's -smp 2 (and the oversubscribed -smp 4) is from the measurement."""
    out = {}
    for load, ds in designs.items():
        for design, per in ds.items():
            b = bd.get(load, {}).get(design, {}).get(1)
            if 1 not in per or not b:
                continue
            x1, s = per[1]["median"], b["serial"]
            p = {"s": s, "x1": x1, "kappa": None, "kappa_clamped": False, "measured": {},
                 "amdahl": {n: amdahl(x1, s, n) for n in (1, 2) + PROJECT_TO}}
            for n in (1, 2, OVERSUBSCRIBED):
                if n in per:
                    m = per[n]["median"]
                    p["measured"][n] = {"median": m, "amdahl": p["amdahl"][n],
                                        "off": m / p["amdahl"][n] - 1}
            if 2 in per:
                k = (2 * x1 / per[2]["median"] - 1 - s) / 2
                p["kappa"], p["kappa_clamped"] = max(k, 0.0), k < 0
                p["usl"] = {n: usl(x1, s, p["kappa"], n) for n in (1, 2) + PROJECT_TO}
                if p["kappa"] > 0 and s < 1:
                    p["usl_peak_cpus"] = math.sqrt((1 - s) / p["kappa"])
            out.setdefault(load, {})[design] = p
    return out


# Baselines: another commit's instructions per operation, for the load-c target.

BASELINE_FORMAT = "initmm-bench-baseline/2"


def write_baseline(path, elf, commit, ic):
    if not commit:
        git = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(elf)), "describe",
                              "--always", "--dirty"], capture_output=True, text=True)
        commit = git.stdout.strip() or None
    qemu = subprocess.run(["qemu-system-aarch64", "--version"], capture_output=True, text=True)
    with open(path, "w") as f:
        json.dump({"format": BASELINE_FORMAT, "commit": commit,
                   "what": f"instructions per operation at -smp 1 under -icount shift={ic['shift']}"
                           f" ({ic['ms']} ms of virtual time per rep), of the bench kernel of "
                           f"commit {commit} built in one codegen unit (as the justfile's bench "
                           f"recipe builds it), written by platform/bench/bench.py baseline",
                   "qemu": qemu.stdout.splitlines()[0] if qemu.stdout else None,
                   "instructions_per_op": {l: {d: {"median": v["median"], "samples": v["samples"]}
                                               for d, v in ds.items()}
                                           for l, ds in ic["instructions_per_op"].items()},
                   "floor": {k: {"median": v["median"], "samples": v["samples"]}
                             for k, v in ic["floor"].items()}}, f, indent=1)
        f.write("\n")


def read_baseline(path):
    """{"source", "label", "instructions_per_op": {load: {design: min_max}}} from a
    --write-baseline file; a file of the older format (throughput only) has no instructions."""
    with open(path) as f:
        d = json.load(f)
    ipo = {load: {design: min_max(v["samples"]) for design, v in ds.items()}
           for load, ds in d.get("instructions_per_op", {}).items()}
    return {"source": path, "label": d.get("commit") or path, "instructions_per_op": ipo}


# Report.

def num(x):
    """Operations per second, to 3-4 significant figures."""
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def ci_text(c, f=num):
    return f"{f(c['median'])} [{f(c['lo'])}-{f(c['hi'])}]"


def ratio_text(c):
    return ci_text(c, lambda x: f"{x:.2f}")


def instr_text(c):
    if round(c["lo"]) == round(c["hi"]):
        return f"{c['median']:.0f}"
    return f"{c['median']:.0f} [{c['lo']:.0f}-{c['hi']:.0f}]"


def load_named(r, letter):
    for load in list(r.get("designs", {})) + list((r.get("icount") or {}).get(
            "instructions_per_op", {})):
        if load.startswith(letter + "_"):
            return load
    return None


def coverage_note(r):
    cov = sorted({round(c["coverage"], 3) for ds in r["designs"].values() for per in ds.values()
                  for c in per.values()})
    return "/".join(f"{c:.0%}" for c in cov)


def report(r):
    if r["icount"]:
        report_icount(r["icount"], r["designs"])
    if r["designs"]:
        report_throughput(r)
    if r["breakdown"]:
        report_breakdown(r)
    if r["projection"]:
        report_projection(r)
    if r["floor"]:
        f = r["floor"]
        print(f"\nFloor of a 4 KiB map + read + unmap (-smp 1, ns per op, median [CI] over "
              f"{f['floor_ns']['n']} reps): with its own broadcast TLBI {ci_text(f['floor_ns'], fmt_ns)},"
              f" with the invalidation batched per 512 pages {ci_text(f['floor_batched_ns'], fmt_ns)};"
              f" real ioremap+read+iounmap {ci_text(f['real_ns'], fmt_ns)}; real/floor "
              f"{ratio_text(f['ratio'])}, real/batched floor {ratio_text(f['ratio_batched'])}")
    for smp, b in r["boot"].items():
        online = b["all_online_ms_since_entry"]
        w = b["initmm_wall_s"]
        print(f"boot -smp {smp}: initmm {w['median'] * 1000:.0f} ms ({w['min'] * 1000:.0f}-"
              f"{w['max'] * 1000:.0f}), floor kernel {b['floor_wall_s']['median'] * 1000:.0f} ms, "
              f"ratio {statistics.median(b['pair_ratios']):.2f}"
              + (f", all CPUs online {online['median']:.1f} ms after entry" if online else ""))
    if "image_bytes" in r:
        print(f"Image: {r['image_bytes']} bytes ({r['image_bytes'] / 1024:.0f} KiB)")
    for smp, d in r.get("devices", {}).items():
        print(f"devices -smp {smp} (virtio-mmio, GICv2, median of {d['reps']}): blk {d['blk_written_mb_s']:.1f} MB/s "
              f"written, {d['blk_read_mb_s']:.1f} MB/s read and checked; HTTP {d['requests_per_s']:.1f} "
              f"requests/s ({d['clients']} concurrent keep-alive clients, {d['requests']} requests, every "
              f"answer checked)")


def fmt_ns(x):
    return f"{x:.0f}"


def report_icount(ic, designs):
    print(f"\nInstructions per operation (-smp 1, -icount shift={ic['shift']}: deterministic; "
          f"{ic['ms']} ms of virtual time per rep, the final purge included; [min-max] over the "
          f"reps where they differ)")
    ipo = ic["instructions_per_op"]
    print(f"{'load':<24} {'seed':>14} {'prepatch':>14}   {'seed -smp 1 ops/s':>24}")
    for load, ds in ipo.items():
        thr = (designs or {}).get(load, {}).get("seed", {}).get(1)
        print(f"{load:<24} {instr_text(ds['seed']) if 'seed' in ds else '-':>14} "
              f"{instr_text(ds['prepatch']) if 'prepatch' in ds else '-':>14}   "
              f"{ci_text(thr) if thr else '-':>24}")
    f = ic["floor"]
    if f:
        print("floor of a 4 KiB map + read + unmap: " + ", ".join(
            f"{label} {instr_text(f[k])}" for k, label in (
                ("floor", "with its own TLBI"), ("floor_batched", "with the invalidation batched"),
                ("real", "real ioremap+read+iounmap")) if k in f))
    g = ic["growth"]
    if g.get("slots"):
        print("growth, instructions per op against live areas: per-CPU slot ioremap+iounmap "
              + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(g["slots"].items()))
              + "; global window reserve+release "
              + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(g.get("areas", {}).items())))
    if g.get("ioremap_size"):
        print("ioremap+iounmap against size: " + ", ".join(
            f"{k}: {v['instructions']:.0f} ({v['table_pages']} table pages, leaf {v['leaf_level']})"
            for k, v in g["ioremap_size"].items()))


def report_throughput(r):
    cpus = [c for c in VERDICT_CPUS if any(c in per for ds in r["designs"].values()
                                           for per in ds.values())]
    nboots = {c: sum(1 for b in r["boots"] if b["cpus"] == c) for c in cpus}
    print(f"\nThroughput, operations per second: median [CI of the median, coverage "
          f"{coverage_note(r)}] over every rep of {', '.join(f'{n} boot(s) at -smp {c}' for c, n in nboots.items())}; "
          f"seed/prepatch: the median [CI] of the in-boot per-rep ratios (the designs run back to "
          f"back, alternately first)")
    print(f"{'load':<24} {'design':<13}" + "".join(f" {'-smp ' + str(c):>26}" for c in cpus))
    for load, ds in r["designs"].items():
        for design in ("seed", "prepatch"):
            print(f"{load:<24} {design:<13}" + "".join(
                f" {ci_text(ds[design][c]) if c in ds.get(design, {}) else '-':>26}" for c in cpus))
        p = r["pairs_ratio"].get(load, {})
        print(f"{'':<24} {'seed/prepatch':<13}" + "".join(
            f" {ratio_text(p[c]) + 'x' if c in p else '-':>26}" for c in cpus))
    order = []
    for load, per in r["pairs_ratio"].items():
        for c in cpus:
            e = per.get(c)
            if e and e["seed_first"] is not None and e["prepatch_first"] is not None:
                order.append(f"{load[0]} -smp {c}: {e['seed_first']:.2f}/{e['prepatch_first']:.2f}")
    if order:
        print("Order effect, seed/prepatch in reps where seed / prepatch ran first: " + ", ".join(order))
    print("\nEach boot's seed median (boots in the order they ran), and in brackets the spread of "
          "its own reps ((max-min)/median): between boots against within a boot")
    for load, ds in r["per_boot"].items():
        for c in cpus:
            bts = sorted((bi, b) for bi, b in ds.get("seed", {}).items() if b["cpus"] == c)
            if bts:
                print(f"{load:<24} -smp {c}: " + "  ".join(
                    f"{num(b['median'])} ({(b['max'] - b['min']) / b['median']:.0%})" for _, b in bts))
    if r["host"]:
        print("Host: the vCPU threads' wait for a host CPU, as a share of their runnable time, per "
              f"throughput rep (reps above {CONTENDED:.0%} measure the host as much as the kernel)")
        for c, h in r["host"].items():
            print(f"  -smp {c}: median {h['median']:.1%}, max {h['max']:.1%}, {h['contended']} of "
                  f"{h['n']} reps above {CONTENDED:.0%}; per boot " + " ".join(
                      f"{w:.1%}" for _, w in sorted(h["per_boot"].items())))
    if r["boot_pairs"]:
        print("\nScaling across boots, seed: each pair of boots' -smp 2 median over its -smp 1 "
              "median, median [CI] over the pairs; per-op CPU time at -smp 2 over -smp 1 is 2/that")
        for load, e in r["boot_pairs"].items():
            print(f"{load:<24} -smp 2/-smp 1 {ratio_text(e['ratio'])}x over {e['ratio']['n']} "
                  f"pair(s) ({' '.join(f'{x:.2f}' for x in e['ratio']['samples'])}); CPU time per op "
                  f"{ratio_text(e['cpu_time'])}x")
    if r.get("scaling"):
        print("In one -smp 2 boot, the seed on 1 CPU (the other idle in wfi) and on 2, back to back "
              "in each rep: shown, not decided on (its 1 CPU is no -smp 1 machine)")
        for load, e in r["scaling"].items():
            print(f"{load:<24} 1 CPU {ci_text(e['one'])}, {e['cpus']} CPUs {ci_text(e['all'])},"
                  f" {e['cpus']}/1 {ratio_text(e['ratio'])}x")
    over = sorted({b["cpus"] for b in r["oversubscribed"]})
    for c in over:
        print(f"\n-smp {c}, OVERSUBSCRIBED ({c} vCPUs on 2 host cores): reported, never a verdict")
        for load, ds in r["designs"].items():
            cells = [f"{d} {ci_text(ds[d][c])}" for d in ("seed", "prepatch") if c in ds.get(d, {})]
            p = r["pairs_ratio"].get(load, {}).get(c)
            print(f"{load:<24} " + "   ".join(cells) + (f"   seed/prepatch {ratio_text(p)}x" if p else ""))


def report_breakdown(r):
    hz = r["counter_hz"]
    tick = f"; 1 tick = {1e9 / hz:.1f} ns" if hz else ""
    cols = [(d, c) for c in VERDICT_CPUS for d in ("seed", "prepatch")]
    print(f"\nWhere the time goes, per operation, in guest counter ticks{tick}: the profiled kernel, "
          f"apart from the throughput boots. Held and waited have profiling's own cost per "
          f"acquisition taken out, and so have the probes that ran inside a hold (the pre-patch "
          f"walk holds the page-table lock across its timed leaf writes; a lock taken inside "
          f"another's hold: the frame allocator allocates from the heap under its lock); CPU time "
          f"is the unprofiled one; locks no run of a load took are left out. shared_writes: "
          f"acquisitions of global locks and the writes to shared lines the code counts")
    for c, p in sorted(r["probe"].items()):
        print(f"  profiling's cost at -smp {c} (least of {p['n']} calibrations): per acquisition "
              f"{p['hold']:.1f} ticks inside the hold, {p['wait']:.1f} in the wait, "
              f"{p['lock_on'] - p['lock_off']:.1f} of CPU time; per timed section "
              f"{p['section_on'] - p['section_off']:.1f} of CPU time (so "
              f"{(p['section_on'] - p['section_off']) / 2:.1f} a counter read), {p['section']:.1f} "
              f"counted in it")
    for load, ds in r["breakdown"].items():
        have = [(d, c) for d, c in cols if c in ds.get(d, {})]
        print(f"\n{load:<36}" + "".join(f" {d + ' -smp ' + str(c):>16}" for d, c in have))

        def row(label, get, f):
            print(f"  {label:<34}" + "".join(f" {f(get(ds[d][c])):>16}" for d, c in have))

        t = lambda x: f"{x:.1f}"
        n = lambda x: f"{x:.3f}"
        per = lambda b: b["per_op"]
        row("CPU time", lambda b: per(b)["cpu_ticks"], t)
        row("CPU time, profiled", lambda b: per(b)["cpu_ticks_profiled"], t)
        for name in lock_names_of(ds):
            if all(ds[d][c]["locks"].get(name, {}).get("acquired", 0) == 0 for d, c in have):
                continue
            lk = lambda b, k: per(b)["locks"].get(name, {}).get(k, 0)
            label = name
            if not all(ds[d][c]["locks"].get(name, {}).get("global", True) for d, c in have):
                label += " (per-CPU)"
            row(f"{label} held", lambda b: (lk(b, "hold"), lk(b, "clamped")),
                lambda x: f"{x[0]:.1f}" + ("<" if x[1] else ""))
            row(f"{label} waited", lambda b: lk(b, "wait"), t)
            row(f"{label} taken (count)", lambda b: lk(b, "acquired"), n)
        row("global locks held, nested once", lambda b: per(b)["serial_ticks"], t)
        first = ds[have[0][0]][have[0][1]]
        for name in first["sections"]:
            row(f"{name} (time, with its probe)", lambda b: per(b)["sections"].get(name, 0), t)
        for name in first["events"]:
            row(f"{name} (count)", lambda b: per(b)["events"].get(name, 0), n)
        row("table installs lost (count)", lambda b: per(b)["tables"].get("lost", 0), n)
        row("serial fraction (global locks)", lambda b: b["serial"], lambda x: f"{x:.2%}")
        row("  [CI] over the reps", lambda b: b["serial_ci"],
            lambda c: f"{c['lo']:.1%}-{c['hi']:.1%}")
        row("  raw: held / profiled CPU time", lambda b: b["serial_raw"], lambda x: f"{x:.2%}")
        thr = r["designs"].get(load, {})
        if any(lk.get("clamped") for d, c in have for lk in per(ds[d][c])["locks"].values()):
            print("  <: profiling's cost came out above the measured hold (the host slowed the "
                  "calibration or sped up this run); shown as 0")
        if any(per(ds[d][c])["serial_ticks"] > per(ds[d][c])["global_holds_ticks"] * 1.01 + 0.5
               for d, c in have):
            print("  !: the serial time came out above the global locks' holds added up: a "
                  "profiler fault, since nested holds should count once")
        print(f"  {'profiled/unprofiled ops/s':<34}" + "".join(
            f" {ds[d][c]['ops_per_sec'] / thr[d][c]['median']:>16.2f}"
            if c in thr.get(d, {}) else f" {'-':>16}" for d, c in have))


def lock_names_of(ds):
    names = []
    for per in ds.values():
        for b in per.values():
            names += [n for n in b["locks"] if n not in names]
    return names


def report_projection(r):
    print("\nProjection from -smp 1: X(1) measured, s the serial fraction; Amdahl X(n) = "
          "X(1)n/(1+s(n-1)); USL X(n) = X(1)n/(1+s(n-1)+kn(n-1)), k fitted to the measured -smp 2")
    print(f"{'load':<24} {'design':<9} {'s':>7} {'k':>8} {'X(1)':>8} {'X(2) Amdahl':>12} "
          f"{'measured':>9} {'off':>7}   {'X(4) Amdahl':>12} {'measured*':>9} {'off':>7}")
    for load, ds in r["projection"].items():
        for design in ("seed", "prepatch"):
            p = ds.get(design)
            if not p:
                continue
            m2, m4 = p["measured"].get(2), p["measured"].get(OVERSUBSCRIBED)
            k = "-" if p["kappa"] is None else f"{p['kappa']:.4f}" + ("c" if p["kappa_clamped"] else "")
            sv = f"{p['s']:.2%}" + ("!" if p["s"] >= 1 else "")
            print(f"{load:<24} {design:<9} {sv:>7} {k:>8} {num(p['x1']):>8} "
                  f"{num(p['amdahl'][2]):>12} "
                  + (f"{num(m2['median']):>9} {m2['off']:>+7.1%}" if m2 else f"{'-':>9} {'-':>7}")
                  + f"   {num(p['amdahl'][4]):>12} "
                  + (f"{num(m4['median']):>9} {m4['off']:>+7.1%}" if m4 else f"{'-':>9} {'-':>7}"))
    print("off: measured / Amdahl - 1 (at -smp 1 it is 0 by construction). *: -smp 4 is "
          "oversubscribed, shown, not a check. kc: the measured -smp 2 beats Amdahl, k clamped to 0")
    if any(p["s"] >= 1 for ds in r["projection"].values() for p in ds.values()):
        print("!: a serial fraction of 100% or more: the profiled runs took longer than the "
              "throughput reps by more than profiling explains (the host was busier then); the "
              "projection from it is not worth reading")
    print(f"\n{'projected ops/s':<24} {'design':<9} {'model':<7}"
          + "".join(f" {'X(' + str(n) + ')':>9}" for n in PROJECT_TO) + "  USL peak")
    for load, ds in r["projection"].items():
        for design in ("seed", "prepatch"):
            p = ds.get(design)
            if not p:
                continue
            print(f"{load:<24} {design:<9} {'Amdahl':<7}" + "".join(
                f" {num(p['amdahl'][n]):>9}" for n in PROJECT_TO))
            if "usl" in p:
                peak = p.get("usl_peak_cpus")
                print(f"{'':<24} {'':<9} {'USL':<7}" + "".join(
                    f" {num(p['usl'][n]):>9}" for n in PROJECT_TO)
                    + (f"  {peak:.1f} CPUs" if peak else "  none"))


# Targets: the figure decides; a CI that straddles the threshold is flagged, since another run
# could decide the other way; a `strict` target is met only when its whole CI clears it.

def target(t, name, c, op, threshold, note="", strict=False):
    name = f"{name} {op} {threshold:g}"
    if c is None:
        t.append({"name": name, "figure": None, "met": None,
                  "note": note if note.startswith("not ") else "not measured in this run"})
        return
    fig = c["median"]
    met = fig >= threshold if op == ">=" else fig <= threshold
    straddles = c["lo"] < threshold < c["hi"]
    if strict:
        met = met and not straddles
    t.append({"name": name, "figure": fig, "lo": c["lo"], "hi": c["hi"],
              "met": met, "straddles": straddles, "note": note})


def check_targets(r, baseline):
    t = []
    loads = {x: load_named(r, x) or f"load ({x})" for x in "abc"}
    bp = r.get("boot_pairs", {})
    npairs = lambda load: bp[load]["ratio"]["n"] if load in bp else 0
    for x in "ac":
        target(t, f"seed -smp 2/-smp 1 {loads[x]}", bp.get(loads[x], {}).get("ratio"), ">=", 1.8,
               f"pairs of boots, CI over {npairs(loads[x])} pair ratios")
    for x in "abc":
        target(t, f"seed CPU time per op -smp 2/-smp 1 {loads[x]}",
               bp.get(loads[x], {}).get("cpu_time"), "<=", 1.25,
               f"pairs of boots, CI over {npairs(loads[x])} pair ratios")
    b = r["breakdown"].get(loads["c"], {}).get("seed", {}).get(2)
    target(t, f"seed serial fraction {loads['c']} -smp 2 (all global locks)",
           b["serial_ci"] | {"median": b["serial"]} if b else None, "<=", 0.05,
           f"profiled reps, CI over {b['serial_ci']['n']} reps" if b else
           "not measured: no profiled kernel (--profile-elf)")
    for x in "abc":
        target(t, f"seed/prepatch {loads[x]} -smp 2", r["pairs_ratio"].get(loads[x], {}).get(2),
               ">=", 1.0, "in-boot per-rep ratios; met only if the CI clears it", strict=True)
    ic = r["icount"]["instructions_per_op"] if r["icount"] else {}
    target(t, f"seed {loads['a']} instructions per op", ic.get(loads["a"], {}).get("seed"),
           "<=", 700, "-icount, -smp 1, amortized; [min-max] over the reps")
    mine = ic.get(loads["c"], {}).get("seed")
    old = baseline and baseline["instructions_per_op"].get(loads["c"], {}).get("seed")
    if mine and old:
        target(t, f"seed {loads['c']} instructions per op / baseline ({baseline['label']}: "
                  f"{old['median']:.0f})", ratio_of(mine, old), "<=", 0.5, "-icount, -smp 1")
    else:
        target(t, f"seed {loads['c']} instructions per op / baseline", None, "<=", 0.5,
               "not decided: no --baseline FILE" if not baseline else
               "not decided: the baseline has no instruction counts for it" if mine else
               "not decided: no -icount figure")
    host = r.get("host", {})
    print("\nTargets (the figure decides; ~ marks an interval that straddles the threshold, where "
          "another run may decide otherwise):")
    for x in t:
        if x["met"] is None:
            print(f"  n/a    {x['name']}: {x['note']}")
            continue
        flag = "~" if x["straddles"] else " "
        print(f"  {'met   ' if x['met'] else 'MISSED'}{flag}{x['name']}: {x['figure']:.3f} "
              f"[{x['lo']:.3f}-{x['hi']:.3f}] ({x['note']})")
    busy = [f"-smp {c}: {h['contended']} of {h['n']}" for c, h in host.items() if h["contended"]]
    if busy:
        print(f"  Note: throughput reps in which the vCPU threads waited for a host CPU more than "
              f"{CONTENDED:.0%} of the time ({', '.join(busy)}): the host was busy; the "
              f"throughput verdicts are the host's as much as the kernel's. The instruction counts "
              f"are not affected.")
    return t


# Figures.

def chart(r):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    loads = list(r["designs"])
    if not loads:
        return
    cpu_counts = sorted({c for ds in r["designs"].values() for per in ds.values() for c in per})
    fig, axes = plt.subplots(1, len(loads), figsize=(5 * len(loads), 4), squeeze=False)
    for ax, load in zip(axes[0], loads):
        for design, style, color in (("seed", "o-", "C0"), ("prepatch", "s--", "C1")):
            d = r["designs"][load].get(design, {})
            for xs, kw in (([c for c in cpu_counts if c in d and c in VERDICT_CPUS], {"label": design}),
                           ([c for c in cpu_counts if c in d and c not in VERDICT_CPUS],
                            {"mfc": "none", "label": f"{design}, oversubscribed"})):
                if xs:
                    ax.errorbar(xs, [d[c]["median"] for c in xs],
                                yerr=[[d[c]["median"] - d[c]["lo"] for c in xs],
                                      [d[c]["hi"] - d[c]["median"] for c in xs]],
                                fmt=style, capsize=3, color=color, **kw)
        ax.set_title(load)
        ax.set_xlabel("CPUs (QEMU vCPUs on 2 host cores; 4 is oversubscribed)")
        ax.set_ylabel("operations / s (median, CI)")
        ax.set_xticks(cpu_counts)
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "throughput.svg"))


def chart_projection(r):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    loads = list(r["projection"])
    if not loads:
        return
    ns = [1, 2] + list(PROJECT_TO)
    fig, axes = plt.subplots(1, len(loads), figsize=(5 * len(loads), 4.5), squeeze=False)
    for ax, load in zip(axes[0], loads):
        x1 = r["projection"][load].get("seed", {}).get("x1")
        if x1:
            ax.plot(ns, [x1 * n for n in ns], "-", color="0.8", lw=1, label="seed X(1) n (linear)")
        for design, color in (("seed", "C0"), ("prepatch", "C1")):
            p = r["projection"][load].get(design)
            if not p:
                continue
            ax.plot(ns, [p["amdahl"][n] for n in ns], "-", color=color,
                    label=f"{design} Amdahl (s={p['s']:.1%})")
            if "usl" in p:
                ax.plot(ns, [p["usl"][n] for n in ns], ":", color=color,
                        label=f"{design} USL (k={p['kappa']:.3g})")
            m = p["measured"]
            xs = [n for n in m if n in VERDICT_CPUS]
            ax.plot(xs, [m[n]["median"] for n in xs], "o", color=color)
            if OVERSUBSCRIBED in m:
                ax.plot([OVERSUBSCRIBED], [m[OVERSUBSCRIBED]["median"]], "o", mfc="none", color=color)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.set_title(load)
        ax.set_xlabel("CPUs (dots: measured; hollow: -smp 4, oversubscribed)")
        ax.set_ylabel("operations / s")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "projection.svg"))


if __name__ == "__main__":
    main()
