//! The watchdog: CPUs that are busy with IRQs unmasked keep ticking and are left alone; a CPU
//! that masks IRQs and spins is reported by the others, and the run fails with the panic status
//! instead of hanging until the runner's timeout.
//!
//! initmm-qemu: --machine virt --smp 4 -- watchdog_ms=1000
//! initmm-expect: exit=101 output=watchdog: cpu1 stopped answering: no timer tick for
//! initmm-expect-once: watchdog: cpu1 stopped answering
//! initmm-expect-once: busy CPUs kept ticking
#![no_std]
#![no_main]

use initmm::arch::aarch64::{cpu, daif};
use initmm::smp::{self, runtime};

/// Spin for `ms` milliseconds without masking anything.
fn busy_for(ms: u64) {
    let end = cpu::counter() + ms * cpu::counter_frequency() / 1000;
    while cpu::counter() < end {
        core::hint::spin_loop();
    }
}

initmm::entry!(main);

fn main(_: &'static initmm::BootInfo) -> ! {
    // Twice the limit of busy work on every CPU, IRQs unmasked: nobody may be reported.
    let before: [u64; 4] = core::array::from_fn(|i| {
        smp::per_cpu(i)
            .ticks
            .load(core::sync::atomic::Ordering::Relaxed)
    });
    let busy: [_; 3] = core::array::from_fn(|i| runtime::spawn_on(i + 1, || busy_for(2000)));
    busy_for(2000);
    busy.into_iter().for_each(runtime::JoinHandle::join);
    for (i, b) in before.iter().enumerate() {
        let now = smp::per_cpu(i)
            .ticks
            .load(core::sync::atomic::Ordering::Relaxed);
        assert!(
            now >= b + 100,
            "cpu{i} took {} ticks in 2 s of busy work",
            now - b
        );
    }
    log::info!("busy CPUs kept ticking; now cpu1 masks IRQs and spins");
    runtime::spawn_on(1, || {
        daif::irqs_disable();
        loop {
            core::hint::spin_loop();
        }
    });
    // The watchdog fires after 1 s; the runner's timeout would only fire after 120 s.
    busy_for(10_000);
    log::error!("the watchdog did not fire");
    initmm::panic::exit(0)
}
