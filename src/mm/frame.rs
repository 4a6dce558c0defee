//! Physical frames: every RAM region the device tree lists, minus the kernel image, the device tree
//! and the reserved regions, managed by a buddy allocator (`buddy_system_allocator`).
//!
//! Frames are handed out as physical addresses; the kernel reaches them through the linear map.

use core::sync::atomic::{AtomicUsize, Ordering};

use buddy_system_allocator::FrameAllocator;
use spin::Mutex;

use super::layout::{PAGE_SHIFT, PAGE_SIZE};

/// The frame allocator with its statistics.
pub struct Frames {
    buddy: Mutex<FrameAllocator<32>>,
    total: AtomicUsize,
    free: AtomicUsize,
}

/// Frame counts, for tests and workloads that check nothing leaked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    pub total: usize,
    pub free: usize,
}

impl Frames {
    pub const fn new() -> Self {
        Self {
            buddy: Mutex::new(FrameAllocator::new()),
            total: AtomicUsize::new(0),
            free: AtomicUsize::new(0),
        }
    }

    /// Hand the frames of `[start, end)` (rounded inward to pages) to the allocator.
    pub fn add_region(&self, start: u64, end: u64) {
        let first = start.div_ceil(PAGE_SIZE as u64);
        let last = end >> PAGE_SHIFT;
        if last <= first {
            return;
        }
        let n = (last - first) as usize;
        self.buddy.lock().add_frame(first as usize, last as usize);
        self.total.fetch_add(n, Ordering::Relaxed);
        self.free.fetch_add(n, Ordering::Relaxed);
    }

    /// `count` physically contiguous frames aligned to `count` rounded up to a power of two.
    pub fn alloc(&self, count: usize) -> Option<u64> {
        let f = self.buddy.lock().alloc(count)?;
        self.free.fetch_sub(count, Ordering::Relaxed);
        Some((f as u64) << PAGE_SHIFT)
    }

    /// Return frames obtained from [`Frames::alloc`] with the same `count`.
    pub fn free(&self, pa: u64, count: usize) {
        debug_assert_eq!(
            pa % PAGE_SIZE as u64,
            0,
            "freeing an unaligned frame {pa:#x}"
        );
        self.buddy
            .lock()
            .dealloc((pa >> PAGE_SHIFT) as usize, count);
        self.free.fetch_add(count, Ordering::Relaxed);
    }

    pub fn stats(&self) -> FrameStats {
        FrameStats {
            total: self.total.load(Ordering::Relaxed),
            free: self.free.load(Ordering::Relaxed),
        }
    }
}

impl Default for Frames {
    fn default() -> Self {
        Self::new()
    }
}

/// The machine's frames.
pub static FRAMES: Frames = Frames::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_balance_and_alignment() {
        let f = Frames::new();
        f.add_region(0x4000_0800, 0x4010_0000); // first partial page dropped
        let s0 = f.stats();
        assert_eq!(s0.total, 0xff);
        let a = f.alloc(1).unwrap();
        let b = f.alloc(16).unwrap();
        assert_eq!(
            b % (16 * PAGE_SIZE as u64),
            0,
            "buddy blocks are naturally aligned"
        );
        assert_eq!(f.stats().free, s0.free - 17);
        f.free(a, 1);
        f.free(b, 16);
        assert_eq!(f.stats(), s0);
        assert!(f.alloc(1024).is_none(), "more than there is");
    }
}
