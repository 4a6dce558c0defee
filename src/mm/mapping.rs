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
//!   `tlbi vaae1is`, the invalidation completed, and only then freed; the tables below it go
//!   first, while it still points at them (break-before-make, invariant 5; `free_table`).

use alloc::vec::Vec;
use core::cell::Cell;
use core::mem::MaybeUninit;

use super::env::PageTableEnv;
use super::pgalloc::{InitMm, Walk};
use super::pgtable::{
    Descriptor, Entry, KERNEL_VA_START, Level, MmError, PAGE_SHIFT, PAGE_SIZE, PGDIR_SIZE,
    PHYS_ADDR_BITS, PMD_SIZE, PTRS_PER_TABLE, PUD_SIZE, PhysAddr, Prot, Translation, addr_end,
};
use super::profile::{self, Section};
use super::region::{self, Region};
use super::sync::Ordering;

/// Above this many leaves cleared, `unmap_range` invalidates the whole TLB with one
/// `tlbi vmalle1is` instead of one broadcast `tlbi vaale1is` per leaf (Linux's `MAX_DVM_OPS`,
/// one pte table's worth). Counted in TLBI operations, i.e. leaves: a 2 MiB block is one
/// operation, not 512 pages, because one `tlbi vaale1is` removes a block's entry.
pub const TLBI_MAX_OPS: usize = 512;

/// What the physical address space holds, for the checks every `map_range` passes: nothing that
/// is not RAM is ever mapped cacheable (a speculative fetch into a device or a secure carve-out
/// can raise an SError or hang a real SoC), RAM is never mapped with a second, uncached alias
/// (mismatched attributes), kernel text and rodata are never writable through any alias, and
/// only kernel text is executable.
#[derive(Clone, Debug)]
pub struct PhysLayout {
    /// RAM the kernel may map: the device tree's RAM minus its `no-map` reservations. Sorted and
    /// non-overlapping (as `region::subtract` returns it).
    memory: Vec<Region>,
    /// The kernel image's text.
    text: Region,
    /// The kernel image's text and rodata.
    read_only: Region,
    /// False only for the host tests of the walkers ([`PhysLayout::unchecked`]).
    checked: bool,
}

impl PhysLayout {
    /// `memory`: mappable RAM (sorted, non-overlapping); `text` and `read_only`: the physical
    /// ranges of the image's text and of its text plus rodata.
    pub fn new(memory: Vec<Region>, text: Region, read_only: Region) -> Self {
        Self {
            memory,
            text,
            read_only,
            checked: true,
        }
    }

    /// No checks at all: for host tests of the table code, whose fake physical addresses are
    /// no machine's.
    #[cfg(test)]
    pub fn unchecked() -> Self {
        Self {
            memory: Vec::new(),
            text: Region::new(0, 0),
            read_only: Region::new(0, 0),
            checked: false,
        }
    }

    /// Mappable RAM.
    pub fn memory(&self) -> &[Region] {
        &self.memory
    }

    /// What the linear map maps, and how: every page of mappable RAM, read/write, except the
    /// kernel's text and rodata, which are read-only there too (their linear alias, Linux's
    /// `mark_linear_text_alias_ro`; done at once here, since init_mm is built before anything
    /// could write through that alias). All execute-never. Pages only partly RAM are left out.
    pub fn linear_map(&self) -> Vec<(Region, Prot)> {
        let mut out = Vec::new();
        let ro = core::slice::from_ref(&self.read_only);
        for r in self
            .memory
            .iter()
            .filter_map(|&r| region::align_inward(r, PAGE_SIZE as u64))
        {
            let r = [r];
            let rw = region::subtract(&r, ro);
            let ro_part = region::subtract(&r, &rw);
            out.extend(rw.into_iter().map(|x| (x, Prot::KERNEL_RW)));
            out.extend(
                ro_part
                    .into_iter()
                    .filter_map(|x| region::align_inward(x, PAGE_SIZE as u64))
                    .map(|x| (x, Prot::KERNEL_RO)),
            );
        }
        out.sort_unstable_by_key(|(r, _)| r.base);
        out
    }

    /// May `[pa, pa + size)` be mapped with `prot`?
    pub fn check(&self, pa: u64, size: usize, prot: Prot) -> Result<(), MmError> {
        if !self.checked {
            return Ok(());
        }
        let r = Region::new(pa, size as u64);
        if prot.mem().is_cacheable() {
            if !region::covers(&self.memory, r) {
                return Err(MmError::CacheableNonRam { pa, size });
            }
        } else if region::overlaps(&self.memory, r) {
            return Err(MmError::UncachedAliasOfRam { pa, size });
        }
        if prot.writable() && region::overlaps(core::slice::from_ref(&self.read_only), r) {
            return Err(MmError::WritableKernelText { pa, size });
        }
        if prot.executable() && !region::covers(core::slice::from_ref(&self.text), r) {
            return Err(MmError::ExecutableNonText { pa, size });
        }
        Ok(())
    }
}

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

/// One `map_range` or `map_pages` call in progress.
struct MapCtx<'w, 'a, 'p> {
    walk: &'w Walk<'a>,
    va: usize,
    source: Source<'p>,
    prot: Prot,
    blocks: bool,
    /// Leaves are written in address order; `[va, done)` is what this call has mapped so far.
    done: Cell<usize>,
}

impl MapCtx<'_, '_, '_> {
    fn pa_of(&self, addr: usize) -> u64 {
        match self.source {
            Source::Contiguous(pa) => pa + (addr - self.va) as u64,
            Source::Pages(pages) => pages[(addr - self.va) >> PAGE_SHIFT].0,
        }
    }

    /// Does `[addr, next)` take one block of `size` (both addresses aligned, range covers it)?
    fn block_fits(&self, addr: usize, next: usize, size: usize) -> bool {
        self.blocks && next - addr == size && self.pa_of(addr).is_multiple_of(size as u64)
    }
}

/// The leaf VAs cleared by one unmap, for the TLB invalidation that must follow.
struct TlbFlush {
    base: usize,
    /// Leaves cleared so far; once it reaches `TLBI_MAX_OPS` only the count matters.
    n: usize,
    /// Page offsets from `base` of the first `TLBI_MAX_OPS - 1` leaves (2 KiB of stack rather
    /// than a heap allocation on the unmap path; left uninitialised, since zeroing 2 KiB on
    /// every iounmap of one page showed up in the benchmark). Entries `..n` are written.
    pages: [MaybeUninit<u32>; TLBI_MAX_OPS - 1],
}

impl TlbFlush {
    fn new(base: usize) -> Self {
        Self {
            base,
            n: 0,
            pages: [const { MaybeUninit::uninit() }; TLBI_MAX_OPS - 1],
        }
    }

    fn add(&mut self, va: usize) {
        if self.n < TLBI_MAX_OPS - 1 {
            match u32::try_from((va - self.base) >> PAGE_SHIFT) {
                Ok(p) => {
                    self.pages[self.n].write(p);
                }
                // More than 16 TiB into the range: certainly past the threshold anyway.
                Err(_) => self.n = TLBI_MAX_OPS - 1,
            }
        }
        self.n += 1;
    }

    /// `dsb ishst` (the cleared entries are visible to every walker before the invalidation),
    /// the TLBIs, then `dsb ish; isb`: after this no CPU can still translate a cleared VA.
    fn finish<E: PageTableEnv>(&self, env: &E) {
        if self.n == 0 {
            return;
        }
        let t0 = profile::start();
        env.dsb_ishst();
        if self.n < TLBI_MAX_OPS {
            for p in &self.pages[..self.n] {
                // SAFETY: `add` wrote every entry below `n` (here `n < TLBI_MAX_OPS`, so all of
                // them are inside the array).
                let p = unsafe { p.assume_init() };
                env.tlbi_page(self.base + ((p as usize) << PAGE_SHIFT));
            }
        } else {
            env.tlbi_all();
        }
        env.dsb_ish();
        env.isb();
        profile::stop(Section::Tlb, t0);
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
    fn level_walk<E: PageTableEnv>(
        env: &E,
        table: PhysAddr,
        level: Level,
        base: usize,
        visit: &mut dyn FnMut(usize, Level, Descriptor),
    ) {
        // SAFETY: the caller of `for_each_leaf` promises every table of the tree stays one.
        let slots = unsafe { env.table(table) };
        for (i, slot) in slots.iter().enumerate() {
            let va = base.wrapping_add(i * level.entry_size());
            let d = Descriptor::from_raw(slot.load(Ordering::Acquire));
            match level.next() {
                Some(next) if d.is_table(level) => level_walk(env, d.addr(), next, va, visit),
                _ if d.is_leaf(level) => visit(va, level, d),
                _ => {}
            }
        }
    }
    level_walk(env, root, Level::Pgd, va_base, visit);
}

/// The end of a range to unmap, or a panic naming `what` for a caller bug: a range that is not
/// page aligned or not in the kernel half.
fn unmap_end(what: &str, va: usize, size: usize) -> usize {
    assert!(
        (va | size) & (PAGE_SIZE - 1) == 0,
        "init_mm: {what}({va:#x}, {size:#x}) is not page aligned"
    );
    let Ok(end) = check_virt(va, size) else {
        panic!("init_mm: {what}({va:#x}, {size:#x}) is not a kernel range");
    };
    end
}

/// Check the arguments shared by `map_range` and `unmap_range`; the exclusive end on success.
fn check_virt(va: usize, size: usize) -> Result<usize, MmError> {
    match va.checked_add(size) {
        Some(end) if va >= KERNEL_VA_START => Ok(end),
        _ => Err(MmError::BadVirtRange { va, size }),
    }
}

impl<E: PageTableEnv> InitMm<E> {
    /// Map `[va, va + size)` to `[pa, pa + size)` with `prot`.
    ///
    /// All three must be page aligned and `va` in the kernel (TTBR1) half, and `prot` must suit
    /// what the physical range is ([`PhysLayout::check`]: cacheable only for RAM, never an
    /// uncached alias of RAM, never a writable alias of kernel text or rodata). With `blocks`, 1 GiB
    /// pud blocks and 2 MiB pmd blocks are used wherever `va` and `pa` are both aligned and the
    /// rest of the range covers the block; an existing, leaf-free table in the way of a block is
    /// replaced by it with break-before-make ("promotion").
    ///
    /// Takes no lock (in `Seed` mode): the caller owns the range. Mapping over a valid leaf is a
    /// bug in the range allocator and panics. On an error part-way (no memory for a table, a live
    /// block in the way) every leaf this call wrote is unmapped again before returning, so
    /// nothing is left mapped; tables it installed stay, as in Linux (they are empty and reusable,
    /// and `reclaim_empty_tables` can free them).
    ///
    /// Barriers: each leaf is one Release store; one `dsb ishst; isb` at the end of the call
    /// completes them all. Once per call is enough because no one may use the range before this
    /// returns — the caller publishes the address afterwards, ordered after the `dsb` — and the
    /// tables written on the way were each published with their own `dsb ishst; isb`.
    pub fn map_range(
        &self,
        va: usize,
        pa: u64,
        size: usize,
        prot: Prot,
        blocks: bool,
    ) -> Result<(), MmError> {
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
    /// Pages only (no blocks). Errors, the no-lock rule and the checks of every page against
    /// [`PhysLayout`] are as for [`map_range`](Self::map_range).
    pub fn map_pages(&self, va: usize, pages: &[PhysAddr], prot: Prot) -> Result<(), MmError> {
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

    /// The walk of `map_range` and `map_pages`, arguments checked.
    fn map_walk(
        &self,
        va: usize,
        end: usize,
        source: Source<'_>,
        prot: Prot,
        blocks: bool,
    ) -> Result<(), MmError> {
        let walk = self.begin_walk();
        let ctx = MapCtx {
            walk: &walk,
            va,
            source,
            prot,
            blocks,
            done: Cell::new(va),
        };
        match self.map_pgd_range(&ctx, va, end) {
            Ok(()) => {
                profile::timed(Section::LeafWrite, || {
                    self.env().dsb_ishst();
                    self.env().isb();
                });
                Ok(())
            }
            Err(e) => {
                // Still inside our walk (in the pre-patch baseline, still under its lock).
                self.unmap_walked(va, ctx.done.get());
                Err(e)
            }
        }
    }

    fn map_pgd_range(
        &self,
        ctx: &MapCtx<'_, '_, '_>,
        mut addr: usize,
        end: usize,
    ) -> Result<(), MmError> {
        loop {
            let next = addr_end(addr, end, PGDIR_SIZE);
            let pud = self.alloc_table_in(ctx.walk, self.pgd_offset_k(addr), addr)?;
            self.map_pud_range(ctx, pud, addr, next)?;
            if next == end {
                return Ok(());
            }
            addr = next;
        }
    }

    fn map_pud_range(
        &self,
        ctx: &MapCtx<'_, '_, '_>,
        mut pud: Entry<'_>,
        mut addr: usize,
        end: usize,
    ) -> Result<(), MmError> {
        loop {
            let next = addr_end(addr, end, PUD_SIZE);
            if ctx.block_fits(addr, next, PUD_SIZE) {
                self.set_leaf(ctx, pud, addr);
            } else {
                let pmd = self.alloc_table_in(ctx.walk, pud, addr)?;
                self.map_pmd_range(ctx, pmd, addr, next)?;
            }
            if next == end {
                return Ok(());
            }
            addr = next;
            pud = pud.sibling(addr);
        }
    }

    fn map_pmd_range(
        &self,
        ctx: &MapCtx<'_, '_, '_>,
        mut pmd: Entry<'_>,
        mut addr: usize,
        end: usize,
    ) -> Result<(), MmError> {
        loop {
            let next = addr_end(addr, end, PMD_SIZE);
            if ctx.block_fits(addr, next, PMD_SIZE) {
                self.set_leaf(ctx, pmd, addr);
            } else {
                let pte = self.alloc_table_in(ctx.walk, pmd, addr)?;
                self.map_pte_range(ctx, pte, addr, next);
            }
            if next == end {
                return Ok(());
            }
            addr = next;
            pmd = pmd.sibling(addr);
        }
    }

    fn map_pte_range(
        &self,
        ctx: &MapCtx<'_, '_, '_>,
        mut pte: Entry<'_>,
        mut addr: usize,
        end: usize,
    ) {
        loop {
            self.set_leaf(ctx, pte, addr);
            addr += PAGE_SIZE;
            if addr == end {
                return;
            }
            pte = pte.sibling(addr);
        }
    }

    /// Write the leaf for `addr` into `entry` (a page, or a block at pud/pmd level).
    fn set_leaf(&self, ctx: &MapCtx<'_, '_, '_>, entry: Entry<'_>, addr: usize) {
        let level = entry.level();
        let new = Descriptor::leaf(level, PhysAddr(ctx.pa_of(addr)), ctx.prot);
        let old = entry.read();
        if old.is_table(level) {
            self.promote(entry, old, new);
        } else if old.is_valid() {
            panic!(
                "init_mm: mapping {addr:#x} over a valid leaf {old:#x} (two live areas overlap?)"
            );
        } else {
            profile::timed(Section::LeafWrite, || {
                // SAFETY: the slot is invalid and the range is this call's (the range allocator
                // gave it to the caller alone); `map_range` checked `prot` against what the
                // physical range is.
                unsafe { self.env().set_entry(&entry, new.raw()) }
            });
        }
        ctx.done.set(addr + level.entry_size());
    }

    /// Replace the table under `entry` with the block `block`, break-before-make.
    ///
    /// Nobody else can be using the old tables: our range covers the block's whole span, and no
    /// other live area shares a page with ours. They must hold no valid leaf (we would be mapping
    /// over a live area). They are taken out bottom-up by [`free_table`](Self::free_table), and
    /// only then is the block written, followed by `dsb ishst; isb` like every valid descriptor.
    fn promote(&self, entry: Entry<'_>, old: Descriptor, block: Descriptor) {
        let sub = entry.level().next().expect("a pte is never a table");
        self.assert_no_leaves(old.addr(), sub, entry.span_start());
        self.free_table(entry);
        let env = self.env();
        // SAFETY: break-before-make done: the slot is invalid and its old translations gone
        // from every TLB; the block maps memory of this call with the checked `prot`.
        unsafe { env.set_entry(&entry, block.raw()) };
        env.dsb_ishst();
        env.isb();
        self.count_promotion();
    }

    fn assert_no_leaves(&self, table: PhysAddr, level: Level, base: usize) {
        for i in 0..PTRS_PER_TABLE {
            let va = base + i * level.entry_size();
            let d = self.entry_in(table, level, va).read();
            if d.is_table(level) {
                self.assert_no_leaves(d.addr(), level.next().expect("tables above ptes"), va);
            } else if d.is_valid() {
                panic!(
                    "init_mm: a block over {base:#x} would replace a valid leaf {d:#x} at {va:#x} \
                     (two live areas overlap?)"
                );
            }
        }
    }

    /// Take the table `entry` points at out of the tree and free it, with every table below it,
    /// bottom-up, as Linux's `pud_free_pmd_page` → `pmd_free_pte_page` do: each lower entry is
    /// cleared and its invalidation *completed* while the entry above still points at valid
    /// tables, then the entry above goes the same way. So a walker holding a stale upper entry
    /// can only reach tables that are still intact, and every table is freed only after the
    /// invalidation that covers it has completed. One invalidation per table: `dsb ishst;
    /// tlbi vaae1is; dsb ish; isb` (Linux's `__flush_tlb_kernel_pgtable`), which drops walk-cache
    /// copies of the cleared entry at every level.
    ///
    /// Callers guarantee that no other CPU maps into the subtree meanwhile (promotion: the range
    /// is the caller's; reclaim: quiescence).
    fn free_table(&self, entry: Entry<'_>) {
        let table = entry.read();
        let level = entry.level();
        debug_assert!(table.is_table(level), "{entry:?} holds no table");
        let sub = level.next().expect("a pte is never a table");
        if sub.next().is_some() {
            for i in 0..PTRS_PER_TABLE {
                let e = self.entry_in(table.addr(), sub, entry.span_start() + i * sub.entry_size());
                if e.read().is_table(sub) {
                    self.free_table(e);
                }
            }
        }
        let env = self.env();
        // SAFETY: clearing a table entry whose subtree holds nothing live (the callers' ranges).
        unsafe { env.set_entry(&entry, Descriptor::INVALID.raw()) };
        env.dsb_ishst();
        env.tlbi_va(entry.span_start());
        env.dsb_ish();
        env.isb();
        // SAFETY: the table is out of the tree and its invalidation completed (above); nothing
        // else referred to it (the callers own the range, or the tree is quiescent).
        unsafe { env.free_table_frame(table.addr()) };
    }

    /// Unmap every leaf in `[va, va + size)`: pages, and pmd/pud blocks that lie wholly inside the
    /// range (a block only partly inside is a caller bug: panic).
    ///
    /// Order (invariant 4): clear the leaves → `dsb ishst` → `tlbi vaale1is` per cleared
    /// leaf, or one `tlbi vmalle1is` from [`TLBI_MAX_OPS`] leaves on → `dsb ish; isb` → return.
    /// Only after this returns may the caller give the virtual range back for reuse.
    /// Intermediate tables stay in place.
    pub fn unmap_range(&self, va: usize, size: usize) {
        let end = unmap_end("unmap_range", va, size);
        self.unmap_walked(va, end);
    }

    /// `unmap_range` without its argument checks.
    fn unmap_walked(&self, start: usize, end: usize) {
        if start == end {
            return;
        }
        let mut flush = TlbFlush::new(start);
        self.unmap_level(self.pgd_phys(), Level::Pgd, start, end, &mut |span, _| {
            flush.add(span)
        });
        flush.finish(self.env());
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
    pub fn unmap_range_noflush(
        &self,
        va: usize,
        size: usize,
        on_leaf: &mut dyn FnMut(PhysAddr, usize),
    ) {
        let end = unmap_end("unmap_range_noflush", va, size);
        if va != end {
            self.unmap_level(self.pgd_phys(), Level::Pgd, va, end, &mut |_, d| {
                on_leaf(d.0, d.1)
            });
        }
    }

    /// Invalidate every TLB entry for the ranges `[start, end)` on every CPU and wait for it:
    /// `dsb ishst`, then one `tlbi vaale1is` per page when they hold fewer than
    /// [`TLBI_MAX_OPS`] pages in all, else one `tlbi vmalle1is`, then `dsb ish; isb` (Linux's
    /// `flush_tlb_kernel_range`, over each range rather than their whole span).
    pub fn flush_tlb_kernel_ranges(&self, ranges: &[(usize, usize)]) {
        let pages: usize = ranges.iter().map(|&(s, e)| (e - s) >> PAGE_SHIFT).sum();
        if pages == 0 {
            return;
        }
        let env = self.env();
        let t0 = profile::start();
        env.dsb_ishst();
        if pages < TLBI_MAX_OPS {
            for &(start, end) in ranges {
                for va in (start..end).step_by(PAGE_SIZE) {
                    env.tlbi_page(va);
                }
            }
        } else {
            env.tlbi_all();
        }
        env.dsb_ish();
        env.isb();
        profile::stop(Section::Tlb, t0);
    }

    /// Clear the leaves of `[start, end)` under `table`, calling `cleared(span start, (output
    /// address, leaf size))` for each.
    fn unmap_level(
        &self,
        table: PhysAddr,
        level: Level,
        start: usize,
        end: usize,
        cleared: &mut dyn FnMut(usize, (PhysAddr, usize)),
    ) {
        let mut addr = start;
        loop {
            let next = addr_end(addr, end, level.entry_size());
            let e = self.entry_in(table, level, addr);
            let d = e.read();
            if let (true, Some(sub)) = (d.is_table(level), level.next()) {
                self.unmap_level(d.addr(), sub, addr, next, cleared);
            } else if d.is_leaf(level) {
                let span = e.span_start();
                let whole = span >= start
                    && span
                        .checked_add(level.entry_size())
                        .is_some_and(|span_end| span_end <= end);
                assert!(
                    whole,
                    "init_mm: unmapping [{start:#x}, {end:#x}) would split the {} block at {span:#x}",
                    level.name()
                );
                // SAFETY: clearing a leaf of the caller's range; the caller invalidates the TLB
                // before the range is used again.
                unsafe { self.env().set_entry(&e, Descriptor::INVALID.raw()) };
                cleared(span, (d.addr(), level.entry_size()));
            }
            if next == end {
                return;
            }
            addr = next;
        }
    }

    /// Walk the tables for `va` without any lock: one Acquire load per level, each following the
    /// address read at the level above (the dependent-load chain of invariant 1).
    pub fn translate(&self, va: usize) -> Option<Translation> {
        if va < KERNEL_VA_START {
            return None;
        }
        let mut table = self.pgd_phys();
        for level in Level::ALL {
            let d = self.entry_in(table, level, va).read();
            if d.is_table(level) {
                table = d.addr();
            } else if d.is_leaf(level) {
                let off = (va & (level.entry_size() - 1)) as u64;
                return Some(Translation {
                    pa: PhysAddr(d.addr().0 + off),
                    level,
                    desc: d,
                });
            } else {
                return None;
            }
        }
        None
    }

    /// The table pages (below the pgd) whose span meets `[start, end)`.
    pub fn count_tables(&self, start: usize, end: usize) -> TableCount {
        let mut count = TableCount::default();
        let start = start.max(KERNEL_VA_START);
        if start < end {
            self.count_level(self.pgd_phys(), Level::Pgd, start, end, &mut count);
        }
        count
    }

    fn count_level(
        &self,
        table: PhysAddr,
        level: Level,
        start: usize,
        end: usize,
        count: &mut TableCount,
    ) {
        let Some(sub) = level.next() else { return };
        let mut addr = start;
        loop {
            let next = addr_end(addr, end, level.entry_size());
            let d = self.entry_in(table, level, addr).read();
            if d.is_table(level) {
                match sub {
                    Level::Pud => count.pud += 1,
                    Level::Pmd => count.pmd += 1,
                    _ => count.pte += 1,
                }
                self.count_level(d.addr(), sub, addr, next, count);
            }
            if next == end {
                return;
            }
            addr = next;
        }
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
    /// `[start, end)` (through this `InitMm`, or through the hardware walker by accessing it).
    /// The fast path of the table allocators reads a table entry without a lock and then writes
    /// into the table it points at; if that raced with this function, the write would land in a
    /// freed frame.
    pub unsafe fn reclaim_empty_tables(&self, start: usize, end: usize) -> usize {
        let start = start.max(KERNEL_VA_START);
        if start >= end {
            return 0;
        }
        self.reclaim_level(self.pgd_phys(), Level::Pgd, start, end)
    }

    fn reclaim_level(&self, table: PhysAddr, level: Level, start: usize, end: usize) -> usize {
        let Some(sub) = level.next() else { return 0 };
        let env = self.env();
        let mut freed = 0;
        let mut addr = start;
        loop {
            let next = addr_end(addr, end, level.entry_size());
            let e = self.entry_in(table, level, addr);
            let d = e.read();
            if d.is_table(level) {
                freed += self.reclaim_level(d.addr(), sub, addr, next);
                let span = e.span_start();
                let whole = span >= start
                    && span
                        .checked_add(level.entry_size())
                        .is_some_and(|span_end| span_end <= end);
                // SAFETY: `d` is a table descriptor of this tree, and under the quiescence this
                // function's caller guarantees nothing frees that table meanwhile.
                let empty = unsafe { env.table(d.addr()) }
                    .iter()
                    .all(|s| !Descriptor::from_raw(s.load(Ordering::Acquire)).is_valid());
                if whole && empty {
                    self.free_table(e);
                    self.count_reclaimed();
                    freed += 1;
                }
            }
            if next == end {
                return freed;
            }
            addr = next;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
