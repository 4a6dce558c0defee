#!/usr/bin/env python3
"""`just bench`: boot initmm's benchmarks on QEMU virt at several CPU counts and report.

    platform/bench/bench.py BENCH_KERNEL_ELF [quick|full] [IMAGE]

BENCH_KERNEL_ELF is the kernel built with the `bench` feature (both designs and `bench=`); IMAGE
is the Image `just run` boots, whose size and boot time are measured (default: the bench
kernel's own).

Writes target/bench/results.json and target/bench/throughput.svg (matplotlib), and prints a
table of medians with min-max. The in-guest half is src/bench/mod.rs (`bench=` on the kernel
command line); every measurement there verifies its work, and a failed check fails this script.

`quick` (part of `just test`) runs every benchmark briefly, to prove the code works; its numbers
mean nothing.
"""
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time

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


def main():
    elf = sys.argv[1]
    quick = len(sys.argv) > 2 and sys.argv[2] == "quick"
    image = sys.argv[3] if len(sys.argv) > 3 else elf + ".img"
    os.makedirs(OUT, exist_ok=True)
    reps, ms = (1, 60) if quick else (5, 400)
    cpu_counts = [1, 2] if quick else [1, 2, 4]
    failures = []
    results = {"quick": quick, "reps": reps, "ms_per_measurement": ms, "designs": {}, "breakdown": {},
               "floor": None, "areas": {}, "ioremap_size": {}, "boot": {}}

    for smp in cpu_counts:
        groups = ["designs"]
        if smp == 2:
            groups.append("breakdown")
        if smp == 1:
            groups += ["floor", "growth"]
        words = f"bench={','.join(groups)} reps={reps} ms={ms} {VIRT_MMIO}"
        print(f"bench: -smp {smp}: {','.join(groups)}", flush=True)
        rc, lines, _ = boot(elf, smp, words)
        got = bench_lines(lines)
        bad = [b for b in got if not b["ok"]]
        if rc != 0 or bad or not got:
            failures.append(f"-smp {smp}: exit {rc}, {len(bad)} failed checks: {bad[:3]}")
            print("\n".join(lines[-30:]))
            continue
        for b in got:
            g = b["group"]
            if g == "designs":
                key = (b["load"], b["design"], b["cpus"])
                results["designs"].setdefault(key, []).append(b["ops_per_sec"])
            elif g == "breakdown":
                results["breakdown"][(b["load"], b["design"])] = b
            elif g == "floor":
                results.setdefault("_floor", []).append(b)
            elif g == "areas":
                results["areas"][b["live"]] = b
            elif g == "ioremap_size":
                results["ioremap_size"][b["size"]] = b

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
                                "all_online_ms_since_entry": stats(online) if online else None}
    results["image_bytes"] = os.path.getsize(image)

    # Aggregate.
    designs = {}
    for (load, design, cpus), xs in results["designs"].items():
        designs.setdefault(load, {}).setdefault(design, {})[cpus] = stats(xs)
    results["designs"] = designs
    results["breakdown"] = {f"{l}/{d}": v for (l, d), v in results["breakdown"].items()}
    fl = results.pop("_floor", [])
    if fl:
        results["floor"] = {"floor_ns": stats([b["floor_ns"] for b in fl]),
                            "real_ns": stats([b["real_ns"] for b in fl]),
                            "ratio": statistics.median([b["ratio"] for b in fl])}

    report(results, cpu_counts)
    targets = check_targets(results)
    results["targets"] = targets
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    chart(results, cpu_counts)
    print(f"\nbench: wrote {OUT}/results.json and {OUT}/throughput.svg")
    if failures:
        print("bench: FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)


def fmt(s, unit=""):
    return f"{s['median']:.0f}{unit} ({s['min']:.0f}-{s['max']:.0f})"


def report(r, cpu_counts):
    print("\nThroughput, operations per second: median (min-max)")
    head = f"{'load':<24} {'design':<7}" + "".join(f" {'-smp ' + str(c):>24}" for c in cpu_counts)
    print(head)
    for load, ds in sorted(r["designs"].items()):
        for design in ("seed", "prepatch"):
            row = f"{load:<24} {design:<7}"
            for c in cpu_counts:
                s = ds.get(design, {}).get(c)
                row += f" {fmt(s) if s else '-':>24}"
            print(row)
        ratios = []
        for c in cpu_counts:
            s, b = ds.get("seed", {}).get(c), ds.get("prepatch", {}).get(c)
            ratios.append(f"{s['median'] / b['median']:.2f}x" if s and b else "-")
        print(f"{'':<24} {'seed/prepatch':<11}" + "".join(f" {x:>20}" for x in ratios))
    if r["breakdown"]:
        print("\nWhere the time goes at -smp 2 (share of CPU time held/waited)")
        for k, v in sorted(r["breakdown"].items()):
            t = v["cpu_ticks"]
            locks = " ".join(f"{n}={v[n]['hold'] / t:.1%}/{v[n]['wait'] / t:.1%}"
                             for n in ("pt_lock", "va_lock", "frame_lock", "node_lock"))
            print(f"{k:<34} {locks} tlb={v['tlb'] / t:.1%} leaf={v['leaf'] / t:.1%}")
    if r["floor"]:
        f = r["floor"]
        print(f"\nFloor of a 4 KiB map+unmap: {fmt(f['floor_ns'], ' ns')}; real ioremap+iounmap "
              f"{fmt(f['real_ns'], ' ns')}; ratio {f['ratio']:.2f}")
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


def check_targets(r):
    t = {}
    b = r["designs"].get("b_map_fresh", {})
    s2, c2, s1 = (b.get("seed", {}).get(2), b.get("prepatch", {}).get(2), b.get("seed", {}).get(1))
    if s2 and c2:
        v = s2["median"] / c2["median"]
        t["load_b_seed_vs_prepatch_smp2 >= 1.5"] = (round(v, 2), v >= 1.5)
    if s2 and s1:
        v = s2["median"] / s1["median"]
        t["load_b_seed_smp2_vs_smp1 >= 1.6"] = (round(v, 2), v >= 1.6)
    if r["floor"]:
        t["ioremap_vs_floor <= 2.5"] = (round(r["floor"]["ratio"], 2), r["floor"]["ratio"] <= 2.5)
    a = r["areas"]
    if 10 in a and 100000 in a:
        v = a[100000]["median_ns"] / a[10]["median_ns"]
        t["areas_100k_vs_10 <= 3"] = (round(v, 2), v <= 3)
    s = r["ioremap_size"]
    if "1G" in s and "2M" in s:
        v = s["1G"]["median_ns"] / s["2M"]["median_ns"]
        t["ioremap_1G_vs_2M <= 2"] = (round(v, 2), v <= 2)
    for smp, b in r["boot"].items():
        t[f"boot_smp{smp}_vs_floor <= 1.3"] = (round(b["ratio"], 2), b["ratio"] <= 1.3)
    t["image <= 512 KiB"] = (r["image_bytes"], r["image_bytes"] <= 512 * 1024)
    print("\nTargets:")
    for k, (v, ok) in t.items():
        print(f"  {'met   ' if ok else 'MISSED'} {k}: {v}")
    return t


def chart(r, cpu_counts):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    loads = sorted(r["designs"])
    fig, axes = plt.subplots(1, len(loads), figsize=(5 * len(loads), 4), squeeze=False)
    for ax, load in zip(axes[0], loads):
        for design, style in (("seed", "o-"), ("prepatch", "s--")):
            d = r["designs"][load].get(design, {})
            xs = [c for c in cpu_counts if c in d]
            ax.errorbar(xs, [d[c]["median"] for c in xs],
                        yerr=[[d[c]["median"] - d[c]["min"] for c in xs], [d[c]["max"] - d[c]["median"] for c in xs]],
                        fmt=style, capsize=3, label=design)
        ax.set_title(load)
        ax.set_xlabel("CPUs (QEMU vCPUs on 2 host cores; 4 is oversubscribed)")
        ax.set_ylabel("operations / s")
        ax.set_xticks(cpu_counts)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "throughput.svg"))


if __name__ == "__main__":
    main()
