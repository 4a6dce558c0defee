//! The initmm kernel: boot every CPU, run the workloads the command line names (`workload=`,
//! default all), print their summary, and exit 0 only if all passed.
#![no_std]
#![no_main]

use initmm::kernel::BootInfo;

initmm::entry!(main);

fn main(boot: &'static BootInfo) -> ! {
    let ok = initmm::workload::run_from_cmdline(&boot.cmdline());
    initmm::panic::exit(if ok { 0 } else { 1 })
}
