//! Interrupt dispatch and inter-processor interrupts (SGIs).
//!
//! - `SGI_WAKE`: work was queued; an idle CPU in `wfi` wakes up and looks for it.
//! - `SGI_STOP`: a CPU panicked; every other CPU masks interrupts and parks, so the report that
//!   follows is the only output and nothing else changes the machine's state under it.
//! - `SGI_DRAIN`: a CPU drains the frame caches (`mm::frame`); this CPU moves its own cache into
//!   its mailbox for it (Linux's `drain_all_pages` has each CPU drain its own list too).
//!
//! The timer tick (the PPI) counts, re-arms, and runs the watchdog (`smp::watchdog`). SPIs go
//! to the device handlers registered in `smp::irq`.

use core::sync::atomic::Ordering;

use super::{TICK_US, gic, online_cpus, per_cpu, this_cpu};
use crate::arch::aarch64::cpu;
use crate::drivers::timer;
use crate::mm::frame::FRAMES;

/// The SGI that wakes an idle CPU to look for queued work.
pub const SGI_WAKE: u8 = 0;
/// The SGI that parks every other CPU when one panics.
pub const SGI_STOP: u8 = 1;
/// The SGI that asks a CPU to hand its frame cache to the CPU draining the caches.
pub const SGI_DRAIN: u8 = 2;

/// The IRQ handler (installed in the exception vectors by `smp::init_boot_cpu`).
pub fn handle_irq() {
    let g = gic();
    let mut tick = None;
    while let Some(intid) = g.ack() {
        match intid {
            i if i == u32::from(SGI_WAKE) => {
                this_cpu().ipis.fetch_add(1, Ordering::Relaxed);
            }
            i if i == u32::from(SGI_DRAIN) => FRAMES.answer_drain(),
            i if i == u32::from(SGI_STOP) => {
                g.eoi(intid);
                stop_this_cpu();
            }
            i if i == timer::PPI => {
                let me = this_cpu();
                me.ticks.fetch_add(1, Ordering::Relaxed);
                let now = cpu::counter();
                tick = Some((me.last_tick.swap(now, Ordering::Relaxed), now));
                timer::arm_after(timer::ticks_from_micros(TICK_US));
            }
            i if i >= crate::drivers::gic::SPI_BASE => {
                if !super::irq::dispatch(i) {
                    log::warn!(
                        "cpu{}: interrupt {i} taken, but no handler claimed it",
                        cpu::id()
                    );
                }
            }
            other => log::warn!("cpu{}: unexpected interrupt {other}", cpu::id()),
        }
        g.eoi(intid);
    }
    // After the EOIs: a watchdog report ends the machine from here.
    if let Some((prev, now)) = tick {
        super::watchdog::check(cpu::id(), prev, now);
    }
}

fn stop_this_cpu() -> ! {
    super::park_stopped()
}

/// Wake `cpu` if it waits for work.
pub fn wake(cpu_id: usize) {
    if let Some(g) = super::GIC.get() {
        g.send_sgi(SGI_WAKE, per_cpu(cpu_id).mpidr.load(Ordering::Relaxed));
    }
}

/// Ask every other online CPU that is not stopped to answer a frame-cache drain (`SGI_DRAIN`),
/// and return the CPUs asked (bit `n`: CPU `n`): installed as `mm::frame::DRAIN_HOOK`.
pub fn ask_to_drain_frames() -> u64 {
    let Some(g) = super::GIC.get() else { return 0 };
    let me = cpu::id();
    let asked = (0..online_cpus())
        .filter(|&i| i != me && !per_cpu(i).stopped.load(Ordering::Acquire))
        .fold(0u64, |m, i| m | 1 << i);
    if asked != 0 {
        g.send_sgi_all_but_self(SGI_DRAIN);
    }
    asked
}

/// Stop every other online CPU and wait (briefly) until they say they stopped. Used by the panic
/// handler before it prints, so that one clean report comes out.
pub fn stop_other_cpus() {
    let Some(g) = super::GIC.get() else { return };
    let me = cpu::id();
    g.send_sgi_all_but_self(SGI_STOP);
    let deadline = cpu::counter() + cpu::counter_frequency() / 10;
    while cpu::counter() < deadline {
        if (0..online_cpus())
            .filter(|&i| i != me)
            .all(|i| per_cpu(i).stopped.load(Ordering::Acquire))
        {
            break;
        }
        core::hint::spin_loop();
    }
}
