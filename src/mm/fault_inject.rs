//! Fault injection for the kernel's two allocators, in the spirit of Linux's `failslab` and
//! `fail_page_alloc`: make the frame allocator ([`Target::Frames`]) or the virtual-area allocator
//! ([`Target::Areas`]) fail on purpose, so that every error path of `ioremap`, `vmap`, `vmalloc`
//! and the table allocators runs, and a test or the soak can prove those paths leak nothing.
//!
//! # Command line
//!
//! `fail=RULE[,RULE...]`, where a rule is one of
//!
//! - `frames:A/B` or `areas:A/B`: fail each allocation with probability A/B (`1/50`: one in fifty),
//!   decided by a seeded generator;
//! - `frames:nth=N` or `areas:nth=N`: fail the Nth allocation after the switch is set, once;
//! - `seed=S`: the generator's seed (decimal or `0x` hex; default 1), shared by both targets;
//! - `none` (alone): no injection at all (the soak then does not turn on its default).
//!
//! e.g. `fail=frames:1/50,seed=7`, `fail=areas:1/20`, `fail=frames:nth=100`. A target that is
//! not named is not injected. The kernel applies the rules once boot has mapped everything it
//! needs (an injected failure during boot would only stop the machine, proving nothing).
//!
//! # The decision
//!
//! The probabilistic decision for the i-th call of a target is a pure function of (seed, i):
//! `splitmix64(seed, i) mod B < A`. The call index comes from one atomic counter, so the switch
//! takes no lock on the allocation path and the same seed gives the same sequence of decisions
//! on one CPU; on several CPUs only which CPU makes call i varies.
//!
//! Only the allocation is failed, never a free: the callers' error paths are what is under test.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// An allocator that can be told to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The frame allocator (`Frames::alloc`): vmalloc pages and page tables. The heap's growth
    /// is never injected (see `Frames::alloc_uninjected`).
    Frames,
    /// The virtual-area allocator (`KernelVm::reserve`): every vmap/vmalloc/ioremap range.
    Areas,
}

impl Target {
    /// Both targets, in the order `Frames`, `Areas`.
    pub const ALL: [Target; 2] = [Target::Frames, Target::Areas];

    /// The name `fail=` gives it: "frames" or "areas".
    pub fn name(self) -> &'static str {
        match self {
            Target::Frames => "frames",
            Target::Areas => "areas",
        }
    }

    /// The machine's switch for this target.
    pub fn attr(self) -> &'static FaultAttr {
        match self {
            Target::Frames => &FAIL_FRAMES,
            Target::Areas => &FAIL_AREAS,
        }
    }
}

/// When a target fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Fail the Nth call (counted from 1, from when the rule was set), once.
    Nth(u64),
    /// Fail each call with probability `num / den`.
    Probability {
        /// Numerator: failures per `den` calls on average.
        num: u64,
        /// Denominator; 0 never fails.
        den: u64,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Rule::Nth(n) => write!(f, "nth={n}"),
            Rule::Probability { num, den } => write!(f, "{num}/{den}"),
        }
    }
}

/// A whole `fail=` setting: a rule per target (none: not injected) and the seed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// The frame allocator's rule.
    pub frames: Option<Rule>,
    /// The virtual-area allocator's rule.
    pub areas: Option<Rule>,
    /// The seed of both targets' probabilistic decisions.
    pub seed: u64,
}

/// The default seed when `seed=` is not given.
pub const DEFAULT_SEED: u64 = 1;

impl FaultConfig {
    /// No injection.
    pub const NONE: FaultConfig = FaultConfig {
        frames: None,
        areas: None,
        seed: DEFAULT_SEED,
    };

    /// The rule for `t`, or `None` if `t` is not injected.
    pub fn rule(&self, t: Target) -> Option<Rule> {
        match t {
            Target::Frames => self.frames,
            Target::Areas => self.areas,
        }
    }

    /// Parse the value of `fail=` (see the module documentation).
    ///
    /// # Errors
    ///
    /// [`ParseError`] naming the first item that cannot be used (an unknown target, a second rule
    /// for one target, a malformed number) and why.
    pub fn parse(s: &str) -> Result<Self, ParseError<'_>> {
        let mut cfg = FaultConfig::NONE;
        if s == "none" || s == "off" {
            return Ok(cfg);
        }
        for item in s.split(',') {
            let bad = |why| ParseError { item, why };
            if let Some(v) = item.strip_prefix("seed=") {
                cfg.seed = parse_number(v).ok_or(bad("the seed is not a number"))?;
                continue;
            }
            let (target, spec) = item
                .split_once(':')
                .ok_or(bad("expected TARGET:RULE or seed=N"))?;
            let slot = match target {
                "frames" => &mut cfg.frames,
                "areas" => &mut cfg.areas,
                _ => return Err(bad("unknown target (frames or areas)")),
            };
            if slot.is_some() {
                return Err(bad("this target already has a rule"));
            }
            *slot = Some(parse_rule(spec).map_err(bad)?);
        }
        if cfg.frames.is_none() && cfg.areas.is_none() {
            return Err(ParseError {
                item: s,
                why: "no target named (use none to turn injection off)",
            });
        }
        Ok(cfg)
    }
}

impl fmt::Display for FaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in Target::ALL {
            if let Some(r) = self.rule(t) {
                if !first {
                    f.write_str(",")?;
                }
                write!(f, "{}:{r}", t.name())?;
                first = false;
            }
        }
        if first {
            f.write_str("none")
        } else {
            write!(f, ",seed={}", self.seed)
        }
    }
}

fn parse_rule(spec: &str) -> Result<Rule, &'static str> {
    if let Some(n) = spec.strip_prefix("nth=") {
        return match parse_number(n) {
            Some(0) => Err("nth counts from 1"),
            Some(n) => Ok(Rule::Nth(n)),
            None => Err("nth= is not a number"),
        };
    }
    let (num, den) = spec
        .split_once('/')
        .ok_or("expected A/B (probability) or nth=N")?;
    let (num, den) = (
        parse_number(num).ok_or("the probability's numerator is not a number")?,
        parse_number(den).ok_or("the probability's denominator is not a number")?,
    );
    if den == 0 || num > den {
        return Err("the probability A/B needs 0 <= A <= B and B > 0");
    }
    Ok(Rule::Probability { num, den })
}

fn parse_number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// What is wrong with a `fail=` value: the offending item and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError<'a> {
    /// The comma-separated item that could not be read, as written.
    pub item: &'a str,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fail=: `{}`: {} (syntax: fail=frames:1/50,areas:nth=10,seed=7 or fail=none)",
            self.item, self.why
        )
    }
}

const MODE_OFF: u8 = 0;
const MODE_NTH: u8 = 1;
const MODE_PROBABILITY: u8 = 2;

/// One target's switch and counters. Lock-free: [`FaultAttr::should_fail`] is on the path of
/// every frame and area allocation, and costs one load when injection is off.
pub struct FaultAttr {
    mode: AtomicU8,
    /// `Nth`: N. `Probability`: the numerator.
    a: AtomicU64,
    /// `Probability`: the denominator.
    b: AtomicU64,
    seed: AtomicU64,
    /// Calls decided since the rule was set.
    calls: AtomicU64,
    /// Failures injected since boot (never reset: workloads compare deltas).
    injected: AtomicU64,
}

impl FaultAttr {
    /// A switch that is off, with the default seed and every count at 0.
    pub const fn new() -> Self {
        Self {
            mode: AtomicU8::new(MODE_OFF),
            a: AtomicU64::new(0),
            b: AtomicU64::new(0),
            seed: AtomicU64::new(DEFAULT_SEED),
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// Set (or with `None` clear) the rule; the call count starts again. Meant for quiescent
    /// moments: a call deciding concurrently may use the old rule or the new one.
    pub fn set(&self, rule: Option<Rule>, seed: u64) {
        self.mode.store(MODE_OFF, Ordering::Release);
        let Some(rule) = rule else { return };
        let (mode, a, b) = match rule {
            Rule::Nth(n) => (MODE_NTH, n, 0),
            Rule::Probability { num, den } => (MODE_PROBABILITY, num, den),
        };
        self.a.store(a, Ordering::Relaxed);
        self.b.store(b, Ordering::Relaxed);
        self.seed.store(seed, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
        // Publishes the fields above to every CPU that sees the new mode.
        self.mode.store(mode, Ordering::Release);
    }

    /// The rule in force, if any.
    pub fn rule(&self) -> Option<Rule> {
        match self.mode.load(Ordering::Acquire) {
            MODE_NTH => Some(Rule::Nth(self.a.load(Ordering::Relaxed))),
            MODE_PROBABILITY => Some(Rule::Probability {
                num: self.a.load(Ordering::Relaxed),
                den: self.b.load(Ordering::Relaxed),
            }),
            _ => None,
        }
    }

    /// The seed the probabilistic rule draws from.
    pub fn seed(&self) -> u64 {
        self.seed.load(Ordering::Relaxed)
    }

    /// Should this allocation fail? Counts the call and, when the answer is yes, the failure.
    /// Inlined into the allocation paths: with no rule set it is one load and a branch.
    #[inline]
    pub fn should_fail(&self) -> bool {
        match self.mode.load(Ordering::Acquire) {
            MODE_OFF => false,
            mode => self.decide(mode),
        }
    }

    /// [`should_fail`](Self::should_fail) under the rule `mode` (not off): out of line, off the
    /// allocation paths' common case.
    #[cold]
    #[inline(never)]
    fn decide(&self, mode: u8) -> bool {
        let fail = match mode {
            MODE_NTH => {
                self.calls.fetch_add(1, Ordering::Relaxed) + 1 == self.a.load(Ordering::Relaxed)
            }
            _ => {
                let i = self.calls.fetch_add(1, Ordering::Relaxed);
                let (num, den) = (
                    self.a.load(Ordering::Relaxed),
                    self.b.load(Ordering::Relaxed),
                );
                den != 0 && splitmix64(self.seed.load(Ordering::Relaxed), i) % den < num
            }
        };
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }

    /// Calls decided since the rule was set.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Failures injected since boot.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

impl Default for FaultAttr {
    fn default() -> Self {
        Self::new()
    }
}

/// The i-th output of SplitMix64 seeded with `seed`: a counter-based generator, so that
/// concurrent callers need only share the counter.
fn splitmix64(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The frame allocator's switch.
pub static FAIL_FRAMES: FaultAttr = FaultAttr::new();
/// The virtual-area allocator's switch.
pub static FAIL_AREAS: FaultAttr = FaultAttr::new();

/// Set both targets from `cfg` (an unnamed target is switched off).
pub fn apply(cfg: &FaultConfig) {
    for t in Target::ALL {
        t.attr().set(cfg.rule(t), cfg.seed);
    }
}

/// The rules in force now.
pub fn current() -> FaultConfig {
    FaultConfig {
        frames: FAIL_FRAMES.rule(),
        areas: FAIL_AREAS.rule(),
        seed: FAIL_FRAMES
            .rule()
            .map_or(FAIL_AREAS.seed(), |_| FAIL_FRAMES.seed()),
    }
}

/// Is any target injected right now?
pub fn active() -> bool {
    Target::ALL.iter().any(|t| t.attr().rule().is_some())
}

/// Failures injected since boot, over both targets.
pub fn injected_total() -> u64 {
    Target::ALL.iter().map(|t| t.attr().injected()).sum()
}

/// Apply the command line's `fail=` value (nothing when it has none). Called by the kernel once
/// boot is done.
pub fn setup(fail: Option<&str>) -> Result<(), ParseError<'static>> {
    let Some(v) = fail else {
        return Ok(());
    };
    let cfg = FaultConfig::parse(v).map_err(|e| ParseError {
        item: leak_str(e.item),
        why: e.why,
    })?;
    apply(&cfg);
    Ok(())
}

fn leak_str(s: &str) -> &'static str {
    alloc::boxed::Box::leak(alloc::string::String::from(s).into_boxed_str())
}

#[cfg(test)]
mod tests;
