//! A panic while panicking: the panic report's context hook panics itself. The machine must stop
//! with the double-fault status and one readable line naming both, not hang or recurse.
//!
//! initmm-qemu: --machine virt --smp 2
//! initmm-expect: exit=102 output=PANIC WHILE PANICKING on cpu0: the panic context hook panicked
//! initmm-expect-once: *** PANIC WHILE PANICKING
//! initmm-expect-once: double_panic::context_hook+0x
#![no_std]
#![no_main]

/// Called by the panic handler while it writes its report.
#[inline(never)]
fn context_hook(_: &mut initmm::console::Writer<'_>) {
    panic!("the panic context hook panicked");
}

initmm::entry!(main);

fn main(_: &'static initmm::BootInfo) -> ! {
    initmm::panic::set_context_hook(context_hook);
    panic!("the first panic");
}
