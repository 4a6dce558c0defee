//! Fault injection at -smp 4: with `fail=` rules on the frame allocator and the virtual-area
//! allocator, ioremap, vmap, vmalloc and the table allocators return allocation errors, leave
//! nothing mapped in the range the failed call would have used, and frames and areas come back
//! exactly to their baseline (after quiescent reclaim of empty tables, as Linux would keep them).
//!
//! The second configuration also checks that `fail=` on the command line is applied at boot.
//!
//! initmm-qemu: --machine virt --smp 4
//! initmm-qemu: --machine virt,gic-version=3 --smp 4 -- fail=areas:nth=123456789,frames:999/1000000,seed=9
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use initmm::BootInfo;
use initmm::mm::addr::{PhysAddr, VirtAddr};
use initmm::mm::fault_inject::{self, FAIL_AREAS, FAIL_FRAMES, FaultConfig, Rule};
use initmm::mm::frame::FRAMES;
use initmm::mm::kernel_vm;
use initmm::mm::layout::{PAGE_SIZE, PMD_SIZE, PUD_SIZE, phys_to_virt};
use initmm::mm::pgtable::{Level, MmError, Prot};
use initmm::mm::vm::VmError;
use initmm::mm::{free_frames, settle};
use initmm::platform::devicetree::GicVersion;
use initmm::smp::runtime::on_cpus;
use initmm::testing::{self, Test};
use initmm_workloads as workload;
use initmm_workloads::common::is_alloc_failure;
use spin::Once;

static BOOT: Once<&'static BootInfo> = Once::new();

/// An mm call that returns an address (of what it made and already gave back, when it succeeds).
type VmCall<'a> = dyn Fn() -> Result<VirtAddr, VmError> + 'a;

/// Frames and areas with every empty table reclaimed: what must balance.
fn baseline() -> (usize, (usize, usize)) {
    // SAFETY: the test runs on the boot CPU alone (no on_cpus call is running): the other
    // CPUs are idle, so none maps, unmaps or walks the vmalloc region.
    unsafe { settle() };
    (free_frames(), kernel_vm().area_stats())
}

fn off() {
    fault_inject::apply(&FaultConfig::NONE);
}

/// Nothing is mapped in `[va, va + size)`.
fn assert_unmapped(va: VirtAddr, size: usize, what: &str) {
    for p in (va.0..va.0 + size).step_by(PAGE_SIZE) {
        assert!(
            kernel_vm().init_mm.translate(VirtAddr(p)).is_none(),
            "{what}: {p:#x} is still mapped after the failed call"
        );
    }
}

/// The GIC distributor's first page (device memory every board has).
fn gic_page() -> PhysAddr {
    PhysAddr(BOOT.get().unwrap().machine.gic.as_ref().unwrap().dist.base)
}

fn cmdline_fail_is_applied_once_boot_is_done() {
    let want = match BOOT.get().unwrap().cmdline().get("fail") {
        Some(v) => FaultConfig::parse(v).unwrap(),
        None => FaultConfig::NONE,
    };
    let now = fault_inject::current();
    assert_eq!((now.frames, now.areas), (want.frames, want.areas));
    if want.frames.is_some() {
        assert_eq!(now.seed, want.seed);
    }
    off();
}

/// Fail the k-th frame allocation of `call`, for k = 1, 2, ... until the call succeeds; each
/// failure must be an allocation error, injected exactly once, leave `[va, va + size)` unmapped
/// (`va`: where the uninjected call put it, the lowest fit, so where a retry would go) and
/// leak no frame and no area. `call` gives back what it made (drops its handle) and returns its
/// address. Returns the errors in order.
fn fail_every_frame_allocation(what: &str, size: usize, call: &VmCall) -> Vec<VmError> {
    let va = call().unwrap();
    let base = baseline();
    let mut errors = Vec::new();
    for k in 1.. {
        let injected = FAIL_FRAMES.injected();
        FAIL_FRAMES.set(Some(Rule::Nth(k)), 1);
        let r = call();
        off();
        match r {
            Ok(got) => {
                assert_eq!(FAIL_FRAMES.injected(), injected, "{what}: k={k} succeeded");
                assert_eq!(got, va, "{what}: the retry lands where the first call did");
                break;
            }
            Err(e) => {
                assert!(is_alloc_failure(&e), "{what}: k={k}: {e}");
                assert_eq!(FAIL_FRAMES.injected(), injected + 1, "{what}: k={k}");
                assert_eq!(
                    kernel_vm().area_stats(),
                    base.1,
                    "{what}: k={k}: an area leaked"
                );
                assert_unmapped(va.page_start(), size, what);
                assert_eq!(baseline(), base, "{what}: k={k}: frames or areas leaked");
                errors.push(e);
            }
        }
        assert!(k < 10_000, "{what}: never succeeded");
    }
    assert_eq!(baseline(), base, "{what}");
    errors
}

fn vmalloc_fails_cleanly_at_every_page_and_table_allocation() {
    let vm = kernel_vm();
    // Gigabyte-aligned: its pmd and pte tables are fresh after reclaim, so the table allocators
    // run in every attempt.
    let errors = fail_every_frame_allocation("vmalloc", 8 * PAGE_SIZE, &|| {
        vm.vmalloc_aligned(8 * PAGE_SIZE, PUD_SIZE)
            .map(|a| a.addr())
    });
    let pages = errors
        .iter()
        .filter(|e| matches!(e, VmError::OutOfMemory { pages: 8 }))
        .count();
    let tables = errors
        .iter()
        .filter(|e| matches!(e, VmError::Table(MmError::OutOfMemory)))
        .count();
    assert_eq!(pages, 8, "one failure per page: {errors:?}");
    assert!(
        tables >= 2,
        "the pmd and pte allocations failed too: {errors:?}"
    );
    assert_eq!(pages + tables, errors.len());
}

fn ioremap_fails_cleanly_at_every_table_allocation() {
    // Not 2 MiB-aligned, 4 MiB: pages, over at least two fresh pte tables.
    let pa = gic_page() + PAGE_SIZE as u64;
    let errors = fail_every_frame_allocation("ioremap", 2 * PMD_SIZE, &|| {
        kernel_vm().ioremap(pa, 2 * PMD_SIZE).map(|io| io.addr())
    });
    assert!(errors.len() >= 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, VmError::Table(MmError::OutOfMemory)))
    );
}

fn vmap_fails_cleanly_at_every_table_allocation_and_keeps_the_callers_pages() {
    let pages: Vec<PhysAddr> = (0..1024).map(|_| FRAMES.alloc(1).unwrap()).collect();
    let errors = fail_every_frame_allocation(
        "vmap",
        pages.len() * PAGE_SIZE,
        // SAFETY: frames this test holds until the end, after every vmap of them was unmapped
        // and purged.
        &|| unsafe { kernel_vm().vmap(&pages, Prot::KERNEL_RW) }.map(|v| v.addr()),
    );
    assert!(errors.len() >= 2, "{errors:?}");
    kernel_vm().vm_unmap_aliases();
    // SAFETY: this test's frames; their last vmap was unmapped, and the purge above completed
    // its TLB invalidation.
    pages.iter().for_each(|&p| unsafe { FRAMES.free(p, 1) });
}

fn every_area_reservation_fails_cleanly() {
    let vm = kernel_vm();
    // Where a one-page area goes, the lowest fit (given back at once).
    let page = vm.vmalloc(PAGE_SIZE).unwrap().addr();
    let frame = FRAMES.alloc(1).unwrap();
    let base = baseline();
    let calls: [(&str, &VmCall); 5] = [
        ("vmalloc", &|| vm.vmalloc(PAGE_SIZE).map(|a| a.addr())),
        ("vmalloc_stack", &|| {
            vm.vmalloc_stack(4 * PAGE_SIZE).map(|s| s.guard_page())
        }),
        ("ioremap", &|| {
            vm.ioremap(gic_page(), PAGE_SIZE).map(|io| io.addr())
        }),
        ("vmap", &|| {
            // SAFETY: a frame this test holds until the end; the call fails (injected), so maps
            // nothing.
            unsafe { vm.vmap(&[frame], Prot::KERNEL_RW) }.map(|v| v.addr())
        }),
        ("reserve_window", &|| {
            vm.reserve_window(PUD_SIZE, PUD_SIZE).map(|w| w.start())
        }),
    ];
    for (what, call) in calls {
        let injected = FAIL_AREAS.injected();
        FAIL_AREAS.set(Some(Rule::Nth(1)), 1);
        let r = call();
        off();
        assert!(
            matches!(r, Err(VmError::NoVirtualSpace(_))),
            "{what}: {r:?}"
        );
        assert_eq!(FAIL_AREAS.injected(), injected + 1);
        assert_unmapped(page, PAGE_SIZE, what);
        assert_eq!(baseline(), base, "{what}: frames or areas leaked");
    }
    // SAFETY: the frame allocated above; nothing mapped it (every call failed).
    unsafe { FRAMES.free(frame, 1) };
}

fn table_allocators_return_out_of_memory_and_install_nothing() {
    let vm = kernel_vm();
    let mm = &vm.init_mm;
    // A fresh 512 GiB: no pud table under its pgd slot yet.
    let window = vm.reserve_window(512 * PUD_SIZE, 512 * PUD_SIZE).unwrap();
    let w = window.start();
    let base = baseline();
    let fail_next = || FAIL_FRAMES.set(Some(Rule::Nth(1)), 1);

    // Every table allocator call below passes entries of init_mm for `w`, in the window this
    // test holds, where nothing maps a block or reclaims tables while they are used.
    fail_next();
    // SAFETY: as said above.
    let r = unsafe { mm.pud_alloc(mm.pgd_offset_k(w), w) };
    off();
    assert_eq!(r.err(), Some(MmError::OutOfMemory));
    assert!(
        !mm.pgd_offset_k(w).read().is_valid(),
        "pud_alloc installed a table"
    );
    // SAFETY: as said above.
    let pud = unsafe { mm.pud_alloc(mm.pgd_offset_k(w), w) }.unwrap();

    fail_next();
    // SAFETY: as said above.
    let r = unsafe { mm.pmd_alloc(pud, w) };
    off();
    assert_eq!(r.err(), Some(MmError::OutOfMemory));
    assert!(!pud.read().is_valid(), "pmd_alloc installed a table");
    // SAFETY: as said above.
    let pmd = unsafe { mm.pmd_alloc(pud, w) }.unwrap();

    fail_next();
    // SAFETY: as said above.
    let r = unsafe { mm.pte_alloc_kernel(pmd, w) };
    off();
    assert_eq!(r.err(), Some(MmError::OutOfMemory));
    assert!(!pmd.read().is_valid(), "pte_alloc_kernel installed a table");
    // SAFETY: as said above.
    let r = unsafe { mm.pte_alloc_kernel(pmd, w) };
    assert!(r.is_ok());
    assert!(
        pmd.read().is_table(Level::Pmd),
        "the retry installed the pte table"
    );

    // And map_range through them, failing at each level of a fresh gigabyte in turn.
    let va = w + 7 * PUD_SIZE;
    for k in 1..=2 {
        FAIL_FRAMES.set(Some(Rule::Nth(k)), 1);
        // SAFETY: a page of the window this test holds, mapped to a device register (no RAM).
        let r = unsafe { mm.map_range(va, gic_page(), PAGE_SIZE, Prot::DEVICE, false) };
        off();
        assert_eq!(r, Err(MmError::OutOfMemory), "k={k}");
        assert!(mm.translate(va).is_none());
    }
    // SAFETY: as above.
    unsafe { mm.map_range(va, gic_page(), PAGE_SIZE, Prot::DEVICE, false) }.unwrap();
    // SAFETY: the page mapped just above, in the window this test holds.
    unsafe { mm.unmap_range(va, PAGE_SIZE) };
    assert_eq!(
        baseline(),
        base,
        "tables freed once empty, nothing else taken"
    );
    vm.release_window(window).unwrap();
}

/// A pattern for word `i` of the page at `pa`.
fn pattern(pa: u64, i: usize, cpu: usize) -> u64 {
    pa ^ (i as u64).rotate_left(20) ^ ((cpu as u64) << 58)
}

fn four_cpus_under_injection_balance_and_every_error_was_injected() {
    let base = baseline();
    let injected_before = fault_inject::injected_total();
    let errors = [const { AtomicU64::new(0) }; 3];
    let done = [const { AtomicU64::new(0) }; 3];
    let (pidr2, arch_rev) = match BOOT.get().unwrap().machine.gic.as_ref().unwrap().version {
        GicVersion::V2 => (0xfe8u64, 2),
        GicVersion::V3 => (0xffe8, 3),
    };
    let cfg = FaultConfig::parse("frames:1/8,areas:1/8,seed=3").unwrap();
    fault_inject::apply(&cfg);
    on_cpus(4, &|cpu| {
        let vm = kernel_vm();
        // The frames this CPU vmapped, given back once their areas are purged.
        let mut vmapped = Vec::with_capacity(150);
        let count = |kind: usize, r: Result<(), VmError>| match r {
            Ok(()) => done[kind].fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                assert!(is_alloc_failure(&e), "cpu{cpu}: {e}");
                errors[kind].fetch_add(1, Ordering::Relaxed)
            }
        };
        for i in 0..150usize {
            // vmalloc: fill, verify, vfree.
            let pages = 1 + (i * 7 + cpu) % 8;
            count(
                0,
                vm.vmalloc(pages * PAGE_SIZE).map(|mut area| {
                    let va = area.addr().0 as u64;
                    for w in (0..pages * PAGE_SIZE).step_by(512) {
                        area[w..w + 8].copy_from_slice(&pattern(va, w, cpu).to_ne_bytes());
                    }
                    for w in (0..pages * PAGE_SIZE).step_by(512) {
                        let got = u64::from_ne_bytes(area[w..w + 8].try_into().unwrap());
                        assert_eq!(got, pattern(va, w, cpu), "cpu{cpu}: vmalloc data");
                    }
                }),
            );
            // ioremap: read GICD_PIDR2's ArchRev, iounmap.
            count(
                1,
                vm.ioremap(gic_page() + pidr2, 4).map(|io| {
                    let v = io.read32(0);
                    assert_eq!(
                        (v >> 4) & 0xf,
                        arch_rev,
                        "cpu{cpu}: GICD_PIDR2 through ioremap"
                    );
                }),
            );
            // vmap of a frame of ours: written through the linear map, read through the vmap.
            let r = match FRAMES.alloc(1) {
                None => Err(VmError::OutOfMemory { pages: 1 }),
                Some(pa) => {
                    let lin = phys_to_virt(pa).as_mut_ptr::<u64>();
                    // SAFETY: a frame this CPU just took, reached through the linear map.
                    unsafe { lin.write_volatile(pattern(pa.0, i, cpu)) };
                    // SAFETY: this CPU's frame, kept until its area is unmapped and purged
                    // (below the loop).
                    let r = unsafe { vm.vmap(&[pa], Prot::KERNEL_RW) }.map(|v| {
                        // SAFETY: the vmap of that frame, live until `v` is dropped below.
                        let got = unsafe { v.addr().as_ptr::<u64>().read_volatile() };
                        assert_eq!(got, pattern(pa.0, i, cpu), "cpu{cpu}: vmap data");
                    });
                    vmapped.push(pa);
                    r
                }
            };
            count(2, r);
        }
        vm.vm_unmap_aliases();
        for pa in vmapped {
            // SAFETY: this CPU's frame; its vmap was unmapped, and the purge just above
            // completed the TLB invalidation of every lazily freed area.
            unsafe { FRAMES.free(pa, 1) };
        }
    });
    off();
    let injected = fault_inject::injected_total() - injected_before;
    let errs: Vec<u64> = errors.iter().map(|e| e.load(Ordering::Relaxed)).collect();
    let dones: Vec<u64> = done.iter().map(|e| e.load(Ordering::Relaxed)).collect();
    initmm::kprintln!(
        "\n    vmalloc/ioremap/vmap: ok {dones:?}, failed {errs:?}; {injected} injected"
    );
    assert!(
        errs.iter().all(|&n| n > 0),
        "every kind met a failure: {errs:?}"
    );
    assert!(
        dones.iter().all(|&n| n > 0),
        "every kind also succeeded: {dones:?}"
    );
    assert_eq!(
        errs.iter().sum::<u64>(),
        injected,
        "each injected failure failed exactly one call, and nothing else failed"
    );
    assert_eq!(baseline(), base, "frames or areas leaked");
}

fn storm_and_vmalloc_stress_count_injected_failures_and_pass() {
    let cfg = FaultConfig::parse("frames:1/40,areas:1/40,seed=11").unwrap();
    let params = workload::Params {
        cpus: 4,
        duration: 0,
        iterations: Some(64),
        lost_races: workload::LostRaces::Demand,
    };
    fault_inject::apply(&cfg);
    let storm = workload::find("ioremap-storm").unwrap().run(&params);
    // Gentler for vmalloc-stress: a scenario makes hundreds of allocations, and some must
    // complete for the run to count as having done work.
    fault_inject::apply(&FaultConfig::parse("frames:1/300,areas:1/300,seed=11").unwrap());
    let stress = workload::find("vmalloc-stress")
        .unwrap()
        .run(&workload::Params {
            iterations: Some(1),
            ..params
        });
    off();
    for r in [&storm, &stress] {
        initmm::kprintln!("result {}", r.json());
        assert!(
            r.failures.is_empty() && r.passed,
            "{}: {:?}",
            r.name,
            r.failures
        );
        let injected = r.extra.iter().find(|(k, _)| *k == "injected").unwrap();
        assert_ne!(injected.1, "0", "{}: no injected failure was met", r.name);
        assert_eq!(r.frames_before, r.frames_after);
    }
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    BOOT.call_once(|| b);
    testing::run(&[
        Test::new(
            "cmdline_fail_is_applied_once_boot_is_done",
            cmdline_fail_is_applied_once_boot_is_done,
        ),
        Test::new(
            "vmalloc_fails_cleanly_at_every_page_and_table_allocation",
            vmalloc_fails_cleanly_at_every_page_and_table_allocation,
        ),
        Test::new(
            "ioremap_fails_cleanly_at_every_table_allocation",
            ioremap_fails_cleanly_at_every_table_allocation,
        ),
        Test::new(
            "vmap_fails_cleanly_at_every_table_allocation_and_keeps_the_callers_pages",
            vmap_fails_cleanly_at_every_table_allocation_and_keeps_the_callers_pages,
        ),
        Test::new(
            "every_area_reservation_fails_cleanly",
            every_area_reservation_fails_cleanly,
        ),
        Test::new(
            "table_allocators_return_out_of_memory_and_install_nothing",
            table_allocators_return_out_of_memory_and_install_nothing,
        ),
        Test::new(
            "four_cpus_under_injection_balance_and_every_error_was_injected",
            four_cpus_under_injection_balance_and_every_error_was_injected,
        ),
        Test::new(
            "storm_and_vmalloc_stress_count_injected_failures_and_pass",
            storm_and_vmalloc_stress_count_injected_failures_and_pass,
        ),
    ])
}
