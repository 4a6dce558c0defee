use std::sync::{Arc, Barrier};

use super::*;
use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::layout::{PMD_SIZE, PUD_SIZE, VMALLOC_START};
use crate::mm::pgtable::Prot;
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
    let pud = mm
        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(va)), VirtAddr(va))
        .unwrap();
    let pmd = mm.pmd_alloc_owned(pud, VirtAddr(va)).unwrap();
    let pte = mm.pte_alloc_owned(pmd, VirtAddr(va)).unwrap();
    assert_eq!(pte.level(), Level::Pte);
    assert_eq!(pte.index(), 7);
    assert_eq!(pmd.index(), 5);
    assert_eq!(pud.index(), 3);
    assert_eq!(mm.env().live_frames(), 4);

    // Second walk, neighbouring page: same tables, no allocation.
    let allocs = mm.env().allocations();
    let va2 = va + 4096;
    let pud2 = mm
        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(va2)), VirtAddr(va2))
        .unwrap();
    let pmd2 = mm.pmd_alloc_owned(pud2, VirtAddr(va2)).unwrap();
    let pte2 = mm.pte_alloc_owned(pmd2, VirtAddr(va2)).unwrap();
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
    let pud = mm
        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(va)), VirtAddr(va))
        .unwrap();
    let pmd = mm.pmd_alloc_owned(pud, VirtAddr(va)).unwrap();
    mm.env().start_recording();
    let pte = mm.pte_alloc_owned(pmd, VirtAddr(va)).unwrap();
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
    mm.pte_alloc_owned(pmd, VirtAddr(va)).unwrap();
    assert_eq!(mm.env().take_events(), []);
}

#[test]
fn out_of_memory_leaves_the_slot_empty() {
    let mm = mm();
    let va = VMALLOC_START;
    let pud = mm
        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(va)), VirtAddr(va))
        .unwrap();
    mm.env().fail_after(0);
    assert_eq!(
        mm.pmd_alloc_owned(pud, VirtAddr(va)).unwrap_err(),
        MmError::OutOfMemory
    );
    assert_eq!(pud.read(), Descriptor::INVALID);
    assert_eq!(mm.env().live_frames(), 2);
    assert_eq!(mm.stats().pmd, LevelStats::default());
}

#[test]
fn block_in_the_way_allocates_nothing() {
    let mm = mm();
    let va = VMALLOC_START;
    mm.map_owned(
        VirtAddr(va),
        PhysAddr(0x8000_0000),
        PMD_SIZE,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    let pud = mm
        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(va)), VirtAddr(va))
        .unwrap();
    let pmd = mm.pmd_alloc_owned(pud, VirtAddr(va)).unwrap();
    let (live, allocs) = (mm.env().live_frames(), mm.env().allocations());
    assert_eq!(
        mm.pte_alloc_owned(pmd, VirtAddr(va + 4096)).unwrap_err(),
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
    let pud = mm
        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(va)), VirtAddr(va))
        .unwrap();
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
    let pmd = mm.pmd_alloc_owned(pud, VirtAddr(va)).unwrap();
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
                    let pud = mm
                        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(va)), VirtAddr(va))
                        .unwrap();
                    let pmd = mm.pmd_alloc_owned(pud, VirtAddr(va)).unwrap();
                    let pte = mm.pte_alloc_owned(pmd, VirtAddr(va)).unwrap();
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
        mm.map_owned(
            VirtAddr(VMALLOC_START),
            PhysAddr(0x4000_0000),
            3 * 4096,
            Prot::KERNEL_RW,
            false,
        )
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
        mm.map_owned(
            VirtAddr(VMALLOC_START),
            PhysAddr(0x4000_0000),
            4096,
            Prot::KERNEL_RW,
            false,
        )
        .unwrap();
        // Were unmap to take the lock, this would spin forever.
        let _held = mm.page_table_lock.lock();
        mm.unmap_owned(VirtAddr(VMALLOC_START), 4096);
        assert!(mm.translate(VirtAddr(VMALLOC_START)).is_none());
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
