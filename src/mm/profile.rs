//! Where kernel-mapping time goes, for `bench`: time accumulated per section while profiling is
//! on. Off (the default) it costs one relaxed load per section.
//!
//! Sections: waiting for and holding the virtual-area lock; waiting for and holding the page-table
//! lock (in the caller-locked baseline that is the caller's whole walk, so there it overlaps the
//! other sections); TLB maintenance (`dsb ishst`, the TLBIs, `dsb ish; isb` of an unmap); leaf
//! descriptor stores with the barriers that publish them.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    VaLock = 0,
    PtLock = 1,
    Tlb = 2,
    LeafWrite = 3,
}

pub const SECTIONS: [(Section, &str); 4] = [
    (Section::VaLock, "va_lock"),
    (Section::PtLock, "pt_lock"),
    (Section::Tlb, "tlb"),
    (Section::LeafWrite, "leaf_write"),
];

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// The clock, as a `fn() -> u64` (0 = none): the machine installs its counter.
static CLOCK: AtomicUsize = AtomicUsize::new(0);

/// Install the clock profiling reads (ticks of any fixed frequency).
pub fn set_clock(now: fn() -> u64) {
    CLOCK.store(now as usize, Ordering::Release);
}

/// Turn profiling on or off; turning it on zeroes the totals.
pub fn enable(on: bool) {
    if on {
        TOTALS.iter().for_each(|t| t.store(0, Ordering::Relaxed));
    }
    ENABLED.store(on, Ordering::Release);
}

/// Ticks accumulated per section, in `SECTIONS` order.
pub fn totals() -> [u64; 4] {
    core::array::from_fn(|i| TOTALS[i].load(Ordering::Relaxed))
}

/// The current time if profiling is on.
#[inline]
pub fn start() -> Option<u64> {
    if !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let c = CLOCK.load(Ordering::Acquire);
    if c == 0 {
        return None;
    }
    // SAFETY: CLOCK only ever holds a `fn() -> u64` stored by `set_clock`.
    let now = unsafe { core::mem::transmute::<usize, fn() -> u64>(c) };
    Some(now())
}

/// Add the time since `t0` (from `start`) to `section`.
#[inline]
pub fn stop(section: Section, t0: Option<u64>) {
    if let (Some(t0), Some(t1)) = (t0, start()) {
        TOTALS[section as usize].fetch_add(t1.saturating_sub(t0), Ordering::Relaxed);
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
