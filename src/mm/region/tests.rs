use super::*;
use alloc::vec;

const fn r(base: u64, size: u64) -> Region {
    Region::new(base, size)
}

#[test]
fn end_and_last_are_checked() {
    assert_eq!(r(0x1000, 0x1000).end(), Some(0x2000));
    assert_eq!(r(u64::MAX - 0xfff, 0x1000).end(), None);
    assert_eq!(r(u64::MAX - 0xfff, 0x1000).last(), Some(u64::MAX));
    assert_eq!(r(u64::MAX, 2).last(), None);
    assert_eq!(r(5, 0).last(), None);
    assert!(r(u64::MAX - 1, 10).contains(u64::MAX));
    assert!(!r(0x1000, 0x1000).contains(0x2000));
}

#[test]
fn subtract_hole_in_middle() {
    let got = subtract(&[r(0x4000_0000, 0x4000_0000)], &[r(0x4800_0000, 0x10_0000)]);
    assert_eq!(
        got,
        vec![r(0x4000_0000, 0x800_0000), r(0x4810_0000, 0x37f0_0000)]
    );
}

#[test]
fn subtract_holes_at_both_edges_and_outside() {
    let ram = [r(0x1000, 0x9000)];
    let holes = [r(0x9000, 0x5000), r(0, 0x2000), r(0x20_0000, 0x1000)];
    assert_eq!(subtract(&ram, &holes), vec![r(0x2000, 0x7000)]);
}

#[test]
fn subtract_covering_hole_leaves_nothing() {
    assert_eq!(
        subtract(&[r(0x1000, 0x1000), r(0x3000, 0x1000)], &[r(0, 0x10_0000)]),
        vec![]
    );
}

#[test]
fn subtract_unsorted_overlapping_holes() {
    let ram = [r(0, 0x10000)];
    let holes = [
        r(0x8000, 0x2000),
        r(0x1000, 0x3000),
        r(0x2000, 0x1000),
        r(0x9000, 0x2000),
    ];
    assert_eq!(
        subtract(&ram, &holes),
        vec![r(0, 0x1000), r(0x4000, 0x4000), r(0xb000, 0x5000)]
    );
}

#[test]
fn subtract_empty_inputs() {
    assert_eq!(subtract(&[], &[r(0, 0x1000)]), vec![]);
    assert_eq!(subtract(&[r(0x1000, 0x1000)], &[]), vec![r(0x1000, 0x1000)]);
    assert_eq!(subtract(&[r(0x1000, 0)], &[]), vec![]);
    assert_eq!(
        subtract(&[r(0x1000, 0x1000)], &[r(0x1800, 0)]),
        vec![r(0x1000, 0x1000)]
    );
}

#[test]
fn subtract_sorts_and_merges_unsorted_ram() {
    let ram = [r(0x5000, 0x1000), r(0x1000, 0x2000), r(0x2000, 0x2000)];
    assert_eq!(
        subtract(&ram, &[r(0x5800, 0x100)]),
        vec![r(0x1000, 0x3000), r(0x5000, 0x800), r(0x5900, 0x700)]
    );
}

#[test]
fn subtract_at_top_of_address_space() {
    let top = r(u64::MAX - 0xffff, 0x10000); // ends exactly at 2^64
    assert_eq!(
        subtract(&[top], &[r(u64::MAX - 0xfff, 0x1000)]),
        vec![r(u64::MAX - 0xffff, 0xf000)]
    );
    // A hole whose end wraps is clamped to the top, not wrapped to 0.
    assert_eq!(
        subtract(&[top, r(0, 0x1000)], &[r(u64::MAX - 0x7fff, u64::MAX)]),
        vec![r(0, 0x1000), r(u64::MAX - 0xffff, 0x8000)]
    );
    // The whole space, as two RAM banks, minus nothing: two regions, no overflow.
    let whole = subtract(&[r(0, 1 << 63), r(1 << 63, 1 << 63)], &[]);
    assert_eq!(
        whole.iter().map(|x| u128::from(x.size)).sum::<u128>(),
        1 << 64
    );
    assert_eq!(whole[0].base, 0);
}

#[test]
fn union_merges_touching_and_drops_empty() {
    assert_eq!(
        union(&[
            r(0x3000, 0x1000),
            r(0, 0),
            r(0x1000, 0x2000),
            r(0x3800, 0x100)
        ]),
        vec![r(0x1000, 0x3000)]
    );
}

#[test]
fn align_inward_rounds_towards_the_inside() {
    assert_eq!(
        align_inward(r(0x1001, 0x3000), 0x1000),
        Some(r(0x2000, 0x2000))
    );
    assert_eq!(align_inward(r(0x1001, 0x1000), 0x1000), None);
    assert_eq!(
        align_inward(r(0x20_0000, 0x40_0000), 0x20_0000),
        Some(r(0x20_0000, 0x40_0000))
    );
    assert_eq!(align_inward(r(0, 0x1000), 3), None);
    assert_eq!(align_inward(r(0, 0x1000), 0), None);
    assert_eq!(
        align_inward(r(u64::MAX - 0x1ffe, 0x1fff), 0x1000),
        Some(r(u64::MAX - 0xfff, 0x1000))
    );
}

#[test]
fn covers_and_overlaps_without_allocating() {
    let rs = [
        Region::new(0x1000, 0x1000),
        Region::new(0x2000, 0x1000),
        Region::new(0x5000, 0x1000),
    ];
    assert!(
        covers(&rs, Region::new(0x1000, 0x2000)),
        "across touching regions"
    );
    assert!(covers(&rs, Region::new(0x1800, 0x100)));
    assert!(covers(&rs, Region::new(0x9000, 0)), "empty");
    assert!(!covers(&rs, Region::new(0x1000, 0x2001)), "one byte past");
    assert!(!covers(&rs, Region::new(0x2800, 0x3000)), "across a hole");
    assert!(!covers(&rs, Region::new(0x0, 0x1001)));
    assert!(!covers(&[], Region::new(0x0, 1)));
    assert!(overlaps(&rs, Region::new(0x2fff, 2)));
    assert!(overlaps(&rs, Region::new(0x0, u64::MAX)));
    assert!(!overlaps(&rs, Region::new(0x3000, 0x2000)));
    assert!(!overlaps(&rs, Region::new(0x5000, 0)));
}
