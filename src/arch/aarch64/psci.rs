//! PSCI (Power State Coordination Interface) calls, over the conduit the device tree names.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::platform::devicetree::PsciMethod;

pub const CPU_ON: u32 = 0xc400_0003;
pub const SYSTEM_OFF: u32 = 0x8400_0008;
pub const PSCI_VERSION: u32 = 0x8400_0000;

/// 0 = no PSCI known, 1 = HVC, 2 = SMC.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

pub fn set_conduit(method: Option<PsciMethod>) {
    let v = match method {
        None => 0,
        Some(PsciMethod::Hvc) => 1,
        Some(PsciMethod::Smc) => 2,
    };
    CONDUIT.store(v, Ordering::Relaxed);
}

pub fn available() -> bool {
    CONDUIT.load(Ordering::Relaxed) != 0
}

/// A PSCI return code other than SUCCESS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciError(pub i32);

impl core::fmt::Display for PsciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self.0 {
            -1 => "NOT_SUPPORTED",
            -2 => "INVALID_PARAMETERS",
            -3 => "DENIED",
            -4 => "ALREADY_ON",
            -5 => "ON_PENDING",
            -6 => "INTERNAL_FAILURE",
            -7 => "NOT_PRESENT",
            -8 => "DISABLED",
            -9 => "INVALID_ADDRESS",
            _ => "unknown error",
        };
        write!(f, "PSCI {name} ({})", self.0)
    }
}

/// Call PSCI function `func` with up to three arguments. `None` without a conduit.
pub fn call(func: u32, a1: u64, a2: u64, a3: u64) -> Option<i64> {
    let mut x0 = func as u64;
    match CONDUIT.load(Ordering::Relaxed) {
        // SAFETY: an SMCCC call clobbers at most x0-x17 (declared via clobber_abi) and has no
        // memory effects visible to this CPU's program order.
        1 => unsafe {
            core::arch::asm!("hvc #0", inout("x0") x0, in("x1") a1, in("x2") a2, in("x3") a3, clobber_abi("C"), options(nostack))
        },
        // SAFETY: as above, through the secure monitor.
        2 => unsafe {
            core::arch::asm!("smc #0", inout("x0") x0, in("x1") a1, in("x2") a2, in("x3") a3, clobber_abi("C"), options(nostack))
        },
        _ => return None,
    }
    Some(x0 as i64)
}

/// Start the CPU with affinity `mpidr` at physical address `entry` with x0 = `context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    match call(CPU_ON, mpidr, entry, context) {
        Some(0) => Ok(()),
        Some(e) => Err(PsciError(e as i32)),
        None => Err(PsciError(-1)),
    }
}

pub fn system_off() {
    call(SYSTEM_OFF, 0, 0, 0);
}
