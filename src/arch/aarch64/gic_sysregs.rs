//! The GICv3 CPU interface: the `ICC_*_EL1` system registers the GIC driver uses.
//!
//! aarch64-cpu 11.2 types only `ICC_SRE_EL2` and a read-only `ICC_CTLR_EL1`, so these are reached
//! by their `S3_<op1>_C<n>_C<m>_<op2>` encodings, which every assembler accepts whatever GIC
//! extension it believes the target has. Each accessor touches only this CPU's interface.
//!
//! All of these trap (UNDEFINED) unless `ICC_SRE_EL1.SRE` is 1: call [`enable_sre`] first and
//! use none of the others if it returns false.

/// `ICC_SRE_EL1.SRE`, `.DFB`, `.DIB`: system-register interface on, FIQ and IRQ bypass disabled.
const SRE_SRE_DFB_DIB: u64 = 0b111;

macro_rules! icc_read {
    ($enc:literal) => {{
        let v: u64;
        // SAFETY: reading a GICv3 CPU-interface register of this CPU has no side effect on memory;
        // callers reach this only after `enable_sre` returned true, so it does not trap.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

macro_rules! icc_write {
    ($enc:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the write changes only this CPU's interrupt-interface state (priority mask,
        // group enable, end of interrupt, or an SGI request), none of which is memory the
        // compiler reasons about; callers reach this only after `enable_sre` returned true.
        unsafe { core::arch::asm!(concat!("msr ", $enc, ", {}"), in(reg) v, options(nostack, preserves_flags)) };
    }};
}

/// Turn on the system-register interface at EL1 (`ICC_SRE_EL1`) and report whether it is on.
/// It stays off when EL2/EL3 did not allow it (`ICC_SRE_EL2.Enable` clear) or when the CPU
/// interface is a GICv2 one.
pub fn enable_sre() -> bool {
    let sre = icc_read!("S3_0_C12_C12_5"); // ICC_SRE_EL1
    icc_write!("S3_0_C12_C12_5", sre | SRE_SRE_DFB_DIB);
    isb();
    icc_read!("S3_0_C12_C12_5") & 1 == 1
}

/// Priority mask (`ICC_PMR_EL1`): only interrupts of a priority value below `mask` are signalled.
pub fn set_priority_mask(mask: u8) {
    icc_write!("S3_0_C4_C6_0", u64::from(mask));
}

/// Binary point for group 1 (`ICC_BPR1_EL1`).
pub fn set_binary_point1(bpr: u8) {
    icc_write!("S3_0_C12_C12_3", u64::from(bpr));
}

/// `ICC_CTLR_EL1.EOImode = 0`: a write to `ICC_EOIR1_EL1` both drops the running priority and
/// deactivates the interrupt, so there is no separate `ICC_DIR_EL1` step.
pub fn set_eoi_drops_and_deactivates() {
    const EOIMODE: u64 = 1 << 1;
    let ctlr = icc_read!("S3_0_C12_C12_4"); // ICC_CTLR_EL1
    icc_write!("S3_0_C12_C12_4", ctlr & !EOIMODE);
}

/// Group 1 interrupts on (`ICC_IGRPEN1_EL1.Enable`), then synchronise so that the next
/// instruction sees the interface enabled.
pub fn enable_group1() {
    icc_write!("S3_0_C12_C12_7", 1);
    isb();
}

/// Acknowledge (`ICC_IAR1_EL1`): the INTID of the highest-priority pending group 1 interrupt,
/// now active, or a special INTID (1020..=1023). The `isb` after the read keeps the loads that
/// follow (the data an SGI's sender published before sending it) from being performed before the
/// acknowledge: a system-register read is not a memory access, so no `dmb` orders it.
pub fn read_iar1() -> u32 {
    let iar = icc_read!("S3_0_C12_C12_0");
    isb();
    (iar & 0xff_ffff) as u32
}

/// End of interrupt (`ICC_EOIR1_EL1`) for an INTID returned by [`read_iar1`].
pub fn write_eoir1(intid: u32) {
    icc_write!("S3_0_C12_C12_1", u64::from(intid));
    isb();
}

/// Generate a group 1 SGI (`ICC_SGI1R_EL1`). `value` is the register image (target affinity,
/// target list or IRM, INTID). The caller orders its earlier stores first (`dsb ishst`): the
/// register write is not a memory access and is not ordered by `dmb`.
pub fn write_sgi1r(value: u64) {
    icc_write!("S3_0_C12_C11_5", value);
    isb();
}

fn isb() {
    // SAFETY: an instruction barrier; no memory or register state changes.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}
