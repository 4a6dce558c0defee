//! Waiting for another CPU: `wfe`, `sev` and the exclusive monitor.
//!
//! A CPU waiting for a flag that another CPU sets sleeps in `wfe` rather than spinning. On a real
//! core (QEMU's TCG treats `wfe` as a mere yield and hides all of this) `wfe` returns on an
//! *event*: a `sev` from any CPU, the clearing of this CPU's exclusive monitor (another CPU
//! stored to the address it loaded with `ldxr`), an interrupt, or the generic timer's event
//! stream. Two ways of waking a waiter are correct, and this module has both:
//!
//! - [`send_event`] is `dsb ishst; sev`: the barrier makes the stores before it (the flag) visible
//!   to every CPU *before* the event is. A bare `sev` may overtake the store: the waiter wakes,
//!   reads the old value, sleeps again, and waits for the next event (forever, with interrupts
//!   masked and no event stream).
//! - [`wait_until`] needs no `sev` at all. It arms the exclusive monitor on the flag with `ldxr`
//!   and sleeps only if the flag still holds the value it saw: the writer's store clears the
//!   monitor, which is itself an event. This is Linux's `smp_cond_load_acquire` on arm64
//!   (`__cmpwait`).
//!
//! The generic timer's event stream (`drivers::timer::enable_event_stream`, on every CPU) is the
//! backstop: a missed event costs at most one stream period, about 100 µs.

use core::sync::atomic::{AtomicUsize, Ordering};

/// `wfe`: sleep until the next event (see the module documentation for what is one).
#[inline]
pub fn wait_for_event() {
    aarch64_cpu::asm::wfe();
}

/// `dsb ishst; sev`: make this CPU's earlier stores visible to every CPU, then wake every CPU
/// sleeping in `wfe`.
#[inline]
pub fn send_event() {
    // SAFETY: a barrier and an event; neither touches memory the compiler tracks (the asm is
    // not `nomem`, so earlier stores are emitted before it).
    unsafe { core::arch::asm!("dsb ishst", "sev", options(nostack, preserves_flags)) };
}

/// Wait until `cond` holds for the value of `flag`, and return that value; the load that saw it
/// is an Acquire. Sleeps in `wfe` with the exclusive monitor armed on `flag` (Linux's
/// `smp_cond_load_acquire`), so the store that changes `flag` wakes us without a `sev`.
pub fn wait_until(flag: &AtomicUsize, mut cond: impl FnMut(usize) -> bool) -> usize {
    loop {
        let v = flag.load(Ordering::Acquire);
        if cond(v) {
            return v;
        }
        // `sevl; wfe` consumes an event left pending from earlier, so the second `wfe` waits for
        // a new one; `ldxr` arms the monitor, and we sleep only if the flag still holds `v`
        // (a change between our load and the `ldxr` must not be slept through).
        // SAFETY: `flag` is a valid, aligned `usize` for the duration of the call; `ldxr` only
        // reads it (the monitor it arms is left to be cleared by a store or the next exclusive).
        unsafe {
            core::arch::asm!(
                "sevl",
                "wfe",
                "ldxr {t}, [{p}]",
                "eor {t}, {t}, {v}",
                "cbnz {t}, 2f",
                "wfe",
                "2:",
                p = in(reg) flag.as_ptr(),
                v = in(reg) v,
                t = out(reg) _,
                options(nostack, readonly),
            )
        };
    }
}
