//! `soak` (`workload=soak seconds=S`): ioremap-storm, vmalloc-stress and compute together on every
//! CPU, with fault injection on, and the books balanced every second.
//!
//! Time is cut into one-second epochs. In an epoch every CPU runs short slices of the three
//! workloads in turn, each CPU starting at a different one (CPU i at workload i mod 3), so that at
//! any moment the CPUs run different workloads against the same allocators: a vmalloc on one CPU
//! meets an ioremap on another, in the same range allocator and the same table allocators, while
//! a third CPU computes. (Splitting the CPUs among the workloads would pin each path to one or two
//! CPUs; alternating puts every path on every CPU and keeps all three running all the time.)
//!
//! The soak finds the three in [`super::WORKLOADS`] and runs them through their
//! [`Workload::prepare_slices`], nothing else; each says in its module documentation what its
//! slice is:
//!
//! - storm slice: 8 rounds of `init_mm.map_range` of the GIC distributor page in the storm's
//!   512 GiB window (round r of an epoch in gigabyte r, so CPUs racing through the same round
//!   compete for the same missing tables), plus a driver's `ioremap`/`iounmap`; every read checked;
//! - vmalloc slice: one `lib/test_vmalloc.c` scenario, every word written verified before vfree;
//! - compute slice: the primes in one chunk of 10,000 by trial division, checked against a sieve
//!   of Eratosthenes made before the run.
//!
//! At the end of an epoch every CPU waits at a barrier; CPU 0, with the others quiescent, frees
//! the page tables that map nothing any more (Linux keeps them; the balance needs them gone) and
//! checks that frames and areas are exactly at their baseline and that fault injection explains
//! every allocation failure seen; then the next epoch starts. One progress line per epoch, a
//! `result {json}` line at the end.
//!
//! Injection: `fail=` from the command line when given (`fail=none` turns it off), otherwise
//! [`DEFAULT_FAIL`]. The workloads' preparation (the storm's window, the sieve, the warm-ups) runs
//! without.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::common::{AllocFailures, NotInjected, OnCpu, tables_delta};
use super::{Cursor, Finding, Params, Report, Sliced, Workload, find};
use initmm::arch::aarch64::cpu::{self, MAX_CPUS};
use initmm::mm::fault_inject::{self, FaultConfig, Target};
use initmm::mm::kernel_vm;
use initmm::mm::{free_frames, settle};
use initmm::smp::runtime::{Barrier, on_cpus};

/// The injection the soak turns on when the command line has no `fail=`.
pub const DEFAULT_FAIL: &str = "frames:1/50,areas:1/50,seed=7";

/// The workloads the soak mixes, by name, in the order of its counts: storm, vmalloc, compute.
const MIXED: [&str; 3] = ["ioremap-storm", "vmalloc-stress", "compute"];

/// Failure messages kept (the count is kept for all).
const MAX_MESSAGES: usize = 32;

/// What the soak did, beyond its [`Report`].
#[derive(Clone, Debug, Default)]
pub struct SoakStats {
    /// One-second epochs completed.
    pub epochs: u64,
    /// Epochs whose end-of-epoch check found frames and areas at baseline and every allocation
    /// failure injected.
    pub balance_checks_passed: u64,
    /// Frame allocations that fault injection failed during the run.
    pub injected_frames: u64,
    /// Virtual-area reservations that fault injection failed during the run.
    pub injected_areas: u64,
    /// Operations per kind: storm map cycles, vmalloc areas, compute chunks.
    pub storm_ops: u64,
    /// vmalloc-stress operations: areas allocated, checked and freed.
    pub vmalloc_ops: u64,
    /// Compute operations: chunks of work done.
    pub compute_ops: u64,
    /// Operations that ended in an (injected) allocation failure.
    pub alloc_failures: u64,
    /// The fault injection the run used: the command line's `fail=`, or the soak's default.
    pub config: FaultConfig,
}

/// What the soak found wrong.
#[derive(Debug)]
pub enum SoakError {
    /// A workload the soak mixes is not in the table, or does not come in slices.
    CannotMix(&'static str),
    /// At the end of epoch `epoch`, `free` frames were free, not the baseline's.
    EpochFrames {
        /// The epoch, counted from 0.
        epoch: u64,
        /// Free frames at its end.
        free: usize,
        /// Free frames before the first epoch.
        baseline: usize,
    },
    /// At the end of epoch `epoch`, the areas were not the baseline's.
    EpochAreas {
        /// The epoch, counted from 0.
        epoch: u64,
        /// Live areas and free bytes at its end, as `KernelVm::area_stats` counts them.
        areas: (usize, usize),
        /// The same before the first epoch.
        baseline: (usize, usize),
    },
    /// In epoch `epoch`, more allocations failed than were injected.
    EpochNotInjected {
        /// The epoch, counted from 0.
        epoch: u64,
        /// The counts that did not match.
        error: NotInjected,
    },
    /// How many failures there were in all, when there were more than the report keeps.
    InAll(u64),
    /// The areas after the run (the workloads' preparations undone) were not those before.
    AreasAfterRun {
        /// Live areas and free bytes after the run, as `KernelVm::area_stats` counts them.
        after: (usize, usize),
        /// The same before the workloads' preparations.
        before: (usize, usize),
    },
    /// Not every epoch balanced.
    Unbalanced {
        /// Epochs that balanced.
        balanced: u64,
        /// Epochs run (the soak fails also when this is 0).
        epochs: u64,
    },
}

impl fmt::Display for SoakError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CannotMix(name) => {
                write!(f, "{name}: no such workload, or it does not come in slices")
            }
            Self::EpochFrames {
                epoch,
                free,
                baseline,
            } => write!(f, "epoch {epoch}: {free} frames free, baseline {baseline}"),
            Self::EpochAreas {
                epoch,
                areas,
                baseline,
            } => write!(f, "epoch {epoch}: areas {areas:?}, baseline {baseline:?}"),
            Self::EpochNotInjected { epoch, error } => write!(f, "epoch {epoch}: {error}"),
            Self::InAll(n) => write!(f, "... {n} failures in all"),
            Self::AreasAfterRun { after, before } => write!(
                f,
                "after the run: areas {after:?}, {before:?} before the soak"
            ),
            Self::Unbalanced { balanced, epochs } => {
                write!(f, "{balanced} of {epochs} epochs balanced")
            }
        }
    }
}

impl Error for SoakError {}

/// Everything the CPUs share during the run.
struct Shared {
    barrier: Barrier,
    stop: AtomicBool,
    epoch_end: AtomicU64,
    /// Operations per workload of [`MIXED`], per CPU.
    ops: [[AtomicU64; MAX_CPUS]; MIXED.len()],
    alloc_failures: AllocFailures,
    bad: AtomicU64,
    messages: spin::Mutex<Vec<Finding>>,
}

impl Shared {
    fn fail(&self, finding: impl Into<Finding>) {
        self.bad.fetch_add(1, Ordering::Relaxed);
        let mut m = self.messages.lock();
        if m.len() < MAX_MESSAGES {
            m.push(finding.into());
        }
    }

    /// Operations so far of each workload of [`MIXED`].
    fn totals(&self) -> [u64; MIXED.len()] {
        self.ops
            .each_ref()
            .map(|per_cpu| per_cpu.iter().map(|c| c.load(Ordering::Relaxed)).sum())
    }
}

/// Prepare every workload of [`MIXED`] for slices: all of them, or the first thing that went
/// wrong (with what was prepared undone).
fn prepare() -> Result<Vec<Box<dyn Sliced>>, Vec<Finding>> {
    let mut mixed = Vec::new();
    for name in MIXED {
        let prepared = find(name)
            .and_then(|w| w.prepare_slices())
            .unwrap_or_else(|| Err(SoakError::CannotMix(name).into()));
        match prepared {
            Ok(s) => mixed.push(s),
            Err(e) => {
                let mut failures = vec![e];
                failures.extend(finish(mixed));
                return Err(failures);
            }
        }
    }
    Ok(mixed)
}

/// Undo the workloads' preparations; what could not be undone.
fn finish(mixed: Vec<Box<dyn Sliced>>) -> Vec<Finding> {
    mixed.into_iter().filter_map(|s| s.finish().err()).collect()
}

/// The soak (see the module documentation). Not part of `workload=all`: it turns fault
/// injection on.
pub struct Soak;

const NAME: &str = "soak";

impl Workload for Soak {
    fn name(&self) -> &'static str {
        NAME
    }

    fn in_all(&self) -> bool {
        false
    }

    fn run(&self, p: &Params) -> Report {
        run_soak(p).0
    }
}

/// The soak, with its own statistics for tests.
pub fn run_soak(p: &Params) -> (Report, SoakStats) {
    let vm = kernel_vm();
    let mut report = Report::new(NAME, p.cpus);
    let mut stats = SoakStats::default();
    // Which injection: the command line's `fail=` (already applied at boot), or the default.
    let previous = fault_inject::current();
    let cmdline_has_fail = initmm::kernel::boot_info().cmdline().get("fail").is_some();
    let config = if cmdline_has_fail {
        previous
    } else {
        FaultConfig::parse(DEFAULT_FAIL).expect("DEFAULT_FAIL parses")
    };
    stats.config = config;

    // Setup, uninjected: every workload's preparation and warm-up, then quiescent reclaim.
    fault_inject::apply(&FaultConfig::NONE);
    // SAFETY: on the boot CPU, before or after this workload's CPUs ran (on_cpus is not
    // running): the other CPUs are idle, so none maps, unmaps or walks the vmalloc region.
    unsafe { settle() };
    let areas_before_setup = vm.area_stats();
    let mixed = match prepare() {
        Ok(m) => m,
        Err(failures) => {
            fault_inject::apply(&previous);
            report.failures = failures;
            return (report, stats);
        }
    };
    // SAFETY: on the boot CPU, before or after this workload's CPUs ran (on_cpus is not
    // running): the other CPUs are idle, so none maps, unmaps or walks the vmalloc region.
    unsafe { settle() };
    let frames_before = free_frames();
    let areas_before = vm.area_stats();
    let tables_before = vm.init_mm.stats();
    let injected_before = Target::ALL.map(|t| t.attr().injected());
    log::info!(
        "soak: {} CPUs, epochs of 1 s, fail={config}; baseline {frames_before} frames free, areas {areas_before:?}",
        p.cpus
    );

    let shared = Shared {
        barrier: Barrier::new(p.cpus),
        stop: AtomicBool::new(false),
        epoch_end: AtomicU64::new(0),
        ops: [const { [const { AtomicU64::new(0) }; MAX_CPUS] }; MIXED.len()],
        alloc_failures: AllocFailures::new(),
        bad: AtomicU64::new(0),
        messages: spin::Mutex::new(Vec::new()),
    };
    let epochs = AtomicU64::new(0);
    let balanced = AtomicU64::new(0);
    let freq = cpu::counter_frequency();
    fault_inject::apply(&config);
    let start = cpu::counter();
    on_cpus(p.cpus, &|id| {
        let s = &shared;
        let seed = config.seed ^ ((id as u64 + 1) << 32);
        let mut cursors: Vec<Box<dyn Cursor>> = mixed.iter().map(|m| m.cursor(id, seed)).collect();
        let mut slice = id;
        let mut epoch = 0u64;
        loop {
            // CPU 0 decides, before the barrier, whether there is another epoch and when it ends.
            // Epoch e ends at start + (e + 1) s, whatever the previous one overran by, so
            // `seconds=S` is S epochs (`iterations=N`: N epochs).
            if id == 0 {
                let more = match p.iterations {
                    Some(n) => epoch < n,
                    None => epoch * freq < p.duration,
                };
                if !more || s.bad.load(Ordering::Relaxed) > 0 {
                    s.stop.store(true, Ordering::Relaxed);
                }
                s.epoch_end
                    .store(start + (epoch + 1) * freq, Ordering::Relaxed);
            }
            s.barrier.wait();
            if s.stop.load(Ordering::Relaxed) {
                break;
            }
            let end = s.epoch_end.load(Ordering::Relaxed);
            cursors.iter_mut().for_each(|c| c.new_epoch());
            while cpu::counter() < end {
                let k = slice % cursors.len();
                let done = cursors[k].slice();
                s.ops[k][id].fetch_add(done.ops, Ordering::Relaxed);
                s.alloc_failures.add(done.alloc_failures);
                for error in done.failures {
                    s.fail(OnCpu { cpu: id, error });
                }
                slice += 1;
            }
            // Quiescent: every CPU of the soak is here, none is inside an mm call.
            s.barrier.wait();
            if id == 0 {
                // SAFETY: every CPU of the soak waits at the barrier above or the next one
                // (only CPU 0 runs this), and none is inside an mm call: nobody maps, unmaps or
                // walks the vmalloc region meanwhile.
                let freed = unsafe { settle() };
                let (frames, areas) = (free_frames(), vm.area_stats());
                let mut ok = true;
                if frames != frames_before {
                    ok = false;
                    s.fail(SoakError::EpochFrames {
                        epoch,
                        free: frames,
                        baseline: frames_before,
                    });
                }
                if areas != areas_before {
                    ok = false;
                    s.fail(SoakError::EpochAreas {
                        epoch,
                        areas,
                        baseline: areas_before,
                    });
                }
                if let Err(error) = s.alloc_failures.check() {
                    ok = false;
                    s.fail(SoakError::EpochNotInjected { epoch, error });
                }
                epochs.store(epoch + 1, Ordering::Relaxed);
                if ok {
                    balanced.fetch_add(1, Ordering::Relaxed);
                }
                let inj = Target::ALL.map(|t| t.attr().injected());
                let [storm, vmalloc, compute] = s.totals();
                log::info!(
                    "soak: epoch {} ({:.1} s): ops storm {storm} vmalloc {vmalloc} compute {compute}; injected frames {} areas {}; {} tables freed; frames {frames}/{frames_before} areas {}/{} {}",
                    epoch + 1,
                    (cpu::counter() - start) as f64 / freq as f64,
                    inj[0] - injected_before[0],
                    inj[1] - injected_before[1],
                    freed,
                    areas.0,
                    areas_before.0,
                    if ok { "balanced" } else { "NOT BALANCED" }
                );
            }
            s.barrier.wait();
            epoch += 1;
        }
    });
    let ticks = cpu::counter() - start;
    fault_inject::apply(&previous);
    let injected = Target::ALL.map(|t| t.attr().injected());
    let unfinished = finish(mixed);

    stats.epochs = epochs.load(Ordering::Relaxed);
    stats.balance_checks_passed = balanced.load(Ordering::Relaxed);
    stats.injected_frames = injected[0] - injected_before[0];
    stats.injected_areas = injected[1] - injected_before[1];
    [stats.storm_ops, stats.vmalloc_ops, stats.compute_ops] = shared.totals();
    stats.alloc_failures = shared.alloc_failures.seen();

    report.ops = stats.storm_ops + stats.vmalloc_ops + stats.compute_ops;
    report.ticks = ticks;
    report.per_cpu_ops = (0..p.cpus)
        .map(|i| {
            shared
                .ops
                .iter()
                .map(|c| c[i].load(Ordering::Relaxed))
                .sum()
        })
        .collect();
    report.tables = tables_delta(&tables_before, &vm.init_mm.stats());
    report.frames_before = frames_before;
    report.frames_after = free_frames();
    let n_bad = shared.bad.load(Ordering::Relaxed);
    report.failures = shared.messages.into_inner();
    if n_bad as usize > report.failures.len() {
        report.fail(SoakError::InAll(n_bad));
    }
    report.failures.extend(unfinished);
    // SAFETY: on the boot CPU, before or after this workload's CPUs ran (on_cpus is not
    // running): the other CPUs are idle, so none maps, unmaps or walks the vmalloc region.
    unsafe { settle() };
    let areas_after = vm.area_stats();
    if areas_after != areas_before_setup {
        report.fail(SoakError::AreasAfterRun {
            after: areas_after,
            before: areas_before_setup,
        });
    }
    if stats.epochs == 0 || stats.balance_checks_passed != stats.epochs {
        report.fail(SoakError::Unbalanced {
            balanced: stats.balance_checks_passed,
            epochs: stats.epochs,
        });
    }
    report.extra = vec![
        ("epochs", format!("{}", stats.epochs)),
        (
            "balance_checks_passed",
            format!("{}", stats.balance_checks_passed),
        ),
        ("fail", format!("\"{config}\"")),
        (
            "injected",
            format!(
                "{{\"frames\":{},\"areas\":{}}}",
                stats.injected_frames, stats.injected_areas
            ),
        ),
        ("alloc_failures", format!("{}", stats.alloc_failures)),
        (
            "ops_by_kind",
            format!(
                "{{\"storm\":{},\"vmalloc\":{},\"compute\":{}}}",
                stats.storm_ops, stats.vmalloc_ops, stats.compute_ops
            ),
        ),
    ];
    (report.finish(), stats)
}
