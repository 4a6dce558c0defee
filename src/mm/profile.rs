//! Where kernel-mapping time goes, for `bench`: per lock the time spent waiting for it, the time
//! it was held and how often it was taken; the time in TLB maintenance and in leaf writes; and
//! counts of table allocations, barriers, TLB invalidations and writes to cache lines that CPUs
//! share.
//!
//! The probes are compiled in only with the `profile` feature (the profiled benchmark kernel):
//! elsewhere each one compiles to nothing, so that neither the kernel `just run` boots nor the
//! benchmark kernel that measures throughput and instructions per operation pays for them. (Off
//! at run time, a probe that is compiled in still costs a load, a branch and a larger lock guard:
//! 1-3% of the benchmark loads' instructions per operation, measured under `-icount`.)
//!
//! The global locks are the ones every CPU contends for: `init_mm`'s page-table lock, the global
//! virtual-area lock, the frame allocator's locks and the kernel heap's. The time they are *held*
//! is the serial part of the work (Amdahl's serial fraction); the time spent *waiting* for them is
//! what that costs when CPUs collide. They nest (the frame allocator allocates from the heap while
//! holding its lock), so the serial time is counted apart as well: the time during which a CPU
//! held at least one of them ([`Totals::serial`]), which adds nothing twice. The per-CPU vmap
//! nodes' locks are counted apart: a CPU takes another's only to free an area that CPU allocated,
//! or to purge.
//!
//! Every total is kept per CPU, in a cache line-aligned block that only its CPU writes (a load and
//! a store, no atomic read-modify-write) and that [`totals`] adds up once the work is over: the
//! profiler itself writes no line that another CPU writes, so it adds none of the traffic between
//! CPUs that it measures. No interrupt handler runs a probe (the IRQ path takes none of these
//! locks), so a CPU's load and store of its own counter cannot be split by another update of it.

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A lock of the mapping paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// `init_mm`'s page-table lock (in the pre-patch baseline: held across whole map walks).
    /// Global.
    PageTable = 0,
    /// The global virtual-area allocator's lock (Linux's `free_vmap_area_lock`): large areas and
    /// blocks for the per-CPU nodes. Global.
    VmapArea = 1,
    /// The frame allocator's buddy lock and its batch pool's. Global.
    Frames = 2,
    /// The kernel heap's lock (`mm::heap`). Global.
    Heap = 3,
    /// A per-CPU vmap node's locks (its areas, its lazy list).
    VmapNode = 4,
}

/// Every [`Lock`]: the name the benchmark prints, and whether every CPU contends for it.
pub const LOCKS: [(Lock, &str, bool); 5] = [
    (Lock::PageTable, "pt_lock", true),
    (Lock::VmapArea, "va_lock", true),
    (Lock::Frames, "frame_lock", true),
    (Lock::Heap, "heap_lock", true),
    (Lock::VmapNode, "node_lock", false),
];
const NLOCKS: usize = LOCKS.len();

/// Work that is not a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// TLB maintenance: `dsb ishst`, the TLBIs, `dsb ish; isb`.
    Tlb = 0,
    /// Leaf descriptor stores and the barriers that publish them.
    LeafWrite = 1,
}

/// Every [`Section`], with the names the benchmark prints.
pub const SECTIONS: [(Section, &str); 2] = [(Section::Tlb, "tlb"), (Section::LeafWrite, "leaf")];
const NSECTIONS: usize = SECTIONS.len();

/// Things counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A page-table frame allocated (whether it was installed or lost a race).
    TableAlloc = 0,
    /// A `dsb` (any domain).
    Barrier = 1,
    /// A TLB invalidation instruction.
    Tlbi = 2,
    /// A write to a cache line that other CPUs write too (a global counter or flag, a shared
    /// list head): the line must move to this CPU first. Each acquisition of a global lock
    /// ([`LOCKS`]) counts one by itself; code counts its other such writes with
    /// [`shared_write`].
    SharedWrite = 3,
}

/// Every [`Event`], with the names the benchmark prints.
pub const EVENTS: [(Event, &str); 4] = [
    (Event::TableAlloc, "table_allocs"),
    (Event::Barrier, "barriers"),
    (Event::Tlbi, "tlbis"),
    (Event::SharedWrite, "shared_writes"),
];
const NEVENTS: usize = EVENTS.len();

/// Whether a [`Lock`] is global (every CPU contends for it), from [`LOCKS`].
const fn is_global(lock: Lock) -> bool {
    LOCKS[lock as usize].2
}

/// One CPU's totals. Only that CPU writes them (see the module documentation); the alignment
/// keeps two CPUs' blocks off one cache line (64 bytes, the largest line of the Cortex-A72 and of
/// the cores Linux's `L1_CACHE_BYTES` covers, as for `vm`'s per-CPU nodes).
#[repr(align(64))]
struct PerCpu {
    wait: [AtomicU64; NLOCKS],
    hold: [AtomicU64; NLOCKS],
    acquired: [AtomicU64; NLOCKS],
    /// Per lock: clock reads made by probes while the lock was held (see [`Totals::inner_reads`]).
    inner: [AtomicU64; NLOCKS],
    time: [AtomicU64; NSECTIONS],
    count: [AtomicU64; NEVENTS],
    /// Clock reads so far. A hold runs on one CPU, so the difference across it counts the
    /// probes inside it.
    reads: AtomicU64,
    /// Global locks this CPU holds now (taken while profiling was on).
    global_depth: AtomicU64,
    /// When the outermost global hold began, and `reads` then.
    global_since: AtomicU64,
    global_reads: AtomicU64,
    /// See [`Totals::serial`], [`Totals::serial_holds`], [`Totals::serial_inner_reads`].
    serial: AtomicU64,
    serial_holds: AtomicU64,
    serial_inner: AtomicU64,
}

impl PerCpu {
    const fn new() -> Self {
        Self {
            wait: [const { AtomicU64::new(0) }; NLOCKS],
            hold: [const { AtomicU64::new(0) }; NLOCKS],
            acquired: [const { AtomicU64::new(0) }; NLOCKS],
            inner: [const { AtomicU64::new(0) }; NLOCKS],
            time: [const { AtomicU64::new(0) }; NSECTIONS],
            count: [const { AtomicU64::new(0) }; NEVENTS],
            reads: AtomicU64::new(0),
            global_depth: AtomicU64::new(0),
            global_since: AtomicU64::new(0),
            global_reads: AtomicU64::new(0),
            serial: AtomicU64::new(0),
            serial_holds: AtomicU64::new(0),
            serial_inner: AtomicU64::new(0),
        }
    }

    /// Every total (not the hold-tracking state, which a hold in progress still needs).
    fn totals(&self) -> impl Iterator<Item = &AtomicU64> {
        self.wait
            .iter()
            .chain(&self.hold)
            .chain(&self.acquired)
            .chain(&self.inner)
            .chain(&self.time)
            .chain(&self.count)
            .chain([&self.serial, &self.serial_holds, &self.serial_inner])
    }
}

/// Whether the probes are compiled in (the `profile` feature): [`enable`] can turn them on.
pub const AVAILABLE: bool = cfg!(feature = "profile");

static ENABLED: AtomicBool = AtomicBool::new(false);

/// A block per CPU in the profiled kernel; one otherwise (nothing writes it) and on the host,
/// whose unit tests share it between threads (they measure no time anyway, and [`add`] is atomic
/// there).
#[cfg(target_os = "none")]
const SLOTS: usize = if AVAILABLE {
    crate::arch::aarch64::cpu::MAX_CPUS
} else {
    1
};
#[cfg(not(target_os = "none"))]
const SLOTS: usize = 1;

static PER_CPU: [PerCpu; SLOTS] = [const { PerCpu::new() }; SLOTS];

/// This CPU's block.
#[inline]
fn mine() -> &'static PerCpu {
    #[cfg(target_os = "none")]
    if SLOTS > 1 {
        return &PER_CPU[crate::arch::aarch64::cpu::id()];
    }
    &PER_CPU[0]
}

/// Add `v` to a counter of this CPU's block: a load and a store, since no other CPU writes it
/// (see the module documentation). The host's threads share one block, so there it is atomic.
#[inline]
fn add(a: &AtomicU64, v: u64) {
    #[cfg(target_os = "none")]
    a.store(a.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
    #[cfg(not(target_os = "none"))]
    a.fetch_add(v, Ordering::Relaxed);
}

/// The clock profiling reads: the CPU's counter. The host's unit tests have none, so there
/// profiling measures no time. Each read is counted on its CPU.
#[cold]
#[inline(never)]
fn now() -> Option<u64> {
    add(&mine().reads, 1);
    #[cfg(target_os = "none")]
    return Some(crate::arch::aarch64::cpu::counter());
    #[cfg(not(target_os = "none"))]
    None
}

/// Turn profiling on or off; turning it on zeroes every total. Called between measurements,
/// while no CPU runs a probe (the counters are written without atomic read-modify-writes). Without
/// the probes compiled in ([`AVAILABLE`]) the totals stay zero.
pub fn enable(on: bool) {
    if on {
        for c in &PER_CPU {
            for a in c.totals() {
                a.store(0, Ordering::Relaxed);
            }
        }
    }
    ENABLED.store(on, Ordering::Release);
}

/// The totals since profiling was last turned on, over every CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Ticks spent waiting for each lock, in [`LOCKS`] order.
    pub wait: [u64; NLOCKS],
    /// Ticks each lock was held.
    pub hold: [u64; NLOCKS],
    /// Times each lock was taken.
    pub acquired: [u64; NLOCKS],
    /// Ticks per [`Section`].
    pub time: [u64; NSECTIONS],
    /// Counts per [`Event`].
    pub count: [u64; NEVENTS],
    /// Per lock, the clock reads that probes made while it was held (a lock taken inside the
    /// hold, a timed section in it): their cost is in [`hold`](Self::hold) although the work
    /// measured does not include it, so the benchmark takes it out.
    pub inner_reads: [u64; NLOCKS],
    /// Ticks during which a CPU held at least one global lock: the serial time, each nested hold
    /// counted once.
    pub serial: u64,
    /// The outermost global holds that make up [`serial`](Self::serial) (each carries one
    /// acquisition's profiling cost, as a hold in [`hold`](Self::hold) does).
    pub serial_holds: u64,
    /// Clock reads that probes made inside those holds (as [`inner_reads`](Self::inner_reads)).
    pub serial_inner_reads: u64,
}

/// The totals so far, summed over the CPUs.
pub fn totals() -> Totals {
    let mut t = Totals::default();
    let sum = |out: &mut [u64], each: &[AtomicU64]| {
        for (o, a) in out.iter_mut().zip(each) {
            *o += a.load(Ordering::Relaxed);
        }
    };
    for c in &PER_CPU {
        sum(&mut t.wait, &c.wait);
        sum(&mut t.hold, &c.hold);
        sum(&mut t.acquired, &c.acquired);
        sum(&mut t.inner_reads, &c.inner);
        sum(&mut t.time, &c.time);
        sum(&mut t.count, &c.count);
        t.serial += c.serial.load(Ordering::Relaxed);
        t.serial_holds += c.serial_holds.load(Ordering::Relaxed);
        t.serial_inner_reads += c.serial_inner.load(Ordering::Relaxed);
    }
    t
}

/// Whether profiling is on: false at compile time without the `profile` feature, so that every
/// probe compiles to nothing; with it, the one load a probe makes while profiling is off.
/// Everything a probe does while it is on is in a function of its own, out of line and marked
/// cold, so that the code around it stays as it would be without it as far as it can.
#[inline(always)]
fn on() -> bool {
    AVAILABLE && ENABLED.load(Ordering::Relaxed)
}

/// The current time if profiling is on.
#[inline(always)]
pub fn start() -> Option<u64> {
    if on() { now() } else { None }
}

/// Add the time since `t0` (from `start`) to `section`.
#[inline(always)]
pub fn stop(section: Section, t0: Option<u64>) {
    if let Some(t0) = t0 {
        stopped(section, t0);
    }
}

#[cold]
#[inline(never)]
fn stopped(section: Section, t0: u64) {
    if let Some(t1) = start() {
        add(&mine().time[section as usize], t1.saturating_sub(t0));
    }
}

/// Run `f`, counting its time to `section`.
#[inline(always)]
pub fn timed<R>(section: Section, f: impl FnOnce() -> R) -> R {
    let t0 = start();
    let r = f();
    stop(section, t0);
    r
}

/// Count one `event`.
#[inline(always)]
pub fn count(event: Event) {
    if on() {
        counted(event);
    }
}

#[cold]
#[inline(never)]
fn counted(event: Event) {
    add(&mine().count[event as usize], 1);
}

/// Count one write to a cache line that other CPUs write too ([`Event::SharedWrite`]): call it
/// beside each such write on the mapping paths (a global atomic counter or flag). Acquisitions of
/// global locks are counted already.
#[inline(always)]
pub fn shared_write() {
    count(Event::SharedWrite);
}

/// A lock guard that adds the time it is held to its [`Lock`] when dropped.
pub struct Held<G> {
    guard: G,
    lock: Lock,
    /// When the hold began, and this CPU's clock reads by then.
    since: Option<(u64, u64)>,
}

/// Take a lock with `take` (which returns its guard), counting the wait, the acquisition and,
/// until the returned guard is dropped, the hold time to `lock`.
#[inline(always)]
pub fn acquire<G>(lock: Lock, take: impl FnOnce() -> G) -> Held<G> {
    let t0 = start();
    let guard = take();
    let since = match t0 {
        Some(t0) => acquired(lock, t0),
        None => None,
    };
    Held { guard, lock, since }
}

/// [`acquire`]'s work once the lock is taken: the wait and the acquisition; for a global lock, a
/// shared write and, if it is this CPU's outermost, the start of a serial hold.
#[cold]
#[inline(never)]
fn acquired(lock: Lock, t0: u64) -> Option<(u64, u64)> {
    let t1 = start()?;
    let c = mine();
    let i = lock as usize;
    add(&c.wait[i], t1.saturating_sub(t0));
    add(&c.acquired[i], 1);
    let reads = c.reads.load(Ordering::Relaxed);
    if is_global(lock) {
        add(&c.count[Event::SharedWrite as usize], 1);
        if c.global_depth.load(Ordering::Relaxed) == 0 {
            c.global_since.store(t1, Ordering::Relaxed);
            c.global_reads.store(reads, Ordering::Relaxed);
        }
        add(&c.global_depth, 1);
    }
    Some((t1, reads))
}

/// A [`Held`] guard's drop: the hold time, the reads made inside it and, when it ends this CPU's
/// outermost global hold, the serial time.
#[cold]
#[inline(never)]
fn released(lock: Lock, (t0, r0): (u64, u64)) {
    let c = mine();
    let reads = c.reads.load(Ordering::Relaxed);
    let t1 = start();
    if let Some(t1) = t1 {
        let i = lock as usize;
        add(&c.hold[i], t1.saturating_sub(t0));
        add(&c.inner[i], reads - r0);
    }
    if is_global(lock) {
        // The depth goes down even if profiling was turned off meanwhile, so that it is right
        // for the next profiled run.
        let depth = c.global_depth.load(Ordering::Relaxed).saturating_sub(1);
        c.global_depth.store(depth, Ordering::Relaxed);
        if let (0, Some(t1)) = (depth, t1) {
            let since = c.global_since.load(Ordering::Relaxed);
            add(&c.serial, t1.saturating_sub(since));
            add(&c.serial_holds, 1);
            add(
                &c.serial_inner,
                reads - c.global_reads.load(Ordering::Relaxed),
            );
        }
    }
}

impl<G> Drop for Held<G> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(since) = self.since {
            released(self.lock, since);
        }
    }
}

impl<G: Deref> Deref for Held<G> {
    type Target = G::Target;

    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: DerefMut> DerefMut for Held<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables are indexed by the enums' values: each entry sits at its own value.
    #[test]
    fn tables_in_value_order() {
        for (i, (lock, _, _)) in LOCKS.iter().enumerate() {
            assert_eq!(*lock as usize, i, "{lock:?}");
        }
        for (i, (section, _)) in SECTIONS.iter().enumerate() {
            assert_eq!(*section as usize, i, "{section:?}");
        }
        for (i, (event, _)) in EVENTS.iter().enumerate() {
            assert_eq!(*event as usize, i, "{event:?}");
        }
        let global: Vec<_> = LOCKS.iter().filter(|l| l.2).map(|l| l.0).collect();
        assert_eq!(
            global,
            [Lock::PageTable, Lock::VmapArea, Lock::Frames, Lock::Heap]
        );
    }

    /// Events count while profiling is on, in the profiled build only. (Other tests running at the
    /// same time may count too, so the profiled build checks for at least this test's counts.)
    #[test]
    fn events_count_only_when_compiled_in_and_on() {
        enable(true);
        count(Event::Tlbi);
        shared_write();
        let t = totals();
        enable(false);
        let (tlbi, shared) = (
            t.count[Event::Tlbi as usize],
            t.count[Event::SharedWrite as usize],
        );
        if AVAILABLE {
            assert!(tlbi >= 1 && shared >= 1, "{t:?}");
        } else {
            assert_eq!((tlbi, shared), (0, 0), "{t:?}");
        }
    }
}
