use super::*;
use crate::platform::devicetree::{Trigger, parse};
use crate::platform::fdt_front::tests::VIRT_GICV2;

fn window(space: PciSpace, base: u64, size: u64) -> PciWindow {
    PciWindow {
        space,
        prefetchable: false,
        pci_base: base,
        cpu_base: base + 0x1000_0000_0000,
        size,
    }
}

#[test]
fn ecam_offsets() {
    assert_eq!(ecam_offset(0, 0, 0, 0), 0);
    assert_eq!(ecam_offset(0, 0, 2, 0), 2 << 15);
    assert_eq!(ecam_offset(0, 1, 31, 7), (1 << 20) | (31 << 15) | (7 << 12));
    assert_eq!(
        ecam_offset(16, 17, 0, 0),
        1 << 20,
        "relative to the first bus"
    );
}

#[test]
fn bars_are_placed_aligned_to_their_size() {
    let mut w = WindowAlloc::new(window(PciSpace::Mem64, 0x80_0000_0000, 1 << 20));
    assert_eq!(w.alloc(0x1000), Ok((0x80_0000_0000, 0x1080_0000_0000)));
    // The next 16 KiB BAR skips to a 16 KiB boundary.
    assert_eq!(w.alloc(0x4000), Ok((0x80_0000_4000, 0x1080_0000_4000)));
    assert_eq!(w.used(), 0x8000);
    assert_eq!(w.alloc(0x3000), Err(BarError::BadSize { size: 0x3000 }));
}

#[test]
fn a_bar_larger_than_its_window_is_refused() {
    let mut w = WindowAlloc::new(window(PciSpace::Mem32, 0x1000_0000, 0x10_0000));
    assert_eq!(
        w.alloc(0x20_0000),
        Err(BarError::TooLarge {
            size: 0x20_0000,
            window: 0x10_0000
        })
    );
    assert_eq!(
        alloc::format!("{}", w.alloc(1 << 30).unwrap_err()),
        "a BAR of 0x40000000 bytes is larger than its window (0x100000 bytes)"
    );
    // Room runs out: refused, and what was placed stays placed.
    assert_eq!(w.alloc(0x8_0000).unwrap().0, 0x1000_0000);
    assert_eq!(w.alloc(0x8_0000).unwrap().0, 0x1008_0000);
    assert_eq!(
        w.alloc(0x1000),
        Err(BarError::Exhausted {
            size: 0x1000,
            left: 0
        })
    );
}

#[test]
fn sixty_four_bit_bars_prefer_the_high_window() {
    let ws = [
        WindowAlloc::new(window(PciSpace::Io, 0, 0x1_0000)),
        WindowAlloc::new(window(PciSpace::Mem32, 0x1000_0000, 0x1000_0000)),
        WindowAlloc::new(window(PciSpace::Mem64, 0x80_0000_0000, 1 << 39)),
    ];
    assert_eq!(window_for(&ws, true), Ok(2));
    assert_eq!(window_for(&ws, false), Ok(1));
    assert_eq!(window_for(&ws[..2], true), Ok(1));
    assert_eq!(
        window_for(&ws[..1], false),
        Err(BarError::NoWindow {
            space: PciSpace::Mem32
        })
    );
}

#[test]
fn intx_follows_qemu_virts_interrupt_map() {
    let m = parse(VIRT_GICV2).unwrap();
    let h = &m.pci_hosts[0];
    for dev in 0..8u8 {
        for pin in 1..=4u8 {
            let spi = 3 + (u32::from(dev) + u32::from(pin) - 1) % 4;
            assert_eq!(
                intx_route(&h.intx, h.intx_mask, 0, dev, 0, pin),
                Ok(IrqSpec {
                    intid: 32 + spi,
                    trigger: Trigger::Level
                })
            );
        }
    }
    assert_eq!(
        intx_route(&h.intx, h.intx_mask, 0, 1, 0, 0),
        Err(IntxError::NoPin)
    );
    assert_eq!(
        intx_route(&[], h.intx_mask, 0, 1, 0, 2),
        Err(IntxError::NotMapped { pin: 2 })
    );
    assert_eq!(
        alloc::format!("{}", IntxError::NotMapped { pin: 2 }),
        "the bridge's interrupt-map has no entry for its pin INTB"
    );
}
