//! Where areas come from and where their bookkeeping lives: this CPU's vmap node for small
//! areas, the global allocator for the rest (see [`NODES`]); reserving, finding, claiming and
//! releasing an area.

use super::*;

/// Per-CPU vmap nodes (Linux 6.9's `vmap_node`, in a simpler shape). Each CPU allocates its
/// small areas (up to [`SLOT_MAX_PAGES`] pages) from its own ranges of the window, fixed-size
/// slots in [`NODE_RANGE`]-sized pieces that it takes from the global allocator once
/// (`vmap_node::SlotArena`), under its own lock, and keeps its lazily freed areas on its own list:
/// CPUs mapping and unmapping at once meet on no virtual-area lock, and a small area costs no
/// search-tree work. A range's owner is found from an address alone (`KernelVm::home`), so a
/// free on another CPU, or the purge, takes the owner's lock. Larger areas and windows come from
/// the global allocator, as every area does when the window cannot hold a range.
pub const NODES: usize = crate::MAX_CPUS;

/// One CPU's node: its slots and its lazy list. Aligned to a cache line (the largest on the
/// Cortex-A72 and the cores Linux's `L1_CACHE_BYTES` covers is 64 bytes) so that two CPUs working
/// on their own nodes never write to one line: the locks are each CPU's own.
#[repr(align(64))]
pub(super) struct VmapNode {
    pub(super) slots: Mutex<SlotArena>,
    pub(super) lazy: Mutex<LazyList>,
}

/// The bookkeeping of some areas, global or a node's, locked: what `lookup`, `release` and the
/// purge use. An enum rather than a trait object, so that `claim`'s check is inlined into it.
pub(super) enum Book<'a> {
    Global(&'a mut VmapAreaAllocator),
    Node(&'a mut SlotArena),
}

impl Book<'_> {
    /// The live area whose reservation holds `addr`, with its tag; `retag` sees them first and
    /// may give the area a new tag.
    #[inline]
    pub(super) fn claim(
        &mut self,
        addr: usize,
        retag: impl FnOnce(VmapArea, usize) -> Option<usize>,
    ) -> Option<(VmapArea, usize)> {
        match self {
            Self::Global(a) => {
                let area = a.find(addr)?;
                let tag = a.tag(area.start)?;
                if let Some(new) = retag(area, tag) {
                    a.set_tag(area.start, new);
                }
                Some((area, tag))
            }
            Self::Node(s) => s.claim(addr, retag),
        }
    }

    /// Free the area that starts at `start`.
    #[inline]
    pub(super) fn free(&mut self, start: usize) -> Result<VmapArea, VaError> {
        match self {
            Self::Global(a) => a.free(start),
            Self::Node(s) => s.free(start),
        }
    }
}

/// Where an area's bookkeeping lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Home {
    Global,
    Node(usize),
}

impl<E: PageTableEnv, P: InstallPolicy> KernelVm<E, P> {
    /// Reserve a virtual range (plus its guard page) of `size` bytes at `align`: from this CPU's
    /// node when it is small, else from the global allocator. When there is no room, lazily freed
    /// areas are purged and the allocation tried once more (Linux's `alloc_vmap_area` does the
    /// same).
    ///
    /// `fail=areas:...` (`fault_inject::FAIL_AREAS`) makes this fail as a full range would, so
    /// that every caller's "no virtual space" path runs; it is decided before any lock is taken
    /// and reserves nothing.
    ///
    /// Always inline: its common case is a slot of this CPU's node, a few instructions (see
    /// `ioremap_prot_raw` for what leaving it to the compiler cost).
    #[inline(always)]
    pub(super) fn reserve(
        &self,
        size: usize,
        align: usize,
        kind: AreaKind,
    ) -> Result<VmapArea, VmError> {
        if crate::fault_inject::FAIL_AREAS.should_fail() {
            return Err(VmError::NoVirtualSpace(VaError::NoSpace {
                size: size.div_ceil(PAGE_SIZE) * PAGE_SIZE,
                align,
            }));
        }
        let small = self.use_nodes
            && kind != AreaKind::Window
            && (1..=SLOT_MAX_PAGES * PAGE_SIZE).contains(&size)
            && align <= SLOT;
        // The common case, inline: a slot of this CPU's node.
        if small && let Some(area) = self.node_alloc(size, align, kind) {
            return Ok(area);
        }
        self.reserve_slow(size, align, kind, small)
    }

    /// [`reserve`](Self::reserve) past its common case: from the global allocator, and when
    /// there is no room, purge and try once more (the node first again, for a small area).
    #[inline(never)]
    fn reserve_slow(
        &self,
        size: usize,
        align: usize,
        kind: AreaKind,
        small: bool,
    ) -> Result<VmapArea, VmError> {
        let global = || {
            profile::acquire(Lock::VmapArea, || self.vmap_area_lock.lock())
                .alloc
                .alloc_tagged(size, align, kind as usize)
        };
        match global() {
            Err(VaError::NoSpace { .. }) if self.lazy_stats().areas > 0 => {
                self.purge_all();
                match small.then(|| self.node_alloc(size, align, kind)).flatten() {
                    Some(area) => Ok(area),
                    None => global(),
                }
            }
            r => r,
        }
        .map_err(VmError::NoVirtualSpace)
    }

    /// A slot from this CPU's node, in a new range it takes from the global allocator when its
    /// ranges are full; `None` when the window has no room for a range (the caller then
    /// allocates globally).
    #[inline]
    pub(super) fn node_alloc(&self, size: usize, align: usize, kind: AreaKind) -> Option<VmapArea> {
        let node = self.init_mm.env().cpu_id();
        let mut slots = profile::acquire(Lock::VmapNode, || self.nodes[node].slots.lock());
        if let Some(area) = slots.alloc(size, align, kind as usize) {
            return Some(area);
        }
        self.node_add_range(node, &mut slots)?;
        slots.alloc(size, align, kind as usize)
    }

    /// Give node `node`'s arena (locked by the caller) a new range from the global allocator;
    /// `None` when the window has no room for one. Out of line: a node takes a range rarely.
    #[cold]
    #[inline(never)]
    fn node_add_range(&self, node: usize, slots: &mut SlotArena) -> Option<()> {
        // Its last page is the global allocator's guard page, which falls on the guard page of
        // the range's last slot.
        let range = profile::acquire(Lock::VmapArea, || self.vmap_area_lock.lock())
            .alloc
            .alloc_tagged(
                NODE_RANGE - PAGE_SIZE,
                NODE_RANGE,
                AreaKind::NodeRange as usize,
            )
            .ok()?;
        self.range_owner[(range.start - self.range_base) / NODE_RANGE]
            .store(node as u8 + 1, Ordering::Release);
        profile::shared_write();
        self.ranges.fetch_add(1, Ordering::Relaxed);
        slots.add_range(range.start);
        Some(())
    }

    /// Where the bookkeeping of the area holding `addr` lives: the node whose block holds it, or
    /// the global allocator.
    pub(super) fn home(&self, addr: usize) -> Home {
        let owner = addr
            .checked_sub(self.range_base)
            .and_then(|off| self.range_owner.get(off / NODE_RANGE))
            .map_or(0, |o| o.load(Ordering::Acquire));
        match owner {
            0 => Home::Global,
            n => Home::Node(usize::from(n) - 1),
        }
    }

    /// Run `f` on the bookkeeping that keeps the area holding `addr`, under its lock.
    pub(super) fn with_allocator<R>(&self, addr: usize, f: impl FnOnce(Book<'_>) -> R) -> R {
        self.with_home(self.home(addr), f)
    }

    /// Run `f` on the bookkeeping at `home`, under its lock.
    #[inline]
    pub(super) fn with_home<R>(&self, home: Home, f: impl FnOnce(Book<'_>) -> R) -> R {
        match home {
            Home::Global => f(Book::Global(
                &mut profile::acquire(Lock::VmapArea, || self.vmap_area_lock.lock()).alloc,
            )),
            Home::Node(n) => f(Book::Node(&mut profile::acquire(Lock::VmapNode, || {
                self.nodes[n].slots.lock()
            }))),
        }
    }

    /// Give a range back, now: only once no TLB can hold a translation of it.
    pub(super) fn release(&self, start: usize) {
        let freed = self.with_allocator(start, |mut a| a.free(start));
        debug_assert!(freed.is_ok(), "releasing {start:#x}: {freed:?}");
    }

    /// The area that starts at `addr` and is of kind `kind`; with `claim`, mark it
    /// [`AreaKind::Lazy`] in the same critical section, so that exactly one caller frees it.
    pub(super) fn lookup(
        &self,
        addr: usize,
        kind: AreaKind,
        claim: bool,
    ) -> Result<VmapArea, FreeError> {
        let mut verdict = Err(FreeError::NotMapped {
            addr: VirtAddr(addr),
        });
        self.with_allocator(addr, |mut a| {
            a.claim(addr, |area, tag| {
                verdict = Self::check_area(addr, kind, area, tag);
                (claim && verdict.is_ok()).then_some(AreaKind::Lazy as usize)
            })
        });
        verdict
    }

    /// Is `area`, tagged `tag` and holding `addr`, the `kind` area that starts at `addr`?
    fn check_area(
        addr: usize,
        kind: AreaKind,
        area: VmapArea,
        tag: usize,
    ) -> Result<VmapArea, FreeError> {
        let va = VirtAddr(addr);
        if area.start != addr {
            return Err(FreeError::InsideArea {
                addr: va,
                start: VirtAddr(area.start),
            });
        }
        match AreaKind::from_tag(tag) {
            AreaKind::Lazy => Err(FreeError::AlreadyFreed { addr: va }),
            // A node's range, seen from the global allocator: no area starts there.
            AreaKind::NodeRange => Err(FreeError::NotMapped { addr: va }),
            is if is != kind => Err(FreeError::WrongKind {
                addr: va,
                is,
                expected: kind,
            }),
            _ => Ok(area),
        }
    }

    /// Live areas (lazily freed ones included, until their purge) and free bytes in the vmalloc
    /// range, the nodes' ranges counted as the space they hand out. A balance check calls
    /// [`vm_unmap_aliases`](Self::vm_unmap_aliases) first.
    pub fn area_stats(&self) -> (usize, usize) {
        let (mut live, mut free) = {
            let a = self.vmap_area_lock.lock();
            (a.alloc.live_areas(), a.alloc.free_bytes())
        };
        let ranges = self.ranges.load(Ordering::Relaxed);
        // Each range is one global area, whose guard page the node does not hand out.
        live -= ranges;
        free += ranges * PAGE_SIZE;
        for node in &self.nodes {
            let slots = node.slots.lock();
            live += slots.live_areas();
            free += slots.free_bytes();
        }
        (live, free)
    }
}
