//! `initmm-mm`: one kernel address space, `init_mm`, whose mapping callers take no page-table
//! lock: the translation tables and their allocators, virtual areas, vmap/vmalloc and ioremap
//! with lazy unmapping, for AArch64 (4 KiB granule, 48-bit virtual addresses, stage 1 at EL1).
//!
//! The crate is `no_std` and knows no machine. Everything it needs from one is the
//! [`env::PageTableEnv`] trait: frames for tables and pages, the tables' memory, and the barrier
//! and TLB instructions. The kernel implements it over its frame allocator and the linear map;
//! the unit tests over an in-memory "physical memory" that records every store, barrier and TLB
//! invalidation (`testenv`), and the model checker over loom's atomics.
//!
//! # The design
//!
//! There is one address space, `init_mm`, and it is the kernel's. Its mapping callers (`ioremap`,
//! `vmap`, `vmalloc`, the boot mapping) take **no** page-table lock, as in Linux since "mm:
//! init_mm without ptlock" (2.6.15): the table allocators `pud_alloc`, `pmd_alloc` and
//! `pte_alloc_kernel` read the slot without a lock and, only when it is empty, allocate and zero a
//! table outside the lock, take `init_mm`'s lock, check the slot again, and publish their table or
//! free it when a racing CPU got there first (`pgalloc`). Virtual ranges come from their own
//! allocator under their own lock (`vmap_area`, in `vm`), never the page-table lock, which is a
//! private field of `InitMm`: no caller can take it.
//!
//! # Invariants
//!
//! Comments elsewhere cite these by number. Each has host tests that record every descriptor
//! store, barrier and TLB invalidation (`testenv`) and check their order.
//!
//! 1. **Publishing a table.** A table descriptor is stored only once the new table's zeroes are
//!    visible to every CPU and table walker: zero, `dsb ishst`, one single-copy-atomic 64-bit
//!    Release store, then `dsb ishst; isb`. Lock-free readers walk pgd → pud → pmd → pte as a
//!    chain of dependent loads, reading each descriptor once.
//! 2. **One table per slot.** A racing install neither leaks nor installs twice: one table ends
//!    up in each empty slot, every loser frees its own, and both outcomes are counted so tests can
//!    show the race ran.
//! 3. **Leaves without a lock.** The range allocator never gives two live areas the same page, so
//!    leaf stores cannot conflict. Storing over a valid leaf is a bug and panics. Code outside
//!    `vm` maps only into a range it holds (a `vm::Window`), and says so: see "Safe code" below.
//! 4. **Unmap order.** Clear the leaves, `dsb ishst`, broadcast TLB invalidation (`tlbi vaale1is`
//!    per leaf, or `vmalle1is` above a threshold), `dsb ish; isb`, and only then let the virtual
//!    range, and any page-table page taken out of the tree, be used again. The invalidation may
//!    be deferred and batched: only `vm`'s lazy path clears leaves without invalidating at once
//!    (`unmap_range_noflush`, private to `mm`), and keeps the range busy until its purge has
//!    completed; `release_window` refuses a window in which anything is still mapped. The data
//!    pages a vmalloc area mapped go back at once, as Linux's `vfree` frees them: no code touches
//!    a freed area, a stale TLB entry is never written through speculatively, and RAM is only
//!    ever mapped Normal write-back, so a stale translation elsewhere cannot hurt the page's next
//!    owner. So no frame ever waits for a purge: out of frames, the frame allocator drains every
//!    CPU's cache and tries once more; out of virtual space, the range allocator purges and tries
//!    once more.
//! 5. **Break-before-make.** A valid entry is replaced (table by block, or a leaf's output) only
//!    after it was cleared and its invalidation completed; only permission bits change in place. A
//!    table leaves the tree bottom-up, each lower entry cleared and invalidated while the entry
//!    above still points at valid tables, and is freed only after its invalidation completed and
//!    every walk that need not own its range (`translate`, `count_tables`) and may be inside it
//!    has ended. Otherwise intermediate tables stay (Linux keeps them too).
//! 6. **Attributes.** Normal memory is write-back, inner shareable; `ioremap` is Device-nGnRE,
//!    `ioremap_np` Device-nGnRnE, `ioremap_wc` Normal non-cacheable; everything but kernel text is
//!    execute-never; text is read-only and executable, rodata read-only (W^X).
//! 7. **ioremap's contract.** An unaligned `phys` keeps its offset and the size is rounded up; size
//!    0, wrap-around, a range beyond the CPU's physical address size or overlapping RAM, and out of
//!    memory (tables or virtual space) are errors, never panics, and leave nothing mapped.
//! 8. **Blocks.** 2 MiB and 1 GiB blocks map large ranges whose virtual and physical addresses are
//!    both aligned; a table in the way is replaced by break-before-make (5).
//! 9. **Barriers after valid stores.** Every valid descriptor store is followed by `dsb ishst;
//!    isb` before the address is relied on: the walker is not an ordinary observer, and a
//!    speculative walk may have cached the invalid entry (once per `map_range` call suffices).
//! 10. **Real cores.** Nothing that is not RAM (the device tree's, minus `no-map`) is ever mapped
//!     cacheable, not even by the early tables; RAM is never also mapped uncached; every alias of
//!     kernel text and rodata is read-only (`phys_layout::PhysLayout` checks each mapping). An Armv8.0
//!     CPU may take a translation fault on a mapping another CPU just published: it is retried,
//!     not reported. How the MMU, caches and TLB are handled at each step of boot and mapping is
//!     listed in `arch::aarch64`'s module documentation.
//!
//! # Safe code
//!
//! What `mm` exports safely cannot break these invariants: what could is `unsafe`, with a
//! `# Safety` contract, or private to `mm` (each has a `compile_fail` test showing that misuse
//! does not build).
//!
//! - Mapping and unmapping a range directly (`InitMm::map_range`, `map_pages`, `unmap_range`), the
//!   table allocators (`pud_alloc`, `pmd_alloc`, `pte_alloc_kernel`) and `KernelVm::vmap` are
//!   `unsafe`: the caller promises that the virtual range is its own (in a `vm::Window` it holds)
//!   and that the RAM it maps is its own, for as long as it is mapped. `ioremap` and `vmalloc`
//!   are safe: they reserve the range themselves, and map device memory or fresh frames.
//! - `pgtable::Entry` values come only from `mm`'s own walks (`Entry::new` is private), so the
//!   table allocators never follow a descriptor that someone made up; the TLB batch of an unmap
//!   (`tlb::TlbFlush`) and `unmap_range_noflush` are private to `mm`.
//! - A `vm::Window` is the handle of its reservation: `release_window` takes it, so only its
//!   holder gives it back, once, and only with nothing mapped in it.
//! - Freeing is dropping: `ioremap` returns an [`IoMem`](vm::IoMem), `vmalloc` a
//!   [`VmBuf`](vm::VmBuf), `vmap` a [`Vmap`](vm::Vmap), each owning its area, so nothing is freed
//!   twice, by the wrong function, or while borrowed. Freeing by address (Linux's `vfree(addr)`,
//!   `iounmap(addr)`) is private to `mm`.
//! - Building a [`KernelVm`](vm::KernelVm) is `unsafe` (its tables must be the live ones for its
//!   window, or its handles would reach someone else's memory), and so is implementing
//!   [`PageTableEnv`](env::PageTableEnv) (the frames it hands out must be its own to give).
//! - Outside this crate, the kernel keeps the machine's side of the same rule: handing memory to
//!   the frame allocator or giving frames back and building `init_mm` at boot are `unsafe` there,
//!   and the kernel's one `KernelVm` is set only at boot.

//! # Example
//!
//! A kernel builds its address space once, over its own environment, and maps through it from
//! every CPU without a lock of its own:
//!
//! ```
//! # use initmm_mm::{addr::PhysAddr, env::PageTableEnv, pgalloc::InitMm, phys_layout::PhysLayout};
//! # use initmm_mm::layout::{VMALLOC_END, VMALLOC_START};
//! # use initmm_mm::region::Region;
//! # use initmm_mm::vm::KernelVm;
//! fn address_space<E: PageTableEnv>(env: E, ram: Region) -> KernelVm<E> {
//!     // What may be mapped how: RAM (cacheable), and no kernel image in this example.
//!     let layout = PhysLayout::new(vec![ram], Region::new(0, 0), Region::new(0, 0));
//!     let init_mm = InitMm::new(env, layout).expect("a frame for the pgd");
//!     // SAFETY: (the kernel's promise) `init_mm`'s pgd is what TTBR1 will hold, and nothing
//!     // else maps in the vmalloc window.
//!     unsafe { KernelVm::new(init_mm, (VMALLOC_START, VMALLOC_END), 48) }
//! }
//!
//! fn map_a_uart<E: PageTableEnv>(vm: &KernelVm<E>) {
//!     // Device-nGnRE, execute-never; unmapped (lazily) when the mapping is dropped.
//!     let uart = vm.ioremap(PhysAddr(0x0900_0000), 0x1000).expect("mapped");
//!     let _flags = uart.read32(0x18);
//! }
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(all(feature = "testenv", not(test)))]
extern crate std;

/// CPUs the per-CPU state of this crate (and of a kernel built on it) has room for.
pub const MAX_CPUS: usize = 32;

pub mod addr;
pub mod env;
pub mod fault_inject;
pub mod layout;
pub mod mapping;
pub mod pgalloc;
pub mod pgtable;
pub mod phys_layout;
pub mod profile;
pub mod region;
pub mod sync;
pub mod tlb;
pub mod vm;
pub mod vmap_area;
pub mod vmap_node;
pub mod walk;

pub mod rng;

/// An in-memory page-table environment for host tests, that records every descriptor store,
/// barrier and TLB invalidation: this crate's own tests', and (feature `testenv`) those of
/// crates built on it.
#[cfg(any(test, feature = "testenv"))]
pub mod testenv;
