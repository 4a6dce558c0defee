//! Translation-table maintenance instructions and MMU registers, for `mm`.

use aarch64_cpu::{
    asm::barrier,
    registers::{ID_AA64MMFR0_EL1, ReadWriteable, Readable, TCR_EL1, TTBR1_EL1, Writeable},
};

/// `dsb ishst`: earlier stores (a zeroed table, a descriptor) are visible to every CPU and table
/// walker in the inner-shareable domain before later ones.
#[inline]
pub fn dsb_ishst() {
    barrier::dsb(barrier::ISHST);
}

#[inline]
pub fn dsb_ish() {
    barrier::dsb(barrier::ISH);
}

#[inline]
pub fn isb() {
    barrier::isb(barrier::SY);
}

/// `tlbi vaale1is`: drop last-level entries for `va` (any ASID) on every CPU.
#[inline]
pub fn tlbi_page(va: usize) {
    // SAFETY: TLB invalidation by address has no memory-safety effect.
    unsafe {
        core::arch::asm!("tlbi vaale1is, {}", in(reg) (va >> 12) & ((1 << 44) - 1), options(nostack, preserves_flags))
    };
}

/// `tlbi vaae1is`: drop entries at every level (walk caches included) for `va` on every CPU.
#[inline]
pub fn tlbi_va(va: usize) {
    // SAFETY: as above.
    unsafe {
        core::arch::asm!("tlbi vaae1is, {}", in(reg) (va >> 12) & ((1 << 44) - 1), options(nostack, preserves_flags))
    };
}

/// `tlbi vmalle1is`: drop every EL1 entry on every CPU.
#[inline]
pub fn tlbi_all() {
    // SAFETY: as above.
    unsafe { core::arch::asm!("tlbi vmalle1is", options(nostack, preserves_flags)) };
}

/// Physical address bits this CPU supports (ID_AA64MMFR0_EL1.PARange).
pub fn pa_bits() -> u32 {
    match ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

/// Make `pgd_pa` this CPU's kernel table root and forget every cached translation.
///
/// # Safety
/// The new tables must map everything this CPU uses from now on (its code, stack, data).
pub unsafe fn switch_ttbr1(pgd_pa: u64) {
    dsb_ishst();
    TTBR1_EL1.set(pgd_pa);
    isb();
    // SAFETY: local TLB invalidation has no memory-safety effect.
    unsafe { core::arch::asm!("tlbi vmalle1", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::NSH);
    isb();
}

/// Stop walking TTBR0: the lower half (and so virtual address 0) faults from now on.
pub fn disable_ttbr0_walks() {
    TCR_EL1.modify(TCR_EL1::EPD0::DisableTTBR0Walks);
    isb();
    // SAFETY: as above.
    unsafe { core::arch::asm!("tlbi vmalle1", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::NSH);
    isb();
}
