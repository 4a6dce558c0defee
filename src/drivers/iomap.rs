//! [`IoMap`]: an `ioremap` owned (an [`IoMem`]) together with the physical range it maps.
//!
//! Every device register block a driver maps (a virtio-mmio slot, a PCI function's
//! configuration page, a BAR, the Pi's mailbox) is one of these, so that a device that goes away
//! leaves nothing mapped and its virtual area goes back (lazily, as `iounmap` does: invariant 4
//! in `mm`). The unmapping is the [`IoMem`]'s; what this adds is the physical side, which the
//! virtio HAL needs to find the mapping a BAR address falls in.

use core::fmt;

use crate::mm::IoMem;
use crate::mm::addr::PhysAddr;
use crate::mm::vm::VmError;

/// A Device-nGnRE mapping of `len` bytes at `phys`, owned.
pub struct IoMap {
    mem: IoMem,
    phys: PhysAddr,
}

impl IoMap {
    /// `ioremap(phys, len)`.
    ///
    /// # Errors
    ///
    /// What `ioremap` returns (invariant 7 in `mm`): nothing is mapped then.
    pub fn new(phys: PhysAddr, len: usize) -> Result<Self, VmError> {
        Ok(Self {
            mem: crate::mm::ioremap(phys, len)?,
            phys,
        })
    }

    /// The virtual address of `phys`.
    pub fn base(&self) -> usize {
        self.mem.addr().as_usize()
    }

    /// The physical address mapped.
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// The length mapped, in bytes.
    pub fn len(&self) -> usize {
        self.mem.size()
    }

    /// Whether the mapping is empty (never: `ioremap` refuses size 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Does `[phys, phys + len)` lie inside this mapping? Then its virtual address.
    pub fn virt_of(&self, phys: u64, len: usize) -> Option<usize> {
        let off = phys.checked_sub(self.phys.0)? as usize;
        (off.checked_add(len)? <= self.len()).then(|| self.base() + off)
    }

    /// Read the 32-bit register at byte offset `off`.
    ///
    /// # Panics
    ///
    /// If the register is not inside the mapping or not 4-byte aligned.
    pub fn read32(&self, off: usize) -> u32 {
        self.mem.read32(off)
    }

    /// Write the 32-bit register at byte offset `off`.
    ///
    /// # Panics
    ///
    /// As for [`read32`](Self::read32).
    pub fn write32(&self, off: usize, v: u32) {
        self.mem.write32(off, v)
    }
}

impl fmt::Display for IoMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}+{:#x} at {:#x}",
            self.phys.0,
            self.len(),
            self.base()
        )
    }
}
