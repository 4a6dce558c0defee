//! The benchmark groups, on the machine (see the crate documentation).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use initmm::arch::aarch64::cpu;
use initmm::cmdline::Cmdline;
use initmm::mm::addr::{PhysAddr, VirtAddr};
use initmm::mm::hw::HwEnv;
use initmm::mm::layout::{PAGE_SIZE, PGDIR_SIZE, PMD_SIZE};
use initmm::mm::pgalloc::{InitMm, InstallPolicy, PgStatsSnapshot, Seed};
use initmm::mm::pgtable::{Level, Prot};
use initmm::mm::vm::{KernelVm, Window};
use initmm::mm::{self, kernel_vm, profile};
use initmm::smp::runtime::{Barrier, on_cpus};
use initmm::smp::{self};
use initmm::util::rng::Rng;
use initmm_workloads::common::{IdRegister, tables_delta};

use crate::prepatch::PrePatch;

/// The two designs, side by side on the kernel's own tables (see the crate documentation).
pub(crate) struct Designs {
    pub(crate) seed: KernelVm<HwEnv, Seed>,
    pub(crate) prepatch: KernelVm<HwEnv, PrePatch>,
    /// The part of the kernel's vmalloc region they map into, four whole pgd entries each (room
    /// for the per-CPU nodes' regions and for load (b)'s 512 GiB window and its guard page):
    /// never released.
    _window: Window,
}

/// Which of the two designs.
#[derive(Clone, Copy)]
enum Design {
    Seed,
    PrePatch,
}

/// Each design's part of the vmalloc region.
const SPAN: usize = 4 * PGDIR_SIZE;

impl Designs {
    /// The two designs, the seed in the first half of their window and the baseline in the
    /// second, or the other way round with `swapped`. Where a design's areas lie moves its
    /// throughput by a few percent under QEMU (whichever design had the first half ran 3-5%
    /// slower on load (a) at -smp 1, and the order flipped with the halves), so the bench
    /// alternates the halves between boots and the placement falls on both alike.
    fn new(swapped: bool) -> Result<Self, String> {
        let kvm = kernel_vm();
        let window = kvm
            .reserve_window(2 * SPAN, PGDIR_SIZE)
            .map_err(|e| format!("no room for the designs: {e}"))?;
        let (first, second) = (window.start().0, window.start().0 + SPAN);
        let (seed_base, prepatch_base) = if swapped {
            (second, first)
        } else {
            (first, second)
        };
        let pgd = kvm.init_mm.pgd_phys();
        let layout = kvm.init_mm.layout();
        // SAFETY: the kernel's pgd, whose `KernelVm` is static; each design maps only inside its
        // half of `window` (its vmalloc range): whole, aligned pgd entries that the kernel's own
        // `KernelVm` never uses while the window is held, and it is never released.
        let (seed_mm, prepatch_mm) = unsafe {
            (
                InitMm::sharing_pgd(HwEnv, pgd, layout.clone()),
                InitMm::sharing_pgd(HwEnv, pgd, layout.clone()),
            )
        };
        // SAFETY: both share the live pgd (above), and each window half is used by nothing else
        // (the kernel's own KernelVm reserved `window` for the bench and never maps in it).
        let (seed, prepatch) = unsafe {
            (
                KernelVm::new(seed_mm, (seed_base, seed_base + SPAN), kvm.pa_bits()),
                KernelVm::new(
                    prepatch_mm,
                    (prepatch_base, prepatch_base + SPAN),
                    kvm.pa_bits(),
                ),
            )
        };
        seed.set_online_cpus(smp::online_cpus());
        prepatch.set_online_cpus(smp::online_cpus());
        Ok(Self {
            seed,
            prepatch,
            _window: window,
        })
    }

    /// Bring memory management to a state that can be counted (`mm::settle`), the designs'
    /// lazily freed areas purged first.
    ///
    /// # Safety
    ///
    /// As for `mm::settle`: between measurements, while the other CPUs are idle.
    pub(crate) unsafe fn settle(&self) {
        self.seed.vm_unmap_aliases();
        self.prepatch.vm_unmap_aliases();
        // SAFETY: the caller's contract is `settle`'s.
        unsafe { mm::settle() };
    }

    /// Run `load` with `design`; its result and the table installs it made.
    fn run(
        &self,
        design: Design,
        load: Load,
        cpus: usize,
        ticks: u64,
        profiled: bool,
    ) -> (LoadResult, PgStatsSnapshot) {
        fn measured<P: InstallPolicy>(
            vm: &KernelVm<HwEnv, P>,
            load: Load,
            cpus: usize,
            ticks: u64,
            profiled: bool,
        ) -> (LoadResult, PgStatsSnapshot) {
            let before = vm.init_mm.stats();
            let r = run_load(vm, load, cpus, ticks, profiled);
            (r, tables_delta(&before, &vm.init_mm.stats()))
        }
        match design {
            Design::Seed => measured(&self.seed, load, cpus, ticks, profiled),
            Design::PrePatch => measured(&self.prepatch, load, cpus, ticks, profiled),
        }
    }
}

pub(crate) struct Opts {
    pub(crate) loads: Vec<Load>,
    pub(crate) reps: usize,
    pub(crate) profiled_reps: usize,
    pub(crate) ms: u64,
    pub(crate) ticks: u64,
    /// `floor_ms=` in ticks (default `ms=`): a floor operation with its own broadcast TLB
    /// invalidation is slow to emulate under `-icount`, and its count needs no long run there.
    pub(crate) floor_ticks: u64,
    /// `lives=N,N,..`: the live areas `growth` measures with (default 10 and 1,000 with 2 reps
    /// or fewer, else 10 .. 100,000).
    pub(crate) lives: Vec<usize>,
    pub(crate) mmio: Option<u64>,
    pub(crate) mmio_1g: Option<u64>,
}

/// One output line.
pub(crate) fn emit(fields: &[(&str, String)], ok: bool) {
    let mut s = String::from("{");
    for (k, v) in fields {
        s.push_str(&format!("\"{k}\":{v},"));
    }
    s.push_str(&format!("\"ok\":{ok}}}"));
    initmm::kprintln!("bench {s}");
}

pub(crate) fn q(s: &str) -> String {
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
pub(crate) fn id_register() -> IdRegister {
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
    let d = match Designs::new(c.get("windows") == Some("swapped")) {
        Ok(d) => d,
        Err(e) => {
            log::error!("bench: {e}");
            return false;
        }
    };
    let mut ok = true;
    for g in groups.split(',') {
        let all = g == "all";
        if all || g == "designs" {
            ok &= designs(&d, &o, false);
        }
        if all || g == "breakdown" {
            if profile::AVAILABLE {
                ok &= designs(&d, &o, true);
            } else if !all {
                log::error!(
                    "bench=breakdown needs the profiled kernel (built with --features profile)"
                );
                ok = false;
            }
        }
        if all || g == "floor" {
            ok &= crate::costs::floor(&d, &o);
        }
        if all || g == "growth" {
            ok &= crate::costs::growth(&d, &o);
        }
        if all || g == "scaling" {
            ok &= scaling(&d, &o);
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
pub(crate) enum Load {
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
            let Ok(mut area) = mm::vmalloc(chunk) else {
                break;
            };
            for p in (0..chunk).step_by(PAGE_SIZE) {
                area[p] = 0;
            }
            areas.push(area);
        }
    }
    drop(areas);
    // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no on_cpus
    // call is running), so none maps, unmaps or walks the vmalloc region.
    unsafe { mm::settle() };
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

fn designs(d: &Designs, o: &Opts, profiled: bool) -> bool {
    let mut ok = true;
    let reps = if profiled { o.profiled_reps } else { o.reps };
    for &load in &o.loads {
        // Warm up (untimed): the first touch of guest frames costs QEMU host page faults, which
        // would otherwise land on whichever design runs first.
        // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no on_cpus
        // call is running), so none maps, unmaps or walks the vmalloc region.
        unsafe { d.settle() };
        ok &= d
            .run(Design::Seed, load, smp::online_cpus(), o.ticks, false)
            .0
            .ok;
        if profiled {
            probe_costs();
        }
        for rep in 0..reps {
            let order = pair_order(rep);
            for (mode, design) in order {
                // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no
                // on_cpus call is running), so none maps, unmaps or walks the vmalloc region.
                unsafe { d.settle() };
                let (r, tables) = d.run(mode, load, smp::online_cpus(), o.ticks, profiled);
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
fn scaling(d: &Designs, o: &Opts) -> bool {
    let all = smp::online_cpus();
    if all < 2 {
        log::error!("bench=scaling needs 2 or more CPUs, {all} online");
        return false;
    }
    let mut ok = true;
    for &load in &o.loads {
        // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no on_cpus
        // call is running), so none maps, unmaps or walks the vmalloc region.
        unsafe { d.settle() };
        ok &= run_load(&d.seed, load, all, o.ticks, false).ok;
        for rep in 0..o.reps {
            let order = if rep.is_multiple_of(2) {
                [1, all]
            } else {
                [all, 1]
            };
            for cpus in order {
                // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no
                // on_cpus call is running), so none maps, unmaps or walks the vmalloc region.
                unsafe { d.settle() };
                let r = run_load(&d.seed, load, cpus, o.ticks, false);
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

/// How many operations a load runs between two looks at the clock (see `run_load`).
const CLOCK_EVERY: u64 = 16;

/// Run `load` on CPUs `0..cpus` for `ticks`, all starting together; with `profiled`, profile
/// exactly the timed part.
fn run_load<P: InstallPolicy>(
    vm: &KernelVm<HwEnv, P>,
    load: Load,
    cpus: usize,
    ticks: u64,
    profiled: bool,
) -> LoadResult {
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
        // The deadline is looked at every CLOCK_EVERY operations, not after each: under QEMU's
        // TCG a read of the counter (CNTVCT_EL0, an I/O register there) takes QEMU's global
        // lock, so a clock read per operation made the CPUs of a -smp 2 machine queue for it
        // (and added ~70 ns to every operation at -smp 1). The few operations past the deadline
        // are in both the count and the elapsed time.
        while !n.is_multiple_of(CLOCK_EVERY) || cpu::counter() < end {
            let good = match load {
                Load::IoremapRead => ioremap_read_iounmap(vm, &reg),
                Load::MapFresh => {
                    let slot = n as usize * cpus + id;
                    if slot >= slots {
                        break;
                    }
                    // SAFETY: this CPU's own slot (`slot` differs on every CPU) of the window
                    // this run holds.
                    unsafe { map_fresh(vm, base + slot * PMD_SIZE, dev) }
                }
                Load::Vmalloc => vmalloc_write_vfree(vm, rng.range(1, 16)),
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
pub(crate) fn ioremap_read_iounmap<P: InstallPolicy>(
    vm: &KernelVm<HwEnv, P>,
    reg: &IdRegister,
) -> bool {
    match vm.ioremap(reg.page(), PAGE_SIZE) {
        Ok(io) => reg.reads_right(&io),
        Err(_) => false,
    }
}

/// Load (b): map the device page `dev` at `va`, a slot of a window reserved for the load whose
/// tables below the pmd do not exist yet.
///
/// # Safety
///
/// `va` is a page of a window of `vm` the caller holds, which no other CPU maps into.
#[inline(never)]
unsafe fn map_fresh<P: InstallPolicy>(
    vm: &KernelVm<HwEnv, P>,
    va: VirtAddr,
    dev: PhysAddr,
) -> bool {
    // SAFETY: the caller's page of its window, mapped to a device register, not RAM.
    unsafe {
        vm.init_mm
            .map_range(va, dev, PAGE_SIZE, Prot::DEVICE, false)
    }
    .is_ok()
}

/// Load (c): vmalloc `pages` pages, write a word to each, read them back, vfree.
#[inline(never)]
fn vmalloc_write_vfree<P: InstallPolicy>(vm: &KernelVm<HwEnv, P>, pages: usize) -> bool {
    let Ok(mut area) = vm.vmalloc(pages * PAGE_SIZE) else {
        return false;
    };
    let va = area.addr().0 as u64;
    let words = area.as_mut_ptr().cast::<u64>();
    let word = |p: usize| p * PAGE_SIZE / 8;
    for p in 0..pages {
        // SAFETY: the first word of page `p` of this area, which is `pages` pages long and page
        // aligned; the area is this CPU's alone until it is dropped below.
        unsafe { words.add(word(p)).write_volatile(va ^ p as u64) };
    }
    // SAFETY: as above.
    (0..pages).all(|p| unsafe { words.add(word(p)).read_volatile() } == va ^ p as u64)
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
