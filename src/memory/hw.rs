//! `init_mm` on the machine: the page-table environment backed by the frame allocator, the linear
//! map and the CPU's barrier and TLB instructions, and the kernel's one `KernelVm`.

use spin::Once;

use super::frame::FRAMES;
use crate::arch::aarch64::mmu;
use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::env::PageTableEnv;
use crate::mm::layout::phys_to_virt;
use crate::mm::pgtable::Table;
use crate::mm::profile::{self, Event};
use crate::mm::vm::{KernelVm, VmError};

/// The hardware environment: frames from `FRAMES`, tables through the linear map.
pub struct HwEnv;

// SAFETY: frames come from the frame allocator, which hands each out once until it is freed;
// tables are reached through the linear map, which maps every frame the allocator has (and the
// early tables map the boot frames before it exists); the barrier and TLB hooks are the
// instructions themselves, inner-shareable, so they reach every CPU.
unsafe impl PageTableEnv for HwEnv {
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

/// Device registers mapped in the kernel's address space (see [`initmm_mm::vm::IoMem`]):
/// unmapped when dropped.
pub type IoMem = initmm_mm::vm::IoMem<'static, HwEnv>;

/// Memory from the kernel's `vmalloc` (see [`initmm_mm::vm::VmBuf`]): freed when dropped.
pub type VmBuf = initmm_mm::vm::VmBuf<'static, HwEnv>;

/// Map device registers (Device-nGnRE, execute-never) at `phys` (any alignment), `size` bytes.
///
/// # Errors
///
/// As for [`KernelVm::ioremap_prot`].
pub fn ioremap(phys: PhysAddr, size: usize) -> Result<IoMem, VmError> {
    kernel_vm().ioremap(phys, size)
}

/// Map `phys` as Normal non-cacheable memory (write-combining), execute-never.
///
/// # Errors
///
/// As for [`KernelVm::ioremap_prot`].
pub fn ioremap_wc(phys: PhysAddr, size: usize) -> Result<IoMem, VmError> {
    kernel_vm().ioremap_wc(phys, size)
}

/// `size` bytes of virtually contiguous memory, not zeroed; freed when dropped.
///
/// # Errors
///
/// As for [`KernelVm::vmalloc`].
pub fn vmalloc(size: usize) -> Result<VmBuf, VmError> {
    kernel_vm().vmalloc(size)
}

/// Like [`vmalloc`], zeroed.
///
/// # Errors
///
/// As for [`KernelVm::vmalloc`].
pub fn vzalloc(size: usize) -> Result<VmBuf, VmError> {
    kernel_vm().vzalloc(size)
}

/// Bring memory management to a state that can be counted: purge the lazily freed areas (their
/// ranges and pages come back), return the per-CPU frame caches to the frame allocator, and free
/// the page tables of the vmalloc region that map nothing any more. Returns the tables freed.
///
/// # Safety
///
/// No other CPU may map, unmap or walk an address in the vmalloc region while this runs (the
/// tables it frees are ones no lock-free walker may be inside): call it between workloads or
/// measurements, while the other CPUs are idle or waiting at a barrier. Idle CPUs touch only
/// their own stacks, whose tables are not empty and so are left alone.
pub unsafe fn settle() -> usize {
    use crate::mm::layout::{VMALLOC_END, VMALLOC_START};
    let vm = kernel_vm();
    vm.vm_unmap_aliases();
    FRAMES.drain_caches();
    // SAFETY: the caller guarantees that no other CPU maps, unmaps or walks the vmalloc region
    // meanwhile, so no lock-free walker can be inside a table freed here.
    unsafe {
        vm.init_mm
            .reclaim_empty_tables(VirtAddr(VMALLOC_START), VirtAddr(VMALLOC_END))
    }
}

/// Frames free right now, counting the frames the kernel heap has taken as free: the heap grows
/// by whole frames (whenever it runs low, on any CPU) and keeps them, so that is what must
/// balance when nothing leaked.
pub fn free_frames() -> usize {
    FRAMES.stats().free + crate::memory::heap::HEAP.grown_frames()
}
