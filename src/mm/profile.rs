//! Where kernel-mapping time goes, for `bench`: per global lock the time spent waiting for it,
//! the time it was held and how often it was taken; the time in TLB maintenance and in leaf
//! writes; and counts of table allocations, barriers and TLB invalidations. While profiling is
//! off (the default) each probe costs one relaxed load.
//!
//! The global locks are the ones every CPU contends for: `init_mm`'s page-table lock, the global
//! virtual-area lock and the frame allocator's locks. The time they are *held* is the serial part
//! of the work (Amdahl's serial fraction); the time spent *waiting* for them is what that costs
//! when CPUs collide. The per-CPU vmap nodes' locks are counted apart: a CPU takes another's only
//! to free an area that CPU allocated, or to purge.

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
    /// A per-CPU vmap node's locks (its areas, its lazy list).
    VmapNode = 3,
}

/// Every [`Lock`]: the name the benchmark prints, and whether every CPU contends for it.
pub const LOCKS: [(Lock, &str, bool); 4] = [
    (Lock::PageTable, "pt_lock", true),
    (Lock::VmapArea, "va_lock", true),
    (Lock::Frames, "frame_lock", true),
    (Lock::VmapNode, "node_lock", false),
];

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

/// Things counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A page-table frame allocated (whether it was installed or lost a race).
    TableAlloc = 0,
    /// A `dsb` (any domain).
    Barrier = 1,
    /// A TLB invalidation instruction.
    Tlbi = 2,
}

/// Every [`Event`], with the names the benchmark prints.
pub const EVENTS: [(Event, &str); 3] = [
    (Event::TableAlloc, "table_allocs"),
    (Event::Barrier, "barriers"),
    (Event::Tlbi, "tlbis"),
];

static ENABLED: AtomicBool = AtomicBool::new(false);
static WAIT: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static HOLD: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static ACQUIRED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static TIME: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static COUNT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// Per lock: clock reads made by probes while the lock was held (see [`Totals::inner_reads`]).
static INNER: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Per CPU: clock reads so far. A hold runs on one CPU, so the difference across it counts the
/// probes inside it.
#[cfg(target_os = "none")]
static READS: [AtomicU64; crate::arch::aarch64::cpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::arch::aarch64::cpu::MAX_CPUS];
/// The host's unit tests: one counter for every thread (they measure no time anyway).
#[cfg(not(target_os = "none"))]
static READS: [AtomicU64; 1] = [const { AtomicU64::new(0) }; 1];

/// This CPU's slot in [`READS`].
#[inline]
fn reads() -> &'static AtomicU64 {
    #[cfg(target_os = "none")]
    return &READS[crate::arch::aarch64::cpu::id()];
    #[cfg(not(target_os = "none"))]
    &READS[0]
}

/// The clock profiling reads: the CPU's counter. The host's unit tests have none, so there
/// profiling measures no time. Each read is counted on its CPU.
#[inline]
fn now() -> Option<u64> {
    reads().fetch_add(1, Ordering::Relaxed);
    #[cfg(target_os = "none")]
    return Some(crate::arch::aarch64::cpu::counter());
    #[cfg(not(target_os = "none"))]
    None
}

/// Turn profiling on or off; turning it on zeroes every total.
pub fn enable(on: bool) {
    if on {
        for a in WAIT
            .iter()
            .chain(&HOLD)
            .chain(&ACQUIRED)
            .chain(&TIME)
            .chain(&COUNT)
            .chain(&INNER)
        {
            a.store(0, Ordering::Relaxed);
        }
    }
    ENABLED.store(on, Ordering::Release);
}

/// The totals since profiling was last turned on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Ticks spent waiting for each lock, in [`LOCKS`] order.
    pub wait: [u64; 4],
    /// Ticks each lock was held.
    pub hold: [u64; 4],
    /// Times each lock was taken.
    pub acquired: [u64; 4],
    /// Ticks per [`Section`].
    pub time: [u64; 2],
    /// Counts per [`Event`].
    pub count: [u64; 3],
    /// Per lock, the clock reads that probes made while it was held (a lock taken inside the
    /// hold, a timed section in it): their cost is in [`hold`](Self::hold) although the work
    /// measured does not include it, so the benchmark takes it out.
    pub inner_reads: [u64; 4],
}

/// The totals so far.
pub fn totals() -> Totals {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Totals {
        wait: WAIT.each_ref().map(get),
        hold: HOLD.each_ref().map(get),
        acquired: ACQUIRED.each_ref().map(get),
        time: TIME.each_ref().map(get),
        count: COUNT.each_ref().map(get),
        inner_reads: INNER.each_ref().map(get),
    }
}

/// The current time if profiling is on.
#[inline]
pub fn start() -> Option<u64> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    now()
}

/// Add the time since `t0` (from `start`) to `section`.
#[inline]
pub fn stop(section: Section, t0: Option<u64>) {
    if let (Some(t0), Some(t1)) = (t0, start()) {
        TIME[section as usize].fetch_add(t1.saturating_sub(t0), Ordering::Relaxed);
    }
}

/// Run `f`, counting its time to `section`.
#[inline]
pub fn timed<R>(section: Section, f: impl FnOnce() -> R) -> R {
    let t0 = start();
    let r = f();
    stop(section, t0);
    r
}

/// Count one `event`.
#[inline]
pub fn count(event: Event) {
    if ENABLED.load(Ordering::Relaxed) {
        COUNT[event as usize].fetch_add(1, Ordering::Relaxed);
    }
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
#[inline]
pub fn acquire<G>(lock: Lock, take: impl FnOnce() -> G) -> Held<G> {
    let t0 = start();
    let guard = take();
    let since = t0.and_then(|t0| {
        let t1 = start()?;
        WAIT[lock as usize].fetch_add(t1.saturating_sub(t0), Ordering::Relaxed);
        ACQUIRED[lock as usize].fetch_add(1, Ordering::Relaxed);
        Some((t1, reads().load(Ordering::Relaxed)))
    });
    Held { guard, lock, since }
}

impl<G> Drop for Held<G> {
    fn drop(&mut self) {
        let Some((t0, r0)) = self.since else { return };
        let inner = reads().load(Ordering::Relaxed) - r0;
        if let Some(t1) = start() {
            HOLD[self.lock as usize].fetch_add(t1.saturating_sub(t0), Ordering::Relaxed);
            INNER[self.lock as usize].fetch_add(inner, Ordering::Relaxed);
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
