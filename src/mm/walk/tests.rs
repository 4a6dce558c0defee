use std::vec::Vec;

use super::*;
use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::layout::{PAGE_SIZE, PGDIR_SIZE, PMD_SIZE, VMALLOC_START};
use crate::mm::pgalloc::InitMm;
use crate::mm::pgtable::Prot;
use crate::mm::phys_layout::PhysLayout;
use crate::mm::testenv::TestEnv;

const V: usize = VMALLOC_START;
const DEV: u64 = 0x900_0000;

/// Records every call, and stops at `stop_at` (a span start) if set.
#[derive(Default)]
struct Record {
    seen: Vec<(&'static str, Level, usize, usize)>,
    stop_at: Option<usize>,
}

impl Visitor for Record {
    fn visit(&mut self, entry: &Entry<'_>, span: Span) -> Step {
        self.seen
            .push(("visit", entry.level(), span.start, span.last));
        if self.stop_at == Some(span.start) && entry.level() == Level::Pte {
            return Step::Stop;
        }
        if entry.read().is_table(entry.level()) {
            Step::Descend
        } else {
            Step::Next
        }
    }

    fn after(&mut self, entry: &Entry<'_>, span: Span) {
        self.seen
            .push(("after", entry.level(), span.start, span.last));
    }
}

fn mm_with_two_pages() -> InitMm<TestEnv> {
    let mm = InitMm::new(TestEnv::new(), PhysLayout::unchecked()).unwrap();
    mm.map_owned(
        VirtAddr(V + PAGE_SIZE),
        PhysAddr(DEV),
        2 * PAGE_SIZE,
        Prot::DEVICE,
        false,
    )
    .unwrap();
    mm
}

fn run(mm: &InitMm<TestEnv>, start: usize, last: usize, v: &mut Record) -> bool {
    // SAFETY: init_mm's own pgd; nothing changes the tree during the walk.
    unsafe { walk(mm.env(), mm.pgd_phys(), Level::Pgd, start, last, v) }
}

#[test]
fn visits_each_entry_top_down_with_its_part_of_the_range_then_after() {
    let mm = mm_with_two_pages();
    let mut r = Record::default();
    let last = V + 4 * PAGE_SIZE - 1;
    assert!(run(&mm, V, last, &mut r));
    let mut want = vec![
        ("visit", Level::Pgd, V, last),
        ("visit", Level::Pud, V, last),
        ("visit", Level::Pmd, V, last),
    ];
    for i in 0..4 {
        let a = V + i * PAGE_SIZE;
        want.push(("visit", Level::Pte, a, a + PAGE_SIZE - 1));
    }
    want.extend([
        ("after", Level::Pmd, V, last),
        ("after", Level::Pud, V, last),
        ("after", Level::Pgd, V, last),
    ]);
    assert_eq!(r.seen, want);
}

#[test]
fn a_range_across_tables_is_cut_at_each_boundary() {
    let mm = mm_with_two_pages();
    let mut r = Record::default();
    // From the last page of the first 2 MiB to the first page of the next: two pmd entries,
    // the second of which holds no table.
    let (start, last) = (V + PMD_SIZE - PAGE_SIZE, V + PMD_SIZE + PAGE_SIZE - 1);
    assert!(run(&mm, start, last, &mut r));
    let pmd: Vec<_> = r
        .seen
        .iter()
        .filter(|s| s.0 == "visit" && s.1 == Level::Pmd)
        .map(|s| (s.2, s.3))
        .collect();
    assert_eq!(
        pmd,
        [(start, V + PMD_SIZE - 1), (V + PMD_SIZE, last)],
        "each pmd entry sees only its part"
    );
}

#[test]
fn stop_ends_the_walk_at_once_without_after() {
    let mm = mm_with_two_pages();
    let mut r = Record {
        stop_at: Some(V + PAGE_SIZE),
        ..Record::default()
    };
    assert!(!run(&mm, V, V + 4 * PAGE_SIZE - 1, &mut r));
    assert_eq!(
        r.seen.last(),
        Some(&("visit", Level::Pte, V + PAGE_SIZE, V + 2 * PAGE_SIZE - 1))
    );
    assert!(r.seen.iter().all(|s| s.0 == "visit"), "{:?}", r.seen);
}

#[test]
fn a_range_may_end_at_the_top_of_the_address_space() {
    let mm = mm_with_two_pages();
    let mut r = Record::default();
    let start = usize::MAX - PGDIR_SIZE + 1;
    assert!(run(&mm, start, usize::MAX, &mut r));
    assert_eq!(r.seen, [("visit", Level::Pgd, start, usize::MAX)]);
    assert_eq!(
        Span {
            start,
            last: usize::MAX
        }
        .end(),
        0
    );
}
