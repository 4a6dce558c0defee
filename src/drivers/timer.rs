//! The per-CPU tick: the EL1 virtual timer of the Arm generic timer.
//!
//! Each CPU has its own timer, wired to the same private interrupt (PPI) on every CPU, so arming
//! it here affects only the calling CPU. It fires once per [`arm_after`]: the interrupt handler
//! re-arms it (or calls [`disable`]) before its EOI, otherwise the level-triggered line stays
//! asserted and the interrupt is taken again at once.

/// The virtual timer's INTID: PPI 11. The Arm Base System Architecture fixes it, and both QEMU
/// virt and the Raspberry Pi 4 device trees say so (their `/timer` third interrupt).
pub const PPI: u32 = 27;

/// Counter ticks in `us` microseconds at `freq_hz`, rounded up so that a non-zero delay never
/// becomes "now", and saturating instead of wrapping for absurd inputs.
pub fn ticks_from_micros_at(freq_hz: u64, us: u64) -> u64 {
    let t = (u128::from(freq_hz) * u128::from(us)).div_ceil(1_000_000);
    u64::try_from(t).unwrap_or(u64::MAX)
}

#[cfg(target_os = "none")]
mod hw {
    use crate::arch::aarch64::timer_regs;

    /// Counter frequency (`CNTFRQ_EL0`) in Hz. Firmware must have programmed it; 0 would make
    /// every conversion meaningless, so it is reported as 1 Hz rather than dividing by zero later.
    pub fn frequency() -> u64 {
        timer_regs::cntfrq().max(1)
    }

    /// The virtual count now, ordered after the instructions before this call.
    pub fn now() -> u64 {
        timer_regs::cntvct()
    }

    pub fn ticks_from_micros(us: u64) -> u64 {
        super::ticks_from_micros_at(frequency(), us)
    }

    /// Interrupt this CPU `ticks` counter ticks from now (replacing any earlier deadline).
    pub fn arm_after(ticks: u64) {
        timer_regs::cntv_arm_at(now().saturating_add(ticks));
    }

    /// No more timer interrupts on this CPU until the next [`arm_after`].
    pub fn disable() {
        timer_regs::cntv_disable();
    }

    /// Has this CPU's deadline passed (the timer condition is met)?
    pub fn expired() -> bool {
        timer_regs::cntv_condition_met()
    }
}

#[cfg(target_os = "none")]
pub use hw::*;

#[cfg(test)]
mod tests {
    use super::ticks_from_micros_at;

    #[test]
    fn ticks_from_micros_converts_at_qemu_and_pi_frequencies() {
        assert_eq!(
            ticks_from_micros_at(62_500_000, 10_000),
            625_000,
            "QEMU virt: 62.5 MHz"
        );
        assert_eq!(
            ticks_from_micros_at(54_000_000, 1),
            54,
            "Raspberry Pi 4: 54 MHz"
        );
        assert_eq!(
            ticks_from_micros_at(1_000_000_000, 3),
            3_000,
            "1 GHz (Armv8.6 fixed)"
        );
    }

    #[test]
    fn ticks_from_micros_rounds_up_and_saturates() {
        assert_eq!(
            ticks_from_micros_at(3, 1),
            1,
            "a non-zero delay is never 0 ticks"
        );
        assert_eq!(ticks_from_micros_at(62_500_000, 0), 0);
        assert_eq!(ticks_from_micros_at(u64::MAX, u64::MAX), u64::MAX);
    }
}
