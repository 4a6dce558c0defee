//! The first translation tables: just enough to run the kernel at its linked (upper-half) address.
//!
//! `early_enable_mmu` runs with the MMU off, at whatever physical address the loader chose, so it
//! must be position-independent: it reaches statics and linker symbols only PC-relatively (which
//! is how the static relocation model addresses them), never follows a stored pointer, and cannot
//! panic (a panic's location is an absolute pointer). Every table write is an aligned 64-bit store,
//! as required while data accesses are Device-nGnRnE.
//!
//! It maps, in tables that live in `.bss`:
//! - TTBR0: an identity map of the (up to two) 1 GiB blocks holding the image, so the instruction
//!   after `SCTLR_EL1.M` is set still fetches, and secondaries can do the same later;
//! - TTBR1: the image at `KIMAGE_VADDR` with 4 KiB pages and W^X per section, guard pages left out;
//! - TTBR1: an *early linear window*: the 1 GiB blocks of the linear map that hold the image and the
//!   device tree, which is all `mm::init` touches before it switches to `init_mm`.
//!
//! `mm::init` then builds `init_mm` with the real table allocators and switches TTBR1 to it; these
//! tables stay only as the identity map that CPUs coming up use for their first instructions.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::{
    asm::barrier,
    registers::{
        ID_AA64MMFR0_EL1, MAIR_EL1, ReadWriteable, Readable, SCTLR_EL1, TCR_EL1, TTBR0_EL1,
        TTBR1_EL1, Writeable,
    },
};

use crate::mm::layout::{GIB, KIMAGE_VADDR, PAGE_OFFSET, PAGE_SIZE, image_layout};

/// Raw descriptor bits used before the typed page-table code may run (it can panic, which this
/// code must not). They agree with `mm::pgtable`; `tests` checks that.
mod bits {
    pub const VALID: u64 = 1 << 0;
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    pub const ATTR_NORMAL: u64 = 0 << 2; // MAIR index 0
    pub const AP_RO: u64 = 1 << 7; // AP[2]: read-only at EL1
    pub const SH_INNER: u64 = 3 << 8;
    pub const AF: u64 = 1 << 10;
    pub const PXN: u64 = 1 << 53;
    pub const UXN: u64 = 1 << 54;
    pub const NORMAL_BLOCK: u64 = VALID | ATTR_NORMAL | SH_INNER | AF;
    pub const NORMAL_PAGE: u64 = VALID | TABLE_OR_PAGE | ATTR_NORMAL | SH_INNER | AF;
    pub const TABLE: u64 = VALID | TABLE_OR_PAGE;
}

const ENTRIES: usize = 512;
/// Page tables for the kernel image: 4 KiB pages for up to 8 MiB (the linker script checks it).
const IMAGE_PTE_TABLES: usize = 4;

#[repr(C, align(4096))]
struct Table([AtomicU64; ENTRIES]);

#[repr(C)]
struct EarlyTables {
    id_pgd: Table,
    id_pud: Table,
    pgd: Table,
    linear_pud: Table,
    image_pud: Table,
    image_pmd: Table,
    image_pte: [Table; IMAGE_PTE_TABLES],
}

const fn empty() -> Table {
    Table([const { AtomicU64::new(0) }; ENTRIES])
}

/// In `.bss`: zeroed by the entry code before `early_enable_mmu` runs.
static EARLY: EarlyTables = EarlyTables {
    id_pgd: empty(),
    id_pud: empty(),
    pgd: empty(),
    linear_pud: empty(),
    image_pud: empty(),
    image_pmd: empty(),
    image_pte: [empty(), empty(), empty(), empty()],
};

fn set(table: &Table, index: usize, desc: u64) {
    // Indices below are computed from addresses masked to 9 bits, so `& (ENTRIES - 1)` never
    // changes them; it lets the compiler drop the bounds check (and its panic path).
    table.0[index & (ENTRIES - 1)].store(desc, Ordering::Relaxed);
}

fn pa_of(table: &Table) -> u64 {
    table as *const Table as u64
}

const fn idx(va: u64, shift: u32) -> usize {
    ((va >> shift) & 0x1ff) as usize
}

/// The MAIR_EL1 value every CPU uses; indices are `mm::pgtable::MemType`'s.
pub fn mair_value() -> u64 {
    (MAIR_EL1::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
        + MAIR_EL1::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
        + MAIR_EL1::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck
        + MAIR_EL1::Attr2_Normal_Outer::NonCacheable
        + MAIR_EL1::Attr2_Normal_Inner::NonCacheable
        + MAIR_EL1::Attr3_Device::nonGathering_nonReordering_noEarlyWriteAck)
        .value
}

/// Program MAIR, TCR (48-bit VAs in both halves, 4 KiB granule, write-back inner-shareable walks,
/// physical address size as the CPU reports), TTBR0/1, then turn on the MMU and caches.
///
/// # Safety
/// `ttbr0`/`ttbr1` must hold tables that map the code executing this function and everything
/// the caller touches afterwards.
pub unsafe fn enable_mmu(ttbr0: u64, ttbr1: u64) {
    MAIR_EL1.set(mair_value());
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(5); // 5 = 48 bits
    TCR_EL1.write(
        TCR_EL1::TBI0::Used
            + TCR_EL1::TBI1::Used
            + TCR_EL1::A1::TTBR0
            + TCR_EL1::IPS.val(pa_range)
            + TCR_EL1::TG1::KiB_4
            + TCR_EL1::SH1::Inner
            + TCR_EL1::ORGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::IRGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::EPD1::EnableTTBR1Walks
            + TCR_EL1::T1SZ.val(16)
            + TCR_EL1::TG0::KiB_4
            + TCR_EL1::SH0::Inner
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::EPD0::EnableTTBR0Walks
            + TCR_EL1::T0SZ.val(16),
    );
    TTBR0_EL1.set(ttbr0);
    TTBR1_EL1.set(ttbr1);
    barrier::dsb(barrier::ISH);
    // SAFETY: invalidating the local TLB has no memory-safety effect.
    unsafe { core::arch::asm!("tlbi vmalle1", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::NSH);
    barrier::isb(barrier::SY);
    SCTLR_EL1.modify(
        SCTLR_EL1::M::Enable
            + SCTLR_EL1::C::Cacheable
            + SCTLR_EL1::I::Cacheable
            + SCTLR_EL1::SA::Enable,
    );
    barrier::isb(barrier::SY);
}

/// Turn the MMU on for a secondary CPU, with the same MAIR/TCR as the boot CPU. Runs at the
/// physical address (PC-relative only), like `early_enable_mmu`.
#[unsafe(no_mangle)]
extern "C" fn enable_mmu_for_secondary(ttbr0: u64, ttbr1: u64) {
    // SAFETY: `ttbr0` is the boot identity map (maps this code), `ttbr1` is init_mm, which maps
    // the whole kernel; both were prepared by the boot CPU (see smp::bringup).
    unsafe { enable_mmu(ttbr0, ttbr1) };
}

/// Physical address of the identity-map table that CPUs use while turning their MMU on.
pub fn idmap_ttbr0() -> u64 {
    crate::mm::layout::kimage_to_phys(pa_of(&EARLY.id_pgd))
}

/// The 1 GiB physical blocks the early linear window covers, as `[start, end)`.
pub fn early_window(phys_base: u64, dtb: u64) -> [(u64, u64); 2] {
    let g = |pa: u64| {
        let b = pa & !(GIB - 1);
        if pa < ENTRIES as u64 * GIB {
            (b, b + GIB)
        } else {
            (0, 0)
        }
    };
    [g(phys_base), g(dtb)]
}

/// Build the early tables and enable the MMU. Called from `primary_entry` with the MMU off.
#[unsafe(no_mangle)]
extern "C" fn early_enable_mmu(phys_base: u64, dtb: u64) {
    let t = &EARLY;

    // TTBR0: identity map of the image's gigabyte and the next one.
    set(
        &t.id_pgd,
        idx(phys_base, 39),
        pa_of(&t.id_pud) | bits::TABLE,
    );
    let gib = phys_base & !(GIB - 1);
    set(&t.id_pud, idx(gib, 30), gib | bits::NORMAL_BLOCK);
    if idx(gib + GIB, 30) != 0 {
        set(
            &t.id_pud,
            idx(gib + GIB, 30),
            (gib + GIB) | bits::NORMAL_BLOCK,
        );
    }

    // TTBR1: the early linear window (execute-never).
    set(
        &t.pgd,
        idx(PAGE_OFFSET, 39),
        pa_of(&t.linear_pud) | bits::TABLE,
    );
    for (start, end) in early_window(phys_base, dtb) {
        if end > start {
            set(
                &t.linear_pud,
                idx(start, 30),
                start | bits::NORMAL_BLOCK | bits::PXN | bits::UXN,
            );
        }
    }

    // TTBR1: the kernel image at KIMAGE_VADDR, page by page, W^X.
    set(
        &t.pgd,
        idx(KIMAGE_VADDR, 39),
        pa_of(&t.image_pud) | bits::TABLE,
    );
    set(
        &t.image_pud,
        idx(KIMAGE_VADDR, 30),
        pa_of(&t.image_pmd) | bits::TABLE,
    );
    let img = image_layout();
    let (start, text_end, rodata_end, end) = (img.start, img.text_end, img.rodata_end, img.end);
    let guards = [img.boot_stack_guard, img.boot_exception_stack_guard];
    let mut i = 0;
    while i < IMAGE_PTE_TABLES {
        let pte = &t.image_pte[i & (IMAGE_PTE_TABLES - 1)];
        set(
            &t.image_pmd,
            idx(KIMAGE_VADDR, 21) + i,
            pa_of(pte) | bits::TABLE,
        );
        i += 1;
    }
    let mut pa = start;
    while pa < end {
        let off = pa - start;
        let perm = if pa < text_end {
            bits::AP_RO | bits::UXN
        } else if pa < rodata_end {
            bits::AP_RO | bits::PXN | bits::UXN
        } else {
            bits::PXN | bits::UXN
        };
        if pa != guards[0] && pa != guards[1] {
            let pte = &t.image_pte[((off >> 21) as usize) & (IMAGE_PTE_TABLES - 1)];
            set(
                pte,
                idx(KIMAGE_VADDR + off, 12),
                pa | bits::NORMAL_PAGE | perm,
            );
        }
        pa += PAGE_SIZE as u64;
    }

    barrier::dsb(barrier::SY);
    // SAFETY: the tables just built map this code (identity) and the whole image (TTBR1), which
    // is all that runs until `mm::init` switches to init_mm.
    unsafe { enable_mmu(pa_of(&t.id_pgd), pa_of(&t.pgd)) };
}
