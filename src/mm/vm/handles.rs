//! What the mapping calls hand out: each owns its area, and gives it back when dropped, so that
//! an area cannot be freed twice, freed by the wrong function, or used after it was freed (the
//! borrows the handles lend cannot outlive them). Linux frees by address (`vfree(addr)`,
//! `iounmap(addr)`) and can only check at run time; here the checks are the compiler's, and
//! freeing by address is the mm's own business.

use core::fmt;
use core::ops::{Deref, DerefMut};

use super::*;

/// Device memory mapped by [`KernelVm::ioremap`] (or `ioremap_wc`, `ioremap_np`,
/// `ioremap_prot`): `size` bytes at [`addr`](Self::addr), the virtual address of the physical
/// address asked for (its offset in the page kept). Dropping it unmaps the registers (lazily:
/// their range is reused only after the purge that invalidates it).
///
/// Registers are read and written through it with volatile accesses, each checked to lie inside
/// the mapping and to be naturally aligned (a device register access that is neither is a bug,
/// and panics); a driver that describes its registers as a struct borrows them with
/// [`registers`](Self::registers), for no longer than the mapping lives:
///
/// ```compile_fail,E0505
/// # use initmm_mm::{addr::PhysAddr, env::PageTableEnv, vm::KernelVm};
/// # fn f(vm: &KernelVm<impl PageTableEnv>) {
/// let uart = vm.ioremap(PhysAddr(0x0900_0000), 0x1000).unwrap();
/// // SAFETY: (a register block) -- the point is the borrow, not the type.
/// let regs: &[u32; 4] = unsafe { uart.registers(0) };
/// drop(uart); // error[E0505]: cannot move out of `uart` because it is borrowed
/// let _ = regs[0];
/// # }
/// ```
#[must_use = "dropping an IoMem unmaps it"]
pub struct IoMem<'vm, E: PageTableEnv, P: InstallPolicy = Seed> {
    vm: &'vm KernelVm<E, P>,
    addr: VirtAddr,
    size: usize,
}

macro_rules! io_access {
    ($read:ident, $write:ident, $t:ty) => {
        #[doc = concat!("Read the `", stringify!($t), "` register at `offset` (volatile).")]
        ///
        /// # Panics
        ///
        /// If it does not lie inside the mapping, or `offset` is not aligned to its size.
        pub fn $read(&self, offset: usize) -> $t {
            let p = self.register_ptr::<$t>(offset);
            // SAFETY: `register_ptr` checked that the register lies inside this live mapping of
            // device memory, aligned; device registers are read with volatile loads.
            unsafe { p.read_volatile() }
        }

        #[doc = concat!("Write the `", stringify!($t), "` register at `offset` (volatile).")]
        ///
        /// # Panics
        ///
        /// As for the read.
        pub fn $write(&self, offset: usize, value: $t) {
            let p = self.register_ptr::<$t>(offset).cast_mut();
            // SAFETY: as for the read; writing a device register changes no memory that Rust
            // code owns (ioremap refuses RAM).
            unsafe { p.write_volatile(value) }
        }
    };
}

impl<'vm, E: PageTableEnv, P: InstallPolicy> IoMem<'vm, E, P> {
    pub(super) fn new(vm: &'vm KernelVm<E, P>, addr: VirtAddr, size: usize) -> Self {
        Self { vm, addr, size }
    }

    /// The virtual address of the physical address that was mapped.
    pub const fn addr(&self) -> VirtAddr {
        self.addr
    }

    /// The bytes mapped from [`addr`](Self::addr) on.
    pub const fn size(&self) -> usize {
        self.size
    }

    /// A pointer to the `T` at `offset`, checked to lie inside the mapping and be aligned.
    fn register_ptr<T>(&self, offset: usize) -> *const T {
        let size = core::mem::size_of::<T>();
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.size),
            "IoMem at {:#x}: {size} bytes at offset {offset:#x} run past its {:#x} bytes",
            self.addr,
            self.size
        );
        let va = self.addr.0 + offset;
        assert!(
            va.is_multiple_of(core::mem::align_of::<T>()),
            "IoMem at {:#x}: offset {offset:#x} is not aligned for a {size}-byte access",
            self.addr
        );
        va as *const T
    }

    io_access!(read8, write8, u8);
    io_access!(read16, write16, u16);
    io_access!(read32, write32, u32);
    io_access!(read64, write64, u64);

    /// The registers at `offset` as a `T`, borrowed from the mapping (they cannot outlive it).
    ///
    /// # Safety
    ///
    /// `T` describes registers: it is accessed only with volatile reads and writes (the register
    /// types of `tock-registers`, `UnsafeCell`s read with `read_volatile`), never as plain
    /// memory, and a register the device has there may be read and written as `T` says.
    ///
    /// # Panics
    ///
    /// If the `T` does not lie inside the mapping, or `offset` is not aligned for it.
    pub unsafe fn registers<T>(&self, offset: usize) -> &T {
        // SAFETY: inside this mapping and aligned (checked), mapped for as long as the returned
        // borrow of `self` lives; `T` is a register block (the caller's contract).
        unsafe { &*self.register_ptr::<T>(offset) }
    }

    /// Keep the mapping for as long as the kernel runs (a driver of a device that never goes
    /// away): its address, which stays mapped from now on.
    pub fn leak(self) -> VirtAddr {
        let addr = self.addr;
        core::mem::forget(self);
        addr
    }

    /// Keep the mapping for as long as the kernel runs (a driver of a device that never goes
    /// away), and its registers at `offset` as a `T` for as long as `'vm`.
    ///
    /// # Safety
    ///
    /// As for [`registers`](Self::registers).
    pub unsafe fn leak_registers<T>(self, offset: usize) -> &'vm T {
        let p = self.register_ptr::<T>(offset);
        core::mem::forget(self);
        // SAFETY: the mapping is never unmapped now (its handle is forgotten), so the registers
        // stay mapped for as long as `'vm`; inside it and aligned (checked); `T` is a register
        // block (the caller's contract).
        unsafe { &*p }
    }
}

impl<E: PageTableEnv, P: InstallPolicy> Drop for IoMem<'_, E, P> {
    fn drop(&mut self) {
        if let Err(e) = self.vm.iounmap_at(self.addr) {
            panic!("dropping the IoMem at {:#x}: {e}", self.addr);
        }
    }
}

impl<E: PageTableEnv, P: InstallPolicy> fmt::Debug for IoMem<'_, E, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IoMem({:#x}, {:#x} bytes)", self.addr, self.size)
    }
}

/// Memory from [`KernelVm::vmalloc`] (or `vzalloc`, `vmalloc_aligned`): `len` bytes, virtually
/// contiguous, read and written as a byte slice, freed when dropped (its pages at once, its range
/// after the lazy purge). From `vmalloc` it holds whatever its pages held before; from `vzalloc`,
/// zeroes.
#[must_use = "dropping a VmBuf frees it"]
pub struct VmBuf<'vm, E: PageTableEnv, P: InstallPolicy = Seed> {
    vm: &'vm KernelVm<E, P>,
    addr: VirtAddr,
    len: usize,
}

impl<'vm, E: PageTableEnv, P: InstallPolicy> VmBuf<'vm, E, P> {
    pub(super) fn new(vm: &'vm KernelVm<E, P>, addr: VirtAddr, len: usize) -> Self {
        Self { vm, addr, len }
    }

    /// Where the memory starts.
    pub const fn addr(&self) -> VirtAddr {
        self.addr
    }
}

impl<E: PageTableEnv, P: InstallPolicy> Deref for VmBuf<'_, E, P> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes from `addr` are this buffer's own pages, mapped read/write Normal
        // memory until the buffer is dropped, by the tables the CPU translates through
        // (`KernelVm::new`'s contract); nothing else refers to them. They hold initialized
        // bytes: frames are RAM outside every Rust allocation, like memory from `mmap`, so they
        // hold whatever their last owner wrote (`vmalloc` does not zero, as Linux's does not),
        // or zeroes (`vzalloc`).
        unsafe { core::slice::from_raw_parts(self.addr.as_ptr::<u8>(), self.len) }
    }
}

impl<E: PageTableEnv, P: InstallPolicy> DerefMut for VmBuf<'_, E, P> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes this the only borrow.
        unsafe { core::slice::from_raw_parts_mut(self.addr.as_mut_ptr::<u8>(), self.len) }
    }
}

impl<E: PageTableEnv, P: InstallPolicy> Drop for VmBuf<'_, E, P> {
    fn drop(&mut self) {
        if let Err(e) = self.vm.vfree_at(self.addr) {
            panic!("dropping the VmBuf at {:#x}: {e}", self.addr);
        }
    }
}

impl<E: PageTableEnv, P: InstallPolicy> fmt::Debug for VmBuf<'_, E, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VmBuf({:#x}, {:#x} bytes)", self.addr, self.len)
    }
}

/// Pages mapped by [`KernelVm::vmap`] at [`addr`](Self::addr), contiguously; unmapped (lazily)
/// when dropped. The pages stay the caller's, to reuse once this is dropped.
#[must_use = "dropping a Vmap unmaps it"]
pub struct Vmap<'vm, E: PageTableEnv, P: InstallPolicy = Seed> {
    vm: &'vm KernelVm<E, P>,
    addr: VirtAddr,
    size: usize,
}

impl<'vm, E: PageTableEnv, P: InstallPolicy> Vmap<'vm, E, P> {
    pub(super) fn new(vm: &'vm KernelVm<E, P>, addr: VirtAddr, size: usize) -> Self {
        Self { vm, addr, size }
    }

    /// Where the pages are mapped.
    pub const fn addr(&self) -> VirtAddr {
        self.addr
    }

    /// The bytes mapped.
    pub const fn size(&self) -> usize {
        self.size
    }
}

impl<E: PageTableEnv, P: InstallPolicy> Drop for Vmap<'_, E, P> {
    fn drop(&mut self) {
        if let Err(e) = self.vm.vunmap_at(self.addr) {
            panic!("dropping the Vmap at {:#x}: {e}", self.addr);
        }
    }
}

impl<E: PageTableEnv, P: InstallPolicy> fmt::Debug for Vmap<'_, E, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vmap({:#x}, {:#x} bytes)", self.addr, self.size)
    }
}
