//! Each part of a [`Machine`](super::Machine) read out of the index: RAM, reservations (with
//! the words spin-table CPUs are released through), CPUs, the console, the GIC, the timer and
//! PSCI.
//!
//! What is odd is noted and left out; what leaves the tree unusable (no RAM, no CPU, a property
//! that cannot be decoded) is a [`DtError`] naming the node.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::vec::Vec;

use super::index::{ROOT, Tree, be_cells, u32_of};
use super::{
    Console, Cpu, DtError, EnableMethod, Gic, GicVersion, Psci, PsciMethod, Timer, UartKind,
};
use crate::mm::region::Region;

const GICV2_COMPATIBLE: [&str; 3] = ["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a7-gic"];
const GICV3_COMPATIBLE: &str = "arm,gic-v3";

impl Tree<'_> {
    /// Memory nodes are root children (as Linux scans them).
    pub(super) fn ram(&mut self) -> Result<Vec<Region>, DtError> {
        let mut ram = Vec::new();
        let memory_nodes: Vec<usize> = self
            .children(ROOT)
            .filter(|&c| self.first_string_is(c, "device_type", "memory"))
            .collect();
        for idx in memory_nodes {
            if !self.available(idx) {
                self.note(format!("{}: disabled, ignored", self.path(idx)));
                continue;
            }
            for (base, size) in self.reg(idx)?.unwrap_or_default() {
                self.push_region(&mut ram, idx, base, size);
            }
        }
        ram.sort_unstable();
        let mut merged: Vec<Region> = Vec::with_capacity(ram.len());
        for r in ram {
            match merged.last_mut() {
                Some(prev) if prev.last().is_some_and(|l| r.base <= l) => {
                    let new_last = prev
                        .last()
                        .unwrap_or(r.base)
                        .max(r.last().unwrap_or(r.base));
                    self.notes.push(format!(
                        "memory {:#x}+{:#x} overlaps {:#x}+{:#x}: merged",
                        r.base, r.size, prev.base, prev.size
                    ));
                    // new_last >= prev.base, and new_last < u64::MAX (see `push_region`), so the
                    // merged region's end is representable too.
                    prev.size = (new_last - prev.base).saturating_add(1);
                }
                _ => merged.push(r),
            }
        }
        if merged.is_empty() {
            return Err(DtError::NoMemory);
        }
        Ok(merged)
    }

    /// Push `base+size` if non-empty, clamping a range whose end does not fit a `u64` so that
    /// `base + size` cannot overflow in any reader (the banner prints it, `mm` compares it): such
    /// a range ends at `u64::MAX`, without the last byte of the address space, where no RAM is.
    #[inline(never)]
    fn push_region(&mut self, out: &mut Vec<Region>, idx: usize, base: u64, size: u64) {
        let mut r = Region::new(base, size);
        if r.end().is_none() {
            r.size = u64::MAX - base;
            self.note(format!(
                "{}: range {base:#x}+{size:#x} wraps past 2^64; clamped to end at {:#x}",
                self.path(idx),
                u64::MAX
            ));
        }
        if r.size == 0 {
            self.note(format!(
                "{}: empty range at {base:#x} dropped",
                self.path(idx)
            ));
            return;
        }
        out.push(r);
    }

    /// The reserved regions, and those of them marked `no-map`.
    pub(super) fn reserved(
        &mut self,
        memreserve: impl Iterator<Item = (u64, u64)>,
    ) -> Result<(Vec<Region>, Vec<Region>), DtError> {
        let mut out = Vec::new();
        let mut no_map = Vec::new();
        for (base, size) in memreserve {
            self.push_region(&mut out, ROOT, base, size);
        }
        if let Some(rm) = self.resolve_path("/reserved-memory") {
            let kids: Vec<usize> = self.children(rm).collect();
            for idx in kids {
                if !self.available(idx) {
                    self.note(format!("{}: disabled, not reserved", self.path(idx)));
                    continue;
                }
                match self.reg(idx)? {
                    Some(reg) => {
                        let unmapped = self.prop(idx, "no-map").is_some();
                        for (base, size) in reg {
                            let before = out.len();
                            self.push_region(&mut out, idx, base, size);
                            if unmapped && out.len() > before {
                                no_map.push(out[before]);
                            }
                        }
                    }
                    None => self.note(format!(
                        "{}: no reg (dynamically placed pool), not reserved",
                        self.path(idx)
                    )),
                }
            }
        }
        out.sort_unstable();
        no_map.sort_unstable();
        Ok((out, no_map))
    }

    pub(super) fn cpus(&mut self) -> Result<Vec<Cpu>, DtError> {
        let cpus_node = self.resolve_path("/cpus").ok_or(DtError::NoCpus)?;
        let kids: Vec<usize> = self
            .children(cpus_node)
            .filter(|&c| self.first_string_is(c, "device_type", "cpu"))
            .collect();
        let mut out = Vec::new();
        for idx in kids {
            if !self.available(idx) {
                self.note(format!("{}: not available, ignored", self.path(idx)));
                continue;
            }
            let mpidr = match self.reg(idx)? {
                Some(reg) => match reg.first() {
                    Some(&(addr, _)) => addr,
                    None => {
                        return Err(DtError::BadProperty {
                            path: self.path(idx),
                            property: "reg",
                            len: 0,
                        });
                    }
                },
                None => {
                    return Err(DtError::CpuWithoutReg {
                        path: self.path(idx),
                    });
                }
            };
            let enable_method = match self.string(idx, "enable-method").as_deref() {
                None => {
                    self.note(format!(
                        "{}: no enable-method, this CPU cannot be started",
                        self.path(idx)
                    ));
                    EnableMethod::Missing
                }
                Some("psci") => EnableMethod::Psci,
                Some("spin-table") => match self.prop(idx, "cpu-release-addr") {
                    Some(v) if v.len() == 4 || v.len() == 8 => EnableMethod::SpinTable {
                        release_addr: be_cells(v),
                    },
                    _ => {
                        self.note(format!(
                            "{}: spin-table without a valid cpu-release-addr",
                            self.path(idx)
                        ));
                        EnableMethod::Other("spin-table".to_owned())
                    }
                },
                Some(other) => {
                    self.note(format!(
                        "{}: enable-method \"{other}\" is not supported, this CPU cannot be started",
                        self.path(idx)
                    ));
                    EnableMethod::Other(other.to_owned())
                }
            };
            out.push(Cpu {
                mpidr,
                enable_method,
            });
        }
        if out.is_empty() {
            return Err(DtError::NoCpus);
        }
        Ok(out)
    }

    /// The kernel writes each spin-table CPU's entry point to its `cpu-release-addr` through
    /// the linear map, so that address must be an aligned word in RAM that the frame allocator
    /// never hands out. A CPU whose address is not in RAM or misaligned cannot be started
    /// (`Other("spin-table")`, noted); an address in RAM that firmware forgot to reserve is
    /// reserved here (noted), rather than overwritten later in some unrelated allocation.
    pub(super) fn check_release_addrs(
        &mut self,
        ram: &[Region],
        reserved: &mut Vec<Region>,
        cpus: &mut [Cpu],
    ) {
        for c in cpus.iter_mut() {
            let EnableMethod::SpinTable { release_addr: a } = c.enable_method else {
                continue;
            };
            let word = Region::new(a, 8);
            let inside = |r: &Region| r.contains(a) && word.last().is_some_and(|l| r.contains(l));
            if !a.is_multiple_of(8) || !ram.iter().any(inside) {
                self.note(format!(
                    "CPU {:#x}: cpu-release-addr {a:#x} is not an aligned word in RAM, this CPU cannot be started",
                    c.mpidr
                ));
                c.enable_method = EnableMethod::Other("spin-table".to_owned());
            } else if !reserved.iter().any(inside) {
                self.note(format!(
                    "CPU {:#x}: cpu-release-addr {a:#x} is not in a reservation: reserved",
                    c.mpidr
                ));
                reserved.push(word);
            }
        }
        reserved.sort_unstable();
    }

    pub(super) fn console(&mut self, chosen: usize) -> Result<Option<Console>, DtError> {
        let Some(spec) = self
            .string(chosen, "stdout-path")
            .or_else(|| self.string(chosen, "linux,stdout-path"))
        else {
            self.note(format!(
                "{} has no stdout-path: no console (output stays in the early buffer)",
                self.path(chosen)
            ));
            return Ok(None);
        };
        let (name, options) = match spec.split_once(':') {
            Some((n, o)) => (n, (!o.is_empty()).then(|| o.to_owned())),
            None => (spec.as_str(), None),
        };
        let target = if name.starts_with('/') {
            Some(name.to_owned())
        } else {
            self.resolve_path("/aliases")
                .and_then(|a| self.string(a, name))
        };
        let Some(idx) = target.as_deref().and_then(|p| self.resolve_path(p)) else {
            self.note(format!("stdout-path \"{spec}\" does not resolve to a node"));
            return Ok(None);
        };
        let compatible = self.strlist(idx, "compatible");
        let kind = if compatible.iter().any(|c| c == "arm,pl011") {
            UartKind::Pl011
        } else if compatible.iter().any(|c| c == "brcm,bcm2835-aux-uart") {
            UartKind::Bcm2835Aux
        } else {
            UartKind::Unknown(compatible.first().cloned().unwrap_or_default())
        };
        let Some(&first) = self.mmio(idx)?.as_deref().and_then(|r| r.first()) else {
            self.note(format!("console {}: no usable reg", self.path(idx)));
            return Ok(None);
        };
        let clock_hz = self.u32_prop(idx, "clock-frequency").or_else(|| {
            let clk = self.prop(idx, "clocks")?.get(..4).and_then(u32_of)?;
            self.u32_prop(self.by_phandle(clk)?, "clock-frequency")
        });
        Ok(Some(Console {
            path: self.path(idx),
            kind,
            base: first.base,
            size: first.size,
            options,
            clock_hz,
        }))
    }

    fn gic_version(&self, idx: usize) -> Option<GicVersion> {
        if self.is_compatible(idx, &GICV2_COMPATIBLE) {
            Some(GicVersion::V2)
        } else if self.is_compatible(idx, &[GICV3_COMPATIBLE]) {
            Some(GicVersion::V3)
        } else {
            None
        }
    }

    /// The root `interrupt-parent`, or the first GIC by compatible when that is absent or no GIC.
    pub(super) fn gic(&mut self) -> Result<Option<Gic>, DtError> {
        let by_parent = self
            .u32_prop(ROOT, "interrupt-parent")
            .and_then(|ph| self.by_phandle(ph));
        let idx = match by_parent {
            Some(i) if self.gic_version(i).is_some() => Some(i),
            other => {
                if let Some(i) = other {
                    self.note(format!(
                        "root interrupt-parent {} is not a known GIC",
                        self.path(i)
                    ));
                }
                self.all_nodes()
                    .find(|&i| self.gic_version(i).is_some() && self.available(i))
            }
        };
        let Some(idx) = idx else {
            self.note("no GICv2/GICv3 node".to_owned());
            return Ok(None);
        };
        let version = self.gic_version(idx).unwrap_or(GicVersion::V2);
        match self.mmio(idx)?.as_deref() {
            Some([dist, cpu_or_redist, ..]) => Ok(Some(Gic {
                version,
                dist: *dist,
                cpu_or_redist: *cpu_or_redist,
            })),
            _ => {
                self.note(format!("GIC {}: fewer than two reg ranges", self.path(idx)));
                Ok(None)
            }
        }
    }

    /// The interrupt controller `idx`'s `interrupts` refer to: its own or an ancestor's
    /// `interrupt-parent`.
    pub(super) fn interrupt_parent(&self, idx: usize) -> Option<usize> {
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if let Some(ph) = self.u32_prop(i, "interrupt-parent") {
                return self.by_phandle(ph);
            }
            cur = self.parent(i);
        }
        None
    }

    pub(super) fn timer(&mut self) -> Option<Timer> {
        let idx = self.all_nodes().find(|&i| {
            self.is_compatible(i, &["arm,armv8-timer", "arm,armv7-timer"]) && self.available(i)
        })?;
        let frequency = self.u32_prop(idx, "clock-frequency");
        let cells = self
            .interrupt_parent(idx)
            .and_then(|p| self.u32_prop(p, "#interrupt-cells"));
        let mut ppi = |n: usize| -> Option<u32> {
            let v = self.prop(idx, "interrupts")?;
            // (type, number, flags) triples: secure phys, non-secure phys, virt, hyp.
            let t = v.chunks_exact(12).nth(n)?;
            let (ty, num) = (u32_of(t.get(..4)?)?, u32_of(t.get(4..8)?)?);
            if ty != 1 {
                self.notes
                    .push(format!("timer interrupt {n} is not a PPI (type {ty})"));
                return None;
            }
            num.checked_add(16)
        };
        if cells != Some(3) {
            self.notes.push(format!(
                "timer: interrupt parent has #interrupt-cells {cells:?}, expected 3"
            ));
            return Some(Timer {
                virt_irq: None,
                phys_irq: None,
                frequency,
            });
        }
        let phys_irq = ppi(1);
        let virt_irq = ppi(2);
        Some(Timer {
            virt_irq,
            phys_irq,
            frequency,
        })
    }

    pub(super) fn psci(&mut self) -> Option<Psci> {
        let idx = self.all_nodes().find(|&i| {
            self.available(i)
                && self
                    .prop(i, "compatible")
                    .is_some_and(|v| v.split(|&b| b == 0).any(|s| s.starts_with(b"arm,psci")))
        })?;
        match self.string(idx, "method").as_deref() {
            Some("hvc") => Some(Psci {
                method: PsciMethod::Hvc,
            }),
            Some("smc") => Some(Psci {
                method: PsciMethod::Smc,
            }),
            other => {
                self.note(format!("{}: unknown PSCI method {other:?}", self.path(idx)));
                None
            }
        }
    }
}
