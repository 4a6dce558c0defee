//! A host-test "physical memory" for the page-table code.
//!
//! Frames are heap-allocated tables handed out at fake physical addresses from [`FAKE_PA_BASE`]
//! up. The environment counts live frames (leak checks), can be told to run out of memory at the
//! Nth allocation, poisons frames when they are handed out and freed (so a missing zeroing or a
//! use after free shows up as garbage descriptors), refuses `table()` on a frame that is not
//! allocated, and can record every allocation, free, descriptor store, barrier and TLB
//! invalidation as an [`Event`] so tests can check their order.
//!
//! The descriptor slots are `mm::sync` atomics (loom's under `--cfg loom`: they are what the
//! model checks). The bookkeeping here deliberately uses `std` atomics and mutexes: it stands for
//! hardware and the frame allocator, which are not under test, and must not add scheduling points
//! to the loom model. No loom operation ever runs while one of these std locks is held.

use std::boxed::Box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as StdOrdering};
use std::sync::{Mutex as StdMutex, OnceLock};
use std::vec::Vec;

use super::addr::{PhysAddr, VirtAddr};
use super::env::PageTableEnv;
use super::layout::PAGE_SIZE;
use super::pgalloc::{InitMm, InstallPolicy};
use super::pgtable::{Entry, Level, MmError, Prot, Table};
use super::sync::{AtomicU64, Ordering};

/// Physical address of frame 0.
pub const FAKE_PA_BASE: u64 = 0x4000_0000;

/// What fresh and freed frames are filled with: a *valid table descriptor* pointing nowhere, so
/// that code that forgot to zero (or used a freed table) walks into garbage and fails loudly.
pub const POISON: u64 = 0xdead_beef_0000_0003;

/// Something the page-table code did to the "hardware".
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// A frame was handed out.
    Alloc(PhysAddr),
    /// A frame was given back.
    Free(PhysAddr),
    /// A table was zeroed.
    Zero(PhysAddr),
    /// A descriptor store through `set_entry`.
    Store {
        /// Level of the table written.
        level: Level,
        /// That table's frame.
        table: PhysAddr,
        /// Slot index.
        index: usize,
        /// The value stored.
        val: u64,
    },
    /// `dsb ishst`.
    DsbIshst,
    /// `dsb ish`.
    DsbIsh,
    /// `isb`.
    Isb,
    /// `tlbi vaale1is`.
    TlbiPage(usize),
    /// `tlbi vaae1is`.
    TlbiVa(usize),
    /// `tlbi vmalle1is`.
    TlbiAll,
}

type AllocHook = Box<dyn FnOnce(&TestEnv) + Send>;

/// The in-memory "physical memory". See the module documentation.
pub struct TestEnv {
    frames: Box<[OnceLock<Box<Table>>]>,
    allocated: Box<[AtomicBool]>,
    free_list: StdMutex<Vec<usize>>,
    next_unused: AtomicUsize,
    live: AtomicUsize,
    allocations: AtomicUsize,
    /// Allocations still allowed before `alloc_table_frame` returns `None` (`usize::MAX`: no limit).
    budget: AtomicUsize,
    alloc_yield: AtomicBool,
    /// What `cpu_id` answers: tests play different CPUs with it.
    cpu: AtomicUsize,
    alloc_hook: StdMutex<Option<AllocHook>>,
    recording: AtomicBool,
    events: StdMutex<Vec<Event>>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// Room for 4096 frames (16 MiB of tables, allocated lazily).
    pub fn new() -> Self {
        Self::with_capacity(4096)
    }

    /// Room for `frames` frames (allocated lazily).
    pub fn with_capacity(frames: usize) -> Self {
        Self {
            frames: (0..frames).map(|_| OnceLock::new()).collect(),
            allocated: (0..frames).map(|_| AtomicBool::new(false)).collect(),
            free_list: StdMutex::new(Vec::new()),
            next_unused: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            allocations: AtomicUsize::new(0),
            budget: AtomicUsize::new(usize::MAX),
            alloc_yield: AtomicBool::new(false),
            cpu: AtomicUsize::new(0),
            alloc_hook: StdMutex::new(None),
            recording: AtomicBool::new(false),
            events: StdMutex::new(Vec::new()),
        }
    }

    /// Frames currently allocated.
    pub fn live_frames(&self) -> usize {
        self.live.load(StdOrdering::SeqCst)
    }

    /// Successful allocations so far.
    pub fn allocations(&self) -> usize {
        self.allocations.load(StdOrdering::SeqCst)
    }

    /// Let `n` more allocations succeed, then fail every one after them.
    pub fn fail_after(&self, n: usize) {
        self.budget.store(n, StdOrdering::SeqCst);
    }

    /// Remove the allocation limit.
    pub fn unlimited(&self) {
        self.budget.store(usize::MAX, StdOrdering::SeqCst);
    }

    /// From now on, `cpu_id` says `cpu`: the caller plays that CPU.
    pub fn set_cpu(&self, cpu: usize) {
        self.cpu.store(cpu, StdOrdering::SeqCst);
    }

    /// Yield the CPU inside every allocation (widens race windows in threaded tests).
    pub fn set_alloc_yield(&self, on: bool) {
        self.alloc_yield.store(on, StdOrdering::SeqCst);
    }

    /// Run `hook` once, inside the next allocation, before it returns: it plays a racing CPU.
    pub fn on_next_alloc(&self, hook: impl FnOnce(&TestEnv) + Send + 'static) {
        *self.alloc_hook.lock().unwrap() = Some(Box::new(hook));
    }

    /// Forget earlier events and record from now on.
    pub fn start_recording(&self) {
        self.events.lock().unwrap().clear();
        self.recording.store(true, StdOrdering::SeqCst);
    }

    /// Stop recording and return what was recorded.
    pub fn take_events(&self) -> Vec<Event> {
        self.recording.store(false, StdOrdering::SeqCst);
        core::mem::take(&mut *self.events.lock().unwrap())
    }

    /// Is the frame at `pa` currently allocated?
    pub fn is_allocated(&self, pa: PhysAddr) -> bool {
        self.frame_index(pa)
            .is_some_and(|i| self.allocated[i].load(StdOrdering::SeqCst))
    }

    fn record(&self, e: Event) {
        if self.recording.load(StdOrdering::SeqCst) {
            self.events.lock().unwrap().push(e);
        }
    }

    fn frame_index(&self, pa: PhysAddr) -> Option<usize> {
        let off = pa.0.checked_sub(FAKE_PA_BASE)?;
        let i = (off / PAGE_SIZE as u64) as usize;
        (pa.is_page_aligned() && i < self.frames.len()).then_some(i)
    }

    fn frame(&self, i: usize) -> &Table {
        self.frames[i].get_or_init(|| Box::new(core::array::from_fn(|_| AtomicU64::new(POISON))))
    }

    fn poison(&self, i: usize) {
        for slot in self.frame(i) {
            slot.store(POISON, Ordering::Relaxed);
        }
    }
}

impl TestEnv {
    /// The frame at `pa` seen as a table: what `PageTableEnv::table` returns, but checked, so
    /// safe. Panics unless `pa` is an allocated frame; frames live as long as the environment
    /// (they are only ever poisoned and reused, never deallocated), so the reference is valid.
    pub fn frame_table(&self, pa: PhysAddr) -> &Table {
        let i = self
            .frame_index(pa)
            .unwrap_or_else(|| panic!("TestEnv: {pa:?} is not a frame (garbage descriptor?)"));
        assert!(
            self.allocated[i].load(StdOrdering::SeqCst),
            "TestEnv: walked into free frame {pa:?} (use after free or unzeroed table?)"
        );
        self.frame(i)
    }
}

// SAFETY: frames are heap allocations of this environment's own, each handed out once until it is
// freed (and checked: a double free panics); `table` reaches that allocation; the barrier and TLB
// hooks only record events, which is all a host test's "CPU" needs: nothing translates through
// these tables (see `KernelVm::new`'s contract, which the host tests keep by never reading the
// memory a handle maps).
unsafe impl PageTableEnv for TestEnv {
    fn alloc_table_frame(&self) -> Option<PhysAddr> {
        if self.alloc_yield.load(StdOrdering::SeqCst) {
            std::thread::yield_now();
        }
        let budget_ok = self
            .budget
            .fetch_update(StdOrdering::SeqCst, StdOrdering::SeqCst, |b| match b {
                usize::MAX => Some(b),
                0 => None,
                b => Some(b - 1),
            })
            .is_ok();
        if !budget_ok {
            return None;
        }
        let reused = self.free_list.lock().unwrap().pop();
        let i = match reused {
            Some(i) => i,
            None => {
                let i = self.next_unused.fetch_add(1, StdOrdering::SeqCst);
                assert!(i < self.frames.len(), "TestEnv: out of frame capacity");
                i
            }
        };
        // Fresh frames are created poisoned and freed ones were poisoned by `free_table_frame`.
        let was = self.allocated[i].swap(true, StdOrdering::SeqCst);
        assert!(!was, "TestEnv: frame {i} handed out twice");
        self.live.fetch_add(1, StdOrdering::SeqCst);
        self.allocations.fetch_add(1, StdOrdering::SeqCst);
        let pa = PhysAddr(FAKE_PA_BASE + (i * PAGE_SIZE) as u64);
        self.record(Event::Alloc(pa));
        let hook = self.alloc_hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook(self);
        }
        Some(pa)
    }

    unsafe fn free_table_frame(&self, pa: PhysAddr) {
        let i = self
            .frame_index(pa)
            .unwrap_or_else(|| panic!("TestEnv: freeing {pa:?}, not a frame"));
        assert!(
            self.allocated[i].load(StdOrdering::SeqCst),
            "TestEnv: double free of {pa:?}"
        );
        self.poison(i);
        self.allocated[i].store(false, StdOrdering::SeqCst);
        self.live.fetch_sub(1, StdOrdering::SeqCst);
        self.record(Event::Free(pa));
        // Under loom a freed frame is never handed out again: recycling is ordered by the frame
        // allocator's own lock on hardware, but these std locks are invisible to the model, which
        // would then see the next owner's stores as racing the previous owner's.
        if !cfg!(loom) {
            self.free_list.lock().unwrap().push(i);
        }
    }

    unsafe fn table(&self, pa: PhysAddr) -> &Table {
        self.frame_table(pa)
    }

    fn cpu_id(&self) -> usize {
        self.cpu.load(StdOrdering::SeqCst)
    }

    fn dsb_ishst(&self) {
        self.record(Event::DsbIshst);
    }

    fn isb(&self) {
        self.record(Event::Isb);
    }

    fn tlbi_page(&self, va: usize) {
        self.record(Event::TlbiPage(va));
    }

    fn tlbi_va(&self, va: usize) {
        self.record(Event::TlbiVa(va));
    }

    fn tlbi_all(&self) {
        self.record(Event::TlbiAll);
    }

    fn dsb_ish(&self) {
        self.record(Event::DsbIsh);
    }

    unsafe fn zero_table(&self, pa: PhysAddr) {
        self.record(Event::Zero(pa));
        for slot in self.frame_table(pa) {
            slot.store(0, Ordering::Relaxed);
        }
    }

    unsafe fn set_entry(&self, entry: &Entry<'_>, raw: u64) {
        self.record(Event::Store {
            level: entry.level(),
            table: entry.table_phys(),
            index: entry.index(),
            val: raw,
        });
        entry.slot().store(raw, Ordering::Release);
    }
}

/// The calls whose contract is that the caller owns the virtual range and the memory it maps
/// (`map_range`, `map_pages`, `unmap_range`, the table allocators), for host tests.
///
/// A host test owns each `InitMm<TestEnv>` it makes, and with it the whole address space: no
/// other code maps into it, no hardware walks it, and the physical addresses it maps stand for
/// no memory at all (the environment's frames, the only memory the page-table code touches, are
/// never mapped). A test that maps from several threads gives each its own range, and one that
/// holds an [`Entry`] does not reclaim or map a block over its table meanwhile. So these
/// wrappers make the promise once, for every test.
impl<P: InstallPolicy> InitMm<TestEnv, P> {
    /// `map_range`.
    pub fn map_owned(
        &self,
        va: VirtAddr,
        pa: PhysAddr,
        size: usize,
        prot: Prot,
        blocks: bool,
    ) -> Result<(), MmError> {
        // SAFETY: the test's own address space and no real memory (see above).
        unsafe { self.map_range(va, pa, size, prot, blocks) }
    }

    /// `map_pages`.
    pub fn map_pages_owned(
        &self,
        va: VirtAddr,
        pages: &[PhysAddr],
        p: Prot,
    ) -> Result<(), MmError> {
        // SAFETY: as for `map_owned`.
        unsafe { self.map_pages(va, pages, p) }
    }

    /// `unmap_range`.
    pub fn unmap_owned(&self, va: VirtAddr, size: usize) {
        // SAFETY: as for `map_owned`.
        unsafe { self.unmap_range(va, size) }
    }

    /// `pud_alloc`.
    pub fn pud_alloc_owned(&self, pgd: Entry<'_>, va: VirtAddr) -> Result<Entry<'_>, MmError> {
        // SAFETY: as for `map_owned`; the tests pass entries of this `InitMm` for `va`.
        unsafe { self.pud_alloc(pgd, va) }
    }

    /// `pmd_alloc`.
    pub fn pmd_alloc_owned(&self, pud: Entry<'_>, va: VirtAddr) -> Result<Entry<'_>, MmError> {
        // SAFETY: as for `pud_alloc_owned`.
        unsafe { self.pmd_alloc(pud, va) }
    }

    /// `pte_alloc_kernel`.
    pub fn pte_alloc_owned(&self, pmd: Entry<'_>, va: VirtAddr) -> Result<Entry<'_>, MmError> {
        // SAFETY: as for `pud_alloc_owned`.
        unsafe { self.pte_alloc_kernel(pmd, va) }
    }
}
