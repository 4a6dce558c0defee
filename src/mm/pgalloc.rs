//! `init_mm` and its table allocators: `pud_alloc`, `pmd_alloc`, `pte_alloc_kernel`.
//!
//! # The design (Linux 2.6.15, "mm: init_mm without ptlock")
//!
//! Callers that map kernel memory (ioremap, vmap, the boot mapping) take **no** page-table lock.
//! Virtual ranges are handed out by the vmap-area allocator under its own lock, so two live areas
//! never share a page and their leaf writes cannot conflict. The only shared state is the
//! *intermediate* tables: two CPUs mapping neighbouring areas may both find the pmd slot above
//! them empty and both want to install a pte table there. The allocators below settle that race
//! themselves:
//!
//! 1. read the slot once, lock-free; a table there → step into it (the common case, no lock);
//! 2. empty → allocate a frame *outside* the lock, zero it, `dsb ishst` (the zeroes are visible
//!    to every CPU and walker before anything can point at them);
//! 3. take `page_table_lock`, **re-check** the slot: still empty → publish our table with one
//!    64-bit Release store, `dsb ishst; isb`; otherwise a racing CPU won → we free our frame;
//! 4. step into whichever table is installed.
//!
//! Only the re-check and the store (and their barriers) run under the lock, so contention costs
//! a few instructions, and only on the rare install. The loom model in this file shows that
//! without the re-check two CPUs can both install (one table and its mappings lost, one frame
//! leaked) — that is what the lock is for, and all it is for.
//!
//! # Why the lock is private
//!
//! Before the patch, callers took `init_mm.page_table_lock` around their whole walk because the
//! allocators expected it held; after it, a caller that still took it would either deadlock
//! against the allocator or serialise everything for nothing. Linux made such a mismatch break the
//! build by changing `pte_alloc_kernel`'s signature. Here the lock is a private field of
//! [`InitMm`]: code outside this module cannot name it, so a caller that tries fails to build:
//!
//! ```compile_fail,E0616
//! # fn f(init_mm: &initmm_mm::pgalloc::InitMm<impl initmm_mm::env::PageTableEnv>) {
//! let _ptl = init_mm.page_table_lock.lock(); // error[E0616]: field `page_table_lock` is private
//! # }
//! ```
//!
//! # Other designs, for comparison
//!
//! How a mapping call and an install are serialised is [`InitMm`]'s type parameter, an
//! [`InstallPolicy`]: [`Seed`], the design above, is the default and the only one this crate has.
//! A benchmark may supply another (the `initmm-bench` crate's Linux 2.6.14 baseline, whose
//! mapping calls hold the lock across their whole walk) to measure the difference with
//! everything else the same code. The trait is `unsafe`: a policy sees the lock, and must take
//! it for every install.

use super::addr::{PhysAddr, VirtAddr};
use super::env::PageTableEnv;
use super::pgtable::{Descriptor, Entry, Level, MmError};
use super::phys_layout::PhysLayout;
use super::profile::{self, Event, Lock};
use super::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

/// How mapping calls and table installs are serialised: [`InitMm`]'s type parameter (see the
/// module documentation). [`Seed`] is this crate's design.
///
/// # Safety
///
/// [`install`](Self::install) must call its closure exactly once, with `page_table_lock` held
/// by this CPU for the whole call: the closure re-checks an empty slot and publishes a table in
/// it, and two CPUs doing that at once would both install one (invariant 2).
/// [`allocate`](Self::allocate) must call its closure exactly once. Neither may touch a table.
pub unsafe trait InstallPolicy: 'static {
    /// What one mapping call holds from its start to its end (in [`Seed`], nothing).
    type Walk<'a>;

    /// Start a mapping call.
    fn begin_walk(page_table_lock: &Mutex<()>) -> Self::Walk<'_>;

    /// Allocate and zero a table (`alloc`) for the walk.
    fn allocate<R>(walk: &Self::Walk<'_>, alloc: impl FnOnce() -> R) -> R;

    /// Run `install` (re-check the slot, publish the table) under `page_table_lock`.
    fn install<R>(
        walk: &Self::Walk<'_>,
        page_table_lock: &Mutex<()>,
        install: impl FnOnce() -> R,
    ) -> R;
}

/// This crate's design (Linux 2.6.15's "mm: init_mm without ptlock"): a mapping call takes no
/// lock; an allocator takes `page_table_lock` only to re-check an empty slot and install its
/// table.
pub struct Seed;

// SAFETY: `install` runs its closure once, under the lock it takes here; `allocate` runs its
// closure once; neither touches a table.
unsafe impl InstallPolicy for Seed {
    type Walk<'a> = ();

    #[inline]
    fn begin_walk(_: &Mutex<()>) -> Self::Walk<'_> {}

    #[inline]
    fn allocate<R>(_: &(), alloc: impl FnOnce() -> R) -> R {
        alloc()
    }

    #[inline]
    fn install<R>(_: &(), page_table_lock: &Mutex<()>, install: impl FnOnce() -> R) -> R {
        let _ptl = profile::acquire(Lock::PageTable, || page_table_lock.lock());
        install()
    }
}

/// Counters of one level's table installs.
struct LevelCounters {
    installed: AtomicU64,
    lost: AtomicU64,
}

impl LevelCounters {
    fn new() -> Self {
        Self {
            installed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> LevelStats {
        LevelStats {
            installed: self.installed.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

/// The counters kept by [`InitMm`].
struct PgStats {
    pud: LevelCounters,
    pmd: LevelCounters,
    pte: LevelCounters,
    promotions: AtomicU64,
    reclaimed: AtomicU64,
}

/// Install outcomes of one table level.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LevelStats {
    /// Tables of this level published into an empty slot.
    pub installed: u64,
    /// Allocations that found the slot filled by a racing CPU at the re-check (frame freed).
    pub lost: u64,
}

/// A copy of [`InitMm`]'s counters at one moment.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PgStatsSnapshot {
    /// pud tables (installed in pgd slots).
    pub pud: LevelStats,
    /// pmd tables (installed in pud slots).
    pub pmd: LevelStats,
    /// pte tables (installed in pmd slots).
    pub pte: LevelStats,
    /// Tables replaced by a block (break-before-make), see `map_range`.
    pub promotions: u64,
    /// Empty tables freed by `reclaim_empty_tables`.
    pub reclaimed: u64,
}

impl PgStatsSnapshot {
    /// What happened from `before` to `self`: installs, lost races, promotions, reclaims.
    pub fn since(&self, before: &PgStatsSnapshot) -> PgStatsSnapshot {
        let d = |x: LevelStats, y: LevelStats| LevelStats {
            installed: y.installed - x.installed,
            lost: y.lost - x.lost,
        };
        PgStatsSnapshot {
            pud: d(before.pud, self.pud),
            pmd: d(before.pmd, self.pmd),
            pte: d(before.pte, self.pte),
            promotions: self.promotions - before.promotions,
            reclaimed: self.reclaimed - before.reclaimed,
        }
    }
}

/// The kernel's one address space: its pgd, the allocators' lock and their counters. `P` says how
/// mapping calls and installs are serialised ([`Seed`], this crate's design, unless a benchmark
/// compares another).
pub struct InitMm<E: PageTableEnv, P: InstallPolicy = Seed> {
    env: E,
    pgd: PhysAddr,
    /// What may be mapped how (checked by `map_range`).
    layout: PhysLayout,
    /// Serialises table installs, and nothing else. Private: see the module documentation.
    page_table_lock: Mutex<()>,
    /// Held by every walk of a range that its caller need not own ([`InitMm::foreign_walk`]),
    /// and taken and dropped by every table free once the table is out of the tree
    /// ([`InitMm::wait_for_foreign_walks`]), so that no such walk is still inside a table when
    /// it is freed. Private too.
    foreign_walks: Mutex<()>,
    stats: PgStats,
    _policy: core::marker::PhantomData<fn() -> P>,
}

impl<E: PageTableEnv> InitMm<E, Seed> {
    /// Allocate and zero the pgd; every other table is installed on demand. `layout` says what
    /// the physical address space holds, for `map_range`'s checks.
    pub fn new(env: E, layout: PhysLayout) -> Result<Self, MmError> {
        InitMm::with_policy(env, layout)
    }
}

impl<E: PageTableEnv, P: InstallPolicy> InitMm<E, P> {
    /// [`new`](InitMm::new), serialised as `P` says.
    pub fn with_policy(env: E, layout: PhysLayout) -> Result<Self, MmError> {
        let pgd = env.alloc_table_frame().ok_or(MmError::OutOfMemory)?;
        // SAFETY: a frame just handed out, not yet a table anything can reach.
        unsafe { env.zero_table(pgd) };
        // The pgd is reached through TTBR1 rather than a descriptor: make the zeroes visible
        // before whoever programs TTBR1 (after its own barrier) can let a walker in.
        env.dsb_ishst();
        // SAFETY: a fresh, zeroed pgd that nothing else uses.
        Ok(unsafe { Self::sharing_pgd(env, pgd, layout) })
    }

    /// An `InitMm` over the live pgd `pgd` of another one, for a benchmark that compares designs
    /// on the machine's own tables: each maps into its own part of the address space.
    ///
    /// # Safety
    ///
    /// `pgd` is a zeroed pgd no one else uses, or the pgd of another `InitMm` of the same
    /// environment that outlives this one; then every address this one maps, unmaps or walks (and
    /// every address the other one does) lies in pgd entries the other never uses (a
    /// [`Window`](super::vm::Window) of whole, aligned 512 GiB entries reserved from the other),
    /// so that the two never install into, or free, the same table. This `InitMm` never frees
    /// the pgd.
    pub unsafe fn sharing_pgd(env: E, pgd: PhysAddr, layout: PhysLayout) -> Self {
        Self {
            env,
            pgd,
            layout,
            page_table_lock: Mutex::new(()),
            foreign_walks: Mutex::new(()),
            stats: PgStats {
                pud: LevelCounters::new(),
                pmd: LevelCounters::new(),
                pte: LevelCounters::new(),
                promotions: AtomicU64::new(0),
                reclaimed: AtomicU64::new(0),
            },
            _policy: core::marker::PhantomData,
        }
    }

    /// The pgd's frame, for TTBR1_EL1.
    pub fn pgd_phys(&self) -> PhysAddr {
        self.pgd
    }

    /// The environment the tables live in.
    pub fn env(&self) -> &E {
        &self.env
    }

    /// What the physical address space holds.
    pub fn layout(&self) -> &PhysLayout {
        &self.layout
    }

    /// The counters.
    pub fn stats(&self) -> PgStatsSnapshot {
        PgStatsSnapshot {
            pud: self.stats.pud.snapshot(),
            pmd: self.stats.pmd.snapshot(),
            pte: self.stats.pte.snapshot(),
            promotions: self.stats.promotions.load(Ordering::Relaxed),
            reclaimed: self.stats.reclaimed.load(Ordering::Relaxed),
        }
    }

    /// The pgd slot for `va` (Linux's `pgd_offset_k`).
    pub fn pgd_offset_k(&self, va: VirtAddr) -> Entry<'_> {
        self.entry_in(self.pgd, Level::Pgd, va.0)
    }

    /// The pud slot for `va`, installing the pud table under `pgd` if there is none.
    ///
    /// These allocators step into the table an entry's descriptor points at, and hand out an
    /// [`Entry`] that borrows that table: they are for callers that own the range they walk, as
    /// the mapping calls do. Called without that promise they do not build:
    ///
    /// ```compile_fail,E0133
    /// # use initmm_mm::{addr::VirtAddr, env::PageTableEnv, pgalloc::InitMm};
    /// # fn f(init_mm: &InitMm<impl PageTableEnv>, va: VirtAddr) {
    /// let pud = init_mm.pud_alloc(init_mm.pgd_offset_k(va), va); // error[E0133]: unsafe
    /// # }
    /// ```
    ///
    /// # Safety
    ///
    /// `pgd` comes from this `InitMm`'s [`pgd_offset_k`](Self::pgd_offset_k) for an address in
    /// the same 512 GiB as `va`, and `va` is the caller's: it lies in virtual space reserved for
    /// the caller (a [`Window`](super::vm::Window) it holds), so that no table on its path is
    /// freed (by a block mapping over it, or `reclaim_empty_tables`) while this runs or while the
    /// returned entry, or one the caller derives from it, is used.
    pub unsafe fn pud_alloc(&self, pgd: Entry<'_>, va: VirtAddr) -> Result<Entry<'_>, MmError> {
        debug_assert_eq!(pgd.level(), Level::Pgd);
        let walk = self.begin_walk();
        self.alloc_next::<true>(&walk, pgd, va.0)
    }

    /// The pmd slot for `va`, installing the pmd table under `pud` if there is none.
    /// `Err(BlockInTheWay)` if `pud` holds a 1 GiB block.
    ///
    /// # Safety
    ///
    /// As for [`pud_alloc`](Self::pud_alloc), `pud` coming from this `InitMm`'s `pud_alloc` for
    /// an address in the same gigabyte as `va`.
    pub unsafe fn pmd_alloc(&self, pud: Entry<'_>, va: VirtAddr) -> Result<Entry<'_>, MmError> {
        debug_assert_eq!(pud.level(), Level::Pud);
        let walk = self.begin_walk();
        self.alloc_next::<true>(&walk, pud, va.0)
    }

    /// The pte slot for `va`, installing the pte table under `pmd` if there is none.
    /// `Err(BlockInTheWay)` if `pmd` holds a 2 MiB block. No `mm` argument: there is one kernel
    /// address space, and the lock it needs is its own business.
    ///
    /// # Safety
    ///
    /// As for [`pud_alloc`](Self::pud_alloc), `pmd` coming from this `InitMm`'s `pmd_alloc` for
    /// an address in the same 2 MiB as `va`.
    pub unsafe fn pte_alloc_kernel(
        &self,
        pmd: Entry<'_>,
        va: VirtAddr,
    ) -> Result<Entry<'_>, MmError> {
        debug_assert_eq!(pmd.level(), Level::Pmd);
        let walk = self.begin_walk();
        self.alloc_next::<true>(&walk, pmd, va.0)
    }

    /// Begin a walk of a range that the caller need not own (`translate`, `count_tables`): until
    /// the guard is dropped, no table leaves the tree and is freed, by another CPU's block mapping
    /// or reclaim, while the walk may still be inside it ([`wait_for_foreign_walks`]).
    ///
    /// [`wait_for_foreign_walks`]: Self::wait_for_foreign_walks
    pub(super) fn foreign_walk(&self) -> MutexGuard<'_, ()> {
        self.foreign_walks.lock()
    }

    /// Wait until every walk begun with [`foreign_walk`](Self::foreign_walk) that may have read
    /// an entry cleared before this call has ended; one begun later reads the cleared entry (the
    /// lock orders the clear before its reads). Called between taking a table out of the tree and
    /// freeing it, as Linux's arm64 `pud_free_pmd_page` and `pmd_free_pte_page` take and drop
    /// `init_mm`'s mmap lock there when a page-table dump may be walking the kernel's tables.
    pub(super) fn wait_for_foreign_walks(&self) {
        drop(self.foreign_walks.lock());
    }

    /// Start a mapping call, as the policy says (in [`Seed`], nothing to do).
    pub(super) fn begin_walk(&self) -> P::Walk<'_> {
        P::begin_walk(&self.page_table_lock)
    }

    /// The slot for `va` in the `level` table in frame `table`.
    ///
    /// Private to `mm`, whose code passes only the pgd or the address of a table read from a
    /// descriptor of this tree, on a walk of a range it owns (or, for `reclaim_empty_tables`,
    /// under quiescence).
    pub(super) fn entry_in(&self, table: PhysAddr, level: Level, va: usize) -> Entry<'_> {
        // SAFETY: `table` is the pgd or a table of this tree (see above), and tables leave the
        // tree only through `free_table`, which runs only where no walker of the range can be:
        // on the promoting call's own range, or under `reclaim_empty_tables`' quiescence.
        Entry::new(unsafe { self.env.table(table) }, table, level, va)
    }

    /// `pud_alloc`/`pmd_alloc`/`pte_alloc_kernel` for a walk already begun with `begin_walk`.
    pub(super) fn alloc_table_in(
        &self,
        walk: &P::Walk<'_>,
        entry: Entry<'_>,
        va: usize,
    ) -> Result<Entry<'_>, MmError> {
        self.alloc_next::<true>(walk, entry, va)
    }

    pub(super) fn count_promotion(&self) {
        self.stats.promotions.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_reclaimed(&self) {
        self.stats.reclaimed.fetch_add(1, Ordering::Relaxed);
    }

    fn counters(&self, table_level: Level) -> &LevelCounters {
        match table_level {
            Level::Pud => &self.stats.pud,
            Level::Pmd => &self.stats.pmd,
            Level::Pte => &self.stats.pte,
            Level::Pgd => unreachable!("the pgd is never installed"),
        }
    }

    /// The allocator proper. `RECHECK` is always true outside the loom model, which sets it to
    /// false to show the re-check is what prevents a double install.
    fn alloc_next<const RECHECK: bool>(
        &self,
        walk: &P::Walk<'_>,
        entry: Entry<'_>,
        va: usize,
    ) -> Result<Entry<'_>, MmError> {
        let level = entry.level();
        let Some(next) = level.next() else {
            panic!("init_mm: no table below a pte ({entry:?})");
        };
        debug_assert!(entry.covers(va), "{va:#x} is not under {entry:?}");

        // Fast path: one Acquire read, no lock.
        let desc = entry.read();
        if desc.is_table(level) {
            return Ok(self.entry_in(desc.addr(), next, va));
        }
        if desc.is_valid() {
            return Err(MmError::BlockInTheWay { va });
        }

        // Slow path. Allocation and zeroing happen outside the lock; the dsb makes the zeroes
        // visible to every CPU and walker before any descriptor can point at the table (the
        // Release store below orders them for the lock-free readers of the Rust memory model).
        let new = P::allocate(walk, || {
            let new = self.env.alloc_table_frame().ok_or(MmError::OutOfMemory)?;
            profile::count(Event::TableAlloc);
            // SAFETY: a frame just handed out to us, not yet a table anything can reach.
            unsafe { self.env.zero_table(new) };
            self.env.dsb_ishst();
            Ok(new)
        })?;

        let winner = P::install(walk, &self.page_table_lock, || {
            let now = if RECHECK {
                entry.read()
            } else {
                Descriptor::INVALID
            };
            if now.is_valid() {
                Some(now)
            } else {
                // SAFETY: the slot is empty (re-checked under the lock, which every installer
                // takes), and `new` is zeroed with the zeroes published by the `dsb ishst` above.
                unsafe { self.env.set_entry(&entry, Descriptor::table(new).raw()) };
                // Still under the lock, so a CPU that loses the re-check only proceeds once the
                // new entry is visible to the walkers too (what `set_pmd` does on arm64).
                self.env.dsb_ishst();
                self.env.isb();
                None
            }
        });

        let counters = self.counters(next);
        match winner {
            None => {
                profile::shared_write();
                counters.installed.fetch_add(1, Ordering::Relaxed);
                Ok(self.entry_in(new, next, va))
            }
            Some(now) => {
                profile::shared_write();
                counters.lost.fetch_add(1, Ordering::Relaxed);
                // Never published: no CPU or walker can have seen it.
                // SAFETY: our own frame, never published: the racer's table is in the slot.
                unsafe { self.env.free_table_frame(new) };
                if now.is_table(level) {
                    Ok(self.entry_in(now.addr(), next, va))
                } else {
                    Err(MmError::BlockInTheWay { va })
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

/// Model checking of the install protocol with loom: every interleaving (up to the preemption
/// bound) of two or three CPUs racing to fill the same or neighbouring empty slots.
///
/// Run: `just test-loom`, that is `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test
/// -p initmm-mm --lib --release --target host-tuple pgalloc::loom_tests`
/// (`LOOM_MAX_PREEMPTIONS` overrides the default bound of 3).
#[cfg(all(test, loom))]
mod loom_tests;
