//! `hello`: every CPU adds up 1 to 1000 until the time is up, and checks each sum.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::common::Progress;
use super::{Params, Report, Workload};
use initmm::arch::aarch64::cpu;
use initmm::smp::runtime::on_cpus;

/// The `hello` workload: the smallest one, a check that every CPU runs work.
pub struct Hello;

/// What `hello` can find wrong: sums that did not come to 500500.
#[derive(Debug)]
pub struct WrongSums(u64);

impl fmt::Display for WrongSums {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sums of 1 to 1000 did not come to 500500", self.0)
    }
}

impl core::error::Error for WrongSums {}

impl Workload for Hello {
    fn name(&self) -> &'static str {
        "hello"
    }

    fn run(&self, p: &Params) -> Report {
        let progress = Progress::new(self.name());
        let wrong = AtomicU64::new(0);
        let start = cpu::counter();
        on_cpus(p.cpus, &|id| {
            let mut done = 0;
            while p.more(start, done) {
                let sum: u64 = (1..=core::hint::black_box(1000)).sum();
                if sum != 500_500 {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
                progress.add(id, 1);
                done += 1;
            }
        });
        let mut report = Report::new(self.name(), p.cpus);
        report.record(&progress);
        let wrong = wrong.into_inner();
        if wrong > 0 {
            report.fail(WrongSums(wrong));
        }
        report.finish()
    }
}
