//! `blk`: every CPU writes its own pattern to its own region of the first virtio-blk disk,
//! the writes are flushed, and every CPU reads its region back and checks every byte; MB/s
//! written and read are reported. With `verify` on the command line it writes nothing and checks
//! what the last run wrote (recorded in the disk's first sector): nothing was lost across a
//! clean shutdown.
//!
//! The layout (what `platform/devices/check.py` reads from the host): sector 0 holds
//! `INITMM-BLK`, the run's seed (u64), the number of CPUs, the first data sector and the sectors
//! per CPU (u32 each, little-endian). CPU `c`'s region starts at `first + c * per_cpu`; each of
//! its sectors `s` (absolute) holds the seed (u64), `c` and `s` (u32 each), then
//! [`pattern_byte`]`(seed, c, s, i)` for bytes `i` = 0..496.
//!
//! Takes from [`Params`]: `cpus` only (the job is fixed); `verify`, `blk_mb=` (MiB per CPU,
//! default 4, capped by the disk) from the command line.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::common::{OnCpu, Progress};
use super::{Params, Report, Workload};
use initmm::arch::aarch64::cpu;
use initmm::devices::blk::{BlkError, Disk};
use initmm::smp::runtime::{Barrier, on_cpus};

/// The `blk` workload.
pub struct Blk;

/// The magic at the start of the header sector.
pub const MAGIC: &[u8; 10] = b"INITMM-BLK";
const SECTOR: usize = 512;
/// Sectors per request: 64 KiB.
const CHUNK: u64 = 128;

/// Byte `i` (0..496, after the 16-byte sector header) of sector `s` in CPU `c`'s region.
pub fn pattern_byte(seed: u64, c: u32, s: u32, i: usize) -> u8 {
    (seed as u8)
        .wrapping_add((s as u8).wrapping_mul(131))
        .wrapping_add((c as u8).wrapping_mul(13))
        .wrapping_add((i as u8).wrapping_mul(7))
}

/// Fill `buf` (whole sectors, the first being `first`) with CPU `c`'s pattern.
pub fn fill(buf: &mut [u8], seed: u64, c: u32, first: u32) {
    for (k, sec) in buf.chunks_exact_mut(SECTOR).enumerate() {
        let s = first + k as u32;
        sec[..8].copy_from_slice(&seed.to_le_bytes());
        sec[8..12].copy_from_slice(&c.to_le_bytes());
        sec[12..16].copy_from_slice(&s.to_le_bytes());
        for (i, b) in sec[16..].iter_mut().enumerate() {
            *b = pattern_byte(seed, c, s, i);
        }
    }
}

/// The header sector's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The run's seed.
    pub seed: u64,
    /// CPUs (regions).
    pub cpus: u32,
    /// First data sector.
    pub first: u32,
    /// Sectors per CPU.
    pub per_cpu: u32,
}

impl Header {
    /// The header as its sector.
    pub fn to_sector(self) -> Vec<u8> {
        let mut v = vec![0u8; SECTOR];
        v[..10].copy_from_slice(MAGIC);
        v[16..24].copy_from_slice(&self.seed.to_le_bytes());
        v[24..28].copy_from_slice(&self.cpus.to_le_bytes());
        v[28..32].copy_from_slice(&self.first.to_le_bytes());
        v[32..36].copy_from_slice(&self.per_cpu.to_le_bytes());
        v
    }

    /// The header in a sector, if it has the magic.
    pub fn from_sector(v: &[u8]) -> Option<Self> {
        let u32_at = |o: usize| u32::from_le_bytes(v[o..o + 4].try_into().unwrap_or([0; 4]));
        (v.len() >= 36 && &v[..10] == MAGIC).then(|| Self {
            seed: u64::from_le_bytes(v[16..24].try_into().unwrap_or([0; 8])),
            cpus: u32_at(24),
            first: u32_at(28),
            per_cpu: u32_at(32),
        })
    }
}

/// What `blk` can find wrong.
#[derive(Debug)]
pub enum BlkFailure {
    /// No virtio-blk disk was probed.
    NoDisk,
    /// The disk is smaller than one chunk per CPU plus the header.
    TooSmall {
        /// Its sectors.
        capacity: u64,
    },
    /// A request failed.
    Io(BlkError),
    /// Bytes read back differ from what was written.
    Mismatch {
        /// The first sector that differs.
        sector: u64,
        /// Its first differing byte.
        offset: usize,
    },
    /// `verify`: the header sector holds no run.
    NoHeader,
}

impl fmt::Display for BlkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDisk => f.write_str(
                "no virtio-blk disk was probed (attach one: platform/qemu/run.sh --disk FILE, or just run-net)",
            ),
            Self::TooSmall { capacity } => write!(f, "the disk's {capacity} sectors are too few"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Mismatch { sector, offset } => {
                write!(f, "sector {sector} reads back wrong from byte {offset}")
            }
            Self::NoHeader => f.write_str("verify: sector 0 holds no INITMM-BLK header: no earlier run to check"),
        }
    }
}

impl core::error::Error for BlkFailure {}

/// The first disk the boot probe found.
pub fn first_disk() -> Option<&'static Disk> {
    initmm::devices::get()?.disks.first().map(|d| &**d)
}

/// Check CPU `c`'s sectors `first..first + n` on `disk` against the pattern.
fn check_region(
    disk: &Disk,
    h: &Header,
    c: u32,
    progress: &Progress,
    id: usize,
) -> Result<u64, BlkFailure> {
    let mut buf = vec![0u8; CHUNK as usize * SECTOR];
    let mut want = vec![0u8; CHUNK as usize * SECTOR];
    let start = u64::from(h.first) + u64::from(c) * u64::from(h.per_cpu);
    let mut done = 0u64;
    while done < u64::from(h.per_cpu) {
        let n = CHUNK.min(u64::from(h.per_cpu) - done);
        let len = n as usize * SECTOR;
        let s = start + done;
        disk.read(s, &mut buf[..len]).map_err(BlkFailure::Io)?;
        fill(&mut want[..len], h.seed, c, s as u32);
        if let Some(k) = buf[..len]
            .iter()
            .zip(&want[..len])
            .position(|(a, b)| a != b)
        {
            return Err(BlkFailure::Mismatch {
                sector: s + (k / SECTOR) as u64,
                offset: k % SECTOR,
            });
        }
        progress.add(id, n);
        done += n;
    }
    Ok(done * SECTOR as u64)
}

impl Workload for Blk {
    fn name(&self) -> &'static str {
        "blk"
    }

    /// Only when named: it needs a disk, and it overwrites it.
    fn in_all(&self) -> bool {
        false
    }

    fn run(&self, p: &Params) -> Report {
        let mut report = Report::new(self.name(), p.cpus);
        let Some(disk) = first_disk() else {
            report.fail(BlkFailure::NoDisk);
            return report.finish();
        };
        let b = initmm::kernel::boot_info();
        let verify = b.cmdline().has("verify");
        let mb = b.cmdline().number("blk_mb").ok().flatten().unwrap_or(4);
        let frames_before = initmm::mm::free_frames();
        let progress = Progress::new(self.name());
        let failures: Mutex<Vec<OnCpu<BlkFailure>>> = Mutex::new(Vec::new());
        let (written, read) = (AtomicU64::new(0), AtomicU64::new(0));
        let (mut write_ticks, mut read_ticks) = (0u64, 0u64);
        let mut header_sector = vec![0u8; SECTOR];
        let h = if verify {
            if let Err(e) = disk.read(0, &mut header_sector) {
                report.fail(BlkFailure::Io(e));
                return report.finish();
            }
            match Header::from_sector(&header_sector) {
                Some(h) => h,
                None => {
                    report.fail(BlkFailure::NoHeader);
                    return report.finish();
                }
            }
        } else {
            let room = (disk.capacity().saturating_sub(CHUNK)) / p.cpus as u64 / CHUNK * CHUNK;
            let per_cpu = room.min(mb * 2048);
            if per_cpu == 0 {
                report.fail(BlkFailure::TooSmall {
                    capacity: disk.capacity(),
                });
                return report.finish();
            }
            Header {
                seed: cpu::counter() ^ 0x5eed_0000_0000,
                cpus: p.cpus as u32,
                first: CHUNK as u32,
                per_cpu: per_cpu as u32,
            }
        };
        log::info!(
            "blk: {} {} CPUs' regions of {} KiB from sector {} (seed {:#x})",
            if verify { "checking" } else { "writing" },
            h.cpus,
            u64::from(h.per_cpu) / 2,
            h.first,
            h.seed
        );
        let barrier = Barrier::new(p.cpus);
        let fail = |id: usize, e: BlkFailure| failures.lock().push(OnCpu { cpu: id, error: e });
        if !verify {
            let t0 = cpu::counter();
            on_cpus(p.cpus, &|id| {
                let c = id as u32;
                let mut buf = vec![0u8; CHUNK as usize * SECTOR];
                let start = u64::from(h.first) + u64::from(c) * u64::from(h.per_cpu);
                let mut done = 0;
                while done < u64::from(h.per_cpu) {
                    let n = CHUNK.min(u64::from(h.per_cpu) - done);
                    let len = n as usize * SECTOR;
                    fill(&mut buf[..len], h.seed, c, (start + done) as u32);
                    if let Err(e) = disk.write(start + done, &buf[..len]) {
                        fail(id, BlkFailure::Io(e));
                        break;
                    }
                    written.fetch_add(len as u64, Ordering::Relaxed);
                    progress.add(id, n);
                    done += n;
                }
                barrier.wait();
            });
            let r = disk.write(0, &h.to_sector()).and_then(|()| disk.flush());
            write_ticks = cpu::counter() - t0;
            if let Err(e) = r {
                report.fail(BlkFailure::Io(e));
            }
        }
        let t0 = cpu::counter();
        let checked = if verify { h.cpus as usize } else { p.cpus };
        on_cpus(p.cpus, &|id| {
            for c in (id..checked).step_by(p.cpus) {
                match check_region(disk, &h, c as u32, &progress, id) {
                    Ok(n) => {
                        read.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => fail(id, e),
                }
            }
        });
        read_ticks = read_ticks.max(cpu::counter() - t0);
        report.record(&progress);
        let hz = cpu::counter_frequency() as f64;
        let mbs =
            |bytes: u64, ticks: u64| bytes as f64 / (1 << 20) as f64 / (ticks.max(1) as f64 / hz);
        let (w, r) = (written.into_inner(), read.into_inner());
        report.extra.push(("verify", alloc::format!("{verify}")));
        report
            .extra
            .push(("written_mb_s", alloc::format!("{:.2}", mbs(w, write_ticks))));
        report
            .extra
            .push(("read_mb_s", alloc::format!("{:.2}", mbs(r, read_ticks))));
        report.extra.push(("bytes_written", alloc::format!("{w}")));
        report.extra.push(("bytes_read", alloc::format!("{r}")));
        report.extra.push((
            "queue_full_waits",
            alloc::format!("{}", disk.full_waits.load(Ordering::Relaxed)),
        ));
        log::info!(
            "blk: {} MiB written at {:.2} MB/s, {} MiB read back and checked at {:.2} MB/s",
            w >> 20,
            mbs(w, write_ticks),
            r >> 20,
            mbs(r, read_ticks)
        );
        for f in failures.into_inner() {
            report.fail(f);
        }
        report.frames_before = frames_before;
        report.frames_after = initmm::mm::free_frames();
        report.check_frames();
        report.finish()
    }
}
