//! `ioremap-storm`: every CPU maps device registers as fast as it can, in two ways at once.
//!
//! 1. Real `ioremap` + read + `iounmap` of an interrupt-controller page: the virtual-area lock, the table
//!    walk, leaf writes and TLB invalidation, as a driver would.
//! 2. Rounds in a fresh 512 GiB window: all CPUs pass a barrier and then map that page at
//!    neighbouring addresses in a gigabyte no one has touched, so they all need the same missing
//!    pmd and pte tables (and, in the first round of an epoch, the same pud table) at the same
//!    moment: the table allocators' race path runs for real. Every 64 rounds the CPUs stop at a
//!    barrier and CPU 0 frees the now-empty tables (quiescent `reclaim_empty_tables`), so the
//!    next epoch races again and the run ends with as many free frames as it started with.
//!
//! Every read through every mapping is checked: the interrupt controller's distributor PIDR2
//! register, whose architecture revision (2 or 3) the device tree's GIC version predicts. Every
//! board initmm runs on has a GIC, so the storm needs nothing board-specific.

use alloc::format;
use alloc::vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Params, Progress, Report, free_frames};
use crate::mm::layout::{PAGE_SIZE, PUD_SIZE};
use crate::mm::pgalloc::{LevelStats, PgStatsSnapshot};
use crate::mm::pgtable::Prot;
use crate::mm::{self, kernel_vm};
use crate::platform::devicetree::GicVersion;
use crate::smp::runtime::{Barrier, on_cpus};

const PGDIR_SIZE: usize = 512 * PUD_SIZE;
const ROUNDS_PER_EPOCH: usize = 64;
/// The register the storm reads: GICD_PIDR2 (its page, its offset in the page, the ArchRev it
/// must show).
struct IdRegister {
    page: u64,
    offset: usize,
    arch_rev: u32,
}

impl IdRegister {
    fn of_this_machine() -> Option<Self> {
        let gic = crate::kernel::boot_info().machine.gic.as_ref()?;
        let (pidr2, arch_rev) = match gic.version {
            GicVersion::V2 => (0xfe8u64, 2),
            GicVersion::V3 => (0xffe8, 3),
        };
        let pa = gic.dist.base + pidr2;
        Some(Self {
            page: pa & !(PAGE_SIZE as u64 - 1),
            offset: (pa % PAGE_SIZE as u64) as usize,
            arch_rev,
        })
    }

    /// Does the mapping of `page` at `va` read the expected revision?
    fn check(&self, va: usize) -> bool {
        // SAFETY: `va` is a live device mapping of the distributor page holding PIDR2, made by
        // this CPU for this read; PIDR2 is a read-only identification register.
        let v = unsafe { ((va + self.offset) as *const u32).read_volatile() };
        (v >> 4) & 0xf == self.arch_rev
    }
}

pub fn delta(a: &PgStatsSnapshot, b: &PgStatsSnapshot) -> PgStatsSnapshot {
    let d = |x: LevelStats, y: LevelStats| LevelStats {
        installed: y.installed - x.installed,
        lost: y.lost - x.lost,
    };
    PgStatsSnapshot {
        pud: d(a.pud, b.pud),
        pmd: d(a.pmd, b.pmd),
        pte: d(a.pte, b.pte),
        promotions: b.promotions - a.promotions,
        reclaimed: b.reclaimed - a.reclaimed,
    }
}

pub fn run(p: &Params) -> Report {
    let vm = kernel_vm();
    let mut report = Report {
        name: "ioremap-storm",
        cpus: p.cpus,
        ops: 0,
        ticks: 0,
        per_cpu_ops: vec![],
        tables: PgStatsSnapshot::default(),
        frames_before: 0,
        frames_after: 0,
        passed: false,
        extra: vec![],
        failures: vec![],
    };
    let Some(reg) = IdRegister::of_this_machine() else {
        report
            .failures
            .push("the device tree names no interrupt controller to read".into());
        return report;
    };
    let dev = reg.page;
    let window = match vm.reserve_window(PGDIR_SIZE, PGDIR_SIZE) {
        Ok(w) => w,
        Err(e) => {
            report
                .failures
                .push(format!("no 512 GiB window for the racing rounds: {e}"));
            return report;
        }
    };
    // One warm-up cycle, so that the heap and the ioremap range have what they keep.
    if let Ok(va) = mm::ioremap(dev, PAGE_SIZE) {
        let _ = mm::iounmap(va);
    }
    let frames_before = free_frames();
    let tables_before = vm.init_mm.stats();

    let progress = Progress::new("ioremap-storm");
    let barrier = Barrier::new(p.cpus);
    let stop = AtomicBool::new(false);
    let bad_reads = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let rounds = AtomicU64::new(0);
    let start = crate::arch::aarch64::cpu::counter();
    on_cpus(p.cpus, &|id| {
        let mut round = 0usize;
        loop {
            // CPU 0 decides when to stop, before the barrier; everyone reads it after.
            if id == 0 && !p.more(start, round as u64) {
                stop.store(true, Ordering::Release);
            }
            barrier.wait();
            if stop.load(Ordering::Acquire) {
                break;
            }
            // Racing round: a gigabyte no one has mapped in this epoch.
            let va = window + (round % ROUNDS_PER_EPOCH) * PUD_SIZE + id * PAGE_SIZE;
            match vm
                .init_mm
                .map_range(va, dev, PAGE_SIZE, Prot::DEVICE, false)
            {
                Ok(()) => {
                    if !reg.check(va) {
                        bad_reads.fetch_add(1, Ordering::Relaxed);
                    }
                    vm.init_mm.unmap_range(va, PAGE_SIZE);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            // A driver's ioremap of the same registers.
            match mm::ioremap(dev, PAGE_SIZE) {
                Ok(va) => {
                    if !reg.check(va) {
                        bad_reads.fetch_add(1, Ordering::Relaxed);
                    }
                    if mm::iounmap(va).is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            progress.add(id, 2);
            round += 1;
            if round.is_multiple_of(ROUNDS_PER_EPOCH) {
                // Quiescence: everyone is at the barrier, nobody walks the window.
                barrier.wait();
                if id == 0 {
                    // SAFETY: all CPUs of this workload wait at the barrier below and nothing
                    // else maps in the window (it is reserved for this workload).
                    unsafe { vm.init_mm.reclaim_empty_tables(window, window + PGDIR_SIZE) };
                }
                barrier.wait();
            }
        }
        if id == 0 {
            rounds.store(round as u64, Ordering::Relaxed);
        }
    });
    // SAFETY: every CPU of the workload has returned; the window is ours alone.
    unsafe { vm.init_mm.reclaim_empty_tables(window, window + PGDIR_SIZE) };
    let released = vm.release_window(window);
    report.ticks = progress.elapsed();
    report.ops = progress.total();
    report.per_cpu_ops = progress.per_cpu(p.cpus);
    report.tables = delta(&tables_before, &vm.init_mm.stats());
    report.frames_before = frames_before;
    report.frames_after = free_frames();
    let (bad, err) = (
        bad_reads.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    report
        .extra
        .push(("rounds", format!("{}", rounds.load(Ordering::Relaxed))));
    report.extra.push(("bad_reads", format!("{bad}")));
    report.extra.push(("errors", format!("{err}")));
    if bad > 0 {
        report.failures.push(format!(
            "{bad} reads through a fresh mapping returned the wrong value"
        ));
    }
    if err > 0 {
        report
            .failures
            .push(format!("{err} map/unmap calls failed"));
    }
    if let Err(e) = released {
        report.failures.push(format!("releasing the window: {e}"));
    }
    if report.frames_after != report.frames_before {
        report.failures.push(format!(
            "frames: {} free before, {} after",
            report.frames_before, report.frames_after
        ));
    }
    let t = &report.tables;
    let lost = t.pud.lost + t.pmd.lost + t.pte.lost;
    if p.cpus >= 2 && report.ops > 0 && lost == 0 {
        report.failures.push(format!(
            "{} CPUs raced for tables but no race was lost: the race path never ran",
            p.cpus
        ));
    }
    report.passed = report.failures.is_empty() && report.ops > 0;
    report
}
