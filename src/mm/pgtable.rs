//! init_mm's page-table vocabulary: addresses, levels, the stage-1 descriptor formats, memory
//! types and protections, and [`Entry`], a reference to one descriptor slot. The sizes and the
//! address-space layout they use are `layout`'s.
//!
//! Translation regime: EL1&0 upper half (TTBR1_EL1), 4 KiB granule, 48-bit VA, four levels:
//! pgd (level 0, 512 GiB per entry) → pud (level 1, 1 GiB) → pmd (level 2, 2 MiB) → pte
//! (level 3, 4 KiB). Blocks exist at pud and pmd level only (no level-0 blocks without FEAT_LPA2).
//!
//! Descriptors live in memory as 64-bit atomics because other CPUs' lock-free walkers and the
//! hardware table walker read them while we write: every write is one single-copy-atomic 64-bit
//! store, never a read-modify-write of a live entry.

use core::fmt;

use super::addr::PhysAddr;
use super::layout::{PAGE_SHIFT, PAGE_SIZE, PHYS_ADDR_BITS, PTRS_PER_TABLE};
use super::sync::{AtomicU64, Ordering};
use tock_registers::fields::FieldValue;

/// One translation table: what [`super::env::PageTableEnv::table`] hands out for a frame.
pub type Table = [AtomicU64; PTRS_PER_TABLE];

/// MAIR_EL1 attribute index of Normal memory, write-back read/write-allocate, inner and outer.
pub const MAIR_IDX_NORMAL: u64 = 0;
/// MAIR_EL1 attribute index of Device-nGnRE (`ioremap`).
pub const MAIR_IDX_DEVICE_NGNRE: u64 = 1;
/// MAIR_EL1 attribute index of Normal non-cacheable (`ioremap_wc`).
pub const MAIR_IDX_NORMAL_NC: u64 = 2;
/// MAIR_EL1 attribute index of Device-nGnRnE (`ioremap_np`).
pub const MAIR_IDX_DEVICE_NGNRNE: u64 = 3;
/// The MAIR_EL1 value matching the indices above: Attr0 = 0xff, Attr1 = 0x04, Attr2 = 0x44,
/// Attr3 = 0x00.
pub const MAIR_EL1_VALUE: u64 = 0xff | (0x04 << 8) | (0x44 << 16);

pub use descriptor::{PAGE_DESCRIPTOR, TABLE_DESCRIPTOR};

/// The two descriptor formats as tock-registers bitfields. A module of their own only so that
/// `missing_docs` can be allowed here: the macro generates items that no doc comment reaches
/// (each field's `Field` constant, the `Register` marker, every field's `SET` and `CLEAR`).
mod descriptor {
    #![allow(missing_docs)]

    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// A level 0–2 descriptor that points at the next-level table.
        pub TABLE_DESCRIPTOR [
            VALID OFFSET(0) NUMBITS(1) [],
            TYPE OFFSET(1) NUMBITS(1) [
                Block = 0,
                Table = 1
            ],
            NEXT_LEVEL_TABLE_ADDR OFFSET(12) NUMBITS(36) [],
            /// Hierarchical PXN for everything below.
            PXN_TABLE OFFSET(59) NUMBITS(1) [],
            /// Hierarchical UXN (XNTable at EL1&0) for everything below.
            UXN_TABLE OFFSET(60) NUMBITS(1) [],
            AP_TABLE OFFSET(61) NUMBITS(2) [
                NoEffect = 0b00,
                NoEl0 = 0b01,
                NoWrite = 0b10,
                NoWriteNoEl0 = 0b11
            ],
            NS_TABLE OFFSET(63) NUMBITS(1) []
        ],

        /// A leaf: a level-3 page or a level-1/2 block (TYPE distinguishes them by level).
        pub PAGE_DESCRIPTOR [
            VALID OFFSET(0) NUMBITS(1) [],
            /// 1 for a level-3 page, 0 for a level-1/2 block.
            TYPE OFFSET(1) NUMBITS(1) [
                Block = 0,
                Page = 1
            ],
            ATTRINDX OFFSET(2) NUMBITS(3) [],
            NS OFFSET(5) NUMBITS(1) [],
            /// AP\[2:1\]; EL0 never has access to a kernel mapping.
            AP OFFSET(6) NUMBITS(2) [
                RwEl1 = 0b00,
                RwEl1El0 = 0b01,
                RoEl1 = 0b10,
                RoEl1El0 = 0b11
            ],
            SH OFFSET(8) NUMBITS(2) [
                NonShareable = 0b00,
                OuterShareable = 0b10,
                InnerShareable = 0b11
            ],
            AF OFFSET(10) NUMBITS(1) [],
            NG OFFSET(11) NUMBITS(1) [],
            OUTPUT_ADDR OFFSET(12) NUMBITS(36) [],
            CONTIGUOUS OFFSET(52) NUMBITS(1) [],
            PXN OFFSET(53) NUMBITS(1) [],
            UXN OFFSET(54) NUMBITS(1) []
        ]
    }
}

/// Bits 47:12 of a descriptor: the output (or next-table) address.
const ADDR_MASK: u64 = ((1 << PHYS_ADDR_BITS) - 1) & !((PAGE_SIZE as u64) - 1);

/// A translation level, named as Linux names the tables it indexes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Level {
    /// Level 0: 512 GiB per entry; entries are tables only.
    Pgd = 0,
    /// Level 1: 1 GiB per entry; table or block.
    Pud = 1,
    /// Level 2: 2 MiB per entry; table or block.
    Pmd = 2,
    /// Level 3: 4 KiB pages.
    Pte = 3,
}

impl Level {
    /// All levels, top down.
    pub const ALL: [Level; 4] = [Level::Pgd, Level::Pud, Level::Pmd, Level::Pte];

    /// log2 of the span of one entry at this level.
    #[inline]
    pub const fn shift(self) -> u32 {
        39 - 9 * self as u32
    }

    /// Bytes covered by one entry at this level.
    #[inline]
    pub const fn entry_size(self) -> usize {
        1 << self.shift()
    }

    /// Index of `va` in a table of this level.
    #[inline]
    pub const fn index(self, va: usize) -> usize {
        (va >> self.shift()) & (PTRS_PER_TABLE - 1)
    }

    /// The level of the table an entry at this level points to (`None` for pte).
    #[inline]
    pub const fn next(self) -> Option<Level> {
        match self {
            Level::Pgd => Some(Level::Pud),
            Level::Pud => Some(Level::Pmd),
            Level::Pmd => Some(Level::Pte),
            Level::Pte => None,
        }
    }

    /// Can an entry at this level be a leaf (page or block)?
    #[inline]
    pub const fn has_leaves(self) -> bool {
        !matches!(self, Level::Pgd)
    }

    /// Linux's name for the level.
    pub const fn name(self) -> &'static str {
        match self {
            Level::Pgd => "pgd",
            Level::Pud => "pud",
            Level::Pmd => "pmd",
            Level::Pte => "pte",
        }
    }
}

/// Memory type of a leaf mapping (selects the MAIR index).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemType {
    /// Normal memory, write-back cacheable, inner shareable.
    Normal,
    /// Device-nGnRE (`ioremap`).
    Device,
    /// Device-nGnRnE (`ioremap_np`: no early write acknowledgement).
    DeviceNp,
    /// Normal non-cacheable (`ioremap_wc`).
    NormalNc,
}

impl MemType {
    const fn attr_index(self) -> u64 {
        match self {
            MemType::Normal => MAIR_IDX_NORMAL,
            MemType::Device => MAIR_IDX_DEVICE_NGNRE,
            MemType::DeviceNp => MAIR_IDX_DEVICE_NGNRNE,
            MemType::NormalNc => MAIR_IDX_NORMAL_NC,
        }
    }

    /// Normal write-back cacheable: the only type that must map RAM and nothing else.
    #[inline]
    pub const fn is_cacheable(self) -> bool {
        matches!(self, MemType::Normal)
    }
}

/// The protection of a kernel mapping.
///
/// Only the constants below exist: together they are W^X by construction (nothing is both
/// writable and executable, and device memory is never executable), so no caller can ask for a
/// mapping that breaks invariant 6 (see `mm`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Prot {
    mem: MemType,
    writable: bool,
    executable: bool,
}

impl Prot {
    /// Kernel data: Normal, read/write, execute-never.
    pub const KERNEL_RW: Prot = Prot {
        mem: MemType::Normal,
        writable: true,
        executable: false,
    };
    /// Kernel rodata: Normal, read-only, execute-never.
    pub const KERNEL_RO: Prot = Prot {
        mem: MemType::Normal,
        writable: false,
        executable: false,
    };
    /// Kernel text: Normal, read-only, executable at EL1 (PXN=0, UXN=1).
    pub const KERNEL_RX: Prot = Prot {
        mem: MemType::Normal,
        writable: false,
        executable: true,
    };
    /// `ioremap`: Device-nGnRE, read/write, execute-never.
    pub const DEVICE: Prot = Prot {
        mem: MemType::Device,
        writable: true,
        executable: false,
    };
    /// `ioremap_wc`: Normal non-cacheable, read/write, execute-never.
    pub const DEVICE_WC: Prot = Prot {
        mem: MemType::NormalNc,
        writable: true,
        executable: false,
    };
    /// `ioremap_np`: Device-nGnRnE, read/write, execute-never.
    pub const DEVICE_NP: Prot = Prot {
        mem: MemType::DeviceNp,
        writable: true,
        executable: false,
    };

    /// Every `Prot` there is.
    pub const ALL: [Prot; 6] = [
        Prot::KERNEL_RW,
        Prot::KERNEL_RO,
        Prot::KERNEL_RX,
        Prot::DEVICE,
        Prot::DEVICE_WC,
        Prot::DEVICE_NP,
    ];

    /// The memory type.
    #[inline]
    pub const fn mem(self) -> MemType {
        self.mem
    }

    /// Is the mapping writable at EL1?
    #[inline]
    pub const fn writable(self) -> bool {
        self.writable
    }

    /// Is the mapping executable at EL1?
    #[inline]
    pub const fn executable(self) -> bool {
        self.executable
    }
}

/// What `ioremap_prot` may map device registers as: device memory, or Normal non-cacheable for
/// memory that tolerates speculative and merged accesses (a frame buffer). Nothing cacheable or
/// executable can be asked for: such an MMIO mapping does not build.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IoProt {
    /// Device-nGnRE (`ioremap`): the default for registers.
    DeviceNgnre,
    /// Device-nGnRnE (`ioremap_np`): writes complete at the device, for buses that need it.
    DeviceNgnrne,
    /// Normal non-cacheable (`ioremap_wc`).
    NormalNc,
}

impl IoProt {
    /// The page-table protection: read/write, execute-never.
    #[inline]
    pub const fn prot(self) -> Prot {
        match self {
            IoProt::DeviceNgnre => Prot::DEVICE,
            IoProt::DeviceNgnrne => Prot::DEVICE_NP,
            IoProt::NormalNc => Prot::DEVICE_WC,
        }
    }
}

/// Errors of the table allocators and of `map_range`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MmError {
    /// No frame for a page table. Nothing was left mapped by the failing call.
    OutOfMemory,
    /// A block (huge) mapping covers `va` where a table was needed: the caller's range overlaps a
    /// live huge mapping.
    BlockInTheWay {
        /// The address whose walk met the block.
        va: usize,
    },
    /// `va`, `pa` or `size` is not a multiple of the page size.
    Misaligned {
        /// Requested virtual start.
        va: usize,
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: usize,
    },
    /// The virtual range is not inside the TTBR1 half, or wraps around the top of the address
    /// space.
    BadVirtRange {
        /// Requested virtual start.
        va: usize,
        /// Requested size.
        size: usize,
    },
    /// The physical range does not fit in a 48-bit output address.
    BadPhysRange {
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: usize,
    },
    /// A cacheable (Normal) mapping of something that is not mappable RAM (device tree RAM minus
    /// `no-map` reservations): speculative fetches into it could hang or abort a real SoC.
    CacheableNonRam {
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: usize,
    },
    /// A device or non-cacheable mapping of RAM the linear map holds cacheable: two aliases
    /// with mismatched attributes.
    UncachedAliasOfRam {
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: usize,
    },
    /// A writable mapping of the kernel image's text or rodata.
    WritableKernelText {
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: usize,
    },
    /// A writable mapping of RAM the firmware owns and the kernel only reads (the ACPI tables).
    WritableFirmwareTables {
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: usize,
    },
    /// An executable mapping of anything but the kernel's text.
    ExecutableNonText {
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: usize,
    },
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmError::OutOfMemory => write!(f, "out of memory for a page table"),
            MmError::BlockInTheWay { va } => {
                write!(f, "{va:#x} lies inside a live block mapping")
            }
            MmError::Misaligned { va, pa, size } => write!(
                f,
                "va {va:#x}, pa {pa:#x} and size {size:#x} must all be multiples of {PAGE_SIZE:#x}"
            ),
            MmError::BadVirtRange { va, size } => write!(
                f,
                "[{va:#x} + {size:#x}) is not inside the kernel (TTBR1) address space"
            ),
            MmError::BadPhysRange { pa, size } => write!(
                f,
                "[{pa:#x} + {size:#x}) exceeds the {PHYS_ADDR_BITS}-bit physical address size"
            ),
            MmError::CacheableNonRam { pa, size } => write!(
                f,
                "[{pa:#x} + {size:#x}) is not RAM the kernel may map: no cacheable mapping of it"
            ),
            MmError::UncachedAliasOfRam { pa, size } => write!(
                f,
                "[{pa:#x} + {size:#x}) is RAM, mapped cacheable by the linear map: no device or \
                 non-cacheable alias of it"
            ),
            MmError::WritableKernelText { pa, size } => write!(
                f,
                "[{pa:#x} + {size:#x}) holds kernel text or rodata: no writable alias of it"
            ),
            MmError::WritableFirmwareTables { pa, size } => write!(
                f,
                "[{pa:#x} + {size:#x}) holds the firmware's tables, which the kernel only reads: \
                 no writable alias of it"
            ),
            MmError::ExecutableNonText { pa, size } => write!(
                f,
                "[{pa:#x} + {size:#x}) is not kernel text: only kernel text is executable"
            ),
        }
    }
}

/// The value of one stage-1 descriptor (at any level). `Descriptor::INVALID` is all zeroes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor(u64);

impl Descriptor {
    /// An invalid (empty) entry.
    pub const INVALID: Descriptor = Descriptor(0);

    /// Wrap a raw value read from a table.
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw 64-bit value.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// A table descriptor pointing at the table in frame `pa` (levels 0–2).
    ///
    /// UXNTable is set: nothing in the kernel's tables is ever executable at EL0, whatever the
    /// leaves say. PXNTable stays clear so kernel text below can execute.
    pub fn table(pa: PhysAddr) -> Self {
        debug_assert!(
            pa.is_page_aligned() && pa.0 & !ADDR_MASK == 0,
            "bad table {pa:?}"
        );
        let v: FieldValue<u64, TABLE_DESCRIPTOR::Register> = TABLE_DESCRIPTOR::VALID::SET
            + TABLE_DESCRIPTOR::TYPE::Table
            + TABLE_DESCRIPTOR::UXN_TABLE::SET
            + TABLE_DESCRIPTOR::NEXT_LEVEL_TABLE_ADDR.val(pa.0 >> PAGE_SHIFT);
        Self(v.value)
    }

    /// A leaf at `level` (page at pte level, block at pud/pmd level) mapping `pa` with `prot`.
    ///
    /// Always: AF=1 (no access-flag faults in the kernel), nG=0 (global), EL0 has no access,
    /// inner shareable (ignored by the hardware for Device memory), PXN+UXN unless executable,
    /// UXN always.
    pub fn leaf(level: Level, pa: PhysAddr, prot: Prot) -> Self {
        debug_assert!(level.has_leaves(), "no leaves at {level:?}");
        debug_assert!(
            pa.is_aligned(level.entry_size() as u64) && pa.0 & !ADDR_MASK == 0,
            "{pa:?} is not a {} leaf address",
            level.name()
        );
        let kind = if level == Level::Pte {
            PAGE_DESCRIPTOR::TYPE::Page
        } else {
            PAGE_DESCRIPTOR::TYPE::Block
        };
        let ap = if prot.writable {
            PAGE_DESCRIPTOR::AP::RwEl1
        } else {
            PAGE_DESCRIPTOR::AP::RoEl1
        };
        let pxn = if prot.executable {
            PAGE_DESCRIPTOR::PXN::CLEAR
        } else {
            PAGE_DESCRIPTOR::PXN::SET
        };
        let v = PAGE_DESCRIPTOR::VALID::SET
            + kind
            + PAGE_DESCRIPTOR::ATTRINDX.val(prot.mem.attr_index())
            + ap
            + PAGE_DESCRIPTOR::SH::InnerShareable
            + PAGE_DESCRIPTOR::AF::SET
            + PAGE_DESCRIPTOR::NG::CLEAR
            + PAGE_DESCRIPTOR::OUTPUT_ADDR.val(pa.0 >> PAGE_SHIFT)
            + pxn
            + PAGE_DESCRIPTOR::UXN::SET;
        Self(v.value)
    }

    /// Is the VALID bit set?
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.0 & 1 != 0
    }

    /// Is this a table descriptor, read at `level`?
    #[inline]
    pub const fn is_table(self, level: Level) -> bool {
        !matches!(level, Level::Pte) && self.0 & 0b11 == 0b11
    }

    /// Is this a valid leaf (page or block), read at `level`? Level-0 entries are never leaves:
    /// a level-0 descriptor with TYPE=0 is a translation fault, so it is reported as not a leaf.
    #[inline]
    pub const fn is_leaf(self, level: Level) -> bool {
        match level {
            Level::Pgd => false,
            Level::Pud | Level::Pmd => self.0 & 0b11 == 0b01,
            Level::Pte => self.0 & 0b11 == 0b11,
        }
    }

    /// Is this a block, read at `level` (pud or pmd)?
    #[inline]
    pub const fn is_block(self, level: Level) -> bool {
        matches!(level, Level::Pud | Level::Pmd) && self.is_leaf(level)
    }

    /// The output address (leaf) or next-level table address (table).
    #[inline]
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 & ADDR_MASK)
    }

    /// AttrIndx of a leaf.
    #[inline]
    pub const fn attr_index(self) -> u64 {
        (self.0 >> 2) & 0b111
    }

    /// The memory type of a leaf, if its AttrIndx is one that [`Prot`] produces.
    #[inline]
    pub const fn mem_type(self) -> Option<MemType> {
        match self.attr_index() {
            MAIR_IDX_NORMAL => Some(MemType::Normal),
            MAIR_IDX_DEVICE_NGNRE => Some(MemType::Device),
            MAIR_IDX_DEVICE_NGNRNE => Some(MemType::DeviceNp),
            MAIR_IDX_NORMAL_NC => Some(MemType::NormalNc),
            _ => None,
        }
    }

    /// AP\[2:1\] of a leaf.
    #[inline]
    pub const fn ap(self) -> u64 {
        (self.0 >> 6) & 0b11
    }

    /// Is the leaf writable at EL1 (AP\[2\] clear)?
    #[inline]
    pub const fn writable(self) -> bool {
        self.ap() & 0b10 == 0
    }

    /// Is PXN set?
    #[inline]
    pub const fn pxn(self) -> bool {
        self.0 & (1 << 53) != 0
    }

    /// Is UXN set?
    #[inline]
    pub const fn uxn(self) -> bool {
        self.0 & (1 << 54) != 0
    }

    /// The [`Prot`] this leaf was built from, if it is one of ours.
    #[inline]
    pub fn prot(self) -> Option<Prot> {
        let p = Prot {
            mem: self.mem_type()?,
            writable: self.writable(),
            executable: !self.pxn(),
        };
        Prot::ALL.contains(&p).then_some(p)
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Descriptor({:#018x})", self.0)
    }
}

impl fmt::LowerHex for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// One descriptor slot of a live table: Linux's `pgd_t *` / `pud_t *` / `pmd_t *` / `pte_t *`.
///
/// It remembers which table (and that table's frame) it lives in, its level, and the virtual
/// address it was looked up for, so walkers can step to neighbouring slots without re-walking.
///
/// Only `mm` makes entries, each for a table of a tree it walks (`InitMm::pgd_offset_k`, the
/// table allocators, the range walker): the table allocators follow the descriptor an entry
/// holds, so an entry over a table that code outside `mm` made up, whose "table descriptor"
/// could point at any frame, does not build:
///
/// ```compile_fail,E0624
/// # use initmm_mm::{addr::PhysAddr, pgtable::{Entry, Level, Table}};
/// # fn f(forged: &Table) {
/// let e = Entry::new(forged, PhysAddr(0x4000_0000), Level::Pmd, 0); // error[E0624]: private
/// # }
/// ```
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    table: &'a Table,
    table_pa: PhysAddr,
    level: Level,
    va: usize,
}

impl<'a> Entry<'a> {
    /// The slot for `va` in `table` (a `level` table in frame `table_pa`), which must be a table
    /// of the tree being walked (see the type's documentation).
    #[inline]
    pub(crate) fn new(table: &'a Table, table_pa: PhysAddr, level: Level, va: usize) -> Self {
        Self {
            table,
            table_pa,
            level,
            va,
        }
    }

    /// The level of the table this slot is in.
    #[inline]
    pub const fn level(&self) -> Level {
        self.level
    }

    /// The address this slot was looked up for.
    #[inline]
    pub const fn va(&self) -> usize {
        self.va
    }

    /// This slot's index in its table.
    #[inline]
    pub const fn index(&self) -> usize {
        self.level.index(self.va)
    }

    /// The frame of the table holding this slot.
    #[inline]
    pub const fn table_phys(&self) -> PhysAddr {
        self.table_pa
    }

    /// The first address this slot translates.
    #[inline]
    pub const fn span_start(&self) -> usize {
        self.va & !(self.level.entry_size() - 1)
    }

    /// The 64-bit atomic behind this slot: a live descriptor, so only `mm` may reach it (and
    /// writes go through `PageTableEnv::set_entry`, whose contract says what may be stored).
    #[inline]
    pub(crate) fn slot(&self) -> &'a AtomicU64 {
        &self.table[self.index()]
    }

    /// Read the descriptor once (Acquire: if it is a table descriptor, the zeroing of that table,
    /// published by a Release store, is visible to our reads of it).
    #[inline]
    pub fn read(&self) -> Descriptor {
        Descriptor(self.slot().load(Ordering::Acquire))
    }

    /// The slot for `va` in the same table. `va` must be translated by the same table.
    #[inline]
    pub fn sibling(&self, va: usize) -> Self {
        debug_assert_eq!(
            va >> (self.level.shift() + 9),
            self.va >> (self.level.shift() + 9),
            "{va:#x} is not in the same {} table as {:#x}",
            self.level.name(),
            self.va
        );
        Self { va, ..*self }
    }

    /// Is `va` translated through this slot?
    #[inline]
    pub const fn covers(&self, va: usize) -> bool {
        va >> self.level.shift() == self.va >> self.level.shift()
    }
}

impl fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}] of {:?} for {:#x}",
            self.level.name(),
            self.index(),
            self.table_pa,
            self.va
        )
    }
}

/// What a walk found for one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address `va` translates to (including the offset inside the leaf).
    pub pa: PhysAddr,
    /// The level of the leaf: `Pte` for a page, `Pmd`/`Pud` for a block.
    pub level: Level,
    /// The leaf descriptor itself.
    pub desc: Descriptor,
}

impl Translation {
    /// The protection the leaf was built with, if it is one of [`Prot`]'s.
    #[inline]
    pub fn prot(&self) -> Option<Prot> {
        self.desc.prot()
    }
}

/// Round `addr` up to the next `span` boundary, clamped to `end` (Linux's `p?d_addr_end`).
/// Works at the top of the address space, where the boundary would overflow.
#[inline]
pub const fn addr_end(addr: usize, end: usize, span: usize) -> usize {
    match (addr | (span - 1)).checked_add(1) {
        Some(b) if b < end => b,
        _ => end,
    }
}
