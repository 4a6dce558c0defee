//! A fault taken while handling an exception: an IRQ handler that reads an unmapped address
//! faults on the exception stack (SP_EL1), which is a nested exception. The machine must stop
//! with the double-fault status and say so readably, with a backtrace that the runner
//! symbolises (the handler shows by name).
//!
//! initmm-qemu: --machine virt --smp 2
//! initmm-expect: exit=102 output=FAULT IN THE FAULT PATH on cpu0: data abort
//! initmm-expect-once: *** FAULT IN THE FAULT PATH
//! initmm-expect-once: fault_in_fault::faulting_irq_handler+0x
#![no_std]
#![no_main]

use initmm::arch::aarch64::{cpu, exceptions};

/// Runs on the exception stack, like every IRQ handler; address 0 is mapped nowhere. Only the
/// boot CPU faults: the others keep handling their interrupts (timer ticks) as usual, so that
/// exactly one fault is reported.
#[inline(never)]
fn faulting_irq_handler() {
    if cpu::id() != 0 {
        return initmm::smp::ipi::handle_irq();
    }
    core::hint::black_box(cpu::probe_read(0));
}

initmm::entry!(main);

fn main(_: &'static initmm::BootInfo) -> ! {
    log::info!("an IRQ handler that faults: expect a fault in the fault path");
    exceptions::set_irq_handler(faulting_irq_handler);
    initmm::smp::gic().send_sgi(0, cpu::mpidr());
    // The SGI arrives within microseconds; the timer tick would also do.
    let deadline = cpu::counter() + cpu::counter_frequency();
    while cpu::counter() < deadline {
        core::hint::spin_loop();
    }
    log::error!("the faulting IRQ handler did not run");
    initmm::panic::exit(0)
}
