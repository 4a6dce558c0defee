//! The kernel console: one UART chosen by the device tree, shared by all CPUs.
//!
//! Output written before the UART is mapped (the MMU and `ioremap` come first) is kept in an early
//! buffer and replayed once the device is set. One lock serialises whole messages, so lines from
//! several CPUs never interleave; it remembers its owner, so a fault or panic while printing
//! re-enters instead of deadlocking, and a panic on one CPU can take it from a CPU that was stopped
//! while holding it.

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::aarch64::{cpu, semihosting};
use crate::drivers::mini_uart::MiniUart;
use crate::drivers::pl011::Pl011;

/// The console device.
pub enum Device {
    /// An Arm PL011 (QEMU virt's UART, the Pi 4's `serial0`).
    Pl011(Pl011),
    /// The Raspberry Pi's mini UART (`serial1` on the Pi 4, GPIO 14/15).
    MiniUart(MiniUart),
}

impl Device {
    fn putc(&self, b: u8) {
        match self {
            Self::Pl011(u) => u.putc(b),
            Self::MiniUart(u) => u.putc(b),
        }
    }
}

const EARLY_BUF: usize = 16 * 1024;

struct State {
    device: Option<Device>,
    early: [u8; EARLY_BUF],
    early_len: usize,
    /// `early[..early_echoed]` has already gone out through semihosting: not replayed.
    early_echoed: usize,
    early_lost: usize,
}

struct ConsoleCell(UnsafeCell<State>);

// SAFETY: `State` is only reached through `with_locked`, which holds `OWNER` (or is the owner
// re-entering on the same CPU, which cannot run concurrently with itself).
unsafe impl Sync for ConsoleCell {}

static STATE: ConsoleCell = ConsoleCell(UnsafeCell::new(State {
    device: None,
    early: [0; EARLY_BUF],
    early_len: 0,
    early_echoed: 0,
    early_lost: 0,
}));

/// 0 = free, otherwise 1 + the owning CPU.
static OWNER: AtomicUsize = AtomicUsize::new(0);

/// Writes to the console; obtained through [`with_locked`].
pub struct Writer<'a>(&'a mut State);

impl Writer<'_> {
    fn put(&mut self, b: u8) {
        let st = &mut *self.0;
        match &st.device {
            Some(d) => d.putc(b),
            None => {
                let kept = st.early_len < EARLY_BUF;
                if kept {
                    st.early[st.early_len] = b;
                    st.early_len += 1;
                } else {
                    st.early_lost += 1;
                }
                // Under semihosting, show early output at once (the kernel may die before the
                // UART is up), catching up on what was buffered before semihosting was known
                // to be on; the replay then skips it, so nothing prints twice.
                if semihosting::enabled() {
                    semihosting::write_bytes(&st.early[st.early_echoed..st.early_len]);
                    st.early_echoed = st.early_len;
                    if !kept {
                        semihosting::write_bytes(&[b]);
                    }
                }
            }
        }
    }
}

impl fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

/// Run `f` with exclusive use of the console.
pub fn with_locked<R>(f: impl FnOnce(&mut Writer<'_>) -> R) -> R {
    lock_and(None, f)
}

/// Like [`with_locked`], but take the console from a CPU that has held it for too long (it was
/// stopped, or is wedged): for panic reports.
pub fn with_locked_stealing<R>(f: impl FnOnce(&mut Writer<'_>) -> R) -> R {
    lock_and(Some(cpu::counter() + cpu::counter_frequency() / 5), f)
}

/// Take the console (until `steal_at`, a counter value, if given) and run `f`.
fn lock_and<R>(steal_at: Option<u64>, f: impl FnOnce(&mut Writer<'_>) -> R) -> R {
    let me = cpu::id() + 1;
    let reentered = OWNER.load(Ordering::Relaxed) == me;
    if !reentered {
        while OWNER
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
            if steal_at.is_some_and(|t| cpu::counter() >= t) {
                OWNER.store(me, Ordering::Release);
                break;
            }
        }
    }
    // SAFETY: this CPU owns the console (see `ConsoleCell`); a re-entered call happens only from
    // an exception taken inside the outer call on this CPU, which does not run concurrently.
    let r = f(&mut Writer(unsafe { &mut *STATE.0.get() }));
    if !reentered {
        OWNER.store(0, Ordering::Release);
    }
    r
}

/// Install the console device and replay what was printed before it existed.
pub fn set_device(device: Device) {
    with_locked(|w| {
        let st = &mut *w.0;
        st.device = Some(device);
        if let Some(d) = &st.device {
            for &b in &st.early[st.early_echoed..st.early_len] {
                d.putc(b);
            }
        }
        st.early_len = 0;
        st.early_echoed = 0;
        let lost = core::mem::take(&mut st.early_lost);
        if lost > 0 {
            let _ = fmt::write(
                w,
                format_args!("[console: {lost} early bytes did not fit the buffer]\n"),
            );
        }
    });
}

/// Is a UART attached yet?
pub fn has_device() -> bool {
    with_locked(|w| w.0.device.is_some())
}

/// `print!` to the console, as one locked unit.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => {
        $crate::console::with_locked(|w| { let _ = core::fmt::Write::write_fmt(w, format_args!($($arg)*)); })
    };
}

/// `println!` to the console, as one locked unit: the line and its newline are not interleaved
/// with another CPU's output.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => {
        $crate::console::with_locked(|w| {
            let _ = core::fmt::Write::write_fmt(w, format_args!($($arg)*));
            let _ = core::fmt::Write::write_str(w, "\n");
        })
    };
}
