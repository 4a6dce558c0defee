//! `smoltcp` over a virtio-net device: [`Stack`], an interface with a static IPv4 address and
//! its sockets, shared by the CPUs under one lock (it is only ever used from thread context).

use alloc::sync::Arc;
use alloc::vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address};
use virtio_drivers::device::net::RxBuffer;

use crate::arch::aarch64::cpu;
use crate::devices::net::NetDevice;

/// QEMU's user network: the guest's address, prefix and gateway.
pub const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
/// The user network's prefix length.
pub const PREFIX: u8 = 24;
/// QEMU's user-network gateway.
pub const GATEWAY: [u8; 4] = [10, 0, 2, 2];

/// The virtio-net device as smoltcp sees it.
pub struct NetIf(pub Arc<NetDevice>);

/// A received frame, its buffer given back to the device once read.
pub struct Rx<'a> {
    dev: &'a NetDevice,
    buf: RxBuffer,
}

/// Room to send one frame.
pub struct Tx<'a> {
    dev: &'a NetDevice,
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(self.buf.packet());
        self.dev.recycle(self.buf);
        r
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        if let Err(e) = self.dev.send(&frame) {
            log::warn!("net: a frame of {len} bytes was not sent: {e}");
        }
        r
    }
}

impl Device for NetIf {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let buf = self.0.receive()?;
        Some((Rx { dev: &self.0, buf }, Tx { dev: &self.0 }))
    }

    fn transmit(&mut self, _t: Instant) -> Option<Tx<'_>> {
        Some(Tx { dev: &self.0 })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c.max_burst_size = Some(8);
        c
    }
}

/// The interface, its device and its sockets.
pub struct Stack {
    /// The interface (addresses, routes, neighbour cache).
    pub iface: Interface,
    /// The device.
    pub dev: NetIf,
    /// Every socket.
    pub sockets: SocketSet<'static>,
}

/// Now, as smoltcp counts time.
pub fn now() -> Instant {
    let t = cpu::counter();
    let f = cpu::counter_frequency();
    Instant::from_micros(((t / f) * 1_000_000 + (t % f) * 1_000_000 / f) as i64)
}

impl Stack {
    /// An interface on `dev` at [`GUEST_IP`]/[`PREFIX`], default route via [`GATEWAY`].
    pub fn new(dev: Arc<NetDevice>) -> Self {
        let mut dev = NetIf(dev);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(dev.0.mac())));
        config.random_seed = cpu::counter();
        let mut iface = Interface::new(config, &mut dev, now());
        let [a, b, c, d] = GUEST_IP;
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(Ipv4Address::new(a, b, c, d).into(), PREFIX));
        });
        let [a, b, c, d] = GATEWAY;
        let _ = iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(a, b, c, d));
        Self {
            iface,
            dev,
            sockets: SocketSet::new(vec![]),
        }
    }

    /// Let smoltcp receive, send and time out; true when a socket may have changed.
    pub fn poll(&mut self) -> bool {
        self.iface.poll(now(), &mut self.dev, &mut self.sockets)
            == smoltcp::iface::PollResult::SocketStateChanged
    }

    /// How long until smoltcp wants polling again, in microseconds (`None`: only on a frame).
    pub fn delay_us(&mut self) -> Option<u64> {
        self.iface
            .poll_delay(now(), &self.sockets)
            .map(|d| d.total_micros())
    }

    /// A TCP socket listening on `port`, with buffers of `rx` and `tx` bytes.
    pub fn listener(&mut self, port: u16, rx: usize, tx: usize) -> SocketHandle {
        let mut s = smoltcp::socket::tcp::Socket::new(
            smoltcp::socket::tcp::SocketBuffer::new(vec![0; rx]),
            smoltcp::socket::tcp::SocketBuffer::new(vec![0; tx]),
        );
        // Answers go out at once: no delayed ACK (smoltcp's default waits 10 ms), no Nagle.
        s.set_ack_delay(None);
        s.set_nagle_enabled(false);
        let _ = s.listen(port);
        self.sockets.add(s)
    }
}
