//! virtio-net: [`NetDevice`], Ethernet frames in and out, receive interrupt-driven.
//!
//! The receive buffers are `virtio-drivers`' (`VirtIONet`, on the heap); a frame taken with
//! [`NetDevice::receive`] is handed back with [`NetDevice::recycle`]. Sending waits for the
//! device to take the frame (QEMU copies it out at once).

use spin::Mutex;
use virtio_drivers::device::net::{RxBuffer, VirtIONet};

use super::{Events, Interrupting};
use crate::drivers::virtio::hal::VirtioHal;
use crate::drivers::virtio::{DeviceTransport, IrqAck, ProbeError};

/// Receive buffers (and the virtqueues' size).
const QUEUE_SIZE: usize = 16;
/// One receive buffer: a 1514-byte frame and the virtio-net header, rounded up.
pub const BUF_LEN: usize = 2048;

type Net = VirtIONet<VirtioHal, DeviceTransport, QUEUE_SIZE>;

/// A virtio network device.
pub struct NetDevice {
    events: Events,
    /// Acknowledges the device's interrupt in the handler, which takes no lock.
    ack: IrqAck,
    state: Mutex<Net>,
    mac: [u8; 6],
}

// SAFETY: `ack` came from the transport inside `state`, which lives as long as `self`, and
// `Drop` unwires `events` first.
unsafe impl Interrupting for NetDevice {
    fn irq_parts(&self) -> (&IrqAck, &Events) {
        (&self.ack, &self.events)
    }
}

impl Drop for NetDevice {
    fn drop(&mut self) {
        self.events.unwire();
    }
}

impl NetDevice {
    /// Bring up the network device behind `transport`.
    ///
    /// # Errors
    ///
    /// [`ProbeError`]: features refused, or the queues could not be set up.
    pub fn new(transport: DeviceTransport) -> Result<Self, ProbeError> {
        let negotiation = transport.negotiation();
        let ack = transport.irq_ack();
        let net = Net::new(transport, BUF_LEN)?;
        negotiation.check()?;
        let mac = net.mac_address();
        Ok(Self {
            events: Events::new(),
            ack,
            state: Mutex::new(net),
            mac,
        })
    }

    /// The device's interrupt line and events.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The MAC address the device has.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// A received frame, if one is waiting.
    pub fn receive(&self) -> Option<RxBuffer> {
        self.state.lock().receive().ok()
    }

    /// Give a received frame's buffer back to the device.
    pub fn recycle(&self, rx: RxBuffer) {
        if let Err(e) = self.state.lock().recycle_rx_buffer(rx) {
            log::error!("virtio-net: a receive buffer could not be given back: {e}");
        }
    }

    /// Send one Ethernet frame.
    ///
    /// # Errors
    ///
    /// The driver's error (a full queue, when frames go out faster than the device takes them).
    pub fn send(&self, frame: &[u8]) -> Result<(), virtio_drivers::Error> {
        let mut st = self.state.lock();
        let mut tx = st.new_tx_buffer(frame.len());
        tx.packet_mut().copy_from_slice(frame);
        st.send(tx)
    }
}
