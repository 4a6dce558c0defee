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

    // ---- free-tree primitives -------------------------------------------------------------

    fn node(&self, t: u32) -> &FreeNode {
        &self.nodes[t as usize]
    }

    fn node_mut(&mut self, t: u32) -> &mut FreeNode {
        &mut self.nodes[t as usize]
    }

    fn max_of(&self, t: u32) -> usize {
        if t == NIL {
            0
        } else {
            self.node(t).subtree_max_size
        }
    }

    /// Recomputes `t`'s augmentation from its own length and its children's.
    fn pull(&mut self, t: u32) {
        let n = self.node(t);
        let max = n.len.max(self.max_of(n.left)).max(self.max_of(n.right));
        self.node_mut(t).subtree_max_size = max;
    }

    /// A detached node for `[start, start + len)`, in a recycled slot when there is one.
    fn new_node(&mut self, start: usize, len: usize) -> u32 {
        // xorshift64: cheap, and good enough to keep a treap balanced.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let node = FreeNode {
            start,
            len,
            subtree_max_size: len,
            left: NIL,
            right: NIL,
            prio: (self.rng >> 32) as u32,
        };
        self.nr_free_ranges += 1;
        if self.recycled != NIL {
            let slot = self.recycled;
            self.recycled = self.node(slot).right;
            *self.node_mut(slot) = node;
            slot
        } else {
            // The tree never holds more than live_areas + 1 ranges, and every live area costs far
            // more memory than a node, so the heap runs out long before 2^32 slots.
            let slot = u32::try_from(self.nodes.len())
                .ok()
                .filter(|&s| s != NIL)
                .expect("vmap free tree: more than 2^32 - 1 free ranges");
            self.nodes.push(node);
            slot
        }
    }

    /// Returns a detached node's slot to the recycled list.
    fn release_node(&mut self, t: u32) {
        self.nr_free_ranges -= 1;
        let head = self.recycled;
        let n = self.node_mut(t);
        n.left = NIL;
        n.right = head;
        self.recycled = t;
    }

    /// Splits `t` into the nodes starting below `key` and those starting at or above it.
    fn split(&mut self, t: u32, key: usize) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.node(t).start < key {
            let (l, r) = self.split(self.node(t).right, key);
            self.node_mut(t).right = l;
            self.pull(t);
            (t, r)
        } else {
            let (l, r) = self.split(self.node(t).left, key);
            self.node_mut(t).left = r;
            self.pull(t);
            (l, t)
        }
    }

    /// Joins two trees where every start in `a` is below every start in `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.node(a).prio >= self.node(b).prio {
            let r = self.merge(self.node(a).right, b);
            self.node_mut(a).right = r;
            self.pull(a);
            a
        } else {
            let l = self.merge(a, self.node(b).left);
            self.node_mut(b).left = l;
            self.pull(b);
            b
        }
    }

    /// Inserts the detached node `n` into `t`; returns the new root of `t`.
    fn insert(&mut self, t: u32, n: u32) -> u32 {
        if t == NIL {
            return n;
        }
        let key = self.node(n).start;
        if self.node(n).prio > self.node(t).prio {
            let (l, r) = self.split(t, key);
            let node = self.node_mut(n);
            node.left = l;
            node.right = r;
            self.pull(n);
            return n;
        }
        if key < self.node(t).start {
            let l = self.insert(self.node(t).left, n);
            self.node_mut(t).left = l;
        } else {
            let r = self.insert(self.node(t).right, n);
            self.node_mut(t).right = r;
        }
        self.pull(t);
        t
    }

    /// Removes the node starting at `key` (which must exist) from `t`; returns the new root.
    fn erase(&mut self, t: u32, key: usize) -> u32 {
        let n = *self.node(t);
        if key == n.start {
            self.release_node(t);
            return self.merge(n.left, n.right);
        }
        if key < n.start {
            let l = self.erase(n.left, key);
            self.node_mut(t).left = l;
        } else {
            let r = self.erase(n.right, key);
            self.node_mut(t).right = r;
        }
        self.pull(t);
        t
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
mod tests {
    use super::*;
    use std::time::Instant;

    const VMALLOC_START: usize = 0xFFFF_8000_0000_0000;
    const VMALLOC_END: usize = 0xFFFF_FE00_0000_0000;
    const MIB: usize = 1 << 20;
    const GIB: usize = 1 << 30;

    fn vmalloc_window() -> VmapAreaAllocator {
        VmapAreaAllocator::new(VMALLOC_START, VMALLOC_END)
    }

    /// Small deterministic PRNG for the tests (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// The obvious O(n) allocator: a sorted list of free ranges scanned from the bottom.
    struct Reference {
        start: usize,
        end: usize,
        free: Vec<(usize, usize)>, // sorted, coalesced [start, end)
        busy: BTreeMap<usize, usize>,
    }

    impl Reference {
        fn new(start: usize, end: usize) -> Self {
            Self {
                start,
                end,
                free: vec![(start, end)],
                busy: BTreeMap::new(),
            }
        }

        fn alloc(&mut self, size: usize, align: usize) -> Result<VmapArea, VaError> {
            if size == 0 {
                return Err(VaError::ZeroSize);
            }
            if align.count_ones() != 1 || align < PAGE_SIZE {
                return Err(VaError::BadAlign);
            }
            let pages = size.div_ceil(PAGE_SIZE);
            let Some(size) = pages.checked_mul(PAGE_SIZE) else {
                return Err(VaError::TooLarge);
            };
            if size >= self.end - self.start {
                return Err(VaError::TooLarge);
            }
            for i in 0..self.free.len() {
                let (s, e) = self.free[i];
                let rem = s % align;
                let Some(a) = (if rem == 0 {
                    Some(s)
                } else {
                    s.checked_add(align - rem)
                }) else {
                    continue;
                };
                if a < e && e - a > size {
                    let r_end = a + size + PAGE_SIZE;
                    let mut repl = Vec::new();
                    if a > s {
                        repl.push((s, a));
                    }
                    if r_end < e {
                        repl.push((r_end, e));
                    }
                    self.free.splice(i..=i, repl);
                    self.busy.insert(a, size);
                    return Ok(VmapArea { start: a, size });
                }
            }
            Err(VaError::NoSpace { size, align })
        }

        fn free(&mut self, start: usize) -> Result<VmapArea, VaError> {
            let Some(size) = self.busy.remove(&start) else {
                for (&s, &sz) in &self.busy {
                    if s <= start && start < s + sz + PAGE_SIZE {
                        return Err(VaError::InsideArea {
                            addr: start,
                            area: VmapArea { start: s, size: sz },
                        });
                    }
                }
                return Err(VaError::NotAnArea { addr: start });
            };
            self.free.push((start, start + size + PAGE_SIZE));
            self.free.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for &(s, e) in &self.free {
                match merged.last_mut() {
                    Some(last) if last.1 == s => last.1 = e,
                    _ => merged.push((s, e)),
                }
            }
            self.free = merged;
            Ok(VmapArea { start, size })
        }

        fn free_bytes(&self) -> usize {
            self.free.iter().map(|&(s, e)| e - s).sum()
        }
    }

    #[test]
    fn alloc_free_basics() {
        let mut va = vmalloc_window();
        let total = VMALLOC_END - VMALLOC_START;
        assert_eq!(va.free_bytes(), total);
        assert_eq!(va.free_ranges(), 1);

        let a = va.alloc(1, PAGE_SIZE).unwrap();
        assert_eq!(
            a,
            VmapArea {
                start: VMALLOC_START,
                size: PAGE_SIZE
            }
        );
        let b = va.alloc(3 * PAGE_SIZE + 1, PAGE_SIZE).unwrap();
        assert_eq!(b.size, 4 * PAGE_SIZE, "size rounds up to whole pages");
        assert_eq!(va.live_areas(), 2);
        assert_eq!(
            va.free_bytes(),
            total - (a.size + PAGE_SIZE) - (b.size + PAGE_SIZE)
        );
        assert_eq!(va.find(b.start + 5), Some(b));
        assert_eq!(va.find(VMALLOC_START - 1), None);
        va.check_invariants();

        assert_eq!(va.free(a.start), Ok(a));
        // The lowest free address is reused first.
        let c = va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(c.start, a.start);
        assert_eq!(va.free(c.start), Ok(c));
        assert_eq!(va.free(b.start), Ok(b));
        assert_eq!(va.live_areas(), 0);
        assert_eq!(va.free_bytes(), total);
        assert_eq!(va.free_ranges(), 1);
        va.check_invariants();
    }

    #[test]
    fn argument_errors() {
        let mut va = vmalloc_window();
        assert_eq!(va.alloc(0, PAGE_SIZE), Err(VaError::ZeroSize));
        assert_eq!(va.alloc(PAGE_SIZE, 0), Err(VaError::BadAlign));
        assert_eq!(va.alloc(PAGE_SIZE, 3 * PAGE_SIZE), Err(VaError::BadAlign));
        assert_eq!(va.alloc(PAGE_SIZE, PAGE_SIZE / 2), Err(VaError::BadAlign));
        assert_eq!(va.alloc(usize::MAX, PAGE_SIZE), Err(VaError::TooLarge));
        assert_eq!(
            va.alloc(usize::MAX - PAGE_SIZE + 1, PAGE_SIZE),
            Err(VaError::TooLarge)
        );
        // The whole window cannot be handed out: the guard page needs room too.
        let total = VMALLOC_END - VMALLOC_START;
        assert_eq!(va.alloc(total, PAGE_SIZE), Err(VaError::TooLarge));
        let all = va.alloc(total - PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(va.free_bytes(), 0);
        assert_eq!(va.free(all.start), Ok(all));
        // Messages say what went wrong and with which numbers.
        let e = VaError::NoSpace {
            size: 0x2000,
            align: 0x20_0000,
        };
        assert_eq!(
            e.to_string(),
            "vmap area: no free range for 0x2000 bytes plus a guard page aligned to 0x200000"
        );
        let e = VaError::InsideArea {
            addr: 0x5000,
            area: VmapArea {
                start: 0x4000,
                size: 0x2000,
            },
        };
        assert!(e.to_string().contains("0x5000") && e.to_string().contains("0x4000"));
        assert!(VaError::BadAlign.to_string().contains("power of two"));
        va.check_invariants();
    }

    #[test]
    fn guard_page_separates_consecutive_areas() {
        let mut va = vmalloc_window();
        let a = va.alloc(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
        let b = va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
        // Exactly one page between a's last usable byte and b's first.
        assert_eq!(b.start - a.end(), PAGE_SIZE);
        let guard = a.end();
        // The guard belongs to a: not usable by b, not free, and not a valid free() target.
        assert_eq!(va.find(guard), Some(a));
        assert_eq!(va.find(guard + PAGE_SIZE - 1), Some(a));
        assert_eq!(va.find(guard + PAGE_SIZE), Some(b));
        assert_eq!(
            va.free(guard),
            Err(VaError::InsideArea {
                addr: guard,
                area: a
            })
        );
        // Freeing a returns its guard page too: a same-size area fits exactly back in.
        let before = va.free_bytes();
        va.free(a.start).unwrap();
        assert_eq!(va.free_bytes(), before + a.size + PAGE_SIZE);
        assert_eq!(va.alloc(2 * PAGE_SIZE, PAGE_SIZE).unwrap(), a);
        va.check_invariants();
    }

    #[test]
    fn exhaustion_reports_no_space() {
        let base = 0x4000_0000;
        let mut va = VmapAreaAllocator::new(base, base + 16 * PAGE_SIZE);
        let a = va.alloc(7 * PAGE_SIZE, PAGE_SIZE).unwrap();
        let b = va.alloc(7 * PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!((a.start, b.start), (base, base + 8 * PAGE_SIZE));
        assert_eq!(va.free_bytes(), 0);
        assert_eq!(va.free_ranges(), 0);
        assert_eq!(
            va.alloc(1, PAGE_SIZE),
            Err(VaError::NoSpace {
                size: PAGE_SIZE,
                align: PAGE_SIZE
            })
        );
        va.check_invariants();
        // Free space exists but not at the requested alignment: still NoSpace, nothing changed.
        va.free(b.start).unwrap();
        assert_eq!(
            va.alloc(PAGE_SIZE, 16 * PAGE_SIZE),
            Err(VaError::NoSpace {
                size: PAGE_SIZE,
                align: 16 * PAGE_SIZE
            })
        );
        assert_eq!(va.free_bytes(), 8 * PAGE_SIZE);
        va.check_invariants();
    }

    #[test]
    fn bad_free_is_refused() {
        let mut va = vmalloc_window();
        let a = va.alloc(4 * PAGE_SIZE, PAGE_SIZE).unwrap();
        let b = va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
        let before = va.free_bytes();
        let inner = a.start + PAGE_SIZE;
        assert_eq!(
            va.free(inner),
            Err(VaError::InsideArea {
                addr: inner,
                area: a
            })
        );
        assert_eq!(
            va.free(a.start + 1),
            Err(VaError::InsideArea {
                addr: a.start + 1,
                area: a
            })
        );
        assert_eq!(va.free(a.start), Ok(a));
        // Double free.
        assert_eq!(va.free(a.start), Err(VaError::NotAnArea { addr: a.start }));
        // Addresses that never were an area, inside and outside the window.
        let past = b.end() + PAGE_SIZE;
        assert_eq!(va.free(past), Err(VaError::NotAnArea { addr: past }));
        assert_eq!(va.free(0x1000), Err(VaError::NotAnArea { addr: 0x1000 }));
        assert_eq!(va.free_bytes(), before + a.size + PAGE_SIZE);
        assert_eq!(va.live_areas(), 1);
        va.check_invariants();
    }

    #[test]
    fn coalescing_restores_a_single_free_range() {
        let mut va = vmalloc_window();
        let mut rng = Rng(0x1234_5678);
        let mut areas: Vec<VmapArea> = (0..2000)
            .map(|_| va.alloc((1 + rng.below(8)) * PAGE_SIZE, PAGE_SIZE).unwrap())
            .collect();
        // Free in a random order so every merge case (below, above, both, none) occurs.
        for i in (1..areas.len()).rev() {
            areas.swap(i, rng.below(i + 1));
        }
        let mut max_ranges = 0;
        for (i, a) in areas.iter().enumerate() {
            assert_eq!(va.free(a.start), Ok(*a));
            max_ranges = max_ranges.max(va.free_ranges());
            if i % 100 == 0 {
                va.check_invariants();
            }
        }
        assert!(max_ranges > 100, "the test did not fragment the free tree");
        assert_eq!(va.free_ranges(), 1);
        assert_eq!(va.free_bytes(), VMALLOC_END - VMALLOC_START);
        va.check_invariants();
    }

    #[test]
    fn aligned_allocations_take_the_lowest_aligned_address() {
        let mut va = vmalloc_window();
        let pages = |n: usize| VMALLOC_START + n * PAGE_SIZE;
        // Keep the (2 MiB and 1 GiB aligned) bottom page busy, then fragment the next 9.4 MiB:
        // 1-page areas with every other one freed leave two-page holes at every 4th page, each
        // big enough for a 1-page area, but only every 128th of them is 2 MiB aligned.
        let bottom = va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(bottom.start, VMALLOC_START);
        let small: Vec<_> = (0..1200)
            .map(|_| va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap())
            .collect();
        for a in small.iter().skip(1).step_by(2) {
            va.free(a.start).unwrap();
        }
        // Holes at pages 4, 8, .., 2396; the last freed area merged into the top range at 2400.
        assert_eq!(va.free_ranges(), 600);

        assert_eq!(va.alloc(PAGE_SIZE, 2 * MIB).unwrap().start, pages(512));
        assert_eq!(va.alloc(PAGE_SIZE, 2 * MIB).unwrap().start, pages(1024));
        // A 2 MiB area needs more than any hole: the first 2 MiB boundary in the top range.
        assert_eq!(va.alloc(2 * MIB, 2 * MIB).unwrap().start, pages(2560));
        // The top free range now starts misaligned, far below the first free 1 GiB boundary.
        let gib = va.alloc(5 * PAGE_SIZE, GIB).unwrap();
        assert_eq!(gib.start, VMALLOC_START + GIB);
        // Unaligned requests still take the lowest hole, below all of the above.
        assert_eq!(va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap().start, pages(4));
        // With the 1 GiB area freed, its boundary is found again inside a range that starts
        // below it.
        va.free(gib.start).unwrap();
        assert_eq!(va.alloc(GIB, GIB).unwrap().start, VMALLOC_START + GIB);
        // The padding left below the 2 MiB area, [2400, 2560), is the lowest range that can hold
        // 3 pages; at 64-page alignment the area lands inside it and splits it in three.
        let before = va.free_ranges();
        assert_eq!(
            va.alloc(2 * PAGE_SIZE, 64 * PAGE_SIZE).unwrap().start,
            pages(2432)
        );
        assert_eq!(va.free_ranges(), before + 1);
        va.check_invariants();
    }

    #[test]
    fn matches_reference_model_over_random_operations() {
        // The full vmalloc window and a small one where NoSpace and TooLarge happen often.
        for (seed, start, end) in [
            (0xDEAD_BEEF_u64, VMALLOC_START, VMALLOC_END),
            (0x0BAD_CAFE_u64, 0x8000_0000, 0x8000_0000 + 256 * MIB),
        ] {
            let mut rng = Rng(seed);
            let mut va = VmapAreaAllocator::new(start, end);
            let mut model = Reference::new(start, end);
            let mut live: Vec<usize> = Vec::new();
            let (mut failures, mut padded) = (0, 0);
            for op in 0..20_000 {
                let roll = rng.below(100);
                if roll < 55 || live.is_empty() {
                    let size = match rng.below(10) {
                        0 => rng.below(4 * MIB) + 1,
                        1 => 0,
                        _ => rng.below(16 * PAGE_SIZE) + 1,
                    };
                    let align = match rng.below(20) {
                        0..=10 => PAGE_SIZE,
                        11..=16 => PAGE_SIZE << rng.below(9),
                        17 | 18 => 2 * MIB,
                        _ => GIB,
                    };
                    let got = va.alloc(size, align);
                    assert_eq!(
                        got,
                        model.alloc(size, align),
                        "op {op}: alloc({size:#x}, {align:#x})"
                    );
                    match got {
                        Ok(a) => {
                            assert!(a.start.is_multiple_of(align));
                            padded +=
                                usize::from(a.start != start && va.find(a.start - 1).is_none());
                            live.push(a.start);
                        }
                        Err(_) => failures += 1,
                    }
                } else if roll < 97 {
                    let addr = live.swap_remove(rng.below(live.len()));
                    assert_eq!(va.free(addr), model.free(addr), "op {op}: free({addr:#x})");
                } else {
                    // Interior pointers, double frees and stray addresses.
                    let addr = start + rng.below(64 * MIB / PAGE_SIZE) * PAGE_SIZE + rng.below(2);
                    if !live.contains(&addr) {
                        assert_eq!(
                            va.free(addr),
                            model.free(addr),
                            "op {op}: bad free({addr:#x})"
                        );
                    }
                }
                assert_eq!(va.free_bytes(), model.free_bytes());
                assert_eq!(va.live_areas(), model.busy.len());
                assert_eq!(va.free_ranges(), model.free.len());
                if op % 500 == 0 {
                    va.check_invariants();
                }
            }
            assert!(
                failures > 0 && padded > 0,
                "the random mix missed failures or padding"
            );
            va.check_invariants();
        }
    }

    // ---- Linux lib/test_vmalloc.c allocation patterns, on the allocator alone ----------------

    #[test]
    fn test_vmalloc_fix_size_alloc() {
        let mut va = vmalloc_window();
        let total = va.free_bytes();
        for _ in 0..5000 {
            let a = va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
            assert_eq!(
                a,
                VmapArea {
                    start: VMALLOC_START,
                    size: PAGE_SIZE
                }
            );
            va.free(a.start).unwrap();
        }
        assert_eq!((va.free_bytes(), va.free_ranges()), (total, 1));
        va.check_invariants();
    }

    #[test]
    fn test_vmalloc_full_fit_alloc() {
        let mut va = vmalloc_window();
        let n = 1000;
        let mut ptrs = Vec::new();
        let mut junk = Vec::new();
        for _ in 0..n {
            ptrs.push(va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap());
            junk.push(va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap());
        }
        for j in &junk {
            va.free(j.start).unwrap();
        }
        // n - 1 holes of exactly one page + guard; the last junk area merged into the top range.
        assert_eq!(va.free_ranges(), n);
        for j in &junk {
            // Each request fills the lowest hole exactly: the hole disappears.
            assert_eq!(va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap(), *j);
        }
        assert_eq!(va.free_ranges(), 1);
        va.check_invariants();
        for a in ptrs.iter().chain(&junk) {
            va.free(a.start).unwrap();
        }
        assert_eq!(va.free_ranges(), 1);
        va.check_invariants();
    }

    #[test]
    fn test_vmalloc_long_busy_list_alloc() {
        let mut va = vmalloc_window();
        let busy: Vec<_> = (0..15_000)
            .map(|_| va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap())
            .collect();
        let tail = VMALLOC_START + 15_000 * 2 * PAGE_SIZE;
        for i in 0..2000 {
            let a = va.alloc((1 + i % 4) * PAGE_SIZE, PAGE_SIZE).unwrap();
            assert_eq!(a.start, tail);
            va.free(a.start).unwrap();
        }
        assert_eq!(va.live_areas(), 15_000);
        va.check_invariants();
        for a in &busy {
            va.free(a.start).unwrap();
        }
        assert_eq!((va.live_areas(), va.free_ranges()), (0, 1));
        va.check_invariants();
    }

    #[test]
    fn test_vmalloc_random_size_alloc() {
        let mut va = vmalloc_window();
        let mut rng = Rng(7);
        let areas: Vec<_> = (0..3000)
            .map(|_| {
                let pages = 1 + rng.below(100);
                let a = va.alloc(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
                assert_eq!(a.size, pages * PAGE_SIZE);
                a
            })
            .collect();
        // Allocated in address order, each followed by exactly its guard page.
        for w in areas.windows(2) {
            assert_eq!(w[1].start, w[0].end() + PAGE_SIZE);
        }
        for a in &areas {
            va.free(a.start).unwrap();
        }
        assert_eq!(va.free_ranges(), 1);
        va.check_invariants();
    }

    #[test]
    fn test_vmalloc_fix_align_alloc() {
        // test_vmalloc: 5 pages aligned to THREAD_ALIGN << 1 (32 KiB with 16 KiB stacks).
        let mut va = vmalloc_window();
        let align = 8 * PAGE_SIZE;
        let areas: Vec<_> = (0..2000)
            .map(|_| va.alloc(5 * PAGE_SIZE, align).unwrap())
            .collect();
        for (i, a) in areas.iter().enumerate() {
            // 5 pages + guard leave a 2-page hole before the next boundary, which is too small.
            assert_eq!(a.start, VMALLOC_START + i * align);
        }
        // A 2-page hole after each area; the last one is part of the top free range.
        assert_eq!(va.free_ranges(), 2000);
        va.check_invariants();
        for a in &areas {
            va.free(a.start).unwrap();
        }
        assert_eq!(va.free_ranges(), 1);
    }

    #[test]
    fn test_vmalloc_random_size_align_alloc() {
        let mut va = vmalloc_window();
        let mut rng = Rng(99);
        let keep: Vec<_> = (0..500)
            .map(|_| va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap())
            .collect();
        for a in keep.iter().step_by(3) {
            va.free(a.start).unwrap();
        }
        for _ in 0..3000 {
            let align = PAGE_SIZE << rng.below(11);
            let size = (1 + rng.below(10)) * PAGE_SIZE;
            let a = va.alloc(size, align).unwrap();
            assert!(a.start.is_multiple_of(align) && a.size == size);
            // Nothing below was free and big enough at this alignment (lowest fit).
            let again = va.alloc(size, align).unwrap();
            assert!(again.start > a.start);
            va.free(again.start).unwrap();
            va.free(a.start).unwrap();
        }
        va.check_invariants();
    }

    #[test]
    fn test_vmalloc_align_shift_alloc() {
        let mut va = vmalloc_window();
        for shift in 0..usize::BITS {
            let align = 1usize << shift;
            let got = va.alloc(PAGE_SIZE, align);
            match shift {
                0..=11 => assert_eq!(got, Err(VaError::BadAlign), "align 1 << {shift}"),
                // VMALLOC_START = 0xFFFF_8000_0000_0000 is itself 2^47 aligned.
                12..=47 => {
                    assert_eq!(got.unwrap().start, VMALLOC_START, "align 1 << {shift}");
                    va.free(VMALLOC_START).unwrap();
                }
                // The next multiple of 2^48 and above lies past the window (or past 2^64).
                _ => assert_eq!(
                    got,
                    Err(VaError::NoSpace {
                        size: PAGE_SIZE,
                        align
                    }),
                    "align 1 << {shift} must fail"
                ),
            }
        }
        va.check_invariants();
    }

    // ---- scaling -----------------------------------------------------------------------------

    /// Time of one alloc+free pair, averaged over a batch. The requests alternate between one
    /// page (taking the lowest hole exactly) and three pages (too big for any hole, so carved
    /// from the top free range, whose start then moves back and forth).
    fn pair_ns(va: &mut VmapAreaAllocator) -> f64 {
        const BATCH: u32 = 256;
        let t = Instant::now();
        for i in 0..BATCH {
            let pages = if i % 2 == 0 { 1 } else { 3 };
            let a = va.alloc(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
            va.free(std::hint::black_box(a.start)).unwrap();
        }
        t.elapsed().as_nanos() as f64 / f64::from(BATCH)
    }

    fn median(mut samples: Vec<f64>) -> f64 {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }

    /// `live` live areas with a one-page hole between each pair, so the free tree also holds
    /// `live` ranges.
    fn fragmented(live: usize) -> VmapAreaAllocator {
        let mut va = vmalloc_window();
        let areas: Vec<_> = (0..2 * live)
            .map(|_| va.alloc(PAGE_SIZE, PAGE_SIZE).unwrap())
            .collect();
        for a in areas.iter().step_by(2) {
            va.free(a.start).unwrap();
        }
        assert_eq!(va.live_areas(), live);
        assert!(va.free_ranges() >= live);
        va
    }

    /// Timing in a debug build says nothing about the shipped code, so this is ignored there.
    /// Run it with `cargo test --release --lib --target host-tuple
    /// alloc_free_scales -- --nocapture`.
    #[test]
    #[cfg_attr(debug_assertions, ignore)]
    fn alloc_free_scales_logarithmically() {
        let mut small = fragmented(10);
        let mut large = fragmented(100_000);
        // Warm up, then interleave the batches so that noise from other processes on the
        // machine hits both sides alike; compare medians.
        let (mut small_ns, mut large_ns) = (Vec::new(), Vec::new());
        for round in 0..61 {
            let (s, l) = (pair_ns(&mut small), pair_ns(&mut large));
            if round > 0 {
                small_ns.push(s);
                large_ns.push(l);
            }
        }
        let (t_small, t_large) = (median(small_ns), median(large_ns));
        let ratio = t_large / t_small;
        println!(
            "vmap_area alloc+free pair: {t_small:.0} ns with 10 live areas, \
             {t_large:.0} ns with 100000 (ratio {ratio:.2})"
        );
        large.check_invariants();
        assert!(ratio < 5.0, "alloc+free does not scale: ratio {ratio:.2}");
    }
}
