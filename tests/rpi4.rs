//! The Raspberry Pi 4 on QEMU raspi4b: booted with the real Pi 4 DTB (the firmware's path) and
//! with none (x0 = an ATAG list: the built-in description). Either way the console is the mini
//! UART (the runner wires only QEMU's second serial port to the terminal, so a kernel that picked
//! the PL011 would print nothing after the early log), all 4 CPUs come up by spin-table, and the
//! workloads pass their own checks on them.
//!
//! initmm-qemu: --board rpi4 -- source=dtb iterations=150
//! initmm-qemu: --board rpi4 --dtb none -- source=builtin iterations=150
#![no_std]
#![no_main]

extern crate alloc;

use initmm::BootInfo;
use initmm::platform::devicetree::{EnableMethod, GicVersion, UartKind};
use initmm::testing::{self, Test};
use initmm_workloads::{self as workload, Params};
use spin::Once;

static BOOT: Once<&'static BootInfo> = Once::new();
static PARAMS: Once<Params> = Once::new();

fn boot() -> &'static BootInfo {
    BOOT.get().unwrap()
}

/// The machine came from where the configuration says: the DTB (at the address QEMU put it) or
/// the built-in description (after x0 held no device tree). The command line arrived either way
/// (from /chosen/bootargs, or from the ATAG list), or this test could not read `source=`.
fn description_source() {
    let b = boot();
    match b.cmdline().get("source") {
        Some("dtb") => {
            assert_eq!(b.builtin, None);
            assert!(b.dtb.size > 0, "no device tree recorded: {:?}", b.dtb);
            assert_eq!(b.machine.model, "Raspberry Pi 4 Model B");
        }
        Some("builtin") => {
            assert_eq!(b.builtin, Some("Raspberry Pi 4"));
            assert_eq!(b.dtb.size, 0);
            assert_eq!(b.dtb.base, 0x100, "QEMU's ATAG list is at 0x100");
        }
        other => panic!("source={other:?}: say dtb or builtin"),
    }
    // RAM at 0 (not virt's 0x4000_0000): the same Image runs wherever it is loaded.
    assert_eq!(b.machine.ram.first().map(|r| r.base), Some(0));
    assert!(b.image_phys.base < 0x3c00_0000);
}

fn mini_uart_console_and_gic400() {
    let m = &boot().machine;
    let c = m.console.as_ref().expect("no console");
    assert_eq!(c.kind, UartKind::Bcm2835Aux);
    assert_eq!(c.base, 0xfe21_5040);
    assert!(
        initmm::console::has_device(),
        "the mini UART driver did not attach"
    );
    let g = m.gic.expect("no GIC");
    assert_eq!((g.version, g.dist.base), (GicVersion::V2, 0xff84_1000));
}

fn four_cpus_by_spin_table() {
    let m = &boot().machine;
    let release: alloc::vec::Vec<u64> = m
        .cpus
        .iter()
        .map(|c| match c.enable_method {
            EnableMethod::SpinTable { release_addr } => release_addr,
            ref other => panic!("CPU {:#x}: {other:?}, not spin-table", c.mpidr),
        })
        .collect();
    assert_eq!(release, [0xd8, 0xe0, 0xe8, 0xf0]);
    assert_eq!(initmm::smp::online_cpus(), 4);
}

fn workloads_pass_on_four_cores() {
    let p = PARAMS.get().unwrap();
    let run = |name, p: &Params| workload::find(name).unwrap().run(p);
    run("ioremap-storm", p).assert_passed(4);
    run(
        "vmalloc-stress",
        &Params {
            iterations: Some(1),
            ..*p
        },
    )
    .assert_passed(4);
    run("compute", p).assert_passed(4);
}

/// The VideoCore mailbox answers as QEMU 10's raspi4b models it (hw/misc/bcm2835_property.c
/// and the raspi4b board: revision 0xb03115, a 2 GiB Pi 4B; 64 MiB of VideoCore memory at the top
/// of the low 1 GiB; fixed clock rates and temperatures; board model and serial not modelled,
/// so answered as 0), with the device tree's mailbox and with the built-in one. The request
/// travels the whole way: the buffer at bus address physical + 0xc0000000 (`/soc`'s
/// `dma-ranges`), cleaned, rung, polled, invalidated.
fn mailbox_facts_are_qemus() {
    let mb = boot()
        .machine
        .mailbox
        .as_ref()
        .expect("a mailbox in the description");
    assert_eq!(mb.reg.base, 0xfe00_b880);
    assert_eq!(mb.dma, Some((0xc000_0000, 0, 0x4000_0000)));
    let mut m = initmm::drivers::mailbox::hw::Mailbox::new(mb).unwrap();
    let f = m.board_facts().unwrap();
    assert_eq!(f.firmware, 346_337);
    assert_eq!(f.revision, 0x00b0_3115);
    assert_eq!((f.model, f.serial), (0, 0));
    assert_eq!(f.arm_memory, (0, 0x3c00_0000));
    assert_eq!(f.vc_memory, (0x3c00_0000, 0x0400_0000));
    assert_eq!(
        f.clocks,
        alloc::vec![
            ("EMMC", 50_000_000),
            ("UART", 3_000_000),
            ("ARM", 700_000_000),
            ("CORE", 350_000_000)
        ]
    );
    assert_eq!((f.temperature, f.max_temperature), (25_000, 99_000));
}

initmm::entry!(main);

fn main(b: &'static BootInfo) -> ! {
    BOOT.call_once(|| b);
    PARAMS.call_once(|| Params::from_cmdline(&b.cmdline()).unwrap());
    testing::run(&[
        Test::new("description_source", description_source),
        Test::new("mini_uart_console_and_gic400", mini_uart_console_and_gic400),
        Test::new("four_cpus_by_spin_table", four_cpus_by_spin_table),
        Test::new("mailbox_facts_are_qemus", mailbox_facts_are_qemus),
        Test::new("workloads_pass_on_four_cores", workloads_pass_on_four_cores),
    ])
}
