//! Data-cache maintenance by virtual address, to the point of coherency (PoC): for memory that a
//! CPU with its MMU or caches off reads or has written (a starting CPU's boot block, the early
//! page tables, a spin-table release address).

/// The smallest data-cache line of this CPU, in bytes (`CTR_EL0.DminLine`), so that no line is
/// skipped whatever the core.
fn dcache_line() -> usize {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    4 << ((ctr >> 16) & 0xf)
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

/// `dc ivac` over `[va, va + len)`, then `dsb sy`: no cache holds a line of it any more, so the
/// next cacheable read comes from memory. For memory written with the MMU off (which went
/// straight to memory) that is about to be read through the caches: a line a speculative access
/// or an earlier owner left would otherwise be read instead. Lines are whole: the range must not
/// share a line with data written through the cache and not yet cleaned.
pub fn invalidate_to_poc(va: usize, len: usize) {
    let line = dcache_line();
    let mut a = va & !(line - 1);
    while a < va + len {
        // SAFETY: the caller's range holds no dirty line that matters (see above); invalidating
        // makes later reads come from memory, which holds the data.
        unsafe { core::arch::asm!("dc ivac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}
