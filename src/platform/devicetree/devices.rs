//! The devices a driver probes, read out of the index: `virtio,mmio` transports and generic
//! PCIe host bridges (`pci-host-ecam-generic`), with their interrupts as GIC INTIDs.
//!
//! What a driver cannot use is recorded as the reason it cannot (a missing `interrupts`, a bridge
//! without `ranges`), not dropped: the driver logs it by name when it probes, and the kernel
//! goes on without that device.

use alloc::format;
use alloc::vec::Vec;

use super::index::{Tree, be_cells, u32_of};
use super::{
    DtError, IntxRoute, IrqError, IrqSpec, Mailbox, PciHost, PciSpace, PciWindow, Trigger,
    VirtioMmio,
};

/// The GIC's SPIs start at INTID 32; PPIs at 16.
const SPI_BASE: u32 = 32;
const PPI_BASE: u32 = 16;

/// Decode one 3-cell GIC interrupt specifier (type, number, flags) into an SPI.
pub(super) fn gic_spi(spec: [u32; 3]) -> Result<IrqSpec, IrqError> {
    let [kind, num, flags] = spec;
    let intid = match kind {
        0 => num.checked_add(SPI_BASE).filter(|&i| i < 1020),
        1 => {
            return Err(IrqError::NotSpi {
                intid: num + PPI_BASE,
            });
        }
        _ => None,
    }
    .ok_or(IrqError::BadSpecifier { cells: spec })?;
    // Flags bits 3:0: 1 rising edge, 2 falling edge, 4 level high, 8 level low. A GIC takes
    // rising edges and high levels only.
    let trigger = match flags & 0xf {
        1 => Trigger::Edge,
        4 => Trigger::Level,
        other => {
            return Err(IrqError::Polarity {
                intid,
                flags: other,
            });
        }
    };
    Ok(IrqSpec { intid, trigger })
}

impl Tree<'_> {
    /// The interrupt controller `idx`'s interrupts go to, when it is a GIC with 3-cell
    /// specifiers; the reason otherwise.
    fn gic_parent(&self, idx: usize) -> Result<usize, IrqError> {
        let parent = self.interrupt_parent(idx).ok_or(IrqError::NoParent)?;
        if self.prop(parent, "interrupt-controller").is_none()
            || self.u32_prop(parent, "#interrupt-cells") != Some(3)
        {
            return Err(IrqError::ParentNotGic {
                parent: self.path(parent),
            });
        }
        Ok(parent)
    }

    /// The first interrupt of `idx`, as an SPI.
    fn first_spi(&self, idx: usize) -> Result<IrqSpec, IrqError> {
        let v = self.prop(idx, "interrupts").ok_or(IrqError::Missing)?;
        self.gic_parent(idx)?;
        let c = v.get(..12).ok_or(IrqError::BadLength { len: v.len() })?;
        let cell = |i: usize| u32_of(&c[i * 4..i * 4 + 4]).unwrap_or(0);
        gic_spi([cell(0), cell(1), cell(2)])
    }

    /// Is `idx` DMA-coherent: `dma-coherent` on it or, as Linux reads it, on an ancestor?
    fn dma_coherent(&self, idx: usize) -> bool {
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if self.prop(i, "dma-coherent").is_some() {
                return true;
            }
            if self.prop(i, "dma-noncoherent").is_some() {
                return false;
            }
            cur = self.parent(i);
        }
        false
    }

    /// Every available `virtio,mmio` node, in device-tree order.
    pub(super) fn virtio_mmio(&mut self) -> Result<Vec<VirtioMmio>, DtError> {
        let nodes: Vec<usize> = self
            .all_nodes()
            .filter(|&i| self.is_compatible(i, &["virtio,mmio"]) && self.available(i))
            .collect();
        let mut out = Vec::with_capacity(nodes.len());
        for idx in nodes {
            let Some(&reg) = self.mmio(idx)?.as_deref().and_then(|r| r.first()) else {
                continue; // noted by `mmio`
            };
            out.push(VirtioMmio {
                path: self.path(idx),
                reg,
                irq: self.first_spi(idx),
                dma_coherent: self.dma_coherent(idx),
            });
        }
        Ok(out)
    }

    /// Every available `pci-host-ecam-generic` bridge.
    pub(super) fn pci_hosts(&mut self) -> Result<Vec<PciHost>, DtError> {
        let nodes: Vec<usize> = self
            .all_nodes()
            .filter(|&i| self.is_compatible(i, &["pci-host-ecam-generic"]) && self.available(i))
            .collect();
        let mut out = Vec::with_capacity(nodes.len());
        for idx in nodes {
            let Some(&ecam) = self.mmio(idx)?.as_deref().and_then(|r| r.first()) else {
                continue;
            };
            let bus_range = match self.prop(idx, "bus-range") {
                Some(v) if v.len() == 8 => {
                    let (a, b) = (be_cells(&v[..4]), be_cells(&v[4..]));
                    (a.min(255) as u8, b.min(255) as u8)
                }
                Some(v) => {
                    return Err(DtError::BadProperty {
                        path: self.path(idx),
                        property: "bus-range",
                        len: v.len(),
                    });
                }
                None => (0, 255),
            };
            let windows = self.pci_ranges(idx)?;
            let (intx, intx_mask) = self.interrupt_map(idx)?;
            out.push(PciHost {
                path: self.path(idx),
                ecam,
                bus_range,
                windows,
                intx,
                intx_mask,
                dma_coherent: self.dma_coherent(idx),
            });
        }
        Ok(out)
    }

    /// The first available `brcm,bcm2835-mbox`, with its bus's `dma-ranges`.
    pub(super) fn mailbox(&mut self) -> Result<Option<Mailbox>, DtError> {
        let Some(idx) = self
            .all_nodes()
            .find(|&i| self.is_compatible(i, &["brcm,bcm2835-mbox"]) && self.available(i))
        else {
            return Ok(None);
        };
        let Some(&reg) = self.mmio(idx)?.as_deref().and_then(|r| r.first()) else {
            return Ok(None);
        };
        let dma = match self.parent(idx) {
            Some(bus) if self.prop(bus, "dma-ranges").is_some_and(|v| !v.is_empty()) => {
                let (cac, csc) = self.child_cells(bus)?;
                let (pac, _) = self.child_cells(self.parent(bus).unwrap_or(0))?;
                self.tuples(bus, "dma-ranges", [cac, pac, csc])?
                    .and_then(|t| t.first().map(|&[b, c, n]| (b, c, n)))
            }
            _ => None,
        };
        Ok(Some(Mailbox {
            path: self.path(idx),
            reg,
            dma,
        }))
    }

    /// A PCI bridge's `ranges`: (phys.hi phys.mid phys.lo, parent address, 2-cell size)
    /// triples. `None` when the property is absent (the driver refuses such a bridge).
    fn pci_ranges(&mut self, idx: usize) -> Result<Option<Vec<PciWindow>>, DtError> {
        let Some(v) = self.prop(idx, "ranges") else {
            return Ok(None);
        };
        let grand = self.parent(idx).unwrap_or(0);
        let (pac, _) = self.child_cells(grand)?;
        let sc = self.cell_count(idx, "#size-cells", 2)? as usize;
        let width = (3 + pac + sc) * 4;
        if self.cell_count(idx, "#address-cells", 3)? != 3 || sc > 2 || v.len() % width != 0 {
            return Err(DtError::BadProperty {
                path: self.path(idx),
                property: "ranges",
                len: v.len(),
            });
        }
        let mut out = Vec::new();
        for t in v.chunks_exact(width) {
            let hi = u32_of(&t[..4]).unwrap_or(0);
            let pci_base = be_cells(&t[4..12]);
            let cpu_base = be_cells(&t[12..12 + pac * 4]);
            let size = be_cells(&t[12 + pac * 4..]);
            let space = match (hi >> 24) & 3 {
                1 => PciSpace::Io,
                2 => PciSpace::Mem32,
                3 => PciSpace::Mem64,
                _ => {
                    self.note(format!(
                        "{}: ranges entry {hi:#x} is configuration space: ignored",
                        self.path(idx)
                    ));
                    continue;
                }
            };
            if size == 0 || cpu_base.checked_add(size).is_none() {
                self.note(format!(
                    "{}: ranges entry at {cpu_base:#x} of size {size:#x} is unusable: ignored",
                    self.path(idx)
                ));
                continue;
            }
            out.push(PciWindow {
                space,
                prefetchable: hi & (1 << 30) != 0,
                pci_base,
                cpu_base,
                size,
            });
        }
        Ok(Some(out))
    }

    /// A PCI bridge's `interrupt-map` (child address, pin → GIC interrupt) and its mask.
    fn interrupt_map(&mut self, idx: usize) -> Result<(Vec<IntxRoute>, [u32; 4]), DtError> {
        let bad = |t: &Self, property: &'static str, len: usize| DtError::BadProperty {
            path: t.path(idx),
            property,
            len,
        };
        let mask = match self.prop(idx, "interrupt-map-mask") {
            None => [u32::MAX; 4],
            Some(v) if v.len() == 16 => {
                let c = |i: usize| u32_of(&v[i * 4..i * 4 + 4]).unwrap_or(0);
                [c(0), c(1), c(2), c(3)]
            }
            Some(v) => return Err(bad(self, "interrupt-map-mask", v.len())),
        };
        let Some(v) = self.prop(idx, "interrupt-map") else {
            return Ok((Vec::new(), mask));
        };
        let cells: Vec<u32> = v.chunks_exact(4).filter_map(u32_of).collect();
        if v.len() % 4 != 0 {
            return Err(bad(self, "interrupt-map", v.len()));
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < cells.len() {
            // Child unit address (3 cells) and pin (1), the parent's phandle, the parent's unit
            // address (its #address-cells) and its specifier (its #interrupt-cells).
            let Some(&phandle) = cells.get(i + 4) else {
                return Err(bad(self, "interrupt-map", v.len()));
            };
            let parent = self.by_phandle(phandle);
            let (pac, pic) = match parent {
                Some(p) => (
                    self.cell_count(p, "#address-cells", 0)? as usize,
                    self.cell_count(p, "#interrupt-cells", 0)? as usize,
                ),
                None => return Err(bad(self, "interrupt-map", v.len())),
            };
            let spec_at = i + 5 + pac;
            let Some(spec) = cells.get(spec_at..spec_at + pic) else {
                return Err(bad(self, "interrupt-map", v.len()));
            };
            let irq = match spec {
                &[a, b, c] => gic_spi([a, b, c]),
                _ => Err(IrqError::ParentNotGic {
                    parent: parent.map(|p| self.path(p)).unwrap_or_default(),
                }),
            };
            out.push(IntxRoute {
                child_hi: cells[i],
                pin: cells[i + 3],
                irq,
            });
            i = spec_at + pic;
        }
        Ok((out, mask))
    }
}

#[cfg(test)]
mod tests;
