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
//!
//! # Layers
//!
//! Each layer uses only the layers below it: nothing names a module above its own, so there is no
//! import cycle. Where a lower layer must call up (an interrupt, an exception it cannot handle,
//! context for a panic report), the layer above installs a function in a [`hook::Hook`] at boot.
//!
//! 1. Pure logic, no hardware: `hook`, `cmdline`, `kallsyms`, `util` (the seeded generator),
//!    `platform` (the machine description and its device-tree parser), and mm's `layout` and
//!    `region`.
//! 2. `arch`: everything that names an Arm register or instruction. It hands every IRQ to the
//!    function installed with `exceptions::set_irq_handler`, and an exception it cannot handle, as
//!    a decoded `exceptions::Unhandled`, to the one installed with `exceptions::set_reporter`
//!    (`panic::init`'s); it never names the console, the panic handler, the log backend or `smp`.
//!    It may log through the `log` facade and `panic!` (the language's way up to `panic`).
//! 3. `mm` (whose hardware environment, frame allocator and profiler use `arch`'s barriers, TLB
//!    maintenance, CPU id and counter), then `drivers` (which map their registers with `mm`).
//! 4. `smp` (with the device-interrupt registry `smp::irq`), and `console` with its `log`
//!    backend `klog`; then `devices`, the probe of the machine's devices (on every CPU) and the
//!    drivers built on `drivers::virtio`.
//! 5. `panic`: stops the other CPUs (`smp`) and reports on the console.
//! 6. `net` (its `http` half is pure logic; `stack` runs smoltcp over `devices`), then `kernel`,
//!    `testing`, `workload`, `bench`: the top, which installs the hooks.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

extern crate alloc;

pub mod arch;
pub mod cmdline;
pub mod drivers;
pub mod hook;
pub mod kallsyms;
pub mod mm;
pub mod net;
pub mod platform;
pub mod util;

#[cfg(all(target_os = "none", feature = "bench"))]
pub mod bench;
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
pub mod workload;

#[cfg(target_os = "none")]
pub use kernel::BootInfo;
