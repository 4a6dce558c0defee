//! The watchdog: on every timer tick, each CPU checks that the other online CPUs still tick.
//!
//! Every CPU takes a timer interrupt every 10 ms, idle (`wfi` wakes for it) or busy (tasks run
//! with IRQs unmasked). A CPU that takes none for `watchdog_ms=` (kernel command line; default
//! [`DEFAULT_MS`], `0` turns the watchdog off) has IRQs masked, is wedged in an exception
//! handler, or is gone: the CPU that notices panics, naming it, so that the run fails instead of
//! hanging until the runner's timeout.
//!
//! Only time the checking CPU saw pass *while it ticked itself* counts against another CPU. Under
//! QEMU TCG every vCPU is a host thread, and the host may pause one or all of them (load, gdb,
//! a stopped terminal): after a pause of the whole machine every CPU's last tick is old, but
//! no checker witnessed the silence, so nobody is blamed.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{online_cpus, per_cpu};
use crate::arch::aarch64::cpu::{self, MAX_CPUS};
use crate::cmdline::Cmdline;

/// Default `watchdog_ms`: generous, because QEMU TCG vCPU threads share the host's cores and
/// one can be descheduled for a good fraction of a second.
pub const DEFAULT_MS: u64 = 3000;

/// The limit in counter ticks (0: off).
static LIMIT: AtomicU64 = AtomicU64::new(0);
/// Set by the first CPU that reports: one report, even if several CPUs notice at once.
static FIRED: AtomicBool = AtomicBool::new(false);

/// What CPU `c` knows about CPU `t`, in row `c`, written only by `c` (from its timer interrupt,
/// so never concurrently): `t`'s tick count when it last changed, and the counter ticks `c` has
/// witnessed since then.
struct Watch {
    seen_ticks: AtomicU64,
    silent_for: AtomicU64,
}

static WATCH: [[Watch; MAX_CPUS]; MAX_CPUS] = [const {
    [const {
        Watch {
            seen_ticks: AtomicU64::new(0),
            silent_for: AtomicU64::new(0),
        }
    }; MAX_CPUS]
}; MAX_CPUS];

/// Read `watchdog_ms=` and arm the watchdog (before the first timer tick).
pub fn init(cmdline: Cmdline<'_>) {
    let ms = match cmdline.number("watchdog_ms") {
        Ok(ms) => ms.unwrap_or(DEFAULT_MS),
        Err(e) => {
            log::warn!("{e}; watchdog at {DEFAULT_MS} ms");
            DEFAULT_MS
        }
    };
    LIMIT.store(
        ms.saturating_mul(cpu::counter_frequency()) / 1000,
        Ordering::Relaxed,
    );
    if ms == 0 {
        log::info!("watchdog: off (watchdog_ms=0)");
    } else {
        log::info!("watchdog: a CPU without a timer tick for {ms} ms fails the run");
    }
}

/// Called on CPU `me`'s timer tick at counter value `now`; its previous tick was at `prev`.
/// Panics when an online CPU has been silent for longer than the limit.
pub fn check(me: usize, prev: u64, now: u64) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit == 0 || FIRED.load(Ordering::Relaxed) {
        return;
    }
    // A long gap in this CPU's own ticks means it was not running (or had IRQs masked itself):
    // it cannot testify about that time.
    let gap = now.saturating_sub(prev);
    let witnessed = if gap <= limit / 8 { gap } else { 0 };
    for t in (0..online_cpus()).filter(|&t| t != me) {
        let pc = per_cpu(t);
        // Parked by a panic's stop IPI: silent on purpose.
        if pc.stopped.load(Ordering::Acquire) {
            continue;
        }
        let w = &WATCH[me][t];
        let ticks = pc.ticks.load(Ordering::Relaxed);
        if ticks != w.seen_ticks.load(Ordering::Relaxed) {
            w.seen_ticks.store(ticks, Ordering::Relaxed);
            w.silent_for.store(0, Ordering::Relaxed);
            continue;
        }
        let silent = w.silent_for.load(Ordering::Relaxed) + witnessed;
        w.silent_for.store(silent, Ordering::Relaxed);
        if silent > limit && !FIRED.swap(true, Ordering::AcqRel) {
            let since = now.saturating_sub(pc.last_tick.load(Ordering::Relaxed));
            panic!(
                "watchdog: cpu{t} stopped answering: no timer tick for {} ms",
                since * 1000 / cpu::counter_frequency()
            );
        }
    }
}
