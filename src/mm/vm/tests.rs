//! `KernelVm` over the in-memory physical memory of `testenv`.
//!
//! Every failing call is checked to leave the vm exactly as it found it (areas, leaves, tables,
//! frames, allocations), and every scenario ends with a frame balance: all frames back except
//! the intermediate tables Linux keeps, which are counted and then reclaimed down to the pgd.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;
use std::vec::Vec;

use super::areas::Home;
use super::*;
use crate::addr::{PhysAddr, VirtAddr};
use crate::layout::{PGDIR_SIZE, VMALLOC_END, VMALLOC_START};
use crate::mapping::TableCount;
use crate::pgtable::{
    Descriptor, Entry, Level, MAIR_IDX_DEVICE_NGNRE, MAIR_IDX_NORMAL, MAIR_IDX_NORMAL_NC, MemType,
    Table,
};
use crate::rng::Rng;
use crate::sync::Ordering;
use crate::testenv::{Event, POISON, TestEnv};
use crate::tlb::TLBI_MAX_OPS;

/// The helpers below take an address either as a plain integer (the constants, arithmetic on
/// them) or as what the vm returned.
trait AsVa: Copy {
    fn va(self) -> usize;
}

impl AsVa for usize {
    fn va(self) -> usize {
        self
    }
}

impl AsVa for VirtAddr {
    fn va(self) -> usize {
        self.0
    }
}

const V: usize = VMALLOC_START;
const P: usize = PAGE_SIZE;
const WINDOW: (usize, usize) = (VMALLOC_START, VMALLOC_END);
/// A window that starts two pages below a pgd boundary: the first area crosses it, so mapping
/// it needs a pud, a pmd and a pte table on each side (six table allocations).
const ACROSS_PGD: (usize, usize) = (V + PGDIR_SIZE - 2 * P, VMALLOC_END);
/// 1 GiB of RAM at 1 GiB (where testenv's frames live too).
const RAM: Region = Region::new(0x4000_0000, 0x4000_0000);
/// A device page below RAM (QEMU virt's PL011).
const DEV: u64 = 0x0900_0000;
/// A 40-bit CPU (PARange = 2).
const PA_BITS: u32 = 40;

/// `KernelVm::new` for the host tests.
fn test_vm<E: PageTableEnv>(
    init_mm: InitMm<E>,
    window: (usize, usize),
    pa_bits: u32,
) -> KernelVm<E> {
    // SAFETY: nothing translates through a host test's tables, and no test here reads or writes
    // the memory a handle maps (they look at the tables instead, with `translate`): the only use
    // `KernelVm::new`'s contract guards. Each test's vm has its window to itself.
    unsafe { KernelVm::new(init_mm, window, pa_bits) }
}

/// A vm that purges on every free (threshold 0): what most tests below want, to see a free
/// complete. The lazy purge has its own tests, with the threshold raised.
/// Most tests here check where areas go (lowest fit, holes, alignment: Linux's test_vmalloc
/// scenarios), which is the global allocator's business: their vm has no per-CPU nodes.
/// [`vm_with_nodes`] makes one with them, as the kernel runs.
fn vm_with(env: TestEnv, window: (usize, usize), pa_bits: u32) -> KernelVm<TestEnv> {
    let vm = test_vm(InitMm::new(env, layout()).unwrap(), window, pa_bits).without_nodes();
    vm.set_lazy_max_pages(0);
    vm
}

/// A vm as the kernel has it: small areas from per-CPU nodes; purging on every free.
fn vm_with_nodes() -> KernelVm<TestEnv> {
    let vm = test_vm(
        InitMm::new(TestEnv::new(), layout()).unwrap(),
        WINDOW,
        PA_BITS,
    );
    vm.set_lazy_max_pages(0);
    vm
}

/// [`RAM`] is the machine's memory; no kernel image.
fn layout() -> crate::phys_layout::PhysLayout {
    let none = Region::new(0, 0);
    crate::phys_layout::PhysLayout::new(vec![RAM], none, none)
}

fn vm() -> KernelVm<TestEnv> {
    vm_with(TestEnv::new(), WINDOW, PA_BITS)
}

/// Everything a failed call must leave untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Snapshot {
    areas: (usize, usize),
    leaves: usize,
    tables: TableCount,
    live_frames: usize,
    allocations: usize,
}

fn snapshot(vm: &KernelVm<TestEnv>) -> Snapshot {
    Snapshot {
        areas: vm.area_stats(),
        leaves: leaves(vm),
        tables: vm.init_mm.count_tables(VirtAddr(V), VirtAddr(VMALLOC_END)),
        live_frames: vm.init_mm.env().live_frames(),
        allocations: vm.init_mm.env().allocations(),
    }
}

/// Valid leaves (pages and blocks) anywhere in init_mm.
fn leaves(vm: &KernelVm<TestEnv>) -> usize {
    fn count(vm: &KernelVm<TestEnv>, table: PhysAddr, level: Level) -> usize {
        vm.init_mm
            .env()
            .frame_table(table)
            .iter()
            .map(|slot| {
                let d = Descriptor::from_raw(slot.load(Ordering::Acquire));
                match level.next() {
                    Some(next) if d.is_table(level) => count(vm, d.addr(), next),
                    _ => usize::from(d.is_leaf(level)),
                }
            })
            .sum()
    }
    count(vm, vm.init_mm.pgd_phys(), Level::Pgd)
}

/// `call` fails with `want` and changes nothing.
#[track_caller]
fn assert_refused<T: core::fmt::Debug + PartialEq>(
    vm: &KernelVm<TestEnv>,
    want: VmError,
    call: impl FnOnce() -> Result<T, VmError>,
) {
    let before = snapshot(vm);
    assert_eq!(call(), Err(want));
    assert_eq!(snapshot(vm), before, "{want:?} changed the vm");
}

/// After a scenario: no area left, and every frame back but the pgd and the intermediate
/// tables that stay installed (Linux keeps them); reclaiming those frees exactly them.
#[track_caller]
fn assert_balanced(vm: &KernelVm<TestEnv>, window: (usize, usize), baseline: usize) {
    let env = vm.init_mm.env();
    assert_eq!(vm.area_stats(), (0, window.1 - window.0), "areas left");
    assert_eq!(leaves(vm), 0, "leaves left");
    let tables = vm
        .init_mm
        .count_tables(VirtAddr(V), VirtAddr(VMALLOC_END))
        .total();
    assert_eq!(env.live_frames(), baseline + tables, "frames leaked");
    // SAFETY: no other thread uses this vm any more (every scenario joins its threads before
    // checking the balance), so nothing walks or maps the window while tables are freed.
    let freed = unsafe {
        vm.init_mm
            .reclaim_empty_tables(VirtAddr(V), VirtAddr(VMALLOC_END))
    };
    assert_eq!(freed, tables);
    assert_eq!(env.live_frames(), baseline);
}

/// The table that the `level` entry for `va` points at.
fn table_under(vm: &KernelVm<TestEnv>, va: impl AsVa, level: Level) -> PhysAddr {
    let va = va.va();
    let mut table = vm.init_mm.pgd_phys();
    for l in Level::ALL {
        let d = vm.init_mm.entry_in(table, l, va).read();
        assert!(
            d.is_table(l),
            "no table under the {} entry of {va:#x}",
            l.name()
        );
        if l == level {
            return d.addr();
        }
        table = d.addr();
    }
    unreachable!("a pte entry never points at a table")
}

/// The frame behind the vmalloc page at `va`, reached through its (fake) physical address.
fn frame_of(vm: &KernelVm<TestEnv>, va: impl AsVa) -> &Table {
    let va = va.va();
    let t = vm
        .init_mm
        .translate(VirtAddr(va))
        .unwrap_or_else(|| panic!("vmalloc page {va:#x} not mapped"));
    assert_eq!((t.level, t.prot()), (Level::Pte, Some(Prot::KERNEL_RW)));
    vm.init_mm.env().frame_table(t.pa)
}

fn pattern(tag: u64, page: usize, slot: usize) -> u64 {
    tag.rotate_left(29) ^ ((page as u64) << 9 | slot as u64)
}

/// Write an area's pattern through the mapping (vmalloc does not zero: what the frame held
/// before is overwritten here).
fn fill(vm: &KernelVm<TestEnv>, va: impl AsVa, pages: usize, tag: u64) {
    let va = va.va();
    for p in 0..pages {
        for (i, slot) in frame_of(vm, va + p * P).iter().enumerate() {
            slot.store(pattern(tag, p, i), Ordering::Relaxed);
        }
    }
}

/// The area still holds what `fill` wrote: no other area shares its pages.
fn verify(vm: &KernelVm<TestEnv>, va: impl AsVa, pages: usize, tag: u64) {
    let va = va.va();
    for p in 0..pages {
        for (i, slot) in frame_of(vm, va + p * P).iter().enumerate() {
            assert_eq!(
                slot.load(Ordering::Relaxed),
                pattern(tag, p, i),
                "{va:#x} page {p}"
            );
        }
    }
}

/// `events` is exactly one unmap of the pages at `pages`: the leaf clears, `dsb ishst`, a
/// `tlbi vaale1is` per page (one `tlbi vmalle1is` from TLBI_MAX_OPS pages on), `dsb ish`, `isb`.
#[track_caller]
fn assert_unmap_events(events: &[Event], pages: &[usize]) {
    let n = pages.len();
    assert!(events.len() > n, "{events:?}");
    let mut cleared: Vec<usize> = events[..n]
        .iter()
        .map(|e| match *e {
            Event::Store {
                level: Level::Pte,
                val: 0,
                index,
                ..
            } => index,
            e => panic!("expected a pte clear, got {e:?}"),
        })
        .collect();
    let mut want: Vec<usize> = pages.iter().map(|&va| Level::Pte.index(va)).collect();
    cleared.sort_unstable();
    want.sort_unstable();
    assert_eq!(cleared, want, "pte slots cleared");
    let tlbis: Vec<Event> = if n >= TLBI_MAX_OPS {
        vec![Event::TlbiAll]
    } else {
        pages.iter().map(|&va| Event::TlbiPage(va)).collect()
    };
    let mut expected = vec![Event::DsbIshst];
    expected.extend(tlbis);
    expected.extend([Event::DsbIsh, Event::Isb]);
    assert_eq!(&events[n..], &expected[..]);
}

/// Break-before-make of the `level` entry for `va` turning a table into `block`, the old
/// tables taken out bottom-up (Linux's `pud_free_pmd_page`): for every table, lowest first,
/// its entry cleared, `dsb ishst; tlbi vaae1is; dsb ish; isb`, then the table freed; the
/// `level` entry itself last; then the block written, `dsb ishst; isb`. No table is
/// allocated on the way.
#[track_caller]
fn assert_promotion(events: &[Event], level: Level, va: impl AsVa, freed: &[PhysAddr], block: u64) {
    let va = va.va();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Alloc(_))),
        "{events:?}"
    );
    let first = events
        .iter()
        .position(|e| matches!(*e, Event::Store { val: 0, .. }))
        .expect("no table entry is ever cleared");
    let groups = &events[first..first + 6 * freed.len()];
    let mut frees = Vec::new();
    for (i, g) in groups.chunks(6).enumerate() {
        let Event::Store {
            level: l, val: 0, ..
        } = g[0]
        else {
            panic!("group {i} does not start with a clear: {g:?}");
        };
        let Event::TlbiVa(at) = g[2] else {
            panic!("group {i}: no tlbi vaae1is: {g:?}");
        };
        assert_eq!(
            [g[1], g[3], g[4]],
            [Event::DsbIshst, Event::DsbIsh, Event::Isb],
            "group {i}: {g:?}"
        );
        let Event::Free(pa) = g[5] else {
            panic!("group {i}: the table is not freed right after its invalidation: {g:?}");
        };
        if i + 1 == freed.len() {
            assert_eq!((l, at), (level, va), "the {level:?} entry goes last");
        } else {
            assert!(l > level, "group {i}: a lower table first ({l:?})");
        }
        frees.push(pa);
    }
    let mut want = freed.to_vec();
    frees.sort_unstable_by_key(|pa| pa.0);
    want.sort_unstable_by_key(|pa| pa.0);
    assert_eq!(frees, want);
    let rest = &events[first + 6 * freed.len()..];
    assert!(
        matches!(rest[0], Event::Store { level: l, val, .. } if l == level && val == block),
        "expected the block, got {:?}",
        rest[0]
    );
    assert_eq!(rest[1..3], [Event::DsbIshst, Event::Isb]);
}

// ---- ioremap: refusals --------------------------------------------------------------------

#[test]
fn ioremap_refuses_zero_size_wrap_around_and_addresses_beyond_pa_bits() {
    let vm = vm();
    // A live area, so that tables and leaves exist that a bad call could disturb.
    let live = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    let limit = 1u64 << PA_BITS;
    for ioremap in [KernelVm::ioremap_raw, KernelVm::ioremap_wc_raw] {
        assert_refused(&vm, VmError::ZeroSize, || ioremap(&vm, PhysAddr(DEV), 0));
        for (phys, size) in [(u64::MAX - 0xfff, 0x2000), (u64::MAX, 2)] {
            assert_refused(
                &vm,
                VmError::Wraps {
                    phys: PhysAddr(phys),
                    size,
                },
                || ioremap(&vm, PhysAddr(phys), size),
            );
        }
        for (phys, size) in [(limit, 1), (limit - P as u64, 2 * P), (u64::MAX, 1)] {
            let want = VmError::BeyondPhysLimit {
                phys: PhysAddr(phys),
                size,
                pa_bits: PA_BITS,
            };
            assert_refused(&vm, want, || ioremap(&vm, PhysAddr(phys), size));
        }
        // The last page below the limit is fine.
        let va = ioremap(&vm, PhysAddr(limit - P as u64), P).unwrap();
        assert_eq!(
            vm.init_mm.translate(va).unwrap().pa,
            PhysAddr(limit - P as u64)
        );
        vm.iounmap_at(va).unwrap();
    }
    vm.iounmap_at(live).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn ioremap_refuses_every_overlap_with_ram() {
    let vm = vm();
    let live = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    let (base, end) = (RAM.base, RAM.base + RAM.size);
    for (phys, size) in [
        (base, P),                         // the first page
        (base + 0x1234, 8),                // inside
        (base - P as u64, 2 * P),          // straddling the start
        (base - 8, 9),                     // one byte over the start
        (end - P as u64, 2 * P),           // straddling the end
        (end - 1, 1),                      // the last byte
        (base - 0x1000_0000, 0x6000_0000), // covering it
    ] {
        assert_refused(
            &vm,
            VmError::OverlapsRam {
                phys: PhysAddr(phys),
                size,
                ram: RAM,
            },
            || vm.ioremap_raw(PhysAddr(phys), size),
        );
        assert_refused(
            &vm,
            VmError::OverlapsRam {
                phys: PhysAddr(phys),
                size,
                ram: RAM,
            },
            || vm.ioremap_wc_raw(PhysAddr(phys), size),
        );
    }
    // Right up to RAM on either side is not an overlap.
    for (phys, size) in [(base - 8, 8), (end, P)] {
        let va = vm.ioremap_raw(PhysAddr(phys), size).unwrap();
        assert_eq!(vm.init_mm.translate(va).unwrap().pa, PhysAddr(phys));
        vm.iounmap_at(va).unwrap();
    }
    vm.iounmap_at(live).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

/// A CPU with 52-bit physical addresses passes the PARange check, but the descriptors hold 48
/// bits: the table code refuses, and the reserved range is given back.
#[test]
fn ioremap_beyond_the_descriptor_output_size_is_a_table_error() {
    let vm = vm_with(TestEnv::new(), WINDOW, 52);
    let live = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    for (phys, size) in [(1u64 << 48, P), ((1 << 48) - P as u64, 2 * P)] {
        let want = VmError::Table(MmError::BadPhysRange { pa: phys, size });
        assert_refused(&vm, want, || vm.ioremap_raw(PhysAddr(phys), size));
    }
    vm.iounmap_at(live).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn ioremap_out_of_virtual_space_in_a_tiny_window() {
    let window = (V, V + 4 * P);
    let vm = vm_with(TestEnv::new(), window, PA_BITS);
    // Four pages plus the guard page can never fit.
    assert_refused(&vm, VmError::NoVirtualSpace(VaError::TooLarge), || {
        vm.ioremap_raw(PhysAddr(DEV), 4 * P)
    });
    let va = vm.ioremap_raw(PhysAddr(DEV), 2 * P).unwrap();
    assert_eq!(va, VirtAddr(V));
    // One page is left, but a page needs its guard page too.
    let no_space = VmError::NoVirtualSpace(VaError::NoSpace { size: P, align: P });
    assert_refused(&vm, no_space, || {
        vm.ioremap_raw(PhysAddr(DEV + 0x10_0000), 1)
    });
    assert_refused(&vm, no_space, || {
        vm.ioremap_wc_raw(PhysAddr(DEV + 0x10_0000), 1)
    });
    vm.iounmap_at(va).unwrap();
    let va = vm.ioremap_raw(PhysAddr(DEV + 0x10_0000), 3 * P).unwrap();
    vm.iounmap_at(va).unwrap();
    assert_balanced(&vm, window, 1);
}

/// Fail the Nth table allocation for every N: the error is `Table(OutOfMemory)`, every leaf
/// written before is unmapped (with TLB invalidation), the range is given back, and the only
/// frames kept are the N tables installed, exactly as Linux keeps them.
#[test]
fn ioremap_out_of_memory_at_every_table_allocation() {
    const TABLES: usize = 6;
    for n in 0..=TABLES {
        let vm = vm_with(TestEnv::new(), ACROSS_PGD, PA_BITS);
        let env = vm.init_mm.env();
        let before = snapshot(&vm);
        env.fail_after(n);
        env.start_recording();
        let got = vm.ioremap_raw(PhysAddr(DEV), 4 * P);
        let events = env.take_events();
        env.unlimited();
        let va = ACROSS_PGD.0;
        if n == TABLES {
            assert_eq!(got, Ok(VirtAddr(va)));
            assert_eq!(
                vm.init_mm
                    .count_tables(VirtAddr(V), VirtAddr(VMALLOC_END))
                    .total(),
                TABLES
            );
            vm.iounmap_at(VirtAddr(va)).unwrap();
            assert_balanced(&vm, ACROSS_PGD, 1);
            continue;
        }
        assert_eq!(got, Err(VmError::Table(MmError::OutOfMemory)), "n = {n}");
        let after = snapshot(&vm);
        assert_eq!(after.areas, before.areas, "n = {n}");
        assert_eq!(after.leaves, 0, "n = {n}");
        assert_eq!(after.allocations - before.allocations, n);
        assert_eq!(after.tables.total(), n, "n = {n}");
        assert_eq!(after.live_frames, before.live_frames + n, "n = {n}");
        // The first three tables reach the two pages below the pgd boundary: once they are
        // in, those leaves were written and had to be unmapped again.
        let flushed: Vec<usize> = events
            .iter()
            .filter_map(|e| match *e {
                Event::TlbiPage(va) => Some(va),
                _ => None,
            })
            .collect();
        let written = if n >= 3 { vec![va, va + P] } else { vec![] };
        assert_eq!(flushed, written, "n = {n}");
        if n >= 3 {
            assert_eq!(events[events.len() - 2..], [Event::DsbIsh, Event::Isb]);
        }
        assert_balanced(&vm, ACROSS_PGD, 1);
    }
}

// ---- ioremap: what it maps -------------------------------------------------------------

#[test]
fn ioremap_keeps_the_sub_page_offset() {
    let vm = vm();
    let va = vm.ioremap_raw(PhysAddr(DEV + 0x123), 8).unwrap();
    assert_eq!(va, VirtAddr(V + 0x123));
    assert_eq!(vm.init_mm.translate(va).unwrap().pa, PhysAddr(DEV + 0x123));
    assert!(
        vm.init_mm.translate(VirtAddr(V + P)).is_none(),
        "one page only"
    );
    assert_eq!(vm.area_stats().0, 1);
    vm.iounmap_at(va).unwrap();
    assert!(vm.init_mm.translate(VirtAddr(V)).is_none());

    // Eight bytes across a page boundary take two pages.
    let va = vm.ioremap_raw(PhysAddr(DEV + 0xffc), 8).unwrap();
    assert_eq!(va, VirtAddr(V + 0xffc));
    assert_eq!(
        vm.init_mm.translate(va + 4).unwrap().pa,
        PhysAddr(DEV + 0x1000)
    );
    assert!(vm.init_mm.translate(VirtAddr(V + 2 * P)).is_none());
    vm.iounmap_at(va).unwrap();
    assert_eq!(vm.iounmap_at(va), Err(FreeError::NotMapped { addr: va }));
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn ioremap_is_device_ngnre_and_ioremap_wc_normal_nc_both_execute_never() {
    let vm = vm();
    let dev = vm.ioremap_raw(PhysAddr(DEV), 2 * P).unwrap();
    let wc = vm.ioremap_wc_raw(PhysAddr(DEV + 0x10_0000), 2 * P).unwrap();
    let mem = vm.vmalloc_raw(P).unwrap();
    for (va, prot, mem_type, attr) in [
        (dev, Prot::DEVICE, MemType::Device, MAIR_IDX_DEVICE_NGNRE),
        (wc, Prot::DEVICE_WC, MemType::NormalNc, MAIR_IDX_NORMAL_NC),
        (mem, Prot::KERNEL_RW, MemType::Normal, MAIR_IDX_NORMAL),
    ] {
        let t = vm.init_mm.translate(va).unwrap();
        assert_eq!(t.prot(), Some(prot), "{va:#x}");
        assert_eq!(t.desc.mem_type(), Some(mem_type), "{va:#x}");
        assert_eq!(t.desc.attr_index(), attr, "{va:#x}");
        assert!(t.desc.writable(), "{va:#x}");
        assert!(
            t.desc.pxn() && t.desc.uxn(),
            "{va:#x} must be execute-never"
        );
    }
    vm.iounmap_at(dev).unwrap();
    vm.iounmap_at(wc).unwrap();
    vm.vfree_at(mem).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn huge_ioremap_uses_one_pmd_block_at_a_2m_aligned_va() {
    let vm = vm();
    // A page at the bottom of the window, so that 2 MiB alignment is not free.
    let pin = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    let phys = 0x10_0000_0000;
    let va = vm.ioremap_raw(PhysAddr(phys), PMD_SIZE).unwrap();
    assert_eq!(va, VirtAddr(V + PMD_SIZE));
    for off in [0, PMD_SIZE - 1] {
        let t = vm.init_mm.translate(va + off).unwrap();
        assert_eq!((t.level, t.pa), (Level::Pmd, PhysAddr(phys + off as u64)));
        assert_eq!(t.prot(), Some(Prot::DEVICE));
    }
    let one_block = TableCount {
        pud: 1,
        pmd: 1,
        pte: 0,
    };
    assert_eq!(vm.init_mm.count_tables(va, va + PMD_SIZE), one_block);

    // A sub-page offset in a 2 MiB-aligned range still takes the block.
    let off_va = vm
        .ioremap_raw(PhysAddr(phys + 0x20_0010), PMD_SIZE - 0x10)
        .unwrap();
    assert_eq!(off_va.0 % PMD_SIZE, 0x10);
    assert_eq!(vm.init_mm.translate(off_va).unwrap().level, Level::Pmd);

    // One page more: a block, then a pte table for the tail page.
    let tail = vm
        .ioremap_raw(PhysAddr(phys + 0x40_0000), PMD_SIZE + P)
        .unwrap();
    assert_eq!(tail.0 % PMD_SIZE, 0);
    assert_eq!(vm.init_mm.translate(tail).unwrap().level, Level::Pmd);
    let t = vm.init_mm.translate(tail + PMD_SIZE).unwrap();
    assert_eq!((t.level, t.pa), (Level::Pte, PhysAddr(phys + 0x60_0000)));

    // A physical range that is not 2 MiB aligned uses pages, at a page-aligned VA.
    let pages = vm
        .ioremap_raw(PhysAddr(phys + 0x10_0000 + P as u64), PMD_SIZE)
        .unwrap();
    assert_eq!(vm.init_mm.translate(pages).unwrap().level, Level::Pte);
    assert_eq!(
        vm.init_mm.count_tables(pages, pages + PMD_SIZE).pte,
        if pages.0.is_multiple_of(PMD_SIZE) {
            1
        } else {
            2
        }
    );

    for va in [pin, va, off_va, tail, pages] {
        vm.iounmap_at(va).unwrap();
    }
    assert!(vm.init_mm.translate(VirtAddr(V + PMD_SIZE)).is_none());
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn huge_ioremap_uses_one_pud_block_at_a_1g_aligned_va() {
    // The small pin and the huge area must meet in one pud table: both global.
    let vm = vm().without_nodes();
    let pin = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    let phys = 0x80_0000_0000;
    let va = vm.ioremap_raw(PhysAddr(phys), PUD_SIZE).unwrap();
    assert_eq!(va, VirtAddr(V + PUD_SIZE));
    for off in [0, 0x1234_5678, PUD_SIZE - 1] {
        let t = vm.init_mm.translate(va + off).unwrap();
        assert_eq!((t.level, t.pa), (Level::Pud, PhysAddr(phys + off as u64)));
        assert_eq!(t.prot(), Some(Prot::DEVICE));
    }
    let one_block = TableCount {
        pud: 1,
        pmd: 0,
        pte: 0,
    };
    assert_eq!(vm.init_mm.count_tables(va, va + PUD_SIZE), one_block);
    vm.iounmap_at(va).unwrap();
    assert!(vm.init_mm.translate(va).is_none());
    // The slot is empty again and the next 1 GiB ioremap takes it.
    let again = vm
        .ioremap_wc_raw(PhysAddr(phys + PUD_SIZE as u64), PUD_SIZE)
        .unwrap();
    assert_eq!(again, va);
    assert_eq!(vm.init_mm.translate(again).unwrap().level, Level::Pud);
    vm.iounmap_at(again).unwrap();
    vm.iounmap_at(pin).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

/// A 4 KiB ioremap leaves a pte table in the pmd slot after iounmap; a 2 MiB ioremap that lands
/// there replaces it by a block with break-before-make and frees it.
#[test]
fn huge_ioremap_promotes_a_pte_table_slot_with_break_before_make() {
    let vm = vm();
    let env = vm.init_mm.env();
    let small = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    let pte_table = table_under(&vm, small, Level::Pmd);
    vm.iounmap_at(small).unwrap();
    let frames = env.live_frames();

    let phys = 0x10_0000_0000;
    env.start_recording();
    let va = vm.ioremap_raw(PhysAddr(phys), PMD_SIZE).unwrap();
    let events = env.take_events();
    assert_eq!(va, small, "the 2 MiB area reuses the slot");
    let block = Descriptor::leaf(Level::Pmd, PhysAddr(phys), Prot::DEVICE).raw();
    assert_promotion(&events, Level::Pmd, va, &[pte_table], block);
    assert!(!env.is_allocated(pte_table));
    assert_eq!(env.live_frames(), frames - 1);
    assert_eq!(vm.init_mm.stats().promotions, 1);
    assert_eq!(vm.init_mm.translate(va).unwrap().level, Level::Pmd);
    vm.iounmap_at(va).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

/// Same one level up: the pud slot held a pmd table (with a pte table under it); both go.
#[test]
fn huge_ioremap_promotes_a_pmd_table_slot_to_a_1g_block() {
    // The small area and the huge one share a pud slot: both global.
    let vm = vm().without_nodes();
    let env = vm.init_mm.env();
    let small = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    let pmd_table = table_under(&vm, small, Level::Pud);
    let pte_table = table_under(&vm, small, Level::Pmd);
    vm.iounmap_at(small).unwrap();
    let frames = env.live_frames();

    let phys = 0x80_0000_0000;
    env.start_recording();
    let va = vm.ioremap_raw(PhysAddr(phys), PUD_SIZE).unwrap();
    let events = env.take_events();
    assert_eq!(va, small);
    let block = Descriptor::leaf(Level::Pud, PhysAddr(phys), Prot::DEVICE).raw();
    assert_promotion(&events, Level::Pud, va, &[pmd_table, pte_table], block);
    assert_eq!(env.live_frames(), frames - 2);
    assert_eq!(vm.init_mm.translate(va).unwrap().level, Level::Pud);
    vm.iounmap_at(va).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

// ---- unmapping ------------------------------------------------------------------------

/// A `TestEnv` that knows the `KernelVm` it belongs to and, while armed, notes at every
/// descriptor store, barrier, TLBI and frame free how many areas are reserved *at that
/// moment*: that shows whether the range was given back before its TLB invalidation was
/// complete.
struct Spy {
    env: TestEnv,
    vm: OnceLock<Weak<KernelVm<Spy>>>,
    armed: AtomicBool,
    log: StdMutex<Vec<(Event, Option<usize>)>>,
}

impl Spy {
    fn note(&self, event: Event) {
        if self.armed.load(StdOrdering::SeqCst) {
            let live = self.live_areas();
            self.log.lock().unwrap().push((event, live));
        }
    }

    /// Asked from another thread, so that a `vmap_area_lock` held by this one across the
    /// unmap shows up as `None` (a timeout) rather than as a deadlock. After one timeout the
    /// lock is known to be held: later notes say so without waiting again.
    fn live_areas(&self) -> Option<usize> {
        if self
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|&(_, live)| live.is_none())
        {
            return None;
        }
        let vm = self.vm.get()?.upgrade()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(vm.area_stats().0);
        });
        rx.recv_timeout(Duration::from_secs(2)).ok()
    }
}

// SAFETY: every hook is `TestEnv`'s (an `unsafe impl` with its own argument); the spy only looks.
unsafe impl PageTableEnv for Spy {
    fn alloc_table_frame(&self) -> Option<PhysAddr> {
        self.env.alloc_table_frame()
    }
    unsafe fn free_table_frame(&self, pa: PhysAddr) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { self.env.free_table_frame(pa) };
        self.note(Event::Free(pa));
    }
    unsafe fn table(&self, pa: PhysAddr) -> &Table {
        self.env.frame_table(pa)
    }
    fn dsb_ishst(&self) {
        self.note(Event::DsbIshst);
    }
    fn isb(&self) {
        self.note(Event::Isb);
    }
    fn tlbi_page(&self, va: usize) {
        self.note(Event::TlbiPage(va));
    }
    fn tlbi_va(&self, va: usize) {
        self.note(Event::TlbiVa(va));
    }
    fn tlbi_all(&self) {
        self.note(Event::TlbiAll);
    }
    fn dsb_ish(&self) {
        self.note(Event::DsbIsh);
    }
    unsafe fn set_entry(&self, entry: &Entry<'_>, raw: u64) {
        // SAFETY: forwarded: our caller keeps the contract.
        unsafe { self.env.set_entry(entry, raw) };
        self.note(Event::Store {
            level: entry.level(),
            table: entry.table_phys(),
            index: entry.index(),
            val: raw,
        });
    }
}

/// Invariant 4 (see `mm`) for iounmap, vunmap and vfree: leaves cleared, TLB invalidated for the
/// range, `dsb ish; isb` — all while the area is still reserved — and only then the range is
/// given back (vfree frees the pages after that), and handed out again.
#[test]
fn unmap_invalidates_and_waits_before_the_range_is_given_back() {
    for kind in [AreaKind::Ioremap, AreaKind::Vmap, AreaKind::Vmalloc] {
        let spy = Spy {
            env: TestEnv::new(),
            vm: OnceLock::new(),
            armed: AtomicBool::new(false),
            log: StdMutex::new(Vec::new()),
        };
        let vm =
            Arc::new(test_vm(InitMm::new(spy, layout()).unwrap(), WINDOW, PA_BITS).without_nodes());
        vm.set_lazy_max_pages(0); // every free purges at once
        let spy = vm.init_mm.env();
        spy.vm.set(Arc::downgrade(&vm)).unwrap();
        let neighbour = vm.vmalloc_raw(P).unwrap();
        let frames: Vec<PhysAddr> = (0..3).map(|_| spy.alloc_table_frame().unwrap()).collect();
        let va = match kind {
            AreaKind::Ioremap => vm.ioremap_raw(PhysAddr(DEV), 3 * P),
            // SAFETY: the test's own frames, given back only after the area's purge (every
            // free purges here).
            AreaKind::Vmap => unsafe { vm.vmap_raw(&frames, Prot::KERNEL_RW) },
            _ => vm.vmalloc_raw(3 * P),
        }
        .unwrap();
        assert_eq!(va, VirtAddr(V + 2 * P));
        let pages: Vec<usize> = (0..3).map(|i| va.0 + i * P).collect();
        let vmalloced: Vec<PhysAddr> = pages
            .iter()
            .map(|&p| vm.init_mm.translate(VirtAddr(p)).unwrap().pa)
            .collect();

        spy.armed.store(true, StdOrdering::SeqCst);
        let unmapped = match kind {
            AreaKind::Ioremap => vm.iounmap_at(va),
            AreaKind::Vmap => vm.vunmap_at(va),
            _ => vm.vfree_at(va),
        };
        spy.armed.store(false, StdOrdering::SeqCst);
        unmapped.unwrap();

        let log = core::mem::take(&mut *spy.log.lock().unwrap());
        let isb = log
            .iter()
            .position(|&(e, _)| e == Event::Isb)
            .unwrap_or_else(|| panic!("{kind:?}: no isb in {log:?}"));
        let (unmap, after) = log.split_at(isb + 1);
        // vfree gives each page back right after its leaf is cleared (Linux's vfree frees the
        // pages before the lazy purge); the others free nothing.
        let freed: Vec<PhysAddr> = unmap
            .iter()
            .filter_map(|&(e, _)| match e {
                Event::Free(pa) => Some(pa),
                _ => None,
            })
            .collect();
        if let Some(first_free) = unmap.iter().position(|&(e, _)| matches!(e, Event::Free(_))) {
            assert!(
                !unmap[first_free..]
                    .iter()
                    .any(|&(e, _)| matches!(e, Event::Store { val: 0, .. })),
                "{kind:?}: a page freed before every leaf was cleared: {unmap:?}"
            );
        }
        if kind == AreaKind::Vmalloc {
            assert_eq!(freed, vmalloced);
        } else {
            assert!(freed.is_empty());
        }
        let events: Vec<Event> = unmap
            .iter()
            .map(|&(e, _)| e)
            .filter(|e| !matches!(e, Event::Free(_)))
            .collect();
        assert_unmap_events(&events, &pages);
        for &(e, live) in unmap {
            assert_eq!(
                live,
                Some(2),
                "{kind:?}: at {e:?} the area was already given back (or vmap_area_lock held)"
            );
        }
        assert!(
            after.is_empty(),
            "{kind:?}: nothing after the invalidation: {after:?}"
        );
        assert_eq!(vm.area_stats().0, 1);
        // Only now is the range handed out again: the next area takes the same address.
        let again = vm.vmalloc_raw(3 * P).unwrap();
        assert_eq!(again, va, "{kind:?}");
        vm.vfree_at(again).unwrap();
        vm.vfree_at(neighbour).unwrap();
        // SAFETY: the test's own frames, unmapped by vunmap.
        frames
            .into_iter()
            .for_each(|pa| unsafe { spy.free_table_frame(pa) });
        assert_eq!(
            spy.env.live_frames(),
            1 + vm
                .init_mm
                .count_tables(VirtAddr(V), VirtAddr(VMALLOC_END))
                .total()
        );
    }
}

#[test]
fn vfree_of_a_large_area_flushes_the_whole_tlb_once() {
    let vm = vm();
    let env = vm.init_mm.env();
    let pages = TLBI_MAX_OPS + 88;
    let va = vm.vmalloc_raw(pages * P).unwrap();
    env.start_recording();
    vm.vfree_at(va).unwrap();
    let events = env.take_events();
    // Each page is freed right after its leaf is cleared; then one invalidation.
    let (frees, unmap): (Vec<Event>, Vec<Event>) =
        events.iter().partition(|e| matches!(e, Event::Free(_)));
    // The clears span two pte tables: check the order, not the (repeating) slot indices.
    assert!(unmap[..pages].iter().all(|e| matches!(
        e,
        Event::Store {
            level: Level::Pte,
            val: 0,
            ..
        }
    )));
    assert_eq!(
        unmap[pages..],
        [Event::DsbIshst, Event::TlbiAll, Event::DsbIsh, Event::Isb]
    );
    assert_eq!(frees.len(), pages);
    assert!(frees.iter().all(|e| matches!(e, Event::Free(_))));
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn unmapping_the_wrong_address_or_kind_is_refused() {
    let vm = vm();
    let io = vm.ioremap_raw(PhysAddr(DEV + 0x40), 3 * P).unwrap();
    let io_start = io - 0x40;
    let mem = vm.vmalloc_raw(3 * P).unwrap();
    let frame = vm.init_mm.env().alloc_table_frame().unwrap();
    // SAFETY: the test's own frame, given back only after its area was unmapped and purged (this
    // vm purges on every free).
    let mapped = unsafe { vm.vmap_raw(&[frame], Prot::KERNEL_RO) }.unwrap();
    let window = vm.reserve_window(P, P).unwrap();
    fill(&vm, mem, 3, 7);
    let before = snapshot(&vm);

    let nowhere = VMALLOC_END - 64 * P;
    assert_eq!(
        vm.iounmap_at(VirtAddr(nowhere)),
        Err(FreeError::NotMapped {
            addr: VirtAddr(nowhere)
        })
    );
    assert_eq!(
        vm.vfree_at(VirtAddr(nowhere)),
        Err(FreeError::NotMapped {
            addr: VirtAddr(nowhere)
        })
    );
    assert_eq!(
        vm.vunmap_at(VirtAddr(nowhere)),
        Err(FreeError::NotMapped {
            addr: VirtAddr(nowhere)
        })
    );
    assert_eq!(
        vm.vfree_at(mem + P),
        Err(FreeError::InsideArea {
            addr: mem + P,
            start: mem
        })
    );
    // The guard page belongs to its area too.
    assert_eq!(
        vm.vfree_at(mem + 3 * P),
        Err(FreeError::InsideArea {
            addr: mem + 3 * P,
            start: mem
        })
    );
    assert_eq!(
        vm.iounmap_at(io_start + P),
        Err(FreeError::InsideArea {
            addr: io_start + P,
            start: io_start
        })
    );
    let wrong = |addr, is, expected| Err(FreeError::WrongKind { addr, is, expected });
    assert_eq!(
        vm.vfree_at(io_start),
        wrong(io_start, AreaKind::Ioremap, AreaKind::Vmalloc)
    );
    assert_eq!(
        vm.vunmap_at(mem),
        wrong(mem, AreaKind::Vmalloc, AreaKind::Vmap)
    );
    assert_eq!(
        vm.iounmap_at(mem),
        wrong(mem, AreaKind::Vmalloc, AreaKind::Ioremap)
    );
    assert_eq!(
        vm.vfree_at(mapped),
        wrong(mapped, AreaKind::Vmap, AreaKind::Vmalloc)
    );
    assert_eq!(
        vm.iounmap_at(window.start()),
        wrong(window.start(), AreaKind::Window, AreaKind::Ioremap)
    );
    // (`release_window` of another kind's area does not build: it takes a `Window`.)
    assert_eq!(snapshot(&vm), before, "a refused unmap changed something");
    verify(&vm, mem, 3, 7);

    vm.iounmap_at(io).unwrap();
    assert_eq!(vm.iounmap_at(io), Err(FreeError::NotMapped { addr: io }));
    vm.vfree_at(mem).unwrap();
    assert_eq!(vm.vfree_at(mem), Err(FreeError::NotMapped { addr: mem }));
    vm.vunmap_at(mapped).unwrap();
    assert_eq!(
        vm.vunmap_at(mapped),
        Err(FreeError::NotMapped { addr: mapped })
    );
    vm.release_window(window).unwrap();
    // SAFETY: the test's own frame, no longer mapped.
    unsafe { vm.init_mm.env().free_table_frame(frame) };
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn vmap_maps_the_callers_pages_and_vunmap_leaves_them_to_the_caller() {
    let vm = vm();
    let env = vm.init_mm.env();
    // SAFETY: no pages.
    assert_refused(&vm, VmError::ZeroSize, || unsafe {
        vm.vmap_raw(&[], Prot::KERNEL_RW)
    });
    // Out of order on purpose: the mapping follows the slice.
    let frames: Vec<PhysAddr> = (0..3)
        .map(|_| env.alloc_table_frame().unwrap())
        .rev()
        .collect();
    // SAFETY: the test's own frames, given back only after the area was unmapped and purged
    // (this vm purges on every free).
    let va = unsafe { vm.vmap_raw(&frames, Prot::KERNEL_RO) }.unwrap();
    for (i, &pa) in frames.iter().enumerate() {
        let t = vm.init_mm.translate(va + i * P + 8).unwrap();
        assert_eq!(
            (t.pa, t.prot()),
            (PhysAddr(pa.0 + 8), Some(Prot::KERNEL_RO))
        );
    }
    assert!(vm.init_mm.translate(va + 3 * P).is_none(), "guard page");
    vm.vunmap_at(va).unwrap();
    assert!(frames.iter().all(|&pa| env.is_allocated(pa)));
    // SAFETY: the test's own frames, unmapped by vunmap.
    frames
        .into_iter()
        .for_each(|pa| unsafe { env.free_table_frame(pa) });
    assert_balanced(&vm, WINDOW, 1);
}

// ---- vmalloc ----------------------------------------------------------------------------

/// Fail the Nth allocation for every N: the three pages come first (`OutOfMemory`), then the
/// six tables (`Table`); every page goes back, the installed tables stay.
#[test]
fn vmalloc_out_of_memory_at_every_allocation() {
    const ALLOCS: usize = 3 + 6;
    for n in 0..=ALLOCS {
        let vm = vm_with(TestEnv::new(), ACROSS_PGD, PA_BITS);
        let env = vm.init_mm.env();
        let before = snapshot(&vm);
        env.fail_after(n);
        let got = vm.vmalloc_raw(3 * P);
        env.unlimited();
        let after = snapshot(&vm);
        let tables = after.tables.total();
        match n {
            0..3 => assert_eq!(got, Err(VmError::OutOfMemory { pages: 3 })),
            3..ALLOCS => {
                assert_eq!(got, Err(VmError::Table(MmError::OutOfMemory)), "n = {n}");
                assert_eq!(tables, n - 3);
            }
            _ => {
                assert_eq!(got, Ok(VirtAddr(ACROSS_PGD.0)));
                fill(&vm, ACROSS_PGD.0, 3, 1);
                vm.vfree_at(VirtAddr(ACROSS_PGD.0)).unwrap();
            }
        }
        assert_eq!(after.allocations - before.allocations, n);
        if n < ALLOCS {
            assert_eq!(after.areas, before.areas, "n = {n}");
            assert_eq!(after.leaves, 0, "n = {n}");
            assert_eq!(after.live_frames, before.live_frames + tables, "n = {n}");
        }
        assert_balanced(&vm, ACROSS_PGD, 1);
    }
}

#[test]
fn vmalloc_stack_has_an_unmapped_guard_page_below() {
    let vm = vm();
    assert_refused(&vm, VmError::ZeroSize, || {
        vm.vmalloc_stack(0).map(|s| s.top())
    });
    let neighbour = vm.vmalloc_raw(P).unwrap();
    let size = 4 * P;
    let stack = vm.vmalloc_stack(size).unwrap();
    let (top, guard) = (stack.top(), stack.guard_page());
    assert_eq!((stack.size(), guard), (size, top - size - P));
    assert_eq!(
        guard,
        neighbour + 2 * P,
        "the stack area follows the neighbour's guard"
    );
    assert!(
        vm.init_mm.translate(guard).is_none(),
        "guard page below the stack is mapped"
    );
    assert!(vm.init_mm.translate(guard + P - 1).is_none());
    assert!(
        vm.init_mm.translate(top).is_none(),
        "the area's own guard page is mapped"
    );
    let mut pas = Vec::new();
    for va in (guard.0 + P..top.0).step_by(P) {
        let t = vm.init_mm.translate(VirtAddr(va)).unwrap();
        assert_eq!((t.level, t.prot()), (Level::Pte, Some(Prot::KERNEL_RW)));
        assert!(t.desc.pxn() && t.desc.uxn());
        pas.push(t.pa);
        vm.init_mm.env().frame_table(t.pa)[511].store(va as u64, Ordering::Relaxed);
    }
    pas.sort_unstable_by_key(|pa| pa.0);
    pas.dedup();
    assert_eq!(pas.len(), 4, "each stack page has its own frame");
    for va in (guard.0 + P..top.0).step_by(P) {
        let pa = vm.init_mm.translate(VirtAddr(va)).unwrap().pa;
        assert_eq!(
            vm.init_mm.env().frame_table(pa)[511].load(Ordering::Relaxed),
            va as u64
        );
    }
    assert_eq!(
        vm.vfree_at(guard + P),
        Err(FreeError::InsideArea {
            addr: guard + P,
            start: guard
        })
    );
    vm.vfree_stack(stack);
    vm.vfree_at(neighbour).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

/// The stack's pages come first, then the tables of its one walk: fail each allocation.
#[test]
fn vmalloc_stack_out_of_memory_at_every_allocation() {
    // Guard page, then pages at both sides of the pgd boundary: 3 pages, then 3 tables on
    // each side.
    const ALLOCS: usize = 9;
    for n in 0..=ALLOCS {
        let vm = vm_with(TestEnv::new(), ACROSS_PGD, PA_BITS);
        let env = vm.init_mm.env();
        let before = snapshot(&vm);
        env.fail_after(n);
        let got = vm.vmalloc_stack(3 * P).map(|s| s.top());
        env.unlimited();
        let after = snapshot(&vm);
        match n {
            0..=2 => assert_eq!(got, Err(VmError::OutOfMemory { pages: 3 }), "n = {n}"),
            ALLOCS => {
                assert_eq!(got, Ok(VirtAddr(ACROSS_PGD.0 + 4 * P)));
                vm.vfree_at(VirtAddr(ACROSS_PGD.0)).unwrap();
            }
            _ => assert_eq!(got, Err(VmError::Table(MmError::OutOfMemory)), "n = {n}"),
        }
        assert_eq!(after.allocations - before.allocations, n);
        if n < ALLOCS {
            assert_eq!(after.areas, before.areas, "n = {n}");
            assert_eq!(after.leaves, 0, "n = {n}");
            let tables = after.tables.total();
            assert_eq!(after.live_frames, before.live_frames + tables, "n = {n}");
        }
        assert_balanced(&vm, ACROSS_PGD, 1);
    }
}

// ---- Linux's lib/test_vmalloc.c scenarios, through KernelVm ----------------------------

/// `fix_size_alloc_test`: allocate and free 3 pages over and over; the area comes back at the
/// same place and no table or frame is added after the first round.
#[test]
fn test_vmalloc_fix_size_alloc() {
    let vm = vm();
    let env = vm.init_mm.env();
    let first = vm.vmalloc_raw(3 * P).unwrap();
    vm.vfree_at(first).unwrap();
    let frames = env.live_frames();
    for i in 0..2000u64 {
        let va = vm.vmalloc_raw(3 * P).unwrap();
        assert_eq!(va, first);
        let slot = &frame_of(&vm, va + 2 * P)[0];
        slot.store(i, Ordering::Relaxed);
        vm.vfree_at(va).unwrap();
        assert_eq!(env.live_frames(), frames);
    }
    assert_balanced(&vm, WINDOW, 1);
}

/// `full_fit_alloc_test`: interleave live areas with junk ones, free the junk, and check that
/// a one-page area then fits exactly into a junk hole (page + guard) again and again, without
/// touching its live neighbours or growing the tables.
#[test]
fn test_vmalloc_full_fit_alloc() {
    const PAIRS: usize = 1024;
    let vm = vm_with(TestEnv::with_capacity(2 * PAIRS + 64), WINDOW, PA_BITS);
    let mut live = Vec::with_capacity(PAIRS);
    let mut junk = Vec::with_capacity(PAIRS);
    for i in 0..PAIRS {
        live.push(vm.vmalloc_raw(P).unwrap());
        junk.push(vm.vmalloc_raw(P).unwrap());
        fill(&vm, live[i], 1, i as u64);
    }
    junk.iter().for_each(|&va| vm.vfree_at(va).unwrap());
    let before = vm.area_stats();
    let tables = vm.init_mm.count_tables(VirtAddr(V), VirtAddr(VMALLOC_END));
    for i in 0..4 * PAIRS as u64 {
        let va = vm.vmalloc_raw(P).unwrap();
        assert_eq!(va, junk[0], "did not fit in the lowest hole");
        let slot = &frame_of(&vm, va)[0];
        slot.store(i, Ordering::Relaxed);
        vm.vfree_at(va).unwrap();
    }
    // Fill every hole at once: each one-page area takes exactly one hole.
    let refill: Vec<VirtAddr> = (0..PAIRS).map(|_| vm.vmalloc_raw(P).unwrap()).collect();
    assert_eq!(refill, junk);
    assert_eq!(vm.area_stats().1, before.1 - PAIRS * 2 * P);
    assert_eq!(
        vm.init_mm.count_tables(VirtAddr(V), VirtAddr(VMALLOC_END)),
        tables
    );
    for (i, &va) in live.iter().enumerate() {
        verify(&vm, va, 1, i as u64);
    }
    live.iter()
        .chain(&refill)
        .for_each(|&va| vm.vfree_at(va).unwrap());
    assert_balanced(&vm, WINDOW, 1);
}

/// `long_busy_list_alloc_test`: 15,000 live one-page areas, then 100-page and one-page areas
/// allocated and freed above them; the busy list must not make this slow (O(log n) lookups).
#[test]
fn test_vmalloc_long_busy_list_alloc() {
    const BUSY: usize = 15_000;
    let vm = vm_with(TestEnv::with_capacity(BUSY + 400), WINDOW, PA_BITS);
    let busy: Vec<VirtAddr> = (0..BUSY).map(|_| vm.vzalloc_raw(P).unwrap()).collect();
    // Lowest fit, one page plus its guard page each.
    assert!(
        busy.iter()
            .enumerate()
            .all(|(i, &va)| va.0 == V + 2 * i * P)
    );
    assert_eq!(vm.area_stats().0, BUSY);
    let above = V + 2 * BUSY * P;
    for i in 0..100u64 {
        let big = vm.vmalloc_raw(100 * P).unwrap();
        let small = vm.vmalloc_raw(P).unwrap();
        assert_eq!((big, small), (VirtAddr(above), VirtAddr(above + 101 * P)));
        fill(&vm, big, 100, i);
        fill(&vm, small, 1, !i);
        verify(&vm, big, 100, i);
        vm.vfree_at(big).unwrap();
        vm.vfree_at(small).unwrap();
    }
    // Spot-check the busy pages: they are mapped, zeroed, and each its own frame.
    for &va in busy.iter().step_by(997) {
        assert!(
            frame_of(&vm, va)
                .iter()
                .all(|s| s.load(Ordering::Relaxed) == 0)
        );
    }
    busy.iter().for_each(|&va| vm.vfree_at(va).unwrap());
    assert_balanced(&vm, WINDOW, 1);
}

/// `random_size_alloc_test`: random sizes of 1 to 100 pages, here with up to 16 of them live
/// at once and freed in random order, each checked for its own contents before it goes.
#[test]
fn test_vmalloc_random_size_alloc() {
    let vm = vm();
    let mut rng = Rng::new(1);
    let mut live: Vec<(VirtAddr, usize, u64)> = Vec::new();
    for i in 0..400u64 {
        if live.len() < 16 && rng.range(0, 2) != 0 {
            let pages = rng.range(1, 100);
            let va = vm.vmalloc_raw(pages * P).unwrap();
            assert!(vm.init_mm.translate(va + pages * P).is_none(), "guard page");
            fill(&vm, va, pages, i);
            live.push((va, pages, i));
        } else if !live.is_empty() {
            let (va, pages, tag) = live.swap_remove(rng.range(0, live.len() - 1));
            verify(&vm, va, pages, tag);
            vm.vfree_at(va).unwrap();
        }
    }
    for (va, pages, tag) in live {
        verify(&vm, va, pages, tag);
        vm.vfree_at(va).unwrap();
    }
    assert_balanced(&vm, WINDOW, 1);
}

/// `fix_align_alloc_test`: 5 pages at twice arm64's THREAD_ALIGN (64 KiB), with a page pinned
/// at the bottom of the window so that the alignment has to be honoured.
#[test]
fn test_vmalloc_fix_align_alloc() {
    const ALIGN: usize = 64 << 10;
    let vm = vm();
    let pin = vm.vmalloc_raw(P).unwrap();
    for i in 0..500u64 {
        let va = vm.vmalloc_aligned_raw(5 * P, ALIGN).unwrap();
        assert_eq!(va, VirtAddr(V + ALIGN));
        fill(&vm, va, 5, i);
        vm.vfree_at(va).unwrap();
    }
    vm.vfree_at(pin).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

/// `random_size_align_alloc_test`: 1–10 pages at an alignment of 2^0 to 2^22 bytes (Linux's
/// range, sub-page alignments included: every page is aligned to them).
#[test]
fn test_vmalloc_random_size_align_alloc() {
    let vm = vm();
    let pin = vm.vmalloc_raw(P).unwrap();
    let mut rng = Rng::new(2);
    for i in 0..500u64 {
        let align = 1usize << rng.range(0, 22);
        let pages = rng.range(1, 10);
        let va = vm.vmalloc_aligned_raw(pages * P, align).unwrap();
        let want = (V + 2 * P).next_multiple_of(align.max(P));
        assert_eq!(va, VirtAddr(want), "{pages} pages at {align:#x}");
        fill(&vm, va, pages, i);
        vm.vfree_at(va).unwrap();
    }
    vm.vfree_at(pin).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

/// `align_shift_alloc_test` (an expected failure in Linux): one page at 2^0, 2^1, ... 2^63.
/// Every alignment up to the window start's (2^47) is met at the window start; from 2^48 on
/// no aligned address exists in the window, and each refusal gives its pages back.
#[test]
fn test_vmalloc_align_shift_alloc_fails_for_huge_alignment() {
    // Every alignment up to the window's own, from the global allocator.
    let vm = vm().without_nodes();
    let fits = V.trailing_zeros();
    assert_eq!(fits, 47);
    let mut first_failure = None;
    for shift in 0..usize::BITS {
        let align = 1usize << shift;
        match vm.vmalloc_aligned_raw(P, align) {
            Ok(va) => {
                assert!(shift <= fits, "2^{shift} cannot be met in the window");
                assert_eq!(va, VirtAddr(V));
                fill(&vm, va, 1, shift.into());
                vm.vfree_at(va).unwrap();
            }
            Err(e) => {
                assert_eq!(
                    e,
                    VmError::NoVirtualSpace(VaError::NoSpace { size: P, align })
                );
                assert_eq!(
                    vm.init_mm.env().live_frames(),
                    1 + vm
                        .init_mm
                        .count_tables(VirtAddr(V), VirtAddr(VMALLOC_END))
                        .total()
                );
                first_failure.get_or_insert(shift);
            }
        }
    }
    assert_eq!(first_failure, Some(fits + 1), "the scenario must fail");
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn vmalloc_refuses_zero_size_and_non_power_of_two_alignment() {
    let vm = vm();
    let live = vm.vmalloc_raw(P).unwrap();
    assert_refused(&vm, VmError::ZeroSize, || vm.vmalloc_raw(0));
    assert_refused(&vm, VmError::ZeroSize, || vm.vmalloc_aligned_raw(0, P));
    for align in [0, 3 * P, P + 1] {
        // The pages are allocated, then given back when the range is refused.
        let before = snapshot(&vm);
        let got = vm.vmalloc_aligned_raw(2 * P, align);
        assert_eq!(got, Err(VmError::NoVirtualSpace(VaError::BadAlign)));
        let after = snapshot(&vm);
        assert_eq!(after.allocations - before.allocations, 2);
        assert_eq!(
            Snapshot {
                allocations: before.allocations,
                ..after
            },
            before
        );
    }
    vm.vfree_at(live).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

// ---- concurrency ------------------------------------------------------------------------

/// What one worker thread has mapped.
enum Mine {
    Io {
        va: VirtAddr,
        phys: u64,
        size: usize,
    },
    Mem {
        va: VirtAddr,
        pages: usize,
        tag: u64,
    },
}

/// Record `[start, start + len)` plus its guard page as live, asserting that it overlaps no
/// other live area of any thread.
fn claim(live: &StdMutex<BTreeMap<usize, usize>>, start: impl AsVa, len: usize) {
    let start = start.va();
    let end = start + len + P;
    let mut live = live.lock().unwrap();
    if let Some((&s, &e)) = live.range(..end).next_back() {
        assert!(
            e <= start,
            "[{start:#x}, {end:#x}) overlaps the live [{s:#x}, {e:#x})"
        );
    }
    live.insert(start, end);
}

fn worker(vm: &KernelVm<TestEnv>, live: &StdMutex<BTreeMap<usize, usize>>, t: usize) {
    let mut rng = Rng::new(100 + t as u64);
    let mut mine = Vec::new();
    for op in 0..300 {
        if mine.len() < 8 && (mine.is_empty() || rng.range(0, 2) != 0) {
            if rng.range(0, 1) == 0 {
                let off = rng.range(0, P - 1) & !7;
                let size = rng.range(1, 4 * P);
                let phys = DEV + ((t * 1000 + op) * 4 * P + off) as u64;
                let va = vm.ioremap_raw(PhysAddr(phys), size).unwrap();
                assert_eq!(va.0 % P, off);
                claim(live, va - off, (off + size).next_multiple_of(P));
                mine.push(Mine::Io { va, phys, size });
            } else {
                let pages = rng.range(1, 8);
                let va = vm.vmalloc_raw(pages * P).unwrap();
                claim(live, va, pages * P);
                let tag = ((t as u64) << 32) | op as u64;
                fill(vm, va, pages, tag);
                mine.push(Mine::Mem { va, pages, tag });
            }
        } else {
            let m = mine.swap_remove(rng.range(0, mine.len() - 1));
            unmap_mine(vm, live, m);
        }
    }
    mine.into_iter().for_each(|m| unmap_mine(vm, live, m));
}

/// Check that the area still maps what its owner put there, forget it, and unmap it.
fn unmap_mine(vm: &KernelVm<TestEnv>, live: &StdMutex<BTreeMap<usize, usize>>, m: Mine) {
    match m {
        Mine::Io { va, phys, size } => {
            for off in (0..size).step_by(P).chain([size - 1]) {
                let t = vm.init_mm.translate(va + off).unwrap();
                assert_eq!(
                    (t.pa, t.prot()),
                    (PhysAddr(phys + off as u64), Some(Prot::DEVICE))
                );
            }
            live.lock().unwrap().remove(&(va.0 & !(P - 1))).unwrap();
            vm.iounmap_at(va).unwrap();
        }
        Mine::Mem { va, pages, tag } => {
            verify(vm, va, pages, tag);
            live.lock().unwrap().remove(&va.0).unwrap();
            vm.vfree_at(va).unwrap();
        }
    }
}

/// Four threads ioremap/iounmap and vmalloc/vfree on one `KernelVm` (it is `Sync`: the range
/// allocator has its lock, the tables their allocators), with allocations yielding to widen
/// the table-install races. No two live areas overlap, every area keeps its contents, and
/// the frames balance.
#[test]
fn concurrent_ioremap_and_vmalloc_on_one_kernel_vm() {
    for vm in [vm(), vm_with_nodes()] {
        concurrent_ioremap_and_vmalloc(vm);
    }
}

fn concurrent_ioremap_and_vmalloc(vm: KernelVm<TestEnv>) {
    vm.init_mm.env().set_alloc_yield(true);
    let live = StdMutex::new(BTreeMap::new());
    let start = Barrier::new(4);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (vm, live, start) = (&vm, &live, &start);
            s.spawn(move || {
                start.wait();
                worker(vm, live, t);
            });
        }
    });
    assert!(live.lock().unwrap().is_empty());
    let stats = vm.init_mm.stats();
    assert_eq!(
        (stats.pud.installed, stats.pmd.installed),
        (1, 1),
        "one pud and one pmd table serve every area"
    );
    assert_balanced(&vm, WINDOW, 1);
}

/// A vm whose lazy threshold is `pages` (the tests above purge on every free).
fn lazy_vm(pages: usize) -> KernelVm<TestEnv> {
    let vm = vm();
    vm.set_lazy_max_pages(pages);
    vm
}

#[test]
fn lazy_max_pages_is_linux_s() {
    let per = (32 << 20) / P;
    for (cpus, fls) in [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (8, 4), (128, 8)] {
        assert_eq!(lazy_max_pages(cpus), fls * per, "{cpus} CPUs");
    }
}

/// A vfree'd area's leaves are cleared and then its pages freed at once (as Linux's `vfree` does),
/// but its range stays busy, and no TLB invalidation happens, until the purge; the purge
/// invalidates, completes, and only then gives back the range. A page reused at once is never
/// reached through the old range: a new area there is only mapped after the purge.
#[test]
fn lazy_free_frees_the_pages_at_once_and_keeps_the_range_until_the_purge_invalidates() {
    let vm = lazy_vm(1 << 20);
    let env = vm.init_mm.env();
    let va = vm.vmalloc_raw(3 * P).unwrap();
    let pages: Vec<PhysAddr> = (0..3)
        .map(|i| vm.init_mm.translate(va + i * P).unwrap().pa)
        .collect();
    let live = env.live_frames();

    env.start_recording();
    vm.vfree_at(va).unwrap();
    let ev = env.take_events();
    let shape: Vec<&str> = ev
        .iter()
        .map(|e| match e {
            Event::Store { val: 0, .. } => "clear",
            Event::Free(_) => "free",
            _ => "other",
        })
        .collect();
    assert_eq!(
        shape,
        ["clear", "clear", "clear", "free", "free", "free"],
        "vfree clears the leaves, then frees their pages, and nothing else: {ev:?}"
    );
    let freed: Vec<PhysAddr> = ev
        .iter()
        .filter_map(|e| match *e {
            Event::Free(pa) => Some(pa),
            _ => None,
        })
        .collect();
    assert_eq!(freed, pages, "each page, in order");
    assert!(vm.init_mm.translate(va).is_none());
    assert_eq!(env.live_frames(), live - 3, "the pages are free at once");
    assert_eq!(vm.area_stats().0, 1, "the range stays busy");
    assert_eq!(vm.vfree_at(va), Err(FreeError::AlreadyFreed { addr: va }));
    assert_eq!(
        vm.lazy_stats(),
        LazyStats {
            areas: 1,
            pages: 3,
            purges: 0
        }
    );
    // The pages are reused at once, but the range is not handed out again before the purge.
    let other = vm.vmalloc_raw(3 * P).unwrap();
    assert_ne!(other, va);
    let reused: Vec<PhysAddr> = (0..3)
        .map(|i| vm.init_mm.translate(other + i * P).unwrap().pa)
        .collect();
    assert!(
        reused.iter().any(|pa| pages.contains(pa)),
        "the freed pages are handed out again: {reused:?} {pages:?}"
    );
    vm.vfree_at(other).unwrap();

    env.start_recording();
    vm.vm_unmap_aliases();
    let ev = env.take_events();
    let mut expect = vec![Event::DsbIshst];
    expect.extend((0..3).map(|i| Event::TlbiPage(va.0 + i * P)));
    expect.extend((0..3).map(|i| Event::TlbiPage(other.0 + i * P)));
    expect.extend([Event::DsbIsh, Event::Isb]);
    assert_eq!(
        ev, expect,
        "one invalidation for both, completed, and no frame freed"
    );
    assert_eq!(vm.lazy_stats().purges, 1);
    // The range is free again: the lowest fit takes it.
    let again = vm.vmalloc_raw(3 * P).unwrap();
    assert_eq!(again, va);
    vm.vfree_at(again).unwrap();
    vm.vm_unmap_aliases();
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn a_free_past_the_threshold_purges() {
    let vm = lazy_vm(8);
    let areas: Vec<VirtAddr> = (0..3)
        .map(|_| vm.ioremap_raw(PhysAddr(DEV), 3 * P).unwrap())
        .collect();
    vm.iounmap_at(areas[0]).unwrap();
    vm.iounmap_at(areas[1]).unwrap();
    assert_eq!(
        vm.lazy_stats().pages,
        6,
        "below the threshold: nothing purged"
    );
    assert_eq!(vm.lazy_stats().purges, 0);
    vm.iounmap_at(areas[2]).unwrap();
    assert_eq!(
        vm.lazy_stats(),
        LazyStats {
            areas: 0,
            pages: 0,
            purges: 1
        },
        "9 pages > 8: the third free purged all three"
    );
    assert_balanced(&vm, WINDOW, 1);
}

/// The CPU that runs a purge may already have collected the lists when another CPU's free
/// crosses the threshold and finds the purge taken: that free's areas must not be left waiting
/// for the next free. Here the "other CPU" frees from inside the purge, right after collection.
#[test]
fn a_free_over_the_threshold_during_a_purge_is_purged_too() {
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    /// The area the hook frees (0: none), once.
    static LATE: StdAtomicUsize = StdAtomicUsize::new(0);
    fn free_late(vm: &KernelVm<TestEnv>) {
        let va = LATE.swap(0, StdOrdering::SeqCst);
        if va != 0 {
            vm.iounmap_at(VirtAddr(va)).unwrap();
            assert_eq!(
                vm.lazy_stats().areas,
                1,
                "left on the list: the purge is taken"
            );
        }
    }
    let vm = lazy_vm(4);
    vm.purge_hook.set(free_late).unwrap();
    let first = vm.ioremap_raw(PhysAddr(DEV), 5 * P).unwrap();
    let late = vm.ioremap_raw(PhysAddr(DEV), 5 * P).unwrap();
    LATE.store(late.0, StdOrdering::SeqCst);
    // 5 pages > 4: this free purges, and the late free happens inside that purge.
    vm.iounmap_at(first).unwrap();
    assert_eq!(LATE.load(StdOrdering::SeqCst), 0, "the late free ran");
    assert_eq!(
        vm.lazy_stats(),
        LazyStats {
            areas: 0,
            pages: 0,
            purges: 2
        },
        "the purging CPU went round again for the late free"
    );
    assert_balanced(&vm, WINDOW, 1);
}

/// Each CPU purges when its own list passes its share of the threshold (no count shared between
/// CPUs), so the lists never hold more than the threshold in all.
#[test]
fn each_cpu_purges_past_its_share_of_the_threshold() {
    let vm = vm_with_nodes();
    let env = vm.init_mm.env();
    vm.set_online_cpus(2);
    vm.set_lazy_max_pages(8); // 4 pages each
    let area = |cpu| {
        env.set_cpu(cpu);
        vm.ioremap_raw(PhysAddr(DEV), 3 * P).unwrap()
    };
    let (a, b, c) = (area(0), area(1), area(1));
    env.set_cpu(0);
    vm.iounmap_at(a).unwrap();
    env.set_cpu(1);
    vm.iounmap_at(b).unwrap();
    assert_eq!(vm.lazy_stats().pages, 6, "3 on each list: no purge");
    assert_eq!(vm.lazy_stats().purges, 0);
    vm.iounmap_at(c).unwrap();
    assert_eq!(
        vm.lazy_stats(),
        LazyStats {
            areas: 0,
            pages: 0,
            purges: 1
        },
        "CPU 1's list passed 4 pages: every list purged"
    );
    assert_balanced(&vm, WINDOW, 1);
}

#[test]
fn many_lazy_pages_flush_the_whole_tlb_once() {
    let vm = lazy_vm(1 << 20);
    let env = vm.init_mm.env();
    let n = TLBI_MAX_OPS / 16 + 1;
    for _ in 0..n {
        let va = vm.ioremap_raw(PhysAddr(DEV), 16 * P).unwrap();
        vm.iounmap_at(va).unwrap();
    }
    env.start_recording();
    vm.vm_unmap_aliases();
    let ev = env.take_events();
    assert_eq!(
        ev,
        [Event::DsbIshst, Event::TlbiAll, Event::DsbIsh, Event::Isb],
        "{n} areas of 16 pages: one tlbi vmalle1is"
    );
    assert_balanced(&vm, WINDOW, 1);
}

/// When the window is full of lazily freed areas, an allocation purges them and succeeds.
#[test]
fn no_virtual_space_purges_and_tries_again() {
    // Room for two one-page areas (each with its guard page).
    let vm = vm_with(TestEnv::new(), (V, V + 4 * P), PA_BITS);
    vm.set_lazy_max_pages(1 << 20);
    let a = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    let b = vm.ioremap_raw(PhysAddr(DEV), P).unwrap();
    assert!(matches!(
        vm.ioremap_raw(PhysAddr(DEV), P),
        Err(VmError::NoVirtualSpace(VaError::NoSpace { .. }))
    ));
    vm.iounmap_at(a).unwrap();
    assert_eq!(vm.lazy_stats().purges, 0);
    assert_eq!(
        vm.ioremap_raw(PhysAddr(DEV), P),
        Ok(a),
        "purged, then the freed range fits"
    );
    assert_eq!(vm.lazy_stats().purges, 1);
    vm.iounmap_at(a).unwrap();
    vm.iounmap_at(b).unwrap();
    vm.vm_unmap_aliases();
    assert_balanced(&vm, (V, V + 4 * P), 1);
}

/// `vmalloc` hands out pages as they are (testenv poisons free frames); `vzalloc` zeroes them.
#[test]
fn vmalloc_does_not_zero_and_vzalloc_does() {
    let vm = vm();
    let poisoned = vm.vmalloc_raw(2 * P).unwrap();
    assert!(
        frame_of(&vm, poisoned)
            .iter()
            .all(|s| s.load(Ordering::Relaxed) == POISON)
    );
    let zeroed = vm.vzalloc_raw(2 * P).unwrap();
    for p in 0..2 {
        assert!(
            frame_of(&vm, zeroed + p * P)
                .iter()
                .all(|s| s.load(Ordering::Relaxed) == 0)
        );
    }
    vm.vfree_at(poisoned).unwrap();
    vm.vfree_at(zeroed).unwrap();
    assert_balanced(&vm, WINDOW, 1);
}

/// vmap maps a whole range in one walk: each table once, one barrier pair at the end.
#[test]
fn vmap_walks_each_table_once_and_publishes_once() {
    let vm = vm();
    let env = vm.init_mm.env();
    let frames: Vec<PhysAddr> = (0..8).map(|_| env.alloc_table_frame().unwrap()).collect();
    // SAFETY: the test's own frames, given back only after the areas were unmapped and
    // purged (this vm purges on every free).
    let first = unsafe { vm.vmap_raw(&frames[..1], Prot::KERNEL_RW) }.unwrap(); // the tables exist now
    env.start_recording();
    // SAFETY: as above.
    let va = unsafe { vm.vmap_raw(&frames[1..], Prot::KERNEL_RW) }.unwrap();
    let ev = env.take_events();
    let stores = ev
        .iter()
        .filter(|e| matches!(e, Event::Store { .. }))
        .count();
    assert_eq!(stores, 7, "one leaf per page, no table installed");
    assert_eq!(
        ev[7..],
        [Event::DsbIshst, Event::Isb],
        "one dsb ishst; isb after all seven leaves"
    );
    for (i, pa) in frames[1..].iter().enumerate() {
        assert_eq!(vm.init_mm.translate(va + i * P).unwrap().pa, *pa);
    }
    vm.vunmap_at(va).unwrap();
    vm.vunmap_at(first).unwrap();
    // SAFETY: the test's own frames, unmapped and purged.
    frames
        .into_iter()
        .for_each(|pa| unsafe { env.free_table_frame(pa) });
    assert_balanced(&vm, WINDOW, 1);
}

/// Small areas come from the allocating CPU's node, in ranges it takes from the global
/// allocator once; large ones from the global allocator; a free on another CPU, and the
/// purge, find the area's node from its address alone.
#[test]
fn small_areas_come_from_per_cpu_nodes_and_free_anywhere() {
    let vm = vm_with_nodes();
    vm.set_lazy_max_pages(1 << 20);
    let env = vm.init_mm.env();
    let empty = vm.area_stats();
    env.set_cpu(0);
    let a = vm.vmalloc_raw(3 * P).unwrap();
    env.set_cpu(1);
    let b = vm.vmalloc_raw(3 * P).unwrap();
    let big = vm.ioremap_raw(PhysAddr(DEV), SLOT).unwrap();
    assert_eq!(vm.ranges.load(StdOrdering::SeqCst), 2, "one range per CPU");
    assert_eq!(vm.home(a.0), Home::Node(0));
    assert_eq!(vm.home(b.0), Home::Node(1));
    assert_eq!(vm.home(big.0), Home::Global, "larger than a slot holds");
    assert_ne!(a.0 / NODE_RANGE, b.0 / NODE_RANGE, "each CPU its own range");
    assert_eq!(vm.area_stats().0, 3);
    // CPU 1 frees CPU 0's area: it goes on CPU 1's lazy list, and the purge gives it back
    // to CPU 0's range.
    vm.vfree_at(a).unwrap();
    assert_eq!(vm.nodes[1].lazy.lock().areas.len(), 1);
    assert_eq!(vm.vfree_at(a), Err(FreeError::AlreadyFreed { addr: a }));
    vm.vfree_at(b).unwrap();
    vm.iounmap_at(big).unwrap();
    vm.vm_unmap_aliases();
    assert_eq!(
        vm.area_stats(),
        empty,
        "ranges stay with their nodes, counted as free space"
    );
    env.set_cpu(0);
    assert_eq!(vm.vmalloc_raw(3 * P), Ok(a), "the range is CPU 0's again");
    vm.vfree_at(a).unwrap();
    // Addresses no area starts at, in a slot or at a range's end, are refused.
    assert_eq!(
        vm.vfree_at(a + P),
        Err(FreeError::InsideArea {
            addr: a + P,
            start: a
        })
    );
    let guard = a.0 / NODE_RANGE * NODE_RANGE + NODE_RANGE - P;
    assert_eq!(
        vm.vfree_at(VirtAddr(guard)),
        Err(FreeError::NotMapped {
            addr: VirtAddr(guard)
        })
    );
    vm.vm_unmap_aliases();
    assert_balanced(&vm, WINDOW, 1);
}

/// A window goes back only once nothing is mapped in it: a page or a block left behind, even in
/// its guard page, makes `release_window` refuse, naming the first mapped address, and the
/// window then stays reserved for good (its range is never handed out with a leaf in it). An
/// unmapped window goes back.
#[test]
fn release_window_refuses_a_window_that_still_maps_something() {
    let vm = vm();
    let mm = &vm.init_mm;
    for (size, align, at, len, blocks) in [
        (4 * P, P, 2 * P, P, false),             // a page inside
        (P, P, P, P, false),                     // the guard page
        (PMD_SIZE, PMD_SIZE, 0, PMD_SIZE, true), // a 2 MiB block
    ] {
        let window = vm.reserve_window(size, align).unwrap();
        let start = window.start();
        mm.map_owned(start + at, PhysAddr(DEV), len, Prot::DEVICE, blocks)
            .unwrap();
        let live = vm.area_stats().0;
        assert_eq!(
            vm.release_window(window),
            Err(VmError::StillMapped {
                window: start,
                mapped: start + at
            })
        );
        assert_eq!(vm.area_stats().0, live, "a refused window stays reserved");
        assert_eq!(mm.translate(start + at).map(|t| t.pa), Some(PhysAddr(DEV)));
        mm.unmap_owned(start + at, len);
    }
    let window = vm.reserve_window(4 * P, P).unwrap();
    let start = window.start();
    mm.map_owned(start, PhysAddr(DEV), 4 * P, Prot::DEVICE, false)
        .unwrap();
    mm.unmap_owned(start, 4 * P);
    assert_eq!(vm.release_window(window), Ok(()));
    assert_eq!(
        vm.area_stats().0,
        3,
        "only the three refused windows are left"
    );
}

/// The handles own their areas: dropping one gives the area back as the by-address free does
/// (leaves cleared, the range lazily freed), and nothing else can free it.
#[test]
fn dropping_a_handle_frees_its_area_and_nothing_else_can() {
    let vm = vm();
    let env = vm.init_mm.env();
    // (The bytes themselves are the machine's test to touch: here an area's address is no host
    // memory, only its pages are.)
    let buf = vm.vmalloc(3 * P + 5).unwrap();
    assert_eq!(buf.len(), 3 * P + 5, "the bytes asked for");
    let va = buf.addr();
    assert_eq!(
        vm.init_mm.translate(va + 2 * P).map(|t| t.level),
        Some(Level::Pte)
    );
    let live = env.live_frames();
    drop(buf);
    assert!(vm.init_mm.translate(va).is_none(), "unmapped when dropped");
    assert_eq!(env.live_frames(), live - 4, "its four pages went back");
    // This vm purges at every free: the range is free again, and no area starts there.
    assert_eq!(
        vm.vfree_at(va),
        Err(FreeError::NotMapped { addr: va }),
        "freed once, by the drop"
    );
    let zeroed = vm.vzalloc(P).unwrap();
    assert!(
        frame_of(&vm, zeroed.addr())
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0)
    );
    drop(zeroed);
    vm.vm_unmap_aliases();
    assert_balanced(&vm, WINDOW, 1);
}

/// An `IoMem` reads and writes its registers with volatile accesses inside the mapping, keeps
/// the sub-page offset, refuses an access past its end or misaligned, and unmaps when dropped.
#[test]
fn io_mem_accesses_stay_inside_the_mapping() {
    let vm = vm();
    let io = vm.ioremap(PhysAddr(DEV + 0x10), 0x20).unwrap();
    assert_eq!(io.addr().0 % P, 0x10, "the offset in the page is kept");
    assert_eq!(io.size(), 0x20);
    let va = io.addr();
    // The test environment's "device" is no memory at all: translate, do not touch it.
    assert_eq!(
        vm.init_mm.translate(va).map(|t| t.pa),
        Some(PhysAddr(DEV + 0x10))
    );
    let past = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| io.read32(0x20)));
    assert!(past.is_err(), "a read past the mapping panics");
    let misaligned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| io.read32(2)));
    assert!(misaligned.is_err(), "a misaligned read panics");
    drop(io);
    assert!(vm.init_mm.translate(va).is_none(), "unmapped when dropped");
    vm.vm_unmap_aliases();
    assert_balanced(&vm, WINDOW, 1);
}

/// `IoMem::leak` keeps a mapping for good: nothing unmaps it.
#[test]
fn a_leaked_io_mem_stays_mapped() {
    let vm = vm();
    let va = vm.ioremap(PhysAddr(DEV), P).unwrap().leak();
    vm.vm_unmap_aliases();
    assert!(vm.init_mm.translate(va).is_some());
    vm.iounmap_at(va).unwrap();
}
