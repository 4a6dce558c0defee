use super::*;

#[test]
fn affinity_u32_moves_aff3_next_to_aff2() {
    assert_eq!(affinity_u32(0x12_0034_5678), 0x1234_5678);
    assert_eq!(affinity_u32(0x0000_0103), 0x0000_0103, "cluster 1, core 3");
}

#[test]
fn sgi1r_targets_one_cpu_by_affinity() {
    // CPU 0 of cluster 0: only target-list bit 0, SGI in 27:24.
    assert_eq!(sgi1r_to(1, 0), (1 << 24) | 1);
    // QEMU virt -smp 12 puts CPU 10 at Aff1 = 1, Aff0 = 2: Aff1 in 23:16, bit 2 of the list.
    assert_eq!(sgi1r_to(0, 0x102), (1 << 16) | (1 << 2));
    assert_eq!(sgi1r_to(15, 0x10f), (15 << 24) | (1 << 16) | (1 << 15));
    // Aff3 in 55:48, Aff2 in 39:32.
    assert_eq!(
        sgi1r_to(3, 0xab_00cd_0004),
        (0xab << 48) | (0xcd << 32) | (3 << 24) | (1 << 4)
    );
    // Aff0 >= 16 needs the range selector: Aff0 = 0x25 is list bit 5 of range 2.
    assert_eq!(sgi1r_to(0, 0x25), (2 << 44) | (1 << 5));
    assert_eq!(
        sgi1r_to(2, 0x25) & SGI1R_IRM,
        0,
        "a targeted SGI never sets IRM"
    );
}

#[test]
fn sgi1r_all_but_self_sets_irm_and_no_target() {
    assert_eq!(sgi1r_all_but_self(1), (1 << 40) | (1 << 24));
    assert_eq!(sgi1r_all_but_self(0) & 0xffff, 0);
}

#[test]
#[should_panic(expected = "SGI 16 does not exist")]
fn sgi_numbers_above_15_are_refused() {
    sgi1r_to(16, 0);
}

#[test]
fn gicd_sgir_encodes_list_and_filter() {
    assert_eq!(gicd_sgir(1, SgirTarget::List(1 << 3)), 0x0008_0001);
    assert_eq!(gicd_sgir(0, SgirTarget::AllButSelf), 0x0100_0000);
    assert_eq!(gicd_sgir(15, SgirTarget::List(0xff)), 0x00ff_000f);
}

#[test]
fn cpu_interface_number_from_banked_itargetsr() {
    // CPU interface 2 reads 0x04 in every implemented SGI/PPI byte.
    assert_eq!(cpu_interface_from_itargetsr([0x0404_0404; 8]), Some(2));
    // SGIs read as zero on some implementations: the first non-zero byte decides.
    assert_eq!(
        cpu_interface_from_itargetsr([0, 0, 0, 0, 0, 0x8000_0000, 0x8080_8080, 0x8080_8080]),
        Some(7)
    );
    assert_eq!(
        cpu_interface_from_itargetsr([0x0000_0100, 0, 0, 0, 0, 0, 0, 0]),
        Some(0)
    );
    // A uniprocessor GIC reads all zero: its only interface is 0.
    assert_eq!(cpu_interface_from_itargetsr([0; 8]), Some(0));
    // Two bits in one byte is not a CPU interface.
    assert_eq!(
        cpu_interface_from_itargetsr([0x0000_0006, 0, 0, 0, 0, 0, 0, 0]),
        None
    );
}

/// A fake redistributor range: one `GICR_TYPER` per frame, in order, frames packed by their
/// VLPIS bit, Last on the final one.
fn fake_gicr(affinities: &[(u64, bool)]) -> (std::collections::BTreeMap<usize, u64>, usize) {
    let mut map = std::collections::BTreeMap::new();
    let mut off = 0;
    for (i, &(mpidr, v4)) in affinities.iter().enumerate() {
        let mut typer = u64::from(affinity_u32(mpidr)) << 32 | (i as u64) << 8;
        if v4 {
            typer |= GICR_TYPER_VLPIS;
        }
        if i + 1 == affinities.len() {
            typer |= GICR_TYPER_LAST;
        }
        map.insert(off, typer);
        off += if v4 { GICR_FRAME_V4 } else { GICR_FRAME_V3 };
    }
    (map, off)
}

#[test]
fn redistributor_walk_finds_each_cpu_by_affinity() {
    // -smp 12 on QEMU virt: 8 CPUs in cluster 0, 4 in cluster 1.
    let cpus: Vec<(u64, bool)> = (0..12u64)
        .map(|i| ((i / 8) << 8 | (i % 8), false))
        .collect();
    let (frames, size) = fake_gicr(&cpus);
    for (i, &(mpidr, _)) in cpus.iter().enumerate() {
        let found = find_redistributor(size, mpidr, |off| frames[&off]);
        assert_eq!(found, Some(i * GICR_FRAME_V3), "cpu {mpidr:#x}");
    }
}

#[test]
fn redistributor_walk_steps_over_gicv4_frames() {
    let (frames, size) = fake_gicr(&[(0, true), (1, true), (0x100, false)]);
    assert_eq!(
        find_redistributor(size, 1, |o| frames[&o]),
        Some(GICR_FRAME_V4)
    );
    assert_eq!(
        find_redistributor(size, 0x100, |o| frames[&o]),
        Some(2 * GICR_FRAME_V4)
    );
}

#[test]
fn redistributor_walk_stops_at_last_and_at_the_range_end() {
    let (frames, size) = fake_gicr(&[(0, false), (1, false)]);
    let mut reads = Vec::new();
    // Not there: the walk reads both frames, stops at Last, and never reads past it.
    let found = find_redistributor(size + 4 * GICR_FRAME_V3, 7, |o| {
        reads.push(o);
        frames[&o]
    });
    assert_eq!((found, reads), (None, vec![0, GICR_FRAME_V3]));
    // A range the device tree cut short: frames beyond it are not read.
    let mut reads = Vec::new();
    let found = find_redistributor(GICR_FRAME_V3 + 0x1000, 1, |o| {
        reads.push(o);
        frames[&o]
    });
    assert_eq!((found, reads), (None, vec![0]));
    assert_eq!(
        find_redistributor(0, 0, |_| unreachable!("an empty range has no frame")),
        None
    );
}

#[test]
fn distributor_lines_and_architecture() {
    assert_eq!(lines_from_typer(0x0000_0007), 256, "QEMU virt: 256 lines");
    assert_eq!(
        lines_from_typer(0x0000_fc1f),
        1020,
        "never the special INTIDs"
    );
    assert_eq!(arch_rev_from_pidr2(0x2b), 2, "GIC-400 / QEMU GICv2");
    assert_eq!(arch_rev_from_pidr2(0x3b), 3, "QEMU GICv3");
    assert!(arch_rev_matches(GicVersion::V2, 2) && !arch_rev_matches(GicVersion::V2, 3));
    assert!(arch_rev_matches(GicVersion::V3, 4) && !arch_rev_matches(GicVersion::V3, 2));
}

#[test]
fn icfgr_edge_bit_of_the_timer_ppi() {
    // INTID 27: register 1, pair 11, the upper bit of it is bit 23.
    assert_eq!(icfgr_edge_bit(27), (1, 1 << 23));
    assert_eq!(icfgr_edge_bit(32), (2, 1 << 1));
}

#[test]
fn per_cpu_table_keys_by_mpidr() {
    let t = PerCpuTable::<4>::new();
    t.insert(0x0, 5);
    t.insert(0x100, 7);
    t.insert(0xff_0000_0000, VALUE_LIMIT - 1);
    assert_eq!(
        (t.get(0x0), t.get(0x100), t.get(0xff_0000_0000)),
        (Some(5), Some(7), Some(VALUE_LIMIT - 1))
    );
    assert_eq!(t.get(0x1), None);
    t.insert(0x100, 9);
    assert_eq!(
        t.get(0x100),
        Some(9),
        "re-initialising a CPU replaces its entry"
    );
    t.insert(0x3, 0);
    assert_eq!(t.get(0x3), Some(0));
}

#[test]
#[should_panic(expected = "more than 2 CPUs")]
fn per_cpu_table_refuses_more_cpus_than_slots() {
    let t = PerCpuTable::<2>::new();
    for m in 0..3 {
        t.insert(m, 0);
    }
}

#[test]
fn per_cpu_table_concurrent_inserts_keep_every_cpu() {
    let t = std::sync::Arc::new(PerCpuTable::<16>::new());
    let hs: Vec<_> = (0..16u64)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || t.insert((i / 8) << 8 | (i % 8), i as u32 * 3))
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    for i in 0..16u64 {
        assert_eq!(t.get((i / 8) << 8 | (i % 8)), Some(i as u32 * 3));
    }
}

#[test]
fn spis_are_32_up_to_the_lines_implemented() {
    assert!(!is_spi(31, 288));
    assert!(is_spi(32, 288));
    assert!(is_spi(287, 288));
    assert!(!is_spi(288, 288));
    assert!(!is_spi(1020, 1020));
    assert_eq!(
        alloc::format!(
            "{}",
            SpiError::NotAnSpi {
                intid: 300,
                lines: 288
            }
        ),
        "INTID 300 is not an SPI of this GIC (SPIs are 32..288)"
    );
}

#[test]
fn irouter_names_one_cpu_by_affinity() {
    assert_eq!(irouter_for(0), 0);
    assert_eq!(
        irouter_for(0x8000_0003),
        3,
        "MPIDR bit 31 (RES1) is no affinity"
    );
    assert_eq!(irouter_for(0xab_00cd_0102), 0xab_00cd_0102);
}
