//! The kernel names its own backtrace frames: a panic three calls deep, on the Raspberry Pi 4's
//! console (QEMU raspi4b's mini UART), with the runner's host symboliser off, still shows each
//! function's name and offset, from the image's symbol table (src/kallsyms.rs), and the frames
//! below them down to `kernel_entry` (unmangled: `#[no_mangle]`).
//!
//! initmm-qemu: --board rpi4 --no-symbolize
//! initmm-expect: exit=101 output=KERNEL PANIC on cpu0: deliberate panic three calls deep
//! initmm-expect-once: kallsyms::innermost+0x
//! initmm-expect-once: kallsyms::middle+0x
//! initmm-expect-once: kallsyms::outer+0x
//! initmm-expect-once: kernel_entry+0x
#![no_std]
#![no_main]

use core::hint::black_box;

#[inline(never)]
fn innermost(depth: u32) -> u32 {
    if black_box(depth) == 3 {
        panic!("deliberate panic three calls deep");
    }
    depth
}

#[inline(never)]
fn middle(depth: u32) -> u32 {
    black_box(innermost(depth + 1)) + 1
}

#[inline(never)]
fn outer(depth: u32) -> u32 {
    black_box(middle(depth + 1)) + 1
}

initmm::entry!(main);

fn main(_: &'static initmm::BootInfo) -> ! {
    black_box(outer(1));
    initmm::panic::exit(0)
}
