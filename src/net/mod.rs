//! Networking: an HTTP/1.1 server's pure half (`http`), and (kernel builds) a TCP/IP stack,
//! `smoltcp`, over a virtio-net device (`stack`).

pub mod http;
#[cfg(target_os = "none")]
pub mod stack;

/// The TCP/IP stack itself, so that code above the kernel (the `net` workload, an application)
/// uses the very version [`stack`] is built on.
#[cfg(target_os = "none")]
pub use smoltcp;
