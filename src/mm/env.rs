//! What the page-table code needs from "the hardware".
//!
//! `mm` is generic over this trait so that the same table allocators and walkers run on the
//! machine (`hw::HwEnv`: frames from the frame allocator, tables through the linear map, real
//! `dsb`/`isb`/`tlbi`) and in host tests (`testenv`: heap frames, barriers and
//! TLB invalidations recorded as events so tests can check their ORDER against descriptor stores).

use super::addr::PhysAddr;
use super::pgtable::{Entry, Table};
use super::sync::Ordering;

/// The hooks the page-table code calls. Barrier and TLBI hooks are exactly one instruction each on
/// hardware; the page-table code decides where they go, so the ordering rules live in one place.
///
/// # Safety
///
/// The page-table code's own `unsafe` relies on what an implementation does, so it must be right:
/// a frame [`alloc_table_frame`](Self::alloc_table_frame) or [`alloc_pages`](Self::alloc_pages)
/// hands out is memory nothing else owns until it is given back; [`table`](Self::table) and
/// [`zero_table`](Self::zero_table) reach exactly the frame asked for; each barrier and TLB hook
/// does what its name says, for every CPU that walks these tables.
///
/// ```compile_fail,E0200
/// # use initmm_mm::{addr::PhysAddr, env::PageTableEnv, pgtable::Table};
/// struct Forged;
/// impl PageTableEnv for Forged { // error[E0200]: the trait requires an `unsafe impl`
/// #   fn alloc_table_frame(&self) -> Option<PhysAddr> { None }
/// #   unsafe fn free_table_frame(&self, _: PhysAddr) {}
/// #   unsafe fn table(&self, _: PhysAddr) -> &Table { panic!("never called") }
/// }
/// ```
pub unsafe trait PageTableEnv: Sync {
    /// One 4 KiB frame for a page table (content undefined), or `None` when out of memory.
    fn alloc_table_frame(&self) -> Option<PhysAddr>;

    /// Give back a frame that `alloc_table_frame` returned. The page-table code calls this only
    /// once no CPU and no walker can still reach the table (after break-before-make).
    ///
    /// # Safety
    /// `pa` must have come from `alloc_table_frame` and not been freed since, and nothing may use
    /// it any more: no table points at it, no TLB holds a translation to it, no reference to it
    /// is live. The allocator will hand it to someone else.
    unsafe fn free_table_frame(&self, pa: PhysAddr);

    /// Frames for data pages (vmalloc), filling `pages` from the front: returns how many it got
    /// (all of them, or fewer when out of memory). Content undefined. By default one
    /// [`alloc_table_frame`](Self::alloc_table_frame) each; the machine takes them in bulk.
    fn alloc_pages(&self, pages: &mut [PhysAddr]) -> usize {
        for (n, slot) in pages.iter_mut().enumerate() {
            match self.alloc_table_frame() {
                Some(pa) => *slot = pa,
                None => return n,
            }
        }
        pages.len()
    }

    /// Give back data pages that [`alloc_pages`](Self::alloc_pages) returned.
    ///
    /// # Safety
    /// As for [`free_table_frame`](Self::free_table_frame), for each page: nothing maps it any
    /// more and nothing refers to it. (A stale TLB entry for a vmalloc range that mapped it may
    /// live until the lazy purge: `vm` explains why that is harmless for a data page.)
    unsafe fn free_pages(&self, pages: &[PhysAddr]) {
        for &pa in pages {
            // SAFETY: the caller's contract, page by page.
            unsafe { self.free_table_frame(pa) };
        }
    }

    /// The descriptors of the table in frame `pa` (through the linear map on hardware).
    ///
    /// # Safety
    /// `pa` must be a frame that this environment handed out as a page table (or the pgd) and
    /// that stays one, not freed, for as long as the returned reference is used. Any other
    /// address would be memory that something else owns, seen as descriptors.
    unsafe fn table(&self, pa: PhysAddr) -> &Table;

    /// The CPU running this code (0 in environments without CPUs), below [`crate::MAX_CPUS`]:
    /// picks the per-CPU vmap node (an id past the limit is a bug, and panics there).
    fn cpu_id(&self) -> usize {
        0
    }

    /// `dsb ishst`: order earlier stores (table zeroing, descriptor writes) before later ones and
    /// make them visible to the inner-shareable domain, table walkers included.
    fn dsb_ishst(&self);

    /// `isb`: later instructions (and their translation-table walks) start after this point.
    fn isb(&self);

    /// `tlbi vaale1is, va`: invalidate last-level entries for `va`, all ASIDs, all CPUs. No
    /// barrier.
    fn tlbi_page(&self, va: usize);

    /// `tlbi vaae1is, va`: invalidate entries for `va` at all levels, walk caches included (used
    /// when a table entry is removed). No barrier.
    fn tlbi_va(&self, va: usize);

    /// `tlbi vmalle1is`: invalidate every EL1 entry on every CPU. No barrier.
    fn tlbi_all(&self);

    /// `dsb ish`: wait until earlier TLB invalidations (and memory accesses) are complete on
    /// every CPU of the inner-shareable domain.
    fn dsb_ish(&self);

    /// Fill a freshly allocated frame with zeroes (invalid descriptors, or a zeroed vmalloc
    /// page). Ordinary (relaxed) stores: the caller publishes them with `dsb_ishst` and a
    /// Release store of the table descriptor. An implementation may use something faster
    /// (`dc zva`) as long as it only writes zeroes.
    ///
    /// # Safety
    /// `pa` must be a frame this environment handed out and that its caller owns: no other CPU
    /// uses it, and it is not (yet, or any more) a table any walker can reach.
    unsafe fn zero_table(&self, pa: PhysAddr) {
        // SAFETY: the caller owns the frame, which this environment handed out.
        for slot in unsafe { self.table(pa) } {
            slot.store(0, Ordering::Relaxed);
        }
    }

    /// Fill a data page (from [`alloc_pages`](Self::alloc_pages)) with zeroes, for `vzalloc`. By
    /// default as [`zero_table`](Self::zero_table) does a table.
    ///
    /// # Safety
    /// As for [`zero_table`](Self::zero_table): the caller owns the frame, which nothing maps yet.
    unsafe fn zero_page(&self, pa: PhysAddr) {
        // SAFETY: the caller's contract is `zero_table`'s.
        unsafe { self.zero_table(pa) }
    }

    /// Write one descriptor: a single-copy-atomic 64-bit Release store, the only way the
    /// page-table code writes a live table. Test environments override it to record the store.
    ///
    /// # Safety
    /// `raw` must be allowed at this slot now, by the rules `mapping` and `pgalloc` keep:
    /// invalid; or a table descriptor of a zeroed table published as `pgalloc` does; or a leaf
    /// for memory its mapping call owns, with attributes `InitMm::map_range` checked. A valid
    /// descriptor may replace another only by break-before-make (cleared and invalidated first).
    unsafe fn set_entry(&self, entry: &Entry<'_>, raw: u64) {
        entry.slot().store(raw, Ordering::Release);
    }
}
