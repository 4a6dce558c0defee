//! Why a blob was refused: [`FdtError`], and the [`Block`] an error about a header offset names.
//!
//! Kept apart from the walker in the parent module, which re-exports both, so that its code and
//! its long list of refusals can each be read on their own.

use core::fmt;

use super::{FDT_MAGIC, HEADER_SIZE, MAX_DEPTH, MAX_TOTALSIZE};

/// The three data blocks a header points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    MemReserve,
    Struct,
    Strings,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Block::MemReserve => "memory reservation block",
            Block::Struct => "struct block",
            Block::Strings => "strings block",
        })
    }
}

/// Why a blob was refused. Offsets are byte offsets from the start of the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdtError {
    NullPointer,
    TooShort {
        len: usize,
    },
    BadMagic {
        magic: u32,
    },
    TotalSizeTooSmall {
        totalsize: usize,
    },
    TotalSizeTooLarge {
        totalsize: usize,
    },
    TotalSizePastEnd {
        totalsize: usize,
        len: usize,
    },
    UnsupportedVersion {
        version: u32,
        last_comp_version: u32,
    },
    BlockOverlapsHeader {
        block: Block,
        offset: u32,
    },
    BlockOutOfBounds {
        block: Block,
        offset: u32,
        size: u64,
        totalsize: usize,
    },
    Misaligned {
        block: Block,
        offset: u32,
        align: u32,
    },
    MemReserveUnterminated {
        offset: u32,
    },
    MissingEnd {
        offset: usize,
    },
    Truncated {
        offset: usize,
    },
    UnknownToken {
        offset: usize,
        token: u32,
    },
    UnterminatedName {
        offset: usize,
    },
    NameNotUtf8 {
        offset: usize,
    },
    RootNameNotEmpty {
        offset: usize,
    },
    TooDeep {
        offset: usize,
    },
    PropOutsideNode {
        offset: usize,
    },
    PropAfterChild {
        offset: usize,
    },
    PropNameOutOfBounds {
        offset: usize,
        nameoff: u32,
        strings_size: u32,
    },
    PropNameUnterminated {
        offset: usize,
        nameoff: u32,
    },
    PropNameNotUtf8 {
        offset: usize,
        nameoff: u32,
    },
    PropValueOutOfBounds {
        offset: usize,
        len: u32,
        struct_end: usize,
    },
    EndNodeUnderflow {
        offset: usize,
    },
    EndInsideNode {
        offset: usize,
        depth: usize,
    },
    NoRootNode {
        offset: usize,
    },
    MultipleRootNodes {
        offset: usize,
    },
    OutputTooLarge,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FdtError::*;
        f.write_str("device tree: ")?;
        match *self {
            NullPointer => write!(f, "null pointer"),
            TooShort { len } => write!(
                f,
                "blob of {len} bytes is shorter than the {HEADER_SIZE}-byte header"
            ),
            BadMagic { magic } => write!(f, "bad magic {magic:#010x} (expected {FDT_MAGIC:#010x})"),
            TotalSizeTooSmall { totalsize } => {
                write!(f, "totalsize {totalsize:#x} is smaller than the header")
            }
            TotalSizeTooLarge { totalsize } => {
                write!(
                    f,
                    "totalsize {totalsize:#x} is larger than the {MAX_TOTALSIZE:#x} limit"
                )
            }
            TotalSizePastEnd { totalsize, len } => {
                write!(
                    f,
                    "totalsize {totalsize:#x} is past the end of the {len:#x}-byte buffer"
                )
            }
            UnsupportedVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "version {version} (last compatible {last_comp_version}) is not compatible with 16..=17"
            ),
            BlockOverlapsHeader { block, offset } => {
                write!(f, "{block} offset {offset:#x} overlaps the header")
            }
            BlockOutOfBounds {
                block,
                offset,
                size,
                totalsize,
            } => {
                write!(
                    f,
                    "{block} offset {offset:#x} + size {size:#x} is past totalsize {totalsize:#x}"
                )
            }
            Misaligned {
                block,
                offset,
                align,
            } => {
                write!(f, "{block} offset {offset:#x} is not {align}-byte aligned")
            }
            MemReserveUnterminated { offset } => {
                write!(
                    f,
                    "memory reservation block at {offset:#x} has no terminating (0, 0) entry"
                )
            }
            MissingEnd { offset } => write!(f, "struct block ends at {offset:#x} without FDT_END"),
            Truncated { offset } => write!(
                f,
                "token at {offset:#x} runs past the end of the struct block"
            ),
            UnknownToken { offset, token } => write!(f, "unknown token {token:#x} at {offset:#x}"),
            UnterminatedName { offset } => {
                write!(f, "node name at {offset:#x} is not NUL-terminated")
            }
            NameNotUtf8 { offset } => write!(f, "node name at {offset:#x} is not UTF-8"),
            RootNameNotEmpty { offset } => {
                write!(f, "root node at {offset:#x} has a non-empty name")
            }
            TooDeep { offset } => {
                write!(f, "node at {offset:#x} is nested deeper than {MAX_DEPTH}")
            }
            PropOutsideNode { offset } => write!(f, "property at {offset:#x} is outside any node"),
            PropAfterChild { offset } => write!(f, "property at {offset:#x} follows a child node"),
            PropNameOutOfBounds {
                offset,
                nameoff,
                strings_size,
            } => write!(
                f,
                "property at {offset:#x}: name offset {nameoff:#x} is outside the {strings_size:#x}-byte strings block"
            ),
            PropNameUnterminated { offset, nameoff } => write!(
                f,
                "property at {offset:#x}: name at strings offset {nameoff:#x} is not NUL-terminated"
            ),
            PropNameNotUtf8 { offset, nameoff } => {
                write!(
                    f,
                    "property at {offset:#x}: name at strings offset {nameoff:#x} is not UTF-8"
                )
            }
            PropValueOutOfBounds {
                offset,
                len,
                struct_end,
            } => write!(
                f,
                "property at {offset:#x}: value of {len:#x} bytes runs past the struct block end {struct_end:#x}"
            ),
            EndNodeUnderflow { offset } => write!(f, "FDT_END_NODE at {offset:#x} closes no node"),
            EndInsideNode { offset, depth } => {
                write!(f, "FDT_END at {offset:#x} with {depth} node(s) still open")
            }
            NoRootNode { offset } => write!(f, "FDT_END at {offset:#x} before any node"),
            MultipleRootNodes { offset } => write!(f, "second root node at {offset:#x}"),
            OutputTooLarge => write!(f, "sanitized blob does not fit a 32-bit totalsize"),
        }
    }
}
