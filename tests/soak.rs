//! The soak (`workload=soak`) for 30 seconds at -smp 4 with its default fault injection
//! (`frames:1/50,areas:1/50`): ioremap-storm, vmalloc-stress and compute together on every CPU,
//! every read and every area's contents checked, frames and areas back at baseline after every
//! one-second epoch, and both allocators' injected failures met and survived.
//!
//! initmm-qemu: --machine virt --smp 4 --timeout 150 -- seconds=30
#![no_std]
#![no_main]

extern crate alloc;

use initmm::BootInfo;
use initmm::testing::{self, Test};
use initmm::workload::{Params, soak};
use spin::Once;

static PARAMS: Once<Params> = Once::new();

fn soak_30s_with_injection_balances_every_epoch() {
    let p = PARAMS.get().unwrap();
    let (r, s) = soak::run_soak(p);
    initmm::kprintln!("\nresult {}", r.json());
    assert!(r.failures.is_empty() && r.passed, "{:?}", r.failures);
    assert_eq!(r.cpus, 4);
    let seconds = p.duration / initmm::arch::aarch64::cpu::counter_frequency();
    assert_eq!(s.epochs, seconds, "one epoch per second");
    assert_eq!(s.balance_checks_passed, s.epochs, "every epoch balanced");
    assert!(s.injected_frames > 0 && s.injected_areas > 0, "{s:?}");
    assert!(s.alloc_failures > 0 && s.alloc_failures <= s.injected_frames + s.injected_areas);
    assert!(
        s.storm_ops > 0 && s.vmalloc_ops > 0 && s.compute_ops > 0,
        "{s:?}"
    );
    assert!(r.per_cpu_ops.iter().all(|&n| n > 0), "{:?}", r.per_cpu_ops);
    assert_eq!(r.frames_before, r.frames_after);
    assert!(
        !initmm::mm::fault_inject::active(),
        "the soak turned its injection off"
    );
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    PARAMS.call_once(|| Params::from_cmdline(&b.cmdline()).unwrap());
    testing::run(&[Test::new(
        "soak_30s_with_injection_balances_every_epoch",
        soak_30s_with_injection_balances_every_epoch,
    )])
}
