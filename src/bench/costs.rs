//! The cost benchmarks: `floor` (one 4 KiB map + unmap at its irreducible cost, against a
//! real ioremap + iounmap) and `growth` (how virtual-area and ioremap costs grow with the live
//! areas and the size). See the parent module for the line format and the options.

use alloc::format;
use alloc::vec::Vec;

use super::{Opts, emit, id_register, q};
use crate::arch::aarch64::cpu;
use crate::mm::addr::PhysAddr;
use crate::mm::env::PageTableEnv;
use crate::mm::layout::{PAGE_SIZE, PMD_SIZE, PUD_SIZE};
use crate::mm::pgtable::{Descriptor, Level, Prot};
use crate::mm::{self, kernel_vm};

/// One 4 KiB map + unmap at its floor, against a real ioremap + iounmap, on this CPU alone.
pub(super) fn floor(o: &Opts) -> bool {
    let vm = kernel_vm();
    let init_mm = &vm.init_mm;
    let env = init_mm.env();
    let reg = id_register();
    let dev = reg.page();
    // A slot whose page table exists: map once, unmap (tables stay).
    let window = match vm.reserve_window(PAGE_SIZE, PAGE_SIZE) {
        Ok(w) => w,
        Err(e) => {
            log::error!("bench floor: {e}");
            return false;
        }
    };
    let va = window.start();
    // SAFETY: each entry is init_mm's, for `va`, in the window this benchmark holds; nothing
    // maps a block over it or reclaims its tables while the entries are used (until the window
    // goes back below).
    let entry = unsafe {
        init_mm
            .pud_alloc(init_mm.pgd_offset_k(va), va)
            .and_then(|pud| init_mm.pmd_alloc(pud, va))
            .and_then(|pmd| init_mm.pte_alloc_kernel(pmd, va))
    };
    let Ok(entry) = entry else {
        log::error!("bench floor: no page table for {va:#x}");
        return false;
    };
    let desc = Descriptor::leaf(Level::Pte, dev, Prot::DEVICE).raw();
    let mut ok = true;
    for rep in 0..o.reps {
        // The floor: store, publish, clear, invalidate, wait.
        let mut n = 0u64;
        let t0 = cpu::counter();
        let mut good = true;
        while cpu::counter() - t0 < o.ticks {
            // SAFETY: `entry` is the pte slot of `va`, in a window this benchmark reserved for
            // itself; it maps the device page `dev` (not RAM) as Device memory, and is cleared
            // and invalidated below before the next iteration maps it again.
            unsafe { env.set_entry(&entry, desc) };
            env.dsb_ishst();
            env.isb();
            // SAFETY: the slot was set to map the register's page at `va` as device memory and
            // published (dsb, isb) just above; it is cleared only after this read.
            good &= unsafe { reg.reads_right(va) };
            // SAFETY: clearing the slot mapped just above.
            unsafe { env.set_entry(&entry, 0) };
            env.dsb_ishst();
            env.tlbi_page(va.0);
            env.dsb_ish();
            env.isb();
            n += 1;
        }
        let floor_t = cpu::counter() - t0;
        // The real thing.
        let mut m = 0u64;
        let t1 = cpu::counter();
        while cpu::counter() - t1 < o.ticks {
            match mm::ioremap(dev, PAGE_SIZE) {
                Ok(v) => {
                    // SAFETY: `v` is this ioremap of the register's page, live until the
                    // iounmap below.
                    good &= unsafe { reg.reads_right(v) };
                    good &= mm::iounmap(v).is_ok();
                }
                Err(_) => good = false,
            }
            m += 1;
        }
        let real_t = cpu::counter() - t1;
        let ns =
            |t: u64, k: u64| t as f64 * 1e9 / cpu::counter_frequency() as f64 / k.max(1) as f64;
        let (fl, re) = (ns(floor_t, n), ns(real_t, m));
        ok &= good;
        emit(
            &[
                ("group", q("floor")),
                ("rep", format!("{rep}")),
                ("floor_ns", format!("{fl:.1}")),
                ("real_ns", format!("{re:.1}")),
                ("ratio", format!("{:.3}", re / fl)),
            ],
            good,
        );
    }
    let _ = vm.release_window(window);
    ok
}

/// Virtual-area latency against the number of live areas; ioremap cost against its size.
pub(super) fn growth(o: &Opts) -> bool {
    let vm = kernel_vm();
    let mut ok = true;
    let lives: &[usize] = if o.reps <= 2 {
        &[10, 1000]
    } else {
        &[10, 1_000, 10_000, 100_000]
    };
    for &live in lives {
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
        let mut samples = Vec::new();
        for _ in 0..20 {
            let t0 = cpu::counter();
            for _ in 0..100 {
                let a = vm.reserve_window(PAGE_SIZE, PAGE_SIZE);
                ok &= a.is_ok_and(|a| vm.release_window(a).is_ok());
            }
            samples
                .push((cpu::counter() - t0) as f64 * 1e9 / cpu::counter_frequency() as f64 / 100.0);
        }
        ok &= vm.area_stats().0 == before;
        samples.sort_by(f64::total_cmp);
        emit(
            &[
                ("group", q("areas")),
                ("live", format!("{live}")),
                ("median_ns", format!("{:.1}", samples[samples.len() / 2])),
                ("min_ns", format!("{:.1}", samples[0])),
                ("max_ns", format!("{:.1}", samples[samples.len() - 1])),
            ],
            ok,
        );
        for a in held {
            ok &= vm.release_window(a).is_ok();
        }
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
        let (tables, level) = match mm::ioremap(PhysAddr(pa), size) {
            Ok(va) => {
                let t = vm.init_mm.count_tables(va, va + size).total();
                let l = vm.init_mm.translate(va).map(|t| t.level);
                ok &= mm::iounmap(va).is_ok();
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
            let r = mm::ioremap(PhysAddr(pa), size).map(mm::iounmap);
            ok &= matches!(r, Ok(Ok(())));
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
