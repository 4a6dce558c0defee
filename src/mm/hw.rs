//! `init_mm` on the machine: the page-table environment backed by the frame allocator, the linear
//! map and the CPU's barrier and TLB instructions, and the kernel's one `KernelVm`.

use spin::Once;

use super::addr::{PhysAddr, VirtAddr};
use super::env::PageTableEnv;
use super::frame::FRAMES;
use super::layout::phys_to_virt;
use super::pgtable::Table;
use super::profile::{self, Event};
use super::vm::{KernelVm, VmError};
use crate::arch::aarch64::mmu;

/// The hardware environment: frames from `FRAMES`, tables through the linear map.
pub struct HwEnv;

impl PageTableEnv for HwEnv {
    fn alloc_table_frame(&self) -> Option<PhysAddr> {
        FRAMES.alloc(1)
    }

    unsafe fn free_table_frame(&self, pa: PhysAddr) {
        // SAFETY: a frame of `alloc_table_frame`, that is `FRAMES.alloc(1)`, used no more (this
        // function's contract).
        unsafe { FRAMES.free(pa, 1) };
    }

    fn alloc_pages(&self, pages: &mut [PhysAddr]) -> usize {
        FRAMES.alloc_bulk(pages)
    }

    unsafe fn free_pages(&self, pages: &[PhysAddr]) {
        // SAFETY: the caller's contract (`PageTableEnv::free_pages`) is `free_bulk`'s.
        unsafe { FRAMES.free_bulk(pages) };
    }

    unsafe fn table(&self, pa: PhysAddr) -> &Table {
        // SAFETY: the caller passes a page-table frame (the contract), and those come from the
        // frame allocator: RAM, mapped read/write by the linear map (during boot: by the early
        // window, which maps the frames boot hands out), 4 KiB aligned, and a table for as long
        // as the caller uses the reference. `Table` is 512 AtomicU64s, so shared references may
        // be handed to every CPU.
        unsafe { &*phys_to_virt(pa).as_ptr::<Table>() }
    }

    fn cpu_id(&self) -> usize {
        crate::arch::aarch64::cpu::id()
    }

    fn dsb_ishst(&self) {
        profile::count(Event::Barrier);
        mmu::dsb_ishst();
    }

    fn isb(&self) {
        mmu::isb();
    }

    fn tlbi_page(&self, va: usize) {
        profile::count(Event::Tlbi);
        mmu::tlbi_page(va);
    }

    fn tlbi_va(&self, va: usize) {
        profile::count(Event::Tlbi);
        mmu::tlbi_va(va);
    }

    fn tlbi_all(&self) {
        profile::count(Event::Tlbi);
        mmu::tlbi_all();
    }

    fn dsb_ish(&self) {
        profile::count(Event::Barrier);
        mmu::dsb_ish();
    }
}

/// The kernel's address space. Set once by `mm::boot::init`, and private to `mm` so that
/// nothing else can set it first (with tables that are not the ones TTBR1 holds, or a layout
/// that calls device memory RAM): the rest of the kernel reaches it through [`kernel_vm`].
pub(super) static KERNEL_VM: Once<KernelVm<HwEnv>> = Once::new();

/// The kernel's address space.
///
/// # Panics
///
/// If called before `mm::boot::init` set it up.
pub fn kernel_vm() -> &'static KernelVm<HwEnv> {
    KERNEL_VM
        .get()
        .expect("mm: the kernel address space is used before mm::boot::init")
}

/// Map device registers (Device-nGnRE, execute-never); returns the address of `phys` itself.
///
/// # Errors
///
/// As for [`KernelVm::ioremap_prot`].
pub fn ioremap(phys: PhysAddr, size: usize) -> Result<VirtAddr, VmError> {
    kernel_vm().ioremap(phys, size)
}

/// Map `phys` as Normal non-cacheable memory (write-combining), execute-never.
///
/// # Errors
///
/// As for [`KernelVm::ioremap_prot`].
pub fn ioremap_wc(phys: PhysAddr, size: usize) -> Result<VirtAddr, VmError> {
    kernel_vm().ioremap_wc(phys, size)
}

/// Undo an [`ioremap`] (lazily).
///
/// # Errors
///
/// As for [`KernelVm::iounmap`].
pub fn iounmap(addr: VirtAddr) -> Result<(), VmError> {
    kernel_vm().iounmap(addr)
}

/// `size` bytes of virtually contiguous memory, not zeroed.
///
/// # Errors
///
/// As for [`KernelVm::vmalloc`].
pub fn vmalloc(size: usize) -> Result<VirtAddr, VmError> {
    kernel_vm().vmalloc(size)
}

/// Free a [`vmalloc`] area (lazily).
///
/// # Errors
///
/// As for [`KernelVm::vfree`].
pub fn vfree(addr: VirtAddr) -> Result<(), VmError> {
    kernel_vm().vfree(addr)
}
