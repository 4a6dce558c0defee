//! The EL2 stub: what runs at EL2 after a kernel entered at EL2 (or EL3) has dropped to EL1,
//! as Linux's `arch/arm64/kernel/hyp-stub.S`.
//!
//! `boot::init_el2` points VBAR_EL2 at [`__hyp_stub_vectors`]. The stub answers one HVC from
//! EL1, Linux's `HVC_SET_VECTORS`: x0 = 0, x1 = the physical address of another EL2 vector table,
//! which it installs, returning 0 in x0. That hands this CPU's EL2 to other code (a test kernel's,
//! which pends a virtual SError from there: `tests/serror.rs`). Any other call returns the SMC
//! Calling Convention's NOT_SUPPORTED (-1) in x0 (Linux's stub returns its own `HVC_STUB_ERR`), so
//! that a PSCI call sent over HVC by mistake, on a machine whose PSCI is not at EL2, fails as
//! "PSCI NOT_SUPPORTED" instead of reaching whatever vectors the firmware left.
//!
//! Every other exception vector parks the CPU: nothing routes one to EL2 (`init_el2` enables no
//! trap, and HCR_EL2's AMO, IMO and FMO are clear, so SError, IRQ and FIQ are EL1's).
//!
//! The stub runs with EL2's MMU off, at the image's physical address, using no memory and no
//! stack; it preserves every register but x0.

core::arch::global_asm!(
    r#"
.macro HYP_STUB_PARK
    .balign 0x80
1:  wfe
    b       1b
.endm

    .section .text.hyp_stub, "ax"
    .balign 0x800
    .global __hyp_stub_vectors
__hyp_stub_vectors:
    .rept 8                 /* EL2 with SP_EL0, EL2 with SP_EL2: EL2 takes none of its own */
    HYP_STUB_PARK
    .endr
    .balign 0x80            /* 0x400: synchronous from AArch64 EL1: an HVC */
    b       hyp_stub_hvc
    .rept 7                 /* IRQ, FIQ, SError from EL1; everything from AArch32 */
    HYP_STUB_PARK
    .endr

hyp_stub_hvc:
    cmp     x0, #{set_vectors}
    b.ne    1f
    msr     vbar_el2, x1
    isb
    mov     x0, xzr
    eret
1:  mov     x0, #-1                             /* SMCCC NOT_SUPPORTED */
    eret
"#,
    set_vectors = const HVC_SET_VECTORS,
);

unsafe extern "C" {
    /// The stub's EL2 vector table (in the image; EL2 uses its physical address).
    pub fn __hyp_stub_vectors();
}

/// Linux's `HVC_SET_VECTORS` (asm/virt.h): x1 is the new VBAR_EL2.
const HVC_SET_VECTORS: u64 = 0;

/// Make the EL2 vector table at physical address `vectors_pa` this CPU's (the stub's
/// `HVC_SET_VECTORS`, as Linux's `__hyp_set_vectors`). `Err` carries what EL2 answered in x0
/// instead of 0.
///
/// # Safety
///
/// The kernel was entered at EL2 or EL3 (`BootInfo::entry_el` >= 2), so that this CPU's EL2 runs
/// the stub: entered at EL1, the kernel runs under a hypervisor, which an HVC would call instead.
/// `vectors_pa` is the physical address of a 2 KiB-aligned EL2 vector table that stays in
/// memory and, with EL2's MMU off, handles every exception EL2 may take from now on.
pub unsafe fn set_vectors(vectors_pa: u64) -> Result<(), u64> {
    let x0: u64;
    // SAFETY: the caller's contract: this CPU's EL2 runs the stub, whose HVC_SET_VECTORS changes
    // VBAR_EL2 only and returns with every register but x0 as it was.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") HVC_SET_VECTORS => x0,
            in("x1") vectors_pa,
            options(nostack, preserves_flags),
        )
    };
    if x0 == 0 { Ok(()) } else { Err(x0) }
}
