//! Device interrupts: a registry of handlers for the GIC's SPIs, each line configured edge or
//! level as the device tree says and routed to one chosen CPU, where its handlers run.
//!
//! [`request`] installs a handler, configures the line and enables it; the returned [`Irq`]
//! disables it ([`Irq::disable`], [`Irq::enable`]) and, when dropped, takes the handler out
//! again, waiting for a run of it on another CPU to finish, so that whatever the handler borrows
//! may go away once the `Irq` has. Several handlers may share a line (PCI INTx): each runs on
//! every interrupt and says whether its device had raised it. The line stays routed to the CPU
//! of the first request.
//!
//! # What a handler may do
//!
//! Handlers run in the IRQ exception with IRQs masked, on the line's CPU, in the middle of
//! whatever that CPU was doing: perhaps inside the kernel heap or the frame allocator, whose
//! locks are taken with IRQs unmasked (only the frame allocator's per-CPU caches mask them). So a
//! handler allocates and frees nothing, and waits for no lock that code running with IRQs
//! unmasked may hold, nor for one whose holder may wait for such a lock: a driver's own lock
//! is one, since code holding it allocates (the driver's requests, virtio-drivers' descriptor
//! lists). Either would leave the interrupted CPU and the holder waiting for each other, IRQs
//! masked on both. The device drivers' handlers acknowledge the device through its registers
//! (`drivers::virtio::IrqAck`) and count an event; the CPUs that wait for the device do the rest
//! under the driver's lock.
//!
//! The one lock a handler takes is its line's entry in the registry, for reading. Its writers
//! ([`request`], and dropping an [`Irq`]) hold it with IRQs masked, so that no handler on their
//! own CPU waits for them, and only to swap the entry: the new one is built, and the old one
//! freed, outside it.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, RwLock};

use super::{gic, online_cpus, per_cpu};
use crate::arch::aarch64::daif;
use crate::drivers::gic::{FIRST_SPECIAL_INTID, SPI_BASE, SpiError};
use crate::platform::devicetree::{IrqSpec, Trigger};

/// A handler: returns whether its device had raised the interrupt (for a shared line).
pub type Handler = Arc<dyn Fn() -> bool + Send + Sync>;

/// One SPI's handlers and how it is set up.
struct Line {
    handlers: Vec<(u64, Handler)>,
    trigger: Trigger,
    cpu: usize,
}

const SPIS: usize = (FIRST_SPECIAL_INTID - SPI_BASE) as usize;

/// Per SPI: its handlers. Written with IRQs masked (under `CONFIG`), read by the IRQ handler:
/// a reader on one CPU never waits for a writer interrupted on the same CPU. Boxed, so that an
/// empty slot is all zeroes and the table lives in `.bss`, not in the Image.
static LINES: [RwLock<Option<alloc::boxed::Box<Line>>>; SPIS] = [const { RwLock::new(None) }; SPIS];
/// Serialises request and release (GIC configuration included).
static CONFIG: Mutex<()> = Mutex::new(());
/// Interrupts taken per SPI.
static COUNTS: [AtomicU64; SPIS] = [const { AtomicU64::new(0) }; SPIS];
/// Interrupts that no handler claimed.
static UNCLAIMED: AtomicU64 = AtomicU64::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why an interrupt could not be requested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// The INTID is not an SPI, or the GIC refused the target CPU.
    Gic(SpiError),
    /// The target CPU is not online.
    CpuOffline {
        /// The CPU asked for.
        cpu: usize,
    },
    /// The line has handlers already, with another trigger.
    TriggerConflict {
        /// The INTID.
        intid: u32,
        /// How the line is configured.
        has: Trigger,
    },
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gic(e) => e.fmt(f),
            Self::CpuOffline { cpu } => write!(f, "cpu{cpu} is not online"),
            Self::TriggerConflict { intid, has } => {
                write!(f, "INTID {intid} is shared and already configured {has:?}")
            }
        }
    }
}

/// A requested interrupt: its handler stays installed until this is dropped.
#[must_use = "dropping the Irq removes its handler"]
pub struct Irq {
    intid: u32,
    id: u64,
    cpu: usize,
}

/// The IRQ exception's path for an SPI: run the line's handlers. Returns false (and counts it)
/// when the INTID has none or none claimed it.
pub fn dispatch(intid: u32) -> bool {
    let Some(slot) = slot(intid) else {
        return false;
    };
    COUNTS[slot].fetch_add(1, Ordering::Relaxed);
    let line = LINES[slot].read();
    let claimed = line
        .as_ref()
        .is_some_and(|l| l.handlers.iter().fold(false, |any, (_, h)| h() | any));
    if !claimed {
        UNCLAIMED.fetch_add(1, Ordering::Relaxed);
    }
    claimed
}

fn slot(intid: u32) -> Option<usize> {
    intid
        .checked_sub(SPI_BASE)
        .map(|s| s as usize)
        .filter(|&s| s < SPIS)
}

/// Install `handler` for `spec`'s SPI, routed to CPU `cpu`, and enable the line.
///
/// # Errors
///
/// [`IrqError`]: no such SPI, an offline CPU, or a shared line configured otherwise.
pub fn request(spec: IrqSpec, cpu: usize, handler: Handler) -> Result<Irq, IrqError> {
    if cpu >= online_cpus() {
        return Err(IrqError::CpuOffline { cpu });
    }
    let lines = crate::drivers::gic::FIRST_SPECIAL_INTID;
    let s = slot(spec.intid).ok_or(IrqError::Gic(SpiError::NotAnSpi {
        intid: spec.intid,
        lines,
    }))?;
    let _config = CONFIG.lock();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let existing = LINES[s].read().as_ref().map(|l| (l.trigger, l.cpu));
    let cpu = match existing {
        Some((has, _)) if has != spec.trigger => {
            return Err(IrqError::TriggerConflict {
                intid: spec.intid,
                has,
            });
        }
        Some((_, line_cpu)) => line_cpu,
        None => {
            let mpidr = per_cpu(cpu).mpidr.load(Ordering::Relaxed);
            gic()
                .configure_spi(spec.intid, spec.trigger, mpidr)
                .map_err(IrqError::Gic)?;
            cpu
        }
    };
    // `CONFIG` keeps the entry as read here until the swap. Built and freed outside the write
    // lock (see the module documentation).
    let mut handlers = LINES[s]
        .read()
        .as_ref()
        .map_or_else(Vec::new, |l| l.handlers.clone());
    handlers.push((id, handler));
    let line = alloc::boxed::Box::new(Line {
        handlers,
        trigger: spec.trigger,
        cpu,
    });
    let old = with_irqs_masked(|| LINES[s].write().replace(line));
    drop(old);
    gic().enable_spi(spec.intid);
    Ok(Irq {
        intid: spec.intid,
        id,
        cpu,
    })
}

impl Irq {
    /// The line's INTID.
    pub fn intid(&self) -> u32 {
        self.intid
    }

    /// The CPU its handlers run on.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Interrupts taken on this line so far (by every handler sharing it).
    pub fn count(&self) -> u64 {
        slot(self.intid).map_or(0, |s| COUNTS[s].load(Ordering::Relaxed))
    }

    /// Stop the line from being signalled (every handler sharing it).
    pub fn disable(&self) {
        gic().disable_spi(self.intid);
    }

    /// Let the line be signalled again.
    pub fn enable(&self) {
        gic().enable_spi(self.intid);
    }
}

impl Drop for Irq {
    fn drop(&mut self) {
        let Some(s) = slot(self.intid) else { return };
        let _config = CONFIG.lock();
        // The entry without this handler, built outside the write lock (see the module
        // documentation); `CONFIG` keeps the entry as read here until the swap.
        let line = LINES[s].read().as_ref().and_then(|l| {
            let handlers: Vec<_> = l
                .handlers
                .iter()
                .filter(|(id, _)| *id != self.id)
                .cloned()
                .collect();
            (!handlers.is_empty()).then(|| {
                alloc::boxed::Box::new(Line {
                    handlers,
                    trigger: l.trigger,
                    cpu: l.cpu,
                })
            })
        });
        let last = line.is_none();
        // The write lock waits for a handler running on another CPU (it holds the read lock);
        // once it is taken, no handler runs the old entry's closures any more.
        let old = with_irqs_masked(|| core::mem::replace(&mut *LINES[s].write(), line));
        drop(old);
        if last {
            gic().disable_spi(self.intid);
        }
    }
}

/// Interrupts no handler claimed since boot.
pub fn unclaimed() -> u64 {
    UNCLAIMED.load(Ordering::Relaxed)
}

fn with_irqs_masked<R>(f: impl FnOnce() -> R) -> R {
    let was = daif::irqs_disable();
    let r = f();
    if was {
        daif::irqs_enable();
    }
    r
}
