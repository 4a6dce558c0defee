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
//! - storm slice: 8 rounds of `init_mm.map_range` of the GIC distributor page in the soak's own
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
//! [`DEFAULT_FAIL`]. The soak's own setup (its window, the sieve, the warm-up) runs without.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::common::{
    AllocFailures, IdRegister, NotInjected, OnCpu, free_frames, settle, tables_delta,
};
use super::storm::{Outcome, ioremap_cycle, window_cycle};
use super::vmalloc_stress::{Failure, SCENARIOS, ScenarioFailed, run_scenario};
use super::{Finding, Params, Report, Workload};
use crate::arch::aarch64::cpu::{self, MAX_CPUS};
use crate::mm::fault_inject::{self, FaultConfig, Target};
use crate::mm::kernel_vm;
use crate::mm::layout::{PAGE_SIZE, PUD_SIZE};
use crate::mm::vm::VmError;
use crate::smp::runtime::{Barrier, on_cpus};
use crate::util::rng::Rng;

/// The injection the soak turns on when the command line has no `fail=`.
pub const DEFAULT_FAIL: &str = "frames:1/50,areas:1/50,seed=7";

const PGDIR_SIZE: usize = 512 * PUD_SIZE;
const STORM_ROUNDS: usize = 8;
const LIMIT: usize = 1_000_000;
const CHUNK: usize = 10_000;
/// Failure messages kept (the count is kept for all).
const MAX_MESSAGES: usize = 32;

/// What the soak did, beyond its [`Report`].
#[derive(Clone, Debug, Default)]
pub struct SoakStats {
    pub epochs: u64,
    /// Epochs whose end-of-epoch check found frames and areas at baseline and every allocation
    /// failure injected.
    pub balance_checks_passed: u64,
    pub injected_frames: u64,
    pub injected_areas: u64,
    /// Operations per kind: storm map cycles, vmalloc areas, compute chunks.
    pub storm_ops: u64,
    pub vmalloc_ops: u64,
    pub compute_ops: u64,
    /// Operations that ended in an (injected) allocation failure.
    pub alloc_failures: u64,
    pub config: FaultConfig,
}

/// `primes[i]`: the primes in chunk `i` (`[i * CHUNK, (i + 1) * CHUNK)`), by the sieve.
fn sieve_counts() -> Vec<u32> {
    let mut composite = vec![false; LIMIT];
    let mut counts = vec![0u32; LIMIT / CHUNK];
    for n in 2..LIMIT {
        if !composite[n] {
            counts[n / CHUNK] += 1;
            let mut m = n * n;
            while m < LIMIT {
                composite[m] = true;
                m += n;
            }
        }
    }
    counts
}

/// What the soak found wrong.
#[derive(Debug)]
pub enum SoakError {
    /// No interrupt controller, so no register for the storm slices to map and read.
    NoInterruptController,
    /// The storm slices' 512 GiB window could not be reserved.
    NoWindow(VmError),
    /// The window could not be given back.
    ReleaseWindow(VmError),
    /// A read through a fresh mapping (`what`: `map_range` or `ioremap`) returned the wrong value.
    WrongRead { what: &'static str },
    /// `what` failed with an error other than an allocation failure.
    Map { what: &'static str, error: VmError },
    /// Trial division found `counted` primes in chunk `chunk`, the sieve `sieve`.
    WrongChunk {
        chunk: usize,
        counted: u32,
        sieve: u32,
    },
    /// At the end of epoch `epoch`, `free` frames were free, not the baseline's.
    EpochFrames {
        epoch: u64,
        free: usize,
        baseline: usize,
    },
    /// At the end of epoch `epoch`, the areas were not the baseline's.
    EpochAreas {
        epoch: u64,
        areas: (usize, usize),
        baseline: (usize, usize),
    },
    /// In epoch `epoch`, more allocations failed than were injected.
    EpochNotInjected { epoch: u64, error: NotInjected },
    /// How many failures there were in all, when there were more than the report keeps.
    InAll(u64),
    /// The areas after the run (window given back) were not those before the soak.
    AreasAfterRun {
        after: (usize, usize),
        before: (usize, usize),
    },
    /// Not every epoch balanced.
    Unbalanced { balanced: u64, epochs: u64 },
}

impl fmt::Display for SoakError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoInterruptController => {
                f.write_str("the device tree names no interrupt controller to read")
            }
            Self::NoWindow(e) => write!(f, "no 512 GiB window for the storm slices: {e}"),
            Self::ReleaseWindow(e) => write!(f, "releasing the window: {e}"),
            Self::WrongRead { what } => write!(f, "{what}: wrong value read"),
            Self::Map { what, error } => write!(f, "{what}: {error}"),
            Self::WrongChunk {
                chunk,
                counted,
                sieve,
            } => write!(
                f,
                "compute: {counted} primes in chunk {chunk} by trial division, {sieve} by the sieve"
            ),
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
    storm: [AtomicU64; MAX_CPUS],
    vmalloc: [AtomicU64; MAX_CPUS],
    compute: [AtomicU64; MAX_CPUS],
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

    fn storm_outcome(&self, id: usize, what: &'static str, o: Outcome) {
        match o {
            Outcome::Done => {
                self.storm[id].fetch_add(1, Ordering::Relaxed);
            }
            Outcome::AllocFailed => self.alloc_failures.note(),
            Outcome::BadRead => self.fail(OnCpu {
                cpu: id,
                error: SoakError::WrongRead { what },
            }),
            Outcome::Error(error) => self.fail(OnCpu {
                cpu: id,
                error: SoakError::Map { what, error },
            }),
        }
    }

    fn total(counters: &[AtomicU64; MAX_CPUS]) -> u64 {
        counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
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
    let Some(reg) = IdRegister::of_this_machine() else {
        report.fail(SoakError::NoInterruptController);
        return (report, stats);
    };
    // Which injection: the command line's `fail=` (already applied at boot), or the default.
    let previous = fault_inject::current();
    let cmdline_has_fail = crate::kernel::boot_info().cmdline().get("fail").is_some();
    let config = if cmdline_has_fail {
        previous
    } else {
        FaultConfig::parse(DEFAULT_FAIL).expect("DEFAULT_FAIL parses")
    };
    stats.config = config;

    // Setup, uninjected: the window, the sieve, one warm-up of everything, quiescent reclaim.
    fault_inject::apply(&FaultConfig::NONE);
    settle();
    let areas_without_window = vm.area_stats();
    let window = match vm.reserve_window(PGDIR_SIZE, PGDIR_SIZE) {
        Ok(w) => w,
        Err(e) => {
            fault_inject::apply(&previous);
            report.fail(SoakError::NoWindow(e));
            return (report, stats);
        }
    };
    let primes = sieve_counts();
    let mut rng = Rng::new(1);
    for i in 0..SCENARIOS.len() {
        let _ = run_scenario(i, &mut rng, 0);
    }
    let _ = window_cycle(&reg, window);
    let _ = ioremap_cycle(&reg);
    settle();
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
        storm: [const { AtomicU64::new(0) }; MAX_CPUS],
        vmalloc: [const { AtomicU64::new(0) }; MAX_CPUS],
        compute: [const { AtomicU64::new(0) }; MAX_CPUS],
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
        let mut rng = Rng::new(config.seed ^ ((id as u64 + 1) << 32));
        let (mut slice, mut scenario, mut chunk) = (id, id, id * 25);
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
            let mut round = 0usize;
            while cpu::counter() < end {
                match slice % 3 {
                    0 => {
                        for _ in 0..STORM_ROUNDS {
                            let va = window + (round % 512) * PUD_SIZE + id * PAGE_SIZE;
                            round += 1;
                            s.storm_outcome(id, "map_range", window_cycle(&reg, va));
                            s.storm_outcome(id, "ioremap", ioremap_cycle(&reg));
                        }
                    }
                    1 => {
                        let i = scenario % SCENARIOS.len();
                        scenario += 1;
                        match run_scenario(i, &mut rng, id) {
                            Ok(n) => {
                                s.vmalloc[id].fetch_add(n, Ordering::Relaxed);
                            }
                            Err(Failure::Alloc(_)) => s.alloc_failures.note(),
                            Err(Failure::Bad(e)) => {
                                s.fail(OnCpu {
                                    cpu: id,
                                    error: ScenarioFailed {
                                        scenario: SCENARIOS[i].0,
                                        error: e,
                                    },
                                });
                            }
                        }
                    }
                    _ => {
                        let c = chunk % primes.len();
                        chunk += 1;
                        let got =
                            super::compute::count((c * CHUNK) as u64, ((c + 1) * CHUNK) as u64)
                                as u32;
                        if got == primes[c] {
                            s.compute[id].fetch_add(1, Ordering::Relaxed);
                        } else {
                            s.fail(OnCpu {
                                cpu: id,
                                error: SoakError::WrongChunk {
                                    chunk: c,
                                    counted: got,
                                    sieve: primes[c],
                                },
                            });
                        }
                    }
                }
                slice += 1;
            }
            // Quiescent: every CPU of the soak is here, none is inside an mm call.
            s.barrier.wait();
            if id == 0 {
                let freed = settle();
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
                log::info!(
                    "soak: epoch {} ({:.1} s): ops storm {} vmalloc {} compute {}; injected frames {} areas {}; {} tables freed; frames {frames}/{frames_before} areas {}/{} {}",
                    epoch + 1,
                    (cpu::counter() - start) as f64 / freq as f64,
                    Shared::total(&s.storm),
                    Shared::total(&s.vmalloc),
                    Shared::total(&s.compute),
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
    let released = vm.release_window(window);

    stats.epochs = epochs.load(Ordering::Relaxed);
    stats.balance_checks_passed = balanced.load(Ordering::Relaxed);
    stats.injected_frames = injected[0] - injected_before[0];
    stats.injected_areas = injected[1] - injected_before[1];
    stats.storm_ops = Shared::total(&shared.storm);
    stats.vmalloc_ops = Shared::total(&shared.vmalloc);
    stats.compute_ops = Shared::total(&shared.compute);
    stats.alloc_failures = shared.alloc_failures.seen();

    report.ops = stats.storm_ops + stats.vmalloc_ops + stats.compute_ops;
    report.ticks = ticks;
    report.per_cpu_ops = (0..p.cpus)
        .map(|i| {
            [&shared.storm, &shared.vmalloc, &shared.compute]
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
    if let Err(e) = released {
        report.fail(SoakError::ReleaseWindow(e));
    }
    settle();
    let areas_after = vm.area_stats();
    if areas_after != areas_without_window {
        report.fail(SoakError::AreasAfterRun {
            after: areas_after,
            before: areas_without_window,
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
    report.passed = report.failures.is_empty() && report.ops > 0;
    (report, stats)
}
