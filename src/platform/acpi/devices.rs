//! The FADT (PSCI and its conduit), the GTDT (the timer's interrupts), the SPCR (the console)
//! and the MCFG (PCIe ECAM windows).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::mcfg::McfgEntry;
use acpi::spcr::{Spcr, SpcrInterfaceType};

use super::tables::{HEADER_LEN, Tables, le, read};
use super::{AcpiError, Table};
use crate::mm::region::{self, Region};
use crate::platform::devicetree::{Console, Psci, PsciMethod, Timer, UartKind};

const FADT: Table = Table::Sdt(*b"FACP");
const GTDT: Table = Table::Sdt(*b"GTDT");
const SPCR: Table = Table::Sdt(*b"SPCR");
const MCFG: Table = Table::Sdt(*b"MCFG");

/// The FADT's bytes up to and including `ARM_BOOT_ARCH` (offset 129) and `FADT Minor Version`
/// (131): ACPI 5.1, the first to describe arm64.
const FADT_ARM_END: usize = 132;
/// The FADT's OEM Table ID, in its header.
const OEM_TABLE_ID: usize = 16;

/// What the FADT says.
pub(super) struct FadtInfo {
    pub psci: Option<Psci>,
    /// Major (the header's revision) and minor version.
    pub version: (u8, u8),
    pub oem_table_id: Option<[u8; 8]>,
    pub notes: Vec<String>,
}

/// Read the FADT: PSCI, and whether to call it with HVC or SMC (`ARM_BOOT_ARCH`).
pub(super) fn fadt(t: &Tables<'_>) -> Result<FadtInfo, AcpiError> {
    let b = t.get(b"FACP")?.ok_or(AcpiError::Missing(FADT))?;
    if b.len() < FADT_ARM_END {
        return Err(AcpiError::TooShort {
            table: FADT,
            field: "ARM_BOOT_ARCH and FADT Minor Version (ACPI 5.1)",
            length: b.len(),
            need: FADT_ARM_END,
        });
    }
    let f: Fadt = read(b);
    let arm = f.arm_boot_arch;
    let psci = arm.implements_psci().then(|| Psci {
        method: if arm.use_hvc_as_psci_conduit() {
            PsciMethod::Hvc
        } else {
            PsciMethod::Smc
        },
    });
    let mut notes = Vec::new();
    let flags = f.flags;
    if !flags.system_is_hw_reduced_acpi() {
        notes.push(
            "FADT: Flags HW_REDUCED_ACPI is clear, but arm64 machines are hardware-reduced".into(),
        );
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[OEM_TABLE_ID..OEM_TABLE_ID + 8]);
    Ok(FadtInfo {
        psci,
        version: (b[8], b[131]),
        oem_table_id: Some(id),
        notes,
    })
}

/// The GTDT's fields up to the virtual timer's flags: the non-secure EL1 (physical) timer's
/// GSIV at 56, the virtual timer's at 64.
const GTDT_VIRT_END: usize = 72;
const GTDT_NS_EL1_GSIV: usize = 56;
const GTDT_VIRT_EL1_GSIV: usize = 64;
/// The kernel's timer driver takes the virtual timer's interrupt as INTID 27, as the Arm Base
/// System Architecture fixes it (`drivers::timer::PPI`).
const BSA_VIRT_TIMER_INTID: u32 = 27;

/// Read the GTDT: the architected timer's interrupts.
pub(super) fn gtdt(t: &Tables<'_>) -> Result<(Option<Timer>, Vec<String>), AcpiError> {
    let b = t.get(b"GTDT")?.ok_or(AcpiError::Missing(GTDT))?;
    if b.len() < GTDT_VIRT_END {
        return Err(AcpiError::TooShort {
            table: GTDT,
            field: "Virtual EL1 Timer GSIV and Flags",
            length: b.len(),
            need: GTDT_VIRT_END,
        });
    }
    let gsiv = |at| le(b, at, 4).unwrap_or(0) as u32;
    let ppi = |field, v: u32| {
        if v == 0 {
            Err(AcpiError::BadField {
                table: GTDT,
                field,
                value: 0,
                why: "is no interrupt",
            })
        } else if !(16..32).contains(&v) {
            Err(AcpiError::BadField {
                table: GTDT,
                field,
                value: u64::from(v),
                why: "is not a PPI (INTID 16 to 31)",
            })
        } else {
            Ok(v)
        }
    };
    let virt = ppi("Virtual EL1 Timer GSIV", gsiv(GTDT_VIRT_EL1_GSIV))?;
    let mut notes = Vec::new();
    let phys = match ppi("Non-Secure EL1 Timer GSIV", gsiv(GTDT_NS_EL1_GSIV)) {
        Ok(v) => Some(v),
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    if virt != BSA_VIRT_TIMER_INTID {
        notes.push(format!(
            "GTDT: Virtual EL1 Timer GSIV is {virt}, but the timer driver takes INTID {BSA_VIRT_TIMER_INTID}"
        ));
    }
    Ok((
        Some(Timer {
            virt_irq: Some(virt),
            phys_irq: phys,
            frequency: None,
        }),
        notes,
    ))
}

/// What the SPCR says: the console (`None` when there is none the kernel can use), its
/// interrupt, and why not.
pub(super) struct SpcrInfo {
    pub console: Option<Console>,
    pub irq: Option<u32>,
    pub notes: Vec<String>,
}

/// The SPCR's fields through the Global System Interrupt (offset 54, 4 bytes).
const SPCR_GSIV_END: usize = 58;

/// Read the SPCR: the console UART. Nothing here stops the boot (the kernel then has no console
/// but the early buffer); each problem is a note naming the field.
pub(super) fn spcr(t: &Tables<'_>, ram: &[Region]) -> SpcrInfo {
    let mut out = SpcrInfo {
        console: None,
        irq: None,
        notes: Vec::new(),
    };
    let b = match t.get(b"SPCR") {
        Ok(Some(b)) => b,
        Ok(None) => {
            out.notes.push(
                "ACPI: the XSDT lists no SPCR: no console (output stays in the early buffer)"
                    .into(),
            );
            return out;
        }
        Err(e) => {
            out.notes.push(format!("{e}: no console"));
            return out;
        }
    };
    if b.len() < SPCR_GSIV_END {
        let e = AcpiError::TooShort {
            table: SPCR,
            field: "Base Address and Global System Interrupt",
            length: b.len(),
            need: SPCR_GSIV_END,
        };
        out.notes.push(format!("{e}: no console"));
        return out;
    }
    let s: Spcr = read(b);
    out.irq = s.global_system_interrupt();
    let gas = match s.base_address() {
        Some(Ok(gas)) if gas.address == 0 => None,
        other => other,
    };
    let gas = match gas {
        None => {
            out.notes
                .push("SPCR: Base Address is empty (0): the firmware redirects no console".into());
            return out;
        }
        Some(Err(_)) => {
            out.notes.push(
                "SPCR: Base Address is no valid Generic Address Structure: no console".into(),
            );
            return out;
        }
        Some(Ok(gas)) => gas,
    };
    if gas.address_space != AddressSpace::SystemMemory {
        out.notes.push(format!(
            "SPCR: Base Address {:#x} is not a memory-mapped register block ({:?}): no console",
            gas.address, gas.address_space
        ));
        return out;
    }
    let (kind, size) = match s.interface_type() {
        SpcrInterfaceType::ArmPL011 => (UartKind::Pl011, 0x1000),
        SpcrInterfaceType::Bcm2835 => (UartKind::Bcm2835Aux, 0x40),
        SpcrInterfaceType::Full16550
        | SpcrInterfaceType::Full16450
        | SpcrInterfaceType::Generic16550 => (UartKind::Unknown("16550 (SPCR)".into()), 0x1000),
        other => (UartKind::Unknown(format!("{other:?} (SPCR)")), 0x1000),
    };
    if region::overlaps(ram, Region::new(gas.address, size)) {
        out.notes.push(format!(
            "SPCR: Base Address {:#x} is RAM (UEFI memory map), not a UART: no console",
            gas.address
        ));
        return out;
    }
    out.console = Some(Console {
        path: "SPCR".into(),
        kind,
        base: gas.address,
        size,
        options: s.baud_rate().map(|b| b.to_string()),
        clock_hz: s.uart_clock_frequency().map(|c| c.get()),
    });
    out
}

/// A PCIe ECAM window (MCFG): configuration space for buses `bus_start..=bus_end` of
/// `segment`, at `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecam {
    /// Physical base address of the window (that of bus 0, even when `bus_start` is not 0).
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// MCFG: the header, 8 reserved bytes, then 16-byte entries.
const MCFG_ENTRIES: usize = HEADER_LEN + 8;
const MCFG_ENTRY_LEN: usize = 16;

/// Read the MCFG: every ECAM window (none when there is no MCFG).
pub(super) fn mcfg(t: &Tables<'_>) -> Result<Vec<Ecam>, AcpiError> {
    let Some(b) = t.get(b"MCFG")? else {
        return Ok(Vec::new());
    };
    let body = b.get(MCFG_ENTRIES..).unwrap_or(&[]);
    if b.len() < MCFG_ENTRIES || !body.len().is_multiple_of(MCFG_ENTRY_LEN) {
        return Err(AcpiError::BadField {
            table: MCFG,
            field: "Length",
            value: b.len() as u64,
            why: "is not 44 bytes plus whole 16-byte entries",
        });
    }
    body.chunks_exact(MCFG_ENTRY_LEN)
        .map(|e| {
            let e: McfgEntry = read(e);
            let (start, end) = (e.bus_number_start, e.bus_number_end);
            if end < start {
                return Err(AcpiError::BadField {
                    table: MCFG,
                    field: "End Bus Number",
                    value: u64::from(end),
                    why: "is below the Start Bus Number",
                });
            }
            Ok(Ecam {
                base: e.base_address,
                segment: e.pci_segment_group,
                bus_start: start,
                bus_end: end,
            })
        })
        .collect()
}
