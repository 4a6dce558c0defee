//! Ringing the mailbox: one property request at a time, its buffer a frame of RAM the
//! VideoCore can reach, cleaned before and invalidated after (Linux's `arch_sync_dma_for_device`
//! and `arch_sync_dma_for_cpu` around a non-coherent device's DMA).

use alloc::vec::Vec;

use super::{BoardFacts, CHANNEL_PROPERTY, CLOCKS, MailboxError, answer, request, tag};
use crate::arch::aarch64::{cache, cpu};
use crate::drivers::iomap::IoMap;
use crate::mm::addr::PhysAddr;
use crate::mm::frame::FRAMES;
use crate::mm::layout::{PAGE_SIZE, phys_to_virt};
use crate::platform::devicetree::Mailbox as MailboxDesc;

/// Mailbox 0 (VideoCore to ARM): read and status registers; mailbox 1 (ARM to VideoCore): write
/// and status.
const READ: usize = 0x00;
const STATUS0: usize = 0x18;
const WRITE: usize = 0x20;
const STATUS1: usize = 0x38;
const EMPTY: u32 = 1 << 30;
const FULL: u32 = 1 << 31;

/// The mailbox, mapped, with its request buffer.
pub struct Mailbox {
    regs: IoMap,
    /// The buffer: a frame of RAM, its linear-map address, its bus address.
    buf: PhysAddr,
    va: usize,
    bus: u32,
    /// A request was handed to the VideoCore and its answer has not come (a timeout or a stray
    /// answer ended the wait): the firmware may still write the buffer, so it is never freed.
    in_flight: bool,
}

impl Mailbox {
    /// Map the mailbox `d` describes and take a buffer frame the VideoCore can reach.
    ///
    /// # Errors
    ///
    /// [`MailboxError::Map`] or [`MailboxError::NoBuffer`].
    pub fn new(d: &MailboxDesc) -> Result<Self, MailboxError> {
        let regs =
            IoMap::new(PhysAddr(d.reg.base), d.reg.size as usize).map_err(MailboxError::Map)?;
        let buf = FRAMES.alloc(1).ok_or(MailboxError::NoBuffer)?;
        let (bus_base, cpu_base, size) = d.dma.unwrap_or((0, 0, 1 << 32));
        let off = buf
            .0
            .checked_sub(cpu_base)
            .filter(|&o| o + PAGE_SIZE as u64 <= size);
        let Some(bus) = off.and_then(|o| u32::try_from(bus_base + o).ok()) else {
            // SAFETY: the frame `alloc(1)` just handed out; nothing has seen it, the VideoCore
            // included (no request was made).
            unsafe { FRAMES.free(buf, 1) };
            return Err(MailboxError::NoBuffer);
        };
        Ok(Self {
            regs,
            buf,
            va: phys_to_virt(buf).as_usize(),
            bus,
            in_flight: false,
        })
    }

    /// Ask for `t` with request values `req`; the answer's first `words` words.
    ///
    /// # Errors
    ///
    /// [`MailboxError`]: a timeout, a stray answer, or a refusal.
    pub fn property(
        &mut self,
        t: u32,
        req: &[u32],
        words: usize,
    ) -> Result<Vec<u32>, MailboxError> {
        if self.in_flight {
            // The firmware may yet answer the earlier request into the same buffer.
            return Err(MailboxError::Busy { tag: t });
        }
        let msg = request(t, req, words);
        let p = self.va as *mut u32;
        // SAFETY: `va` is this mailbox's own frame, mapped by the linear map; the message fits
        // one page (at most a few words); nothing else uses the frame.
        unsafe {
            for (i, w) in msg.iter().enumerate() {
                p.add(i).write_volatile(*w);
            }
        }
        // The VideoCore reads RAM, not our caches (Linux: arch_sync_dma_for_device).
        cache::clean_to_poc(self.va, msg.len() * 4);
        let deadline = cpu::counter() + cpu::counter_frequency();
        while self.regs.read32(STATUS1) & FULL != 0 {
            if cpu::counter() > deadline {
                return Err(MailboxError::Timeout { tag: t });
            }
        }
        self.regs.write32(WRITE, self.bus | CHANNEL_PROPERTY);
        self.in_flight = true;
        loop {
            while self.regs.read32(STATUS0) & EMPTY != 0 {
                if cpu::counter() > deadline {
                    return Err(MailboxError::Timeout { tag: t });
                }
            }
            let word = self.regs.read32(READ);
            if word & 0xf != CHANNEL_PROPERTY {
                continue; // another channel's answer
            }
            if word != self.bus | CHANNEL_PROPERTY {
                return Err(MailboxError::Stray { word });
            }
            break;
        }
        self.in_flight = false;
        // What the VideoCore wrote is in RAM; drop our stale lines (arch_sync_dma_for_cpu).
        cache::clean_invalidate_to_poc(self.va, msg.len() * 4);
        // SAFETY: as above; the VideoCore is done with the buffer.
        let got: Vec<u32> = (0..msg.len())
            .map(|i| unsafe { p.add(i).read_volatile() })
            .collect();
        answer(&got, words)
    }

    /// Everything [`BoardFacts`] holds.
    ///
    /// # Errors
    ///
    /// The first request that failed.
    pub fn board_facts(&mut self) -> Result<BoardFacts, MailboxError> {
        let one = |m: &mut Self, t| m.property(t, &[], 1).map(|v| v[0]);
        let two = |m: &mut Self, t, req: &[u32]| m.property(t, req, 2).map(|v| (v[0], v[1]));
        let firmware = one(self, tag::FIRMWARE_REVISION)?;
        let model = one(self, tag::BOARD_MODEL)?;
        let revision = one(self, tag::BOARD_REVISION)?;
        let s = two(self, tag::BOARD_SERIAL, &[])?;
        let arm_memory = two(self, tag::ARM_MEMORY, &[])?;
        let vc_memory = two(self, tag::VC_MEMORY, &[])?;
        let mut clocks = Vec::new();
        for (id, name) in CLOCKS {
            clocks.push((name, two(self, tag::CLOCK_RATE, &[id])?.1));
        }
        let temperature = two(self, tag::TEMPERATURE, &[0])?.1;
        let max_temperature = two(self, tag::MAX_TEMPERATURE, &[0])?.1;
        Ok(BoardFacts {
            firmware,
            model,
            revision,
            serial: u64::from(s.0) | (u64::from(s.1) << 32),
            arm_memory,
            vc_memory,
            clocks,
            temperature,
            max_temperature,
        })
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if self.in_flight {
            log::warn!(
                "mailbox: a request is still unanswered: its buffer frame {:#x} stays the \
                 firmware's and is not freed",
                self.buf.0
            );
            return;
        }
        // SAFETY: the frame `alloc(1)` handed to `new`, freed only here; every request made
        // through it was answered (`in_flight` is clear), so the VideoCore no longer reads or
        // writes it, and only this mailbox's linear-map address reached it.
        unsafe { FRAMES.free(self.buf, 1) };
    }
}
