//! Physical frames: every RAM region the device tree lists, minus the kernel image, the device tree
//! and the reserved regions, managed by a buddy allocator (`buddy_system_allocator`).
//!
//! Frames are handed out as physical addresses; the kernel reaches them through the linear map.
//!
//! Single frames (page tables, vmalloc pages) go through a small cache per CPU in front of the
//! buddy allocator, like Linux's per-CPU page lists, refilled and drained [`CACHE_BATCH`] frames
//! at a time, so that CPUs mapping and unmapping at once rarely meet on a lock. Between the caches
//! and the buddy allocator sits a pool of full batches: a cache that overflows parks a batch
//! there and one that runs dry takes a batch back, each a copy under one short lock, where the
//! buddy allocator would pay a search-tree update per frame. A refill from the buddy allocator
//! takes [`REFILL_BATCHES`] batches in one block when it can, and parks all but one in the pool.
//! Cached and pooled frames count as free in [`Frames::stats`]; [`Frames::drain_caches`] returns
//! them all to the buddy allocator (before a balance check, or when a large allocation fails for
//! want of contiguous frames).

use core::sync::atomic::{AtomicUsize, Ordering};

use buddy_system_allocator::FrameAllocator;
use spin::Mutex;

use super::addr::PhysAddr;
use super::fault_inject::{self, FaultAttr};
use super::layout::{PAGE_SHIFT, PAGE_SIZE};
use super::profile::{self, Lock};

/// CPUs with a frame cache (the kernel's `MAX_CPUS`).
const CPUS: usize = 32;
/// Frames a CPU's cache holds at most.
pub const CACHE_FRAMES: usize = 64;
/// Frames moved between a cache and the buddy allocator at a time.
pub const CACHE_BATCH: usize = 32;

/// Batches a refill from the buddy allocator takes at once, when it has a block that large (the
/// first fills the cache, the rest go to the pool): a CPU mapping fresh tables, whose frames come
/// back only later, then meets the buddy lock once per 256 frames rather than per 32.
pub const REFILL_BATCHES: usize = 8;

/// Full batches the pool holds at most (32 MiB of frames).
pub const POOL_BATCHES: usize = 256;

/// One CPU's cache of free single frames.
struct FrameCache {
    frames: [u64; CACHE_FRAMES],
    n: usize,
}

/// Full batches of free single frames, parked between the caches and the buddy allocator.
struct BatchPool {
    batches: [[u64; CACHE_BATCH]; POOL_BATCHES],
    n: usize,
}

/// The frame allocator with its statistics.
pub struct Frames {
    buddy: Mutex<FrameAllocator<32>>,
    /// Per-CPU caches of single frames. A CPU takes only its own lock on the fast path; another
    /// takes it only to drain. Never used from interrupt handlers (none allocates).
    caches: [Mutex<FrameCache>; CPUS],
    pool: Mutex<BatchPool>,
    /// Frames sitting in the caches and the pool.
    cached: AtomicUsize,
    total: AtomicUsize,
    free: AtomicUsize,
    /// The fault-injection switch [`Frames::alloc`] consults (the machine's is
    /// `fault_inject::FAIL_FRAMES`); `None`: never injected.
    fault: Option<&'static FaultAttr>,
    /// 1 + the CPU holding `buddy` (0: nobody). The buddy allocator keeps its free lists in
    /// `BTreeSet`s, so it allocates from the kernel heap while locked; the heap must then not
    /// grow from frames on that CPU (it would take `buddy` again: a self-deadlock), and asks
    /// [`Frames::held_by_this_cpu`].
    holder: AtomicUsize,
}

/// Which CPU runs this code: the frame allocator records its lock holder with it. The host's
/// unit tests are all "CPU 0".
#[inline]
fn this_cpu() -> usize {
    #[cfg(target_os = "none")]
    return crate::arch::aarch64::cpu::id();
    #[cfg(not(target_os = "none"))]
    0
}

/// Frame counts, for tests and workloads that check nothing leaked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames ever given to the allocator.
    pub total: usize,
    /// Frames not handed out: in the buddy allocator, a per-CPU cache or the pool of batches.
    pub free: usize,
}

impl Frames {
    /// An allocator with no memory yet: frames come with `add_region`.
    pub const fn new() -> Self {
        Self {
            buddy: Mutex::new(FrameAllocator::new()),
            caches: [const {
                Mutex::new(FrameCache {
                    frames: [0; CACHE_FRAMES],
                    n: 0,
                })
            }; CPUS],
            pool: Mutex::new(BatchPool {
                batches: [[0; CACHE_BATCH]; POOL_BATCHES],
                n: 0,
            }),
            cached: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            free: AtomicUsize::new(0),
            fault: None,
            holder: AtomicUsize::new(0),
        }
    }

    /// Run `f` on the buddy allocator, recording this CPU as the holder meanwhile.
    fn with_buddy<R>(&self, f: impl FnOnce(&mut FrameAllocator<32>) -> R) -> R {
        // The buddy allocator keeps its free lists on the kernel heap, which cannot grow from
        // frames once `buddy` is held on this CPU: let it grow now if it runs low.
        #[cfg(target_os = "none")]
        super::heap::HEAP.ensure_headroom();
        let mut b = profile::acquire(Lock::Frames, || self.buddy.lock());
        self.holder.store(this_cpu() + 1, Ordering::Relaxed);
        let r = f(&mut b);
        self.holder.store(0, Ordering::Relaxed);
        r
    }

    /// Is this CPU inside the frame allocator right now (see `holder`)?
    pub fn held_by_this_cpu(&self) -> bool {
        self.holder.load(Ordering::Relaxed) == this_cpu() + 1
    }

    /// A frame allocator whose [`alloc`](Self::alloc) fails when `fault` says so.
    pub const fn with_fault_injection(fault: &'static FaultAttr) -> Self {
        let mut f = Self::new();
        f.fault = Some(fault);
        f
    }

    /// Hand the frames of `[start, end)` (rounded inward to pages) to the allocator.
    ///
    /// # Safety
    ///
    /// The range is memory that nothing else uses, none of it already in this allocator, and
    /// reachable as the allocator's users reach frames (for [`FRAMES`]: RAM that the linear map
    /// maps, through which page tables are zeroed and written). Whoever allocates a frame owns it
    /// from then on, so adding memory that is in use (the kernel image, a live table) or twice
    /// would hand it to two owners:
    ///
    /// ```compile_fail,E0133
    /// # use initmm::mm::{addr::PhysAddr, frame::Frames};
    /// # fn f(frames: &Frames) {
    /// frames.add_region(PhysAddr(0x4000_0000), PhysAddr(0x4010_0000)); // error[E0133]
    /// # }
    /// ```
    pub unsafe fn add_region(&self, start: PhysAddr, end: PhysAddr) {
        let (start, end) = (start.0, end.0);
        let first = start.div_ceil(PAGE_SIZE as u64);
        let last = end >> PAGE_SHIFT;
        if last <= first {
            return;
        }
        let n = (last - first) as usize;
        self.with_buddy(|b| b.add_frame(first as usize, last as usize));
        self.total.fetch_add(n, Ordering::Relaxed);
        self.free.fetch_add(n, Ordering::Relaxed);
    }

    /// `count` physically contiguous frames aligned to `count` rounded up to a power of two.
    /// `None` when there are not enough, or when fault injection says this call fails.
    pub fn alloc(&self, count: usize) -> Option<PhysAddr> {
        if self.fault.is_some_and(FaultAttr::should_fail) {
            return None;
        }
        if count == 1 {
            return self.alloc_cached().map(PhysAddr);
        }
        self.alloc_uninjected(count)
    }

    /// One frame from this CPU's cache, refilled when empty ([`refill`](Self::refill)).
    fn alloc_cached(&self) -> Option<u64> {
        let mut c = self.caches[this_cpu() % CPUS].lock();
        if c.n == 0 {
            self.refill(&mut c);
        }
        if c.n == 0 {
            drop(c);
            // Out of frames here: perhaps other CPUs' caches still hold some.
            self.drain_caches();
            return self.alloc_uninjected(1).map(|pa| pa.0);
        }
        c.n -= 1;
        self.cached.fetch_sub(1, Ordering::Relaxed);
        self.free.fetch_sub(1, Ordering::Relaxed);
        Some(c.frames[c.n])
    }

    /// Fill an empty cache: a batch from the pool; else [`REFILL_BATCHES`] batches in one block
    /// from the buddy allocator (one search-tree update; the first batch fills the cache, the rest
    /// go to the pool, and only the update runs under the buddy lock); else one batch's block;
    /// else single frames. Leaves the cache empty only when the buddy allocator is.
    fn refill(&self, c: &mut FrameCache) {
        if let Some(batch) = self.pool_take() {
            c.frames[..CACHE_BATCH].copy_from_slice(&batch);
            c.n = CACHE_BATCH;
            return;
        }
        if let Some(first) = self.with_buddy(|b| b.alloc(CACHE_BATCH * REFILL_BATCHES)) {
            self.cached
                .fetch_add(CACHE_BATCH * REFILL_BATCHES, Ordering::Relaxed);
            let frame = |i: usize| ((first + i) as u64) << PAGE_SHIFT;
            for (i, f) in c.frames[..CACHE_BATCH].iter_mut().enumerate() {
                *f = frame(i);
            }
            c.n = CACHE_BATCH;
            for k in 1..REFILL_BATCHES {
                let batch: [u64; CACHE_BATCH] =
                    core::array::from_fn(|i| frame(k * CACHE_BATCH + i));
                if !self.pool_put(&batch) {
                    self.return_batch(&batch);
                }
            }
            return;
        }
        let got = self.with_buddy(|b| match b.alloc(CACHE_BATCH) {
            Some(block) => {
                for (i, f) in c.frames[..CACHE_BATCH].iter_mut().enumerate() {
                    *f = ((block + i) as u64) << PAGE_SHIFT;
                }
                CACHE_BATCH
            }
            None => {
                let mut got = 0;
                while got < CACHE_BATCH {
                    match b.alloc(1) {
                        Some(f) => c.frames[got] = (f as u64) << PAGE_SHIFT,
                        None => break,
                    }
                    got += 1;
                }
                got
            }
        });
        self.cached.fetch_add(got, Ordering::Relaxed);
        c.n = got;
    }

    /// [`alloc`](Self::alloc) that fault injection never fails: for the kernel heap's growth
    /// only. The heap cannot report failure (a `GlobalAlloc` that returns null aborts the
    /// kernel: heap OOM is fatal by design), so an injected failure there would not exercise an
    /// error path, it would just kill the machine. Injection is for the callers that can fail
    /// cleanly: vmalloc pages and page tables.
    pub fn alloc_uninjected(&self, count: usize) -> Option<PhysAddr> {
        let f = match self.with_buddy(|b| b.alloc(count)) {
            Some(f) => f,
            // Contiguous frames may be missing only because single ones sit in the caches.
            None if self.cached.load(Ordering::Relaxed) > 0 => {
                self.drain_caches();
                self.with_buddy(|b| b.alloc(count))?
            }
            None => return None,
        };
        self.free.fetch_sub(count, Ordering::Relaxed);
        Some(PhysAddr((f as u64) << PAGE_SHIFT))
    }

    /// Return frames obtained from [`Frames::alloc`] with the same `count`.
    ///
    /// # Safety
    ///
    /// `pa` and `count` are those of one earlier [`alloc`](Self::alloc) (or
    /// [`alloc_uninjected`](Self::alloc_uninjected)) of this allocator, not freed since, and the
    /// frames are no longer used: no table points at them, no mapping but the linear map reaches
    /// them (unmapped, and the TLB invalidation completed), no reference into them is live. The
    /// next `alloc` hands them to a new owner, so freeing frames that are still in use (a live
    /// page table, another's vmalloc page) does not build:
    ///
    /// ```compile_fail,E0133
    /// # use initmm::mm::{addr::PhysAddr, frame::FRAMES};
    /// FRAMES.free(PhysAddr(0x4000_0000), 1); // error[E0133]: call to unsafe function
    /// ```
    pub unsafe fn free(&self, pa: PhysAddr, count: usize) {
        let pa = pa.0;
        debug_assert_eq!(
            pa % PAGE_SIZE as u64,
            0,
            "freeing an unaligned frame {pa:#x}"
        );
        self.free.fetch_add(count, Ordering::Relaxed);
        if count == 1 {
            let mut c = self.caches[this_cpu() % CPUS].lock();
            if c.n == CACHE_FRAMES {
                // Full: the oldest batch goes to the pool, or back to the buddy allocator.
                let mut batch = [0; CACHE_BATCH];
                batch.copy_from_slice(&c.frames[..CACHE_BATCH]);
                if !self.pool_put(&batch) {
                    self.return_batch(&batch);
                }
                c.frames.copy_within(CACHE_BATCH.., 0);
                c.n -= CACHE_BATCH;
            }
            let n = c.n;
            c.frames[n] = pa;
            c.n += 1;
            self.cached.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.with_buddy(|b| b.dealloc((pa >> PAGE_SHIFT) as usize, count));
    }

    /// Give a batch of cached frames back to the buddy allocator.
    fn return_batch(&self, batch: &[u64; CACHE_BATCH]) {
        self.with_buddy(|b| {
            for &f in batch {
                b.dealloc((f >> PAGE_SHIFT) as usize, 1);
            }
        });
        self.cached.fetch_sub(CACHE_BATCH, Ordering::Relaxed);
    }

    /// A full batch from the pool, if it holds one.
    fn pool_take(&self) -> Option<[u64; CACHE_BATCH]> {
        let mut p = profile::acquire(Lock::Frames, || self.pool.lock());
        if p.n == 0 {
            return None;
        }
        p.n -= 1;
        Some(p.batches[p.n])
    }

    /// Park a full batch in the pool; false when the pool is full.
    fn pool_put(&self, batch: &[u64; CACHE_BATCH]) -> bool {
        let mut p = profile::acquire(Lock::Frames, || self.pool.lock());
        if p.n == POOL_BATCHES {
            return false;
        }
        let n = p.n;
        p.batches[n] = *batch;
        p.n += 1;
        true
    }

    /// Return every cached and pooled frame to the buddy allocator (every CPU's cache).
    pub fn drain_caches(&self) {
        while let Some(batch) = self.pool_take() {
            self.return_batch(&batch);
        }
        for cache in &self.caches {
            let mut c = cache.lock();
            if c.n == 0 {
                continue;
            }
            self.with_buddy(|b| {
                for &f in &c.frames[..c.n] {
                    b.dealloc((f >> PAGE_SHIFT) as usize, 1);
                }
            });
            self.cached.fetch_sub(c.n, Ordering::Relaxed);
            c.n = 0;
        }
    }

    /// Frames sitting in the per-CPU caches and the pool (counted as free by
    /// [`stats`](Self::stats)).
    pub fn cached(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }

    /// The current counts.
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

/// The machine's frames; `fail=frames:...` injects failures into them.
pub static FRAMES: Frames = Frames::with_fault_injection(&fault_inject::FAIL_FRAMES);

#[cfg(test)]
mod tests;
