//! The kernel's virtual memory outside the linear map: `vmap`, `vmalloc`, `ioremap`.
//!
//! Its locks, none of them held while page tables are written:
//! - each CPU's vmap node (see [`NODES`]) keeps the small areas that CPU allocates, in slots of
//!   regions it took from the global allocator, and its lazily freed areas, each under a lock
//!   that other CPUs take only to free an area of that node or to purge;
//! - `vmap_area_lock` (Linux's `free_vmap_area_lock`) serialises the global *virtual range*
//!   allocator: large areas, windows, and the nodes' regions;
//! - `init_mm`'s page-table lock is private to `pgalloc` and taken there only to install a table.
//!
//! So `ioremap` of a few pages is: pop a slot off this CPU's node (its own lock, O(1)), walk and
//! fill the tables with no lock (the range is ours alone, so leaf writes cannot race), done.
//!
//! # Lazy unmapping
//!
//! `iounmap`, `vunmap` and `vfree` clear the area's leaves at once but do not invalidate the TLB:
//! the area is marked [`AreaKind::Lazy`] and put on a purge list (Linux's `free_vmap_area_noflush`
//! and `vunmap_range_noflush`). When the lazily freed areas add up to more than
//! [`lazy_max_pages`] pages, one CPU purges them all: one TLB invalidation for the lot (per page
//! below `TLBI_MAX_OPS` pages in all, else one `tlbi vmalle1is`), completed, and only then are
//! their ranges given back to the range allocator and a vmalloc area's pages to the frame
//! allocator (Linux's `__purge_vmap_area_lazy`; Linux frees the pages earlier, at `vfree`: here
//! they wait, so that no CPU can still reach a page through a stale TLB entry once someone else
//! owns it). Until its purge, an area's range is busy: it cannot be handed out again, so nothing
//! can meet a stale translation (invariant 4 in `mm`). [`KernelVm::vm_unmap_aliases`] purges now;
//! a range allocation that finds no space purges and tries again.

use alloc::vec::Vec;
use core::fmt;

use super::env::PageTableEnv;
use super::pgalloc::InitMm;
use super::pgtable::{IoProt, MmError, PhysAddr, Prot};
use super::profile::{self, Lock};
use super::region::Region;
use super::sync::{AtomicU64, AtomicUsize, Mutex, Ordering};
use super::vmap_area::{VaError, VmapArea, VmapAreaAllocator};
use super::vmap_node::{REGION, SLOT, SLOT_MAX_PAGES, SlotArena};
use crate::mm::layout::{PAGE_SIZE, PMD_SIZE, PUD_SIZE};

/// What an area in the vmalloc region holds: decides what unmapping it must do and which
/// function may free it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
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
    /// Freed, its leaves cleared, waiting for the purge that invalidates its TLB entries.
    Lazy,
    /// A per-CPU node's region, in the global allocator (see [`REGION`]).
    Region,
}

impl AreaKind {
    const ALL: [AreaKind; 6] = [
        Self::Vmalloc,
        Self::Vmap,
        Self::Ioremap,
        Self::Window,
        Self::Lazy,
        Self::Region,
    ];

    /// The kind stored as the area's tag in the range allocator.
    fn from_tag(tag: usize) -> Self {
        Self::ALL[tag]
    }
}

/// Lazily freed pages, in all, above which a free purges: Linux's `lazy_max_pages()`, 32 MiB per
/// power of two of online CPUs (`fls(cpus) * 32 MiB`).
pub fn lazy_max_pages(online_cpus: usize) -> usize {
    let fls = usize::BITS - online_cpus.max(1).leading_zeros();
    fls as usize * ((32 << 20) / PAGE_SIZE)
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
    /// The area at `addr` was freed already (its range waits for the lazy purge).
    AlreadyFreed {
        addr: usize,
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
            Self::AlreadyFreed { addr } => write!(f, "the area at {addr:#x} was freed already"),
        }
    }
}

impl From<MmError> for VmError {
    fn from(e: MmError) -> Self {
        Self::Table(e)
    }
}

/// Busy areas and what each is (its `AreaKind`, kept as the range allocator's tag). Guarded by
/// `vmap_area_lock`.
struct Areas {
    alloc: VmapAreaAllocator,
}

/// Areas freed lazily: leaves cleared, TLB entries possibly still live.
#[derive(Default)]
struct LazyList {
    /// `(start, end)` of each area.
    areas: Vec<(usize, usize)>,
    /// The frames of the vmalloc areas among them, freed after the purge.
    pages: Vec<PhysAddr>,
}

/// Counts of the lazy purge, for reports and balance checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LazyStats {
    /// Areas waiting for a purge.
    pub areas: usize,
    /// Pages those areas span.
    pub pages: usize,
    /// Purges so far.
    pub purges: u64,
}

/// Per-CPU vmap nodes (Linux 6.9's `vmap_node`, in a simpler shape). Each CPU allocates its
/// small areas (up to [`SLOT_MAX_PAGES`] pages) from its own regions of the window, fixed-size
/// slots in [`REGION`]-sized pieces that it takes from the global allocator once
/// (`vmap_node::SlotArena`), under its own lock, and keeps its lazily freed areas on its own list:
/// CPUs mapping and unmapping at once meet on no virtual-area lock, and a small area costs no
/// search-tree work. A region's owner is found from an address alone (`KernelVm::home`), so a
/// free on another CPU, or the purge, takes the owner's lock. Larger areas and windows come from
/// the global allocator, as every area does when the window cannot hold a region.
pub const NODES: usize = 32;

/// One CPU's node: its slots and its lazy list.
struct VmapNode {
    slots: Mutex<SlotArena>,
    lazy: Mutex<LazyList>,
}

/// The bookkeeping of some areas, global or a node's: what `lookup`, `release` and the purge use.
trait Book {
    /// The live area whose reservation holds `addr`, with its tag.
    fn find_tagged(&self, addr: usize) -> Option<(VmapArea, usize)>;
    fn set_tag(&mut self, start: usize, tag: usize) -> Option<usize>;
    fn free(&mut self, start: usize) -> Result<VmapArea, VaError>;
}

impl Book for VmapAreaAllocator {
    fn find_tagged(&self, addr: usize) -> Option<(VmapArea, usize)> {
        let area = VmapAreaAllocator::find(self, addr)?;
        Some((area, VmapAreaAllocator::tag(self, area.start)?))
    }
    fn set_tag(&mut self, start: usize, tag: usize) -> Option<usize> {
        VmapAreaAllocator::set_tag(self, start, tag)
    }
    fn free(&mut self, start: usize) -> Result<VmapArea, VaError> {
        VmapAreaAllocator::free(self, start)
    }
}

impl Book for SlotArena {
    fn find_tagged(&self, addr: usize) -> Option<(VmapArea, usize)> {
        SlotArena::find_tagged(self, addr)
    }
    fn set_tag(&mut self, start: usize, tag: usize) -> Option<usize> {
        SlotArena::set_tag(self, start, tag)
    }
    fn free(&mut self, start: usize) -> Result<VmapArea, VaError> {
        SlotArena::free(self, start)
    }
}

/// Where an area's bookkeeping lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Home {
    Global,
    Node(usize),
}

/// `init_mm` plus the vmalloc region's range allocators.
pub struct KernelVm<E: PageTableEnv> {
    pub init_mm: InitMm<E>,
    /// The global allocator: large areas, windows, and the nodes' regions.
    vmap_area_lock: Mutex<Areas>,
    nodes: Vec<VmapNode>,
    /// Per [`REGION`] of address space from `region_base`: 1 + the node that owns the region
    /// there, or 0.
    region_owner: Vec<core::sync::atomic::AtomicU8>,
    /// The window's start rounded down to a region.
    region_base: usize,
    /// Regions the nodes hold in all (each takes one guard page from the global allocator).
    regions: AtomicUsize,
    /// Whether small areas come from the nodes (off only in host tests that need every area at a
    /// predictable place).
    use_nodes: bool,
    /// Pages spanned by the lazily freed areas, on every node's list.
    lazy_pages: AtomicUsize,
    /// Above this many lazily freed pages, a free purges ([`lazy_max_pages`]).
    lazy_max: AtomicUsize,
    /// One purge at a time: 1 while a CPU purges.
    purging: AtomicUsize,
    purges: AtomicU64,
    pa_bits: u32,
}

impl<E: PageTableEnv> KernelVm<E> {
    /// `vmalloc`: the virtual window areas come from; `pa_bits`: the CPU's physical address
    /// size. What is RAM (which ioremap refuses) is `init_mm`'s [`PhysLayout`]. The lazy-purge
    /// threshold starts as for one CPU ([`set_online_cpus`](Self::set_online_cpus) raises it).
    ///
    /// [`PhysLayout`]: super::phys_layout::PhysLayout
    pub fn new(init_mm: InitMm<E>, vmalloc: (usize, usize), pa_bits: u32) -> Self {
        let areas = Areas {
            alloc: VmapAreaAllocator::new(vmalloc.0, vmalloc.1),
        };
        let region_base = vmalloc.0 / REGION * REGION;
        let nr_regions = vmalloc.1.div_ceil(REGION) - region_base / REGION;
        Self {
            init_mm,
            vmap_area_lock: Mutex::new(areas),
            nodes: (0..NODES)
                .map(|_| VmapNode {
                    slots: Mutex::new(SlotArena::new()),
                    lazy: Mutex::new(LazyList::default()),
                })
                .collect(),
            region_owner: (0..nr_regions)
                .map(|_| core::sync::atomic::AtomicU8::new(0))
                .collect(),
            region_base,
            regions: AtomicUsize::new(0),
            use_nodes: true,
            lazy_pages: AtomicUsize::new(0),
            lazy_max: AtomicUsize::new(lazy_max_pages(1)),
            purging: AtomicUsize::new(0),
            purges: AtomicU64::new(0),
            pa_bits,
        }
    }

    /// Allocate every area from the global allocator, as if there were no nodes: for host tests
    /// that need an area at a predictable place in a small window.
    #[cfg(test)]
    fn without_nodes(mut self) -> Self {
        self.use_nodes = false;
        self
    }

    /// Size the lazy-purge threshold for `cpus` online CPUs ([`lazy_max_pages`]).
    pub fn set_online_cpus(&self, cpus: usize) {
        self.lazy_max.store(lazy_max_pages(cpus), Ordering::Relaxed);
    }

    /// Set the lazy-purge threshold directly, in pages (0: purge on every free). For tests.
    pub fn set_lazy_max_pages(&self, pages: usize) {
        self.lazy_max.store(pages, Ordering::Relaxed);
    }

    /// Reserve a virtual range (plus its guard page) of `size` bytes at `align`: from this CPU's
    /// node when it is small, else from the global allocator. When there is no room, lazily freed
    /// areas are purged and the allocation tried once more (Linux's `alloc_vmap_area` does the
    /// same).
    ///
    /// `fail=areas:...` (`fault_inject::FAIL_AREAS`) makes this fail as a full region would, so
    /// that every caller's "no virtual space" path runs; it is decided before any lock is taken
    /// and reserves nothing.
    fn reserve(&self, size: usize, align: usize, kind: AreaKind) -> Result<VmapArea, VmError> {
        if super::fault_inject::FAIL_AREAS.should_fail() {
            return Err(VmError::NoVirtualSpace(VaError::NoSpace {
                size: size.div_ceil(PAGE_SIZE) * PAGE_SIZE,
                align,
            }));
        }
        let small = self.use_nodes
            && kind != AreaKind::Window
            && (1..=SLOT_MAX_PAGES * PAGE_SIZE).contains(&size)
            && align <= SLOT;
        let try_alloc = || {
            if small && let Some(area) = self.node_alloc(size, align, kind) {
                return Ok(area);
            }
            profile::acquire(Lock::VmapArea, || self.vmap_area_lock.lock())
                .alloc
                .alloc_tagged(size, align, kind as usize)
        };
        match try_alloc() {
            Err(VaError::NoSpace { .. }) if self.lazy_pages.load(Ordering::Relaxed) > 0 => {
                self.purge(true);
                try_alloc()
            }
            r => r,
        }
        .map_err(VmError::NoVirtualSpace)
    }

    /// A slot from this CPU's node, in a new region it takes from the global allocator when its
    /// regions are full; `None` when the window has no room for a region (the caller then
    /// allocates globally).
    fn node_alloc(&self, size: usize, align: usize, kind: AreaKind) -> Option<VmapArea> {
        let node = self.init_mm.env().cpu_id() % NODES;
        let mut slots = profile::acquire(Lock::VmapNode, || self.nodes[node].slots.lock());
        if let Some(area) = slots.alloc(size, align, kind as usize) {
            return Some(area);
        }
        // Its last page is the global allocator's guard page, which falls on the guard page of
        // the region's last slot.
        let region = profile::acquire(Lock::VmapArea, || self.vmap_area_lock.lock())
            .alloc
            .alloc_tagged(REGION - PAGE_SIZE, REGION, AreaKind::Region as usize)
            .ok()?;
        self.region_owner[(region.start - self.region_base) / REGION]
            .store(node as u8 + 1, Ordering::Release);
        self.regions.fetch_add(1, Ordering::Relaxed);
        slots.add_region(region.start);
        slots.alloc(size, align, kind as usize)
    }

    /// Where the bookkeeping of the area holding `addr` lives: the node whose block holds it, or
    /// the global allocator.
    fn home(&self, addr: usize) -> Home {
        let owner = addr
            .checked_sub(self.region_base)
            .and_then(|off| self.region_owner.get(off / REGION))
            .map_or(0, |o| o.load(Ordering::Acquire));
        match owner {
            0 => Home::Global,
            n => Home::Node(usize::from(n) - 1),
        }
    }

    /// Run `f` on the bookkeeping that keeps the area holding `addr`, under its lock.
    fn with_allocator<R>(&self, addr: usize, f: impl FnOnce(&mut dyn Book) -> R) -> R {
        match self.home(addr) {
            Home::Global => {
                f(&mut profile::acquire(Lock::VmapArea, || self.vmap_area_lock.lock()).alloc)
            }
            Home::Node(n) => f(&mut *profile::acquire(Lock::VmapNode, || {
                self.nodes[n].slots.lock()
            })),
        }
    }

    /// Give a range back, now: only once no TLB can hold a translation of it.
    fn release(&self, start: usize) {
        let freed = self.with_allocator(start, |a| a.free(start));
        debug_assert!(freed.is_ok(), "releasing {start:#x}: {freed:?}");
    }

    /// The area that starts at `addr` and is of kind `kind`; with `claim`, mark it
    /// [`AreaKind::Lazy`] in the same critical section, so that exactly one caller frees it.
    fn lookup(&self, addr: usize, kind: AreaKind, claim: bool) -> Result<VmapArea, VmError> {
        self.with_allocator(addr, |a| {
            let (area, tag) = a.find_tagged(addr).ok_or(VmError::NotMapped { addr })?;
            if area.start != addr {
                return Err(VmError::InsideArea {
                    addr,
                    start: area.start,
                });
            }
            let is = AreaKind::from_tag(tag);
            match is {
                AreaKind::Lazy => return Err(VmError::AlreadyFreed { addr }),
                // A node's region, seen from the global allocator: no area starts there.
                AreaKind::Region => return Err(VmError::NotMapped { addr }),
                _ if is != kind => {
                    return Err(VmError::WrongKind {
                        addr,
                        is,
                        expected: kind,
                    });
                }
                _ => {}
            }
            if claim {
                a.set_tag(addr, AreaKind::Lazy as usize);
            }
            Ok(area)
        })
    }

    /// Free a claimed area lazily: clear its leaves, put it (and, for a vmalloc area,
    /// `with_pages`, its frames) on this CPU's lazy list, and purge if the lazily freed total
    /// passed the threshold.
    fn free_lazily(&self, area: VmapArea, with_pages: bool) {
        let node = self.init_mm.env().cpu_id() % NODES;
        {
            let mut l = profile::acquire(Lock::VmapNode, || self.nodes[node].lazy.lock());
            let l = &mut *l;
            self.init_mm
                .unmap_range_noflush(area.start, area.size, &mut |pa, size| {
                    if with_pages {
                        l.pages.extend(
                            (0..size / PAGE_SIZE).map(|i| PhysAddr(pa.0 + (i * PAGE_SIZE) as u64)),
                        );
                    }
                });
            l.areas.push((area.start, area.end()));
        }
        let pages = area.size / PAGE_SIZE;
        let total = self.lazy_pages.fetch_add(pages, Ordering::AcqRel) + pages;
        if total > self.lazy_max.load(Ordering::Relaxed) {
            self.purge(false);
        }
    }

    /// Purge every lazily freed area, every node's: one TLB invalidation for all of them,
    /// completed, then their ranges back to their allocators and their pages to the frame
    /// allocator. One CPU purges at a time; with `wait` false a CPU that finds another purging
    /// leaves it to that one (the areas it added are either in that purge or left for the next).
    fn purge(&self, wait: bool) {
        loop {
            if self
                .purging
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
            if !wait {
                return;
            }
            core::hint::spin_loop();
        }
        let mut all = LazyList::default();
        for node in &self.nodes {
            let mut l = profile::acquire(Lock::VmapNode, || node.lazy.lock());
            all.areas.append(&mut l.areas);
            all.pages.append(&mut l.pages);
        }
        if !all.areas.is_empty() {
            self.init_mm.flush_tlb_kernel_ranges(&all.areas);
            // Back to their allocators, one lock hold per run of areas with the same home. A
            // node's list holds mostly areas of its own regions, in the order they were freed,
            // so the runs are long without sorting.
            let homes: Vec<Home> = all
                .areas
                .iter()
                .map(|&(start, _)| self.home(start))
                .collect();
            let mut i = 0;
            while i < homes.len() {
                let run = homes[i..].iter().take_while(|&&h| h == homes[i]).count();
                self.with_allocator(all.areas[i].0, |a| {
                    for &(start, _) in &all.areas[i..i + run] {
                        let freed = a.free(start);
                        debug_assert!(freed.is_ok(), "purging {start:#x}: {freed:?}");
                    }
                });
                i += run;
            }
            let n: usize = all
                .areas
                .iter()
                .map(|&(start, end)| (end - start) / PAGE_SIZE)
                .sum();
            self.lazy_pages.fetch_sub(n, Ordering::AcqRel);
            let env = self.init_mm.env();
            // SAFETY: the pages of vmalloc areas freed with `vfree`, unmapped, and no TLB holds a
            // translation to them any more (the invalidation above completed).
            all.pages
                .into_iter()
                .for_each(|pa| unsafe { env.free_table_frame(pa) });
            self.purges.fetch_add(1, Ordering::Relaxed);
        }
        self.purging.store(0, Ordering::Release);
    }

    /// Purge every lazily freed area now (Linux's `vm_unmap_aliases`): afterwards no CPU holds a
    /// TLB entry for any freed area, and their ranges and pages are free.
    pub fn vm_unmap_aliases(&self) {
        self.purge(true);
    }

    /// The lazy purge's counts.
    pub fn lazy_stats(&self) -> LazyStats {
        LazyStats {
            areas: self.nodes.iter().map(|n| n.lazy.lock().areas.len()).sum(),
            pages: self.lazy_pages.load(Ordering::Relaxed),
            purges: self.purges.load(Ordering::Relaxed),
        }
    }

    /// Map `pages` (physical page addresses, in order) contiguously with `prot`, in one walk.
    pub fn vmap(&self, pages: &[PhysAddr], prot: Prot) -> Result<usize, VmError> {
        self.vmap_kind(pages, prot, AreaKind::Vmap, PAGE_SIZE, 0)
    }

    /// `vmap` into a fresh area of `kind` at `align`, `lead` unmapped pages first (a stack's
    /// guard page).
    fn vmap_kind(
        &self,
        pages: &[PhysAddr],
        prot: Prot,
        kind: AreaKind,
        align: usize,
        lead: usize,
    ) -> Result<usize, VmError> {
        if pages.is_empty() {
            return Err(VmError::ZeroSize);
        }
        let area = self.reserve((lead + pages.len()) * PAGE_SIZE, align, kind)?;
        // map_pages leaves nothing mapped when it fails.
        if let Err(e) = self
            .init_mm
            .map_pages(area.start + lead * PAGE_SIZE, pages, prot)
        {
            self.release(area.start);
            return Err(e.into());
        }
        Ok(area.start)
    }

    /// Unmap a `vmap` area (lazily, see the module documentation). The pages stay the caller's,
    /// but must not be reused for anything else before the purge ([`vm_unmap_aliases`] forces
    /// one).
    ///
    /// [`vm_unmap_aliases`]: Self::vm_unmap_aliases
    pub fn vunmap(&self, addr: usize) -> Result<(), VmError> {
        let area = self.lookup(addr, AreaKind::Vmap, true)?;
        self.free_lazily(area, false);
        Ok(())
    }

    /// `size` bytes (rounded up to pages) of virtually contiguous memory, not zeroed (Linux's
    /// `vmalloc`; [`vzalloc`](Self::vzalloc) zeroes).
    pub fn vmalloc(&self, size: usize) -> Result<usize, VmError> {
        self.vmalloc_inner(size, PAGE_SIZE, false, 0)
    }

    /// Like [`vmalloc`](Self::vmalloc), zeroed.
    pub fn vzalloc(&self, size: usize) -> Result<usize, VmError> {
        self.vmalloc_inner(size, PAGE_SIZE, true, 0)
    }

    /// Allocate the pages, zero them if asked, map them after `lead` unmapped pages.
    fn vmalloc_inner(
        &self,
        size: usize,
        align: usize,
        zero: bool,
        lead: usize,
    ) -> Result<usize, VmError> {
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
                    // SAFETY: frames this call was just handed, used for nothing yet.
                    pages
                        .iter()
                        .for_each(|&pa| unsafe { env.free_table_frame(pa) });
                    return Err(VmError::OutOfMemory { pages: n });
                }
            }
        }
        if zero {
            for &pa in &pages {
                // SAFETY: frames just handed out to this call, mapped nowhere yet.
                unsafe { env.zero_table(pa) };
            }
        }
        self.vmap_kind(&pages, Prot::KERNEL_RW, AreaKind::Vmalloc, align, lead)
            .inspect_err(|_| {
                // SAFETY: vmap_kind failed and left nothing mapped: the frames are ours alone.
                pages
                    .iter()
                    .for_each(|&pa| unsafe { env.free_table_frame(pa) });
            })
    }

    /// A kernel stack of `size` bytes: fresh zeroed pages with an unmapped guard page *below* them
    /// (the area's own guard page is above), so an overflow faults instead of corrupting memory.
    /// Returns the stack's top (its highest address + 1). Freed with `vfree(top - size -
    /// PAGE_SIZE)`.
    pub fn vmalloc_stack(&self, size: usize) -> Result<usize, VmError> {
        let n = size.div_ceil(PAGE_SIZE);
        let base = self.vmalloc_inner(size, PAGE_SIZE, true, 1)?;
        Ok(base + (n + 1) * PAGE_SIZE)
    }

    /// Reserve a window of virtual space for a caller that maps it itself with
    /// `init_mm.map_range`/`unmap_range` (workloads that aim at particular table slots).
    pub fn reserve_window(&self, size: usize, align: usize) -> Result<usize, VmError> {
        self.reserve(size, align, AreaKind::Window).map(|a| a.start)
    }

    /// Give back a window at once; its owner has unmapped everything in it with
    /// `init_mm.unmap_range`, which invalidated the TLB.
    pub fn release_window(&self, start: usize) -> Result<(), VmError> {
        self.lookup(start, AreaKind::Window, false)?;
        self.release(start);
        Ok(())
    }

    /// Like [`vmalloc`](Self::vmalloc), at a virtual address aligned to `align` (a power of two).
    pub fn vmalloc_aligned(&self, size: usize, align: usize) -> Result<usize, VmError> {
        // Every page address meets an alignment below a page (Linux's `__vmalloc_node` takes
        // them too); the range allocator only knows page-sized and larger ones.
        let align = if align.is_power_of_two() {
            align.max(PAGE_SIZE)
        } else {
            align
        };
        self.vmalloc_inner(size, align, false, 0)
    }

    /// Free a `vmalloc` area (lazily: its pages go back after the purge).
    pub fn vfree(&self, addr: usize) -> Result<(), VmError> {
        let area = self.lookup(addr, AreaKind::Vmalloc, true)?;
        self.free_lazily(area, true);
        Ok(())
    }

    /// Map device registers at `phys` (any alignment) as Device-nGnRE, execute-never.
    /// Returns the virtual address of `phys` itself (the sub-page offset is kept).
    pub fn ioremap(&self, phys: u64, size: usize) -> Result<usize, VmError> {
        self.ioremap_prot(phys, size, IoProt::DeviceNgnre)
    }

    /// Like [`ioremap`](Self::ioremap) but Normal non-cacheable (write-combining).
    pub fn ioremap_wc(&self, phys: u64, size: usize) -> Result<usize, VmError> {
        self.ioremap_prot(phys, size, IoProt::NormalNc)
    }

    /// Like [`ioremap`](Self::ioremap) but Device-nGnRnE (non-posted writes).
    pub fn ioremap_np(&self, phys: u64, size: usize) -> Result<usize, VmError> {
        self.ioremap_prot(phys, size, IoProt::DeviceNgnrne)
    }

    /// Map device memory at `phys` (any alignment) as `prot`, execute-never; returns the virtual
    /// address of `phys` itself. [`IoProt`] offers device and non-cacheable types only, so a
    /// cacheable or executable MMIO mapping cannot be asked for:
    ///
    /// ```compile_fail,E0308
    /// # use initmm::mm::{env::PageTableEnv, pgtable::Prot, vm::KernelVm};
    /// # fn f(vm: &KernelVm<impl PageTableEnv>) {
    /// let uart = vm.ioremap_prot(0x0900_0000, 0x1000, Prot::KERNEL_RX); // expected `IoProt`
    /// # }
    /// ```
    ///
    /// while the same call with an `IoProt` builds:
    ///
    /// ```
    /// # use initmm::mm::{env::PageTableEnv, pgtable::IoProt, vm::KernelVm};
    /// # fn f(vm: &KernelVm<impl PageTableEnv>) {
    /// let uart = vm.ioremap_prot(0x0900_0000, 0x1000, IoProt::DeviceNgnre);
    /// # }
    /// ```
    pub fn ioremap_prot(&self, phys: u64, size: usize, prot: IoProt) -> Result<usize, VmError> {
        let prot = prot.prot();
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
            .init_mm
            .layout()
            .memory()
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

    /// Undo an `ioremap` (lazily, see the module documentation). `addr` may carry the sub-page
    /// offset `ioremap` returned.
    pub fn iounmap(&self, addr: usize) -> Result<(), VmError> {
        let start = addr & !(PAGE_SIZE - 1);
        // Errors name the caller's address, offset included.
        let area = self
            .lookup(start, AreaKind::Ioremap, true)
            .map_err(|e| match e {
                VmError::NotMapped { .. } => VmError::NotMapped { addr },
                VmError::InsideArea { start, .. } => VmError::InsideArea { addr, start },
                VmError::WrongKind { is, expected, .. } => {
                    VmError::WrongKind { addr, is, expected }
                }
                VmError::AlreadyFreed { .. } => VmError::AlreadyFreed { addr },
                e => e,
            })?;
        self.free_lazily(area, false);
        Ok(())
    }

    /// Live areas (lazily freed ones included, until their purge) and free bytes in the vmalloc
    /// region, the nodes' regions counted as the space they hand out. A balance check calls
    /// [`vm_unmap_aliases`](Self::vm_unmap_aliases) first.
    pub fn area_stats(&self) -> (usize, usize) {
        let (mut live, mut free) = {
            let a = self.vmap_area_lock.lock();
            (a.alloc.live_areas(), a.alloc.free_bytes())
        };
        let regions = self.regions.load(Ordering::Relaxed);
        // Each region is one global area, whose guard page the node does not hand out.
        live -= regions;
        free += regions * PAGE_SIZE;
        for node in &self.nodes {
            let slots = node.slots.lock();
            live += slots.live_areas();
            free += slots.free_bytes();
        }
        (live, free)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
