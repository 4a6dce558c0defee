//! The kernel heap (`#[global_allocator]`): a buddy heap that starts in a static area and grows
//! from physical frames, through the linear map, when it runs low.
//!
//! Lock order. The frame allocator's buddy allocator (`buddy_system_allocator::FrameAllocator`)
//! keeps its free lists in `BTreeSet`s, so it allocates from this heap *while holding the buddy
//! lock*. The heap must therefore never take a frame lock while holding its own: that is the ABBA
//! deadlock (CPU A: frames → heap, CPU B: heap → frames) the first version of this file had,
//! which hung ioremap-storm. Growth happens with the heap lock released, and the heap keeps a
//! reserve (`LOW_WATER`) so that the buddy allocator's own small allocations, made under its
//! lock, always find memory without growing again.
//!
//! Two kinds of growth. An allocation that finds the heap low grows it from the frame allocator
//! as any caller would ([`Frames::alloc_uninjected`]: which may drain every CPU's frame cache to
//! find a block). The top-up that the frame allocator asks for before it takes its buddy lock
//! ([`KernelHeap::ensure_headroom`]) takes a block only if the buddy allocator has one as it is
//! ([`Frames::alloc_no_drain`]): that top-up may run inside a drain, which must not start
//! another, and while a CPU's frame cache is being refilled.
//!
//! [`Frames::alloc_uninjected`]: super::frame::Frames::alloc_uninjected
//! [`Frames::alloc_no_drain`]: super::frame::Frames::alloc_no_drain

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use buddy_system_allocator::Heap;
use spin::Mutex;

use super::frame::FRAMES;
use super::layout::{PAGE_SIZE, phys_to_virt};
use super::profile::{self, Lock};

/// Smallest growth step: 64 frames.
const GROW_MIN: usize = 64 * PAGE_SIZE;
/// Grow when less than this is free after an allocation.
const LOW_WATER: usize = 128 * 1024;

/// Where growth comes from (see the module documentation).
#[derive(Clone, Copy)]
enum Growth {
    /// An allocation found the heap low: any block, draining frame caches if need be.
    Alloc,
    /// The frame allocator's top-up before its buddy lock: a block only if one is free as is.
    TopUp,
}

/// The kernel's `alloc` heap: a buddy heap that grows itself with frames from the frame
/// allocator when it runs low.
pub struct KernelHeap {
    heap: Mutex<Heap<32>>,
    /// One CPU grows the heap at a time; the others retry their allocation meanwhile.
    growing: AtomicBool,
    /// Less than `LOW_WATER` was free after the last allocation: read without the heap lock
    /// by `ensure_headroom`, which runs before every frame-allocator operation.
    low: AtomicBool,
    /// Frames taken from the frame allocator to grow the heap.
    grown_frames: AtomicUsize,
}

impl KernelHeap {
    /// An empty heap: it allocates nothing until [`KernelHeap::init`].
    pub const fn new() -> Self {
        Self {
            heap: Mutex::new(Heap::empty()),
            growing: AtomicBool::new(false),
            low: AtomicBool::new(false),
            grown_frames: AtomicUsize::new(0),
        }
    }

    /// Give the heap its first memory.
    ///
    /// # Safety
    /// `[start, start + size)` is mapped, writable, unused by anything else, and stays so.
    pub unsafe fn init(&self, start: usize, size: usize) {
        // SAFETY: the caller hands over the range.
        unsafe {
            profile::acquire(Lock::Heap, || self.heap.lock()).add_to_heap(start, start + size)
        };
    }

    /// Bytes (in use, total) in the heap.
    pub fn usage(&self) -> (usize, usize) {
        let h = profile::acquire(Lock::Heap, || self.heap.lock());
        (h.stats_alloc_actual(), h.stats_total_bytes())
    }

    /// Is less than the reserve free (and the last attempt to grow found no block)?
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Frames the heap has taken from the frame allocator to grow (never given back).
    pub fn grown_frames(&self) -> usize {
        self.grown_frames.load(Ordering::Relaxed)
    }

    /// Grow now if less than `LOW_WATER` is free: run before every frame-allocator operation
    /// (`Frames`' `with_buddy`), because the frame allocator allocates from this heap
    /// while holding its lock and cannot let it grow then. Freeing thousands of table frames in
    /// a row (a reclaim) otherwise ate the whole reserve from inside that lock.
    pub fn ensure_headroom(&self) {
        if self.low.load(Ordering::Relaxed)
            && !self.growing.load(Ordering::Relaxed)
            && !FRAMES.held_by_this_cpu()
        {
            self.grow(GROW_MIN, Growth::TopUp);
        }
    }

    /// Add frames enough for `want` bytes (naturally aligned, so any alignment up to their size is
    /// satisfiable). Called WITHOUT the heap lock (see the module documentation). False when the
    /// frame allocator has no such block (for a [`Growth::TopUp`], without draining).
    fn grow(&self, want: usize, how: Growth) -> bool {
        if FRAMES.held_by_this_cpu() {
            // This allocation comes from inside the frame allocator (its free lists live on
            // this heap): growing would take its lock again. The reserve serves it; the next
            // allocation outside grows the heap.
            return false;
        }
        if self.growing.swap(true, Ordering::Acquire) {
            // Someone else is adding memory: let the caller retry.
            core::hint::spin_loop();
            return true;
        }
        let bytes = want.next_power_of_two().max(GROW_MIN);
        let frames = bytes / PAGE_SIZE;
        // Never injected: an allocation that fails here would panic the kernel (heap OOM is
        // fatal), which tests no error path. See `Frames::alloc_uninjected`.
        let block = match how {
            Growth::Alloc => FRAMES.alloc_uninjected(frames),
            Growth::TopUp => FRAMES.alloc_no_drain(frames),
        };
        let grown = match block {
            Some(pa) => {
                let va = phys_to_virt(pa).0;
                // SAFETY: the frames were just taken from the frame allocator, so nothing else
                // uses them, and all of RAM is in the linear map once it hands out frames.
                unsafe {
                    profile::acquire(Lock::Heap, || self.heap.lock()).add_to_heap(va, va + bytes)
                };
                profile::shared_write();
                self.low.store(false, Ordering::Relaxed);
                self.grown_frames.fetch_add(frames, Ordering::Relaxed);
                true
            }
            None => false,
        };
        self.growing.store(false, Ordering::Release);
        grown
    }
}

/// The kernel heap. It is defined here, beside the frame allocator that grows it, because that
/// allocator keeps its reserve before every operation (`Frames`' `with_buddy`) and so must name it:
/// `mm` cannot name the kernel above it.
#[cfg(target_os = "none")]
#[global_allocator]
pub static HEAP: KernelHeap = KernelHeap::new();

impl Default for KernelHeap {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: allocation and deallocation are delegated to the buddy heap under its lock; memory is
// only added to it from the static area or from frames that nothing else owns.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        loop {
            let mut heap = profile::acquire(Lock::Heap, || self.heap.lock());
            if let Ok(p) = heap.alloc(layout) {
                let low = heap.stats_total_bytes() - heap.stats_alloc_actual() < LOW_WATER;
                drop(heap);
                // Written only when it changes: every CPU's allocations read it.
                if self.low.load(Ordering::Relaxed) != low {
                    profile::shared_write();
                    self.low.store(low, Ordering::Relaxed);
                }
                if low {
                    // Best effort: the reserve is refilled before it is needed.
                    self.grow(GROW_MIN, Growth::Alloc);
                }
                return p.as_ptr();
            }
            let (used, total) = (heap.stats_alloc_actual(), heap.stats_total_bytes());
            drop(heap);
            if !self.grow(layout.size().max(layout.align()), Growth::Alloc) {
                let inside = if FRAMES.held_by_this_cpu() {
                    " (inside the frame allocator, which cannot grow the heap: its reserve ran out)"
                } else {
                    ""
                };
                panic!(
                    "heap: out of memory allocating {} bytes (align {}){inside}: heap {used} of {total} bytes in use, {} frames free",
                    layout.size(),
                    layout.align(),
                    FRAMES.stats().free
                );
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller passes a pointer this allocator returned, with its layout.
            unsafe { profile::acquire(Lock::Heap, || self.heap.lock()).dealloc(p, layout) };
        }
    }
}
