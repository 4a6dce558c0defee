//! The first translation tables: just enough to run the kernel at its linked (upper-half) address
//! and to build `init_mm`, and nothing that is not known to be RAM.
//!
//! `early_map_kernel` runs with the MMU off, at whatever physical address the loader chose, so it
//! must be position-independent: it reaches statics and linker symbols only PC-relatively (which
//! is how the static relocation model addresses them), never follows a stored pointer, and cannot
//! panic (a panic's location is an absolute pointer). Every table write is an aligned 64-bit store,
//! as required while data accesses are Device-nGnRnE.
//!
//! It maps, page by page, in tables that live in `.bss`:
//! - TTBR0, the identity map: only `.idmap.text`, the page holding `__enable_mmu` and
//!   `idmap_cpu_replace_ttbr1` (read-only, executable). Not whole gigabytes: whatever else shares
//!   them may be a device, or memory a secure world owns, and a cacheable mapping invites the CPU
//!   to fetch from it speculatively;
//! - TTBR1: the image at `KIMAGE_VADDR`, W^X per section, the boot stacks' guard pages left out;
//! - TTBR1, the *early linear window* (linear-map addresses): the boot frames ([`boot_frames`],
//!   inside the image, from which `mm::boot` builds `init_mm` and the heap grows until then) and
//!   the device tree the loader passed, as much as its `totalsize` says (only its header when
//!   that is more than 2 MiB), or two pages of whatever else x0 points at (an ATAG list). Both
//!   are RAM by construction: the image is, and the boot protocol puts the device tree in RAM.
//!
//! `mm::boot` then builds `init_mm` and moves TTBR1 to it through the identity map
//! (`mmu::replace_ttbr1`); these tables stay only as the identity map that starting CPUs use.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, Readable, SCTLR_EL1, TCR_EL1};

use crate::kimage::image_layout;
use crate::mm::layout::{KIMAGE_VADDR, PAGE_OFFSET, PAGE_SIZE};

/// Raw descriptor bits used before the typed page-table code may run (it can panic, which this
/// code must not). They agree with `mm::pgtable`.
mod bits {
    pub const VALID: u64 = 1 << 0;
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    pub const ATTR_NORMAL: u64 = 0 << 2; // MAIR index 0
    pub const AP_RO: u64 = 1 << 7; // AP[2]: read-only at EL1
    pub const SH_INNER: u64 = 3 << 8;
    pub const AF: u64 = 1 << 10;
    pub const PXN: u64 = 1 << 53;
    pub const UXN: u64 = 1 << 54;
    pub const NORMAL_PAGE: u64 = VALID | TABLE_OR_PAGE | ATTR_NORMAL | SH_INNER | AF;
    pub const TABLE: u64 = VALID | TABLE_OR_PAGE;
    pub const ADDR: u64 = 0x0000_ffff_ffff_f000;
}

/// SCTLR_EL1 with the MMU and caches off: the RES1 bits of Armv8.0 (11, 20, 22, 23, 28, 29),
/// little-endian. `el_drop` writes it at every entry EL.
pub const SCTLR_EL1_MMU_OFF: u64 = 0x30d0_0800;

/// The largest device tree mapped early (Linux's `MAX_FDT_SIZE`).
pub const MAX_FDT_SIZE: u64 = 2 << 20;
/// What is mapped at x0 when it points at no device tree (an ATAG list, say): two pages, so a
/// 4 KiB read from any offset stays inside.
const LOADER_DATA_SIZE: u64 = 2 * PAGE_SIZE as u64;
const FDT_MAGIC: u32 = 0xd00d_feed;

const ENTRIES: usize = 512;

/// Tables the early mapping may need beyond the two roots, in the worst case: the identity page
/// (pud, pmd, pte: 3), the image (pud, pmd and 4 pte tables for its at most 8 MiB, which the
/// linker script checks: 6), and in the linear window the boot frames and the device tree (each
/// at most 2 MiB, so each may straddle a 2 MiB, a 1 GiB and a 512 GiB boundary: 2 pte, 2 pmd and
/// 2 pud tables each: 12).
const POOL: usize = 3 + 6 + 12;

#[repr(C, align(4096))]
struct Table([AtomicU64; ENTRIES]);

/// Everything `early_map_kernel` writes with the MMU off, in one place, so that it can be
/// invalidated from the caches in one go before anything reads it with the MMU on.
#[repr(C)]
struct Early {
    id_pgd: Table,
    pgd: Table,
    pool: [Table; POOL],
    /// The boot CPU's MMU configuration, read by `__enable_mmu`.
    mmu: MmuConfig,
    /// Where the loader's device tree (or data) is mapped: physical start, bytes mapped, and the
    /// device tree's own `totalsize` (0 when x0 points at no device tree).
    fdt: [AtomicU64; 3],
    /// Tables taken from `pool`, and whether a mapping was dropped for want of one.
    used: AtomicU64,
    overflow: AtomicU64,
}

const fn empty() -> Table {
    Table([const { AtomicU64::new(0) }; ENTRIES])
}

/// In `.bss`: zeroed by the entry code before `early_map_kernel` runs.
static EARLY: Early = Early {
    id_pgd: empty(),
    pgd: empty(),
    pool: [const { empty() }; POOL],
    mmu: MmuConfig::zero(),
    fdt: [const { AtomicU64::new(0) }; 3],
    used: AtomicU64::new(0),
    overflow: AtomicU64::new(0),
};

/// An empty table for TTBR1 while it is being replaced (Linux's `reserved_pg_dir`): in `.bss`,
/// zero, never written.
static RESERVED_PG_DIR: Table = empty();

/// Physical address of the empty table (see `RESERVED_PG_DIR`).
pub fn reserved_pg_dir() -> u64 {
    crate::kimage::kimage_to_phys(crate::mm::addr::VirtAddr(pa_of(&RESERVED_PG_DIR) as usize)).0
}

/// Frames for building `init_mm` before the linear map exists (see [`boot_frames`]).
const BOOT_FRAMES: usize = 64;

#[repr(C, align(4096))]
struct BootFrames(UnsafeCell<[[u8; PAGE_SIZE]; BOOT_FRAMES]>);

// SAFETY: no Rust code ever reads or writes through this static: only its address is taken
// (`boot_frames`), and the frames are then owned by the frame allocator.
unsafe impl Sync for BootFrames {}

/// In `.bss`, so zero and not part of the Image file.
static BOOT_FRAMES_AREA: BootFrames = BootFrames(UnsafeCell::new([[0; PAGE_SIZE]; BOOT_FRAMES]));

/// The boot frames, `(physical start, bytes)`: 256 KiB inside the image that the early linear
/// window maps, so that `mm::boot` can allocate `init_mm`'s first tables (and the heap can grow)
/// before the linear map exists. `mm::boot` gives them to the frame allocator first.
pub fn boot_frames() -> (u64, u64) {
    let va = &raw const BOOT_FRAMES_AREA as u64;
    (
        crate::kimage::kimage_to_phys(crate::mm::addr::VirtAddr(va as usize)).0,
        (BOOT_FRAMES * PAGE_SIZE) as u64,
    )
}

fn set(table: &Table, index: usize, desc: u64) {
    if let Some(slot) = table.0.get(index) {
        slot.store(desc, Ordering::Relaxed);
    }
}

fn pa_of(table: &Table) -> u64 {
    table as *const Table as u64
}

const fn idx(va: u64, shift: u32) -> usize {
    ((va >> shift) & 0x1ff) as usize
}

/// The pool table at physical address `pa` (only ever one of ours: the early tables point at
/// nothing else), found by arithmetic on the pool's own address rather than by following `pa`.
fn pool_table(pa: u64) -> Option<&'static Table> {
    let first = pa_of(&EARLY.pool[0]);
    let i = pa.checked_sub(first)? / PAGE_SIZE as u64;
    EARLY.pool.get(usize::try_from(i).ok()?)
}

/// The pte table that maps `va` under `root`, with the tables on the way taken from the pool.
fn pte_table(root: &'static Table, va: u64) -> Option<&'static Table> {
    let mut t = root;
    for shift in [39, 30, 21] {
        let i = idx(va, shift);
        let d = t.0.get(i)?.load(Ordering::Relaxed);
        t = if d & bits::VALID != 0 {
            pool_table(d & bits::ADDR)?
        } else {
            let n = EARLY.used.load(Ordering::Relaxed);
            let next = EARLY.pool.get(n as usize)?;
            EARLY.used.store(n + 1, Ordering::Relaxed);
            set(t, i, pa_of(next) | bits::TABLE);
            next
        };
    }
    Some(t)
}

/// Map the pages `[va, va + len)` to `[pa, ...)` with `attrs` (page descriptor bits).
fn map_pages(root: &'static Table, va: u64, pa: u64, len: u64, attrs: u64) {
    // Wrapping arithmetic throughout this file: no overflow check, so no panic path, in code
    // that must not panic.
    let mut off = 0u64;
    while off < len {
        let (v, p) = (va.wrapping_add(off), pa.wrapping_add(off));
        match pte_table(root, v) {
            Some(pte) => set(pte, idx(v, 12), p | bits::NORMAL_PAGE | attrs),
            None => EARLY.overflow.store(1, Ordering::Relaxed),
        }
        off = off.wrapping_add(PAGE_SIZE as u64);
    }
}

/// The values `__enable_mmu` programs: MAIR, TCR, SCTLR (MMU on), TTBR0, TTBR1, in this order
/// (the assembly reads them by offset; `arch::aarch64::boot` checks the layout).
#[repr(C)]
pub struct MmuConfig {
    /// MAIR_EL1: the memory types the descriptors' attribute indices select.
    pub mair: AtomicU64,
    /// TCR_EL1: the translation regime (VA sizes, granule, walk cacheability, PA size).
    pub tcr: AtomicU64,
    /// SCTLR_EL1: with the MMU and caches enabled.
    pub sctlr: AtomicU64,
    /// TTBR0_EL1: the physical address of the lower half's root table.
    pub ttbr0: AtomicU64,
    /// TTBR1_EL1: the physical address of the kernel (upper) half's root table.
    pub ttbr1: AtomicU64,
}

impl MmuConfig {
    const fn zero() -> MmuConfig {
        MmuConfig {
            mair: AtomicU64::new(0),
            tcr: AtomicU64::new(0),
            sctlr: AtomicU64::new(0),
            ttbr0: AtomicU64::new(0),
            ttbr1: AtomicU64::new(0),
        }
    }

    /// The configuration every CPU uses, with `ttbr0` and `ttbr1` as the table roots: MAIR with
    /// `mm::pgtable::MemType`'s indices; TCR with 48-bit VAs in both halves, 4 KiB granule,
    /// write-back inner-shareable walks, the physical address size the CPU reports; SCTLR with
    /// the MMU, caches and SP alignment checking on.
    pub fn new(ttbr0: u64, ttbr1: u64) -> Self {
        let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(5); // 5 = 48 bits
        let tcr = TCR_EL1::TBI0::Used
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
            + TCR_EL1::T0SZ.val(16);
        let sctlr = SCTLR_EL1::M::Enable
            + SCTLR_EL1::C::Cacheable
            + SCTLR_EL1::I::Cacheable
            + SCTLR_EL1::SA::Enable;
        MmuConfig {
            mair: AtomicU64::new(mair_value()),
            tcr: AtomicU64::new(tcr.value),
            sctlr: AtomicU64::new(SCTLR_EL1_MMU_OFF | sctlr.value),
            ttbr0: AtomicU64::new(ttbr0),
            ttbr1: AtomicU64::new(ttbr1),
        }
    }

    /// The five values, in field order.
    pub fn words(&self) -> [u64; 5] {
        [&self.mair, &self.tcr, &self.sctlr, &self.ttbr0, &self.ttbr1]
            .map(|w| w.load(Ordering::Relaxed))
    }
}

/// The MAIR_EL1 value every CPU uses: the one the descriptors' attribute indices were made
/// for (`mm::pgtable`; `arch::aarch64::mair` checks it field by field).
pub fn mair_value() -> u64 {
    crate::mm::pgtable::MAIR_EL1_VALUE
}

/// Physical address of the identity-map root, TTBR0 of every CPU while it turns its MMU on.
pub fn idmap_ttbr0() -> u64 {
    crate::kimage::kimage_to_phys(crate::mm::addr::VirtAddr(pa_of(&EARLY.id_pgd) as usize)).0
}

/// Physical address of the early TTBR1 root (live until `mm::boot` replaces it with init_mm's).
pub fn early_ttbr1() -> u64 {
    crate::kimage::kimage_to_phys(crate::mm::addr::VirtAddr(pa_of(&EARLY.pgd) as usize)).0
}

/// What the early linear window maps of the loader's data at x0: `(physical start, bytes
/// mapped, device-tree totalsize)`; the size is 0 when x0 was 0 or misaligned, and `totalsize`
/// is 0 when x0 points at no device tree.
pub fn fdt_window() -> (u64, u64, u64) {
    let [pa, len, total] = &EARLY.fdt;
    (
        pa.load(Ordering::Relaxed),
        len.load(Ordering::Relaxed),
        total.load(Ordering::Relaxed),
    )
}

/// Did the early mapping run out of tables (a mapping left out)? Cannot happen with the sizes
/// the pool was computed for; `kernel_entry` checks it anyway, since it could not say so itself.
pub fn overflowed() -> bool {
    EARLY.overflow.load(Ordering::Relaxed) != 0
}

/// Read the big-endian 32-bit word at physical address `pa` with the MMU off.
///
/// # Safety
/// `pa` must be 4-byte aligned and readable memory.
unsafe fn read_be32(pa: u64) -> u32 {
    // SAFETY: the caller's contract; with the MMU off the address is the physical one.
    u32::from_be(unsafe { (pa as *const u32).read_volatile() })
}

/// How much to map at x0: the device tree's `totalsize` when it holds the FDT magic (only its
/// 64-byte header when `totalsize` is above [`MAX_FDT_SIZE`]), else [`LOADER_DATA_SIZE`] for whatever the loader put there; nothing for 0 or a
/// misaligned pointer, which the boot protocol rules out. Returns `(bytes, totalsize)`.
fn loader_data_extent(x0: u64) -> (u64, u64) {
    if x0 == 0 || !x0.is_multiple_of(8) {
        return (0, 0);
    }
    // SAFETY: the boot protocol makes x0 the 8-byte aligned physical address of the device tree,
    // in RAM (QEMU raspi4b without -dtb: of its ATAG list, also in RAM).
    if unsafe { read_be32(x0) } != FDT_MAGIC {
        return (LOADER_DATA_SIZE, 0);
    }
    // SAFETY: as above; `totalsize` is the header's second word.
    let total = u64::from(unsafe { read_be32(x0.wrapping_add(4)) });
    if total > MAX_FDT_SIZE {
        // Too large to trust: map the header alone (what follows may not be RAM), and let
        // `kernel_entry` refuse it with a message (Linux's `fixmap_remap_fdt` refuses it too).
        return (64, total);
    }
    (total.max(64), total)
}

/// Build the early tables and return the boot CPU's `MmuConfig` (its physical address) for
/// `__enable_mmu`. Called from `primary_entry` with the MMU off.
#[unsafe(no_mangle)]
extern "C" fn early_map_kernel(x0: u64) -> *const MmuConfig {
    let e = &EARLY;
    let img = image_layout();
    // Physical = virtual here; the offsets are the link-time layout's.
    let kva = |pa: u64| pa.wrapping_sub(img.start).wrapping_add(KIMAGE_VADDR as u64);

    // TTBR0: the identity-mapped text page, read-only and executable.
    let (id_start, id_end) = idmap_text();
    map_pages(
        &e.id_pgd,
        id_start,
        id_start,
        id_end - id_start,
        bits::AP_RO | bits::UXN,
    );

    // TTBR1: the kernel image at KIMAGE_VADDR, W^X, guard pages left out.
    let guards = [img.boot_stack_guard, img.boot_exception_stack_guard];
    let mut pa = img.start;
    while pa < img.end {
        let perm = if pa < img.text_end {
            bits::AP_RO | bits::UXN
        } else if pa < img.rodata_end {
            bits::AP_RO | bits::PXN | bits::UXN
        } else {
            bits::PXN | bits::UXN
        };
        if pa != guards[0] && pa != guards[1] {
            map_pages(&e.pgd, kva(pa), pa, PAGE_SIZE as u64, perm);
        }
        pa = pa.wrapping_add(PAGE_SIZE as u64);
    }

    // TTBR1, early linear window: the boot frames (read/write) and the loader's data at x0
    // (read-only), execute-never, page by page.
    let frames = &raw const BOOT_FRAMES_AREA as u64;
    let frames_len = (BOOT_FRAMES * PAGE_SIZE) as u64;
    let xn = bits::PXN | bits::UXN;
    map_pages(
        &e.pgd,
        (PAGE_OFFSET as u64).wrapping_add(frames),
        frames,
        frames_len,
        xn,
    );
    let (len, total) = loader_data_extent(x0);
    if len > 0 {
        let first = x0 & !(PAGE_SIZE as u64 - 1);
        let end = x0.wrapping_add(len).wrapping_add(PAGE_SIZE as u64 - 1) & !(PAGE_SIZE as u64 - 1);
        map_pages(
            &e.pgd,
            (PAGE_OFFSET as u64).wrapping_add(first),
            first,
            end.wrapping_sub(first),
            xn | bits::AP_RO,
        );
    }
    let [f_pa, f_len, f_total] = &e.fdt;
    f_pa.store(x0, Ordering::Relaxed);
    f_len.store(len, Ordering::Relaxed);
    f_total.store(total, Ordering::Relaxed);

    // Five stores, not a loop over an array of references: a constant array of addresses could
    // be emitted as a table of absolute (virtual) addresses, wrong with the MMU off.
    let cfg = MmuConfig::new(pa_of(&e.id_pgd), pa_of(&e.pgd));
    let [mair, tcr, sctlr, ttbr0, ttbr1] = cfg.words();
    e.mmu.mair.store(mair, Ordering::Relaxed);
    e.mmu.tcr.store(tcr, Ordering::Relaxed);
    e.mmu.sctlr.store(sctlr, Ordering::Relaxed);
    e.mmu.ttbr0.store(ttbr0, Ordering::Relaxed);
    e.mmu.ttbr1.store(ttbr1, Ordering::Relaxed);

    // Written with the MMU off, straight to memory: `primary_entry` invalidates all of .bss,
    // this included, from the caches before it turns the MMU on.
    &e.mmu
}

/// The identity-mapped text, `[start, end)`, page-aligned (the linker script aligns it and checks
/// it fits one page).
fn idmap_text() -> (u64, u64) {
    unsafe extern "C" {
        static __idmap_text_start: u8;
        static __idmap_text_end: u8;
    }
    let start = &raw const __idmap_text_start as u64;
    let end = &raw const __idmap_text_end as u64;
    (start, end.next_multiple_of(PAGE_SIZE as u64))
}

/// The physical address of `idmap_cpu_replace_ttbr1`, where the identity map has it.
pub fn idmap_replace_ttbr1() -> u64 {
    unsafe extern "C" {
        fn idmap_cpu_replace_ttbr1(ttbr1: u64, empty: u64);
    }
    crate::kimage::kimage_to_phys(crate::mm::addr::VirtAddr::from_ptr(
        idmap_cpu_replace_ttbr1 as *const (),
    ))
    .0
}
