use super::*;
use crate::platform::fdt_front;
use crate::platform::fdt_front::tests::{
    VIRT_EL2, VIRT_GICV2, VIRT_GICV3, begin, build, end, end_node, prop,
};
use crate::util::rng::Rng;
use alloc::vec;

const RPI4_DTB: &[u8] = include_bytes!("../../../tests/data/bcm2711-rpi-4-b.dtb");
const QEMU_RPI4_DTB: &[u8] = include_bytes!("../../../tests/data/qemu-raspi4b-rpi-dtb.dtb");

fn check_virt(m: &Machine, gic: Gic, psci: PsciMethod) {
    assert_eq!(m.model, "linux,dummy-virt");
    assert_eq!(m.compatible, vec!["linux,dummy-virt"]);
    assert_eq!(m.ram, vec![Region::new(0x4000_0000, 1 << 30)]);
    assert_eq!(m.reserved, vec![]);
    assert_eq!(m.cpus.len(), 4);
    for (i, cpu) in m.cpus.iter().enumerate() {
        assert_eq!(cpu.mpidr, i as u64);
        assert_eq!(cpu.enable_method, EnableMethod::Psci);
    }
    assert_eq!(m.psci, Some(Psci { method: psci }));
    assert_eq!(m.gic, Some(gic));
    let c = m.console.as_ref().unwrap();
    assert_eq!(
        (c.kind.clone(), c.base, c.size),
        (UartKind::Pl011, 0x0900_0000, 0x1000)
    );
    assert_eq!(c.path, "/pl011@9000000");
    assert_eq!(c.options, None);
    assert_eq!(c.clock_hz, Some(24_000_000));
    let t = m.timer.unwrap();
    assert_eq!(
        (t.virt_irq, t.phys_irq, t.frequency),
        (Some(27), Some(30), None)
    );
    assert_eq!(m.bootargs, "");
}

#[test]
fn qemu_virt_gicv2() {
    let m = parse(VIRT_GICV2).unwrap();
    let gic = Gic {
        version: GicVersion::V2,
        dist: Region::new(0x0800_0000, 0x1_0000),
        cpu_or_redist: Region::new(0x0801_0000, 0x1_0000),
    };
    check_virt(&m, gic, PsciMethod::Hvc);
}

#[test]
fn qemu_virt_gicv3() {
    let m = parse(VIRT_GICV3).unwrap();
    let gic = Gic {
        version: GicVersion::V3,
        dist: Region::new(0x0800_0000, 0x1_0000),
        cpu_or_redist: Region::new(0x080a_0000, 0xf6_0000),
    };
    check_virt(&m, gic, PsciMethod::Hvc);
}

#[test]
fn qemu_virt_el2_uses_smc() {
    let m = parse(VIRT_EL2).unwrap();
    assert_eq!(
        m.psci,
        Some(Psci {
            method: PsciMethod::Smc
        })
    );
    let gic = m.gic.unwrap();
    check_virt(&m, gic, PsciMethod::Smc);
}

fn check_rpi4_common(m: &Machine) {
    assert_eq!(m.model, "Raspberry Pi 4 Model B");
    assert_eq!(m.compatible, vec!["raspberrypi,4-model-b", "brcm,bcm2711"]);
    let c = m.console.as_ref().unwrap();
    assert_eq!(c.path, "/soc/serial@7e215040");
    assert_eq!(
        (c.kind.clone(), c.base, c.size),
        (UartKind::Bcm2835Aux, 0xfe21_5040, 0x40)
    );
    assert_eq!(c.options.as_deref(), Some("115200n8"));
    assert_eq!(c.clock_hz, None);
    assert_eq!(
        m.gic,
        Some(Gic {
            version: GicVersion::V2,
            dist: Region::new(0xff84_1000, 0x1000),
            cpu_or_redist: Region::new(0xff84_2000, 0x2000),
        })
    );
    let rel: Vec<_> = m
        .cpus
        .iter()
        .map(|c| (c.mpidr, c.enable_method.clone()))
        .collect();
    assert_eq!(
        rel,
        (0..4u64)
            .map(|i| (
                i,
                EnableMethod::SpinTable {
                    release_addr: 0xd8 + 8 * i
                }
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(m.psci, None);
    let t = m.timer.unwrap();
    assert_eq!((t.virt_irq, t.phys_irq), (Some(27), Some(30)));
    assert!(
        m.notes
            .iter()
            .any(|n| n.contains("linux,cma") && n.contains("no reg")),
        "{:?}",
        m.notes
    );
}

#[test]
fn qemu_raspi4b_blob() {
    // QEMU's copy has ~300 FDT_NOPs (fdt 0.1.5 alone panics on it) and a filled memory node.
    assert!(fdt::Fdt::new(QEMU_RPI4_DTB).is_ok());
    let m = parse(QEMU_RPI4_DTB).unwrap();
    check_rpi4_common(&m);
    assert_eq!(m.ram, vec![Region::new(0, 0x3c00_0000)]);
    // QEMU's /memreserve/ for the spin-table page.
    assert_eq!(m.reserved, vec![Region::new(0, 0x1000)]);
}

#[test]
fn shipped_rpi4_blob_has_no_ram_until_firmware_fills_it() {
    assert_eq!(parse(RPI4_DTB), Err(DtError::NoMemory));
}

/// A tiny tree: root (2/1 cells) with /cpus and a memory node built from `extra` tokens.
fn tiny(cpus: &[Vec<u8>], extra: &[Vec<u8>]) -> Vec<u8> {
    // Strings: 0 "#address-cells", 15 "#size-cells", 27 "reg", 31 "device_type"
    let strings = b"#address-cells\0#size-cells\0reg\0device_type\0";
    let mut s = vec![begin("")];
    s.push(begin("cpus"));
    s.push(prop(0, &1u32.to_be_bytes()));
    s.push(prop(15, &0u32.to_be_bytes()));
    s.extend_from_slice(cpus);
    s.push(end_node());
    s.extend_from_slice(extra);
    s.push(end_node());
    s.push(end());
    build(&s.concat(), strings)
}

fn cpu(reg: Option<&[u8]>) -> Vec<u8> {
    let mut v = vec![begin("cpu@0"), prop(31, b"cpu\0")];
    if let Some(r) = reg {
        v.push(prop(27, r));
    }
    v.push(end_node());
    v.concat()
}

fn memory(reg: &[u8]) -> Vec<u8> {
    [
        begin("memory@0"),
        prop(31, b"memory\0"),
        prop(27, reg),
        end_node(),
    ]
    .concat()
}

fn cells(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|c| c.to_be_bytes()).collect()
}

#[test]
fn no_map_reservations_are_kept_apart() {
    // Strings: 0 "#address-cells", 15 "#size-cells", 27 "reg", 31 "device_type", 43 "no-map"
    let strings = b"#address-cells\0#size-cells\0reg\0device_type\0no-map\0";
    let s = [
        begin(""),
        begin("cpus"),
        prop(0, &1u32.to_be_bytes()),
        prop(15, &0u32.to_be_bytes()),
        cpu(Some(&cells(&[0]))),
        end_node(),
        memory(&cells(&[0, 0x4000_0000, 0x4000_0000])),
        begin("reserved-memory"),
        prop(0, &2u32.to_be_bytes()),
        prop(15, &1u32.to_be_bytes()),
        begin("secure@48000000"),
        prop(27, &cells(&[0, 0x4800_0000, 0x20_0000])),
        prop(43, &[]),
        end_node(),
        begin("pool@50000000"),
        prop(27, &cells(&[0, 0x5000_0000, 0x10_0000])),
        end_node(),
        end_node(),
        end_node(),
        end(),
    ];
    let m = parse(&build(&s.concat(), strings)).unwrap();
    assert_eq!(
        m.reserved,
        vec![
            Region::new(0x1000, 0x2000), // the /memreserve/ entry `build` adds
            Region::new(0x4800_0000, 0x20_0000),
            Region::new(0x5000_0000, 0x10_0000)
        ]
    );
    assert_eq!(m.no_map, vec![Region::new(0x4800_0000, 0x20_0000)]);
}

#[test]
fn sanity_errors() {
    let mem = memory(&cells(&[0, 0x8000_0000, 0x1000_0000]));
    let m = parse(&tiny(
        &[cpu(Some(&cells(&[0x100])))],
        core::slice::from_ref(&mem),
    ))
    .unwrap();
    assert_eq!(
        m.cpus,
        vec![Cpu {
            mpidr: 0x100,
            enable_method: EnableMethod::Missing
        }]
    );
    assert_eq!(m.model, "unknown");
    assert_eq!(m.reserved, vec![Region::new(0x1000, 0x2000)]);
    assert_eq!(
        parse(&tiny(&[cpu(Some(&cells(&[0])))], &[])),
        Err(DtError::NoMemory)
    );
    assert_eq!(
        parse(&tiny(&[], core::slice::from_ref(&mem))),
        Err(DtError::NoCpus)
    );
    assert_eq!(
        parse(&tiny(&[cpu(None)], core::slice::from_ref(&mem))),
        Err(DtError::CpuWithoutReg {
            path: "/cpus/cpu@0".into()
        })
    );
    // `reg` of 5 bytes in a 2+1-cell space.
    assert_eq!(
        parse(&tiny(
            &[cpu(Some(&cells(&[0])))],
            &[memory(b"\0\0\0\0\x01")]
        )),
        Err(DtError::BadProperty {
            path: "/memory@0".into(),
            property: "reg",
            len: 5
        })
    );
}

#[test]
fn three_cell_addresses_are_refused_naming_the_node() {
    // /cpus with #address-cells = 3.
    let strings = b"#address-cells\0#size-cells\0reg\0device_type\0";
    let s = [
        begin(""),
        begin("cpus"),
        prop(0, &cells(&[3])),
        prop(15, &cells(&[0])),
        cpu(Some(&cells(&[0, 0, 0]))),
        end_node(),
        memory(&cells(&[0, 0x8000_0000, 0x1000])),
        end_node(),
        end(),
    ];
    let err = parse(&build(&s.concat(), strings)).unwrap_err();
    assert_eq!(
        err,
        DtError::CellsTooLarge {
            path: "/cpus".into(),
            address_cells: 3,
            size_cells: 0
        }
    );
    assert!(format!("{err}").contains("/cpus"));
}

#[test]
fn overlapping_ram_is_merged_and_noted() {
    let mem = memory(&cells(&[
        0, 0x1000, 0x3000, 0, 0x0, 0x800, 0, 0x2000, 0x4000, 0, 0x9000, 0,
    ]));
    let m = parse(&tiny(&[cpu(Some(&cells(&[0])))], &[mem])).unwrap();
    assert_eq!(
        m.ram,
        vec![Region::new(0, 0x800), Region::new(0x1000, 0x5000)]
    );
    assert!(m.notes.iter().any(|n| n.contains("overlaps")));
    assert!(m.notes.iter().any(|n| n.contains("empty range")));
    // A range wrapping past 2^64 is clamped at the top, not wrapped to 0.
    let mem = memory(&cells(&[0xffff_ffff, 0xffff_f000, 0x2000, 0, 0, 0x1000]));
    let m = parse(&tiny(&[cpu(Some(&cells(&[0])))], &[mem])).unwrap();
    assert_eq!(
        m.ram,
        vec![
            Region::new(0, 0x1000),
            Region::new(0xffff_ffff_ffff_f000, 0xfff)
        ]
    );
    assert!(m.notes.iter().any(|n| n.contains("wraps")));
    assert!(m.ram.iter().all(|r| r.end().is_some()));
}

/// What `parse` made of the blob before it read the blob in one walk: the front door's
/// compact copy, read again.
fn parse_via_sanitized_copy(blob: &[u8]) -> Result<Machine, DtError> {
    parse(&fdt_front::sanitize(blob)?)
}

/// One walk of the blob itself reads exactly what a walk of its sanitized copy reads: the
/// same machine, or the same refusal. (The copy has no NOPs, no padding, another layout.)
#[test]
fn parse_reads_a_blob_as_it_reads_its_sanitized_copy() {
    for blob in [VIRT_GICV2, VIRT_GICV3, VIRT_EL2, QEMU_RPI4_DTB, RPI4_DTB] {
        assert_eq!(parse(blob), parse_via_sanitized_copy(blob));
    }
}

#[test]
fn corrupted_blobs_never_panic() {
    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    let virt = fdt_front::sanitize(VIRT_GICV3).unwrap();
    let mut oks = 0;
    let mut errs = 0;
    // Each blob is also read through its sanitized copy: the one walk must agree.
    let mut tally = |b: &[u8]| match parse(b) {
        r if r != parse_via_sanitized_copy(b) => {
            panic!("{r:?} for a blob whose copy reads differently")
        }
        Ok(_) => oks += 1,
        Err(_) => errs += 1,
    };
    for base in [virt.as_slice(), QEMU_RPI4_DTB] {
        for _ in 0..1000 {
            let mut b = base.to_vec();
            // One to three byte changes; half of them in the header or near offsets.
            for _ in 0..=(rng.next_u64() % 3) {
                let pos = if rng.next_u64().is_multiple_of(4) {
                    (rng.next_u64() % 48) as usize
                } else {
                    (rng.next_u64() as usize) % b.len()
                };
                b[pos] = match rng.next_u64() % 4 {
                    0 => 0,
                    1 => 0xff,
                    2 => b[pos] ^ (1 << (rng.next_u64() % 8)),
                    _ => rng.next_u64() as u8,
                };
            }
            tally(&b);
        }
        for _ in 0..100 {
            let len = (rng.next_u64() as usize) % (base.len() + 1);
            tally(&base[..len]);
        }
    }
    // Cut the structure block itself short (header kept consistent) at many lengths.
    let off = u32::from_be_bytes(virt[8..12].try_into().unwrap()) as usize;
    let strings_off = u32::from_be_bytes(virt[12..16].try_into().unwrap()) as usize;
    let structure = &virt[off..strings_off];
    for _ in 0..200 {
        let cut = (rng.next_u64() as usize) % structure.len();
        tally(&build(&structure[..cut], &virt[strings_off..]));
    }
    // Both outcomes must occur, or the test proves nothing.
    assert!(oks > 100 && errs > 100, "ok {oks}, err {errs}");
}

/// Strings for `nonsense`: "#address-cells" 0, "#size-cells" 15, "reg" 27, "device_type" 31,
/// "stdout-path" 43, "enable-method" 55.
const NONSENSE_STRINGS: &[u8] =
    b"#address-cells\0#size-cells\0reg\0device_type\0stdout-path\0enable-method\0";

/// A tree whose root declares `root_cells` (#address-cells, #size-cells) and holds `parts`.
fn nonsense(root_cells: (u32, u32), parts: &[Vec<u8>]) -> Vec<u8> {
    let mut s = vec![
        begin(""),
        prop(0, &cells(&[root_cells.0])),
        prop(15, &cells(&[root_cells.1])),
    ];
    s.extend_from_slice(parts);
    s.push(end_node());
    s.push(end());
    build(&s.concat(), NONSENSE_STRINGS)
}

fn cpus_node(cpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![begin("cpus"), prop(0, &cells(&[1])), prop(15, &cells(&[0]))];
    v.extend_from_slice(cpus);
    v.push(end_node());
    v.concat()
}

fn psci_cpu(n: u32) -> Vec<u8> {
    [
        begin(&format!("cpu@{n}")),
        prop(31, b"cpu\0"),
        prop(27, &cells(&[n])),
        prop(55, b"psci\0"),
        end_node(),
    ]
    .concat()
}

fn chosen(stdout: Option<&str>) -> Vec<u8> {
    let mut v = vec![begin("chosen")];
    if let Some(p) = stdout {
        v.push(prop(43, format!("{p}\0").as_bytes()));
    }
    v.push(end_node());
    v.concat()
}

/// Issue 7: a DTB that makes no sense yields a message naming what is wrong (the node), and
/// parse either carries on with what it can use (and a note the banner prints) or refuses.
#[test]
fn nonsense_trees_are_named_precisely() {
    let mem = memory(&cells(&[0, 0x4000_0000, 0, 0x1000_0000]));
    let cpus = cpus_node(&[psci_cpu(0)]);
    let msg = |b: &[u8]| format!("{}", parse(b).unwrap_err());

    // The baseline is fine and quiet about CPUs and the console.
    let ok = parse(&nonsense(
        (2, 2),
        &[cpus.clone(), mem.clone(), chosen(Some("/memory@0"))],
    ))
    .unwrap();
    assert_eq!(ok.ram, vec![Region::new(0x4000_0000, 0x1000_0000)]);
    assert!(
        ok.notes.iter().all(|n| !n.contains("cpu@")),
        "{:?}",
        ok.notes
    );

    // No memory: refused, the message says which nodes were looked for.
    let no_mem = nonsense((2, 2), &[cpus.clone(), chosen(None)]);
    assert_eq!(parse(&no_mem), Err(DtError::NoMemory));
    assert!(msg(&no_mem).contains("device_type = \"memory\" (/memory@...)"));

    // No CPUs: neither a /cpus node nor a cpu child of it.
    for parts in [vec![mem.clone()], vec![cpus_node(&[]), mem.clone()]] {
        let b = nonsense((2, 2), &parts);
        assert_eq!(parse(&b), Err(DtError::NoCpus));
        assert!(msg(&b).contains("/cpus is missing or has no available child"));
    }

    // No console: parse succeeds with console None and a note naming /chosen.
    for (parts, note) in [
        (
            vec![cpus.clone(), mem.clone()],
            "no /chosen node: no console",
        ),
        (
            vec![cpus.clone(), mem.clone(), chosen(None)],
            "/chosen has no stdout-path: no console",
        ),
        (
            vec![cpus.clone(), mem.clone(), chosen(Some("serial0"))],
            "stdout-path \"serial0\" does not resolve to a node",
        ),
    ] {
        let m = parse(&nonsense((2, 2), &parts)).unwrap();
        assert_eq!(m.console, None);
        assert!(m.notes.iter().any(|n| n.contains(note)), "{:?}", m.notes);
    }

    // A CPU without enable-method (and one with an unknown one) is kept, noted by path.
    let odd_cpu = [
        begin("cpu@1"),
        prop(31, b"cpu\0"),
        prop(27, &cells(&[1])),
        prop(55, b"acme,kick\0"),
        end_node(),
    ]
    .concat();
    let b = nonsense(
        (2, 2),
        &[
            cpus_node(&[psci_cpu(0), odd_cpu, cpu(Some(&cells(&[2])))]),
            mem.clone(),
        ],
    );
    let m = parse(&b).unwrap();
    assert_eq!(
        m.cpus
            .iter()
            .map(|c| c.enable_method.clone())
            .collect::<Vec<_>>(),
        vec![
            EnableMethod::Psci,
            EnableMethod::Other("acme,kick".into()),
            EnableMethod::Missing
        ]
    );
    assert!(
        m.notes
            .contains(&"/cpus/cpu@0: no enable-method, this CPU cannot be started".into())
    );
    assert!(m.notes.contains(
        &"/cpus/cpu@1: enable-method \"acme,kick\" is not supported, this CPU cannot be started"
            .into()
    ));

    // Overlapping RAM banks are merged and the overlap noted (the reservation block of
    // `build` reserves 0x1000+0x2000, outside RAM: kept, `mm` ignores what is not RAM).
    let overlapping = memory(&cells(&[
        0,
        0x4000_0000,
        0,
        0x2000,
        0,
        0x4000_1000,
        0,
        0x2000,
    ]));
    let m = parse(&nonsense((2, 2), &[cpus.clone(), overlapping])).unwrap();
    assert_eq!(m.ram, vec![Region::new(0x4000_0000, 0x3000)]);
    assert!(
        m.notes
            .contains(&"memory 0x40001000+0x2000 overlaps 0x40000000+0x2000: merged".into()),
        "{:?}",
        m.notes
    );

    // Cells of unusual size: 0 and 0 leave reg unreadable; 3 and 4 do not fit a u64.
    let b = nonsense((0, 0), &[cpus.clone(), memory(&cells(&[0x4000_0000]))]);
    let err = parse(&b).unwrap_err();
    assert_eq!(
        err,
        DtError::ZeroCells {
            path: "/memory@0".into(),
            property: "reg",
            parent: "/".into()
        }
    );
    assert_eq!(
        format!("{err}"),
        "device tree: /memory@0: property reg cannot be read: / has #address-cells = 0 and #size-cells = 0"
    );
    // #address-cells = 0 with a size: the address is 0, what the tree says; usable.
    let m = parse(&nonsense(
        (0, 1),
        &[cpus.clone(), memory(&cells(&[0x1000]))],
    ))
    .unwrap();
    assert_eq!(m.ram, vec![Region::new(0, 0x1000)]);
    for (ac, sc) in [(3, 2), (2, 3), (4, 4)] {
        let reg = cells(&vec![0; (ac + sc) as usize]);
        let b = nonsense((ac, sc), &[cpus.clone(), memory(&reg)]);
        assert_eq!(
            parse(&b),
            Err(DtError::CellsTooLarge {
                path: "/".into(),
                address_cells: ac,
                size_cells: sc
            })
        );
        assert!(msg(&b).starts_with(&format!(
            "device tree: / has #address-cells = {ac}, #size-cells = {sc}"
        )));
    }
}

#[test]
fn spin_table_release_addresses_must_be_reserved_ram() {
    // "cpu-release-addr" is at 69 in this strings block.
    let strings = b"#address-cells\0#size-cells\0reg\0device_type\0stdout-path\0enable-method\0cpu-release-addr\0";
    let spin = |n: u32, addr: u64| {
        [
            begin(&format!("cpu@{n}")),
            prop(31, b"cpu\0"),
            prop(27, &cells(&[n])),
            prop(55, b"spin-table\0"),
            prop(69, &addr.to_be_bytes()),
            end_node(),
        ]
        .concat()
    };
    let s = [
        begin(""),
        prop(0, &cells(&[2])),
        prop(15, &cells(&[2])),
        cpus_node(&[
            spin(0, 0x1008),      // in build()'s /memreserve/ 0x1000+0x2000: fine
            spin(1, 0x8000),      // RAM, not reserved: reserved now
            spin(2, 0x8004),      // misaligned
            spin(3, 0x9000_0000), // not RAM
        ]),
        memory(&cells(&[0, 0, 0, 0x1000_0000])),
        end_node(),
        end(),
    ];
    let m = parse(&build(&s.concat(), strings)).unwrap();
    let methods: Vec<_> = m.cpus.iter().map(|c| c.enable_method.clone()).collect();
    let bad = EnableMethod::Other("spin-table".into());
    assert_eq!(
        methods,
        vec![
            EnableMethod::SpinTable {
                release_addr: 0x1008
            },
            EnableMethod::SpinTable {
                release_addr: 0x8000
            },
            bad.clone(),
            bad
        ]
    );
    assert_eq!(
        m.reserved,
        vec![Region::new(0x1000, 0x2000), Region::new(0x8000, 8)]
    );
    for n in [
        "CPU 0x1: cpu-release-addr 0x8000 is not in a reservation: reserved",
        "CPU 0x2: cpu-release-addr 0x8004 is not an aligned word in RAM, this CPU cannot be started",
        "CPU 0x3: cpu-release-addr 0x90000000 is not an aligned word in RAM, this CPU cannot be started",
    ] {
        assert!(m.notes.contains(&n.into()), "{n} not in {:?}", m.notes);
    }
}

/// Every input the fuzzer (`just fuzz`) found a bug with, through the kernel's path (one
/// walk of the blob as the loader left it), which must read it as its sanitized copy reads.
#[test]
fn fuzz_regressions() {
    let boot_path = |blob: &[u8]| {
        let m = parse(blob);
        assert_eq!(m, parse_via_sanitized_copy(blob));
        m
    };

    // The seed "overlapping-regions": RAM and /memreserve/ ranges ending past 2^64 were
    // clamped to end exactly at 2^64, so the banner's `base + size` overflowed.
    let m = boot_path(include_bytes!(
        "../../../tests/fuzz/regressions/region-end-overflows.dtb"
    ))
    .unwrap();
    let top = Region::new(0xffff_ffff_ffff_f000, 0xfff);
    assert_eq!(m.ram, vec![Region::new(0x4000_0000, 0x5000_0000), top]);
    assert_eq!(
        m.reserved,
        vec![
            Region::new(0x4000_0000, 0x1000),
            Region::new(0x4000_0000, 0x10_0000),
            Region::new(0x4000_0800, 0x1000),
            Region::new(0x4008_0000, 0x10_0000),
            top
        ]
    );
    for r in m.ram.iter().chain(&m.reserved) {
        assert!(r.end().is_some(), "{r:?}");
    }
}
