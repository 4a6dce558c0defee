use std::sync::Arc;
use std::vec::Vec;

use super::*;
use crate::mm::layout::{PAGE_SIZE, VMALLOC_START};
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
        let mut entry = mm.pgd_offset_k(VirtAddr(va_of(0)));
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
                            Level::Pgd => mm.pud_alloc_owned(slot, VirtAddr(va)),
                            Level::Pud => mm.pmd_alloc_owned(slot, VirtAddr(va)),
                            _ => mm.pte_alloc_owned(slot, VirtAddr(va)),
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
                    let va = VirtAddr(VMALLOC_START + t * PAGE_SIZE);
                    let pud = mm.pud_alloc_owned(mm.pgd_offset_k(va), va).unwrap();
                    let pmd = mm.pmd_alloc_owned(pud, va).unwrap();
                    let pte = mm.pte_alloc_owned(pmd, va).unwrap();
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
