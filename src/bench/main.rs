//! The benchmark kernel (`just bench`): with `bench=GROUP[,GROUP]` on the command line it runs
//! the benchmarks (`initmm_bench::run_from_cmdline`), otherwise the workloads, as the
//! demonstration kernel does (the host script times its boot with `workload=none`).
#![no_std]
#![no_main]

use initmm::BootInfo;

initmm::entry!(main);

fn main(boot: &'static BootInfo) -> ! {
    let c = boot.cmdline();
    let ok = if c.get("bench").is_some() {
        initmm_bench::run_from_cmdline(&c)
    } else {
        initmm_workloads::run_from_cmdline(&c)
    };
    initmm::exit(if ok { 0 } else { 1 })
}
