//! All cores: per-CPU data, bring-up, inter-processor interrupts, and the run-to-completion
//! runtime the workloads use.

pub mod ipi;
pub mod irq;
pub mod runtime;
pub mod watchdog;

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use spin::Once;

use crate::arch::aarch64::cpu::{self, MAX_CPUS};
use crate::arch::aarch64::cpu_boot::{self, CpuBootError};
use crate::arch::aarch64::{boot, daif, early, mmu};
use crate::drivers::gic::{Gic, GicError};
use crate::drivers::timer;
use crate::mm::vm::VmError;
use crate::platform::devicetree::Machine;

/// One CPU's data, reached through TPIDR_EL1 (`this_cpu`). `id` must stay the first field: the
/// arch code reads it through TPIDR_EL1 without knowing this type.
#[repr(C)]
pub struct PerCpu {
    /// The CPU's number, 0 for the boot CPU; what `cpu::id()` returns.
    pub id: usize,
    /// Its MPIDR_EL1 affinity, or `u64::MAX` while no CPU is assigned this number.
    pub mpidr: AtomicU64,
    /// Set (with Release) once the CPU has finished its set-up and takes interrupts.
    pub online: AtomicBool,
    /// Timer interrupts taken.
    pub ticks: AtomicU64,
    /// Counter value at the last timer interrupt (or when the tick started): the watchdog's.
    pub last_tick: AtomicU64,
    /// Wake-up IPIs taken.
    pub ipis: AtomicU64,
    /// Set once the CPU has acknowledged a stop IPI.
    pub stopped: AtomicBool,
}

impl PerCpu {
    const fn new(id: usize) -> Self {
        Self {
            id,
            mpidr: AtomicU64::new(u64::MAX),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            last_tick: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }
}

static PERCPU: [PerCpu; MAX_CPUS] = {
    let mut i = 0;
    let mut a = [const { PerCpu::new(0) }; MAX_CPUS];
    while i < MAX_CPUS {
        a[i] = PerCpu::new(i);
        i += 1;
    }
    a
};

/// This CPU's data.
pub fn this_cpu() -> &'static PerCpu {
    &PERCPU[cpu::id()]
}

/// CPU `id`'s data.
///
/// # Panics
///
/// If `id` is not below `cpu::MAX_CPUS`.
pub fn per_cpu(id: usize) -> &'static PerCpu {
    &PERCPU[id]
}

/// How many CPUs are online (their ids are 0..n: bring-up assigns them densely).
pub fn online_cpus() -> usize {
    ONLINE.load(Ordering::Acquire)
}

static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// The machine's interrupt controller, once `init` ran.
pub static GIC: Once<Gic> = Once::new();

/// The interrupt controller.
///
/// # Panics
///
/// If called before [`init_boot_cpu`] set it up.
pub fn gic() -> &'static Gic {
    GIC.get()
        .expect("smp: interrupt controller used before smp::init_boot_cpu")
}

/// Timer tick period (10 ms).
pub const TICK_US: u64 = 10_000;

/// Kernel stack per CPU (the boot CPU's is in the image).
pub const STACK_SIZE: usize = 64 * 1024;
/// Exception stack (SP_EL1) per CPU, on which the vectors run, so that a kernel stack overflow
/// can still be reported.
pub const EXCEPTION_STACK_SIZE: usize = 16 * 1024;

/// A CPU that did not come up.
#[derive(Debug)]
pub struct BringUpFailure {
    /// Its MPIDR affinity, as the device tree gives it.
    pub mpidr: u64,
    /// Why.
    pub error: BringUpError,
}

/// Why a CPU did not come up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BringUpError {
    /// Its kernel or exception stack could not be allocated (each `Some` failed).
    NoStacks {
        /// Why the kernel stack failed, if it did.
        stack: Option<VmError>,
        /// Why the exception stack failed, if it did.
        exception_stack: Option<VmError>,
    },
    /// The enable method refused to start it.
    Start(CpuBootError),
    /// It was started but did not come online within a second (its stacks stay allocated: it
    /// may still be running on them).
    NotOnline,
}

impl fmt::Display for BringUpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStacks {
                stack,
                exception_stack,
            } => write!(
                f,
                "no memory for its stacks (kernel stack: {stack:?}, exception stack: \
                 {exception_stack:?})"
            ),
            Self::Start(e) => e.fmt(f),
            Self::NotOnline => f.write_str("started, but did not come online within 1 s"),
        }
    }
}

/// Why the boot CPU's interrupt set-up failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootCpuError {
    /// The device tree describes no interrupt controller.
    NoInterruptController,
    /// The interrupt controller could not be set up.
    Gic(GicError),
}

impl fmt::Display for BootCpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoInterruptController => {
                f.write_str("the device tree has no interrupt controller")
            }
            Self::Gic(e) => write!(f, "interrupt controller: {e}"),
        }
    }
}

/// Set up the boot CPU's per-CPU data, the interrupt controller and its timer. Before anything
/// else uses `this_cpu`.
///
/// # Errors
///
/// [`BootCpuError`]: no interrupt controller, or one that cannot be mapped.
pub fn init_boot_cpu(m: &Machine) -> Result<(), BootCpuError> {
    let me = &PERCPU[0];
    me.mpidr.store(cpu::mpidr(), Ordering::Relaxed);
    cpu::set_percpu(me as *const PerCpu as u64);
    let desc = m.gic.as_ref().ok_or(BootCpuError::NoInterruptController)?;
    let gic = Gic::init(desc).map_err(BootCpuError::Gic)?;
    GIC.call_once(|| gic);
    crate::arch::aarch64::exceptions::set_irq_handler(ipi::handle_irq);
    crate::mm::frame::DRAIN_HOOK.set(ipi::ask_to_drain_frames);
    watchdog::init(crate::cmdline::Cmdline(&m.bootargs));
    local_init();
    me.online.store(true, Ordering::Release);
    Ok(())
}

/// Per-CPU set-up: the timer's event stream, the interrupt controller's CPU interface, the
/// timer tick, IRQs on.
fn local_init() {
    let period_us = timer::enable_event_stream();
    if cpu::id() == 0 {
        log::debug!(
            "event stream: every {period_us} us on every CPU (wakes a wfe that missed its event)"
        );
    }
    let g = gic();
    g.init_cpu();
    g.enable_ppi(timer::PPI);
    this_cpu()
        .last_tick
        .store(cpu::counter(), Ordering::Relaxed);
    timer::arm_after(timer::ticks_from_micros(TICK_US));
    daif::irqs_enable();
}

/// Start every CPU the device tree lists (up to `max` in all), one at a time. CPUs that do not
/// come up within a second are reported and skipped; the others carry on.
pub fn bring_up(m: &Machine, max: usize) -> Vec<BringUpFailure> {
    let mut failures = Vec::new();
    let boot_mpidr = cpu::mpidr();
    let vm = crate::mm::kernel_vm();
    // Every CPU turns its MMU on with the boot identity map and init_mm's own pgd (no copy).
    let mmu = early::MmuConfig::new(early::idmap_ttbr0(), vm.init_mm.pgd_phys().0);
    for c in m.cpus.iter().filter(|c| c.mpidr != boot_mpidr) {
        let id = online_cpus();
        if id >= max.min(MAX_CPUS) {
            break;
        }
        let fail = |error: BringUpError| BringUpFailure {
            mpidr: c.mpidr,
            error,
        };
        let (stack, exc) = match (
            vm.vmalloc_stack(STACK_SIZE),
            vm.vmalloc_stack(EXCEPTION_STACK_SIZE),
        ) {
            (Ok(s), Ok(e)) => (s, e),
            (s, e) => {
                failures.push(fail(BringUpError::NoStacks {
                    stack: s.as_ref().err().copied(),
                    exception_stack: e.as_ref().err().copied(),
                }));
                // The one that was allocated goes back.
                for stack in [s, e].into_iter().flatten() {
                    vm.vfree_stack(stack);
                }
                break;
            }
        };
        cpu::register_stack_guard(id, false, stack.guard_page().0 as u64);
        cpu::register_stack_guard(id, true, exc.guard_page().0 as u64);
        let pc = &PERCPU[id];
        pc.mpidr.store(c.mpidr, Ordering::Relaxed);
        boot::prepare_secondary(
            &mmu,
            stack.top().0 as u64,
            exc.top().0 as u64,
            pc as *const PerCpu as u64,
        );
        if let Err(e) = cpu_boot::cpu_boot(c.mpidr, &c.enable_method) {
            failures.push(fail(BringUpError::Start(e)));
            // It never started: its stacks and guard registrations go back.
            vm.vfree_stack(stack);
            vm.vfree_stack(exc);
            cpu::register_stack_guard(id, false, 0);
            cpu::register_stack_guard(id, true, 0);
            pc.mpidr.store(u64::MAX, Ordering::Relaxed);
            continue;
        }
        let deadline = cpu::counter() + cpu::counter_frequency();
        while !pc.online.load(Ordering::Acquire) && cpu::counter() < deadline {
            core::hint::spin_loop();
        }
        if pc.online.load(Ordering::Acquire) {
            ONLINE.store(id + 1, Ordering::Release);
        } else {
            failures.push(fail(BringUpError::NotOnline));
            // Its stacks stay allocated: the CPU may still be running on them.
            break;
        }
    }
    failures
}

/// Mask every exception, say so, and park this CPU for good (a stop IPI, or a second panicking
/// CPU). As Linux's `local_cpu_stop`, SError and Debug too: a stopped CPU reports nothing.
pub fn park_stopped() -> ! {
    daif::local_daif_mask();
    if let Some(pc) = (cpu::id() < MAX_CPUS).then(this_cpu) {
        pc.stopped.store(true, Ordering::Release);
    }
    cpu::halt()
}

/// Rust entry of a secondary CPU, on its own stacks, MMU on with init_mm's tables.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(_entry_el: u64) -> ! {
    // Its vectors, both stacks and its per-CPU data are in place (`secondary_high`), and the
    // console is up: Debug exceptions and SError on, IRQs once `local_init` has set them up.
    // Linux's `secondary_start_kernel` unmasks all four at once, its interrupt controller being
    // ready by then.
    daif::local_daif_restore(daif::Daif::PROCCTX_NOIRQ);
    mmu::disable_ttbr0_walks();
    local_init();
    let me = this_cpu();
    log::debug!("cpu{} online (MPIDR {:#x})", me.id, cpu::mpidr());
    me.online.store(true, Ordering::Release);
    runtime::idle_loop()
}
