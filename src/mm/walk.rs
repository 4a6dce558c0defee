//! The one walk over a range of a translation table tree: every operation on a range of
//! `init_mm` (map, unmap, count, reclaim, free a subtree, check for leaves, translate, list the
//! leaves of another tree) is a [`Visitor`] of it.
//!
//! [`walk`] visits, in address order, every entry of a table that the range meets, handing the
//! visitor the entry and the part of the range it translates (a [`Span`]). The visitor decides
//! what to do with the entry and whether to go down into the table it points at
//! ([`Step::Descend`]); after the walk below an entry it is called again ([`Visitor::after`]), so
//! bottom-up work (freeing tables once the tables below them are gone) is a visitor too.
//!
//! The walker reads each entry it descends through once (Acquire, see invariant 1 in `mm`'s
//! module documentation) and follows only table descriptors it read itself: a visitor cannot make
//! it walk a frame that is not a table of the tree.

use super::addr::PhysAddr;
use super::env::PageTableEnv;
use super::pgtable::{Entry, Level};

/// What to do after visiting an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Go on with the next entry of the same table.
    Next,
    /// Walk the table this entry points at, if it holds a table descriptor (the walker reads it
    /// again after [`Visitor::visit`], so a visitor may install the table first), then call
    /// [`Visitor::after`] for this entry.
    Descend,
    /// End the walk here (the visitor keeps why: an error, or what it was looking for).
    Stop,
}

/// The part of the walked range that one entry translates: `[start, last]`, both inclusive, so
/// that a range may end at the very top of the address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first address.
    pub start: usize,
    /// The last address (inclusive).
    pub last: usize,
}

impl Span {
    /// The address after the span (0 when it ends at the top of the address space).
    pub const fn end(self) -> usize {
        self.last.wrapping_add(1)
    }

    /// Does the span hold every address `entry` translates? (A leaf may be cleared, or a block
    /// written, or a table freed, only for a range that covers the entry's whole span.)
    pub const fn covers(self, entry: &Entry<'_>) -> bool {
        let base = entry.span_start();
        self.start == base && self.last == base + (entry.level().entry_size() - 1)
    }
}

/// One operation over a range: what it does at each entry the range meets.
pub trait Visitor {
    /// Called for each entry that `span` (part of the walked range) goes through, top level
    /// first, in address order.
    fn visit(&mut self, entry: &Entry<'_>, span: Span) -> Step;

    /// Called after the walk below `entry`, for the entries [`visit`](Self::visit) descended
    /// into, unless the walk below stopped: bottom-up work goes here.
    fn after(&mut self, _entry: &Entry<'_>, _span: Span) {}
}

/// Walk `[start, last]` (inclusive; every address in the part of the address space that `table`
/// translates) through the `level` table in frame `table`, calling `visitor` for each entry.
/// Returns false if a visitor stopped the walk ([`Step::Stop`]).
///
/// # Safety
///
/// `table` is a `level` page table that `env` can reach with [`PageTableEnv::table`], and so is
/// every table that a table descriptor in the walked range points at; each stays a table (is not
/// freed or reused) while the walk is in it. A visitor may free a table only once the walk will
/// not enter it again: the table an entry points at, from `visit` returning [`Step::Next`] or
/// from `after`.
pub unsafe fn walk<E: PageTableEnv, V: Visitor>(
    env: &E,
    table: PhysAddr,
    level: Level,
    start: usize,
    last: usize,
    visitor: &mut V,
) -> bool {
    // SAFETY: the caller's contract, passed on unchanged.
    unsafe {
        match level {
            Level::Pgd => walk_at::<Pgd, E, V>(env, table, start, last, visitor),
            Level::Pud => walk_at::<Pud, E, V>(env, table, start, last, visitor),
            Level::Pmd => walk_at::<Pmd, E, V>(env, table, start, last, visitor),
            Level::Pte => walk_at::<Pte, E, V>(env, table, start, last, visitor),
        }
    }
}

/// A level as a type, so that the walk is one function per level and the compiler can lay the
/// four out inline, with each level's constants folded (a walk of one page is four short loops,
/// not four calls of a general one).
trait LevelType {
    const LEVEL: Level;
    /// The level below (the pte level's is itself, never walked).
    type Below: LevelType;
}

struct Pgd;
struct Pud;
struct Pmd;
struct Pte;

impl LevelType for Pgd {
    const LEVEL: Level = Level::Pgd;
    type Below = Pud;
}
impl LevelType for Pud {
    const LEVEL: Level = Level::Pud;
    type Below = Pmd;
}
impl LevelType for Pmd {
    const LEVEL: Level = Level::Pmd;
    type Below = Pte;
}
impl LevelType for Pte {
    const LEVEL: Level = Level::Pte;
    type Below = Pte;
}

/// [`walk`] at level `L`.
///
/// # Safety
///
/// As for [`walk`], with `L::LEVEL` for `level`.
#[inline]
unsafe fn walk_at<L: LevelType, E: PageTableEnv, V: Visitor>(
    env: &E,
    table: PhysAddr,
    start: usize,
    last: usize,
    visitor: &mut V,
) -> bool {
    let level = L::LEVEL;
    // SAFETY: `table` is a live `level` table (this function's contract).
    let slots = unsafe { env.table(table) };
    let mut addr = start;
    loop {
        let span = Span {
            start: addr,
            last: (addr | (level.entry_size() - 1)).min(last),
        };
        let entry = Entry::new(slots, table, level, addr);
        match visitor.visit(&entry, span) {
            Step::Next => {}
            Step::Stop => return false,
            Step::Descend => {
                if level != Level::Pte {
                    let d = entry.read();
                    if d.is_table(level) {
                        // SAFETY: a table descriptor of the tree, read just now: the contract
                        // covers the table it points at.
                        if !unsafe {
                            walk_at::<L::Below, E, V>(env, d.addr(), span.start, span.last, visitor)
                        } {
                            return false;
                        }
                        visitor.after(&entry, span);
                    }
                }
            }
        }
        if span.last == last {
            return true;
        }
        addr = span.last + 1;
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
