use super::*;
use core::mem::offset_of;

#[test]
fn register_offsets_match_the_bcm2711_manual() {
    // AUX_MU_*_REG at 0x7e215040 + n: IO 0x40, IER 0x44, IIR 0x48, LCR 0x4c, MCR 0x50,
    // LSR 0x54, MSR 0x58, SCRATCH 0x5c, CNTL 0x60, STAT 0x64, BAUD 0x68.
    let uart = |off: usize| off + UART_OFFSET as usize;
    assert_eq!(uart(offset_of!(Registers, io)), 0x40);
    assert_eq!(uart(offset_of!(Registers, lcr)), 0x4c);
    assert_eq!(uart(offset_of!(Registers, lsr)), 0x54);
    assert_eq!(uart(offset_of!(Registers, cntl)), 0x60);
    assert_eq!(uart(offset_of!(Registers, baud)), 0x68);
    assert!(core::mem::size_of::<Registers>() <= MMIO_SIZE);
}

#[test]
fn aux_enables_only_when_in_the_same_page() {
    assert_eq!(aux_base(0xfe21_5040), Some(0xfe21_5000));
    // Mapping one page from the AUX base covers AUX_ENABLES and every UART register.
    let aux = aux_base(0xfe21_5040).unwrap();
    assert_eq!(aux & !0xfff, 0xfe21_5040 & !0xfff);
    assert!(aux as usize % 0x1000 + AUX_MMIO_SIZE <= 0x1000);
    // A UART at a page boundary: the AUX block would be in the previous page.
    assert_eq!(aux_base(0xfe21_6000), None);
    assert_eq!(aux_base(0xfe21_6020), None);
}

#[test]
fn baud_divisor_matches_the_firmware_values() {
    // enable_uart=1 with core_freq 250 MHz: 115200 baud is register 270 (115,314 baud).
    assert_eq!(baud_divisor(250_000_000, 115_200), Some(270));
    // core_freq_min=500: the same rate needs 542.
    assert_eq!(baud_divisor(500_000_000, 115_200), Some(542));
    assert_eq!(baud_divisor(500_000_000, 0), None);
    // 16-bit register: 300 baud from 500 MHz would need 208,332.
    assert_eq!(baud_divisor(500_000_000, 300), None);
    // A clock slower than 8 * baud cannot make the rate at all.
    assert_eq!(baud_divisor(100, 115_200), None);
}

/// An AUX block in ordinary memory, 16-byte-aligned like the real one.
#[repr(C, align(4096))]
struct FakeAux([u32; 32]);

impl FakeAux {
    fn reg(&self, off: usize) -> u32 {
        // SAFETY: `off` is a 4-byte-aligned offset inside the array; volatile because the
        // driver wrote it through a different pointer.
        unsafe { core::ptr::read_volatile(&self.0[off / 4]) }
    }
}

#[test]
fn init_enables_the_uart_8_bit_and_putc_writes_io() {
    let mut aux = FakeAux([0; 32]);
    aux.0[0x04 / 4] = 0b100; // SPI2 already enabled by someone: must stay enabled.
    aux.0[0x54 / 4] = 0x60; // LSR: transmitter empty and idle.
    aux.0[0x60 / 4] = 0; // CNTL: off.
    let base = aux.0.as_mut_ptr() as usize;
    // SAFETY: `aux` outlives `uart` (both end with this test) and nothing else touches it.
    let uart = unsafe { MiniUart::with_aux(base) };
    uart.init(Some(250_000_000), 115_200);
    assert_eq!(aux.reg(0x04), 0b101, "AUX_ENABLES: mini UART on, SPI2 kept");
    assert_eq!(aux.reg(0x4c) & 0b11, 0b11, "8-bit mode");
    assert_eq!(aux.reg(0x44), 0, "no interrupts");
    assert_eq!(aux.reg(0x60), 0b11, "transmitter and receiver enabled");
    assert_eq!(aux.reg(0x68), 270);
    uart.putc(b'Z');
    assert_eq!(aux.reg(0x40), u32::from(b'Z'));
}

#[test]
fn try_getc_reads_io_only_when_data_is_ready() {
    let mut aux = FakeAux([0; 32]);
    aux.0[0x40 / 4] = 0x1_41; // IO: 'A' (the bits above the byte are not data)
    let base = aux.0.as_mut_ptr() as usize;
    // SAFETY: the UART window starts at +0x40 of `aux`, which outlives `uart`.
    let uart = unsafe { MiniUart::new(base + UART_OFFSET as usize) };
    assert_eq!(uart.try_getc(), None, "LSR.DATA_READY clear: nothing");
    // SAFETY: LSR is a 4-byte-aligned word inside `aux`, written through the same pointer
    // the driver uses, the way the hardware would set it.
    unsafe { ((base + 0x54) as *mut u32).write_volatile(0x61) };
    assert_eq!(uart.try_getc(), Some(b'A'));
}

#[test]
fn init_without_a_clock_keeps_the_firmware_baud() {
    let mut aux = FakeAux([0; 32]);
    aux.0[0x54 / 4] = 0x60;
    aux.0[0x68 / 4] = 541;
    let base = aux.0.as_mut_ptr() as usize;
    // SAFETY: the UART window starts at +0x40 of `aux`, which outlives `uart`.
    let uart = unsafe { MiniUart::new(base + UART_OFFSET as usize) };
    uart.init(None, 115_200);
    assert_eq!(aux.reg(0x68), 541);
    assert_eq!(
        aux.reg(0x04),
        0,
        "AUX_ENABLES is not touched without the AUX block"
    );
    assert_eq!(aux.reg(0x60), 0b11);
}
