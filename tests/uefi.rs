//! Booted by firmware on QEMU virt, not by QEMU's loader: Debian's EDK2 (qemu-efi-aarch64) and
//! U-Boot (u-boot-qemu). The kernel finds out how it was started and what describes the machine,
//! and the machine it built must be the hardware's: 4 CPUs online, the GIC the description names
//! (its distributor's ID register agrees), a console; the firmware's tables read-only in the
//! linear map, never ioremapped, never handed out; the workloads pass on every CPU; the exit
//! status reaches the runner (by semihosting, or by PSCI after "[powering off with status N]").
//!
//! `edk2-esp` is the Image as \EFI\BOOT\BOOTAA64.EFI on a FAT drive, where EDK2's boot manager
//! gives it no command line: those boots check themselves against what they find (ACPI when the
//! firmware gave no device tree). The others say what to expect with `expect=`.
//!
//! initmm-qemu: --firmware edk2-esp
//! initmm-qemu: --firmware edk2-esp --machine virt,gic-version=3
//! initmm-qemu: --firmware edk2-esp --machine virt,acpi=off
//! initmm-qemu: --firmware edk2 --machine virt,virtualization=on,gic-version=3 -- expect=acpi expect_el=2
//! initmm-qemu: --firmware uboot-bootefi -- expect=dt
//! initmm-qemu: --firmware uboot-booti -- expect=flat
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;

use initmm::BootInfo;
use initmm::arch::aarch64::cpu::{probe_read, probe_write};
use initmm::arch::aarch64::esr::FaultKind;
use initmm::arch::aarch64::exceptions::Fault;
use initmm::kernel::Firmware;
use initmm::mm::addr::PhysAddr;
use initmm::mm::frame::FRAMES;
use initmm::mm::layout::{PAGE_SIZE, phys_to_virt};
use initmm::mm::pgtable::Prot;
use initmm::mm::region::{self, Region};
use initmm::mm::vm::VmError;
use initmm::mm::{self, kernel_vm};
use initmm::platform::devicetree::EnableMethod;
use initmm::platform::uefi::Description;
use initmm::testing::{self, Test};
use initmm_workloads::common::IdRegister;
use initmm_workloads::{self as workload, LostRaces, Params};
use spin::Once;

static BOOT: Once<&'static BootInfo> = Once::new();

fn boot() -> &'static BootInfo {
    BOOT.get().unwrap()
}

/// The firmware started the kernel the way the configuration says, and the description is the
/// one the firmware's hand-over calls for.
fn started_as_configured() {
    let b = boot();
    let expect = b.cmdline().get("expect");
    match &b.firmware {
        Firmware::Flat => assert_eq!(expect, Some("flat"), "started as a flat Image"),
        Firmware::Uefi(u) => {
            assert!(u.exit_attempts >= 1, "ExitBootServices was called");
            let want = if b.dtb.size > 0 {
                Description::DeviceTree
            } else {
                Description::Acpi
            };
            assert_eq!(u.description, want, "a device tree wins when there is one");
            match expect {
                Some("acpi") => assert_eq!(u.description, Description::Acpi),
                Some("dt") => assert_eq!(u.description, Description::DeviceTree),
                None => assert!(
                    b.machine.bootargs.trim().is_empty(),
                    "only edk2-esp passes no command line"
                ),
                other => panic!("expect={other:?} with UEFI"),
            }
            if u.description == Description::Acpi {
                let info = u.acpi.as_ref().expect("ACPI info");
                for sig in [b"FACP", b"APIC", b"GTDT", b"SPCR"] {
                    assert!(
                        info.tables.iter().any(|t| &t.0 == sig),
                        "the XSDT lists {}",
                        core::str::from_utf8(sig).unwrap()
                    );
                }
                assert!(u.rsdp.is_some());
                assert!(!b.machine.read_only.is_empty(), "the tables' memory");
            }
        }
    }
    if let Some(el) = b.cmdline().number("expect_el").unwrap() {
        assert_eq!(b.entry_el, el, "entry exception level");
    }
}

/// What the description says is what the hardware is.
fn the_machine_is_the_hardware() {
    let m = &boot().machine;
    assert_eq!(m.cpus.len(), 4);
    assert!(m.cpus.iter().all(|c| c.enable_method == EnableMethod::Psci));
    assert_eq!(initmm::smp::online_cpus(), 4, "every CPU online");
    assert!(initmm::console::has_device(), "a console driver attached");
    let id = IdRegister::of_this_machine().expect("a GIC");
    let io = mm::ioremap(id.page(), PAGE_SIZE).unwrap();
    assert!(
        id.reads_right(&io),
        "the distributor's PIDR2 names another GIC architecture than {:?}",
        m.gic.unwrap().version
    );
}

/// The firmware's tables (`Machine::read_only`: the UEFI memory map's ACPI regions) are in the
/// linear map read-only, and `ioremap` refuses them: they are RAM.
fn firmware_tables_are_read_only_ram() {
    let m = &boot().machine;
    for r in &m.read_only {
        assert!(region::covers(&m.reserved, *r), "{r:?} is reserved");
        for pa in (r.base..r.base + r.size).step_by(PAGE_SIZE) {
            let va = phys_to_virt(PhysAddr(pa));
            let t = kernel_vm()
                .init_mm
                .translate(va)
                .expect("in the linear map");
            assert_eq!(t.pa.0, pa);
            assert_eq!(t.prot(), Some(Prot::KERNEL_RO), "{pa:#x} is read-only");
        }
        match mm::ioremap(PhysAddr(r.base), PAGE_SIZE) {
            Err(VmError::OverlapsRam { .. }) => {}
            other => panic!("ioremap of the tables at {:#x}: {other:?}", r.base),
        }
        // And it reads: each region starts with what the firmware put there (a table, the
        // FACS, or U-Boot's device tree), never zero.
        assert_ne!(probe_read(phys_to_virt(PhysAddr(r.base)).0), 0);
    }
}

/// The linear-map address of the firmware's first table page.
fn first_table_page() -> usize {
    phys_to_virt(PhysAddr(boot().machine.read_only[0].base)).0
}

fn write_to_the_firmware_tables() {
    probe_write(first_table_page(), 0);
}

fn is_permission_fault_on_the_tables(f: &Fault) -> Result<(), &'static str> {
    match (f.esr.fault_kind(), f.esr.is_write()) {
        (FaultKind::Permission(_), true) if f.far == first_table_page() as u64 => Ok(()),
        (FaultKind::Permission(_), true) => Err("a write permission fault, elsewhere"),
        _ => Err("expected a write permission fault"),
    }
}

/// No free frame is outside the UEFI memory map's RAM, in a reservation (the tables among them),
/// or in the image (but for its boot frames, which are the allocator's): every frame is taken,
/// checked and given back.
fn firmware_memory_is_never_handed_out() {
    let b = boot();
    let (boot_frames, len) = initmm::arch::aarch64::early::boot_frames();
    let image = region::subtract(
        core::slice::from_ref(&b.image_phys),
        &[Region::new(boot_frames, len)],
    );
    let mut taken: Vec<(PhysAddr, usize)> = Vec::with_capacity(8192);
    let mut frames = 0;
    for order in (0..=10).rev() {
        let count = 1usize << order;
        while taken.len() < taken.capacity() {
            let Some(pa) = FRAMES.alloc(count) else { break };
            taken.push((pa, count));
            frames += count;
        }
    }
    assert!(FRAMES.alloc(1).is_none(), "every frame taken");
    let bad = taken.iter().find(|&&(pa, count)| {
        let r = Region::new(pa.0, (count * PAGE_SIZE) as u64);
        !region::covers(&b.machine.ram, r)
            || region::overlaps(&b.machine.reserved, r)
            || region::overlaps(&image, r)
    });
    let bad = bad.copied();
    for (pa, count) in taken {
        // SAFETY: `pa` is `count` frames this function took from `FRAMES` above and nothing else
        // used; each run is given back once.
        unsafe { FRAMES.free(pa, count) };
    }
    assert!(frames > 1000, "{frames} frames");
    if let Some((pa, count)) = bad {
        panic!(
            "the frame allocator had [{:#x}, +{count} pages): not free RAM (RAM {:x?}, reserved {:x?}, image {:x?})",
            pa.0, b.machine.ram, b.machine.reserved, b.image_phys
        );
    }
}

/// The workloads, briefly, on every CPU. A lost table-install race is not demanded here
/// (`tests/workloads.rs` demands it): what this shows is that they run on a machine the firmware
/// described.
fn workloads_pass_on_four_cores() {
    let p = Params {
        cpus: 4,
        duration: 0,
        iterations: Some(20),
        lost_races: LostRaces::Note,
    };
    let run = |name, p: &Params| workload::find(name).unwrap().run(p);
    run("ioremap-storm", &p).assert_passed(4);
    run(
        "vmalloc-stress",
        &Params {
            iterations: Some(1),
            ..p
        },
    )
    .assert_passed(4);
    run("compute", &p).assert_passed(4);
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    BOOT.call_once(|| b);
    let mut tests = alloc::vec![
        Test::new("started_as_configured", started_as_configured),
        Test::new("the_machine_is_the_hardware", the_machine_is_the_hardware),
        Test::new(
            "firmware_tables_are_read_only_ram",
            firmware_tables_are_read_only_ram
        ),
        Test::new(
            "firmware_memory_is_never_handed_out",
            firmware_memory_is_never_handed_out
        ),
        Test::new("workloads_pass_on_four_cores", workloads_pass_on_four_cores),
    ];
    if !b.machine.read_only.is_empty() {
        tests.push(Test::faulting_with(
            "write_to_the_firmware_tables_faults",
            write_to_the_firmware_tables,
            is_permission_fault_on_the_tables,
        ));
    }
    testing::run(&tests)
}
