//! The `virtio-drivers` HAL: DMA memory from the frame allocator, reached through the linear
//! map; buffers handed to devices by physical address, or through a bounce buffer when they are
//! not physically contiguous; BAR registers found among the mappings the PCI code made.
//!
//! Every device this HAL serves is DMA-coherent (the probe refuses the others: see
//! `drivers::virtio`), so no cache maintenance is needed: the device snoops the CPUs' caches,
//! and memory stays mapped cacheable only, never through an uncached alias (invariant 10 in
//! `mm`).

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PhysAddr as VirtioPhys};

use super::dma::{Placement, place};
use crate::drivers::iomap::IoMap;
use crate::mm::addr::PhysAddr;
use crate::mm::frame::FRAMES;
use crate::mm::layout::{PAGE_SIZE, image_layout, kimage_phys, phys_to_virt};

/// The HAL `virtio-drivers` is instantiated with.
pub struct VirtioHal;

/// Pages of DMA memory handed out and not yet given back.
static DMA_PAGES: AtomicUsize = AtomicUsize::new(0);
/// Bounce buffers in use: device-visible physical address → (the buffer's address, its layout).
static BOUNCES: Mutex<BTreeMap<u64, (usize, Layout)>> = Mutex::new(BTreeMap::new());
/// Buffers shared so far through a bounce buffer, and directly.
static BOUNCED: AtomicUsize = AtomicUsize::new(0);
static DIRECT: AtomicUsize = AtomicUsize::new(0);
/// The BAR mappings `mmio_phys_to_virt` may answer from: (physical base, length, virtual base).
static BAR_MAPS: Mutex<Vec<(u64, usize, usize)>> = Mutex::new(Vec::new());

/// What the HAL holds right now, for leak checks and the boot log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalStats {
    /// DMA pages allocated and not freed.
    pub dma_pages: usize,
    /// Bounce buffers in use.
    pub bounces_live: usize,
    /// Buffers shared through a bounce buffer since boot.
    pub bounced: usize,
    /// Buffers shared directly since boot.
    pub direct: usize,
}

/// The HAL's counts now.
pub fn stats() -> HalStats {
    HalStats {
        dma_pages: DMA_PAGES.load(Ordering::Relaxed),
        bounces_live: BOUNCES.lock().len(),
        bounced: BOUNCED.load(Ordering::Relaxed),
        direct: DIRECT.load(Ordering::Relaxed),
    }
}

/// A BAR's mapping that `mmio_phys_to_virt` answers from for as long as it lives.
pub struct BarMap(IoMap);

impl BarMap {
    /// Let the HAL translate addresses inside `map`.
    pub fn register(map: IoMap) -> Self {
        BAR_MAPS.lock().push((map.phys().0, map.len(), map.base()));
        Self(map)
    }

    /// The mapping.
    pub fn map(&self) -> &IoMap {
        &self.0
    }
}

impl Drop for BarMap {
    fn drop(&mut self) {
        let va = self.0.base();
        BAR_MAPS.lock().retain(|&(_, _, v)| v != va);
    }
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned, physically contiguous frames that nothing
// else uses until `dma_dealloc` (the frame allocator hands each out once), reached through the
// linear map (valid, RAM); `mmio_phys_to_virt` returns addresses inside a live BAR mapping only;
// `share` returns the physical address of the buffer itself or of a bounce buffer as large,
// which `unshare` copies back and frees.
unsafe impl Hal for VirtioHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (VirtioPhys, NonNull<u8>) {
        match FRAMES.alloc(pages) {
            Some(pa) => {
                let va = phys_to_virt(pa).as_mut_ptr::<u8>();
                // SAFETY: `pages` frames just handed to us, RAM mapped by the linear map, used by
                // nothing else.
                unsafe { core::ptr::write_bytes(va, 0, pages * PAGE_SIZE) };
                DMA_PAGES.fetch_add(pages, Ordering::Relaxed);
                (pa.0, NonNull::new(va).expect("the linear map is not at 0"))
            }
            // virtio-drivers turns a 0 into `Error::DmaError`.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: VirtioPhys, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the trait's contract: `paddr` and `pages` are those of one earlier `dma_alloc`,
        // which took them from `FRAMES.alloc(pages)`, and the device and the driver are done with
        // the memory (virtio-drivers frees a queue's rings after `queue_unset`, a buffer after its
        // request completed). Only the linear map reaches the frames: `dma_alloc` mapped nothing.
        unsafe { FRAMES.free(PhysAddr(paddr), pages) };
        DMA_PAGES.fetch_sub(pages, Ordering::Relaxed);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: VirtioPhys, size: usize) -> NonNull<u8> {
        let va = BAR_MAPS.lock().iter().find_map(|&(pa, len, va)| {
            let off = paddr.checked_sub(pa)? as usize;
            (off.checked_add(size)? <= len).then_some(va + off)
        });
        match va.and_then(|v| NonNull::new(v as *mut u8)) {
            Some(p) => p,
            // The PCI code maps every BAR it assigned before it makes a transport, and
            // `PciTransport` checks a capability lies inside its BAR: this is a bug.
            None => panic!(
                "virtio: {paddr:#x}+{size:#x} is in no mapped BAR (the PCI code maps every BAR it assigns)"
            ),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> VirtioPhys {
        let (va, len) = (buffer.as_ptr() as *mut u8 as usize, buffer.len());
        let img = image_layout();
        match place(va, len, kimage_phys(), (img.end - img.start) as usize) {
            Placement::Direct(pa) => {
                DIRECT.fetch_add(1, Ordering::Relaxed);
                pa
            }
            Placement::Bounce => {
                // From the heap: it lives in the linear map (or the image), physically contiguous.
                // The heap never fails softly (its exhaustion is fatal by design), so a bounce
                // buffer always comes.
                let layout = Layout::from_size_align(len.max(1), 64).expect("a buffer's layout");
                // SAFETY: the layout has a non-zero size.
                let b = unsafe { alloc_zeroed(layout) };
                if b.is_null() {
                    alloc::alloc::handle_alloc_error(layout);
                }
                if direction != BufferDirection::DeviceToDriver {
                    // SAFETY: the caller's buffer is valid for `len` bytes and not accessed by
                    // anything else meanwhile (the trait's contract); `b` is ours, as large.
                    unsafe { core::ptr::copy_nonoverlapping(va as *const u8, b, len) };
                }
                let Placement::Direct(pa) = place(
                    b as usize,
                    len,
                    kimage_phys(),
                    (img.end - img.start) as usize,
                ) else {
                    panic!(
                        "virtio: the heap handed out {b:p}, outside the linear map and the image"
                    );
                };
                BOUNCES.lock().insert(pa, (b as usize, layout));
                BOUNCED.fetch_add(1, Ordering::Relaxed);
                pa
            }
        }
    }

    unsafe fn unshare(paddr: VirtioPhys, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let Some((b, layout)) = BOUNCES.lock().remove(&paddr) else {
            return; // shared directly
        };
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `b` is the bounce buffer `share` made for this buffer, as large; the caller's
            // buffer is valid and not accessed by anything else meanwhile.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    b as *const u8,
                    buffer.as_ptr() as *mut u8,
                    buffer.len(),
                )
            };
        }
        // SAFETY: allocated in `share` with this layout, and the device is done with it.
        unsafe { dealloc(b as *mut u8, layout) };
    }
}
