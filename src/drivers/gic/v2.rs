//! GICv2: memory-mapped distributor (GICD) and CPU interface (GICC).
//!
//! Groups: where the GIC has no Security Extensions (QEMU virt), every interrupt stays in group 0,
//! which `GICC_CTLR.FIQEn = 0` signals as IRQ and `GICC_IAR` acknowledges directly (group 1 would
//! need the deprecated `AckCtl` or the aliased `GICC_AIAR`). Where it has them (the Pi 4's
//! GIC-400), we run non-secure: the firmware put everything in group 1, our banked view of the
//! group registers ignores writes, and bit 0 of our `GICD_CTLR`/`GICC_CTLR` is the group 1 enable.
//! Either way, "enable" is bit 0 and the group registers are left alone.

use core::sync::atomic::{AtomicU8, Ordering};

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use super::{
    DEFAULT_PRIORITY, FIRST_SPECIAL_INTID, GicError, GicVersion, PRIORITY_MASK_OPEN, PerCpuTable,
    SGI_COUNT, SgirTarget, SpiError, write_each,
};
use crate::arch::aarch64::cpu::{self, MAX_CPUS};
use crate::mm::addr::PhysAddr;
use crate::platform::devicetree;

register_structs! {
    Gicd {
        (0x000 => ctlr: ReadWrite<u32>),
        (0x004 => typer: ReadOnly<u32>),
        (0x008 => _reserved0),
        (0x100 => isenabler: [ReadWrite<u32>; 32]),
        (0x180 => icenabler: [ReadWrite<u32>; 32]),
        (0x200 => _reserved1),
        (0x280 => icpendr: [ReadWrite<u32>; 32]),
        (0x300 => _reserved2),
        (0x380 => icactiver: [ReadWrite<u32>; 32]),
        (0x400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x800 => itargetsr: [ReadWrite<u8>; 1024]),
        (0xc00 => icfgr: [ReadWrite<u32>; 64]),
        (0xd00 => _reserved3),
        (0xf00 => sgir: WriteOnly<u32>),
        (0xf04 => _reserved4),
        (0xfe8 => pidr2: ReadOnly<u32>),
        (0xfec => _reserved5),
        (0x1000 => @END),
    }
}

register_structs! {
    Gicc {
        (0x00 => ctlr: ReadWrite<u32>),
        (0x04 => pmr: ReadWrite<u32>),
        (0x08 => bpr: ReadWrite<u32>),
        (0x0c => iar: ReadOnly<u32>),
        (0x10 => eoir: WriteOnly<u32>),
        (0x14 => _reserved),
        (0x1000 => @END),
    }
}

/// `GICD_CTLR` / `GICC_CTLR` bit 0: forward (distributor) or signal (CPU interface) interrupts.
const ENABLE: u32 = 1;

pub(super) struct GicV2 {
    gicd: &'static Gicd,
    gicc: &'static Gicc,
    /// Each CPU's interface number (its bit in `ITARGETSR`/`GICD_SGIR`), by MPIDR.
    interfaces: PerCpuTable<MAX_CPUS>,
    /// Interrupt lines the distributor implements.
    lines: u32,
    /// The source CPU interface of the SGI each CPU has acknowledged and not yet EOI'd, by logical
    /// CPU and SGI: a GICv2 acknowledges SGIs per (SGI, source) and wants that source back in
    /// `GICC_EOIR`, while `eoi` gets only the INTID.
    sgi_source: [[AtomicU8; SGI_COUNT as usize]; MAX_CPUS],
}

// SAFETY: the references point at device registers mapped for the kernel's lifetime, and every
// access is one volatile load or store. Nothing does a read-modify-write of a register another
// CPU writes too: the set/clear-enable and SGIR registers take write-1 bitmaps, the GICC, the
// SGI/PPI priority and config registers are banked per CPU, and the distributor-wide setup runs
// once in `init`, before the value is shared. Concurrent use from several CPUs is thus what the
// GIC is built for.
unsafe impl Sync for GicV2 {}
// SAFETY: as above; the value holds no CPU-local state (the banked registers are reached through
// the same address from every CPU).
unsafe impl Send for GicV2 {}

fn map(what: &'static str, r: crate::mm::region::Region, need: u64) -> Result<usize, GicError> {
    if r.size < need {
        return Err(GicError::RegionTooSmall {
            what,
            size: r.size,
            need,
        });
    }
    // The distributor and the CPU interface live as long as the kernel: their mappings are kept.
    crate::mm::ioremap(PhysAddr(r.base), need as usize)
        .map(|io| io.leak().as_usize())
        .map_err(|err| GicError::Map { what, err })
}

impl GicV2 {
    pub(super) fn init(desc: &devicetree::Gic) -> Result<Self, GicError> {
        let size = core::mem::size_of::<Gicd>() as u64;
        let d = map("GICv2 distributor", desc.dist, size)?;
        let c = map(
            "GICv2 CPU interface",
            desc.cpu_or_redist,
            core::mem::size_of::<Gicc>() as u64,
        )?;
        // SAFETY: `d` and `c` are fresh Device-nGnRE mappings of the distributor and CPU
        // interface, as large as the register blocks, and are never unmapped; the registers are
        // only accessed through volatile cells.
        let (gicd, gicc) = unsafe { (&*(d as *const Gicd), &*(c as *const Gicc)) };
        let rev = super::arch_rev_from_pidr2(gicd.pidr2.get());
        if !super::arch_rev_matches(GicVersion::V2, rev) {
            return Err(GicError::WrongArchitecture {
                expected: GicVersion::V2,
                arch_rev: rev,
            });
        }

        gicd.ctlr.set(0);
        let lines = super::lines_from_typer(gicd.typer.get()) as usize;
        // The SPIs' registers (the first word, or the first two of ICFGR, are the banked
        // SGIs/PPIs: `init_cpu`'s). ITARGETSR needs nothing: `configure_spi` sets an SPI's
        // target before it is enabled.
        let spi_words = 1..lines.div_ceil(32);
        write_each(&gicd.icenabler[spi_words.clone()], u32::MAX);
        write_each(&gicd.icpendr[spi_words.clone()], u32::MAX);
        write_each(&gicd.icactiver[spi_words], u32::MAX);
        write_each(&gicd.ipriorityr[32..lines], DEFAULT_PRIORITY);
        write_each(&gicd.icfgr[2..lines.div_ceil(16)], 0); // every SPI level-triggered
        gicd.ctlr.set(ENABLE);
        Ok(Self {
            gicd,
            gicc,
            interfaces: PerCpuTable::new(),
            lines: lines as u32,
            sgi_source: [const { [const { AtomicU8::new(0) }; SGI_COUNT as usize] }; MAX_CPUS],
        })
    }

    pub(super) fn init_cpu(&self, mpidr: u64) {
        let d = self.gicd;
        let iface = super::cpu_interface_from_itargetsr(
            d.itargetsr[..32]
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes([w[0].get(), w[1].get(), w[2].get(), w[3].get()])),
        )
        .unwrap_or_else(|| {
            panic!("gic: GICD_ITARGETSR names several CPU interfaces for cpu {mpidr:#x}")
        });
        self.interfaces.insert(mpidr, u32::from(iface));

        // The banked SGI/PPI registers of this CPU: PPIs off until asked for, SGIs on.
        d.icenabler[0].set(0xffff_0000);
        d.icpendr[0].set(0xffff_0000);
        write_each(&d.ipriorityr[..32], DEFAULT_PRIORITY);
        d.isenabler[0].set(0x0000_ffff);

        let c = self.gicc;
        c.pmr.set(u32::from(PRIORITY_MASK_OPEN));
        c.bpr.set(0);
        c.ctlr.set(ENABLE);
    }

    pub(super) fn enable_ppi(&self, intid: u32) {
        let d = self.gicd;
        let (i, edge) = super::icfgr_edge_bit(intid);
        d.icfgr[i].set(d.icfgr[i].get() & !edge);
        d.ipriorityr[intid as usize].set(DEFAULT_PRIORITY);
        d.isenabler[0].set(1 << intid);
    }

    pub(super) fn configure_spi(&self, intid: u32, edge: bool, mpidr: u64) -> Result<(), SpiError> {
        if !super::is_spi(intid, self.lines) {
            return Err(SpiError::NotAnSpi {
                intid,
                lines: self.lines,
            });
        }
        let iface = self
            .interfaces
            .get(mpidr)
            .ok_or(SpiError::CpuNotReady { mpidr })?;
        let d = self.gicd;
        self.set_spi_enabled(intid, false);
        super::set_spi_trigger_and_priority(&d.icfgr, &d.ipriorityr, intid, edge);
        // Byte-accessible: one byte per interrupt, the target CPU interfaces' bit mask.
        d.itargetsr[intid as usize].set(1 << iface);
        Ok(())
    }

    pub(super) fn set_spi_enabled(&self, intid: u32, on: bool) {
        super::write_spi_enable(&self.gicd.isenabler, &self.gicd.icenabler, intid, on);
    }

    pub(super) fn ack(&self) -> Option<u32> {
        let iar = self.gicc.iar.get();
        let intid = iar & 0x3ff;
        if intid >= FIRST_SPECIAL_INTID {
            return None;
        }
        if intid < SGI_COUNT {
            self.sgi_source[cpu::id()][intid as usize]
                .store(((iar >> 10) & 7) as u8, Ordering::Relaxed);
            // What the sender stored before its SGI is read after the acknowledge (`dmb ishld`).
            core::sync::atomic::fence(Ordering::Acquire);
        }
        Some(intid)
    }

    pub(super) fn eoi(&self, intid: u32) {
        let mut v = intid;
        if intid < SGI_COUNT {
            v |=
                u32::from(self.sgi_source[cpu::id()][intid as usize].load(Ordering::Relaxed)) << 10;
        }
        self.gicc.eoir.set(v);
    }

    pub(super) fn send_sgi(&self, sgi: u8, mpidr: u64) {
        let Some(iface) = self.interfaces.get(mpidr) else {
            log::warn!(
                "gic: SGI {sgi} to cpu {mpidr:#x} dropped: it has not initialised its GIC interface"
            );
            return;
        };
        self.sgir(super::gicd_sgir(sgi, SgirTarget::List(1 << iface)));
    }

    pub(super) fn send_sgi_all_but_self(&self, sgi: u8) {
        self.sgir(super::gicd_sgir(sgi, SgirTarget::AllButSelf));
    }

    fn sgir(&self, v: u32) {
        // Our earlier stores (the work the SGI announces) must be visible before the target can
        // take the interrupt.
        crate::arch::aarch64::mmu::dsb_ishst();
        self.gicd.sgir.set(v);
    }
}
