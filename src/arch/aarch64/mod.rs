//! Everything that names an Arm register or instruction.
//!
//! # Where the MMU, the caches and the TLB change state
//!
//! QEMU's TCG models no caches, no speculative table walks and no TLB conflicts, so a kernel can
//! pass every emulated test and still corrupt memory or hang on a Cortex-A72. Each point below is
//! where that could happen; it says what is done there and why, the way Linux's `head.S` does.
//! Comments elsewhere point here.
//!
//! 1. **Entry** (`boot::primary_entry`): MMU and D-cache off, as the boot protocol leaves them;
//!    from EL2, every register Linux's `init_el2_state` sets gets a known value (`boot::init_el2`;
//!    EL2 then runs the hyp stub, `hyp_stub`, with its MMU off), so nothing the firmware left
//!    traps EL1 or changes what it sees; then, at EL1, SCTLR_EL1 (MMU off) is written whatever
//!    the entry EL. Started by UEFI, the EFI stub (`efi::efi_enter_kernel`, Linux 5.10's) gets
//!    there the same way: every exception masked, the image and the device tree cleaned and
//!    invalidated to the point of coherency by VA, `ic iallu`, then SCTLR_ELx.M and .C cleared at
//!    the firmware's EL (`isb` before and after), and on to the entry with x0 = the device tree.
//! 2. **`.bss`**: `dc ivac` over it first (a line the loader left would be what a cacheable read
//!    finds later), then zeroed with the MMU off, which writes memory directly.
//! 3. **Early tables** (`early::early_map_kernel`, MMU off): the identity map holds one page,
//!    `.idmap.text`; TTBR1 the image (W^X) and an early linear window of exactly the boot frames
//!    and the device tree. Nothing that is not RAM is mapped, so no speculative fetch can reach a
//!    device or a secure carve-out. Then `dmb sy` and `dc ivac` over all of `.bss` once more
//!    (Linux invalidates its early tables in `create_idmap`): the zeroes, the tables and the
//!    MmuConfig went to memory, and the walker and the CPU read them through the caches.
//! 4. **MMU on** (`boot::__enable_mmu`, in `.idmap.text`): MAIR, TCR, TTBR0/1, `tlbi vmalle1;
//!    dsb nsh; isb` (the TLB is not promised empty out of reset or firmware), then SCTLR_EL1.M/C/I
//!    and `isb`, then `ic iallu; dsb nsh; isb` as Linux's `set_sctlr_el1`; the next instruction
//!    fetches through the identity map, then branches to the kernel's virtual address. No stack
//!    is touched while this happens.
//! 5. **TTBR1 to init_mm** (`mmu::replace_ttbr1` → `boot::idmap_cpu_replace_ttbr1`, Linux's
//!    `cpu_replace_ttbr1`): `dsb ishst` so the walker sees the new tables, every exception
//!    masked, then from the identity map: TTBR1 = an empty table, `isb; tlbi vmalle1; dsb nsh;
//!    isb`, TTBR1 = init_mm, `isb`. The early window maps with pages where init_mm has blocks; at
//!    no moment can the TLB hold both sizes for one address (a TLB conflict abort on real cores).
//!    Then TTBR0 walks stop (`mmu::disable_ttbr0_walks`, with a local TLB flush).
//! 6. **Secondary entry** (`boot::secondary_entry`): like 1 and 4, but with no stack at all
//!    until the MMU is on (a stack written with the MMU off goes to memory, and is read back
//!    through the caches, where the previous CPU's stale line for the same address would win).
//!    What it reads with the MMU off (`boot::SecondaryBoot`) the boot CPU cleaned to the point of
//!    coherency (`dc cvac; dsb sy`). It starts with TTBR1 = init_mm, so step 5 is not needed.
//! 7. **Spin-table release** (`cpu_boot::cpu_boot`): the entry address is written to the release
//!    word, `dc civac` pushes it to memory (the waiting CPU polls with caches off), `dsb sy`, then
//!    `sev` wakes it: Linux's `smp_spin_table_cpu_prepare`.
//! 8. **Table publish** (`mm::pgalloc`): a new table is zeroed, `dsb ishst` (the zeroes reach
//!    every walker first), then one Release store of the descriptor under the page-table lock,
//!    `dsb ishst; isb` (Linux's `set_pmd`, which a speculative walk made necessary). A leaf is one
//!    Release store; `map_range` ends with `dsb ishst; isb` before the address is handed out.
//!    Another CPU learning the address through an Acquire load may still walk the old invalid
//!    entry on Armv8.0 (no FEAT_ETS2): `exceptions::handle_sync` retries such spurious
//!    translation faults after `at s1e1r` (Linux's `is_spurious_el1_translation_fault`).
//! 9. **Unmap** (`mm::mapping::InitMm::unmap_range`): clear the leaves, `dsb ishst`, broadcast
//!    `tlbi vaale1is` per leaf (or `vmalle1is` above `TLBI_MAX_OPS`), `dsb ish; isb`; only then is
//!    the virtual range (and what it mapped) given back.
//! 10. **Promotion to a block** (`mm::mapping`, `free_table`): the old tables are taken out
//!     bottom-up, each entry cleared and its `dsb ishst; tlbi vaae1is; dsb ish; isb` completed
//!     while the entry above still points at valid tables, each table freed only after that
//!     (Linux's `pud_free_pmd_page`/`pmd_free_pte_page`); then the block, `dsb ishst; isb`.
//! 11. **Reclaim** of empty tables (`mm::mapping::InitMm::reclaim_empty_tables`): the same
//!     `free_table`, under quiescence.
//! 12. **Waiting for another CPU** (`event`): `dsb ishst` before every `sev`, or a wait on the
//!     exclusive monitor; the timer's event stream on every CPU as the backstop.
//!
//! # Exception masks
//!
//! An SError (an asynchronous external abort: a device block that is not clocked, an access the
//! interconnect refused after the instruction retired) is taken only while PSTATE.A is clear, so
//! when and where it is unmasked decides whether one is ever reported. All of it goes through
//! `daif`, in Linux's named states:
//!
//! - **Entry** (`boot::el_drop`): `msr daifset, #0xf` first, whatever the loader left (Linux's
//!   `init_kernel_el`), and MDSCR_EL1 reset (Linux's `__cpu_setup`), so that no debug exception
//!   the firmware armed fires once Debug is unmasked. All four stay masked through the `.bss`
//!   clearing, the early tables and the MMU switch (1-4, 6): no vector is installed yet.
//! - **Vectors, then unmask**: `primary_high` and `secondary_high` set VBAR_EL1 and SP_EL1 before
//!   any Rust code runs. Debug and SError are unmasked (`DAIF_PROCCTX_NOIRQ`) on the boot CPU
//!   right after its console comes up (Linux's `setup_arch`; one raised earlier is held pending
//!   until then), on a secondary first thing in `secondary_main` (Linux's
//!   `secondary_start_kernel`); IRQs after the GIC's CPU interface and the timer tick are set up.
//! - **Masked again**: across the TTBR1 switch (5, `local_daif_save`/`local_daif_restore`, as
//!   Linux's `cpu_replace_ttbr1`), on exception entry (by the hardware), and for good on a
//!   stopped CPU (Linux's `local_cpu_stop`).
//! - **Reported**: `exceptions` decodes an SError's syndrome (`esr::SError`) and ends the run
//!   with the panic status, as for an unhandled synchronous fault.

pub mod daif;
pub mod esr;
pub mod image;
pub mod mair;

#[cfg(target_os = "none")]
pub mod cpu_boot;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod cache;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod early;
#[cfg(target_os = "none")]
pub mod efi;
#[cfg(target_os = "none")]
pub mod event;
#[cfg(target_os = "none")]
pub mod exceptions;
#[cfg(target_os = "none")]
pub mod gic_sysregs;
#[cfg(target_os = "none")]
pub mod hyp_stub;
#[cfg(target_os = "none")]
pub mod mmu;
#[cfg(target_os = "none")]
pub mod psci;
#[cfg(target_os = "none")]
pub mod semihosting;
#[cfg(target_os = "none")]
pub mod timer_regs;
