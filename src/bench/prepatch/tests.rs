use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::vec::Vec;

use initmm_mm::addr::{PhysAddr, VirtAddr};
use initmm_mm::layout::{PUD_SIZE, VMALLOC_START};
use initmm_mm::pgalloc::{InitMm, Seed};
use initmm_mm::pgtable::Prot;
use initmm_mm::phys_layout::PhysLayout;
use initmm_mm::testenv::TestEnv;

use super::*;

fn pre_patch_mm() -> InitMm<TestEnv, PrePatch> {
    InitMm::with_policy(TestEnv::new(), PhysLayout::unchecked()).unwrap()
}

#[test]
fn a_walk_holds_the_lock_from_start_to_end_except_while_it_allocates() {
    let lock = Mutex::new(());
    let walk = PrePatch::begin_walk(&lock);
    assert!(lock.is_locked() && walk.holds_the_lock());
    PrePatch::allocate(&walk, || {
        assert!(
            !lock.is_locked(),
            "dropped to allocate, as 2.6.14's allocators did"
        )
    });
    assert!(lock.is_locked(), "taken again after allocating");
    PrePatch::install(&walk, &lock, || assert!(lock.is_locked()));
    assert!(lock.is_locked(), "still held after the install");
    drop(walk);
    assert!(!lock.is_locked(), "released at the end of the call");
}

#[test]
fn the_seed_takes_the_lock_only_to_install() {
    let lock = Mutex::new(());
    Seed::begin_walk(&lock);
    assert!(!lock.is_locked());
    Seed::allocate(&(), || assert!(!lock.is_locked()));
    Seed::install(&(), &lock, || assert!(lock.is_locked()));
    assert!(!lock.is_locked());
}

#[test]
#[should_panic(expected = "pre-patch install outside the walk's page_table_lock")]
fn an_install_under_another_lock_is_refused() {
    let (a, b) = (Mutex::new(()), Mutex::new(()));
    let walk = PrePatch::begin_walk(&a);
    PrePatch::install(&walk, &b, || ());
}

/// Walks are forbidden while set: unmapping must not begin one.
static NO_WALKS: AtomicBool = AtomicBool::new(false);

/// The seed's policy, but a walk while `NO_WALKS` is set panics.
struct Watched;

// SAFETY: `Seed`'s, which keeps the contract; `begin_walk` may only panic on top.
unsafe impl InstallPolicy for Watched {
    type Walk<'a> = ();

    fn begin_walk(_: &Mutex<()>) {
        assert!(!NO_WALKS.load(Ordering::SeqCst), "unmapping began a walk");
    }

    fn allocate<R>(w: &(), alloc: impl FnOnce() -> R) -> R {
        Seed::allocate(w, alloc)
    }

    fn install<R>(w: &(), lock: &Mutex<()>, install: impl FnOnce() -> R) -> R {
        Seed::install(w, lock, install)
    }
}

/// `unmap_vm_area()` took no page-table lock in 2.6.14 either: unmapping begins no walk, so
/// no policy's lock discipline reaches it.
#[test]
fn unmapping_begins_no_walk() {
    let mm: InitMm<TestEnv, Watched> =
        InitMm::with_policy(TestEnv::new(), PhysLayout::unchecked()).unwrap();
    let va = VirtAddr(VMALLOC_START);
    mm.map_owned(va, PhysAddr(0x4000_0000), 4096, Prot::KERNEL_RW, false)
        .unwrap();
    NO_WALKS.store(true, Ordering::SeqCst);
    mm.unmap_owned(va, 4096);
    NO_WALKS.store(false, Ordering::SeqCst);
    assert!(mm.translate(va).is_none());
}

/// Pre-patch kernels lost install races too: their allocators dropped the lock to allocate, so a
/// racer could fill the slot meanwhile. Exactly one table per slot, and every loser's frame back.
#[test]
fn racing_pre_patch_allocators_lose_races_and_free_their_tables() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 40;
    let mm = Arc::new(pre_patch_mm());
    mm.env().set_alloc_yield(true); // widen the window between the empty read and the lock
    for round in 0..ROUNDS {
        let va = VMALLOC_START + round * PUD_SIZE;
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (mm, barrier) = (mm.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    // Each thread its own page, all under the same tables.
                    let va = VirtAddr(va + t * 4096);
                    mm.map_owned(va, PhysAddr(0x4000_0000), 4096, Prot::KERNEL_RW, false)
                        .unwrap();
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    }
    let s = mm.stats();
    assert_eq!(s.pud.installed, 1);
    assert_eq!(s.pmd.installed, ROUNDS as u64);
    assert_eq!(s.pte.installed, ROUNDS as u64);
    assert!(
        s.pud.lost + s.pmd.lost + s.pte.lost > 0,
        "the race path never ran: {s:?}"
    );
    // The pgd, the pud table, a pmd and a pte table per round: every loser's table went back.
    assert_eq!(mm.env().live_frames(), 2 + 2 * ROUNDS);
}
