//! Memory management: physical frames, the heap, `init_mm`'s translation tables and their
//! allocators, virtual areas, vmap/vmalloc and ioremap.
//!
//! The page-table code (`pgtable`, `pgalloc`, `mapping`) and the virtual-memory layer (`vm`) are
//! generic over [`env::PageTableEnv`], so that host unit tests run them over an in-memory
//! "physical memory" (`testenv`) and the model checker over loom's atomics; `hw` is the
//! environment of the real machine.

pub mod env;
pub mod fault_inject;
pub mod frame;
pub mod heap;
pub mod layout;
pub mod mapping;
pub mod pgalloc;
pub mod pgtable;
pub mod profile;
pub mod region;
pub mod sync;
pub mod vm;
pub mod vmap_area;

#[cfg(test)]
pub mod testenv;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod hw;

#[cfg(target_os = "none")]
pub use hw::{ioremap, ioremap_wc, iounmap, kernel_vm, vfree, vmalloc};
