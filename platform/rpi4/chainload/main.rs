//! The Raspberry Pi 4 serial chainloader: `kernel8.img` on a `just sdcard --chainload` card.
//!
//! The firmware loads it as it would load initmm (an arm64 Image at 0x200000, entered at EL2 with
//! the MMU off and x0 = the device tree); it then waits on the console UART (the mini UART on
//! GPIO 14/15) for a kernel from `just chainboot`, checks its size and CRC-32, writes it where
//! the arm64 boot protocol wants it (a 2 MiB-aligned base + the header's text_offset, clear of
//! this program, the device tree and reserved memory), and jumps to it with the firmware's x0.
//! The other three cores stay where the firmware left them, in the spin table (the loader never
//! touches the page they poll): the kernel starts them as if the firmware had loaded it.
//! Protocol and placement: `protocol.rs`.
//!
//! A separate small program, not the kernel: it has its own entry code, linker script
//! (chainload.ld, linked at its physical load address so it needs no MMU) and panic handler, and
//! borrows only the kernel's Image header reader and mini UART driver (by path, not a copy).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
// On the host only the unit tests exist: what just the board code uses is unused there.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

#[allow(dead_code)]
#[path = "../../../src/arch/aarch64/image.rs"]
mod image;
#[allow(dead_code)]
#[path = "../../../src/drivers/mini_uart.rs"]
mod mini_uart;
mod protocol;

/// On the host this program is only its unit tests (`just test-host`).
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod board {
    use core::fmt::Write;

    use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, Readable};

    use crate::mini_uart::MiniUart;
    use crate::protocol::{self, ENQ, MAGIC, OFFER_LEN, Plan, Range, Refusal};

    /// The BCM2711's AUX block (AUX_ENABLES, then the mini UART at +0x40), at its ARM physical
    /// address in the firmware's default low-peripheral mode; `serial1` in the Pi 4's DTB.
    const AUX_BASE: usize = 0xfe21_5000;
    /// RAM when x0 holds no device tree (QEMU without -dtb passes ATAGs): the low 960 MiB, as
    /// the kernel's built-in Pi 4 description says.
    const FALLBACK_RAM: Range = Range::new(0, 0x3c00_0000);
    /// The firmware's spin-table page: the parked cores poll their release addresses in it.
    const SPIN_TABLE: Range = Range::new(0, 0x1000);
    /// Ranges kept clear of the kernel: the spin table, the loader, the DTB and up to nine
    /// reservations from it (the Pi 4's names one; a DTB with more is refused at start).
    const MAX_KEEP: usize = 12;

    core::arch::global_asm!(
        r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       chainload_entry         /* code0 */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset: at a 2 MiB-aligned base + 0 (0x200000) */
    .quad   __image_size            /* image_size, .bss and stack included */
    .quad   {flags}                 /* little-endian, 4 KiB pages, anywhere */
    .quad   0, 0, 0
    .long   {magic}
    .long   0

    .section .text.boot, "ax"
chainload_entry:
    mov     x19, x0                 /* the firmware's x0: the device tree (or ATAGs) */

    /* Loaded below the link address (older firmware: 0x80000)? Copy up, continue there. */
    adr     x0, _start
    ldr     x1, =_start
    cmp     x0, x1
    b.eq    2f
    ldr     x2, =__data_end
    sub     x2, x2, x1
    mov     x3, x2                  /* from the top down: the copy may overlap upwards */
1:  sub     x3, x3, #8
    ldr     x4, [x0, x3]
    str     x4, [x1, x3]
    cbnz    x3, 1b
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    ldr     x0, =2f
    br      x0

2:  /* Rust code may use FP/SIMD registers: no traps for them at this EL. */
    mrs     x0, CurrentEL
    ubfx    x0, x0, #2, #2
    cmp     x0, #2
    b.ne    3f
    mrs     x1, cptr_el2
    bic     x1, x1, #(1 << 10)      /* CPTR_EL2.TFP */
    msr     cptr_el2, x1
    b       4f
3:  mov     x1, #(3 << 20)          /* CPACR_EL1.FPEN */
    msr     cpacr_el1, x1
4:  isb

    ldr     x0, =__bss_start
    ldr     x1, =__bss_end
5:  cmp     x0, x1
    b.hs    6f
    stp     xzr, xzr, [x0], #16
    b       5b
6:  ldr     x0, =__stack_top
    mov     sp, x0
    mov     x0, x19
    bl      chainload_main          /* returns the kernel's entry (physical) */

    /* The boot protocol: x0 = device tree, x1-x3 = 0, MMU off; no stale instructions. */
    mov     x4, x0
    mov     x0, x19
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    br      x4
    .ltorg
"#,
        flags = const crate::image::FLAGS,
        magic = const crate::image::MAGIC,
    );

    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }

    struct Console(MiniUart);

    impl Write for Console {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for b in s.bytes() {
                if b == b'\n' {
                    self.0.putc(b'\r');
                }
                self.0.putc(b);
            }
            Ok(())
        }
    }

    fn ticks() -> u64 {
        CNTPCT_EL0.get()
    }

    /// The next byte, or `None` once the line has been quiet for `seconds`.
    fn read_byte(uart: &MiniUart, seconds: u64) -> Option<u8> {
        let deadline = ticks() + seconds * CNTFRQ_EL0.get();
        loop {
            if let Some(b) = uart.try_getc() {
                return Some(b);
            }
            if ticks() > deadline {
                return None;
            }
        }
    }

    /// What the loader knows of the machine: RAM, and what it must not overwrite.
    struct Machine {
        ram: Range,
        keep: [Range; MAX_KEEP],
        kept: usize,
        dtb: Option<Range>,
        x0: u64,
        /// Reservations that did not fit in `keep`.
        dropped: usize,
    }

    impl Machine {
        fn keep(&mut self, r: Range) {
            if r.size == 0 {
                return;
            }
            if self.kept == MAX_KEEP {
                self.dropped += 1;
                return;
            }
            self.keep[self.kept] = r;
            self.kept += 1;
        }

        /// From the firmware's x0: a device tree's /memory (the region holding this program)
        /// and its reservations, or the fallback when x0 is not a device tree.
        fn discover(x0: u64, me: Range) -> Self {
            let mut m = Machine {
                ram: FALLBACK_RAM,
                keep: [Range::new(0, 0); MAX_KEEP],
                kept: 0,
                dtb: None,
                x0,
                dropped: 0,
            };
            m.keep(SPIN_TABLE);
            m.keep(me);
            if x0 == 0 || !x0.is_multiple_of(8) {
                return m;
            }
            // SAFETY: x0 is the firmware's pointer to its device tree, in RAM and 8-byte aligned;
            // `from_ptr` reads the header's magic and total size before anything else and
            // refuses a blob without the FDT magic (an ATAG list, for one). The blob is only read.
            let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(x0 as *const u8) }) else {
                return m;
            };
            let dtb = Range::new(x0, fdt.total_size() as u64);
            m.dtb = Some(dtb);
            m.keep(dtb);
            for r in fdt.memory_reservations() {
                m.keep(Range::new(r.address() as u64, r.size() as u64));
            }
            let memory = fdt
                .find_node("/")
                .into_iter()
                .flat_map(|root| root.children())
                .filter(|n| n.name == "memory" || n.name.starts_with("memory@"))
                .filter_map(|n| n.reg())
                .flatten()
                .map(|r| Range::new(r.starting_address as u64, r.size.unwrap_or(0) as u64))
                .find(|r| r.base <= me.base && me.end() <= r.end());
            if let Some(ram) = memory {
                m.ram = ram;
            }
            m
        }
    }

    /// One offer and, if it is accepted, one transfer. `Ok` is the kernel's entry address.
    fn receive(con: &mut Console, m: &Machine) -> Result<u64, Refusal> {
        let mut offer = [0u8; OFFER_LEN];
        offer[..4].copy_from_slice(&MAGIC);
        for (i, b) in offer[4..].iter_mut().enumerate() {
            *b = read_byte(&con.0, protocol::STALL_SECONDS).ok_or(Refusal::Stalled {
                got: i as u32,
                size: (OFFER_LEN - 4) as u32,
            })?;
        }
        let plan: Plan = protocol::check_offer(&offer, m.ram, &m.keep[..m.kept])?;
        let _ = writeln!(
            con,
            "chainload: receiving {} bytes (image_size {}) for {:#x}",
            plan.size, plan.image_size, plan.load
        );
        let dst = plan.load as *mut u8;
        let mut crc = protocol::CRC_INIT;
        let header = &offer[12..];
        for i in 0..plan.size as usize {
            let b = match header.get(i) {
                Some(&b) => b,
                None => read_byte(&con.0, protocol::STALL_SECONDS).ok_or(Refusal::Stalled {
                    got: i as u32,
                    size: plan.size,
                })?,
            };
            crc = protocol::crc32_update(crc, b);
            // SAFETY: `check_offer` placed `[load, load + image_size)` inside RAM and clear of
            // this program, its stack, the device tree, the spin-table page and every reserved
            // range, and `i < size <= image_size`; nothing else runs on the machine.
            unsafe { dst.add(i).write_volatile(b) };
        }
        let computed = protocol::crc32_finish(crc);
        if computed != plan.crc {
            return Err(Refusal::Checksum {
                computed,
                sent: plan.crc,
            });
        }
        let _ = writeln!(
            con,
            "chainload: loaded {} bytes at {:#x}, checksum {computed:#010x} ok; starting the kernel",
            plan.size, plan.load
        );
        Ok(plan.load)
    }

    fn say_ready(con: &mut Console, m: &Machine) {
        let _ = write!(
            con,
            "chainload: ready for a kernel (just chainboot); RAM {:#x}-{:#x}, ",
            m.ram.base,
            m.ram.end()
        );
        let _ = match m.dtb {
            Some(d) => writeln!(con, "device tree at {:#x} ({} bytes)", d.base, d.size),
            None => writeln!(con, "no device tree (x0 = {:#x}), RAM assumed", m.x0),
        };
    }

    #[unsafe(no_mangle)]
    extern "C" fn chainload_main(x0: u64) -> u64 {
        // SAFETY: AUX_BASE is the BCM2711's AUX block, device memory (the MMU is off), driven by
        // nothing else while the loader runs; the SPI controllers sharing it are unused.
        let uart = unsafe { MiniUart::with_aux(AUX_BASE) };
        // Keep the firmware's baud rate (config.txt's enable_uart=1: 115200).
        uart.init(None, 115_200);
        let mut con = Console(uart);
        let me = Range::new(
            &raw const __image_start as u64,
            &raw const __image_end as u64 - &raw const __image_start as u64,
        );
        let m = Machine::discover(x0, me);
        let _ = writeln!(
            con,
            "chainload: initmm serial chainloader at {:#x}-{:#x}",
            me.base,
            me.end()
        );
        if m.dropped != 0 {
            // Loading anywhere could overwrite what the firmware reserved: refuse to start.
            let _ = writeln!(
                con,
                "chainload: the device tree reserves more than {MAX_KEEP} ranges; stopping"
            );
            loop {
                aarch64_cpu::asm::wfe();
            }
        }
        say_ready(&mut con, &m);
        let mut window = [0u8; 4];
        loop {
            let Some(b) = con.0.try_getc() else {
                continue;
            };
            if b == ENQ {
                say_ready(&mut con, &m);
                continue;
            }
            window = [window[1], window[2], window[3], b];
            if window != MAGIC {
                continue;
            }
            window = [0; 4];
            match receive(&mut con, &m) {
                Ok(entry) => return entry,
                Err(why) => {
                    let _ = writeln!(con, "chainload: refused: {why}");
                    // Let the rest of what the host sent go by before listening again.
                    while read_byte(&con.0, 1).is_some() {}
                    say_ready(&mut con, &m);
                }
            }
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        // SAFETY: as in `chainload_main`; the console may be mid-line, which costs nothing.
        let uart = unsafe { MiniUart::with_aux(AUX_BASE) };
        let _ = Console(uart).write_str("\nchainload: internal error (panic); reset the board\n");
        loop {
            aarch64_cpu::asm::wfe();
        }
    }
}
