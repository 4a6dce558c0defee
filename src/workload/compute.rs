//! `compute`: a CPU-bound parallel job — counting the primes below a bound by trial division, in
//! chunks spread with `spawn` and work stealing — timed on one CPU and then on `cpus=` CPUs (all
//! by default; on fewer than all the chunks are pinned in turn instead of stolen), to show the
//! speed-up and each CPU's share of the work. It is the same job whatever `seconds=` or
//! `iterations=` say.
//!
//! In slices ([`Workload::prepare_slices`], for the soak), a slice is one chunk of 10,000 by
//! trial division, checked against a sieve of Eratosthenes made beforehand; CPU i starts at
//! chunk 25 i.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt;

use super::common::Progress;
use super::{Cursor, Finding, Params, Report, Slice, Sliced, Workload};
use initmm::arch::aarch64::cpu;
use initmm::mm::free_frames;
use initmm::smp;
use initmm::smp::runtime::{JoinHandle, jobs_run, spawn, spawn_on};

/// Count primes below 1,000,000: there are 78,498.
const LIMIT: u64 = 1_000_000;
const PRIMES_BELOW_LIMIT: u64 = 78_498;
const CHUNK: u64 = 10_000;

/// What compute found wrong.
#[derive(Debug)]
pub enum ComputeError {
    /// The count of primes below 1,000,000, made `on` one CPU or all, is not 78,498.
    WrongCount {
        /// Which run: one CPU, or all of them.
        on: &'static str,
        /// The count it made.
        counted: u64,
    },
    /// Trial division found `counted` primes in chunk `chunk`, the sieve `sieve`.
    WrongChunk {
        /// The chunk's index: it covers `[chunk * 10,000, (chunk + 1) * 10,000)`.
        chunk: usize,
        /// Primes trial division found in it.
        counted: u64,
        /// Primes the sieve found in it: the right answer.
        sieve: u64,
    },
}

impl fmt::Display for ComputeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongCount { on, counted } => write!(
                f,
                "{on} counted {counted} primes below {LIMIT}, not {PRIMES_BELOW_LIMIT}"
            ),
            Self::WrongChunk {
                chunk,
                counted,
                sieve,
            } => write!(
                f,
                "compute: {counted} primes in chunk {chunk} by trial division, {sieve} by the sieve"
            ),
        }
    }
}

impl Error for ComputeError {}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The primes in `[lo, hi)`, by trial division.
fn count(lo: u64, hi: u64) -> u64 {
    (lo..hi).filter(|&n| is_prime(n)).count() as u64
}

/// Count with `cpus` CPUs: on every online CPU, chunks spawned from here and stolen by the
/// others; on fewer, chunks pinned to CPUs `0..cpus` in turn (a spawned chunk may be stolen by
/// any online CPU, which would put more CPUs to work than `cpus=` asked for).
fn parallel(cpus: usize) -> (u64, u64) {
    let t0 = cpu::counter();
    let total: u64 = if cpus == 1 {
        let mut sum = 0;
        for lo in (0..LIMIT).step_by(CHUNK as usize) {
            sum += count(lo, lo + CHUNK);
            PROGRESS.add(0, 1);
        }
        sum
    } else {
        let steal = cpus == smp::online_cpus();
        let handles: Vec<JoinHandle<u64>> = (0..LIMIT)
            .step_by(CHUNK as usize)
            .enumerate()
            .map(|(k, lo)| {
                let chunk = move || {
                    let n = count(lo, lo + CHUNK);
                    PROGRESS.add(cpu::id(), 1);
                    n
                };
                if steal {
                    spawn(chunk)
                } else {
                    spawn_on(k % cpus, chunk)
                }
            })
            .collect();
        handles.into_iter().map(JoinHandle::join).sum()
    };
    (total, cpu::counter() - t0)
}

/// The progress of the running `compute` (a static: spawned closures must be 'static).
static PROGRESS: Progress = Progress::new_static(NAME);

/// compute (see the module documentation).
pub struct Compute;

const NAME: &str = "compute";

impl Workload for Compute {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(&self, p: &Params) -> Report {
        let frames_before = free_frames();
        let progress = &PROGRESS;
        progress.restart();

        // Make sure the other CPUs are awake and idle-looping before timing.
        for i in 1..p.cpus {
            spawn_on(i, || ()).join();
        }
        let jobs_before: Vec<u64> = (0..p.cpus).map(jobs_run).collect();
        let (one, t1) = parallel(1);
        // Report the parallel run's work only: per CPU, how many chunks each did.
        progress.restart();
        let (all, tn) = parallel(p.cpus);
        let per_cpu_jobs: Vec<u64> = (0..p.cpus).map(|i| jobs_run(i) - jobs_before[i]).collect();
        let speedup = t1 as f64 / tn.max(1) as f64;
        log::info!(
            "compute: primes below {LIMIT}: 1 CPU {:.3} s, {} CPUs {:.3} s, speed-up {speedup:.2}x, chunks per CPU {per_cpu_jobs:?}",
            t1 as f64 / cpu::counter_frequency() as f64,
            p.cpus,
            tn as f64 / cpu::counter_frequency() as f64
        );
        let mut report = Report::new(NAME, p.cpus);
        report.record(progress);
        report.frames_before = frames_before;
        report.frames_after = free_frames();
        for (on, counted) in [("1 CPU", one), ("all CPUs", all)] {
            if counted != PRIMES_BELOW_LIMIT {
                report.fail(ComputeError::WrongCount { on, counted });
            }
        }
        report.extra = vec![
            ("speedup", format!("{speedup:.2}")),
            (
                "seconds_1cpu",
                format!("{:.3}", t1 as f64 / cpu::counter_frequency() as f64),
            ),
            (
                "seconds_all",
                format!("{:.3}", tn as f64 / cpu::counter_frequency() as f64),
            ),
            ("chunks_per_cpu", format!("{per_cpu_jobs:?}")),
        ];
        report.finish()
    }

    fn prepare_slices(&self) -> Option<Result<Box<dyn Sliced + '_>, Finding>> {
        Some(Ok(Box::new(ComputeSlices {
            primes: sieve_counts(),
        })))
    }
}

/// `primes[i]`: the primes in chunk `i` (`[i * CHUNK, (i + 1) * CHUNK)`), by the sieve.
fn sieve_counts() -> Vec<u64> {
    let (limit, chunk) = (LIMIT as usize, CHUNK as usize);
    let mut composite = vec![false; limit];
    let mut counts = vec![0; limit / chunk];
    for n in 2..limit {
        if !composite[n] {
            counts[n / chunk] += 1;
            let mut m = n * n;
            while m < limit {
                composite[m] = true;
                m += n;
            }
        }
    }
    counts
}

/// compute in slices: the sieve's count for every chunk.
struct ComputeSlices {
    primes: Vec<u64>,
}

impl Sliced for ComputeSlices {
    fn cursor(&self, cpu: usize, _seed: u64) -> Box<dyn Cursor + '_> {
        Box::new(ComputeCursor {
            primes: &self.primes,
            chunk: cpu * 25,
        })
    }

    fn finish(self: Box<Self>) -> Result<(), Finding> {
        Ok(())
    }
}

/// One CPU's place: the next chunk.
struct ComputeCursor<'a> {
    primes: &'a [u64],
    chunk: usize,
}

impl Cursor for ComputeCursor<'_> {
    fn slice(&mut self) -> Slice {
        let c = self.chunk % self.primes.len();
        self.chunk += 1;
        let lo = c as u64 * CHUNK;
        let counted = count(lo, lo + CHUNK);
        let mut done = Slice::default();
        if counted == self.primes[c] {
            done.ops = 1;
        } else {
            done.failures.push(
                ComputeError::WrongChunk {
                    chunk: c,
                    counted,
                    sieve: self.primes[c],
                }
                .into(),
            );
        }
        done
    }
}
