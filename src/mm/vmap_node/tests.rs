use super::*;

const R: usize = 0xffff_8000_0000_0000;
const P: usize = PAGE_SIZE;

#[test]
fn an_alignment_picks_a_slot_at_least_that_large() {
    let mut a = SlotArena::new();
    a.add_range(R);
    a.alloc(P, P, 0).unwrap();
    for align in [2 * P, 4 * P, 16 * P, SLOT] {
        let x = a.alloc(P, align, 0).unwrap();
        assert!(
            x.start.is_multiple_of(align),
            "{:#x} at {align:#x}",
            x.start
        );
        assert_eq!(x.size, P, "the area is what was asked for, not its slot");
    }
}

#[test]
fn slots_from_the_lowest_up_with_their_size_and_tag() {
    let mut a = SlotArena::new();
    assert_eq!(a.alloc(P, P, 1), None, "no range yet");
    a.add_range(R);
    let x = a.alloc(3 * P, P, 1).unwrap();
    let y = a.alloc(SLOT_MAX_PAGES * P, P, 2).unwrap();
    let z = a.alloc(3 * P, P, 0).unwrap();
    assert_eq!(
        (x.start, x.size),
        (R, 3 * P),
        "3 pages and a guard: a 4-page slot"
    );
    assert_eq!(
        (y.start, y.size),
        (R + SUB, SLOT_MAX_PAGES * P),
        "another class, another sub-block"
    );
    assert_eq!(z.start, R + 4 * P, "the next 4-page slot");
    a.free(z.start).unwrap();
    assert_eq!(a.tag(x.start), Some(1));
    assert_eq!(a.tag(y.start), Some(2));
    assert_eq!(a.find(x.start + 2 * P), Some(x));
    assert_eq!(
        a.find(x.start + 3 * P),
        Some(x),
        "the guard page is the area's"
    );
    assert_eq!(
        a.find(x.start + 4 * P),
        None,
        "past the guard page: nobody's"
    );
    assert_eq!(
        a.find(y.start + SLOT - 1),
        Some(y),
        "a full slot ends with its guard page"
    );
    assert_eq!(a.tag(x.start + P), None, "no area starts there");
    assert_eq!(a.set_tag(x.start, 4), Some(1));
    assert_eq!(a.tag(x.start), Some(4));
    assert_eq!(a.find(x.start), Some(x), "retagging keeps the size");
    assert_eq!(a.live_areas(), 2);
    assert_eq!(a.free_bytes(), NODE_RANGE - P - 4 * P - SLOT);
}

#[test]
fn freed_slots_are_reused_and_mistakes_refused() {
    let mut a = SlotArena::new();
    a.add_range(R);
    let x = a.alloc(P, P, 1).unwrap();
    assert_eq!(
        a.free(x.start + P),
        Err(VaError::InsideArea {
            addr: x.start + P,
            area: x
        })
    );
    assert_eq!(a.free(x.start), Ok(x));
    assert_eq!(a.free(x.start), Err(VaError::NotAnArea { addr: x.start }));
    assert_eq!(
        a.alloc(P, P, 3).unwrap().start,
        x.start,
        "the freed slot first"
    );
    assert_eq!(
        a.free(R + 7 * SUB),
        Err(VaError::NotAnArea { addr: R + 7 * SUB })
    );
}

#[test]
fn sub_blocks_fill_in_turn_and_a_full_region_asks_for_another() {
    let mut a = SlotArena::new();
    a.add_range(R);
    let n = 2 * MAX_SUB_SLOTS + 1;
    let areas: Vec<_> = (0..n).map(|_| a.alloc(P, P, 0).unwrap()).collect();
    for (i, x) in areas.iter().enumerate() {
        assert_eq!(
            x.start,
            R + i * 2 * P,
            "a page and its guard page each, in order"
        );
    }
    assert_eq!(a.ranges[0].subs.len(), 3);
    // Free one slot in the first (full) sub-block: it is used before the third's.
    a.free(areas[5].start).unwrap();
    assert_eq!(a.alloc(P, P, 0).unwrap().start, areas[5].start);
    assert!(a.contains(R + NODE_RANGE - 1) && !a.contains(R + NODE_RANGE));
    // A full range: the arena says so.
    let mut b = SlotArena::new();
    b.add_range(R);
    for _ in 0..SUBS_PER_RANGE * (SUB / SLOT) {
        b.alloc(SLOT_MAX_PAGES * P, P, 0).unwrap();
    }
    assert_eq!(
        b.alloc(P, P, 0),
        None,
        "no room for a sub-block of another class either"
    );
    b.add_range(R + NODE_RANGE);
    assert_eq!(b.alloc(P, P, 0).unwrap().start, R + NODE_RANGE);
}

#[test]
fn live_areas_and_free_bytes_follow_every_alloc_and_free() {
    // The counts are taken from the sub-blocks' free stacks: check them against a model over
    // every class, two ranges, and frees that empty and refill sub-blocks.
    let mut a = SlotArena::new();
    a.add_range(R);
    a.add_range(R + NODE_RANGE);
    let total = 2 * (NODE_RANGE - P);
    let mut live: Vec<(VmapArea, usize)> = Vec::new();
    let slot_of = |pages: usize| (pages + 1).next_power_of_two().max(2) * P;
    for i in 0..3000 {
        let pages = 1 + (i * 7) % SLOT_MAX_PAGES;
        live.push((a.alloc(pages * P, P, i % 8).unwrap(), slot_of(pages)));
        if i % 3 == 2 {
            let (x, _) = live.swap_remove((i * 13) % live.len());
            assert_eq!(a.free(x.start), Ok(x));
        }
        if i % 500 == 0 {
            let used: usize = live.iter().map(|&(_, slot)| slot).sum();
            assert_eq!(a.live_areas(), live.len());
            assert_eq!(a.free_bytes(), total - used);
        }
    }
    for (x, _) in live.drain(..) {
        a.free(x.start).unwrap();
    }
    assert_eq!((a.live_areas(), a.free_bytes()), (0, total));
}
