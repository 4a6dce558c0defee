//! The machine's side of memory management, on top of the `initmm-mm` crate: physical frames
//! (`frame`), the kernel heap (`heap`), the page-table environment of the real machine over the
//! linear map and the CPU's barrier and TLB instructions (`hw`), and the building of `init_mm` at
//! boot (`boot`). The crate root re-exports all of it with the `initmm-mm` crate (and where the
//! kernel image lies, `kimage`) as `mm`.

pub mod frame;
pub mod heap;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod hw;
