//! The device-tree front door and everything the kernel reads out of the `Machine` it yields.
//!
//! Mirrors `kernel::read_device_tree` (parse: one walk of the blob as the loader left it) and
//! what boot does with the result (banner formatting, `mm::boot`'s region arithmetic, the command
//! line, the GIC and UART helpers fed from DT values), plus the no-DT fallback that reads the same
//! bytes as an ATAG list. Properties checked besides "no panic": sanitizing is idempotent, the
//! front door's and the parser's verdicts agree, parsing the blob reads what parsing its
//! sanitized copy reads, every RAM/reserved region has a representable end, and one input never
//! allocates more than [`ALLOC_CAP`] bytes at once.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use initmm::cmdline::Cmdline;
use initmm::drivers::{gic, mini_uart};
use initmm::mm::region::{self, Region};
use initmm::platform::devicetree::{self, DtError, EnableMethod, Machine};
use initmm::platform::{self, fdt_front};
use libfuzzer_sys::fuzz_target;

/// Live heap bytes, and the high-water mark since the current input started.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// For a blob of at most 64 KiB (`-max_len=65536`), parsing must stay within a few MiB.
const ALLOC_CAP: usize = 8 << 20;

struct Counting;

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the counters
// are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout, whose contract the caller upholds.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);

    let _ = fdt_front::header_totalsize(data);
    // The kernel's path: one walk of the blob as it is.
    let parsed = devicetree::parse(data);
    match fdt_front::sanitize(data) {
        Ok(clean) => {
            assert_eq!(fdt_front::header_totalsize(&clean), Ok(clean.len()));
            assert_eq!(
                fdt_front::sanitize(&clean).as_ref(),
                Ok(&clean),
                "not idempotent"
            );
            assert_eq!(
                devicetree::parse(&clean),
                parsed,
                "the blob and its sanitized copy read differently"
            );
            match &parsed {
                Ok(m) => boot_reads(m, false),
                Err(e) => {
                    assert!(
                        !matches!(e, DtError::Fdt(_)),
                        "parse refused a clean blob: {e}"
                    );
                    assert!(!format!("{e}").is_empty());
                }
            }
        }
        Err(e) => {
            assert!(format!("{e}").starts_with("device tree: "));
            assert_eq!(parsed, Err(DtError::Fdt(e)));
        }
    }

    // The no-device-tree path reads the same bytes as an ATAG list.
    let b = platform::builtin_machine(data);
    boot_reads(&b.machine, true);

    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert!(
        peak <= ALLOC_CAP,
        "{peak} bytes allocated for a {}-byte input",
        data.len()
    );
});

/// What boot and the drivers compute from a parsed machine.
fn boot_reads(m: &Machine, builtin: bool) {
    let mut log = format!("{m:?}");
    // The banner prints `base + size` of every RAM and reserved region.
    for r in m.ram.iter().chain(&m.reserved) {
        assert!(r.size > 0, "empty region {r:?}");
        assert!(r.end().is_some(), "region {r:?} has no representable end");
        let _ = writeln!(
            log,
            "{:#011x}-{:#011x} ({} MiB)",
            r.base,
            r.base + r.size,
            r.size >> 20
        );
    }
    assert!(!m.ram.is_empty());
    assert!(!m.cpus.is_empty());
    // RAM is sorted with overlaps merged, as `Machine::ram` documents.
    for w in m.ram.windows(2) {
        assert!(
            w[0].end().is_some_and(|e| e <= w[1].base),
            "RAM not sorted/merged: {w:?}"
        );
    }
    // mm::boot::init: RAM minus reservations, the image and the DTB, then the early window.
    let image = Region::new(0x4020_0000, 0x20_0000);
    let dtb = Region::new(0x4800_0000, 0x10_0000);
    let mut holes = m.reserved.clone();
    holes.push(image);
    holes.push(dtb);
    let free = region::subtract(&m.ram, &holes);
    for r in &free {
        assert!(m.ram.iter().any(|ram| ram.contains(r.base)));
        assert!(!m.reserved.iter().any(|h| h.contains(r.base)));
        let _ = region::align_inward(*r, 4096);
    }
    let window = [Region::new(0x4000_0000, 1 << 30)];
    let outside = region::subtract(&free, &window);
    let _ = region::subtract(&free, &outside);
    let _ = region::union(&m.ram);

    let cmd = Cmdline(&m.bootargs);
    let _ = (cmd.has("semihosting"), cmd.get("loglevel"));
    if let Err(e) = cmd.number("maxcpus") {
        let _ = writeln!(log, "{e}");
    }

    for c in &m.cpus {
        let method = match &c.enable_method {
            EnableMethod::Psci => "psci",
            EnableMethod::SpinTable { .. } => "spin-table",
            EnableMethod::Other(s) => s,
            EnableMethod::Missing => "none",
        };
        let _ = writeln!(log, "{:#x}:{method}", c.mpidr);
        // cpu_boot writes the entry point there through the linear map.
        if let EnableMethod::SpinTable { release_addr: a } = c.enable_method {
            let word = |r: &Region| r.contains(a) && r.contains(a + 7);
            assert!(
                a % 8 == 0 && m.ram.iter().any(word),
                "release address {a:#x} not in RAM"
            );
            assert!(
                m.reserved.iter().any(word),
                "release address {a:#x} not reserved"
            );
        }
        let _ = gic::affinity_u32(c.mpidr);
        let _ = gic::sgi1r_to(1, c.mpidr);
    }
    if let Some(c) = &m.console {
        let _ = writeln!(log, "console: {} ({:?}) at {:#x}", c.path, c.kind, c.base);
        let _ = mini_uart::aux_base(c.base);
        if let Some(clk) = c.clock_hz {
            let _ = mini_uart::baud_divisor(clk, 115_200);
            // The PL011's divisor arithmetic (drivers::pl011::init is hardware-only).
            let _ = (u64::from(clk) * 4 + 115_200 / 2) / 115_200;
        }
    }
    if let Some(g) = &m.gic {
        let _ = (
            gic::arch_rev_matches(g.version, 2),
            g.dist.end(),
            g.cpu_or_redist.end(),
        );
    }
    if let Some(t) = &m.timer {
        for irq in [t.virt_irq, t.phys_irq].into_iter().flatten() {
            let _ = gic::icfgr_edge_bit(irq);
        }
    }
    for n in &m.notes {
        let _ = writeln!(log, "device tree: {n}");
    }
    if builtin {
        assert!(m.notes.is_empty());
    }
    std::hint::black_box(log);
}
