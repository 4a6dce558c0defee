//! Boot entry: the arm64 Image header, the exception-level drop, turning the MMU on, and the jump
//! into the kernel's upper-half mapping; the same for every secondary CPU.
//!
//! The boot loader (QEMU, the Raspberry Pi firmware, U-Boot) follows the Linux arm64 boot protocol:
//! it loads the flat Image at a 4 KiB-aligned physical address, enters `_start` with the MMU off,
//! x0 = physical address of the device tree, at EL3, EL2 or EL1. Until the MMU is on, everything
//! here runs at that physical address, so it uses only PC-relative addressing (`adr`/`adrp`);
//! absolute addresses (`ldr xN, =sym`) are used only after the MMU is on.
//!
//! The MMU goes on in `__enable_mmu`, in `.idmap.text`: the one page the boot identity map maps,
//! so the instruction after the `msr sctlr_el1` still fetches; it never returns but branches to
//! the kernel's virtual address. A secondary CPU does all of this without a stack (see
//! `secondary_entry`). What each step does to the MMU, the caches and the TLB, and why, is listed
//! in the `arch::aarch64` module documentation.
//!
//! Stacks: kernel code runs on SP_EL0 ("EL1t"); every exception switches to SP_EL1, a per-CPU
//! exception stack. A kernel stack overflow therefore still has a good stack to report itself on.

use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use super::early::MmuConfig;

/// What the boot CPU hands a starting CPU: read by `secondary_entry` with the MMU off, so the
/// boot CPU cleans it to the point of coherency before starting the CPU (see
/// [`prepare_secondary`]), and by `secondary_high` with the MMU on. CPUs start one at a time.
#[repr(C)]
pub struct SecondaryBoot {
    /// MAIR, TCR, SCTLR, TTBR0 (the boot identity map) and TTBR1 (init_mm's pgd).
    mmu: [AtomicU64; 5],
    stack_top: AtomicU64,
    exception_stack_top: AtomicU64,
    percpu: AtomicU64,
}

#[unsafe(no_mangle)]
static SECONDARY_BOOT: SecondaryBoot = SecondaryBoot {
    mmu: [const { AtomicU64::new(0) }; 5],
    stack_top: AtomicU64::new(0),
    exception_stack_top: AtomicU64::new(0),
    percpu: AtomicU64::new(0),
};

/// Fill in what the next CPU started at `secondary_entry` reads, and clean it to the point of
/// coherency, where a CPU with its MMU and caches off reads it.
pub fn prepare_secondary(mmu: &MmuConfig, stack_top: u64, exception_stack_top: u64, percpu: u64) {
    let b = &SECONDARY_BOOT;
    for (slot, v) in b.mmu.iter().zip(mmu.words()) {
        slot.store(v, Ordering::Relaxed);
    }
    b.stack_top.store(stack_top, Ordering::Relaxed);
    b.exception_stack_top
        .store(exception_stack_top, Ordering::Relaxed);
    b.percpu.store(percpu, Ordering::Relaxed);
    super::cache::clean_to_poc(
        &raw const SECONDARY_BOOT as usize,
        core::mem::size_of::<SecondaryBoot>(),
    );
}

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /*
     * Linux arm64 Image header (Documentation/arch/arm64/booting.rst), which is also the start of
     * a PE/COFF file (the EFI application: efi.rs).
     */
    ccmp    x18, #0, #0xd, pl       /* code0: "MZ" for EFI loaders, a no-op here */
    b       primary_entry           /* code1: branch past the headers */
    .quad   {text_offset}           /* text_offset: load at a 2 MiB-aligned base + 0 */
    .quad   __image_size            /* image_size, including .bss */
    .quad   {flags}                 /* flags: little-endian, 4 KiB pages, anywhere in RAM */
    .quad   0                       /* res2 */
    .quad   0                       /* res3 */
    .quad   0                       /* res4 */
    .long   {magic}                 /* magic: "ARM\x64" */
    .long   __pe_header_offset      /* res5: the PE header's offset (efi.rs) */

    .section .text.boot, "ax"
    .global primary_entry           /* efi.rs's efi_enter_kernel continues here too */
primary_entry:
    mov     x19, x0                 /* x19: device tree (physical) */

    /*
     * Only one CPU may boot the kernel. The protocol sends one, but a board that releases every
     * core at the entry point (or a stray core) parks here. The flag lives in .data, which is not
     * cleared by the .bss clearing below.
     */
    adrp    x1, boot_cpu_claimed
    add     x1, x1, :lo12:boot_cpu_claimed
    ldr     x2, [x1]
    cbnz    x2, park
    mov     x2, #1
    str     x2, [x1]
    dsb     sy

    bl      el_drop                 /* x20: the EL we were entered at; now at EL1, MMU off */

    /*
     * Invalidate then clear .bss. The MMU and D-cache are off, so these stores go to memory; the
     * invalidation first drops any line the loader left for .bss, which would otherwise be what a
     * cacheable read finds once the MMU is on.
     */
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
    bl      dcache_inval_range
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
1:  stp     xzr, xzr, [x0], #16
    cmp     x0, x1
    b.lo    1b
    dsb     sy

    /*
     * Physical boot stack (in .bss) for early_map_kernel, which builds the early tables. Nothing
     * it writes to the stack is read after the MMU is on: primary_high starts the stack afresh.
     */
    adrp    x0, __boot_stack_top
    add     x0, x0, :lo12:__boot_stack_top
    mov     sp, x0
    adrp    x21, __image_start      /* x21: physical load address of the image */
    mov     x0, x19
    bl      early_map_kernel        /* x0: the MmuConfig to turn the MMU on with (physical) */
    mov     x22, x0

    /*
     * Everything in .bss was written with the MMU off: the zeroes, the early tables, the
     * MmuConfig. Those stores went to memory; a line that a speculative access or the loader
     * brought into a cache since the first invalidation would be what the walker and the CPU
     * read once the MMU is on. Invalidate it all again (Linux invalidates its early tables in
     * create_idmap; it clears .bss with the MMU on). The dmb orders the Device-memory stores
     * before the cache maintenance, which is not ordered after them otherwise (Linux's
     * preserve_boot_args: "needed before dc ivac with MMU off").
     */
    dmb     sy
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
    bl      dcache_inval_range
    mov     x0, x22
    ldr     x1, =primary_high
    b       __enable_mmu

primary_high:
    /* Now at the kernel's virtual address. Exceptions use SP_EL1 = the boot exception stack. */
    msr     spsel, #1
    ldr     x0, =__boot_exception_stack_top
    mov     sp, x0
    msr     spsel, #0
    ldr     x0, =__boot_stack_top
    mov     sp, x0
    ldr     x0, =exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x29, xzr                /* terminate the frame-pointer chain for backtraces */
    mov     x30, xzr
    mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    bl      kernel_entry
    b       park

/*
 * Secondary CPUs enter here (PSCI CPU_ON or a spin-table release), MMU off, at the image's
 * physical address. The boot CPU has filled SECONDARY_BOOT (see prepare_secondary) and cleaned it
 * to the point of coherency, so it reads correctly with caches off.
 *
 * No stack until the MMU is on: a stack written with the MMU off is written to memory, past the
 * caches, and read back through them once the MMU is on, where another CPU's stale line for the
 * same address (the last CPU to start used the same memory) would win.
 */
    .global secondary_entry
secondary_entry:
    bl      el_drop                 /* x20: entry EL */
    adrp    x0, SECONDARY_BOOT      /* its first field is the MmuConfig */
    add     x0, x0, :lo12:SECONDARY_BOOT
    ldr     x1, =secondary_high
    b       __enable_mmu

secondary_high:
    ldr     x19, =SECONDARY_BOOT
    msr     spsel, #1
    ldr     x0, [x19, #{exception_stack_top}]
    mov     sp, x0
    msr     spsel, #0
    ldr     x0, [x19, #{stack_top}]
    mov     sp, x0
    ldr     x0, =exception_vectors
    msr     vbar_el1, x0
    isb
    ldr     x0, [x19, #{percpu}]
    msr     tpidr_el1, x0
    mov     x29, xzr
    mov     x30, xzr
    mov     x0, x20
    bl      secondary_main
    b       park

/*
 * Drop to EL1 from EL3 or EL2, returning in x20 the EL we were entered at. No stack, no memory.
 * Clobbers x0-x3. On return: EL1, AArch64, MMU and caches off (SCTLR_EL1 set to a known value at
 * EL1, whatever the entry EL, as Linux's init_kernel_el does; at EL1, so that it is SCTLR_EL1
 * that is written even if firmware left HCR_EL2.E2H set), FP/SIMD usable, no debug exception
 * enabled, DAIF masked.
 *
 * DAIF is masked first, whatever the entry EL: the boot protocol asks the loader to mask it, but
 * a loader that entered at EL1 with SError unmasked would have an SError taken through a
 * VBAR_EL1 nobody set. Linux's init_kernel_el erets into INIT_PSTATE_EL1 (all masked) for the
 * same reason. It stays masked until primary_high/secondary_high have set VBAR_EL1 and SP_EL1
 * and the Rust code unmasks it (see the daif module).
 */
    .global el_drop
el_drop:
    msr     daifset, #0xf
    mrs     x20, CurrentEL
    ubfx    x20, x20, #2, #2
    cmp     x20, #3
    b.eq    1f
    cmp     x20, #2
    b.eq    2f
    b       3f

1:  /* EL3: lower levels are non-secure AArch64, HVC allowed; then set EL2 up as below. */
    mov     x0, #(1 << 10 | 1 << 8 | 3 << 4 | 1 << 0)   /* SCR_EL3.RW | HCE | RES1 | NS */
    msr     scr_el3, x0
    mov     x3, x30
    bl      init_el2
    mov     x30, x3
    mov     x0, #0x3c5                          /* EL1h, DAIF masked */
    msr     spsr_el3, x0
    adr     x0, 3f
    msr     elr_el3, x0
    eret

2:  mov     x3, x30
    bl      init_el2
    mov     x30, x3
    mov     x0, #0x3c5
    msr     spsr_el2, x0
    adr     x0, 3f
    msr     elr_el2, x0
    eret

3:  /* EL1 */
    mov     x0, #{sctlr_el1_mmu_off_lo}
    movk    x0, #{sctlr_el1_mmu_off_hi}, lsl #16
    msr     sctlr_el1, x0
    /*
     * MDSCR_EL1 as Linux's __cpu_setup leaves it: TDCC only. KDE, MDE and SS clear, so no
     * watchpoint, breakpoint or software step the firmware left armed fires once PSTATE.D is
     * clear.
     */
    mov     x0, #(1 << 12)
    msr     mdscr_el1, x0
    mov     x0, #(3 << 20)                      /* CPACR_EL1.FPEN: no FP/SIMD traps */
    msr     cpacr_el1, x0
    isb
    ret

/*
 * EL2 (or EL3 preparing EL2) set up for a kernel that runs at EL1, with every register Linux's
 * init_el2_state (arch/arm64/include/asm/el2_setup.h) sets given the same known value, so that
 * nothing the firmware left there traps or changes what EL1 sees. Registers that exist only with
 * an extension are written only when the ID registers say the CPU has it. Clobbers x0-x2.
 */
init_el2:
    /*
     * HCR_EL2.RW: EL1 is AArch64; no traps, and SError, IRQ and FIQ go to EL1 (AMO, IMO, FMO
     * clear). EL2 runs the hyp stub from now on (Linux's hyp-stub.S: see hyp_stub.rs), not
     * whatever vectors the firmware left: an hvc from EL1 reaches the stub.
     */
    mov     x0, #(1 << 31)
    msr     hcr_el2, x0
    adrp    x0, __hyp_stub_vectors              /* physical: the MMU is off */
    add     x0, x0, :lo12:__hyp_stub_vectors
    msr     vbar_el2, x0
    isb
    mov     x0, #{sctlr_el2_mmu_off_lo}         /* SCTLR_EL2: RES1 bits, MMU off, little-endian */
    movk    x0, #{sctlr_el2_mmu_off_hi}, lsl #16
    msr     sctlr_el2, x0
    isb

    /* HCRX_EL2 (FEAT_HCX, ID_AA64MMFR1_EL1.HCX): nothing enabled that EL1 does not use. */
    mrs     x0, id_aa64mmfr1_el1
    ubfx    x0, x0, #40, #4
    cbz     x0, 1f
    msr     S3_4_C1_C2_2, xzr                   /* HCRX_EL2 */
1:
    /* Timers: EL1 may use the physical counter and timer; no virtual offset. */
    mov     x0, #3                              /* CNTHCTL_EL2.EL1PCTEN | EL1PCEN */
    msr     cnthctl_el2, x0
    msr     cntvoff_el2, xzr

    /*
     * MDCR_EL2: no debug or PMU traps to EL2, and EL1 owns every PMU counter (HPMN =
     * PMCR_EL0.N when there is an architected PMU); the statistical profiling buffer and the
     * trace buffer belong to EL1 when present (E2PB, E2TB = 0b11).
     */
    mrs     x1, id_aa64dfr0_el1
    mov     x0, xzr
    ubfx    x2, x1, #8, #4                      /* PMUVer: 0 none, 0xf IMPLEMENTATION DEFINED */
    cbz     x2, 2f
    cmp     x2, #0xf
    b.eq    2f
    mrs     x0, pmcr_el0
    ubfx    x0, x0, #11, #5                     /* PMCR_EL0.N */
2:  ubfx    x2, x1, #32, #4                     /* PMSVer: SPE */
    cbz     x2, 3f
    orr     x0, x0, #(3 << 12)                  /* E2PB */
3:  ubfx    x2, x1, #44, #4                     /* TraceBuffer: TRBE */
    cbz     x2, 4f
    orr     x0, x0, #(3 << 24)                  /* E2TB */
4:  msr     mdcr_el2, x0

    /* Branch record buffer (FEAT_BRBE): let EL1 record cycle counts and mispredicts. */
    ubfx    x2, x1, #52, #4
    cbz     x2, 5f
    mov     x0, #(1 << 3 | 1 << 4)              /* BRBCR_EL2.CC | MPRED */
    msr     S2_4_C9_C0_0, x0                    /* BRBCR_EL2 */
5:
    /* LORegions (FEAT_LOR): off. */
    mrs     x0, id_aa64mmfr1_el1
    ubfx    x0, x0, #16, #4
    cbz     x0, 6f
    msr     S3_0_C10_C4_3, xzr                  /* LORC_EL1 */
6:
    /* No stage-2 translation. */
    msr     vttbr_el2, xzr

    /* GICv3 system-register interface: let EL1 use it (ICC_SRE_EL2.SRE | Enable). */
    mrs     x0, id_aa64pfr0_el1
    ubfx    x0, x0, #24, #4
    cbz     x0, 7f
    mrs     x0, S3_4_C12_C9_5                   /* ICC_SRE_EL2 */
    orr     x0, x0, #1                          /* SRE */
    orr     x0, x0, #8                          /* Enable: EL1 may use its own ICC_SRE_EL1 */
    msr     S3_4_C12_C9_5, x0
    isb
    mrs     x0, S3_4_C12_C9_5                   /* if SRE stuck, the virtual interface is */
    tbz     x0, #0, 7f                          /* there: reset ICH_HCR_EL2 to defaults */
    msr     S3_4_C12_C11_0, xzr                 /* ICH_HCR_EL2 */
7:
    msr     hstr_el2, xzr                       /* no CP15 traps */
    mrs     x0, midr_el1                        /* EL1 reads the real IDs */
    msr     vpidr_el2, x0
    mrs     x0, mpidr_el1
    msr     vmpidr_el2, x0
    mov     x0, #0x33ff                         /* CPTR_EL2: RES1 bits, no FP/SIMD traps */
    msr     cptr_el2, x0

    /* Fine-grained traps (FEAT_FGT, FEAT_FGT2): none. */
    mrs     x0, id_aa64mmfr0_el1
    ubfx    x0, x0, #56, #4
    cbz     x0, 9f
    msr     S3_4_C3_C1_4, xzr                   /* HDFGRTR_EL2 */
    msr     S3_4_C3_C1_5, xzr                   /* HDFGWTR_EL2 */
    msr     S3_4_C1_C1_4, xzr                   /* HFGRTR_EL2 */
    msr     S3_4_C1_C1_5, xzr                   /* HFGWTR_EL2 */
    msr     S3_4_C1_C1_6, xzr                   /* HFGITR_EL2 */
    mrs     x1, id_aa64pfr0_el1                 /* HAFGRTR_EL2 exists with AMU only */
    ubfx    x1, x1, #44, #4
    cbz     x1, 8f
    msr     S3_4_C3_C1_6, xzr                   /* HAFGRTR_EL2 */
8:  cmp     x0, #2                              /* FGT2 */
    b.lt    9f
    msr     S3_4_C3_C1_0, xzr                   /* HDFGRTR2_EL2 */
    msr     S3_4_C3_C1_1, xzr                   /* HDFGWTR2_EL2 */
    msr     S3_4_C3_C1_2, xzr                   /* HFGRTR2_EL2 */
    msr     S3_4_C3_C1_3, xzr                   /* HFGWTR2_EL2 */
    msr     S3_4_C3_C1_7, xzr                   /* HFGITR2_EL2 */
9:  isb
    ret

/*
 * Data-cache maintenance `op` by VA over [x0, x1), to the point of coherency, a line at a time
 * (the smallest line, CTR_EL0.DminLine, so that no line is skipped), then dsb sy: Linux's
 * dcache_by_line_op. Clobbers x0, x2, x3.
 */
    .macro dcache_by_line op
    cmp     x0, x1
    b.hs    2f
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4                     /* DminLine: log2(words) */
    mov     x2, #4
    lsl     x2, x2, x3                          /* line size in bytes */
    sub     x3, x2, #1
    bic     x0, x0, x3
1:  dc      \op, x0
    add     x0, x0, x2
    cmp     x0, x1
    b.lo    1b
2:  dsb     sy
    .endm

/* Invalidate data cache lines [x0, x1) to the point of coherency. Clobbers x0, x2, x3. */
    .global dcache_inval_range
dcache_inval_range:
    dcache_by_line ivac
    ret

/*
 * Clean and invalidate data cache lines [x0, x1) to the point of coherency (efi.rs, before the
 * MMU goes off). Clobbers x0, x2, x3.
 */
    .global dcache_clean_inval_range
dcache_clean_inval_range:
    dcache_by_line civac
    ret

    .global park
park:
    wfe
    b       park

    .ltorg

/*
 * The identity-mapped page: code that runs at its physical address with the MMU on.
 */
    .section .idmap.text, "ax"

/*
 * __enable_mmu(x0 = &MmuConfig, physical; x1 = where to continue, a kernel virtual address).
 * Linux's __enable_mmu (head.S) with __cpu_setup's TLB invalidation: program the translation
 * registers, drop whatever the TLB holds from before (firmware, or reset: the architecture does
 * not promise an empty TLB), then set SCTLR_EL1.M/C/I. The `isb` after it makes the instructions
 * that follow fetch through the new translation: this page is identity-mapped, so they do. Then
 * branch to x1. Uses no stack and no memory but the MmuConfig.
 */
    .global __enable_mmu
__enable_mmu:
    ldp     x2, x3, [x0, #{mair}]
    msr     mair_el1, x2
    msr     tcr_el1, x3
    ldp     x2, x3, [x0, #{ttbr0}]
    msr     ttbr0_el1, x2
    msr     ttbr1_el1, x3
    ldr     x2, [x0, #{sctlr}]
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     sctlr_el1, x2
    isb
    /* As Linux's set_sctlr_el1: drop instructions fetched before the MMU went on. */
    ic      iallu
    dsb     nsh
    isb
    br      x1

/*
 * idmap_cpu_replace_ttbr1(x0 = new TTBR1, x1 = an empty table), as Linux's (proc.S), called
 * through its physical address with IRQs masked and TTBR0 holding the identity map. While TTBR1
 * points at the empty table, no kernel address translates and nothing can be cached for one;
 * the TLB is emptied in between. So no moment exists in which the TLB holds an old and a new
 * entry of different sizes for one address (a TLB conflict abort on real cores). Returns to the
 * kernel virtual address in x30, which translates through the new tables.
 */
    .global idmap_cpu_replace_ttbr1
idmap_cpu_replace_ttbr1:
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     ttbr1_el1, x0
    isb
    ret

    /*
     * Set by the first CPU through `_start`; any later one parks. Written with the MMU off, so it
     * is a plain word in .data (which the .bss clearing does not touch), not a Rust atomic.
     */
    .section .data
    .balign 8
boot_cpu_claimed:
    .quad   0
"#,
    text_offset = const super::image::TEXT_OFFSET,
    flags = const super::image::FLAGS,
    magic = const super::image::MAGIC,
    sctlr_el1_mmu_off_lo = const super::early::SCTLR_EL1_MMU_OFF & 0xffff,
    sctlr_el1_mmu_off_hi = const super::early::SCTLR_EL1_MMU_OFF >> 16,
    sctlr_el2_mmu_off_lo = const SCTLR_EL2_MMU_OFF & 0xffff,
    sctlr_el2_mmu_off_hi = const SCTLR_EL2_MMU_OFF >> 16,
    mair = const offset_of!(MmuConfig, mair),
    sctlr = const offset_of!(MmuConfig, sctlr),
    ttbr0 = const offset_of!(MmuConfig, ttbr0),
    stack_top = const offset_of!(SecondaryBoot, stack_top),
    exception_stack_top = const offset_of!(SecondaryBoot, exception_stack_top),
    percpu = const offset_of!(SecondaryBoot, percpu),
);

/// SCTLR_EL2 with the MMU and caches off, little-endian: its RES1 bits 4, 5, 11, 16, 18, 22, 23,
/// 28, 29 (Linux's `INIT_SCTLR_EL2_MMU_OFF`).
const SCTLR_EL2_MMU_OFF: u64 = 0x30c5_0830;

// `__enable_mmu` loads MAIR/TCR and TTBR0/TTBR1 in pairs, and reads SecondaryBoot's first five
// words as an MmuConfig (`MmuConfig::words` gives them in field order).
const _: () = {
    assert!(offset_of!(MmuConfig, mair) == 0);
    assert!(offset_of!(MmuConfig, tcr) == 8);
    assert!(offset_of!(MmuConfig, sctlr) == 16);
    assert!(offset_of!(MmuConfig, ttbr0) == 24);
    assert!(offset_of!(MmuConfig, ttbr1) == 32);
    assert!(core::mem::size_of::<MmuConfig>() == 40);
    assert!(offset_of!(SecondaryBoot, mmu) == 0);
};
