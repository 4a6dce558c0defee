//! The BCM2835/BCM2711 mini UART ("brcm,bcm2835-aux-uart"): `serial1` on the Raspberry Pi 4,
//! the console a stock Pi 4 routes to GPIO 14/15 while Bluetooth holds the PL011.
//!
//! The mini UART is one of the "auxiliary" peripherals: a shared AUX block starts with the
//! interrupt status and the enable bits (`AUX_ENABLES`), and the UART's own registers follow at
//! +0x40. The device tree's `reg` names only the UART's registers, so the driver reaches
//! `AUX_ENABLES` only when the caller could map it (it lies in the same page as the UART on every
//! BCM2711 board: see [`aux_base`]). The firmware enables the UART and programs its baud rate
//! when `config.txt` says `enable_uart=1`, so the rate is kept unless the reference clock is known.

use tock_registers::{
    interfaces::{ReadWriteable, Readable, Writeable},
    register_bitfields, register_structs,
    registers::{ReadOnly, ReadWrite},
};

register_bitfields! {u32,
    AUX_ENABLES [
        /// Gives the CPU access to the mini UART's registers and clocks it.
        MINI_UART OFFSET(0) NUMBITS(1) [],
        SPI1 OFFSET(1) NUMBITS(1) [],
        SPI2 OFFSET(2) NUMBITS(1) []
    ],
    IER [
        RX_IRQ OFFSET(0) NUMBITS(1) [],
        TX_IRQ OFFSET(1) NUMBITS(1) []
    ],
    IIR [
        /// Writing 1 clears the receive FIFO.
        CLEAR_RX OFFSET(1) NUMBITS(1) [],
        /// Writing 1 clears the transmit FIFO.
        CLEAR_TX OFFSET(2) NUMBITS(1) []
    ],
    LCR [
        /// Data size. Only bit 0 is documented; 8-bit mode needs both bits set (a well-known
        /// erratum of the BCM2835 peripherals manual), 0b00 is 7-bit.
        DATA_SIZE OFFSET(0) NUMBITS(2) [SevenBit = 0b00, EightBit = 0b11],
        /// Makes the baud register read/writable as the 16550's divisor latch does; must be 0.
        DLAB OFFSET(7) NUMBITS(1) []
    ],
    LSR [
        DATA_READY OFFSET(0) NUMBITS(1) [],
        /// The transmit FIFO can take at least one byte.
        TX_EMPTY OFFSET(5) NUMBITS(1) [],
        /// The transmit FIFO is empty and the last bit has left the shifter.
        TX_IDLE OFFSET(6) NUMBITS(1) []
    ],
    CNTL [
        RX_ENABLE OFFSET(0) NUMBITS(1) [],
        TX_ENABLE OFFSET(1) NUMBITS(1) []
    ]
}

register_structs! {
    /// The mini UART's registers, from the device tree's `reg` (AUX base + 0x40).
    pub Registers {
        (0x00 => io: ReadWrite<u32>),
        (0x04 => ier: ReadWrite<u32, IER::Register>),
        (0x08 => iir: ReadWrite<u32, IIR::Register>),
        (0x0c => lcr: ReadWrite<u32, LCR::Register>),
        (0x10 => mcr: ReadWrite<u32>),
        (0x14 => lsr: ReadOnly<u32, LSR::Register>),
        (0x18 => msr: ReadOnly<u32>),
        (0x1c => scratch: ReadWrite<u32>),
        (0x20 => cntl: ReadWrite<u32, CNTL::Register>),
        (0x24 => stat: ReadOnly<u32>),
        (0x28 => baud: ReadWrite<u32>),
        (0x2c => @END),
    }
}

/// Size of the UART's register window (the device tree's `reg` size on the Pi 4).
pub const MMIO_SIZE: usize = 0x40;
/// Where the UART's registers start inside the AUX block.
pub const UART_OFFSET: u64 = 0x40;
/// Where `AUX_ENABLES` is inside the AUX block.
const AUX_ENABLES_OFFSET: usize = 0x04;
/// Bytes to map from the AUX base to reach both `AUX_ENABLES` and the UART.
pub const AUX_MMIO_SIZE: usize = UART_OFFSET as usize + MMIO_SIZE;

/// Reads of LSR to wait for the transmitter to drain before reconfiguring it: far longer than
/// an 8-byte FIFO takes at 9600 baud on any clock, yet bounded, so that a UART the firmware left
/// unclocked (its registers then read as zero) cannot hang the boot.
const DRAIN_SPINS: u32 = 1_000_000;

/// The AUX block's base for a mini UART at physical address `uart_pa`, when `AUX_ENABLES` can be
/// reached in the same page as the UART (one `ioremap` of a single page covers both). `None`
/// when the UART is not at [`UART_OFFSET`] into its page: we then do not guess where the AUX
/// block is and rely on the firmware having enabled the UART.
pub fn aux_base(uart_pa: u64) -> Option<u64> {
    let in_page = uart_pa & 0xfff;
    (in_page >= UART_OFFSET).then(|| uart_pa - UART_OFFSET)
}

/// The baud register value for `baud` from the `clock_hz` system (VPU core) clock: the UART
/// divides by 8 * (reg + 1). `None` when the rate is out of the register's 16-bit reach.
pub fn baud_divisor(clock_hz: u32, baud: u32) -> Option<u32> {
    if baud == 0 {
        return None;
    }
    let div8 = u64::from(baud) * 8;
    // Rounded to the nearest divisor.
    let reg = ((u64::from(clock_hz) + div8 / 2) / div8).checked_sub(1)?;
    u16::try_from(reg).ok().map(u32::from)
}

/// A driver for the BCM2835 auxiliary mini UART (the Pi 4's `serial1`).
pub struct MiniUart {
    regs: &'static Registers,
    enables: Option<&'static ReadWrite<u32, AUX_ENABLES::Register>>,
}

impl MiniUart {
    /// A mini UART whose AUX block is out of reach: the firmware must have enabled it.
    ///
    /// # Safety
    /// `uart` must be the virtual address of a mini UART's registers, mapped as device memory for
    /// the rest of the kernel's life, and nothing else may drive this UART.
    pub unsafe fn new(uart: usize) -> Self {
        // SAFETY: the caller guarantees the mapping and exclusive use.
        let regs = unsafe { &*(uart as *const Registers) };
        Self {
            regs,
            enables: None,
        }
    }

    /// A mini UART reached through its AUX block, whose `AUX_ENABLES` the driver sets.
    ///
    /// # Safety
    /// `aux` must be the virtual address of the AUX block, mapped as device memory for
    /// [`AUX_MMIO_SIZE`] bytes for the rest of the kernel's life; nothing else may drive the
    /// mini UART, and whoever drives the AUX block's SPI controllers must tolerate the
    /// read-modify-write of `AUX_ENABLES` (nothing in this kernel does).
    pub unsafe fn with_aux(aux: usize) -> Self {
        // SAFETY: `aux + UART_OFFSET` is inside the mapping the caller guarantees.
        let mut uart = unsafe { Self::new(aux + UART_OFFSET as usize) };
        // SAFETY: `AUX_ENABLES` is a 32-bit register at +0x04 of the same mapping, aligned.
        uart.enables = Some(unsafe {
            &*((aux + AUX_ENABLES_OFFSET) as *const ReadWrite<u32, AUX_ENABLES::Register>)
        });
        uart
    }

    /// Enable the UART, 8-bit, no interrupts, transmitter and receiver on. The baud rate is
    /// programmed only from a known `clock_hz`: the mini UART's clock is the VPU core clock,
    /// which the firmware may scale, so without it the firmware's setting is kept.
    pub fn init(&self, clock_hz: Option<u32>, baud: u32) {
        if let Some(en) = self.enables {
            en.modify(AUX_ENABLES::MINI_UART::SET);
        }
        // Let what the firmware (or the early console) queued leave before reconfiguring.
        for _ in 0..DRAIN_SPINS {
            if self.regs.lsr.is_set(LSR::TX_IDLE) {
                break;
            }
            core::hint::spin_loop();
        }
        self.regs.cntl.set(0);
        self.regs.ier.set(0);
        self.regs
            .lcr
            .write(LCR::DATA_SIZE::EightBit + LCR::DLAB::CLEAR);
        self.regs.mcr.set(0);
        self.regs.iir.write(IIR::CLEAR_RX::SET + IIR::CLEAR_TX::SET);
        if let Some(reg) = clock_hz.and_then(|c| baud_divisor(c, baud)) {
            self.regs.baud.set(reg);
        }
        self.regs
            .cntl
            .write(CNTL::RX_ENABLE::SET + CNTL::TX_ENABLE::SET);
    }

    /// Send one byte, waiting until the transmit FIFO has room.
    pub fn putc(&self, b: u8) {
        while !self.regs.lsr.is_set(LSR::TX_EMPTY) {
            core::hint::spin_loop();
        }
        self.regs.io.set(u32::from(b));
    }

    /// The next received byte, if one is waiting (the chainloader reads kernels this way).
    pub fn try_getc(&self) -> Option<u8> {
        self.regs
            .lsr
            .is_set(LSR::DATA_READY)
            .then(|| self.regs.io.get() as u8)
    }
}

// Named outright: the chainloader includes this file by `#[path]`, and a module file included
// that way looks for its children beside itself (src/drivers/tests.rs), not in mini_uart/.
#[cfg(test)]
#[path = "mini_uart/tests.rs"]
mod tests;
