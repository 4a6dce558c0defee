//! A kernel stack overflow, not caught by anything: the guard page below the stack must turn it
//! into a report that says "stack overflow" and names the CPU, and the machine must exit with the
//! panic status. (The runner checks the status and the output.)
//!
//! initmm-qemu: --machine virt --smp 1
//! initmm-expect: exit=101 output=stack overflow on cpu0: cpu0's kernel stack
//! initmm-expect-once: exception_common+0x
#![no_std]
#![no_main]

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let buf = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + buf[(depth % 64) as usize]
}

initmm::entry!(main);

fn main(_: &'static initmm::BootInfo) -> ! {
    log::info!("overflowing the boot stack on purpose");
    core::hint::black_box(recurse(0));
    initmm::panic::exit(0)
}
