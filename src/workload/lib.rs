//! `initmm-workloads`: the multi-core workloads built into initmm's demonstration kernel
//! (`just run`, whose `main` is this package's binary), chosen with `workload=NAME` (default: all
//! of them). An application built on initmm, and the kernel's own test kernels, use them as a
//! library.
//!
//! Each runs on `cpus=N` CPUs (default: every online one) for `seconds=S` (or `iterations=N` per
//! CPU), prints progress at least every second, then one line `result {json}`. `run_from_cmdline`
//! ends with a summary table.
//!
//! Each workload is a [`Workload`] in its own file, listed in [`WORKLOADS`]; what they share is
//! in [`common`].
//!
//! # Adding a workload
//!
//! Copy [`hello`] (every CPU adds up 1 to 1000 until the time is up, and checks each sum) into a
//! file of its own, add its `pub mod` line here and its line in [`WORKLOADS`]; `workload=NAME`,
//! `all`, the soak and the test kernels find it there. (`hello` itself is left out of the table,
//! so that `just run` does not run it; `tests/workloads.rs` runs it, so the example cannot go
//! stale.)

#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

extern crate alloc;

pub mod common;

// The workloads: each module's line here and its line in `WORKLOADS`.
pub mod blk;
pub mod compute;
pub mod entropy;
pub mod net;
pub mod soak;
pub mod storm;
pub mod vmalloc_stress;

/// The example to copy (see "Adding a workload" above): compiled, and run by
/// `tests/workloads.rs`; not in [`WORKLOADS`], so `workload=` does not offer it.
pub mod hello;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::error::Error;
use core::fmt::{self, Write};

use common::{Leak, Progress};
use initmm::arch::aarch64::cpu;
use initmm::arch::aarch64::exceptions::spurious_faults;
use initmm::cmdline::{Cmdline, CmdlineError};
use initmm::mm::pgalloc::PgStatsSnapshot;
use initmm::smp;

/// How long or how much a workload runs, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// How many CPUs run it, CPU 0 included: at least 1, at most the online count.
    pub cpus: usize,
    /// Run for this many counter ticks, unless `iterations` is set.
    pub duration: u64,
    /// Run each CPU's loop this many times instead of for `duration`.
    pub iterations: Option<u64>,
    /// What the storm makes of a run in which its CPUs lost no table-install race.
    pub lost_races: LostRaces,
}

/// Whether `ioremap-storm` must lose a table-install race when it runs on several CPUs.
///
/// A race is lost only when two CPUs are inside the same table allocation at the same moment.
/// QEMU runs each vCPU on a host thread; when the host's cores are busy with other work, it runs
/// them in turns and the CPUs never meet there. A test kernel wants the race path proved, so it
/// demands a lost race; `just run` is a demonstration, which a busy host must not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostRaces {
    /// No lost race is a failure: the race path never ran. What [`Params::from_cmdline`] gives,
    /// and so what every test kernel gets.
    Demand,
    /// No lost race is a note in the report, with the evidence of why.
    Note,
}

/// Why the command line's `cpus=`, `seconds=` or `iterations=` cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum ParamError<'a> {
    /// A value that is not a number.
    Cmdline(CmdlineError<'a>),
    /// `cpus=` is 0 or more than are online.
    Cpus {
        /// The `cpus=` value.
        cpus: usize,
        /// How many CPUs are online.
        online: usize,
    },
}

impl fmt::Display for ParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cmdline(e) => fmt::Display::fmt(e, f),
            Self::Cpus { cpus, online } => write!(f, "cpus={cpus}: {online} CPUs are online"),
        }
    }
}

impl Error for ParamError<'_> {}

impl<'a> From<CmdlineError<'a>> for ParamError<'a> {
    fn from(e: CmdlineError<'a>) -> Self {
        Self::Cmdline(e)
    }
}

impl Params {
    /// `cpus=` (default: every online CPU), `seconds=` (default 2) or `iterations=`; a storm
    /// that loses no race fails ([`LostRaces::Demand`]).
    ///
    /// # Errors
    ///
    /// [`ParamError`]: a value that is not a number, or a CPU count that cannot be had.
    pub fn from_cmdline<'a>(c: &Cmdline<'a>) -> Result<Self, ParamError<'a>> {
        let online = smp::online_cpus();
        let cpus = c.number("cpus")?.map_or(online, |n| n as usize);
        if cpus == 0 || cpus > online {
            return Err(ParamError::Cpus { cpus, online });
        }
        let seconds = c.number("seconds")?.unwrap_or(2);
        let iterations = c.number("iterations")?;
        Ok(Self {
            cpus,
            duration: seconds * cpu::counter_frequency(),
            iterations,
            lost_races: LostRaces::Demand,
        })
    }

    /// Should a loop that started at `start` and did `done` iterations go on?
    pub fn more(&self, start: u64, done: u64) -> bool {
        match self.iterations {
            Some(n) => done < n,
            None => cpu::counter() - start < self.duration,
        }
    }
}

/// Something a run's checks found: why it failed (in [`Report::failures`]), or what is worth
/// knowing about a run that passed (in [`Report::notes`]).
///
/// Each workload says what it found in an error type of its own (an enum with `Display`), and it
/// stays that type until the report is printed: a test can ask for it back with
/// [`Finding::downcast_ref`]. The report holds them all behind this one type because they are
/// the workloads' own: a closed enum here would have to name every workload's failures, and
/// adding a workload would mean changing this file.
pub struct Finding(Box<dyn Error + Send + Sync>);

impl Finding {
    /// The workload's own error, if it is an `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl<E: Error + Send + Sync + 'static> From<E> for Finding {
    fn from(e: E) -> Self {
        Self(Box::new(e))
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The message, quoted: a test kernel's `{:?}` of a report's failures reads as it always did,
/// as sentences. (The fields are in the message; [`Finding::downcast_ref`] has them typed.)
impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&format!("{}", self.0), f)
    }
}

/// What a workload reports.
#[derive(Debug)]
pub struct Report {
    /// The workload's name (what `workload=` chose).
    pub name: &'static str,
    /// How many CPUs ran it.
    pub cpus: usize,
    /// Operations done in all; what one operation is, each workload says.
    pub ops: u64,
    /// How long the run took, in ticks of the generic timer's counter (see [`Report::seconds`]).
    pub ticks: u64,
    /// Operations per CPU, indexed by CPU number.
    pub per_cpu_ops: Vec<u64>,
    /// Page tables installed, and install races lost, by level during the run.
    pub tables: PgStatsSnapshot,
    /// Free frames before the run.
    pub frames_before: usize,
    /// Free frames after the run, its memory given back; equal to `frames_before` unless it leaked.
    pub frames_after: usize,
    /// EL1 translation faults taken during the run on mappings that existed by the time the
    /// handler walked again, and retried (`arch::aarch64::exceptions::spurious_faults`). Armv8.0
    /// cores take them; QEMU never does. Filled in by [`run_from_cmdline`] around the
    /// workload's `run`; a report straight from [`Workload::run`] says 0.
    pub spurious_faults: u64,
    /// Whether the run did some work and no check failed (set by [`Report::finish`]).
    pub passed: bool,
    /// Workload-specific `"key": value` pairs for the JSON line: measurements, not errors, kept
    /// as the JSON text they print as (tests that want one read it back by key).
    pub extra: Vec<(&'static str, String)>,
    /// Why the run failed: every check that did not hold.
    pub failures: Vec<Finding>,
    /// Things worth knowing about a run that passed (printed, not failed).
    pub notes: Vec<Finding>,
}

impl Report {
    /// A report with nothing done yet, not passed: workloads fill it in as they go.
    pub fn new(name: &'static str, cpus: usize) -> Self {
        Self {
            name,
            cpus,
            ops: 0,
            ticks: 0,
            per_cpu_ops: Vec::new(),
            tables: PgStatsSnapshot::default(),
            frames_before: 0,
            frames_after: 0,
            spurious_faults: 0,
            passed: false,
            extra: Vec::new(),
            failures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Take the operations, per CPU and in all, and the time from `progress`.
    pub fn record(&mut self, progress: &Progress) {
        self.ops = progress.total();
        self.ticks = progress.elapsed();
        self.per_cpu_ops = progress.per_cpu(self.cpus);
    }

    /// The report, passed if the run did some work and no check failed.
    pub fn finish(mut self) -> Self {
        self.passed = self.failures.is_empty() && self.ops > 0;
        self
    }

    /// Record a failed check.
    pub fn fail(&mut self, finding: impl Into<Finding>) {
        self.failures.push(finding.into());
    }

    /// Fail the run unless as many frames are free after it as before
    /// ([`Report::frames_before`], [`Report::frames_after`]).
    pub fn check_frames(&mut self) {
        if self.frames_after != self.frames_before {
            self.fail(Leak::Frames {
                before: self.frames_before,
                after: self.frames_after,
            });
        }
    }

    /// For test kernels: print the result line, then panic with the reason unless the run passed,
    /// every one of its `cpus` CPUs did work, and frames are back where they were.
    pub fn assert_passed(&self, cpus: usize) {
        initmm::kprintln!("result {}", self.json());
        assert!(
            self.failures.is_empty(),
            "{}: {:?}",
            self.name,
            self.failures
        );
        assert!(self.passed && self.ops > 0, "{} did no work", self.name);
        assert_eq!(self.cpus, cpus);
        assert!(
            self.per_cpu_ops.iter().all(|&n| n > 0),
            "{}: a CPU did nothing: {:?}",
            self.name,
            self.per_cpu_ops
        );
        assert_eq!(
            self.frames_before, self.frames_after,
            "{} leaked frames",
            self.name
        );
    }

    /// The run's length in seconds, from `ticks` and the counter's frequency.
    pub fn seconds(&self) -> f64 {
        self.ticks as f64 / cpu::counter_frequency() as f64
    }

    /// The report as one line of JSON (no newline): name, counts, rates, table statistics,
    /// frames, the `extra` pairs and `passed`. Failures and notes are not in it.
    pub fn json(&self) -> String {
        let t = &self.tables;
        let mut s = format!(
            "{{\"name\":\"{}\",\"cpus\":{},\"ops\":{},\"seconds\":{:.3},\"ops_per_sec\":{:.0},\"per_cpu_ops\":{:?},",
            self.name,
            self.cpus,
            self.ops,
            self.seconds(),
            self.ops as f64 / self.seconds().max(1e-9),
            self.per_cpu_ops
        );
        let _ = write!(
            s,
            "\"pud\":{{\"installed\":{},\"lost\":{}}},\"pmd\":{{\"installed\":{},\"lost\":{}}},\"pte\":{{\"installed\":{},\"lost\":{}}},",
            t.pud.installed, t.pud.lost, t.pmd.installed, t.pmd.lost, t.pte.installed, t.pte.lost
        );
        let _ = write!(
            s,
            "\"frames_before\":{},\"frames_after\":{},\"spurious_faults\":{},",
            self.frames_before, self.frames_after, self.spurious_faults
        );
        for (k, v) in &self.extra {
            let _ = write!(s, "\"{k}\":{v},");
        }
        let _ = write!(s, "\"passed\":{}}}", self.passed);
        s
    }
}

/// A workload: something `workload=NAME` runs on several CPUs, which checks its own work and
/// reports it. Each is a type in its own file under `src/workload/`, listed once in
/// [`WORKLOADS`].
///
/// What it takes from [`Params`] is up to it, and its module documentation says which: the
/// CPUs to use (every workload), how long to run (`duration` or `iterations`: a workload that
/// does a fixed job, like compute, ignores them), and what a run that lost no table-install race
/// means ([`LostRaces`]: only the storm races for tables).
pub trait Workload: Sync {
    /// The name `workload=` chooses it by; also its report's name.
    fn name(&self) -> &'static str;

    /// Whether `workload=all` (the default) runs it. A workload that changes the machine under
    /// the others (the soak turns fault injection on) runs only when named.
    fn in_all(&self) -> bool {
        true
    }

    /// Run on `p.cpus` CPUs and report: what was done, and every check that failed. Called on
    /// the boot CPU, with the other CPUs idle; it must leave them idle and memory management
    /// settled, with every frame and area it took given back.
    fn run(&self, p: &Params) -> Report;

    /// Get ready to run a short slice at a time, interleaved with other workloads' slices on
    /// the same CPUs (the soak runs them so), and warm up once: whatever the first run keeps (the
    /// heap's growth, a reserved window) is taken here, so that a baseline counted after this
    /// sees only what the slices take and give back. Called on the boot CPU with the other CPUs
    /// idle and fault injection off.
    ///
    /// `None`: this workload does not come in slices (the default).
    fn prepare_slices(&self) -> Option<Result<Box<dyn Sliced + '_>, Finding>> {
        None
    }
}

/// A workload made ready to run in slices ([`Workload::prepare_slices`]): each CPU takes a
/// [`Cursor`] and runs slices through it.
pub trait Sliced: Sync {
    /// CPU `cpu`'s own place in the work, with its random choices seeded from `seed`.
    fn cursor(&self, cpu: usize, seed: u64) -> Box<dyn Cursor + '_>;

    /// Give back what [`Workload::prepare_slices`] took, once every cursor is gone.
    fn finish(self: Box<Self>) -> Result<(), Finding>;
}

/// One CPU's place in a [`Sliced`] workload.
pub trait Cursor {
    /// Run the next slice, a few milliseconds of work at most, and say what it did.
    fn slice(&mut self) -> Slice;

    /// A new epoch begins: the CPUs have met, and the page tables that map nothing any more
    /// have been freed. (The storm starts its rounds over, so that its CPUs race again for the
    /// same missing tables.)
    fn new_epoch(&mut self) {}
}

/// What one [`Cursor::slice`] did.
#[derive(Debug, Default)]
pub struct Slice {
    /// Operations done, in the workload's own unit.
    pub ops: u64,
    /// Operations that ended in an allocation failure (injected, if all is well: the caller
    /// checks that injection explains them).
    pub alloc_failures: u64,
    /// Every check that failed.
    pub failures: Vec<Finding>,
}

/// The workloads, in the order `workload=all` runs them. Adding one: its file, its `mod` line
/// above, and its line here.
pub static WORKLOADS: &[&dyn Workload] = &[
    &storm::Storm,
    &vmalloc_stress::VmallocStress,
    &compute::Compute,
    &soak::Soak,
    &blk::Blk,
    &entropy::Entropy,
    &net::Net,
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static dyn Workload> {
    WORKLOADS.iter().copied().find(|w| w.name() == name)
}

/// Why the command line's workload words cannot be run.
#[derive(Debug, PartialEq, Eq)]
pub enum ChoiceError<'a> {
    /// `cpus=`, `seconds=` or `iterations=` cannot be used.
    Params(ParamError<'a>),
    /// `workload=` names a workload [`WORKLOADS`] does not have.
    Unknown(&'a str),
}

impl fmt::Display for ChoiceError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Params(e) => fmt::Display::fmt(e, f),
            Self::Unknown(name) => {
                write!(f, "workload={name}: unknown; choose from ")?;
                for w in WORKLOADS {
                    write!(f, "{}, ", w.name())?;
                }
                f.write_str("all or none")
            }
        }
    }
}

impl Error for ChoiceError<'_> {}

/// The parameters and the workloads the command line asks for, in its order:
/// `workload=NAME[,NAME]`, `all` (the default: every workload that is [`Workload::in_all`]), or
/// `none` (no workload).
///
/// # Errors
///
/// [`ChoiceError`]: parameters that cannot be used, or a name that is no workload's.
pub fn choose<'a>(
    c: &Cmdline<'a>,
) -> Result<(Params, Vec<&'static dyn Workload>), ChoiceError<'a>> {
    let params = Params::from_cmdline(c).map_err(ChoiceError::Params)?;
    let want = c.get("workload").unwrap_or("all");
    let mut chosen = Vec::new();
    if want == "none" {
        return Ok((params, chosen));
    }
    for name in want.split(',') {
        match find(name) {
            Some(w) => chosen.push(w),
            None if name == "all" => chosen.extend(WORKLOADS.iter().filter(|w| w.in_all())),
            None => return Err(ChoiceError::Unknown(name)),
        }
    }
    Ok((params, chosen))
}

/// Run the workloads the command line names (`workload=NAME[,NAME]`, `all`, or `none`), print a
/// summary table, and return whether all passed.
///
/// This is what `just run` boots into, on whatever host it has: the storm notes, rather than
/// fails, a run in which no table-install race was lost (see [`LostRaces`]).
pub fn run_from_cmdline(c: &Cmdline<'_>) -> bool {
    let (params, chosen) = match choose(c) {
        Ok((p, chosen)) => (
            Params {
                lost_races: LostRaces::Note,
                ..p
            },
            chosen,
        ),
        Err(e) => {
            log::error!("{e}");
            return false;
        }
    };
    if chosen.is_empty() {
        log::info!("workload=none: nothing to run");
        return true;
    }
    let mut reports = Vec::new();
    for w in chosen {
        let name = w.name();
        log::info!("{name}: starting on {} CPUs", params.cpus);
        let spurious = spurious_faults();
        let mut r = w.run(&params);
        r.spurious_faults = spurious_faults() - spurious;
        for f in &r.failures {
            log::error!("{name}: {f}");
        }
        for n in &r.notes {
            log::warn!("{name}: note: {n}");
        }
        initmm::kprintln!("result {}", r.json());
        reports.push(r);
    }
    summary(&reports);
    reports.iter().all(|r| r.passed)
}

fn summary(reports: &[Report]) {
    initmm::console::with_locked(|w| {
        let _ = writeln!(
            w,
            "\n{:<16} {:>4} {:>10} {:>8} {:>12}  {:>13} {:>13} {:>13}  {:>15} {:>5}  result",
            "workload",
            "cpus",
            "ops",
            "seconds",
            "ops/s",
            "pud inst/lost",
            "pmd inst/lost",
            "pte inst/lost",
            "frames bef/aft",
            "spur"
        );
        for r in reports {
            let t = &r.tables;
            let _ = writeln!(
                w,
                "{:<16} {:>4} {:>10} {:>8.2} {:>12.0}  {:>13} {:>13} {:>13}  {:>15} {:>5}  {}",
                r.name,
                r.cpus,
                r.ops,
                r.seconds(),
                r.ops as f64 / r.seconds().max(1e-9),
                format!("{}/{}", t.pud.installed, t.pud.lost),
                format!("{}/{}", t.pmd.installed, t.pmd.lost),
                format!("{}/{}", t.pte.installed, t.pte.lost),
                format!("{}/{}", r.frames_before, r.frames_after),
                r.spurious_faults,
                if r.passed { "passed" } else { "FAILED" }
            );
        }
        let _ = writeln!(
            w,
            "spur: spurious EL1 translation faults retried (a mapping another CPU had just \
             published; {} since boot)",
            spurious_faults()
        );
        let failed = reports.iter().filter(|r| !r.passed).count();
        let _ = writeln!(w, "\n{} passed, {} failed", reports.len() - failed, failed);
    });
}
