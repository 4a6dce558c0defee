//! The built-in workloads at -smp 4, on both GIC versions: each must pass its own checks
//! (every read verified, frames and areas balanced), and the storm must lose table-install races
//! (the racing path really ran). The README's example workload runs and passes too, and is the
//! README's text word for word.
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

/// README.md's "Adding a workload" shows src/workload/hello.rs as it is, and it works.
fn readme_example_workload() {
    let readme = include_str!("../README.md");
    let example = include_str!("../src/workload/hello.rs");
    assert!(
        readme.contains(&alloc::format!("```rust\n{example}```\n")),
        "README.md's example is not src/workload/hello.rs: copy the file into it"
    );
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
        Test::new("readme_example_workload", readme_example_workload),
    ])
}
