//! Synthetic ACPI tables, laid out as QEMU's `virt` board has them behind EDK2 (RSDP, XSDT, FADT,
//! MADT, GTDT, SPCR, MCFG), in a byte buffer standing for physical memory: for the host tests and
//! the fuzzer (`tests/fuzz`), which start from them and corrupt them.

use alloc::vec;
use alloc::vec::Vec;

use super::Memory;
use super::tables::HEADER_LEN;
use crate::platform::devicetree::Machine;

/// Physical memory at `base`: the tables the RSDP at `base` leads to.
#[derive(Clone, Debug)]
pub struct Blob {
    /// Where `bytes` starts.
    pub base: u64,
    /// The memory.
    pub bytes: Vec<u8>,
    /// Tables start at multiples of this ([`blob`]); 0 for memory laid out otherwise.
    pub slot: usize,
}

impl Memory for Blob {
    fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]> {
        let off = usize::try_from(pa.checked_sub(self.base)?).ok()?;
        self.bytes.get(off..off.checked_add(len)?)
    }
}

/// Where the synthetic tables live, as EDK2 puts them in an ACPI reclaim region.
pub const BASE: u64 = 0x7f80_0000;
/// Each table starts at a multiple of this within the blob, at least.
const MIN_SLOT: usize = 0x400;

/// Fix the checksum byte at `at` so that `bytes` sums to 0.
pub fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let s = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = 0u8.wrapping_sub(s);
}

/// A table: header (`sig`, length, `revision`, checksum, QEMU's OEM ids) and `body`.
pub fn table(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; HEADER_LEN];
    t[0..4].copy_from_slice(sig);
    t[4..8].copy_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
    t[8] = revision;
    t[10..16].copy_from_slice(b"BOCHS ");
    t[16..24].copy_from_slice(b"BXPC    ");
    t[24..28].copy_from_slice(&1u32.to_le_bytes());
    t[28..32].copy_from_slice(b"BXPC");
    t[32..36].copy_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

/// An ACPI 2.0 RSDP pointing at `xsdt`.
pub fn rsdp(xsdt: u64) -> Vec<u8> {
    let mut r = vec![0u8; 36];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"BOCHS ");
    r[15] = 2;
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    fix_checksum(&mut r[..20], 8);
    fix_checksum(&mut r, 32);
    r
}

/// A FADT of ACPI 6.0 (276 bytes): hardware-reduced, PSCI over HVC or SMC, or no PSCI.
pub fn fadt(psci: Option<bool>) -> Vec<u8> {
    let mut body = vec![0u8; 276 - HEADER_LEN];
    let flags: u32 = 1 << 20; // HW_REDUCED_ACPI
    body[112 - HEADER_LEN..116 - HEADER_LEN].copy_from_slice(&flags.to_le_bytes());
    let arm: u16 = match psci {
        None => 0,
        Some(hvc) => 1 | (u16::from(hvc) << 1),
    };
    body[129 - HEADER_LEN..131 - HEADER_LEN].copy_from_slice(&arm.to_le_bytes());
    table(b"FACP", 6, &body)
}

/// A GICC entry of ACPI 6.0 (80 bytes).
pub fn gicc(uid: u32, mpidr: u64, enabled: bool, gicc_base: u64, gicr_base: u64) -> Vec<u8> {
    let mut e = vec![0u8; 80];
    e[0] = 0x0b;
    e[1] = 80;
    e[4..8].copy_from_slice(&uid.to_le_bytes());
    e[8..12].copy_from_slice(&uid.to_le_bytes());
    e[12..16].copy_from_slice(&u32::from(enabled).to_le_bytes());
    e[32..40].copy_from_slice(&gicc_base.to_le_bytes());
    e[60..68].copy_from_slice(&gicr_base.to_le_bytes());
    e[68..76].copy_from_slice(&mpidr.to_le_bytes());
    e
}

/// A GICD entry.
pub fn gicd(base: u64, version: u8) -> Vec<u8> {
    let mut e = vec![0u8; 24];
    e[0] = 0x0c;
    e[1] = 24;
    e[8..16].copy_from_slice(&base.to_le_bytes());
    e[20] = version;
    e
}

/// A GICR entry: a redistributor discovery range.
pub fn gicr(base: u64, len: u32) -> Vec<u8> {
    let mut e = vec![0u8; 16];
    e[0] = 0x0e;
    e[1] = 16;
    e[4..12].copy_from_slice(&base.to_le_bytes());
    e[12..16].copy_from_slice(&len.to_le_bytes());
    e
}

/// A GIC ITS entry.
pub fn its(base: u64) -> Vec<u8> {
    let mut e = vec![0u8; 20];
    e[0] = 0x0f;
    e[1] = 20;
    e[8..16].copy_from_slice(&base.to_le_bytes());
    e
}

/// A MADT (revision 4) of `entries`.
pub fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![0u8; 8];
    for e in entries {
        body.extend_from_slice(e);
    }
    table(b"APIC", 4, &body)
}

/// A GTDT (revision 2, 96 bytes) with these non-secure EL1 and virtual EL1 timer GSIVs.
pub fn gtdt(phys: u32, virt: u32) -> Vec<u8> {
    let mut body = vec![0u8; 96 - HEADER_LEN];
    body[36 - HEADER_LEN..44 - HEADER_LEN].copy_from_slice(&u64::MAX.to_le_bytes());
    body[48 - HEADER_LEN..52 - HEADER_LEN].copy_from_slice(&29u32.to_le_bytes());
    body[56 - HEADER_LEN..60 - HEADER_LEN].copy_from_slice(&phys.to_le_bytes());
    body[64 - HEADER_LEN..68 - HEADER_LEN].copy_from_slice(&virt.to_le_bytes());
    body[72 - HEADER_LEN..76 - HEADER_LEN].copy_from_slice(&26u32.to_le_bytes());
    body[80 - HEADER_LEN..88 - HEADER_LEN].copy_from_slice(&u64::MAX.to_le_bytes());
    table(b"GTDT", 2, &body)
}

/// An SPCR (revision 2, 80 bytes): a UART of `interface_type` at `base`, GSIV 33, 115200 baud.
pub fn spcr(interface_type: u8, base: u64) -> Vec<u8> {
    let mut body = vec![0u8; 80 - HEADER_LEN];
    body[0] = interface_type;
    // Generic Address Structure at 40: system memory, 32-bit accesses.
    body[40 - HEADER_LEN] = 0;
    body[41 - HEADER_LEN] = 32;
    body[43 - HEADER_LEN] = 3;
    body[44 - HEADER_LEN..52 - HEADER_LEN].copy_from_slice(&base.to_le_bytes());
    body[52 - HEADER_LEN] = 1 << 3; // interrupt type: Arm GIC
    body[54 - HEADER_LEN..58 - HEADER_LEN].copy_from_slice(&33u32.to_le_bytes());
    body[58 - HEADER_LEN] = 7; // 115200
    body[64 - HEADER_LEN..66 - HEADER_LEN].copy_from_slice(&0xffffu16.to_le_bytes());
    body[66 - HEADER_LEN..68 - HEADER_LEN].copy_from_slice(&0xffffu16.to_le_bytes());
    table(b"SPCR", 2, &body)
}

/// An MCFG of `(base, segment, first bus, last bus)` windows.
pub fn mcfg(windows: &[(u64, u16, u8, u8)]) -> Vec<u8> {
    let mut body = vec![0u8; 8];
    for &(base, seg, start, end) in windows {
        let mut e = vec![0u8; 16];
        e[0..8].copy_from_slice(&base.to_le_bytes());
        e[8..10].copy_from_slice(&seg.to_le_bytes());
        e[10] = start;
        e[11] = end;
        body.extend(e);
    }
    table(b"MCFG", 1, &body)
}

/// The RSDP at [`BASE`], an XSDT listing `tables` in order, and the tables, each at its own slot.
pub fn blob(tables: &[Vec<u8>]) -> Blob {
    let longest = tables.iter().map(Vec::len).max().unwrap_or(0);
    let slot = (8 * tables.len() + HEADER_LEN)
        .max(longest)
        .next_power_of_two()
        .max(MIN_SLOT);
    let mut bytes = vec![0u8; slot * (tables.len() + 2)];
    let mut addrs = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let off = slot * (i + 2);
        bytes[off..off + t.len()].copy_from_slice(t);
        addrs.extend_from_slice(&(BASE + off as u64).to_le_bytes());
    }
    let xsdt = table(b"XSDT", 1, &addrs);
    bytes[slot..slot + xsdt.len()].copy_from_slice(&xsdt);
    let r = rsdp(BASE + slot as u64);
    bytes[..r.len()].copy_from_slice(&r);
    Blob {
        base: BASE,
        bytes,
        slot,
    }
}

/// QEMU virt's tables with `cpus` CPUs (MPIDR 0, 1, ...) on a GICv2 or GICv3.
pub fn qemu_virt(cpus: u64, gic_v3: bool) -> Blob {
    let mut entries: Vec<Vec<u8>> = (0..cpus)
        .map(|i| {
            let gicc_base = if gic_v3 { 0 } else { 0x0801_0000 };
            let gicr_base = if gic_v3 {
                0x080a_0000 + i * 0x2_0000
            } else {
                0
            };
            gicc(i as u32, i, true, gicc_base, gicr_base)
        })
        .collect();
    entries.push(gicd(0x0800_0000, if gic_v3 { 3 } else { 2 }));
    if gic_v3 {
        entries.push(gicr(0x080a_0000, 0xf6_0000));
        entries.push(its(0x0808_0000));
    }
    blob(&[
        fadt(Some(true)),
        madt(&entries),
        gtdt(30, 27),
        spcr(3, 0x0900_0000),
        mcfg(&[(0x40_1000_0000, 0, 0, 0xff)]),
    ])
}

/// The memory and command line the UEFI memory map and load options give: 1 GiB of RAM at 1 GiB
/// that holds the tables.
pub fn machine() -> Machine {
    use crate::mm::region::Region;
    Machine {
        ram: vec![Region::new(0x4000_0000, 0x4000_0000)],
        reserved: vec![Region::new(BASE, 0x10_0000)],
        read_only: vec![Region::new(BASE, 0x10_0000)],
        bootargs: "semihosting".into(),
        ..Machine::default()
    }
}

/// The offset in `blob` of the first table with signature `sig` (tables start at slots).
pub fn offset_of(blob: &Blob, sig: &[u8; 4]) -> Option<usize> {
    (blob.slot.max(1)..blob.bytes.len())
        .step_by(blob.slot.max(1))
        .find(|&o| blob.bytes.get(o..o + 4) == Some(sig.as_slice()))
}

/// Change the table `sig` in `blob` with `f` (given the table's slot: its bytes and what follows
/// up to the next slot), then fix its checksum when `fix`.
pub fn patch(blob: &mut Blob, sig: &[u8; 4], fix: bool, f: impl FnOnce(&mut [u8])) {
    let off = offset_of(blob, sig).expect("no such table");
    let end = (off + blob.slot).min(blob.bytes.len());
    f(&mut blob.bytes[off..end]);
    if fix {
        let len = u32::from_le_bytes(blob.bytes[off + 4..off + 8].try_into().unwrap()) as usize;
        let len = len.clamp(HEADER_LEN, end - off);
        fix_checksum(&mut blob.bytes[off..off + len], 9);
    }
}

/// One fuzz input (`tests/fuzz`, target `acpi`), read through [`describe`](super::describe) as
/// the kernel reads the firmware's tables; [`check`] says whether the outcome is sound.
///
/// The first byte chooses: bit 0 clear, the rest of the input is the memory at [`BASE`], the
/// RSDP first; bit 0 set, [`qemu_virt`]'s tables (GICv3 with bit 2, 1 to 8 CPUs by bits 4-6)
/// changed by the rest as 3-byte pokes (a little-endian offset into the tables, a byte), their
/// checksums then fixed with bit 1 (so that the fuzzer gets past them). Bit 7: the boot CPU's
/// MPIDR is 1 rather than 0.
pub fn fuzz_one(data: &[u8]) -> Option<Result<(Machine, super::AcpiInfo), super::AcpiError>> {
    let (&mode, rest) = data.split_first()?;
    let blob = if mode & 1 == 0 {
        Blob {
            base: BASE,
            bytes: rest.to_vec(),
            slot: 0,
        }
    } else {
        let mut b = qemu_virt(u64::from((mode >> 4) & 7) + 1, mode & 4 != 0);
        for p in rest.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([p[0], p[1]])) % b.bytes.len();
            b.bytes[at] = p[2];
        }
        if mode & 2 != 0 {
            fix_all_checksums(&mut b);
        }
        b
    };
    let mut m = machine();
    let boot_mpidr = u64::from(mode >> 7);
    Some(super::describe(&blob, BASE, boot_mpidr, &mut m).map(|info| (m, info)))
}

/// Make the RSDP's and every slot's table's checksums right again, whatever their lengths say.
fn fix_all_checksums(b: &mut Blob) {
    fix_checksum(&mut b.bytes[..20], 8);
    let len = (u32::from_le_bytes(b.bytes[20..24].try_into().unwrap()) as usize).clamp(20, 36);
    fix_checksum(&mut b.bytes[..len], 32.min(len - 1));
    for off in (b.slot..b.bytes.len()).step_by(b.slot) {
        let len = u32::from_le_bytes(b.bytes[off + 4..off + 8].try_into().unwrap()) as usize;
        let len = len.clamp(HEADER_LEN, b.slot);
        fix_checksum(&mut b.bytes[off..off + len], 9);
    }
}

/// Panic unless the outcome of [`fuzz_one`] is sound: an error has a message naming ACPI; a
/// machine has the boot CPU, a GIC whose ranges end inside the address space, notes that print,
/// and RAM and reservations the kernel's memory setup can take.
pub fn check(outcome: &Result<(Machine, super::AcpiInfo), super::AcpiError>, boot_mpidr: u64) {
    use alloc::format;
    match outcome {
        Err(e) => assert!(format!("{e}").starts_with("ACPI: "), "{e}"),
        Ok((m, info)) => {
            assert!(m.cpus.iter().any(|c| c.mpidr == boot_mpidr), "no boot CPU");
            let mut mpidrs: Vec<u64> = m.cpus.iter().map(|c| c.mpidr).collect();
            mpidrs.sort_unstable();
            mpidrs.dedup();
            assert_eq!(mpidrs.len(), m.cpus.len(), "a CPU listed twice");
            let gic = m.gic.expect("a GIC");
            assert!(gic.dist.size > 0 && gic.cpu_or_redist.size > 0);
            if let Some(t) = &m.timer {
                assert!(t.virt_irq.is_some_and(|i| (16..32).contains(&i)));
            }
            if let Some(c) = &m.console {
                let r = crate::mm::region::Region::new(c.base, c.size);
                assert!(!crate::mm::region::overlaps(&m.ram, r), "console in RAM");
            }
            let log = format!("{m:?} {info:?} {}", m.notes.join("\n"));
            assert!(!log.is_empty());
        }
    }
}
