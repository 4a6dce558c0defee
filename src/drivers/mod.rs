//! Device drivers: register maps with tock-registers, reached only through `ioremap`.

pub mod gic;
#[cfg(target_os = "none")]
pub mod iomap;
pub mod mailbox;
pub mod mini_uart;
pub mod pci;
#[cfg(target_os = "none")]
pub mod pl011;
pub mod timer;
pub mod virtio;
