//! The kernel's virtual address layout (48-bit VAs, all in the upper, TTBR1 half).
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

use core::sync::atomic::{AtomicU64, Ordering};

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
pub const PMD_SIZE: usize = 2 << 20;
pub const PUD_SIZE: usize = 1 << 30;
pub const GIB: u64 = 1 << 30;

pub const PAGE_OFFSET: u64 = 0xFFFF_0000_0000_0000;
/// Physical addresses the linear map can hold (46 bits).
pub const LINEAR_MAP_LIMIT: u64 = 1 << 46;
pub const VMALLOC_START: usize = 0xFFFF_8000_0000_0000;
pub const VMALLOC_END: usize = 0xFFFF_FE00_0000_0000;
pub const KIMAGE_VADDR: u64 = 0xFFFF_FF80_0000_0000;

/// Where the loader put the image: set once by the boot CPU before anything converts addresses.
static KIMAGE_PHYS: AtomicU64 = AtomicU64::new(0);

pub fn set_kimage_phys(pa: u64) {
    KIMAGE_PHYS.store(pa, Ordering::Relaxed);
}

pub fn kimage_phys() -> u64 {
    KIMAGE_PHYS.load(Ordering::Relaxed)
}

/// The physical address of something inside the kernel image (a static, a function).
pub fn kimage_to_phys(va: u64) -> u64 {
    va - KIMAGE_VADDR + kimage_phys()
}

/// The linear-map address of a physical address.
pub const fn phys_to_virt(pa: u64) -> u64 {
    pa + PAGE_OFFSET
}

/// The physical address behind a linear-map address.
pub const fn virt_to_phys(va: u64) -> u64 {
    va - PAGE_OFFSET
}

pub const fn page_align_down(x: u64) -> u64 {
    x & !(PAGE_SIZE as u64 - 1)
}

pub const fn page_align_up(x: u64) -> Option<u64> {
    match x.checked_add(PAGE_SIZE as u64 - 1) {
        Some(v) => Some(page_align_down(v)),
        None => None,
    }
}

/// The kernel image's sections, as the linker script lays them out.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    pub start: u64,
    /// End of text (RX) = start of rodata (R).
    pub text_end: u64,
    /// End of rodata = start of data and bss (RW, execute-never).
    pub rodata_end: u64,
    pub end: u64,
    /// Unmapped guard pages inside .bss, below the boot CPU's kernel and exception stacks.
    pub boot_stack_guard: u64,
    pub boot_exception_stack_guard: u64,
}

#[cfg(target_os = "none")]
unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static __boot_stack_guard: u8;
    static __boot_exception_stack_guard: u8;
}

/// The image's section boundaries. The addresses are taken PC-relatively, so before the MMU is
/// on they are physical addresses and after it virtual ones: `early` relies on that (this
/// function cannot panic and follows no stored pointer).
#[cfg(target_os = "none")]
#[inline(always)]
pub fn image_layout() -> ImageLayout {
    ImageLayout {
        start: &raw const __image_start as u64,
        text_end: &raw const __text_end as u64,
        rodata_end: &raw const __rodata_end as u64,
        end: &raw const __image_end as u64,
        boot_stack_guard: &raw const __boot_stack_guard as u64,
        boot_exception_stack_guard: &raw const __boot_exception_stack_guard as u64,
    }
}
