//! What UEFI firmware hands the kernel through the EFI stub (`arch::aarch64::efi`), read as pure
//! logic: the load options (the command line), the memory map, and which machine description to
//! boot with when the firmware gave a device tree, ACPI tables, both or neither.
//!
//! The memory map, not the device tree's `/memory`, says what RAM is, as in Linux booted through
//! UEFI: boot-services code and data, the loader's and conventional memory are the kernel's once
//! boot services have exited; runtime-services regions, reserved and unusable memory, MMIO are
//! not RAM at all (never mapped, never handed out); the ACPI regions (reclaimable tables and NVS)
//! are RAM the kernel maps read-only, to read the tables, and never hands to the frame allocator.
//! Only memory the map says may be mapped write-back cacheable (`EFI_MEMORY_WB`) counts.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use uefi_raw::table::boot::{MemoryAttribute, MemoryType};

use crate::cmdline::Cmdline;
use crate::mm::region::{self, Region};

/// The UEFI page, which memory-map descriptors count in.
pub const EFI_PAGE_SIZE: u64 = 4096;
/// The fields of a version 1 memory descriptor (type, padding, physical and virtual start, pages,
/// attributes): the least a descriptor may be; firmware may make them larger (EDK2: 48).
pub const MIN_DESC_SIZE: usize = 40;

/// What the loaded image's load options held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadOptions {
    /// UCS-2 text, converted to `len` bytes of ASCII (tabs and line ends as spaces), up to its
    /// NUL or end; `truncated` when there was more than the buffer holds.
    Text {
        /// Bytes of command line.
        len: usize,
        /// The options held more text than the buffer.
        truncated: bool,
    },
    /// Something that is not printable UCS-2 (EDK2's boot manager passes a boot option's binary
    /// optional data, a GUID, for the options it creates itself): no command line.
    NotText,
}

/// Convert the load options (UCS-2, little-endian) to the ASCII command line in `out`.
///
/// Run by the EFI stub under the firmware, so it must not panic or use data with absolute
/// addresses (see `arch::aarch64::efi`): no indexing, only iterators and patterns. A code unit
/// outside printable ASCII makes the whole options [`LoadOptions::NotText`]: Linux would pass
/// them on as they are, but a command line made of a GUID's bytes would only mislead.
pub fn load_options_to_ascii(options: &[u8], out: &mut [u8]) -> LoadOptions {
    let units = options.chunks_exact(2).map(|p| match *p {
        [lo, hi] => u16::from_le_bytes([lo, hi]),
        _ => 0,
    });
    let mut slots = out.iter_mut();
    let mut len = 0;
    for u in units {
        let c = match u {
            0 => break,
            0x20..=0x7e => u as u8,
            0x09 | 0x0a | 0x0d => b' ',
            _ => return LoadOptions::NotText,
        };
        match slots.next() {
            Some(slot) => *slot = c,
            None => {
                return LoadOptions::Text {
                    len,
                    truncated: true,
                };
            }
        }
        len += 1;
    }
    LoadOptions::Text {
        len,
        truncated: false,
    }
}

/// One memory-map descriptor, the fields the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// `EFI_MEMORY_TYPE`.
    pub ty: MemoryType,
    /// Physical start.
    pub base: u64,
    /// Length in 4 KiB pages.
    pub pages: u64,
    /// `EFI_MEMORY_*` attribute bits.
    pub attr: MemoryAttribute,
}

/// Why the memory map cannot be read at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Descriptors are smaller than version 1's fields.
    DescriptorTooSmall(usize),
    /// Not one descriptor describes RAM the kernel may use.
    NoRam,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DescriptorTooSmall(n) => write!(
                f,
                "UEFI memory map: descriptor size {n} is smaller than the {MIN_DESC_SIZE} bytes of a version 1 descriptor"
            ),
            Self::NoRam => f.write_str(
                "UEFI memory map: no write-back cacheable conventional, loader or boot-services memory: no RAM",
            ),
        }
    }
}

/// The descriptors of a memory map of `desc_size`-byte entries (trailing bytes that make no whole
/// descriptor are ignored).
pub fn descriptors(
    map: &[u8],
    desc_size: usize,
) -> Result<impl Iterator<Item = Descriptor> + '_, MapError> {
    if desc_size < MIN_DESC_SIZE {
        return Err(MapError::DescriptorTooSmall(desc_size));
    }
    Ok(map.chunks_exact(desc_size).map(|d| {
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[at..at + 8]);
            u64::from_le_bytes(b)
        };
        Descriptor {
            ty: MemoryType(u64_at(0) as u32),
            base: u64_at(8),
            pages: u64_at(24),
            attr: MemoryAttribute::from_bits_retain(u64_at(32)),
        }
    }))
}

/// What the memory map's type makes of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// The kernel's RAM once boot services have exited (Linux's `is_usable_memory`, less ACPI
    /// reclaim memory, which is [`Use::Tables`] here).
    Free,
    /// ACPI tables and NVS: mapped read-only, never handed out.
    Tables,
    /// Neither RAM nor mappable: runtime services, reserved, unusable, MMIO, anything unknown.
    None,
}

/// How the kernel uses memory of type `ty`, given its attributes (only write-back cacheable
/// memory is RAM).
pub fn use_of(ty: MemoryType, attr: MemoryAttribute) -> Use {
    if !attr.contains(MemoryAttribute::WRITE_BACK) {
        return Use::None;
    }
    match ty {
        MemoryType::LOADER_CODE
        | MemoryType::LOADER_DATA
        | MemoryType::BOOT_SERVICES_CODE
        | MemoryType::BOOT_SERVICES_DATA
        | MemoryType::CONVENTIONAL
        | MemoryType::PERSISTENT_MEMORY => Use::Free,
        MemoryType::ACPI_RECLAIM | MemoryType::ACPI_NON_VOLATILE => Use::Tables,
        _ => Use::None,
    }
}

/// The machine's memory as the UEFI memory map describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EfiMemory {
    /// Everything the kernel maps: [`Use::Free`] and [`Use::Tables`] regions, sorted, merged.
    pub ram: Vec<Region>,
    /// The [`Use::Tables`] regions, sorted, merged: reserved and mapped read-only.
    pub tables: Vec<Region>,
    /// Descriptors left out (misaligned, wrapping past 2^64), for the boot log.
    pub notes: Vec<String>,
}

impl EfiMemory {
    /// Read the memory map (`desc_size`-byte descriptors).
    ///
    /// # Errors
    ///
    /// [`MapError`]: descriptors too small to hold a version 1 descriptor, or no RAM at all.
    pub fn parse(map: &[u8], desc_size: usize) -> Result<Self, MapError> {
        let mut out = Self::default();
        let (mut ram, mut tables) = (Vec::new(), Vec::new());
        for d in descriptors(map, desc_size)? {
            let what = use_of(d.ty, d.attr);
            if what == Use::None || d.pages == 0 {
                continue;
            }
            let Some(size) = d.pages.checked_mul(EFI_PAGE_SIZE) else {
                out.notes.push(format!(
                    "UEFI memory map: {:#x} pages at {:#x} overflow 64 bits; ignored",
                    d.pages, d.base
                ));
                continue;
            };
            let r = Region::new(d.base, size);
            if !d.base.is_multiple_of(EFI_PAGE_SIZE) || r.end().is_none() {
                out.notes.push(format!(
                    "UEFI memory map: type {} region {:#x}+{size:#x} is not page-aligned or wraps past 2^64; ignored",
                    d.ty.0, d.base
                ));
                continue;
            }
            ram.push(r);
            if what == Use::Tables {
                tables.push(r);
            }
        }
        out.ram = region::union(&ram);
        out.tables = region::union(&tables);
        // A region the map lists twice, once as RAM and once as tables, stays read-only.
        if !region::subtract(&out.ram, &out.tables)
            .iter()
            .any(|r| r.size > 0)
        {
            return Err(MapError::NoRam);
        }
        Ok(out)
    }
}

/// Which description of the machine the kernel boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Description {
    /// The device tree (from the configuration table, or x0 on a flat-Image boot).
    DeviceTree,
    /// The ACPI tables the RSDP leads to.
    Acpi,
}

/// Neither description to boot with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceError {
    /// The firmware handed over neither a device tree nor an RSDP.
    Neither,
    /// `acpi=off`, and there is no device tree.
    AcpiOffWithoutDt,
}

impl fmt::Display for ChoiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Neither => f.write_str(
                "UEFI handed over neither a device tree nor ACPI tables (no device-tree or ACPI 2.0 entry in the configuration table): nothing describes this machine",
            ),
            Self::AcpiOffWithoutDt => f.write_str(
                "acpi=off, but UEFI handed over no device tree, only ACPI tables: nothing else describes this machine",
            ),
        }
    }
}

/// Choose the description, as Linux on arm64 does: the device tree when there is one, unless
/// `acpi=force` asks for ACPI (when there are ACPI tables; otherwise the device tree, with a
/// note); ACPI when it is all there is, unless `acpi=off`. The note, if any, is for the log.
///
/// # Errors
///
/// [`ChoiceError`]: nothing to boot with.
pub fn choose(
    dt: bool,
    acpi: bool,
    cmdline: Cmdline<'_>,
) -> Result<(Description, Option<&'static str>), ChoiceError> {
    match (cmdline.get("acpi"), dt, acpi) {
        (Some("force"), _, true) => Ok((Description::Acpi, None)),
        (Some("force"), true, false) => Ok((
            Description::DeviceTree,
            Some("acpi=force, but UEFI handed over no ACPI tables: booting with the device tree"),
        )),
        (Some("off"), false, true) => Err(ChoiceError::AcpiOffWithoutDt),
        (_, true, _) => Ok((Description::DeviceTree, None)),
        (_, false, true) => Ok((Description::Acpi, None)),
        (_, false, false) => Err(ChoiceError::Neither),
    }
}

#[cfg(test)]
mod tests;
