//! The Arm Generic Interrupt Controller, version 2 (QEMU virt's default, the Raspberry Pi 4's
//! GIC-400) or 3 (`-M virt,gic-version=3`), behind one `Gic` (kernel builds only) for the whole
//! machine.
//!
//! What the kernel needs from it is small: a per-CPU timer PPI, SGIs to wake an idle CPU and to
//! stop every other CPU on panic, acknowledge/EOI in the IRQ handler, and devices' SPIs, each
//! configured edge or level and routed to one CPU (`configure_spi`) before it is enabled; every
//! other SPI stays disabled. Interrupts are taken as IRQs (never FIQs), with one priority for
//! all of them and no preemption between them (the handler runs with IRQs masked).
//!
//! Why not the `arm-gic` crate: its drivers take `&mut self` (a lock around every acknowledge,
//! taken from every CPU's IRQ handler and from the panic path), address a CPU's redistributor by
//! its index rather than find it by affinity, and bring their own system-register layer where
//! initmm keeps those in `arch/`. The part we need is a few hundred lines.
//!
//! The arithmetic (SGI register images, the GICv2 CPU-interface number, the redistributor walk)
//! lives in this file and builds on the host, where its unit tests run; the register maps and the
//! code that touches them are `v2.rs` and `v3.rs`, built for the kernel only.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::vm::VmError;
pub use crate::platform::devicetree::GicVersion;

#[cfg(target_os = "none")]
mod v2;
#[cfg(target_os = "none")]
mod v3;

/// INTIDs 0..16 are SGIs, 16..32 PPIs, 32.. SPIs; 1020..=1023 are special ("nothing pending").
pub const SGI_COUNT: u32 = 16;
/// The PPIs' INTIDs: interrupts private to each CPU, such as its timer's.
pub const PPI_RANGE: core::ops::Range<u32> = 16..32;
/// The lowest INTID that is no interrupt: an acknowledge that reads 1020..=1023 had nothing.
pub const FIRST_SPECIAL_INTID: u32 = 1020;

/// The one priority every interrupt gets (a mid value: it stays below the priority mask whatever
/// number of priority bits the GIC implements, and in a GICv2's non-secure view).
#[cfg(target_os = "none")]
const DEFAULT_PRIORITY: u8 = 0xa0;
/// Priority mask: let every priority through.
#[cfg(target_os = "none")]
const PRIORITY_MASK_OPEN: u8 = 0xff;

/// Store `value` in each register of `regs`, in order, from one store instruction in a loop.
///
/// Not `for r in regs { r.set(value) }` inline: with a trip count it can bound (the register
/// arrays have fixed sizes), the compiler unrolls that into a run of separate stores, and under
/// QEMU's TCG every distinct instruction that reaches a device register ends a translation block
/// and is translated on its own the first time it runs: hundreds of block translations (about
/// 10 us each on a shared host) at every boot, for what one loop does. Not inlined, the trip count
/// is the slice's, unknown here.
#[cfg(target_os = "none")]
#[inline(never)]
fn write_each<T: tock_registers::UIntLike>(
    regs: &[tock_registers::registers::ReadWrite<T>],
    value: T,
) {
    use tock_registers::interfaces::Writeable;
    for r in regs {
        r.set(value);
    }
}

/// Why the GIC could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// `ioremap` of one of the GIC's register ranges failed.
    Map {
        /// Which range, e.g. "GICv3 distributor".
        what: &'static str,
        /// What `ioremap` returned.
        err: VmError,
    },
    /// The device tree gives a register range smaller than the registers we use.
    RegionTooSmall {
        /// Which range, e.g. "GICv3 distributor".
        what: &'static str,
        /// The range's size in the device tree, in bytes.
        size: u64,
        /// The bytes the registers need.
        need: u64,
    },
    /// The distributor's identification register names another GIC architecture than the device
    /// tree's compatible string.
    WrongArchitecture {
        /// The version the device tree says.
        expected: GicVersion,
        /// The revision `GICD_PIDR2` reports (see [`arch_rev_from_pidr2`]).
        arch_rev: u32,
    },
    /// GICv3: `ICC_SRE_EL1.SRE` does not stick: a higher EL left the system-register interface
    /// disabled for EL1.
    SystemRegistersDisabled,
    /// GICv3: no redistributor frame in the range has this CPU's affinity.
    NoRedistributor {
        /// The affinity of the CPU that looked (the boot CPU or a secondary), as its
        /// `MPIDR_EL1` gives it.
        mpidr: u64,
    },
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Map { what, err } => write!(f, "cannot map the {what}: {err}"),
            Self::RegionTooSmall { what, size, need } => {
                write!(f, "the device tree's {what} range is {size:#x} bytes, the registers need {need:#x}")
            }
            Self::WrongArchitecture { expected, arch_rev } => write!(
                f,
                "the device tree says {expected:?}, but the distributor identifies as GIC architecture revision {arch_rev}"
            ),
            Self::SystemRegistersDisabled => f.write_str(
                "GICv3 system-register interface disabled for EL1 (ICC_SRE_EL1.SRE reads 0; firmware must set ICC_SRE_EL2/EL3.Enable)",
            ),
            Self::NoRedistributor { mpidr } => {
                write!(f, "no GICv3 redistributor in the device tree's range has affinity {mpidr:#x}")
            }
        }
    }
}

/// The `Aff3.Aff2.Aff1.Aff0` bytes of an MPIDR as one 32-bit value, the form `GICR_TYPER[63:32]`
/// reports a redistributor's CPU in. (MPIDR keeps Aff3 apart, in bits 39:32.)
pub fn affinity_u32(mpidr: u64) -> u32 {
    let aff3 = (mpidr >> 32) & 0xff;
    ((aff3 << 24) | (mpidr & 0xff_ffff)) as u32
}

/// `ICC_SGI1R_EL1.IRM`: "every PE but the sender" instead of the affinity and target list.
const SGI1R_IRM: u64 = 1 << 40;

/// The `ICC_SGI1R_EL1` image that sends group 1 SGI `sgi` to the one CPU whose affinity is
/// `mpidr`. The register names the cluster by Aff3.Aff2.Aff1 and the CPU within it by a bit in a
/// 16-bit target list; the range selector RS picks which 16 Aff0 values that list covers
/// (non-zero only for Aff0 >= 16, which needs a GIC with `GICD_TYPER.RSS`).
pub fn sgi1r_to(sgi: u8, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xff;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    let target_list = 1u64 << (aff0 & 0xf);
    let rs = aff0 >> 4;
    (aff3 << 48) | (rs << 44) | (aff2 << 32) | (sgi_intid(sgi) << 24) | (aff1 << 16) | target_list
}

/// The `ICC_SGI1R_EL1` image that sends SGI `sgi` to every CPU but the sender.
pub fn sgi1r_all_but_self(sgi: u8) -> u64 {
    SGI1R_IRM | (sgi_intid(sgi) << 24)
}

fn sgi_intid(sgi: u8) -> u64 {
    assert!(
        u32::from(sgi) < SGI_COUNT,
        "SGI {sgi} does not exist (0..16)"
    );
    u64::from(sgi)
}

/// Whom a GICv2 `GICD_SGIR` write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgirTarget {
    /// The CPU interfaces whose bits are set.
    List(u8),
    /// Every CPU interface but the writer's.
    AllButSelf,
}

/// The `GICD_SGIR` image for SGI `sgi`: TargetListFilter in bits 25:24, CPUTargetList 23:16,
/// NSATT 15 left 0, the SGI in 3:0.
pub fn gicd_sgir(sgi: u8, target: SgirTarget) -> u32 {
    let sgi = sgi_intid(sgi) as u32;
    match target {
        SgirTarget::List(mask) => (u32::from(mask) << 16) | sgi,
        SgirTarget::AllButSelf => (1 << 24) | sgi,
    }
}

/// This CPU's GICv2 CPU-interface number from the words of `GICD_ITARGETSR0..7` as this CPU reads
/// them. Those registers are banked: each byte (one per SGI/PPI) reads as the mask of the reading
/// CPU's own interface, or 0 for an interrupt that does not exist, so the first non-zero byte
/// answers. A GIC with a single CPU interface makes them all read 0: that interface is number 0.
/// `None` when a byte has several bits set, which no GIC should report.
pub fn cpu_interface_from_itargetsr(words: impl IntoIterator<Item = u32>) -> Option<u8> {
    let mask = words
        .into_iter()
        .flat_map(u32::to_le_bytes)
        .find(|&b| b != 0)
        .unwrap_or(1);
    mask.is_power_of_two().then(|| mask.trailing_zeros() as u8)
}

/// Offset of `GICR_TYPER` in a redistributor's RD_base frame, and its bits the walk uses.
pub const GICR_TYPER_OFFSET: usize = 0x08;
const GICR_TYPER_VLPIS: u64 = 1 << 1;
const GICR_TYPER_LAST: u64 = 1 << 4;
/// A GICv3 redistributor: RD_base and SGI_base frames, 64 KiB each. GICv4 adds two for vLPIs.
pub const GICR_FRAME_V3: usize = 0x2_0000;
/// A GICv4 redistributor: GICv3's two frames plus the two for vLPIs, 64 KiB each.
pub const GICR_FRAME_V4: usize = 0x4_0000;

/// Walk the redistributors packed in a `size`-byte range, reading each one's `GICR_TYPER`
/// through `typer_at(offset of its RD_base)`, and return the offset of the one serving the CPU
/// with affinity `mpidr`. The walk stops at the frame marked Last, or at the end of the range
/// (a device tree that gives a shorter range than the GIC has frames), never reading beyond it.
pub fn find_redistributor(
    size: usize,
    mpidr: u64,
    mut typer_at: impl FnMut(usize) -> u64,
) -> Option<usize> {
    let want = affinity_u32(mpidr);
    let mut off = 0usize;
    while off
        .checked_add(GICR_FRAME_V3)
        .is_some_and(|end| end <= size)
    {
        let typer = typer_at(off);
        if (typer >> 32) as u32 == want {
            return Some(off);
        }
        if typer & GICR_TYPER_LAST != 0 {
            return None;
        }
        off += if typer & GICR_TYPER_VLPIS != 0 {
            GICR_FRAME_V4
        } else {
            GICR_FRAME_V3
        };
    }
    None
}

/// Interrupt lines the distributor implements, from `GICD_TYPER.ITLinesNumber` (bits 4:0):
/// 32 * (N + 1), of which INTIDs 1020..=1023 are never real.
pub fn lines_from_typer(typer: u32) -> u32 {
    (32 * ((typer & 0x1f) + 1)).min(FIRST_SPECIAL_INTID)
}

/// The architecture revision in a GIC `PIDR2` identification register (bits 7:4): 1 or 2 for a
/// GICv2 distributor, 3 for GICv3, 4 for GICv4.
pub fn arch_rev_from_pidr2(pidr2: u32) -> u32 {
    (pidr2 >> 4) & 0xf
}

/// Does `arch_rev` (from `PIDR2`) fit the version the device tree announced?
pub fn arch_rev_matches(version: GicVersion, arch_rev: u32) -> bool {
    match version {
        GicVersion::V2 => matches!(arch_rev, 1 | 2),
        GicVersion::V3 => matches!(arch_rev, 3 | 4),
    }
}

/// `ICFGR` holds two bits per interrupt, 16 interrupts a register; the upper bit of the pair is 1
/// for edge-triggered, 0 for level. Returns the register index and that bit for `intid`.
pub fn icfgr_edge_bit(intid: u32) -> (usize, u32) {
    ((intid / 16) as usize, 1 << (2 * (intid % 16) + 1))
}

/// The steps of configuring an SPI that GICv2 and GICv3 distributors share (the same registers
/// at the same offsets): its trigger in `ICFGR` (edge or level) and its priority in
/// `IPRIORITYR`. The caller has disabled the SPI first and routes it afterwards (GICv2
/// `ITARGETSR`, GICv3 `IROUTER`). `ICFGR` words are shared by 16 interrupts: configuration runs
/// on one CPU at a time (the interrupt registry's lock), so this read-modify-write does not race.
#[cfg(target_os = "none")]
fn set_spi_trigger_and_priority(
    icfgr: &[tock_registers::registers::ReadWrite<u32>],
    ipriorityr: &[tock_registers::registers::ReadWrite<u8>],
    intid: u32,
    edge: bool,
) {
    use tock_registers::interfaces::{Readable, Writeable};
    let (i, bit) = icfgr_edge_bit(intid);
    let cfg = icfgr[i].get();
    icfgr[i].set(if edge { cfg | bit } else { cfg & !bit });
    ipriorityr[intid as usize].set(DEFAULT_PRIORITY);
}

/// Set (`on`) or clear an SPI's enable bit, through `ISENABLER` or `ICENABLER`: the same
/// registers on GICv2 and GICv3 distributors (a GICv3 then also waits for `GICD_CTLR.RWP`).
#[cfg(target_os = "none")]
fn write_spi_enable(
    isenabler: &[tock_registers::registers::ReadWrite<u32>],
    icenabler: &[tock_registers::registers::ReadWrite<u32>],
    intid: u32,
    on: bool,
) {
    use tock_registers::interfaces::Writeable;
    let (word, bit) = ((intid / 32) as usize, 1 << (intid % 32));
    if on {
        isenabler[word].set(bit);
    } else {
        icenabler[word].set(bit);
    }
}

/// The lowest SPI INTID: 32.
pub const SPI_BASE: u32 = 32;

/// Is `intid` an SPI this distributor has (`lines` from [`lines_from_typer`])?
pub fn is_spi(intid: u32, lines: u32) -> bool {
    (SPI_BASE..lines.min(FIRST_SPECIAL_INTID)).contains(&intid)
}

/// The `GICD_IROUTER<n>` value that routes an SPI to the one CPU with affinity `mpidr`
/// (Interrupt_Routing_Mode 0: Aff3 in bits 39:32, Aff2.Aff1.Aff0 in 23:0).
pub fn irouter_for(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// Why an SPI cannot be configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpiError {
    /// The INTID is not an SPI of this distributor.
    NotAnSpi {
        /// The INTID asked for.
        intid: u32,
        /// Interrupt lines the distributor implements.
        lines: u32,
    },
    /// The target CPU has not brought up its interface (GICv2: its interface number is unknown).
    CpuNotReady {
        /// Its MPIDR affinity.
        mpidr: u64,
    },
}

impl fmt::Display for SpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotAnSpi { intid, lines } => write!(
                f,
                "INTID {intid} is not an SPI of this GIC (SPIs are 32..{})",
                lines.min(FIRST_SPECIAL_INTID)
            ),
            Self::CpuNotReady { mpidr } => {
                write!(f, "cpu {mpidr:#x} has not initialised its GIC interface")
            }
        }
    }
}

/// Per-CPU facts learnt in `init_cpu` (GICv2: the CPU-interface number, GICv3: where the
/// CPU's redistributor is), keyed by MPIDR and read lock-free by any CPU. Each entry is one
/// atomic word, the MPIDR affinity (bits 39:0) and the value (bits 63:40), so that a reader
/// never sees a key without its value and two CPUs claiming a slot at once cannot mix theirs.
pub struct PerCpuTable<const N: usize> {
    slots: [AtomicU64; N],
}

const EMPTY: u64 = u64::MAX;
const KEY_BITS: u32 = 40;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
/// Values must fit the 24 bits above the key.
pub const VALUE_LIMIT: u32 = 1 << (64 - KEY_BITS);

impl<const N: usize> Default for PerCpuTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PerCpuTable<N> {
    /// An empty table with room for `N` CPUs.
    pub const fn new() -> Self {
        Self {
            slots: [const { AtomicU64::new(EMPTY) }; N],
        }
    }

    /// Record `value` for `mpidr` (a CPU initialised again overwrites its own entry).
    ///
    /// # Panics
    ///
    /// If `value` is not below [`VALUE_LIMIT`], `mpidr` has bits above the 40-bit key, or all
    /// `N` slots hold other CPUs.
    pub fn insert(&self, mpidr: u64, value: u32) {
        assert!(value < VALUE_LIMIT && mpidr & !KEY_MASK == 0);
        let entry = (u64::from(value) << KEY_BITS) | mpidr;
        for slot in &self.slots {
            let mut cur = slot.load(Ordering::Acquire);
            loop {
                if cur != EMPTY && cur & KEY_MASK != mpidr {
                    break;
                }
                match slot.compare_exchange(cur, entry, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return,
                    Err(now) => cur = now,
                }
            }
        }
        panic!("gic: more than {N} CPUs initialised their interface");
    }

    /// The value recorded for `mpidr`, or `None` if that CPU has not recorded one.
    pub fn get(&self, mpidr: u64) -> Option<u32> {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .find(|&e| e != EMPTY && e & KEY_MASK == mpidr)
            .map(|e| (e >> KEY_BITS) as u32)
    }
}

#[cfg(target_os = "none")]
pub use hw::Gic;

#[cfg(target_os = "none")]
mod hw {
    use super::{GicError, GicVersion, SpiError, v2::GicV2, v3::GicV3};
    use crate::arch::aarch64::cpu;
    use crate::platform::devicetree;
    use crate::platform::devicetree::Trigger;

    /// The machine's interrupt controller. One value, shared by every CPU (`Sync`): the state
    /// that differs per CPU (GICv2 CPU interface, GICv3 redistributor and system registers) is
    /// banked in hardware or looked up by the caller's MPIDR.
    pub struct Gic {
        inner: Inner,
    }

    // One value for the whole machine, so the GICv2 variant's per-CPU tables cost nothing to keep
    // inline.
    #[allow(clippy::large_enum_variant)]
    enum Inner {
        V2(GicV2),
        V3(GicV3),
    }

    impl Gic {
        /// Map the GIC's registers (ioremap) and initialise the distributor: every SPI disabled and
        /// not pending, one priority, level-triggered; on GICv3 affinity routing on and every
        /// interrupt in group 1 (non-secure). Called once, by the boot CPU, before `init_cpu`.
        pub fn init(desc: &devicetree::Gic) -> Result<Gic, GicError> {
            let inner = match desc.version {
                GicVersion::V2 => Inner::V2(GicV2::init(desc)?),
                GicVersion::V3 => Inner::V3(GicV3::init(desc)?),
            };
            Ok(Gic { inner })
        }

        /// Bring up this CPU's side: its CPU interface (GICv2 GICC, GICv3 ICC_* registers and its
        /// redistributor, found by affinity), priority mask open, interrupts on, SGIs 0..16
        /// enabled and every PPI disabled until `enable_ppi`. Run on each CPU (the boot CPU too),
        /// with IRQs masked, after `init`.
        ///
        /// Panics if this CPU has no redistributor in the device tree's range (GICv3), or if the
        /// GIC serves more CPUs than `MAX_CPUS`: both mean the machine is not one we can run on.
        pub fn init_cpu(&self) {
            let mpidr = cpu::mpidr();
            match &self.inner {
                Inner::V2(g) => g.init_cpu(mpidr),
                Inner::V3(g) => g.init_cpu(mpidr),
            }
        }

        /// Enable private interrupt `intid` (a PPI, 16..32) on this CPU, level-triggered (the
        /// generic timer's outputs are levels).
        pub fn enable_ppi(&self, intid: u32) {
            assert!(
                super::PPI_RANGE.contains(&intid),
                "INTID {intid} is not a PPI"
            );
            match &self.inner {
                Inner::V2(g) => g.enable_ppi(intid),
                Inner::V3(g) => g.enable_ppi(cpu::mpidr(), intid),
            }
        }

        /// Configure SPI `intid` (disabled meanwhile, and left disabled): edge or level, and
        /// routed to the one CPU whose MPIDR affinity is `mpidr`. `enable_spi` turns it on.
        ///
        /// # Errors
        ///
        /// [`SpiError`]: not an SPI of this GIC, or (GICv2) a CPU whose interface is not up.
        pub fn configure_spi(
            &self,
            intid: u32,
            trigger: Trigger,
            mpidr: u64,
        ) -> Result<(), SpiError> {
            let edge = trigger == Trigger::Edge;
            match &self.inner {
                Inner::V2(g) => g.configure_spi(intid, edge, mpidr),
                Inner::V3(g) => g.configure_spi(intid, edge, mpidr),
            }
        }

        /// Let SPI `intid` (configured with `configure_spi`) be signalled.
        pub fn enable_spi(&self, intid: u32) {
            match &self.inner {
                Inner::V2(g) => g.set_spi_enabled(intid, true),
                Inner::V3(g) => g.set_spi_enabled(intid, true),
            }
        }

        /// Stop SPI `intid` from being signalled; once this returns the distributor forwards it
        /// no more (GICv3 waits for the write to take effect).
        pub fn disable_spi(&self, intid: u32) {
            match &self.inner {
                Inner::V2(g) => g.set_spi_enabled(intid, false),
                Inner::V3(g) => g.set_spi_enabled(intid, false),
            }
        }

        /// Acknowledge the highest-priority pending interrupt of this CPU, making it active:
        /// `Some(intid)`, or `None` when nothing is pending (spurious, INTID 1023). Every
        /// `Some` must be followed by `eoi(intid)` on the same CPU.
        pub fn ack(&self) -> Option<u32> {
            match &self.inner {
                Inner::V2(g) => g.ack(),
                Inner::V3(_) => GicV3::ack(),
            }
        }

        /// End of interrupt: priority drop and deactivation of an INTID `ack` returned on this CPU.
        pub fn eoi(&self, intid: u32) {
            match &self.inner {
                Inner::V2(g) => g.eoi(intid),
                Inner::V3(_) => GicV3::eoi(intid),
            }
        }

        /// Send SGI `sgi` (0..16) to the CPU whose MPIDR affinity is `mpidr` (as in the device
        /// tree's `/cpus/cpu@N/reg`; the sender may name itself). Stores before the call are
        /// visible to the target before the interrupt is.
        ///
        /// GICv2: the target must have run `init_cpu` (that is when its CPU-interface number is
        /// learnt); an SGI to a CPU that has not is dropped with a warning.
        pub fn send_sgi(&self, sgi: u8, mpidr: u64) {
            match &self.inner {
                Inner::V2(g) => g.send_sgi(sgi, mpidr),
                Inner::V3(_) => GicV3::send_sgi(sgi, mpidr),
            }
        }

        /// Send SGI `sgi` to every CPU but the caller, with the same ordering as `send_sgi`.
        pub fn send_sgi_all_but_self(&self, sgi: u8) {
            match &self.inner {
                Inner::V2(g) => g.send_sgi_all_but_self(sgi),
                Inner::V3(_) => GicV3::send_sgi_all_but_self(sgi),
            }
        }

        /// Which architecture this GIC was brought up as.
        pub fn version(&self) -> GicVersion {
            match self.inner {
                Inner::V2(_) => GicVersion::V2,
                Inner::V3(_) => GicVersion::V3,
            }
        }
    }
}

#[cfg(test)]
mod tests;
