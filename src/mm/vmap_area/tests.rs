use super::*;
use std::time::Instant;

use crate::rng::Rng;

const VMALLOC_START: usize = 0xFFFF_8000_0000_0000;
const VMALLOC_END: usize = 0xFFFF_FE00_0000_0000;
const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

fn vmalloc_window() -> VmapAreaAllocator {
    VmapAreaAllocator::new(VMALLOC_START, VMALLOC_END)
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
    let mut rng = Rng::new(0x1234_5678);
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
        let mut rng = Rng::new(seed);
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
                        padded += usize::from(a.start != start && va.find(a.start - 1).is_none());
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
    let mut rng = Rng::new(7);
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
    let mut rng = Rng::new(99);
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
