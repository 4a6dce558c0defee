//! A kernel stack overflow on a secondary CPU: its guard page (below the vmalloc'ed stack) must
//! turn it into one report that names that CPU, and the machine must exit with the panic status.
//! The backtrace is symbolised by the runner, so the recursing function shows by name.
//!
//! initmm-qemu: --machine virt --smp 4
//! initmm-expect: exit=101 output=stack overflow on cpu2: cpu2's kernel stack
//! initmm-expect-once: stack overflow on cpu2: cpu2's kernel stack
//! initmm-expect-once: *** KERNEL PANIC
//! initmm-expect-once: exception_common+0x
#![no_std]
#![no_main]

use initmm::smp::runtime;

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let buf = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + buf[(depth % 64) as usize]
}

initmm::entry!(main);

fn main(_: &'static initmm::BootInfo) -> ! {
    log::info!("overflowing cpu2's kernel stack on purpose");
    runtime::spawn_on(2, || core::hint::black_box(recurse(0))).join();
    initmm::panic::exit(0)
}
