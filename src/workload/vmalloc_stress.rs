//! `vmalloc-stress`: Linux's `lib/test_vmalloc.c` scenarios, on every CPU at once, with data
//! written to and verified in every area before it is freed.
//!
//! Each CPU runs the scenarios in turn until the time (or `iterations=`, counted in passes over
//! all scenarios) is up. Per scenario it reports passed/failed/repeat and the average time of
//! one scenario run in microseconds, like test_vmalloc.
//!
//! In slices ([`Workload::prepare_slices`], for the soak), a slice is one scenario, each CPU
//! going through them in turn from a different one.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::common::{AllocFailures, Leak, OnCpu, Progress, is_alloc_failure, tables_delta};
use super::{Cursor, Finding, Params, Report, Slice, Sliced, Workload};
use initmm::arch::aarch64::cpu;
use initmm::mm::addr::VirtAddr;
use initmm::mm::layout::PAGE_SIZE;
use initmm::mm::pgalloc::PgStatsSnapshot;
use initmm::mm::vm::VmError;
use initmm::mm::{VmBuf, kernel_vm};
use initmm::mm::{free_frames, settle};
use initmm::smp::runtime::on_cpus;
use initmm::util::rng::Rng;

/// Why a scenario stopped early.
#[derive(Debug)]
enum Failure {
    /// An allocation failed for want of frames or virtual space (fault injection, normally).
    /// Everything the scenario held has been checked and freed.
    Alloc,
    /// Wrong data, a misaligned area, or an error that is not an allocation failure.
    Bad(ScenarioError),
}

impl Failure {
    /// `e` from an allocation: an allocation failure, or what `bad` makes of any other error.
    fn vm(e: VmError, bad: impl FnOnce(VmError) -> ScenarioError) -> Self {
        if is_alloc_failure(&e) {
            Failure::Alloc
        } else {
            Failure::Bad(bad(e))
        }
    }
}

/// What a scenario found wrong.
#[derive(Debug)]
pub enum ScenarioError {
    /// `vmalloc_aligned` failed, not for want of memory or space.
    Vmalloc {
        /// The size asked for, in pages.
        pages: usize,
        /// The alignment asked for, in bytes.
        align: usize,
        /// What `vmalloc_aligned` returned.
        error: VmError,
    },
    /// `vmalloc_aligned` of one page at 2^`shift` failed, not for want of memory or space.
    VmallocShifted {
        /// The alignment's log2.
        shift: u32,
        /// What `vmalloc_aligned` returned.
        error: VmError,
    },
    /// An area that is not aligned as asked.
    Misaligned {
        /// The area's start.
        va: usize,
        /// The alignment asked for, in bytes.
        align: usize,
    },
    /// A word of the area at `va` that reads `read`, not what this CPU wrote there.
    Overwritten {
        /// The area's start.
        va: usize,
        /// The word's address.
        word: usize,
        /// The value read there.
        read: u64,
    },
    /// An alignment no address of the vmalloc region has was met.
    BeyondRegion {
        /// The alignment's log2 (48 or more: past every vmalloc address).
        shift: u32,
        /// The address the allocation returned.
        va: VirtAddr,
    },
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vmalloc {
                pages,
                align,
                error,
            } => write!(f, "vmalloc({pages} pages, align {align:#x}): {error}"),
            Self::VmallocShifted { shift, error } => {
                write!(f, "vmalloc(1 page, align 2^{shift}): {error}")
            }
            Self::Misaligned { va, align } => {
                write!(f, "vmalloc returned {va:#x}, not aligned to {align:#x}")
            }
            Self::Overwritten { va, word, read } => write!(
                f,
                "area {va:#x}: word at {word:#x} reads {read:#x}: another mapping wrote it"
            ),
            Self::BeyondRegion { shift, va } => write!(
                f,
                "vmalloc aligned to 2^{shift} succeeded at {va:#x}, beyond the region"
            ),
        }
    }
}

impl Error for ScenarioError {}

/// A scenario, by name, and what it found wrong.
#[derive(Debug)]
pub struct ScenarioFailed {
    /// The scenario's name, as the report prints it.
    pub scenario: &'static str,
    /// What it found wrong.
    pub error: ScenarioError,
}

impl fmt::Display for ScenarioFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.scenario, self.error)
    }
}

impl Error for ScenarioFailed {}

/// The areas a scenario holds. Whatever way the scenario ends, [`Live::release`] checks and
/// frees what is left, so that a failed allocation in the middle leaks nothing.
struct Live {
    cpu: usize,
    areas: Vec<Option<VmBuf>>,
}

impl Live {
    fn new(cpu: usize) -> Self {
        Self {
            cpu,
            areas: Vec::new(),
        }
    }

    /// vmalloc `pages` pages at `align`, write the pattern into them, hold them; returns a slot.
    fn alloc(&mut self, pages: usize, align: usize) -> Result<usize, Failure> {
        let size = pages * PAGE_SIZE;
        let area = kernel_vm().vmalloc_aligned(size, align).map_err(|e| {
            Failure::vm(e, |error| ScenarioError::Vmalloc {
                pages,
                align,
                error,
            })
        })?;
        self.hold(area, align)
    }

    /// Hold an area the caller allocated: check its alignment, write the pattern.
    fn hold(&mut self, mut area: VmBuf, align: usize) -> Result<usize, Failure> {
        let filled = fill(&mut area, align, self.cpu);
        self.areas.push(Some(area));
        filled.map_err(Failure::Bad)?;
        Ok(self.areas.len() - 1)
    }

    /// Check and free the area in `slot`.
    fn free(&mut self, slot: usize) -> Result<(), Failure> {
        match self.areas[slot].take() {
            Some(a) => check_and_free(a, self.cpu).map_err(Failure::Bad),
            None => Ok(()),
        }
    }

    /// Check and free everything still held; the first bad area is the error.
    fn release(&mut self) -> Result<(), Failure> {
        let mut first = Ok(());
        for slot in 0..self.areas.len() {
            let r = self.free(slot);
            if first.is_ok() {
                first = r;
            }
        }
        self.areas.clear();
        first
    }
}

/// A scenario: returns the number of areas it allocated, or why it stopped. Areas stay in
/// `Live` until freed; the caller releases what an early return left there.
type Scenario = fn(&mut Rng, &mut Live) -> Result<u64, Failure>;

const SCENARIOS: [(&str, Scenario); 7] = [
    ("fix_size_alloc", fix_size_alloc),
    ("full_fit_alloc", full_fit_alloc),
    ("long_busy_list_alloc", long_busy_list_alloc),
    ("random_size_alloc", random_size_alloc),
    ("fix_align_alloc", fix_align_alloc),
    ("random_size_align_alloc", random_size_align_alloc),
    ("align_shift_alloc", align_shift_alloc),
];

/// Run scenario `i` on this CPU and free whatever it held. A data error found while releasing
/// wins over an allocation failure.
fn run_scenario(i: usize, rng: &mut Rng, cpu_id: usize) -> Result<u64, Failure> {
    let mut live = Live::new(cpu_id);
    let r = (SCENARIOS[i].1)(rng, &mut live);
    match (r, live.release()) {
        (Err(Failure::Bad(e)), _) => Err(Failure::Bad(e)),
        (_, Err(e)) => Err(e),
        (r, Ok(())) => r,
    }
}

/// The offsets of the words of an area the check writes: the first, middle and last of every
/// page.
fn words(size: usize) -> impl Iterator<Item = usize> {
    (0..size / PAGE_SIZE).flat_map(move |p| {
        let page = p * PAGE_SIZE;
        [page, page + PAGE_SIZE / 2, page + PAGE_SIZE - 8]
    })
}

/// What this CPU writes at `offset` of the area at `va`.
fn tag(va: usize, cpu_id: usize, offset: usize) -> u64 {
    ((va + offset) as u64) ^ ((cpu_id as u64) << 56) ^ (va as u64).rotate_left(17)
}

/// Check the area's alignment and write the pattern into it.
fn fill(area: &mut VmBuf, align: usize, cpu_id: usize) -> Result<(), ScenarioError> {
    let va = area.addr().0;
    if !va.is_multiple_of(align) {
        return Err(ScenarioError::Misaligned { va, align });
    }
    for w in words(area.len()) {
        area[w..w + 8].copy_from_slice(&tag(va, cpu_id, w).to_ne_bytes());
    }
    Ok(())
}

/// Check the pattern, then free the area (by dropping it).
fn check_and_free(area: VmBuf, cpu_id: usize) -> Result<(), ScenarioError> {
    let va = area.addr().0;
    for w in words(area.len()) {
        let got = u64::from_ne_bytes(area[w..w + 8].try_into().expect("8 bytes"));
        if got != tag(va, cpu_id, w) {
            return Err(ScenarioError::Overwritten {
                va,
                word: va + w,
                read: got,
            });
        }
    }
    Ok(())
}

fn fix_size_alloc(_: &mut Rng, l: &mut Live) -> Result<u64, Failure> {
    for _ in 0..100 {
        let a = l.alloc(1, PAGE_SIZE)?;
        l.free(a)?;
    }
    Ok(100)
}

/// Allocate a run of areas, free every other one, and fill the holes again with areas of the
/// same size: the allocator must find the exact fits.
fn full_fit_alloc(_: &mut Rng, l: &mut Live) -> Result<u64, Failure> {
    let slots: Vec<usize> = (0..40)
        .map(|_| l.alloc(1, PAGE_SIZE))
        .collect::<Result<_, _>>()?;
    for &s in slots.iter().step_by(2) {
        l.free(s)?;
    }
    for _ in slots.iter().step_by(2) {
        l.alloc(1, PAGE_SIZE)?;
    }
    l.release()?;
    Ok(60)
}

/// Many live areas at once, then allocations and frees on top of that busy list.
fn long_busy_list_alloc(_: &mut Rng, l: &mut Live) -> Result<u64, Failure> {
    const LIVE: usize = 500;
    for _ in 0..LIVE {
        l.alloc(1, PAGE_SIZE)?;
    }
    for _ in 0..100 {
        let a = l.alloc(1, PAGE_SIZE)?;
        l.free(a)?;
    }
    l.release()?;
    Ok(LIVE as u64 + 100)
}

fn random_size_alloc(r: &mut Rng, l: &mut Live) -> Result<u64, Failure> {
    for _ in 0..20 {
        let pages = r.range(1, 100);
        let a = l.alloc(pages, PAGE_SIZE)?;
        l.free(a)?;
    }
    Ok(20)
}

fn fix_align_alloc(_: &mut Rng, l: &mut Live) -> Result<u64, Failure> {
    for _ in 0..20 {
        let a = l.alloc(1, 16 * PAGE_SIZE)?;
        l.free(a)?;
    }
    Ok(20)
}

fn random_size_align_alloc(r: &mut Rng, l: &mut Live) -> Result<u64, Failure> {
    for _ in 0..20 {
        let pages = r.range(1, 16);
        let align = PAGE_SIZE << r.range(0, 9);
        let a = l.alloc(pages, align)?;
        l.free(a)?;
    }
    Ok(20)
}

/// Growing alignments up to beyond the whole vmalloc region, as in test_vmalloc. From 2^48 on no
/// aligned address exists in the 126 TiB region (which starts 2^47-aligned), so those must fail
/// cleanly. From 1 TiB on there are few aligned places (two at 64 TiB, one at 128 TiB, usually
/// taken by the boot's first areas), and the other CPUs running this at the same moment may hold
/// them: running out of virtual space is a correct answer there too.
fn align_shift_alloc(_: &mut Rng, l: &mut Live) -> Result<u64, Failure> {
    let mut n = 0;
    for shift in 12..63 {
        let align = 1usize << shift;
        match kernel_vm().vmalloc_aligned(PAGE_SIZE, align) {
            Ok(area) if shift >= 48 => {
                let va = area.addr();
                drop(area);
                return Err(Failure::Bad(ScenarioError::BeyondRegion { shift, va }));
            }
            Ok(area) => {
                let a = l.hold(area, align)?;
                l.free(a)?;
                n += 1;
            }
            Err(VmError::NoVirtualSpace(_)) if shift >= 40 => {}
            Err(e) => {
                return Err(Failure::vm(e, |error| ScenarioError::VmallocShifted {
                    shift,
                    error,
                }));
            }
        }
    }
    Ok(n)
}

#[derive(Default)]
struct Stats {
    passed: AtomicU64,
    failed: AtomicU64,
    /// Stopped by an allocation failure (injected): not a failure, if injection explains it.
    injected: AtomicU64,
    ticks: AtomicU64,
}

/// vmalloc-stress (see the module documentation).
pub struct VmallocStress;

const NAME: &str = "vmalloc-stress";

impl Workload for VmallocStress {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(&self, p: &Params) -> Report {
        let vm = kernel_vm();
        // Warm up once so the heap has grown to what it keeps, then free the tables that are empty
        // again: the balance check below then proves every page and table went back.
        warm_up();
        // SAFETY: on the boot CPU, before or after this workload's CPUs ran (on_cpus is not
        // running): the other CPUs are idle, so none maps, unmaps or walks the vmalloc region.
        unsafe { settle() };
        let frames_before = free_frames();
        let areas_before = vm.area_stats();
        let tables_before: PgStatsSnapshot = vm.init_mm.stats();
        let stats: [Stats; 7] = Default::default();
        let failures = spin::Mutex::new(Vec::<Finding>::new());
        let alloc_failures = AllocFailures::new();
        let progress = Progress::new(NAME);
        let start = cpu::counter();
        on_cpus(p.cpus, &|id| {
            let mut rng = Rng::new(id as u64 + 7);
            let mut pass = 0u64;
            while p.more(start, pass) {
                for (i, (name, _)) in SCENARIOS.iter().enumerate() {
                    let t0 = cpu::counter();
                    match run_scenario(i, &mut rng, id) {
                        Ok(n) => {
                            stats[i].passed.fetch_add(1, Ordering::Relaxed);
                            progress.add(id, n);
                        }
                        Err(Failure::Alloc) => {
                            stats[i].injected.fetch_add(1, Ordering::Relaxed);
                            alloc_failures.note();
                        }
                        Err(Failure::Bad(e)) => {
                            stats[i].failed.fetch_add(1, Ordering::Relaxed);
                            failures.lock().push(
                                OnCpu {
                                    cpu: id,
                                    error: ScenarioFailed {
                                        scenario: name,
                                        error: e,
                                    },
                                }
                                .into(),
                            );
                        }
                    }
                    stats[i]
                        .ticks
                        .fetch_add(cpu::counter() - t0, Ordering::Relaxed);
                }
                pass += 1;
            }
        });
        let mut report = Report::new(NAME, p.cpus);
        report.record(&progress);
        report.tables = tables_delta(&tables_before, &vm.init_mm.stats());
        report.frames_before = frames_before;
        report.failures = failures.into_inner();
        // SAFETY: on the boot CPU, before or after this workload's CPUs ran (on_cpus is not
        // running): the other CPUs are idle, so none maps, unmaps or walks the vmalloc region.
        unsafe { settle() };
        report.frames_after = free_frames();
        let mut per = String::from("{");
        for (i, (name, _)) in SCENARIOS.iter().enumerate() {
            let s = &stats[i];
            let (ok, bad, inj) = (
                s.passed.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
                s.injected.load(Ordering::Relaxed),
            );
            let avg_us = s.ticks.load(Ordering::Relaxed) * 1_000_000
                / cpu::counter_frequency()
                / (ok + bad + inj).max(1);
            log::info!(
                "vmalloc-stress: {name:<24} passed {ok:>5} failed {bad:>3} injected {inj:>4} avg {avg_us:>7} usec"
            );
            if i > 0 {
                per.push(',');
            }
            per.push_str(&format!(
                "\"{name}\":{{\"passed\":{ok},\"failed\":{bad},\"injected\":{inj},\"avg_usec\":{avg_us}}}"
            ));
        }
        per.push('}');
        report.extra.push(("scenarios", per));
        report
            .extra
            .push(("injected", format!("{}", alloc_failures.seen())));
        if let Err(e) = alloc_failures.check() {
            report.fail(e);
        }
        let areas_after = vm.area_stats();
        if areas_after != areas_before {
            report.fail(Leak::Areas {
                before: areas_before,
                after: areas_after,
            });
        }
        report.check_frames();
        report.finish()
    }

    fn prepare_slices(&self) -> Option<Result<Box<dyn Sliced + '_>, Finding>> {
        warm_up();
        Some(Ok(Box::new(VmallocSlices)))
    }
}

/// Every scenario once, on this CPU: the heap grows to what the scenarios keep in it.
fn warm_up() {
    let mut rng = Rng::new(1);
    for i in 0..SCENARIOS.len() {
        let _ = run_scenario(i, &mut rng, 0);
    }
}

/// vmalloc-stress in slices: nothing shared but the allocators.
struct VmallocSlices;

impl Sliced for VmallocSlices {
    fn cursor(&self, cpu: usize, seed: u64) -> Box<dyn Cursor + '_> {
        Box::new(VmallocCursor {
            cpu,
            rng: Rng::new(seed),
            scenario: cpu,
        })
    }

    fn finish(self: Box<Self>) -> Result<(), Finding> {
        Ok(())
    }
}

/// One CPU's place: the next scenario (CPU i starts at scenario i) and its generator.
struct VmallocCursor {
    cpu: usize,
    rng: Rng,
    scenario: usize,
}

impl Cursor for VmallocCursor {
    fn slice(&mut self) -> Slice {
        let i = self.scenario % SCENARIOS.len();
        self.scenario += 1;
        let mut done = Slice::default();
        match run_scenario(i, &mut self.rng, self.cpu) {
            Ok(n) => done.ops = n,
            Err(Failure::Alloc) => done.alloc_failures = 1,
            Err(Failure::Bad(error)) => done.failures.push(
                ScenarioFailed {
                    scenario: SCENARIOS[i].0,
                    error,
                }
                .into(),
            ),
        }
        done
    }
}
