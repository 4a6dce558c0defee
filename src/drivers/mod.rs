//! Device drivers: register maps with tock-registers, reached only through `ioremap`.

pub mod gic;
#[cfg(target_os = "none")]
pub mod pl011;
pub mod timer;
