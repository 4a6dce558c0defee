//! Physical frames: every RAM region the device tree lists, minus the kernel image, the device tree
//! and the reserved regions, managed by a buddy allocator (`buddy_system_allocator`).
//!
//! Frames are handed out as physical addresses; the kernel reaches them through the linear map.

use core::sync::atomic::{AtomicUsize, Ordering};

use buddy_system_allocator::FrameAllocator;
use spin::Mutex;

use super::fault_inject::{self, FaultAttr};
use super::layout::{PAGE_SHIFT, PAGE_SIZE};

/// The frame allocator with its statistics.
pub struct Frames {
    buddy: Mutex<FrameAllocator<32>>,
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

/// Which CPU runs this code (0 until the machine installs its function): the frame allocator
/// records its lock holder with it.
static CPU_ID: AtomicUsize = AtomicUsize::new(0);

/// Install the function that names the current CPU.
pub fn set_cpu_id_fn(f: fn() -> usize) {
    CPU_ID.store(f as usize, Ordering::Release);
}

/// Run before the buddy lock is taken (0: nothing): the kernel heap makes sure it has room for
/// the buddy allocator's own allocations, which cannot grow the heap once the lock is held.
static BEFORE_LOCK: AtomicUsize = AtomicUsize::new(0);

/// Install the hook run before every buddy-allocator operation.
pub fn set_before_lock_hook(f: fn()) {
    BEFORE_LOCK.store(f as usize, Ordering::Release);
}

fn this_cpu() -> usize {
    match CPU_ID.load(Ordering::Acquire) {
        0 => 0,
        f => {
            // SAFETY: CPU_ID only ever holds a `fn() -> usize` stored by `set_cpu_id_fn`.
            let id = unsafe { core::mem::transmute::<usize, fn() -> usize>(f) };
            id()
        }
    }
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
            fault: None,
            holder: AtomicUsize::new(0),
        }
    }

    /// Run `f` on the buddy allocator, recording this CPU as the holder meanwhile.
    fn with_buddy<R>(&self, f: impl FnOnce(&mut FrameAllocator<32>) -> R) -> R {
        if let hook @ 1.. = BEFORE_LOCK.load(Ordering::Acquire) {
            // SAFETY: BEFORE_LOCK only ever holds a `fn()` stored by `set_before_lock_hook`.
            let hook = unsafe { core::mem::transmute::<usize, fn()>(hook) };
            hook();
        }
        let mut b = self.buddy.lock();
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
    pub fn add_region(&self, start: u64, end: u64) {
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
    pub fn alloc(&self, count: usize) -> Option<u64> {
        if self.fault.is_some_and(FaultAttr::should_fail) {
            return None;
        }
        self.alloc_uninjected(count)
    }

    /// [`alloc`](Self::alloc) that fault injection never fails: for the kernel heap's growth
    /// only. The heap cannot report failure (a `GlobalAlloc` that returns null aborts the
    /// kernel: heap OOM is fatal by design), so an injected failure there would not exercise an
    /// error path, it would just kill the machine. Injection is for the callers that can fail
    /// cleanly: vmalloc pages and page tables.
    pub fn alloc_uninjected(&self, count: usize) -> Option<u64> {
        let f = self.with_buddy(|b| b.alloc(count))?;
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
        self.with_buddy(|b| b.dealloc((pa >> PAGE_SHIFT) as usize, count));
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

/// The machine's frames; `fail=frames:...` injects failures into them.
pub static FRAMES: Frames = Frames::with_fault_injection(&fault_inject::FAIL_FRAMES);

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

    #[test]
    fn injection_fails_alloc_but_never_alloc_uninjected_and_leaks_nothing() {
        static ATTR: FaultAttr = FaultAttr::new();
        static F: Frames = Frames::with_fault_injection(&ATTR);
        F.add_region(0x4000_0000, 0x4010_0000);
        let s0 = F.stats();
        ATTR.set(Some(fault_inject::Rule::Nth(2)), 1);
        let a = F.alloc(1).expect("call 1 succeeds");
        assert_eq!(F.alloc(1), None, "call 2 is injected");
        assert_eq!(
            F.stats().free,
            s0.free - 1,
            "the injected call took nothing"
        );
        let b = F.alloc(4).expect("call 3 succeeds");
        ATTR.set(Some(fault_inject::Rule::Probability { num: 1, den: 1 }), 1);
        assert_eq!(F.alloc(1), None);
        let c = F
            .alloc_uninjected(1)
            .expect("the heap's path is never injected");
        assert_eq!(ATTR.injected(), 2);
        ATTR.set(None, 1);
        for (pa, n) in [(a, 1), (b, 4), (c, 1)] {
            F.free(pa, n);
        }
        assert_eq!(F.stats(), s0);
    }
}
