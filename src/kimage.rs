//! Where the kernel image is: its load address (set at boot) and its sections (the linker
//! script's symbols), for the conversions and checks that need them.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::layout::KIMAGE_VADDR;

/// Where the loader put the image: set once by the boot CPU before anything converts addresses.
static KIMAGE_PHYS: AtomicU64 = AtomicU64::new(0);

/// Record `pa`, the physical address the image was loaded at (its first byte).
pub fn set_kimage_phys(pa: u64) {
    KIMAGE_PHYS.store(pa, Ordering::Relaxed);
}

/// The physical address the image was loaded at; 0 until [`set_kimage_phys`] ran.
pub fn kimage_phys() -> u64 {
    KIMAGE_PHYS.load(Ordering::Relaxed)
}

/// The physical address of something inside the kernel image (a static, a function).
pub fn kimage_to_phys(va: VirtAddr) -> PhysAddr {
    PhysAddr((va.0 - KIMAGE_VADDR) as u64 + kimage_phys())
}

/// The kernel image's sections, as the linker script lays them out.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// The image's first byte (the arm64 Image header, then text).
    pub start: u64,
    /// End of text (RX) = start of rodata (R).
    pub text_end: u64,
    /// End of rodata = start of data and bss (RW, execute-never).
    pub rodata_end: u64,
    /// One past the image's last byte, .bss included.
    pub end: u64,
    /// Unmapped guard pages inside .bss, below the boot CPU's kernel and exception stacks: this
    /// one below the kernel stack.
    pub boot_stack_guard: u64,
    /// The guard page below the boot CPU's exception stack.
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
