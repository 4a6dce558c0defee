//! Kernel TLB invalidation after unmapping: the batch one `unmap_range` collects, and the ranges
//! one lazy purge flushes. Both end in the same sequence (invariant 4 in `mm`'s module
//! documentation): `dsb ishst` (the cleared entries are visible to every walker before the
//! invalidation), one broadcast `tlbi vaale1is` per page or one `tlbi vmalle1is` for many,
//! `dsb ish; isb` (the invalidation completed on every CPU before anything else happens here).

use core::mem::MaybeUninit;

use super::env::PageTableEnv;
use super::layout::{PAGE_SHIFT, PAGE_SIZE};
use super::profile::{self, Section};

/// From this many leaves on, one `tlbi vmalle1is` replaces the per-leaf `tlbi vaale1is` (Linux's
/// `MAX_DVM_OPS`, one pte table's worth). Counted in TLBI operations, i.e. leaves: a 2 MiB block
/// is one operation, not 512 pages, because one `tlbi vaale1is` removes a block's entry.
pub const TLBI_MAX_OPS: usize = 512;

/// The invalidation sequence for `ops` leaves, whose addresses `each` hands to its argument
/// (called only when `ops < TLBI_MAX_OPS`).
fn invalidate<E: PageTableEnv>(env: &E, ops: usize, each: impl FnOnce(&mut dyn FnMut(usize))) {
    if ops == 0 {
        return;
    }
    let t0 = profile::start();
    env.dsb_ishst();
    if ops < TLBI_MAX_OPS {
        each(&mut |va| env.tlbi_page(va));
    } else {
        env.tlbi_all();
    }
    env.dsb_ish();
    env.isb();
    profile::stop(Section::Tlb, t0);
}

/// Invalidate every TLB entry for the ranges `[start, end)` on every CPU, and wait for it
/// (Linux's `flush_tlb_kernel_range`, over each range rather than their whole span).
pub fn flush_kernel_ranges<E: PageTableEnv>(env: &E, ranges: &[(usize, usize)]) {
    let pages: usize = ranges.iter().map(|&(s, e)| (e - s) >> PAGE_SHIFT).sum();
    invalidate(env, pages, |tlbi| {
        for &(start, end) in ranges {
            (start..end).step_by(PAGE_SIZE).for_each(&mut *tlbi);
        }
    });
}

/// The leaf VAs cleared by one unmap, for the TLB invalidation that must follow: its owner
/// (`unmap_range`, the only one) calls [`finish`](Self::finish), which invalidates them all,
/// before it returns, so the range is given back only after the invalidation completed
/// (invariant 4). The invalidation is an explicit, consuming call, not a `Drop`: a destructor can
/// be skipped (`mem::forget` is safe), and a batch whose invalidation never ran would let a range
/// be reused while CPUs still translate it. For the same reason the type is private to `mm`: code
/// outside it cannot hold a batch, let alone forget one:
///
/// ```compile_fail,E0603
/// use initmm::mm::tlb::TlbFlush; // error[E0603]: struct `TlbFlush` is private
/// ```
///
/// (The lazy path, which must *not* invalidate per call, uses no batch: `unmap_range_noflush`.)
#[must_use = "the cleared leaves stay in the TLBs until `finish` invalidates them"]
pub(super) struct TlbFlush<'e, E: PageTableEnv> {
    env: &'e E,
    base: usize,
    /// Leaves cleared so far; once it reaches `TLBI_MAX_OPS` only the count matters.
    n: usize,
    /// Page offsets from `base` of the first `TLBI_MAX_OPS - 1` leaves (2 KiB of stack rather
    /// than a heap allocation on the unmap path; left uninitialised, since zeroing 2 KiB on
    /// every iounmap of one page showed up in the benchmark). Entries `..n` are written while
    /// `n < TLBI_MAX_OPS`.
    pages: [MaybeUninit<u32>; TLBI_MAX_OPS - 1],
}

impl<'e, E: PageTableEnv> TlbFlush<'e, E> {
    /// An empty batch for leaves at or above `base`.
    pub(super) fn new(env: &'e E, base: usize) -> Self {
        Self {
            env,
            base,
            n: 0,
            pages: [const { MaybeUninit::uninit() }; TLBI_MAX_OPS - 1],
        }
    }

    /// Add the leaf at `va` (at or above the base).
    pub(super) fn add(&mut self, va: usize) {
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

    /// Invalidate every leaf of the batch on every CPU, and wait for it: after this no CPU can
    /// still translate a VA of the batch.
    pub(super) fn finish(self) {
        let (base, n, pages) = (self.base, self.n, &self.pages);
        invalidate(self.env, n, |tlbi| {
            for p in &pages[..n] {
                // SAFETY: called only for `n < TLBI_MAX_OPS`, and then `add` wrote every entry
                // below `n`.
                let p = unsafe { p.assume_init() };
                tlbi(base + ((p as usize) << PAGE_SHIFT));
            }
        });
    }
}
