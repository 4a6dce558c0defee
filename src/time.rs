//! Time since boot, from the generic timer's counter (the same clock every log line shows).

use core::time::Duration;

use crate::arch::aarch64::cpu;

/// How long the kernel has run: since `kernel_entry` started (the log's time 0).
pub fn since_boot() -> Duration {
    let (secs, micros) = crate::klog::uptime();
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// The counter's raw value and its frequency in Hz, for measuring intervals finer than a
/// microsecond.
pub fn counter() -> (u64, u64) {
    (cpu::counter(), cpu::counter_frequency())
}
