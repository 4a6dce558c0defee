//! virtio-console: [`VirtConsole`], a second console (QEMU's `virtconsole` on a
//! `virtio-serial` device), written to by the kernel.
//!
//! Output only: a write waits for the device to take the bytes, which QEMU does at once.

use spin::Mutex;
use virtio_drivers::device::console::VirtIOConsole;

use super::{Events, Interrupting};
use crate::drivers::virtio::hal::VirtioHal;
use crate::drivers::virtio::{DeviceTransport, IrqAck, ProbeError};

type Console = VirtIOConsole<VirtioHal, DeviceTransport>;

/// A virtio console.
pub struct VirtConsole {
    events: Events,
    /// Acknowledges the device's interrupt in the handler, which takes no lock.
    ack: IrqAck,
    state: Mutex<Console>,
}

// SAFETY: `ack` came from the transport inside `state`, which lives as long as `self`, and
// `Drop` unwires `events` first.
unsafe impl Interrupting for VirtConsole {
    fn irq_parts(&self) -> (&IrqAck, &Events) {
        (&self.ack, &self.events)
    }
}

impl Drop for VirtConsole {
    fn drop(&mut self) {
        self.events.unwire();
    }
}

impl VirtConsole {
    /// Bring up the console behind `transport`.
    ///
    /// # Errors
    ///
    /// [`ProbeError`]: features refused, or the queues could not be set up.
    pub fn new(transport: DeviceTransport) -> Result<Self, ProbeError> {
        let negotiation = transport.negotiation();
        let ack = transport.irq_ack();
        let c = Console::new(transport)?;
        negotiation.check()?;
        Ok(Self {
            events: Events::new(),
            ack,
            state: Mutex::new(c),
        })
    }

    /// The device's interrupt line and events.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Write `s`.
    ///
    /// # Errors
    ///
    /// The driver's error.
    pub fn write(&self, s: &str) -> Result<(), virtio_drivers::Error> {
        self.state.lock().send_bytes(s.as_bytes())
    }
}
