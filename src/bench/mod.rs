//! `bench=GROUP[,GROUP]`: the in-guest half of `just bench` (the host half,
//! `platform/bench/bench.py`, boots this at several CPU counts and aggregates).
//!
//! Every measurement prints one line `bench {json}`, timed with the generic counter, and verifies
//! its work (every mapping read or translated back); a measurement whose check fails says so in
//! `"ok":false` and the run exits with a failure.
//!
//! The first line, `"group":"info"`, gives the counter's frequency (every `ticks` field counts
//! its ticks), the CPUs and the options.
//!
//! Groups:
//! - `designs`: loads (a) ioremap + read + iounmap of a 4 KiB device page, (b) map-only into
//!   fresh, never-touched 2 MiB slots (a page table installed per operation), (c) vmalloc +
//!   write + vfree of 1-16 pages; each with the seed design and the pre-patch baseline. Each rep
//!   runs both designs back to back, seed first in even reps and pre-patch first in odd ones
//!   (`first` says which), so that the host can pair them and drift and order effects fall on
//!   both alike.
//!   Memory management is settled (lazy areas purged, frame caches drained, empty tables freed)
//!   before every measurement, so that each starts from the same state, and each ends, timed,
//!   with the purge of what its unmaps deferred: it pays for exactly its own invalidations.
//! - `breakdown` (the profiled kernel only): the same loads and pairs with profiling on: per lock of `mm::profile::LOCKS`
//!   the ticks spent waiting for it and holding it and the times it was taken; the serial time
//!   (some global lock held, nested holds counted once); ticks per profiled section (TLB
//!   maintenance, leaf writes); counts per event (table allocations, barriers, TLB
//!   invalidations, writes to shared cache lines); the table installs won and lost; and the CPU
//!   time (`cpu_ticks`: elapsed ticks times CPUs) they are shares of. Before each load's
//!   profiled runs, a `probe` line says what profiling itself costs (see `probe_costs`).
//! - `floor`: the irreducible work of one 4 KiB map + read + unmap, with its own TLB
//!   invalidation and with the invalidation batched as a lazy purge does it, against a real
//!   ioremap + read + iounmap.
//! - `growth`: a one-page ioremap + iounmap through this CPU's slot allocator with 10 .. 100,000
//!   of its areas live, and a global window reserve + release with as many windows live; ioremap
//!   of 4 KiB, 64 KiB, 2 MiB and 1 GiB (with blocks) and the table pages each uses. Needs the
//!   device windows on the command line: `bench_mmio=PA` (2 MiB aligned, >= 2 MiB) and
//!   `bench_mmio_1g=PA` (1 GiB aligned, >= 1 GiB): board knowledge stays in the host script.
//!   (`floor` and `growth` live in `costs`.)
//!
//! Every timed figure counts the generic counter's ticks, so a boot under QEMU's `-icount
//! shift=0` (one instruction per nanosecond of virtual time) gives instructions per operation:
//! the host does that at -smp 1 (see `platform/bench/bench.py`).
//! - `scaling` (2 or more CPUs): the seed on CPU 0 alone and on every online CPU, back to back in
//!   each rep, alternately first; the host shows the paired ratio beside the across-boots one
//!   (see `scaling` for why it decides nothing).
//!
//! Before anything is timed, every free page is written once (see `touch_free_memory`).
//!
//! Options: `reps=N` pairs per load for `designs` and `scaling` (default 5), `preps=N` for
//! `breakdown` (default 1), `ms=N` per measurement (default 300), `floor_ms=N` per `floor`
//! measurement (default `ms`), `lives=N,N,..` live areas for `growth`, `loads=a,b,c` (default all
//! three). `all` runs `breakdown` only in the profiled kernel (`--features profile`).

mod costs;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::aarch64::cpu;
use crate::cmdline::Cmdline;
use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::layout::{PAGE_SIZE, PGDIR_SIZE, PMD_SIZE};
use crate::mm::pgalloc::Design;
use crate::mm::pgtable::{Level, Prot};
use crate::mm::{self, kernel_vm, profile};
use crate::smp::runtime::{Barrier, on_cpus};
use crate::smp::{self};
use crate::util::rng::Rng;
use crate::workload::common::{IdRegister, settle, tables_delta};

struct Opts {
    loads: Vec<Load>,
    reps: usize,
    profiled_reps: usize,
    ms: u64,
    ticks: u64,
    /// `floor_ms=` in ticks (default `ms=`): a floor operation with its own broadcast TLB
    /// invalidation is slow to emulate under `-icount`, and its count needs no long run there.
    floor_ticks: u64,
    /// `lives=N,N,..`: the live areas `growth` measures with (default 10 and 1,000 with 2 reps
    /// or fewer, else 10 .. 100,000).
    lives: Vec<usize>,
    mmio: Option<u64>,
    mmio_1g: Option<u64>,
}

/// One output line.
fn emit(fields: &[(&str, String)], ok: bool) {
    let mut s = String::from("{");
    for (k, v) in fields {
        s.push_str(&format!("\"{k}\":{v},"));
    }
    s.push_str(&format!("\"ok\":{ok}}}"));
    crate::kprintln!("bench {s}");
}

fn q(s: &str) -> String {
    format!("\"{s}\"")
}

/// A JSON object of numbers.
fn obj<'a>(fields: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let inner: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A device page every board has (the GIC distributor's, holding PIDR2), with the value it
/// must read.
fn id_register() -> IdRegister {
    IdRegister::of_this_machine().expect("bench needs a GIC")
}

/// Run the groups `bench=` names (default `all`) with the command line's options, printing a
/// `bench {json}` line per measurement; false if a check failed or an option was unknown.
pub fn run_from_cmdline(c: &Cmdline<'_>) -> bool {
    let num = |k: &str, d: u64| c.number(k).ok().flatten().unwrap_or(d);
    let ms = num("ms", 300);
    let loads: Vec<Load> = match c.get("loads") {
        None => Load::ALL.to_vec(),
        Some(names) => {
            let picked: Vec<Load> = Load::ALL
                .into_iter()
                .filter(|l| names.split(',').any(|n| l.name().starts_with(n)))
                .collect();
            if picked.is_empty() {
                log::error!("loads={names}: none of a, b, c");
                return false;
            }
            picked
        }
    };
    let reps = num("reps", 5) as usize;
    let lives = match c.get("lives") {
        Some(list) => match list.split(',').map(str::parse).collect() {
            Ok(l) => l,
            Err(_) => {
                log::error!("lives={list}: not a list of numbers");
                return false;
            }
        },
        None if reps <= 2 => alloc::vec![10, 1_000],
        None => alloc::vec![10, 1_000, 10_000, 100_000],
    };
    let o = Opts {
        loads,
        reps,
        profiled_reps: num("preps", 1) as usize,
        ms,
        ticks: ms * cpu::counter_frequency() / 1000,
        floor_ticks: num("floor_ms", ms) * cpu::counter_frequency() / 1000,
        lives,
        mmio: c.number("bench_mmio").ok().flatten(),
        mmio_1g: c.number("bench_mmio_1g").ok().flatten(),
    };
    emit(
        &[
            ("group", q("info")),
            ("counter_hz", format!("{}", cpu::counter_frequency())),
            ("cpus", format!("{}", smp::online_cpus())),
            ("reps", format!("{}", o.reps)),
            ("profiled_reps", format!("{}", o.profiled_reps)),
            ("ms", format!("{}", o.ms)),
            ("profile", format!("{}", profile::AVAILABLE)),
        ],
        true,
    );
    let groups = c.get("bench").unwrap_or("all");
    touch_free_memory();
    let mut ok = true;
    for g in groups.split(',') {
        let all = g == "all";
        if all || g == "designs" {
            ok &= designs(&o, false);
        }
        if all || g == "breakdown" {
            if profile::AVAILABLE {
                ok &= designs(&o, true);
            } else if !all {
                log::error!(
                    "bench=breakdown needs the profiled kernel (built with --features profile)"
                );
                ok = false;
            }
        }
        if all || g == "floor" {
            ok &= costs::floor(&o);
        }
        if all || g == "growth" {
            ok &= costs::growth(&o);
        }
        if all || g == "scaling" {
            ok &= scaling(&o);
        }
        if !all && !["designs", "breakdown", "floor", "growth", "scaling"].contains(&g) {
            log::error!(
                "bench={g}: unknown group (designs, breakdown, floor, growth, scaling, all)"
            );
            ok = false;
        }
    }
    ok
}

#[derive(Clone, Copy)]
enum Load {
    IoremapRead,
    MapFresh,
    Vmalloc,
}

impl Load {
    const ALL: [Load; 3] = [Self::IoremapRead, Self::MapFresh, Self::Vmalloc];

    fn name(self) -> &'static str {
        match self {
            Self::IoremapRead => "a_ioremap_read_iounmap",
            Self::MapFresh => "b_map_fresh",
            Self::Vmalloc => "c_vmalloc_write_vfree",
        }
    }
}

/// Write every free page once, through `vmalloc`, and give it all back.
///
/// QEMU backs guest RAM with host memory on first touch, and that first touch costs a host page
/// fault. Untouched, it falls on whichever measurement first reaches a page: load (b) installs a
/// fresh table page per operation and ran slower rep after rep until it had touched them all.
/// A few MiB stay untouched, for the kernel heap to grow into meanwhile.
fn touch_free_memory() {
    const MARGIN_PAGES: usize = 1024;
    let mut areas = Vec::with_capacity(1024);
    for chunk in [16 << 20, 1 << 20, 64 << 10] {
        while areas.len() < areas.capacity()
            && mm::frame::FRAMES.stats().free > MARGIN_PAGES + chunk / PAGE_SIZE
        {
            let Ok(va) = mm::vmalloc(chunk) else { break };
            for p in (0..chunk).step_by(PAGE_SIZE) {
                // SAFETY: the page was just vmalloc'd here, and nothing else refers to it.
                unsafe { (va + p).as_mut_ptr::<u64>().write_volatile(0) };
            }
            areas.push(va);
        }
    }
    for va in areas {
        let _ = mm::vfree(va);
    }
    // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no on_cpus
    // call is running), so none maps, unmaps or walks the vmalloc region.
    unsafe { settle() };
}

/// Per lock of `mm::profile::LOCKS`: the ticks waited and held, the acquisitions, the clock
/// reads probes made inside its holds, and whether every CPU contends for it (only those make up
/// the serial fraction).
fn locks_json(t: &profile::Totals) -> String {
    let locks: Vec<String> = profile::LOCKS
        .iter()
        .enumerate()
        .map(|(i, (_, name, global))| {
            format!(
                "\"{name}\":{{\"wait\":{},\"hold\":{},\"acquired\":{},\"inner_reads\":{},\
                 \"global\":{global}}}",
                t.wait[i], t.hold[i], t.acquired[i], t.inner_reads[i]
            )
        })
        .collect();
    format!("{{{}}}", locks.join(","))
}

/// The two designs in the order rep `rep` runs them: seed first in even reps, pre-patch first in
/// odd ones, so that whatever the first run of a pair pays or gains falls on both alike.
fn pair_order(rep: usize) -> [(Design, &'static str); 2] {
    let [seed, prepatch] = [(Design::Seed, "seed"), (Design::PrePatch, "prepatch")];
    if rep.is_multiple_of(2) {
        [seed, prepatch]
    } else {
        [prepatch, seed]
    }
}

fn designs(o: &Opts, profiled: bool) -> bool {
    let vm = kernel_vm();
    let mut ok = true;
    let reps = if profiled { o.profiled_reps } else { o.reps };
    for &load in &o.loads {
        // Warm up (untimed): the first touch of guest frames costs QEMU host page faults, which
        // would otherwise land on whichever design runs first.
        // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no on_cpus
        // call is running), so none maps, unmaps or walks the vmalloc region.
        unsafe { settle() };
        ok &= run_load(load, smp::online_cpus(), o.ticks, false).ok;
        if profiled {
            probe_costs();
        }
        for rep in 0..reps {
            let order = pair_order(rep);
            for (mode, design) in order {
                // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no
                // on_cpus call is running), so none maps, unmaps or walks the vmalloc region.
                unsafe { settle() };
                vm.init_mm.set_design(mode);
                let tables0 = vm.init_mm.stats();
                let r = run_load(load, smp::online_cpus(), o.ticks, profiled);
                let tables = tables_delta(&tables0, &vm.init_mm.stats());
                vm.init_mm.set_design(Design::Seed);
                ok &= r.ok;
                let cpus = smp::online_cpus();
                let secs = r.ticks as f64 / cpu::counter_frequency() as f64;
                let mut f = alloc::vec![
                    ("group", q(if profiled { "breakdown" } else { "designs" })),
                    ("load", q(load.name())),
                    ("design", q(design)),
                    ("first", q(order[0].1)),
                    ("cpus", format!("{cpus}")),
                    ("rep", format!("{rep}")),
                    ("ops", format!("{}", r.ops)),
                    ("ticks", format!("{}", r.ticks)),
                    ("seconds", format!("{secs:.4}")),
                    ("ops_per_sec", format!("{:.1}", r.ops as f64 / secs)),
                ];
                if profiled {
                    let t = profile::totals();
                    f.push(("cpu_ticks", format!("{}", r.ticks * cpus as u64)));
                    f.push(("locks", locks_json(&t)));
                    f.push((
                        "serial",
                        obj([
                            ("hold", t.serial),
                            ("holds", t.serial_holds),
                            ("inner_reads", t.serial_inner_reads),
                        ]),
                    ));
                    f.push((
                        "sections",
                        obj(profile::SECTIONS
                            .iter()
                            .enumerate()
                            .map(|(i, (_, name))| (*name, t.time[i]))),
                    ));
                    f.push((
                        "events",
                        obj(profile::EVENTS
                            .iter()
                            .enumerate()
                            .map(|(i, (_, name))| (*name, t.count[i]))),
                    ));
                    let levels = [tables.pud, tables.pmd, tables.pte];
                    f.push((
                        "tables",
                        obj([
                            ("installed", levels.iter().map(|l| l.installed).sum()),
                            ("lost", levels.iter().map(|l| l.lost).sum()),
                        ]),
                    ));
                }
                if !r.ok {
                    f.push(("error", q(&r.error)));
                }
                emit(&f, r.ok);
            }
        }
    }
    ok
}

/// The seed design on one CPU and on every online CPU, back to back in each rep (alternately
/// first), in one boot: the host's drift between boots, which moves a -smp 1 boot's throughput
/// by a third from one boot to the next, cancels in each rep's ratio. The CPUs a run leaves out
/// sleep in `wfi`. The 1-CPU figure is not a -smp 1 one, though: load (c) on one CPU of a
/// 2-vCPU machine runs at about two thirds of a -smp 1 boot's rate, for a reason not pinned down
/// (QEMU's parallel mode for several vCPUs, the idle vCPU, or the kernel's 2-CPU set-up). The
/// host shows this ratio beside the across-boots one and decides nothing on it.
fn scaling(o: &Opts) -> bool {
    let all = smp::online_cpus();
    if all < 2 {
        log::error!("bench=scaling needs 2 or more CPUs, {all} online");
        return false;
    }
    kernel_vm().init_mm.set_design(Design::Seed);
    let mut ok = true;
    for &load in &o.loads {
        // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no on_cpus
        // call is running), so none maps, unmaps or walks the vmalloc region.
        unsafe { settle() };
        ok &= run_load(load, all, o.ticks, false).ok;
        for rep in 0..o.reps {
            let order = if rep.is_multiple_of(2) {
                [1, all]
            } else {
                [all, 1]
            };
            for cpus in order {
                // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no
                // on_cpus call is running), so none maps, unmaps or walks the vmalloc region.
                unsafe { settle() };
                let r = run_load(load, cpus, o.ticks, false);
                ok &= r.ok;
                let secs = r.ticks as f64 / cpu::counter_frequency() as f64;
                let mut f = alloc::vec![
                    ("group", q("scaling")),
                    ("load", q(load.name())),
                    ("design", q("seed")),
                    ("first", format!("{}", order[0])),
                    ("cpus", format!("{cpus}")),
                    ("rep", format!("{rep}")),
                    ("ops", format!("{}", r.ops)),
                    ("ticks", format!("{}", r.ticks)),
                    ("ops_per_sec", format!("{:.1}", r.ops as f64 / secs)),
                ];
                if !r.ok {
                    f.push(("error", q(&r.error)));
                }
                emit(&f, r.ok);
            }
        }
    }
    ok
}

struct LoadResult {
    ops: u64,
    ticks: u64,
    ok: bool,
    error: String,
}

/// Run `load` on CPUs `0..cpus` for `ticks`, all starting together; with `profiled`, profile
/// exactly the timed part.
fn run_load(load: Load, cpus: usize, ticks: u64, profiled: bool) -> LoadResult {
    let vm = kernel_vm();
    let reg = id_register();
    let dev = reg.page();
    let window = match load {
        Load::MapFresh => match vm.reserve_window(PGDIR_SIZE, PGDIR_SIZE) {
            Ok(w) => Some(w),
            Err(e) => {
                return LoadResult {
                    ops: 0,
                    ticks: 1,
                    ok: false,
                    error: format!("window: {e}"),
                };
            }
        },
        _ => None,
    };
    let base = window.as_ref().map_or(VirtAddr(0), |w| w.start());
    let slots = PGDIR_SIZE / PMD_SIZE;
    let barrier = Barrier::new(cpus);
    let deadline = AtomicU64::new(0);
    let ops: [AtomicU64; cpu::MAX_CPUS] = [const { AtomicU64::new(0) }; cpu::MAX_CPUS];
    let bad = AtomicBool::new(false);
    let t_start = AtomicU64::new(0);
    profile::enable(profiled);
    on_cpus(cpus, &|id| {
        // The clock starts when the last CPU arrives, not when the first does: on a busy host a
        // vCPU can be kept off a host CPU for longer than a whole run, which then found its
        // deadline passed and did nothing.
        barrier.wait_with(|| {
            let now = cpu::counter();
            t_start.store(now, Ordering::Relaxed);
            deadline.store(now + ticks, Ordering::Relaxed);
        });
        let end = deadline.load(Ordering::Relaxed);
        let mut rng = Rng::new(id as u64 + 1);
        let mut n = 0u64;
        while cpu::counter() < end {
            let good = match load {
                Load::IoremapRead => ioremap_read_iounmap(&reg),
                Load::MapFresh => {
                    let slot = n as usize * cpus + id;
                    if slot >= slots {
                        break;
                    }
                    // SAFETY: this CPU's own slot (`slot` differs on every CPU) of the window
                    // this run holds.
                    unsafe { map_fresh(base + slot * PMD_SIZE, dev) }
                }
                Load::Vmalloc => vmalloc_write_vfree(rng.range(1, 16)),
            };
            if !good {
                bad.store(true, Ordering::Relaxed);
                break;
            }
            n += 1;
        }
        ops[id].store(n, Ordering::Relaxed);
    });
    // The invalidations this run's unmaps deferred are its work too: purge them inside the timed
    // (and profiled) part. The caller settled memory management before the run, so every run pays
    // for exactly its own unmaps, however far the lazily freed total was from the threshold.
    vm.vm_unmap_aliases();
    let elapsed = cpu::counter() - t_start.load(Ordering::Relaxed);
    profile::enable(false);
    let total: u64 = ops.iter().map(|o| o.load(Ordering::Relaxed)).sum();
    let mut error = String::new();
    if bad.load(Ordering::Relaxed) {
        error = format!("{} failed its check", load.name());
    }
    if let Some(window) = window {
        // Verify every mapping made, then take them all down (not timed).
        for (id, done) in ops.iter().enumerate().take(cpus) {
            for k in 0..done.load(Ordering::Relaxed) as usize {
                let va = base + (k * cpus + id) * PMD_SIZE;
                let t = vm.init_mm.translate(va);
                if t.is_none_or(|t| t.pa != dev || t.level != Level::Pte) {
                    error = format!("fresh mapping at {va:#x} translates to {t:?}");
                }
                // SAFETY: a page of the window this run holds, which the load mapped; the load
                // is over, so no CPU maps or unmaps in the window any more.
                unsafe { vm.init_mm.unmap_range(va, PAGE_SIZE) };
            }
        }
        // SAFETY: the load is over; nothing else maps in the window reserved for it.
        unsafe { vm.init_mm.reclaim_empty_tables(base, base + PGDIR_SIZE) };
        if let Err(e) = vm.release_window(window) {
            error = format!("{e}");
        }
    }
    LoadResult {
        ops: total,
        ticks: elapsed.max(1),
        ok: error.is_empty() && total > 0,
        error,
    }
}

// One operation of each load, each a function of its own that is never inlined: so that the code
// measured (and its instructions per operation under `-icount`) does not change with the code of
// the loop around it, which the compiler would otherwise optimise together with it.

/// Load (a): ioremap the register's page, read the register, iounmap; whether all went right.
#[inline(never)]
pub(crate) fn ioremap_read_iounmap(reg: &IdRegister) -> bool {
    match mm::ioremap(reg.page(), PAGE_SIZE) {
        Ok(va) => {
            // SAFETY: `va` is this CPU's own ioremap of the register's page, live until the
            // iounmap after the read.
            let good = unsafe { reg.reads_right(va) };
            good && mm::iounmap(va).is_ok()
        }
        Err(_) => false,
    }
}

/// Load (b): map the device page `dev` at `va`, a slot of a window reserved for the load whose
/// tables below the pmd do not exist yet.
///
/// # Safety
///
/// `va` is a page of a window the caller holds, which no other CPU maps into.
#[inline(never)]
unsafe fn map_fresh(va: VirtAddr, dev: PhysAddr) -> bool {
    // SAFETY: the caller's page of its window, mapped to a device register, not RAM.
    unsafe {
        kernel_vm()
            .init_mm
            .map_range(va, dev, PAGE_SIZE, Prot::DEVICE, false)
    }
    .is_ok()
}

/// Load (c): vmalloc `pages` pages, write a word to each, read them back, vfree.
#[inline(never)]
fn vmalloc_write_vfree(pages: usize) -> bool {
    match mm::vmalloc(pages * PAGE_SIZE) {
        Ok(va) => {
            for p in 0..pages {
                let w = (va + p * PAGE_SIZE).as_mut_ptr::<u64>();
                // SAFETY: the page was just vmalloc'd for this CPU alone.
                unsafe { w.write_volatile(va.0 as u64 ^ p as u64) };
            }
            // SAFETY: as above.
            let back = (0..pages).all(|p| unsafe {
                (va + p * PAGE_SIZE).as_ptr::<u64>().read_volatile() == va.0 as u64 ^ p as u64
            });
            back && mm::vfree(va).is_ok()
        }
        Err(_) => false,
    }
}

/// What profiling itself costs, so that the host can take it out of the breakdown: on this CPU
/// alone, an uncontended lock around an empty critical section and an empty timed section, in
/// batches of `N` with profiling off and on. Per acquisition the hold and wait profiling reports
/// for the empty section are its own overhead inside and before the hold; the ticks per
/// acquisition and per section, on against off, what a probe adds to the CPU time. Each figure
/// is the least over `BATCHES` batches: a batch takes well under a millisecond, and one in which
/// the host preempted QEMU only comes out longer.
fn probe_costs() {
    const N: u64 = 1_000;
    const BATCHES: usize = 20;
    let lock = spin::Mutex::new(());
    let (kind, _, _) = profile::LOCKS[0];
    let (section, _) = profile::SECTIONS[0];
    let run = |on: bool| {
        profile::enable(on);
        let t0 = cpu::counter();
        for _ in 0..N {
            drop(core::hint::black_box(profile::acquire(kind, || {
                lock.lock()
            })));
        }
        let t1 = cpu::counter();
        for _ in 0..N {
            profile::timed(section, || core::hint::black_box(0));
        }
        let t2 = cpu::counter();
        let t = profile::totals();
        profile::enable(false);
        [
            t.hold[kind as usize],
            t.wait[kind as usize],
            t.time[section as usize],
            t1 - t0,
            t2 - t1,
        ]
    };
    // hold, wait, section, lock_on, section_on, lock_off, section_off
    let mut least = [u64::MAX; 7];
    for _ in 0..BATCHES {
        let [hold, wait, sec, lock_on, section_on] = run(true);
        let [_, _, _, lock_off, section_off] = run(false);
        let batch = [hold, wait, sec, lock_on, section_on, lock_off, section_off];
        for (l, b) in least.iter_mut().zip(batch) {
            *l = (*l).min(b);
        }
    }
    let names = [
        "hold",
        "wait",
        "section",
        "lock_on",
        "section_on",
        "lock_off",
        "section_off",
    ];
    let mut f = alloc::vec![
        ("group", q("probe")),
        ("cpus", format!("{}", smp::online_cpus())),
    ];
    for (name, l) in names.into_iter().zip(least) {
        f.push((name, format!("{:.2}", l as f64 / N as f64)));
    }
    emit(&f, true);
}
