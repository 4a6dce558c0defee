#!/usr/bin/env python3
"""`just bench`: boot initmm's benchmarks on QEMU virt at several CPU counts and report.

    platform/bench/bench.py BENCH_KERNEL_ELF [quick|full|baseline] [IMAGE]
                            [--baseline FILE] [--write-baseline FILE]

BENCH_KERNEL_ELF is the kernel built with the `bench` feature (both designs and `bench=`); IMAGE
is the Image `just run` boots, whose size and boot time are measured (default: the bench
kernel's own).

Devices: the ELF beside IMAGE (IMAGE without `.img`) booted with a virtio disk, rng and network at
-smp 1 and 2 (platform/devices/check.py): the blk workload's MB/s and HTTP requests/s from
concurrent clients on the host's 127.0.0.1, every answer checked.

The host has 2 cores: the headline numbers and every verdict come from -smp 1 and 2. -smp 4
(`full` only) is reported apart, marked oversubscribed, and decides nothing.

What it prints (and writes to target/bench/results.json, with throughput.svg and
projection.svg):
- throughput per load and design: the median of the reps with a confidence interval of the
  median, and seed/prepatch as the median (with its CI) of the per-rep ratios: the guest runs
  the two designs back to back in every rep, alternating which goes first;
- where the time goes, per operation, in guest counter ticks, at -smp 1 and 2 (the profiled
  `breakdown` runs, separate from the throughput reps): per lock the time held and waited (with
  profiling's own cost, which the guest measures, taken out) and the acquisitions, TLB and
  leaf-write time, table allocations, barriers, TLB invalidations, lost table installs, and the
  serial fraction (time holding a lock every CPU contends for / unprofiled CPU time);
- scaling, two ways. The targets take the -smp 2 boot's median over the -smp 1 boot's, as they
  are stated (total throughput at -smp 2 against the -smp 1 figure). Beside it, the seed on
  1 CPU and on 2 back to back in every rep of the -smp 2 boot, as a paired ratio: host drift
  between boots (a -smp 1 boot's load-(a) throughput has moved by a third from one boot to the
  next, both designs together) cancels there, but its 1-CPU side is no -smp 1 figure: load (c)
  on 1 CPU of a 2-vCPU machine ran at 77-83k/s in full runs against 118-131k/s in -smp 1 boots,
  for a reason not established (QEMU's parallel mode for several vCPUs, the idle vCPU, or the
  kernel's 2-CPU set-up), so it is shown, not decided on;
- a projection to 4-128 CPUs from the -smp 1 serial fraction s: Amdahl, and the Universal
  Scalability Law with sigma = s and kappa fitted to the measured -smp 2 throughput, with how far
  Amdahl's -smp 2 prediction is from the measurement;
- the targets, each with its figure, CI and met/MISSED.

Confidence intervals are distribution-free: for n sorted samples the interval [x(k), x(n+1-k)]
with the largest k for which a Binomial(n, 1/2) falls below k with probability at most 2.5%
covers the median with at least 95% (the coverage printed is the exact one; below 6 samples no
such k exists and the interval is the min-max, of coverage 1 - 2^(1-n)). A ratio of two
independent medians (this run over a baseline, -smp 2 over -smp 1 across boots) gets the conservative
interval of the two intervals' extremes.

`quick` (part of `just test`) runs every benchmark briefly, to prove the code works; its numbers
mean nothing. `baseline` runs only the throughput loads at -smp 1 and 2 with `full`'s reps, for
`--write-baseline`: the kernel may be an older commit's bench kernel (its lines are read as far as
they go: `caller` for `prepatch`, no alternation).

--write-baseline FILE writes this run's throughput samples; --baseline FILE reads such a file
(or any bench.py's results.json) and checks load c against it. For the figures of commit OLD
(build its bench kernel as its justfile's `bench` recipe does: before the `bench` feature
existed, the release kernel was it):

    mkdir /tmp/old && git archive OLD | tar -x -C /tmp/old
    (cd /tmp/old && cargo build --release --features bench --target-dir target/bench-kernel)
    platform/bench/bench.py /tmp/old/target/bench-kernel/aarch64-unknown-none/release/initmm \\
        baseline --write-baseline target/bench/baseline-OLD.json
    just bench full --baseline target/bench/baseline-OLD.json
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
# QEMU virt's device windows for the ioremap-size benchmark (board knowledge lives here, not in
# the kernel): the PCIe MMIO window (2 MiB aligned, ~750 MiB) and high PCIe MMIO (512 GiB).
VIRT_MMIO = "bench_mmio=0x10000000 bench_mmio_1g=0x8000000000"


def boot(elf, smp, words, timeout=600):
    """Boot once; return (exit status, output lines, wall seconds)."""
    t0 = time.monotonic()
    p = subprocess.run(
        [RUN, "--smp", str(smp), "--timeout", str(timeout), elf] + words.split(),
        capture_output=True, text=True, cwd=ROOT)
    return p.returncode, (p.stdout + p.stderr).splitlines(), time.monotonic() - t0


def bench_lines(lines):
    return [json.loads(l[len("bench "):]) for l in lines if l.startswith("bench {")]


def floor_kernel():
    """An arm64 Image whose first instructions exit QEMU through semihosting: QEMU's own floor."""
    code = [
        0x10000081,  # adr x1, block (16 bytes on)
        0x52800300,  # mov w0, #0x18 (SYS_EXIT)
        0xD45E0000,  # hlt #0xf000
        0x14000000,  # b .
    ]
    body = struct.pack("<4I", *code) + struct.pack("<QQ", 0x20026, 0)  # ADP_Stopped_ApplicationExit, 0
    size = 64 + len(body)
    header = struct.pack("<IIQQQQQQII", 0x14000010, 0, 0, 4096, 0xA, 0, 0, 0, 0x644D5241, 0)
    path = os.path.join(OUT, "floor.img")
    with open(path, "wb") as f:
        f.write(header + body)
    return path, size


def qemu_wall(img, smp, reps, append=None):
    """Wall time of the QEMU process alone (as run.sh starts it, without its build steps)."""
    cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", str(smp), "-m", "1G",
           "-nographic", "-nic", "none", "-semihosting-config", "enable=on,target=native",
           "-kernel", img]
    if append:
        cmd += ["-append", append]
    walls, outs = [], []
    for _ in range(reps):
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        walls.append(time.monotonic() - t0)
        outs.append(r.stdout)
        if r.returncode != 0:
            sys.exit(f"bench: {img} exited with {r.returncode}:\n{r.stdout[-2000:]}")
    return walls, outs


def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# The CPU counts that decide: the host has 2 cores. -smp 4 puts 4 vCPUs on them.
VERDICT_CPUS = (1, 2)
OVERSUBSCRIBED = 4
PROJECT_TO = (4, 8, 16, 64, 128)
# `full`: pairs (seed + prepatch back to back) per load at -smp 1 and 2, pairs at -smp 4, ms per
# measurement, profiled pairs per load at -smp 1 and 2. A pair takes 0.4 s, so host drift slower
# than that cancels in its ratio; 200 ms is thousands of operations even for load c and makes
# the counter's resolution and a run's set-up and final purge negligible. 21 pairs put the
# median's interval at the 6th and 16th of them (97% coverage): a burst of host load that spoils
# up to 5 pairs cannot move it past a clean pair. The whole run takes 3-4 minutes.
FULL_REPS, FULL_REPS_OVERSUBSCRIBED, FULL_MS, FULL_PROFILED_REPS = 21, 5, 200, 5
QUICK_REPS, QUICK_MS, QUICK_PROFILED_REPS = 2, 40, 1
CI_LEVEL = 0.95


def plan(mode):
    """{smp: (groups, reps)}, ms per measurement, profiled reps."""
    if mode == "quick":
        return ({1: (["designs", "breakdown", "floor", "growth"], QUICK_REPS),
                 2: (["designs", "breakdown", "scaling"], QUICK_REPS)}, QUICK_MS,
                QUICK_PROFILED_REPS)
    if mode == "baseline":
        return {c: (["designs"], FULL_REPS) for c in VERDICT_CPUS}, FULL_MS, 0
    return ({1: (["designs", "breakdown", "floor", "growth"], FULL_REPS),
             2: (["designs", "breakdown", "scaling"], FULL_REPS),
             OVERSUBSCRIBED: (["designs"], FULL_REPS_OVERSUBSCRIBED)}, FULL_MS, FULL_PROFILED_REPS)


def args():
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("elf", help="the bench kernel ELF (built with --features bench)")
    p.add_argument("mode", nargs="?", default="full", choices=["quick", "full", "baseline"])
    p.add_argument("image", nargs="?", help="the Image `just run` boots (default: ELF.img)")
    p.add_argument("--baseline", metavar="FILE",
                   help="a --write-baseline file or a results.json to check load c against")
    p.add_argument("--write-baseline", metavar="FILE", help="write this run's throughput samples")
    a = p.parse_args()
    if a.mode == "baseline" and not a.write_baseline:
        p.error("baseline mode needs --write-baseline FILE")
    return a


def main():
    a = args()
    elf, mode = a.elf, a.mode
    quick = mode == "quick"
    image = a.image or elf + ".img"
    baseline = read_baseline(a.baseline) if a.baseline else None
    os.makedirs(OUT, exist_ok=True)
    boots, ms, preps = plan(mode)
    cpu_counts = sorted(boots)
    failures = []
    results = {"mode": mode, "quick": quick, "ms_per_measurement": ms, "profiled_reps": preps,
               "reps": {c: r for c, (_, r) in boots.items()}, "counter_hz": {}, "probe": {}, "runs": [],
               "profiled": [], "scaling_runs": [], "floor": None, "areas": {}, "ioremap_size": {},
               "boot": {}}

    for smp in cpu_counts:
        groups, reps = boots[smp]
        words = f"bench={','.join(groups)} reps={reps} preps={preps} ms={ms} {VIRT_MMIO}"
        print(f"bench: -smp {smp}: {','.join(groups)}, {reps} reps"
              + (" (oversubscribed: 4 vCPUs on 2 host cores)" if smp == OVERSUBSCRIBED else ""),
              flush=True)
        rc, lines, _ = boot(elf, smp, words)
        got = bench_lines(lines)
        bad = [b for b in got if not b["ok"]]
        if rc != 0 or bad or not got:
            failures.append(f"-smp {smp}: exit {rc}, {len(bad)} failed checks: {bad[:3]}")
            print("\n".join(lines[-30:]))
            continue
        for b in got:
            g = b["group"]
            if g == "info":
                results["counter_hz"][smp] = b["counter_hz"]
            elif g == "probe":
                results["probe"].setdefault(smp, []).append(b)
            elif g in ("designs", "breakdown"):
                # Older bench kernels called the baseline `caller` and did not say who went first.
                b["design"] = {"caller": "prepatch"}.get(b["design"], b["design"])
                b["cpus"] = smp
                results["runs" if g == "designs" else "profiled"].append(b)
            elif g == "scaling":
                results["scaling_runs"].append(b)
            elif g == "floor":
                results.setdefault("_floor", []).append(b)
            elif g == "areas":
                results["areas"][b["live"]] = b
            elif g == "ioremap_size":
                results["ioremap_size"][b["size"]] = b

    if mode == "baseline":
        results["designs"], results["pairs"] = throughput(results["runs"]), pairs(results["runs"])
        report_throughput(results, cpu_counts)
        write_baseline(a.write_baseline, elf, results)
        print(f"\nbench: wrote {a.write_baseline}")
        if failures:
            sys.exit("bench: FAILED:\n  " + "\n  ".join(failures))
        return

    # Boot: the whole QEMU process, initmm with workload=none against the floor kernel, at the
    # CPU counts the host has cores for (2), one run of each in turn so that host noise hits both.
    floor_img, _ = floor_kernel()
    boot_reps = 1 if quick else 11
    for smp in [1, 2]:
        walls, outs, fl = [], [], []
        for _ in range(boot_reps):
            w, o = qemu_wall(image, smp, 1, "semihosting workload=none")
            walls += w
            outs += o
            fl += qemu_wall(floor_img, smp, 1)[0]
        online = []
        for out in outs:
            m = re.search(r"\[\s*([\d.]+) cpu0 INFO \] (\d+) of (\d+) CPUs online", out)
            if m and m.group(2) == m.group(3) == str(smp):
                online.append(float(m.group(1)) * 1000)
            else:
                failures.append(f"boot -smp {smp}: not every CPU came online")
        results["boot"][smp] = {"initmm_wall_s": stats(walls), "floor_wall_s": stats(fl),
                                "ratio": statistics.median(walls) / statistics.median(fl),
                                "all_online_ms_since_entry": stats(online) if online else None,
                                "pair_ratios": [w / f for w, f in zip(walls, fl)]}
    results["image_bytes"] = os.path.getsize(image)
    results["devices"] = devices_bench(image[:-4] if image.endswith(".img") else image, quick, failures)

    # Aggregate.
    results["designs"] = throughput(results["runs"])
    results["pairs"] = pairs(results["runs"])
    results["scaling"] = scaling(results["scaling_runs"])
    # Each probe line is already the least of its batches (host preemption only adds time).
    results["probe"] = {c: {k: min(b[k] for b in bs) for k in PROBE_FIELDS} | {"n": len(bs)}
                        for c, bs in results["probe"].items()}
    results["breakdown"] = breakdown(results["profiled"], results["probe"], results["designs"],
                                     results["counter_hz"])
    results["projection"] = projection(results["designs"], results["breakdown"])
    fl = results.pop("_floor", [])
    if fl:
        results["floor"] = {"floor_ns": stats([b["floor_ns"] for b in fl]),
                            "real_ns": stats([b["real_ns"] for b in fl]),
                            "ratio": median_ci([b["ratio"] for b in fl])}
    results["baseline"] = baseline

    report(results, cpu_counts)
    targets = check_targets(results, baseline)
    results["targets"] = targets
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    if a.write_baseline:
        write_baseline(a.write_baseline, elf, results)
        print(f"bench: wrote {a.write_baseline}")
    chart(results, cpu_counts)
    chart_projection(results)
    print(f"\nbench: wrote {OUT}/results.json, {OUT}/throughput.svg and {OUT}/projection.svg")
    if failures:
        print("bench: FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)


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


def ratio_of(a, b):
    """a / b for two independent medians with intervals: the conservative interval."""
    return {"median": a["median"] / b["median"], "lo": a["lo"] / b["hi"], "hi": a["hi"] / b["lo"],
            "coverage": None, "n": min(a["n"], b["n"])}


def throughput(runs):
    """{load: {design: {cpus: median_ci of ops/s}}}."""
    xs = {}
    for r in runs:
        xs.setdefault(r["load"], {}).setdefault(r["design"], {}).setdefault(r["cpus"], []).append(
            r["ops_per_sec"])
    return {load: {d: {c: median_ci(v) for c, v in sorted(per.items())} for d, per in ds.items()}
            for load, ds in sorted(xs.items())}


def pairs(runs):
    """{load: {cpus: seed/prepatch as the median_ci of the per-rep ratios}}, with the medians of
    the pairs in which each design went first (the order effect that alternating cancels)."""
    by = {}
    for r in runs:
        by.setdefault((r["load"], r["cpus"], r["rep"]), {})[r["design"]] = r
    out = {}
    for (load, cpus, _), p in sorted(by.items()):
        if "seed" in p and "prepatch" in p:
            ratio = p["seed"]["ops_per_sec"] / p["prepatch"]["ops_per_sec"]
            e = out.setdefault(load, {}).setdefault(cpus, {"all": [], "seed": [], "prepatch": []})
            e["all"].append(ratio)
            e[p["seed"].get("first", "seed")].append(ratio)
    return {load: {c: {**median_ci(e["all"]),
                       "seed_first": statistics.median(e["seed"]) if e["seed"] else None,
                       "prepatch_first": statistics.median(e["prepatch"]) if e["prepatch"] else None}
                   for c, e in per.items()} for load, per in out.items()}


def scaling(runs):
    """{load: {"ratio": median_ci of the per-rep 2-CPU/1-CPU ratios, "one": median_ci of the
    1-CPU ops/s, "all": of the 2-CPU ops/s, "cpus": CPUs in the second}}: the seed on one CPU and
    on all of them back to back in each rep of one -smp 2 boot."""
    by = {}
    for r in runs:
        by.setdefault((r["load"], r["rep"]), {})[r["cpus"]] = r["ops_per_sec"]
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
    (cpus x counter_hz / ops per second).

    The serial fraction is the time some CPU held a lock every CPU contends for (those
    `mm::profile::LOCKS` marks global; per-CPU locks are shown but left out) over that CPU time:
    Amdahl's s, when measured at -smp 1. The global locks do not nest in one another (a table
    page is allocated with the page-table lock dropped, a lost race frees its page after the
    install), so their hold times add up. Adding them treats them as one lock: with several, the
    asymptote is really set by the most-held one, so s is the pessimistic reading."""
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
        sections = {n: sum(b["sections"][n] for b in bs) for n in bs[0]["sections"]}
        events = {n: sum(b["events"][n] for b in bs) for n in bs[0]["events"]}
        tables = {n: sum(b["tables"][n] for b in bs) for n in bs[0]["tables"]}
        ops = max(tot["ops"], 1)
        u = thr.get(load, {}).get(design, {}).get(cpus)
        cpu_op = cpus * hz[cpus] / u["median"] if u else tot["cpu_ticks"] / ops

        def held(lk, n_ops):
            return max(0.0, unclamped(lk, n_ops))

        def unclamped(lk, n_ops):
            return (lk["hold"] - lk["acquired"] * h0 - lk.get("inner_reads", 0) * r0) / n_ops

        def serial(lks, n_ops):
            return sum(held(lk, n_ops) for lk in lks.values() if lk.get("global", True)) / cpu_op

        serial_each = [serial(b["locks"], max(b["ops"], 1)) for b in bs]
        out.setdefault(load, {}).setdefault(design, {})[cpus] = {
            "reps": len(bs), **tot, "locks": locks, "sections": sections, "events": events,
            "tables": tables,
            "per_op": {
                "cpu_ticks": cpu_op,
                "cpu_ticks_profiled": tot["cpu_ticks"] / ops,
                "locks": {n: {"hold": held(lk, ops), "clamped": unclamped(lk, ops) < 0,
                              "wait": max(0.0, lk["wait"] - lk["acquired"] * w0) / ops,
                              "acquired": lk["acquired"] / ops, "global": lk["global"]}
                          for n, lk in locks.items()},
                "sections": {n: v / ops for n, v in sections.items()},
                "events": {n: v / ops for n, v in events.items()},
                "tables": {n: v / ops for n, v in tables.items()},
            },
            "serial": serial(locks, ops),
            "serial_raw": sum(lk["hold"] for lk in locks.values() if lk["global"])
            / max(tot["cpu_ticks"], 1),
            "serial_each": serial_each,
            "ops_per_sec": statistics.median(b["ops_per_sec"] for b in bs),
        }
    # The serial fractions of the two designs, paired rep by rep as the throughput is.
    for load, ds in out.items():
        for cpus in ds.get("seed", {}):
            s, p = ds["seed"][cpus], ds.get("prepatch", {}).get(cpus)
            if p and len(s["serial_each"]) == len(p["serial_each"]):
                rs = [a / b for a, b in zip(s["serial_each"], p["serial_each"]) if b > 0]
                if rs:
                    s["serial_vs_prepatch"] = median_ci(rs)
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


# Baselines: another commit's throughput, for the load-c target.

BASELINE_FORMAT = "initmm-bench-baseline/1"


def write_baseline(path, elf, results):
    xs = {}
    for r in results["runs"]:
        xs.setdefault(r["load"], {}).setdefault(r["design"], {}).setdefault(r["cpus"], []).append(
            r["ops_per_sec"])
    git = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(elf)), "describe", "--always",
                          "--dirty"], capture_output=True, text=True)
    with open(path, "w") as f:
        json.dump({"format": BASELINE_FORMAT, "kernel": os.path.abspath(elf),
                   "commit": git.stdout.strip() or None, "ms_per_measurement":
                   results["ms_per_measurement"], "designs": xs}, f, indent=1)


def read_baseline(path):
    """{"source": ..., "designs": {load: {design: {cpus: median_ci}}}} from a --write-baseline
    file (samples) or any bench.py's results.json (samples, or a median with its min-max)."""
    with open(path) as f:
        d = json.load(f)
    out = {}
    for load, ds in d.get("designs", {}).items():
        for design, per in ds.items():
            design = {"caller": "prepatch"}.get(design, design)
            for cpus, v in per.items():
                if isinstance(v, dict) and "samples" in v:
                    v = v["samples"]
                if isinstance(v, list):
                    ci = median_ci(v)
                else:
                    n = v.get("n", 1)
                    ci = {"median": v["median"], "lo": v.get("lo", v.get("min", v["median"])),
                          "hi": v.get("hi", v.get("max", v["median"])), "n": n,
                          "coverage": max(0.0, 1 - 2 * binom_cdf(0, n))}
                out.setdefault(load, {}).setdefault(design, {})[int(cpus)] = ci
    if not out:
        sys.exit(f"bench: {path} holds no throughput figures")
    label = d.get("commit") or path
    return {"source": path, "label": label, "designs": out}


# Report.

def num(x):
    """Operations per second, to 3-4 significant figures."""
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def ci_text(c, f=num):
    return f"{f(c['median'])} [{f(c['lo'])}-{f(c['hi'])}]"


def ratio_text(c):
    return ci_text(c, lambda x: f"{x:.2f}")


def load_named(r, letter):
    return next((l for l in r["designs"] if l.startswith(letter + "_")), None)


def coverage_note(r):
    cov = sorted({round(c["coverage"], 3) for ds in r["designs"].values() for per in ds.values()
                  for c in per.values()})
    return "/".join(f"{c:.0%}" for c in cov)


def report(r, cpu_counts):
    report_throughput(r, cpu_counts)
    if r["breakdown"]:
        report_breakdown(r, next(iter(r["counter_hz"].values()), None))
    if r["projection"]:
        report_projection(r)
    if r["floor"]:
        f = r["floor"]
        print(f"\nFloor of a 4 KiB map+unmap: {fmt(f['floor_ns'], ' ns')}; real ioremap+read+iounmap "
              f"{fmt(f['real_ns'], ' ns')}; ratio {ratio_text(f['ratio'])}")
    if r["areas"]:
        print("\nVirtual-area allocate+free vs live areas: " + ", ".join(
            f"{k}: {v['median_ns']:.0f} ns" for k, v in sorted(r["areas"].items())))
    if r["ioremap_size"]:
        print("ioremap+iounmap vs size: " + ", ".join(
            f"{k}: {v['median_ns']:.0f} ns ({v['table_pages']} table pages, leaf {v['leaf_level']})"
            for k, v in r["ioremap_size"].items()))
    for smp, b in r["boot"].items():
        online = b["all_online_ms_since_entry"]
        w = b["initmm_wall_s"]
        print(f"boot -smp {smp}: initmm {w['median'] * 1000:.0f} ms ({w['min'] * 1000:.0f}-{w['max'] * 1000:.0f})"
              f", floor kernel {b['floor_wall_s']['median'] * 1000:.0f} ms, ratio {b['ratio']:.2f}"
              + (f", all CPUs online {online['median']:.1f} ms after entry" if online else ""))
    print(f"Image: {r['image_bytes']} bytes ({r['image_bytes'] / 1024:.0f} KiB)")
    for smp, d in r.get("devices", {}).items():
        print(f"devices -smp {smp} (virtio-mmio, GICv2, median of {d['reps']}): blk {d['blk_written_mb_s']:.1f} MB/s "
              f"written, {d['blk_read_mb_s']:.1f} MB/s read and checked; HTTP {d['requests_per_s']:.1f} "
              f"requests/s ({d['clients']} concurrent keep-alive clients, {d['requests']} requests, every "
              f"answer checked)")


def report_throughput(r, cpu_counts):
    main_cpus = [c for c in cpu_counts if c in VERDICT_CPUS]
    print(f"\nThroughput, operations per second: median [CI of the median, coverage "
          f"{coverage_note(r)}]; seed/prepatch: the median [CI] of the per-rep ratios (the designs "
          f"run back to back, alternately first)")
    print(f"{'load':<24} {'design':<13}" + "".join(f" {'-smp ' + str(c):>26}" for c in main_cpus))
    for load, ds in r["designs"].items():
        for design in ("seed", "prepatch"):
            print(f"{load:<24} {design:<13}" + "".join(
                f" {ci_text(ds[design][c]) if c in ds.get(design, {}) else '-':>26}"
                for c in main_cpus))
        p = r["pairs"].get(load, {})
        print(f"{'':<24} {'seed/prepatch':<13}" + "".join(
            f" {ratio_text(p[c]) + 'x' if c in p else '-':>26}" for c in main_cpus))
    order = []
    for load, per in r["pairs"].items():
        for c in main_cpus:
            e = per.get(c)
            if e and e["seed_first"] is not None and e["prepatch_first"] is not None:
                order.append(f"{load[0]} -smp {c}: {e['seed_first']:.2f}/{e['prepatch_first']:.2f}")
    if order:
        print("Order effect, seed/prepatch in pairs where seed / prepatch ran first: " + ", ".join(order))
    if r.get("scaling"):
        print("\nScaling: across boots is the -smp 2 boot's median over the -smp 1 boot's (the "
              "targets'). In one -smp 2 boot: the seed on 1 CPU (the other idle in wfi) and on 2, back "
              "to back in each rep (alternately first), 2/1 the median [CI] of the per-rep ratios: "
              "free of drift between boots, but its 1 CPU is no -smp 1 machine (load (c) runs far "
              "slower there), so it is shown, not decided on")
        for load, e in r["scaling"].items():
            s = r["designs"].get(load, {}).get("seed", {})
            across = ratio_of(s[2], s[1]) if 1 in s and 2 in s else None
            print(f"{load:<24}" + (f" across boots {ratio_text(across)}x;" if across else "")
                  + f" in one boot: 1 CPU {ci_text(e['one'])}, {e['cpus']} CPUs {ci_text(e['all'])},"
                  f" {e['cpus']}/1 {ratio_text(e['ratio'])}x")
    over = [c for c in cpu_counts if c not in VERDICT_CPUS]
    for c in over:
        print(f"\n-smp {c}, OVERSUBSCRIBED ({c} vCPUs on 2 host cores): reported, never a verdict")
        for load, ds in r["designs"].items():
            cells = [f"{d} {ci_text(ds[d][c])}" for d in ("seed", "prepatch") if c in ds.get(d, {})]
            p = r["pairs"].get(load, {}).get(c)
            print(f"{load:<24} " + "   ".join(cells) + (f"   seed/prepatch {ratio_text(p)}x" if p else ""))


def fmt(s, unit=""):
    return f"{s['median']:.0f}{unit} ({s['min']:.0f}-{s['max']:.0f})"


def report_breakdown(r, hz):
    tick = f"; 1 tick = {1e9 / hz:.1f} ns" if hz else ""
    cols = [(d, c) for c in VERDICT_CPUS for d in ("seed", "prepatch")]
    print(f"\nWhere the time goes, per operation, in guest counter ticks{tick}: {r['profiled_reps']} "
          f"profiled run(s) per design, load and CPU count, apart from the throughput reps. Held and "
          f"waited have profiling's own cost per acquisition taken out; CPU time is the unprofiled "
          f"one; locks no run of a load took are left out. Probes that ran inside a hold (the "
          f"pre-patch walk holds the page-table lock across its timed leaf writes; a lock taken "
          f"inside another's hold) are counted per lock by mm::profile and taken out too, at a "
          f"counter read's cost each")
    for c, p in sorted(r["probe"].items()):
        print(f"  profiling's cost at -smp {c} (least of {p['n']} calibrations): per acquisition {p['hold']:.1f} "
              f"ticks inside the hold, {p['wait']:.1f} in the wait, "
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
        first = ds[have[0][0]][have[0][1]]
        for name in first["sections"]:
            row(f"{name} (time, with its probe)", lambda b: per(b)["sections"].get(name, 0), t)
        for name in first["events"]:
            row(f"{name} (count)", lambda b: per(b)["events"].get(name, 0), n)
        row("table installs lost (count)", lambda b: per(b)["tables"].get("lost", 0), n)
        row("serial fraction (global locks)", lambda b: b["serial"], lambda x: f"{x:.2%}")
        row("  min-max over the reps", lambda b: b["serial_each"],
            lambda xs: f"{min(xs):.1%}-{max(xs):.1%}")
        row("  raw: held / profiled CPU time", lambda b: b["serial_raw"], lambda x: f"{x:.2%}")
        thr = r["designs"].get(load, {})
        if any(lk.get("clamped") for d, c in have for lk in per(ds[d][c])["locks"].values()):
            print("  <: profiling's cost came out above the measured hold (the host slowed the "
                  "calibration or sped up this run); shown as 0")
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
# could decide the other way.

def target(t, name, c, op, threshold, note=""):
    if op:
        name = f"{name} {op} {threshold:g}"
    if c is None:
        t.append({"name": name, "figure": None, "met": None,
                  "note": note if note.startswith("not ") else "not measured in this run"})
        return
    fig = c["median"]
    met = fig >= threshold if op == ">=" else fig <= threshold
    straddles = c["lo"] < threshold < c["hi"]
    t.append({"name": name, "figure": fig, "lo": c["lo"], "hi": c["hi"],
              "met": met, "straddles": straddles, "note": note})


def check_targets(r, baseline):
    t = []
    loads = {x: load_named(r, x) or f"load ({x})" for x in "abc"}
    for cpus, threshold in ((1, 0.98), (2, 1.0)):
        for load in r["designs"]:
            target(t, f"seed/prepatch {load} -smp {cpus}", r["pairs"].get(load, {}).get(cpus),
                   ">=", threshold, "paired per-rep ratios")
    b = r["breakdown"].get(loads["b"], {}).get("seed", {}).get(1)
    target(t, f"serial fraction seed/prepatch {loads['b']} -smp 1",
           b.get("serial_vs_prepatch") if b else None, "<=", 0.1,
           "paired per-rep ratios of the profiled runs")
    for x in "ac":
        s = r["designs"].get(loads[x], {}).get("seed", {})
        target(t, f"seed -smp 2/-smp 1 {loads[x]}", ratio_of(s[2], s[1]) if 1 in s and 2 in s else None,
               ">=", 1.7, "independent medians of two boots, conservative CI")
    target(t, "ioremap+read+iounmap / floor", r["floor"]["ratio"] if r["floor"] else None, "<=", 1.0,
           "per-rep ratios")
    for cpus in VERDICT_CPUS:
        name = f"seed {loads['c']} -smp {cpus} / baseline"
        mine = r["designs"].get(loads["c"], {}).get("seed", {}).get(cpus)
        old = baseline and baseline["designs"].get(loads["c"], {}).get("seed", {}).get(cpus)
        if baseline and mine and old:
            target(t, name + f" ({baseline['label']})", ratio_of(mine, old), ">=", 2.0,
                   "independent medians, conservative CI")
        else:
            target(t, name, None, ">=", 2.0,
                   "not decided: no --baseline FILE" if not baseline else
                   "not decided: the baseline has no figure for it")
    for cpus in VERDICT_CPUS:
        bt = r["boot"].get(cpus)
        if bt and bt.get("pair_ratios"):
            target(t, f"boot -smp {cpus} / floor kernel", median_ci(bt["pair_ratios"]), "<=", 1.3,
                   "paired per-run ratios: the two kernels boot in turn")
        else:
            target(t, f"boot -smp {cpus} / floor kernel", None, "<=", 1.3)
    print("\nTargets (the figure decides; ~ marks an interval that straddles the threshold, where "
          "another run may decide otherwise):")
    for x in t:
        if x["met"] is None:
            print(f"  n/a    {x['name']}: {x['note']}")
            continue
        flag = "~" if x["straddles"] else " "
        print(f"  {'met   ' if x['met'] else 'MISSED'}{flag}{x['name']}: {x['figure']:.3f} "
              f"[{x['lo']:.3f}-{x['hi']:.3f}] ({x['note']})")
    return t


# Figures.

def chart(r, cpu_counts):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    loads = list(r["designs"])
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
