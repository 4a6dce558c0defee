//! Building `init_mm` at boot and handing all of RAM to the frame allocator.
//!
//! On entry the CPU runs on the early tables (`arch::aarch64::early`): the image at its linked
//! address, and an early linear window that maps only the boot frames (inside the image) and the
//! device tree. In that state:
//! 1. the frame allocator gets the boot frames, all it can reach yet;
//! 2. `init_mm` is created and, through the ordinary table allocators and `map_range` (no
//!    page-table lock taken here, as for every caller), maps the image with W^X, leaving the
//!    stack guard pages out, and the linear map of the machine's RAM (the device tree's, or the
//!    UEFI memory map's) minus its `no-map` reservations, with blocks where aligned and the
//!    kernel's text and rodata read-only, and the firmware's tables (`Machine::read_only`);
//! 3. TTBR1 moves to `init_mm` through the identity map (`mmu::replace_ttbr1`), TTBR0 walks stop
//!    (address 0 faults from now on);
//! 4. the rest of RAM joins the frame allocator, and the vmalloc region opens.

use alloc::vec::Vec;
use core::fmt;

use super::frame::FRAMES;
use super::hw::{HwEnv, KERNEL_VM};
use crate::arch::aarch64::{early, mmu};
use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::layout::{
    KIMAGE_VADDR, LINEAR_MAP_SIZE, PAGE_SIZE, VMALLOC_END, VMALLOC_START, image_layout,
    kimage_phys, phys_to_virt,
};
use crate::mm::pgalloc::InitMm;
use crate::mm::pgtable::{MmError, Prot};
use crate::mm::phys_layout::PhysLayout;
use crate::mm::region::{self, Region};
use crate::mm::vm::KernelVm;
use crate::platform::devicetree::Machine;

/// Why [`init`] could not set up memory management.
#[derive(Debug)]
pub enum BootMmError {
    /// The device tree lists no RAM the linear map can hold.
    NoRam,
    /// A RAM region is beyond the linear map's reach.
    RamBeyondLinearMap(Region),
    /// Mapping the image or the linear map failed.
    Map(&'static str, MmError),
}

impl fmt::Display for BootMmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRam => f.write_str("the device tree lists no usable RAM"),
            Self::RamBeyondLinearMap(r) => write!(
                f,
                "RAM at {:#x} is beyond the linear map's {} bits",
                r.base,
                LINEAR_MAP_SIZE.trailing_zeros()
            ),
            Self::Map(what, e) => write!(f, "mapping {what}: {e}"),
        }
    }
}

/// Build `init_mm`, switch TTBR1 to it and hand RAM to the frame allocator.
///
/// # Safety
///
/// Called once, on the boot CPU, still on the early tables (`arch::aarch64::early`), before
/// anything else uses frames, the heap beyond its boot area, or virtual memory; `m`, `image` and
/// `dtb` describe this machine truly (the RAM it lists is RAM, and the image and the device tree
/// are where they say). A second call would hand RAM that is in use to the frame allocator
/// again, and switch every later mapping to a new, partial set of tables.
pub unsafe fn init(m: &Machine, image: Region, dtb: Region) -> Result<(), BootMmError> {
    let ram: Vec<Region> = m.ram.iter().copied().filter(|r| r.size > 0).collect();
    if ram.is_empty() {
        return Err(BootMmError::NoRam);
    }
    if let Some(r) = ram
        .iter()
        .find(|r| r.base.saturating_add(r.size) > LINEAR_MAP_SIZE as u64)
    {
        return Err(BootMmError::RamBeyondLinearMap(*r));
    }
    let mut holes = m.reserved.clone();
    holes.push(image);
    holes.push(dtb);
    let free = region::subtract(&ram, &holes);

    // 1. The boot frames: inside the image (so not in `free`), mapped by the early window.
    let (frames, frames_len) = early::boot_frames();
    // SAFETY: the boot frames, which the early window maps and nothing has used yet (this runs
    // once, before anything else uses frames: the contract).
    unsafe { FRAMES.add_region(PhysAddr(frames), PhysAddr(frames + frames_len)) };

    // 2. init_mm: the image, then the linear map.
    let img = image_layout();
    let pa = |va: u64| va - KIMAGE_VADDR as u64 + kimage_phys();
    let layout = PhysLayout::new(
        region::subtract(&ram, &m.no_map),
        Region::new(pa(img.start), img.text_end - img.start),
        Region::new(pa(img.start), img.rodata_end - img.start),
    )
    .with_firmware_tables(region::subtract(&m.read_only, &m.no_map));
    let init_mm = InitMm::new(HwEnv, layout).map_err(|e| BootMmError::Map("the pgd", e))?;
    // Every `map_range` below: a tree no CPU uses yet, on the one CPU running, so every range is
    // this function's; and the memory is the image, at its own addresses, and the linear map of
    // RAM, which between them own all of RAM.
    let (start, text_end, rodata_end, end) = (img.start, img.text_end, img.rodata_end, img.end);
    debug_assert_eq!(start, KIMAGE_VADDR as u64);
    let guards = [img.boot_stack_guard, img.boot_exception_stack_guard];
    let map = |va: u64, end: u64, prot: Prot, what| {
        map_range(&init_mm, va, pa(va), end - va, prot, false, what)
    };
    map(start, text_end, Prot::KERNEL_RX, "kernel text")?;
    map(text_end, rodata_end, Prot::KERNEL_RO, "kernel rodata")?;
    let mut va = rodata_end;
    for &g in &guards {
        map(va, g, Prot::KERNEL_RW, "kernel data")?;
        va = g + PAGE_SIZE as u64;
    }
    map(va, end, Prot::KERNEL_RW, "kernel data")?;
    for (r, prot) in init_mm.layout().linear_map() {
        let va = phys_to_virt(PhysAddr(r.base)).0 as u64;
        map_range(&init_mm, va, r.base, r.size, prot, true, "the linear map")?;
    }

    // 3. Switch.
    // SAFETY: init_mm now maps the image (code, data, stacks) at the addresses the early tables
    // used, and the linear map covers the early window (the boot frames, the device tree: RAM,
    // not `no-map`); TTBR0 still holds the identity map, walks enabled.
    unsafe { mmu::replace_ttbr1(init_mm.pgd_phys().0) };
    mmu::disable_ttbr0_walks();

    // 4. The rest of RAM, and the vmalloc region.
    for r in free {
        // SAFETY: RAM (the device tree's, which the contract says is true) minus the
        // reservations, the image and the device tree: used by nothing, mapped by the linear
        // map just installed, and added once (the regions of `subtract` do not overlap).
        unsafe { FRAMES.add_region(PhysAddr(r.base), PhysAddr(r.base + r.size)) };
    }
    // SAFETY: `init_mm`'s pgd is in TTBR1 now (above) and stays there; the vmalloc window is
    // mapped by nothing else (the early tables never used it), and this is the one KernelVm over
    // it (`call_once`).
    KERNEL_VM.call_once(|| unsafe {
        KernelVm::new(init_mm, (VMALLOC_START, VMALLOC_END), mmu::pa_bits())
    });
    Ok(())
}

/// `init_mm.map_range`, kept out of line: boot maps five or more ranges, and under QEMU's TCG
/// each inlined copy of the mapper's entry (its checks, the walk, the barriers) would be
/// translated on its own, at every boot.
#[inline(never)]
fn map_range(
    init_mm: &InitMm<HwEnv>,
    va: u64,
    pa: u64,
    size: u64,
    prot: Prot,
    blocks: bool,
    what: &'static str,
) -> Result<(), BootMmError> {
    // SAFETY: at boot, in a tree no CPU uses yet (see `init`): the range is boot's, and the
    // memory the image or the linear map, which own all of RAM.
    unsafe {
        init_mm.map_range(
            VirtAddr(va as usize),
            PhysAddr(pa),
            size as usize,
            prot,
            blocks,
        )
    }
    .map_err(|e| BootMmError::Map(what, e))
}
