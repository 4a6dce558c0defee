//! The in-QEMU test harness: each file in `tests/` is a small kernel that lists its tests and calls
//! [`run`]. It prints `test NAME ... ok|FAILED` per test and the closing line `N passed, N failed`,
//! then exits QEMU with status 0 or 1.
//!
//! There is no unwinding: a failing assertion panics, the panic report names the running test,
//! the remaining tests are reported as not run, and the machine exits with a failure status.
//! A test can also *expect* a fault ([`Test::faulting`]): it passes only if the fault came, and the
//! decoded fault is printed.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::aarch64::exceptions::{Fault, catch_fault};
use crate::{kprint, kprintln};

/// What a test checks.
pub enum Body {
    /// Passes when it returns.
    Plain(fn()),
    /// Passes when it takes a synchronous exception (which is reported, not fatal).
    ExpectFault(fn()),
    /// Passes when it takes a fault that the checker accepts (e.g. the right FAR).
    CheckFault(fn(), fn(&Fault) -> Result<(), &'static str>),
}

/// One test: a name for the `test NAME ... ok` line, and what it runs.
pub struct Test {
    /// Printed in the result line and in a panic report while it runs.
    pub name: &'static str,
    /// What it runs and when it passes.
    pub body: Body,
}

impl Test {
    /// A test that passes when `f` returns.
    pub const fn new(name: &'static str, f: fn()) -> Self {
        Self {
            name,
            body: Body::Plain(f),
        }
    }

    /// A test that passes only when `f` takes a synchronous exception.
    pub const fn faulting(name: &'static str, f: fn()) -> Self {
        Self {
            name,
            body: Body::ExpectFault(f),
        }
    }

    /// A test that passes only when `f` takes a fault and `check` accepts it; `check`'s `Err`
    /// says why it did not.
    pub const fn faulting_with(
        name: &'static str,
        f: fn(),
        check: fn(&Fault) -> Result<(), &'static str>,
    ) -> Self {
        Self {
            name,
            body: Body::CheckFault(f, check),
        }
    }
}

/// `[Test::new("name", name), ...]` from function names.
#[macro_export]
macro_rules! tests {
    ($($f:ident),* $(,)?) => { &[$($crate::testing::Test::new(stringify!($f), $f)),*] };
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static NAME: spin::Mutex<&'static str> = spin::Mutex::new("");

fn panic_context(w: &mut crate::console::Writer<'_>) {
    use core::fmt::Write;
    if RUNNING.load(Ordering::Acquire) == 0 {
        return;
    }
    let name = NAME.try_lock().map(|n| *n).unwrap_or("?");
    let done = PASSED.load(Ordering::Relaxed);
    let total = TOTAL.load(Ordering::Relaxed);
    let _ = writeln!(w, "FAILED\n\ntest {name} panicked (the report follows);");
    let _ = writeln!(
        w,
        "{} tests not run: a panic ends the test kernel\n",
        total.saturating_sub(done + 1)
    );
    let _ = writeln!(w, "{done} passed, 1 failed");
}

/// Run `tests` in order and exit QEMU with the result.
pub fn run(tests: &[Test]) -> ! {
    crate::panic::set_context_hook(panic_context);
    TOTAL.store(tests.len(), Ordering::Relaxed);
    kprintln!("\nrunning {} tests", tests.len());
    let mut failed = 0;
    for t in tests {
        *NAME.lock() = t.name;
        kprint!("test {} ... ", t.name);
        RUNNING.store(1, Ordering::Release);
        let outcome = match &t.body {
            Body::Plain(f) => {
                f();
                Ok(None)
            }
            Body::ExpectFault(f) => match catch_fault(f) {
                Err(fault) => Ok(Some(fault)),
                Ok(()) => Err("expected a fault, but the test returned normally"),
            },
            Body::CheckFault(f, check) => match catch_fault(f) {
                Err(fault) => check(&fault).map(|()| Some(fault)),
                Ok(()) => Err("expected a fault, but the test returned normally"),
            },
        };
        RUNNING.store(0, Ordering::Release);
        match outcome {
            Ok(None) => {
                PASSED.fetch_add(1, Ordering::Relaxed);
                kprintln!("ok");
            }
            Ok(Some(fault)) => {
                PASSED.fetch_add(1, Ordering::Relaxed);
                kprintln!("ok (faulted as expected: {fault})");
            }
            Err(why) => {
                failed += 1;
                kprintln!("FAILED\n    {why}");
            }
        }
    }
    let passed = tests.len() - failed;
    kprintln!("\n{passed} passed, {failed} failed");
    crate::panic::exit(if failed == 0 { 0 } else { 1 })
}
