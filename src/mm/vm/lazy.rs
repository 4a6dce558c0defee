//! Lazy unmapping (see the module documentation of `vm`): freeing an area clears its leaves at
//! once and leaves the TLB invalidation, and the reuse of its virtual range, to one purge for many
//! areas.

use super::*;

/// Lazily freed pages, in all, above which a free purges: Linux's `lazy_max_pages()`, 32 MiB per
/// power of two of online CPUs (`fls(cpus) * 32 MiB`).
pub fn lazy_max_pages(online_cpus: usize) -> usize {
    let fls = usize::BITS - online_cpus.max(1).leading_zeros();
    fls as usize * ((32 << 20) / PAGE_SIZE)
}

/// Pages on their way back to the frame allocator, on the stack: left uninitialised until
/// pushed (zeroing them would cost more than the frees they batch).
struct PageRun {
    pages: [core::mem::MaybeUninit<PhysAddr>; PageRun::LEN],
    n: usize,
}

impl PageRun {
    const LEN: usize = 64;

    fn new() -> Self {
        Self {
            pages: [const { core::mem::MaybeUninit::uninit() }; Self::LEN],
            n: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.n == Self::LEN
    }

    fn push(&mut self, pa: PhysAddr) {
        self.pages[self.n].write(pa);
        self.n += 1;
    }

    fn clear(&mut self) {
        self.n = 0;
    }

    fn pages(&self) -> &[PhysAddr] {
        // SAFETY: the first `n` entries were written by `push` (`n` only grows there, by one
        // after each write, and goes back to 0 in `clear`), and `MaybeUninit<PhysAddr>` has the
        // layout of `PhysAddr`.
        unsafe { core::slice::from_raw_parts(self.pages.as_ptr().cast(), self.n) }
    }
}

/// One node's lazily freed areas: leaves cleared, TLB entries possibly still live.
#[derive(Default)]
pub(super) struct LazyList {
    /// `(start, end)` of each area.
    pub(super) areas: Vec<(usize, usize)>,
    /// Pages those areas span.
    pages: usize,
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

impl<E: PageTableEnv, P: InstallPolicy> KernelVm<E, P> {
    /// Free a claimed area lazily (Linux's `vunmap_range_noflush` and `free_vmap_area_noflush`):
    /// clear its leaves, give a vmalloc area's pages (`with_pages`) back at once, as Linux's
    /// `vfree` does, put the range on this CPU's lazy list, and purge when that list holds more
    /// than this CPU's share of the threshold.
    ///
    /// The pages may go back before the invalidation: no code touches a freed area, a stale TLB
    /// entry is never written through speculatively, and RAM is only ever mapped Normal
    /// write-back, so whoever gets a page next cannot be hurt by a stale translation of it
    /// elsewhere (invariant 4 in `mm`). The range is another matter: mapped again, a stale entry
    /// would translate it to the old page, so it waits for the purge.
    pub(super) fn free_lazily(&self, area: VmapArea, with_pages: bool) {
        let env = self.init_mm.env();
        if with_pages {
            // The pages go back in runs, one frame-cache visit per run.
            let mut run = PageRun::new();
            let give_back = |run: &mut PageRun| {
                // SAFETY: pages of this vmalloc area, allocated by `vmalloc_inner` with
                // `alloc_pages`; their leaves were just cleared, no other mapping of them exists,
                // and the area is claimed (freed exactly once). A stale TLB entry elsewhere is
                // harmless (see above).
                unsafe { env.free_pages(run.pages()) };
                run.clear();
            };
            self.init_mm
                .unmap_range_noflush(VirtAddr(area.start), area.size, |pa, size| {
                    for i in 0..size / PAGE_SIZE {
                        if run.is_full() {
                            give_back(&mut run);
                        }
                        run.push(PhysAddr(pa.0 + (i * PAGE_SIZE) as u64));
                    }
                });
            give_back(&mut run);
        } else {
            self.init_mm
                .unmap_range_noflush(VirtAddr(area.start), area.size, |_, _| {});
        }
        let node = env.cpu_id();
        let pages = area.size / PAGE_SIZE;
        let over = {
            let mut l = profile::acquire(Lock::VmapNode, || self.nodes[node].lazy.lock());
            l.areas.push((area.start, area.end()));
            l.pages += pages;
            l.pages > self.lazy_share.load(Ordering::Relaxed)
        };
        if over {
            self.purge_lazy();
        }
    }

    /// Make sure a purge runs after this point, by this CPU or by the one purging now (Linux
    /// queues `drain_vmap_work` for a worker): a free over the threshold must never find the
    /// purge "taken" and leave its areas behind.
    ///
    /// `purge_wanted` is set before the attempt to become the purger. The purger clears it before
    /// each round and, once it has let go of `purging`, looks at it again: a request made after
    /// its last round either sees `purging` free and purges itself, or was made before the purger
    /// let go, and then the purger sees it and goes round again (both sides use `SeqCst`, so one of
    /// the two must see the other's store).
    pub(super) fn purge_lazy(&self) {
        profile::shared_write();
        self.purge_wanted.store(true, Ordering::SeqCst);
        while self
            .purging
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            while self.purge_wanted.swap(false, Ordering::SeqCst) {
                self.purge_once();
            }
            self.purging.store(0, Ordering::SeqCst);
            if !self.purge_wanted.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    /// Purge every area freed before this call, waiting for a purge in progress if need be.
    pub(super) fn purge_all(&self) {
        loop {
            if self
                .purging
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                self.purge_wanted.store(false, Ordering::SeqCst);
                self.purge_once();
                self.purging.store(0, Ordering::SeqCst);
                // A request that came in meanwhile and found `purging` taken.
                if self.purge_wanted.load(Ordering::SeqCst) {
                    self.purge_lazy();
                }
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// One purge (Linux's `__purge_vmap_area_lazy`), by the holder of `purging`: every node's
    /// lazy areas, one TLB invalidation for all of them, completed, then their ranges back to
    /// their allocators.
    fn purge_once(&self) {
        let mut areas = Vec::new();
        for node in &self.nodes {
            let mut l = profile::acquire(Lock::VmapNode, || node.lazy.lock());
            areas.append(&mut l.areas);
            l.pages = 0;
        }
        #[cfg(test)]
        if let Some(hook) = self.purge_hook.get() {
            hook(self);
        }
        if areas.is_empty() {
            return;
        }
        // `purging`, `purge_wanted` and `purges`: lines every purging CPU writes.
        profile::shared_write();
        self.init_mm.flush_tlb_kernel_ranges(&areas);
        // Back to their allocators, one lock hold per run of areas with the same home. A node's
        // list holds mostly areas of its own ranges, in the order they were freed, so the runs
        // are long without sorting.
        let mut rest = &areas[..];
        while let Some(&(first, _)) = rest.first() {
            let home = self.home(first);
            let run = 1 + rest[1..]
                .iter()
                .take_while(|&&(start, _)| self.home(start) == home)
                .count();
            self.with_home(home, |mut a| {
                for &(start, _) in &rest[..run] {
                    let freed = a.free(start);
                    debug_assert!(freed.is_ok(), "purging {start:#x}: {freed:?}");
                }
            });
            rest = &rest[run..];
        }
        self.purges.fetch_add(1, Ordering::Relaxed);
    }

    /// Purge every lazily freed area now (Linux's `vm_unmap_aliases`): afterwards no CPU holds a
    /// TLB entry for any area freed before the call, and their ranges are free.
    pub fn vm_unmap_aliases(&self) {
        self.purge_all();
    }

    /// The lazy purge's counts (each node's, summed).
    pub fn lazy_stats(&self) -> LazyStats {
        let (mut areas, mut pages) = (0, 0);
        for n in &self.nodes {
            let l = n.lazy.lock();
            areas += l.areas.len();
            pages += l.pages;
        }
        LazyStats {
            areas,
            pages,
            purges: self.purges.load(Ordering::Relaxed),
        }
    }
}
