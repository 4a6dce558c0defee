//! Why a blob was refused: [`FdtError`], and the [`Block`] an error about a header offset names.
//!
//! Kept apart from the walker in the parent module, which re-exports both, so that its code and
//! its long list of refusals can each be read on their own.

use core::fmt;

use super::{FDT_MAGIC, HEADER_SIZE, MAX_DEPTH, MAX_TOTALSIZE};

/// The three data blocks a header points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// The memory reservation block: (address, size) pairs of RAM to leave alone, ended by (0, 0).
    MemReserve,
    /// The structure block: the node and property tokens.
    Struct,
    /// The strings block: the NUL-terminated property names that properties point into.
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
    /// The boot path was handed a null device-tree pointer.
    NullPointer,
    /// The buffer cannot hold a header.
    TooShort {
        /// The buffer's length in bytes.
        len: usize,
    },
    /// The first word is not [`FDT_MAGIC`].
    BadMagic {
        /// The word found there.
        magic: u32,
    },
    /// The header's `totalsize` is smaller than the header itself.
    TotalSizeTooSmall {
        /// The header's `totalsize`, in bytes.
        totalsize: usize,
    },
    /// The header's `totalsize` is above [`MAX_TOTALSIZE`].
    TotalSizeTooLarge {
        /// The header's `totalsize`, in bytes.
        totalsize: usize,
    },
    /// The header's `totalsize` runs past the end of the buffer the blob was read from.
    TotalSizePastEnd {
        /// The header's `totalsize`, in bytes.
        totalsize: usize,
        /// The buffer's length in bytes.
        len: usize,
    },
    /// The version fields rule out every version this parser reads (16 and 17).
    UnsupportedVersion {
        /// The header's `version`.
        version: u32,
        /// The header's `last_comp_version`: the oldest version the blob claims to be readable as.
        last_comp_version: u32,
    },
    /// A block's offset points inside the header.
    BlockOverlapsHeader {
        /// Which block.
        block: Block,
        /// The block's offset as the header gives it.
        offset: u32,
    },
    /// A block's offset plus its size runs past `totalsize`.
    BlockOutOfBounds {
        /// Which block.
        block: Block,
        /// The block's offset as the header gives it.
        offset: u32,
        /// The size checked, in bytes: the header's size field, the rest of the blob for a version
        /// 16 structure block, and the 16-byte terminating entry for the memory reservation block.
        size: u64,
        /// The header's `totalsize`, in bytes.
        totalsize: usize,
    },
    /// A block's offset is not a multiple of the alignment the format requires.
    Misaligned {
        /// Which block.
        block: Block,
        /// The block's offset as the header gives it.
        offset: u32,
        /// The required alignment in bytes.
        align: u32,
    },
    /// The memory reservation block reaches the end of the blob without its (0, 0) entry.
    MemReserveUnterminated {
        /// The block's offset as the header gives it.
        offset: u32,
    },
    /// The structure block ends without an `FDT_END` token.
    MissingEnd {
        /// The end of the structure block.
        offset: usize,
    },
    /// A token's body (a name, a property header or value) runs past the structure block's end.
    Truncated {
        /// Where the token starts.
        offset: usize,
    },
    /// A token that is none of the five the format defines.
    UnknownToken {
        /// Where the token starts.
        offset: usize,
        /// The token's value.
        token: u32,
    },
    /// A node's name has no NUL before the end of the structure block.
    UnterminatedName {
        /// Where the `FDT_BEGIN_NODE` token starts.
        offset: usize,
    },
    /// A node's name is not valid UTF-8.
    NameNotUtf8 {
        /// Where the `FDT_BEGIN_NODE` token starts.
        offset: usize,
    },
    /// The root node has a name; the format requires "".
    RootNameNotEmpty {
        /// Where the root's `FDT_BEGIN_NODE` token starts.
        offset: usize,
    },
    /// A node would be nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// Where that node's `FDT_BEGIN_NODE` token starts.
        offset: usize,
    },
    /// A property appears before the root node opens or after it closes.
    PropOutsideNode {
        /// Where the `FDT_PROP` token starts.
        offset: usize,
    },
    /// A property follows a child node of its node; properties must come first.
    PropAfterChild {
        /// Where the `FDT_PROP` token starts.
        offset: usize,
    },
    /// A property's name offset points outside the strings block.
    PropNameOutOfBounds {
        /// Where the `FDT_PROP` token starts.
        offset: usize,
        /// The name's offset into the strings block.
        nameoff: u32,
        /// The strings block's size in bytes.
        strings_size: u32,
    },
    /// A property's name has no NUL before the end of the strings block.
    PropNameUnterminated {
        /// Where the `FDT_PROP` token starts.
        offset: usize,
        /// The name's offset into the strings block.
        nameoff: u32,
    },
    /// A property's name is not valid UTF-8.
    PropNameNotUtf8 {
        /// Where the `FDT_PROP` token starts.
        offset: usize,
        /// The name's offset into the strings block.
        nameoff: u32,
    },
    /// A property's value runs past the end of the structure block.
    PropValueOutOfBounds {
        /// Where the `FDT_PROP` token starts.
        offset: usize,
        /// The value's length in bytes, as the token gives it.
        len: u32,
        /// The end of the structure block.
        struct_end: usize,
    },
    /// An `FDT_END_NODE` with no node open.
    EndNodeUnderflow {
        /// Where the token starts.
        offset: usize,
    },
    /// `FDT_END` while nodes are still open.
    EndInsideNode {
        /// Where the token starts.
        offset: usize,
        /// How many nodes are still open.
        depth: usize,
    },
    /// `FDT_END` before any node: the tree has no root.
    NoRootNode {
        /// Where the token starts.
        offset: usize,
    },
    /// A second node at depth 0, after the root has closed.
    MultipleRootNodes {
        /// Where its `FDT_BEGIN_NODE` token starts.
        offset: usize,
    },
    /// `sanitize`'s output would not fit the header's 32-bit size and offset fields.
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
