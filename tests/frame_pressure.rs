//! The frame allocator under memory pressure, at -smp 4 with 64 MiB: a refill that must go to
//! the buddy allocator while the kernel heap is below its reserve, no 64-frame block is free and
//! another CPU's cache holds frames (the sequence that once deadlocked: the refilling CPU held
//! its own cache lock, the heap's top-up found no block and drained every cache, its own
//! included); a drain that must reach every CPU's cache; and vmalloc of all of memory right after
//! it was vfree'd, with no purge in between (the pages of a freed area are free at once).
//!
//! Each sequence runs on CPU 1 while CPU 0 watches the clock: a CPU stuck in the frame allocator
//! is reported as such instead of hanging until the runner's timeout.
//!
//! initmm-qemu: --machine virt --smp 4 --mem 64M
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;

use initmm::BootInfo;
use initmm::arch::aarch64::cpu;
use initmm::kernel::HEAP;
use initmm::mm::addr::PhysAddr;
use initmm::mm::frame::{CACHE_BATCH, FRAMES};
use initmm::mm::kernel_vm;
use initmm::mm::layout::PAGE_SIZE;
use initmm::mm::{free_frames, settle};
use initmm::smp::runtime::{self, spawn_on};
use initmm::testing::{self, Test};

/// Run `f` on CPU 1 and wait for it, at most `secs` seconds: past that, the test fails with
/// `what` (CPU 1 is left where it is stuck).
fn on_cpu1_within(secs: u64, what: &'static str, f: fn()) {
    let h = spawn_on(1, f);
    let deadline = cpu::counter() + secs * cpu::counter_frequency();
    while !h.is_finished() {
        assert!(
            cpu::counter() < deadline,
            "{what}: cpu1 did not finish within {secs} s"
        );
        core::hint::spin_loop();
    }
    h.join();
}

/// Frames counted as free with nothing cached anywhere, after every purge and table reclaim.
fn settled_free() -> usize {
    // SAFETY: called on the boot CPU between tests: the other CPUs are idle in the runtime, so
    // none maps, unmaps or walks the vmalloc region.
    unsafe { settle() };
    free_frames()
}

fn refill_with_the_heap_low_and_no_block_free() {
    let before = settled_free();
    on_cpu1_within(20, "the refill with the heap low", || {
        let n = FRAMES.stats().free;
        // Room for every frame, taken before memory runs out (the heap cannot grow later).
        let mut all: Vec<PhysAddr> = Vec::with_capacity(n + 1024);
        let mut held: Vec<PhysAddr> = Vec::with_capacity(1024);
        while let Some(pa) = FRAMES.alloc(1) {
            all.push(pa);
        }
        assert!(all.len() > n / 2, "only {} of {n} frames", all.len());
        // The heap below its reserve: its growth finds no frame at all now.
        let mut ballast: Vec<Box<[u8; 4096]>> = Vec::with_capacity(1024);
        while !HEAP.is_low() {
            ballast.push(Box::new([0; 4096]));
            assert!(ballast.len() < 1024, "the heap never ran low");
        }
        // Every frame back but one in 64: runs of 63 free frames, and never a free 64-frame block
        // for the heap's top-up. The frees overflow this CPU's cache into the pool and then into
        // the buddy allocator, whose lock is taken with the heap low.
        all.retain(|&pa| {
            let pinned = (pa.0 / PAGE_SIZE as u64).is_multiple_of(64);
            if !pinned {
                // SAFETY: a frame this test allocated above and used for nothing.
                unsafe { FRAMES.free(pa, 1) };
            }
            pinned
        });
        // CPU 2 caches a batch; this CPU empties the pool and its own cache.
        spawn_on(2, || {
            let pa = FRAMES.alloc(1).expect("a frame for cpu2");
            // SAFETY: the frame just allocated, used for nothing.
            unsafe { FRAMES.free(pa, 1) };
        })
        .join();
        assert!(FRAMES.cached() >= CACHE_BATCH, "cpu2 caches frames");
        while FRAMES.cached() > CACHE_BATCH {
            held.push(FRAMES.alloc(1).expect("cached frames"));
        }
        // The refill: no pooled batch, so the buddy allocator, whose top-up finds the heap low
        // and no block, while cpu2's cache holds frames.
        assert!(HEAP.is_low(), "the heap is still low");
        held.push(FRAMES.alloc(1).expect("a frame from the buddy allocator"));
        for pa in held.into_iter().chain(all) {
            // SAFETY: frames this test allocated above and used for nothing.
            unsafe { FRAMES.free(pa, 1) };
        }
        drop(ballast);
    });
    assert_eq!(settled_free(), before, "every frame came back");
}

fn a_drain_reaches_every_cpu() {
    let before = settled_free();
    // Every other CPU caches frames.
    for c in 1..4 {
        spawn_on(c, || {
            let pa = FRAMES.alloc(1).expect("a frame");
            // SAFETY: the frame just allocated, used for nothing.
            unsafe { FRAMES.free(pa, 1) };
        })
        .join();
    }
    assert!(
        FRAMES.cached() >= 3 * CACHE_BATCH,
        "{} cached",
        FRAMES.cached()
    );
    on_cpu1_within(5, "the drain", || FRAMES.drain_caches());
    assert_eq!(FRAMES.cached(), 0, "every CPU answered the drain");
    assert_eq!(settled_free(), before);
    assert!(
        (0..4).all(|c| runtime::jobs_run(c) > 0 || c == 0),
        "the CPUs ran their jobs"
    );
}

fn vmalloc_right_after_vfree_of_all_of_memory() {
    let before = settled_free();
    on_cpu1_within(30, "vmalloc after vfree", || {
        let vm = kernel_vm();
        const CHUNK: usize = 1 << 20;
        let mut areas = Vec::with_capacity(256);
        while let Ok(va) = vm.vmalloc(CHUNK) {
            areas.push(va);
        }
        let n = areas.len();
        assert!(n >= 16, "only {n} MiB could be vmalloc'd");
        areas.clear(); // vfree, by dropping
        // No purge in between: the pages must be free already.
        for i in 0..n {
            match vm.vmalloc(CHUNK) {
                Ok(va) => areas.push(va),
                Err(e) => panic!("MiB {i} of {n} again, right after vfree: {e}"),
            }
        }
        drop(areas);
    });
    assert_eq!(settled_free(), before);
}

static TESTS: &[Test] = initmm::tests![
    refill_with_the_heap_low_and_no_block_free,
    a_drain_reaches_every_cpu,
    vmalloc_right_after_vfree_of_all_of_memory,
];

initmm::entry!(main);

fn main(_: &'static BootInfo) -> ! {
    testing::run(TESTS)
}
