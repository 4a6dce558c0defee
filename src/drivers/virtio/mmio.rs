//! virtio-mmio: one device-tree slot mapped, checked and turned into a transport.

use core::ptr::NonNull;

use virtio_drivers::transport::SomeTransport;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};

use super::{DeviceTransport, ProbeError, Regs};
use crate::drivers::iomap::IoMap;
use crate::mm::addr::PhysAddr;
use crate::platform::devicetree::VirtioMmio;

/// `MagicValue`, `Version` and `DeviceID` registers of a virtio-mmio slot.
const MAGIC: usize = 0x00;
const VERSION: usize = 0x04;
const DEVICE_ID: usize = 0x08;
/// "virt" in little-endian.
const MAGIC_VALUE: u32 = 0x7472_6976;

/// Map `slot` and make a transport of it; `Ok(None)` for an empty slot (DeviceID 0), whose
/// mapping is given back at once. The slot's `dma-coherent` is checked before anything is mapped.
///
/// # Errors
///
/// [`ProbeError`]: not coherent, not mappable, no virtio magic, or a version neither legacy (1)
/// nor modern (2).
pub fn probe(slot: &VirtioMmio) -> Result<Option<(DeviceTransport, u32)>, ProbeError> {
    if !slot.dma_coherent {
        return Err(ProbeError::NotCoherent);
    }
    let map =
        IoMap::new(PhysAddr(slot.reg.base), slot.reg.size as usize).map_err(ProbeError::Map)?;
    let magic = map.read32(MAGIC);
    if magic != MAGIC_VALUE {
        return Err(ProbeError::Transport(alloc::format!(
            "magic {magic:#010x}, not virtio's {MAGIC_VALUE:#010x}"
        )));
    }
    if map.read32(DEVICE_ID) == 0 {
        return Ok(None);
    }
    let version = map.read32(VERSION);
    let header = NonNull::new(map.base() as *mut VirtIOHeader).ok_or(ProbeError::Transport(
        alloc::string::String::from("mapped at 0"),
    ))?;
    // SAFETY: `header` is the slot's register block, mapped as device memory by `map` for
    // `slot.reg.size` bytes (header and configuration space); the transport goes into a
    // `DeviceTransport` together with `map`, which it is dropped before.
    let t = unsafe { MmioTransport::new(header, map.len()) }
        .map_err(|e| ProbeError::Transport(alloc::format!("{e}")))?;
    // SAFETY: the transport's registers are inside `map`, which the `DeviceTransport` keeps.
    let t = unsafe { DeviceTransport::new(SomeTransport::Mmio(t), Regs::Mmio(map)) };
    Ok(Some((t, version)))
}
