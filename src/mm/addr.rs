//! Physical and virtual addresses as distinct types, so that passing one where the other belongs
//! does not build. Every public boundary of `mm` takes and returns these; inside, code unwraps
//! them (`.0`) where it computes.
//!
//! ```compile_fail,E0308
//! # use initmm_mm::addr::{PhysAddr, VirtAddr};
//! fn unmap(_: VirtAddr) {}
//! unmap(PhysAddr(0x4000_0000)); // expected `VirtAddr`, found `PhysAddr`
//! ```

use core::fmt;
use core::ops::{Add, Sub};

use super::layout::{KERNEL_VA_START, LINEAR_MAP_SIZE, PAGE_OFFSET, PAGE_SIZE};

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

impl PhysAddr {
    /// The address as a plain integer.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Is the address a multiple of `align` (a power of two)?
    #[inline]
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }

    /// Is the address 4 KiB aligned?
    #[inline]
    pub const fn is_page_aligned(self) -> bool {
        self.is_aligned(PAGE_SIZE as u64)
    }

    /// Its offset inside its page.
    #[inline]
    pub const fn page_offset(self) -> usize {
        (self.0 % PAGE_SIZE as u64) as usize
    }

    /// The start of its page.
    #[inline]
    pub const fn page_start(self) -> Self {
        Self(self.0 & !(PAGE_SIZE as u64 - 1))
    }

    /// `self + off`, or `None` past the 64-bit end.
    #[inline]
    pub const fn checked_add(self, off: u64) -> Option<Self> {
        match self.0.checked_add(off) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// Its virtual address in the linear map (`PA + PAGE_OFFSET`), if the linear map reaches it.
    #[inline]
    pub const fn to_linear_virt(self) -> Option<VirtAddr> {
        if (self.0 as usize) < LINEAR_MAP_SIZE {
            Some(VirtAddr(self.0 as usize + PAGE_OFFSET))
        } else {
            None
        }
    }
}

impl Add<u64> for PhysAddr {
    type Output = Self;

    fn add(self, off: u64) -> Self {
        Self(self.0 + off)
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PA({:#x})", self.0)
    }
}

impl fmt::LowerHex for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// A kernel virtual address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(pub usize);

impl VirtAddr {
    /// The address of what `p` points to.
    #[inline]
    pub fn from_ptr<T: ?Sized>(p: *const T) -> Self {
        Self(p.cast::<u8>() as usize)
    }

    /// The address as a plain integer.
    #[inline]
    pub const fn as_usize(self) -> usize {
        self.0
    }

    /// The address as a pointer (dereferencing it is the caller's `unsafe` business).
    #[inline]
    pub const fn as_ptr<T>(self) -> *const T {
        self.0 as *const T
    }

    /// The address as a mutable pointer.
    #[inline]
    pub const fn as_mut_ptr<T>(self) -> *mut T {
        self.0 as *mut T
    }

    /// Is the address a multiple of `align` (a power of two)?
    #[inline]
    pub const fn is_aligned(self, align: usize) -> bool {
        self.0 & (align - 1) == 0
    }

    /// Is the address 4 KiB aligned?
    #[inline]
    pub const fn is_page_aligned(self) -> bool {
        self.is_aligned(PAGE_SIZE)
    }

    /// The start of its page.
    #[inline]
    pub const fn page_start(self) -> Self {
        Self(self.0 & !(PAGE_SIZE - 1))
    }

    /// Does it lie in the TTBR1 (kernel) half?
    #[inline]
    pub const fn is_kernel(self) -> bool {
        self.0 >= KERNEL_VA_START
    }

    /// Its physical address if it lies in the linear map.
    #[inline]
    pub const fn linear_to_phys(self) -> Option<PhysAddr> {
        if self.0 >= PAGE_OFFSET && self.0 - PAGE_OFFSET < LINEAR_MAP_SIZE {
            Some(PhysAddr((self.0 - PAGE_OFFSET) as u64))
        } else {
            None
        }
    }
}

impl Add<usize> for VirtAddr {
    type Output = Self;

    fn add(self, off: usize) -> Self {
        Self(self.0 + off)
    }
}

impl Sub<usize> for VirtAddr {
    type Output = Self;

    fn sub(self, off: usize) -> Self {
        Self(self.0 - off)
    }
}

/// The distance between two addresses, in bytes.
impl Sub for VirtAddr {
    type Output = usize;

    fn sub(self, other: Self) -> usize {
        self.0 - other.0
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VA({:#x})", self.0)
    }
}

impl fmt::LowerHex for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}
