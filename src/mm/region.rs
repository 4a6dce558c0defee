//! Pure arithmetic on physical address ranges.
//!
//! The frame allocator's free list is "RAM minus everything already in use" (the kernel image, the
//! device tree, `/memreserve/` and `/reserved-memory`, spin-table mailboxes). Those inputs come
//! from firmware and are not trusted: holes may be unsorted, overlap each other, lie outside RAM,
//! or reach the top of the 64-bit space, where `base + size` does not fit in a `u64`. The
//! arithmetic is therefore done on `u128` half-open intervals, which cannot overflow, and only
//! converted back to [`Region`]s at the end.

use alloc::vec::Vec;

/// A physical address range `[base, base + size)`.
///
/// This is the single definition used by `platform` (what the device tree says) and by `mm` (what
/// the frame allocator hands out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region {
    /// The first address.
    pub base: u64,
    /// Length in bytes; 0 is an empty region.
    pub size: u64,
}

/// One past the last address: the exclusive end of the 64-bit physical space.
const TOP: u128 = 1 << 64;

impl Region {
    /// `[base, base + size)`; nothing is checked (see [`Region::end`] for the wrapping case).
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// The exclusive end, or `None` when it is not representable (the region reaches or wraps
    /// past 2^64). Use [`Region::last`] for ranges that may touch the top of the address space.
    pub const fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// The last address inside the region, or `None` when the region is empty or wraps past 2^64.
    pub const fn last(&self) -> Option<u64> {
        if self.size == 0 {
            return None;
        }
        self.base.checked_add(self.size - 1)
    }

    /// Whether the region holds no address (`size == 0`).
    pub const fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Whether `addr` lies inside the region (a region wrapping past 2^64 is clamped at the top).
    pub fn contains(&self, addr: u64) -> bool {
        let (start, end) = self.interval();
        start <= u128::from(addr) && u128::from(addr) < end
    }

    /// The half-open `u128` interval, clamped to the 64-bit space: a (malformed) region whose
    /// `base + size` wraps is taken to run to the top rather than to wrap to address 0.
    fn interval(&self) -> (u128, u128) {
        let start = u128::from(self.base);
        (start, (start + u128::from(self.size)).min(TOP))
    }
}

/// Append `[start, end)` to `out` as regions. A `u64` size cannot hold 2^64, so the one interval
/// that can need it (the whole address space) is split in two.
fn push_interval(out: &mut Vec<Region>, mut start: u128, end: u128) {
    while start < end {
        let size = (end - start).min(u128::from(u64::MAX));
        // Both fit: start < end <= 2^64 means start < 2^64, and size was clamped to u64::MAX.
        out.push(Region::new(start as u64, size as u64));
        start += size;
    }
}

/// Sorted, non-overlapping intervals covering the same addresses as `regions`; empty regions are
/// dropped and touching ones merged.
fn union_intervals(regions: &[Region]) -> Vec<(u128, u128)> {
    let mut iv: Vec<(u128, u128)> = regions
        .iter()
        .map(Region::interval)
        .filter(|(s, e)| s < e)
        .collect();
    iv.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(iv.len());
    for (s, e) in iv {
        match out.last_mut() {
            Some(prev) if s <= prev.1 => prev.1 = prev.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The union of `regions`: sorted, non-overlapping, touching regions merged, empty ones dropped.
pub fn union(regions: &[Region]) -> Vec<Region> {
    let mut out = Vec::new();
    for (s, e) in union_intervals(regions) {
        push_interval(&mut out, s, e);
    }
    out
}

/// `ram` minus `holes`: every address that is in some RAM region and in no hole.
///
/// The result is sorted and non-overlapping (touching RAM banks come out merged). Holes may be
/// unsorted, overlapping, partly or wholly outside RAM, empty, or reach the top of the address
/// space; none of that can overflow.
pub fn subtract(ram: &[Region], holes: &[Region]) -> Vec<Region> {
    let holes = union_intervals(holes);
    let mut out = Vec::new();
    for (mut s, e) in union_intervals(ram) {
        // Holes are sorted and disjoint, so one forward pass per RAM interval suffices.
        for &(hs, he) in &holes {
            if he <= s {
                continue;
            }
            if hs >= e {
                break;
            }
            if hs > s {
                push_interval(&mut out, s, hs);
            }
            s = s.max(he);
            if s >= e {
                break;
            }
        }
        if s < e {
            push_interval(&mut out, s, e);
        }
    }
    out
}

/// Does some region of `sorted` (sorted by base, non-overlapping, as [`union`] and
/// [`subtract`] return them) share an address with `r`? Allocates nothing: for hot paths.
pub fn overlaps(sorted: &[Region], r: Region) -> bool {
    let (s, e) = r.interval();
    sorted.iter().any(|x| {
        let (xs, xe) = x.interval();
        xs < e && s < xe
    })
}

/// Is every address of `r` in some region of `sorted` (sorted by base, non-overlapping, touching
/// regions merged or not)? An empty `r` is covered. Allocates nothing: for hot paths.
pub fn covers(sorted: &[Region], r: Region) -> bool {
    let (mut s, e) = r.interval();
    for x in sorted {
        if s >= e {
            break;
        }
        let (xs, xe) = x.interval();
        if xs <= s && s < xe {
            s = xe;
        }
    }
    s >= e
}

/// The largest sub-region of `r` whose base and end are both multiples of `align` (a power of
/// two), or `None` when there is none or `align` is not a power of two.
///
/// Used to hand the frame allocator only whole pages (or whole blocks) out of RAM ranges that
/// firmware may describe at byte granularity.
pub fn align_inward(r: Region, align: u64) -> Option<Region> {
    if !align.is_power_of_two() {
        return None;
    }
    let a = u128::from(align);
    let (s, e) = r.interval();
    let start = s.div_ceil(a) * a;
    let end = e / a * a;
    if start >= end {
        return None;
    }
    // start < end <= 2^64, and end - start < 2^64 unless the region was the whole space, which a
    // u64 size cannot describe; so both conversions are lossless.
    Some(Region::new(
        u64::try_from(start).ok()?,
        u64::try_from(end - start).ok()?,
    ))
}

#[cfg(test)]
mod tests;
