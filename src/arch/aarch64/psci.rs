//! PSCI (Power State Coordination Interface) calls, over the conduit the device tree names
//! (`/psci`'s `method`: HVC to a hypervisor, SMC to the secure monitor).
//!
//! The calls themselves are the `smccc` crate's: its `Hvc` and `Smc` conduits follow the SMC
//! Calling Convention's register rules, and its error type names every PSCI return code. The
//! conduit is known only at run time, so each call here picks one of the crate's two
//! monomorphised versions.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

use smccc::psci;
use smccc::psci::error::Error;
use smccc::{Hvc, Smc};

use crate::platform::devicetree::PsciMethod;

/// 0 = no PSCI known, 1 = HVC, 2 = SMC.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

/// Say how to call PSCI (from the device tree), or with `None` that there is no PSCI.
pub fn set_conduit(method: Option<PsciMethod>) {
    let v = match method {
        None => 0,
        Some(PsciMethod::Hvc) => 1,
        Some(PsciMethod::Smc) => 2,
    };
    CONDUIT.store(v, Ordering::Relaxed);
}

fn conduit() -> Option<PsciMethod> {
    match CONDUIT.load(Ordering::Relaxed) {
        1 => Some(PsciMethod::Hvc),
        2 => Some(PsciMethod::Smc),
        _ => None,
    }
}

/// Whether a PSCI conduit has been set.
pub fn available() -> bool {
    conduit().is_some()
}

/// A PSCI return code other than SUCCESS, shown as the specification names it: `PSCI ALREADY_ON
/// (-4)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciError(pub Error);

impl fmt::Display for PsciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            Error::NotSupported => "NOT_SUPPORTED",
            Error::InvalidParameters => "INVALID_PARAMETERS",
            Error::Denied => "DENIED",
            Error::AlreadyOn => "ALREADY_ON",
            Error::OnPending => "ON_PENDING",
            Error::InternalFailure => "INTERNAL_FAILURE",
            Error::NotPresent => "NOT_PRESENT",
            Error::Disabled => "DISABLED",
            Error::InvalidAddress => "INVALID_ADDRESS",
            Error::Unknown(_) => "unknown error",
        };
        write!(f, "PSCI {name} ({})", i64::from(self.0))
    }
}

/// Start the CPU with affinity `mpidr` at physical address `entry` with x0 = `context`
/// (CPU_ON, SMC64). Without a conduit: NOT_SUPPORTED.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    match conduit() {
        Some(PsciMethod::Hvc) => psci::cpu_on::<Hvc>(mpidr, entry, context),
        Some(PsciMethod::Smc) => psci::cpu_on::<Smc>(mpidr, entry, context),
        None => Err(Error::NotSupported),
    }
    .map_err(PsciError)
}

/// SYSTEM_OFF: returns only if the firmware refused (or there is no conduit).
pub fn system_off() -> Result<(), PsciError> {
    match conduit() {
        Some(PsciMethod::Hvc) => psci::system_off::<Hvc>(),
        Some(PsciMethod::Smc) => psci::system_off::<Smc>(),
        None => Err(Error::NotSupported),
    }
    .map_err(PsciError)
}
