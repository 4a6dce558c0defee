//! The machine's devices, found and brought up: virtio-mmio slots and virtio-pci functions,
//! probed in parallel on every CPU, each with its interrupt routed to a CPU; and the drivers
//! the workloads use (`blk`, `rng`, `net`, `console`).
//!
//! [`probe()`] splits the slots and the PCI functions among the CPUs; each CPU maps what it
//! probes itself (`ioremap` through the drivers' `IoMap`), so that mapping races between CPUs
//! happen in real driver code, and the boot log says which CPU probed which device and how many
//! page-table installs each level lost. A device that cannot be used is logged with its reason
//! and left behind; its mappings and memory go back.
//!
//! Each device is an `Arc` whose interrupt handler only acknowledges the device, through its
//! registers and without the driver's lock, and counts an event (it runs in the IRQ exception,
//! where nothing may allocate and no lock that allocating code holds may be waited for:
//! `smp::irq`); the work the event announces (completing requests, receiving packets) is done by
//! the CPUs waiting for it, under the driver's lock.
//! The device is torn down in order when its last `Arc` goes: the handler first, then the device
//! reset, its queues freed, its registers unmapped.

pub mod blk;
pub mod console;
pub mod net;
pub mod probe;
pub mod rng;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::{Mutex, Once};

use crate::arch::aarch64::{cpu, event};
use crate::drivers::virtio::IrqAck;
use crate::platform::devicetree::{IrqSpec, Machine};
use crate::smp::irq::{self, Irq, IrqError};

pub use probe::{Devices, ProbeRecord, probe};

/// The devices, once probed.
static DEVICES: Once<Devices> = Once::new();
/// The machine to probe, and whether probing on first use is allowed (not with `devices=off`).
static MACHINE: Once<(&'static Machine, bool)> = Once::new();

/// The machine's devices, probed on first use (the first device workload, or boot with
/// `devices=boot`); `None` with `devices=off`, or before boot handed over the machine.
pub fn get() -> Option<&'static Devices> {
    let &(m, allowed) = MACHINE.get()?;
    allowed.then(|| DEVICES.call_once(|| probe(m)))
}

/// Boot's part, once every CPU is online: print the Pi's board facts (its mailbox), and keep the
/// machine for [`get`]. `devices=boot` probes now, `devices=off` never (test kernels that
/// probe, use and drop devices themselves); by default the probe waits for the first user, so
/// that a boot that uses no device does not pay for probing 32 slots and a PCI bus.
pub fn init_at_boot(m: &'static Machine) {
    if let Some(mb) = &m.mailbox {
        log_board_facts(mb);
    }
    let mode = crate::cmdline::Cmdline(&m.bootargs).get("devices");
    MACHINE.call_once(|| (m, mode != Some("off")));
    match mode {
        Some("off") => log::info!("devices=off: no device is probed"),
        Some("boot") => {
            get();
        }
        _ => {}
    }
}

/// Ask the VideoCore firmware about the board and log it (a Raspberry Pi's mailbox).
pub fn log_board_facts(mb: &crate::platform::devicetree::Mailbox) {
    match crate::drivers::mailbox::hw::Mailbox::new(mb).and_then(|mut m| m.board_facts()) {
        Ok(f) => log::info!("mailbox {}: {f}", mb.path),
        Err(e) => log::warn!("mailbox {}: {e}", mb.path),
    }
}

/// A device whose interrupt handler does the device's own acknowledge, through its transport's
/// [`IrqAck`], and announces the event in its [`Events`].
///
/// # Safety
///
/// The [`IrqAck`] is the one of the transport this device owns (so its registers are mapped for
/// as long as the device lives), and the device's `Drop` calls [`Events::unwire`] on these
/// [`Events`] before anything else: no handler runs once the transport may be gone.
pub unsafe trait Interrupting: Send + Sync + 'static {
    /// The device's interrupt acknowledge and its events.
    fn irq_parts(&self) -> (&IrqAck, &Events);

    /// Acknowledge the device's interrupt and count the event; false when the device had not
    /// raised it (a shared line). Runs in the IRQ exception: it allocates nothing and takes no
    /// lock.
    fn on_irq(&self) -> bool {
        let (ack, events) = self.irq_parts();
        // SAFETY: the trait's contract: `ack` belongs to the transport `self` owns, alive while
        // `self` is, and `self` is alive while its handler can run (`Drop` unwires first).
        let ours = unsafe { ack.ack() };
        if ours {
            events.signal();
        }
        ours
    }
}

/// Events a device's interrupt handler announced: a counter the handler bumps and waiters
/// watch, and the requested line, dropped (the handler removed) before the device is.
pub struct Events {
    count: AtomicUsize,
    irq: Mutex<Option<Irq>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// No event yet and no line.
    pub const fn new() -> Self {
        Self {
            count: AtomicUsize::new(0),
            irq: Mutex::new(None),
        }
    }

    /// From the handler: one more event; wakes the CPUs sleeping in [`Events::wait`].
    pub fn signal(&self) {
        self.count.fetch_add(1, Ordering::Release);
        // Waiters sleep in `wfe` with the monitor armed on `count`: the store wakes them; the
        // `sev` wakes one that had not armed it yet (event.rs).
        event::send_event();
    }

    /// Events so far: read before checking for work, then [`Events::wait`] for a change.
    pub fn seen(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Sleep until an event after `seen`, or until `timeout_us` passed; false on the timeout.
    pub fn wait(&self, seen: usize, timeout_us: u64) -> bool {
        let deadline = cpu::counter() + timeout_us * cpu::counter_frequency() / 1_000_000;
        let v = event::wait_until(&self.count, |v| v != seen || cpu::counter() > deadline);
        v != seen
    }

    /// The interrupt line, once wired: (INTID, CPU, interrupts taken).
    pub fn line(&self) -> Option<(u32, usize, u64)> {
        self.irq
            .lock()
            .as_ref()
            .map(|i| (i.intid(), i.cpu(), i.count()))
    }

    /// Remove the handler (waiting for a run of it on another CPU to end). A device's `Drop`
    /// calls this first.
    pub fn unwire(&self) {
        drop(self.irq.lock().take());
    }
}

/// Route `spec` to CPU `cpu` with `dev.on_irq` as its handler; the line is kept in `dev`'s
/// [`Events`], whose [`Events::unwire`] `dev`'s `Drop` calls first.
///
/// # Errors
///
/// What [`irq::request`] refuses.
pub fn wire<D: Interrupting>(dev: &Arc<D>, spec: IrqSpec, cpu: usize) -> Result<(), IrqError> {
    let addr = Arc::as_ptr(dev) as usize;
    let handler: irq::Handler = Arc::new(move || {
        // SAFETY: `addr` is the device inside an `Arc` whose `Drop` removes this handler (and
        // waits for a running one) before any of it is freed, so the device is alive whenever
        // the handler runs.
        let d = unsafe { &*(addr as *const D) };
        d.on_irq()
    });
    let line = irq::request(spec, cpu, handler)?;
    *dev.irq_parts().1.irq.lock() = Some(line);
    Ok(())
}

/// How long a request may wait for its device's interrupt before it is reported as lost.
pub const IRQ_TIMEOUT_US: u64 = 5_000_000;
