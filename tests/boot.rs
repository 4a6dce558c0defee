//! Boot on the three QEMU virt variants and check what the kernel found: the device tree QEMU
//! generated, the exception level it entered at, frames and heap balance, and that a fault is
//! reported and decoded rather than fatal when a test expects it.
//!
//! initmm-qemu lines: one boot per line (runner options, then `--` and kernel words).
//! initmm-qemu: --machine virt -- expect_el=1 expect_gic=2 expect_psci=hvc
//! initmm-qemu: --machine virt,virtualization=on -- expect_el=2 expect_gic=2 expect_psci=smc
//! initmm-qemu: --machine virt,gic-version=3 -- expect_el=1 expect_gic=3 expect_psci=hvc
//! `-cpu max` has the EL2 extensions whose registers the EL2 set-up writes only when present
//! (fine-grained traps, HCRX_EL2, LORegions): a wrong encoding would be an undefined
//! instruction at EL2, with no vectors there, and this boot would hang.
//! initmm-qemu: --machine virt,virtualization=on,gic-version=3 --cpu max -- expect_el=2 expect_gic=3 expect_psci=smc expect_el2_extensions=1
#![no_std]
#![no_main]

use initmm::BootInfo;
use initmm::mm::frame::FRAMES;
use initmm::platform::devicetree::{EnableMethod, GicVersion, PsciMethod, UartKind};
use initmm::testing::{self, Test};
use spin::Once;

extern crate alloc;

static BOOT: Once<&'static BootInfo> = Once::new();

fn boot() -> &'static BootInfo {
    BOOT.get().unwrap()
}

fn expect(key: &str) -> u64 {
    let c = boot().cmdline();
    match c.get(key) {
        Some("hvc") => 1,
        Some("smc") => 2,
        _ => c
            .number(key)
            .unwrap()
            .unwrap_or_else(|| panic!("the runner must pass {key}=")),
    }
}

fn entered_at_the_expected_el() {
    assert_eq!(
        boot().entry_el,
        expect("expect_el"),
        "entry exception level"
    );
}

/// With `expect_el2_extensions=1`, the CPU has FEAT_FGT, FEAT_HCX and FEAT_LOR, so booting here
/// ran `init_el2`'s writes of HFG*TR_EL2, HDFG*TR_EL2, HCRX_EL2 and LORC_EL1.
fn el2_extensions_present_when_expected() {
    if boot().cmdline().number("expect_el2_extensions").unwrap() != Some(1) {
        return;
    }
    let (mmfr0, mmfr1): (u64, u64);
    // SAFETY: reading ID registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack));
        core::arch::asm!("mrs {}, id_aa64mmfr1_el1", out(reg) mmfr1, options(nomem, nostack));
    }
    assert_ne!((mmfr0 >> 56) & 0xf, 0, "FEAT_FGT");
    assert_ne!((mmfr1 >> 40) & 0xf, 0, "FEAT_HCX");
    assert_ne!((mmfr1 >> 16) & 0xf, 0, "FEAT_LOR");
}

fn device_tree_describes_qemu_virt() {
    let m = &boot().machine;
    assert_eq!(m.model, "linux,dummy-virt");
    assert_eq!(m.ram.len(), 1);
    assert_eq!(
        (m.ram[0].base, m.ram[0].size),
        (0x4000_0000, 1 << 30),
        "-m 1G at 0x4000_0000"
    );
    assert_eq!(m.cpus.len(), 4, "-smp 4");
    for (i, c) in m.cpus.iter().enumerate() {
        assert_eq!(c.mpidr, i as u64);
        assert_eq!(c.enable_method, EnableMethod::Psci);
    }
    let psci = m.psci.as_ref().expect("/psci").method;
    let want = if expect("expect_psci") == 1 {
        PsciMethod::Hvc
    } else {
        PsciMethod::Smc
    };
    assert_eq!(psci, want);
    let gic = m.gic.as_ref().expect("interrupt controller");
    let want = if expect("expect_gic") == 3 {
        GicVersion::V3
    } else {
        GicVersion::V2
    };
    assert_eq!(gic.version, want);
    assert_eq!(gic.dist.base, 0x0800_0000);
    let con = m.console.as_ref().expect("console");
    assert_eq!((con.kind.clone(), con.base), (UartKind::Pl011, 0x0900_0000));
    assert!(m.timer.is_some(), "/timer");
    assert!(
        boot().cmdline().has("semihosting"),
        "bootargs carry -append"
    );
}

fn frames_exclude_image_and_dtb() {
    let b = boot();
    let f = FRAMES.stats();
    let ram_frames = (1usize << 30) / 4096;
    assert!(
        f.total < ram_frames && f.total > ram_frames - 2048,
        "total {} of {ram_frames}",
        f.total
    );
    // The image and the DTB are not handed out: allocate everything, then check none of it
    // overlaps them, then give it all back. The one exception is the image's boot frames, which
    // the frame allocator owns from the start (init_mm's first tables come from them).
    let (boot_frames, boot_frames_len) = initmm::arch::aarch64::early::boot_frames();
    let mut got = alloc::vec::Vec::new();
    while let Some(frame) = FRAMES.alloc(1) {
        got.push(frame);
        let pa = frame.0;
        let boot_frame = (boot_frames..boot_frames + boot_frames_len).contains(&pa);
        for r in [b.image_phys, b.dtb] {
            assert!(
                boot_frame || pa + 4096 <= r.base || pa >= r.base + r.size,
                "frame {pa:#x} inside {r:?}"
            );
        }
        if got.len() == 4096 {
            break;
        }
    }
    for frame in got {
        // SAFETY: a frame allocated above and used for nothing.
        unsafe { FRAMES.free(frame, 1) };
    }
}

fn frame_and_heap_allocation_balance() {
    let round = |r: u8| {
        let frames: alloc::vec::Vec<initmm::mm::addr::PhysAddr> =
            (0..64).map(|_| FRAMES.alloc(1).expect("frame")).collect();
        let big = alloc::vec![r; 3 << 20]; // more than the 2 MiB boot heap: the heap grows
        assert!(big.iter().all(|&b| b == r));
        drop(big);
        for pa in frames {
            // SAFETY: a frame allocated above and used for nothing.
            unsafe { FRAMES.free(pa, 1) };
        }
    };
    round(0); // the heap grows from frames once and keeps them
    let f0 = FRAMES.stats();
    let used0 = initmm::kernel::HEAP.usage().0;
    for r in 1..50 {
        round(r);
    }
    assert_eq!(FRAMES.stats(), f0, "frames after 49 rounds");
    assert_eq!(
        initmm::kernel::HEAP.usage().0,
        used0,
        "heap bytes in use after 49 rounds"
    );
}

fn null_dereference() {
    initmm::arch::aarch64::cpu::probe_read(0);
}

fn null_fault_is_a_level0_translation_fault(
    f: &initmm::arch::aarch64::exceptions::Fault,
) -> Result<(), &'static str> {
    use initmm::arch::aarch64::esr::FaultKind;
    if f.far != 0 {
        return Err("FAR is not 0");
    }
    match f.esr.fault_kind() {
        FaultKind::Translation(0) => Ok(()),
        _ => Err("not a level-0 translation fault (TTBR0 walks should be off)"),
    }
}

/// The caught fault below: d8-d15 are zeroed first, as a function that uses them would, and the
/// fault skips the epilogue that would have restored them. The load that faults is in the same
/// asm block, so the compiler cannot restore them before it.
extern "C" fn fault_after_clobbering_d8_to_d15() {
    let caught = initmm::arch::aarch64::exceptions::catch_fault(|| {
        // SAFETY: writes only registers, which are declared clobbered, then loads from address 0,
        // which is unmapped: the fault ends the closure (caught by `catch_fault`).
        unsafe {
            core::arch::asm!(
                "movi d8, #0", "movi d9, #0", "movi d10, #0", "movi d11, #0",
                "movi d12, #0", "movi d13, #0", "movi d14, #0", "movi d15, #0",
                "ldr {v}, [{null}]",
                null = in(reg) 0usize,
                v = out(reg) _,
                out("d8") _, out("d9") _, out("d10") _, out("d11") _,
                out("d12") _, out("d13") _, out("d14") _, out("d15") _,
                options(nostack, readonly),
            )
        };
    });
    assert!(caught.is_err(), "reading address 0 must fault");
}

/// AAPCS64 makes d8-d15 callee-saved: a caught fault must give them back as they were.
fn caught_fault_keeps_d8_to_d15() {
    let mut after = [0u64; 8];
    // SAFETY: sets d8-d15 (declared clobbered), calls an `extern "C"` function, which by the ABI
    // preserves x20, x21 and d8-d15 and may clobber what `clobber_abi("C")` names, then stores
    // the eight registers through x20 into `after`, which is 64 bytes long.
    unsafe {
        core::arch::asm!(
            "mov x21, #0x0808", "fmov d8, x21",
            "mov x21, #0x0909", "fmov d9, x21",
            "mov x21, #0x1010", "fmov d10, x21",
            "mov x21, #0x1111", "fmov d11, x21",
            "mov x21, #0x1212", "fmov d12, x21",
            "mov x21, #0x1313", "fmov d13, x21",
            "mov x21, #0x1414", "fmov d14, x21",
            "mov x21, #0x1515", "fmov d15, x21",
            "blr {f}",
            "stp d8, d9, [x20]",
            "stp d10, d11, [x20, #16]",
            "stp d12, d13, [x20, #32]",
            "stp d14, d15, [x20, #48]",
            f = in(reg) fault_after_clobbering_d8_to_d15 as extern "C" fn(),
            inout("x20") after.as_mut_ptr() => _,
            out("x21") _,
            out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d12") _, out("d13") _, out("d14") _, out("d15") _,
            clobber_abi("C"),
        )
    };
    assert_eq!(
        after,
        [
            0x0808, 0x0909, 0x1010, 0x1111, 0x1212, 0x1313, 0x1414, 0x1515
        ],
        "d8-d15 after a caught fault"
    );
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    BOOT.call_once(|| b);
    testing::run(&[
        Test::new("entered_at_the_expected_el", entered_at_the_expected_el),
        Test::new(
            "el2_extensions_present_when_expected",
            el2_extensions_present_when_expected,
        ),
        Test::new(
            "device_tree_describes_qemu_virt",
            device_tree_describes_qemu_virt,
        ),
        Test::new("frames_exclude_image_and_dtb", frames_exclude_image_and_dtb),
        Test::new(
            "frame_and_heap_allocation_balance",
            frame_and_heap_allocation_balance,
        ),
        Test::new("caught_fault_keeps_d8_to_d15", caught_fault_keeps_d8_to_d15),
        Test::faulting_with(
            "null_dereference_faults",
            null_dereference,
            null_fault_is_a_level0_translation_fault,
        ),
    ])
}
