//! The kernel's virtual memory outside the linear map: `vmap`, `vmalloc`, `ioremap`.
//!
//! Two locks exist, and neither is held while page tables are written:
//! - `vmap_area_lock` (Linux's `vmlist_lock`) serialises the *virtual range* allocator only;
//! - `init_mm`'s page-table lock is private to `pgalloc` and taken there only to install a table.
//!
//! So `ioremap` is: reserve a range (vmap_area_lock, O(log n)), walk and fill the tables with no
//! lock (the range is ours alone, so leaf writes cannot race), done. `iounmap` clears the leaves,
//! invalidates the TLB for the range and waits for it (`unmap_range`), and only then gives the
//! range back: a CPU that gets the range next cannot meet a stale translation (DESIGN invariant 4).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::env::PageTableEnv;
use super::pgalloc::InitMm;
use super::pgtable::{MmError, PhysAddr, Prot};
use super::region::Region;
use super::sync::Mutex;
use super::vmap_area::{VaError, VmapArea, VmapAreaAllocator};
use crate::mm::layout::{PAGE_SIZE, PMD_SIZE, PUD_SIZE};

/// What an area in the vmalloc region holds: decides what unmapping it must do and which
/// function may free it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaKind {
    /// `vmalloc`: pages from the frame allocator, freed by `vfree`.
    Vmalloc,
    /// `vmap`: the caller's pages, unmapped by `vunmap`.
    Vmap,
    /// `ioremap`: device memory, unmapped by `iounmap`.
    Ioremap,
    /// A window reserved with `reserve_window`, mapped and unmapped by its owner through
    /// `init_mm` directly; given back with `release_window`.
    Window,
}

/// Why a vmap/vmalloc/ioremap call failed. Nothing is left mapped or reserved by a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmError {
    ZeroSize,
    /// `phys + size` wraps around the physical address space.
    Wraps {
        phys: u64,
        size: usize,
    },
    /// The range goes beyond what this CPU can address (ID_AA64MMFR0_EL1.PARange).
    BeyondPhysLimit {
        phys: u64,
        size: usize,
        pa_bits: u32,
    },
    /// The range overlaps RAM, which is mapped (cacheable) in the linear map already.
    OverlapsRam {
        phys: u64,
        size: usize,
        ram: Region,
    },
    /// The virtual range allocator refused.
    NoVirtualSpace(VaError),
    /// The table allocators failed (out of memory for a table).
    Table(MmError),
    /// No frame for a vmalloc page.
    OutOfMemory {
        pages: usize,
    },
    /// `addr` is not the start of any area.
    NotMapped {
        addr: usize,
    },
    /// `addr` points inside an area instead of at its start.
    InsideArea {
        addr: usize,
        start: usize,
    },
    /// The area at `addr` was made by another function (e.g. `vfree` of an ioremap).
    WrongKind {
        addr: usize,
        is: AreaKind,
        expected: AreaKind,
    },
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroSize => f.write_str("size 0"),
            Self::Wraps { phys, size } => {
                write!(f, "{phys:#x} + {size:#x} wraps around the address space")
            }
            Self::BeyondPhysLimit {
                phys,
                size,
                pa_bits,
            } => {
                write!(
                    f,
                    "[{phys:#x}, +{size:#x}) is beyond the CPU's {pa_bits}-bit physical address size"
                )
            }
            Self::OverlapsRam { phys, size, ram } => write!(
                f,
                "[{phys:#x}, +{size:#x}) overlaps RAM [{:#x}, {:#x}): RAM is mapped by the linear map, not ioremap",
                ram.base,
                ram.base + ram.size
            ),
            Self::NoVirtualSpace(e) => write!(f, "no virtual space: {e}"),
            Self::Table(e) => write!(f, "page tables: {e}"),
            Self::OutOfMemory { pages } => write!(f, "out of memory for {pages} pages"),
            Self::NotMapped { addr } => write!(f, "{addr:#x} is not the start of a mapped area"),
            Self::InsideArea { addr, start } => write!(
                f,
                "{addr:#x} points inside the area at {start:#x}, not at its start"
            ),
            Self::WrongKind { addr, is, expected } => {
                write!(
                    f,
                    "the area at {addr:#x} is a {is:?} area, not a {expected:?} one"
                )
            }
        }
    }
}

impl From<MmError> for VmError {
    fn from(e: MmError) -> Self {
        Self::Table(e)
    }
}

/// Busy areas: the range allocator, and what each area is. Guarded by `vmap_area_lock`.
struct Areas {
    alloc: VmapAreaAllocator,
    kinds: BTreeMap<usize, AreaKind>,
}

/// `init_mm` plus the vmalloc region's range allocator.
pub struct KernelVm<E: PageTableEnv> {
    pub init_mm: InitMm<E>,
    vmap_area_lock: Mutex<Areas>,
    ram: Vec<Region>,
    pa_bits: u32,
}

impl<E: PageTableEnv> KernelVm<E> {
    /// `ram`: the machine's RAM (ioremap refuses it); `pa_bits`: the CPU's physical address size.
    pub fn new(
        init_mm: InitMm<E>,
        vmalloc: (usize, usize),
        ram: Vec<Region>,
        pa_bits: u32,
    ) -> Self {
        let areas = Areas {
            alloc: VmapAreaAllocator::new(vmalloc.0, vmalloc.1),
            kinds: BTreeMap::new(),
        };
        Self {
            init_mm,
            vmap_area_lock: Mutex::new(areas),
            ram,
            pa_bits,
        }
    }

    /// Reserve a virtual range (plus its guard page) of `size` bytes at `align`.
    fn reserve(&self, size: usize, align: usize, kind: AreaKind) -> Result<VmapArea, VmError> {
        let mut a = self.vmap_area_lock.lock();
        let area = a
            .alloc
            .alloc(size, align)
            .map_err(VmError::NoVirtualSpace)?;
        a.kinds.insert(area.start, kind);
        Ok(area)
    }

    /// Give a range back. Only after its translations are gone (see `unmap_range`).
    fn release(&self, start: usize) {
        let mut a = self.vmap_area_lock.lock();
        a.kinds.remove(&start);
        let freed = a.alloc.free(start);
        debug_assert!(freed.is_ok(), "releasing {start:#x}: {freed:?}");
    }

    /// The area that starts at `addr` and is of kind `kind`.
    fn lookup(&self, addr: usize, kind: AreaKind) -> Result<VmapArea, VmError> {
        let a = self.vmap_area_lock.lock();
        let area = a.alloc.find(addr).ok_or(VmError::NotMapped { addr })?;
        if area.start != addr {
            return Err(VmError::InsideArea {
                addr,
                start: area.start,
            });
        }
        let is = a.kinds.get(&addr).copied().unwrap_or(AreaKind::Vmap);
        if is != kind {
            return Err(VmError::WrongKind {
                addr,
                is,
                expected: kind,
            });
        }
        Ok(area)
    }

    /// Map `pages` (physical page addresses, in order) contiguously with `prot`.
    pub fn vmap(&self, pages: &[PhysAddr], prot: Prot) -> Result<usize, VmError> {
        self.vmap_kind(pages, prot, AreaKind::Vmap, PAGE_SIZE)
    }

    fn vmap_kind(
        &self,
        pages: &[PhysAddr],
        prot: Prot,
        kind: AreaKind,
        align: usize,
    ) -> Result<usize, VmError> {
        if pages.is_empty() {
            return Err(VmError::ZeroSize);
        }
        let area = self.reserve(pages.len() * PAGE_SIZE, align, kind)?;
        for (i, pa) in pages.iter().enumerate() {
            let va = area.start + i * PAGE_SIZE;
            if let Err(e) = self.init_mm.map_range(va, pa.0, PAGE_SIZE, prot, false) {
                self.init_mm.unmap_range(area.start, i * PAGE_SIZE);
                self.release(area.start);
                return Err(e.into());
            }
        }
        Ok(area.start)
    }

    /// Unmap a `vmap` area. The pages stay the caller's.
    pub fn vunmap(&self, addr: usize) -> Result<(), VmError> {
        let area = self.lookup(addr, AreaKind::Vmap)?;
        self.init_mm.unmap_range(area.start, area.size);
        self.release(area.start);
        Ok(())
    }

    /// `size` bytes (rounded up to pages) of fresh, zeroed, virtually contiguous memory.
    pub fn vmalloc(&self, size: usize) -> Result<usize, VmError> {
        self.vmalloc_inner(size, PAGE_SIZE)
    }

    fn vmalloc_inner(&self, size: usize, align: usize) -> Result<usize, VmError> {
        if size == 0 {
            return Err(VmError::ZeroSize);
        }
        let n = size.div_ceil(PAGE_SIZE);
        let env = self.init_mm.env();
        let mut pages = Vec::with_capacity(n);
        for _ in 0..n {
            match env.alloc_table_frame() {
                Some(pa) => pages.push(pa),
                None => {
                    pages.iter().for_each(|&pa| env.free_table_frame(pa));
                    return Err(VmError::OutOfMemory { pages: n });
                }
            }
        }
        for &pa in &pages {
            env.zero_table(pa);
        }
        self.vmap_kind(&pages, Prot::KERNEL_RW, AreaKind::Vmalloc, align)
            .inspect_err(|_| {
                pages.iter().for_each(|&pa| env.free_table_frame(pa));
            })
    }

    /// A kernel stack of `size` bytes: fresh pages with an unmapped guard page *below* them (the
    /// area's own guard page is above), so an overflow faults instead of corrupting memory.
    /// Returns the stack's top (its highest address + 1). Freed with `vfree(top - size - PAGE_SIZE)`.
    pub fn vmalloc_stack(&self, size: usize) -> Result<usize, VmError> {
        let n = size.div_ceil(PAGE_SIZE);
        if n == 0 {
            return Err(VmError::ZeroSize);
        }
        let env = self.init_mm.env();
        let area = self.reserve((n + 1) * PAGE_SIZE, PAGE_SIZE, AreaKind::Vmalloc)?;
        for i in 0..n {
            let va = area.start + (i + 1) * PAGE_SIZE;
            let mapped = match env.alloc_table_frame() {
                Some(pa) => self
                    .init_mm
                    .map_range(va, pa.0, PAGE_SIZE, Prot::KERNEL_RW, false)
                    .map_err(|e| {
                        env.free_table_frame(pa);
                        VmError::from(e)
                    }),
                None => Err(VmError::OutOfMemory { pages: n }),
            };
            if let Err(e) = mapped {
                // vfree frees the pages mapped so far (it finds them by walking the tables).
                let _ = self.vfree(area.start);
                return Err(e);
            }
        }
        Ok(area.start + (n + 1) * PAGE_SIZE)
    }

    /// Reserve a window of virtual space for a caller that maps it itself with
    /// `init_mm.map_range`/`unmap_range` (workloads that aim at particular table slots).
    pub fn reserve_window(&self, size: usize, align: usize) -> Result<usize, VmError> {
        self.reserve(size, align, AreaKind::Window).map(|a| a.start)
    }

    /// Give back a window; its owner has unmapped everything in it.
    pub fn release_window(&self, start: usize) -> Result<(), VmError> {
        self.lookup(start, AreaKind::Window)?;
        self.release(start);
        Ok(())
    }

    /// Like [`vmalloc`](Self::vmalloc), at a virtual address aligned to `align` (a power of two).
    pub fn vmalloc_aligned(&self, size: usize, align: usize) -> Result<usize, VmError> {
        self.vmalloc_inner(size, align)
    }

    /// Free a `vmalloc` area and its pages.
    pub fn vfree(&self, addr: usize) -> Result<(), VmError> {
        let area = self.lookup(addr, AreaKind::Vmalloc)?;
        let pages: Vec<PhysAddr> = (0..area.size / PAGE_SIZE)
            .filter_map(|i| {
                self.init_mm
                    .translate(area.start + i * PAGE_SIZE)
                    .map(|t| t.pa)
            })
            .collect();
        self.init_mm.unmap_range(area.start, area.size);
        self.release(area.start);
        // The TLB no longer holds these pages (unmap_range waited for the invalidation).
        let env = self.init_mm.env();
        pages.into_iter().for_each(|pa| env.free_table_frame(pa));
        Ok(())
    }

    /// Map device registers at `phys` (any alignment) as Device-nGnRE, execute-never.
    /// Returns the virtual address of `phys` itself (the sub-page offset is kept).
    pub fn ioremap(&self, phys: u64, size: usize) -> Result<usize, VmError> {
        self.ioremap_prot(phys, size, Prot::DEVICE)
    }

    /// Like [`ioremap`](Self::ioremap) but Normal non-cacheable (write-combining).
    pub fn ioremap_wc(&self, phys: u64, size: usize) -> Result<usize, VmError> {
        self.ioremap_prot(phys, size, Prot::DEVICE_WC)
    }

    pub fn ioremap_prot(&self, phys: u64, size: usize, prot: Prot) -> Result<usize, VmError> {
        if size == 0 {
            return Err(VmError::ZeroSize);
        }
        let last = phys
            .checked_add(size as u64 - 1)
            .ok_or(VmError::Wraps { phys, size })?;
        if self.pa_bits < 64 && last >> self.pa_bits != 0 {
            return Err(VmError::BeyondPhysLimit {
                phys,
                size,
                pa_bits: self.pa_bits,
            });
        }
        if let Some(&ram) = self
            .ram
            .iter()
            .find(|r| phys <= r.base.saturating_add(r.size - 1) && r.base <= last)
        {
            return Err(VmError::OverlapsRam { phys, size, ram });
        }
        let offset = (phys % PAGE_SIZE as u64) as usize;
        let base = phys - offset as u64;
        let len = (offset + size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        // Huge ioremap: align the virtual range like the physical one so blocks can be used.
        let align = [PUD_SIZE, PMD_SIZE]
            .into_iter()
            .find(|&b| len >= b && base.is_multiple_of(b as u64))
            .unwrap_or(PAGE_SIZE);
        let area = self.reserve(len, align, AreaKind::Ioremap)?;
        if let Err(e) = self.init_mm.map_range(area.start, base, len, prot, true) {
            // map_range has already cleared what it mapped.
            self.release(area.start);
            return Err(e.into());
        }
        Ok(area.start + offset)
    }

    /// Undo an `ioremap`. `addr` may carry the sub-page offset `ioremap` returned.
    pub fn iounmap(&self, addr: usize) -> Result<(), VmError> {
        let start = addr & !(PAGE_SIZE - 1);
        let area = self.lookup(start, AreaKind::Ioremap).map_err(|e| match e {
            VmError::NotMapped { .. } => VmError::NotMapped { addr },
            e => e,
        })?;
        self.init_mm.unmap_range(area.start, area.size);
        self.release(area.start);
        Ok(())
    }

    /// Live areas and free bytes in the vmalloc region (for balance checks).
    pub fn area_stats(&self) -> (usize, usize) {
        let a = self.vmap_area_lock.lock();
        (a.alloc.live_areas(), a.alloc.free_bytes())
    }
}
