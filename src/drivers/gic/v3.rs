//! GICv3: memory-mapped distributor (GICD) and per-CPU redistributors (GICR), CPU interface
//! through the `ICC_*_EL1` system registers (`arch::aarch64::gic_sysregs`).
//!
//! Affinity routing is on and every interrupt is group 1. Without Security Extensions
//! (`GICD_CTLR.DS = 1`, QEMU virt without `secure=on`) that is ours to set; with them, firmware
//! has done it and our non-secure writes to the group registers are ignored. The `GICD_CTLR`
//! value we write means "affinity routing, group 1 on" in both views of the register.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::{
    DEFAULT_PRIORITY, FIRST_SPECIAL_INTID, GicError, GicVersion, PRIORITY_MASK_OPEN, PerCpuTable,
    SpiError, write_each,
};
use crate::arch::aarch64::cpu::MAX_CPUS;
use crate::arch::aarch64::{gic_sysregs, mmu};
use crate::mm::addr::PhysAddr;
use crate::platform::devicetree;

register_structs! {
    Gicd {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => typer: ReadOnly<u32>),
        (0x0008 => _reserved0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved2),
        (0x0280 => icpendr: [ReadWrite<u32>; 32]),
        (0x0300 => _reserved3),
        (0x0380 => icactiver: [ReadWrite<u32>; 32]),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved4),
        (0x0c00 => icfgr: [ReadWrite<u32>; 64]),
        (0x0d00 => _reserved5),
        (0x6000 => irouter: [ReadWrite<u64>; 1020]),
        (0x7fe0 => _reserved7),
        (0xffe8 => pidr2: ReadOnly<u32>),
        (0xffec => _reserved6),
        (0x10000 => @END),
    }
}

register_structs! {
    /// One redistributor: the RD_base frame, then the SGI_base frame 64 KiB above it.
    Gicr {
        (0x00000 => ctlr: ReadOnly<u32>),
        (0x00004 => _reserved0),
        (0x00008 => typer: ReadOnly<u64>),
        (0x00010 => _reserved1),
        (0x00014 => waker: ReadWrite<u32>),
        (0x00018 => _reserved2),
        (0x10080 => igroupr0: ReadWrite<u32>),
        (0x10084 => _reserved3),
        (0x10100 => isenabler0: ReadWrite<u32>),
        (0x10104 => _reserved4),
        (0x10180 => icenabler0: ReadWrite<u32>),
        (0x10184 => _reserved5),
        (0x10280 => icpendr0: ReadWrite<u32>),
        (0x10284 => _reserved6),
        (0x10400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x10420 => _reserved7),
        (0x10c00 => icfgr: [ReadWrite<u32>; 2]),
        (0x10c08 => _reserved8),
        (0x20000 => @END),
    }
}

const _: () = assert!(core::mem::size_of::<Gicr>() == super::GICR_FRAME_V3);
const _: () = assert!(core::mem::offset_of!(Gicr, typer) == super::GICR_TYPER_OFFSET);

/// `GICD_CTLR`: register write pending (31), affinity routing (4), group 1 enables (1 and 0:
/// EnableGrp1 and EnableGrp0 with `DS = 1`; EnableGrp1A and EnableGrp1NS in the non-secure view).
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_G1: u32 = 0b11;
/// `GICR_CTLR.RWP`, `GICR_WAKER.ProcessorSleep` and `.ChildrenAsleep`.
const GICR_CTLR_RWP: u32 = 1 << 3;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

pub(super) struct GicV3 {
    /// The distributor, mapped for the kernel's lifetime.
    gicd: &'static Gicd,
    /// Interrupt lines the distributor implements.
    lines: u32,
    /// Virtual address and size of the redistributor range (mapped for the kernel's lifetime).
    /// After `init` each CPU programs only its own redistributor and system registers.
    gicr_base: usize,
    gicr_size: usize,
    /// Offset of each CPU's redistributor in the range, in 64 KiB units, by MPIDR.
    redists: PerCpuTable<MAX_CPUS>,
}

// SAFETY: `gicd` points at the distributor, mapped as device memory for the kernel's lifetime,
// and every access is one volatile load or store. The distributor-wide set-up runs once in
// `init`, before the value is shared; afterwards the only read-modify-write of a shared register
// (an SPI's ICFGR word in `configure_spi`) runs under the interrupt registry's lock, and the
// enable registers take write-1 bitmaps. Each CPU touches only its own redistributor.
unsafe impl Sync for GicV3 {}
// SAFETY: as above; the value holds no CPU-local state.
unsafe impl Send for GicV3 {}

/// Spin until `done()`, or panic naming `what`: a GIC that never finishes a register write is
/// broken, and saying so beats hanging with IRQs masked.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..10_000_000 {
        if done() {
            return;
        }
        core::hint::spin_loop();
    }
    panic!("gic: {what} did not complete");
}

impl GicV3 {
    pub(super) fn init(desc: &devicetree::Gic) -> Result<Self, GicError> {
        let need = core::mem::size_of::<Gicd>() as u64;
        if desc.dist.size < need {
            return Err(GicError::RegionTooSmall {
                what: "GICv3 distributor",
                size: desc.dist.size,
                need,
            });
        }
        let r = desc.cpu_or_redist;
        if r.size < super::GICR_FRAME_V3 as u64 {
            return Err(GicError::RegionTooSmall {
                what: "GICv3 redistributor",
                size: r.size,
                need: super::GICR_FRAME_V3 as u64,
            });
        }
        // The distributor and the redistributors live as long as the kernel: their mappings are
        // kept.
        let d = crate::mm::ioremap(PhysAddr(desc.dist.base), need as usize)
            .map(|io| io.leak())
            .map_err(|err| GicError::Map {
                what: "GICv3 distributor",
                err,
            })?;
        let gicr_size = r.size as usize;
        let gicr_base = crate::mm::ioremap(PhysAddr(r.base), gicr_size)
            .map(|io| io.leak().as_usize())
            .map_err(|err| GicError::Map {
                what: "GICv3 redistributors",
                err,
            })?;
        // SAFETY: `d` is a fresh Device-nGnRE mapping of the distributor, as large as its
        // register block, never unmapped; the registers are accessed only through volatile cells.
        let gicd = unsafe { &*d.as_ptr::<Gicd>() };
        let rev = super::arch_rev_from_pidr2(gicd.pidr2.get());
        if !super::arch_rev_matches(GicVersion::V3, rev) {
            return Err(GicError::WrongArchitecture {
                expected: GicVersion::V3,
                arch_rev: rev,
            });
        }
        if !gic_sysregs::enable_sre() {
            return Err(GicError::SystemRegistersDisabled);
        }
        let lines = super::lines_from_typer(gicd.typer.get());
        let g = Self {
            gicd,
            lines,
            gicr_base,
            gicr_size,
            redists: PerCpuTable::new(),
        };
        let mpidr = crate::arch::aarch64::cpu::mpidr();
        if g.find_redist(mpidr).is_none() {
            return Err(GicError::NoRedistributor { mpidr });
        }

        // Affinity routing can change only while the distributor is disabled.
        let rwp = || gicd.ctlr.get() & GICD_CTLR_RWP == 0;
        gicd.ctlr.set(0);
        wait_for("GICD_CTLR disable", rwp);
        gicd.ctlr.set(GICD_CTLR_ARE);
        wait_for("GICD_CTLR affinity routing", rwp);
        let lines = lines as usize;
        // The SPIs' registers (the first word, or the first two of ICFGR, are the SGIs/PPIs,
        // which live in each CPU's redistributor).
        let spi_words = 1..lines.div_ceil(32);
        write_each(&gicd.igroupr[spi_words.clone()], u32::MAX);
        write_each(&gicd.icenabler[spi_words.clone()], u32::MAX);
        write_each(&gicd.icpendr[spi_words.clone()], u32::MAX);
        write_each(&gicd.icactiver[spi_words], u32::MAX);
        write_each(&gicd.ipriorityr[32..lines], DEFAULT_PRIORITY);
        write_each(&gicd.icfgr[2..lines.div_ceil(16)], 0); // every SPI level-triggered
        wait_for("GICD SPI disable", rwp);
        gicd.ctlr.set(GICD_CTLR_ARE | GICD_CTLR_ENABLE_G1);
        wait_for("GICD_CTLR enable", rwp);
        Ok(g)
    }

    fn gicr_at(&self, off: usize) -> &Gicr {
        assert!(off + super::GICR_FRAME_V3 <= self.gicr_size);
        // SAFETY: `gicr_base..+gicr_size` is the redistributor range, mapped as device memory for
        // the kernel's lifetime, and a whole redistributor fits at `off` (asserted).
        unsafe { &*((self.gicr_base + off) as *const Gicr) }
    }

    fn find_redist(&self, mpidr: u64) -> Option<usize> {
        super::find_redistributor(self.gicr_size, mpidr, |off| self.gicr_at(off).typer.get())
    }

    /// The redistributor of the CPU `mpidr`, as `init_cpu` found it.
    fn redist(&self, mpidr: u64) -> &Gicr {
        let units = self
            .redists
            .get(mpidr)
            .unwrap_or_else(|| panic!("gic: cpu {mpidr:#x} has not run init_cpu"));
        self.gicr_at((units as usize) << 16)
    }

    pub(super) fn init_cpu(&self, mpidr: u64) {
        assert!(
            gic_sysregs::enable_sre(),
            "gic: cpu {mpidr:#x}: {}",
            GicError::SystemRegistersDisabled
        );
        let off = self
            .find_redist(mpidr)
            .unwrap_or_else(|| panic!("gic: {}", GicError::NoRedistributor { mpidr }));
        self.redists.insert(mpidr, (off >> 16) as u32);
        let r = self.gicr_at(off);

        // Wake the redistributor: until then it does not forward this CPU's interrupts.
        r.waker.set(r.waker.get() & !GICR_WAKER_PROCESSOR_SLEEP);
        wait_for("GICR_WAKER wake-up", || {
            r.waker.get() & GICR_WAKER_CHILDREN_ASLEEP == 0
        });

        r.igroupr0.set(u32::MAX);
        r.icenabler0.set(0xffff_0000);
        r.icpendr0.set(0xffff_0000);
        wait_for("GICR PPI disable", || r.ctlr.get() & GICR_CTLR_RWP == 0);
        write_each(&r.ipriorityr, DEFAULT_PRIORITY);
        r.isenabler0.set(0x0000_ffff);

        gic_sysregs::set_priority_mask(PRIORITY_MASK_OPEN);
        gic_sysregs::set_binary_point1(0);
        gic_sysregs::set_eoi_drops_and_deactivates();
        gic_sysregs::enable_group1();
    }

    pub(super) fn enable_ppi(&self, mpidr: u64, intid: u32) {
        let r = self.redist(mpidr);
        let (i, edge) = super::icfgr_edge_bit(intid);
        r.icfgr[i].set(r.icfgr[i].get() & !edge);
        r.ipriorityr[intid as usize].set(DEFAULT_PRIORITY);
        r.isenabler0.set(1 << intid);
    }

    pub(super) fn configure_spi(&self, intid: u32, edge: bool, mpidr: u64) -> Result<(), SpiError> {
        if !super::is_spi(intid, self.lines) {
            return Err(SpiError::NotAnSpi {
                intid,
                lines: self.lines,
            });
        }
        let d = self.gicd;
        self.set_spi_enabled(intid, false);
        super::set_spi_trigger_and_priority(&d.icfgr, &d.ipriorityr, intid, edge);
        d.irouter[intid as usize].set(super::irouter_for(mpidr));
        Ok(())
    }

    pub(super) fn set_spi_enabled(&self, intid: u32, on: bool) {
        super::write_spi_enable(&self.gicd.isenabler, &self.gicd.icenabler, intid, on);
        if !on {
            // A disable has taken effect once RWP reads 0 (GICv3 architecture, GICD_CTLR.RWP).
            wait_for("GICD SPI disable", || {
                self.gicd.ctlr.get() & GICD_CTLR_RWP == 0
            });
        }
    }

    pub(super) fn ack() -> Option<u32> {
        let intid = gic_sysregs::read_iar1();
        (intid < FIRST_SPECIAL_INTID).then_some(intid)
    }

    pub(super) fn eoi(intid: u32) {
        gic_sysregs::write_eoir1(intid);
    }

    pub(super) fn send_sgi(sgi: u8, mpidr: u64) {
        // Our earlier stores (the work the SGI announces) must be visible before the target can
        // take the interrupt; a system-register write is not ordered by `dmb`.
        mmu::dsb_ishst();
        gic_sysregs::write_sgi1r(super::sgi1r_to(sgi, mpidr));
    }

    pub(super) fn send_sgi_all_but_self(sgi: u8) {
        mmu::dsb_ishst();
        gic_sysregs::write_sgi1r(super::sgi1r_all_but_self(sgi));
    }
}
