//! Arm semihosting: how a kernel under QEMU (`-semihosting`) reports its exit status and, before
//! the console exists, prints. Only used when the command line says `semihosting`: on a machine
//! without a debugger attached, `hlt #0xf000` is an undefined instruction.

use core::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turn semihosting on: only when a debugger or QEMU's `-semihosting` answers the trap.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

const SYS_WRITEC: u64 = 0x03;
const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

fn call(op: u64, arg: u64) -> u64 {
    let ret;
    // SAFETY: the semihosting trap only reads the parameter block `arg` points at (or the value);
    // callers pass pointers to live data.
    unsafe {
        core::arch::asm!("hlt #0xf000", inout("x0") op => ret, in("x1") arg, options(nostack))
    };
    ret
}

/// Print `s` to the host's console one byte at a time; nothing when semihosting is off.
pub fn write_bytes(s: &[u8]) {
    if enabled() {
        for b in s {
            call(SYS_WRITEC, b as *const u8 as u64);
        }
    }
}

/// End the QEMU process with `code` as its exit status (when semihosting is on).
pub fn exit(code: u32) {
    if enabled() {
        let block = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
        call(SYS_EXIT, block.as_ptr() as u64);
    }
}

const SYS_ERRNO: u64 = 0x13;

/// Turn semihosting on if the debugger/emulator answers it. Used only when there is no command
/// line to ask (no device tree): without semihosting, `hlt` is an undefined instruction, which
/// `catch_fault` turns into "no".
pub fn probe_and_enable() {
    if super::exceptions::catch_fault(|| {
        call(SYS_ERRNO, 0);
    })
    .is_ok()
    {
        enable();
    }
}
