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
//! In slices ([`Workload::prepare_slices`], for the soak), a slice is 8 rounds: in round r of
//! an epoch, a `map_range` at gigabyte r of the window (CPUs in the same round of an epoch
//! compete for the same missing tables) and an `ioremap`, every read checked.
//!
//! From [`Params`]: `cpus`, and `seconds` or `iterations`, which counts racing rounds (each
//! round is two operations per CPU: the window's map and the `ioremap`).
//!
//! When no race was lost on several CPUs, the storm says why it could not be: in how many rounds
//! two CPUs' cycles overlapped in time at all. A test kernel fails such a run; `just run` notes
//! it (see [`super::LostRaces`]).
//!
//! Every read through every mapping is checked: the interrupt controller's distributor PIDR2
//! register ([`super::common::IdRegister`]), whose architecture revision (1 or 2 for a GICv2, 3
//! or 4 for a GICv3) the device tree's GIC version predicts. Every board initmm runs on has a GIC, so the storm needs nothing
//! board-specific.
//!
//! Under fault injection (`fail=`) a map that fails for want of a frame or of virtual space is
//! counted as `injected`, not as a failure, as long as injection explains every one of them
//! (see [`super::common::AllocFailures`]).

use alloc::boxed::Box;
use alloc::format;
use core::error::Error;
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::common::{
    AllocFailures, IdRegister, Progress, is_alloc_failure, retry_injected, tables_delta,
};
use super::{Cursor, Finding, LostRaces, Params, Report, Slice, Sliced, Workload};
use initmm::arch::aarch64::cpu;
use initmm::mm::addr::VirtAddr;
use initmm::mm::layout::{PAGE_SIZE, PGDIR_SIZE, PUD_SIZE};
use initmm::mm::pgtable::Prot;
use initmm::mm::vm::{VmError, Window};
use initmm::mm::{self, kernel_vm};
use initmm::mm::{free_frames, settle};
use initmm::smp::runtime::{Barrier, on_cpus};

const ROUNDS_PER_EPOCH: usize = 64;

/// What the storm found wrong.
#[derive(Debug)]
pub enum StormError {
    /// No interrupt controller, so no register to map and read.
    NoInterruptController,
    /// The 512 GiB window for the racing rounds could not be reserved.
    NoWindow(VmError),
    /// Reads through a fresh mapping that returned the wrong value.
    BadReads(u64),
    /// Map or unmap calls that failed with an error other than an allocation failure.
    Errors(u64),
    /// The window could not be given back.
    ReleaseWindow(VmError),
    /// A read through a fresh mapping returned the wrong value (in a slice).
    WrongRead(Cycle),
    /// A map or unmap failed with an error other than an allocation failure (in a slice).
    CycleFailed {
        /// Which kind of cycle.
        cycle: Cycle,
        /// What the call returned.
        error: VmError,
    },
    /// Several CPUs raced for tables and none lost, so the race path never ran; `overlapping`
    /// of the `rounds` had two CPUs' cycles overlap in time at all (see [`LostRaces`]).
    NoLostRace {
        /// How many CPUs raced.
        cpus: usize,
        /// Racing rounds run.
        rounds: u64,
        /// Rounds in which two CPUs' cycles overlapped in time.
        overlapping: u64,
    },
}

impl fmt::Display for StormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoInterruptController => {
                f.write_str("the device tree names no interrupt controller to read")
            }
            Self::NoWindow(e) => write!(f, "no 512 GiB window for the racing rounds: {e}"),
            Self::BadReads(n) => {
                write!(
                    f,
                    "{n} reads through a fresh mapping returned the wrong value"
                )
            }
            Self::Errors(n) => write!(
                f,
                "{n} map/unmap calls failed with an error that is not an allocation failure"
            ),
            Self::ReleaseWindow(e) => write!(f, "releasing the window: {e}"),
            Self::WrongRead(cycle) => write!(f, "{cycle}: wrong value read"),
            Self::CycleFailed { cycle, error } => write!(f, "{cycle}: {error}"),
            Self::NoLostRace {
                cpus,
                rounds,
                overlapping,
            } => {
                write!(
                    f,
                    "{cpus} CPUs raced for tables but no race was lost, so the race path never \
                     ran: "
                )?;
                if *overlapping == 0 {
                    write!(
                        f,
                        "in none of its {rounds} rounds did two CPUs' cycles overlap in time: \
                         QEMU ran the vCPUs one after another, as it does when the host's cores \
                         are busy"
                    )
                } else {
                    write!(
                        f,
                        "two CPUs' cycles overlapped in time in {overlapping} of {rounds} rounds \
                         (a vCPU the host preempted mid-cycle counts too), but never inside the \
                         same table allocation: the host's cores were busy enough that QEMU ran \
                         the vCPUs in turns"
                    )
                }
            }
        }
    }
}

impl Error for StormError {}

/// The two ways the storm maps the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cycle {
    /// `init_mm.map_range` in the storm's window.
    MapRange,
    /// A driver's `ioremap`.
    Ioremap,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MapRange => "map_range",
            Self::Ioremap => "ioremap",
        })
    }
}

/// The register to read and the 512 GiB window for the racing rounds, taken as setup: fault
/// injection is not meant for them.
fn setup() -> Result<(IdRegister, Window), StormError> {
    let reg = IdRegister::of_this_machine().ok_or(StormError::NoInterruptController)?;
    let window = retry_injected(|| kernel_vm().reserve_window(PGDIR_SIZE, PGDIR_SIZE))
        .map_err(StormError::NoWindow)?;
    Ok((reg, window))
}

/// How one map-read-unmap cycle went.
enum Outcome {
    /// Mapped, read the right value, unmapped.
    Done,
    /// The map failed for want of a frame or of virtual space (injected, normally).
    AllocFailed,
    /// The read through the fresh mapping returned the wrong value.
    BadRead,
    /// Any other error: a bug.
    Error(VmError),
}

/// `init_mm.map_range` of the register page at `va` (in a window of the caller's), read, unmap.
///
/// # Safety
///
/// `va` is a page of a [`Window`] the caller holds, which no other CPU maps or unmaps while this
/// runs (each CPU has its own page in the storm's window).
unsafe fn window_cycle(reg: &IdRegister, va: VirtAddr) -> Outcome {
    let vm = kernel_vm();
    // SAFETY: the page is the caller's (the contract); it is mapped to a device register, not
    // RAM.
    match unsafe {
        vm.init_mm
            .map_range(va, reg.page(), PAGE_SIZE, Prot::DEVICE, false)
    } {
        Ok(()) => {
            // SAFETY: `va` was just mapped to the register's page as device memory, and stays
            // mapped until the unmap below: the window is the caller's, and this CPU's slot in it
            // is its own.
            let good = unsafe { reg.reads_right_at(va) };
            // SAFETY: the page is the caller's, and this call mapped it.
            unsafe { vm.init_mm.unmap_range(va, PAGE_SIZE) };
            if good {
                Outcome::Done
            } else {
                Outcome::BadRead
            }
        }
        Err(e) => {
            let e = VmError::from(e);
            if is_alloc_failure(&e) {
                Outcome::AllocFailed
            } else {
                Outcome::Error(e)
            }
        }
    }
}

/// A driver's `ioremap` of the register page, read, `iounmap`.
fn ioremap_cycle(reg: &IdRegister) -> Outcome {
    match mm::ioremap(reg.page(), PAGE_SIZE) {
        Ok(io) => {
            let good = reg.reads_right(&io);
            drop(io);
            if good {
                Outcome::Done
            } else {
                Outcome::BadRead
            }
        }
        Err(e) if is_alloc_failure(&e) => Outcome::AllocFailed,
        Err(e) => Outcome::Error(e),
    }
}

/// When each CPU's racing cycle of a round began and ended (counter ticks), for two rounds in
/// turn: CPU 0 reads round r-1's after the barrier that starts round r, and nobody writes them
/// again before round r+1, which starts only once CPU 0 too has reached its barrier.
struct Spans([[[AtomicU64; 2]; cpu::MAX_CPUS]; 2]);

impl Spans {
    fn new() -> Self {
        Self([const { [const { [const { AtomicU64::new(0) }; 2] }; cpu::MAX_CPUS] }; 2])
    }

    fn record(&self, round: usize, id: usize, from: u64, to: u64) {
        let s = &self.0[round % 2][id];
        s[0].store(from, Ordering::Relaxed);
        s[1].store(to, Ordering::Relaxed);
    }

    /// Did two of the first `cpus` CPUs' cycles of `round` overlap in time?
    fn overlapped(&self, round: usize, cpus: usize) -> bool {
        let s = &self.0[round % 2][..cpus];
        let span = |i: usize| {
            (
                s[i][0].load(Ordering::Relaxed),
                s[i][1].load(Ordering::Relaxed),
            )
        };
        (0..cpus).any(|i| {
            (i + 1..cpus).any(|j| {
                let ((a0, a1), (b0, b1)) = (span(i), span(j));
                a0 < b1 && b0 < a1
            })
        })
    }
}

/// The storm (see the module documentation).
pub struct Storm;

const NAME: &str = "ioremap-storm";

impl Workload for Storm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(&self, p: &Params) -> Report {
        let vm = kernel_vm();
        let mut report = Report::new(NAME, p.cpus);
        let (reg, window) = match setup() {
            Ok(s) => s,
            Err(e) => {
                report.fail(e);
                return report;
            }
        };
        // One warm-up cycle, so that the heap and the ioremap range have what they keep.
        drop(mm::ioremap(reg.page(), PAGE_SIZE));
        // SAFETY: on the boot CPU, before or after this workload's CPUs ran (on_cpus is not
        // running): the other CPUs are idle, so none maps, unmaps or walks the vmalloc region.
        unsafe { settle() };
        let frames_before = free_frames();
        let tables_before = vm.init_mm.stats();

        let progress = Progress::new(NAME);
        let barrier = Barrier::new(p.cpus);
        // The round at which everyone stops (usize::MAX: not yet decided).
        let stop_at = AtomicUsize::new(usize::MAX);
        let bad_reads = AtomicU64::new(0);
        let errors = AtomicU64::new(0);
        let alloc_failures = AllocFailures::new();
        let rounds = AtomicU64::new(0);
        let spans = Spans::new();
        let overlapping = AtomicU64::new(0);
        let go = AtomicU64::new(0);
        let lead = cpu::counter_frequency() / 5_000; // 200 us
        let start = cpu::counter();
        on_cpus(p.cpus, &|id| {
            let mut round = 0usize;
            loop {
                // CPU 0 decides, before the barrier, that this round is the last; everyone reads it
                // after. It names the round, not just "stop": a CPU still leaving the previous
                // round's barrier may read it early, and must not stop a round early (that left
                // CPU 0 waiting at a barrier the others never came to).
                if id == 0 && !p.more(start, round as u64) {
                    stop_at.store(round, Ordering::Release);
                }
                // Leave the barrier together: the last to arrive sets a start time a little ahead,
                // and everyone spins until then. A CPU woken from the barrier's wfe otherwise lags
                // the last arriver by a scheduling slice, and the last arriver would install every
                // table alone: no race to lose.
                barrier.wait_with(|| go.store(cpu::counter() + lead, Ordering::Relaxed));
                if id == 0 && round > 0 && spans.overlapped(round - 1, p.cpus) {
                    overlapping.fetch_add(1, Ordering::Relaxed);
                }
                if stop_at.load(Ordering::Acquire) <= round {
                    break;
                }
                let t = go.load(Ordering::Relaxed);
                while cpu::counter() < t {
                    core::hint::spin_loop();
                }
                // Racing round: a gigabyte no one has mapped in this epoch.
                let va = window.start() + (round % ROUNDS_PER_EPOCH) * PUD_SIZE + id * PAGE_SIZE;
                // Then a driver's ioremap of the same registers.
                let t0 = cpu::counter();
                // SAFETY: this CPU's own page of the window this workload holds.
                let raced = unsafe { window_cycle(&reg, va) };
                spans.record(round, id, t0, cpu::counter());
                for outcome in [raced, ioremap_cycle(&reg)] {
                    match outcome {
                        Outcome::Done => {}
                        Outcome::AllocFailed => alloc_failures.note(),
                        Outcome::BadRead => {
                            bad_reads.fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Error(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
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
                        unsafe {
                            vm.init_mm
                                .reclaim_empty_tables(window.start(), window.start() + PGDIR_SIZE)
                        };
                    }
                    barrier.wait();
                }
            }
            if id == 0 {
                rounds.store(round as u64, Ordering::Relaxed);
            }
        });
        // SAFETY: every CPU of the workload has returned; the window is ours alone.
        unsafe {
            vm.init_mm
                .reclaim_empty_tables(window.start(), window.start() + PGDIR_SIZE)
        };
        let released = vm.release_window(window);
        report.record(&progress);
        report.tables = tables_delta(&tables_before, &vm.init_mm.stats());
        report.frames_before = frames_before;
        // SAFETY: on the boot CPU, before or after this workload's CPUs ran (on_cpus is not
        // running): the other CPUs are idle, so none maps, unmaps or walks the vmalloc region.
        unsafe { settle() };
        report.frames_after = free_frames();
        let (bad, err) = (
            bad_reads.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
        );
        let (rounds, overlapping) = (
            rounds.load(Ordering::Relaxed),
            overlapping.load(Ordering::Relaxed),
        );
        report.extra.push(("rounds", format!("{rounds}")));
        report
            .extra
            .push(("overlapping_rounds", format!("{overlapping}")));
        report.extra.push(("bad_reads", format!("{bad}")));
        report.extra.push(("errors", format!("{err}")));
        report
            .extra
            .push(("injected", format!("{}", alloc_failures.seen())));
        if let Err(e) = alloc_failures.check() {
            report.fail(e);
        }
        if bad > 0 {
            report.fail(StormError::BadReads(bad));
        }
        if err > 0 {
            report.fail(StormError::Errors(err));
        }
        if let Err(e) = released {
            report.fail(StormError::ReleaseWindow(e));
        }
        report.check_frames();
        let t = &report.tables;
        let lost = t.pud.lost + t.pmd.lost + t.pte.lost;
        if p.cpus >= 2 && report.ops > 0 && lost == 0 {
            let none = StormError::NoLostRace {
                cpus: p.cpus,
                rounds,
                overlapping,
            };
            match p.lost_races {
                LostRaces::Demand => report.fail(none),
                LostRaces::Note => report.notes.push(none.into()),
            }
        }
        report.finish()
    }

    fn prepare_slices(&self) -> Option<Result<Box<dyn Sliced + '_>, Finding>> {
        Some(match setup() {
            Ok((reg, window)) => {
                // One cycle of each kind, so that the heap and the ioremap range have what they
                // keep.
                // SAFETY: the first page of the window just reserved, which no CPU uses yet.
                let _ = unsafe { window_cycle(&reg, window.start()) };
                let _ = ioremap_cycle(&reg);
                Ok(Box::new(StormSlices { reg, window }))
            }
            Err(e) => Err(e.into()),
        })
    }
}

/// Rounds of a slice.
const SLICE_ROUNDS: usize = 8;

/// The storm in slices: the register and the window every CPU's rounds map in.
struct StormSlices {
    reg: IdRegister,
    window: Window,
}

impl Sliced for StormSlices {
    fn cursor(&self, cpu: usize, _seed: u64) -> Box<dyn Cursor + '_> {
        Box::new(StormCursor {
            storm: self,
            cpu,
            round: 0,
        })
    }

    fn finish(self: Box<Self>) -> Result<(), Finding> {
        kernel_vm()
            .release_window(self.window)
            .map_err(|e| StormError::ReleaseWindow(e).into())
    }
}

/// One CPU's rounds: round r of an epoch maps at gigabyte r of the window, in this CPU's page.
struct StormCursor<'a> {
    storm: &'a StormSlices,
    cpu: usize,
    round: usize,
}

impl Cursor for StormCursor<'_> {
    fn new_epoch(&mut self) {
        self.round = 0;
    }

    fn slice(&mut self) -> Slice {
        let StormSlices { reg, window } = self.storm;
        let mut done = Slice::default();
        for _ in 0..SLICE_ROUNDS {
            let va = window.start() + (self.round % 512) * PUD_SIZE + self.cpu * PAGE_SIZE;
            self.round += 1;
            for (cycle, outcome) in [
                // SAFETY: this CPU's own page of the window the slices hold (one cursor per CPU).
                (Cycle::MapRange, unsafe { window_cycle(reg, va) }),
                (Cycle::Ioremap, ioremap_cycle(reg)),
            ] {
                match outcome {
                    Outcome::Done => done.ops += 1,
                    Outcome::AllocFailed => done.alloc_failures += 1,
                    Outcome::BadRead => done.failures.push(StormError::WrongRead(cycle).into()),
                    Outcome::Error(error) => done
                        .failures
                        .push(StormError::CycleFailed { cycle, error }.into()),
                }
            }
        }
        done
    }
}
