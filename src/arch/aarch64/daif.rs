//! PSTATE.DAIF, the four exception masks of a CPU (Debug, SError, IRQ, FIQ), in the states and
//! with the operations of Linux's `asm/daifflags.h`. Every change of a mask after boot's entry
//! code goes through here.
//!
//! Each CPU enters the kernel with all four masked (`boot::el_drop` masks them whatever the
//! loader left) and keeps them so until its exception vectors and both its stacks are in place
//! (`boot::primary_high`, `secondary_high`). Then Debug and SError are unmasked,
//! [`Daif::PROCCTX_NOIRQ`]: on the boot CPU once its console is up (`kernel_entry`, as Linux's
//! `setup_arch`: an SError report is worth something only where it can be read), on a secondary
//! CPU first thing in `secondary_main` (as Linux's `secondary_start_kernel`). IRQs follow once
//! the interrupt controller's CPU interface and the timer are set up (`irqs_enable`). FIQ stays
//! masked: the kernel uses none. Exception entry masks all four and `eret` restores the
//! interrupted state, so handlers run with SError masked; a stopped CPU masks all four.

use core::fmt;

/// A value of DAIF: bit 9 D (debug exceptions: watchpoints, breakpoints, software step), bit 8 A
/// (SError), bit 7 I (IRQ), bit 6 F (FIQ); a set bit masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Daif(u64);

impl Daif {
    const D: u64 = 1 << 9;
    const A: u64 = 1 << 8;
    const I: u64 = 1 << 7;
    const F: u64 = 1 << 6;

    /// Linux's `DAIF_PROCCTX_NOIRQ`: Debug and SError unmasked, IRQ and FIQ masked. What a CPU
    /// runs with from the point where an SError can be reported until its IRQs are set up.
    pub const PROCCTX_NOIRQ: Daif = Daif(Self::I | Self::F);

    /// Linux's `DAIF_MASK`: everything masked, as at entry and on exception entry.
    pub const MASK: Daif = Daif(Self::D | Self::A | Self::I | Self::F);

    /// The DAIF value `bits` (other bits are ignored): for decoding a saved SPSR or a value read.
    pub const fn from_bits(bits: u64) -> Daif {
        Daif(bits & Self::MASK.0)
    }

    /// The register value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Debug exceptions are masked.
    pub const fn debug_masked(self) -> bool {
        self.0 & Self::D != 0
    }

    /// SError is masked: an SError stays pending, unreported.
    pub const fn serror_masked(self) -> bool {
        self.0 & Self::A != 0
    }

    /// IRQs are masked.
    pub const fn irq_masked(self) -> bool {
        self.0 & Self::I != 0
    }

    /// FIQs are masked.
    pub const fn fiq_masked(self) -> bool {
        self.0 & Self::F != 0
    }
}

/// `D=0 A=0 I=1 F=1` (1 = masked).
impl fmt::Display for Daif {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |masked: bool| u8::from(masked);
        write!(
            f,
            "D={} A={} I={} F={}",
            bit(self.debug_masked()),
            bit(self.serror_masked()),
            bit(self.irq_masked()),
            bit(self.fiq_masked())
        )
    }
}

/// This CPU's DAIF.
#[cfg(target_os = "none")]
pub fn read() -> Daif {
    let bits: u64;
    // SAFETY: reading PSTATE.DAIF has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, daif", out(reg) bits, options(nomem, nostack, preserves_flags))
    };
    Daif::from_bits(bits)
}

/// Mask every exception on this CPU, for good or until a [`local_daif_restore`]: Linux's
/// `local_daif_mask`.
#[cfg(target_os = "none")]
pub fn local_daif_mask() {
    // SAFETY: masking exceptions on this CPU only delays them; the memory clobber keeps the
    // compiler from moving accesses across it.
    unsafe { core::arch::asm!("msr daifset, #0xf", options(nostack, preserves_flags)) };
}

/// Mask every exception on this CPU and return what DAIF was, for [`local_daif_restore`]:
/// Linux's `local_daif_save`.
#[cfg(target_os = "none")]
pub fn local_daif_save() -> Daif {
    let flags = read();
    local_daif_mask();
    flags
}

/// Set this CPU's DAIF to `flags` (a state named above, or one [`local_daif_save`] returned):
/// Linux's `local_daif_restore`.
///
/// Safe: every Rust caller runs after its CPU's exception vectors and exception stack are in
/// place (`boot::primary_high` and `secondary_high` set VBAR_EL1 and SP_EL1 before they call
/// into Rust), so whatever this unmasks is taken and reported there.
#[cfg(target_os = "none")]
pub fn local_daif_restore(flags: Daif) {
    // SAFETY: see above: an exception this unmasks goes to the kernel's vectors. The memory
    // clobber keeps accesses on their side of the change.
    unsafe { core::arch::asm!("msr daif, {}", in(reg) flags.0, options(nostack, preserves_flags)) };
}

/// Mask IRQs on this CPU, returning whether they were unmasked (Linux's `arch_local_irq_save`).
#[cfg(target_os = "none")]
pub fn irqs_disable() -> bool {
    let was = read();
    // SAFETY: masking IRQs affects only this CPU's interrupt state.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags)) };
    !was.irq_masked()
}

/// Unmask IRQs on this CPU (Linux's `arch_local_irq_enable`).
#[cfg(target_os = "none")]
pub fn irqs_enable() {
    // SAFETY: unmasking IRQs on this CPU; the IRQ handler is installed before any is enabled.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

#[cfg(test)]
mod tests;
