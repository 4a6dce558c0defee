//! The initmm kernel: boot every CPU, run the workloads the command line names (`workload=`,
//! default all), and exit 0 only if all passed. Built with the `bench` feature (as
//! `initmm-bench`, for `just bench`), `bench=` runs the benchmarks instead.
#![no_std]
#![no_main]

use initmm::kernel::BootInfo;

initmm::entry!(main);

fn main(boot: &'static BootInfo) -> ! {
    let c = boot.cmdline();
    #[cfg(feature = "bench")]
    if c.get("bench").is_some() {
        let ok = initmm::bench::run_from_cmdline(&c);
        initmm::panic::exit(if ok { 0 } else { 1 })
    }
    let ok = initmm::workload::run_from_cmdline(&c);
    initmm::panic::exit(if ok { 0 } else { 1 })
}
