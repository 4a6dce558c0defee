//! One CPU's small virtual areas: fixed-size slots in ranges of the vmalloc window that the CPU
//! took from the global allocator (see `vm`'s per-CPU nodes).
//!
//! An area of up to [`SLOT_MAX_PAGES`] pages takes one slot of the smallest of five size classes
//! (2, 4, 8, 16 or 32 pages) that holds its pages and its guard page, so allocating, finding and
//! freeing one is an index computation and a push or pop on a free stack: no search tree, no
//! heap allocation. Linux keeps per-CPU blocks of small ranges in a similar way for `vm_map_ram`
//! (`vmap_block`).
//!
//! A range ([`NODE_RANGE`] bytes, aligned to itself) is carved, from its start, into sub-blocks of
//! [`SUB`] bytes (one page table's span, so areas of a class stay as dense as the global
//! allocator would pack them) as slots of some class are needed; each sub-block serves one class,
//! with a byte of bookkeeping per slot and a stack of its free slots. Sub-blocks with a free slot
//! are kept on a stack per class, so an allocation never searches.

use alloc::vec::Vec;

use super::layout::PAGE_SIZE;
use super::vmap_area::{VaError, VmapArea};

/// Slot sizes in pages, one per class: an area takes the smallest that holds it and its guard page.
const CLASS_PAGES: [usize; 5] = [2, 4, 8, 16, 32];
/// The largest slot, in bytes: areas larger than it (with the guard page) are not the nodes'.
pub const SLOT: usize = 32 * PAGE_SIZE;
/// The largest area a slot holds, in pages.
pub const SLOT_MAX_PAGES: usize = SLOT / PAGE_SIZE - 1;
/// What a node takes from the global allocator at a time.
pub const NODE_RANGE: usize = 64 << 30;
/// A range is carved into sub-blocks of this size (a pte table's span) as slots are needed.
pub const SUB: usize = 2 << 20;
/// Slots in a sub-block of the smallest class.
const MAX_SUB_SLOTS: usize = SUB / (2 * PAGE_SIZE);
const SUBS_PER_RANGE: usize = NODE_RANGE / SUB;
/// A slot's bookkeeping byte: 0 when free, else the area's tag (3 bits) and its pages (5 bits).
const PAGES_MASK: u8 = 0x1f;
/// Tags fit in the 3 bits above the pages.
pub const MAX_TAG: usize = 7;

/// One sub-block: its class, its slots' bookkeeping and a stack of its free slots.
struct Sub {
    class: usize,
    /// log2 of the slot size in bytes.
    shift: u32,
    meta: [u8; MAX_SUB_SLOTS],
    free: [u8; MAX_SUB_SLOTS],
    nfree: usize,
}

impl Sub {
    fn new(class: usize) -> Self {
        let slots = SUB / (CLASS_PAGES[class] * PAGE_SIZE);
        let mut s = Self {
            class,
            shift: (CLASS_PAGES[class] * PAGE_SIZE).trailing_zeros(),
            meta: [0; MAX_SUB_SLOTS],
            free: [0; MAX_SUB_SLOTS],
            nfree: slots,
        };
        // Popped from the top: the lowest slot first.
        for i in 0..slots {
            s.free[i] = (slots - 1 - i) as u8;
        }
        s
    }

    fn slot_size(&self) -> usize {
        1 << self.shift
    }

    /// Slots that hold a live area.
    fn live(&self) -> usize {
        (SUB >> self.shift) - self.nfree
    }
}

/// A range taken from the global allocator, carved into sub-blocks from its start.
struct NodeRangeSlots {
    start: usize,
    subs: Vec<Sub>,
}

impl NodeRangeSlots {
    fn holds(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start) < NODE_RANGE
    }

    /// For `addr` in this range: its sub-block, its slot there and the slot's start, if the
    /// sub-block exists.
    #[inline]
    fn place(&self, addr: usize) -> Option<(usize, usize, usize)> {
        let off = addr - self.start;
        let s = off / SUB;
        let shift = self.subs.get(s)?.shift;
        let slot = (off % SUB) >> shift;
        Some((s, slot, self.start + s * SUB + (slot << shift)))
    }
}

/// Where a slot is: range, sub-block, slot; and where it starts.
#[derive(Clone, Copy)]
struct SlotIndex {
    range: usize,
    sub: usize,
    slot: usize,
    start: usize,
}

/// The live area that a slot starting at `start` with bookkeeping byte `m` holds, if its
/// reservation (its pages and its guard page) holds `addr`, with its tag.
#[inline]
fn live_area(m: u8, start: usize, addr: usize) -> Option<(VmapArea, usize)> {
    let pages = usize::from(m & PAGES_MASK);
    (m != 0 && addr < start + (pages + 1) * PAGE_SIZE).then_some((
        VmapArea {
            start,
            size: pages * PAGE_SIZE,
        },
        usize::from(m >> 5),
    ))
}

/// One CPU's small areas. Pure bookkeeping with no locking: the node's lock wraps it.
pub struct SlotArena {
    ranges: Vec<NodeRangeSlots>,
    /// Per class, the sub-blocks with a free slot, `(range, sub)`, the one to use on top.
    /// (The live areas are counted from the sub-blocks' free stacks when asked for, by
    /// [`live_areas`](Self::live_areas) and [`free_bytes`](Self::free_bytes): no counter to keep
    /// on the allocation path.)
    partial: [Vec<(u32, u32)>; CLASS_PAGES.len()],
}

impl Default for SlotArena {
    fn default() -> Self {
        Self::new()
    }
}

impl SlotArena {
    /// An empty arena: [`alloc`](Self::alloc) asks for a range first.
    pub const fn new() -> Self {
        Self {
            ranges: Vec::new(),
            partial: [const { Vec::new() }; CLASS_PAGES.len()],
        }
    }

    /// Take the range `[start, start + NODE_RANGE)`, `NODE_RANGE`-aligned, from which the global
    /// allocator reserved `NODE_RANGE - PAGE_SIZE` bytes and keeps the last page as its guard page
    /// (the last slot's guard page falls on it).
    pub fn add_range(&mut self, start: usize) {
        debug_assert!(start.is_multiple_of(NODE_RANGE), "{start:#x}");
        self.ranges.push(NodeRangeSlots {
            start,
            subs: Vec::new(),
        });
    }

    /// A slot for an area of `size` bytes (rounded up to pages, at most [`SLOT_MAX_PAGES`]
    /// pages) tagged `tag` (at most [`MAX_TAG`]), aligned to at least `align` (at most
    /// [`SLOT`]): the smallest slot that holds the area and its guard page and is at least
    /// `align` large, since a slot is aligned to its size. `None` when every range is full: the
    /// caller adds one and tries again. Always inline: the allocation then hands its area to
    /// `reserve` in registers, not through a copy on the stack.
    #[inline(always)]
    pub fn alloc(&mut self, size: usize, align: usize, tag: usize) -> Option<VmapArea> {
        let pages = size.div_ceil(PAGE_SIZE);
        if !((1..=SLOT_MAX_PAGES).contains(&pages) && align <= SLOT && tag <= MAX_TAG) {
            bad_alloc(size, align, tag);
        }
        // The smallest class whose slots hold the pages and the guard page and are aligned to
        // `align`: slots are powers of two of at least 2 pages.
        let slot_pages = (pages + 1)
            .next_power_of_two()
            .max(align / PAGE_SIZE)
            .max(CLASS_PAGES[0]);
        let class = (slot_pages / CLASS_PAGES[0]).trailing_zeros() as usize;
        debug_assert_eq!(CLASS_PAGES[class], slot_pages);
        match self.partial[class].last() {
            Some(&(r, s)) => Some(self.take_slot(class, r as usize, s as usize, pages, tag)),
            None => self.take_slot_in_new_sub(class, pages, tag),
        }
    }

    /// Take the top free slot of sub-block `s` of range `r` (of `class`, with a free slot) for
    /// an area of `pages` pages tagged `tag`.
    #[inline]
    fn take_slot(
        &mut self,
        class: usize,
        r: usize,
        s: usize,
        pages: usize,
        tag: usize,
    ) -> VmapArea {
        let range = &mut self.ranges[r];
        let sub = &mut range.subs[s];
        sub.nfree -= 1;
        let slot = usize::from(sub.free[sub.nfree]);
        sub.meta[slot] = (tag as u8) << 5 | pages as u8;
        let slot_size = sub.slot_size();
        if sub.nfree == 0 {
            self.partial[class].pop();
        }
        VmapArea {
            start: range.start + s * SUB + slot * slot_size,
            size: pages * PAGE_SIZE,
        }
    }

    /// [`take_slot`](Self::take_slot) in a new sub-block of `class`, if the last range has room
    /// for one. Out of line, so that the common case (a sub-block with a free slot) needs no
    /// stack frame.
    #[cold]
    #[inline(never)]
    fn take_slot_in_new_sub(&mut self, class: usize, pages: usize, tag: usize) -> Option<VmapArea> {
        let (r, s) = self.new_sub(class)?;
        Some(self.take_slot(class, r, s, pages, tag))
    }

    /// A new sub-block of `class` in the last range, if it has room: its place.
    fn new_sub(&mut self, class: usize) -> Option<(usize, usize)> {
        let r = self.ranges.len().checked_sub(1)?;
        let range = &mut self.ranges[r];
        if range.subs.len() == SUBS_PER_RANGE {
            return None;
        }
        range.subs.push(Sub::new(class));
        let s = range.subs.len() - 1;
        self.partial[class].push((r as u32, s as u32));
        Some((r, s))
    }

    /// The sub-block at `(range, sub)` of `class` has a free slot again.
    #[cold]
    #[inline(never)]
    fn now_partial(&mut self, class: usize, range: usize, sub: usize) {
        self.partial[class].push((range as u32, sub as u32));
    }

    /// Is `addr` in one of this arena's ranges?
    pub fn contains(&self, addr: usize) -> bool {
        self.ranges
            .iter()
            .any(|r| (r.start..r.start + NODE_RANGE).contains(&addr))
    }

    /// The slot holding `addr`, if its sub-block exists.
    #[inline]
    fn index(&self, addr: usize) -> Option<SlotIndex> {
        let (range, r) = self
            .ranges
            .iter()
            .enumerate()
            .find(|(_, r)| r.holds(addr))?;
        let (sub, slot, start) = r.place(addr)?;
        Some(SlotIndex {
            range,
            sub,
            slot,
            start,
        })
    }

    /// [`index`](Self::index), with the slot's sub-block to change it: one lookup.
    #[inline]
    fn slot_mut(&mut self, addr: usize) -> Option<(SlotIndex, &mut Sub)> {
        let (range, r) = self
            .ranges
            .iter_mut()
            .enumerate()
            .find(|(_, r)| r.holds(addr))?;
        let (sub, slot, start) = r.place(addr)?;
        let i = SlotIndex {
            range,
            sub,
            slot,
            start,
        };
        Some((i, &mut r.subs[sub]))
    }

    /// The live area whose reservation (its pages and its guard page) contains `addr`.
    pub fn find(&self, addr: usize) -> Option<VmapArea> {
        self.find_tagged(addr).map(|(area, _)| area)
    }

    /// [`find`](Self::find), with the area's tag: one index computation.
    pub fn find_tagged(&self, addr: usize) -> Option<(VmapArea, usize)> {
        self.area_at(self.index(addr)?, addr)
    }

    /// The live area in slot `i`, if its reservation holds `addr`, with its tag.
    #[inline]
    fn area_at(&self, i: SlotIndex, addr: usize) -> Option<(VmapArea, usize)> {
        live_area(self.ranges[i.range].subs[i.sub].meta[i.slot], i.start, addr)
    }

    /// The tag of the live area that starts at `start`.
    pub fn tag(&self, start: usize) -> Option<usize> {
        self.find_tagged(start)
            .and_then(|(area, tag)| (area.start == start).then_some(tag))
    }

    /// The live area whose reservation holds `addr`, with its tag, after `retag` saw them: when
    /// it returns a tag, the area gets it. One lookup for "find it, check it, mark it".
    #[inline]
    pub fn claim(
        &mut self,
        addr: usize,
        retag: impl FnOnce(VmapArea, usize) -> Option<usize>,
    ) -> Option<(VmapArea, usize)> {
        let (i, sub) = self.slot_mut(addr)?;
        let m = &mut sub.meta[i.slot];
        let (area, tag) = live_area(*m, i.start, addr)?;
        if let Some(new) = retag(area, tag) {
            assert!(new <= MAX_TAG, "slot arena: tag {new}");
            *m = (new as u8) << 5 | (*m & PAGES_MASK);
        }
        Some((area, tag))
    }

    /// Give the live area that starts at `start` a new tag; its old tag.
    pub fn set_tag(&mut self, start: usize, tag: usize) -> Option<usize> {
        assert!(tag <= MAX_TAG, "slot arena: tag {tag}");
        let (i, sub) = self.slot_mut(start)?;
        if i.start != start {
            return None;
        }
        let m = &mut sub.meta[i.slot];
        if *m == 0 {
            return None;
        }
        let old = usize::from(*m >> 5);
        *m = (tag as u8) << 5 | (*m & PAGES_MASK);
        Some(old)
    }

    /// Free the area that starts at `start`: its slot can be handed out again. Inline: the
    /// purge frees runs of areas in a loop.
    #[inline]
    pub fn free(&mut self, start: usize) -> Result<VmapArea, VaError> {
        let Some((i, sub)) = self.slot_mut(start) else {
            return Err(VaError::NotAnArea { addr: start });
        };
        let area = match live_area(sub.meta[i.slot], i.start, start) {
            Some((area, _)) if area.start == start => area,
            Some((area, _)) => return Err(VaError::InsideArea { addr: start, area }),
            None => return Err(VaError::NotAnArea { addr: start }),
        };
        sub.meta[i.slot] = 0;
        sub.free[sub.nfree] = i.slot as u8;
        sub.nfree += 1;
        if sub.nfree == 1 {
            let class = sub.class;
            self.now_partial(class, i.range, i.sub);
        }
        Ok(area)
    }

    /// Live areas.
    pub fn live_areas(&self) -> usize {
        self.subs().map(Sub::live).sum()
    }

    /// Bytes of the ranges not taken by a live area's slot (each range counted without the
    /// global allocator's guard page at its end).
    pub fn free_bytes(&self) -> usize {
        let used: usize = self.subs().map(|s| s.live() << s.shift).sum();
        self.ranges.len() * (NODE_RANGE - PAGE_SIZE) - used
    }

    fn subs(&self) -> impl Iterator<Item = &Sub> {
        self.ranges.iter().flat_map(|r| r.subs.iter())
    }
}

/// `alloc`'s argument check failed: a caller bug. Out of line, so that the check costs the
/// allocation path a compare and a branch, not the setup of a formatted panic.
#[cold]
#[inline(never)]
fn bad_alloc(size: usize, align: usize, tag: usize) -> ! {
    panic!("slot arena: {size:#x} bytes at {align:#x}, tag {tag}")
}

#[cfg(test)]
mod tests;
