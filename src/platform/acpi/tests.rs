use super::synth::{self, BASE, Blob};
use super::*;
use crate::mm::region::Region;
use crate::platform::devicetree::{EnableMethod, GicVersion, PsciMethod, UartKind};

fn run(blob: &Blob, boot_mpidr: u64) -> Result<(Machine, AcpiInfo), AcpiError> {
    let mut m = synth::machine();
    let info = describe(blob, BASE, boot_mpidr, &mut m)?;
    Ok((m, info))
}

fn ok(blob: &Blob) -> (Machine, AcpiInfo) {
    run(blob, 0).unwrap_or_else(|e| panic!("{e}"))
}

fn err(blob: &Blob) -> String {
    run(blob, 0).map(|_| ()).unwrap_err().to_string()
}

fn notes(m: &Machine) -> String {
    m.notes.join("\n")
}

#[test]
fn qemu_virt_gicv2_is_described_as_its_device_tree_would() {
    let (m, info) = ok(&synth::qemu_virt(4, false));
    assert_eq!(m.model, "BOCHS BXPC (ACPI)");
    assert_eq!(m.cpus.len(), 4);
    for (i, c) in m.cpus.iter().enumerate() {
        assert_eq!(c.mpidr, i as u64);
        assert_eq!(c.enable_method, EnableMethod::Psci);
    }
    assert_eq!(m.psci.map(|p| p.method), Some(PsciMethod::Hvc));
    let gic = m.gic.unwrap();
    assert_eq!(gic.version, GicVersion::V2);
    assert_eq!(gic.dist, Region::new(0x0800_0000, 0x1000));
    assert_eq!(gic.cpu_or_redist, Region::new(0x0801_0000, 0x2000));
    let t = m.timer.unwrap();
    assert_eq!(
        (t.virt_irq, t.phys_irq, t.frequency),
        (Some(27), Some(30), None)
    );
    assert!(m.notes.is_empty(), "{}", notes(&m));
    let c = m.console.unwrap();
    assert_eq!((c.kind, c.base), (UartKind::Pl011, 0x0900_0000));
    assert_eq!(c.options.as_deref(), Some("115200"));
    assert_eq!(c.clock_hz, None, "SPCR revision 2 gives no clock");
    assert_eq!(info.console_irq, Some(33));
    assert_eq!(info.fadt_version, (6, 0));
    assert_eq!(info.rsdp_revision, 2);
    assert_eq!(
        info.tables.iter().map(|t| &t.0).collect::<Vec<_>>(),
        [b"FACP", b"APIC", b"GTDT", b"SPCR", b"MCFG"]
    );
    assert_eq!(
        info.ecam,
        [Ecam {
            base: 0x40_1000_0000,
            segment: 0,
            bus_start: 0,
            bus_end: 0xff
        }]
    );
    assert!(info.its.is_empty());
    assert_eq!(
        m.bootargs, "semihosting",
        "the command line is the load options'"
    );
}

#[test]
fn qemu_virt_gicv3_has_redistributors_and_an_its() {
    let (m, info) = ok(&synth::qemu_virt(8, true));
    assert_eq!(m.cpus.len(), 8);
    let gic = m.gic.unwrap();
    assert_eq!(gic.version, GicVersion::V3);
    assert_eq!(gic.dist, Region::new(0x0800_0000, 0x1_0000));
    assert_eq!(gic.cpu_or_redist, Region::new(0x080a_0000, 0xf6_0000));
    assert_eq!(info.its, [0x0808_0000]);
}

#[test]
fn gicv3_without_gicr_entries_spans_the_cpus_redistributors() {
    let entries: Vec<_> = (0..4)
        .map(|i| {
            synth::gicc(
                i,
                u64::from(i),
                true,
                0,
                0x080a_0000 + u64::from(i) * 0x2_0000,
            )
        })
        .chain([synth::gicd(0x0800_0000, 0)])
        .collect();
    let blob = synth::blob(&[
        synth::fadt(Some(false)),
        synth::madt(&entries),
        synth::gtdt(30, 27),
    ]);
    let (m, _) = ok(&blob);
    let gic = m.gic.unwrap();
    assert_eq!(
        gic.version,
        GicVersion::V3,
        "version 0: discovered from the GICC entries"
    );
    assert_eq!(gic.cpu_or_redist, Region::new(0x080a_0000, 0x8_0000));
    assert_eq!(m.psci.unwrap().method, PsciMethod::Smc);
    let n = notes(&m);
    assert!(n.contains("GIC Version 0"), "{n}");
    assert!(n.contains("lists no SPCR"), "{n}");
}

#[test]
fn bad_rsdps_are_refused_naming_the_field() {
    let good = synth::qemu_virt(1, false);
    let mut b = good.clone();
    b.bytes[0] = b'X';
    assert_eq!(
        err(&b),
        format!("ACPI: RSDP at {BASE:#x}: Signature is wrong")
    );
    let mut b = good.clone();
    b.bytes[9] ^= 1; // OEM ID: breaks both checksums; the first is reported
    assert!(err(&b).contains("RSDP at 0x7f800000: Checksum (of its first 20 bytes) is wrong"));
    let mut b = good.clone();
    b.bytes[30] ^= 1; // XSDT address, past the first 20 bytes
    assert!(
        err(&b).contains("RSDP at 0x7f800000: Extended Checksum is wrong"),
        "{}",
        err(&b)
    );
    let mut b = good.clone();
    b.bytes[15] = 0;
    synth::fix_checksum(&mut b.bytes[..20], 8);
    assert!(err(&b).contains("RSDP Revision 0 is ACPI 1.0"));
    let mut b = good.clone();
    b.bytes[20..24].copy_from_slice(&20u32.to_le_bytes());
    synth::fix_checksum(&mut b.bytes[..36], 32);
    assert!(
        err(&b).contains("RSDP at 0x7f800000: Length 0x14"),
        "{}",
        err(&b)
    );
    // The RSDP itself outside the tables' memory.
    let mut m = synth::machine();
    let e = describe(&good, BASE - 0x1000, 0, &mut m).unwrap_err();
    assert!(
        e.to_string().contains("are not all in the ACPI memory"),
        "{e}"
    );
}

#[test]
fn a_table_with_a_bad_checksum_or_length_is_refused_when_needed() {
    let good = synth::qemu_virt(2, false);
    let mut b = good.clone();
    synth::patch(&mut b, b"APIC", false, |t| t[50] ^= 0x40);
    let e = err(&b);
    assert!(
        e.starts_with("ACPI: MADT (APIC) at 0x7f800c00: Checksum is wrong"),
        "{e}"
    );
    // Running past the memory the tables are in.
    let mut b = good.clone();
    synth::patch(&mut b, b"APIC", false, |t| {
        t[4..8].copy_from_slice(&0x10_0000u32.to_le_bytes())
    });
    let e = err(&b);
    assert!(
        e.contains("MADT (APIC) at 0x7f800c00: its 0x100000 bytes are not all in the ACPI memory"),
        "{e}"
    );
    // A length no table can have.
    let mut b = good.clone();
    synth::patch(&mut b, b"APIC", false, |t| {
        t[4..8].copy_from_slice(&12u32.to_le_bytes())
    });
    assert!(
        err(&b).contains("MADT (APIC) at 0x7f800c00: Length 0xc"),
        "{}",
        err(&b)
    );
    // An unused table may be broken: it is only noted.
    let mut b = good.clone();
    synth::patch(&mut b, b"MCFG", false, |t| t[40] ^= 1);
    let (m, info) = ok(&b);
    assert!(
        notes(&m).contains("MCFG at 0x7f801800: Checksum is wrong"),
        "{}",
        notes(&m)
    );
    assert!(info.ecam.is_empty());
}

#[test]
fn xsdt_entries_outside_the_tables_memory_are_noted() {
    let mut b = synth::qemu_virt(1, false);
    let slot = b.slot;
    // The XSDT's fifth entry (the MCFG) points below the tables.
    b.bytes[slot + 36 + 32..slot + 36 + 40].copy_from_slice(&0x1000u64.to_le_bytes());
    synth::fix_checksum(&mut b.bytes[slot..slot + 76], 9);
    let (m, info) = ok(&b);
    assert!(notes(&m).contains("a table at 0x1000"), "{}", notes(&m));
    assert_eq!(info.tables[4], ([0; 4], 0x1000, 0));
    // A partial entry.
    let mut b = synth::qemu_virt(1, false);
    b.bytes[slot + 4] -= 4;
    synth::fix_checksum(&mut b.bytes[slot..slot + 72], 9);
    assert!(
        err(&b).contains("XSDT at 0x7f800400: Length 0x48: its entries are not a whole number"),
        "{}",
        err(&b)
    );
}

/// The MADT of `qemu_virt(2, false)` with `f` applied to its bytes (checksum fixed).
fn madt_patched(f: impl FnOnce(&mut [u8])) -> Blob {
    let mut b = synth::qemu_virt(2, false);
    synth::patch(&mut b, b"APIC", true, f);
    b
}

#[test]
fn madt_entries_must_fit_the_table() {
    // The first GICC entry at offset 44: length 0, then running past the end.
    let e = err(&madt_patched(|t| t[45] = 0));
    assert!(
        e.contains(
            "MADT (APIC): the entry at offset 0x2c (Type 0xb, Length 0x0) has a Length below 2"
        ),
        "{e}"
    );
    let e = err(&madt_patched(|t| t[44 + 80 + 80 + 1] = 200));
    assert!(
        e.contains("offset 0xcc (Type 0xc, Length 0xc8) runs past the end of the table"),
        "{e}"
    );
    let e = err(&madt_patched(|t| {
        t[45] = 40;
        t[44 + 40] = 0x0b;
        t[44 + 41] = 40;
    }));
    assert!(
        e.contains("(Type 0xb, Length 0x28) is shorter than its type's fields"),
        "{e}"
    );
    // A MADT too short for its own fields.
    let e = err(&madt_patched(|t| {
        t[4..8].copy_from_slice(&40u32.to_le_bytes())
    }));
    assert!(e.contains("MADT (APIC): Length 0x28 is too short"), "{e}");
}

#[test]
fn madt_must_list_the_boot_cpu_enabled() {
    let b = synth::qemu_virt(2, false);
    assert_eq!(
        run(&b, 7).map(|_| ()).unwrap_err(),
        AcpiError::NoBootCpu { mpidr: 7 }
    );
    assert!(
        run(&b, 7)
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("no enabled GICC entry has the boot CPU's MPIDR 0x7")
    );
    // Boot CPU disabled (flags at 12 of the first GICC).
    let e = err(&madt_patched(|t| t[44 + 12] = 0));
    assert!(e.contains("boot CPU's MPIDR 0x0"), "{e}");
    // The second disabled: one CPU.
    let (m, _) = ok(&madt_patched(|t| t[44 + 80 + 12] = 8));
    assert_eq!(m.cpus.len(), 1);
    assert!(notes(&m).contains("1 GICC entries are online-capable"));
    // Two entries with one MPIDR.
    let e = err(&madt_patched(|t| t[44 + 80 + 68] = 0));
    assert!(
        e.contains("GICC MPIDR 0x0 is in two enabled GICC entries"),
        "{e}"
    );
}

#[test]
fn the_gic_must_be_there_and_known() {
    let gicd_at = 44 + 2 * 80;
    let e = err(&madt_patched(|t| t[gicd_at + 20] = 7));
    assert!(
        e.contains("MADT (APIC): GICD GIC Version 0x7 is not one of 1 to 4"),
        "{e}"
    );
    let e = err(&madt_patched(|t| t[gicd_at] = 0x80)); // an OEM entry, no GICD
    assert_eq!(
        e,
        "ACPI: MADT (APIC) has no GICD entry: the GIC distributor is unknown"
    );
    let e = err(&madt_patched(|t| t[gicd_at + 8..gicd_at + 16].fill(0)));
    assert!(
        e.contains("GICD Physical Base Address 0x0 is no distributor"),
        "{e}"
    );
    let e = err(&madt_patched(|t| t[44 + 32..44 + 40].fill(0)));
    assert!(
        e.contains("the boot CPU's GICC Physical Base Address 0x0"),
        "{e}"
    );
}

#[test]
fn without_psci_cpus_cannot_be_started() {
    let mut b = synth::qemu_virt(2, false);
    let fadt = synth::fadt(None);
    synth::patch(&mut b, b"FACP", false, |t| {
        t[..fadt.len()].copy_from_slice(&fadt)
    });
    let (m, _) = ok(&b);
    assert_eq!(m.psci, None);
    assert!(matches!(m.cpus[1].enable_method, EnableMethod::Other(_)));
    assert!(notes(&m).contains("FADT: no PSCI"), "{}", notes(&m));
    // A FADT from before ACPI 5.1 has no ARM_BOOT_ARCH.
    let mut b = synth::qemu_virt(1, false);
    synth::patch(&mut b, b"FACP", true, |t| {
        t[4..8].copy_from_slice(&116u32.to_le_bytes())
    });
    assert!(
        err(&b).contains("FADT (FACP): Length 0x74 is too short for ARM_BOOT_ARCH"),
        "{}",
        err(&b)
    );
    // No FADT at all.
    let blob = synth::blob(&[synth::madt(&[
        synth::gicc(0, 0, true, 1, 0),
        synth::gicd(1, 2),
    ])]);
    assert_eq!(err(&blob), "ACPI: the XSDT lists no FADT (FACP)");
}

#[test]
fn a_gtdt_with_a_zero_or_foreign_ppi_loses_the_timer_with_a_note() {
    for (phys, virt, want) in [
        (30, 0, "GTDT: Virtual EL1 Timer GSIV 0x0 is no interrupt"),
        (30, 40, "GTDT: Virtual EL1 Timer GSIV 0x28 is not a PPI"),
    ] {
        let mut b = synth::qemu_virt(1, false);
        let g = synth::gtdt(phys, virt);
        synth::patch(&mut b, b"GTDT", false, |t| t[..g.len()].copy_from_slice(&g));
        let (m, _) = ok(&b);
        assert_eq!(m.timer, None);
        assert!(notes(&m).contains(want), "{}", notes(&m));
    }
    let mut b = synth::qemu_virt(1, false);
    let g = synth::gtdt(0, 27);
    synth::patch(&mut b, b"GTDT", false, |t| t[..g.len()].copy_from_slice(&g));
    let (m, _) = ok(&b);
    assert_eq!(m.timer.unwrap().phys_irq, None);
    assert!(notes(&m).contains("Non-Secure EL1 Timer GSIV 0x0 is no interrupt"));
}

#[test]
fn the_spcr_names_the_console_unless_it_points_at_ram() {
    let with_spcr = |ty, base| {
        let mut b = synth::qemu_virt(1, false);
        let s = synth::spcr(ty, base);
        synth::patch(&mut b, b"SPCR", false, |t| t[..s.len()].copy_from_slice(&s));
        ok(&b).0
    };
    let m = with_spcr(3, 0x4000_1000);
    assert_eq!(m.console, None);
    assert!(
        notes(&m).contains("SPCR: Base Address 0x40001000 is RAM (UEFI memory map), not a UART"),
        "{}",
        notes(&m)
    );
    let m = with_spcr(0x10, 0xfe21_5040);
    assert_eq!(m.console.unwrap().kind, UartKind::Bcm2835Aux);
    let m = with_spcr(0, 0x0900_0000);
    assert_eq!(
        m.console.unwrap().kind,
        UartKind::Unknown("16550 (SPCR)".into())
    );
    let m = with_spcr(3, 0);
    assert_eq!(m.console, None);
    assert!(
        notes(&m).contains("SPCR: Base Address is empty"),
        "{}",
        notes(&m)
    );
}

#[test]
fn mcfg_entries_are_checked() {
    let mut b = synth::qemu_virt(1, false);
    let bad = synth::mcfg(&[(0x40_1000_0000, 0, 9, 3)]);
    synth::patch(&mut b, b"MCFG", false, |t| {
        t[..bad.len()].copy_from_slice(&bad)
    });
    let (m, info) = ok(&b);
    assert!(info.ecam.is_empty());
    assert!(
        notes(&m).contains("MCFG: End Bus Number 0x3 is below the Start Bus Number"),
        "{}",
        notes(&m)
    );
    let mut b = synth::qemu_virt(1, false);
    synth::patch(&mut b, b"MCFG", true, |t| t[4] -= 4);
    let (m, _) = ok(&b);
    assert!(
        notes(&m).contains("MCFG: Length 0x38 is not 44 bytes plus whole 16-byte entries"),
        "{}",
        notes(&m)
    );
}

#[test]
fn table_names_show_unprintable_signatures_escaped() {
    assert_eq!(Table::Sdt(*b"GT\x00T").to_string(), "GT\\x00T");
    assert_eq!(Table::Sdt(*b"APIC").to_string(), "MADT (APIC)");
    assert_eq!(Table::Unknown.to_string(), "a table");
}

#[test]
fn fuzz_inputs_of_every_mode_are_sound() {
    let mut seen_ok = 0;
    for mode in 0..=255u8 {
        for pokes in [
            &[][..],
            &[0x2c, 0x0c, 0x00][..], // the MADT's first entry's type
            &[0x04, 0x0c, 0xff, 0x05, 0x0c, 0xff][..], // the MADT's length
            &[0x18, 0x00, 0x00][..], // the RSDP's XSDT address
        ] {
            let input = [&[mode][..], pokes].concat();
            let outcome = synth::fuzz_one(&input).unwrap();
            synth::check(&outcome, u64::from(mode >> 7));
            seen_ok += usize::from(outcome.is_ok());
        }
    }
    assert!(seen_ok > 100, "{seen_ok} inputs described a machine");
    assert!(synth::fuzz_one(&[]).is_none());
}

/// The fuzz target's seeds (tests/fuzz/corpus/acpi) and every input it ever failed on
/// (tests/fuzz/regressions/acpi-*; none so far) pass the target's own checks, here on every
/// `cargo test`: an error names ACPI, a machine described is whole.
#[test]
fn fuzz_seeds_and_regressions() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut inputs = Vec::new();
    for (dir, prefix) in [("corpus/acpi", ""), ("regressions", "acpi-")] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(prefix) {
                inputs.push(path);
            }
        }
    }
    assert!(inputs.len() >= 7, "the seeds are there: {inputs:?}");
    let mut described = 0;
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        let outcome = synth::fuzz_one(&data).unwrap_or_else(|| panic!("{path:?} is empty"));
        synth::check(&outcome, u64::from(data[0] >> 7));
        described += usize::from(outcome.is_ok());
    }
    assert!(described > 0, "some seed describes a machine");
}

#[test]
fn the_console_survives_tables_that_cannot_describe_the_machine() {
    let b = madt_patched(|t| t[45] = 0);
    assert!(run(&b, 0).is_err());
    let m = synth::machine();
    let c = console(&b, BASE, &m.ram).expect("the SPCR's console");
    assert_eq!((c.kind, c.base), (UartKind::Pl011, 0x0900_0000));
    let mut bad = b.clone();
    bad.bytes[0] = 0;
    assert_eq!(console(&bad, BASE, &m.ram), None);
}
