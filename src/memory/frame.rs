//! Physical frames: every RAM region the device tree lists, minus the kernel image, the device tree
//! and the reserved regions, managed by a buddy allocator (`buddy_system_allocator`).
//!
//! Frames are handed out as physical addresses; the kernel reaches them through the linear map.
//!
//! # Per-CPU caches
//!
//! Single frames (page tables, vmalloc pages) go through a small cache per CPU in front of the
//! buddy allocator, like Linux's per-CPU page lists (`struct per_cpu_pages`). A CPU's cache is its
//! own: only that CPU touches it, with its interrupts masked for the few instructions a push or a
//! pop takes (Linux's pcp lists under `local_lock_irqsave`), so the fast path takes no lock and
//! writes no cache line another CPU writes. Its statistics are per CPU too, summed when read.
//!
//! A cache that runs dry is refilled, and one that overflows spills, a batch ([`CACHE_BATCH`]
//! frames) at a time, with the batch moved *outside* the cache (Linux's `rmqueue_bulk` fills a
//! local list under the zone lock and only then splices it into the pcp list): between the caches
//! and the buddy allocator sits a pool of full batches, a copy under one short lock, and a refill
//! from the buddy allocator takes [`REFILL_BATCHES`] batches in one block when it can.
//!
//! # Locks, and what never happens under them
//!
//! The frame allocator's locks are the pool's and the buddy allocator's (and the drain's, below).
//! No frame lock is held while the allocator calls anything that could re-enter it, and none is
//! held while the kernel heap could grow. The one allocation made under a frame lock is the
//! buddy allocator's own: it keeps its free lists in `BTreeSet`s on the kernel heap. Those
//! allocations are small and bounded per call, and the heap serves them from its reserve, which
//! `Frames::with_buddy` tops up *before* it takes the lock (without draining anything); while
//! the buddy lock is held on a CPU the heap never grows on that CPU ([`Frames::held_by_this_cpu`]).
//!
//! # Draining
//!
//! Cached and pooled frames count as free in [`Frames::stats`]. [`Frames::drain_caches`] gives them
//! all back to the buddy allocator: before a balance check, when a large allocation finds no
//! contiguous block, and when a single frame cannot be found anywhere else. It empties this CPU's
//! cache itself and asks every other CPU, by an interrupt ([`DRAIN_HOOK`], installed by `smp`), to
//! move its cache into a mailbox of its own ([`Frames::answer_drain`]), which the draining CPU then
//! empties into the buddy allocator: Linux's `drain_all_pages` likewise has each CPU drain its own
//! list. A CPU that does not answer within [`DRAIN_WAIT_MS`] (interrupts masked, wedged) keeps its
//! frames and is named in a warning.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};

use buddy_system_allocator::FrameAllocator;
use spin::Mutex;

use crate::hook::Hook;
use crate::mm::addr::PhysAddr;
use crate::mm::fault_inject::{self, FaultAttr};
use crate::mm::layout::{PAGE_SHIFT, PAGE_SIZE};
use crate::mm::profile::{self, Lock};

/// CPUs with a frame cache.
const CPUS: usize = crate::mm::MAX_CPUS;
/// Frames a CPU's cache holds at most: four batches, so that a CPU whose allocations and frees
/// roughly balance (vmalloc and vfree of a few pages) rarely meets either end.
pub const CACHE_FRAMES: usize = 128;
/// Frames moved between a cache and the pool or the buddy allocator at a time.
pub const CACHE_BATCH: usize = 32;

/// Batches a refill from the buddy allocator takes at once, when it has a block that large (the
/// first fills the cache, the rest go to the pool): a CPU mapping fresh tables, whose frames come
/// back only later, then meets the buddy lock once per 256 frames rather than per 32.
pub const REFILL_BATCHES: usize = 8;

/// Full batches the pool holds at most (32 MiB of frames).
pub const POOL_BATCHES: usize = 256;

/// How long [`Frames::drain_caches`] waits for another CPU to answer, in milliseconds.
pub const DRAIN_WAIT_MS: u64 = 1000;

/// How [`FRAMES`] reaches the other CPUs' caches: installed by `smp` once it can send
/// interrupts. The function asks every other online CPU to call [`Frames::answer_drain`] on
/// [`FRAMES`] from an interrupt handler, and returns the CPUs it asked (bit `n`: CPU `n`).
pub static DRAIN_HOOK: Hook<fn() -> u64> = Hook::new();

/// Up to [`CACHE_FRAMES`] frames: a stack at its top (the most recently freed frame is the next
/// handed out, still warm in the CPU's caches) over a ring, so that the oldest batch can spill
/// without moving the rest.
struct FrameCache {
    frames: [u64; CACHE_FRAMES],
    /// The oldest frame's index; the frames are `frames[base..base + n]`, wrapping.
    base: usize,
    n: usize,
}

impl FrameCache {
    const EMPTY: Self = Self {
        frames: [0; CACHE_FRAMES],
        base: 0,
        n: 0,
    };

    fn pop(&mut self) -> Option<u64> {
        self.n = self.n.checked_sub(1)?;
        Some(self.frames[(self.base + self.n) % CACHE_FRAMES])
    }

    /// Push `pa` onto a cache that is not full.
    fn push(&mut self, pa: u64) {
        debug_assert!(self.n < CACHE_FRAMES);
        self.frames[(self.base + self.n) % CACHE_FRAMES] = pa;
        self.n += 1;
    }

    /// Push `pa`; when the cache is full, its oldest batch is taken out first and returned.
    fn push_spilling(&mut self, pa: u64) -> Option<[u64; CACHE_BATCH]> {
        let spilled = (self.n == CACHE_FRAMES).then(|| self.take_oldest_batch());
        self.push(pa);
        spilled
    }

    /// Take the oldest batch out of a full cache.
    fn take_oldest_batch(&mut self) -> [u64; CACHE_BATCH] {
        let batch = core::array::from_fn(|i| self.frames[(self.base + i) % CACHE_FRAMES]);
        self.base = (self.base + CACHE_BATCH) % CACHE_FRAMES;
        self.n -= CACHE_BATCH;
        batch
    }

    /// Take every frame out.
    fn take_all(&mut self) -> Self {
        core::mem::replace(self, Self::EMPTY)
    }

    /// Every frame, oldest first, in at most two runs.
    fn runs(&self) -> [&[u64]; 2] {
        let end = self.base + self.n;
        if end <= CACHE_FRAMES {
            [&self.frames[self.base..end], &[]]
        } else {
            [
                &self.frames[self.base..],
                &self.frames[..end - CACHE_FRAMES],
            ]
        }
    }
}

/// One CPU's part of the allocator, on cache lines of its own: its cache, its counters, and its
/// mailbox for drains.
#[repr(align(64))]
struct CpuFrames {
    /// Touched only on this CPU, with its IRQs masked ([`Frames::with_cache`]); the drain
    /// interrupt ([`Frames::answer_drain`]) runs on this CPU too, so never in the middle.
    cache: UnsafeCell<FrameCache>,
    /// `cache.n`, for readers on other CPUs. Written only by this CPU, inside `with_cache`.
    cached: AtomicUsize,
    /// Frames handed out on this CPU minus frames given back on it (either may be another
    /// CPU's, so this may be negative). Written only by this CPU, with a load and a store: no
    /// read-modify-write, no line shared with another CPU's counter.
    in_use: AtomicIsize,
    /// The drain generation last asked of this CPU, and the last one it answered.
    drain_asked: AtomicU64,
    drain_answered: AtomicU64,
    /// The frames this CPU's drain interrupt moved out of its cache, for the draining CPU: written
    /// by this CPU's interrupt only while `outbox_full` is false, read and emptied by the
    /// draining CPU (under the drain lock) only while it is true.
    outbox: UnsafeCell<FrameCache>,
    outbox_full: AtomicBool,
}

impl CpuFrames {
    const fn new() -> Self {
        Self {
            cache: UnsafeCell::new(FrameCache::EMPTY),
            cached: AtomicUsize::new(0),
            in_use: AtomicIsize::new(0),
            drain_asked: AtomicU64::new(0),
            drain_answered: AtomicU64::new(0),
            outbox: UnsafeCell::new(FrameCache::EMPTY),
            outbox_full: AtomicBool::new(false),
        }
    }

    /// Count `n` frames handed out (`n` > 0) or given back (`n` < 0) on this CPU.
    fn count_in_use(&self, n: isize) {
        // Only this CPU writes the counter, and no interrupt handler allocates or frees: a load
        // and a store suffice, and other CPUs only read it.
        let v = self.in_use.load(Ordering::Relaxed);
        self.in_use.store(v + n, Ordering::Relaxed);
    }
}

/// Full batches of free single frames, parked between the caches and the buddy allocator.
struct BatchPool {
    batches: [[u64; CACHE_BATCH]; POOL_BATCHES],
    n: usize,
}

/// The frame allocator with its statistics.
pub struct Frames {
    buddy: Mutex<FrameAllocator<32>>,
    cpus: [CpuFrames; CPUS],
    pool: Mutex<BatchPool>,
    /// One drain at a time: the mailboxes are emptied by the CPU that holds it.
    drain_lock: Mutex<u64>,
    /// 1 + the CPU draining (0: none), so that a drain set off by that drain (the heap growing
    /// while frames are returned) does nothing instead of waiting for itself.
    drainer: AtomicUsize,
    /// Frames ever given to the allocator.
    total: AtomicUsize,
    /// The fault-injection switch [`Frames::alloc`] consults (the machine's is
    /// `fault_inject::FAIL_FRAMES`); `None`: never injected.
    fault: Option<&'static FaultAttr>,
    /// How to ask the other CPUs to drain ([`DRAIN_HOOK`] for the machine's allocator).
    remote: Option<&'static Hook<fn() -> u64>>,
    /// 1 + the CPU holding `buddy` (0: nobody). The buddy allocator keeps its free lists in
    /// `BTreeSet`s, so it allocates from the kernel heap while locked; the heap must then not
    /// grow from frames on that CPU (it would take `buddy` again: a self-deadlock), and asks
    /// [`Frames::held_by_this_cpu`].
    holder: AtomicUsize,
}

// SAFETY: the `UnsafeCell`s are the per-CPU caches and mailboxes. A cache is only touched by its
// own CPU with IRQs masked (`with_cache`), or by that CPU's drain interrupt, which cannot run
// while IRQs are masked: accesses never overlap. A mailbox is written by its CPU's interrupt only
// while `outbox_full` is false and read by the draining CPU only after it saw it true (Acquire,
// pairing with the Release that set it), then handed back with a Release store of false.
unsafe impl Sync for Frames {}

/// Which CPU runs this code. On the host, the unit tests' threads are "CPU 0" unless a test says
/// otherwise ([`tests::as_cpu`]).
#[inline]
fn this_cpu() -> usize {
    #[cfg(target_os = "none")]
    return crate::arch::aarch64::cpu::id();
    #[cfg(all(not(target_os = "none"), test))]
    return tests::CPU.with(core::cell::Cell::get);
    #[cfg(all(not(target_os = "none"), not(test)))]
    0
}

/// This CPU's IRQs, masked until the guard is dropped (Linux's `local_irq_save`/`restore`).
struct IrqsMasked {
    #[cfg(target_os = "none")]
    were_unmasked: bool,
}

impl IrqsMasked {
    #[inline]
    fn new() -> Self {
        Self {
            #[cfg(target_os = "none")]
            were_unmasked: crate::arch::aarch64::daif::irqs_disable(),
        }
    }
}

impl Drop for IrqsMasked {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_os = "none")]
        if self.were_unmasked {
            crate::arch::aarch64::daif::irqs_enable();
        }
    }
}

/// The counter and its frequency, for the drain's deadline (none on the host, where no CPU is
/// ever asked).
fn now_ms() -> u64 {
    #[cfg(target_os = "none")]
    {
        use crate::arch::aarch64::cpu;
        cpu::counter() / (cpu::counter_frequency() / 1000).max(1)
    }
    #[cfg(not(target_os = "none"))]
    0
}

/// Frame counts, for tests and workloads that check nothing leaked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames ever given to the allocator.
    pub total: usize,
    /// Frames not handed out: in the buddy allocator, a per-CPU cache, a drain mailbox or the
    /// pool of batches. Exact while no CPU allocates or frees.
    pub free: usize,
}

impl Frames {
    /// An allocator with no memory yet: frames come with `add_region`.
    pub const fn new() -> Self {
        Self {
            buddy: Mutex::new(FrameAllocator::new()),
            cpus: [const { CpuFrames::new() }; CPUS],
            pool: Mutex::new(BatchPool {
                batches: [[0; CACHE_BATCH]; POOL_BATCHES],
                n: 0,
            }),
            drain_lock: Mutex::new(0),
            drainer: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            fault: None,
            remote: None,
            holder: AtomicUsize::new(0),
        }
    }

    /// A frame allocator whose [`alloc`](Self::alloc) fails when `fault` says so.
    pub const fn with_fault_injection(fault: &'static FaultAttr) -> Self {
        let mut f = Self::new();
        f.fault = Some(fault);
        f
    }

    /// A frame allocator that reaches the other CPUs' caches through `hook` (see
    /// [`DRAIN_HOOK`]).
    pub const fn with_drain_hook(mut self, hook: &'static Hook<fn() -> u64>) -> Self {
        self.remote = Some(hook);
        self
    }

    /// Run `f` on this CPU's cache with this CPU's IRQs masked, and keep its count for readers.
    #[inline]
    fn with_cache<R>(&self, f: impl FnOnce(&mut FrameCache) -> R) -> R {
        let _irqs = IrqsMasked::new();
        let me = &self.cpus[this_cpu()];
        // SAFETY: this CPU's own cache, with its IRQs masked: the only other code that touches
        // it is this CPU's drain interrupt, which cannot run now (see the `Sync` argument).
        let cache = unsafe { &mut *me.cache.get() };
        let r = f(cache);
        me.cached.store(cache.n, Ordering::Relaxed);
        r
    }

    /// Run `f` on the buddy allocator, recording this CPU as the holder meanwhile.
    fn with_buddy<R>(&self, f: impl FnOnce(&mut FrameAllocator<32>) -> R) -> R {
        // The buddy allocator keeps its free lists on the kernel heap, which cannot grow from
        // frames once `buddy` is held on this CPU: let it grow now if it runs low (from the buddy
        // allocator alone: growing never drains, so this cannot wait for a drain).
        #[cfg(target_os = "none")]
        super::heap::HEAP.ensure_headroom();
        let mut b = profile::acquire(Lock::Frames, || self.buddy.lock());
        profile::shared_write();
        self.holder.store(this_cpu() + 1, Ordering::Relaxed);
        let r = f(&mut b);
        profile::shared_write();
        self.holder.store(0, Ordering::Relaxed);
        r
    }

    /// Is this CPU inside the buddy allocator right now (see `holder`)?
    pub fn held_by_this_cpu(&self) -> bool {
        self.holder.load(Ordering::Relaxed) == this_cpu() + 1
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
    }

    /// `count` physically contiguous frames aligned to `count` rounded up to a power of two.
    /// `None` when there are not enough (after draining every cache), or when fault injection
    /// says this call fails.
    pub fn alloc(&self, count: usize) -> Option<PhysAddr> {
        if self.fault.is_some_and(FaultAttr::should_fail) {
            return None;
        }
        if count == 1 {
            let pa = self.alloc_cached()?;
            self.cpus[this_cpu()].count_in_use(1);
            return Some(PhysAddr(pa));
        }
        self.alloc_uninjected(count)
    }

    /// One frame from this CPU's cache, refilled when empty.
    #[inline]
    fn alloc_cached(&self) -> Option<u64> {
        if let Some(pa) = self.with_cache(FrameCache::pop) {
            return Some(pa);
        }
        // Refill with no cache open: the batch is taken first, then spliced in.
        match self.take_batch() {
            Some((batch, n)) => Some(self.with_cache(|c| {
                // Nothing but this CPU fills its cache, and it was empty a moment ago (a drain
                // interrupt only empties it): the batch fits.
                for &f in &batch[..n - 1] {
                    let spilled = c.push_spilling(f);
                    debug_assert!(spilled.is_none(), "a refill overflowed the cache");
                }
                batch[n - 1]
            })),
            // Out of frames here: perhaps other CPUs' caches still hold some.
            None => {
                self.drain_caches();
                self.with_buddy(|b| b.alloc(1))
                    .map(|f| (f as u64) << PAGE_SHIFT)
            }
        }
    }

    /// Fill `out` with single frames, as many as there are (Linux's `alloc_pages_bulk`, which
    /// vmalloc uses too): this CPU's cache is opened once for every run of frames it holds, and
    /// refilled as [`alloc`](Self::alloc) does when it runs dry. Fault injection decides for each
    /// frame, as it does for each `alloc(1)`; an injected failure ends the call. Returns how many
    /// frames were handed out (the first ones of `out`).
    pub fn alloc_bulk(&self, out: &mut [PhysAddr]) -> usize {
        let fails = || self.fault.is_some_and(FaultAttr::should_fail);
        let mut n = 0;
        'fill: while n < out.len() {
            let (got, injected) = self.with_cache(|c| {
                let mut got = 0;
                for slot in &mut out[n..] {
                    if c.n == 0 {
                        break;
                    }
                    if fails() {
                        return (got, true);
                    }
                    *slot = PhysAddr(c.pop().unwrap_or_default());
                    got += 1;
                }
                (got, false)
            });
            n += got;
            if injected {
                break 'fill;
            }
            if n < out.len() {
                // The cache ran dry: one frame through the refill, which fills it again.
                if fails() {
                    break;
                }
                match self.alloc_cached() {
                    Some(pa) => out[n] = PhysAddr(pa),
                    None => break,
                }
                n += 1;
            }
        }
        self.cpus[this_cpu()].count_in_use(n as isize);
        n
    }

    /// Give back single frames obtained from [`alloc`](Self::alloc)`(1)` or
    /// [`alloc_bulk`](Self::alloc_bulk), opening this CPU's cache once for as many as fit
    /// (Linux's `free_pages_bulk`); full batches spill to the pool as [`free`](Self::free) does.
    ///
    /// # Safety
    ///
    /// As for [`free`](Self::free) with a count of 1, for each frame.
    pub unsafe fn free_bulk(&self, pages: &[PhysAddr]) {
        self.cpus[this_cpu()].count_in_use(-(pages.len() as isize));
        let mut i = 0;
        while i < pages.len() {
            let (done, spilled) = self.with_cache(|c| {
                for (k, pa) in pages.iter().enumerate().skip(i) {
                    debug_assert_eq!(pa.0 % PAGE_SIZE as u64, 0, "freeing {pa:?}");
                    if c.n == CACHE_FRAMES {
                        return (k, Some(c.take_oldest_batch()));
                    }
                    c.push(pa.0);
                }
                (pages.len(), None)
            });
            i = done;
            // The oldest batch of a full cache goes to the pool, or back to the buddy allocator,
            // once the cache is closed again.
            if let Some(batch) = spilled
                && !self.pool_put(&batch)
            {
                self.return_frames(&batch);
            }
        }
    }

    /// A batch of frames for a dry cache, and how many it has (at least 1): a batch from the pool;
    /// else [`REFILL_BATCHES`] batches in one block from the buddy allocator (the first for the
    /// cache, the rest to the pool); else one batch's block; else single frames. `None` only when
    /// the pool and the buddy allocator are both empty.
    fn take_batch(&self) -> Option<([u64; CACHE_BATCH], usize)> {
        if let Some(batch) = self.pool_take() {
            return Some((batch, CACHE_BATCH));
        }
        let frame = |first: usize, i: usize| ((first + i) as u64) << PAGE_SHIFT;
        if let Some(first) = self.with_buddy(|b| b.alloc(CACHE_BATCH * REFILL_BATCHES)) {
            for k in 1..REFILL_BATCHES {
                let batch: [u64; CACHE_BATCH] =
                    core::array::from_fn(|i| frame(first, k * CACHE_BATCH + i));
                if !self.pool_put(&batch) {
                    self.return_frames(&batch);
                }
            }
            return Some((core::array::from_fn(|i| frame(first, i)), CACHE_BATCH));
        }
        let mut batch = [0; CACHE_BATCH];
        let got = self.with_buddy(|b| match b.alloc(CACHE_BATCH) {
            Some(block) => {
                for (i, f) in batch.iter_mut().enumerate() {
                    *f = frame(block, i);
                }
                CACHE_BATCH
            }
            None => {
                let mut got = 0;
                while got < CACHE_BATCH {
                    match b.alloc(1) {
                        Some(f) => batch[got] = frame(f, 0),
                        None => break,
                    }
                    got += 1;
                }
                got
            }
        });
        (got > 0).then_some((batch, got))
    }

    /// [`alloc`](Self::alloc) that fault injection never fails: for the kernel heap's growth
    /// only. The heap cannot report failure (a `GlobalAlloc` that returns null aborts the
    /// kernel: heap OOM is fatal by design), so an injected failure there would not exercise an
    /// error path, it would just kill the machine. Injection is for the callers that can fail
    /// cleanly: vmalloc pages and page tables. Drains every cache when no block is free.
    pub fn alloc_uninjected(&self, count: usize) -> Option<PhysAddr> {
        let f = match self.with_buddy(|b| b.alloc(count)) {
            Some(f) => f,
            // Contiguous frames may be missing only because single ones sit in the caches.
            None => {
                self.drain_caches();
                self.with_buddy(|b| b.alloc(count))?
            }
        };
        self.cpus[this_cpu()].count_in_use(count as isize);
        Some(PhysAddr((f as u64) << PAGE_SHIFT))
    }

    /// `count` contiguous frames from the buddy allocator as it is, draining nothing: for the
    /// heap's top-up before a buddy operation (`with_buddy`), which must not
    /// set off a drain (the drain may be what is calling it).
    pub fn alloc_no_drain(&self, count: usize) -> Option<PhysAddr> {
        let f = self.with_buddy(|b| b.alloc(count))?;
        self.cpus[this_cpu()].count_in_use(count as isize);
        Some(PhysAddr((f as u64) << PAGE_SHIFT))
    }

    /// Return frames obtained from [`Frames::alloc`] with the same `count`.
    ///
    /// # Safety
    ///
    /// `pa` and `count` are those of one earlier [`alloc`](Self::alloc) (or
    /// [`alloc_uninjected`](Self::alloc_uninjected)) of this allocator, not freed since, and the
    /// frames are no longer used: no table points at them, no mapping but the linear map reaches
    /// them (unmapped, and the TLB invalidation completed; for the data page of a freed vmalloc
    /// area, a TLB entry of its old range may live until the lazy purge, which `vm`'s module
    /// documentation shows is harmless), no reference into them is live. The
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
        if count == 1 {
            // SAFETY: the caller's contract, for one frame.
            unsafe { self.free_bulk(&[PhysAddr(pa)]) };
            return;
        }
        self.cpus[this_cpu()].count_in_use(-(count as isize));
        self.with_buddy(|b| b.dealloc((pa >> PAGE_SHIFT) as usize, count));
    }

    /// Give single frames back to the buddy allocator.
    fn return_frames(&self, frames: &[u64]) {
        if frames.is_empty() {
            return;
        }
        self.with_buddy(|b| {
            for &f in frames {
                b.dealloc((f >> PAGE_SHIFT) as usize, 1);
            }
        });
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

    /// Return every cached, mailed and pooled frame to the buddy allocator: this CPU's cache
    /// directly, the other CPUs' through their drain interrupts (see the module documentation).
    /// Call it with no frame lock held and IRQs unmasked (the other CPUs may be waiting for this
    /// one to answer their own drain).
    pub fn drain_caches(&self) {
        let me = this_cpu();
        if self.drainer.load(Ordering::Relaxed) == me + 1 {
            // Set off by this CPU's own drain (the heap topping up while frames go back).
            return;
        }
        let mut generation = self.drain_lock.lock();
        self.drainer.store(me + 1, Ordering::Relaxed);
        let mine = self.with_cache(FrameCache::take_all);
        mine.runs().iter().for_each(|run| self.return_frames(run));
        // Mailboxes left full by a CPU that answered a past drain too late.
        for cpu in 0..CPUS {
            self.empty_outbox(cpu);
        }
        let mut silent = 0u64;
        if let Some(ask) = self.remote.and_then(Hook::get) {
            *generation += 1;
            for (cpu, c) in self.cpus.iter().enumerate() {
                if cpu != me {
                    c.drain_asked.store(*generation, Ordering::Release);
                }
            }
            let asked = ask() & !(1 << me);
            let deadline = now_ms() + DRAIN_WAIT_MS;
            for cpu in (0..CPUS).filter(|&c| asked & (1 << c) != 0) {
                let c = &self.cpus[cpu];
                while c.drain_answered.load(Ordering::Acquire) < *generation {
                    if now_ms() > deadline {
                        silent |= 1 << cpu;
                        break;
                    }
                    core::hint::spin_loop();
                }
                self.empty_outbox(cpu);
            }
        }
        while let Some(batch) = self.pool_take() {
            self.return_frames(&batch);
        }
        self.drainer.store(0, Ordering::Relaxed);
        drop(generation);
        if silent != 0 {
            log::warn!(
                "frames: CPUs {silent:#x} did not answer a cache drain within {DRAIN_WAIT_MS} ms: \
                 their cached frames stay there"
            );
        }
    }

    /// Give back the frames in `cpu`'s drain mailbox, if it holds any. Only the draining CPU
    /// calls this, under the drain lock.
    fn empty_outbox(&self, cpu: usize) {
        let c = &self.cpus[cpu];
        if !c.outbox_full.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: the mailbox is full (Acquire: its contents are visible), so its CPU's interrupt
        // does not touch it until the Release store below; only the drain lock's holder reads
        // it, and this CPU holds the lock.
        let frames = unsafe { (*c.outbox.get()).take_all() };
        c.outbox_full.store(false, Ordering::Release);
        frames.runs().iter().for_each(|run| self.return_frames(run));
    }

    /// Answer a drain request on this CPU: move this CPU's cache into its mailbox for the CPU
    /// that asked. Called from this CPU's drain interrupt (`smp`), or anywhere on this CPU; takes
    /// no lock, so it is safe whatever this CPU was interrupted in.
    pub fn answer_drain(&self) {
        let me = &self.cpus[this_cpu()];
        let asked = me.drain_asked.load(Ordering::Acquire);
        if asked == me.drain_answered.load(Ordering::Relaxed) {
            return;
        }
        // A mailbox still full (its last drain gave up waiting): leave the frames in the cache.
        if !me.outbox_full.load(Ordering::Acquire) {
            let frames = self.with_cache(FrameCache::take_all);
            // SAFETY: the mailbox is empty, so the draining CPU does not read it until the
            // Release store below publishes what is written here; only this CPU writes it.
            unsafe { *me.outbox.get() = frames };
            me.outbox_full.store(true, Ordering::Release);
        }
        me.drain_answered.store(asked, Ordering::Release);
    }

    /// Frames sitting in the per-CPU caches and the pool (counted as free by
    /// [`stats`](Self::stats), as are the frames in flight in a drain's mailboxes).
    pub fn cached(&self) -> usize {
        let pooled = self.pool.lock().n * CACHE_BATCH;
        pooled
            + self
                .cpus
                .iter()
                .map(|c| c.cached.load(Ordering::Relaxed))
                .sum::<usize>()
    }

    /// The current counts: exact while no CPU allocates or frees, close otherwise.
    pub fn stats(&self) -> FrameStats {
        let in_use: isize = self
            .cpus
            .iter()
            .map(|c| c.in_use.load(Ordering::Relaxed))
            .sum();
        let total = self.total.load(Ordering::Relaxed);
        FrameStats {
            total,
            free: total.saturating_sub(in_use.max(0) as usize),
        }
    }
}

impl Default for Frames {
    fn default() -> Self {
        Self::new()
    }
}

/// The machine's frames; `fail=frames:...` injects failures into them.
pub static FRAMES: Frames =
    Frames::with_fault_injection(&fault_inject::FAIL_FRAMES).with_drain_hook(&DRAIN_HOOK);

#[cfg(test)]
mod tests;
