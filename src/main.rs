//! The initmm kernel: boot every CPU, run the workloads the command line names (`workload=`,
//! default all) or the benchmarks (`bench=`), and exit 0 only if all passed.
#![no_std]
#![no_main]

use initmm::kernel::BootInfo;

initmm::entry!(main);

fn main(boot: &'static BootInfo) -> ! {
    let c = boot.cmdline();
    let ok = if c.get("bench").is_some() {
        initmm::bench::run_from_cmdline(&c)
    } else {
        initmm::workload::run_from_cmdline(&c)
    };
    initmm::panic::exit(if ok { 0 } else { 1 })
}
