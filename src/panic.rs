//! Panics and machine exit: one coherent report, a backtrace, a failure status. Never a silent hang.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::aarch64::{cpu, psci, semihosting};

/// Exit status of a kernel that panicked.
pub const PANIC_EXIT: u32 = 101;
/// Exit status when the fault path itself faulted.
pub const DOUBLE_FAULT_EXIT: u32 = 102;

/// Hook run at the start of a panic to stop the other CPUs (installed by SMP bring-up).
static STOP_OTHERS: AtomicUsize = AtomicUsize::new(0);
/// Hook that adds context to a panic report (the test harness names the running test).
static CONTEXT: AtomicUsize = AtomicUsize::new(0);
/// CPUs panicking now, as a bit mask: a second panic on the same CPU is a panic in the panic path.
static PANICKING: AtomicUsize = AtomicUsize::new(0);
/// 1 + the CPU that reports the panic: the first to panic; any other panicking CPU parks.
static REPORTER: AtomicUsize = AtomicUsize::new(0);

pub fn set_stop_others(f: fn()) {
    STOP_OTHERS.store(f as usize, Ordering::Release);
}

pub fn set_context_hook(f: fn(&mut crate::console::Writer<'_>)) {
    CONTEXT.store(f as usize, Ordering::Release);
}

/// End the machine with `code` as the QEMU exit status (semihosting), else power off via PSCI,
/// else park.
pub fn exit(code: u32) -> ! {
    semihosting::exit(code);
    if psci::available() {
        psci::system_off();
    }
    crate::kprintln!(
        "[machine halted with status {code}: no semihosting and no PSCI to power off]"
    );
    cpu::halt()
}

/// Walk the frame-pointer chain from `fp` and print up to 32 return addresses.
pub fn print_backtrace(w: &mut crate::console::Writer<'_>, mut fp: u64) {
    use core::fmt::Write;
    let _ = writeln!(
        w,
        "backtrace (return addresses; addr2line -e <kernel ELF> turns them into lines):"
    );
    for i in 0..32 {
        // Frame records are 16-byte aligned and live in kernel memory (upper half).
        if fp == 0 || fp & 0xf != 0 || fp < crate::mm::layout::PAGE_OFFSET {
            break;
        }
        let rec = fp as *const [u64; 2];
        // SAFETY: `fp` came from the x29 chain the compiler maintains (force-frame-pointers);
        // it points at a 16-byte frame record on a mapped kernel stack. A corrupted chain that
        // points at unmapped memory faults, which the nested-fault path reports and ends.
        let [next, lr] = unsafe { rec.read_volatile() };
        if lr == 0 {
            break;
        }
        let _ = writeln!(w, "  #{i:<2} {:#018x}", lr.saturating_sub(4));
        if next <= fp {
            break;
        }
        fp = next;
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // No interrupts from here on: in particular no stop IPI from a CPU panicking at the same time.
    crate::arch::aarch64::cpu_boot::irqs_disable();
    let me = cpu::id();
    let bit = 1usize << me;
    if PANICKING.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
        crate::console::with_locked_stealing(|w| {
            use core::fmt::Write;
            let _ = writeln!(
                w,
                "\n*** PANIC WHILE PANICKING on cpu{me}: {}",
                info.message()
            );
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
    let stop = STOP_OTHERS.load(Ordering::Acquire);
    if stop != 0 {
        // SAFETY: STOP_OTHERS only holds a `fn()` stored by `set_stop_others`.
        let stop = unsafe { core::mem::transmute::<usize, fn()>(stop) };
        stop();
    }
    let fp: u64;
    // SAFETY: reading the frame pointer register has no side effects.
    unsafe { core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack)) };
    crate::console::with_locked_stealing(|w| {
        use core::fmt::Write;
        let ctx = CONTEXT.load(Ordering::Acquire);
        if ctx != 0 {
            // SAFETY: CONTEXT only holds a function stored by `set_context_hook`.
            let ctx =
                unsafe { core::mem::transmute::<usize, fn(&mut crate::console::Writer<'_>)>(ctx) };
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

/// A synchronous exception taken while handling an exception: report the essentials and stop.
pub fn fault_in_fault_path(cpu: usize, esr: u64, far: u64, elr: u64) -> ! {
    crate::console::with_locked_stealing(|w| {
        use core::fmt::Write;
        let _ = writeln!(
            w,
            "*** FAULT IN THE FAULT PATH on cpu{cpu}: {} (ESR {esr:#x}, ELR {elr:#x}); stopping",
            crate::arch::aarch64::esr::Summary {
                esr: crate::arch::aarch64::esr::Esr(esr),
                far
            }
        );
    });
    exit(DOUBLE_FAULT_EXIT)
}
