//! An SError is reported, not lost: every CPU runs with Debug and SError unmasked (PSTATE.D and
//! A clear, as after Linux's `local_daif_restore(DAIF_PROCCTX_NOIRQ)`), and an SError is decoded
//! and ends the run with the panic status, like an unhandled synchronous fault.
//!
//! QEMU models no asynchronous external aborts, so the test makes a *virtual* SError, which EL1
//! takes exactly as it would a physical one. Entered at EL2 (`virtualization=on`), the kernel
//! leaves the hyp stub at EL2 (`arch::aarch64::hyp_stub`); through its `HVC_SET_VECTORS` the test
//! installs its own EL2 vectors (below), whose HVC handler sets HCR_EL2.AMO and VSE, with
//! VSESR_EL2 giving the syndrome (FEAT_RAS: `-cpu max`). The SError is pending from the `eret` on
//! and is taken as soon as PSTATE.A is clear: at once on a kernel that unmasked it, never on one
//! that did not (then the test says "no SError" and fails).
//!
//! The runner checks what a user reads: the decoded SError in the report and in the panic line,
//! the interrupted function by name (ELR), the backtrace through it, and the panic status.
//!
//! initmm-qemu: --machine virt,virtualization=on --cpu max --smp 4
//! initmm-expect: exit=101 output=*** KERNEL PANIC on cpu0: unhandled SError: asynchronous SError interrupt, unrecoverable state (UEU) on cpu0
//! initmm-expect-once: serror: D=0 A=0 I=0 on all 4 CPUs
//! initmm-expect-once: *** SError exception on cpu0 in kernel (EL1, SP0)
//! initmm-expect-once: EC 0x2f (SError), ISS 0x0000411: IDS 0, DFSC 0x11, AET 0b001, EA 0, IESB 0
//! initmm-expect-once: ESR 0x00000000be000411
//! initmm-expect-once: <serror::pend_virtual_serror+0x
//! initmm-expect-once: serror::provoke_serror+0x
#![no_std]
#![no_main]

use initmm::BootInfo;
use initmm::arch::aarch64::{cpu, daif, hyp_stub};
use initmm::mm::addr::VirtAddr;
use initmm::mm::layout::kimage_to_phys;
use initmm::smp::{online_cpus, runtime};

core::arch::global_asm!(
    r#"
/*
 * The test's EL2 vector table, run with EL2's MMU off at its physical address. Its only entry
 * that can be taken is 0x400, the HVC from EL1 that pend_virtual_serror makes (x1 = the
 * syndrome): it pends a virtual SError for EL1 and returns 0. The others park the CPU.
 */
    .section .text.serror_el2, "ax"
    .balign 0x800
    .global serror_el2_vectors
serror_el2_vectors:
    .rept 8
    .balign 0x80
    b       serror_el2_park
    .endr
    .balign 0x80
    b       serror_el2_hvc
    .rept 7
    .balign 0x80
    b       serror_el2_park
    .endr

serror_el2_hvc:
    mrs     x2, id_aa64pfr0_el1
    ubfx    x2, x2, #28, #4                     /* RAS: VSESR_EL2 exists */
    cbz     x2, 1f
    msr     S3_4_C5_C2_3, x1                    /* VSESR_EL2: the SError's ISS */
1:  mrs     x2, hcr_el2
    orr     x2, x2, #(1 << 5)                   /* AMO: virtual SErrors are delivered to EL1 */
    orr     x2, x2, #(1 << 8)                   /* VSE: one is pending */
    msr     hcr_el2, x2
    isb
    mov     x0, xzr
    eret

serror_el2_park:
    wfe
    b       serror_el2_park
"#
);

unsafe extern "C" {
    fn serror_el2_vectors();
}

/// The virtual SError's syndrome: DFSC 0x11 (asynchronous SError interrupt), AET 0b001
/// (unrecoverable state, UEU), EA 0, IESB 0.
const SYNDROME: u64 = (0b001 << 10) | 0x11;

/// Every CPU, in a task: Debug and SError unmasked, IRQs too. Says so in one line the runner
/// looks for; a CPU that differs is an error (and the line is missing).
fn daif_on_every_cpu() {
    let n = online_cpus();
    let mut ok = n == 4;
    if !ok {
        log::error!("serror: {n} CPUs online, not 4");
    }
    for id in 0..n {
        let d = if id == cpu::id() {
            daif::read()
        } else {
            runtime::spawn_on(id, daif::read).join()
        };
        if d.debug_masked() || d.serror_masked() || d.irq_masked() {
            log::error!("serror: cpu{id} runs with DAIF {d}: wanted D=0 A=0 I=0");
            ok = false;
        }
    }
    if ok {
        log::info!("serror: D=0 A=0 I=0 on all {n} CPUs");
    }
}

/// Ask EL2 (the test's vectors) to pend a virtual SError with `syndrome`. On a kernel with SError
/// unmasked it is taken as the HVC returns, so ELR is in here.
#[inline(never)]
fn pend_virtual_serror(syndrome: u64) {
    // SAFETY: this CPU's EL2 runs `serror_el2_vectors` (see `provoke_serror`), whose HVC handler
    // changes EL2 registers, x0 and x2 only, and returns.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") 0u64 => _,
            in("x1") syndrome,
            out("x2") _,
            options(nostack, preserves_flags),
        )
    };
}

/// Whether an SError is pending on this CPU (ISR_EL1.A): one that PSTATE.A holds back.
fn serror_pending() -> bool {
    let isr: u64;
    // SAFETY: reading ISR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, isr_el1", out(reg) isr, options(nomem, nostack)) };
    isr & (1 << 8) != 0
}

/// Install the test's EL2 vectors, pend the SError, and give it a second to arrive.
#[inline(never)]
fn provoke_serror(boot: &BootInfo) {
    assert_eq!(
        boot.entry_el, 2,
        "run with virtualization=on: EL2 is needed"
    );
    let pa = kimage_to_phys(VirtAddr::from_ptr(serror_el2_vectors as *const ())).0;
    // SAFETY: entered at EL2, so this CPU's EL2 runs the kernel's hyp stub. `pa` is the physical
    // address of `serror_el2_vectors`, 2 KiB-aligned in the image's text, which stays; its code
    // is position-independent and handles the one HVC made to it.
    if let Err(x0) = unsafe { hyp_stub::set_vectors(pa) } {
        panic!("the hyp stub refused HVC_SET_VECTORS: x0 = {x0:#x}");
    }
    log::info!("serror: pending a virtual SError (ISS {SYNDROME:#x})");
    pend_virtual_serror(SYNDROME);
    let deadline = cpu::counter() + cpu::counter_frequency();
    while cpu::counter() < deadline {
        core::hint::spin_loop();
    }
}

initmm::entry!(main);

fn main(boot: &'static BootInfo) -> ! {
    daif_on_every_cpu();
    provoke_serror(boot);
    log::error!(
        "serror: no SError was taken within 1 s of pending one (ISR_EL1.A = {}, DAIF {}): \
         SError is masked",
        u8::from(serror_pending()),
        daif::read()
    );
    initmm::panic::exit(1)
}
