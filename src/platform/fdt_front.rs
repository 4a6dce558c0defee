//! The front door for the flattened device tree (FDT) that firmware or QEMU hands us in `x0`.
//!
//! Nothing in the blob is trusted. [`walk`] checks the header and every token of the structure
//! block with checked arithmetic, in one pass, and hands each token on only once it is checked:
//!
//! - `FDT_NOP`s are dropped (QEMU's raspi4b loader NOPs out the nodes it cannot emulate);
//! - padding is never looked at (QEMU pads its blobs to 1 MiB: the walk stops at `FDT_END`);
//! - properties come before child nodes, names are valid UTF-8, the depth is at most
//!   [`MAX_DEPTH`], and there is one root, named "".
//!
//! `devicetree::parse` builds its whole index of the tree from that one walk. [`sanitize`] writes
//! the same walk out as a new, compact, NOP-free copy (header, memory reservation block,
//! structure block, strings block), for a reader that needs a clean blob rather than tokens:
//! `fdt` 0.1.5, for one, panics on a NOP between a node's properties and its `FDT_END_NODE`, and
//! on each of the other conditions above.

use alloc::vec::Vec;

mod error;

pub use error::{Block, FdtError};

/// The big-endian word every blob starts with.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of a version 17 header; version 16 headers lack `size_dt_struct` and are 36 bytes.
pub const HEADER_SIZE: usize = 40;
const HEADER_SIZE_V16: usize = 36;
/// The largest `totalsize` we accept. Real blobs are tens of KiB; anything near this is garbage,
/// and the bound keeps a corrupt header from making the boot path map or copy gigabytes.
pub const MAX_TOTALSIZE: usize = 64 << 20;
/// Maximum node nesting (the root is depth 1). Real trees are under 10 deep; `fdt` 0.1.5 keeps a
/// fixed 64-entry parent stack.
pub const MAX_DEPTH: usize = 32;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    let bytes = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

const fn align4(n: usize) -> Option<usize> {
    match n.checked_add(3) {
        Some(v) => Some(v & !3),
        None => None,
    }
}

/// Validate the magic and `totalsize` of a header: `first_40_bytes` is the start of the blob.
///
/// This is all the boot path needs before it checks that `[dtb, dtb + totalsize)` lies in RAM and
/// only then calls [`blob_from_ptr`].
pub fn header_totalsize(first_40_bytes: &[u8]) -> Result<usize, FdtError> {
    let too_short = FdtError::TooShort {
        len: first_40_bytes.len(),
    };
    if first_40_bytes.len() < HEADER_SIZE {
        return Err(too_short);
    }
    let magic = be32(first_40_bytes, 0).ok_or(too_short.clone())?;
    if magic != FDT_MAGIC {
        return Err(FdtError::BadMagic { magic });
    }
    let totalsize = be32(first_40_bytes, 4).ok_or(too_short)? as usize;
    if totalsize < HEADER_SIZE {
        return Err(FdtError::TotalSizeTooSmall { totalsize });
    }
    if totalsize > MAX_TOTALSIZE {
        return Err(FdtError::TotalSizeTooLarge { totalsize });
    }
    Ok(totalsize)
}

/// The blob at `ptr`, `totalsize` bytes long as its (validated) header says.
///
/// # Safety
/// `ptr` must be readable for [`HEADER_SIZE`] bytes, and - once the header is valid - for the
/// `totalsize` bytes it announces (call [`header_totalsize`] first and check that this range is
/// in RAM). That memory must not be written or reused while the returned slice is in use: pass it
/// to `devicetree::parse` (or [`sanitize`]) straight away and keep only what that returns.
pub unsafe fn blob_from_ptr(ptr: *const u8) -> Result<&'static [u8], FdtError> {
    if ptr.is_null() {
        return Err(FdtError::NullPointer);
    }
    // SAFETY: the caller guarantees `ptr` is readable for HEADER_SIZE bytes and not written
    // while we look; `u8` has no alignment requirement.
    let header = unsafe { core::slice::from_raw_parts(ptr, HEADER_SIZE) };
    let totalsize = header_totalsize(header)?;
    // SAFETY: the header is valid, so by the caller's contract `ptr` is readable and unchanging
    // for `totalsize` bytes; `totalsize <= MAX_TOTALSIZE` is far below `isize::MAX`.
    Ok(unsafe { core::slice::from_raw_parts(ptr, totalsize) })
}

/// The header fields, host-endian.
#[derive(Clone, Copy, Debug)]
struct Header {
    totalsize: usize,
    off_dt_struct: u32,
    off_dt_strings: u32,
    off_mem_rsvmap: u32,
    version: u32,
    last_comp_version: u32,
    boot_cpuid_phys: u32,
    size_dt_strings: u32,
    size_dt_struct: u32,
}

impl Header {
    fn read(blob: &[u8]) -> Result<Self, FdtError> {
        let totalsize = header_totalsize(blob)?;
        let field = |i: usize| be32(blob, i * 4).ok_or(FdtError::TooShort { len: blob.len() });
        Ok(Self {
            totalsize,
            off_dt_struct: field(2)?,
            off_dt_strings: field(3)?,
            off_mem_rsvmap: field(4)?,
            version: field(5)?,
            last_comp_version: field(6)?,
            boot_cpuid_phys: field(7)?,
            size_dt_strings: field(8)?,
            size_dt_struct: field(9)?,
        })
    }
}

/// Check that `[offset, offset + size)` lies after the header and inside `totalsize`, aligned.
fn check_block(
    h: &Header,
    header_size: usize,
    block: Block,
    offset: u32,
    size: u64,
    align: u32,
) -> Result<core::ops::Range<usize>, FdtError> {
    if (offset as usize) < header_size {
        return Err(FdtError::BlockOverlapsHeader { block, offset });
    }
    if !offset.is_multiple_of(align) {
        return Err(FdtError::Misaligned {
            block,
            offset,
            align,
        });
    }
    // u64 cannot overflow: both terms are below 2^32.
    let end = u64::from(offset) + size;
    if end > h.totalsize as u64 {
        return Err(FdtError::BlockOutOfBounds {
            block,
            offset,
            size,
            totalsize: h.totalsize,
        });
    }
    Ok(offset as usize..end as usize)
}

/// One token of the structure block, checked, as [`walk`] hands it on. `FDT_NOP`s are dropped
/// and `FDT_END` ends the walk, so only these three remain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'b> {
    /// `FDT_BEGIN_NODE` with the node's name ("" for the root, UTF-8).
    BeginNode(&'b str),
    /// `FDT_PROP`: its name (UTF-8, found at `nameoff` in the strings block) and its value.
    Prop {
        /// The property's name.
        name: &'b str,
        /// Where the name starts in the strings block, in bytes.
        nameoff: u32,
        /// The raw value: big-endian cells, strings or bytes, as the binding says.
        value: &'b [u8],
    },
    /// `FDT_END_NODE`.
    EndNode,
}

/// What [`walk`] found besides the structure block's tokens, all of it checked.
#[derive(Clone, Copy, Debug)]
pub struct Checked<'b> {
    /// The memory reservation block, its (0, 0) terminator included.
    pub rsvmap: &'b [u8],
    /// The strings block, which properties' `nameoff`s point into.
    pub strings: &'b [u8],
    /// The header's `boot_cpuid_phys`: the physical id (`reg`) of the CPU that booted.
    pub boot_cpuid_phys: u32,
}

impl<'b> Checked<'b> {
    /// The `/memreserve/` entries (without the terminator).
    pub fn reservations(&self) -> impl Iterator<Item = (u64, u64)> + 'b {
        self.rsvmap
            .chunks_exact(16)
            .map(|e| (be64(e, 0).unwrap_or(0), be64(e, 8).unwrap_or(0)))
            .take_while(|&(addr, size)| addr != 0 || size != 0)
    }
}

/// Check `blob` completely in one pass - the header, the three blocks, and every token of the
/// structure block with checked arithmetic - and hand each token to `visit` as it is checked,
/// in blob order.
///
/// A token reaches `visit` only once it passed its own checks, so a reader never sees a
/// property outside a node or after a child, a name that is not UTF-8, a depth beyond
/// [`MAX_DEPTH`] or a second root. A blob can still fail *after* some of its tokens were handed
/// on (a later token is bad, or `FDT_END` is missing): on `Err`, discard what `visit` built.
pub fn walk<'b>(blob: &'b [u8], mut visit: impl FnMut(Token<'b>)) -> Result<Checked<'b>, FdtError> {
    let h = Header::read(blob)?;
    if h.totalsize > blob.len() {
        return Err(FdtError::TotalSizePastEnd {
            totalsize: h.totalsize,
            len: blob.len(),
        });
    }
    let blob = blob.get(..h.totalsize).ok_or(FdtError::TotalSizePastEnd {
        totalsize: h.totalsize,
        len: blob.len(),
    })?;
    if h.version < 16 || h.last_comp_version > 17 {
        return Err(FdtError::UnsupportedVersion {
            version: h.version,
            last_comp_version: h.last_comp_version,
        });
    }
    let header_size = if h.version >= 17 {
        HEADER_SIZE
    } else {
        HEADER_SIZE_V16
    };

    // A version 16 header has no size_dt_struct: the structure block then runs to FDT_END,
    // which must come before totalsize.
    let struct_size = if h.version >= 17 {
        u64::from(h.size_dt_struct)
    } else {
        (h.totalsize as u64).saturating_sub(u64::from(h.off_dt_struct))
    };
    let struct_range = check_block(
        &h,
        header_size,
        Block::Struct,
        h.off_dt_struct,
        struct_size,
        4,
    )?;
    let strings_range = check_block(
        &h,
        header_size,
        Block::Strings,
        h.off_dt_strings,
        u64::from(h.size_dt_strings),
        1,
    )?;
    // At least the terminating entry must fit.
    let rsv_range = check_block(&h, header_size, Block::MemReserve, h.off_mem_rsvmap, 16, 8)?;

    let rsvmap = mem_reserve_block(blob, rsv_range.start, h.off_mem_rsvmap)?;
    let strings = blob.get(strings_range).unwrap_or_default();
    walk_struct(blob, struct_range, strings, &mut visit)?;
    Ok(Checked {
        rsvmap,
        strings,
        boot_cpuid_phys: h.boot_cpuid_phys,
    })
}

/// Validate `blob` completely ([`walk`]) and return a compact, NOP-free copy of it (see the
/// module docs).
///
/// The copy is a version 17 blob laid out as header, memory reservation block, structure block,
/// strings block; `boot_cpuid_phys` is kept. Sanitizing a sanitized blob returns it unchanged.
pub fn sanitize(blob: &[u8]) -> Result<Vec<u8>, FdtError> {
    let mut structure = Vec::new();
    let checked = walk(blob, |t| match t {
        Token::BeginNode(name) => {
            structure.extend_from_slice(&FDT_BEGIN_NODE.to_be_bytes());
            structure.extend_from_slice(name.as_bytes());
            // A NUL, then zeroes to the next 4-byte boundary.
            structure.resize((structure.len() + 1).next_multiple_of(4), 0);
        }
        Token::Prop { nameoff, value, .. } => {
            structure.extend_from_slice(&FDT_PROP.to_be_bytes());
            // `walk` checked that the value fits the struct block, so its length fits a u32.
            structure.extend_from_slice(&(value.len() as u32).to_be_bytes());
            structure.extend_from_slice(&nameoff.to_be_bytes());
            structure.extend_from_slice(value);
            structure.resize(structure.len().next_multiple_of(4), 0);
        }
        Token::EndNode => structure.extend_from_slice(&FDT_END_NODE.to_be_bytes()),
    })?;
    structure.extend_from_slice(&FDT_END.to_be_bytes());
    let (rsvmap, strings) = (checked.rsvmap, checked.strings);

    let off_dt_struct = HEADER_SIZE + rsvmap.len();
    let off_dt_strings = off_dt_struct + structure.len();
    let totalsize = off_dt_strings + strings.len();
    let u = |v: usize| u32::try_from(v).map_err(|_| FdtError::OutputTooLarge);
    let mut out = Vec::with_capacity(totalsize);
    for field in [
        FDT_MAGIC,
        u(totalsize)?,
        u(off_dt_struct)?,
        u(off_dt_strings)?,
        u(HEADER_SIZE)?,
        17,
        16,
        checked.boot_cpuid_phys,
        u(strings.len())?,
        u(structure.len())?,
    ] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out.extend_from_slice(rsvmap);
    out.extend_from_slice(&structure);
    out.extend_from_slice(strings);
    Ok(out)
}

/// The memory reservation block including its (0, 0) terminator, which must lie inside `blob`.
fn mem_reserve_block(blob: &[u8], start: usize, offset: u32) -> Result<&[u8], FdtError> {
    let mut pos = start;
    loop {
        let (Some(addr), Some(size)) = (
            be64(blob, pos),
            pos.checked_add(8).and_then(|p| be64(blob, p)),
        ) else {
            return Err(FdtError::MemReserveUnterminated { offset });
        };
        pos += 16;
        if addr == 0 && size == 0 {
            return blob
                .get(start..pos)
                .ok_or(FdtError::MemReserveUnterminated { offset });
        }
    }
}

/// Walk the structure block in `blob[range]` up to `FDT_END`, checking each token before it is
/// handed to `visit` (NOPs are skipped).
fn walk_struct<'b>(
    blob: &'b [u8],
    range: core::ops::Range<usize>,
    strings: &'b [u8],
    visit: &mut impl FnMut(Token<'b>),
) -> Result<(), FdtError> {
    let base = range.start;
    let s = blob.get(range).unwrap_or_default();
    let end = base + s.len();
    let mut pos = 0usize;
    let mut depth = 0usize;
    let mut seen_root = false;
    // Whether the innermost open node has had a child: properties must precede children.
    let mut had_child = false;

    loop {
        let at = base + pos;
        let token = match be32(s, pos) {
            Some(t) => t,
            None if pos >= s.len() => return Err(FdtError::MissingEnd { offset: end }),
            None => return Err(FdtError::Truncated { offset: at }),
        };
        let body = pos + 4;
        match token {
            FDT_NOP => pos = body,
            FDT_BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return Err(FdtError::MultipleRootNodes { offset: at });
                }
                if depth >= MAX_DEPTH {
                    return Err(FdtError::TooDeep { offset: at });
                }
                let rest = s.get(body..).unwrap_or_default();
                let name_len = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(FdtError::UnterminatedName { offset: at })?;
                let name = core::str::from_utf8(rest.get(..name_len).unwrap_or_default())
                    .map_err(|_| FdtError::NameNotUtf8 { offset: at })?;
                if depth == 0 && !name.is_empty() {
                    return Err(FdtError::RootNameNotEmpty { offset: at });
                }
                let padded = align4(name_len + 1).ok_or(FdtError::Truncated { offset: at })?;
                let next = body.checked_add(padded).filter(|&n| n <= s.len());
                pos = next.ok_or(FdtError::Truncated { offset: at })?;
                visit(Token::BeginNode(name));
                depth += 1;
                seen_root = true;
                had_child = false;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(FdtError::EndNodeUnderflow { offset: at });
                }
                depth -= 1;
                had_child = true;
                visit(Token::EndNode);
                pos = body;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(FdtError::PropOutsideNode { offset: at });
                }
                if had_child {
                    return Err(FdtError::PropAfterChild { offset: at });
                }
                let (Some(len), Some(nameoff)) = (be32(s, body), be32(s, body + 4)) else {
                    return Err(FdtError::Truncated { offset: at });
                };
                let name = prop_name(strings, at, nameoff)?;
                let value_start = body + 8;
                let value_oob = FdtError::PropValueOutOfBounds {
                    offset: at,
                    len,
                    struct_end: end,
                };
                let value_end = value_start
                    .checked_add(len as usize)
                    .ok_or(value_oob.clone())?;
                let value = s.get(value_start..value_end).ok_or(value_oob.clone())?;
                let padded = align4(len as usize).ok_or(value_oob.clone())?;
                let next = value_start.checked_add(padded).filter(|&n| n <= s.len());
                pos = next.ok_or(value_oob)?;
                visit(Token::Prop {
                    name,
                    nameoff,
                    value,
                });
            }
            FDT_END => {
                if depth != 0 {
                    return Err(FdtError::EndInsideNode { offset: at, depth });
                }
                if !seen_root {
                    return Err(FdtError::NoRootNode { offset: at });
                }
                return Ok(());
            }
            _ => return Err(FdtError::UnknownToken { offset: at, token }),
        }
    }
}

/// The NUL-terminated, UTF-8 name at `nameoff` in the strings block.
fn prop_name(strings: &[u8], at: usize, nameoff: u32) -> Result<&str, FdtError> {
    let rest = strings
        .get(nameoff as usize..)
        .filter(|r| !r.is_empty())
        .ok_or(FdtError::PropNameOutOfBounds {
            offset: at,
            nameoff,
            strings_size: u32::try_from(strings.len()).unwrap_or(u32::MAX),
        })?;
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(FdtError::PropNameUnterminated {
            offset: at,
            nameoff,
        })?;
    core::str::from_utf8(rest.get(..len).unwrap_or_default()).map_err(|_| {
        FdtError::PropNameNotUtf8 {
            offset: at,
            nameoff,
        }
    })
}

#[cfg(test)]
pub(crate) mod tests;
