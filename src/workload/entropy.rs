//! `entropy`: every CPU reads from the first virtio-rng device and checks what it gets is not
//! constant (not one byte value throughout, and not the same as its previous read).
//!
//! Takes from [`Params`]: `cpus`, and `seconds=` or `iterations=` (reads per CPU).

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;

use super::common::{OnCpu, Progress};
use super::{Params, Report, Workload};
use initmm::arch::aarch64::cpu;
use initmm::devices::rng::RngError;
use initmm::smp::runtime::on_cpus;

/// The `entropy` workload.
pub struct Entropy;

/// Bytes per read.
const READ: usize = 64;

/// What `entropy` can find wrong.
#[derive(Debug)]
pub enum EntropyFailure {
    /// No virtio-rng device was probed.
    NoDevice,
    /// A read failed.
    Read(RngError),
    /// A read gave one byte value throughout.
    Constant {
        /// The value.
        byte: u8,
        /// How many bytes.
        len: usize,
    },
    /// Two reads in a row gave the same bytes.
    Repeated,
}

impl fmt::Display for EntropyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => f.write_str(
                "no virtio-rng device was probed (attach one: platform/qemu/run.sh --rng)",
            ),
            Self::Read(e) => write!(f, "{e}"),
            Self::Constant { byte, len } => write!(f, "{len} bytes all {byte:#04x}"),
            Self::Repeated => f.write_str("two reads in a row gave the same bytes"),
        }
    }
}

impl core::error::Error for EntropyFailure {}

/// Is `b` (at least 8 bytes) one value throughout?
pub fn constant(b: &[u8]) -> Option<u8> {
    let first = *b.first()?;
    (b.len() >= 8 && b.iter().all(|&x| x == first)).then_some(first)
}

impl Workload for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    /// Only when named: it needs a virtio-rng device.
    fn in_all(&self) -> bool {
        false
    }

    fn run(&self, p: &Params) -> Report {
        let mut report = Report::new(self.name(), p.cpus);
        let Some(rng) = initmm::devices::get().and_then(|d| d.rngs.first()) else {
            report.fail(EntropyFailure::NoDevice);
            return report.finish();
        };
        let frames_before = initmm::mm::free_frames();
        let progress = Progress::new(self.name());
        let failures: Mutex<Vec<OnCpu<EntropyFailure>>> = Mutex::new(Vec::new());
        let start = cpu::counter();
        on_cpus(p.cpus, &|id| {
            let (mut buf, mut last) = (vec![0u8; READ], vec![0u8; READ]);
            let mut done = 0;
            while p.more(start, done) {
                let e = match rng.read(&mut buf) {
                    Err(e) => Some(EntropyFailure::Read(e)),
                    Ok(n) => match constant(&buf[..n]) {
                        Some(byte) => Some(EntropyFailure::Constant { byte, len: n }),
                        None if n == READ && buf == last => Some(EntropyFailure::Repeated),
                        None => None,
                    },
                };
                if let Some(error) = e {
                    failures.lock().push(OnCpu { cpu: id, error });
                    break;
                }
                core::mem::swap(&mut buf, &mut last);
                progress.add(id, 1);
                done += 1;
            }
        });
        report.record(&progress);
        report.extra.push((
            "bytes_per_sec",
            alloc::format!(
                "{:.0}",
                (report.ops * READ as u64) as f64 / report.seconds().max(1e-9)
            ),
        ));
        for f in failures.into_inner() {
            report.fail(f);
        }
        report.frames_before = frames_before;
        report.frames_after = initmm::mm::free_frames();
        report.check_frames();
        report.finish()
    }
}
