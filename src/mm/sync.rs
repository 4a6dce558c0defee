//! The atomics and the mutex that the page-table code is built from.
//!
//! Every descriptor slot, counter and lock in `mm` comes from here and nowhere else, so that a
//! `--cfg loom` build swaps all of them at once for loom's model-checked versions: the loom tests in
//! `pgalloc` then explore every interleaving of the real table-install code, not of a copy of it.
//! Code that imported `core::sync::atomic` directly would silently escape the model.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// A mutual-exclusion lock: a spinlock in the kernel, loom's mutex under the model.
///
/// Only `lock()` is offered. There is no `try_lock` or `force_unlock`: nothing in `mm` needs them,
/// and the model has no way to check code that uses them.
pub struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard returned by [`Mutex::lock`]; the lock is released when it is dropped.
#[cfg(not(loom))]
pub type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
/// The guard returned by [`Mutex::lock`]; the lock is released when it is dropped.
#[cfg(loom)]
pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    /// An unlocked mutex holding `value`.
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Is the lock held right now (by anyone)? For tests of who holds it when.
    #[cfg(not(loom))]
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Spin (or, under loom, yield to the model) until the lock is ours.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            // loom's mutex cannot be poisoned: a panicking model thread ends the whole model run.
            self.inner
                .lock()
                .unwrap_or_else(|_| panic!("loom mutex poisoned"))
        }
    }
}
