//! The cost benchmarks: `floor` (one 4 KiB map + read + unmap at its irreducible cost, with and
//! without its own TLB invalidation, against a real ioremap + read + iounmap) and `growth` (how
//! the per-CPU slot allocator's, the global virtual-area allocator's and ioremap's costs grow with
//! the live areas and the size). See the parent module for the line format and the options.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::kernel::{Designs, Opts, emit, id_register, ioremap_read_iounmap, q};
use initmm::arch::aarch64::cpu;
use initmm::mm;
use initmm::mm::addr::PhysAddr;
use initmm::mm::env::PageTableEnv;
use initmm::mm::layout::{PAGE_SIZE, PMD_SIZE, PUD_SIZE};
use initmm::mm::pgtable::{Descriptor, Level, Prot};

/// Ticks and operations of one timed loop.
struct Timed {
    ops: u64,
    ticks: u64,
}

impl Timed {
    /// Nanoseconds per operation.
    fn ns(&self) -> f64 {
        self.ticks as f64 * 1e9 / cpu::counter_frequency() as f64 / self.ops.max(1) as f64
    }

    /// The JSON object the host reads: `ops`, `ticks` (under `-icount` the host turns them into
    /// instructions per operation) and `ns` per operation.
    fn json(&self) -> String {
        format!(
            "{{\"ops\":{},\"ticks\":{},\"ns\":{:.1}}}",
            self.ops,
            self.ticks,
            self.ns()
        )
    }
}

/// Run `op` (which says whether its check passed) for `ticks`, and then `finish` (timed too).
fn timed_loop(ticks: u64, mut op: impl FnMut(u64) -> bool, finish: impl FnOnce()) -> (Timed, bool) {
    let mut n = 0u64;
    let mut good = true;
    let t0 = cpu::counter();
    while cpu::counter() - t0 < ticks {
        good &= op(n);
        n += 1;
    }
    finish();
    let t = cpu::counter() - t0;
    (Timed { ops: n, ticks: t }, good)
}

/// One 4 KiB map + read + unmap at its floor, against a real ioremap + read + iounmap, on this
/// CPU alone. The floor comes two ways:
/// - `floor`: store, publish, read, clear, and the page's own broadcast invalidation, completed
///   (`dsb ishst; tlbi vaale1is; dsb ish; isb`), every time;
/// - `floor_batched`: the same on each page of a 2 MiB window in turn, without invalidating; after
///   the window's 512 pages, one `tlbi vmalle1is` for them all (what `mm::tlb` does for a purge of
///   `TLBI_MAX_OPS` or more leaves, as Linux's `flush_tlb_kernel_range` does past `MAX_DVM_OPS`).
///   This is the floor of `iounmap`, which invalidates nothing itself and leaves the invalidation
///   to the lazy purge. No page is mapped again before that invalidation completed, so no stale
///   entry can be met (invariant 4 in `mm`).
///
/// The real loop ends with the purge of what its unmaps deferred, timed, as each load does.
pub(super) fn floor(d: &Designs, o: &Opts) -> bool {
    let vm = &d.seed;
    let init_mm = &vm.init_mm;
    let env = init_mm.env();
    let reg = id_register();
    let dev = reg.page();
    // A window of one pte table's span, aligned to it: its slots are mapped and cleared below.
    let window = match vm.reserve_window(PMD_SIZE, PMD_SIZE) {
        Ok(w) => w,
        Err(e) => {
            log::error!("bench floor: {e}");
            return false;
        }
    };
    let base = window.start();
    let pages = PMD_SIZE / PAGE_SIZE;
    let desc = Descriptor::leaf(Level::Pte, dev, Prot::DEVICE).raw();
    let mut ok = true;
    for rep in 0..o.reps {
        // Settled first (as the real loop below needs), which frees the window's table while
        // all its slots are empty: the slots are looked up (the tables installed) after it.
        // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no on_cpus
        // call is running), so none maps, unmaps or walks the vmalloc region.
        unsafe { d.settle() };
        let entries: Result<Vec<_>, _> = (0..pages)
            .map(|i| {
                let va = base + i * PAGE_SIZE;
                // SAFETY: each entry is init_mm's, for `va`, in the window this benchmark holds;
                // nothing maps a block over it or reclaims its tables while the entries are used
                // (until the next `settle`, after which they are looked up again).
                unsafe {
                    init_mm
                        .pud_alloc(init_mm.pgd_offset_k(va), va)
                        .and_then(|pud| init_mm.pmd_alloc(pud, va))
                        .and_then(|pmd| init_mm.pte_alloc_kernel(pmd, va))
                }
            })
            .collect();
        let Ok(entries) = entries else {
            log::error!("bench floor: no page table for {base:#x}");
            ok = false;
            break;
        };
        let map_read_clear = |i: usize| {
            let va = base + i * PAGE_SIZE;
            // SAFETY: `entries[i]` is the pte slot of `va`, in a window this benchmark reserved
            // for itself, whose table nothing frees until the next `settle`; it maps the device
            // page `dev` (not RAM) as Device memory. The slot is empty and `va` has no TLB entry:
            // each loop below invalidates it after clearing it and before mapping it again.
            unsafe { env.set_entry(&entries[i], desc) };
            env.dsb_ishst();
            env.isb();
            // SAFETY: the slot was set to map the register's page at `va` as device memory and
            // published (dsb, isb) just above; it is cleared only after this read.
            let good = unsafe { reg.reads_right_at(va) };
            // SAFETY: clearing the slot mapped just above; the loops invalidate before `va` is
            // mapped again.
            unsafe { env.set_entry(&entries[i], 0) };
            good
        };
        // The floor with its own invalidation (Linux's `flush_tlb_kernel_range` of one page).
        let (fl, good_fl) = timed_loop(
            o.floor_ticks,
            |_| {
                let good = map_read_clear(0);
                env.dsb_ishst();
                env.tlbi_page(base.0);
                env.dsb_ish();
                env.isb();
                good
            },
            || {},
        );
        // The floor with the invalidation batched: one `tlbi vmalle1is` per window (and at the
        // end, for the pages cleared since the last one).
        let flush_all = || {
            env.dsb_ishst();
            env.tlbi_all();
            env.dsb_ish();
            env.isb();
        };
        let (fb, good_fb) = timed_loop(
            o.floor_ticks,
            |n| {
                let i = n as usize % pages;
                let good = map_read_clear(i);
                if i == pages - 1 {
                    flush_all();
                }
                good
            },
            flush_all,
        );
        // The real thing, paying for its own purge at the end (the floors left nothing to
        // purge since the settle).
        let (re, good_re) = timed_loop(
            o.floor_ticks,
            |_| ioremap_read_iounmap(vm, &reg),
            || vm.vm_unmap_aliases(),
        );
        let good = good_fl && good_fb && good_re;
        ok &= good;
        emit(
            &[
                ("group", q("floor")),
                ("rep", format!("{rep}")),
                ("floor", fl.json()),
                ("floor_batched", fb.json()),
                ("real", re.json()),
                ("floor_ns", format!("{:.1}", fl.ns())),
                ("real_ns", format!("{:.1}", re.ns())),
                ("ratio", format!("{:.3}", re.ns() / fl.ns())),
                ("ratio_batched", format!("{:.3}", re.ns() / fb.ns())),
            ],
            good,
        );
    }
    let _ = vm.release_window(window);
    ok
}

/// How costs grow: a one-page ioremap + iounmap through this CPU's vmap node (the per-CPU slot
/// allocator that loads (a) and (c) use) with 10 .. 100,000 of this CPU's one-page ioremaps live;
/// a reservation + release from the global virtual-area allocator (windows, large areas) with as
/// many windows live; ioremap + iounmap against its size.
pub(super) fn growth(d: &Designs, o: &Opts) -> bool {
    let vm = &d.seed;
    let mut ok = true;
    let dev = id_register().page();
    for &live in &o.lives {
        ok &= slots_with_live(d, live, dev);
        ok &= global_with_live(d, live);
    }
    let sizes = [
        ("4K", PAGE_SIZE, o.mmio),
        ("64K", 64 << 10, o.mmio),
        ("2M", PMD_SIZE, o.mmio),
        ("1G", PUD_SIZE, o.mmio_1g),
    ];
    for (name, size, pa) in sizes {
        let Some(pa) = pa else {
            log::warn!(
                "bench growth: no bench_mmio/bench_mmio_1g on the command line: ioremap sizes skipped"
            );
            break;
        };
        let frames0 = mm::frame::FRAMES.stats().free;
        let (tables, level) = match vm.ioremap(PhysAddr(pa), size) {
            Ok(io) => {
                let va = io.addr();
                let t = vm.init_mm.count_tables(va, va + size).total();
                let l = vm.init_mm.translate(va).map(|t| t.level);
                (t, l)
            }
            Err(e) => {
                log::error!("bench growth: ioremap({pa:#x}, {name}): {e}");
                ok = false;
                continue;
            }
        };
        let new_tables = frames0.saturating_sub(mm::frame::FRAMES.stats().free);
        let mut samples = Vec::new();
        for _ in 0..o.reps.max(3) * 4 {
            let t0 = cpu::counter();
            ok &= vm.ioremap(PhysAddr(pa), size).is_ok();
            samples.push((cpu::counter() - t0) as f64 * 1e9 / cpu::counter_frequency() as f64);
        }
        samples.sort_by(f64::total_cmp);
        emit(
            &[
                ("group", q("ioremap_size")),
                ("size", q(name)),
                ("leaf_level", q(&format!("{level:?}"))),
                ("table_pages", format!("{tables}")),
                ("new_table_pages", format!("{new_tables}")),
                ("median_ns", format!("{:.1}", samples[samples.len() / 2])),
                ("min_ns", format!("{:.1}", samples[0])),
                ("max_ns", format!("{:.1}", samples[samples.len() - 1])),
            ],
            ok,
        );
    }
    ok
}

/// Batches of `BATCH` operations whose ticks [`batches`] records.
const BATCHES: usize = 20;
const BATCH: u64 = 100;

/// `BATCHES` timed batches of `BATCH` calls of `op` (whether its check passed), each batch ending
/// with `finish` (timed too): the nanoseconds per operation of each batch, sorted, and the ticks
/// and operations in all (for the host's instructions per operation under `-icount`).
fn batches(mut op: impl FnMut() -> bool, finish: impl Fn()) -> (Vec<f64>, Timed, bool) {
    let mut ns = Vec::with_capacity(BATCHES);
    let mut all = Timed { ops: 0, ticks: 0 };
    let mut good = true;
    for _ in 0..BATCHES {
        let t0 = cpu::counter();
        for _ in 0..BATCH {
            good &= op();
        }
        finish();
        let t = Timed {
            ops: BATCH,
            ticks: cpu::counter() - t0,
        };
        ns.push(t.ns());
        all.ops += t.ops;
        all.ticks += t.ticks;
    }
    ns.sort_by(f64::total_cmp);
    (ns, all, good)
}

/// One line of growth figures: the batches' median, least and greatest nanoseconds per operation.
fn emit_samples(group: &str, live: usize, ns: &[f64], all: &Timed, ok: bool) {
    emit(
        &[
            ("group", q(group)),
            ("live", format!("{live}")),
            ("median_ns", format!("{:.1}", ns[ns.len() / 2])),
            ("min_ns", format!("{:.1}", ns[0])),
            ("max_ns", format!("{:.1}", ns[ns.len() - 1])),
            ("all", all.json()),
        ],
        ok,
    );
}

/// A one-page ioremap + iounmap of `dev` with `live` others of this CPU's live: each takes a slot
/// of this CPU's vmap node, as the loads' do. Each batch ends with the purge of what its iounmaps
/// deferred, so that every batch pays for its own invalidations.
fn slots_with_live(d: &Designs, live: usize, dev: PhysAddr) -> bool {
    let vm = &d.seed;
    let mut held = Vec::with_capacity(live);
    let mut ok = true;
    for _ in 0..live {
        match vm.ioremap(dev, PAGE_SIZE) {
            Ok(io) => held.push(io),
            Err(e) => {
                log::error!("bench growth: {live} live ioremaps: {e}");
                ok = false;
                break;
            }
        }
    }
    if ok {
        // SAFETY: between measurements, on the boot CPU: the other CPUs are idle (no on_cpus
        // call is running), so none maps, unmaps or walks the vmalloc region.
        unsafe { d.settle() };
        let (before, _) = vm.area_stats();
        let (ns, all, good) = batches(
            || vm.ioremap(dev, PAGE_SIZE).is_ok(),
            || vm.vm_unmap_aliases(),
        );
        ok &= good && vm.area_stats().0 == before;
        emit_samples("slots", live, &ns, &all, ok);
    }
    drop(held);
    ok
}

/// A reservation + release of a one-page window from the global virtual-area allocator (Linux's
/// `free_vmap_area_lock` side: windows and large areas) with `live` windows live.
fn global_with_live(d: &Designs, live: usize) -> bool {
    let vm = &d.seed;
    let mut held = Vec::with_capacity(live);
    for _ in 0..live {
        match vm.reserve_window(PAGE_SIZE, PAGE_SIZE) {
            Ok(a) => held.push(a),
            Err(e) => {
                log::error!("bench growth: {live} live areas: {e}");
                return false;
            }
        }
    }
    let (before, _) = vm.area_stats();
    let (ns, all, mut ok) = batches(
        || {
            vm.reserve_window(PAGE_SIZE, PAGE_SIZE)
                .is_ok_and(|a| vm.release_window(a).is_ok())
        },
        || {},
    );
    ok &= vm.area_stats().0 == before;
    emit_samples("areas", live, &ns, &all, ok);
    for a in held {
        ok &= vm.release_window(a).is_ok();
    }
    ok
}
