//! The virtual-area allocator for the vmalloc/ioremap window (Linux's `vmap_area`).
//!
//! `vmap`, `vmalloc` and `ioremap` first reserve a range of kernel virtual addresses here, then
//! map it with the lock-free table allocators of `init_mm`. This module only hands out address
//! ranges: it never touches a page table, and it has no lock of its own. The caller wraps it in a
//! lock of its own (Linux's `vmap_area_lock`, historically `vmlist_lock`), never in the page-table
//! lock — that separation is the point of "mm: init_mm without ptlock". Because two live areas
//! never share a page, the leaf entries of different areas can then be written without any lock.
//!
//! # Layout
//!
//! Every reservation is `size` bytes for the caller plus one guard page right after it. The guard
//! page is never handed out and never mapped, so a linear overrun off the end of an area faults
//! instead of scribbling over its neighbour. It belongs to the area: it is released by
//! [`VmapAreaAllocator::free`] and [`VmapAreaAllocator::find`] attributes it to the area.
//!
//! # Data structures, and why
//!
//! Linux replaced its sorted list of areas by an augmented red-black tree because the list made
//! every allocation O(n) in the number of live areas. We keep the same two structures:
//!
//! * **free ranges** in a balanced search tree keyed by start address, each node augmented with
//!   the largest free-range length in its subtree (Linux's `subtree_max_size`). A first-fit search
//!   descends only into subtrees that can hold the request, so it finds the lowest fitting range
//!   without looking at the others. The tree is a treap (a search tree on the start address that is
//!   also a max-heap on a pseudo-random priority, which keeps it balanced with high probability)
//!   stored in an arena `Vec` and linked by `u32` indices: no `unsafe`, no per-node heap
//!   allocation, and released nodes are recycled through a free list threaded through the arena.
//!   An allocation is one root-to-leaf walk (two when alignment padding splits a range in
//!   three), a free two or three (find the neighbours, then merge or insert): O(log n).
//! * **busy areas** in a `BTreeMap<start, size | tag>`: `free(start)` and `find(addr)` are O(log n).
//!   Sizes are page multiples, so the low bits carry a small tag the caller chooses (what kind of
//!   area it is) without a second map to keep in step.
//!
//! Freed ranges are coalesced with both free neighbours, so the free tree never holds two adjacent
//! ranges, and after every area is freed it holds one range covering the whole window again.
//!
//! # Alignment and the lowest fitting address
//!
//! A free range `[s, e)` can hold a reservation of `r` bytes at alignment `a` if and only if
//! `align_up(s, a) + r <= e`. Whether that holds depends on where `s` lies modulo `a`, which the
//! `subtree_max_size` augmentation cannot express. For alignments above a page Linux therefore
//! descends with the conservative length `r + a - 1`, which is enough for any start but can skip
//! a lower range that happens to be aligned. We want the *lowest* fitting address, so we do it the
//! other way round:
//!
//! * a subtree is entered only if its `subtree_max_size >= r` (necessary for any fit), and the
//!   search visits candidate ranges in address order, checking each one exactly;
//! * the conservative bound bounds the cost: free ranges start on page boundaries, so any range of
//!   length `>= r + a - PAGE_SIZE` always fits. The search therefore stops at the latest at the
//!   lowest such range, and the only ranges it inspects and rejects are the ones of length in
//!   `[r, r + a - PAGE_SIZE)` that lie below the answer and are misaligned.
//!
//! For `a == PAGE_SIZE` (vmalloc, ioremap of small ranges) that interval is empty and the search is
//! one root-to-leaf walk. For larger alignments it costs O((k + 1) log n) where k is the number of
//! such "almost fitting but misaligned" holes below the answer — the price of returning the lowest
//! address, which the reference-model test checks against a naive linear scan.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

mod treap;

/// The translation granule: areas are whole pages, and each is followed by one guard page.
pub use super::layout::PAGE_SIZE;

/// A reserved range of kernel virtual addresses.
///
/// `size` is what the caller asked for, rounded up to pages, and does *not* include the guard
/// page that follows the area (`[start + size, start + size + PAGE_SIZE)` stays unmapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmapArea {
    /// First address of the area, aligned as requested.
    pub start: usize,
    /// Usable length in bytes, a multiple of [`PAGE_SIZE`], without the guard page.
    pub size: usize,
}

impl VmapArea {
    /// One past the last usable byte; the guard page starts here.
    pub fn end(&self) -> usize {
        self.start + self.size
    }
}

/// Why an allocation or a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaError {
    /// `alloc` of zero bytes.
    ZeroSize,
    /// The alignment is not a power of two, or is smaller than [`PAGE_SIZE`].
    BadAlign,
    /// The size, rounded up to pages plus the guard page, can never fit in the window.
    TooLarge,
    /// No free range can hold `size` bytes (already page-rounded) plus the guard page at `align`
    /// right now.
    NoSpace {
        /// The page-rounded size that was requested, without the guard page.
        size: usize,
        /// The requested alignment.
        align: usize,
    },
    /// `free` of an address that is not inside any live area (a double free, or a stray pointer).
    NotAnArea {
        /// The address passed to `free`.
        addr: usize,
    },
    /// `free` of an address inside a live area (or its guard page) that is not its start.
    InsideArea {
        /// The address passed to `free`.
        addr: usize,
        /// The area that contains it.
        area: VmapArea,
    },
}

impl fmt::Display for VaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroSize => f.write_str("vmap area: zero-sized allocation"),
            Self::BadAlign => write!(
                f,
                "vmap area: alignment must be a power of two and at least {PAGE_SIZE:#x}"
            ),
            Self::TooLarge => f.write_str(
                "vmap area: size plus guard page is larger than the whole vmalloc window",
            ),
            Self::NoSpace { size, align } => write!(
                f,
                "vmap area: no free range for {size:#x} bytes plus a guard page aligned to {align:#x}"
            ),
            Self::NotAnArea { addr } => {
                write!(
                    f,
                    "vmap area: free of {addr:#x}, which is not a live area (double free?)"
                )
            }
            Self::InsideArea { addr, area } => write!(
                f,
                "vmap area: free of {addr:#x}, which lies inside the area at {:#x} (size {:#x}); \
                 pass the area's start",
                area.start, area.size
            ),
        }
    }
}

impl core::error::Error for VaError {}

/// "No node": the null link of the arena tree.
const NIL: u32 = u32::MAX;

/// One free range `[start, start + len)` in the free tree.
#[derive(Clone, Copy, Debug)]
struct FreeNode {
    start: usize,
    len: usize,
    /// Largest `len` in the subtree rooted here (Linux's `subtree_max_size`).
    subtree_max_size: usize,
    left: u32,
    /// For a recycled slot: the next recycled slot.
    right: u32,
    /// Treap priority: a parent's priority is never below its children's.
    prio: u32,
}

/// A free range as `(start, len)`.
type FreeRange = (usize, usize);

/// What [`VmapAreaAllocator::carve`] took out of the free tree.
struct Carved {
    addr: usize,
    /// A free remainder after the reservation that must be inserted as a new node, when the
    /// carved range also keeps a remainder before the reservation (alignment padding).
    tail: Option<FreeRange>,
}

/// First-fit, lowest-address allocator of virtual ranges inside `[start, end)`.
///
/// Pure bookkeeping with no interior locking: wrap it in the vmap-area lock.
pub struct VmapAreaAllocator {
    start: usize,
    end: usize,
    /// Arena of free-tree nodes; slots on the recycled list are not reachable from `root`.
    nodes: Vec<FreeNode>,
    root: u32,
    /// Head of the list of recycled arena slots, linked through `right`.
    recycled: u32,
    nr_free_ranges: usize,
    free_bytes: usize,
    /// Live areas: start → size (without the guard page).
    busy: BTreeMap<usize, usize>,
    /// xorshift64 state for treap priorities; seeded, so runs are reproducible.
    rng: u64,
}

/// Where `[start, start + len)` can hold `resv` bytes at `align`, if it can.
fn fit(start: usize, len: usize, resv: usize, align: usize) -> Option<usize> {
    let addr = start.checked_next_multiple_of(align)?;
    // `start + len` cannot overflow: every free range lies inside the window.
    (addr.checked_add(resv)? <= start + len).then_some(addr)
}

impl VmapAreaAllocator {
    /// An allocator for the window `[start, end)`, initially all free.
    ///
    /// # Panics
    ///
    /// If `start` or `end` is not page aligned, or `start >= end`: the window is a build-time
    /// constant of the memory map, so this is a programming error rather than a runtime failure.
    pub fn new(start: usize, end: usize) -> Self {
        assert!(
            start.is_multiple_of(PAGE_SIZE) && end.is_multiple_of(PAGE_SIZE),
            "vmap window [{start:#x}, {end:#x}) is not page aligned"
        );
        assert!(start < end, "vmap window [{start:#x}, {end:#x}) is empty");
        let mut va = Self {
            start,
            end,
            nodes: Vec::new(),
            root: NIL,
            recycled: NIL,
            nr_free_ranges: 0,
            free_bytes: 0,
            busy: BTreeMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        };
        let node = va.new_node(start, end - start);
        va.root = node;
        va.free_bytes = end - start;
        va
    }

    /// Reserves `size` bytes (rounded up to pages) plus one guard page at the lowest free address
    /// that is a multiple of `align`.
    pub fn alloc(&mut self, size: usize, align: usize) -> Result<VmapArea, VaError> {
        self.alloc_tagged(size, align, 0)
    }

    /// Like [`alloc`](Self::alloc), remembering `tag` (below `PAGE_SIZE`) for [`tag`](Self::tag).
    pub fn alloc_tagged(
        &mut self,
        size: usize,
        align: usize,
        tag: usize,
    ) -> Result<VmapArea, VaError> {
        assert!(
            tag < PAGE_SIZE,
            "vmap area tag {tag} does not fit below the page size"
        );
        if size == 0 {
            return Err(VaError::ZeroSize);
        }
        if !align.is_power_of_two() || align < PAGE_SIZE {
            return Err(VaError::BadAlign);
        }
        let size = size
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or(VaError::TooLarge)?;
        let resv = size.checked_add(PAGE_SIZE).ok_or(VaError::TooLarge)?;
        if resv > self.end - self.start {
            return Err(VaError::TooLarge);
        }

        let mut carved = None;
        self.root = self.carve(self.root, resv, align, &mut carved);
        let Carved { addr, tail } = carved.ok_or(VaError::NoSpace { size, align })?;
        if let Some((start, len)) = tail {
            let node = self.new_node(start, len);
            self.root = self.insert(self.root, node);
        }
        self.free_bytes -= resv;
        self.busy.insert(addr, size | tag);
        Ok(VmapArea { start: addr, size })
    }

    /// The tag of the live area that starts at `start`.
    pub fn tag(&self, start: usize) -> Option<usize> {
        self.busy.get(&start).map(|&v| v & (PAGE_SIZE - 1))
    }

    /// Give the live area that starts at `start` a new tag (below `PAGE_SIZE`); its old tag, or
    /// `None` when no live area starts there.
    pub fn set_tag(&mut self, start: usize, tag: usize) -> Option<usize> {
        assert!(
            tag < PAGE_SIZE,
            "vmap area tag {tag} does not fit below the page size"
        );
        let v = self.busy.get_mut(&start)?;
        let old = *v & (PAGE_SIZE - 1);
        *v = (*v & !(PAGE_SIZE - 1)) | tag;
        Some(old)
    }

    /// Releases the area that starts at `start`, guard page included, and returns it.
    ///
    /// The caller must already have unmapped the area and invalidated the TLB for it: from here
    /// on the range may be handed to another CPU.
    pub fn free(&mut self, start: usize) -> Result<VmapArea, VaError> {
        let Some(size) = self.busy.remove(&start).map(|v| v & !(PAGE_SIZE - 1)) else {
            return Err(match self.find(start) {
                Some(area) => VaError::InsideArea { addr: start, area },
                None => VaError::NotAnArea { addr: start },
            });
        };
        self.release_range(start, start + size + PAGE_SIZE);
        Ok(VmapArea { start, size })
    }

    /// The live area whose reservation `[start, start + size + PAGE_SIZE)` contains `addr`.
    pub fn find(&self, addr: usize) -> Option<VmapArea> {
        let (&start, &v) = self.busy.range(..=addr).next_back()?;
        let size = v & !(PAGE_SIZE - 1);
        (addr - start < size + PAGE_SIZE).then_some(VmapArea { start, size })
    }

    /// Is `addr` inside this allocator's window?
    pub fn contains(&self, addr: usize) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// Number of live areas.
    pub fn live_areas(&self) -> usize {
        self.busy.len()
    }

    /// Bytes not reserved by any area (guard pages count as reserved).
    pub fn free_bytes(&self) -> usize {
        self.free_bytes
    }

    /// Number of distinct (coalesced) free ranges: 1 for an untouched window.
    pub fn free_ranges(&self) -> usize {
        self.nr_free_ranges
    }

    /// Checks every structural invariant and panics with a description of the first violation.
    ///
    /// O(n): for tests and debugging, not for the allocation path. Checks that the free tree is
    /// a search tree on start addresses and a heap on priorities, that its height is logarithmic,
    /// that every `subtree_max_size` is exact, that free ranges and busy reservations (with their
    /// guard pages) tile the window exactly with no two free ranges adjacent, and that the
    /// counters and the arena's recycled list agree with the tree.
    pub fn check_invariants(&self) {
        let (count, height) = self.check_subtree(self.root, u32::MAX);
        assert_eq!(
            count, self.nr_free_ranges,
            "free-range counter disagrees with the tree"
        );
        let mut recycled = 0;
        let mut slot = self.recycled;
        while slot != NIL {
            recycled += 1;
            slot = self.nodes[slot as usize].right;
        }
        assert_eq!(
            count + recycled,
            self.nodes.len(),
            "arena slots leaked or double-used"
        );
        // A treap's height is about 3·log2(n) with overwhelming probability; 4·log2(n) + 8 only
        // fails if the priorities stopped being random (or the heap order was broken).
        let bound = 4 * (usize::BITS - count.leading_zeros()) as usize + 8;
        assert!(
            height <= bound,
            "free tree of {count} nodes has height {height} > {bound}"
        );

        let mut ranges = Vec::with_capacity(count);
        self.collect(self.root, &mut ranges);
        let mut free_sum = 0;
        let mut busy = self
            .busy
            .iter()
            .map(|(&s, &v)| (s, s + (v & !(PAGE_SIZE - 1)) + PAGE_SIZE))
            .peekable();
        let mut free = ranges.iter().map(|&(s, len)| (s, s + len)).peekable();
        let mut cursor = self.start;
        let mut last_was_free = false;
        loop {
            let next_free = free.peek().copied();
            let next_busy = busy.peek().copied();
            let ((s, e), is_free) = match (next_free, next_busy) {
                (None, None) => break,
                (Some(f), Some(b)) if f.0 < b.0 => (f, true),
                (Some(f), None) => (f, true),
                (_, Some(b)) => (b, false),
            };
            if is_free {
                free.next();
                assert!(!last_was_free, "free ranges not coalesced at {s:#x}");
                assert!(s.is_multiple_of(PAGE_SIZE) && e.is_multiple_of(PAGE_SIZE));
                free_sum += e - s;
            } else {
                busy.next();
                assert!(s.is_multiple_of(PAGE_SIZE), "area {s:#x} not page aligned");
            }
            assert_eq!(
                s, cursor,
                "gap or overlap at {cursor:#x}: next range [{s:#x}, {e:#x})"
            );
            assert!(s < e, "empty range at {s:#x}");
            cursor = e;
            last_was_free = is_free;
        }
        assert_eq!(
            cursor, self.end,
            "free and busy ranges do not cover the whole window"
        );
        assert_eq!(
            free_sum, self.free_bytes,
            "free-byte counter disagrees with the tree"
        );
    }

    /// Recursive part of [`Self::check_invariants`]: returns (node count, height) of `t`.
    fn check_subtree(&self, t: u32, parent_prio: u32) -> (usize, usize) {
        if t == NIL {
            return (0, 0);
        }
        let n = self.nodes[t as usize];
        assert!(n.prio <= parent_prio, "heap order broken at {:#x}", n.start);
        assert!(n.len > 0, "empty free range at {:#x}", n.start);
        if n.left != NIL {
            let l = &self.nodes[n.left as usize];
            assert!(
                l.start + l.len < n.start,
                "left child {:#x} not below {:#x}",
                l.start,
                n.start
            );
        }
        if n.right != NIL {
            let r = &self.nodes[n.right as usize];
            assert!(
                n.start + n.len < r.start,
                "right child {:#x} not above {:#x}",
                r.start,
                n.start
            );
        }
        let want = n.len.max(self.max_of(n.left)).max(self.max_of(n.right));
        assert_eq!(
            n.subtree_max_size, want,
            "subtree_max_size wrong at {:#x}",
            n.start
        );
        let (lc, lh) = self.check_subtree(n.left, n.prio);
        let (rc, rh) = self.check_subtree(n.right, n.prio);
        (lc + rc + 1, lh.max(rh) + 1)
    }

    /// In-order (address-order) list of the free ranges under `t`.
    fn collect(&self, t: u32, out: &mut Vec<FreeRange>) {
        if t != NIL {
            let n = &self.nodes[t as usize];
            self.collect(n.left, out);
            out.push((n.start, n.len));
            self.collect(n.right, out);
        }
    }

    /// Gives the node starting at `key` (which must exist) the range `[start, start + len)`.
    ///
    /// The new range must keep the node's place in address order; the walk back up repairs
    /// `subtree_max_size` along the path.
    fn reshape(&mut self, t: u32, key: usize, start: usize, len: usize) {
        let FreeNode {
            start: here,
            left,
            right,
            ..
        } = *self.node(t);
        if key < here {
            self.reshape(left, key, start, len);
        } else if key > here {
            self.reshape(right, key, start, len);
        } else {
            let n = self.node_mut(t);
            n.start = start;
            n.len = len;
        }
        self.pull(t);
    }

    /// Takes the lowest-address fitting `resv` bytes at `align` out of subtree `t`, recording
    /// what it took in `out`; returns the subtree's new root.
    ///
    /// Visits ranges in address order, pruning subtrees whose `subtree_max_size` is below `resv`
    /// (see the module documentation for the cost with large alignments). The carved node is
    /// shrunk or removed in place and the augmentation repaired on the way back up, so the whole
    /// allocation is one walk.
    fn carve(&mut self, t: u32, resv: usize, align: usize, out: &mut Option<Carved>) -> u32 {
        if t == NIL || self.node(t).subtree_max_size < resv {
            return t;
        }
        let n = *self.node(t);
        let l = self.carve(n.left, resv, align, out);
        if out.is_some() {
            self.node_mut(t).left = l;
            self.pull(t);
            return t;
        }
        if n.len >= resv
            && let Some(addr) = fit(n.start, n.len, resv, align)
        {
            let head = addr - n.start;
            let tail_start = addr + resv;
            let tail = n.start + n.len - tail_start;
            let mut carved = Carved { addr, tail: None };
            match (head, tail) {
                (0, 0) => {
                    *out = Some(carved);
                    self.release_node(t);
                    return self.merge(n.left, n.right);
                }
                (0, _) => {
                    let node = self.node_mut(t);
                    node.start = tail_start;
                    node.len = tail;
                }
                (_, 0) => self.node_mut(t).len = head,
                _ => {
                    self.node_mut(t).len = head;
                    carved.tail = Some((tail_start, tail));
                }
            }
            *out = Some(carved);
            self.pull(t);
            return t;
        }
        let r = self.carve(n.right, resv, align, out);
        if out.is_some() {
            self.node_mut(t).right = r;
            self.pull(t);
        }
        t
    }

    /// The free ranges just below and at-or-above `addr`.
    fn neighbours(&self, addr: usize) -> (Option<FreeRange>, Option<FreeRange>) {
        let (mut below, mut above) = (None, None);
        let mut t = self.root;
        while t != NIL {
            let n = self.node(t);
            if n.start < addr {
                below = Some((n.start, n.len));
                t = n.right;
            } else {
                above = Some((n.start, n.len));
                t = n.left;
            }
        }
        (below, above)
    }

    /// Returns the reservation `[start, end)` to the free tree, coalescing with free neighbours.
    fn release_range(&mut self, start: usize, end: usize) {
        let (below, above) = self.neighbours(start);
        let prev = below.filter(|&(s, len)| s + len == start);
        let next = above.filter(|&(s, _)| s == end);
        match (prev, next) {
            (Some((ps, plen)), Some((ns, nlen))) => {
                self.root = self.erase(self.root, ns);
                self.reshape(self.root, ps, ps, plen + (end - start) + nlen);
            }
            (Some((ps, plen)), None) => self.reshape(self.root, ps, ps, plen + (end - start)),
            (None, Some((ns, nlen))) => self.reshape(self.root, ns, start, nlen + (end - start)),
            (None, None) => {
                let node = self.new_node(start, end - start);
                self.root = self.insert(self.root, node);
            }
        }
        self.free_bytes += end - start;
    }
}

#[cfg(test)]
mod tests;
