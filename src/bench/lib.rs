//! `initmm-bench`: the benchmark kernel of `just bench` (the host half,
//! `platform/bench/bench.py`, boots it at several CPU counts and aggregates), and the pre-patch
//! baseline it measures initmm's design against ([`prepatch`]). With `bench=GROUP[,GROUP]` on
//! its command line it benchmarks; without, it runs the workloads as the demonstration kernel.
//!
//! The two designs run side by side on the kernel's own page tables: each is a `KernelVm` of its
//! own (initmm's `Seed` and [`prepatch::PrePatch`]) over the kernel's pgd, mapping into a part of
//! the vmalloc region reserved for it, of whole pgd entries, so that the two never share a table
//! (`Designs`). Everything but the lock discipline is the same code.
//!
//! Every measurement prints one line `bench {json}`, timed with the generic counter, and verifies
//! its work (every mapping read or translated back); a measurement whose check fails says so in
//! `"ok":false` and the run exits with a failure.
//!
//! The first line, `"group":"info"`, gives the counter's frequency (every `ticks` field counts
//! its ticks), the CPUs and the options.
//!
//! Groups:
//! - `designs`: loads (a) ioremap + read + iounmap of a 4 KiB device page, (b) map-only into
//!   fresh, never-touched 2 MiB slots (a page table installed per operation), (c) vmalloc +
//!   write + vfree of 1-16 pages; each with the seed design and the pre-patch baseline. Each rep
//!   runs both designs back to back, seed first in even reps and pre-patch first in odd ones
//!   (`first` says which), so that the host can pair them and drift and order effects fall on
//!   both alike. `windows=swapped` swaps the halves of the vmalloc window the two designs map
//!   into (placement moves throughput by a few percent under QEMU; the host alternates it
//!   between boots).
//!   Memory management is settled (lazy areas purged, frame caches drained, empty tables freed)
//!   before every measurement, so that each starts from the same state, and each ends, timed,
//!   with the purge of what its unmaps deferred: it pays for exactly its own invalidations.
//! - `breakdown` (the profiled kernel only): the same loads and pairs with profiling on: per lock of `mm::profile::LOCKS`
//!   the ticks spent waiting for it and holding it and the times it was taken; the serial time
//!   (some global lock held, nested holds counted once); ticks per profiled section (TLB
//!   maintenance, leaf writes); counts per event (table allocations, barriers, TLB
//!   invalidations, writes to shared cache lines); the table installs won and lost; and the CPU
//!   time (`cpu_ticks`: elapsed ticks times CPUs) they are shares of. Before each load's
//!   profiled runs, a `probe` line says what profiling itself costs (see `probe_costs`).
//! - `floor`: the irreducible work of one 4 KiB map + read + unmap, with its own TLB
//!   invalidation and with the invalidation batched as a lazy purge does it, against a real
//!   ioremap + read + iounmap.
//! - `growth`: a one-page ioremap + iounmap through this CPU's slot allocator with 10 .. 100,000
//!   of its areas live, and a global window reserve + release with as many windows live; ioremap
//!   of 4 KiB, 64 KiB, 2 MiB and 1 GiB (with blocks) and the table pages each uses. Needs the
//!   device windows on the command line: `bench_mmio=PA` (2 MiB aligned, >= 2 MiB) and
//!   `bench_mmio_1g=PA` (1 GiB aligned, >= 1 GiB): board knowledge stays in the host script.
//!   (`floor` and `growth` live in `costs`.)
//!
//! Every timed figure counts the generic counter's ticks, so a boot under QEMU's `-icount
//! shift=0` (one instruction per nanosecond of virtual time) gives instructions per operation:
//! the host does that at -smp 1 (see `platform/bench/bench.py`).
//! - `scaling` (2 or more CPUs): the seed on CPU 0 alone and on every online CPU, back to back in
//!   each rep, alternately first; the host shows the paired ratio beside the across-boots one
//!   (see `scaling` for why it decides nothing).
//!
//! Before anything is timed, every free page is written once (see `touch_free_memory`).
//!
//! Options: `reps=N` pairs per load for `designs` and `scaling` (default 5), `preps=N` for
//! `breakdown` (default 1), `ms=N` per measurement (default 300), `floor_ms=N` per `floor`
//! measurement (default `ms`), `lives=N,N,..` live areas for `growth`, `loads=a,b,c` (default all
//! three). `all` runs `breakdown` only in the profiled kernel (`--features profile`).

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

extern crate alloc;

pub mod prepatch;

#[cfg(target_os = "none")]
mod costs;
#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
pub use kernel::run_from_cmdline;
