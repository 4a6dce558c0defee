//! The probe of one PCI device on a generic ECAM bridge: its configuration pages mapped by the
//! probing CPU, its BARs sized, placed and mapped, its INTx routed, and a virtio-pci transport
//! made for it.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;
use virtio_drivers::transport::SomeTransport;
use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, MemoryBarType, PciRoot,
};
use virtio_drivers::transport::pci::{PciTransport, virtio_device_type};

use super::{BarError, CONFIG_SIZE, WindowAlloc, ecam_offset, intx_route, window_for};
use crate::drivers::iomap::IoMap;
use crate::drivers::virtio::hal::{BarMap, VirtioHal};
use crate::drivers::virtio::{Candidate, DeviceTransport, Regs};
use crate::mm::addr::PhysAddr;
use crate::platform::devicetree::{PciHost, PciSpace};

/// Configuration-space registers read here.
const VENDOR_DEVICE: u8 = 0x00;
const CLASS_REV: u8 = 0x08;
const HEADER: u8 = 0x0c;
const INTERRUPT: u8 = 0x3c;
/// `Command.INTERRUPT_DISABLE` (bit 10): INTx off when set.
const INTX_DISABLE: u16 = 1 << 10;
/// A vendor-specific capability's ID, and the `cfg_type` of virtio's ISR capability in it, whose
/// BAR number and offset are at bytes 4 and 8 (virtio 1.x, 4.1.4).
const PCI_CAP_ID_VNDR: u8 = 0x09;
const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
const CAP_BAR: usize = 4;
const CAP_OFFSET: usize = 8;

/// A host bridge ready to be probed by several CPUs at once: its windows behind one lock.
pub struct PciProbe<'a> {
    host: &'a PciHost,
    windows: Mutex<Vec<WindowAlloc>>,
    buses: u16,
}

/// What probing one device came to, per function.
pub enum Probed {
    /// A virtio function with its transport, ready for a driver once its decoding is turned on
    /// (the second part, a handle the probe keeps until every CPU is done).
    Virtio(Candidate, Arc<Decoding>),
    /// Nothing at this device number.
    Empty(String),
    /// Present, but not for this kernel (not virtio, or a bridge): (place, what it is).
    Skipped(String, String),
    /// A function that could not be set up: (place, why).
    Refused(String, String),
}

/// A function's memory decoding and bus mastering: off while the function is probed, turned on
/// by [`Decoding::enable`], and off again when the last handle goes (Linux's
/// `pci_disable_device`): a device that goes away must not keep answering at BAR addresses the
/// next probe may give to another function.
///
/// Turning decoding on or off changes the machine's memory map (the function's BARs appear or
/// vanish), and under QEMU's TCG that must not happen while another CPU reaches PCI registers:
/// see [`Decoding::enable`]. The probe holds a handle to every function's `Decoding` for its
/// whole length (`devices::probe`), so that a function its driver refuses is turned off only at
/// the end, by one CPU, with the others done.
pub struct Decoding {
    cfg: IoMap,
}

/// `Command` register offset.
const COMMAND: usize = 0x04;

impl Decoding {
    /// The switch for the function whose configuration page `cfg` maps (left as it is: off).
    fn new(cfg: IoMap) -> Self {
        Self { cfg }
    }

    /// Turn on memory decoding and bus mastering, INTx enabled.
    ///
    /// Only while no other CPU touches a PCI function's configuration space or BARs: the probe
    /// calls it on one CPU, between the parallel phases. QEMU 10.0's TCG (Debian's 10.0.2+ds-2
    /// carries upstream's 2865bf1c, "system/physmem: fix use-after-free with dispatch") finds the
    /// device an MMIO TLB entry leads to by the entry's index into the address space's *current*
    /// section table, while each vCPU's TLB is flushed only when that vCPU next leaves its
    /// translated code. A function's BARs appearing rebuilds that table, and another CPU's
    /// access through an entry made before the rebuild reaches whatever the old index names in
    /// the new table: we saw cpu1's sizing write to 00:01.0's BAR 5 (ECAM offset 0x8024) arrive in
    /// 00:02.0's MSI-X PBA ("attempt to write to MSI-X PBA at 0x8024") in about 1 boot in 12
    /// while cpu0 turned on 00:02.0's decoding. Real PCI has no such window.
    pub fn enable(&self) {
        let cmd = self.cfg.read32(COMMAND) as u16;
        let on = (cmd | Command::MEMORY_SPACE.bits() | Command::BUS_MASTER.bits()) & !INTX_DISABLE;
        // The upper half is the status register, whose bits are write-1-to-clear: write 0 there.
        self.cfg.write32(COMMAND, u32::from(on));
    }
}

impl Drop for Decoding {
    fn drop(&mut self) {
        let cmd = self.cfg.read32(COMMAND) as u16;
        let off = cmd
            & !(Command::MEMORY_SPACE.bits()
                | Command::BUS_MASTER.bits()
                | Command::IO_SPACE.bits());
        self.cfg.write32(COMMAND, u32::from(off));
    }
}

/// Why a bridge cannot be used at all.
#[derive(Debug)]
pub enum HostError {
    /// No `ranges`: there is nowhere to place BARs.
    NoRanges,
    /// `ranges` has no memory window.
    NoMemoryWindow,
    /// Not DMA-coherent (the virtio HAL does no cache maintenance).
    NotCoherent,
    /// The ECAM region is smaller than one bus.
    EcamTooSmall {
        /// Its size.
        size: u64,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRanges => {
                f.write_str("no ranges property: there is no window to assign BARs from")
            }
            Self::NoMemoryWindow => f.write_str("ranges has no memory window to assign BARs from"),
            Self::NotCoherent => {
                f.write_str("not dma-coherent, and the virtio HAL does no cache maintenance")
            }
            Self::EcamTooSmall { size } => {
                write!(f, "its ECAM region of {size:#x} bytes holds no whole bus")
            }
        }
    }
}

/// One function's configuration page, mapped by the CPU that probes it, as `virtio-drivers`
/// reads configuration space.
struct FnConfig {
    base: usize,
}

impl ConfigurationAccess for FnConfig {
    fn read_word(&self, _df: DeviceFunction, off: u8) -> u32 {
        // SAFETY: `base` maps this function's 4 KiB configuration page as device memory for as
        // long as the `FnConfig` lives (its `IoMap` outlives it in `probe_function`), and `off`
        // (a u8, 4-byte aligned by every caller) stays inside it.
        unsafe { ((self.base + usize::from(off & !3)) as *const u32).read_volatile() }
    }

    fn write_word(&mut self, _df: DeviceFunction, off: u8, data: u32) {
        // SAFETY: as in `read_word`.
        unsafe { ((self.base + usize::from(off & !3)) as *mut u32).write_volatile(data) }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Self { base: self.base }
    }
}

impl<'a> PciProbe<'a> {
    /// Check `host` can be used and set up its windows.
    ///
    /// # Errors
    ///
    /// [`HostError`].
    pub fn new(host: &'a PciHost) -> Result<Self, HostError> {
        if !host.dma_coherent {
            return Err(HostError::NotCoherent);
        }
        let windows = host.windows.as_ref().ok_or(HostError::NoRanges)?;
        let windows: Vec<WindowAlloc> = windows
            .iter()
            .filter(|w| w.space != PciSpace::Io)
            .map(|&w| WindowAlloc::new(w))
            .collect();
        if windows.is_empty() {
            return Err(HostError::NoMemoryWindow);
        }
        let span = u64::from(host.bus_range.1 - host.bus_range.0) + 1;
        let buses = span.min(host.ecam.size >> 20);
        if buses == 0 {
            return Err(HostError::EcamTooSmall {
                size: host.ecam.size,
            });
        }
        Ok(Self {
            host,
            windows: Mutex::new(windows),
            buses: buses as u16,
        })
    }

    /// The device numbers to probe: every device of the root bus (buses behind bridges are not
    /// scanned).
    pub fn devices(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        (0..32).map(|d| (self.host.bus_range.0, d))
    }

    /// Map `bus:dev.func`'s configuration page.
    fn config(&self, bus: u8, dev: u8, func: u8) -> Result<IoMap, String> {
        let off = ecam_offset(self.host.bus_range.0, bus, dev, func);
        IoMap::new(PhysAddr(self.host.ecam.base + off), CONFIG_SIZE)
            .map_err(|e| format!("cannot map its configuration space: {e}"))
    }

    /// Probe device `dev` of `bus`: each of its functions.
    pub fn probe_device(&self, bus: u8, dev: u8) -> Vec<Probed> {
        let place = |f: u8| format!("pci {:04x}:{bus:02x}:{dev:02x}.{f}", 0);
        let mut out = Vec::new();
        let f0 = match self.config(bus, dev, 0) {
            Ok(m) => m,
            Err(e) => return alloc::vec![Probed::Refused(place(0), e)],
        };
        if f0.read32(0) & 0xffff == 0xffff {
            return alloc::vec![Probed::Empty(place(0))];
        }
        let multi = f0.read32(usize::from(HEADER)) & (0x80 << 16) != 0;
        drop(f0);
        for func in 0..if multi { 8 } else { 1 } {
            match self.probe_function(bus, dev, func) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => {}
                Err(e) => out.push(Probed::Refused(place(func), e)),
            }
        }
        out
    }

    fn probe_function(&self, bus: u8, dev: u8, func: u8) -> Result<Option<Probed>, String> {
        let place = format!("pci 0000:{bus:02x}:{dev:02x}.{func}");
        let cfg = self.config(bus, dev, func)?;
        let id = cfg.read32(usize::from(VENDOR_DEVICE));
        if id & 0xffff == 0xffff {
            return Ok(None);
        }
        let class = cfg.read32(usize::from(CLASS_REV)) >> 8;
        let header = (cfg.read32(usize::from(HEADER)) >> 16) & 0x7f;
        let what = format!("{:04x}:{:04x} class {class:06x}", id & 0xffff, id >> 16);
        if header == 1 {
            return Ok(Some(Probed::Skipped(
                place,
                format!("{what}: a PCI-PCI bridge (buses behind bridges are not scanned)"),
            )));
        }
        let df = DeviceFunction {
            bus,
            device: dev,
            function: func,
        };
        let mut root = PciRoot::new(FnConfig { base: cfg.base() });
        let info = virtio_drivers::transport::pci::bus::DeviceFunctionInfo {
            vendor_id: id as u16,
            device_id: (id >> 16) as u16,
            class: (class >> 16) as u8,
            subclass: (class >> 8) as u8,
            prog_if: class as u8,
            revision: cfg.read32(usize::from(CLASS_REV)) as u8,
            header_type: virtio_drivers::transport::pci::bus::HeaderType::from(header as u8),
        };
        let Some(kind) = virtio_device_type(&info) else {
            return Ok(Some(Probed::Skipped(
                place,
                format!("{what}: not a virtio device"),
            )));
        };
        let pin = (cfg.read32(usize::from(INTERRUPT)) >> 8) as u8;
        let irq = intx_route(&self.host.intx, self.host.intx_mask, bus, dev, func, pin)
            .map_err(|e| format!("{kind:?}: {e}"))?;
        let bars = self
            .assign_bars(&mut root, df)
            .map_err(|e| format!("{kind:?}: {e}"))?;
        // Decoding stays off here: `PciTransport::new` sizes each BAR it uses again
        // (`bar_info`), which with decoding on turns it off and on around every BAR, moving the
        // device in the memory map twice per BAR while other CPUs probe theirs. Linux sizes BARs
        // with decoding off too (`__pci_read_base`). The probe turns it on later, from one CPU
        // (`Decoding::enable` says why).
        let t = PciTransport::new::<VirtioHal, _>(&mut root, df)
            .map_err(|e| format!("{kind:?}: transport: {e}"))?;
        let isr = isr_address(&root, &cfg, df, &bars).map_err(|e| format!("{kind:?}: {e}"))?;
        let decoding = Arc::new(Decoding::new(self.config(bus, dev, func)?));
        let bars = bars.into_iter().map(|(_, map)| map).collect();
        // SAFETY: the transport's registers, the ISR status byte among them, are inside the BARs
        // `bars` maps (and registered for the HAL), which the `DeviceTransport` keeps as long as
        // the transport.
        let transport = unsafe {
            DeviceTransport::new(
                SomeTransport::Pci(t),
                Regs::Pci(bars, decoding.clone(), isr),
            )
        };
        Ok(Some(Probed::Virtio(
            Candidate {
                place,
                transport,
                irq,
                version: 0,
            },
            decoding,
        )))
    }

    /// Size every memory BAR of `df`, place it in a window, program it and map it: the
    /// mappings, each with its BAR's number.
    fn assign_bars(
        &self,
        root: &mut PciRoot<FnConfig>,
        df: DeviceFunction,
    ) -> Result<Vec<(u8, BarMap)>, String> {
        let bars = root.bars(df).map_err(|e| format!("BARs: {e}"))?;
        let mut maps = Vec::new();
        for (i, bar) in bars.iter().enumerate() {
            let Some(BarInfo::Memory {
                address_type, size, ..
            }) = bar
            else {
                continue; // unused, or an I/O BAR (not assigned)
            };
            if *size == 0 {
                continue;
            }
            let wide = *address_type == MemoryBarType::Width64;
            let (pci, cpu) = {
                let mut ws = self.windows.lock();
                let w = window_for(&ws, wide).map_err(|e| format!("BAR {i}: {e}"))?;
                ws[w]
                    .alloc(*size)
                    .map_err(|e: BarError| format!("BAR {i}: {e}"))?
            };
            if wide {
                root.set_bar_64(df, i as u8, pci);
            } else {
                root.set_bar_32(df, i as u8, pci as u32);
            }
            let map = IoMap::new(PhysAddr(cpu), *size as usize)
                .map_err(|e| format!("BAR {i} at {cpu:#x}: cannot map it: {e}"))?;
            maps.push((i as u8, BarMap::register(map)));
        }
        Ok(maps)
    }
}

/// Where `df`'s ISR status byte is mapped: its virtio ISR capability names a BAR and an offset,
/// looked up in `bars` (what `assign_bars` mapped), as `PciTransport::new` finds its own.
fn isr_address(
    root: &PciRoot<FnConfig>,
    cfg: &IoMap,
    df: DeviceFunction,
    bars: &[(u8, BarMap)],
) -> Result<usize, String> {
    let is_isr = |c: &virtio_drivers::transport::pci::bus::CapabilityInfo| {
        c.id == PCI_CAP_ID_VNDR
            && c.private_header as u8 >= 16
            && (c.private_header >> 8) as u8 == VIRTIO_PCI_CAP_ISR_CFG
    };
    let Some(cap) = root.capabilities(df).find(is_isr) else {
        // `PciTransport::new` has just found one in the same list: say what this walk saw.
        let seen: Vec<String> = root
            .capabilities(df)
            .map(|c| {
                format!(
                    "{:#x}: id {:#x} header {:#06x}",
                    c.offset, c.id, c.private_header
                )
            })
            .collect();
        return Err(format!(
            "no virtio ISR capability (the list: {})",
            seen.join(", ")
        ));
    };
    if !cap.offset.is_multiple_of(4) {
        return Err(format!(
            "the ISR capability at {:#x} is not 4-byte aligned",
            cap.offset
        ));
    }
    let bar = cfg.read32(usize::from(cap.offset) + CAP_BAR) as u8;
    let offset = cfg.read32(usize::from(cap.offset) + CAP_OFFSET) as usize;
    let map = bars
        .iter()
        .find_map(|(i, m)| (*i == bar).then_some(m.map()))
        .ok_or_else(|| format!("the ISR capability names BAR {bar}, which is not mapped"))?;
    if offset >= map.len() {
        return Err(format!(
            "the ISR capability's offset {offset:#x} is outside BAR {bar} ({:#x} bytes)",
            map.len()
        ));
    }
    Ok(map.base() + offset)
}

impl fmt::Display for PciProbe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: ECAM {:#x}, buses {}-{}",
            self.host.path,
            self.host.ecam.base,
            self.host.bus_range.0,
            u16::from(self.host.bus_range.0) + self.buses - 1
        )?;
        for w in self.windows.lock().iter() {
            write!(
                f,
                ", {:?} window {:#x}+{:#x} ({:#x} assigned)",
                w.window.space,
                w.window.cpu_base,
                w.window.size,
                w.used()
            )?;
        }
        Ok(())
    }
}
