//! Finding and checking the tables: RSDP → XSDT → each table's header, length and checksum, all
//! read through [`Memory`], which answers only for memory the tables may be in. Every number
//! comes from firmware and is checked before it is used as a length or an offset.
//!
//! The `acpi` crate supplies the tables' layouts ([`Layout`]): its structures are packed runs of
//! plain integers, so [`read`] copies bytes into one, zero-filling what the table is too short to
//! hold (the caller checks the table is long enough for every field it uses). Its own walkers are
//! not used: `AcpiTables` maps whatever address the XSDT names, and its MADT iterator trusts
//! each entry's length (a length of 0 loops for ever, one past the table's end reads past it).

use alloc::vec::Vec;
use core::mem::{MaybeUninit, size_of};

use super::{AcpiError, Memory, Table};

/// A table or entry layout from the `acpi` crate that [`read`] may fill from any bytes.
///
/// # Safety
/// The type is `repr(C, packed)` and made of integers, arrays of them and such structures only,
/// so every bit pattern, all zeroes included, is a valid value.
pub(super) unsafe trait Layout: Sized {}

// SAFETY: each is `#[repr(C, packed)]` in the `acpi` crate, of integers, byte arrays, flag
// newtypes over integers, `RawGenericAddress` (integers) and `ExtendedField` (a `MaybeUninit`
// of an integer): any bytes are a valid value.
unsafe impl Layout for acpi::sdt::SdtHeader {}
// SAFETY: as above.
unsafe impl Layout for acpi::fadt::Fadt {}
// SAFETY: as above.
unsafe impl Layout for acpi::madt::GiccEntry {}
// SAFETY: as above.
unsafe impl Layout for acpi::madt::GicdEntry {}
// SAFETY: as above.
unsafe impl Layout for acpi::madt::GicRedistributorEntry {}
// SAFETY: as above.
unsafe impl Layout for acpi::madt::GicInterruptTranslationServiceEntry {}
// SAFETY: as above.
unsafe impl Layout for acpi::spcr::Spcr {}
// SAFETY: as above.
unsafe impl Layout for acpi::mcfg::McfgEntry {}

/// `T` from the start of `bytes`, zero-filled where `bytes` is shorter than `T`.
pub(super) fn read<T: Layout>(bytes: &[u8]) -> T {
    let mut v = MaybeUninit::<T>::zeroed();
    let n = bytes.len().min(size_of::<T>());
    // SAFETY: `n` bytes fit both the source slice and `v`; they do not overlap (`v` is local);
    // `T: Layout` makes the zeroes and any copied bytes a valid `T`.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), n);
        v.assume_init()
    }
}

/// Little-endian integers at `at`, if `bytes` holds them.
pub(super) fn le(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(n)?)?;
    Some(b.iter().rev().fold(0, |v, &x| (v << 8) | u64::from(x)))
}

/// Bytes of a table header (signature, length, revision, checksum, OEM ids, creator).
pub const HEADER_LEN: usize = 36;
/// The largest table accepted: far more than any static table needs (a MADT for 4096 CPUs is
/// about 330 KiB), and it bounds what a corrupt length can make the kernel read.
pub const MAX_TABLE_LEN: u64 = 4 << 20;

/// The byte sum, which is 0 for a table with a correct checksum.
fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// One table the XSDT lists, checked: its bytes (exactly `Length` of them), or why not.
#[derive(Clone, Debug)]
pub(super) struct Entry<'m> {
    /// The signature its header gave (zeroes when the header could not be read).
    pub sig: [u8; 4],
    /// Its physical address.
    pub pa: u64,
    /// Its bytes, or what is wrong with them.
    pub bytes: Result<&'m [u8], AcpiError>,
}

/// The RSDP's and XSDT's findings and every table the XSDT lists.
pub(super) struct Tables<'m> {
    /// The RSDP's revision (2 or more) and OEM ID.
    pub rsdp_revision: u8,
    pub oem_id: [u8; 6],
    /// The XSDT's address.
    pub xsdt: u64,
    pub entries: Vec<Entry<'m>>,
}

impl<'m> Tables<'m> {
    /// Follow the RSDP at `rsdp` to the XSDT and check every table it lists. Only the RSDP and
    /// the XSDT must be right; a listed table that is unreadable or corrupt is kept with its
    /// error, which matters only if the kernel needs that table ([`Tables::get`]).
    pub fn read(mem: &'m dyn Memory, rsdp: u64) -> Result<Self, AcpiError> {
        let head = mem.bytes(rsdp, 20).ok_or(AcpiError::Unreadable {
            table: Table::Rsdp,
            pa: rsdp,
            len: 20,
        })?;
        if head.get(..8) != Some(b"RSD PTR ".as_slice()) {
            return Err(AcpiError::BadSignature {
                table: Table::Rsdp,
                pa: rsdp,
            });
        }
        if sum(head) != 0 {
            return Err(AcpiError::Checksum {
                table: Table::Rsdp,
                pa: rsdp,
                field: "Checksum (of its first 20 bytes)",
                sum: sum(head),
            });
        }
        let revision = head.get(15).copied().unwrap_or(0);
        if revision < 2 {
            return Err(AcpiError::OldRsdp { revision });
        }
        let len = le(mem.bytes(rsdp, 36).unwrap_or(&[]), 20, 4).ok_or(AcpiError::Unreadable {
            table: Table::Rsdp,
            pa: rsdp,
            len: 36,
        })?;
        if !(36..=4096).contains(&len) {
            return Err(AcpiError::BadLength {
                table: Table::Rsdp,
                pa: rsdp,
                length: len,
                why: "an ACPI 2.0 RSDP is at least 36 bytes",
            });
        }
        let rsdp_bytes = mem.bytes(rsdp, len as usize).ok_or(AcpiError::Unreadable {
            table: Table::Rsdp,
            pa: rsdp,
            len,
        })?;
        if sum(rsdp_bytes) != 0 {
            return Err(AcpiError::Checksum {
                table: Table::Rsdp,
                pa: rsdp,
                field: "Extended Checksum",
                sum: sum(rsdp_bytes),
            });
        }
        let mut oem_id = [0u8; 6];
        oem_id.copy_from_slice(&rsdp_bytes[9..15]);
        let xsdt = le(rsdp_bytes, 24, 8).unwrap_or(0);
        let xsdt_bytes = table_at(mem, xsdt)?;
        if xsdt_bytes.get(..4) != Some(b"XSDT".as_slice()) {
            return Err(AcpiError::BadSignature {
                table: Table::Sdt(*b"XSDT"),
                pa: xsdt,
            });
        }
        let body = &xsdt_bytes[HEADER_LEN..];
        if !body.len().is_multiple_of(8) {
            return Err(AcpiError::BadLength {
                table: Table::Sdt(*b"XSDT"),
                pa: xsdt,
                length: xsdt_bytes.len() as u64,
                why: "its entries are not a whole number of 8-byte addresses",
            });
        }
        let entries = body
            .chunks_exact(8)
            .map(|a| {
                let pa = le(a, 0, 8).unwrap_or(0);
                let bytes = table_at(mem, pa);
                let sig = match &bytes {
                    Ok(b) => sig_of(b),
                    Err(_) => mem.bytes(pa, 4).map_or([0; 4], sig_of),
                };
                Entry { sig, pa, bytes }
            })
            .collect();
        Ok(Self {
            rsdp_revision: revision,
            oem_id,
            xsdt,
            entries,
        })
    }

    /// The first table with signature `sig`: `Ok(None)` when the XSDT lists none, `Err` when
    /// the first it lists is unreadable or corrupt.
    pub fn get(&self, sig: &[u8; 4]) -> Result<Option<&'m [u8]>, AcpiError> {
        match self.entries.iter().find(|e| &e.sig == sig) {
            None => Ok(None),
            Some(e) => e.bytes.clone().map(Some),
        }
    }
}

fn sig_of(b: &[u8]) -> [u8; 4] {
    let mut s = [0u8; 4];
    if let Some(b) = b.get(..4) {
        s.copy_from_slice(b);
    }
    s
}

/// The table at `pa`, checked: its header readable, its `Length` at least a header and at most
/// [`MAX_TABLE_LEN`], all of it readable, its checksum right. Exactly `Length` bytes.
fn table_at(mem: &dyn Memory, pa: u64) -> Result<&[u8], AcpiError> {
    let head = mem.bytes(pa, HEADER_LEN).ok_or(AcpiError::Unreadable {
        table: Table::Unknown,
        pa,
        len: HEADER_LEN as u64,
    })?;
    let table = Table::Sdt(sig_of(head));
    let len = le(head, 4, 4).unwrap_or(0);
    if !(HEADER_LEN as u64..=MAX_TABLE_LEN).contains(&len) {
        return Err(AcpiError::BadLength {
            table,
            pa,
            length: len,
            why: "a table is at least its 36-byte header and at most 4 MiB",
        });
    }
    let bytes = mem
        .bytes(pa, len as usize)
        .ok_or(AcpiError::Unreadable { table, pa, len })?;
    if sum(bytes) != 0 {
        return Err(AcpiError::Checksum {
            table,
            pa,
            field: "Checksum",
            sum: sum(bytes),
        });
    }
    Ok(bytes)
}
