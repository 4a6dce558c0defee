//! Lazy unmapping (see the module documentation of `vm`): freeing an area clears its leaves at
//! once and leaves the TLB invalidation, and the area's reuse, to one purge for many areas.

use super::*;

/// Lazily freed pages, in all, above which a free purges: Linux's `lazy_max_pages()`, 32 MiB per
/// power of two of online CPUs (`fls(cpus) * 32 MiB`).
pub fn lazy_max_pages(online_cpus: usize) -> usize {
    let fls = usize::BITS - online_cpus.max(1).leading_zeros();
    fls as usize * ((32 << 20) / PAGE_SIZE)
}

/// Areas freed lazily: leaves cleared, TLB entries possibly still live.
#[derive(Default)]
pub(super) struct LazyList {
    /// `(start, end)` of each area.
    pub(super) areas: Vec<(usize, usize)>,
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

impl<E: PageTableEnv> KernelVm<E> {
    /// Free a claimed area lazily: clear its leaves, put it (and, for a vmalloc area,
    /// `with_pages`, its frames) on this CPU's lazy list, and purge if the lazily freed total
    /// passed the threshold.
    pub(super) fn free_lazily(&self, area: VmapArea, with_pages: bool) {
        let node = self.init_mm.env().cpu_id() % NODES;
        // Count the pages before the area is on a list, as Linux's free_vmap_area_noflush does:
        // a purge on another CPU may take the area the moment the node's lock is dropped, and
        // subtracts its pages then. Counted after, the total would dip below zero meanwhile.
        let pages = area.size / PAGE_SIZE;
        let total = self.lazy_pages.fetch_add(pages, Ordering::AcqRel) + pages;
        {
            let mut l = profile::acquire(Lock::VmapNode, || self.nodes[node].lazy.lock());
            let l = &mut *l;
            self.init_mm
                .unmap_range_noflush(VirtAddr(area.start), area.size, &mut |pa, size| {
                    if with_pages {
                        l.pages.extend(
                            (0..size / PAGE_SIZE).map(|i| PhysAddr(pa.0 + (i * PAGE_SIZE) as u64)),
                        );
                    }
                });
            l.areas.push((area.start, area.end()));
        }
        if total > self.lazy_max.load(Ordering::Relaxed) {
            self.purge(false);
        }
    }

    /// Purge every lazily freed area, every node's: one TLB invalidation for all of them,
    /// completed, then their ranges back to their allocators and their pages to the frame
    /// allocator. One CPU purges at a time; with `wait` false a CPU that finds another purging
    /// leaves it to that one (the areas it added are either in that purge or left for the next).
    pub(super) fn purge(&self, wait: bool) {
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
}
