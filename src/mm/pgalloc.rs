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
//! # fn f(init_mm: &initmm::mm::pgalloc::InitMm<impl initmm::mm::env::PageTableEnv>) {
//! let _ptl = init_mm.page_table_lock.lock(); // error[E0616]: field `page_table_lock` is private
//! # }
//! ```
//!
//! # The baseline
//!
//! The benchmark kernel (cargo feature `bench`) can also run the design this one replaced,
//! Linux 2.6.14's, to measure the difference: [`Design::PrePatch`]. There each mapping call holds
//! `page_table_lock` across its whole walk and every leaf it writes (`map_vm_area`), and an
//! allocator that finds a slot empty drops the lock to allocate and zero its table, takes it again
//! and re-checks the slot, freeing its table if a racer filled it meanwhile (`pte_alloc_kernel`,
//! `__pmd_alloc`, `__pud_alloc`): pre-patch kernels lost install races too. Unmapping took no
//! page-table lock (`unmap_vm_area`). Everything else is the same code in both designs. The
//! kernel `just run` boots is built without the feature and has the seed design only.

use super::env::PageTableEnv;
use super::mapping::PhysLayout;
use super::pgtable::{Descriptor, Entry, Level, MmError, PhysAddr};
use super::profile::{self, Event, Lock};
#[cfg(feature = "bench")]
use super::sync::AtomicUsize;
#[cfg(feature = "bench")]
use super::sync::MutexGuard;
use super::sync::{AtomicU64, Mutex, Ordering};

/// Which design serialises mapping calls: only the benchmark kernel has a choice.
#[cfg(feature = "bench")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Design {
    /// This kernel's: callers take no lock; the allocators lock only to install.
    Seed,
    /// Linux 2.6.14's: each mapping call holds `page_table_lock` across its walk (see the
    /// module documentation).
    PrePatch,
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

/// One mapping call in progress, and so which lock it holds: none in the seed design. In the
/// pre-patch baseline it holds `page_table_lock` from [`InitMm::begin_walk`] until it is dropped,
/// except while a table is being allocated.
pub(super) struct Walk<'a> {
    #[cfg(feature = "bench")]
    pre_patch: Option<PrePatchWalk<'a>>,
    _init_mm: core::marker::PhantomData<&'a ()>,
}

/// The page-table lock a pre-patch walk holds (`None` while it is dropped to allocate).
#[cfg(feature = "bench")]
struct PrePatchWalk<'a> {
    lock: &'a Mutex<()>,
    held: core::cell::RefCell<Option<profile::Held<MutexGuard<'a, ()>>>>,
}

impl Walk<'_> {
    /// Allocate (and zero) a table: in the pre-patch design with the lock dropped meanwhile, as
    /// 2.6.14's allocators did (they must not sleep in the allocator under a spinlock).
    fn allocate<R>(&self, alloc: impl FnOnce() -> R) -> R {
        #[cfg(feature = "bench")]
        if let Some(p) = &self.pre_patch {
            drop(p.held.borrow_mut().take());
            let r = alloc();
            *p.held.borrow_mut() = Some(profile::acquire(Lock::PageTable, || p.lock.lock()));
            return r;
        }
        alloc()
    }

    /// Re-check and install under `page_table_lock`: taken here in the seed design, already held
    /// by the walk in the pre-patch one.
    fn install<R>(&self, page_table_lock: &Mutex<()>, install: impl FnOnce() -> R) -> R {
        #[cfg(feature = "bench")]
        if self.pre_patch.is_some() {
            return install();
        }
        let _ptl = profile::acquire(Lock::PageTable, || page_table_lock.lock());
        install()
    }
}

/// The kernel's one address space: its pgd, the allocators' lock and their counters.
pub struct InitMm<E: PageTableEnv> {
    env: E,
    pgd: PhysAddr,
    /// What may be mapped how (checked by `map_range`).
    layout: PhysLayout,
    /// Serialises table installs, and nothing else. Private: see the module documentation.
    page_table_lock: Mutex<()>,
    /// The [`Design`] as a number (0 = Seed, 1 = PrePatch).
    #[cfg(feature = "bench")]
    design: AtomicUsize,
    stats: PgStats,
}

impl<E: PageTableEnv> InitMm<E> {
    /// Allocate and zero the pgd; every other table is installed on demand. `layout` says what
    /// the physical address space holds, for `map_range`'s checks.
    pub fn new(env: E, layout: PhysLayout) -> Result<Self, MmError> {
        let pgd = env.alloc_table_frame().ok_or(MmError::OutOfMemory)?;
        // SAFETY: a frame just handed out, not yet a table anything can reach.
        unsafe { env.zero_table(pgd) };
        // The pgd is reached through TTBR1 rather than a descriptor: make the zeroes visible
        // before whoever programs TTBR1 (after its own barrier) can let a walker in.
        env.dsb_ishst();
        Ok(Self {
            env,
            pgd,
            layout,
            page_table_lock: Mutex::new(()),
            #[cfg(feature = "bench")]
            design: AtomicUsize::new(0),
            stats: PgStats {
                pud: LevelCounters::new(),
                pmd: LevelCounters::new(),
                pte: LevelCounters::new(),
                promotions: AtomicU64::new(0),
                reclaimed: AtomicU64::new(0),
            },
        })
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

    /// Choose the design for later mapping calls.
    ///
    /// Switch only while no mapping call is in flight (the benchmark switches between runs).
    #[cfg(feature = "bench")]
    pub fn set_design(&self, design: Design) {
        let v = match design {
            Design::Seed => 0,
            Design::PrePatch => 1,
        };
        self.design.store(v, Ordering::Relaxed);
    }

    /// The current design.
    #[cfg(feature = "bench")]
    pub fn design(&self) -> Design {
        match self.design.load(Ordering::Relaxed) {
            0 => Design::Seed,
            _ => Design::PrePatch,
        }
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
    pub fn pgd_offset_k(&self, va: usize) -> Entry<'_> {
        self.entry_in(self.pgd, Level::Pgd, va)
    }

    /// The pud slot for `va`, installing the pud table under `pgd` if there is none.
    pub fn pud_alloc(&self, pgd: Entry<'_>, va: usize) -> Result<Entry<'_>, MmError> {
        debug_assert_eq!(pgd.level(), Level::Pgd);
        let walk = self.begin_walk();
        self.alloc_next::<true>(&walk, pgd, va)
    }

    /// The pmd slot for `va`, installing the pmd table under `pud` if there is none.
    /// `Err(BlockInTheWay)` if `pud` holds a 1 GiB block.
    pub fn pmd_alloc(&self, pud: Entry<'_>, va: usize) -> Result<Entry<'_>, MmError> {
        debug_assert_eq!(pud.level(), Level::Pud);
        let walk = self.begin_walk();
        self.alloc_next::<true>(&walk, pud, va)
    }

    /// The pte slot for `va`, installing the pte table under `pmd` if there is none.
    /// `Err(BlockInTheWay)` if `pmd` holds a 2 MiB block. No `mm` argument: there is one kernel
    /// address space, and the lock it needs is its own business.
    pub fn pte_alloc_kernel(&self, pmd: Entry<'_>, va: usize) -> Result<Entry<'_>, MmError> {
        debug_assert_eq!(pmd.level(), Level::Pmd);
        let walk = self.begin_walk();
        self.alloc_next::<true>(&walk, pmd, va)
    }

    /// Start a mapping call: nothing to do in the seed design; in the pre-patch baseline take
    /// `page_table_lock`, held until the returned [`Walk`] is dropped.
    pub(super) fn begin_walk(&self) -> Walk<'_> {
        Walk {
            #[cfg(feature = "bench")]
            pre_patch: (self.design() == Design::PrePatch).then(|| PrePatchWalk {
                lock: &self.page_table_lock,
                held: core::cell::RefCell::new(Some(profile::acquire(Lock::PageTable, || {
                    self.page_table_lock.lock()
                }))),
            }),
            _init_mm: core::marker::PhantomData,
        }
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
        walk: &Walk<'_>,
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
        walk: &Walk<'_>,
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
        let new = walk.allocate(|| {
            let new = self.env.alloc_table_frame().ok_or(MmError::OutOfMemory)?;
            profile::count(Event::TableAlloc);
            // SAFETY: a frame just handed out to us, not yet a table anything can reach.
            unsafe { self.env.zero_table(new) };
            self.env.dsb_ishst();
            Ok(new)
        })?;

        let winner = walk.install(&self.page_table_lock, || {
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
                counters.installed.fetch_add(1, Ordering::Relaxed);
                Ok(self.entry_in(new, next, va))
            }
            Some(now) => {
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
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::mm::pgtable::{PMD_SIZE, PUD_SIZE, Prot, VMALLOC_START};
    use crate::mm::testenv::{Event, TestEnv};

    fn mm() -> InitMm<TestEnv> {
        InitMm::new(TestEnv::new(), PhysLayout::unchecked()).unwrap()
    }

    #[test]
    fn new_allocates_one_zeroed_pgd() {
        let mm = mm();
        assert_eq!(mm.env().live_frames(), 1);
        let pgd = mm.env().frame_table(mm.pgd_phys());
        assert!(pgd.iter().all(|s| s.load(Ordering::Relaxed) == 0));
        assert_eq!(mm.stats(), PgStatsSnapshot::default());
    }

    #[test]
    fn new_fails_cleanly_without_memory() {
        let env = TestEnv::new();
        env.fail_after(0);
        assert!(matches!(
            InitMm::new(env, PhysLayout::unchecked()),
            Err(MmError::OutOfMemory)
        ));
    }

    #[test]
    fn walk_down_installs_each_level_once_then_takes_the_fast_path() {
        let mm = mm();
        let va = VMALLOC_START + 3 * PUD_SIZE + 5 * PMD_SIZE + 7 * 4096;
        let pud = mm.pud_alloc(mm.pgd_offset_k(va), va).unwrap();
        let pmd = mm.pmd_alloc(pud, va).unwrap();
        let pte = mm.pte_alloc_kernel(pmd, va).unwrap();
        assert_eq!(pte.level(), Level::Pte);
        assert_eq!(pte.index(), 7);
        assert_eq!(pmd.index(), 5);
        assert_eq!(pud.index(), 3);
        assert_eq!(mm.env().live_frames(), 4);

        // Second walk, neighbouring page: same tables, no allocation.
        let allocs = mm.env().allocations();
        let va2 = va + 4096;
        let pud2 = mm.pud_alloc(mm.pgd_offset_k(va2), va2).unwrap();
        let pmd2 = mm.pmd_alloc(pud2, va2).unwrap();
        let pte2 = mm.pte_alloc_kernel(pmd2, va2).unwrap();
        assert_eq!(pte2.table_phys(), pte.table_phys());
        assert_eq!(pte2.index(), 8);
        assert_eq!(mm.env().allocations(), allocs);

        let one = LevelStats {
            installed: 1,
            lost: 0,
        };
        let s = mm.stats();
        assert_eq!((s.pud, s.pmd, s.pte), (one, one, one));
    }

    #[test]
    fn install_publishes_zeroed_table_then_barriers() {
        let mm = mm();
        let va = VMALLOC_START;
        let pud = mm.pud_alloc(mm.pgd_offset_k(va), va).unwrap();
        let pmd = mm.pmd_alloc(pud, va).unwrap();
        mm.env().start_recording();
        let pte = mm.pte_alloc_kernel(pmd, va).unwrap();
        let t = pte.table_phys();
        assert_eq!(
            mm.env().take_events(),
            [
                Event::Alloc(t),
                Event::Zero(t),
                Event::DsbIshst,
                Event::Store {
                    level: Level::Pmd,
                    table: pmd.table_phys(),
                    index: 0,
                    val: Descriptor::table(t).raw()
                },
                Event::DsbIshst,
                Event::Isb,
            ]
        );
        // The fast path touches nothing.
        mm.env().start_recording();
        mm.pte_alloc_kernel(pmd, va).unwrap();
        assert_eq!(mm.env().take_events(), []);
    }

    #[test]
    fn out_of_memory_leaves_the_slot_empty() {
        let mm = mm();
        let va = VMALLOC_START;
        let pud = mm.pud_alloc(mm.pgd_offset_k(va), va).unwrap();
        mm.env().fail_after(0);
        assert_eq!(mm.pmd_alloc(pud, va).unwrap_err(), MmError::OutOfMemory);
        assert_eq!(pud.read(), Descriptor::INVALID);
        assert_eq!(mm.env().live_frames(), 2);
        assert_eq!(mm.stats().pmd, LevelStats::default());
    }

    #[test]
    fn block_in_the_way_allocates_nothing() {
        let mm = mm();
        let va = VMALLOC_START;
        mm.map_range(va, 0x8000_0000, PMD_SIZE, Prot::KERNEL_RW, true)
            .unwrap();
        let pud = mm.pud_alloc(mm.pgd_offset_k(va), va).unwrap();
        let pmd = mm.pmd_alloc(pud, va).unwrap();
        let (live, allocs) = (mm.env().live_frames(), mm.env().allocations());
        assert_eq!(
            mm.pte_alloc_kernel(pmd, va + 4096).unwrap_err(),
            MmError::BlockInTheWay { va: va + 4096 }
        );
        assert_eq!(mm.env().live_frames(), live);
        assert_eq!(mm.env().allocations(), allocs);
    }

    /// A racing CPU installs its pmd table between our empty read and our re-check: we must
    /// count a lost race, free our frame and walk into the winner's table.
    #[test]
    fn losing_the_race_frees_our_table_and_uses_the_winners() {
        let mm = mm();
        let va = VMALLOC_START + 2 * PUD_SIZE;
        let pud = mm.pud_alloc(mm.pgd_offset_k(va), va).unwrap();
        let (pud_table, idx) = (pud.table_phys(), pud.index());
        let winner = Arc::new(std::sync::Mutex::new(None));
        let w = winner.clone();
        mm.env().on_next_alloc(move |env| {
            let f = env.alloc_table_frame().unwrap();
            for slot in env.frame_table(f) {
                slot.store(0, Ordering::Relaxed);
            }
            env.frame_table(pud_table)[idx].store(Descriptor::table(f).raw(), Ordering::Release);
            *w.lock().unwrap() = Some(f);
        });
        mm.env().start_recording();
        let pmd = mm.pmd_alloc(pud, va).unwrap();
        let winner = winner.lock().unwrap().unwrap();
        assert_eq!(pmd.table_phys(), winner);
        let ev = mm.env().take_events();
        let ours = ev
            .iter()
            .filter_map(|e| match e {
                Event::Alloc(p) if *p != winner => Some(*p),
                _ => None,
            })
            .next()
            .unwrap();
        assert!(
            ev.contains(&Event::Free(ours)),
            "loser's frame not freed: {ev:?}"
        );
        assert!(
            !ev.iter().any(|e| matches!(e, Event::Store { .. })),
            "loser stored a descriptor: {ev:?}"
        );
        assert_eq!(
            mm.stats().pmd,
            LevelStats {
                installed: 0,
                lost: 1
            }
        );
        assert_eq!(mm.env().live_frames(), 3); // pgd, pud, the winner's pmd
    }

    /// Threads released together race to fill the same empty slots at every level.
    fn race(mm: InitMm<TestEnv>, threads: usize, rounds: usize) -> (PgStatsSnapshot, usize) {
        let mm = Arc::new(mm);
        mm.env().set_alloc_yield(true); // widen the window between the empty read and the lock
        for round in 0..rounds {
            let va = VMALLOC_START + round * PUD_SIZE;
            let barrier = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (mm, barrier) = (mm.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        // Each thread wants a different page, all under the same tables.
                        let va = va + t * 4096;
                        barrier.wait();
                        let pud = mm.pud_alloc(mm.pgd_offset_k(va), va).unwrap();
                        let pmd = mm.pmd_alloc(pud, va).unwrap();
                        let pte = mm.pte_alloc_kernel(pmd, va).unwrap();
                        (pud.table_phys(), pmd.table_phys(), pte.table_phys())
                    })
                })
                .collect();
            let seen: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert!(
                seen.iter().all(|s| *s == seen[0]),
                "threads saw different tables: {seen:?}"
            );
        }
        let s = mm.stats();
        // Every frame allocated was either installed or given back.
        let installs = s.pud.installed + s.pmd.installed + s.pte.installed;
        let lost = s.pud.lost + s.pmd.lost + s.pte.lost;
        assert_eq!(mm.env().allocations() as u64, 1 + installs + lost);
        assert_eq!(mm.env().live_frames() as u64, 1 + installs);
        (s, mm.env().live_frames())
    }

    /// One table per slot whatever the race, every loser's frame freed, and the race path ran.
    fn assert_raced(s: PgStatsSnapshot, live: usize, rounds: usize) {
        // Every round shares the pud table, gets its own pmd table and pte table.
        assert_eq!(s.pud.installed, 1);
        assert_eq!(s.pmd.installed, rounds as u64);
        assert_eq!(s.pte.installed, rounds as u64);
        assert_eq!(live, 1 + 1 + 2 * rounds);
        assert!(
            s.pud.lost + s.pmd.lost + s.pte.lost > 0,
            "the race path never ran: {s:?}"
        );
    }

    #[test]
    fn racing_allocators_install_one_table_per_slot_and_free_the_rest() {
        let (s, live) = race(mm(), 8, 40);
        assert_raced(s, live, 40);
    }

    /// The seed design takes the page-table lock only to re-check and install: never while it
    /// allocates, and not for the rest of the walk.
    #[test]
    fn seed_walk_locks_only_around_the_install() {
        let mm = mm();
        let walk = mm.begin_walk();
        assert!(!mm.page_table_lock.is_locked());
        walk.allocate(|| assert!(!mm.page_table_lock.is_locked()));
        walk.install(&mm.page_table_lock, || {
            assert!(mm.page_table_lock.is_locked())
        });
        assert!(!mm.page_table_lock.is_locked());
    }

    /// Linux 2.6.14, for the benchmark: the walk holds `page_table_lock` from its start to its
    /// end, except while allocating a table; unmapping takes no page-table lock.
    #[cfg(feature = "bench")]
    mod pre_patch {
        use super::*;

        fn pre_patch_mm() -> InitMm<TestEnv> {
            let mm = mm();
            mm.set_design(Design::PrePatch);
            mm
        }

        #[test]
        fn walk_holds_the_lock_except_while_allocating() {
            let mm = pre_patch_mm();
            let walk = mm.begin_walk();
            assert!(mm.page_table_lock.is_locked());
            walk.allocate(|| assert!(!mm.page_table_lock.is_locked(), "dropped to allocate"));
            assert!(
                mm.page_table_lock.is_locked(),
                "taken again after allocating"
            );
            walk.install(&mm.page_table_lock, || {
                assert!(mm.page_table_lock.is_locked())
            });
            assert!(
                mm.page_table_lock.is_locked(),
                "still held after the install"
            );
            drop(walk);
            assert!(!mm.page_table_lock.is_locked());
        }

        #[test]
        fn allocations_happen_with_the_lock_dropped_and_leaves_under_it() {
            let mm = Arc::new(pre_patch_mm());
            let m = mm.clone();
            // The hook runs inside the first table allocation of the map call below.
            mm.env().on_next_alloc(move |_| {
                assert!(!m.page_table_lock.is_locked(), "allocating under the lock")
            });
            mm.map_range(VMALLOC_START, 0x4000_0000, 3 * 4096, Prot::KERNEL_RW, false)
                .unwrap();
            assert!(
                !mm.page_table_lock.is_locked(),
                "released at the end of the call"
            );
            assert_eq!(mm.stats().pte.installed, 1);
        }

        #[test]
        fn unmap_takes_no_page_table_lock() {
            let mm = pre_patch_mm();
            mm.map_range(VMALLOC_START, 0x4000_0000, 4096, Prot::KERNEL_RW, false)
                .unwrap();
            // Were unmap to take the lock, this would spin forever.
            let _held = mm.page_table_lock.lock();
            mm.unmap_range(VMALLOC_START, 4096);
            assert!(mm.translate(VMALLOC_START).is_none());
        }

        /// Pre-patch kernels lost install races too: the allocators dropped the lock to
        /// allocate, so a racer could fill the slot meanwhile.
        #[test]
        fn racing_pre_patch_allocators_also_lose_races_and_free_their_tables() {
            let (s, live) = race(pre_patch_mm(), 8, 40);
            assert_raced(s, live, 40);
        }

        #[test]
        fn design_switches() {
            let mm = mm();
            assert_eq!(mm.design(), Design::Seed);
            mm.set_design(Design::PrePatch);
            assert_eq!(mm.design(), Design::PrePatch);
            mm.set_design(Design::Seed);
            assert_eq!(mm.design(), Design::Seed);
        }
    }
}

/// Model checking of the install protocol with loom: every interleaving (up to the preemption
/// bound) of two or three CPUs racing to fill the same or neighbouring empty slots.
///
/// Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --lib --release
/// --target host-tuple mm::pgalloc::loom_tests` (`LOOM_MAX_PREEMPTIONS` overrides
/// the default bound of 3).
#[cfg(all(test, loom))]
mod loom_tests {
    use std::sync::Arc;
    use std::vec::Vec;

    use super::*;
    use crate::mm::pgtable::{PAGE_SIZE, VMALLOC_START};
    use crate::mm::testenv::{POISON, TestEnv};

    /// How the racing CPUs' addresses relate.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Slots {
        /// Every thread needs the table under the same slot.
        Same,
        /// Thread `t` needs the table under slot `t` of the same parent table.
        Neighbours,
    }

    /// Run `f` under loom (preemption bound 3 unless `LOOM_MAX_PREEMPTIONS` says otherwise) and
    /// print how many interleavings were explored.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        use std::sync::atomic::{AtomicUsize as StdCounter, Ordering as StdOrdering};
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(3);
        }
        let runs = Arc::new(StdCounter::new(0));
        let r = runs.clone();
        b.check(move || {
            r.fetch_add(1, StdOrdering::Relaxed);
            f();
        });
        std::println!(
            "loom: {} interleavings, preemption bound {:?}",
            runs.load(StdOrdering::Relaxed),
            b.preemption_bound
        );
    }

    /// `threads` CPUs race to install the table *below* a `parent`-level slot (pgd → pud table,
    /// pud → pmd table, pmd → pte table). With `RECHECK = false` the slow path skips the re-check
    /// under the lock, which must make this fail.
    fn race<const RECHECK: bool>(parent: Level, threads: usize, slots: Slots) {
        model(move || {
            let mm =
                Arc::new(InitMm::new(TestEnv::with_capacity(16), PhysLayout::unchecked()).unwrap());
            let va_of = move |t: usize| match slots {
                Slots::Same => VMALLOC_START + t * PAGE_SIZE,
                Slots::Neighbours => VMALLOC_START + t * parent.entry_size(),
            };
            // Install the tables above `parent` first, single-threaded.
            let mut entry = mm.pgd_offset_k(va_of(0));
            while entry.level() < parent {
                entry = mm
                    .alloc_table_in(&mm.begin_walk(), entry, va_of(0))
                    .unwrap();
            }
            let parent_table = entry.table_phys();
            let frames_before = mm.env().live_frames();

            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let mm = mm.clone();
                    loom::thread::spawn(move || {
                        let va = va_of(t);
                        let slot = mm.entry_in(parent_table, parent, va);
                        let got = if RECHECK {
                            match parent {
                                Level::Pgd => mm.pud_alloc(slot, va),
                                Level::Pud => mm.pmd_alloc(slot, va),
                                _ => mm.pte_alloc_kernel(slot, va),
                            }
                        } else {
                            mm.alloc_next::<false>(&mm.begin_walk(), slot, va)
                        }
                        .unwrap();
                        // Whoever installed it, the table we were given reads as zeroed: its
                        // zeroing happened-before our Acquire read of the descriptor.
                        let first = mm.entry_in(got.table_phys(), got.level(), va).read();
                        assert_eq!(
                            first.raw(),
                            0,
                            "saw an unzeroed table ({POISON:#x} = poison)"
                        );
                        got.table_phys()
                    })
                })
                .collect();
            let seen: Vec<PhysAddr> = handles.into_iter().map(|h| h.join().unwrap()).collect();

            let n_slots = match slots {
                Slots::Same => 1,
                Slots::Neighbours => threads,
            };
            for (t, pa) in seen.iter().enumerate() {
                let installed = mm.entry_in(parent_table, parent, va_of(t)).read();
                assert!(
                    installed.is_table(parent),
                    "install race: slot {t} empty afterwards"
                );
                assert_eq!(
                    *pa,
                    installed.addr(),
                    "install race: thread {t} got a table that is not installed"
                );
            }
            let s = mm.stats();
            let level = match parent {
                Level::Pgd => s.pud,
                Level::Pud => s.pmd,
                _ => s.pte,
            };
            assert_eq!(
                level.installed, n_slots as u64,
                "install race: double install: {level:?}"
            );
            assert_eq!(
                mm.env().live_frames(),
                frames_before + n_slots,
                "install race: a racing allocation leaked its frame: {level:?}"
            );
            // Every frame allocated in the race was installed or freed as a loser.
            assert_eq!(
                mm.env().allocations() - frames_before,
                (level.installed + level.lost) as usize
            );
        });
    }

    #[test]
    fn two_cpus_same_pte_slot() {
        race::<true>(Level::Pmd, 2, Slots::Same);
    }

    #[test]
    fn two_cpus_same_pmd_slot() {
        race::<true>(Level::Pud, 2, Slots::Same);
    }

    #[test]
    fn two_cpus_same_pud_slot() {
        race::<true>(Level::Pgd, 2, Slots::Same);
    }

    #[test]
    fn three_cpus_same_pte_slot() {
        race::<true>(Level::Pmd, 3, Slots::Same);
    }

    #[test]
    fn three_cpus_same_pud_slot() {
        race::<true>(Level::Pgd, 3, Slots::Same);
    }

    #[test]
    fn two_cpus_neighbouring_pte_slots() {
        race::<true>(Level::Pmd, 2, Slots::Neighbours);
    }

    #[test]
    fn three_cpus_neighbouring_pmd_slots() {
        race::<true>(Level::Pud, 3, Slots::Neighbours);
    }

    /// Two CPUs walk the whole way down (pud, pmd and pte tables all missing) for pages under the
    /// same tables: every level races at once.
    #[test]
    fn two_cpus_full_walk() {
        model(|| {
            let mm =
                Arc::new(InitMm::new(TestEnv::with_capacity(16), PhysLayout::unchecked()).unwrap());
            let hs: Vec<_> = (0..2)
                .map(|t| {
                    let mm = mm.clone();
                    loom::thread::spawn(move || {
                        let va = VMALLOC_START + t * PAGE_SIZE;
                        let pud = mm.pud_alloc(mm.pgd_offset_k(va), va).unwrap();
                        let pmd = mm.pmd_alloc(pud, va).unwrap();
                        let pte = mm.pte_alloc_kernel(pmd, va).unwrap();
                        (pud.table_phys(), pmd.table_phys(), pte.table_phys())
                    })
                })
                .collect();
            let seen: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(seen[0], seen[1]);
            let s = mm.stats();
            assert_eq!(
                [s.pud.installed, s.pmd.installed, s.pte.installed],
                [1, 1, 1]
            );
            assert_eq!(mm.env().live_frames(), 4);
        });
    }

    /// The re-check under the lock is what prevents a double install: without it loom finds an
    /// interleaving where both CPUs see the slot empty, both install, one table is lost and its
    /// frame leaked.
    #[test]
    #[should_panic(expected = "install race:")]
    fn without_the_recheck_two_cpus_double_install() {
        race::<false>(Level::Pmd, 2, Slots::Same);
    }
}
