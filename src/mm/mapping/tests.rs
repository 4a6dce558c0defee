use std::sync::Arc;
use std::vec::Vec;

use super::*;
use crate::addr::{PhysAddr, VirtAddr};
use crate::layout::{KIMAGE_VADDR, PMD_SIZE, PUD_SIZE, VMALLOC_END, VMALLOC_START};
use crate::pgtable::MemType;
use crate::phys_layout::PhysLayout;
use crate::region::{self, Region};
use crate::testenv::{Event, TestEnv};

const V: usize = VMALLOC_START;
const G: usize = PUD_SIZE;
const M2: usize = PMD_SIZE;
const P: usize = PAGE_SIZE;

fn mm() -> InitMm<TestEnv> {
    InitMm::new(TestEnv::new(), PhysLayout::unchecked()).unwrap()
}

/// Every valid leaf under the pgd whose VA lies in `[start, end)`. Walked by hand, not with
/// `mm::walk`, so that the walker is not checked against itself.
fn leaves(mm: &InitMm<TestEnv>, start: usize, end: usize) -> Vec<(usize, Level)> {
    fn walk(
        mm: &InitMm<TestEnv>,
        t: PhysAddr,
        level: Level,
        base: usize,
        out: &mut Vec<(usize, Level)>,
    ) {
        for i in 0..PTRS_PER_TABLE {
            let va = base.wrapping_add(i * level.entry_size());
            let d = mm.entry_in(t, level, va).read();
            if d.is_table(level) {
                walk(mm, d.addr(), level.next().unwrap(), va, out);
            } else if d.is_leaf(level) {
                out.push((va, level));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        mm,
        mm.pgd_phys(),
        Level::Pgd,
        0xFFFF_0000_0000_0000,
        &mut out,
    );
    out.retain(|&(va, _)| va >= start && va < end);
    out
}

fn assert_maps(mm: &InitMm<TestEnv>, va: usize, pa: u64, level: Level, prot: Prot) {
    let t = mm
        .translate(VirtAddr(va))
        .unwrap_or_else(|| panic!("{va:#x} not mapped"));
    assert_eq!(t.pa, PhysAddr(pa), "pa of {va:#x}");
    assert_eq!(t.level, level, "level of {va:#x}");
    assert_eq!(t.prot(), Some(prot), "prot of {va:#x}");
}

#[test]
fn round_trip_at_every_leaf_size() {
    let mm = mm();
    // 4 KiB pages (blocks not allowed), 2 MiB blocks, 1 GiB blocks.
    mm.map_owned(
        VirtAddr(V + 5 * P),
        PhysAddr(0x1234_5000),
        3 * P,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap();
    mm.map_owned(
        VirtAddr(V + 3 * M2),
        PhysAddr(0x8040_0000),
        2 * M2,
        Prot::DEVICE_WC,
        true,
    )
    .unwrap();
    mm.map_owned(
        VirtAddr(V + 4 * G),
        PhysAddr(0x1_0000_0000),
        G,
        Prot::KERNEL_RO,
        true,
    )
    .unwrap();
    for i in 0..3 {
        assert_maps(
            &mm,
            V + (5 + i) * P + 0x123,
            0x1234_5123 + (i * P) as u64,
            Level::Pte,
            Prot::KERNEL_RW,
        );
    }
    assert!(mm.translate(VirtAddr(V + 4 * P)).is_none());
    assert!(mm.translate(VirtAddr(V + 8 * P)).is_none());
    assert_maps(&mm, V + 3 * M2, 0x8040_0000, Level::Pmd, Prot::DEVICE_WC);
    assert_maps(
        &mm,
        V + 5 * M2 - 8,
        0x8080_0000 - 8,
        Level::Pmd,
        Prot::DEVICE_WC,
    );
    assert!(mm.translate(VirtAddr(V + 5 * M2)).is_none());
    assert_maps(
        &mm,
        V + 4 * G + 0x1234_5678,
        0x1_1234_5678,
        Level::Pud,
        Prot::KERNEL_RO,
    );
    assert!(mm.translate(VirtAddr(V + 5 * G)).is_none());
    // Outside the kernel half nothing translates, even where the pgd index would alias.
    assert!(
        mm.translate(VirtAddr(V - 0xFFFF_0000_0000_0000 + 5 * P))
            .is_none()
    );
}

#[test]
fn blocks_used_only_when_both_addresses_are_aligned() {
    let mm = mm();
    // VA 2 MiB aligned, PA only 4 KiB aligned: pages.
    mm.map_owned(
        VirtAddr(V),
        PhysAddr(0x8000_1000),
        M2,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    assert_eq!(mm.translate(VirtAddr(V)).unwrap().level, Level::Pte);
    // Both aligned but blocks not requested: pages.
    mm.map_owned(
        VirtAddr(V + M2),
        PhysAddr(0x8020_0000),
        M2,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap();
    assert_eq!(mm.translate(VirtAddr(V + M2)).unwrap().level, Level::Pte);
    // 1 GiB + 2 MiB + 4 KiB starting 1 GiB aligned: one of each.
    mm.map_owned(
        VirtAddr(V + G),
        PhysAddr(0x4000_0000),
        G + M2 + P,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    let l: Vec<_> = leaves(&mm, V + G, V + 3 * G)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(l, [Level::Pud, Level::Pmd, Level::Pte]);
}

#[test]
fn attribute_bits_per_prot() {
    let mm = mm();
    let cases = [
        (Prot::KERNEL_RW, MAIR_IDX_NORMAL_T, 0b00, true),
        (Prot::KERNEL_RO, MAIR_IDX_NORMAL_T, 0b10, true),
        (Prot::KERNEL_RX, MAIR_IDX_NORMAL_T, 0b10, false),
        (Prot::DEVICE, 1, 0b00, true),
        (Prot::DEVICE_WC, 2, 0b00, true),
    ];
    for (i, &(prot, attr, ap, pxn)) in cases.iter().enumerate() {
        for (level, va, size) in [
            (Level::Pte, V + i * P, P),
            (Level::Pmd, V + (i + 1) * M2, M2),
            (Level::Pud, V + (i + 1) * G, G),
        ] {
            mm.map_owned(
                VirtAddr(va),
                PhysAddr((1 << 32) + (i as u64) * (1 << 30)),
                size,
                prot,
                true,
            )
            .unwrap();
            let d = mm.translate(VirtAddr(va)).unwrap().desc;
            assert_eq!(mm.translate(VirtAddr(va)).unwrap().level, level);
            let r = d.raw();
            assert_eq!(d.attr_index(), attr, "{prot:?} AttrIndx");
            assert_eq!((r >> 2) & 7, attr);
            assert_eq!(
                (r >> 6) & 3,
                ap,
                "{prot:?} AP: EL1 only, RO unless writable"
            );
            assert_eq!(r >> 53 & 1 == 1, pxn, "{prot:?} PXN");
            assert_eq!(r >> 54 & 1, 1, "{prot:?} UXN always");
            assert_eq!((r >> 8) & 3, 0b11, "inner shareable");
            assert_eq!((r >> 10) & 1, 1, "AF");
            assert_eq!((r >> 11) & 1, 0, "global");
            assert_eq!(
                r & 3,
                if level == Level::Pte { 3 } else { 1 },
                "page/block type"
            );
            assert_eq!(d.prot(), Some(prot));
        }
    }
    assert_eq!(Prot::DEVICE.mem(), MemType::Device);
    // W^X: exactly one of the five is executable, and it is not writable.
    let all = [
        Prot::KERNEL_RW,
        Prot::KERNEL_RO,
        Prot::KERNEL_RX,
        Prot::DEVICE,
        Prot::DEVICE_WC,
    ];
    assert!(all.iter().all(|p| !(p.writable() && p.executable())));
    assert_eq!(all.iter().filter(|p| p.executable()).count(), 1);
    // Table descriptors: valid table, UXNTable set, PXNTable clear (text below can execute).
    let pgd = mm.pgd_offset_k(VirtAddr(V)).read().raw();
    assert_eq!(pgd & 3, 3);
    assert_eq!((pgd >> 60) & 1, 1);
    assert_eq!((pgd >> 59) & 1, 0);
    assert_eq!(crate::pgtable::MAIR_EL1_VALUE, 0x0044_04ff);
}
const MAIR_IDX_NORMAL_T: u64 = crate::pgtable::MAIR_IDX_NORMAL;

#[test]
fn bad_arguments_are_errors_and_change_nothing() {
    let mm = mm();
    let e = |r: Result<(), MmError>| r.unwrap_err();
    assert_eq!(
        e(mm.map_owned(VirtAddr(V + 1), PhysAddr(0), P, Prot::KERNEL_RW, false)),
        MmError::Misaligned {
            va: V + 1,
            pa: 0,
            size: P
        }
    );
    assert!(matches!(
        e(mm.map_owned(VirtAddr(V), PhysAddr(0x800), P, Prot::KERNEL_RW, false)),
        MmError::Misaligned { .. }
    ));
    assert!(matches!(
        e(mm.map_owned(VirtAddr(V), PhysAddr(0), P + 8, Prot::KERNEL_RW, false)),
        MmError::Misaligned { .. }
    ));
    assert!(matches!(
        e(mm.map_owned(
            VirtAddr(0x4000_0000),
            PhysAddr(0),
            P,
            Prot::KERNEL_RW,
            false
        )),
        MmError::BadVirtRange { .. }
    ));
    assert!(matches!(
        e(mm.map_owned(
            VirtAddr(usize::MAX - P + 1),
            PhysAddr(0),
            P,
            Prot::KERNEL_RW,
            false
        )),
        MmError::BadVirtRange { .. }
    ));
    assert!(matches!(
        e(mm.map_owned(
            VirtAddr(V),
            PhysAddr((1 << 48) - P as u64),
            2 * P,
            Prot::KERNEL_RW,
            false
        )),
        MmError::BadPhysRange { .. }
    ));
    assert!(matches!(
        e(mm.map_owned(
            VirtAddr(V),
            PhysAddr(u64::MAX - 0xfff),
            P,
            Prot::KERNEL_RW,
            false
        )),
        MmError::BadPhysRange { .. }
    ));
    assert_eq!(mm.env().live_frames(), 1);
    assert_eq!(
        mm.map_owned(VirtAddr(V), PhysAddr(0), 0, Prot::KERNEL_RW, true),
        Ok(())
    );
    assert_eq!(mm.env().live_frames(), 1);
    // The last page below the top of the address space can be mapped.
    let top = usize::MAX - 2 * P + 1;
    mm.map_owned(VirtAddr(top), PhysAddr(0x5000), P, Prot::KERNEL_RX, false)
        .unwrap();
    assert_maps(&mm, top + 8, 0x5008, Level::Pte, Prot::KERNEL_RX);
    assert_eq!(top & !(PGDIR_SIZE - 1), KIMAGE_VADDR);
}

/// What every mapping is checked against: 1 GiB of RAM at 1 GiB with a 2 MiB `no-map` hole
/// at 0x4800_0000, the image's text at 0x4020_0000 (64 KiB) and its rodata after it (64 KiB).
#[test]
fn map_range_checks_what_the_physical_range_is() {
    let memory = region::subtract(
        &[Region::new(0x4000_0000, 0x4000_0000)],
        &[Region::new(0x4800_0000, 0x20_0000)],
    );
    let layout = PhysLayout::new(
        memory,
        Region::new(0x4020_0000, 0x1_0000),
        Region::new(0x4020_0000, 0x2_0000),
    );
    let mm = InitMm::new(TestEnv::new(), layout).unwrap();
    let refused = [
        // Cacheable, not RAM: a device, the no-map hole, a range running into it.
        (0x0900_0000, P, Prot::KERNEL_RW, "CacheableNonRam"),
        (0x0900_0000, P, Prot::KERNEL_RO, "CacheableNonRam"),
        (0x4800_0000, P, Prot::KERNEL_RW, "CacheableNonRam"),
        (0x47ff_f000, 2 * P, Prot::KERNEL_RW, "CacheableNonRam"),
        (0x7fff_f000, 2 * P, Prot::KERNEL_RW, "CacheableNonRam"),
        // Uncached aliases of RAM.
        (0x4100_0000, P, Prot::DEVICE, "UncachedAliasOfRam"),
        (0x4100_0000, P, Prot::DEVICE_WC, "UncachedAliasOfRam"),
        (0x4100_0000, P, Prot::DEVICE_NP, "UncachedAliasOfRam"),
        (0x3fff_f000, 2 * P, Prot::DEVICE, "UncachedAliasOfRam"),
        // Writable text or rodata.
        (0x4020_0000, P, Prot::KERNEL_RW, "WritableKernelText"),
        (0x4021_f000, P, Prot::KERNEL_RW, "WritableKernelText"),
        (0x401f_f000, 2 * P, Prot::KERNEL_RW, "WritableKernelText"),
        // Executable, not text.
        (0x4021_0000, P, Prot::KERNEL_RX, "ExecutableNonText"),
        (0x4020_f000, 2 * P, Prot::KERNEL_RX, "ExecutableNonText"),
    ];
    for (i, &(pa, size, prot, why)) in refused.iter().enumerate() {
        let va = V + i * 4 * P;
        let e = mm
            .map_owned(VirtAddr(va), PhysAddr(pa), size, prot, false)
            .unwrap_err();
        assert!(
            format!("{e:?}").starts_with(why),
            "{prot:?} at {pa:#x}: {e:?}, not {why}"
        );
        assert!(mm.translate(VirtAddr(va)).is_none());
    }
    assert_eq!(
        mm.env().live_frames(),
        1,
        "refused before any table was allocated"
    );
    let allowed = [
        (0x4020_0000, 0x1_0000, Prot::KERNEL_RX),
        (0x4020_0000, 0x2_0000, Prot::KERNEL_RO),
        (0x4022_0000, P, Prot::KERNEL_RW),
        (0x4100_0000, 0x700_0000, Prot::KERNEL_RW),
        (0x4820_0000, P, Prot::KERNEL_RO),
        // A no-map region is not mapped cacheable, so a device alias is no second alias
        // (Linux's ioremap allows it too).
        (0x4800_0000, P, Prot::DEVICE),
        (0x0900_0000, P, Prot::DEVICE_WC),
    ];
    for (i, &(pa, size, prot)) in allowed.iter().enumerate() {
        let va = V + PUD_SIZE + i * 0x1000_0000;
        mm.map_owned(VirtAddr(va), PhysAddr(pa), size, prot, false)
            .unwrap_or_else(|e| panic!("{prot:?} at {pa:#x}: {e}"));
    }
}

#[test]
fn linear_map_leaves_out_no_map_and_keeps_text_and_rodata_read_only() {
    let memory = region::subtract(
        &[
            Region::new(0x4000_0000, 0x4000_0000),
            Region::new(0x1_0000_0000, 0x1000_0800), // ends mid-page
        ],
        &[Region::new(0x4800_0000, 0x20_0000)],
    );
    let layout = PhysLayout::new(
        memory,
        Region::new(0x4020_0000, 0x1_0000),
        Region::new(0x4020_0000, 0x2_3000),
    );
    assert_eq!(
        layout.linear_map(),
        [
            (Region::new(0x4000_0000, 0x20_0000), Prot::KERNEL_RW),
            (Region::new(0x4020_0000, 0x2_3000), Prot::KERNEL_RO),
            (Region::new(0x4022_3000, 0x07dd_d000), Prot::KERNEL_RW),
            (Region::new(0x4820_0000, 0x37e0_0000), Prot::KERNEL_RW),
            (Region::new(0x1_0000_0000, 0x1000_0000), Prot::KERNEL_RW),
        ]
    );
    // And every piece passes the checks map_range makes.
    for (r, prot) in layout.linear_map() {
        layout.check(r.base, r.size as usize, prot).unwrap();
    }
}

/// A range that needs five new tables on the way plus one 2 MiB and one 1 GiB block.
/// Failing the Nth allocation for every N must leave no leaf mapped; the tables installed
/// before the failure stay (Linux behaviour), exactly N of them, and reclaim frees them.
#[test]
fn out_of_memory_at_every_allocation_leaves_nothing_mapped() {
    let va = V + G - M2 - 2 * P;
    let pa = (1u64 << 30) - (M2 + 2 * P) as u64;
    let size = 2 * P + M2 + G + P;
    let tables_needed = 5; // pud, pmd, pte, then pmd + pte for the last page
    for n in 0..=tables_needed {
        let mm = mm();
        mm.env().fail_after(n);
        let r = mm.map_owned(VirtAddr(va), PhysAddr(pa), size, Prot::KERNEL_RW, true);
        if n < tables_needed {
            assert_eq!(r, Err(MmError::OutOfMemory), "n = {n}");
            assert_eq!(
                leaves(&mm, va, va + size),
                [],
                "n = {n}: leaves left mapped"
            );
            assert_eq!(mm.env().live_frames(), 1 + n, "n = {n}");
            assert_eq!(
                mm.count_tables(VirtAddr(va), VirtAddr(va + size)).total(),
                n
            );
            // SAFETY: no other thread uses this InitMm.
            let freed = unsafe { mm.reclaim_empty_tables(VirtAddr(V), VirtAddr(VMALLOC_END)) };
            assert_eq!(freed, n);
            assert_eq!(mm.env().live_frames(), 1, "n = {n}: back to the bare pgd");
        } else {
            assert_eq!(r, Ok(()));
            let l: Vec<_> = leaves(&mm, va, va + size)
                .into_iter()
                .map(|(_, l)| l)
                .collect();
            assert_eq!(
                l,
                [Level::Pte, Level::Pte, Level::Pmd, Level::Pud, Level::Pte]
            );
            assert_eq!(mm.env().live_frames(), 1 + tables_needed);
        }
    }
}

#[test]
fn error_part_way_unmaps_leaves_with_tlb_invalidation() {
    let mm = mm();
    // Pages then a pte table that cannot be had.
    mm.env().fail_after(3);
    mm.env().start_recording();
    let r = mm.map_owned(
        VirtAddr(V + M2 - 2 * P),
        PhysAddr(0x9000_0000),
        4 * P,
        Prot::KERNEL_RW,
        false,
    );
    assert_eq!(r, Err(MmError::OutOfMemory));
    let ev = mm.env().take_events();
    let tail: Vec<_> = ev.iter().rev().take(7).rev().copied().collect();
    assert!(
        tail[..2]
            .iter()
            .all(|e| matches!(e, Event::Store { val: 0, .. })),
        "{tail:?}"
    );
    assert_eq!(
        tail[2..5],
        [
            Event::DsbIshst,
            Event::TlbiPage(V + M2 - 2 * P),
            Event::TlbiPage(V + M2 - P)
        ]
    );
    assert_eq!(tail[5..], [Event::DsbIsh, Event::Isb]);
    assert!(leaves(&mm, V, V + G).is_empty());
}

#[test]
fn live_block_in_the_way_is_an_error_and_rolls_back() {
    let mm = mm();
    mm.map_owned(
        VirtAddr(V + M2),
        PhysAddr(0x8020_0000),
        M2,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    let r = mm.map_owned(
        VirtAddr(V + M2 - 2 * P),
        PhysAddr(0x7000_0000),
        4 * P,
        Prot::KERNEL_RW,
        false,
    );
    assert_eq!(r, Err(MmError::BlockInTheWay { va: V + M2 }));
    assert_eq!(leaves(&mm, V, V + G), [(V + M2, Level::Pmd)]);
}

#[test]
#[should_panic(expected = "over a valid leaf")]
fn mapping_a_page_twice_panics() {
    let mm = mm();
    mm.map_owned(VirtAddr(V), PhysAddr(0x1000), 2 * P, Prot::KERNEL_RW, false)
        .unwrap();
    let _ = mm.map_owned(VirtAddr(V + P), PhysAddr(0x9000), P, Prot::KERNEL_RW, false);
}

#[test]
#[should_panic(expected = "init_mm: mapping 0xffff800040000000 over a valid leaf")]
fn mapping_a_block_twice_panics() {
    let mm = mm();
    mm.map_owned(
        VirtAddr(V + G),
        PhysAddr(0x4000_0000),
        G,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    let _ = mm.map_owned(
        VirtAddr(V + G),
        PhysAddr(0x4000_0000),
        G,
        Prot::KERNEL_RW,
        true,
    );
}

#[test]
fn promotion_to_2m_block_follows_break_before_make() {
    let mm = mm();
    // A pte table left over from an earlier, now unmapped, area.
    mm.map_owned(
        VirtAddr(V + M2 + 7 * P),
        PhysAddr(0x1000),
        P,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap();
    mm.unmap_owned(VirtAddr(V + M2 + 7 * P), P);
    let pmd = mm
        .pmd_alloc_owned(
            mm.pud_alloc_owned(mm.pgd_offset_k(VirtAddr(V + M2)), VirtAddr(V + M2))
                .unwrap(),
            VirtAddr(V + M2),
        )
        .unwrap();
    let old = pmd.read();
    assert!(old.is_table(Level::Pmd));
    let live = mm.env().live_frames();

    mm.env().start_recording();
    mm.map_owned(
        VirtAddr(V + M2),
        PhysAddr(0x4020_0000),
        M2,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    let ev = mm.env().take_events();
    let store = |val| Event::Store {
        level: Level::Pmd,
        table: pmd.table_phys(),
        index: 1,
        val,
    };
    let block = Descriptor::leaf(Level::Pmd, PhysAddr(0x4020_0000), Prot::KERNEL_RW).raw();
    assert_eq!(
        ev[..10],
        [
            store(0),
            Event::DsbIshst,
            Event::TlbiVa(V + M2),
            Event::DsbIsh,
            Event::Isb,
            Event::Free(old.addr()),
            store(block),
            Event::DsbIshst,
            Event::Isb,
            Event::DsbIshst, // end of map_range
        ]
    );
    assert_eq!(mm.stats().promotions, 1);
    assert_eq!(mm.env().live_frames(), live - 1);
    assert!(!mm.env().is_allocated(old.addr()));
    assert_maps(&mm, V + M2 + 5, 0x4020_0005, Level::Pmd, Prot::KERNEL_RW);
}

#[test]
fn promotion_to_1g_block_frees_the_whole_subtree() {
    let mm = mm();
    // Leftover pmd table under pud[1] with two pte tables (pmd[0] and pmd[9]).
    for va in [V + G, V + G + 9 * M2 + 3 * P] {
        mm.map_owned(VirtAddr(va), PhysAddr(0x1000), P, Prot::KERNEL_RW, false)
            .unwrap();
        mm.unmap_owned(VirtAddr(va), P);
    }
    let pud = mm
        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(V + G)), VirtAddr(V + G))
        .unwrap();
    let pmd_table = pud.read().addr();
    let pte_tables: Vec<_> = [0, 9]
        .iter()
        .map(|&i| {
            mm.entry_in(pmd_table, Level::Pmd, V + G + i * M2)
                .read()
                .addr()
        })
        .collect();
    assert_eq!(mm.env().live_frames(), 1 + 1 + 1 + 2);

    mm.env().start_recording();
    mm.map_owned(
        VirtAddr(V + G),
        PhysAddr(0x4000_0000),
        G,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    let ev = mm.env().take_events();
    // Linux's pud_free_pmd_page: each pte table goes first, its pmd entry cleared and the
    // invalidation completed while the pud still points at the pmd table; then the pud
    // entry, then the pmd table; every free after the `dsb ish` that completes its TLBI.
    let clear_and_free = |level, table, index, va, freed| {
        [
            Event::Store {
                level,
                table,
                index,
                val: 0,
            },
            Event::DsbIshst,
            Event::TlbiVa(va),
            Event::DsbIsh,
            Event::Isb,
            Event::Free(freed),
        ]
    };
    let mut expect = Vec::new();
    expect.extend(clear_and_free(
        Level::Pmd,
        pmd_table,
        0,
        V + G,
        pte_tables[0],
    ));
    expect.extend(clear_and_free(
        Level::Pmd,
        pmd_table,
        9,
        V + G + 9 * M2,
        pte_tables[1],
    ));
    expect.extend(clear_and_free(
        Level::Pud,
        pud.table_phys(),
        1,
        V + G,
        pmd_table,
    ));
    assert_eq!(ev[..18], expect[..]);
    assert!(
        matches!(ev[18], Event::Store { level: Level::Pud, index: 1, val, .. } if val & 3 == 1)
    );
    assert_eq!(ev[19..21], [Event::DsbIshst, Event::Isb]);
    assert_eq!(mm.env().live_frames(), 2);
    assert_eq!(mm.stats().promotions, 1);
    assert_maps(
        &mm,
        V + G + 9 * M2 + 3 * P,
        0x4000_0000 + (9 * M2 + 3 * P) as u64,
        Level::Pud,
        Prot::KERNEL_RW,
    );
}

#[test]
#[should_panic(expected = "would replace a valid leaf")]
fn promotion_over_a_live_page_panics() {
    let mm = mm();
    mm.map_owned(
        VirtAddr(V + G + 9 * M2),
        PhysAddr(0x1000),
        P,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap();
    let _ = mm.map_owned(
        VirtAddr(V + G),
        PhysAddr(0x4000_0000),
        G,
        Prot::KERNEL_RW,
        true,
    );
}

#[test]
fn map_ends_with_one_barrier_pair_after_all_leaf_stores() {
    let mm = mm();
    mm.map_owned(VirtAddr(V), PhysAddr(0x1000), P, Prot::KERNEL_RW, false)
        .unwrap(); // tables exist now
    mm.env().start_recording();
    mm.map_owned(
        VirtAddr(V + P),
        PhysAddr(0x2000),
        3 * P,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap();
    let ev = mm.env().take_events();
    assert_eq!(ev.len(), 5);
    assert!(ev[..3].iter().all(|e| matches!(
        e,
        Event::Store {
            level: Level::Pte,
            ..
        }
    )));
    assert_eq!(ev[3..], [Event::DsbIshst, Event::Isb]);
}

#[test]
fn unmap_clears_leaves_then_invalidates_then_waits() {
    let mm = mm();
    mm.map_owned(VirtAddr(V), PhysAddr(0x1000), 3 * P, Prot::KERNEL_RW, false)
        .unwrap();
    mm.map_owned(
        VirtAddr(V + M2),
        PhysAddr(0x4020_0000),
        M2,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    let tables = mm.count_tables(VirtAddr(V), VirtAddr(V + G));
    mm.env().start_recording();
    mm.unmap_owned(VirtAddr(V), 2 * M2);
    let ev = mm.env().take_events();
    assert_eq!(ev.len(), 4 + 1 + 4 + 2);
    assert!(
        ev[..4]
            .iter()
            .all(|e| matches!(e, Event::Store { val: 0, .. })),
        "{ev:?}"
    );
    assert_eq!(
        ev[4..],
        [
            Event::DsbIshst,
            Event::TlbiPage(V),
            Event::TlbiPage(V + P),
            Event::TlbiPage(V + 2 * P),
            Event::TlbiPage(V + M2),
            Event::DsbIsh,
            Event::Isb
        ]
    );
    assert!(leaves(&mm, V, V + G).is_empty());
    // Intermediate tables stay; nothing freed.
    assert_eq!(mm.count_tables(VirtAddr(V), VirtAddr(V + G)), tables);
    // Unmapping nothing issues nothing.
    mm.env().start_recording();
    mm.unmap_owned(VirtAddr(V), 2 * M2);
    assert_eq!(mm.env().take_events(), []);
}

#[test]
fn unmap_of_many_leaves_flushes_everything_once() {
    let mm = mm();
    mm.map_owned(
        VirtAddr(V),
        PhysAddr(0x10_0000),
        600 * P,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap();
    mm.env().start_recording();
    mm.unmap_owned(VirtAddr(V), 600 * P);
    let ev = mm.env().take_events();
    assert_eq!(
        ev[600..],
        [Event::DsbIshst, Event::TlbiAll, Event::DsbIsh, Event::Isb]
    );
    // 511 leaves is still below the threshold.
    mm.map_owned(
        VirtAddr(V),
        PhysAddr(0x10_0000),
        511 * P,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap();
    mm.env().start_recording();
    mm.unmap_owned(VirtAddr(V), 600 * P);
    let ev = mm.env().take_events();
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::TlbiPage(_)))
            .count(),
        511
    );
    assert!(!ev.contains(&Event::TlbiAll));
}

#[test]
#[should_panic(expected = "would split the pmd block")]
fn unmapping_part_of_a_block_panics() {
    let mm = mm();
    mm.map_owned(
        VirtAddr(V),
        PhysAddr(0x4000_0000),
        M2,
        Prot::KERNEL_RW,
        true,
    )
    .unwrap();
    mm.unmap_owned(VirtAddr(V + P), P);
}

#[test]
#[should_panic(expected = "not page aligned")]
fn unmap_unaligned_panics() {
    mm().unmap_owned(VirtAddr(V + 1), P);
}

#[test]
fn reclaim_frees_only_empty_tables_wholly_inside_with_bbm() {
    let mm = mm();
    mm.map_owned(VirtAddr(V), PhysAddr(0x1000), P, Prot::KERNEL_RW, false)
        .unwrap(); // pud, pmd, pte tables
    mm.map_owned(
        VirtAddr(V + M2),
        PhysAddr(0x1000),
        P,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap(); // pte table 2
    assert_eq!(mm.env().live_frames(), 5);
    mm.unmap_owned(VirtAddr(V), P);
    // Range covers pte table 1 only partly: nothing freed.
    // SAFETY: single-threaded test.
    assert_eq!(
        // SAFETY: single-threaded test.
        unsafe { mm.reclaim_empty_tables(VirtAddr(V), VirtAddr(V + M2 - P)) },
        0
    );
    let pte1 = mm.translate(VirtAddr(V)).is_none().then(|| {
        mm.pmd_alloc_owned(
            mm.pud_alloc_owned(mm.pgd_offset_k(VirtAddr(V)), VirtAddr(V))
                .unwrap(),
            VirtAddr(V),
        )
        .unwrap()
        .read()
    });
    let pte1 = pte1.unwrap().addr();
    mm.env().start_recording();
    // Whole VMALLOC: pte table 1 (empty) goes; pte table 2 still maps a page so it, the pmd
    // and the pud table stay.
    // SAFETY: single-threaded test.
    assert_eq!(
        // SAFETY: single-threaded test.
        unsafe { mm.reclaim_empty_tables(VirtAddr(V), VirtAddr(VMALLOC_END)) },
        1
    );
    let ev = mm.env().take_events();
    assert!(matches!(
        ev[0],
        Event::Store {
            level: Level::Pmd,
            index: 0,
            val: 0,
            ..
        }
    ));
    assert_eq!(
        ev[1..],
        [
            Event::DsbIshst,
            Event::TlbiVa(V),
            Event::DsbIsh,
            Event::Isb,
            Event::Free(pte1)
        ]
    );
    assert_maps(&mm, V + M2, 0x1000, Level::Pte, Prot::KERNEL_RW);
    mm.unmap_owned(VirtAddr(V + M2), P);
    // SAFETY: single-threaded test.
    assert_eq!(
        // SAFETY: single-threaded test.
        unsafe { mm.reclaim_empty_tables(VirtAddr(V), VirtAddr(VMALLOC_END)) },
        3
    );
    assert_eq!(mm.env().live_frames(), 1);
    assert_eq!(mm.stats().reclaimed, 4);
    assert_eq!(
        mm.count_tables(VirtAddr(0), VirtAddr(usize::MAX)),
        TableCount::default()
    );
}

/// Threads map their own pages under shared, initially absent tables, with no lock, in both
/// designs; every page must translate, the tables must be the minimum, and after unmap +
/// reclaim every frame is back.
fn concurrent_maps(mm: InitMm<TestEnv>) {
    let mm = Arc::new(mm);
    mm.env().set_alloc_yield(true);
    let threads = 8;
    let per = 64;
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (mm, b) = (mm.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                // Interleaved pages: thread t owns pages t, t + threads, ... of 4 MiB.
                for k in 0..per {
                    let page = k * threads + t;
                    let va = V + page * P;
                    mm.map_owned(
                        VirtAddr(va),
                        PhysAddr((page * P) as u64),
                        P,
                        Prot::KERNEL_RW,
                        false,
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    for page in 0..threads * per {
        assert_maps(
            &mm,
            V + page * P,
            (page * P) as u64,
            Level::Pte,
            Prot::KERNEL_RW,
        );
    }
    assert_eq!(
        mm.count_tables(VirtAddr(V), VirtAddr(VMALLOC_END)),
        TableCount {
            pud: 1,
            pmd: 1,
            pte: 1
        }
    );
    mm.unmap_owned(VirtAddr(V), threads * per * P);
    // SAFETY: all threads joined.
    unsafe { mm.reclaim_empty_tables(VirtAddr(V), VirtAddr(VMALLOC_END)) };
    assert_eq!(mm.env().live_frames(), 1);
}

#[test]
fn concurrent_maps_share_tables_without_a_caller_lock() {
    concurrent_maps(mm());
}

#[test]
fn linear_map_keeps_firmware_tables_read_only() {
    let layout = PhysLayout::new(
        vec![Region::new(0x4000_0000, 0x4000_0000)],
        Region::new(0x4020_0000, 0x1_0000),
        Region::new(0x4020_0000, 0x2_0000),
    )
    .with_firmware_tables(vec![Region::new(0x7f80_0000, 0x3_0000)]);
    assert_eq!(
        layout.linear_map(),
        [
            (Region::new(0x4000_0000, 0x20_0000), Prot::KERNEL_RW),
            (Region::new(0x4020_0000, 0x2_0000), Prot::KERNEL_RO),
            (Region::new(0x4022_0000, 0x3f5e_0000), Prot::KERNEL_RW),
            (Region::new(0x7f80_0000, 0x3_0000), Prot::KERNEL_RO),
            (Region::new(0x7f83_0000, 0x7d_0000), Prot::KERNEL_RW),
        ]
    );
    let e = layout.check(0x7f81_0000, P, Prot::KERNEL_RW).unwrap_err();
    assert_eq!(
        e,
        MmError::WritableFirmwareTables {
            pa: 0x7f81_0000,
            size: P
        }
    );
    assert!(e.to_string().contains("firmware's tables"));
    layout.check(0x7f81_0000, P, Prot::KERNEL_RO).unwrap();
}

/// Waits until `done` holds, failing the test after ten seconds rather than hanging.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::yield_now();
    }
}

/// A walk of a range its caller does not own (`translate`, `count_tables`) may be inside a table
/// that another CPU's block mapping takes out of the tree: the table is freed only once that walk
/// has ended, never under it.
#[test]
fn a_table_is_freed_only_after_the_foreign_walks_that_may_be_in_it() {
    let mm = Arc::new(mm());
    // A pte table left over from an earlier, now unmapped, area.
    let (va, leftover) = (V + M2, V + M2 + 7 * P);
    mm.map_owned(
        VirtAddr(leftover),
        PhysAddr(0x1000),
        P,
        Prot::KERNEL_RW,
        false,
    )
    .unwrap();
    mm.unmap_owned(VirtAddr(leftover), P);
    let pud = mm
        .pud_alloc_owned(mm.pgd_offset_k(VirtAddr(va)), VirtAddr(va))
        .unwrap();
    let pmd = mm.pmd_alloc_owned(pud, VirtAddr(va)).unwrap();
    let pte_table = pmd.read().addr();

    // A walk in progress elsewhere (what `translate` holds while it reads the tables).
    let walk = mm.foreign_walk();
    let promoter = {
        let mm = Arc::clone(&mm);
        std::thread::spawn(move || {
            mm.map_owned(
                VirtAddr(va),
                PhysAddr(0x4020_0000),
                M2,
                Prot::KERNEL_RW,
                true,
            )
            .unwrap();
        })
    };
    wait_until("the promotion clears the pmd entry", || {
        !pmd.read().is_table(Level::Pmd)
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        mm.env().is_allocated(pte_table),
        "the pte table was freed while a foreign walk could still be inside it"
    );
    drop(walk);
    promoter.join().unwrap();
    assert!(
        !mm.env().is_allocated(pte_table),
        "freed once the walk ended"
    );
    assert!(pmd.read().is_block(Level::Pmd));
}

/// `translate` and `count_tables` are such walks: they wait while a table free might be under
/// way (here: while the lock that frees take is held).
#[test]
fn translate_and_count_tables_are_foreign_walks() {
    let mm = Arc::new(mm());
    mm.map_owned(VirtAddr(V), PhysAddr(0x1000), P, Prot::KERNEL_RW, false)
        .unwrap();
    let walk = mm.foreign_walk();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let walkers: Vec<_> = (0..2)
        .map(|i| {
            let (mm, done) = (Arc::clone(&mm), Arc::clone(&done));
            std::thread::spawn(move || {
                if i == 0 {
                    assert!(mm.translate(VirtAddr(V)).is_some());
                } else {
                    assert_eq!(mm.count_tables(VirtAddr(V), VirtAddr(V + P)).pte, 1);
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(walk);
    walkers.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 2);
}
