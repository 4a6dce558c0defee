//! The translation granule, the table sizes and the kernel's virtual address layout (48-bit VAs,
//! all in the upper, TTBR1 half): the one definition every other module uses.
//!
//! ```text
//! 0xFFFF_0000_0000_0000  PAGE_OFFSET    linear map: VA = PA + PAGE_OFFSET (PAs below 2^46)
//! 0xFFFF_4000_0000_0000                 (unused)
//! 0xFFFF_8000_0000_0000  VMALLOC_START  vmalloc / vmap / ioremap / CPU stacks (vmap_area)
//! 0xFFFF_FE00_0000_0000  VMALLOC_END
//! 0xFFFF_FF80_0000_0000  KIMAGE_VADDR   the kernel image (last pgd slot)
//! ```
//! The lower half (TTBR0) holds only the boot identity map; its walks are disabled once every CPU
//! runs on `init_mm`, so virtual address 0 and the whole lower half fault.

use super::addr::{PhysAddr, VirtAddr};

/// log2 of the translation granule.
pub const PAGE_SHIFT: u32 = 12;
/// The translation granule and the smallest mapping: 4 KiB.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// A pmd block: 2 MiB.
pub const PMD_SIZE: usize = 1 << 21;
/// A pud block: 1 GiB.
pub const PUD_SIZE: usize = 1 << 30;
/// The span of one pgd entry: 512 GiB.
pub const PGDIR_SIZE: usize = 1 << 39;

/// Descriptors per table.
///
/// 512 on hardware. Under the loom model a table is 4 slots wide: the install protocol touches one
/// slot per table, so the width does not change any interleaving, while zeroing 512 loom atomics
/// would add 512 scheduling points per allocation (beyond loom's branch limit, and an explosion of
/// the preemption search). Only the index mask changes, so the same code runs in both builds.
#[cfg(not(loom))]
pub const PTRS_PER_TABLE: usize = 512;
/// Descriptors per table (reduced under loom, see the non-loom definition).
#[cfg(loom)]
pub const PTRS_PER_TABLE: usize = 4;

/// Bottom of the TTBR1 half: every kernel VA is at or above this.
pub const KERNEL_VA_START: usize = 0xFFFF_0000_0000_0000;
/// The linear map: `VA = PA + PAGE_OFFSET` for `PA < LINEAR_MAP_SIZE`.
pub const PAGE_OFFSET: usize = 0xFFFF_0000_0000_0000;
/// Physical addresses the linear map can reach: 2^46 bytes (half of the VA space below vmalloc).
pub const LINEAR_MAP_SIZE: usize = 1 << 46;
/// Start of the vmalloc/ioremap window.
pub const VMALLOC_START: usize = 0xFFFF_8000_0000_0000;
/// End (exclusive) of the vmalloc/ioremap window.
pub const VMALLOC_END: usize = 0xFFFF_FE00_0000_0000;
/// Where the kernel image is linked: the last pgd slot.
pub const KIMAGE_VADDR: usize = 0xFFFF_FF80_0000_0000;

/// Output addresses are 48 bits wide in this descriptor format (no FEAT_LPA).
pub const PHYS_ADDR_BITS: u32 = 48;

/// The linear-map address of a physical address (which the linear map reaches: RAM).
#[inline]
pub const fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr(pa.0 as usize + PAGE_OFFSET)
}
