//! PCI Express through a generic ECAM host bridge (`pci-host-ecam-generic`): the arithmetic
//! here (configuration-space offsets, BAR placement in the bridge's windows, INTx routing
//! through its `interrupt-map`), and the probe of a function in `host` (kernel builds only).
//!
//! Nothing assigns BARs before the kernel on QEMU virt, so the kernel sizes each BAR and places
//! it in a window of the bridge's `ranges`: 64-bit BARs in the 64-bit window, 32-bit ones in
//! the 32-bit window, each aligned to its size. I/O BARs are left unassigned (modern virtio
//! needs none). Buses behind PCI-PCI bridges are not scanned.

use core::fmt;

use crate::platform::devicetree::{IntxRoute, IrqError, IrqSpec, PciSpace, PciWindow};

#[cfg(target_os = "none")]
mod host;
#[cfg(target_os = "none")]
pub use host::{Decoding, HostError, PciProbe, Probed};

/// Bytes of configuration space per function (ECAM).
pub const CONFIG_SIZE: usize = 4096;

/// The offset of function `bus:dev.func`'s configuration space in an ECAM region whose first
/// bus is `first_bus`.
pub fn ecam_offset(first_bus: u8, bus: u8, dev: u8, func: u8) -> u64 {
    (u64::from(bus - first_bus) << 20) | (u64::from(dev) << 15) | (u64::from(func) << 12)
}

/// Why a BAR could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarError {
    /// No window of the kind the BAR needs.
    NoWindow {
        /// The address space the BAR decodes.
        space: PciSpace,
    },
    /// The BAR is larger than the whole window.
    TooLarge {
        /// The BAR's size.
        size: u64,
        /// The window's size.
        window: u64,
    },
    /// The window has no aligned room left for it.
    Exhausted {
        /// The BAR's size.
        size: u64,
        /// Bytes of the window still free at its end.
        left: u64,
    },
    /// A size that is not a power of two: a BAR that reads back wrong.
    BadSize {
        /// The size read back.
        size: u64,
    },
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoWindow { space } => write!(f, "the bridge has no {space:?} window"),
            Self::TooLarge { size, window } => write!(
                f,
                "a BAR of {size:#x} bytes is larger than its window ({window:#x} bytes)"
            ),
            Self::Exhausted { size, left } => write!(
                f,
                "no aligned room for a BAR of {size:#x} bytes ({left:#x} bytes of the window left)"
            ),
            Self::BadSize { size } => write!(f, "BAR size {size:#x} is not a power of two"),
        }
    }
}

/// A window of the bridge, handed out from its start upwards (BARs are placed once, at probe,
/// and stay: a device probed again gets new addresses).
#[derive(Clone, Copy, Debug)]
pub struct WindowAlloc {
    /// The window.
    pub window: PciWindow,
    /// The next free PCI address.
    next: u64,
}

impl WindowAlloc {
    /// An empty allocator over `window`.
    pub fn new(window: PciWindow) -> Self {
        Self {
            window,
            next: window.pci_base,
        }
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> u64 {
        self.next - self.window.pci_base
    }

    /// Place a BAR of `size` bytes (a power of two, aligned to itself): its PCI address and the
    /// CPU physical address that reaches it.
    ///
    /// # Errors
    ///
    /// [`BarError`]: too large for the window, no room left, or not a power of two.
    pub fn alloc(&mut self, size: u64) -> Result<(u64, u64), BarError> {
        if !size.is_power_of_two() {
            return Err(BarError::BadSize { size });
        }
        let w = self.window;
        if size > w.size {
            return Err(BarError::TooLarge {
                size,
                window: w.size,
            });
        }
        let end = w.pci_base + w.size;
        let at = self.next.checked_next_multiple_of(size);
        match at.filter(|&a| a.checked_add(size).is_some_and(|e| e <= end)) {
            Some(a) => {
                self.next = a + size;
                Ok((a, w.cpu_base + (a - w.pci_base)))
            }
            None => Err(BarError::Exhausted {
                size,
                left: end - self.next,
            }),
        }
    }
}

/// Which window a memory BAR goes in: a 64-bit BAR in the 64-bit window when there is one
/// (else the 32-bit one), a 32-bit BAR in the 32-bit window. Returns an index into `windows`.
pub fn window_for(windows: &[WindowAlloc], bar_64bit: bool) -> Result<usize, BarError> {
    let find = |s: PciSpace| windows.iter().position(|w| w.window.space == s);
    if bar_64bit {
        find(PciSpace::Mem64).or_else(|| find(PciSpace::Mem32))
    } else {
        find(PciSpace::Mem32)
    }
    .ok_or(BarError::NoWindow {
        space: if bar_64bit {
            PciSpace::Mem64
        } else {
            PciSpace::Mem32
        },
    })
}

/// Why a function's INTx cannot be routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntxError {
    /// The function uses no INTx pin (and MSI is not supported).
    NoPin,
    /// The `interrupt-map` has no entry for it.
    NotMapped {
        /// The pin, 1-4.
        pin: u8,
    },
    /// The entry's interrupt is unusable.
    Irq(IrqError),
}

impl fmt::Display for IntxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPin => f.write_str("it uses no INTx pin, and MSI is not supported"),
            Self::NotMapped { pin } => write!(
                f,
                "the bridge's interrupt-map has no entry for its pin INT{}",
                (b'A' + pin.saturating_sub(1)) as char
            ),
            Self::Irq(e) => write!(f, "its interrupt-map entry: {e}"),
        }
    }
}

/// The GIC interrupt of `bus:dev.func`'s INTx `pin` (1-4) through the bridge's `interrupt-map`
/// and `interrupt-map-mask` (phys.hi and pin cells compared under the mask).
///
/// # Errors
///
/// [`IntxError`].
pub fn intx_route(
    map: &[IntxRoute],
    mask: [u32; 4],
    bus: u8,
    dev: u8,
    func: u8,
    pin: u8,
) -> Result<IrqSpec, IntxError> {
    if pin == 0 || pin > 4 {
        return Err(IntxError::NoPin);
    }
    let hi = (u32::from(bus) << 16) | (u32::from(dev) << 11) | (u32::from(func) << 8);
    map.iter()
        .find(|r| {
            r.child_hi & mask[0] == hi & mask[0] && r.pin & mask[3] == u32::from(pin) & mask[3]
        })
        .ok_or(IntxError::NotMapped { pin })?
        .irq
        .clone()
        .map_err(IntxError::Irq)
}

#[cfg(test)]
mod tests;
