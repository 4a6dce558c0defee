//! A run-to-completion multi-core runtime: `spawn` with per-CPU run queues and work stealing,
//! `on_each_cpu`, a reusable `Barrier`, and idle CPUs that sleep in `wfi` until an IPI says there
//! is work.
//!
//! What it does not do: preemption (a task runs until it returns; the timer tick does not switch
//! tasks), blocking (a task that waits spins or runs other tasks — `JoinHandle::join` helps by
//! running queued work), priorities, task migration once started, or sleeping on a timer.
//! Tasks must not take a lock that another task on the same CPU might hold.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use spin::Mutex;

use super::{ipi, online_cpus};
use crate::arch::aarch64::cpu::{self, MAX_CPUS};
use crate::arch::aarch64::{cpu_boot, daif, event};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct RunQueue {
    /// Work any CPU may steal.
    shared: Mutex<VecDeque<Job>>,
    /// Work that must run on this CPU (`spawn_on`, `on_each_cpu`).
    pinned: Mutex<VecDeque<Job>>,
    /// Jobs this CPU ran.
    ran: AtomicU64,
}

static QUEUES: [RunQueue; MAX_CPUS] = [const {
    RunQueue {
        shared: Mutex::new(VecDeque::new()),
        pinned: Mutex::new(VecDeque::new()),
        ran: AtomicU64::new(0),
    }
}; MAX_CPUS];
/// Jobs queued and not yet started, machine-wide: lets an idle CPU decide to sleep cheaply.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
/// CPUs sleeping in `wait_for_work`, as a bit mask.
static IDLE: AtomicU64 = AtomicU64::new(0);

/// Jobs CPU `id` has run so far.
pub fn jobs_run(id: usize) -> u64 {
    QUEUES[id].ran.load(Ordering::Relaxed)
}

/// The result slot a `JoinHandle` waits on.
struct Slot<T> {
    done: AtomicBool,
    value: Mutex<Option<T>>,
}

/// Wait for a spawned task's result with [`JoinHandle::join`].
pub struct JoinHandle<T> {
    slot: Arc<Slot<T>>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished, so that [`JoinHandle::join`] would not wait.
    pub fn is_finished(&self) -> bool {
        self.slot.done.load(Ordering::Acquire)
    }

    /// The task's result. Meanwhile this CPU runs queued work, or sleeps in `wfe` until the task
    /// sends its event (`dsb ishst; sev` after setting `done`; see `arch::aarch64::event`).
    pub fn join(self) -> T {
        let me = cpu::id();
        while !self.slot.done.load(Ordering::Acquire) {
            match find_work(me) {
                Some(job) => run(me, job),
                None => event::wait_for_event(),
            }
        }
        self.slot
            .value
            .lock()
            .take()
            .expect("a finished task left its result")
    }
}

fn package<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (Job, JoinHandle<T>) {
    let slot = Arc::new(Slot {
        done: AtomicBool::new(false),
        value: Mutex::new(None),
    });
    let s = slot.clone();
    let job: Job = Box::new(move || {
        let v = f();
        *s.value.lock() = Some(v);
        s.done.store(true, Ordering::Release);
        // Joiners sleep in wfe: `done` must be visible before they wake (dsb ishst; sev).
        event::send_event();
    });
    (job, JoinHandle { slot })
}

/// Run `f` on some CPU: it goes on this CPU's queue, and an idle CPU is woken to steal it.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let (job, handle) = package(f);
    let me = cpu::id();
    QUEUED.fetch_add(1, Ordering::AcqRel);
    QUEUES[me].shared.lock().push_back(job);
    wake_one_idle(me);
    handle
}

/// Run `f` on CPU `id` (and only there).
pub fn spawn_on<T: Send + 'static>(
    id: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    assert!(
        id < online_cpus(),
        "spawn_on: cpu{id} is not online ({} are)",
        online_cpus()
    );
    let (job, handle) = package(f);
    QUEUED.fetch_add(1, Ordering::AcqRel);
    QUEUES[id].pinned.lock().push_back(job);
    if id != cpu::id() {
        ipi::wake(id);
    }
    handle
}

/// Run `f(cpu_id)` on every online CPU (this one included) and wait until all returned.
pub fn on_each_cpu(f: &(dyn Fn(usize) + Sync)) {
    on_cpus(online_cpus(), f)
}

/// Run `f(cpu_id)` on CPUs `0..n` (this one, the boot CPU 0, must be among them).
pub fn on_cpus(n: usize, f: &(dyn Fn(usize) + Sync)) {
    let me = cpu::id();
    // A job must be `'static`, and `f` is borrowed: the jobs get the address of `f` (the
    // reference itself, which lives in this frame) as a plain number.
    let f_addr = (&raw const f).expose_provenance();
    let handles: alloc::vec::Vec<_> = (0..n.min(online_cpus()))
        .filter(|&i| i != me)
        .map(|i| {
            spawn_on(i, move || {
                let f = core::ptr::with_exposed_provenance::<&(dyn Fn(usize) + Sync)>(f_addr);
                // SAFETY: `f_addr` is the address of `on_cpus`' argument `f`, a reference that
                // may be sent to another CPU (its closure is `Sync`). This job is joined below
                // before `on_cpus` returns (there is no unwinding: a panic ends the machine),
                // so `f` and the closure it borrows are alive whenever this runs.
                unsafe { (*f)(i) }
            })
        })
        .collect();
    f(me);
    handles.into_iter().for_each(JoinHandle::join);
}

fn find_work(me: usize) -> Option<Job> {
    if QUEUED.load(Ordering::Acquire) == 0 {
        return None;
    }
    let take = |j: Option<Job>| {
        if j.is_some() {
            QUEUED.fetch_sub(1, Ordering::AcqRel);
        }
        j
    };
    if let Some(j) = take(QUEUES[me].pinned.lock().pop_front()) {
        return Some(j);
    }
    if let Some(j) = take(QUEUES[me].shared.lock().pop_front()) {
        return Some(j);
    }
    // Steal the oldest work of the others, starting with the next CPU.
    let n = online_cpus();
    (1..n)
        .map(|k| (me + k) % n)
        .find_map(|o| take(QUEUES[o].shared.lock().pop_front()))
}

fn run(me: usize, job: Job) {
    job();
    QUEUES[me].ran.fetch_add(1, Ordering::Relaxed);
}

/// Wake one sleeping CPU, taking it out of the idle mask so that the next `spawn` wakes another.
fn wake_one_idle(me: usize) {
    let mut idle = IDLE.load(Ordering::Acquire);
    loop {
        let candidates = idle & !(1 << me);
        if candidates == 0 {
            return;
        }
        let cpu = candidates.trailing_zeros() as usize;
        match IDLE.compare_exchange_weak(
            idle,
            idle & !(1 << cpu),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return ipi::wake(cpu),
            Err(now) => idle = now,
        }
    }
}

/// What a CPU does when it has nothing else to do: run work, or sleep until an interrupt.
pub fn idle_loop() -> ! {
    let me = cpu::id();
    loop {
        match find_work(me) {
            Some(job) => {
                // More queued than this CPU can start: pass the wake-up on.
                if QUEUED.load(Ordering::Acquire) > 0 {
                    wake_one_idle(me);
                }
                run(me, job)
            }
            None => wait_for_work(me),
        }
    }
}

/// Sleep in `wfi` unless work arrived. IRQs are masked across the check and the `wfi` (a
/// pending interrupt still ends `wfi`), so a wake-up IPI sent in between is never lost.
fn wait_for_work(me: usize) {
    daif::irqs_disable();
    IDLE.fetch_or(1 << me, Ordering::AcqRel);
    if QUEUED.load(Ordering::Acquire) == 0 {
        cpu_boot::wait_for_interrupt();
    }
    IDLE.fetch_and(!(1 << me), Ordering::AcqRel);
    daif::irqs_enable();
}

/// A reusable barrier for `n` CPUs (or tasks running on distinct CPUs).
pub struct Barrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl Barrier {
    /// A barrier that opens each time `n` callers have arrived.
    pub const fn new(n: usize) -> Self {
        Self {
            n,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Wait until `n` callers arrived; returns true for exactly one of them (the last).
    pub fn wait(&self) -> bool {
        self.wait_with(|| ())
    }

    /// Like [`wait`](Self::wait), but the last to arrive runs `last` before anyone is released:
    /// what it writes there, every waiter sees once it leaves.
    ///
    /// Waiters sleep with the exclusive monitor armed on `generation` (`event::wait_until`), so
    /// the releasing store itself wakes them: no `sev`, and no window in which the event could
    /// overtake the store.
    pub fn wait_with(&self, last: impl FnOnce()) -> bool {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            last();
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return true;
        }
        event::wait_until(&self.generation, |g| g != generation);
        false
    }
}
