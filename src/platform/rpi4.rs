//! The Raspberry Pi 4 Model B described in code, for loaders that pass no device tree.
//!
//! The Pi's firmware always passes a DTB to a 64-bit kernel when it finds one on the card, but
//! QEMU's raspi4b without `-dtb` (and some chain-loaders) leave x0 pointing at an ATAG list at
//! 0x100 instead. This is what the BCM2711 and the Pi 4's shipped `bcm2711-rpi-4-b.dtb` say, with
//! the `/soc` bus addresses already translated (0x7e... → 0xfe..., 0x40000000 → 0xff800000):
//!
//! - RAM 0..0x3c000000: the low 960 MiB below the VideoCore's carve-out, which is what QEMU gives
//!   with `-m 2G` and what every Pi 4 has. Real 4 and 8 GiB boards have more, but there the
//!   firmware passes a DTB. It also fits in the first GiB, which the early linear window maps.
//! - the first page reserved: the firmware's spin-table stub and release mailboxes live there.
//! - console: the mini UART at 0xfe215040 (`serial1`, GPIO 14/15), as the DTB's stdout-path says.
//! - GIC-400 (GICv2): distributor 0xff841000, CPU interface 0xff842000.
//! - generic timer: virtual PPI 11 (INTID 27), physical PPI 14 (INTID 30).
//! - CPUs 0-3 (MPIDR Aff0 = 0..3), spin-table, release addresses 0xd8, 0xe0, 0xe8, 0xf0.
//! - the VideoCore mailbox at 0xfe00b880, the VideoCore seeing the low GiB of RAM at bus address
//!   0xc0000000 (`/soc`'s `dma-ranges`).
//! - the command line: the ATAG list's `ATAG_CMDLINE` if the loader left one, else empty.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::devicetree::{
    Console, Cpu, EnableMethod, Gic, GicVersion, Machine, Mailbox, Timer, UartKind,
};
use crate::mm::region::Region;

/// How the banner names this description.
pub const NAME: &str = "Raspberry Pi 4";

/// First tag of every ATAG list.
const ATAG_CORE: u32 = 0x5441_0001;
const ATAG_CMDLINE: u32 = 0x5441_0009;
const ATAG_NONE: u32 = 0;

/// The built-in description; `loader_data` is what x0 points at (possibly empty), searched for an
/// ATAG command line.
pub fn machine(loader_data: &[u8]) -> Machine {
    let cpus = [0xd8, 0xe0, 0xe8, 0xf0]
        .into_iter()
        .enumerate()
        .map(|(i, release_addr)| Cpu {
            mpidr: i as u64,
            enable_method: EnableMethod::SpinTable { release_addr },
        })
        .collect();
    Machine {
        model: "Raspberry Pi 4 Model B (built-in description)".to_owned(),
        compatible: vec![
            "raspberrypi,4-model-b".to_owned(),
            "brcm,bcm2711".to_owned(),
        ],
        ram: vec![Region::new(0, 0x3c00_0000)],
        reserved: vec![Region::new(0, 0x1000)],
        no_map: Vec::new(),
        read_only: Vec::new(),
        console: Some(Console {
            path: "/soc/serial@7e215040".to_owned(),
            kind: UartKind::Bcm2835Aux,
            base: 0xfe21_5040,
            size: 0x40,
            options: Some("115200n8".to_owned()),
            // The mini UART runs from the VPU core clock, which the firmware may scale: keep
            // the rate the firmware programmed (`enable_uart=1`).
            clock_hz: None,
        }),
        gic: Some(Gic {
            version: GicVersion::V2,
            dist: Region::new(0xff84_1000, 0x1000),
            cpu_or_redist: Region::new(0xff84_2000, 0x2000),
        }),
        timer: Some(Timer {
            virt_irq: Some(27),
            phys_irq: Some(30),
            frequency: None,
        }),
        psci: None,
        cpus,
        bootargs: atag_cmdline(loader_data).unwrap_or_default(),
        virtio_mmio: Vec::new(),
        pci_hosts: Vec::new(),
        mailbox: Some(Mailbox {
            path: "/soc/mailbox@7e00b880".to_owned(),
            reg: Region::new(0xfe00_b880, 0x40),
            dma: Some((0xc000_0000, 0, 0x4000_0000)),
        }),
        notes: Vec::new(),
    }
}

/// One line for the boot log: what the kernel assumes without a device tree.
pub fn summary() -> &'static str {
    "RAM 0-0x3c000000, console = the mini UART at 0xfe215040 (GPIO 14/15, 115200 8N1), \
     GIC-400 at 0xff841000, 4 CPUs by spin-table"
}

/// The command line of an ATAG list (the 32-bit Arm boot protocol QEMU and the Pi firmware use
/// when they have no device tree): `None` when `data` is not an ATAG list or has no
/// `ATAG_CMDLINE`. Each tag is `{ size in 32-bit words including this header, tag }`, little-endian,
/// and the list starts with `ATAG_CORE` and ends with `ATAG_NONE`.
pub fn atag_cmdline(data: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<u32> {
        let b = data.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if word(4)? != ATAG_CORE {
        return None;
    }
    let mut at = 0usize;
    loop {
        let words = word(at)? as usize;
        let tag = word(at + 4)?;
        if words < 2 || tag == ATAG_NONE {
            return None;
        }
        let end = at.checked_add(words.checked_mul(4)?)?;
        if tag == ATAG_CMDLINE {
            let body = data.get(at + 8..end)?;
            let len = body.iter().position(|&b| b == 0).unwrap_or(body.len());
            return Some(String::from_utf8_lossy(&body[..len]).trim().to_owned());
        }
        at = end;
    }
}

#[cfg(test)]
mod tests;
