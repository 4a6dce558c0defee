//! Translation-table maintenance instructions and MMU registers, for `mm`.

use aarch64_cpu::{
    asm::barrier,
    registers::{ID_AA64MMFR0_EL1, ReadWriteable, Readable, TCR_EL1},
};

/// `dsb ishst`: earlier stores (a zeroed table, a descriptor) are visible to every CPU and table
/// walker in the inner-shareable domain before later ones.
#[inline]
pub fn dsb_ishst() {
    barrier::dsb(barrier::ISHST);
}

/// `dsb ish`: wait until every earlier memory access (and TLB or cache maintenance) is complete
/// for all CPUs in the inner-shareable domain.
#[inline]
pub fn dsb_ish() {
    barrier::dsb(barrier::ISH);
}

/// `isb`: later instructions are fetched again, so they see earlier system-register writes and
/// completed maintenance.
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

/// Make `pgd_pa` this CPU's kernel table root, as Linux's `cpu_replace_ttbr1` does: the tables
/// are made visible to the walker (`dsb ishst`), every exception is masked, and
/// `idmap_cpu_replace_ttbr1` runs from the identity map, pointing TTBR1 at an empty table and
/// emptying the TLB before it installs the new root. So the TLB never holds entries of two
/// different sizes for one address (the early tables map the linear window with pages, init_mm
/// with blocks), which real cores report as a TLB conflict abort.
///
/// # Safety
/// The new tables must map everything this CPU uses from now on (its code, stack, data), and
/// TTBR0 must still hold the boot identity map with its walks enabled.
pub unsafe fn replace_ttbr1(pgd_pa: u64) {
    dsb_ishst();
    // Linux's `cpu_replace_ttbr1` runs it between `local_daif_save` and `local_daif_restore`.
    let flags = super::daif::local_daif_save();
    // SAFETY: the one place a function is called at an address that is not its link address
    // (point 5 in `arch::aarch64`'s module documentation). `idmap_replace_ttbr1()` is the physical
    // address of `boot::idmap_cpu_replace_ttbr1`, whose code follows the C calling convention
    // for (new TTBR1, empty table), uses only x0, x1 and system registers (no memory, no stack)
    // and returns through x30. At that address TTBR0's identity map (the caller's contract)
    // holds exactly that code, so the address, as a pointer-sized integer, is a valid
    // `extern "C" fn(u64, u64)` for as long as TTBR0 is not changed, which nothing does before
    // the call. The return address is our kernel virtual one, which the new tables map (the
    // caller's contract), and every exception is masked, so nothing runs while TTBR1 points at
    // the empty table.
    unsafe {
        let replace = core::mem::transmute::<usize, extern "C" fn(u64, u64)>(
            super::early::idmap_replace_ttbr1() as usize,
        );
        replace(pgd_pa, super::early::reserved_pg_dir());
    }
    super::daif::local_daif_restore(flags);
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
