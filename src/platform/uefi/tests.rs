use super::*;

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[test]
fn load_options_are_converted_to_ascii() {
    let mut out = [0u8; 64];
    let opts = [
        ucs2("semihosting workload=compute\t"),
        vec![0, 0],
        ucs2("junk"),
    ]
    .concat();
    let r = load_options_to_ascii(&opts, &mut out);
    assert_eq!(
        r,
        LoadOptions::Text {
            len: 29,
            truncated: false
        }
    );
    assert_eq!(&out[..29], b"semihosting workload=compute ");
    // No NUL: up to the end; an odd trailing byte is no code unit.
    let mut odd = ucs2("a b");
    odd.push(b'x');
    assert_eq!(
        load_options_to_ascii(&odd, &mut out),
        LoadOptions::Text {
            len: 3,
            truncated: false
        }
    );
    assert_eq!(
        load_options_to_ascii(&[], &mut out),
        LoadOptions::Text {
            len: 0,
            truncated: false
        }
    );
}

#[test]
fn long_options_are_truncated_and_binary_ones_refused() {
    let mut out = [0u8; 4];
    assert_eq!(
        load_options_to_ascii(&ucs2("abcdef"), &mut out),
        LoadOptions::Text {
            len: 4,
            truncated: true
        }
    );
    assert_eq!(&out, b"abcd");
    // EDK2's boot manager passes its own options' optional data: a GUID's 16 bytes.
    let guid = [
        0x44, 0x72, 0x2f, 0xa5, 0x47, 0x6c, 0x0b, 0x4c, 0x84, 0xbb, 0x0c, 0x6d, 0x05, 0x6a, 0xfc,
        0x86,
    ];
    assert_eq!(
        load_options_to_ascii(&guid, &mut [0; 64]),
        LoadOptions::NotText
    );
    assert_eq!(
        load_options_to_ascii(&ucs2("caf\u{e9}"), &mut [0; 64]),
        LoadOptions::NotText
    );
}

/// A memory map of `desc_size`-byte descriptors (type, base, pages, attributes).
pub(crate) fn memory_map(desc_size: usize, entries: &[(u32, u64, u64, u64)]) -> Vec<u8> {
    let mut map = Vec::new();
    for &(ty, base, pages, attr) in entries {
        let mut d = vec![0u8; desc_size];
        d[0..4].copy_from_slice(&ty.to_le_bytes());
        d[8..16].copy_from_slice(&base.to_le_bytes());
        d[16..24].copy_from_slice(&0xdead_0000u64.to_le_bytes()); // virtual start: unused
        d[24..32].copy_from_slice(&pages.to_le_bytes());
        d[32..40].copy_from_slice(&attr.to_le_bytes());
        map.extend(d);
    }
    map
}

const WB: u64 = MemoryAttribute::WRITE_BACK.bits() | MemoryAttribute::UNCACHEABLE.bits();
const RUNTIME: u64 = WB | MemoryAttribute::RUNTIME.bits();

/// The shape of EDK2's map on QEMU virt with 1 GiB: the firmware's own device tree first, the
/// loader, boot services, ACPI tables and runtime services scattered through RAM, the flash and
/// the UART as MMIO.
fn edk2_like() -> Vec<u8> {
    memory_map(
        48,
        &[
            (4, 0x4000_0000, 0x100, WB),      // boot services data (QEMU's DTB)
            (7, 0x4010_0000, 0x3f00, WB),     // conventional
            (2, 0x4400_0000, 0x10, WB),       // loader data
            (1, 0x4401_0000, 0x200, WB),      // loader code: the image
            (7, 0x4421_0000, 0x3b5f0, WB),    // conventional
            (9, 0x7f80_0000, 0x20, WB),       // ACPI reclaim: the tables
            (10, 0x7f82_0000, 0x10, WB),      // ACPI NVS
            (6, 0x7f83_0000, 0x100, RUNTIME), // runtime data
            (5, 0x7f93_0000, 0x100, RUNTIME), // runtime code
            (3, 0x7fa3_0000, 0x5d0, WB),      // boot services code
            (0, 0x4_0000_0000, 0x10, WB),     // reserved
            (11, 0x0400_0000, 0x4000, RUNTIME ^ WB), // MMIO: the flash, uncached
            (11, 0x0900_0000, 0x1, 0x1),      // MMIO: the UART
        ],
    )
}

#[test]
fn free_memory_and_tables_are_ram_runtime_and_reserved_are_not() {
    let m = EfiMemory::parse(&edk2_like(), 48).unwrap();
    assert_eq!(
        m.ram,
        vec![
            Region::new(0x4000_0000, 0x7f83_0000 - 0x4000_0000),
            Region::new(0x7fa3_0000, 0x5d0 << 12),
        ],
        "the runtime regions split RAM; MMIO and reserved memory are not RAM"
    );
    assert_eq!(m.tables, vec![Region::new(0x7f80_0000, 0x30 << 12)]);
    assert!(m.notes.is_empty(), "{:?}", m.notes);
    // The same map with version 1's 40-byte descriptors reads the same.
    let short: Vec<u8> = edk2_like()
        .chunks(48)
        .flat_map(|d| d[..40].to_vec())
        .collect();
    assert_eq!(EfiMemory::parse(&short, 40).unwrap(), m);
}

#[test]
fn memory_without_write_back_or_odd_descriptors_is_left_out() {
    let map = memory_map(
        40,
        &[
            (7, 0x4000_0000, 0x100, 0x1),          // conventional, uncached only
            (7, 0x5000_0000, 0x100, WB),           // the only RAM
            (7, 0x6000_0800, 0x10, WB),            // misaligned
            (7, 0xffff_ffff_ffff_f000, 0x10, WB),  // wraps
            (7, 0x1000, u64::MAX / 4096 + 1, WB),  // size overflows
            (7, 0x7000_0000, 0, WB),               // empty
            (0x7000_0001, 0x8000_0000, 0x100, WB), // an OEM type
        ],
    );
    let mut with_tail = map.clone();
    with_tail.extend([0u8; 12]); // not a whole descriptor
    let m = EfiMemory::parse(&with_tail, 40).unwrap();
    assert_eq!(m.ram, vec![Region::new(0x5000_0000, 0x100 << 12)]);
    assert_eq!(m.notes.len(), 3, "{:?}", m.notes);
    assert!(m.notes[0].contains("0x60000800"), "{}", m.notes[0]);
}

#[test]
fn a_map_without_ram_is_refused() {
    let only_tables = memory_map(40, &[(9, 0x4000_0000, 0x10, WB), (5, 0x5000_0000, 1, WB)]);
    assert_eq!(EfiMemory::parse(&only_tables, 40), Err(MapError::NoRam));
    assert_eq!(EfiMemory::parse(&[], 48), Err(MapError::NoRam));
    let e = EfiMemory::parse(&only_tables, 24).unwrap_err();
    assert_eq!(e, MapError::DescriptorTooSmall(24));
    assert!(e.to_string().contains("descriptor size 24"));
}

#[test]
fn the_device_tree_wins_unless_acpi_is_forced() {
    use Description::*;
    let c = |s| Cmdline(s);
    assert_eq!(choose(true, true, c("")), Ok((DeviceTree, None)));
    assert_eq!(choose(false, true, c("")), Ok((Acpi, None)));
    assert_eq!(choose(true, false, c("")), Ok((DeviceTree, None)));
    assert_eq!(choose(true, true, c("acpi=force")), Ok((Acpi, None)));
    let (d, note) = choose(true, false, c("acpi=force")).unwrap();
    assert_eq!(d, DeviceTree);
    assert!(note.unwrap().contains("no ACPI tables"));
    assert_eq!(choose(true, true, c("acpi=off")), Ok((DeviceTree, None)));
    assert_eq!(
        choose(false, true, c("acpi=off")),
        Err(ChoiceError::AcpiOffWithoutDt)
    );
    assert_eq!(choose(false, false, c("")), Err(ChoiceError::Neither));
    assert_eq!(
        choose(false, false, c("acpi=force")),
        Err(ChoiceError::Neither)
    );
    assert!(
        ChoiceError::Neither
            .to_string()
            .contains("neither a device tree nor ACPI")
    );
}
