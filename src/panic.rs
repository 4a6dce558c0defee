//! Panics and machine exit: one coherent report, a backtrace, a failure status. Never a silent hang.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::aarch64::cpu::frame_pointer;
use crate::arch::aarch64::exceptions::{self, Unhandled};
use crate::arch::aarch64::{cpu, psci, semihosting};
use crate::console::{self, Writer};
use crate::hook::Hook;

/// Exit status of a kernel that panicked.
pub const PANIC_EXIT: u32 = 101;
/// Exit status when the fault path itself faulted.
pub const DOUBLE_FAULT_EXIT: u32 = 102;

/// Adds context to a panic report, before it (the test harness names the running test).
static CONTEXT: Hook<fn(&mut Writer<'_>)> = Hook::new();
/// CPUs panicking now, as a bit mask: a second panic on the same CPU is a panic in the panic path.
static PANICKING: AtomicUsize = AtomicUsize::new(0);
/// 1 + the CPU that reports the panic: the first to panic; any other panicking CPU parks.
static REPORTER: AtomicUsize = AtomicUsize::new(0);

/// Install the function that writes context before a panic report.
pub fn set_context_hook(f: fn(&mut Writer<'_>)) {
    CONTEXT.set(f);
}

/// Report through this module what the exception handler cannot handle (the architecture code
/// cannot name it: see the layering in the crate documentation). First thing at boot.
pub fn init() {
    exceptions::set_reporter(report_exception);
}

/// Print the decoded exception and its registers, as one block; for a fault in the fault path,
/// go on to report that and stop (the architecture code panics after the others).
fn report_exception(u: &Unhandled<'_>) {
    console::with_locked(|w| {
        use core::fmt::Write;
        let _ = write!(w, "{u}");
    });
    if u.nested() {
        let f = u.frame;
        fault_in_fault_path(u.cpu, f.esr, f.far, f.elr, f.x[29]);
    }
}

/// End the machine with `code` as the QEMU exit status (semihosting), else power off via PSCI,
/// else park.
pub fn exit(code: u32) -> ! {
    semihosting::exit(code);
    if psci::available() {
        // SYSTEM_OFF carries no status: say it, for whoever reads the console (the runner
        // without semihosting, under KVM or HVF).
        crate::kprintln!("[powering off with status {code}]");
        if let Err(e) = psci::system_off() {
            crate::kprintln!("[SYSTEM_OFF returned {e}]");
        }
    }
    crate::kprintln!(
        "[machine halted with status {code}: no semihosting and no PSCI to power off]"
    );
    cpu::halt()
}

/// The kernel or exception stack that `addr` lies on, as `[bottom, top)`.
///
/// Every stack sits right above a registered guard page and has a fixed size (the boot CPU's in
/// the image, the others vmalloc'ed by SMP bring-up), so the guard registry is also a map of
/// every stack: the backtrace walker uses it to follow only frame pointers that point into one.
fn stack_containing(addr: u64) -> Option<(u64, u64)> {
    use crate::mm::layout::PAGE_SIZE;
    use crate::smp::{EXCEPTION_STACK_SIZE, STACK_SIZE};
    (0..cpu::MAX_CPUS)
        .flat_map(|c| [(c, false), (c, true)])
        .find_map(|(c, exception)| {
            let guard = cpu::stack_guard(c, exception);
            if guard == 0 {
                return None;
            }
            let bottom = guard + PAGE_SIZE as u64;
            let size = if exception {
                EXCEPTION_STACK_SIZE
            } else {
                STACK_SIZE
            };
            let top = bottom + size as u64;
            (bottom..top).contains(&addr).then_some((bottom, top))
        })
}

/// Walk the frame-pointer chain from `fp` and print up to 32 code addresses, one per line as
/// `  #N  0x... function+0xoff`, named from the image's own symbol table ([`crate::kallsyms`]);
/// the host runner (platform/qemu/symbolize.py) adds the source file and line when it can.
///
/// Each frame record must lie on a known kernel stack (so a corrupted chain ends the walk
/// instead of faulting in the middle of a panic report) and, on the same stack, lie above the
/// previous one. The walk may change stacks: the exception entry code pushes a record that links
/// the handler's frames on the exception stack to the interrupted code's on its kernel stack.
pub fn print_backtrace(w: &mut Writer<'_>, mut fp: u64) {
    use core::fmt::Write;
    let _ = writeln!(
        w,
        "backtrace (call sites, or the interrupted PC for an exception):"
    );
    let mut stack = stack_containing(fp);
    // Runs of one address (deep recursion, as in a stack overflow) print once, then a count.
    let (mut last, mut repeats) = (0, 0);
    for i in 0..32 {
        let Some((_, top)) = stack else {
            if fp != 0 {
                let _ = writeln!(w, "  (frame pointer {fp:#x} is on no kernel stack: stop)");
            }
            break;
        };
        if fp & 0xf != 0 || fp + 16 > top {
            break;
        }
        let rec = fp as *const [u64; 2];
        // SAFETY: `fp` is 16-byte aligned and the 16-byte record lies inside a registered kernel
        // stack (checked above), which stays mapped for the kernel's life; the values read are
        // plain integers, whatever the chain's state.
        let [next, lr] = unsafe { rec.read_volatile() };
        if lr == 0 {
            break;
        }
        // A return address points after the call: the call itself is 4 bytes earlier.
        let pc = lr.saturating_sub(4);
        if pc == last {
            repeats += 1;
        } else {
            if repeats > 0 {
                let _ = writeln!(w, "      ... {repeats} more at {last:#x}");
            }
            let name = crate::kallsyms::Symbolic {
                addr: pc,
                angled: false,
            };
            let _ = writeln!(w, "  #{i:<2} {pc:#018x}{name}");
            (last, repeats) = (pc, 0);
        }
        let next_stack = stack_containing(next);
        if next_stack == stack && next <= fp {
            break;
        }
        fp = next;
        stack = next_stack;
    }
    if repeats > 0 {
        let _ = writeln!(w, "      ... {repeats} more at {last:#x}");
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // No interrupts from here on: in particular no stop IPI from a CPU panicking at the same time.
    crate::arch::aarch64::daif::irqs_disable();
    let me = cpu::id();
    let bit = 1usize << me;
    if PANICKING.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
        console::with_locked_stealing(|w| {
            use core::fmt::Write;
            let _ = write!(
                w,
                "\n*** PANIC WHILE PANICKING on cpu{me}: {}",
                info.message()
            );
            if let Some(l) = info.location() {
                let _ = write!(w, "\n    at {}:{}:{}", l.file(), l.line(), l.column());
            }
            let _ = writeln!(w);
            print_backtrace(w, frame_pointer());
        });
        exit(DOUBLE_FAULT_EXIT);
    }
    if REPORTER
        .compare_exchange(0, me + 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // Another CPU panicked first and reports; it is stopping this one anyway.
        crate::smp::park_stopped();
    }
    crate::smp::ipi::stop_other_cpus();
    let fp = frame_pointer();
    console::with_locked_stealing(|w| {
        use core::fmt::Write;
        if let Some(ctx) = CONTEXT.get() {
            ctx(w);
        }
        let _ = write!(w, "\n*** KERNEL PANIC on cpu{me}: {}", info.message());
        if let Some(l) = info.location() {
            let _ = write!(w, "\n    at {}:{}:{}", l.file(), l.line(), l.column());
        }
        let _ = writeln!(w);
        print_backtrace(w, fp);
    });
    exit(PANIC_EXIT)
}

/// CPUs inside `fault_in_fault_path`, as a bit mask.
static IN_FAULT_PATH: AtomicUsize = AtomicUsize::new(0);

/// A synchronous exception taken while handling an exception: report the essentials and a
/// backtrace from the faulting frame (`fp`, its x29), and stop. A fault while doing that (the
/// third on this CPU) exits at once: nothing is left that could report it.
fn fault_in_fault_path(cpu: usize, esr: u64, far: u64, elr: u64, fp: u64) -> ! {
    let bit = 1usize << (cpu % usize::BITS as usize);
    if IN_FAULT_PATH.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
        exit(DOUBLE_FAULT_EXIT);
    }
    console::with_locked_stealing(|w| {
        use core::fmt::Write;
        let _ = writeln!(
            w,
            "*** FAULT IN THE FAULT PATH on cpu{cpu}: {} (ESR {esr:#x}, ELR {elr:#x}{}); stopping",
            crate::arch::aarch64::esr::Summary {
                esr: crate::arch::aarch64::esr::Esr(esr),
                far
            },
            crate::kallsyms::Symbolic {
                addr: elr,
                angled: true
            }
        );
        print_backtrace(w, fp);
    });
    exit(DOUBLE_FAULT_EXIT)
}
