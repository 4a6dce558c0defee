//! [`Hook`]: a function a higher layer installs for a lower one to call, where the lower layer
//! cannot name it (it would import its own caller: see the layering in the crate documentation).
//!
//! The hooks are read from exception handlers and the panic handler, on any CPU, at any moment,
//! including while the CPU that installs one is stopped half-way: reading must never wait, and
//! must never see half a function pointer. Each installed function therefore gets a slot of its
//! own that is written once ([`spin::Once`]) and never reused, and one atomic index names the
//! current slot; reading is two atomic loads. No lock, no `unsafe`, no casts between functions
//! and integers.
//!
//! The price is a bound: a hook can be set [`Hook::SETS`] times. A kernel sets each hook once at
//! boot, and a test kernel may replace one once more (its own IRQ handler, its panic context).

use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Once;

/// How many times a hook can be set ([`Hook::SETS`]).
const SETS: usize = 4;

/// A function of type `F` (a `fn` pointer) installed at run time; see the module documentation.
pub struct Hook<F> {
    /// Every function ever installed, in the order their `set` calls claimed their slots.
    slots: [Once<F>; SETS],
    /// Slots claimed so far.
    claimed: AtomicUsize,
    /// 1 + the slot of the current function; 0 while none was installed.
    current: AtomicUsize,
}

impl<F: Copy> Hook<F> {
    /// How many times a hook can be set.
    pub const SETS: usize = SETS;

    /// A hook with no function installed yet.
    pub const fn new() -> Self {
        Self {
            slots: [const { Once::new() }; SETS],
            claimed: AtomicUsize::new(0),
            current: AtomicUsize::new(0),
        }
    }

    /// Install `f`, replacing what was installed. Of two racing calls, the one that claimed its
    /// slot later wins.
    ///
    /// # Panics
    /// When the hook was already set [`SETS`](Self::SETS) times.
    pub fn set(&self, f: F) {
        let slot = self.claimed.fetch_add(1, Ordering::Relaxed);
        assert!(
            slot < Self::SETS,
            "hook: set more than {} times",
            Self::SETS
        );
        self.slots[slot].call_once(|| f);
        // Release: whoever reads this index (Acquire, in `get`) sees the slot written.
        self.current.fetch_max(slot + 1, Ordering::Release);
    }

    /// The function installed last, if any. Never waits.
    #[inline]
    pub fn get(&self) -> Option<F> {
        let current = self.current.load(Ordering::Acquire);
        self.slots[current.checked_sub(1)?].get().copied()
    }
}

impl<F: Copy> Default for Hook<F> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Hook;

    fn one() -> u32 {
        1
    }

    fn two() -> u32 {
        2
    }

    #[test]
    fn empty_until_set_then_the_last_setting_wins() {
        let h: Hook<fn() -> u32> = Hook::new();
        assert!(h.get().is_none());
        h.set(one);
        assert_eq!(h.get().map(|f| f()), Some(1));
        h.set(two);
        assert_eq!(h.get().map(|f| f()), Some(2));
    }

    #[test]
    #[should_panic(expected = "hook: set more than 4 times")]
    fn setting_more_often_than_the_bound_panics() {
        let h: Hook<fn() -> u32> = Hook::new();
        for _ in 0..=Hook::<fn() -> u32>::SETS {
            h.set(one);
        }
    }

    #[test]
    fn racing_sets_and_gets_see_only_installed_functions() {
        static H: Hook<fn() -> u32> = Hook::new();
        std::thread::scope(|s| {
            s.spawn(|| H.set(one));
            s.spawn(|| H.set(two));
            s.spawn(|| {
                for _ in 0..10_000 {
                    if let Some(f) = H.get() {
                        assert!(matches!(f(), 1 | 2));
                    }
                }
            });
        });
        let last = H.get().map(|f| f());
        assert!(matches!(last, Some(1 | 2)));
        // The winner is the later claim: the index only grows.
        H.set(one);
        assert_eq!(H.get().map(|f| f()), Some(1));
    }
}
