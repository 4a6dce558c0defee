//! The boot CPU's path from `kernel_entry` (MMU on, running at the kernel's virtual address) to
//! the program's `main`: device tree (or what UEFI handed over: `uefi`), command line, memory,
//! `init_mm`, console, banner.

use crate::mm::addr::PhysAddr;
use alloc::string::String;
use core::cell::UnsafeCell;
use core::fmt;

use crate::arch::aarch64::daif::{self, Daif};
use crate::arch::aarch64::{cpu, early, efi, psci, semihosting};
use crate::cmdline::Cmdline;
use crate::mm::layout::{self, phys_to_virt};
use crate::mm::region::Region;
use crate::mm::vm::VmError;
use crate::platform;
use crate::platform::devicetree::{self, Console, DtError, Machine, UartKind};
use crate::platform::fdt_front::{self, FdtError};
use crate::platform::uefi::Description;
use crate::{console, drivers, klog, mm, smp};

mod uefi;

pub use uefi::Uefi;

/// What started the kernel.
#[derive(Clone, Debug)]
pub enum Firmware {
    /// A flat-Image loader (QEMU `-kernel`, the Raspberry Pi firmware, U-Boot's `booti`, the
    /// chainloader): x0 held the device tree, or an ATAG list.
    Flat,
    /// UEFI, which started the Image as an EFI application (`arch::aarch64::efi`).
    Uefi(Uefi),
}

/// What the kernel found at boot; handed to `main`.
pub struct BootInfo {
    /// The machine, from the device tree or the built-in description.
    pub machine: Machine,
    /// The exception level the loader entered the kernel at (1, 2 or 3).
    pub entry_el: u64,
    /// Where the loader put the image.
    pub image_phys: Region,
    /// Where the device tree is (physical); empty when the loader passed none.
    pub dtb: Region,
    /// The name of the built-in description the kernel fell back to when the loader passed no
    /// device tree (see [`platform::builtin_machine`]); `None` when the device tree was used.
    pub builtin: Option<&'static str>,
    /// What started the kernel, and for UEFI what it handed over.
    pub firmware: Firmware,
}

impl BootInfo {
    /// The kernel command line (the machine's `bootargs`).
    pub fn cmdline(&self) -> Cmdline<'_> {
        Cmdline(&self.machine.bootargs)
    }
}

static BOOT: spin::Once<&'static BootInfo> = spin::Once::new();

/// What the kernel found at boot (after `kernel_entry` set it up).
pub fn boot_info() -> &'static BootInfo {
    BOOT.get()
        .expect("boot_info() before the kernel finished booting")
}

/// The heap's first memory, before frames exist (the device tree is parsed into it).
const BOOT_HEAP: usize = 256 << 10;
#[repr(align(4096))]
struct BootHeap(UnsafeCell<[u8; BOOT_HEAP]>);
// SAFETY: handed to the heap once, by the boot CPU, before any other CPU runs.
unsafe impl Sync for BootHeap {}
static BOOT_HEAP_AREA: BootHeap = BootHeap(UnsafeCell::new([0; BOOT_HEAP]));

pub use crate::mm::heap::HEAP;

unsafe extern "Rust" {
    /// The program's entry, defined with [`crate::entry!`] by `main.rs` or a test kernel.
    fn __initmm_main(boot: &'static BootInfo) -> !;
}

/// Define the function the kernel calls once it is up: `initmm::entry!(main);` with
/// `fn main(boot: &'static initmm::BootInfo) -> !`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __initmm_main(boot: &'static $crate::kernel::BootInfo) -> ! {
            $main(boot)
        }
    };
}

/// Stop with a message: before the console exists it goes to the early buffer (and semihosting).
fn fatal(what: core::fmt::Arguments<'_>) -> ! {
    panic!("boot: {what}")
}

#[unsafe(no_mangle)]
extern "C" fn kernel_entry(dtb_pa: u64, entry_el: u64, image_pa: u64) -> ! {
    cpu::set_percpu(0);
    crate::panic::init();
    // The mm's profiler (compiled in only for the profiled benchmark kernel) counts per CPU and
    // times with the generic counter.
    mm::profile::set_platform(mm::profile::Platform {
        cpu_id: cpu::id,
        clock: cpu::counter,
    });
    layout::set_kimage_phys(image_pa);
    let img = layout::image_layout();
    cpu::register_stack_guard(0, false, img.boot_stack_guard);
    cpu::register_stack_guard(0, true, img.boot_exception_stack_guard);
    klog::init();
    // Where each boot phase ended on the counter, for the `loglevel=debug` account at the end.
    let mut ends = BootPhases {
        start: cpu::counter(),
        ..BootPhases::default()
    };
    // SAFETY: the boot heap area is used for nothing else, and this runs once.
    unsafe { HEAP.init(BOOT_HEAP_AREA.0.get() as usize, BOOT_HEAP) };
    if early::overflowed() {
        fatal(format_args!(
            "the early page tables ran out of tables: part of the image or the device tree is unmapped"
        ));
    }

    let image = Region {
        base: image_pa,
        size: img.end - img.start,
    };
    let mut firmware = Firmware::Flat;
    let (mut machine, dtb, builtin) = match efi::handover() {
        Some(efi) => match uefi::start(&efi, dtb_pa) {
            Ok(start) => {
                firmware = Firmware::Uefi(start.uefi);
                (start.machine, start.dtb, None)
            }
            Err(why) => {
                semihosting::probe_and_enable();
                fatal(format_args!("{why}"))
            }
        },
        None => flat_image_machine(dtb_pa, image),
    };
    let cmdline = Cmdline(&machine.bootargs);
    if cmdline.has("semihosting") {
        semihosting::enable();
    }
    if let Some(l) = cmdline.get("loglevel") {
        match klog::parse_level(l) {
            Some(level) => log::set_max_level(level),
            None => log::warn!(
                "loglevel={l}: unknown level, keeping info (use error|warn|info|debug|trace or 1-5)"
            ),
        }
    }
    psci::set_conduit(machine.psci.as_ref().map(|p| p.method));

    ends.device_tree = cpu::counter();
    log::debug!("boot: machine description read");
    // SAFETY: once, from the boot CPU's entry, on the early tables, before anything used frames
    // or virtual memory; `machine` is the device tree's, the ACPI tables' or the built-in
    // description the board was identified by, `image` where the loader put the image, `dtb`
    // where it put the tree.
    if let Err(e) = unsafe { mm::boot::init(&machine, image, dtb) } {
        fatal(format_args!("memory: {e}"));
    }
    // ACPI tables are RAM that only the linear map reaches: they are read now.
    if let Firmware::Uefi(u) = &mut firmware
        && u.description == Description::Acpi
    {
        let rsdp = u.rsdp.unwrap_or(0);
        match uefi::describe_acpi(rsdp, &mut machine) {
            Ok(info) => u.acpi = Some(info),
            Err(e) => {
                // Where the reason can be seen: the SPCR's console if it has one, semihosting.
                semihosting::probe_and_enable();
                let _ = start_console(&machine);
                fatal(format_args!("{e}"));
            }
        }
        psci::set_conduit(machine.psci.as_ref().map(|p| p.method));
    }
    ends.memory = cpu::counter();
    log::debug!("boot: init_mm built and in use");
    if let Err(e) = start_console(&machine) {
        log::warn!("console: {e}; output goes to the early buffer only");
    }
    // Debug exceptions and SError on, IRQs still off: Linux's setup_arch does the same
    // `local_daif_restore(DAIF_PROCCTX_NOIRQ)` once its early console is up, so that an SError is
    // reported where someone reads it. One raised earlier (by the firmware, say) was held
    // pending and is taken here.
    daif::local_daif_restore(Daif::PROCCTX_NOIRQ);
    ends.console = cpu::counter();
    // Said once the console is up: the early buffer would also copy it to semihosting.
    if let Some((name, summary, why)) = &builtin {
        log::warn!("{why}");
        log::warn!("no device tree from the loader: using the built-in {name} description");
        log::info!("built-in {name}: {summary}");
    }
    let boot: &'static BootInfo = alloc::boxed::Box::leak(alloc::boxed::Box::new(BootInfo {
        machine,
        entry_el,
        image_phys: image,
        dtb,
        builtin: builtin.map(|(name, _, _)| name),
        firmware,
    }));
    BOOT.call_once(|| boot);
    banner(boot);
    ends.banner = cpu::counter();
    start_cpus(boot);
    ends.cpus = cpu::counter();
    crate::devices::init_at_boot(&boot.machine);
    ends.log();
    // Fault injection (`fail=`) starts only now: boot's own mappings must not be failed.
    if let Err(e) = mm::fault_inject::setup(boot.cmdline().get("fail")) {
        fatal(format_args!("{e}"));
    }
    // SAFETY: `__initmm_main` is defined by the `entry!` macro in the binary being linked.
    unsafe { __initmm_main(boot) }
}

/// A built-in description's name, one-line summary, and why it was used.
type BuiltinUsed = (&'static str, &'static str, NoDtb);

/// The machine on a flat-Image boot: the device tree at x0, or a built-in description when x0
/// holds none.
fn flat_image_machine(dtb_pa: u64, image: Region) -> (Machine, Region, Option<BuiltinUsed>) {
    match read_device_tree(dtb_pa) {
        Ok((m, dtb)) => (m, dtb, None),
        Err(e) => {
            // Without a device tree there is no command line to say how to exit: find out
            // whether semihosting answers (it faults harmlessly when absent).
            semihosting::probe_and_enable();
            let why = match e {
                DtbError::Absent(why) => why,
                DtbError::Broken(e) => fatal(format_args!("{e}")),
            };
            let b = platform::builtin_machine(loader_data(dtb_pa));
            if !b
                .machine
                .ram
                .iter()
                .any(|r| r.contains(image.base) && r.contains(image.base + image.size - 1))
            {
                fatal(format_args!(
                    "{why}, and the built-in {} description's RAM does not hold the image at {:#x}",
                    b.name, image.base
                ));
            }
            let dtb = Region {
                base: dtb_pa,
                size: 0,
            };
            (b.machine, dtb, Some((b.name, b.summary, why)))
        }
    }
}

/// Counter values at the start of `kernel_entry` (the log's time 0) and at the end of each boot
/// phase.
#[derive(Default)]
struct BootPhases {
    start: u64,
    device_tree: u64,
    memory: u64,
    console: u64,
    banner: u64,
    cpus: u64,
}

impl BootPhases {
    /// Say, at `loglevel=debug`, where boot's time went. What precedes `kernel_entry` (the entry
    /// code, `.bss`, the early tables) shows as the counter's value at the start: on QEMU the
    /// counter starts at 0 when the machine does.
    fn log(&self) {
        let us =
            |from: u64, to: u64| to.saturating_sub(from) * 1_000_000 / cpu::counter_frequency();
        log::debug!(
            "boot: every CPU online {} us after the first timestamp (counter at it: {} us): \
             device tree and command line {} us, memory {} us, console {} us, banner {} us, \
             interrupts and CPUs {} us",
            us(self.start, self.cpus),
            us(0, self.start),
            us(self.start, self.device_tree),
            us(self.device_tree, self.memory),
            us(self.memory, self.console),
            us(self.console, self.banner),
            us(self.banner, self.cpus),
        );
    }
}

/// Why x0 gave no machine description.
#[derive(Debug)]
enum DtbError {
    /// x0 points at no device tree at all: the kernel boots on a built-in description.
    Absent(NoDtb),
    /// A device tree that is malformed: booting on a guess would hide the loader's bug.
    Broken(BadDtb),
}

/// x0 points at no device tree at all.
#[derive(Debug)]
enum NoDtb {
    /// The early window maps nothing at x0 (null, or not RAM).
    Unmapped { x0: u64 },
    /// What x0 points at has no FDT magic (an ATAG list, usually).
    BadMagic { x0: u64, magic: u32 },
}

impl fmt::Display for NoDtb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unmapped { x0 } => write!(
                f,
                "no usable device tree: x0 = {x0:#x} at entry (boot with a flat Image so that the loader passes one)"
            ),
            Self::BadMagic { x0, magic } => {
                write!(f, "x0 = {x0:#x}: {}", FdtError::BadMagic { magic })
            }
        }
    }
}

/// The device tree at x0 is malformed.
#[derive(Debug)]
enum BadDtb {
    /// Its header is (anything but the magic).
    Header { x0: u64, error: FdtError },
    /// Its `totalsize` is more than the early window maps for it.
    TooLarge { x0: u64, size: u64 },
    /// The blob itself (see [`devicetree::parse`]).
    Parse(DtError),
}

impl fmt::Display for BadDtb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { x0, error } => write!(f, "x0 = {x0:#x}: {error}"),
            Self::TooLarge { x0, size } => write!(
                f,
                "device tree at {x0:#x} is {size} bytes: more than the {} MiB the kernel maps for it",
                early::MAX_FDT_SIZE >> 20
            ),
            Self::Parse(e) => e.fmt(f),
        }
    }
}

/// Find, check and parse the device tree the loader passed in x0, which the early linear window
/// maps (`early::fdt_window`: as much as its header's `totalsize` says, up to 2 MiB).
fn read_device_tree(dtb_pa: u64) -> Result<(Machine, Region), DtbError> {
    let (pa, mapped, _) = early::fdt_window();
    debug_assert_eq!(pa, dtb_pa);
    if mapped < 64 {
        return Err(DtbError::Absent(NoDtb::Unmapped { x0: dtb_pa }));
    }
    // SAFETY: the early linear window maps `mapped` (>= 64) bytes from `dtb_pa`, read-only.
    let head =
        unsafe { core::slice::from_raw_parts(phys_to_virt(PhysAddr(dtb_pa)).as_ptr::<u8>(), 64) };
    let size = match fdt_front::header_totalsize(head) {
        Ok(size) => size as u64,
        Err(FdtError::BadMagic { magic }) => {
            return Err(DtbError::Absent(NoDtb::BadMagic { x0: dtb_pa, magic }));
        }
        Err(error) => return Err(DtbError::Broken(BadDtb::Header { x0: dtb_pa, error })),
    };
    if size > mapped {
        return Err(DtbError::Broken(BadDtb::TooLarge { x0: dtb_pa, size }));
    }
    // SAFETY: the whole blob is inside what the early window maps (checked above), and the
    // loader handed it to the kernel, which reserves it below.
    let blob = unsafe {
        core::slice::from_raw_parts(phys_to_virt(PhysAddr(dtb_pa)).as_ptr::<u8>(), size as usize)
    };
    // `parse` reads the blob in one walk through the front door, which checks every token.
    let machine = devicetree::parse(blob).map_err(|e| DtbError::Broken(BadDtb::Parse(e)))?;
    Ok((machine, Region { base: dtb_pa, size }))
}

/// Up to 4 KiB of what x0 points at when it is no device tree (an ATAG list, usually), for a
/// built-in description to read; empty when the early window maps nothing there.
fn loader_data(pa: u64) -> &'static [u8] {
    let (mapped_pa, mapped, _) = early::fdt_window();
    if mapped_pa != pa {
        return &[];
    }
    let len = mapped.min(4096) as usize;
    // SAFETY: the early linear window maps `mapped` bytes from `pa` (the loader's data: RAM),
    // read-only; nothing writes it while the boot CPU reads it.
    unsafe { core::slice::from_raw_parts(phys_to_virt(PhysAddr(pa)).as_ptr::<u8>(), len) }
}

/// Why the console could not be started.
#[derive(Debug)]
enum ConsoleError {
    /// The device tree names no console.
    NotNamed,
    /// The registers of `regs` (for the log: "the PL011", ...) at `base` could not be mapped.
    Ioremap {
        regs: &'static str,
        base: u64,
        error: VmError,
    },
    /// The device tree names a UART the kernel has no driver for.
    NoDriver(Console),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotNamed => f.write_str("the device tree names no console (/chosen/stdout-path)"),
            Self::Ioremap { regs, base, error } => {
                write!(f, "ioremap of {regs} at {base:#x}: {error}")
            }
            Self::NoDriver(c) => {
                write!(f, "{} at {:#x}: no driver for {:?}", c.path, c.base, c.kind)
            }
        }
    }
}

/// Map the UART the device tree names and make it the console.
fn start_console(m: &Machine) -> Result<(), ConsoleError> {
    let c = m.console.as_ref().ok_or(ConsoleError::NotNamed)?;
    // The console's registers are mapped for the rest of the kernel's life: the mapping is kept.
    let ioremap = |regs, base, size| {
        mm::ioremap(PhysAddr(base), size)
            .map(mm::IoMem::leak)
            .map_err(|error| ConsoleError::Ioremap { regs, base, error })
    };
    match &c.kind {
        UartKind::Pl011 => {
            let va = ioremap("the PL011", c.base, drivers::pl011::MMIO_SIZE)?;
            // SAFETY: `va` maps the PL011's registers as device memory for the rest of the
            // kernel's life; only the console drives it.
            let uart = unsafe { drivers::pl011::Pl011::new(va.as_usize()) };
            uart.init(c.clock_hz, 115_200);
            console::set_device(console::Device::Pl011(uart));
            Ok(())
        }
        UartKind::Bcm2835Aux => {
            use drivers::mini_uart::{self, MiniUart};
            // AUX_ENABLES precedes the UART in the same page: map both when we can, so that the
            // UART is enabled even when the firmware did not do it (no enable_uart=1).
            let uart = match mini_uart::aux_base(c.base) {
                Some(aux) => {
                    let va = ioremap("the AUX block", aux, mini_uart::AUX_MMIO_SIZE)?;
                    // SAFETY: `va` maps the AUX block (AUX_ENABLES and the mini UART) as device
                    // memory for the rest of the kernel's life; only the console drives it, and
                    // nothing in the kernel drives the AUX SPI controllers.
                    unsafe { MiniUart::with_aux(va.as_usize()) }
                }
                None => {
                    let va = ioremap("the mini UART", c.base, mini_uart::MMIO_SIZE)?;
                    // SAFETY: `va` maps the mini UART's registers as device memory for the rest
                    // of the kernel's life; only the console drives it.
                    unsafe { MiniUart::new(va.as_usize()) }
                }
            };
            uart.init(c.clock_hz, 115_200);
            console::set_device(console::Device::MiniUart(uart));
            Ok(())
        }
        UartKind::Unknown(_) => Err(ConsoleError::NoDriver(c.clone())),
    }
}

/// Interrupts on the boot CPU, then every other CPU (`maxcpus=N` limits them, Linux-style).
fn start_cpus(b: &BootInfo) {
    if let Err(e) = smp::init_boot_cpu(&b.machine) {
        fatal(format_args!("{e}"));
    }
    let max = match b.cmdline().number("maxcpus") {
        Ok(n) => n.map_or(usize::MAX, |n| n.max(1) as usize),
        Err(e) => {
            log::warn!("{e}; starting every CPU");
            usize::MAX
        }
    };
    let t0 = cpu::counter();
    let failures = smp::bring_up(&b.machine, max);
    // Linux's lazy_max_pages(): the lazy-purge threshold grows with the CPUs.
    mm::kernel_vm().set_online_cpus(smp::online_cpus());
    for f in &failures {
        log::error!("CPU with MPIDR {:#x} did not come up: {}", f.mpidr, f.error);
    }
    let us = (cpu::counter() - t0) * 1_000_000 / cpu::counter_frequency();
    log::info!(
        "{} of {} CPUs online ({} us to start them)",
        smp::online_cpus(),
        b.machine.cpus.len(),
        us
    );
}

fn banner(b: &BootInfo) {
    let m = &b.machine;
    log::info!(
        "initmm {} ({})",
        env!("CARGO_PKG_VERSION"),
        option_env!("INITMM_GIT").unwrap_or("built from source")
    );
    log::info!("board: {}", m.model);
    let from = match (&b.firmware, b.builtin) {
        (Firmware::Uefi(u), _) => match (u.description, u.rsdp) {
            (Description::Acpi, rsdp) => {
                alloc::format!("from UEFI; ACPI tables (RSDP at {:#x})", rsdp.unwrap_or(0))
            }
            (Description::DeviceTree, _) => {
                alloc::format!("from UEFI; device tree at {:#x}", b.dtb.base)
            }
        },
        (Firmware::Flat, None) => alloc::format!("device tree at {:#x}", b.dtb.base),
        (Firmware::Flat, Some(name)) => alloc::format!(
            "no device tree (x0 = {:#x}): built-in {name} description",
            b.dtb.base
        ),
    };
    log::info!(
        "entered at EL{}; image at {:#x} ({} KiB with .bss), {from}",
        b.entry_el,
        b.image_phys.base,
        b.image_phys.size / 1024,
    );
    for r in &m.ram {
        log::info!(
            "RAM {:#011x}-{:#011x} ({} MiB)",
            r.base,
            r.base + r.size,
            r.size >> 20
        );
    }
    for r in &m.reserved {
        let unmapped = if m.no_map.contains(r) {
            " (no-map: never mapped)"
        } else {
            ""
        };
        log::info!(
            "reserved {:#011x}-{:#011x}{unmapped}",
            r.base,
            r.base + r.size
        );
    }
    let f = mm::frame::FRAMES.stats();
    log::info!(
        "frames: {} free of {} ({} MiB)",
        f.free,
        f.total,
        (f.total * layout::PAGE_SIZE) >> 20
    );
    log::info!("CPUs: {} found [{}]", m.cpus.len(), CpuList(&m.cpus));
    if let Some(c) = &m.console {
        log::info!("console: {} ({:?}) at {:#x}", c.path, c.kind, c.base);
    }
    if let Some(g) = &m.gic {
        log::info!(
            "interrupt controller: GIC {:?}, distributor {:#x}",
            g.version,
            g.dist.base
        );
    }
    if let Some(t) = &m.timer {
        log::info!(
            "timer: virtual timer interrupt {}, counter at {} Hz",
            t.virt_irq
                .map_or(String::from("not in the device tree"), |i| alloc::format!(
                    "PPI {i}"
                )),
            cpu::counter_frequency()
        );
    }
    log::info!("command line: \"{}\"", m.bootargs);
    let mut acpi = false;
    if let Firmware::Uefi(u) = &b.firmware {
        for n in &u.notes {
            log::warn!("{n}");
        }
        if let Some(a) = &u.acpi {
            acpi = true;
            acpi_banner(a);
        }
    }
    for n in &m.notes {
        if acpi {
            log::warn!("{n}");
        } else {
            log::warn!("device tree: {n}");
        }
    }
}

/// What the ACPI tables say beyond the machine: which tables there are, the PCIe windows.
fn acpi_banner(a: &crate::platform::acpi::AcpiInfo) {
    let mut names = String::new();
    for (sig, _, _) in &a.tables {
        names.push(' ');
        names.extend(
            sig.iter()
                .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' }),
        );
    }
    log::info!(
        "ACPI: XSDT at {:#x} lists{names}; FADT {}.{}",
        a.xsdt,
        a.fadt_version.0,
        a.fadt_version.1
    );
    for e in &a.ecam {
        log::info!(
            "ACPI: PCIe ECAM at {:#x}, segment {}, buses {}-{} (MCFG); its BAR windows and INTx \
             routing are in the DSDT's AML, which initmm does not interpret: not probed",
            e.base,
            e.segment,
            e.bus_start,
            e.bus_end
        );
    }
}

/// "MPIDR:enable-method" of each CPU, space-separated, written straight into the log line.
struct CpuList<'a>(&'a [devicetree::Cpu]);

impl core::fmt::Display for CpuList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{:#x}:{}", c.mpidr, method_name(&c.enable_method))?;
        }
        Ok(())
    }
}

fn method_name(m: &devicetree::EnableMethod) -> &str {
    match m {
        devicetree::EnableMethod::Psci => "psci",
        devicetree::EnableMethod::SpinTable { .. } => "spin-table",
        devicetree::EnableMethod::Other(s) => s,
        devicetree::EnableMethod::Missing => "none",
    }
}
