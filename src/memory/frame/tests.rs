use std::cell::Cell;
use std::sync::mpsc;
use std::sync::{Mutex as StdMutex, Once as StdOnce};

use super::*;

/// `add_region` and `free` for these tests, whose allocators hand out fake addresses that
/// nothing dereferences (no page table, no mapping is made of them), each added once and freed
/// with the count it was allocated with: the allocator's contract says so once, here.
trait FakeFrames {
    fn add_fake_region(&self, start: PhysAddr, end: PhysAddr);
    fn free_fake(&self, pa: PhysAddr, count: usize);
}

impl FakeFrames for Frames {
    fn add_fake_region(&self, start: PhysAddr, end: PhysAddr) {
        // SAFETY: fake memory that nothing uses (above), added once per allocator.
        unsafe { self.add_region(start, end) }
    }

    fn free_fake(&self, pa: PhysAddr, count: usize) {
        // SAFETY: the tests free what they allocated, with its count, and used it for nothing.
        unsafe { self.free(pa, count) }
    }
}

std::thread_local! {
    /// The CPU this test thread plays (see `this_cpu`).
    pub(super) static CPU: Cell<usize> = const { Cell::new(0) };
}

/// Run `f` as CPU `cpu` on this thread.
pub(super) fn as_cpu<R>(cpu: usize, f: impl FnOnce() -> R) -> R {
    let was = CPU.with(|c| c.replace(cpu));
    let r = f();
    CPU.with(|c| c.set(was));
    r
}

fn cache_len(f: &Frames, cpu: usize) -> usize {
    f.cpus[cpu].cached.load(Ordering::Relaxed)
}

#[test]
fn alloc_free_balance_and_alignment() {
    let f = Frames::new();
    f.add_fake_region(PhysAddr(0x4000_0800), PhysAddr(0x4010_0000)); // first partial page dropped
    let s0 = f.stats();
    assert_eq!(s0.total, 0xff);
    let a = f.alloc(1).unwrap();
    let b = f.alloc(16).unwrap();
    assert_eq!(
        b.0 % (16 * PAGE_SIZE as u64),
        0,
        "buddy blocks are naturally aligned"
    );
    assert_eq!(f.stats().free, s0.free - 17);
    f.free_fake(a, 1);
    f.free_fake(b, 16);
    assert_eq!(f.stats(), s0);
    assert!(f.alloc(1024).is_none(), "more than there is");
}

#[test]
fn counts_are_per_cpu_and_add_up_across_cpus() {
    let f = Frames::new();
    f.add_fake_region(PhysAddr(0x4000_0000), PhysAddr(0x4010_0000));
    let s0 = f.stats();
    // Allocated on CPU 2, freed on CPU 5: each CPU's count is off, their sum is right.
    let a = as_cpu(2, || f.alloc(1).unwrap());
    assert_eq!(f.stats().free, s0.free - 1);
    as_cpu(5, || f.free_fake(a, 1));
    assert_eq!(f.cpus[2].in_use.load(Ordering::Relaxed), 1);
    assert_eq!(f.cpus[5].in_use.load(Ordering::Relaxed), -1);
    assert_eq!(f.stats(), s0);
    assert_eq!(
        cache_len(&f, 5),
        1,
        "the frame went to the freeing CPU's cache"
    );
}

#[test]
fn injection_fails_alloc_but_never_alloc_uninjected_and_leaks_nothing() {
    static ATTR: FaultAttr = FaultAttr::new();
    static F: Frames = Frames::with_fault_injection(&ATTR);
    F.add_fake_region(PhysAddr(0x4000_0000), PhysAddr(0x4010_0000));
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
        F.free_fake(pa, n);
    }
    assert_eq!(F.stats(), s0);
}

#[test]
fn single_frames_go_through_the_cache_in_batches() {
    let f = Frames::new();
    f.add_fake_region(PhysAddr(0x4000_0000), PhysAddr(0x4100_0000)); // 4096 frames
    let s0 = f.stats();
    let a = f.alloc(1).unwrap();
    assert_eq!(
        f.cached(),
        CACHE_BATCH * REFILL_BATCHES - 1,
        "one block of batches refilled, one frame handed out"
    );
    assert_eq!(
        f.pool.lock().n,
        REFILL_BATCHES - 1,
        "all but the first batch went to the pool"
    );
    assert_eq!(f.stats().free, s0.free - 1, "cached frames count as free");
    let mut held: Vec<PhysAddr> = (0..CACHE_FRAMES + 10)
        .map(|_| f.alloc(1).unwrap())
        .collect();
    held.push(a);
    let mut sorted = held.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), held.len(), "no frame handed out twice");
    let pooled = f.pool.lock().n;
    for pa in held {
        f.free_fake(pa, 1);
        assert!(cache_len(&f, 0) <= CACHE_FRAMES, "the cache is bounded");
    }
    assert_eq!(
        f.pool.lock().n,
        pooled + 1,
        "the overflow went to the pool as one batch"
    );
    assert_eq!(f.stats(), s0);
    assert!(f.cached() > 0);
    f.drain_caches();
    assert_eq!(f.cached(), 0);
    // Everything is back in the buddy allocator: the whole region is one allocation again.
    let all = f.alloc_uninjected(4096).expect("drained frames coalesce");
    f.free_fake(all, 4096);
    assert_eq!(f.stats(), s0);
}

#[test]
fn a_large_allocation_drains_the_caches_when_it_must() {
    let f = Frames::new();
    f.add_fake_region(PhysAddr(0x4000_0000), PhysAddr(0x4004_0000)); // 64 frames
    let one = f.alloc(1).unwrap(); // 31 more sit in the cache
    f.free_fake(one, 1);
    assert_eq!(f.cached(), CACHE_BATCH);
    let all = f
        .alloc_uninjected(64)
        .expect("the cache is drained to make room");
    assert_eq!(f.cached(), 0);
    f.free_fake(all, 64);
    // The heap's top-up never drains: with the frames cached again, it finds no block.
    let one = f.alloc(1).unwrap();
    f.free_fake(one, 1);
    assert_eq!(f.alloc_no_drain(64), None, "no block without a drain");
    assert_eq!(f.cached(), CACHE_BATCH, "and nothing was drained");
}

#[test]
fn a_dry_cache_takes_a_pooled_batch_and_a_refill_takes_a_block() {
    let f = Frames::new();
    f.add_fake_region(PhysAddr(0x4000_0000), PhysAddr(0x4100_0000));
    // The first refill takes one block of batches: contiguous frames.
    let a = f.alloc(1).unwrap();
    let b = f.alloc(1).unwrap();
    assert_eq!(a.0.abs_diff(b.0), PAGE_SIZE as u64, "one block, split");
    // Overflow the cache so that a batch is parked, then empty this CPU's cache by hand: the
    // next refill must come from the pool.
    let mut held: Vec<PhysAddr> = (0..CACHE_FRAMES + CACHE_BATCH)
        .map(|_| f.alloc(1).unwrap())
        .collect();
    held.extend([a, b]);
    for &pa in &held {
        f.free_fake(pa, 1);
    }
    let pooled = f.pool.lock().n;
    assert!(pooled >= 1);
    f.with_cache(|c| c.n = 0); // as if this CPU had handed them all out
    let c = f.alloc(1).unwrap();
    assert_eq!(f.pool.lock().n, pooled - 1, "refilled from the pool");
    assert!(held.contains(&c), "a frame that was freed before");
}

/// The CPU one test's other thread plays, the channel that asks it to answer a drain, and the
/// one on which it says it did.
type Other = (usize, mpsc::Sender<()>, mpsc::Receiver<()>);
static OTHER: StdMutex<Option<Other>> = StdMutex::new(None);

/// A drain hook that plays the interrupt: it asks the other CPU's thread to answer and waits
/// until it has (a real CPU answers from its interrupt handler; the draining CPU then waits on
/// `drain_answered`, which this test thus also covers).
fn ask_other() -> u64 {
    let guard = OTHER.lock().unwrap();
    let (cpu, ask, done) = guard.as_ref().expect("no other CPU");
    ask.send(()).unwrap();
    done.recv().unwrap();
    1 << cpu
}

#[test]
fn a_drain_takes_another_cpus_cache_through_its_mailbox() {
    static HOOK: Hook<fn() -> u64> = Hook::new();
    static F: Frames = Frames::new().with_drain_hook(&HOOK);
    static ONCE: StdOnce = StdOnce::new();
    ONCE.call_once(|| HOOK.set(ask_other));
    F.add_fake_region(PhysAddr(0x4000_0000), PhysAddr(0x4004_0000)); // 64 frames
    let s0 = F.stats();
    let (ask_tx, ask_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    *OTHER.lock().unwrap() = Some((3, ask_tx, done_rx));
    std::thread::scope(|s| {
        s.spawn(move || {
            as_cpu(3, || {
                // CPU 3 takes a batch and gives the frame back: 32 frames in its cache.
                let one = F.alloc(1).unwrap();
                F.free_fake(one, 1);
                assert_eq!(cache_len(&F, 3), CACHE_BATCH);
                done_tx.send(()).unwrap();
                // Its "interrupt": answer the drain when asked.
                ask_rx.recv().unwrap();
                F.answer_drain();
                assert_eq!(cache_len(&F, 3), 0, "the cache went to the mailbox");
                done_tx.send(()).unwrap();
            })
        });
        // Wait until CPU 3 has filled its cache.
        OTHER.lock().unwrap().as_ref().unwrap().2.recv().unwrap();
        // CPU 0 needs all 64 frames in one block: only a drain of CPU 3's cache can give it.
        let all = F
            .alloc_uninjected(64)
            .expect("CPU 3's cached frames came back through its mailbox");
        assert_eq!(F.cached(), 0);
        assert!(
            !F.cpus[3].outbox_full.load(Ordering::Relaxed),
            "mailbox emptied"
        );
        F.free_fake(all, 64);
    });
    assert_eq!(F.stats(), s0);
    *OTHER.lock().unwrap() = None;
}

#[test]
fn a_late_answer_keeps_its_frames_for_the_next_drain() {
    let f = Frames::new();
    f.add_fake_region(PhysAddr(0x4000_0000), PhysAddr(0x4004_0000));
    let one = as_cpu(1, || f.alloc(1).unwrap());
    as_cpu(1, || f.free_fake(one, 1));
    // A drain asked CPU 1 and gave up waiting; CPU 1 answers afterwards.
    f.cpus[1].drain_asked.store(7, Ordering::Relaxed);
    as_cpu(1, || f.answer_drain());
    assert!(f.cpus[1].outbox_full.load(Ordering::Relaxed));
    assert_eq!(f.cpus[1].drain_answered.load(Ordering::Relaxed), 7);
    // Answered again while the mailbox is still full: the frames stay in the cache.
    as_cpu(1, || {
        let one = f.alloc(1).unwrap();
        f.free_fake(one, 1);
    });
    f.cpus[1].drain_asked.store(8, Ordering::Relaxed);
    let cached = cache_len(&f, 1);
    as_cpu(1, || f.answer_drain());
    assert_eq!(
        cache_len(&f, 1),
        cached,
        "a full mailbox is never overwritten"
    );
    // The next drain empties the mailbox: only CPU 1's cache (not asked here) keeps frames.
    f.drain_caches();
    assert!(!f.cpus[1].outbox_full.load(Ordering::Relaxed));
    assert_eq!(f.cached(), cached);
}
