use super::*;
use crate::platform::devicetree;

/// What QEMU raspi4b hands the kernel with the real Pi 4 DTB (see tests/data/README.md).
const QEMU_RPI4_DTB: &[u8] = include_bytes!("../../../tests/data/qemu-raspi4b-rpi-dtb.dtb");

#[test]
fn builtin_agrees_with_the_real_dtb_as_qemu_hands_it_over() {
    let dt = devicetree::parse(QEMU_RPI4_DTB).unwrap();
    let b = machine(&[]);
    assert_eq!(b.ram, dt.ram);
    assert_eq!(b.reserved, dt.reserved);
    assert_eq!(b.console, dt.console);
    assert_eq!(b.gic, dt.gic);
    assert_eq!(b.timer, dt.timer);
    assert_eq!(b.psci, dt.psci);
    assert_eq!(b.cpus, dt.cpus);
    assert_eq!(b.compatible, dt.compatible);
}

#[test]
fn builtin_fits_the_first_gib_and_reserves_the_spin_table_page() {
    let b = machine(&[]);
    let top = b.ram.iter().map(|r| r.base + r.size).max().unwrap();
    assert!(
        top <= 1 << 30,
        "the early linear window maps only the first GiB here"
    );
    for c in &b.cpus {
        let EnableMethod::SpinTable { release_addr } = c.enable_method else {
            panic!("CPU {:#x} is not spin-table", c.mpidr);
        };
        assert!(
            b.reserved
                .iter()
                .any(|r| release_addr >= r.base && release_addr + 8 <= r.base + r.size),
            "release address {release_addr:#x} is not reserved"
        );
    }
    assert_eq!(b.bootargs, "");
}

/// An ATAG list as QEMU's arm boot code lays it out at 0x100.
fn atags(cmdline: Option<&str>) -> Vec<u8> {
    let mut w: Vec<u32> = vec![5, ATAG_CORE, 1, 4096, 0];
    w.extend([4, 0x5441_0002, 0x3c00_0000, 0]); // ATAG_MEM
    if let Some(c) = cmdline {
        let mut bytes = c.as_bytes().to_vec();
        bytes.push(0);
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        w.extend([2 + bytes.len() as u32 / 4, ATAG_CMDLINE]);
        w.extend(
            bytes
                .chunks(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    w.extend([0, ATAG_NONE]);
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn atag_cmdline_found_after_other_tags() {
    let list = atags(Some("semihosting workload=compute"));
    assert_eq!(
        atag_cmdline(&list).as_deref(),
        Some("semihosting workload=compute")
    );
    assert_eq!(machine(&list).bootargs, "semihosting workload=compute");
    // Trailing bytes after ATAG_NONE are ignored; a 4 KiB read past the list is harmless.
    let mut padded = list.clone();
    padded.resize(4096, 0xff);
    assert_eq!(
        atag_cmdline(&padded).as_deref(),
        Some("semihosting workload=compute")
    );
}

#[test]
fn atag_cmdline_refuses_what_is_not_an_atag_list() {
    assert_eq!(atag_cmdline(&atags(None)), None);
    assert_eq!(atag_cmdline(&[]), None);
    // A device tree's header is not an ATAG list.
    assert_eq!(atag_cmdline(QEMU_RPI4_DTB), None);
    // Truncated in the middle of the command line tag.
    let list = atags(Some("a fairly long command line"));
    assert_eq!(atag_cmdline(&list[..40]), None);
    // A size of 0 or 1 words would loop forever or overlap: stop.
    let mut bad = atags(Some("x"));
    bad[20..24].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(atag_cmdline(&bad), None);
}
