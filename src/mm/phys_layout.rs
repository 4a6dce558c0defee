//! What the physical address space holds, and so what may be mapped how: the checks every
//! mapping of `init_mm` passes (invariant 10 in `mm`'s module documentation), and the linear
//! map's shape.

use alloc::vec::Vec;

use super::layout::PAGE_SIZE;
use super::pgtable::{MmError, Prot};
use super::region::{self, Region};

/// What the physical address space holds, for the checks every `map_range` passes: nothing that
/// is not RAM is ever mapped cacheable (a speculative fetch into a device or a secure carve-out
/// can raise an SError or hang a real SoC), RAM is never mapped with a second, uncached alias
/// (mismatched attributes), kernel text and rodata are never writable through any alias, nor is
/// RAM that holds the firmware's tables (ACPI), and only kernel text is executable.
#[derive(Clone, Debug)]
pub struct PhysLayout {
    /// RAM the kernel may map: the device tree's RAM minus its `no-map` reservations. Sorted and
    /// non-overlapping (as `region::subtract` returns it).
    memory: Vec<Region>,
    /// The kernel image's text.
    text: Region,
    /// The kernel image's text and rodata.
    read_only: Region,
    /// RAM that holds the firmware's tables, which the kernel reads and never writes (the ACPI
    /// regions of the UEFI memory map): sorted, non-overlapping, inside `memory`.
    firmware: Vec<Region>,
    /// False only for the host tests of the walkers ([`PhysLayout::unchecked`]).
    checked: bool,
}

impl PhysLayout {
    /// `memory`: mappable RAM (sorted, non-overlapping); `text` and `read_only`: the physical
    /// ranges of the image's text and of its text plus rodata.
    pub fn new(memory: Vec<Region>, text: Region, read_only: Region) -> Self {
        Self {
            memory,
            text,
            read_only,
            firmware: Vec::new(),
            checked: true,
        }
    }

    /// The same layout, with `firmware` (sorted, non-overlapping RAM: the ACPI tables) mapped
    /// read-only by the linear map and never writable through any alias.
    pub fn with_firmware_tables(mut self, firmware: Vec<Region>) -> Self {
        self.firmware = firmware;
        self
    }

    /// No checks at all: for host tests of the table code, whose fake physical addresses are
    /// no machine's (this crate's, and those of crates built on it, with feature `testenv`).
    #[cfg(any(test, feature = "testenv"))]
    pub fn unchecked() -> Self {
        Self {
            memory: Vec::new(),
            text: Region::new(0, 0),
            read_only: Region::new(0, 0),
            firmware: Vec::new(),
            checked: false,
        }
    }

    /// Mappable RAM.
    pub fn memory(&self) -> &[Region] {
        &self.memory
    }

    /// What the linear map maps, and how: every page of mappable RAM, read/write, except the
    /// kernel's text and rodata, which are read-only there too (their linear alias, Linux's
    /// `mark_linear_text_alias_ro`; done at once here, since init_mm is built before anything
    /// could write through that alias), and the firmware's tables, read-only too. All
    /// execute-never. Pages only partly RAM are left out.
    pub fn linear_map(&self) -> Vec<(Region, Prot)> {
        let mut out = Vec::new();
        let mut ro = self.firmware.clone();
        ro.push(self.read_only);
        let ro = region::union(&ro);
        for r in self
            .memory
            .iter()
            .filter_map(|&r| region::align_inward(r, PAGE_SIZE as u64))
        {
            let r = [r];
            let rw = region::subtract(&r, &ro);
            let ro_part = region::subtract(&r, &rw);
            out.extend(rw.into_iter().map(|x| (x, Prot::KERNEL_RW)));
            out.extend(
                ro_part
                    .into_iter()
                    .filter_map(|x| region::align_inward(x, PAGE_SIZE as u64))
                    .map(|x| (x, Prot::KERNEL_RO)),
            );
        }
        out.sort_unstable_by_key(|(r, _)| r.base);
        out
    }

    /// May `[pa, pa + size)` be mapped with `prot`?
    #[inline]
    pub fn check(&self, pa: u64, size: usize, prot: Prot) -> Result<(), MmError> {
        if !self.checked {
            return Ok(());
        }
        // The common cases, decided inline (all else below): a vmalloc page (writable, not
        // executable, cacheable, inside one RAM region and clear of the kernel's read-only part
        // and of the firmware's tables) and device registers (not executable, not cacheable,
        // clear of RAM).
        if let Some(end) = pa.checked_add(size as u64)
            && !prot.executable()
        {
            let plain_ram = prot.writable()
                && prot.mem().is_cacheable()
                && (end <= self.read_only.base || pa >= self.read_only.base + self.read_only.size)
                && self
                    .firmware
                    .iter()
                    .all(|f| end <= f.base || pa >= f.base + f.size)
                && self
                    .memory
                    .iter()
                    .any(|m| m.base <= pa && end <= m.base + m.size);
            let device = !prot.mem().is_cacheable()
                && self
                    .memory
                    .iter()
                    .all(|m| end <= m.base || pa >= m.base + m.size);
            if plain_ram || device {
                return Ok(());
            }
        }
        self.check_slow(pa, size, prot)
    }

    /// [`check`](Self::check) in full.
    #[inline(never)]
    fn check_slow(&self, pa: u64, size: usize, prot: Prot) -> Result<(), MmError> {
        let r = Region::new(pa, size as u64);
        if prot.mem().is_cacheable() {
            if !region::covers(&self.memory, r) {
                return Err(MmError::CacheableNonRam { pa, size });
            }
        } else if region::overlaps(&self.memory, r) {
            return Err(MmError::UncachedAliasOfRam { pa, size });
        }
        if prot.writable() && region::overlaps(core::slice::from_ref(&self.read_only), r) {
            return Err(MmError::WritableKernelText { pa, size });
        }
        if prot.writable() && region::overlaps(&self.firmware, r) {
            return Err(MmError::WritableFirmwareTables { pa, size });
        }
        if prot.executable() && !region::covers(core::slice::from_ref(&self.text), r) {
            return Err(MmError::ExecutableNonText { pa, size });
        }
        Ok(())
    }
}
