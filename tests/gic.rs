//! The interrupt controller and the virtual timer on the boot CPU: GICv2 and GICv3 on QEMU virt
//! (entered at EL1 and at EL2) and the Raspberry Pi 4's GIC-400 on QEMU raspi4b. A timer
//! interrupt arrives, not before its deadline, and re-arming it gives ticks; an SGI sent to our
//! own MPIDR arrives once, with the right INTID; SGIs aimed at other CPUs (all-but-self, or our
//! Aff0 in cluster 1) do not arrive here.
//!
//! It drives the kernel's GIC with its own IRQ handler, on the boot CPU alone (`maxcpus=1`), so
//! that it sees every interrupt that arrives.
//!
//! initmm-qemu: --machine virt -- maxcpus=1
//! initmm-qemu: --machine virt,virtualization=on -- maxcpus=1
//! initmm-qemu: --machine virt,gic-version=3 -- maxcpus=1
//! initmm-qemu: --machine virt,gic-version=3,virtualization=on --smp 12 -- maxcpus=1
//! initmm-qemu: --machine raspi4b --mem 2G --qemu-arg -dtb --qemu-arg tests/data/bcm2711-rpi-4-b.dtb -- maxcpus=1
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use initmm::BootInfo;
use initmm::arch::aarch64::{cpu, daif};
use initmm::drivers::gic::{Gic, GicVersion};
use initmm::drivers::timer;
use initmm::testing::{self, Test};
use spin::Once;

static BOOT: Once<&'static BootInfo> = Once::new();

/// What the IRQ handler saw.
static TICKS: AtomicU32 = AtomicU32::new(0);
/// Counter value at the first timer interrupt.
static FIRST_TICK_AT: AtomicU64 = AtomicU64::new(0);
/// How many more ticks to re-arm for after the first.
static REARMS_LEFT: AtomicU32 = AtomicU32::new(0);
static SGIS: [AtomicU32; 16] = [const { AtomicU32::new(0) }; 16];
static OTHER: AtomicU32 = AtomicU32::new(0);

fn handle_irq() {
    let g = gic();
    while let Some(intid) = g.ack() {
        match intid {
            0..16 => {
                SGIS[intid as usize].fetch_add(1, Ordering::Relaxed);
            }
            i if i == timer::PPI => {
                if TICKS.fetch_add(1, Ordering::Relaxed) == 0 {
                    FIRST_TICK_AT.store(timer::now(), Ordering::Relaxed);
                }
                // The level stays asserted until the timer is re-armed or disabled: do it first.
                if REARMS_LEFT.load(Ordering::Relaxed) > 0 {
                    REARMS_LEFT.fetch_sub(1, Ordering::Relaxed);
                    timer::arm_after(timer::ticks_from_micros(1_000));
                } else {
                    timer::disable();
                }
            }
            _ => {
                OTHER.fetch_add(1, Ordering::Relaxed);
            }
        }
        g.eoi(intid);
    }
}

/// Spin with IRQs on until `done()` or `us` microseconds passed; IRQs are masked again after.
fn wait_until(us: u64, done: impl Fn() -> bool) -> bool {
    let deadline = timer::now() + timer::ticks_from_micros(us);
    daif::irqs_enable();
    while !done() && timer::now() < deadline {
        core::hint::spin_loop();
    }
    daif::irqs_disable();
    done()
}

fn gic() -> &'static Gic {
    initmm::smp::gic()
}

fn gic_matches_the_device_tree() {
    let m = &BOOT.get().unwrap().machine;
    let want = m.gic.as_ref().unwrap().version;
    assert_eq!(gic().version(), want);
    initmm::kprint!("({want:?}) ");
    assert_eq!(
        m.timer.unwrap().virt_irq,
        Some(timer::PPI),
        "the DT's virtual timer PPI"
    );
}

fn nothing_pending_acks_as_none() {
    assert_eq!(
        gic().ack(),
        None,
        "IRQs masked, nothing raised: the acknowledge must be spurious"
    );
}

fn sgi_to_own_mpidr_arrives_once() {
    for sgi in [0u8, 1, 15] {
        let before = SGIS[sgi as usize].load(Ordering::Relaxed);
        gic().send_sgi(sgi, cpu::mpidr());
        assert!(
            wait_until(100_000, || SGIS[sgi as usize].load(Ordering::Relaxed)
                > before),
            "SGI {sgi} to my own MPIDR {:#x} did not arrive within 100 ms",
            cpu::mpidr()
        );
        wait_until(2_000, || false);
        assert_eq!(
            SGIS[sgi as usize].load(Ordering::Relaxed),
            before + 1,
            "SGI {sgi} arrived more than once"
        );
    }
    assert_eq!(
        OTHER.load(Ordering::Relaxed),
        0,
        "an interrupt nobody raised"
    );
}

fn sgis_for_other_cpus_do_not_arrive_here() {
    let snapshot = || SGIS.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u32>();
    let before = snapshot();
    gic().send_sgi_all_but_self(2);
    // Our own Aff0 in cluster 1: if Aff1 were lost from ICC_SGI1R_EL1 this would hit us. (QEMU
    // virt's GICv3 clusters hold 16 CPUs, so on -smp 12 nobody is there.)
    if gic().version() == GicVersion::V3 {
        gic().send_sgi(3, cpu::mpidr() | 0x100);
    }
    wait_until(20_000, || false);
    assert_eq!(
        snapshot(),
        before,
        "an SGI aimed elsewhere arrived on the sender"
    );
}

fn timer_fires_after_its_deadline_not_before() {
    let ticks = timer::ticks_from_micros(10_000);
    REARMS_LEFT.store(0, Ordering::Relaxed);
    let armed = timer::now();
    timer::arm_after(ticks);
    assert!(
        wait_until(1_000_000, || TICKS.load(Ordering::Relaxed) > 0),
        "no timer interrupt within 1 s of a 10 ms deadline"
    );
    // "Not before" is judged by the counter value the handler saw, not by how long we waited:
    // QEMU's counter follows the host clock, so a descheduled QEMU may skip past the deadline.
    let at = FIRST_TICK_AT.load(Ordering::Relaxed);
    assert!(
        at >= armed + ticks,
        "taken at {at}, before the deadline {}",
        armed + ticks
    );
    assert_eq!(
        TICKS.load(Ordering::Relaxed),
        1,
        "a disabled timer kept interrupting"
    );
}

fn rearming_gives_periodic_ticks() {
    let start = TICKS.load(Ordering::Relaxed);
    REARMS_LEFT.store(9, Ordering::Relaxed);
    timer::arm_after(timer::ticks_from_micros(1_000));
    assert!(
        wait_until(2_000_000, || TICKS.load(Ordering::Relaxed) >= start + 10),
        "10 ticks of 1 ms did not arrive within 2 s: got {}",
        TICKS.load(Ordering::Relaxed) - start
    );
    wait_until(5_000, || false);
    assert_eq!(
        TICKS.load(Ordering::Relaxed),
        start + 10,
        "ticks after the last re-arm"
    );
    assert_eq!(OTHER.load(Ordering::Relaxed), 0);
}

fn counter_is_monotonic_and_clocked() {
    let f = timer::frequency();
    assert!(
        f >= 1_000_000,
        "CNTFRQ_EL0 = {f} Hz: firmware did not program it"
    );
    let a = timer::now();
    let b = timer::now();
    assert!(b >= a);
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    BOOT.call_once(|| b);
    assert_eq!(initmm::smp::online_cpus(), 1, "run with maxcpus=1");
    // The kernel set the GIC up, with its tick; take over: our handler, no tick, IRQs masked
    // except while a test waits.
    daif::irqs_disable();
    timer::disable();
    initmm::arch::aarch64::exceptions::set_irq_handler(handle_irq);
    testing::run(&[
        Test::new("gic_matches_the_device_tree", gic_matches_the_device_tree),
        Test::new(
            "counter_is_monotonic_and_clocked",
            counter_is_monotonic_and_clocked,
        ),
        Test::new("nothing_pending_acks_as_none", nothing_pending_acks_as_none),
        Test::new(
            "sgi_to_own_mpidr_arrives_once",
            sgi_to_own_mpidr_arrives_once,
        ),
        Test::new(
            "sgis_for_other_cpus_do_not_arrive_here",
            sgis_for_other_cpus_do_not_arrive_here,
        ),
        Test::new(
            "timer_fires_after_its_deadline_not_before",
            timer_fires_after_its_deadline_not_before,
        ),
        Test::new(
            "rearming_gives_periodic_ticks",
            rearming_gives_periodic_ticks,
        ),
    ])
}
