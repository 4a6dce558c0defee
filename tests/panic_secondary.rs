//! A panic on a secondary CPU stops every CPU and ends the run with the panic status and one
//! clean report (the runner checks the status, the text, and that it appears once).
//!
//! initmm-qemu: --machine virt --smp 4
//! initmm-expect: exit=101 output=KERNEL PANIC on cpu2: deliberate panic on a secondary CPU
//! initmm-expect-once: *** KERNEL PANIC
//! initmm-expect-once: panic_secondary::main::{{closure}}+0x
#![no_std]
#![no_main]

use initmm::smp::runtime;

initmm::entry!(main);

fn main(_: &'static initmm::BootInfo) -> ! {
    // Keep the other CPUs busy printing, so a report that is not alone would show.
    for id in [1, 3] {
        runtime::spawn_on(id, move || {
            loop {
                log::info!("cpu{id} is still running");
            }
        });
    }
    runtime::spawn_on(2, || panic!("deliberate panic on a secondary CPU")).join();
    initmm::panic::exit(0)
}
