//! Boot entry: the arm64 Image header, the exception-level drop, and the jump into the kernel's
//! upper-half mapping.
//!
//! The boot loader (QEMU, the Raspberry Pi firmware, U-Boot) follows the Linux arm64 boot protocol:
//! it loads the flat Image at a 4 KiB-aligned physical address, enters `_start` with the MMU off,
//! x0 = physical address of the device tree, at EL3, EL2 or EL1. Until `early::enable_mmu` returns,
//! everything here runs at that physical address, so it uses only PC-relative addressing
//! (`adr`/`adrp`); absolute addresses (`ldr xN, =sym`) are used only after the MMU is on.
//!
//! Stacks: kernel code runs on SP_EL0 ("EL1t"); every exception switches to SP_EL1, a per-CPU
//! exception stack. A kernel stack overflow therefore still has a good stack to report itself on.

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* Linux arm64 Image header (Documentation/arch/arm64/booting.rst). */
    b       primary_entry           /* code0: branch past the header */
    .long   0                       /* code1 */
    .quad   {text_offset}           /* text_offset: load at a 2 MiB-aligned base + 0 */
    .quad   __image_size            /* image_size, including .bss */
    .quad   {flags}                 /* flags: little-endian, 4 KiB pages, anywhere in RAM */
    .quad   0                       /* res2 */
    .quad   0                       /* res3 */
    .quad   0                       /* res4 */
    .long   {magic}                 /* magic: "ARM\x64" */
    .long   0                       /* res5 (PE header offset) */

    .section .text.boot, "ax"
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

    bl      el_drop                 /* x20: the EL we were entered at; now at EL1 */

    /* Invalidate then clear .bss (MMU and caches are off: the loader may have left stale lines). */
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

    /* Physical boot stack (the boot stack is in .bss) and the image's load address. */
    adrp    x0, __boot_stack_top
    add     x0, x0, :lo12:__boot_stack_top
    mov     sp, x0
    adrp    x21, __image_start      /* x21: physical load address of the image */

    /* Build the early tables and turn on the MMU; returns still at the physical address. */
    mov     x0, x21
    mov     x1, x19
    bl      early_enable_mmu

    ldr     x0, =primary_high
    br      x0

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
 * physical address. The boot CPU has filled SECONDARY_BOOT (see smp::bringup) and cleaned it to
 * the point of coherency, so it reads correctly with caches off; CPUs are started one at a time.
 */
    .global secondary_entry
secondary_entry:
    bl      el_drop                 /* x20: entry EL */
    adrp    x19, SECONDARY_BOOT
    add     x19, x19, :lo12:SECONDARY_BOOT
    ldr     x0, [x19, #0]           /* TTBR0: the boot identity map */
    ldr     x1, [x19, #8]           /* TTBR1: init_mm's pgd, the same tables as every CPU */
    adrp    x2, __secondary_boot_stack_top  /* for enable_mmu_for_secondary (one CPU at a time) */
    add     x2, x2, :lo12:__secondary_boot_stack_top
    mov     sp, x2
    bl      enable_mmu_for_secondary
    ldr     x0, =secondary_high
    br      x0

secondary_high:
    ldr     x19, =SECONDARY_BOOT
    msr     spsel, #1
    ldr     x0, [x19, #24]          /* exception stack top */
    mov     sp, x0
    msr     spsel, #0
    ldr     x0, [x19, #16]          /* kernel stack top */
    mov     sp, x0
    ldr     x0, =exception_vectors
    msr     vbar_el1, x0
    isb
    ldr     x0, [x19, #32]          /* per-CPU data */
    msr     tpidr_el1, x0
    mov     x29, xzr
    mov     x30, xzr
    mov     x0, x20
    bl      secondary_main
    b       park

/*
 * Drop to EL1 from EL3 or EL2, returning in x20 the EL we were entered at.
 * Clobbers x0-x1. On return: EL1, AArch64, FP/SIMD usable, DAIF masked.
 */
    .global el_drop
el_drop:
    mrs     x20, CurrentEL
    ubfx    x20, x20, #2, #2
    cmp     x20, #3
    b.eq    1f
    cmp     x20, #2
    b.eq    2f
    b       3f

1:  /* EL3: lower levels are non-secure AArch64, HVC allowed; then set EL2 up as below. */
    mov     x0, #(1 << 10 | 1 << 8 | 1 << 0)    /* SCR_EL3.RW | HCE | NS */
    msr     scr_el3, x0
    mov     x1, x30
    bl      el2_setup
    mov     x30, x1
    mov     x0, #0x3c5                          /* EL1h, DAIF masked */
    msr     spsr_el3, x0
    adr     x0, 3f
    msr     elr_el3, x0
    eret

2:  mov     x1, x30
    bl      el2_setup
    mov     x30, x1
    mov     x0, #0x3c5
    msr     spsr_el2, x0
    adr     x0, 3f
    msr     elr_el2, x0
    eret

3:  /* EL1 */
    mov     x0, #(3 << 20)                      /* CPACR_EL1.FPEN: no FP/SIMD traps */
    msr     cpacr_el1, x0
    isb
    ret

/* EL2 (or EL3 preparing EL2) configuration for a non-virtualised EL1. */
el2_setup:
    mov     x0, #(1 << 31)                      /* HCR_EL2.RW: EL1 is AArch64 */
    msr     hcr_el2, x0
    mrs     x0, cnthctl_el2
    orr     x0, x0, #3                          /* EL1PCTEN | EL1PCEN: counter and timer at EL1 */
    msr     cnthctl_el2, x0
    msr     cntvoff_el2, xzr
    mov     x0, #0x33ff                         /* CPTR_EL2: RES1 bits, TFP = 0 (no FP traps) */
    msr     cptr_el2, x0
    msr     hstr_el2, xzr
    mrs     x0, midr_el1                        /* EL1 reads the real IDs */
    msr     vpidr_el2, x0
    mrs     x0, mpidr_el1
    msr     vmpidr_el2, x0
    /* GICv3 system-register interface: let EL1 use it (ICC_SRE_EL2.SRE | Enable). */
    mrs     x0, id_aa64pfr0_el1
    ubfx    x0, x0, #24, #4
    cbz     x0, 4f
    mrs     x0, S3_4_C12_C9_5                   /* ICC_SRE_EL2 */
    orr     x0, x0, #1                          /* SRE */
    orr     x0, x0, #8                          /* Enable: EL1 may use its own ICC_SRE_EL1 */
    msr     S3_4_C12_C9_5, x0
    isb
4:  ldr     x0, =0x30d00800                     /* SCTLR_EL1: RES1 bits, MMU and caches off */
    msr     sctlr_el1, x0
    ret

/* Invalidate data cache lines [x0, x1) to the point of coherency. Clobbers x0, x2, x3. */
    .global dcache_inval_range
dcache_inval_range:
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4                     /* DminLine: log2(words) */
    mov     x2, #4
    lsl     x2, x2, x3                          /* line size in bytes */
    sub     x3, x2, #1
    bic     x0, x0, x3
1:  dc      ivac, x0
    add     x0, x0, x2
    cmp     x0, x1
    b.lo    1b
    dsb     sy
    ret

    .global park
park:
    wfe
    b       park

    .ltorg

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
);
