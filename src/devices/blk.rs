//! virtio-blk: [`Disk`], a block device several CPUs use at once, interrupt-driven.
//!
//! Any number of requests may be in flight, from any CPUs (up to the virtqueue's size: a full
//! queue makes [`Disk::submit_read`] and [`Disk::submit_write`] fail with [`BlkError::QueueFull`], and the blocking calls wait for
//! a completion and try again). The device completes them in any order; whichever CPU finds a
//! request in the used ring completes it (`complete_*_blocks` with the buffers its owner handed
//! over, which the owner does not touch until it sees the request done). The interrupt handler
//! only acknowledges the device and signals.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk};

use super::{Events, IRQ_TIMEOUT_US, Interrupting};
use crate::drivers::virtio::hal::VirtioHal;
use crate::drivers::virtio::{DeviceTransport, IrqAck};

/// Why a block request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// The request reaches past the disk's last sector.
    PastEnd {
        /// First sector asked for.
        sector: u64,
        /// Sectors asked for.
        sectors: u64,
        /// The disk's size in sectors.
        capacity: u64,
    },
    /// The buffer is empty or not a whole number of 512-byte sectors.
    BadLength {
        /// Its length in bytes.
        len: usize,
    },
    /// A write to a read-only disk.
    ReadOnly,
    /// Every descriptor of the virtqueue is in use: try again once a request completes.
    QueueFull,
    /// No interrupt came for the request within [`IRQ_TIMEOUT_US`].
    NoInterrupt,
    /// The device or the driver reported an error.
    Device(virtio_drivers::Error),
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::PastEnd {
                sector,
                sectors,
                capacity,
            } => write!(
                f,
                "sectors {sector}..{} are past the end of the disk ({capacity} sectors)",
                sector.saturating_add(sectors)
            ),
            Self::BadLength { len } => {
                write!(
                    f,
                    "a buffer of {len} bytes is no whole number of {SECTOR_SIZE}-byte sectors"
                )
            }
            Self::ReadOnly => f.write_str("the disk is read-only"),
            Self::QueueFull => f.write_str("the virtqueue is full"),
            Self::NoInterrupt => write!(
                f,
                "no interrupt from the disk within {} s",
                IRQ_TIMEOUT_US / 1_000_000
            ),
            Self::Device(e) => write!(f, "device: {e}"),
        }
    }
}

impl core::error::Error for BlkError {}

type Blk = VirtIOBlk<VirtioHal, DeviceTransport>;

/// A request's header, status and outcome, on the heap so that its address is stable (and
/// physically contiguous: the device reads it directly).
struct Request {
    req: BlkReq,
    resp: BlkResp,
    /// 0 while in flight, then 1 + the outcome's index in [`OUTCOMES`] order.
    state: AtomicUsize,
}

/// An in-flight request as the completing CPU needs it.
struct InFlight {
    request: *mut Request,
    buf: *mut u8,
    len: usize,
    write: bool,
}

struct State {
    blk: Blk,
    inflight: BTreeMap<u16, InFlight>,
}

// SAFETY: the raw pointers in `inflight` point at buffers and requests whose owners wait (in
// `Pending`) until the request is marked done, and only the CPU holding the state's lock
// dereferences them; `Blk` itself is Send.
unsafe impl Send for State {}

/// A virtio block device.
pub struct Disk {
    events: Events,
    /// Acknowledges the device's interrupt in the handler, which takes no lock.
    ack: IrqAck,
    state: Mutex<State>,
    capacity: u64,
    readonly: bool,
    queue_size: u16,
    /// Submissions that found the queue full and waited.
    pub full_waits: AtomicU64,
}

// SAFETY: `ack` came from the transport inside `state`, which lives as long as `self`, and
// `Drop` unwires `events` first.
unsafe impl Interrupting for Disk {
    fn irq_parts(&self) -> (&IrqAck, &Events) {
        (&self.ack, &self.events)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.events.unwire();
    }
}

const OK: usize = 1;

/// A submitted request: waits for it ([`Pending::wait`], or when dropped, since the device
/// still owns its buffer until then).
#[must_use = "a request is waited for when dropped"]
pub struct Pending<'a> {
    disk: &'a Disk,
    request: Box<Request>,
    result: Option<Result<(), BlkError>>,
    _buf: PhantomData<&'a mut [u8]>,
}

impl Disk {
    /// Bring up the block device behind `transport`.
    ///
    /// # Errors
    ///
    /// The driver's set-up error.
    pub fn new(transport: DeviceTransport) -> Result<Self, crate::drivers::virtio::ProbeError> {
        let negotiation = transport.negotiation();
        let ack = transport.irq_ack();
        let blk = Blk::new(transport)?;
        negotiation.check()?;
        Ok(Self {
            events: Events::new(),
            ack,
            capacity: blk.capacity(),
            readonly: blk.readonly(),
            queue_size: blk.virt_queue_size(),
            state: Mutex::new(State {
                blk,
                inflight: BTreeMap::new(),
            }),
            full_waits: AtomicU64::new(0),
        })
    }

    /// The line the device interrupts on, once wired.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The virtqueue's size: at most this many requests are in flight.
    pub fn queue_size(&self) -> u16 {
        self.queue_size
    }

    fn check(&self, sector: u64, len: usize, write: bool) -> Result<(), BlkError> {
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlkError::BadLength { len });
        }
        let sectors = (len / SECTOR_SIZE) as u64;
        if sector
            .checked_add(sectors)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(BlkError::PastEnd {
                sector,
                sectors,
                capacity: self.capacity,
            });
        }
        if write && self.readonly {
            return Err(BlkError::ReadOnly);
        }
        Ok(())
    }

    /// Start reading `buf.len()` bytes from `sector`; the buffer is the device's until the
    /// request is done.
    ///
    /// # Errors
    ///
    /// [`BlkError`]: a bad length, past the end, or a full queue.
    pub fn submit_read<'a>(
        &'a self,
        sector: u64,
        buf: &'a mut [u8],
    ) -> Result<Pending<'a>, BlkError> {
        self.check(sector, buf.len(), false)?;
        self.submit(sector, buf.as_mut_ptr(), buf.len(), false)
    }

    /// Start writing `buf` at `sector`.
    ///
    /// # Errors
    ///
    /// As for [`submit_read`](Self::submit_read), and a read-only disk.
    pub fn submit_write<'a>(&'a self, sector: u64, buf: &'a [u8]) -> Result<Pending<'a>, BlkError> {
        self.check(sector, buf.len(), true)?;
        self.submit(sector, buf.as_ptr().cast_mut(), buf.len(), true)
    }

    fn submit<'a>(
        &'a self,
        sector: u64,
        buf: *mut u8,
        len: usize,
        write: bool,
    ) -> Result<Pending<'a>, BlkError> {
        let mut request = Box::new(Request {
            req: BlkReq::default(),
            resp: BlkResp::default(),
            state: AtomicUsize::new(0),
        });
        let r: *mut Request = &mut *request;
        let mut st = self.state.lock();
        // SAFETY: the request header, status and buffer stay where they are and untouched by
        // their owner until the request is marked done (`Pending` waits for that, also when
        // dropped), and the completing CPU hands these same buffers back (`reap`).
        let token = unsafe {
            if write {
                let data = core::slice::from_raw_parts(buf, len);
                st.blk
                    .write_blocks_nb(sector as usize, &mut (*r).req, data, &mut (*r).resp)
            } else {
                let data = core::slice::from_raw_parts_mut(buf, len);
                st.blk
                    .read_blocks_nb(sector as usize, &mut (*r).req, data, &mut (*r).resp)
            }
        }
        .map_err(|e| match e {
            virtio_drivers::Error::QueueFull => BlkError::QueueFull,
            e => BlkError::Device(e),
        })?;
        st.inflight.insert(
            token,
            InFlight {
                request: r,
                buf,
                len,
                write,
            },
        );
        Ok(Pending {
            disk: self,
            request,
            result: None,
            _buf: PhantomData,
        })
    }

    /// Complete every request the device has finished, whoever submitted it.
    fn reap(&self) {
        let mut st = self.state.lock();
        while let Some(token) = st.blk.peek_used() {
            let Some(f) = st.inflight.remove(&token) else {
                log::error!(
                    "virtio-blk: the device used descriptor {token}, which no request holds"
                );
                return;
            };
            // SAFETY: `f` holds what `submit` handed to the device for `token`; its owner waits
            // until `state` is set below and touches nothing of it before.
            let r = unsafe {
                let req = &mut *f.request;
                if f.write {
                    let data = core::slice::from_raw_parts(f.buf, f.len);
                    st.blk
                        .complete_write_blocks(token, &req.req, data, &mut req.resp)
                } else {
                    let data = core::slice::from_raw_parts_mut(f.buf, f.len);
                    st.blk
                        .complete_read_blocks(token, &req.req, data, &mut req.resp)
                }
            };
            let code = match r {
                Ok(()) => OK,
                Err(e) => OK + 1 + error_index(e),
            };
            // SAFETY: as above; the owner reads `state` only.
            unsafe { (*f.request).state.store(code, Ordering::Release) };
        }
    }

    /// Read `buf.len()` bytes from `sector`, waiting for the device (and for room in the queue).
    ///
    /// # Errors
    ///
    /// [`BlkError`].
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len(), false)?;
        let (p, len) = (buf.as_mut_ptr(), buf.len());
        self.retry_full(|| self.submit(sector, p, len, false))?
            .wait()
    }

    /// Write `buf` at `sector`, waiting for the device.
    ///
    /// # Errors
    ///
    /// [`BlkError`].
    pub fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len(), true)?;
        let (p, len) = (buf.as_ptr().cast_mut(), buf.len());
        self.retry_full(|| self.submit(sector, p, len, true))?
            .wait()
    }

    fn retry_full<'a>(
        &'a self,
        mut f: impl FnMut() -> Result<Pending<'a>, BlkError>,
    ) -> Result<Pending<'a>, BlkError> {
        loop {
            let seen = self.events.seen();
            match f() {
                Err(BlkError::QueueFull) => {
                    self.full_waits.fetch_add(1, Ordering::Relaxed);
                    self.reap();
                    if !self.events.wait(seen, IRQ_TIMEOUT_US) {
                        return Err(BlkError::NoInterrupt);
                    }
                }
                r => return r,
            }
        }
    }

    /// Ask the device to put every completed write on stable storage; waits until no request is
    /// in flight first (the driver's flush wants the queue to itself).
    ///
    /// # Errors
    ///
    /// [`BlkError::Device`], or [`BlkError::NoInterrupt`] if requests in flight never complete.
    pub fn flush(&self) -> Result<(), BlkError> {
        loop {
            let seen = self.events.seen();
            self.reap();
            {
                let mut st = self.state.lock();
                if st.inflight.is_empty() {
                    return st.blk.flush().map_err(BlkError::Device);
                }
            }
            if !self.events.wait(seen, IRQ_TIMEOUT_US) {
                return Err(BlkError::NoInterrupt);
            }
        }
    }
}

/// The driver's errors, in a fixed order, so that a request's outcome fits one atomic word.
const ERRORS: [virtio_drivers::Error; 8] = [
    virtio_drivers::Error::QueueFull,
    virtio_drivers::Error::NotReady,
    virtio_drivers::Error::WrongToken,
    virtio_drivers::Error::AlreadyUsed,
    virtio_drivers::Error::InvalidParam,
    virtio_drivers::Error::DmaError,
    virtio_drivers::Error::IoError,
    virtio_drivers::Error::Unsupported,
];

fn error_index(e: virtio_drivers::Error) -> usize {
    ERRORS.iter().position(|&x| x == e).unwrap_or(ERRORS.len())
}

fn error_at(i: usize) -> virtio_drivers::Error {
    ERRORS
        .get(i)
        .copied()
        .unwrap_or(virtio_drivers::Error::IoError)
}

impl Pending<'_> {
    /// Wait until the device has done the request (completing whatever else it finished).
    ///
    /// # Errors
    ///
    /// [`BlkError::Device`] from the device, or [`BlkError::NoInterrupt`].
    pub fn wait(mut self) -> Result<(), BlkError> {
        self.wait_inner()
    }

    fn wait_inner(&mut self) -> Result<(), BlkError> {
        if let Some(r) = self.result {
            return r;
        }
        let mut waited_out = false;
        let r = loop {
            let seen = self.disk.events.seen();
            self.disk.reap();
            match self.request.state.load(Ordering::Acquire) {
                0 if waited_out => {
                    // No interrupt for this long: the device is wedged. The request stays in
                    // the table (its memory is leaked below rather than freed under the device).
                    break Err(BlkError::NoInterrupt);
                }
                0 => waited_out = !self.disk.events.wait(seen, IRQ_TIMEOUT_US),
                OK => break Ok(()),
                code => break Err(BlkError::Device(error_at(code - OK - 1))),
            }
        };
        self.result = Some(r);
        r
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.wait_inner() == Err(BlkError::NoInterrupt) {
            log::error!(
                "virtio-blk: a request never completed; its buffers are leaked to the device"
            );
            core::mem::forget(core::mem::replace(
                &mut self.request,
                Box::new(Request {
                    req: BlkReq::default(),
                    resp: BlkResp::default(),
                    state: AtomicUsize::new(OK),
                }),
            ));
        }
    }
}

/// Share a [`Disk`] between CPUs.
pub type SharedDisk = Arc<Disk>;
