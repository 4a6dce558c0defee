//! The free tree's treap primitives: a second `impl VmapAreaAllocator` block.
//!
//! The free ranges live in a treap, a binary search tree on each range's start address that is
//! also a max-heap on a pseudo-random priority, which keeps it balanced with high probability. Its
//! nodes sit in the allocator's arena `Vec`, linked by `u32` indices with `NIL` for "none", and
//! each node carries `subtree_max_size`, the longest free range in its subtree. These are the
//! building blocks (split, merge, insert, erase, and the arena's slot handling) that the search
//! and free paths in the parent module compose; see the parent's module documentation for why the
//! tree is shaped this way and what the searches cost.

use super::{FreeNode, NIL, VmapAreaAllocator};

impl VmapAreaAllocator {
    /// The node in arena slot `t`; `t` must not be `NIL`.
    pub(super) fn node(&self, t: u32) -> &FreeNode {
        &self.nodes[t as usize]
    }

    /// The node in arena slot `t`, to change; `t` must not be `NIL`.
    pub(super) fn node_mut(&mut self, t: u32) -> &mut FreeNode {
        &mut self.nodes[t as usize]
    }

    /// The longest free range under `t` in bytes: 0 for the empty tree `NIL`.
    pub(super) fn max_of(&self, t: u32) -> usize {
        if t == NIL {
            0
        } else {
            self.node(t).subtree_max_size
        }
    }

    /// Recomputes `t`'s augmentation from its own length and its children's.
    pub(super) fn pull(&mut self, t: u32) {
        let n = self.node(t);
        let max = n.len.max(self.max_of(n.left)).max(self.max_of(n.right));
        self.node_mut(t).subtree_max_size = max;
    }

    /// A detached node for `[start, start + len)`, in a recycled slot when there is one.
    pub(super) fn new_node(&mut self, start: usize, len: usize) -> u32 {
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
    pub(super) fn release_node(&mut self, t: u32) {
        self.nr_free_ranges -= 1;
        let head = self.recycled;
        let n = self.node_mut(t);
        n.left = NIL;
        n.right = head;
        self.recycled = t;
    }

    /// Splits `t` into the nodes starting below `key` and those starting at or above it.
    pub(super) fn split(&mut self, t: u32, key: usize) -> (u32, u32) {
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
    pub(super) fn merge(&mut self, a: u32, b: u32) -> u32 {
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
    pub(super) fn insert(&mut self, t: u32, n: u32) -> u32 {
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
    pub(super) fn erase(&mut self, t: u32, key: usize) -> u32 {
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
}
