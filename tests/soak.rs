//! The soak (`workload=soak`) at -smp 4 with fault injection: ioremap-storm, vmalloc-stress and
//! compute together on every CPU, every read and every area's contents checked, frames and areas
//! back at baseline after every one-second epoch, and both allocators' injected failures met and
//! survived. First for 30 seconds on 1 GiB with the default injection (`frames:1/50,areas:1/50`);
//! then under memory pressure, on 24 MiB, where frames held anywhere but the free lists (waiting
//! for a lazy purge, or cached on another CPU) once made the soak run out for real: there every
//! allocation failure must still be an injected one.
//!
//! initmm-qemu: --machine virt --smp 4 --timeout 150 -- seconds=30
//! initmm-qemu: --machine virt --smp 4 --mem 24M --timeout 120 -- seconds=20 fail=frames:1/30,areas:1/40,seed=424242
#![no_std]
#![no_main]

extern crate alloc;

use initmm::BootInfo;
use initmm::testing::{self, Test};
use initmm::workload::{Params, soak};
use spin::Once;

static PARAMS: Once<Params> = Once::new();
static BOOT: Once<&'static BootInfo> = Once::new();

fn soak_with_injection_balances_every_epoch() {
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
    // Injection the soak turned on itself is off again; `fail=` on the command line stays.
    let from_cmdline = BOOT.get().unwrap().cmdline().get("fail").is_some();
    assert_eq!(
        initmm::mm::fault_inject::active(),
        from_cmdline,
        "the soak turned its own injection off, and left the command line's"
    );
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    BOOT.call_once(|| b);
    PARAMS.call_once(|| Params::from_cmdline(&b.cmdline()).unwrap());
    testing::run(&[Test::new(
        "soak_with_injection_balances_every_epoch",
        soak_with_injection_balances_every_epoch,
    )])
}
