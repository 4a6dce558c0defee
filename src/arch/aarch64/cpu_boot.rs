//! Starting a secondary CPU: one interface, `cpu_boot`, with the two methods a device tree may
//! name behind it. Both send the CPU to `secondary_entry` (physical address), MMU off.

use core::fmt;

use super::psci::{self, PsciError};
use crate::kimage::kimage_to_phys;
use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::layout::phys_to_virt;
use crate::platform::devicetree::EnableMethod;

unsafe extern "C" {
    fn secondary_entry();
}

/// Why a secondary CPU could not be started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuBootError {
    /// PSCI CPU_ON failed.
    Psci(PsciError),
    /// The device tree's method is one this kernel cannot use.
    Unsupported(alloc::string::String),
    /// The device tree gives no enable-method for the CPU.
    NoMethod,
}

impl fmt::Display for CpuBootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Psci(e) => write!(f, "CPU_ON returned {e}"),
            Self::Unsupported(m) => write!(
                f,
                "enable-method \"{m}\" is not supported (psci, spin-table are)"
            ),
            Self::NoMethod => f.write_str("the device tree gives no enable-method"),
        }
    }
}

/// Physical address of the secondary entry point.
pub fn secondary_entry_phys() -> u64 {
    kimage_to_phys(VirtAddr::from_ptr(secondary_entry as *const ())).0
}

/// Start the CPU whose MPIDR affinity is `mpidr` at `secondary_entry`, by `method`.
pub fn cpu_boot(mpidr: u64, method: &EnableMethod) -> Result<(), CpuBootError> {
    let entry = secondary_entry_phys();
    match method {
        // PSCI takes the target's MPIDR (its `reg`), never a logical index.
        EnableMethod::Psci => psci::cpu_on(mpidr, entry, 0).map_err(CpuBootError::Psci),
        EnableMethod::SpinTable { release_addr } => {
            let va = phys_to_virt(PhysAddr(*release_addr)).as_mut_ptr::<u64>();
            // SAFETY: the release address is in RAM (the firmware's spin-table page, reserved
            // from the frame allocator), reached through the linear map; the waiting CPU only
            // reads it. Aligned per the spin-table binding.
            unsafe { va.write_volatile(entry) };
            // The CPU polls with its MMU and caches off: push the write to the point of coherency.
            // SAFETY: cache maintenance by VA on a mapped address; then wake the waiting CPU.
            unsafe {
                core::arch::asm!("dc civac, {}", "dsb sy", "sev", in(reg) va, options(nostack, preserves_flags));
            }
            Ok(())
        }
        EnableMethod::Other(m) => Err(CpuBootError::Unsupported(m.clone())),
        EnableMethod::Missing => Err(CpuBootError::NoMethod),
    }
}

/// Wait for an interrupt (IRQs may be masked: a pending one still wakes the CPU).
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}
