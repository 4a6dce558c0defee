//! The runner's guest-error check can fail: this kernel writes a reserved offset of the PL011,
//! which QEMU's model logs as a guest error, and otherwise passes its one test. The
//! run must still fail, naming the error (every other test kernel therefore proves it caused
//! none). The second configuration adds the runner's --qemu-log (exceptions in the same QEMU
//! log): the check must still find the error among those lines.
//!
//! initmm-qemu: --machine virt --smp 1
//! initmm-qemu: --machine virt --smp 1 --qemu-log /dev/null
//! initmm-expect: exit=1 output=runner: FAILED: QEMU reported 1 guest error(s)
//! initmm-expect-once: 1 passed, 0 failed
#![no_std]
#![no_main]

use initmm::testing::{self, Test};

/// Between UARTFR (0x18) and UARTILPR (0x20): no register.
const RESERVED: usize = 0x1c;

fn write_a_reserved_device_register() {
    let console = initmm::kernel::boot_info()
        .machine
        .console
        .as_ref()
        .expect("virt names its PL011 as the console");
    let uart = initmm::mm::ioremap(initmm::mm::addr::PhysAddr(console.base), 0x1000)
        .expect("ioremap of the PL011");
    // A 32-bit write to a reserved offset changes no device state (the model ignores it).
    uart.write32(RESERVED, 0);
}

initmm::entry!(main);

fn main(_: &'static initmm::BootInfo) -> ! {
    testing::run(&[Test::new(
        "write_a_reserved_device_register",
        write_a_reserved_device_register,
    )])
}
