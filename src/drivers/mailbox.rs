//! The Raspberry Pi's VideoCore mailbox (`brcm,bcm2835-mbox`), property channel: the firmware's
//! answers about the board (revision, serial, memory split, clock rates, temperature).
//!
//! A property request is a buffer in RAM that the VideoCore reads and overwrites: its size, a
//! request code, then tags (id, value-buffer size, request/response word, values), then an end
//! tag. The CPU writes the buffer's *bus* address, with the channel (8) in its low 4 bits, to
//! the mailbox's write register and polls the read register for the same word. The VideoCore
//! sees the low GiB of RAM at bus address 0xc0000000 on a Pi 4 (the `dma-ranges` of `/soc`,
//! which QEMU's raspi4b models the same way). It does not snoop the CPUs' caches: the buffer is
//! cleaned to the point of coherency before the mailbox is rung and invalidated after the answer,
//! never touched through an uncached alias (invariant 10 in `mm`).
//!
//! The buffer layout and the decoding of answers are pure (host tests); `hw` (kernel builds) rings the mailbox.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// The property channel (ARM to VideoCore).
pub const CHANNEL_PROPERTY: u32 = 8;
/// A buffer's request code, and the code of a successful answer.
const REQUEST: u32 = 0;
const RESPONSE_OK: u32 = 0x8000_0000;
/// Set in a tag's request/response word once the firmware answered it.
const TAG_ANSWERED: u32 = 0x8000_0000;

/// The tags initmm asks for.
pub mod tag {
    /// Firmware revision (a build date).
    pub const FIRMWARE_REVISION: u32 = 0x0000_0001;
    /// Board model.
    pub const BOARD_MODEL: u32 = 0x0001_0001;
    /// Board revision code (which Pi, which RAM size, which maker).
    pub const BOARD_REVISION: u32 = 0x0001_0002;
    /// Board serial number (64 bits).
    pub const BOARD_SERIAL: u32 = 0x0001_0004;
    /// ARM memory: base and size.
    pub const ARM_MEMORY: u32 = 0x0001_0005;
    /// VideoCore memory: base and size.
    pub const VC_MEMORY: u32 = 0x0001_0006;
    /// A clock's rate in Hz (request: the clock's id).
    pub const CLOCK_RATE: u32 = 0x0003_0002;
    /// SoC temperature in thousandths of a degree Celsius (request: sensor 0).
    pub const TEMPERATURE: u32 = 0x0003_0006;
    /// The temperature at which the firmware throttles.
    pub const MAX_TEMPERATURE: u32 = 0x0003_000a;
}

/// Clock ids the firmware knows, and their names.
pub const CLOCKS: [(u32, &str); 4] = [(1, "EMMC"), (2, "UART"), (3, "ARM"), (4, "CORE")];

/// Why a property request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxError {
    /// No frame for the buffer, or none the VideoCore can reach.
    NoBuffer,
    /// Its registers could not be mapped.
    Map(crate::mm::vm::VmError),
    /// No answer within the time allowed.
    Timeout {
        /// The tag asked for.
        tag: u32,
    },
    /// An earlier request through this buffer is still unanswered (it timed out, or a stray
    /// answer came instead): the firmware may yet write the buffer, so nothing more is asked.
    Busy {
        /// The tag asked for.
        tag: u32,
    },
    /// An answer for another channel or buffer.
    Stray {
        /// The word read.
        word: u32,
    },
    /// The firmware did not answer the buffer, or this tag, as answered.
    Refused {
        /// The tag asked for.
        tag: u32,
        /// The buffer's code, or the tag's response word.
        code: u32,
    },
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBuffer => f.write_str("no frame of RAM the VideoCore can reach for the buffer"),
            Self::Map(e) => write!(f, "cannot map the mailbox: {e}"),
            Self::Timeout { tag } => write!(f, "tag {tag:#010x}: no answer within 1 s"),
            Self::Busy { tag } => write!(
                f,
                "tag {tag:#010x}: an earlier request is still unanswered, its buffer in use"
            ),
            Self::Stray { word } => write!(f, "an answer {word:#010x} for another request"),
            Self::Refused { tag, code } => write!(f, "tag {tag:#010x}: refused ({code:#010x})"),
        }
    }
}

/// The request buffer for one `tag` with `req` as its request values and room for `words` words
/// of answer: the words to put in RAM.
pub fn request(tag: u32, req: &[u32], words: usize) -> Vec<u32> {
    let room = words.max(req.len());
    let mut b = vec![0u32; 6 + room];
    let len = b.len();
    b[0] = (len * 4) as u32;
    b[1] = REQUEST;
    b[2] = tag;
    b[3] = (room * 4) as u32;
    b[4] = 0;
    b[5..5 + req.len()].copy_from_slice(req);
    b[len - 1] = 0; // end tag
    b
}

/// The answer's values, once the firmware has overwritten the buffer `request` made.
///
/// # Errors
///
/// [`MailboxError::Refused`]: the buffer or the tag is not marked answered.
pub fn answer(b: &[u32], words: usize) -> Result<Vec<u32>, MailboxError> {
    let tag = b.get(2).copied().unwrap_or(0);
    let code = b.get(1).copied().unwrap_or(0);
    if code != RESPONSE_OK {
        return Err(MailboxError::Refused { tag, code });
    }
    let r = b.get(4).copied().unwrap_or(0);
    if r & TAG_ANSWERED == 0 {
        return Err(MailboxError::Refused { tag, code: r });
    }
    Ok(b[5..5 + words].to_vec())
}

/// What the firmware says about the board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardFacts {
    /// Firmware revision.
    pub firmware: u32,
    /// Board model (0 where the firmware leaves it unanswered).
    pub model: u32,
    /// Board revision code.
    pub revision: u32,
    /// Serial number.
    pub serial: u64,
    /// ARM memory: base, size.
    pub arm_memory: (u32, u32),
    /// VideoCore memory: base, size.
    pub vc_memory: (u32, u32),
    /// Clock rates in Hz, by [`CLOCKS`].
    pub clocks: Vec<(&'static str, u32)>,
    /// Temperature, thousandths of a degree Celsius.
    pub temperature: u32,
    /// Throttling temperature, thousandths of a degree Celsius.
    pub max_temperature: u32,
}

impl fmt::Display for BoardFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "firmware {:#x}, board model {:#x}, revision {:#x}, serial {:#018x}, ARM memory {:#x}+{:#x}, VideoCore memory {:#x}+{:#x}, temperature {}.{:03} C (throttles at {}.{:03} C), clocks",
            self.firmware,
            self.model,
            self.revision,
            self.serial,
            self.arm_memory.0,
            self.arm_memory.1,
            self.vc_memory.0,
            self.vc_memory.1,
            self.temperature / 1000,
            self.temperature % 1000,
            self.max_temperature / 1000,
            self.max_temperature % 1000
        )?;
        for (name, hz) in &self.clocks {
            write!(f, " {name} {} MHz", hz / 1_000_000)?;
        }
        Ok(())
    }
}

#[cfg(target_os = "none")]
pub mod hw;

#[cfg(test)]
mod tests;
