//! [`IoMap`]: one `ioremap` owned, `iounmap`ped when dropped.
//!
//! Every device register block a driver maps (a virtio-mmio slot, a PCI function's
//! configuration page, a BAR, the Pi's mailbox) is one of these, so that a device that goes away
//! leaves nothing mapped and its virtual area goes back (lazily, as `iounmap` does: invariant 4
//! in `mm`).

use core::fmt;

use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::vm::VmError;

/// A Device-nGnRE mapping of `len` bytes at `phys`, owned.
pub struct IoMap {
    va: VirtAddr,
    phys: PhysAddr,
    len: usize,
}

impl IoMap {
    /// `ioremap(phys, len)`.
    ///
    /// # Errors
    ///
    /// What `ioremap` returns (invariant 7 in `mm`): nothing is mapped then.
    pub fn new(phys: PhysAddr, len: usize) -> Result<Self, VmError> {
        let va = crate::mm::ioremap(phys, len)?;
        Ok(Self { va, phys, len })
    }

    /// The virtual address of `phys`.
    pub fn base(&self) -> usize {
        self.va.as_usize()
    }

    /// The physical address mapped.
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// The length mapped, in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: `ioremap` refuses size 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Does `[phys, phys + len)` lie inside this mapping? Then its virtual address.
    pub fn virt_of(&self, phys: u64, len: usize) -> Option<usize> {
        let off = phys.checked_sub(self.phys.0)? as usize;
        (off.checked_add(len)? <= self.len).then(|| self.base() + off)
    }

    /// Read the 32-bit register at byte offset `off`.
    ///
    /// # Panics
    ///
    /// If the register is not inside the mapping or not 4-byte aligned.
    pub fn read32(&self, off: usize) -> u32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "{self}: read32 at {off:#x}"
        );
        // SAFETY: `off` is an aligned 4-byte register inside the mapping (asserted), which is a
        // live Device-nGnRE mapping for as long as `self` is.
        unsafe { ((self.base() + off) as *const u32).read_volatile() }
    }

    /// Write the 32-bit register at byte offset `off`.
    ///
    /// # Panics
    ///
    /// As for [`read32`](Self::read32).
    pub fn write32(&self, off: usize, v: u32) {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "{self}: write32 at {off:#x}"
        );
        // SAFETY: as in `read32`; the caller owns the device whose register this is.
        unsafe { ((self.base() + off) as *mut u32).write_volatile(v) }
    }
}

impl fmt::Display for IoMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}+{:#x} at {:#x}",
            self.phys.0,
            self.len,
            self.base()
        )
    }
}

impl Drop for IoMap {
    fn drop(&mut self) {
        if let Err(e) = crate::mm::iounmap(self.va) {
            log::error!("iounmap of {self}: {e}");
        }
    }
}
