//! Finding the devices: every CPU takes its share of the virtio-mmio slots and of the PCI
//! functions, maps and probes them itself, and brings up what it finds. PCI functions start
//! decoding their BARs between two parallel phases, switched on by one CPU (see
//! `pci::Decoding::enable`).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;
use virtio_drivers::transport::{DeviceType, Transport};

use super::blk::Disk;
use super::console::VirtConsole;
use super::net::NetDevice;
use super::rng::Rng;
use super::{Interrupting, wire};
use crate::arch::aarch64::cpu;
use crate::drivers::pci::{self, Decoding, PciProbe};
use crate::drivers::virtio::{Candidate, ProbeError, mmio};
use crate::mm::pgalloc::PgStatsSnapshot;
use crate::platform::devicetree::{IrqSpec, Machine};
use crate::smp::irq::IrqError;
use crate::smp::{self, runtime::on_cpus};

/// What probing one place came to.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing there (an empty virtio-mmio slot).
    Empty,
    /// A device, brought up: its kind and its interrupt (INTID, the CPU it is routed to).
    Found {
        /// The device's kind.
        kind: DeviceType,
        /// Its interrupt's INTID.
        intid: u32,
        /// The CPU its interrupt goes to.
        irq_cpu: usize,
        /// The transport's version, for virtio-mmio (1 legacy, 2 modern); 0 for PCI.
        version: u32,
    },
    /// Present, but not for this kernel (a PCI function that is no virtio device): what it is.
    Skipped(String),
    /// Refused, with the reason (logged).
    Refused(String),
}

/// One place probed: where, by which CPU, and what it came to.
#[derive(Debug)]
pub struct ProbeRecord {
    /// The device-tree path of a virtio-mmio slot, or the PCI address `pci 0000:00:02.0`.
    pub place: String,
    /// The CPU that probed it (and mapped its registers).
    pub cpu: usize,
    /// What it came to.
    pub outcome: Outcome,
}

/// The devices brought up, and the record of the probe.
#[derive(Default)]
pub struct Devices {
    /// Block devices.
    pub disks: Vec<Arc<Disk>>,
    /// Entropy devices.
    pub rngs: Vec<Arc<Rng>>,
    /// Network devices.
    pub nets: Vec<Arc<NetDevice>>,
    /// Consoles.
    pub consoles: Vec<Arc<VirtConsole>>,
    /// Every place probed, in slot order, then the PCI functions.
    pub records: Vec<ProbeRecord>,
    /// Page-table installs and lost races during the probe.
    pub tables: PgStatsSnapshot,
    /// What the PCI host bridges came to (one line each).
    pub pci_hosts: Vec<String>,
    /// PCI host bridges left alone, with the reason.
    pub pci_refused: Vec<String>,
}

impl fmt::Debug for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Devices")
            .field("disks", &self.disks.len())
            .field("rngs", &self.rngs.len())
            .field("nets", &self.nets.len())
            .field("consoles", &self.consoles.len())
            .field("records", &self.records)
            .finish()
    }
}

/// A device brought up, before it joins [`Devices`].
enum Up {
    Disk(Arc<Disk>),
    Rng(Arc<Rng>),
    Net(Arc<NetDevice>),
    Console(Arc<VirtConsole>),
}

/// Why a device found was not brought up: its driver refused it, or its interrupt could not be
/// had (a layer above `drivers`, so not one of the transport's [`ProbeError`]s).
enum BringUpError {
    Probe(ProbeError),
    Request(IrqError),
}

impl From<ProbeError> for BringUpError {
    fn from(e: ProbeError) -> Self {
        Self::Probe(e)
    }
}

impl fmt::Display for BringUpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Probe(e) => e.fmt(f),
            Self::Request(e) => write!(f, "cannot request its interrupt: {e}"),
        }
    }
}

/// Bring up the driver for `c`, its interrupt routed to `irq_cpu`.
fn bring_up(c: Candidate, cpu: usize, irq_cpu: usize) -> (ProbeRecord, Option<Up>) {
    fn arc<D: Interrupting>(
        d: Result<D, ProbeError>,
        irq: IrqSpec,
        cpu: usize,
    ) -> Result<Arc<D>, BringUpError> {
        let d = Arc::new(d?);
        wire(&d, irq, cpu).map_err(BringUpError::Request)?;
        Ok(d)
    }
    let kind = c.transport.device_type();
    let (t, irq) = (c.transport, c.irq);
    let up = match kind {
        DeviceType::Block => arc(Disk::new(t), irq, irq_cpu).map(Up::Disk),
        DeviceType::EntropySource => arc(Rng::new(t), irq, irq_cpu).map(Up::Rng),
        DeviceType::Network => arc(NetDevice::new(t), irq, irq_cpu).map(Up::Net),
        DeviceType::Console => arc(VirtConsole::new(t), irq, irq_cpu).map(Up::Console),
        other => Err(ProbeError::Unsupported(other).into()),
    };
    if let Ok(Up::Console(con)) = &up {
        // Its first words: what it is and who brought it up (the host sees them in its file).
        let hello = format!(
            "initmm: second console at {}, probed by cpu{cpu}\n",
            c.place
        );
        if let Err(e) = con.write(&hello) {
            log::warn!(
                "probe: {}: the console did not take its first line: {e}",
                c.place
            );
        }
    }
    let (outcome, up) = match up {
        Ok(up) => (
            Outcome::Found {
                kind,
                intid: irq.intid,
                irq_cpu,
                version: c.version,
            },
            Some(up),
        ),
        Err(e) => (Outcome::Refused(format!("{kind:?}: {e}")), None),
    };
    (
        ProbeRecord {
            place: c.place,
            cpu,
            outcome,
        },
        up,
    )
}

impl Devices {
    fn add(&mut self, up: Up) {
        match up {
            Up::Disk(d) => self.disks.push(d),
            Up::Rng(d) => self.rngs.push(d),
            Up::Net(d) => self.nets.push(d),
            Up::Console(d) => self.consoles.push(d),
        }
    }
}

/// Probe every virtio-mmio slot and PCI host bridge of `m` on every online CPU, bring up what is
/// found, and log what each CPU probed.
pub fn probe(m: &Machine) -> Devices {
    let cpus = smp::online_cpus();
    let vm = crate::mm::kernel_vm();
    let before = vm.init_mm.stats();
    let t0 = cpu::counter();
    let devices: Mutex<Devices> = Mutex::new(Devices::default());
    let records: Mutex<Vec<(usize, ProbeRecord)>> = Mutex::new(Vec::new());
    let slots = &m.virtio_mmio;
    // PCI: the bridges' windows and buses, set up once; their devices split like the slots.
    let mut pci_refused = Vec::new();
    let hosts: Vec<PciProbe> = m
        .pci_hosts
        .iter()
        .filter_map(|h| match PciProbe::new(h) {
            Ok(p) => Some(p),
            Err(e) => {
                let why = format!("{}: {e}: the bridge is left alone", h.path);
                log::error!("pci: {why}");
                pci_refused.push(why);
                None
            }
        })
        .collect();
    let pci_work: Vec<(usize, u8, u8)> = hosts
        .iter()
        .enumerate()
        .flat_map(|(h, p)| p.devices().map(move |(bus, dev)| (h, bus, dev)))
        .collect();
    // Each CPU probes every `cpus`-th place and brings up what it finds there itself: it maps
    // the registers, sets up the queues, and takes the device's interrupts. A PCI function is
    // brought up in a second parallel phase, after one CPU turned on the decoding of every
    // function found, with the others idle: under QEMU's TCG a change to the memory map can send
    // another CPU's PCI access to the wrong device (`pci::Decoding::enable`).
    let record = |order: usize, r: ProbeRecord, up: Option<Up>| {
        if let Some(up) = up {
            devices.lock().add(up);
        }
        records.lock().push((order, r));
    };
    // The virtio PCI functions each CPU found (with their place in the record), which it brings
    // up in the second phase, and the decoding of every one of them.
    let mine: Vec<Mutex<Vec<(usize, Candidate)>>> = (0..cpus).map(|_| Mutex::default()).collect();
    let decodings: Mutex<Vec<Arc<Decoding>>> = Mutex::new(Vec::new());
    on_cpus(cpus, &|me| {
        for (n, slot) in slots.iter().enumerate().skip(me).step_by(cpus) {
            let at = |outcome| ProbeRecord {
                place: slot.path.clone(),
                cpu: me,
                outcome,
            };
            match slot.irq.clone() {
                Err(e) => record(
                    n,
                    at(Outcome::Refused(format!("{}", ProbeError::Irq(e)))),
                    None,
                ),
                Ok(irq) => match mmio::probe(slot) {
                    Ok(None) => record(n, at(Outcome::Empty), None),
                    Ok(Some((transport, version))) => {
                        let c = Candidate {
                            place: slot.path.clone(),
                            transport,
                            irq,
                            version,
                        };
                        let (r, up) = bring_up(c, me, me);
                        record(n, r, up);
                    }
                    Err(e) => record(n, at(Outcome::Refused(format!("{e}"))), None),
                },
            }
        }
        for (i, &(h, bus, dev)) in pci_work.iter().enumerate().skip(me).step_by(cpus) {
            let order = slots.len() + i;
            for r in hosts[h].probe_device(bus, dev) {
                let (place, outcome) = match r {
                    pci::Probed::Virtio(c, decoding) => {
                        mine[me].lock().push((order, c));
                        decodings.lock().push(decoding);
                        continue;
                    }
                    pci::Probed::Empty(place) => (place, Outcome::Empty),
                    pci::Probed::Skipped(place, what) => (place, Outcome::Skipped(what)),
                    pci::Probed::Refused(place, why) => (place, Outcome::Refused(why)),
                };
                record(
                    order,
                    ProbeRecord {
                        place,
                        cpu: me,
                        outcome,
                    },
                    None,
                );
            }
        }
    });
    // This CPU alone, the others idle: every PCI function found starts decoding its BARs.
    let decodings = decodings.into_inner();
    for d in &decodings {
        d.enable();
    }
    // Every CPU again: each brings up the functions it found.
    on_cpus(cpus, &|me| {
        for (order, c) in core::mem::take(&mut *mine[me].lock()) {
            let (r, up) = bring_up(c, me, me);
            record(order, r, up);
        }
    });
    // A function its driver refused goes off here, on this CPU, with the others done.
    drop(decodings);
    let mut devices = devices.into_inner();
    let mut recs = records.into_inner();
    recs.sort_by_key(|(n, _)| *n);
    devices.records = recs.into_iter().map(|(_, r)| r).collect();
    devices.pci_hosts = hosts.iter().map(|h| format!("{h}")).collect();
    devices.pci_refused = pci_refused;
    drop(hosts);
    let after = vm.init_mm.stats();
    devices.tables = after.since(&before);
    log_probe(&devices, cpus, cpu::counter() - t0);
    devices
}

fn log_probe(d: &Devices, cpus: usize, ticks: u64) {
    let empty = d
        .records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Empty))
        .count();
    for r in &d.records {
        match &r.outcome {
            Outcome::Empty => log::debug!("probe: {}: empty (cpu{})", r.place, r.cpu),
            Outcome::Found {
                kind,
                intid,
                irq_cpu,
                version,
            } => {
                let v = match version {
                    1 => " (virtio-mmio legacy)",
                    2 => " (virtio-mmio modern)",
                    _ => "",
                };
                log::info!(
                    "probe: {}: {kind:?}{v}, probed by cpu{}, interrupt {intid} to cpu{irq_cpu}",
                    r.place,
                    r.cpu
                )
            }
            Outcome::Skipped(what) => {
                log::info!("probe: {}: {what} (probed by cpu{})", r.place, r.cpu)
            }
            Outcome::Refused(why) => {
                log::warn!("probe: {}: {why} (probed by cpu{})", r.place, r.cpu)
            }
        }
    }
    for h in &d.pci_hosts {
        log::info!("pci: {h}");
    }
    let t = &d.tables;
    log::info!(
        "probe: {} places on {cpus} CPUs in {} us, {empty} empty; page tables installed/lost: pud {}/{}, pmd {}/{}, pte {}/{}",
        d.records.len(),
        ticks * 1_000_000 / cpu::counter_frequency(),
        t.pud.installed,
        t.pud.lost,
        t.pmd.installed,
        t.pmd.lost,
        t.pte.installed,
        t.pte.lost
    );
}
