//! This CPU: its logical id, the counter, stack guard pages, idling.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, MPIDR_EL1, Readable, TPIDR_EL1, Writeable};

/// Logical CPUs the kernel supports: the mm's per-CPU state is sized for as many.
pub const MAX_CPUS: usize = crate::mm::MAX_CPUS;

/// This CPU's logical id (0 = the boot CPU): the first word of its per-CPU data, whose address
/// TPIDR_EL1 holds (0 before the per-CPU data is set up, on the boot CPU).
#[inline]
pub fn id() -> usize {
    let p = TPIDR_EL1.get() as *const usize;
    if p.is_null() {
        return 0;
    }
    // SAFETY: TPIDR_EL1 is only ever set by `set_percpu` (or `secondary_entry`, with the same
    // value the boot CPU prepared) to the address of a static `smp::PerCpu`, whose first field is
    // the logical id (`#[repr(C)]`); it is never written after.
    let id = unsafe { p.read() };
    // Ids are given out below MAX_CPUS (`smp` starts no more CPUs); the mask, a no-op then, lets
    // the compiler drop the bounds checks of every per-CPU array indexed with it.
    debug_assert!(id < MAX_CPUS, "cpu id {id}");
    id & (MAX_CPUS - 1)
}

const _: () = assert!(
    MAX_CPUS.is_power_of_two(),
    "cpu::id masks with MAX_CPUS - 1"
);

/// Point TPIDR_EL1 at this CPU's per-CPU data (a static whose first word is its id), or 0.
pub fn set_percpu(ptr: u64) {
    TPIDR_EL1.set(ptr);
}

/// MPIDR_EL1 affinity fields (Aff3, Aff2, Aff1, Aff0): the id firmware and the DT use.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// The virtual counter.
#[inline]
pub fn counter() -> u64 {
    CNTVCT_EL0.get()
}

/// The counter's frequency in Hz (CNTFRQ_EL0, as firmware set it; at least 1, so that it can
/// divide).
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get().max(1)
}

/// Guard pages below kernel stacks: (lowest address of the guard page, logical CPU, kind).
/// Registered when a stack is set up, consulted by the fault handler.
static GUARDS: [AtomicU64; 2 * MAX_CPUS] = [const { AtomicU64::new(0) }; 2 * MAX_CPUS];

/// Remember that the page at `guard` is the guard page of `cpu`'s kernel (`exception == false`)
/// or exception stack.
pub fn register_stack_guard(cpu: usize, exception: bool, guard: u64) {
    GUARDS[2 * cpu + exception as usize].store(guard, Ordering::Release);
}

/// The guard page registered for `cpu`'s kernel or exception stack (0 if none).
pub fn stack_guard(cpu: usize, exception: bool) -> u64 {
    GUARDS[2 * cpu + exception as usize].load(Ordering::Acquire)
}

/// If `addr` is inside a registered guard page, whose stack is it?
pub fn stack_guard_hit(addr: u64) -> Option<StackOwner> {
    let page = addr & !0xfff;
    GUARDS
        .iter()
        .position(|g| {
            let g = g.load(Ordering::Acquire);
            g != 0 && g == page
        })
        .map(|i| StackOwner {
            cpu: i / 2,
            exception_stack: i % 2 == 1,
        })
}

/// Whose stack a guard page belongs to: what [`stack_guard_hit`] found.
#[derive(Clone, Copy, Debug)]
pub struct StackOwner {
    /// The CPU's number.
    pub cpu: usize,
    /// The exception stack (SP_EL1) rather than the kernel stack.
    pub exception_stack: bool,
}

impl core::fmt::Display for StackOwner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let which = if self.exception_stack {
            "exception"
        } else {
            "kernel"
        };
        write!(f, "cpu{}'s {which} stack", self.cpu)
    }
}

/// Park this CPU for good.
pub fn halt() -> ! {
    loop {
        super::event::wait_for_event();
    }
}

/// Load 64 bits from `addr` with a plain `ldr`: for tests that prove an address faults (or
/// reads what it should). Inline assembly, so probing an invalid address is a fault the
/// exception handler reports, not undefined behaviour in Rust.
#[inline(never)]
pub fn probe_read(addr: usize) -> u64 {
    let v: u64;
    // SAFETY: a single load; if the address is not mapped readable, the CPU takes a data abort,
    // which the exception handler reports (or `catch_fault` catches). No Rust object is accessed.
    unsafe {
        core::arch::asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
    };
    v
}

/// Store 64 bits to `addr` with a plain `str`; see [`probe_read`].
#[inline(never)]
pub fn probe_write(addr: usize, value: u64) {
    // SAFETY: as for `probe_read`; callers only aim it at memory no Rust object owns, or at
    // memory that must refuse the write.
    unsafe {
        core::arch::asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
    };
}

/// The frame pointer (x29) of the function this is inlined into: where a backtrace starts.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let fp: u64;
    // SAFETY: reading the frame pointer register has no side effects.
    unsafe { core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack)) };
    fp
}
