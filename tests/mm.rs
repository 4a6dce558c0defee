//! init_mm on the machine: ioremap of real devices, faults on unmapped and protected memory,
//! remapping without stale translations, block mappings, and balance over many cycles.
//!
//! The third boot passes a device tree with a `no-map` reservation (tests/data/qemu-virt-nomap.dts).
//!
//! initmm-qemu: --machine virt
//! initmm-qemu: --machine virt,gic-version=3,virtualization=on
//! initmm-qemu: --machine virt --dtb tests/data/qemu-virt-nomap.dtb -- expect_no_map=1
#![no_std]
#![no_main]

extern crate alloc;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use initmm::BootInfo;
use initmm::arch::aarch64::cpu::{probe_read, probe_write};
use initmm::arch::aarch64::esr::FaultKind;
use initmm::arch::aarch64::exceptions::{self, Fault, TrapFrame, stack_overflow_of};
use initmm::mm::addr::{PhysAddr, VirtAddr};
use initmm::mm::frame::FRAMES;
use initmm::mm::layout::{PAGE_SIZE, VMALLOC_END, VMALLOC_START, phys_to_virt};
use initmm::mm::pgtable::{Descriptor, Level, MemType, Prot};
use initmm::mm::vm::VmError;
use initmm::mm::{self, kernel_vm};
use initmm::platform::devicetree::GicVersion;
use initmm::testing::{self, Test};
use spin::Once;

static BOOT: Once<&'static BootInfo> = Once::new();

fn boot() -> &'static BootInfo {
    BOOT.get().unwrap()
}

fn ioremap_uart_reads_pl011_id() {
    let base = boot().machine.console.as_ref().unwrap().base;
    let uart = mm::ioremap(PhysAddr(base), 0x1000).unwrap();
    let periph = (0..4)
        .rev()
        .fold(0, |acc, i| (acc << 8) | (uart.read32(0xfe0 + 4 * i) & 0xff));
    let cell = (0..4)
        .rev()
        .fold(0, |acc, i| (acc << 8) | (uart.read32(0xff0 + 4 * i) & 0xff));
    assert_eq!(
        periph & 0x000f_ffff,
        0x0004_1011,
        "PL011 part number and designer (periph id {periph:#x})"
    );
    assert_eq!(cell, 0xb105_f00d, "PrimeCell id");
    let t = kernel_vm().init_mm.translate(uart.addr()).unwrap();
    assert_eq!(t.pa.0, base);
    assert_eq!(t.level, Level::Pte);
    let prot = t.prot().unwrap();
    assert_eq!(prot.mem(), MemType::Device);
    assert!(!prot.executable());
}

fn ioremap_gic_reads_its_architecture_version() {
    let gic = boot().machine.gic.as_ref().unwrap();
    let (pidr2, want) = match gic.version {
        GicVersion::V2 => (0xfe8, 2),
        GicVersion::V3 => (0xffe8, 3),
    };
    let gicd = mm::ioremap(PhysAddr(gic.dist.base), gic.dist.size as usize).unwrap();
    let arch_rev = (gicd.read32(pidr2) >> 4) & 0xf;
    assert_eq!(arch_rev, want, "GICD_PIDR2.ArchRev");
    let typer = gicd.read32(4);
    assert!(typer & 0x1f > 0, "GICD_TYPER.ITLinesNumber = {typer:#x}");
}

fn unaligned_ioremap_keeps_the_offset() {
    let base = boot().machine.console.as_ref().unwrap().base;
    let ids = mm::ioremap(PhysAddr(base + 0xfe0), 0x20).unwrap();
    assert_eq!(ids.addr().0 % PAGE_SIZE, 0xfe0);
    assert_eq!(
        ids.read32(0) & 0xff,
        0x11,
        "PeriphID0 through the offset mapping"
    );
}

fn ioremap_refuses_bad_ranges_and_leaves_nothing() {
    let vm = kernel_vm();
    let before = (vm.area_stats(), FRAMES.stats());
    let ram = boot().machine.ram[0];
    let pa_bits = initmm::arch::aarch64::mmu::pa_bits();
    assert!(matches!(
        mm::ioremap(PhysAddr(0x0900_0000), 0),
        Err(VmError::ZeroSize)
    ));
    assert!(matches!(
        mm::ioremap(PhysAddr(u64::MAX - 0xfff), 0x2000),
        Err(VmError::Wraps { .. })
    ));
    assert!(matches!(
        mm::ioremap(PhysAddr(1 << pa_bits), 0x1000),
        Err(VmError::BeyondPhysLimit { .. })
    ));
    assert!(matches!(
        mm::ioremap(PhysAddr(ram.base + 0x1000), 0x1000),
        Err(VmError::OverlapsRam { .. })
    ));
    assert!(matches!(
        mm::ioremap(PhysAddr(ram.base - 0x1000), 0x2000),
        Err(VmError::OverlapsRam { .. })
    ));
    assert_eq!(
        (vm.area_stats(), FRAMES.stats()),
        before,
        "nothing reserved or allocated"
    );
}

/// Once an iounmap'd range is purged (its TLB entries invalidated), reading it faults. (Before
/// the purge a stale TLB entry may still translate it, as in Linux: using an address after
/// iounmap is a bug either way.)
fn access_after_iounmap() {
    let base = boot().machine.console.as_ref().unwrap().base;
    let uart = mm::ioremap(PhysAddr(base), 0x1000).unwrap();
    uart.read32(0);
    let va = uart.addr();
    drop(uart); // iounmap
    kernel_vm().vm_unmap_aliases();
    probe_read(va.0);
}

fn is_translation_fault(f: &Fault) -> Result<(), &'static str> {
    match f.esr.fault_kind() {
        FaultKind::Translation(_) => Ok(()),
        _ => Err("expected a translation fault"),
    }
}

/// A data abort at EL1 as the CPU would report a read that took a level-3 translation fault.
fn translation_fault_frame(far: u64) -> TrapFrame {
    TrapFrame {
        x: [0; 31],
        sp: 0,
        elr: 0xffff_ff80_dead_0000,
        spsr: 0x3c4,
        esr: (0x25 << 26) | (1 << 25) | 0x07,
        far,
    }
}

/// What an Armv8.0 core can do and QEMU cannot: a translation fault on a page that is mapped by
/// the time the handler looks (another CPU published it; this CPU's walk was not ordered after
/// its Acquire load). The handler walks again with `at s1e1r`, finds the page, counts the fault
/// and returns with ELR unchanged, so the access is retried.
fn spurious_fault_on_a_mapped_page_is_retried_and_counted() {
    let vm = kernel_vm();
    let area = vm.vmalloc(PAGE_SIZE).unwrap();
    let va = area.addr();
    let par = exceptions::at_s1e1r(va.0 as u64);
    assert_eq!(
        par & 1,
        0,
        "PAR_EL1.F: `at s1e1r` on a mapped page succeeds"
    );
    assert_eq!(
        par & 0x0000_ffff_ffff_f000,
        vm.init_mm.translate(va).unwrap().pa.0,
        "PAR_EL1.PA is the page's frame"
    );
    let before = exceptions::spurious_faults();
    let mut frame = translation_fault_frame(va.0 as u64);
    exceptions::handle_sync(&mut frame);
    assert_eq!(
        frame.elr, 0xffff_ff80_dead_0000,
        "ELR unchanged: the access is retried"
    );
    assert_eq!(exceptions::spurious_faults(), before + 1, "counted");
    drop(area);
}

static SPURIOUS_BEFORE: AtomicU64 = AtomicU64::new(0);

/// The other way: a translation fault on a page that is really unmapped is reported as usual
/// (here caught by the harness) and not counted as spurious.
fn genuine_fault_on_an_unmapped_page() {
    let vm = kernel_vm();
    let va = vm.vmalloc(PAGE_SIZE).unwrap().addr(); // freed at once
    vm.vm_unmap_aliases();
    assert_eq!(
        exceptions::at_s1e1r(va.0 as u64) & 1,
        1,
        "PAR_EL1.F: not mapped"
    );
    SPURIOUS_BEFORE.store(exceptions::spurious_faults(), Ordering::Relaxed);
    probe_read(va.0);
}

fn is_a_genuine_translation_fault(f: &Fault) -> Result<(), &'static str> {
    is_translation_fault(f)?;
    if exceptions::spurious_faults() != SPURIOUS_BEFORE.load(Ordering::Relaxed) {
        return Err("a genuine fault was counted as spurious");
    }
    Ok(())
}

fn is_permission_fault(f: &Fault) -> Result<(), &'static str> {
    match f.esr.fault_kind() {
        FaultKind::Permission(_) => Ok(()),
        _ => Err("expected a permission fault"),
    }
}

/// A range freed lazily is not handed out again before its purge; once purged, the same ranges
/// map a new page and read it, never the old one through a stale TLB entry (QEMU's TLB keeps
/// translations until a TLBI removes them, so a missing invalidation shows here).
fn remap_same_range_reads_new_contents() {
    let vm = kernel_vm();
    vm.vm_unmap_aliases();
    let (a, b) = (FRAMES.alloc(1).unwrap(), FRAMES.alloc(1).unwrap());
    for (pa, pattern) in [(a, 0xaaaa_0000u64), (b, 0xbbbb_0000)] {
        for i in 0..512 {
            // SAFETY: the frame was just allocated for this test; the linear map reaches it.
            unsafe {
                phys_to_virt(pa)
                    .as_mut_ptr::<u64>()
                    .add(i)
                    .write_volatile(pattern + i as u64)
            };
        }
    }
    for round in 0..100 {
        // Two ranges that map `a`, read through (so the TLB holds them), then freed lazily.
        // SAFETY: `a` and `b` are this test's frames, given back only at the
        // end, after every area was vunmapped and purged.
        let first = unsafe { vm.vmap(&[a], Prot::KERNEL_RW) }.unwrap();
        let va = first.addr();
        assert_eq!(
            probe_read(va.0 + 8),
            0xaaaa_0001,
            "round {round}: first mapping"
        );
        drop(first); // vunmap
        // SAFETY: as above.
        let second = unsafe { vm.vmap(&[a], Prot::KERNEL_RW) }.unwrap();
        let early = second.addr();
        assert_ne!(
            early, va,
            "a lazily freed range is not reused before its purge"
        );
        assert_eq!(probe_read(early.0 + 8), 0xaaaa_0001, "round {round}");
        drop(second);
        vm.vm_unmap_aliases();
        // The allocator hands both back (in an order that is its business), now mapping `b`.
        // SAFETY: as above.
        let (v1, v2) = unsafe {
            (
                vm.vmap(&[b], Prot::KERNEL_RW).unwrap(),
                vm.vmap(&[b], Prot::KERNEL_RW).unwrap(),
            )
        };
        let (mut got, mut want) = ([v1.addr(), v2.addr()], [va, early]);
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(
            got, want,
            "round {round}: after the purge the range allocator hands the ranges out again"
        );
        for v in [v1, v2] {
            assert_eq!(
                probe_read(v.addr().0 + 8),
                0xbbbb_0001,
                "round {round}: stale translation at {:#x} after remap",
                v.addr()
            );
        }
        vm.vm_unmap_aliases();
    }
    // SAFETY: this test's frames, whose every vmap was unmapped and purged above.
    unsafe {
        FRAMES.free(a, 1);
        FRAMES.free(b, 1);
    }
}

fn write_to_kernel_text() {
    probe_write(write_to_kernel_text as *const () as usize, 0);
}

/// The linear-map address of something in the kernel image.
fn linear_alias(kernel_va: usize) -> usize {
    phys_to_virt(initmm::mm::layout::kimage_to_phys(VirtAddr(kernel_va))).0
}

/// W^X in every view: the linear map's alias of kernel text is read-only too.
fn write_through_the_linear_alias_of_text() {
    let alias = linear_alias(write_through_the_linear_alias_of_text as *const () as usize);
    assert_ne!(probe_read(alias), 0, "the alias reads the code");
    probe_write(alias, 0);
}

/// ... and of rodata.
fn write_through_the_linear_alias_of_rodata() {
    static CONST: u64 = 0x1234_5678;
    let alias = linear_alias(&raw const CONST as usize);
    assert_eq!(probe_read(alias), 0x1234_5678);
    probe_write(alias, 0);
}

/// ... and not executable: only the image's own mapping of its text is.
fn execute_through_the_linear_alias_of_text() {
    let alias = linear_alias(probe_read as *const () as usize);
    // SAFETY: not safe to run: it must fault (the linear map is execute-never).
    let f: extern "C" fn(usize) -> u64 = unsafe { core::mem::transmute(alias) };
    f(alias);
}

fn is_permission_fault_on_a_write(f: &Fault) -> Result<(), &'static str> {
    is_permission_fault(f)?;
    if !f.esr.is_write() {
        return Err("expected the write to fault");
    }
    Ok(())
}

/// Every leaf of every live table tree: init_mm's, the early TTBR1 tables (the boot CPU ran on
/// them), and the identity map every starting CPU runs on.
fn every_leaf(mut visit: impl FnMut(&'static str, usize, Level, Descriptor)) {
    use initmm::arch::aarch64::early;
    use initmm::mm::layout::KERNEL_VA_START;
    use initmm::mm::mapping::for_each_leaf;
    let vm = kernel_vm();
    let env = vm.init_mm.env();
    let trees = [
        ("init_mm", vm.init_mm.pgd_phys(), KERNEL_VA_START),
        (
            "early TTBR1",
            PhysAddr(early::early_ttbr1()),
            KERNEL_VA_START,
        ),
        ("identity map", PhysAddr(early::idmap_ttbr0()), 0),
    ];
    for (name, root, base) in trees {
        // SAFETY: the three roots are live table trees of frames in RAM (the early ones in the
        // image), reached through the linear map like init_mm's; nothing maps or unmaps while
        // this test runs on one CPU (the others idle, touching only their stacks' mappings,
        // which are not replaced).
        unsafe { for_each_leaf(env, root, base, &mut |va, l, d| visit(name, va, l, d)) };
    }
}

/// Nothing that is not RAM (the device tree's, minus `no-map`) is mapped cacheable by any live
/// table, not even the early ones; no RAM is mapped as a device; only kernel text is executable.
fn nothing_but_ram_is_mapped_cacheable() {
    use initmm::mm::region::{self, Region};
    let b = boot();
    let memory = region::subtract(&b.machine.ram, &b.machine.no_map);
    let img = initmm::mm::layout::image_layout();
    let text = Region::new(
        initmm::mm::layout::kimage_to_phys(VirtAddr(img.start as usize)).0,
        img.text_end - img.start,
    );
    let mut leaves = [0usize; 3];
    every_leaf(|tree, va, level, d| {
        let r = Region::new(d.addr().0, level.entry_size() as u64);
        match d.mem_type() {
            Some(MemType::Normal) => assert!(
                region::covers(&memory, r),
                "{tree}: {va:#x} maps {r:?} cacheable, which is not RAM the kernel may map"
            ),
            Some(_) => assert!(
                !region::overlaps(&memory, r),
                "{tree}: {va:#x} maps RAM {r:?} as {:?}",
                d.mem_type()
            ),
            None => panic!("{tree}: {va:#x}: unknown attributes {d:?}"),
        }
        if !d.pxn() {
            assert!(
                region::covers(core::slice::from_ref(&text), r),
                "{tree}: {va:#x} maps {r:?}, not kernel text, executable"
            );
        }
        leaves[["init_mm", "early TTBR1", "identity map"]
            .iter()
            .position(|&t| t == tree)
            .unwrap()] += 1;
    });
    assert!(leaves.iter().all(|&n| n > 0), "leaves checked: {leaves:?}");
}

/// With a device tree that reserves memory `no-map`, no table maps any of it, while the pages
/// around it are in the linear map.
fn no_map_reservations_are_unmapped() {
    let b = boot();
    let expected = b.cmdline().number("expect_no_map").unwrap().unwrap_or(0);
    assert_eq!(b.machine.no_map.len() as u64, expected, "no-map regions");
    for r in &b.machine.no_map {
        let (start, end) = (r.base, r.base + r.size);
        every_leaf(|tree, va, level, d| {
            let (pa, size) = (d.addr().0, level.entry_size() as u64);
            assert!(
                pa + size <= start || pa >= end,
                "{tree}: {va:#x} maps [{pa:#x}, +{size:#x}) inside the no-map {r:?}"
            );
        });
        let vm = kernel_vm();
        for pa in [start, end - PAGE_SIZE as u64] {
            assert!(vm.init_mm.translate(phys_to_virt(PhysAddr(pa))).is_none());
        }
        for pa in [start - PAGE_SIZE as u64, end] {
            assert!(
                vm.init_mm.translate(phys_to_virt(PhysAddr(pa))).is_some(),
                "the RAM next to the no-map region at {pa:#x} is mapped"
            );
        }
    }
}

/// `ret`, stored in .data: executable bytes in non-executable memory.
static RET_IN_DATA: AtomicU32 = AtomicU32::new(0xd65f_03c0);

fn execute_from_data() {
    let p = RET_IN_DATA.as_ptr() as usize;
    let _ = RET_IN_DATA.load(Ordering::Relaxed);
    // SAFETY: not safe to run: it must fault (data is execute-never), which the test expects.
    let f: extern "C" fn() = unsafe { core::mem::transmute(p) };
    f();
}

fn execute_from_vmalloc() {
    let area = mm::vmalloc(PAGE_SIZE).unwrap();
    let va = area.addr();
    probe_write(va.0, 0xd65f_03c0);
    // SAFETY: as above: vmalloc memory is execute-never.
    let f: extern "C" fn() = unsafe { core::mem::transmute(va.0) };
    f();
    drop(area);
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buf = core::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        0
    } else {
        recurse(depth + 1) + buf[(depth % 64) as usize]
    }
}

fn stack_overflow() {
    core::hint::black_box(recurse(0));
}

fn is_stack_overflow_of_cpu0(f: &Fault) -> Result<(), &'static str> {
    match stack_overflow_of(f) {
        Some(owner) if owner.cpu == 0 && !owner.exception_stack => Ok(()),
        Some(_) => Err("guard page of the wrong stack"),
        None => Err("the fault was not classified as a stack overflow"),
    }
}

fn ten_thousand_map_unmap_cycles_balance() {
    let base = boot().machine.console.as_ref().unwrap().base;
    let vm = kernel_vm();
    let cycle = |i: usize| {
        let uart = mm::ioremap(PhysAddr(base), 0x1000).unwrap();
        assert_eq!(uart.read32(0xfe0) & 0xff, 0x11);
        drop(uart);
        let mut area = mm::vmalloc((i % 16 + 1) * PAGE_SIZE).unwrap();
        area[..8].copy_from_slice(&(i as u64).to_ne_bytes());
        assert_eq!(area[..8], (i as u64).to_ne_bytes());
    };
    // Freed areas wait for the lazy purge, so the counts are compared once settled: purged,
    // frame caches drained, empty tables freed.
    // Frames are counted with those the heap took to grow (it keeps them: the lazy list's
    // vectors live there).
    let settled = || {
        // SAFETY: the test runs on the boot CPU alone (no on_cpus call is running): the other
        // CPUs are idle, so none maps, unmaps or walks the vmalloc region.
        unsafe { initmm::mm::settle() };
        let tables = vm
            .init_mm
            .count_tables(VirtAddr(VMALLOC_START), VirtAddr(VMALLOC_END));
        (initmm::mm::free_frames(), vm.area_stats(), tables)
    };
    cycle(0);
    let before = settled();
    let purges = vm.lazy_stats().purges;
    for i in 1..10_000 {
        cycle(i);
    }
    assert!(
        vm.lazy_stats().purges > purges,
        "10,000 cycles free more than the lazy threshold: the purge ran on its own"
    );
    let after = settled();
    assert_eq!(after, before, "frames, areas, tables");
    log::info!(
        "10,000 ioremap+iounmap and vmalloc+vfree cycles: frames {:?}",
        after.0
    );
}

fn huge_ioremap_uses_blocks() {
    let vm = kernel_vm();
    // QEMU virt: the PCIe MMIO window at 0x1000_0000 (2 MiB aligned), high PCIe MMIO at 512 GiB.
    for (pa, size, level) in [
        (0x1000_0000u64, 2usize << 20, Level::Pmd),
        (0x80_0000_0000, 1 << 30, Level::Pud),
    ] {
        let frames = FRAMES.stats().free;
        let io = mm::ioremap(PhysAddr(pa), size).unwrap();
        let va = io.addr();
        assert_eq!(va.0 % size, 0, "virtual range aligned like the block");
        let t = vm.init_mm.translate(va).unwrap();
        assert_eq!(t.level, level, "one block entry maps {size:#x} at {pa:#x}");
        assert_eq!(
            vm.init_mm.translate(va + size - 8).unwrap().pa.0,
            pa + size as u64 - 8
        );
        assert!(
            FRAMES.stats().free + 2 >= frames,
            "a block needs at most the tables above it"
        );
        drop(io); // iounmap
        assert!(vm.init_mm.translate(va).is_none());
    }
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    BOOT.call_once(|| b);
    testing::run(&[
        Test::new("ioremap_uart_reads_pl011_id", ioremap_uart_reads_pl011_id),
        Test::new(
            "ioremap_gic_reads_its_architecture_version",
            ioremap_gic_reads_its_architecture_version,
        ),
        Test::new(
            "unaligned_ioremap_keeps_the_offset",
            unaligned_ioremap_keeps_the_offset,
        ),
        Test::new(
            "ioremap_refuses_bad_ranges_and_leaves_nothing",
            ioremap_refuses_bad_ranges_and_leaves_nothing,
        ),
        Test::faulting_with(
            "access_after_iounmap_faults",
            access_after_iounmap,
            is_translation_fault,
        ),
        Test::faulting_with(
            "write_through_the_linear_alias_of_text_faults",
            write_through_the_linear_alias_of_text,
            is_permission_fault_on_a_write,
        ),
        Test::faulting_with(
            "write_through_the_linear_alias_of_rodata_faults",
            write_through_the_linear_alias_of_rodata,
            is_permission_fault_on_a_write,
        ),
        Test::faulting_with(
            "execute_through_the_linear_alias_of_text_faults",
            execute_through_the_linear_alias_of_text,
            is_permission_fault,
        ),
        Test::new(
            "nothing_but_ram_is_mapped_cacheable",
            nothing_but_ram_is_mapped_cacheable,
        ),
        Test::new(
            "no_map_reservations_are_unmapped",
            no_map_reservations_are_unmapped,
        ),
        Test::new(
            "spurious_fault_on_a_mapped_page_is_retried_and_counted",
            spurious_fault_on_a_mapped_page_is_retried_and_counted,
        ),
        Test::faulting_with(
            "genuine_fault_on_an_unmapped_page_is_reported",
            genuine_fault_on_an_unmapped_page,
            is_a_genuine_translation_fault,
        ),
        Test::new(
            "remap_same_range_reads_new_contents",
            remap_same_range_reads_new_contents,
        ),
        Test::faulting_with(
            "write_to_kernel_text_faults",
            write_to_kernel_text,
            is_permission_fault,
        ),
        Test::faulting_with(
            "execute_from_data_faults",
            execute_from_data,
            is_permission_fault,
        ),
        Test::faulting_with(
            "execute_from_vmalloc_faults",
            execute_from_vmalloc,
            is_permission_fault,
        ),
        Test::faulting_with(
            "stack_overflow_hits_the_guard_page",
            stack_overflow,
            is_stack_overflow_of_cpu0,
        ),
        Test::new(
            "ten_thousand_map_unmap_cycles_balance",
            ten_thousand_map_unmap_cycles_balance,
        ),
        Test::new("huge_ioremap_uses_blocks", huge_ioremap_uses_blocks),
    ])
}
