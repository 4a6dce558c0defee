//! The kernel's virtual memory outside the linear map: `vmap`, `vmalloc`, `ioremap`.
//!
//! Its locks, none of them held while page tables are written:
//! - each CPU's vmap node (see [`NODES`]) keeps the small areas that CPU allocates, in slots of
//!   ranges it took from the global allocator, and its lazily freed areas, each under a lock
//!   that other CPUs take only to free an area of that node or to purge;
//! - `vmap_area_lock` (Linux's `free_vmap_area_lock`) serialises the global *virtual range*
//!   allocator: large areas, windows, and the nodes' ranges;
//! - `init_mm`'s page-table lock is private to `pgalloc` and taken there only to install a table.
//!
//! So `ioremap` of a few pages is: pop a slot off this CPU's node (its own lock, O(1)), walk and
//! fill the tables with no lock (the range is ours alone, so leaf writes cannot race), done.
//!
//! # Lazy unmapping
//!
//! `iounmap`, `vunmap` and `vfree` clear the area's leaves at once but do not invalidate the TLB:
//! the area is marked [`AreaKind::Lazy`] and its range put on the freeing CPU's purge list
//! (Linux's `free_vmap_area_noflush` and `vunmap_range_noflush`). A vmalloc area's pages go back
//! to the frame allocator at once, as Linux's `vfree` frees them: no code touches a freed area, a
//! stale TLB entry is never written through speculatively, and RAM is only ever mapped Normal
//! write-back, so the next owner of a page cannot be hurt by a stale translation of it elsewhere.
//! When a CPU's list holds more than its share of [`lazy_max_pages`] pages, that CPU (or the one
//! purging already) purges every list: one TLB invalidation for the lot (per page below
//! `TLBI_MAX_OPS` pages in all, else one `tlbi vmalle1is`), completed, and only then are the
//! ranges given back to the range allocator (Linux's `__purge_vmap_area_lazy`). Until its purge,
//! an area's range is busy: it cannot be mapped again, so nothing can meet a stale translation of
//! it (invariant 4 in `mm`). [`KernelVm::vm_unmap_aliases`] purges now; a range allocation that
//! finds no space purges and tries once more (Linux's `alloc_vmap_area`). A mapping call that
//! finds no frame has nothing to gain from a purge (no frame waits for one): the frame allocator
//! has drained every CPU's cache and tried once more before it said no.

use alloc::vec::Vec;
use core::fmt;

use super::addr::{PhysAddr, VirtAddr};
use super::env::PageTableEnv;
use super::pgalloc::{InitMm, InstallPolicy, Seed};
use super::pgtable::{IoProt, MmError, Prot};
use super::profile::{self, Lock};
use super::region::Region;
use super::sync::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Mutex, Ordering};
use super::vmap_area::{VaError, VmapArea, VmapAreaAllocator};
use super::vmap_node::{NODE_RANGE, SLOT, SLOT_MAX_PAGES, SlotArena};
use crate::layout::{PAGE_SIZE, PMD_SIZE, PUD_SIZE};

mod areas;
mod handles;
mod lazy;

pub use handles::{IoMem, VmBuf, Vmap};

pub use areas::NODES;
use areas::VmapNode;
use lazy::LazyList;
pub use lazy::{LazyStats, lazy_max_pages};

/// Pages of a vmalloc area whose page list lives on the stack (larger ones take it from the
/// heap; 128 bytes, which the compiler zeroes in a few stores).
const SMALL_VMALLOC_PAGES: usize = 16;

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
    /// A [`Window`] reserved with `reserve_window`, mapped and unmapped by its holder through
    /// `init_mm` directly; given back with `release_window`.
    Window,
    /// Freed, its leaves cleared, waiting for the purge that invalidates its TLB entries.
    Lazy,
    /// A per-CPU node's range, in the global allocator (see [`NODE_RANGE`]).
    NodeRange,
}

impl AreaKind {
    const ALL: [AreaKind; 6] = [
        Self::Vmalloc,
        Self::Vmap,
        Self::Ioremap,
        Self::Window,
        Self::Lazy,
        Self::NodeRange,
    ];

    /// The kind stored as the area's tag in the range allocator.
    fn from_tag(tag: usize) -> Self {
        Self::ALL[tag]
    }
}

/// Why a vmap/vmalloc/ioremap call failed. Nothing is left mapped or reserved by a failed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmError {
    /// A request for 0 bytes or 0 pages.
    ZeroSize,
    /// `phys + size` wraps around the physical address space.
    Wraps {
        /// The requested physical start.
        phys: PhysAddr,
        /// The requested length in bytes.
        size: usize,
    },
    /// The range goes beyond what this CPU can address (ID_AA64MMFR0_EL1.PARange).
    BeyondPhysLimit {
        /// The requested physical start.
        phys: PhysAddr,
        /// The requested length in bytes.
        size: usize,
        /// The CPU's physical address width in bits.
        pa_bits: u32,
    },
    /// The range overlaps RAM, which is mapped (cacheable) in the linear map already.
    OverlapsRam {
        /// The requested physical start.
        phys: PhysAddr,
        /// The requested length in bytes.
        size: usize,
        /// The first RAM region it overlaps.
        ram: Region,
    },
    /// The virtual range allocator refused.
    NoVirtualSpace(VaError),
    /// The table allocators failed (out of memory for a table).
    Table(MmError),
    /// No frame for a vmalloc page.
    OutOfMemory {
        /// How many pages the whole call asked for (the frames it did get were given back).
        pages: usize,
    },
    /// A window to be released still has a leaf mapped in it (`release_window`).
    StillMapped {
        /// The window's start.
        window: VirtAddr,
        /// The first address in it that a leaf maps.
        mapped: VirtAddr,
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
            Self::StillMapped { window, mapped } => write!(
                f,
                "the window at {window:#x} still maps {mapped:#x}: unmap everything in it before \
                 releasing it (it stays reserved)"
            ),
        }
    }
}

impl From<MmError> for VmError {
    fn from(e: MmError) -> Self {
        Self::Table(e)
    }
}

/// Why freeing an area by its address was refused. Only the mm frees by address (the handles'
/// `Drop`s, the host tests): outside it an area is freed by dropping what the call that made it
/// returned, which cannot name the wrong area, or one freed already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FreeError {
    /// `addr` is not the start of any area.
    NotMapped {
        /// The address passed.
        addr: VirtAddr,
    },
    /// `addr` points inside an area instead of at its start.
    InsideArea {
        /// The address passed.
        addr: VirtAddr,
        /// The start of the area it lies in.
        start: VirtAddr,
    },
    /// The area at `addr` was made by another function (e.g. `vfree` of an ioremap).
    WrongKind {
        /// The address passed.
        addr: VirtAddr,
        /// The function that made the area.
        is: AreaKind,
        /// The kind the freeing function takes.
        expected: AreaKind,
    },
    /// The area at `addr` was freed already (its range waits for the lazy purge).
    AlreadyFreed {
        /// The address passed.
        addr: VirtAddr,
    },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotMapped { addr } => write!(f, "{addr:#x} is not the start of a mapped area"),
            Self::InsideArea { addr, start } => write!(
                f,
                "{addr:#x} points inside the area at {start:#x}, not at its start"
            ),
            Self::WrongKind { addr, is, expected } => write!(
                f,
                "the area at {addr:#x} is a {is:?} area, not a {expected:?} one"
            ),
            Self::AlreadyFreed { addr } => write!(f, "the area at {addr:#x} was freed already"),
        }
    }
}

/// Busy areas and what each is (its `AreaKind`, kept as the range allocator's tag). Guarded by
/// `vmap_area_lock`.
struct Areas {
    alloc: VmapAreaAllocator,
}

/// A kernel stack from [`KernelVm::vmalloc_stack`]: the handle of its vmalloc area, which it
/// owns until given to [`KernelVm::vfree_stack`]. Dropping the handle frees nothing: a stack a
/// CPU runs on must stay mapped for as long as the CPU lives, whoever holds the handle.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a stack that is neither used nor freed leaks its area"]
pub struct KernelStack {
    /// The area's start: the unmapped guard page below the stack.
    area: usize,
    /// One past the stack's highest byte: the initial stack pointer.
    top: usize,
}

impl KernelStack {
    /// The initial stack pointer: one past the stack's highest byte (16-byte aligned).
    pub const fn top(&self) -> VirtAddr {
        VirtAddr(self.top)
    }

    /// The unmapped page below the stack, into which an overflow runs.
    pub const fn guard_page(&self) -> VirtAddr {
        VirtAddr(self.area)
    }

    /// The stack's usable bytes.
    pub const fn size(&self) -> usize {
        self.top - self.area - PAGE_SIZE
    }
}

/// A window of virtual space from [`KernelVm::reserve_window`]: the handle of its reservation.
/// Its holder alone maps and unmaps in it (through `init_mm` directly: the window is the
/// "range reserved for the caller" that [`InitMm::map_range`]'s contract asks for), and gives it
/// back with [`KernelVm::release_window`], which takes the handle. It cannot be copied or made
/// up, so no other code can release a window its holder still maps into. Dropping the handle
/// releases nothing: the window stays reserved.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a window that is neither used nor released stays reserved"]
pub struct Window {
    start: usize,
    size: usize,
}

impl Window {
    /// The window's first address.
    pub const fn start(&self) -> VirtAddr {
        VirtAddr(self.start)
    }

    /// The window's length in bytes (what was asked for, rounded up to pages).
    pub const fn size(&self) -> usize {
        self.size
    }
}

/// `init_mm` plus the vmalloc region's range allocators.
pub struct KernelVm<E: PageTableEnv, P: InstallPolicy = Seed> {
    /// The kernel's one address space, whose tables every area is mapped into.
    pub init_mm: InitMm<E, P>,
    /// The global allocator: large areas, windows, and the nodes' ranges.
    vmap_area_lock: Mutex<Areas>,
    nodes: Vec<VmapNode>,
    /// Per [`NODE_RANGE`] of address space from `range_base`: 1 + the node that owns the range
    /// there, or 0.
    range_owner: Vec<AtomicU8>,
    /// The window's start rounded down to a range.
    range_base: usize,
    /// Regions the nodes hold in all (each takes one guard page from the global allocator).
    ranges: AtomicUsize,
    /// Whether small areas come from the nodes (off only in host tests that need every area at a
    /// predictable place).
    use_nodes: bool,
    /// Above this many lazily freed pages on its own list, a CPU's free purges: the threshold
    /// ([`lazy_max_pages`]) over the online CPUs, so the lists never hold more than it in all
    /// and no CPU writes a count another CPU writes.
    lazy_share: AtomicUsize,
    /// The threshold and the online CPUs it is shared by.
    lazy_max: AtomicUsize,
    online: AtomicUsize,
    /// One purge at a time: 1 while a CPU purges.
    purging: AtomicUsize,
    /// 1 when a free over the threshold asked for a purge that has not started yet.
    purge_wanted: AtomicBool,
    purges: AtomicU64,
    /// Called by each purge after it collected the lists (host tests of the purge protocol).
    #[cfg(test)]
    purge_hook: std::sync::OnceLock<fn(&Self)>,
    pa_bits: u32,
}

impl<E: PageTableEnv, P: InstallPolicy> KernelVm<E, P> {
    /// `vmalloc`: the virtual window areas come from; `pa_bits`: the CPU's physical address
    /// size. What is RAM (which ioremap refuses) is `init_mm`'s [`PhysLayout`]. The lazy-purge
    /// threshold starts as for one CPU ([`set_online_cpus`](Self::set_online_cpus) raises it).
    ///
    /// # Safety
    ///
    /// The handles this hands out ([`IoMem`], [`VmBuf`]) read and write the memory they map
    /// through its virtual address, in safe code. So: `init_mm`'s tables must be the ones the
    /// CPUs translate the `vmalloc` window through (its pgd in TTBR1, or shared with the one that
    /// is, see [`InitMm::sharing_pgd`]) for as long as a handle lives, and nothing else may use
    /// an address in the window (no other `KernelVm`, no other mapping). A host test whose
    /// tables nothing translates through keeps this only by never touching a handle's memory.
    ///
    /// ```compile_fail,E0133
    /// # use initmm_mm::{env::PageTableEnv, pgalloc::InitMm, vm::KernelVm};
    /// fn second_address_space<E: PageTableEnv>(init_mm: InitMm<E>) -> KernelVm<E> {
    ///     KernelVm::new(init_mm, (0xffff_8000_0000_0000, 0xffff_8040_0000_0000), 48) // E0133
    /// }
    /// ```
    ///
    /// [`PhysLayout`]: super::phys_layout::PhysLayout
    pub unsafe fn new(init_mm: InitMm<E, P>, vmalloc: (usize, usize), pa_bits: u32) -> Self {
        let areas = Areas {
            alloc: VmapAreaAllocator::new(vmalloc.0, vmalloc.1),
        };
        let range_base = vmalloc.0 / NODE_RANGE * NODE_RANGE;
        let nr_ranges = vmalloc.1.div_ceil(NODE_RANGE) - range_base / NODE_RANGE;
        Self {
            init_mm,
            vmap_area_lock: Mutex::new(areas),
            nodes: (0..NODES)
                .map(|_| VmapNode {
                    slots: Mutex::new(SlotArena::new()),
                    lazy: Mutex::new(LazyList::default()),
                })
                .collect(),
            range_owner: (0..nr_ranges).map(|_| AtomicU8::new(0)).collect(),
            range_base,
            ranges: AtomicUsize::new(0),
            use_nodes: true,
            lazy_share: AtomicUsize::new(lazy_max_pages(1)),
            lazy_max: AtomicUsize::new(lazy_max_pages(1)),
            online: AtomicUsize::new(1),
            purging: AtomicUsize::new(0),
            purge_wanted: AtomicBool::new(false),
            purges: AtomicU64::new(0),
            #[cfg(test)]
            purge_hook: std::sync::OnceLock::new(),
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

    /// The CPU's physical address size, in bits, that `ioremap` checks against.
    pub fn pa_bits(&self) -> u32 {
        self.pa_bits
    }

    /// Size the lazy-purge threshold for `cpus` online CPUs ([`lazy_max_pages`]), shared out
    /// among them.
    pub fn set_online_cpus(&self, cpus: usize) {
        self.online.store(cpus.max(1), Ordering::Relaxed);
        self.set_lazy_max_pages(lazy_max_pages(cpus));
    }

    /// Set the lazy-purge threshold directly, in pages, shared out among the online CPUs (0:
    /// purge on every free). For tests.
    pub fn set_lazy_max_pages(&self, pages: usize) {
        self.lazy_max.store(pages, Ordering::Relaxed);
        self.lazy_share.store(
            pages / self.online.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// Map `pages` (physical page addresses, in order) contiguously with `prot`, in one walk.
    ///
    /// # Errors
    ///
    /// [`VmError::ZeroSize`] for no pages, [`VmError::NoVirtualSpace`], and the table errors
    /// of [`InitMm::map_pages`] as [`VmError::Table`].
    ///
    /// # Safety
    ///
    /// Every page of `pages` that is RAM is the caller's: a frame it holds and does not give
    /// back, or use for anything else, until the returned [`Vmap`] is dropped (which unmaps it:
    /// a stale TLB entry for the range until its purge is harmless, see the module
    /// documentation), so that the mapping never aliases RAM that other code owns. (Pages that are not RAM may be
    /// mapped any number of times; `PhysLayout` checks `prot` against what each page is.) An
    /// alias of someone else's RAM does not build without that promise:
    ///
    /// ```compile_fail,E0133
    /// # use initmm_mm::{addr::PhysAddr, env::PageTableEnv, pgtable::Prot, vm::KernelVm};
    /// # fn f(vm: &KernelVm<impl PageTableEnv>, theirs: PhysAddr) {
    /// let va = vm.vmap(&[theirs], Prot::KERNEL_RW); // error[E0133]: call to unsafe function
    /// # }
    /// ```
    pub unsafe fn vmap(&self, pages: &[PhysAddr], prot: Prot) -> Result<Vmap<'_, E, P>, VmError> {
        // SAFETY: the caller's pages, by this function's contract.
        let va = unsafe { self.vmap_raw(pages, prot) }?;
        Ok(Vmap::new(self, va, pages.len() * PAGE_SIZE))
    }

    /// [`vmap`](Self::vmap), returning the address (unmapped with `vunmap_at`).
    ///
    /// # Safety
    ///
    /// As for [`vmap`](Self::vmap).
    pub(crate) unsafe fn vmap_raw(
        &self,
        pages: &[PhysAddr],
        prot: Prot,
    ) -> Result<VirtAddr, VmError> {
        // SAFETY: the caller's pages, by this function's contract.
        unsafe { self.vmap_kind(pages, prot, AreaKind::Vmap, PAGE_SIZE, 0) }.map(VirtAddr)
    }

    /// `vmap` into a fresh area of `kind` at `align`, `lead` unmapped pages first (a stack's
    /// guard page).
    ///
    /// # Safety
    ///
    /// As for [`vmap`](Self::vmap): the pages that are RAM are the caller's.
    unsafe fn vmap_kind(
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
        // SAFETY: the area was just reserved for this call, which alone maps into it; the pages
        // that are RAM are the caller's (this function's contract).
        if let Err(e) = unsafe {
            self.init_mm
                .map_pages(VirtAddr(area.start + lead * PAGE_SIZE), pages, prot)
        } {
            self.release(area.start);
            return Err(e.into());
        }
        Ok(area.start)
    }

    /// Unmap a `vmap` area (lazily, see the module documentation). The pages stay the caller's,
    /// free to reuse at once: a stale translation of the old range elsewhere is never used (the
    /// module documentation says why), and the range is not mapped again before the purge.
    ///
    /// # Errors
    ///
    /// [`FreeError`]: `addr` is not the start of a live `vmap` area; nothing changes then.
    pub(crate) fn vunmap_at(&self, addr: VirtAddr) -> Result<(), FreeError> {
        let area = self.lookup(addr.0, AreaKind::Vmap, true)?;
        self.free_lazily(area, false);
        Ok(())
    }

    /// `size` bytes (rounded up to pages) of virtually contiguous memory, not zeroed (Linux's
    /// `vmalloc`; [`vzalloc`](Self::vzalloc) zeroes).
    ///
    /// # Errors
    ///
    /// [`VmError::ZeroSize`], [`VmError::OutOfMemory`] (no frame for a page),
    /// [`VmError::NoVirtualSpace`], and [`VmError::Table`] (no frame for a table); nothing is
    /// left allocated or mapped then.
    pub fn vmalloc(&self, size: usize) -> Result<VmBuf<'_, E, P>, VmError> {
        self.vmalloc_raw(size).map(|va| VmBuf::new(self, va, size))
    }

    /// [`vmalloc`](Self::vmalloc), returning the address (freed with `vfree_at`).
    pub(crate) fn vmalloc_raw(&self, size: usize) -> Result<VirtAddr, VmError> {
        self.vmalloc_inner(size, PAGE_SIZE, false, 0).map(VirtAddr)
    }

    /// Like [`vmalloc`](Self::vmalloc), zeroed.
    ///
    /// # Errors
    ///
    /// As for [`vmalloc`](Self::vmalloc).
    pub fn vzalloc(&self, size: usize) -> Result<VmBuf<'_, E, P>, VmError> {
        self.vzalloc_raw(size).map(|va| VmBuf::new(self, va, size))
    }

    /// [`vzalloc`](Self::vzalloc), returning the address (freed with `vfree_at`).
    pub(crate) fn vzalloc_raw(&self, size: usize) -> Result<VirtAddr, VmError> {
        self.vmalloc_inner(size, PAGE_SIZE, true, 0).map(VirtAddr)
    }

    /// Allocate the pages, zero them if asked, map them after `lead` unmapped pages.
    ///
    /// Out of frames (for a page or a table) it fails at once: no frame waits for a lazy purge
    /// (the pages of freed areas went back at `vfree`), and the frame allocator has drained every
    /// CPU's cache and tried once more before it said no.
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
        // The page list: on the stack for the small areas most calls ask for, from the heap
        // for larger ones.
        let mut small = [PhysAddr(0); SMALL_VMALLOC_PAGES];
        let mut large = Vec::new();
        let pages = if n <= SMALL_VMALLOC_PAGES {
            &mut small[..n]
        } else {
            large.resize(n, PhysAddr(0));
            &mut large[..]
        };
        let env = self.init_mm.env();
        let got = env.alloc_pages(pages);
        if got < n {
            // SAFETY: frames this call was just handed, used for nothing yet.
            unsafe { env.free_pages(&pages[..got]) };
            return Err(VmError::OutOfMemory { pages: n });
        }
        if zero {
            for &pa in pages.iter() {
                // SAFETY: frames just handed out to this call, mapped nowhere yet.
                unsafe { env.zero_page(pa) };
            }
        }
        // SAFETY: frames this call was just handed, mapped nowhere else.
        unsafe { self.vmap_kind(pages, Prot::KERNEL_RW, AreaKind::Vmalloc, align, lead) }
            .inspect_err(|_| {
                // SAFETY: vmap_kind failed and left nothing mapped: the frames are ours alone.
                unsafe { env.free_pages(pages) };
            })
    }

    /// A kernel stack of `size` bytes (rounded up to pages): fresh zeroed pages with an unmapped
    /// guard page *below* them (the area's own guard page is above), so an overflow faults
    /// instead of corrupting memory.
    ///
    /// # Errors
    ///
    /// As for [`vmalloc`](Self::vmalloc).
    pub fn vmalloc_stack(&self, size: usize) -> Result<KernelStack, VmError> {
        let pages = size.div_ceil(PAGE_SIZE);
        let area = self.vmalloc_inner(size, PAGE_SIZE, true, 1)?;
        Ok(KernelStack {
            area,
            top: area + (pages + 1) * PAGE_SIZE,
        })
    }

    /// Free a stack from [`vmalloc_stack`](Self::vmalloc_stack) that nothing runs on (lazily,
    /// as dropping a [`VmBuf`] does).
    ///
    /// # Panics
    ///
    /// If the stack is not this `KernelVm`'s.
    pub fn vfree_stack(&self, stack: KernelStack) {
        let area = VirtAddr(stack.area);
        if let Err(e) = self.vfree_at(area) {
            panic!("vfree_stack of the stack at {area:#x}: {e}");
        }
    }

    /// Reserve a window of virtual space for a caller that maps it itself with
    /// `init_mm.map_range`/`unmap_range` (workloads that aim at particular table slots). The
    /// returned [`Window`] is the reservation: whoever holds it may map there.
    ///
    /// # Errors
    ///
    /// [`VmError::NoVirtualSpace`].
    pub fn reserve_window(&self, size: usize, align: usize) -> Result<Window, VmError> {
        self.reserve(size, align, AreaKind::Window).map(|a| Window {
            start: a.start,
            size: a.size,
        })
    }

    /// Give back a window at once, once its holder has unmapped everything in it with
    /// `init_mm.unmap_range` (which completed the TLB invalidation before it returned). This
    /// checks that nothing is mapped in the window (nor in its guard page): a range given back
    /// with a leaf still in it would be handed to the next caller with a live mapping of memory
    /// that may no longer be the holder's (invariant 4 in `mm`).
    ///
    /// The window goes back only by handing over the [`Window`] itself, so only its holder can
    /// release it, and only once:
    ///
    /// ```compile_fail,E0308
    /// # use initmm_mm::{addr::VirtAddr, env::PageTableEnv, vm::KernelVm};
    /// # fn f(vm: &KernelVm<impl PageTableEnv>, theirs: VirtAddr) {
    /// let _ = vm.release_window(theirs); // error[E0308]: expected `Window`, found `VirtAddr`
    /// # }
    /// ```
    ///
    /// ```compile_fail,E0382
    /// # use initmm_mm::{env::PageTableEnv, vm::KernelVm};
    /// # fn f(vm: &KernelVm<impl PageTableEnv>) {
    /// let w = vm.reserve_window(4096, 4096).unwrap();
    /// let _ = vm.release_window(w);
    /// let _ = vm.release_window(w); // error[E0382]: use of moved value: `w`
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`VmError::StillMapped`] if a leaf maps part of the window: the window then stays
    /// reserved, for good (nothing else can be handed its range with that leaf in it).
    pub fn release_window(&self, window: Window) -> Result<(), VmError> {
        let area = self
            .lookup(window.start, AreaKind::Window, false)
            .unwrap_or_else(|e| panic!("release_window: a Window of another KernelVm? {e}"));
        if let Some(mapped) = self
            .init_mm
            .first_mapped(VirtAddr(area.start), area.size + PAGE_SIZE)
        {
            return Err(VmError::StillMapped {
                window: VirtAddr(area.start),
                mapped,
            });
        }
        self.release(area.start);
        Ok(())
    }

    /// Like [`vmalloc`](Self::vmalloc), at a virtual address aligned to `align` (a power of two).
    ///
    /// # Errors
    ///
    /// As for [`vmalloc`](Self::vmalloc); [`VmError::NoVirtualSpace`] for an alignment that is
    /// not a power of two.
    pub fn vmalloc_aligned(&self, size: usize, align: usize) -> Result<VmBuf<'_, E, P>, VmError> {
        self.vmalloc_aligned_raw(size, align)
            .map(|va| VmBuf::new(self, va, size))
    }

    /// [`vmalloc_aligned`](Self::vmalloc_aligned), returning the address (freed with
    /// `vfree_at`).
    pub(crate) fn vmalloc_aligned_raw(
        &self,
        size: usize,
        align: usize,
    ) -> Result<VirtAddr, VmError> {
        // Every page address meets an alignment below a page (Linux's `__vmalloc_node` takes
        // them too); the range allocator only knows page-sized and larger ones.
        let align = if align.is_power_of_two() {
            align.max(PAGE_SIZE)
        } else {
            align
        };
        self.vmalloc_inner(size, align, false, 0).map(VirtAddr)
    }

    /// Free a `vmalloc` area: its pages go back at once, its range after the lazy purge (see the
    /// module documentation).
    ///
    /// # Errors
    ///
    /// As for [`vunmap_at`](Self::vunmap_at), for a `vmalloc` area.
    pub(crate) fn vfree_at(&self, addr: VirtAddr) -> Result<(), FreeError> {
        let area = self.lookup(addr.0, AreaKind::Vmalloc, true)?;
        self.free_lazily(area, true);
        Ok(())
    }

    /// Map device registers at `phys` (any alignment) as Device-nGnRE, execute-never.
    /// Returns the virtual address of `phys` itself (the sub-page offset is kept).
    ///
    /// # Errors
    ///
    /// As for [`ioremap_prot`](Self::ioremap_prot).
    pub fn ioremap(&self, phys: PhysAddr, size: usize) -> Result<IoMem<'_, E, P>, VmError> {
        self.ioremap_prot(phys, size, IoProt::DeviceNgnre)
    }

    /// [`ioremap_wc`](Self::ioremap_wc), returning the address (unmapped with `iounmap_at`).
    #[cfg(test)]
    pub(crate) fn ioremap_wc_raw(&self, phys: PhysAddr, size: usize) -> Result<VirtAddr, VmError> {
        self.ioremap_prot_raw(phys, size, IoProt::NormalNc)
    }

    /// [`ioremap`](Self::ioremap), returning the address (unmapped with `iounmap_at`).
    #[cfg(test)]
    pub(crate) fn ioremap_raw(&self, phys: PhysAddr, size: usize) -> Result<VirtAddr, VmError> {
        self.ioremap_prot_raw(phys, size, IoProt::DeviceNgnre)
    }

    /// Like [`ioremap`](Self::ioremap) but Normal non-cacheable (write-combining).
    ///
    /// # Errors
    ///
    /// As for [`ioremap_prot`](Self::ioremap_prot).
    pub fn ioremap_wc(&self, phys: PhysAddr, size: usize) -> Result<IoMem<'_, E, P>, VmError> {
        self.ioremap_prot(phys, size, IoProt::NormalNc)
    }

    /// Like [`ioremap`](Self::ioremap) but Device-nGnRnE (non-posted writes).
    ///
    /// # Errors
    ///
    /// As for [`ioremap_prot`](Self::ioremap_prot).
    pub fn ioremap_np(&self, phys: PhysAddr, size: usize) -> Result<IoMem<'_, E, P>, VmError> {
        self.ioremap_prot(phys, size, IoProt::DeviceNgnrne)
    }

    /// Map device memory at `phys` (any alignment) as `prot`, execute-never; returns the virtual
    /// address of `phys` itself. [`IoProt`] offers device and non-cacheable types only, so a
    /// cacheable or executable MMIO mapping cannot be asked for:
    ///
    /// ```compile_fail,E0308
    /// # use initmm_mm::{addr::PhysAddr, env::PageTableEnv, pgtable::Prot, vm::KernelVm};
    /// # fn f(vm: &KernelVm<impl PageTableEnv>) {
    /// let uart = vm.ioremap_prot(PhysAddr(0x0900_0000), 0x1000, Prot::KERNEL_RX); // expected `IoProt`
    /// # }
    /// ```
    ///
    /// while the same call with an `IoProt` builds:
    ///
    /// ```
    /// # use initmm_mm::{addr::PhysAddr, env::PageTableEnv, pgtable::IoProt, vm::KernelVm};
    /// # fn f(vm: &KernelVm<impl PageTableEnv>) {
    /// let uart = vm.ioremap_prot(PhysAddr(0x0900_0000), 0x1000, IoProt::DeviceNgnre);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`VmError::ZeroSize`], [`VmError::Wraps`], [`VmError::BeyondPhysLimit`] (past the CPU's
    /// physical address size), [`VmError::OverlapsRam`], [`VmError::NoVirtualSpace`] and
    /// [`VmError::Table`] (no frame for a table); nothing is left mapped then (invariant 7 in
    /// `mm`'s module documentation).
    pub fn ioremap_prot(
        &self,
        phys: PhysAddr,
        size: usize,
        prot: IoProt,
    ) -> Result<IoMem<'_, E, P>, VmError> {
        self.ioremap_prot_raw(phys, size, prot)
            .map(|va| IoMem::new(self, va, size))
    }

    /// [`ioremap_prot`](Self::ioremap_prot), returning the address of `phys` (unmapped with
    /// `iounmap_at`).
    ///
    /// Always inline (into `ioremap_prot`), as are `reserve` and `iounmap_at`: left to itself
    /// the compiler inlined them where a design has one caller (the bench's pre-patch baseline)
    /// and not where it has many (the kernel's), which cost the latter 41 instructions of calls
    /// and spills per ioremap + iounmap, and made the design comparison measure inlining.
    #[inline(always)]
    pub(crate) fn ioremap_prot_raw(
        &self,
        phys: PhysAddr,
        size: usize,
        prot: IoProt,
    ) -> Result<VirtAddr, VmError> {
        let (typed, phys) = (phys, phys.0);
        let prot = prot.prot();
        if size == 0 {
            return Err(VmError::ZeroSize);
        }
        let last = phys
            .checked_add(size as u64 - 1)
            .ok_or(VmError::Wraps { phys: typed, size })?;
        if self.pa_bits < 64 && last >> self.pa_bits != 0 {
            return Err(VmError::BeyondPhysLimit {
                phys: typed,
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
            return Err(VmError::OverlapsRam {
                phys: typed,
                size,
                ram,
            });
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
        // SAFETY: the area was just reserved for this call, which alone maps into it, and the
        // range is no RAM (refused above): device memory may be mapped any number of times.
        if let Err(e) = unsafe {
            self.init_mm
                .map_range(VirtAddr(area.start), PhysAddr(base), len, prot, true)
        } {
            // map_range has already cleared what it mapped.
            self.release(area.start);
            return Err(e.into());
        }
        Ok(VirtAddr(area.start + offset))
    }

    /// Undo an `ioremap` (lazily, see the module documentation). `addr` may carry the sub-page
    /// offset `ioremap` returned.
    ///
    /// # Errors
    ///
    /// As for [`vunmap_at`](Self::vunmap_at), for an `ioremap` area.
    ///
    /// Always inline: see [`ioremap_prot_raw`](Self::ioremap_prot_raw).
    #[inline(always)]
    pub(crate) fn iounmap_at(&self, addr: VirtAddr) -> Result<(), FreeError> {
        let start = addr.page_start().0;
        // Errors name the caller's address, offset included.
        let area = self
            .lookup(start, AreaKind::Ioremap, true)
            .map_err(|e| match e {
                FreeError::NotMapped { .. } => FreeError::NotMapped { addr },
                FreeError::InsideArea { start, .. } => FreeError::InsideArea { addr, start },
                FreeError::WrongKind { is, expected, .. } => {
                    FreeError::WrongKind { addr, is, expected }
                }
                FreeError::AlreadyFreed { .. } => FreeError::AlreadyFreed { addr },
            })?;
        self.free_lazily(area, false);
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
