//! Everything that names an Arm register or instruction.

pub mod esr;
pub mod image;

#[cfg(target_os = "none")]
pub mod cpu_boot;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod early;
#[cfg(target_os = "none")]
pub mod event;
#[cfg(target_os = "none")]
pub mod exceptions;
#[cfg(target_os = "none")]
pub mod gic_sysregs;
#[cfg(target_os = "none")]
pub mod mmu;
#[cfg(target_os = "none")]
pub mod psci;
#[cfg(target_os = "none")]
pub mod semihosting;
#[cfg(target_os = "none")]
pub mod timer_regs;
