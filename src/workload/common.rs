//! What the workloads share, and the bench with them: progress counting, the device register
//! every board has, the table counters' difference, and the bookkeeping that proves a run leaked
//! nothing (settling memory management, counting free frames, telling injected allocation
//! failures from real ones).
//!
//! A workload uses these and the interface in [`super`], never another workload's file: what one
//! workload has that another needs belongs here.

use alloc::vec::Vec;
use core::error::Error;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use initmm::arch::aarch64::cpu;
use initmm::drivers::gic;
use initmm::mm::addr::{PhysAddr, VirtAddr};
use initmm::mm::env::PageTableEnv;
use initmm::mm::fault_inject;
use initmm::mm::layout::PAGE_SIZE;
use initmm::mm::pgalloc::{InstallPolicy, PgStatsSnapshot};
use initmm::mm::pgtable::MmError;
use initmm::mm::vm::IoMem;
use initmm::mm::vm::VmError;
use initmm::mm::vmap_area::VaError;
use initmm::platform::devicetree::GicVersion;

/// Counts operations per CPU and prints progress about once a second (from CPU 0).
pub struct Progress {
    name: &'static str,
    start: AtomicU64,
    last: AtomicU64,
    ops: [AtomicU64; cpu::MAX_CPUS],
}

impl Progress {
    /// Counts at zero and the clock started now; `name` prefixes each progress line.
    pub fn new(name: &'static str) -> Self {
        let p = Self::new_static(name);
        p.restart();
        p
    }

    /// For a `static` (start it with `restart`).
    pub const fn new_static(name: &'static str) -> Self {
        Self {
            name,
            start: AtomicU64::new(0),
            last: AtomicU64::new(0),
            ops: [const { AtomicU64::new(0) }; cpu::MAX_CPUS],
        }
    }

    /// Zero the counts and start the clock.
    pub fn restart(&self) {
        let now = cpu::counter();
        self.start.store(now, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
        self.ops.iter().for_each(|o| o.store(0, Ordering::Relaxed));
    }

    /// Count `n` operations done by CPU `cpu_id`, and log a progress line if a second has passed
    /// since the last one.
    ///
    /// # Panics
    ///
    /// If `cpu_id` is not below `cpu::MAX_CPUS`.
    pub fn add(&self, cpu_id: usize, n: u64) {
        self.ops[cpu_id].fetch_add(n, Ordering::Relaxed);
        let now = cpu::counter();
        let last = self.last.load(Ordering::Relaxed);
        // Another CPU may have read the counter after this one and stored its reading in `last`
        // in between: `last` can be later than `now`, and then a second has not passed.
        if now.saturating_sub(last) >= cpu::counter_frequency()
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let secs =
                (now - self.start.load(Ordering::Relaxed)) as f64 / cpu::counter_frequency() as f64;
            log::info!("{}: {:.1} s, {} ops so far", self.name, secs, self.total());
        }
    }

    /// Operations counted so far, all CPUs together.
    pub fn total(&self) -> u64 {
        self.ops.iter().map(|o| o.load(Ordering::Relaxed)).sum()
    }

    /// Operations counted so far by each of CPUs `0..cpus`.
    ///
    /// # Panics
    ///
    /// If `cpus` is above `cpu::MAX_CPUS`.
    pub fn per_cpu(&self, cpus: usize) -> Vec<u64> {
        self.ops[..cpus]
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect()
    }

    /// Counter ticks since the clock was started.
    pub fn elapsed(&self) -> u64 {
        cpu::counter() - self.start.load(Ordering::Relaxed)
    }
}

/// A device register every board has and whose value is known in advance: the interrupt
/// controller distributor's PIDR2, whose architecture revision (1 or 2 for a GICv2, 3 or 4 for a
/// GICv3) the device tree's GIC version predicts. Mapping its page and reading it proves a device mapping works, with nothing
/// board-specific.
pub struct IdRegister {
    page: PhysAddr,
    /// PIDR2's offset in `page`, at most `PAGE_SIZE - 4`.
    offset: usize,
    version: GicVersion,
}

impl IdRegister {
    /// The register of the machine we run on; `None` when the device tree names no interrupt
    /// controller, or one whose PIDR2 would straddle a page boundary (a distributor that is not
    /// 4-byte aligned).
    pub fn of_this_machine() -> Option<Self> {
        let gic = initmm::kernel::boot_info().machine.gic.as_ref()?;
        let pidr2 = match gic.version {
            GicVersion::V2 => 0xfe8u64,
            GicVersion::V3 => 0xffe8,
        };
        let pa = PhysAddr(gic.dist.base.checked_add(pidr2)?);
        (pa.page_offset() <= PAGE_SIZE - 4).then(|| Self {
            page: pa.page_start(),
            offset: pa.page_offset(),
            version: gic.version,
        })
    }

    /// The physical address of the (4 KiB) page that holds the register.
    pub fn page(&self) -> PhysAddr {
        self.page
    }

    /// Does the register, read through `io` (an ioremap of [`page`](Self::page)), show the
    /// expected revision?
    pub fn reads_right<E: PageTableEnv, P: InstallPolicy>(&self, io: &IoMem<'_, E, P>) -> bool {
        let v = io.read32(self.offset);
        gic::arch_rev_matches(self.version, gic::arch_rev_from_pidr2(v))
    }

    /// Does the register, read through a mapping of [`page`](Self::page) at `va` that the caller
    /// made itself, show the expected revision?
    ///
    /// # Safety
    ///
    /// `va` must be the start of a live device mapping of that page, which stays mapped until
    /// this returns.
    pub unsafe fn reads_right_at(&self, va: VirtAddr) -> bool {
        // SAFETY: the caller guarantees that `va` maps the page holding PIDR2, as device memory,
        // until this returns; `offset` is PIDR2's place in that page, at most PAGE_SIZE - 4
        // (`of_this_machine` checks), so the 4-byte read stays inside it; PIDR2 is a read-only
        // identification register, so reading it changes nothing.
        let v = unsafe { (va + self.offset).as_ptr::<u32>().read_volatile() };
        gic::arch_rev_matches(self.version, gic::arch_rev_from_pidr2(v))
    }
}

/// The table allocators' counters from `before` to `after`: what one run installed, lost,
/// promoted and reclaimed.
pub fn tables_delta(before: &PgStatsSnapshot, after: &PgStatsSnapshot) -> PgStatsSnapshot {
    after.since(before)
}

/// Is `e` an allocation failure: no frame for a page or a table, or no virtual space? These are
/// the errors fault injection produces; every other error is a bug or a wrong argument.
pub fn is_alloc_failure(e: &VmError) -> bool {
    match e {
        VmError::OutOfMemory { .. } | VmError::NoVirtualSpace(VaError::NoSpace { .. }) => true,
        VmError::Table(t) => is_table_alloc_failure(t),
        _ => false,
    }
}

/// [`is_alloc_failure`] for the table allocators' errors.
pub fn is_table_alloc_failure(e: &MmError) -> bool {
    matches!(e, MmError::OutOfMemory)
}

/// Allocation failures a workload met, which fault injection must explain.
///
/// Under injection an allocation error is expected and counted, not a failure. But every one
/// must be explained by an injected failure: each injected failure fails exactly one workload
/// operation, so more allocation errors than injections (since [`AllocFailures::new`]) means a
/// real shortage (a leak, usually), and that is reported as a failure.
pub struct AllocFailures {
    seen: AtomicU64,
    injected_at_start: u64,
}

impl AllocFailures {
    /// No failures seen yet; injections are counted from now.
    pub fn new() -> Self {
        Self {
            seen: AtomicU64::new(0),
            injected_at_start: fault_inject::injected_total(),
        }
    }

    /// Count one allocation failure.
    pub fn note(&self) {
        self.add(1);
    }

    /// Count `n` allocation failures.
    pub fn add(&self, n: u64) {
        self.seen.fetch_add(n, Ordering::Relaxed);
    }

    /// Allocation failures counted so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Failures injected (in either allocator, by anyone) since `new`.
    pub fn injected(&self) -> u64 {
        fault_inject::injected_total() - self.injected_at_start
    }

    /// Call when the workload's CPUs are done (or quiescent).
    ///
    /// # Errors
    ///
    /// [`NotInjected`]: some allocation failures were not injected.
    pub fn check(&self) -> Result<(), NotInjected> {
        let (seen, injected) = (self.seen(), self.injected());
        if seen > injected {
            return Err(NotInjected { seen, injected });
        }
        Ok(())
    }
}

/// More allocations failed than fault injection failed: the machine ran out for real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotInjected {
    /// Allocation failures the workload met.
    pub seen: u64,
    /// Failures fault injection caused in the same time.
    pub injected: u64,
}

impl fmt::Display for NotInjected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { seen, injected } = self;
        write!(
            f,
            "{seen} allocations failed but only {injected} failures were injected: the machine \
             ran out for real"
        )
    }
}

impl Error for NotInjected {}

/// Frames or virtual areas not back where they were before a run: something leaked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leak {
    /// Free frames ([`initmm::mm::free_frames`]) before and after.
    Frames {
        /// Free frames before the run.
        before: usize,
        /// Free frames after it.
        after: usize,
    },
    /// The virtual-area allocator's (live areas, free bytes) before and after.
    Areas {
        /// Live areas and free bytes before the run.
        before: (usize, usize),
        /// The same after it.
        after: (usize, usize),
    },
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frames { before, after } => {
                write!(f, "frames: {before} free before, {after} after")
            }
            Self::Areas { before, after } => write!(f, "areas: {before:?} before, {after:?} after"),
        }
    }
}

impl Error for Leak {}

/// What one CPU of a workload found: `E`, and on which CPU.
#[derive(Debug)]
pub struct OnCpu<E> {
    /// The CPU's number.
    pub cpu: usize,
    /// What it found.
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for OnCpu<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu{} {}", self.cpu, self.error)
    }
}

impl<E: fmt::Debug + fmt::Display> Error for OnCpu<E> {}

impl Default for AllocFailures {
    fn default() -> Self {
        Self::new()
    }
}

/// Run a setup allocation (`f`) until it does not fail with an allocation failure, while
/// fault injection is on: a workload's own setup (its window, its warm-up) is not what is under
/// test. Gives up after 1000 tries (with injection at 1/50, that never happens by chance).
pub fn retry_injected<T>(mut f: impl FnMut() -> Result<T, VmError>) -> Result<T, VmError> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if is_alloc_failure(&e) && fault_inject::active() && tries < 1000 => tries += 1,
            r => return r,
        }
    }
}
