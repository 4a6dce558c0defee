use super::super::*;
use super::gic_spi;
use crate::platform::fdt_front::tests::VIRT_GICV2;

const BAD_DEVICES: &[u8] = include_bytes!("../../../../tests/data/virt-bad-devices.dtb");

#[test]
fn qemu_virt_has_32_virtio_mmio_slots_from_the_top_spi() {
    let m = parse(VIRT_GICV2).unwrap();
    assert_eq!(m.virtio_mmio.len(), 32);
    for (n, s) in m.virtio_mmio.iter().enumerate() {
        let base = 0x0a00_0000 + n as u64 * 0x200;
        assert_eq!(s.reg, Region::new(base, 0x200));
        assert_eq!(s.path, alloc::format!("/virtio_mmio@{base:x}"));
        assert!(s.dma_coherent);
        assert_eq!(
            s.irq,
            Ok(IrqSpec {
                intid: 32 + 16 + n as u32,
                trigger: Trigger::Edge
            })
        );
    }
}

#[test]
fn qemu_virt_pcie_host() {
    let m = parse(VIRT_GICV2).unwrap();
    let [h] = &m.pci_hosts[..] else {
        panic!("{:?}", m.pci_hosts)
    };
    assert_eq!(h.path, "/pcie@10000000");
    assert_eq!(h.ecam, Region::new(0x40_1000_0000, 0x1000_0000));
    assert_eq!(h.bus_range, (0, 255));
    assert!(h.dma_coherent);
    assert_eq!(
        h.windows.as_deref(),
        Some(
            &[
                PciWindow {
                    space: PciSpace::Io,
                    prefetchable: false,
                    pci_base: 0,
                    cpu_base: 0x3eff_0000,
                    size: 0x1_0000
                },
                PciWindow {
                    space: PciSpace::Mem32,
                    prefetchable: false,
                    pci_base: 0x1000_0000,
                    cpu_base: 0x1000_0000,
                    size: 0x2eff_0000
                },
                PciWindow {
                    space: PciSpace::Mem64,
                    prefetchable: false,
                    pci_base: 0x80_0000_0000,
                    cpu_base: 0x80_0000_0000,
                    size: 0x80_0000_0000
                },
            ][..]
        )
    );
    assert_eq!(h.intx_mask, [0x1800, 0, 0, 7]);
    assert_eq!(h.intx.len(), 16);
    // Slot d, pin p (1-4) goes to SPI 3 + (d + p - 1) mod 4, level high.
    for r in &h.intx {
        let slot = (r.child_hi >> 11) & 0x1f;
        let spi = 3 + (slot + r.pin - 1) % 4;
        assert_eq!(
            r.irq,
            Ok(IrqSpec {
                intid: 32 + spi,
                trigger: Trigger::Level
            }),
            "{r:?}"
        );
    }
}

#[test]
fn broken_devices_keep_their_reasons() {
    let m = parse(BAD_DEVICES).unwrap();
    let slot = |base: u64| {
        m.virtio_mmio
            .iter()
            .find(|s| s.reg.base == base)
            .unwrap()
            .clone()
    };
    assert_eq!(slot(0x0a00_0000).irq, Err(IrqError::Missing));
    assert_eq!(slot(0x0a00_0200).irq, Err(IrqError::NotSpi { intid: 21 }));
    let s = slot(0x0a00_0400);
    assert!(!s.dma_coherent);
    assert!(s.irq.is_ok());
    assert_eq!(
        slot(0x0a00_0600).irq,
        Err(IrqError::Polarity {
            intid: 32 + 19,
            flags: 8
        })
    );
    assert_eq!(m.pci_hosts[0].windows, None);
    // The messages a driver logs say what is wrong.
    assert_eq!(
        alloc::format!("{}", IrqError::Missing),
        "no interrupts property"
    );
}

#[test]
fn gic_specifiers() {
    assert_eq!(
        gic_spi([0, 3, 4]),
        Ok(IrqSpec {
            intid: 35,
            trigger: Trigger::Level
        })
    );
    assert_eq!(gic_spi([1, 11, 4]), Err(IrqError::NotSpi { intid: 27 }));
    assert_eq!(
        gic_spi([2, 0, 1]),
        Err(IrqError::BadSpecifier { cells: [2, 0, 1] })
    );
    assert_eq!(
        gic_spi([0, 1000, 1]),
        Err(IrqError::BadSpecifier {
            cells: [0, 1000, 1]
        })
    );
    assert_eq!(
        gic_spi([0, 0, 2]),
        Err(IrqError::Polarity {
            intid: 32,
            flags: 2
        })
    );
}
