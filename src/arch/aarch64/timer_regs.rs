//! The EL1 virtual timer of the Arm generic timer (`CNTV_*_EL0`) and the counter it compares with.
//!
//! The virtual timer, not the physical one: at EL1 under a hypervisor (or our own EL2 drop, which
//! sets `CNTVOFF_EL2` to 0) it is the one the kernel owns, and its PPI is the one device trees
//! list third.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTKCTL_EL1, CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTVCT_EL0, Readable, Writeable,
};

/// `CNTFRQ_EL0`: the counter frequency in Hz, as firmware programmed it (0 if it did not).
pub fn cntfrq() -> u64 {
    CNTFRQ_EL0.get()
}

/// `CNTVCT_EL0` after an `isb`: without the barrier the read may be performed early, out of
/// order with the code before it, and a deadline computed from it would be stale.
pub fn cntvct() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

/// Fire (level, until re-armed or disabled) once `CNTVCT_EL0 >= cval`: compare value, then
/// enable with the interrupt unmasked. The `isb` makes the new state take effect before we return,
/// so a timer that was already asserting stops doing so before the caller unmasks IRQs.
pub fn cntv_arm_at(cval: u64) {
    CNTV_CVAL_EL0.set(cval);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    barrier::isb(barrier::SY);
}

/// Stop the virtual timer: its interrupt output drops.
pub fn cntv_disable() {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
    barrier::isb(barrier::SY);
}

/// `CNTV_CTL_EL0.ISTATUS`: the timer condition is met (whatever IMASK says).
pub fn cntv_condition_met() -> bool {
    CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ISTATUS)
}

/// Turn on this CPU's event stream: an event (which ends a `wfe`) each time bit `evnti` of the
/// virtual count goes from 0 to 1, i.e. every `2^(evnti + 1)` ticks. Nothing else in
/// `CNTKCTL_EL1` is used (there is no EL0), so the rest is written as 0.
pub fn cntkctl_event_stream(evnti: u8) {
    CNTKCTL_EL1.write(
        CNTKCTL_EL1::EVNTEN::Enable
            + CNTKCTL_EL1::EVNTDIR::ZeroToOne
            + CNTKCTL_EL1::EVNTI.val(u64::from(evnti & 0xf)),
    );
    barrier::isb(barrier::SY);
}

/// This CPU's event-stream bit (`CNTKCTL_EL1.EVNTI`), or `None` when the stream is off.
pub fn cntkctl_event_stream_bit() -> Option<u8> {
    CNTKCTL_EL1
        .is_set(CNTKCTL_EL1::EVNTEN)
        .then(|| CNTKCTL_EL1.read(CNTKCTL_EL1::EVNTI) as u8)
}
