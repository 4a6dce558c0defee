//! initmm: a single-address-space unikernel for AArch64, as the library an application is built
//! on. An application is a `no_std`, `no_main` crate that names its `main` with `entry!`; the
//! kernel boots every CPU, builds `init_mm`, starts the console and calls it (see
//! `platform/app-template` and the README).
//!
//! The kernel mappings are the `initmm-mm` crate's, re-exported as [`mm`]: one kernel-only
//! address space, `init_mm`, whose table allocators take the page-table lock themselves and only
//! when they must install a table; callers (`ioremap`, `vmalloc`, the boot mapping) take none.
//!
//! The pure-logic parts (device tree, fault decoding, the command line, the GIC's and the
//! timer's register arithmetic) also build for the host so that their unit tests run there;
//! everything that touches hardware is gated on `target_os = "none"`.
//!
//! # Crates and layers
//!
//! The workspace's crates are the coarse layers, and the compiler keeps them apart: a crate
//! cannot name one above it. `initmm-mm` (the kernel mappings, no machine) is below this crate;
//! `initmm-workloads` (the demonstration kernel), `initmm-bench` (the benchmark kernel and the
//! pre-patch baseline) and every application are above it.
//!
//! Inside this crate, each module uses only the modules below it (and `initmm-mm`, below them
//! all: its addresses and virtual layout are every layer's vocabulary). Where a lower one must
//! call up (an interrupt, an exception it cannot handle, context for a panic report, a frame-cache
//! drain on another CPU), the one above installs a function in a [`hook::Hook`] at boot.
//!
//! 1. Pure logic, no hardware: `hook`, `cmdline`, `kallsyms`, `kimage` (where the image was
//!    loaded, and its sections), `util`, and `platform` (the machine description and its
//!    device-tree, UEFI and ACPI readers).
//! 2. `arch`: everything that names an Arm register or instruction. It hands every IRQ to the
//!    function installed with `exceptions::set_irq_handler`, and an exception it cannot handle, as
//!    a decoded `exceptions::Unhandled`, to the one installed with `exceptions::set_reporter`
//!    (`panic::init`'s); it never names the console, the panic handler, the log backend or `smp`.
//!    It may log through the `log` facade and `panic!` (the language's way up to `panic`).
//! 3. `mm`: the `initmm-mm` crate and the machine's side of it (physical frames, the heap, the
//!    page-table environment over `arch`'s barriers and TLB maintenance, `init_mm` at boot), then
//!    `drivers` (which map their registers with `mm`).
//! 4. `smp` (with the device-interrupt registry `smp::irq`), and `console` with its `log`
//!    backend `klog`; then `devices`, the probe of the machine's devices (on every CPU) and the
//!    drivers built on `drivers::virtio`.
//! 5. `panic`: stops the other CPUs (`smp`) and reports on the console.
//! 6. `net` (its `http` half is pure logic; `stack` runs smoltcp over `devices`), then `kernel`
//!    (the boot path to the application's `main`), `time`, `testing`: the top, which installs the
//!    hooks.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

extern crate alloc;

pub mod arch;
pub mod cmdline;
pub mod drivers;
pub mod hook;
pub mod kallsyms;
pub mod kimage;
mod memory;
pub mod mm {
    //! Memory management: the `initmm-mm` crate (translation tables, their allocators, virtual
    //! areas, vmap, vmalloc, ioremap), re-exported whole, and the machine's side of it: physical
    //! frames, the kernel heap, the page-table environment of the real machine and the building
    //! of `init_mm` at boot.
    pub use initmm_mm::*;

    pub use crate::kimage;
    #[cfg(target_os = "none")]
    pub use crate::memory::hw::{
        IoMem, VmBuf, free_frames, ioremap, ioremap_wc, kernel_vm, settle, vmalloc, vzalloc,
    };
    #[cfg(target_os = "none")]
    pub use crate::memory::{boot, hw};
    pub use crate::memory::{frame, heap};

    pub mod layout {
        //! The kernel's virtual address layout (`initmm-mm`'s), and where its image lies.
        pub use crate::kimage::*;
        pub use initmm_mm::layout::*;
    }
}
pub mod net;
pub mod platform;
pub mod util;

#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod devices;
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
pub mod time;

// What an application uses most, at the crate's root (see the app template,
// platform/app-template, and the README).
#[cfg(target_os = "none")]
pub use kernel::BootInfo;
#[cfg(target_os = "none")]
pub use panic::exit;
#[cfg(target_os = "none")]
pub use smp::online_cpus;
#[cfg(target_os = "none")]
pub use smp::runtime::{JoinHandle, on_cpus, on_each_cpu, spawn, spawn_on};
