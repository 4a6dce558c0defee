//! Device drivers: register maps with tock-registers, reached only through `ioremap`.

pub mod gic;
pub mod mini_uart;
#[cfg(target_os = "none")]
pub mod pl011;
pub mod timer;
