//! Where a buffer handed to a device is in physical memory: the pure half of the virtio HAL's
//! `share`.
//!
//! A device reads and writes physical addresses, so a buffer can be handed over as it is only if
//! its bytes are physically contiguous: the linear map and the kernel image are (each maps one
//! contiguous physical range at a fixed offset), anything in the vmalloc region (vmalloc areas,
//! the secondary CPUs' stacks) is not, and goes through a bounce buffer.

use crate::mm::layout::{KIMAGE_VADDR, LINEAR_MAP_SIZE, PAGE_OFFSET};

/// How a buffer reaches a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Physically contiguous, at this physical address.
    Direct(u64),
    /// Not (or not known to be) physically contiguous: copy it through a bounce buffer.
    Bounce,
}

/// Where the `len` bytes at virtual address `va` are, given the physical address the kernel
/// image was loaded at and its size.
pub fn place(va: usize, len: usize, kimage_phys: u64, kimage_size: usize) -> Placement {
    let Some(end) = va.checked_add(len) else {
        return Placement::Bounce;
    };
    if va >= PAGE_OFFSET && end <= PAGE_OFFSET + LINEAR_MAP_SIZE {
        return Placement::Direct((va - PAGE_OFFSET) as u64);
    }
    if va >= KIMAGE_VADDR && end <= KIMAGE_VADDR + kimage_size {
        return Placement::Direct(kimage_phys + (va - KIMAGE_VADDR) as u64);
    }
    Placement::Bounce
}

#[cfg(test)]
mod tests;
