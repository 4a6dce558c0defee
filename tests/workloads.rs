//! The built-in workloads at -smp 4, on both GIC versions: each must pass its own checks
//! (every read verified, frames and areas balanced), and the storm must lose table-install races
//! (the racing path really ran). The smallest workload, the one to copy (`hello`), runs and passes
//! too.
//!
//! initmm-qemu: --machine virt --smp 4 -- iterations=300
//! initmm-qemu: --machine virt,gic-version=3 --smp 4 -- iterations=300
#![no_std]
#![no_main]

extern crate alloc;

use initmm::BootInfo;
use initmm::testing::{self, Test};
use initmm_workloads::{self as workload, Params, Report, Workload};
use spin::Once;

static PARAMS: Once<Params> = Once::new();

/// The workload called `name`, looked up as `workload=` does.
fn run(name: &str, p: &Params) -> Report {
    workload::find(name).unwrap().run(p)
}

fn ioremap_storm() {
    let r = run("ioremap-storm", PARAMS.get().unwrap());
    r.assert_passed(4);
    let t = &r.tables;
    assert!(
        t.pud.lost + t.pmd.lost + t.pte.lost > 0,
        "no lost race at 4 CPUs"
    );
    assert!(
        t.pmd.installed >= 300 && t.pte.installed >= 300,
        "a fresh pmd and pte table every round: {t:?}"
    );
    assert_eq!(r.frames_before, r.frames_after);
}

fn vmalloc_stress() {
    let p = Params {
        iterations: Some(2),
        ..*PARAMS.get().unwrap()
    };
    let r = run("vmalloc-stress", &p);
    r.assert_passed(4);
    assert_eq!(r.frames_before, r.frames_after);
}

fn compute() {
    let r = run("compute", PARAMS.get().unwrap());
    r.assert_passed(4);
}

/// `hello`, the example the workloads crate's documentation points at, works.
fn hello_example_workload() {
    assert!(
        workload::find("hello").is_none(),
        "the example stays out of WORKLOADS, so that `just run` does not run it"
    );
    workload::hello::Hello
        .run(PARAMS.get().unwrap())
        .assert_passed(4);
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    PARAMS.call_once(|| Params::from_cmdline(&b.cmdline()).unwrap());
    testing::run(&[
        Test::new("ioremap_storm", ioremap_storm),
        Test::new("vmalloc_stress", vmalloc_stress),
        Test::new("compute", compute),
        Test::new("hello_example_workload", hello_example_workload),
    ])
}
