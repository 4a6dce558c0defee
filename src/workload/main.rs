//! The initmm demonstration kernel (`just run`): boot every CPU, run the workloads the command
//! line names (`workload=`, default all), and exit 0 only if all passed.
#![no_std]
#![no_main]

use initmm::BootInfo;

initmm::entry!(main);

fn main(boot: &'static BootInfo) -> ! {
    let ok = initmm_workloads::run_from_cmdline(&boot.cmdline());
    initmm::exit(if ok { 0 } else { 1 })
}
