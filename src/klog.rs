//! The `log` facade's backend: `[seconds.micros cpuN LEVEL] message` on the console.

use core::sync::atomic::{AtomicU64, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::arch::aarch64::cpu;

struct KernelLog;

static LOGGER: KernelLog = KernelLog;
/// Counter value at boot: log times are seconds since then.
static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Seconds and microseconds since boot.
pub fn uptime() -> (u64, u64) {
    let ticks = cpu::counter().saturating_sub(BOOT_COUNTER.load(Ordering::Relaxed));
    let f = cpu::counter_frequency();
    (ticks / f, (ticks % f) * 1_000_000 / f)
}

impl Log for KernelLog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        // The driver crates' own chatter (virtio-drivers says what it negotiated at Info) is
        // shown one level down: the kernel's probe log says what matters. Everything else (the
        // kernel, a test kernel's own crate) at its level.
        let level = if CHATTY.iter().any(|c| m.target().starts_with(c)) {
            demote(m.level())
        } else {
            m.level()
        };
        level <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let (s, us) = uptime();
        let level = match r.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        crate::kprintln!("[{s:5}.{us:06} cpu{} {level}] {}", cpu::id(), r.args());
    }

    fn flush(&self) {}
}

/// The crates whose log lines are shown one level down (their module paths' first part).
const CHATTY: [&str; 2] = ["virtio_drivers", "smoltcp"];

/// One level less urgent (Info becomes Debug); Trace stays.
fn demote(l: Level) -> Level {
    match l {
        Level::Error => Level::Warn,
        Level::Warn => Level::Info,
        Level::Info => Level::Debug,
        Level::Debug | Level::Trace => Level::Trace,
    }
}

/// Start logging at `Info`; the command line's `loglevel=` may change it later.
pub fn init() {
    BOOT_COUNTER.store(cpu::counter(), Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Parse a `loglevel=` value: a name (`error` .. `trace`, `off`) or a number 0..5.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s {
        "off" | "0" => LevelFilter::Off,
        "error" | "1" => LevelFilter::Error,
        "warn" | "2" => LevelFilter::Warn,
        "info" | "3" => LevelFilter::Info,
        "debug" | "4" => LevelFilter::Debug,
        "trace" | "5" => LevelFilter::Trace,
        _ => return None,
    })
}
