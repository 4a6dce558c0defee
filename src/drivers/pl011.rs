//! Arm PrimeCell UART (PL011): the console on QEMU virt, and `serial0` on the Raspberry Pi 4.

use tock_registers::{
    interfaces::{Readable, Writeable},
    register_bitfields, register_structs,
    registers::{ReadOnly, ReadWrite, WriteOnly},
};

register_bitfields! {u32,
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    LCR_H [
        /// Word length.
        WLEN OFFSET(5) NUMBITS(2) [EightBit = 0b11],
        /// FIFOs enabled.
        FEN OFFSET(4) NUMBITS(1) []
    ],
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ]
}

register_structs! {
    /// The PL011's register block, from its base address.
    pub Registers {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x024 => ibrd: WriteOnly<u32>),
        (0x028 => fbrd: WriteOnly<u32>),
        (0x02c => lcr_h: WriteOnly<u32, LCR_H::Register>),
        (0x030 => cr: WriteOnly<u32, CR::Register>),
        (0x034 => _reserved2),
        (0x044 => icr: WriteOnly<u32>),
        (0x048 => _reserved3),
        (0xfe0 => periph_id: [ReadOnly<u32>; 4]),
        (0xff0 => cell_id: [ReadOnly<u32>; 4]),
        (0x1000 => @END),
    }
}

/// Size of the register block to map.
pub const MMIO_SIZE: usize = 0x1000;

/// A driver for an Arm PL011 UART, polled (no interrupts).
pub struct Pl011 {
    regs: &'static Registers,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the virtual address of a PL011's registers, mapped as device memory for
    /// the rest of the kernel's life, and nothing else may drive this UART.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees the mapping and exclusive use.
        let regs = unsafe { &*(base as *const Registers) };
        Self { regs }
    }

    /// Program 8N1 at `baud` from a `clock_hz` reference clock and enable the UART. Without a
    /// known clock the firmware's settings are kept (QEMU ignores them anyway).
    pub fn init(&self, clock_hz: Option<u32>, baud: u32) {
        while self.regs.fr.is_set(FR::BUSY) {}
        self.regs.cr.set(0);
        self.regs.icr.set(0x7ff);
        if let Some(clk) = clock_hz {
            // Divisor in 1/64ths: clk / (16 * baud), rounded.
            let div64 = (u64::from(clk) * 4 + u64::from(baud) / 2) / u64::from(baud);
            self.regs.ibrd.set((div64 >> 6) as u32);
            self.regs.fbrd.set((div64 & 0x3f) as u32);
        }
        self.regs
            .lcr_h
            .write(LCR_H::WLEN::EightBit + LCR_H::FEN::SET);
        self.regs
            .cr
            .write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Send one byte, waiting until the transmit FIFO has room.
    pub fn putc(&self, b: u8) {
        while self.regs.fr.is_set(FR::TXFF) {}
        self.regs.dr.set(u32::from(b));
    }

    /// The PrimeCell peripheral and cell identification, as one 32-bit value each
    /// (a PL011 reads 0x00_14_10_11 / 0xb1_05_f0_0d, varying in the revision nibble).
    pub fn id(&self) -> (u32, u32) {
        let join = |r: &[ReadOnly<u32>; 4]| {
            r.iter()
                .rev()
                .fold(0u32, |acc, x| (acc << 8) | (x.get() & 0xff))
        };
        (join(&self.regs.periph_id), join(&self.regs.cell_id))
    }
}
