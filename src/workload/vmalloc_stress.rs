//! `vmalloc-stress`: Linux's `lib/test_vmalloc.c` scenarios, on every CPU at once, with data
//! written to and verified in every area before it is freed.
//!
//! Each CPU runs the scenarios in turn until the time (or `iterations=`, counted in passes over
//! all scenarios) is up. Per scenario it reports passed/failed/repeat and the average time of
//! one scenario run in microseconds, like test_vmalloc.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{Params, Progress, Report, free_frames, storm::delta};
use crate::arch::aarch64::cpu;
use crate::mm::kernel_vm;
use crate::mm::layout::PAGE_SIZE;
use crate::mm::pgalloc::PgStatsSnapshot;
use crate::mm::vm::VmError;
use crate::smp::runtime::on_cpus;

/// A scenario: returns the number of areas it allocated, or what went wrong.
type Scenario = fn(&mut Rng, usize) -> Result<u64, String>;

const SCENARIOS: [(&str, Scenario); 7] = [
    ("fix_size_alloc", fix_size_alloc),
    ("full_fit_alloc", full_fit_alloc),
    ("long_busy_list_alloc", long_busy_list_alloc),
    ("random_size_alloc", random_size_alloc),
    ("fix_align_alloc", fix_align_alloc),
    ("random_size_align_alloc", random_size_align_alloc),
    ("align_shift_alloc", align_shift_alloc),
];

/// xorshift64*: a small seeded generator, one per CPU.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// The words of an area the check writes: the first, middle and last of every page.
fn words(va: usize, size: usize) -> impl Iterator<Item = *mut u64> {
    (0..size / PAGE_SIZE).flat_map(move |p| {
        let page = va + p * PAGE_SIZE;
        [page, page + PAGE_SIZE / 2, page + PAGE_SIZE - 8]
            .into_iter()
            .map(|a| a as *mut u64)
    })
}

fn tag(va: usize, cpu_id: usize, w: *mut u64) -> u64 {
    (w as u64) ^ ((cpu_id as u64) << 56) ^ (va as u64).rotate_left(17)
}

/// vmalloc `pages` pages, write a pattern into them, and keep it.
fn alloc_filled(pages: usize, align: usize, cpu_id: usize) -> Result<(usize, usize), String> {
    let size = pages * PAGE_SIZE;
    let va = kernel_vm()
        .vmalloc_aligned(size, align)
        .map_err(|e| format!("vmalloc({pages} pages, align {align:#x}): {e}"))?;
    fill(va, size, align, cpu_id)
}

/// Check `va`'s alignment and write the pattern into the area.
fn fill(va: usize, size: usize, align: usize, cpu_id: usize) -> Result<(usize, usize), String> {
    if !va.is_multiple_of(align) {
        return Err(format!(
            "vmalloc returned {va:#x}, not aligned to {align:#x}"
        ));
    }
    for w in words(va, size) {
        // SAFETY: `w` is inside [va, va + size), which vmalloc just mapped for this CPU alone.
        unsafe { w.write_volatile(tag(va, cpu_id, w)) };
    }
    Ok((va, size))
}

/// Check the pattern, then vfree.
fn check_and_free((va, size): (usize, usize), cpu_id: usize) -> Result<(), String> {
    for w in words(va, size) {
        // SAFETY: as in `alloc_filled`: the area is still ours and mapped.
        let got = unsafe { w.read_volatile() };
        if got != tag(va, cpu_id, w) {
            return Err(format!(
                "area {va:#x}: word at {:#x} reads {got:#x}: another mapping wrote it",
                w as usize
            ));
        }
    }
    kernel_vm()
        .vfree(va)
        .map_err(|e| format!("vfree({va:#x}): {e}"))
}

fn fix_size_alloc(_: &mut Rng, c: usize) -> Result<u64, String> {
    for _ in 0..100 {
        check_and_free(alloc_filled(1, PAGE_SIZE, c)?, c)?;
    }
    Ok(100)
}

/// Allocate a run of areas, free every other one, and fill the holes again with areas of the
/// same size: the allocator must find the exact fits.
fn full_fit_alloc(_: &mut Rng, c: usize) -> Result<u64, String> {
    let mut areas: Vec<Option<(usize, usize)>> = Vec::new();
    for _ in 0..40 {
        areas.push(Some(alloc_filled(1, PAGE_SIZE, c)?));
    }
    for a in areas.iter_mut().step_by(2) {
        check_and_free(a.take().unwrap(), c)?;
    }
    for a in areas.iter_mut().step_by(2) {
        *a = Some(alloc_filled(1, PAGE_SIZE, c)?);
    }
    for a in areas.into_iter().flatten() {
        check_and_free(a, c)?;
    }
    Ok(60)
}

/// Many live areas at once, then allocations and frees on top of that busy list.
fn long_busy_list_alloc(_: &mut Rng, c: usize) -> Result<u64, String> {
    const LIVE: usize = 500;
    let busy: Vec<(usize, usize)> = (0..LIVE)
        .map(|_| alloc_filled(1, PAGE_SIZE, c))
        .collect::<Result<_, _>>()?;
    for _ in 0..100 {
        check_and_free(alloc_filled(1, PAGE_SIZE, c)?, c)?;
    }
    for a in busy {
        check_and_free(a, c)?;
    }
    Ok(LIVE as u64 + 100)
}

fn random_size_alloc(r: &mut Rng, c: usize) -> Result<u64, String> {
    for _ in 0..20 {
        let pages = r.range(1, 100) as usize;
        check_and_free(alloc_filled(pages, PAGE_SIZE, c)?, c)?;
    }
    Ok(20)
}

fn fix_align_alloc(_: &mut Rng, c: usize) -> Result<u64, String> {
    for _ in 0..20 {
        check_and_free(alloc_filled(1, 16 * PAGE_SIZE, c)?, c)?;
    }
    Ok(20)
}

fn random_size_align_alloc(r: &mut Rng, c: usize) -> Result<u64, String> {
    for _ in 0..20 {
        let pages = r.range(1, 16) as usize;
        let align = PAGE_SIZE << r.range(0, 9);
        check_and_free(alloc_filled(pages, align, c)?, c)?;
    }
    Ok(20)
}

/// Growing alignments up to beyond the whole vmalloc region, as in test_vmalloc. From 2^48 on no
/// aligned address exists in the 126 TiB region (which starts 2^47-aligned), so those must fail
/// cleanly. From 1 TiB on there are few aligned places (two at 64 TiB, one at 128 TiB, usually
/// taken by the boot's first areas), and the other CPUs running this at the same moment may hold
/// them: running out of virtual space is a correct answer there too.
fn align_shift_alloc(_: &mut Rng, c: usize) -> Result<u64, String> {
    let mut n = 0;
    for shift in 12..63 {
        let align = 1usize << shift;
        match kernel_vm().vmalloc_aligned(PAGE_SIZE, align) {
            Ok(va) if shift >= 48 => {
                let _ = kernel_vm().vfree(va);
                return Err(format!(
                    "vmalloc aligned to 2^{shift} succeeded at {va:#x}, beyond the region"
                ));
            }
            Ok(va) => {
                check_and_free(fill(va, PAGE_SIZE, align, c)?, c)?;
                n += 1;
            }
            Err(VmError::NoVirtualSpace(_)) if shift >= 40 => {}
            Err(e) => return Err(format!("vmalloc(1 page, align 2^{shift}): {e}")),
        }
    }
    Ok(n)
}

#[derive(Default)]
struct Stats {
    passed: AtomicU64,
    failed: AtomicU64,
    ticks: AtomicU64,
}

pub fn run(p: &Params) -> Report {
    let vm = kernel_vm();
    // Warm up once so the heap has grown to what it keeps, then free the tables that are empty
    // again: the balance check below then proves every page and table went back.
    let mut rng = Rng::new(1);
    for (_, f) in SCENARIOS {
        let _ = f(&mut rng, 0);
    }
    super::reclaim_vmalloc_tables();
    let frames_before = free_frames();
    let areas_before = vm.area_stats();
    let tables_before: PgStatsSnapshot = vm.init_mm.stats();
    let stats: [Stats; 7] = Default::default();
    let failures = spin::Mutex::new(Vec::<String>::new());
    let progress = Progress::new("vmalloc-stress");
    let start = cpu::counter();
    on_cpus(p.cpus, &|id| {
        let mut rng = Rng::new(id as u64 + 7);
        let mut pass = 0u64;
        while p.more(start, pass) {
            for (i, (name, f)) in SCENARIOS.iter().enumerate() {
                let t0 = cpu::counter();
                match f(&mut rng, id) {
                    Ok(n) => {
                        stats[i].passed.fetch_add(1, Ordering::Relaxed);
                        progress.add(id, n);
                    }
                    Err(e) => {
                        stats[i].failed.fetch_add(1, Ordering::Relaxed);
                        failures.lock().push(format!("cpu{id} {name}: {e}"));
                    }
                }
                stats[i]
                    .ticks
                    .fetch_add(cpu::counter() - t0, Ordering::Relaxed);
            }
            pass += 1;
        }
    });
    let mut report = Report {
        name: "vmalloc-stress",
        cpus: p.cpus,
        ops: progress.total(),
        ticks: progress.elapsed(),
        per_cpu_ops: progress.per_cpu(p.cpus),
        tables: delta(&tables_before, &vm.init_mm.stats()),
        frames_before,
        frames_after: free_frames(),
        passed: false,
        extra: vec![],
        failures: failures.into_inner(),
    };
    super::reclaim_vmalloc_tables();
    report.frames_after = free_frames();
    let mut per = String::from("{");
    for (i, (name, _)) in SCENARIOS.iter().enumerate() {
        let s = &stats[i];
        let (ok, bad) = (
            s.passed.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
        );
        let avg_us = s.ticks.load(Ordering::Relaxed) * 1_000_000
            / cpu::counter_frequency()
            / (ok + bad).max(1);
        log::info!(
            "vmalloc-stress: {name:<24} passed {ok:>5} failed {bad:>3} avg {avg_us:>7} usec"
        );
        if i > 0 {
            per.push(',');
        }
        per.push_str(&format!(
            "\"{name}\":{{\"passed\":{ok},\"failed\":{bad},\"avg_usec\":{avg_us}}}"
        ));
    }
    per.push('}');
    report.extra.push(("scenarios", per));
    if vm.area_stats() != areas_before {
        report.failures.push(format!(
            "areas: {:?} before, {:?} after",
            areas_before,
            vm.area_stats()
        ));
    }
    if report.frames_after != report.frames_before {
        report.failures.push(format!(
            "frames: {} free before, {} after",
            report.frames_before, report.frames_after
        ));
    }
    report.passed = report.failures.is_empty() && report.ops > 0;
    report
}
