//! The MADT (signature `APIC`): the CPUs (GICC entries) and the GIC (the GICD entry, GICR
//! entries, or for a GICv2 the CPU interface the GICC entries give).
//!
//! The entries are walked here, each `Length` checked against the table's before anything in it
//! is read; the `acpi` crate's entry layouts are filled from the checked bytes.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use acpi::madt::{
    GicInterruptTranslationServiceEntry, GicRedistributorEntry, GiccEntry, GicdEntry,
};

use super::tables::{HEADER_LEN, Tables, read};
use super::{AcpiError, Table};
use crate::mm::region::{self, Region};
use crate::platform::devicetree::{Cpu, EnableMethod, Gic, GicVersion};

const MADT: Table = Table::Sdt(*b"APIC");

/// Entry types (ACPI 6.5, table 5.21).
const GICC: u8 = 0x0b;
const GICD: u8 = 0x0c;
const GICR: u8 = 0x0e;
const GIC_ITS: u8 = 0x0f;

/// The shortest GICC entry that holds the MPIDR (ACPI 5.1's 76 bytes; 6.0 made it 80, 6.3 82).
const GICC_MIN: usize = 76;
const GICD_LEN: usize = 24;
const GICR_LEN: usize = 16;
const ITS_LEN: usize = 20;
/// The MADT's own fields after the header: the local interrupt controller address and flags.
const FIELDS_END: usize = HEADER_LEN + 8;

/// GICC `Flags`: the CPU is usable now.
const GICC_ENABLED: u32 = 1 << 0;
/// GICC `Flags`: the CPU can be brought online later (ACPI 6.5), though not enabled now.
const GICC_ONLINE_CAPABLE: u32 = 1 << 3;
/// The MPIDR bits that are affinity fields (Aff3, Aff2, Aff1, Aff0).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// The GIC's register ranges when the MADT gives no size: a GICv2 distributor and CPU interface
/// are 4 KiB and 8 KiB, a GICv3 distributor 64 KiB.
const GICV2_DIST_SIZE: u64 = 0x1000;
const GICV2_CPU_SIZE: u64 = 0x2000;
const GICV3_DIST_SIZE: u64 = 0x1_0000;
/// One redistributor: two 64 KiB frames on a GICv3, four on a GICv4.
const GICR_STRIDE_V3: u64 = 0x2_0000;
const GICR_STRIDE_V4: u64 = 0x4_0000;

/// What the MADT describes.
pub(super) struct Madt {
    pub cpus: Vec<Cpu>,
    pub gic: Gic,
    pub its: Vec<u64>,
    pub notes: Vec<String>,
}

/// Read the MADT; `psci`: the FADT says CPUs start by PSCI.
pub(super) fn parse(t: &Tables<'_>, boot_mpidr: u64, psci: bool) -> Result<Madt, AcpiError> {
    let b = t.get(b"APIC")?.ok_or(AcpiError::Missing(MADT))?;
    if b.len() < FIELDS_END {
        return Err(AcpiError::TooShort {
            table: MADT,
            field: "the Local Interrupt Controller Address and Flags",
            length: b.len(),
            need: FIELDS_END,
        });
    }
    let (mut giccs, mut gicds, mut gicrs, mut its) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut off = FIELDS_END;
    while off < b.len() {
        let ty = b[off];
        let len = b.get(off + 1).map_or(0, |&l| usize::from(l));
        let bad = |why| AcpiError::BadEntry {
            table: MADT,
            offset: off,
            ty,
            length: len,
            why,
        };
        if len < 2 {
            return Err(bad(
                "has a Length below 2: the entries after it cannot be found",
            ));
        }
        let Some(e) = b.get(off..off + len) else {
            return Err(bad("runs past the end of the table"));
        };
        let need = match ty {
            GICC => GICC_MIN,
            GICD => GICD_LEN,
            GICR => GICR_LEN,
            GIC_ITS => ITS_LEN,
            _ => 0,
        };
        if len < need {
            return Err(bad("is shorter than its type's fields"));
        }
        match ty {
            GICC => giccs.push(read::<GiccEntry>(e)),
            GICD => gicds.push(read::<GicdEntry>(e)),
            GICR => gicrs.push(read::<GicRedistributorEntry>(e)),
            GIC_ITS => {
                its.push(read::<GicInterruptTranslationServiceEntry>(e).physical_base_address)
            }
            _ => {}
        }
        off += len;
    }

    let mut notes = Vec::new();
    let mut cpus: Vec<Cpu> = Vec::new();
    let mut boot = None;
    let mut off_line = 0;
    for g in &giccs {
        let (flags, mpidr) = (g.flags, g.mpidr & MPIDR_AFFINITY);
        if flags & GICC_ENABLED == 0 {
            off_line += usize::from(flags & GICC_ONLINE_CAPABLE != 0);
            continue;
        }
        if cpus.iter().any(|c| c.mpidr == mpidr) {
            return Err(AcpiError::BadField {
                table: MADT,
                field: "GICC MPIDR",
                value: mpidr,
                why: "is in two enabled GICC entries",
            });
        }
        if mpidr == boot_mpidr {
            boot = Some(*g);
        }
        let enable_method = if psci {
            EnableMethod::Psci
        } else {
            EnableMethod::Other("ACPI parking protocol".into())
        };
        cpus.push(Cpu {
            mpidr,
            enable_method,
        });
    }
    let boot = boot.ok_or(AcpiError::NoBootCpu { mpidr: boot_mpidr })?;
    if off_line > 0 {
        notes.push(format!(
            "MADT: {off_line} GICC entries are online-capable but not enabled: not started"
        ));
    }
    if !psci && cpus.len() > 1 {
        notes.push(
            "FADT: no PSCI: the other CPUs would need the parking protocol, which the kernel does not speak"
                .into(),
        );
    }

    let gicd = *gicds.first().ok_or(AcpiError::NoEntry {
        table: MADT,
        entry: "GICD",
        why: "the GIC distributor is unknown",
    })?;
    if gicds.len() > 1 {
        notes.push(format!(
            "MADT: {} GICD entries; the first is used",
            gicds.len()
        ));
    }
    let dist = gicd.physical_base_address;
    if dist == 0 {
        return Err(AcpiError::BadField {
            table: MADT,
            field: "GICD Physical Base Address",
            value: 0,
            why: "is no distributor",
        });
    }
    let gicr_in_gicc = giccs.iter().any(|g| g.gicr_base_address != 0);
    let version = match gicd.gic_version {
        1 | 2 => GicVersion::V2,
        3 | 4 => GicVersion::V3,
        0 => {
            let v = if gicrs.is_empty() && !gicr_in_gicc {
                GicVersion::V2
            } else {
                GicVersion::V3
            };
            notes.push(format!(
                "MADT: GICD GIC Version 0 (\"discover\"): {v:?}, from the redistributors listed"
            ));
            v
        }
        v => {
            return Err(AcpiError::BadField {
                table: MADT,
                field: "GICD GIC Version",
                value: u64::from(v),
                why: "is not one of 1 to 4",
            });
        }
    };
    let gic = match version {
        GicVersion::V2 => {
            let cpu = boot.gic_registers_address;
            if cpu == 0 {
                return Err(AcpiError::BadField {
                    table: MADT,
                    field: "the boot CPU's GICC Physical Base Address",
                    value: 0,
                    why: "is no CPU interface, which a GICv2 needs",
                });
            }
            Gic {
                version,
                dist: Region::new(dist, GICV2_DIST_SIZE),
                cpu_or_redist: Region::new(cpu, GICV2_CPU_SIZE),
            }
        }
        GicVersion::V3 => Gic {
            version,
            dist: Region::new(dist, GICV3_DIST_SIZE),
            cpu_or_redist: redistributors(&gicrs, &giccs, gicd.gic_version, &mut notes)?,
        },
    };
    Ok(Madt {
        cpus,
        gic,
        its,
        notes,
    })
}

/// The redistributor range: the GICR entries' ranges (one range, when they touch), or else the
/// span of the enabled CPUs' GICC `GICR Base Address`es.
fn redistributors(
    gicrs: &[GicRedistributorEntry],
    giccs: &[GiccEntry],
    gic_version: u8,
    notes: &mut Vec<String>,
) -> Result<Region, AcpiError> {
    if !gicrs.is_empty() {
        let mut ranges = Vec::new();
        for r in gicrs {
            let (base, len) = (r.discovery_range_base_address, r.discovery_range_length);
            if base == 0 || len == 0 {
                return Err(AcpiError::BadField {
                    table: MADT,
                    field: "GICR Discovery Range Length (or Base Address)",
                    value: u64::from(len),
                    why: "describes no redistributor",
                });
            }
            ranges.push(Region::new(base, u64::from(len)));
        }
        let merged = region::union(&ranges);
        if merged.len() > 1 {
            notes.push(format!(
                "MADT: {} redistributor ranges that do not touch; only the first is used",
                merged.len()
            ));
        }
        return Ok(merged[0]);
    }
    let stride = if gic_version == 4 {
        GICR_STRIDE_V4
    } else {
        GICR_STRIDE_V3
    };
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    for g in giccs.iter().filter(|g| g.flags & GICC_ENABLED != 0) {
        let base = g.gicr_base_address;
        if base == 0 {
            return Err(AcpiError::BadField {
                table: MADT,
                field: "GICC GICR Base Address",
                value: 0,
                why: "of an enabled CPU, with no GICR entry: its redistributor is unknown",
            });
        }
        lo = lo.min(base);
        hi = hi.max(base);
    }
    let size = hi
        .checked_sub(lo)
        .and_then(|s| s.checked_add(stride))
        .filter(|_| hi.checked_add(stride).is_some())
        .ok_or(AcpiError::BadField {
            table: MADT,
            field: "GICC GICR Base Address",
            value: hi,
            why: "wraps past the end of the address space",
        })?;
    Ok(Region::new(lo, size))
}
