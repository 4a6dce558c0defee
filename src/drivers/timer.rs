//! The per-CPU tick: the EL1 virtual timer of the Arm generic timer.
//!
//! Each CPU has its own timer, wired to the same private interrupt (PPI) on every CPU, so arming
//! it here affects only the calling CPU. It fires once per `arm_after`: the interrupt handler
//! re-arms it (or calls `disable`) before its EOI, otherwise the level-triggered line stays
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

/// How often the event stream should wake a `wfe` (Linux's `ARCH_TIMER_EVT_STREAM_FREQ`).
pub const EVENT_STREAM_HZ: u64 = 10_000;

/// The `CNTKCTL_EL1.EVNTI` bit whose rising edges come closest to [`EVENT_STREAM_HZ`] at a
/// counter of `freq_hz`: bit `n` rises every `2^(n+1)` ticks, so `n + 1` is log2 of the period in
/// ticks, rounded to the nearer power of two. (Linux's `arch_timer_configure_evtstream` rounds
/// the divider too but uses it as the bit number, which gives twice the period: 152 µs on a Pi 4
/// where this gives 76 µs.) 62.5 MHz (QEMU) → bit 12, 131 µs; 54 MHz (Pi 4) → bit 11, 76 µs.
pub fn event_stream_bit(freq_hz: u64) -> u8 {
    let period = (freq_hz / EVENT_STREAM_HZ).max(2);
    let log2 = 63 - period.leading_zeros(); // floor
    // Round up when the period is at least 1.5 times 2^log2 (the next bit down is set).
    let nearest = log2 + u32::from(log2 > 0 && period & (1 << (log2 - 1)) != 0);
    nearest.saturating_sub(1).min(15) as u8
}

/// The period of the event stream with bit `evnti`, in microseconds at `freq_hz`.
pub fn event_stream_period_us(freq_hz: u64, evnti: u8) -> u64 {
    (2u64 << evnti) * 1_000_000 / freq_hz.max(1)
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

    /// `us` microseconds in counter ticks at the counter's frequency, rounded up (saturating).
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

    /// Start this CPU's event stream at about [`super::EVENT_STREAM_HZ`], as Linux does on every
    /// CPU: the backstop that ends any `wfe` whose wake-up event was missed (see
    /// `arch::aarch64::event`). Returns the period in microseconds.
    pub fn enable_event_stream() -> u64 {
        let bit = super::event_stream_bit(frequency());
        timer_regs::cntkctl_event_stream(bit);
        super::event_stream_period_us(frequency(), bit)
    }

    /// This CPU's event-stream period in microseconds, or `None` when it is off.
    pub fn event_stream_period() -> Option<u64> {
        timer_regs::cntkctl_event_stream_bit()
            .map(|b| super::event_stream_period_us(frequency(), b))
    }
}

#[cfg(target_os = "none")]
pub use hw::*;

#[cfg(test)]
mod tests;
