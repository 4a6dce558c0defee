//! The baseline the benchmark compares initmm's design with: Linux 2.6.14's, before "mm: init_mm
//! without ptlock", as an [`InstallPolicy`] of `initmm-mm`'s `InitMm`.
//!
//! - `map_vm_area()` took `init_mm.page_table_lock` once, around its whole walk over the area
//!   (every table, every leaf it wrote), and dropped it at the end: [`PrePatch::begin_walk`]
//!   takes it, and the walk's end (the [`PrePatchWalk`] dropped) releases it.
//! - `pte_alloc_kernel(mm, pmd, addr)`, `__pmd_alloc` and `__pud_alloc` were called with the
//!   lock held and, when the entry was empty, dropped it, allocated (and zeroed) the page, took
//!   it again, re-checked the entry and freed their page if somebody had populated it meanwhile:
//!   [`PrePatch::allocate`] drops and retakes the lock around the allocation, and
//!   [`PrePatch::install`] runs the re-check and install under the lock the walk holds. So
//!   pre-patch kernels lost install races too; what the patch changed is who takes the lock and
//!   for how long.
//! - `unmap_vm_area()` took no page-table lock: unmapping never begins a walk, in either design.
//!
//! Everything else (the walk, the leaf writes, the barriers, the range allocators, the lazy
//! purge) is the same code as initmm's. What this does not model of 2.6.14: its virtual-area
//! list (`vmlist`, a linked list searched in O(n) under `vmlist_lock`, where initmm has per-CPU
//! slots and an O(log n) tree) and its synchronous TLB flush at every `vunmap` (where both
//! designs here purge lazily): the comparison isolates the page-table lock's discipline.

use core::cell::RefCell;

use initmm_mm::pgalloc::InstallPolicy;
use initmm_mm::profile::{self, Held, Lock};
use initmm_mm::sync::{Mutex, MutexGuard};

/// Linux 2.6.14's serialisation of kernel mappings (see the module documentation).
pub struct PrePatch;

/// One pre-patch mapping call: `page_table_lock`, held from the call's start to its end except
/// while a table is allocated (`None` then).
pub struct PrePatchWalk<'a> {
    lock: &'a Mutex<()>,
    held: RefCell<Option<Held<MutexGuard<'a, ()>>>>,
}

impl PrePatchWalk<'_> {
    /// Does the walk hold the lock now? (For the tests of this policy.)
    pub fn holds_the_lock(&self) -> bool {
        self.held.borrow().is_some()
    }
}

// SAFETY: `install` runs its closure once, while the walk holds `page_table_lock` (taken by
// `begin_walk`, dropped only inside `allocate`, which takes it again before it returns, and
// checked here to be the same lock); `allocate` runs its closure once. Neither touches a table.
unsafe impl InstallPolicy for PrePatch {
    type Walk<'a> = PrePatchWalk<'a>;

    fn begin_walk(page_table_lock: &Mutex<()>) -> PrePatchWalk<'_> {
        PrePatchWalk {
            lock: page_table_lock,
            held: RefCell::new(Some(profile::acquire(Lock::PageTable, || {
                page_table_lock.lock()
            }))),
        }
    }

    fn allocate<R>(walk: &PrePatchWalk<'_>, alloc: impl FnOnce() -> R) -> R {
        // 2.6.14's allocators dropped the lock to allocate (they may sleep in the allocator).
        drop(walk.held.borrow_mut().take());
        let r = alloc();
        *walk.held.borrow_mut() = Some(profile::acquire(Lock::PageTable, || walk.lock.lock()));
        r
    }

    fn install<R>(
        walk: &PrePatchWalk<'_>,
        page_table_lock: &Mutex<()>,
        install: impl FnOnce() -> R,
    ) -> R {
        assert!(
            walk.holds_the_lock() && core::ptr::eq(walk.lock, page_table_lock),
            "pre-patch install outside the walk's page_table_lock"
        );
        install()
    }
}

#[cfg(test)]
mod tests;
