//! The machine as the device tree describes it: RAM, reservations, console, GIC, timer, PSCI and
//! CPUs, with bus addresses already translated to CPU physical addresses.
//!
//! [`parse`] reads the blob in one pass of the front door ([`walk`](super::fdt_front::walk)), which checks
//! every token before handing it on, so it accepts any bytes without panicking. From that pass
//! it keeps a flat index of the tree (each node's name, parent and properties, pointing into the
//! blob): every lookup after it reads the index, never the blob again. Cells are decoded here,
//! with the parent's `#address-cells`/`#size-cells` and checked lengths.
//!
//! This file holds what callers see: the [`Machine`] and its parts, [`DtError`], and [`parse`].
//! `index` is the flat index and its readers, which know nothing of machines; `parts` reads each
//! part of a [`Machine`] out of it.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::fdt_front::FdtError;
use crate::mm::region::Region;

mod devices;
mod index;
mod parts;

use index::{ROOT, Tree};

/// Everything the kernel takes from the device tree, as [`parse`] found it (or the ACPI tables,
/// or a built-in description). The default knows nothing: no RAM, no devices, no CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// `/model`, or the first root `compatible` string, or "unknown".
    pub model: String,
    /// The root node's `compatible` strings, most specific first.
    pub compatible: Vec<String>,
    /// Every `device_type = "memory"` range: sorted, empty ones dropped, overlaps merged. Like
    /// `reserved`, every region is non-empty and ends at or below `u64::MAX` (`base + size` never
    /// overflows; a range reaching the top of the address space loses its last byte), so that
    /// readers may add `base + size` without checks.
    pub ram: Vec<Region>,
    /// `/memreserve/` entries and `/reserved-memory` children with a `reg`, sorted.
    pub reserved: Vec<Region>,
    /// The `/reserved-memory` children that also say `no-map`, sorted (a subset of
    /// `reserved`): RAM the kernel must not map at all, not even in the linear map (a secure
    /// carve-out, a co-processor's memory), since the CPU may fetch speculatively from anything
    /// mapped cacheable.
    pub no_map: Vec<Region>,
    /// RAM the firmware owns and the kernel only reads: the ACPI tables' regions of the UEFI
    /// memory map, sorted (a subset of `ram` and of `reserved`). The linear map maps them
    /// read-only; the frame allocator never gets them. A device tree yields none.
    pub read_only: Vec<Region>,
    /// The UART `/chosen`'s `stdout-path` names, if it names one with a usable `reg`.
    pub console: Option<Console>,
    /// The root's `interrupt-parent` GIC, or the first GIC found by `compatible`.
    pub gic: Option<Gic>,
    /// The first available architected timer node.
    pub timer: Option<Timer>,
    /// The first available `arm,psci*` node whose `method` is `hvc` or `smc`.
    pub psci: Option<Psci>,
    /// Available `/cpus` children with `device_type = "cpu"`, in device-tree order.
    pub cpus: Vec<Cpu>,
    /// `/chosen`'s `bootargs`, the kernel command line; empty when absent.
    pub bootargs: String,
    /// Every available `virtio,mmio` transport, in device-tree order (QEMU virt: 32 slots,
    /// most of them empty).
    pub virtio_mmio: Vec<VirtioMmio>,
    /// Every available generic PCIe host bridge (`pci-host-ecam-generic`).
    pub pci_hosts: Vec<PciHost>,
    /// The VideoCore mailbox (`brcm,bcm2835-mbox`: the Raspberry Pi's firmware interface).
    pub mailbox: Option<Mailbox>,
    /// What was odd and ignored, for the boot log.
    pub notes: Vec<String>,
}

/// The boot console's UART.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Console {
    /// The node's full path, after alias resolution.
    pub path: String,
    /// Which UART it is, from its `compatible`.
    pub kind: UartKind,
    /// CPU physical address, after every parent bus's `ranges`.
    pub base: u64,
    /// Length of the register block in bytes (its first `reg` entry).
    pub size: u64,
    /// What followed ':' in `stdout-path`, e.g. "115200n8".
    pub options: Option<String>,
    /// The UART's `clock-frequency`, or that of the fixed clock its `clocks` points at.
    pub clock_hz: Option<u32>,
}

/// The UART models the console can be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// Arm's PrimeCell PL011 ("arm,pl011"), QEMU virt's UART and the Pi 4's PL011.
    Pl011,
    /// The Raspberry Pi's mini UART ("brcm,bcm2835-aux-uart").
    Bcm2835Aux,
    /// First compatible string of a UART we have no driver for.
    Unknown(String),
}

/// The interrupt controller's register ranges, CPU physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    /// Which architecture version, from `compatible`; tells how to read `cpu_or_redist`.
    pub version: GicVersion,
    /// The distributor (GICD).
    pub dist: Region,
    /// GICC for a GICv2, the redistributor range (GICR) for a GICv3.
    pub cpu_or_redist: Region,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// GIC architecture version.
pub enum GicVersion {
    /// GICv2: a distributor and a memory-mapped CPU interface (GICC).
    V2,
    /// GICv3: a distributor and per-CPU redistributors (GICR); the CPU interface is system registers.
    V3,
}

/// How an interrupt line signals, as the device tree's specifier says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Rising edge: the GIC latches each edge (virtio-mmio on QEMU virt).
    Edge,
    /// Active-high level: pending while the device holds it (PCI INTx).
    Level,
}

/// A shared peripheral interrupt (SPI) of the GIC, from a device-tree specifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqSpec {
    /// The GIC INTID (32 + the specifier's SPI number).
    pub intid: u32,
    /// Edge or level.
    pub trigger: Trigger,
}

/// Why a device's interrupt cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// The node has no `interrupts` property.
    Missing,
    /// No `interrupt-parent` on the node or an ancestor.
    NoParent,
    /// The interrupt parent is no GIC with 3-cell specifiers.
    ParentNotGic {
        /// The parent's path.
        parent: String,
    },
    /// `interrupts` is shorter than one specifier.
    BadLength {
        /// Its length in bytes.
        len: usize,
    },
    /// A PPI: private to each CPU, never a device's.
    NotSpi {
        /// Its INTID.
        intid: u32,
    },
    /// Neither SPI nor PPI, or an SPI number beyond the GIC's range.
    BadSpecifier {
        /// The specifier's three cells.
        cells: [u32; 3],
    },
    /// A falling edge or a low level, which a GIC cannot take.
    Polarity {
        /// Its INTID.
        intid: u32,
        /// The specifier's trigger flags (bits 3:0).
        flags: u32,
    },
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no interrupts property"),
            Self::NoParent => f.write_str("no interrupt-parent on the node or above it"),
            Self::ParentNotGic { parent } => {
                write!(
                    f,
                    "its interrupt parent {parent} is not a GIC with 3-cell specifiers"
                )
            }
            Self::BadLength { len } => {
                write!(f, "interrupts is {len} bytes, shorter than one specifier")
            }
            Self::NotSpi { intid } => write!(f, "interrupt {intid} is a PPI, not a device's SPI"),
            Self::BadSpecifier { cells } => write!(f, "interrupt specifier {cells:?} names no SPI"),
            Self::Polarity { intid, flags } => write!(
                f,
                "interrupt {intid} has trigger flags {flags:#x}: a GIC takes rising edges (1) and high levels (4) only"
            ),
        }
    }
}

/// One `virtio,mmio` transport slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    /// The node's full path.
    pub path: String,
    /// Its register block, CPU physical (0x200 bytes on QEMU virt).
    pub reg: Region,
    /// Its interrupt, or why there is none to use.
    pub irq: Result<IrqSpec, IrqError>,
    /// `dma-coherent` (on it or an ancestor): the device snoops the CPUs' caches.
    pub dma_coherent: bool,
}

/// The Raspberry Pi's VideoCore mailbox and how the VideoCore sees RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The node's full path.
    pub path: String,
    /// Its registers, CPU physical.
    pub reg: Region,
    /// The parent bus's `dma-ranges`, first entry: (bus address, CPU address, size). The
    /// VideoCore reads a buffer at CPU address `a` at bus address `a - cpu + bus`, for `a` in
    /// `cpu..cpu + size`. `None`: no `dma-ranges` (identity).
    pub dma: Option<(u64, u64, u64)>,
}

/// A PCI address space a bridge window forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciSpace {
    /// I/O space.
    Io,
    /// 32-bit memory space.
    Mem32,
    /// 64-bit memory space.
    Mem64,
}

/// One entry of a PCI bridge's `ranges`: CPU addresses `cpu_base..+size` reach PCI addresses
/// `pci_base..+size` of `space`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciWindow {
    /// Which PCI address space.
    pub space: PciSpace,
    /// Marked prefetchable.
    pub prefetchable: bool,
    /// First PCI bus address.
    pub pci_base: u64,
    /// First CPU physical address.
    pub cpu_base: u64,
    /// Bytes.
    pub size: u64,
}

/// One `interrupt-map` entry of a PCI bridge: the child's `phys.hi` (bus, device, function in
/// bits 23:8) and INTx pin (1-4, INTA-INTD) to a GIC interrupt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntxRoute {
    /// The child unit address's first cell, to compare under the mask.
    pub child_hi: u32,
    /// The pin, 1 (INTA) to 4 (INTD).
    pub pin: u32,
    /// The GIC interrupt, or why the entry is unusable.
    pub irq: Result<IrqSpec, IrqError>,
}

/// A generic PCIe host bridge: ECAM configuration space and the windows it forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciHost {
    /// The node's full path.
    pub path: String,
    /// The ECAM region, CPU physical: 1 MiB per bus from the first of `bus_range`.
    pub ecam: Region,
    /// First and last bus number behind it (`bus-range`; 0-255 when absent).
    pub bus_range: (u8, u8),
    /// The `ranges` windows; `None` when the node has no `ranges` (nothing can be assigned).
    pub windows: Option<Vec<PciWindow>>,
    /// INTx routing (`interrupt-map`), empty when absent.
    pub intx: Vec<IntxRoute>,
    /// `interrupt-map-mask`: phys.hi, phys.mid, phys.lo, pin.
    pub intx_mask: [u32; 4],
    /// `dma-coherent` on the bridge or above it.
    pub dma_coherent: bool,
}

/// The architected timer's interrupts as GIC INTIDs (PPI n is INTID 16 + n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// The virtual timer's interrupt (the node's third entry); `None` if unreadable.
    pub virt_irq: Option<u32>,
    /// The non-secure physical timer's interrupt (the node's second entry); `None` if unreadable.
    pub phys_irq: Option<u32>,
    /// `clock-frequency`, present only where firmware fails to program CNTFRQ_EL0.
    pub frequency: Option<u32>,
}

/// The PSCI firmware interface (CPU on/off, system reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Psci {
    /// The instruction that calls the firmware.
    pub method: PsciMethod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// How PSCI calls reach the firmware.
pub enum PsciMethod {
    /// `HVC`: the firmware runs at EL2 (a hypervisor, QEMU's virt without EL3).
    Hvc,
    /// `SMC`: the firmware runs at EL3 (Trusted Firmware).
    Smc,
}

/// One CPU the device tree lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The MPIDR affinity fields, as in `reg`.
    pub mpidr: u64,
    /// How to start it.
    pub enable_method: EnableMethod,
}

#[derive(Clone, Debug, PartialEq, Eq)]
/// A CPU's `enable-method`: how the boot CPU starts it.
pub enum EnableMethod {
    /// PSCI `CPU_ON`.
    Psci,
    /// Write the entry point to `release_addr` and wake the CPU with `SEV`.
    SpinTable {
        /// Physical address of the 8-byte word the CPU polls: aligned, in RAM and reserved.
        release_addr: u64,
    },
    /// A method this kernel cannot use (also a spin-table with a bad release address); the CPU
    /// stays off.
    Other(String),
    /// No `enable-method` at all; the CPU stays off.
    Missing,
}

/// Why [`parse`] refused a device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The front door refused the blob.
    Fdt(FdtError),
    /// No `device_type = "memory"` node has a non-empty `reg`.
    NoMemory,
    /// `/cpus` is missing or has no available `device_type = "cpu"` child.
    NoCpus,
    /// A CPU node has no `reg`, so its MPIDR is unknown.
    CpuWithoutReg {
        /// The CPU node's full path.
        path: String,
    },
    /// A node declares more than two address or size cells; numbers are read into `u64`.
    CellsTooLarge {
        /// The full path of the node declaring the cells.
        path: String,
        /// Its `#address-cells` (2 when absent).
        address_cells: u32,
        /// Its `#size-cells` (1 when absent).
        size_cells: u32,
    },
    /// `path` has a `property` (`reg`, `ranges`) but `parent` declares zero cells for it, so
    /// not one number can be read out of it.
    ZeroCells {
        /// The full path of the node with the property.
        path: String,
        /// The property's name.
        property: &'static str,
        /// The full path of the parent declaring the cells.
        parent: String,
    },
    /// A property's length is not what its cells or type require.
    BadProperty {
        /// The full path of the node with the property.
        path: String,
        /// The property's name.
        property: &'static str,
        /// The property's length in bytes.
        len: usize,
    },
}

impl From<FdtError> for DtError {
    fn from(e: FdtError) -> Self {
        DtError::Fdt(e)
    }
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Fdt(e) => write!(f, "{e}"),
            DtError::NoMemory => write!(
                f,
                "device tree: no RAM: no root child with device_type = \"memory\" (/memory@...) has a non-empty reg"
            ),
            DtError::NoCpus => write!(
                f,
                "device tree: no CPU: /cpus is missing or has no available child with device_type = \"cpu\""
            ),
            DtError::CpuWithoutReg { path } => write!(f, "device tree: CPU node {path} has no reg"),
            DtError::CellsTooLarge {
                path,
                address_cells,
                size_cells,
            } => write!(
                f,
                "device tree: {path} has #address-cells = {address_cells}, #size-cells = {size_cells}; at most 2 are supported"
            ),
            DtError::ZeroCells {
                path,
                property,
                parent,
            } => write!(
                f,
                "device tree: {path}: property {property} cannot be read: {parent} has #address-cells = 0 and #size-cells = 0"
            ),
            DtError::BadProperty {
                path,
                property,
                len,
            } => {
                write!(
                    f,
                    "device tree: {path}: property {property} has a malformed length of {len} bytes"
                )
            }
        }
    }
}

/// Parse `blob` (any bytes: the front door checks it as it goes) into a [`Machine`].
pub fn parse(blob: &[u8]) -> Result<Machine, DtError> {
    let (mut tree, checked) = Tree::read(blob)?;

    let compatible = tree.strlist(ROOT, "compatible");
    let model = tree
        .string(ROOT, "model")
        .or_else(|| compatible.first().cloned())
        .unwrap_or_else(|| "unknown".to_owned());
    let ram = tree.ram()?;
    let (mut reserved, no_map) = tree.reserved(checked.reservations())?;
    let mut cpus = tree.cpus()?;
    tree.check_release_addrs(&ram, &mut reserved, &mut cpus);
    let chosen = tree.resolve_path("/chosen");
    let bootargs = chosen
        .and_then(|c| tree.string(c, "bootargs"))
        .unwrap_or_default();
    let console = match chosen {
        Some(c) => tree.console(c)?,
        None => {
            tree.note("no /chosen node: no console (output stays in the early buffer)".to_owned());
            None
        }
    };
    let gic = tree.gic()?;
    let timer = tree.timer();
    let psci = tree.psci();
    let virtio_mmio = tree.virtio_mmio()?;
    let pci_hosts = tree.pci_hosts()?;
    let mailbox = tree.mailbox()?;
    Ok(Machine {
        model,
        compatible,
        ram,
        reserved,
        no_map,
        read_only: Vec::new(),
        console,
        gic,
        timer,
        psci,
        cpus,
        bootargs,
        virtio_mmio,
        pci_hosts,
        mailbox,
        notes: tree.notes,
    })
}

#[cfg(test)]
mod tests;
