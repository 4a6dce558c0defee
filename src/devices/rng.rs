//! virtio-rng: [`Rng`], entropy from the host, interrupt-driven.
//!
//! `virtio-drivers`' own entropy driver waits for the device by spinning, so this one drives
//! the crate's virtqueue itself: one device-writable buffer per request, the CPU sleeping until
//! the interrupt. One request is in flight at a time (`busy`), since the virtqueue hands back
//! buffers only in the order it was given them.

use alloc::vec;
use core::fmt;

use spin::Mutex;
use virtio_drivers::device::common::Feature;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

use super::{Events, IRQ_TIMEOUT_US, Interrupting};
use crate::drivers::virtio::hal::VirtioHal;
use crate::drivers::virtio::{DeviceTransport, IrqAck, ProbeError};

const QUEUE: u16 = 0;
const QUEUE_SIZE: usize = 8;

struct State {
    // Dropped first: the device is reset before its queue's memory is freed.
    transport: DeviceTransport,
    queue: VirtQueue<VirtioHal, QUEUE_SIZE>,
}

/// A virtio entropy device.
pub struct Rng {
    events: Events,
    /// Acknowledges the device's interrupt in the handler, which takes no lock.
    ack: IrqAck,
    state: Mutex<State>,
    busy: Mutex<()>,
}

/// Why entropy could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RngError {
    /// The driver refused the request.
    Device(virtio_drivers::Error),
    /// No interrupt came within [`IRQ_TIMEOUT_US`].
    NoInterrupt,
}

impl fmt::Display for RngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(e) => write!(f, "virtio-rng: {e}"),
            Self::NoInterrupt => write!(
                f,
                "virtio-rng: no interrupt within {} s",
                IRQ_TIMEOUT_US / 1_000_000
            ),
        }
    }
}

impl core::error::Error for RngError {}

// SAFETY: `ack` came from the transport inside `state`, which lives as long as `self`, and
// `Drop` unwires `events` first.
unsafe impl Interrupting for Rng {
    fn irq_parts(&self) -> (&IrqAck, &Events) {
        (&self.ack, &self.events)
    }
}

impl Drop for Rng {
    fn drop(&mut self) {
        self.events.unwire();
        self.state.lock().transport.queue_unset(QUEUE);
    }
}

impl Rng {
    /// Bring up the entropy device behind `transport`.
    ///
    /// # Errors
    ///
    /// [`ProbeError`]: features refused, or the queue could not be set up.
    pub fn new(mut transport: DeviceTransport) -> Result<Self, ProbeError> {
        // VERSION_1 is accepted when offered (a driver must, virtio 1.x 6.1); the request path is
        // the same for a legacy device.
        transport.begin_init(Feature::VERSION_1);
        transport.negotiation().check()?;
        let queue = VirtQueue::new(&mut transport, QUEUE, false, false)?;
        transport.finish_init();
        Ok(Self {
            events: Events::new(),
            ack: transport.irq_ack(),
            state: Mutex::new(State { transport, queue }),
            busy: Mutex::new(()),
        })
    }

    /// The device's interrupt line and events.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Fill as much of `dst` as the device gives in one request (at least one byte unless
    /// `dst` is empty); returns how many bytes.
    ///
    /// # Errors
    ///
    /// [`RngError`].
    pub fn read(&self, dst: &mut [u8]) -> Result<usize, RngError> {
        if dst.is_empty() {
            return Ok(0);
        }
        let _one = self.busy.lock();
        // On the heap: physically contiguous, handed to the device as it is.
        let mut buf = vec![0u8; dst.len()];
        let token = {
            let mut st = self.state.lock();
            let st = &mut *st;
            // SAFETY: `buf` stays alive and untouched until `pop_used` below gives it back (or,
            // on a timeout, is leaked to the device).
            let t = unsafe { st.queue.add(&[], &mut [&mut buf[..]]) }.map_err(RngError::Device)?;
            if st.queue.should_notify() {
                st.transport.notify(QUEUE);
            }
            t
        };
        loop {
            let seen = self.events.seen();
            {
                let mut st = self.state.lock();
                if st.queue.peek_used() == Some(token) {
                    // SAFETY: the same buffer `add` was given for `token`.
                    let n = unsafe { st.queue.pop_used(token, &[], &mut [&mut buf[..]]) }
                        .map_err(RngError::Device)? as usize;
                    let n = n.min(dst.len());
                    dst[..n].copy_from_slice(&buf[..n]);
                    return Ok(n);
                }
            }
            if !self.events.wait(seen, IRQ_TIMEOUT_US) {
                core::mem::forget(buf);
                return Err(RngError::NoInterrupt);
            }
        }
    }
}
