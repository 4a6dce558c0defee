//! Every core: bring-up at 1, 2, 4, 8, 12 and 20 CPUs, on GICv2 and GICv3, entered at EL1 and at
//! EL2; IPIs and timer interrupts on every CPU; the runtime's on_each_cpu, spawn with work
//! stealing, and the reusable barrier.
//!
//! QEMU 10's virt puts 8 CPUs in a cluster with GICv2 (which stops at 8 CPUs) and 16 with GICv3,
//! so 12 CPUs all have Aff1 = 0 and the 20-CPU run is the one with MPIDRs in cluster 1
//! (Aff1 = 1, CPUs 16-19): the bring-up and the SGIs must use the DT's MPIDR, never the index.
//! `a_cpu_that_cannot_start_is_reported` makes PSCI CPU_ON fail on purpose, which QEMU logs:
//! initmm-allow-guest-error: [ARM]arm_set_cpu_on: CPU 1 is already on
//! initmm-allow-guest-error: [ARM]arm_get_cpu_by_id: Requesting unknown CPU 65280
//! initmm-qemu: --machine virt --smp 1 -- expect_cpus=1
//! initmm-qemu: --machine virt --smp 2 -- expect_cpus=2
//! initmm-qemu: --machine virt,gic-version=3 --smp 4 -- expect_cpus=4
//! initmm-qemu: --machine virt,virtualization=on --smp 8 -- expect_cpus=8
//! initmm-qemu: --machine virt,gic-version=3,virtualization=on --smp 12 -- expect_cpus=12
//! initmm-qemu: --machine virt,gic-version=3 --smp 20 -- expect_cpus=20
#![no_std]
#![no_main]

extern crate alloc;

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use initmm::BootInfo;
use initmm::arch::aarch64::cpu;
use initmm::mm::addr::VirtAddr;
use initmm::mm::kernel_vm;
use initmm::platform::devicetree::EnableMethod;
use initmm::smp::{self, ipi, online_cpus, per_cpu, runtime};
use initmm::testing::{self, Test};
use spin::Once;

static BOOT: Once<&'static BootInfo> = Once::new();

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = cpu::counter() + 2 * cpu::counter_frequency();
    while !cond() {
        assert!(
            cpu::counter() < deadline,
            "timed out after 2 s waiting for {what}"
        );
        core::hint::spin_loop();
    }
}

fn every_listed_cpu_is_online() {
    let b = BOOT.get().unwrap();
    let want = b.cmdline().number("expect_cpus").unwrap().unwrap() as usize;
    assert_eq!(b.machine.cpus.len(), want, "CPUs in the device tree");
    assert_eq!(online_cpus(), want, "CPUs online");
    for i in 0..want {
        let mpidr = per_cpu(i).mpidr.load(Ordering::Relaxed);
        assert_eq!(
            mpidr, b.machine.cpus[i].mpidr,
            "cpu{i} runs on the DT's cpu{i}"
        );
        if i >= 16 {
            assert_eq!((mpidr >> 8) & 0xff, 1, "cpu{i} is in cluster 1 (Aff1 = 1)");
        }
    }
}

fn an_ipi_reaches_every_cpu() {
    for i in 1..online_cpus() {
        let before = per_cpu(i).ipis.load(Ordering::Relaxed);
        ipi::wake(i);
        wait_until("the wake-up IPI", || {
            per_cpu(i).ipis.load(Ordering::Relaxed) > before
        });
    }
}

fn timer_interrupts_tick_on_every_cpu() {
    let before: alloc::vec::Vec<u64> = (0..online_cpus())
        .map(|i| per_cpu(i).ticks.load(Ordering::Relaxed))
        .collect();
    for (i, &b) in before.iter().enumerate() {
        wait_until("timer ticks", || {
            per_cpu(i).ticks.load(Ordering::Relaxed) >= b + 3
        });
    }
}

/// Every CPU runs the timer's event stream (the backstop for a missed wake-up event), at about
/// 10 kHz: its period is between 50 and 200 microseconds.
fn event_stream_runs_on_every_cpu() {
    let periods: alloc::vec::Vec<AtomicU64> =
        (0..online_cpus()).map(|_| AtomicU64::new(0)).collect();
    runtime::on_each_cpu(&|id| {
        let p = initmm::drivers::timer::event_stream_period().unwrap_or(0);
        periods[id].store(p, Ordering::Relaxed);
    });
    for (id, p) in periods.iter().enumerate() {
        let p = p.load(Ordering::Relaxed);
        assert!(
            (50..=200).contains(&p),
            "cpu{id}: event stream period {p} us (0: off)"
        );
    }
}

fn on_each_cpu_runs_on_each_cpu_once() {
    let ran = AtomicU64::new(0);
    let calls = AtomicUsize::new(0);
    runtime::on_each_cpu(&|id| {
        assert_eq!(
            id,
            cpu::id(),
            "on_each_cpu passes the id of the CPU it runs on"
        );
        ran.fetch_or(1 << id, Ordering::Relaxed);
        calls.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(ran.load(Ordering::Relaxed), (1u64 << online_cpus()) - 1);
    assert_eq!(calls.load(Ordering::Relaxed), online_cpus());
}

fn spawned_work_is_stolen_by_other_cpus() {
    static WHO: AtomicU64 = AtomicU64::new(0);
    let handles: alloc::vec::Vec<_> = (0..64u64)
        .map(|i| {
            runtime::spawn(move || {
                WHO.fetch_or(1 << cpu::id(), Ordering::Relaxed);
                // Some work (about a millisecond), so that other CPUs have time to steal.
                (0..200_000u64).fold(i, |a, x| a.wrapping_mul(31).wrapping_add(x)) ^ i
            })
        })
        .collect();
    // The tasks are on this CPU's queue: stay away from them for 30 ms (three timer ticks), so
    // that what the others do is stealing, even if a wake-up IPI arrived late.
    let until = cpu::counter() + cpu::counter_frequency() * 30 / 1000;
    while cpu::counter() < until {
        core::hint::spin_loop();
    }
    let expect = |i: u64| (0..200_000u64).fold(i, |a, x| a.wrapping_mul(31).wrapping_add(x)) ^ i;
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join(), expect(i as u64), "task {i}'s result");
    }
    // All 64 were queued on this CPU (0): any that ran elsewhere was stolen.
    let who = WHO.load(Ordering::Relaxed);
    if online_cpus() > 1 {
        assert!(
            who & !1 != 0,
            "64 tasks queued on cpu0 never ran on any of the other {} CPUs: no stealing (jobs run per CPU {:?})",
            online_cpus() - 1,
            (0..online_cpus())
                .map(runtime::jobs_run)
                .collect::<alloc::vec::Vec<_>>(),
        );
    }
}

fn barrier_is_reusable() {
    let n = online_cpus();
    let barrier = runtime::Barrier::new(n);
    let phase = AtomicUsize::new(0);
    runtime::on_each_cpu(&|_| {
        for round in 0..200 {
            assert!(
                phase.load(Ordering::Acquire) / n >= round,
                "a CPU ran ahead of the barrier"
            );
            phase.fetch_add(1, Ordering::AcqRel);
            barrier.wait();
            assert!(
                phase.load(Ordering::Acquire) >= (round + 1) * n,
                "the barrier let a CPU through early"
            );
            barrier.wait();
        }
    });
    assert_eq!(phase.load(Ordering::Relaxed), 200 * n);
}

/// A CPU that cannot be started is reported by its MPIDR with PSCI's error, and costs nothing.
fn a_cpu_that_cannot_start_is_reported() {
    let b = BOOT.get().unwrap();
    if b.machine.psci.is_none() || online_cpus() == 1 {
        return; // -smp 1 has no enable-method to test with
    }
    let mut m = b.machine.clone();
    let boot_cpu = m.cpus[0].clone();
    let bogus = initmm::platform::devicetree::Cpu {
        mpidr: 0xff00,
        enable_method: EnableMethod::Psci,
    };
    // Already on, and not there at all.
    m.cpus = alloc::vec![boot_cpu, m.cpus[1].clone(), bogus];
    let vm = kernel_vm();
    let (areas, frames) = (vm.area_stats(), initmm::mm::frame::FRAMES.stats());
    let online = online_cpus();
    let failures = smp::bring_up(&m, usize::MAX);
    assert_eq!(online_cpus(), online, "nothing new came online");
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(
        (
            failures[0].mpidr,
            alloc::format!("{}", failures[0].error).as_str()
        ),
        (m.cpus[1].mpidr, "CPU_ON returned PSCI ALREADY_ON (-4)")
    );
    assert_eq!(failures[1].mpidr, 0xff00);
    assert_eq!(
        alloc::format!("{}", failures[1].error),
        "CPU_ON returned PSCI INVALID_PARAMETERS (-2)"
    );
    assert!(
        failures
            .iter()
            .all(|f| matches!(f.error, smp::BringUpError::Start(_))),
        "{failures:?}"
    );
    // The stacks were freed lazily: purge, then count.
    vm.vm_unmap_aliases();
    assert_eq!(
        (vm.area_stats(), initmm::mm::frame::FRAMES.stats()),
        (areas, frames),
        "stacks freed"
    );
}

fn secondary_stacks_have_guard_pages() {
    let vm = kernel_vm();
    runtime::on_each_cpu(&|id| {
        if id == 0 {
            return;
        }
        let sp: usize;
        // SAFETY: reads the stack pointer.
        unsafe { core::arch::asm!("mov {}, sp", out(reg) sp) };
        let guard = cpu::stack_guard(id, false) as usize;
        let bottom = guard + 4096;
        assert!(guard != 0, "cpu{id} registered no guard page");
        assert!(
            (bottom..bottom + smp::STACK_SIZE).contains(&sp),
            "cpu{id}: SP {sp:#x} is not on its stack above {guard:#x}"
        );
        assert!(
            vm.init_mm.translate(VirtAddr(guard)).is_none(),
            "cpu{id}: guard page {guard:#x} is mapped"
        );
        assert!(
            vm.init_mm.translate(VirtAddr(bottom)).is_some(),
            "cpu{id}: stack bottom unmapped"
        );
        let exc = cpu::stack_guard(id, true) as usize;
        assert!(
            exc != 0 && vm.init_mm.translate(VirtAddr(exc)).is_none(),
            "cpu{id}: exception stack guard {exc:#x}"
        );
    });
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    BOOT.call_once(|| b);
    testing::run(&[
        Test::new("every_listed_cpu_is_online", every_listed_cpu_is_online),
        Test::new("an_ipi_reaches_every_cpu", an_ipi_reaches_every_cpu),
        Test::new(
            "timer_interrupts_tick_on_every_cpu",
            timer_interrupts_tick_on_every_cpu,
        ),
        Test::new(
            "on_each_cpu_runs_on_each_cpu_once",
            on_each_cpu_runs_on_each_cpu_once,
        ),
        Test::new(
            "spawned_work_is_stolen_by_other_cpus",
            spawned_work_is_stolen_by_other_cpus,
        ),
        Test::new("barrier_is_reusable", barrier_is_reusable),
        Test::new(
            "secondary_stacks_have_guard_pages",
            secondary_stacks_have_guard_pages,
        ),
        Test::new(
            "event_stream_runs_on_every_cpu",
            event_stream_runs_on_every_cpu,
        ),
        Test::new(
            "a_cpu_that_cannot_start_is_reported",
            a_cpu_that_cannot_start_is_reported,
        ),
    ])
}
