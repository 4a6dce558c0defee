//! Data-cache maintenance by virtual address, to the point of coherency (PoC): for memory that a
//! CPU with its MMU or caches off reads (a starting CPU's boot block). The entry code's
//! invalidation of memory written with the MMU off is `dcache_inval_range`, in `boot`.

/// The smallest data-cache line of this CPU, in bytes (`CTR_EL0.DminLine`), so that no line is
/// skipped whatever the core.
fn dcache_line() -> usize {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    4 << ((ctr >> 16) & 0xf)
}

/// `dc civac` over `[va, va + len)`, then `dsb sy`: this CPU's copies of those lines are written
/// back and dropped, so the next read fetches what a device wrote to memory meanwhile. Linux's
/// `dcache_clean_inval_poc` (what `arch_sync_dma_for_cpu` needs after a device wrote a buffer
/// that the CPU wrote nothing to since handing it over).
pub fn clean_invalidate_to_poc(va: usize, len: usize) {
    let line = dcache_line();
    let mut a = va & !(line - 1);
    while a < va + len {
        // SAFETY: cleaning and invalidating a line of a mapped, cacheable object writes back
        // this CPU's copy first, so no data the CPU wrote is lost.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// `dc cvac` over `[va, va + len)`, then `dsb sy`: what this CPU wrote there is in memory, where
/// a CPU with its caches off reads it.
pub fn clean_to_poc(va: usize, len: usize) {
    let line = dcache_line();
    let mut a = va & !(line - 1);
    while a < va + len {
        // SAFETY: cleaning a line changes no memory contents; the address is mapped (the caller's
        // object).
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}
