//! Mapping and unmapping kernel ranges in init_mm, the lock-free walker, and table reclaim.
//!
//! Callers take no page-table lock: the virtual-range allocator guarantees that two live areas
//! never share a page, so leaf writes never conflict, and the only shared objects — intermediate
//! tables — are installed by `pgalloc`'s allocators, which settle races themselves. (In the
//! benchmark's pre-patch baseline, `map_range` instead holds the page-table lock for its whole
//! walk; unmapping takes no page-table lock in either design, as in Linux 2.6.14.)
//!
//! Ordering rules kept here (the invariants are numbered in `mm`'s module documentation):
//! - leaf stores are single 64-bit Release stores; `map_range` ends with one `dsb ishst; isb`
//!   (invariant 9, see [`InitMm::map_range`] for why once per call is enough);
//! - unmap: clear leaves → `dsb ishst` → TLBI → `dsb ish; isb` → return (invariant 4);
//! - a table taken out of the tree (promotion to a block, reclaim) is cleared, invalidated with
//!   `tlbi vaae1is`, the invalidation completed, and only then freed, once no walk of a range
//!   its caller need not own (`translate`, `count_tables`) can still be inside it; the tables
//!   below it go first, while it still points at them (break-before-make, invariant 5;
//!   `free_table`).

use super::addr::{PhysAddr, VirtAddr};
use super::env::PageTableEnv;
use super::layout::{
    KERNEL_VA_START, PAGE_SHIFT, PAGE_SIZE, PGDIR_SIZE, PHYS_ADDR_BITS, PMD_SIZE, PTRS_PER_TABLE,
};
use super::pgalloc::{InitMm, InstallPolicy};
use super::pgtable::{Descriptor, Entry, Level, MmError, Prot, Translation};
use super::profile::{self, Section};
use super::sync::Ordering;
use super::tlb::{self, TlbFlush};
use super::walk::{Span, Step, Visitor, walk};
#[cfg(doc)]
use super::{phys_layout::PhysLayout, tlb::TLBI_MAX_OPS};

/// Tables found by [`InitMm::count_tables`], per level.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TableCount {
    /// pud tables.
    pub pud: usize,
    /// pmd tables.
    pub pmd: usize,
    /// pte tables.
    pub pte: usize,
}

impl TableCount {
    /// All table pages (the pgd excluded).
    pub const fn total(&self) -> usize {
        self.pud + self.pmd + self.pte
    }
}

/// What a mapping call maps its range to.
#[derive(Clone, Copy)]
enum Source<'p> {
    /// Physically contiguous memory from this address (`map_range`).
    Contiguous(u64),
    /// One page each, in order (`map_pages`).
    Pages(&'p [PhysAddr]),
}

/// `map_range` and `map_pages`: install the tables the range needs (`pgalloc`'s allocators) and
/// write its leaves, a block wherever one fits.
struct Map<'m, 'w, 'a, 'p, E: PageTableEnv, P: InstallPolicy> {
    mm: &'m InitMm<E, P>,
    walk: &'w P::Walk<'a>,
    va: usize,
    source: Source<'p>,
    prot: Prot,
    blocks: bool,
    /// Leaves are written in address order; `[va, done)` is what this call has mapped so far.
    done: usize,
    /// Why the walk stopped.
    error: Option<MmError>,
}

impl<E: PageTableEnv, P: InstallPolicy> Map<'_, '_, '_, '_, E, P> {
    /// No table under `entry` yet (or a block in the way): `pgalloc` installs one, or says why
    /// not. Out of line: the common case finds the table there.
    #[cold]
    #[inline(never)]
    fn install_table(&mut self, entry: &Entry<'_>, va: usize) -> Step {
        match self.mm.alloc_table_in(self.walk, *entry, va) {
            Ok(_) => Step::Descend,
            Err(e) => {
                self.error = Some(e);
                Step::Stop
            }
        }
    }

    fn pa_of(&self, addr: usize) -> u64 {
        match self.source {
            Source::Contiguous(pa) => pa + (addr - self.va) as u64,
            Source::Pages(pages) => pages[(addr - self.va) >> PAGE_SHIFT].0,
        }
    }
}

impl<E: PageTableEnv, P: InstallPolicy> Visitor for Map<'_, '_, '_, '_, E, P> {
    #[inline(always)]
    fn visit(&mut self, entry: &Entry<'_>, span: Span) -> Step {
        let level = entry.level();
        let old = entry.read();
        let leaf = level == Level::Pte
            || (self.blocks
                && level.has_leaves()
                && span.covers(entry)
                && self
                    .pa_of(span.start)
                    .is_multiple_of(level.entry_size() as u64));
        if !leaf {
            if old.is_table(level) {
                return Step::Descend;
            }
            return self.install_table(entry, span.start);
        }
        let new = Descriptor::leaf(level, PhysAddr(self.pa_of(span.start)), self.prot);
        if old.is_table(level) {
            self.mm.promote(entry, new);
        } else if old.is_valid() {
            mapping_over_a_leaf(span.start, old);
        } else {
            profile::timed(Section::LeafWrite, || {
                // SAFETY: the slot is invalid and the range is this call's (the range allocator
                // gave it to the caller alone); `map_range` checked `prot` against what the
                // physical range is.
                unsafe { self.mm.env().set_entry(entry, new.raw()) }
            });
        }
        self.done = span.end();
        Step::Next
    }
}

/// Count the tables under a range, per level. Never enters a pte table: only its entry counts.
impl Visitor for TableCount {
    fn visit(&mut self, entry: &Entry<'_>, _span: Span) -> Step {
        let level = entry.level();
        if !entry.read().is_table(level) {
            return Step::Next;
        }
        match level {
            Level::Pgd => self.pud += 1,
            Level::Pud => self.pmd += 1,
            _ => {
                self.pte += 1;
                return Step::Next;
            }
        }
        Step::Descend
    }
}

/// `promote`'s check: panic at the first valid leaf under the table being replaced.
struct NoLeaves;

impl Visitor for NoLeaves {
    fn visit(&mut self, entry: &Entry<'_>, span: Span) -> Step {
        let d = entry.read();
        if d.is_table(entry.level()) {
            return Step::Descend;
        }
        assert!(
            !d.is_valid(),
            "init_mm: a block would replace a valid leaf {d:#x} at {:#x} (two live areas overlap?)",
            span.start
        );
        Step::Next
    }
}

/// Take every table under a range out of the tree, bottom-up: see [`InitMm::free_table`].
struct FreeTables<'m, E: PageTableEnv, P: InstallPolicy> {
    mm: &'m InitMm<E, P>,
    /// With `only_empty`, a table is freed only if the range covers its whole span and, once the
    /// tables below it are gone, it holds no valid entry (reclaim); otherwise every table is
    /// (the caller knows they hold no leaf).
    only_empty: bool,
    freed: usize,
}

impl<E: PageTableEnv, P: InstallPolicy> FreeTables<'_, E, P> {
    fn free_if_allowed(&mut self, entry: &Entry<'_>, span: Span) {
        if self.only_empty {
            let d = entry.read();
            // SAFETY: `d` is a table descriptor of this tree, and the callers guarantee that
            // nothing frees that table meanwhile (quiescence for reclaim).
            let empty = unsafe { self.mm.env().table(d.addr()) }
                .iter()
                .all(|s| !Descriptor::from_raw(s.load(Ordering::Acquire)).is_valid());
            if !(span.covers(entry) && empty) {
                return;
            }
            self.mm.count_reclaimed();
        }
        self.mm.unlink_table(entry);
        self.freed += 1;
    }
}

impl<E: PageTableEnv, P: InstallPolicy> Visitor for FreeTables<'_, E, P> {
    fn visit(&mut self, entry: &Entry<'_>, span: Span) -> Step {
        let level = entry.level();
        if !entry.read().is_table(level) {
            return Step::Next;
        }
        if level == Level::Pmd {
            // A pte table holds no tables: no need to enter it.
            self.free_if_allowed(entry, span);
            return Step::Next;
        }
        Step::Descend
    }

    fn after(&mut self, entry: &Entry<'_>, span: Span) {
        self.free_if_allowed(entry, span);
    }
}

/// Unmapping, [`for_each_leaf`], [`InitMm::translate`] and `first_mapped`: call the closure
/// with each valid leaf (its entry, its part of the range, its descriptor).
struct Leaves<F: FnMut(&Entry<'_>, Span, Descriptor)>(F);

impl<F: FnMut(&Entry<'_>, Span, Descriptor)> Visitor for Leaves<F> {
    fn visit(&mut self, entry: &Entry<'_>, span: Span) -> Step {
        let level = entry.level();
        let d = entry.read();
        if d.is_table(level) {
            return Step::Descend;
        }
        if d.is_leaf(level) {
            (self.0)(entry, span, d);
        }
        Step::Next
    }
}

/// Call `visit(va, level, descriptor)` for every valid leaf of the table tree rooted at `root`
/// (a pgd whose first entry translates `va_base`: 0 for a TTBR0 tree, `KERNEL_VA_START` for a
/// TTBR1 one), in address order. For checks over a whole tree, init_mm's or another one's (the
/// early tables).
///
/// # Safety
/// `root` and every table reachable from it must be page tables `env` can reach with
/// `PageTableEnv::table`, and stay tables (unchanged, unfreed) while this runs.
pub unsafe fn for_each_leaf<E: PageTableEnv>(
    env: &E,
    root: PhysAddr,
    va_base: usize,
    visit: &mut dyn FnMut(usize, Level, Descriptor),
) {
    let last = va_base + (PTRS_PER_TABLE * PGDIR_SIZE - 1);
    let mut leaves = Leaves(|e: &Entry<'_>, span: Span, d| visit(span.start, e.level(), d));
    // SAFETY: the caller promises every table of the tree stays one.
    unsafe { walk(env, root, Level::Pgd, va_base, last, &mut leaves) };
}

/// A mapping found a valid leaf where it was to write one: two live areas overlap (a bug of the
/// range allocator). Out of line, so that the check costs the leaf loop a test and a branch.
#[cold]
#[inline(never)]
fn mapping_over_a_leaf(va: usize, old: Descriptor) -> ! {
    panic!("init_mm: mapping {va:#x} over a valid leaf {old:#x} (two live areas overlap?)")
}

/// The end of a range to unmap, or a panic naming `what` for a caller bug: a range that is not
/// page aligned or not in the kernel half.
#[inline]
fn unmap_end(what: &'static str, va: usize, size: usize) -> usize {
    match check_virt(va, size) {
        Ok(end) if (va | size) & (PAGE_SIZE - 1) == 0 => end,
        _ => bad_unmap(what, va, size),
    }
}

/// [`unmap_end`]'s panic, out of line (the check stays inline, the formatting does not).
#[cold]
#[inline(never)]
fn bad_unmap(what: &str, va: usize, size: usize) -> ! {
    if (va | size) & (PAGE_SIZE - 1) != 0 {
        panic!("init_mm: {what}({va:#x}, {size:#x}) is not page aligned");
    }
    panic!("init_mm: {what}({va:#x}, {size:#x}) is not a kernel range");
}

/// Check the arguments shared by `map_range` and `unmap_range`; the exclusive end on success.
#[inline]
fn check_virt(va: usize, size: usize) -> Result<usize, MmError> {
    match va.checked_add(size) {
        Some(end) if va >= KERNEL_VA_START => Ok(end),
        _ => Err(MmError::BadVirtRange { va, size }),
    }
}

impl<E: PageTableEnv, P: InstallPolicy> InitMm<E, P> {
    /// Walk `[start, last]` (inclusive, in the kernel half) of init_mm's tree with `visitor`;
    /// false if the visitor stopped it.
    fn walk_range<V: Visitor>(&self, start: usize, last: usize, visitor: &mut V) -> bool {
        debug_assert!(
            KERNEL_VA_START <= start && start <= last,
            "{start:#x}..={last:#x}"
        );
        // SAFETY: the pgd is init_mm's, and the walk follows only table descriptors of this tree;
        // tables leave the tree only through `unlink_table`, which runs only where no other walk
        // of the range can be (the promoting call's own range, or `reclaim_empty_tables`'
        // quiescence) but a foreign one (`foreign_walk`), which it waits for before the free,
        // and, on a walk, only from a visitor, after the walk left that table.
        unsafe {
            walk(
                self.env(),
                self.pgd_phys(),
                Level::Pgd,
                start,
                last,
                visitor,
            )
        }
    }

    /// Walk everything the table under `entry` translates (nothing if it holds no table); false
    /// if the visitor stopped it.
    fn walk_below<V: Visitor>(&self, entry: &Entry<'_>, visitor: &mut V) -> bool {
        let d = entry.read();
        let Some(sub) = entry.level().next() else {
            return true;
        };
        if !d.is_table(entry.level()) {
            return true;
        }
        let start = entry.span_start();
        // SAFETY: as for `walk_range`: a table descriptor of this tree, read just now.
        unsafe {
            walk(
                self.env(),
                d.addr(),
                sub,
                start,
                start + (entry.level().entry_size() - 1),
                visitor,
            )
        }
    }

    /// Map `[va, va + size)` to `[pa, pa + size)` with `prot`.
    ///
    /// All three must be page aligned and `va` in the kernel (TTBR1) half, and `prot` must suit
    /// what the physical range is ([`PhysLayout::check`]: cacheable only for RAM, never an
    /// uncached alias of RAM, never a writable alias of kernel text or rodata). With `blocks`, 1 GiB
    /// pud blocks and 2 MiB pmd blocks are used wherever `va` and `pa` are both aligned and the
    /// rest of the range covers the block; an existing, leaf-free table in the way of a block is
    /// replaced by it with break-before-make ("promotion").
    ///
    /// Takes no lock (in `Seed` mode): the caller owns the range. On an error part-way (no
    /// memory for a table, a live block in the way) every leaf this call wrote is unmapped again
    /// before returning, so nothing is left mapped; tables it installed stay, as in Linux (they
    /// are empty and reusable, and `reclaim_empty_tables` can free them).
    ///
    /// Barriers: each leaf is one Release store; one `dsb ishst; isb` at the end of the call
    /// completes them all. Once per call is enough because no one may use the range before this
    /// returns — the caller publishes the address afterwards, ordered after the `dsb` — and the
    /// tables written on the way were each published with their own `dsb ishst; isb`.
    ///
    /// # Errors
    ///
    /// [`MmError::Misaligned`], [`MmError::BadVirtRange`] (not in the kernel half, or wraps),
    /// [`MmError::BadPhysRange`], the [`PhysLayout::check`] errors, [`MmError::OutOfMemory`] (no
    /// frame for a table) and [`MmError::BlockInTheWay`] (a block maps part of the range).
    ///
    /// # Panics
    ///
    /// If a page of the range is mapped already (two live areas overlap: a bug of the range
    /// allocator), or a block would replace a table that still maps something.
    ///
    /// # Safety
    ///
    /// The lock-free design rests on two promises that only the caller can make (invariant 3 in
    /// `mm`), so a call without them does not build:
    ///
    /// ```compile_fail,E0133
    /// # use initmm_mm::{addr::{PhysAddr, VirtAddr}, env::PageTableEnv, pgalloc::InitMm, pgtable::Prot};
    /// # fn f(init_mm: &InitMm<impl PageTableEnv>, va: VirtAddr) {
    /// let _ = init_mm.map_range(va, PhysAddr(0x4000_0000), 4096, Prot::KERNEL_RW, false); // E0133
    /// # }
    /// ```
    ///
    /// 1. **The virtual range is the caller's.** It lies in virtual space reserved for the
    ///    caller (a [`Window`](super::vm::Window) it holds, or an area `vm` reserved for this
    ///    call) and stays reserved until the caller has unmapped it again; while this runs no
    ///    other CPU maps or unmaps any page of it, and no table under it is reached through an
    ///    [`Entry`] from the table allocators (with `blocks`, this call frees the tables a block
    ///    replaces).
    /// 2. **The memory is the caller's to map.** Each page of `[pa, pa + size)` that is RAM is
    ///    the caller's for as long as the mapping lives (frames it holds, and does not give back
    ///    before it unmapped them; or, at boot, the image and the linear map), so that no other
    ///    code is handed the same RAM; memory that is not RAM (device registers) may be mapped
    ///    any number of times.
    pub unsafe fn map_range(
        &self,
        va: VirtAddr,
        pa: PhysAddr,
        size: usize,
        prot: Prot,
        blocks: bool,
    ) -> Result<(), MmError> {
        let (va, pa) = (va.0, pa.0);
        let page_mask = PAGE_SIZE - 1;
        if (va | size) & page_mask != 0 || pa & page_mask as u64 != 0 {
            return Err(MmError::Misaligned { va, pa, size });
        }
        let end = check_virt(va, size)?;
        if pa
            .checked_add(size as u64)
            .is_none_or(|pe| pe > 1 << PHYS_ADDR_BITS)
        {
            return Err(MmError::BadPhysRange { pa, size });
        }
        if size == 0 {
            return Ok(());
        }
        self.layout().check(pa, size, prot)?;
        self.map_walk(va, end, Source::Contiguous(pa), prot, blocks)
    }

    /// Map `pages` (each a page-aligned frame, in order) at `[va, va + pages.len() pages)` with
    /// `prot`, in one walk: each table is visited once for the whole range, not once per page
    /// (Linux's `vmap_pages_range`), and one `dsb ishst; isb` at the end publishes every leaf.
    /// Pages only (no blocks).
    ///
    /// # Errors
    ///
    /// As for [`map_range`](Self::map_range), each page checked against [`PhysLayout`].
    ///
    /// # Panics
    ///
    /// As for [`map_range`](Self::map_range).
    ///
    /// # Safety
    ///
    /// As for [`map_range`](Self::map_range), for the range and for every page of `pages`:
    ///
    /// ```compile_fail,E0133
    /// # use initmm_mm::{addr::{PhysAddr, VirtAddr}, env::PageTableEnv, pgalloc::InitMm, pgtable::Prot};
    /// # fn f(init_mm: &InitMm<impl PageTableEnv>, va: VirtAddr) {
    /// let _ = init_mm.map_pages(va, &[PhysAddr(0x4000_0000)], Prot::KERNEL_RW); // error[E0133]
    /// # }
    /// ```
    pub unsafe fn map_pages(
        &self,
        va: VirtAddr,
        pages: &[PhysAddr],
        prot: Prot,
    ) -> Result<(), MmError> {
        let va = va.0;
        let size = pages.len() * PAGE_SIZE;
        if va & (PAGE_SIZE - 1) != 0 {
            return Err(MmError::Misaligned { va, pa: 0, size });
        }
        let end = check_virt(va, size)?;
        for &pa in pages {
            if !pa.is_page_aligned() {
                return Err(MmError::Misaligned { va, pa: pa.0, size });
            }
            if pa
                .0
                .checked_add(PAGE_SIZE as u64)
                .is_none_or(|pe| pe > 1 << PHYS_ADDR_BITS)
            {
                return Err(MmError::BadPhysRange {
                    pa: pa.0,
                    size: PAGE_SIZE,
                });
            }
            self.layout().check(pa.0, PAGE_SIZE, prot)?;
        }
        if pages.is_empty() {
            return Ok(());
        }
        self.map_walk(va, end, Source::Pages(pages), prot, false)
    }

    /// The walk of `map_range` and `map_pages`, arguments checked. Inline: its common case is
    /// short, and the general walk is out of line ([`map_walk_tables`](Self::map_walk_tables)).
    #[inline]
    fn map_walk(
        &self,
        va: usize,
        end: usize,
        source: Source<'_>,
        prot: Prot,
        blocks: bool,
    ) -> Result<(), MmError> {
        let walk = self.begin_walk();
        // The common case, a small range whose tables are all there: one descent and a loop over
        // its leaves (Linux's vmap_pte_range once pte_alloc_kernel found the table). No block can
        // fit in a range shorter than a pmd's span.
        if end - va < PMD_SIZE
            && let Some(ptes) = self.pte_table(va, end)
        {
            let template = Descriptor::leaf(Level::Pte, PhysAddr(0), prot).raw();
            let env = self.env();
            profile::timed(Section::LeafWrite, || {
                for (i, page) in (va..end).step_by(PAGE_SIZE).enumerate() {
                    let entry = ptes.sibling(page);
                    let old = entry.read();
                    if old.is_valid() {
                        mapping_over_a_leaf(page, old);
                    }
                    let pa = match source {
                        Source::Contiguous(pa) => pa + (i * PAGE_SIZE) as u64,
                        Source::Pages(pages) => pages[i].0,
                    };
                    // SAFETY: the slot is invalid and the range is this call's (the range
                    // allocator gave it to the caller alone); the callers checked `prot` against
                    // what the page is, and that it is a page-aligned address the descriptor
                    // holds, so OR-ing it into the attributes builds `Descriptor::leaf`'s value.
                    unsafe { env.set_entry(&entry, template | pa) };
                }
                env.dsb_ishst();
                env.isb();
            });
            return Ok(());
        }
        let mut map = Map {
            mm: self,
            walk: &walk,
            va,
            source,
            prot,
            blocks,
            done: va,
            error: None,
        };
        self.map_walk_tables(&mut map, end)
    }

    /// [`map_walk`](Self::map_walk) in general, of `[map.va, end)`: every level visited, tables
    /// installed where missing, blocks where they fit.
    #[inline(never)]
    fn map_walk_tables(
        &self,
        map: &mut Map<'_, '_, '_, '_, E, P>,
        end: usize,
    ) -> Result<(), MmError> {
        let va = map.va;
        match self
            .walk_range(va, end - 1, map)
            .then_some(())
            .ok_or(map.error)
        {
            Ok(()) => {
                profile::timed(Section::LeafWrite, || {
                    self.env().dsb_ishst();
                    self.env().isb();
                });
                Ok(())
            }
            Err(e) => {
                // Still inside our walk (in the pre-patch baseline, still under its lock).
                self.unmap_walked(va, map.done);
                Err(e.expect("a map walk stops only with an error"))
            }
        }
    }

    /// Replace the table under `entry` with the block `block`, break-before-make.
    ///
    /// Nobody else can be using the old tables: our range covers the block's whole span, and no
    /// other live area shares a page with ours. They must hold no valid leaf (we would be mapping
    /// over a live area). They are taken out bottom-up by [`free_table`](Self::free_table), and
    /// only then is the block written, followed by `dsb ishst; isb` like every valid descriptor.
    fn promote(&self, entry: &Entry<'_>, block: Descriptor) {
        self.walk_below(entry, &mut NoLeaves);
        self.free_table(entry);
        let env = self.env();
        // SAFETY: break-before-make done: the slot is invalid and its old translations gone
        // from every TLB; the block maps memory of this call with the checked `prot`.
        unsafe { env.set_entry(entry, block.raw()) };
        env.dsb_ishst();
        env.isb();
        self.count_promotion();
    }

    /// Take the table `entry` points at out of the tree and free it, with every table below it,
    /// bottom-up, as Linux's `pud_free_pmd_page` → `pmd_free_pte_page` do: each lower entry is
    /// cleared and its invalidation *completed* while the entry above still points at valid
    /// tables, then the entry above goes the same way ([`unlink_table`](Self::unlink_table)).
    /// So a walker holding a stale upper entry can only reach tables that are still intact, and
    /// every table is freed only after the invalidation that covers it has completed.
    ///
    /// Callers guarantee that no other CPU maps into the subtree meanwhile (promotion: the range
    /// is the caller's; reclaim: quiescence).
    fn free_table(&self, entry: &Entry<'_>) {
        debug_assert!(
            entry.read().is_table(entry.level()),
            "{entry:?} holds no table"
        );
        let mut free = FreeTables {
            mm: self,
            only_empty: false,
            freed: 0,
        };
        self.walk_below(entry, &mut free);
        self.unlink_table(entry);
    }

    /// Clear `entry` (a table descriptor whose table holds no table any more), invalidate it
    /// and free its table: `dsb ishst; tlbi vaae1is; dsb ish; isb` (Linux's
    /// `__flush_tlb_kernel_pgtable`), which drops walk-cache copies of the cleared entry at every
    /// level, then wait for the foreign walks that may still be inside the table
    /// (`wait_for_foreign_walks`), and only then the free.
    fn unlink_table(&self, entry: &Entry<'_>) {
        let table = entry.read();
        let env = self.env();
        // SAFETY: clearing a table entry whose subtree holds nothing live (the callers' ranges).
        unsafe { env.set_entry(entry, Descriptor::INVALID.raw()) };
        env.dsb_ishst();
        env.tlbi_va(entry.span_start());
        env.dsb_ish();
        env.isb();
        self.wait_for_foreign_walks();
        // SAFETY: the table is out of the tree, its invalidation completed and no foreign walk
        // can still be inside it (above); nothing else referred to it (the callers own the
        // range, or the tree is quiescent).
        unsafe { env.free_table_frame(table.addr()) };
    }

    /// Unmap every leaf in `[va, va + size)`: pages, and pmd/pud blocks that lie wholly inside the
    /// range.
    ///
    /// Order (invariant 4): clear the leaves → `dsb ishst` → `tlbi vaale1is` per cleared
    /// leaf, or one `tlbi vmalle1is` from [`TLBI_MAX_OPS`] leaves on → `dsb ish; isb` → return.
    /// Only after this returns may the caller give the virtual range back for reuse.
    /// Intermediate tables stay in place.
    ///
    /// # Panics
    ///
    /// If the range is not page aligned or not in the kernel half, or a block lies only partly
    /// inside it (callers unmap what they mapped: each of these is a caller bug).
    ///
    /// # Safety
    ///
    /// The range is the caller's, as [`map_range`](Self::map_range) requires: it mapped what is
    /// mapped there, and no other CPU maps or unmaps any page of it while this runs. Unmapping
    /// another's mapping would leave its owner using a range that may be reused. So:
    ///
    /// ```compile_fail,E0133
    /// # use initmm_mm::{addr::VirtAddr, env::PageTableEnv, pgalloc::InitMm};
    /// # fn f(init_mm: &InitMm<impl PageTableEnv>, va: VirtAddr) {
    /// init_mm.unmap_range(va, 4096); // error[E0133]: call to unsafe function
    /// # }
    /// ```
    pub unsafe fn unmap_range(&self, va: VirtAddr, size: usize) {
        let va = va.0;
        let end = unmap_end("unmap_range", va, size);
        self.unmap_walked(va, end);
    }

    /// `unmap_range` without its argument checks.
    fn unmap_walked(&self, start: usize, end: usize) {
        if start == end {
            return;
        }
        let mut flush = TlbFlush::new(self.env(), start);
        self.clear_leaves(start, end, |va, _, _| flush.add(va));
        // Only now may the range be used again (invariant 4).
        flush.finish();
    }

    /// The pte slot for `start` in the pte table that translates all of `[start, end)`, if the
    /// range lies inside one pte table's span and the tables down to it exist: no lock, one
    /// Acquire load per level, each following the address read at the level above (the
    /// dependent-load chain of invariant 1; Linux's `pgd_offset_k` ... `pte_offset_kernel`).
    fn pte_table(&self, start: usize, end: usize) -> Option<Entry<'_>> {
        if start / PMD_SIZE != (end - 1) / PMD_SIZE {
            return None;
        }
        let mut table = self.pgd_phys();
        for level in [Level::Pgd, Level::Pud, Level::Pmd] {
            let d = self.entry_in(table, level, start).read();
            if !d.is_table(level) {
                return None;
            }
            table = d.addr();
        }
        Some(self.entry_in(table, Level::Pte, start))
    }

    /// Clear every leaf of `[start, end)` (non-empty), each of which must lie wholly inside it,
    /// and call `cleared(virtual address, output address, leaf size)` for each. Inline: its
    /// common case is short, the general walk is out of line
    /// ([`clear_leaves_walk`](Self::clear_leaves_walk)).
    #[inline]
    fn clear_leaves(
        &self,
        start: usize,
        end: usize,
        mut cleared: impl FnMut(usize, PhysAddr, usize),
    ) {
        let env = self.env();
        // The common case: a range inside one pte table, which exists (Linux's
        // vunmap_pte_range): one descent, then its leaves.
        if let Some(ptes) = self.pte_table(start, end) {
            for page in (start..end).step_by(PAGE_SIZE) {
                let entry = ptes.sibling(page);
                let d = entry.read();
                if d.is_leaf(Level::Pte) {
                    // SAFETY: clearing a leaf of the caller's range; the caller invalidates the
                    // TLB before the range is used again.
                    unsafe { env.set_entry(&entry, Descriptor::INVALID.raw()) };
                    cleared(page, d.addr(), PAGE_SIZE);
                }
            }
            return;
        }
        self.clear_leaves_walk(start, end, cleared);
    }

    /// [`clear_leaves`](Self::clear_leaves) in general: a walk of every level.
    #[inline(never)]
    fn clear_leaves_walk(
        &self,
        start: usize,
        end: usize,
        mut cleared: impl FnMut(usize, PhysAddr, usize),
    ) {
        let env = self.env();
        let mut leaves = Leaves(|entry: &Entry<'_>, span: Span, d: Descriptor| {
            let level = entry.level();
            assert!(
                span.covers(entry),
                "init_mm: unmapping [{start:#x}, {end:#x}) would split the {} block at {:#x}",
                level.name(),
                entry.span_start()
            );
            // SAFETY: clearing a leaf of the caller's range; the caller invalidates the TLB
            // before the range is used again.
            unsafe { env.set_entry(entry, Descriptor::INVALID.raw()) };
            cleared(span.start, d.addr(), level.entry_size());
        });
        self.walk_range(start, end - 1, &mut leaves);
    }

    /// Clear every leaf in `[va, va + size)` as [`unmap_range`](Self::unmap_range) does, but
    /// invalidate no TLB entry (Linux's `vunmap_range_noflush`): `on_leaf(output address, leaf
    /// size)` is called for each leaf cleared. Until a TLB invalidation covering the range has
    /// completed ([`flush_tlb_kernel_ranges`](Self::flush_tlb_kernel_ranges)), CPUs may still
    /// translate it to the old pages: the caller must keep the range, and those pages, from
    /// being used again until then (invariant 4; `vm`'s lazy purge does).
    ///
    /// No barrier follows the clears: the CPU that later invalidates observed them (through the
    /// lock that hands it the range), and its `dsb ishst` is cumulative, so it orders them
    /// before its TLBI too, as Linux relies on for its lazy purge.
    ///
    /// # Panics
    ///
    /// As for [`unmap_range`](Self::unmap_range).
    ///
    /// Private to `mm`: only `vm`'s lazy path, which owns the range until its purge, may leave
    /// cleared leaves in the TLBs. Code outside `mm` that tries does not build:
    ///
    /// ```compile_fail,E0624
    /// # use initmm_mm::{addr::VirtAddr, env::PageTableEnv, pgalloc::InitMm};
    /// # fn f(init_mm: &InitMm<impl PageTableEnv>, va: VirtAddr) {
    /// init_mm.unmap_range_noflush(va, 4096, &mut |_, _| {}); // error[E0624]: method is private
    /// # }
    /// ```
    #[inline]
    pub(crate) fn unmap_range_noflush(
        &self,
        va: VirtAddr,
        size: usize,
        mut on_leaf: impl FnMut(PhysAddr, usize),
    ) {
        let va = va.0;
        let end = unmap_end("unmap_range_noflush", va, size);
        if va != end {
            self.clear_leaves(va, end, |_, pa, size| on_leaf(pa, size));
        }
    }

    /// Invalidate every TLB entry for the ranges `[start, end)` on every CPU and wait for it:
    /// `dsb ishst`, then one `tlbi vaale1is` per page when they hold fewer than
    /// [`TLBI_MAX_OPS`] pages in all, else one `tlbi vmalle1is`, then `dsb ish; isb` (Linux's
    /// `flush_tlb_kernel_range`, over each range rather than their whole span).
    pub fn flush_tlb_kernel_ranges(&self, ranges: &[(usize, usize)]) {
        tlb::flush_kernel_ranges(self.env(), ranges);
    }

    /// Walk the tables for `va`: one Acquire load per level, each following the address read at
    /// the level above (the dependent-load chain of invariant 1). `va` need not be the caller's:
    /// the walk holds `foreign_walk`'s guard, so no table it is in is freed under it by another
    /// CPU's block mapping or reclaim.
    pub fn translate(&self, va: VirtAddr) -> Option<Translation> {
        let va = va.0;
        if va < KERNEL_VA_START {
            return None;
        }
        let _walk = self.foreign_walk();
        let mut found = None;
        self.walk_range(
            va,
            va,
            &mut Leaves(|entry: &Entry<'_>, _, desc: Descriptor| {
                let level = entry.level();
                let off = (va & (level.entry_size() - 1)) as u64;
                found = Some(Translation {
                    pa: PhysAddr(desc.addr().0 + off),
                    level,
                    desc,
                });
            }),
        );
        found
    }

    /// The table pages (below the pgd) whose span meets `[start, end)`. The range need not be
    /// the caller's, as for [`translate`](Self::translate).
    pub fn count_tables(&self, start: VirtAddr, end: VirtAddr) -> TableCount {
        let mut count = TableCount::default();
        let (start, end) = (start.0.max(KERNEL_VA_START), end.0);
        if start < end {
            let _walk = self.foreign_walk();
            self.walk_range(start, end - 1, &mut count);
        }
        count
    }

    /// The first address of `[va, va + size)` that a leaf maps, if any (a block counts from
    /// where the range meets it). The range need not be the caller's, as for
    /// [`translate`](Self::translate).
    pub(super) fn first_mapped(&self, va: VirtAddr, size: usize) -> Option<VirtAddr> {
        let start = va.0.max(KERNEL_VA_START);
        let end = va.0.saturating_add(size);
        if start >= end {
            return None;
        }
        let _walk = self.foreign_walk();
        let mut first = None;
        self.walk_range(
            start,
            end - 1,
            &mut Leaves(|_: &Entry<'_>, span: Span, _| {
                first.get_or_insert(span.start);
            }),
        );
        first.map(VirtAddr)
    }

    /// Free every pud, pmd and pte table whose whole span lies in `[start, end)` and that holds no
    /// valid entry once the tables below it have been reclaimed. Returns the number freed.
    ///
    /// Each table is taken out with break-before-make: clear the entry pointing at it →
    /// `dsb ishst` → `tlbi vaae1is` (removes walk-cache copies of that entry) → `dsb ish; isb` →
    /// free. Tables that straddle the range's ends are left alone.
    ///
    /// # Safety
    ///
    /// Quiescence: while this runs, no other CPU may walk, map or unmap any address in
    /// `[start, end)` (through this `InitMm`, or through the hardware walker by accessing it),
    /// except by a walk that need not own its range ([`translate`](Self::translate),
    /// [`count_tables`](Self::count_tables)), which every table free waits for. The fast path of
    /// the table allocators reads a table entry without a lock and then writes into the table it
    /// points at; if that raced with this function, the write would land in a freed frame.
    pub unsafe fn reclaim_empty_tables(&self, start: VirtAddr, end: VirtAddr) -> usize {
        let (start, end) = (start.0.max(KERNEL_VA_START), end.0);
        if start >= end {
            return 0;
        }
        let mut reclaim = FreeTables {
            mm: self,
            only_empty: true,
            freed: 0,
        };
        self.walk_range(start, end - 1, &mut reclaim);
        reclaim.freed
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
