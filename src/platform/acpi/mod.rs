//! The machine as its ACPI tables describe it, for machines that UEFI boots with ACPI only: the
//! same [`Machine`] the device tree gives, so that everything above boot is unchanged.
//!
//! | table | what the kernel takes from it |
//! | --- | --- |
//! | RSDP, XSDT | where the tables are (ACPI 2.0 or later: 64-bit addresses) |
//! | FADT (`FACP`) | PSCI, and its conduit (`ARM_BOOT_ARCH`: HVC or SMC); the OEM for the model |
//! | MADT (`APIC`) | each CPU (GICC entries: MPIDR, enabled), the GIC: distributor and version (GICD), redistributors (GICR) or the GICv2 CPU interface (GICC) |
//! | GTDT | the architected timer's PPIs |
//! | SPCR | the console: PL011, the Pi's mini UART (BCM2835) or a 16550, its address and interrupt |
//! | MCFG | PCIe ECAM windows (kept in [`AcpiInfo`]: the `Machine` has no place for them yet) |
//!
//! Firmware input is checked, never trusted: the RSDP's checksums and revision, each table's
//! length (at least a header, within the memory it lies in) and checksum, each MADT entry's
//! length against the table's; a MADT without the boot CPU, an unknown GIC version, a GTDT whose
//! timer interrupt is 0 or no PPI, an SPCR whose address is RAM are refused with an
//! [`AcpiError`] or a note, each naming the table and the field. The tables are read through
//! [`Memory`], which the kernel implements over the linear map (read-only there, `mm::boot`) and
//! the host tests and the fuzzer over a byte buffer.
//!
//! `tables` finds and checks the tables; `madt` reads the CPUs and the GIC, `devices` the FADT,
//! GTDT, SPCR and MCFG.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::devicetree::Machine;

mod devices;
mod madt;
mod tables;

pub use devices::Ecam;

/// Memory the tables may be in.
pub trait Memory {
    /// The `len` bytes at physical address `pa`, if every one of them is memory the tables may
    /// be in (the UEFI memory map's ACPI regions); `None` otherwise.
    fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]>;
}

/// Which table something is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// The Root System Description Pointer.
    Rsdp,
    /// A table with this signature.
    Sdt([u8; 4]),
    /// A table whose header could not be read.
    Unknown,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsdp => f.write_str("RSDP"),
            Self::Sdt(s) => {
                let name = match s {
                    b"APIC" => "MADT (APIC)",
                    b"FACP" => "FADT (FACP)",
                    _ => {
                        for &c in s {
                            if c.is_ascii_graphic() || c == b' ' {
                                write!(f, "{}", c as char)?;
                            } else {
                                write!(f, "\\x{c:02x}")?;
                            }
                        }
                        return Ok(());
                    }
                };
                f.write_str(name)
            }
            Self::Unknown => f.write_str("a table"),
        }
    }
}

/// Why the ACPI tables cannot describe the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// `len` bytes at `pa` are not all in memory the tables may be in: a bad address, or a table
    /// running past the region it lies in.
    Unreadable {
        /// What was being read.
        table: Table,
        /// Where.
        pa: u64,
        /// How many bytes (a table's `Length`, or its header).
        len: u64,
    },
    /// The signature is not the one the pointer promised.
    BadSignature {
        /// The RSDP, or the table the RSDP named.
        table: Table,
        /// Where.
        pa: u64,
    },
    /// A checksum that does not make the bytes sum to 0.
    Checksum {
        /// Whose.
        table: Table,
        /// Where.
        pa: u64,
        /// Which checksum field.
        field: &'static str,
        /// What the bytes sum to.
        sum: u8,
    },
    /// A `Length` field that cannot be right.
    BadLength {
        /// Whose.
        table: Table,
        /// Where.
        pa: u64,
        /// The field's value.
        length: u64,
        /// What it must be.
        why: &'static str,
    },
    /// An ACPI 1.0 RSDP (revision 0 or 1): no XSDT, which arm64 needs.
    OldRsdp {
        /// The RSDP's revision.
        revision: u8,
    },
    /// The XSDT lists no such table, and the kernel needs it.
    Missing(Table),
    /// A table too short for a field the kernel reads.
    TooShort {
        /// Which table.
        table: Table,
        /// The field.
        field: &'static str,
        /// The table's length.
        length: usize,
        /// The bytes the field needs.
        need: usize,
    },
    /// A MADT entry whose `Length` is below 2 or runs past the table's end, or that is too short
    /// for its type.
    BadEntry {
        /// The table (the MADT).
        table: Table,
        /// The entry's offset in the table.
        offset: usize,
        /// Its type.
        ty: u8,
        /// Its `Length`.
        length: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// The table lacks an entry the kernel needs.
    NoEntry {
        /// Which table.
        table: Table,
        /// The entry's kind.
        entry: &'static str,
        /// What that leaves the kernel without.
        why: &'static str,
    },
    /// A field whose value cannot be right.
    BadField {
        /// Which table.
        table: Table,
        /// The field, with the entry it is in when it is in one.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No enabled GICC entry has the boot CPU's MPIDR.
    NoBootCpu {
        /// The boot CPU's MPIDR affinity fields.
        mpidr: u64,
    },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { table, pa, len } => write!(
                f,
                "ACPI: {table} at {pa:#x}: its {len:#x} bytes are not all in the ACPI memory of the UEFI memory map"
            ),
            Self::BadSignature { table, pa } => {
                write!(f, "ACPI: {table} at {pa:#x}: Signature is wrong")
            }
            Self::Checksum {
                table,
                pa,
                field,
                sum,
            } => write!(
                f,
                "ACPI: {table} at {pa:#x}: {field} is wrong: the bytes sum to {sum:#04x}, not 0"
            ),
            Self::BadLength {
                table,
                pa,
                length,
                why,
            } => write!(f, "ACPI: {table} at {pa:#x}: Length {length:#x}: {why}"),
            Self::OldRsdp { revision } => write!(
                f,
                "ACPI: RSDP Revision {revision} is ACPI 1.0, which has no XSDT (arm64 needs ACPI 5.1 or later)"
            ),
            Self::Missing(t) => write!(f, "ACPI: the XSDT lists no {t}"),
            Self::TooShort {
                table,
                field,
                length,
                need,
            } => write!(
                f,
                "ACPI: {table}: Length {length:#x} is too short for {field} (needs {need:#x} bytes)"
            ),
            Self::BadEntry {
                table,
                offset,
                ty,
                length,
                why,
            } => write!(
                f,
                "ACPI: {table}: the entry at offset {offset:#x} (Type {ty:#x}, Length {length:#x}) {why}"
            ),
            Self::NoEntry { table, entry, why } => {
                write!(f, "ACPI: {table} has no {entry} entry: {why}")
            }
            Self::BadField {
                table,
                field,
                value,
                why,
            } => write!(f, "ACPI: {table}: {field} {value:#x} {why}"),
            Self::NoBootCpu { mpidr } => write!(
                f,
                "ACPI: MADT (APIC): no enabled GICC entry has the boot CPU's MPIDR {mpidr:#x}"
            ),
        }
    }
}

/// What the tables say beyond the [`Machine`], for the boot log and the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcpiInfo {
    /// The RSDP's revision (2: ACPI 2.0 or later).
    pub rsdp_revision: u8,
    /// The XSDT's physical address.
    pub xsdt: u64,
    /// Every table the XSDT lists: signature, address, length (0 when unreadable).
    pub tables: Vec<([u8; 4], u64, u64)>,
    /// The FADT's version, major and minor (6.0 on QEMU).
    pub fadt_version: (u8, u8),
    /// PCIe ECAM windows (MCFG).
    pub ecam: Vec<Ecam>,
    /// The console's interrupt (SPCR), as a GIC INTID.
    pub console_irq: Option<u32>,
    /// GIC ITS frames (MADT), physical addresses.
    pub its: Vec<u64>,
}

/// Fill in `m` (whose memory and command line are already there, from the UEFI memory map and
/// the load options) from the ACPI tables the RSDP at `rsdp` leads to. `boot_mpidr` is the boot
/// CPU's MPIDR (the MADT must list it). What is odd but usable goes to `m.notes`.
///
/// # Errors
///
/// [`AcpiError`]: the tables are missing, unreadable or malformed where the kernel needs them.
pub fn describe(
    mem: &dyn Memory,
    rsdp: u64,
    boot_mpidr: u64,
    m: &mut Machine,
) -> Result<AcpiInfo, AcpiError> {
    let t = tables::Tables::read(mem, rsdp)?;
    let mut info = AcpiInfo {
        rsdp_revision: t.rsdp_revision,
        xsdt: t.xsdt,
        ..AcpiInfo::default()
    };
    for e in &t.entries {
        let len = e.bytes.as_ref().map_or(0, |b| b.len() as u64);
        info.tables.push((e.sig, e.pa, len));
        if let Err(err) = &e.bytes {
            m.notes.push(alloc::format!("{err} (table left unread)"));
        }
    }
    let fadt = devices::fadt(&t)?;
    info.fadt_version = fadt.version;
    m.psci = fadt.psci;
    m.notes.extend(fadt.notes);
    m.model = model(&t.oem_id, fadt.oem_table_id.as_ref());
    m.compatible = Vec::new();

    let madt = madt::parse(&t, boot_mpidr, m.psci.is_some())?;
    m.cpus = madt.cpus;
    m.gic = Some(madt.gic);
    info.its = madt.its;
    m.notes.extend(madt.notes);

    match devices::gtdt(&t) {
        Ok((timer, notes)) => {
            m.timer = timer;
            m.notes.extend(notes);
        }
        Err(e) => {
            m.timer = None;
            m.notes
                .push(alloc::format!("{e}; the timer's interrupt is not known"));
        }
    }
    let spcr = devices::spcr(&t, &m.ram);
    m.console = spcr.console;
    info.console_irq = spcr.irq;
    m.notes.extend(spcr.notes);
    match devices::mcfg(&t) {
        Ok(ecam) => info.ecam = ecam,
        Err(e) => m.notes.push(alloc::format!("{e}; no PCIe ECAM")),
    }
    Ok(info)
}

/// The console alone, from the SPCR, for saying why [`describe`] failed: `None` when the tables
/// or the SPCR cannot give one.
pub fn console(
    mem: &dyn Memory,
    rsdp: u64,
    ram: &[crate::mm::region::Region],
) -> Option<super::devicetree::Console> {
    let t = tables::Tables::read(mem, rsdp).ok()?;
    devices::spcr(&t, ram).console
}

/// "OEM OEMTABLE (ACPI)": the OEM ID (RSDP) and OEM table ID (FADT), printable and trimmed.
fn model(oem_id: &[u8], table_id: Option<&[u8; 8]>) -> String {
    let text = |b: &[u8]| -> String {
        let s: String = b
            .iter()
            .map(|&c| if c.is_ascii_graphic() { c as char } else { ' ' })
            .collect();
        String::from(s.trim())
    };
    let mut s = text(oem_id);
    if let Some(id) = table_id.map(|id| text(id)).filter(|id| !id.is_empty()) {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&id);
    }
    if s.is_empty() {
        s.push_str("unknown");
    }
    s.push_str(" (ACPI)");
    s
}

#[cfg(any(test, fuzzing))]
pub mod synth;
#[cfg(test)]
mod tests;
