//! Networking: an HTTP/1.1 server's pure half (`http`), and (kernel builds) a TCP/IP stack,
//! `smoltcp`, over a virtio-net device (`stack`).

pub mod http;
#[cfg(target_os = "none")]
pub mod stack;
