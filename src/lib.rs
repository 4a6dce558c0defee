//! initmm: a single-address-space unikernel for AArch64.
//!
//! One kernel-only address space, `init_mm`, whose table allocators take the page-table lock
//! themselves and only when they must install a table; callers (ioremap, vmap, the boot
//! mapping) take none. See `README.md` and `mm::pgalloc`.
//!
//! The pure-logic parts (device tree, page-table walkers and allocators over an in-memory
//! "physical memory", the virtual-area allocator, fault decoding, the command line) also build for
//! the host so that their unit tests run there; everything that touches hardware is gated on
//! `target_os = "none"`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod arch;
pub mod cmdline;
pub mod drivers;
pub mod hook;
pub mod kallsyms;
pub mod mm;
pub mod platform;

#[cfg(all(target_os = "none", feature = "bench"))]
pub mod bench;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod klog;
#[cfg(target_os = "none")]
pub mod panic;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod testing;
#[cfg(target_os = "none")]
pub mod workload;

#[cfg(target_os = "none")]
pub use kernel::BootInfo;
