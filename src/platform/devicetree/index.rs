//! The flat index of a device tree and its readers.
//!
//! [`Tree::read`] indexes the tree from the front door's one walk: each node's name, parent and
//! properties, in depth-first order, pointing into the blob. The readers here answer the
//! questions any part of a machine asks of the tree - a property, a string, cell counts, `reg`,
//! an address translated through the buses' `ranges`, a path, a phandle - and know nothing of
//! what a machine is made of (that is `parts`). What is odd goes into `notes`, for the boot log.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::DtError;
use crate::mm::region::Region;
use crate::platform::fdt_front::{self, Checked, FdtError, Token};

/// The root's index.
pub(super) const ROOT: usize = 0;

struct Node<'b> {
    /// "" for the root.
    name: &'b str,
    parent: Option<usize>,
    /// Its properties, in blob order: a range of `Tree::props` (the front door lets no property
    /// follow a child node, so a node's properties are contiguous).
    props: Range<usize>,
}

/// The tree flattened in DT order (depth-first), with parent links. Index 0 is the root.
pub(super) struct Tree<'b> {
    nodes: Vec<Node<'b>>,
    /// Every property as (name, value), node after node.
    props: Vec<(&'b str, &'b [u8])>,
    /// What was odd and ignored, for the boot log.
    pub(super) notes: Vec<String>,
}

pub(super) fn be_cells(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// `bytes` as a `String`, each invalid UTF-8 sequence replaced by U+FFFD (firmware strings are
/// not trusted to be UTF-8; the usual valid string is copied without the replacement machinery).
fn lossy(bytes: &[u8]) -> String {
    match core::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

pub(super) fn u32_of(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

impl<'b> Tree<'b> {
    /// Index `blob` in one walk of the front door, which checked every token it handed on;
    /// with what else the walk found (the memory reservations).
    pub(super) fn read(blob: &'b [u8]) -> Result<(Self, Checked<'b>), FdtError> {
        let mut tree = Tree {
            nodes: Vec::new(),
            props: Vec::new(),
            notes: Vec::new(),
        };
        // The node the walk is in: tokens come depth-first, so FDT_END_NODE returns to its parent.
        let mut open: Option<usize> = None;
        let checked = fdt_front::walk(blob, |t| tree.add(t, &mut open))?;
        Ok((tree, checked))
    }

    /// Index one checked token of the walk; `open` is the node the walk is in.
    fn add(&mut self, t: Token<'b>, open: &mut Option<usize>) {
        match t {
            Token::BeginNode(name) => {
                let at = self.props.len();
                self.nodes.push(Node {
                    name,
                    parent: *open,
                    props: at..at,
                });
                *open = Some(self.nodes.len() - 1);
            }
            Token::Prop { name, value, .. } => {
                self.props.push((name, value));
                let end = self.props.len();
                if let Some(n) = open.and_then(|i| self.nodes.get_mut(i)) {
                    n.props.end = end;
                }
            }
            Token::EndNode => *open = open.and_then(|i| self.parent(i)),
        }
    }

    pub(super) fn parent(&self, idx: usize) -> Option<usize> {
        self.nodes.get(idx)?.parent
    }

    /// Every node, in depth-first order.
    pub(super) fn all_nodes(&self) -> Range<usize> {
        0..self.nodes.len()
    }

    pub(super) fn name(&self, idx: usize) -> &'b str {
        self.nodes.get(idx).map_or("", |n| n.name)
    }

    /// Children come after their parent in depth-first order.
    pub(super) fn children(&self, idx: usize) -> impl Iterator<Item = usize> + '_ {
        (idx + 1..self.nodes.len()).filter(move |&i| self.parent(i) == Some(idx))
    }

    /// The value of `idx`'s first property called `name`.
    #[inline(never)]
    pub(super) fn prop(&self, idx: usize, name: &str) -> Option<&'b [u8]> {
        let range = self.nodes.get(idx)?.props.clone();
        let props = self.props.get(range)?;
        props.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }

    #[inline(never)]
    pub(super) fn path(&self, idx: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if i != ROOT {
                parts.push(self.name(i));
            }
            cur = self.parent(i);
        }
        if parts.is_empty() {
            return "/".to_owned();
        }
        parts.iter().rev().fold(String::new(), |s, p| s + "/" + p)
    }

    /// The first string of a string property (lossy: firmware strings are not trusted to be UTF-8).
    #[inline(never)]
    pub(super) fn string(&self, idx: usize, name: &str) -> Option<String> {
        let v = self.prop(idx, name)?;
        Some(lossy(v.split(|&b| b == 0).next().unwrap_or_default()))
    }

    /// Whether the first string of a string property is `want` (what `string` would return,
    /// compared without making it).
    #[inline(never)]
    pub(super) fn first_string_is(&self, idx: usize, name: &str, want: &str) -> bool {
        self.prop(idx, name)
            .is_some_and(|v| v.split(|&b| b == 0).next() == Some(want.as_bytes()))
    }

    #[inline(never)]
    pub(super) fn strlist(&self, idx: usize, name: &str) -> Vec<String> {
        self.prop(idx, name)
            .map(|v| {
                v.split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(lossy)
                    .collect()
            })
            .unwrap_or_default()
    }

    #[inline(never)]
    pub(super) fn is_compatible(&self, idx: usize, with: &[&str]) -> bool {
        self.prop(idx, "compatible").is_some_and(|v| {
            v.split(|&b| b == 0)
                .any(|s| with.iter().any(|w| w.as_bytes() == s))
        })
    }

    #[inline(never)]
    pub(super) fn available(&self, idx: usize) -> bool {
        match self.prop(idx, "status") {
            None => true,
            Some(v) => matches!(v.split(|&b| b == 0).next(), Some(b"okay" | b"ok")),
        }
    }

    #[inline(never)]
    pub(super) fn u32_prop(&self, idx: usize, name: &str) -> Option<u32> {
        u32_of(self.prop(idx, name)?)
    }

    /// A `#...-cells` value of `idx`, `default` when absent.
    #[inline(never)]
    pub(super) fn cell_count(
        &self,
        idx: usize,
        name: &'static str,
        default: u32,
    ) -> Result<u32, DtError> {
        match self.prop(idx, name) {
            None => Ok(default),
            Some(v) => u32_of(v).ok_or_else(|| DtError::BadProperty {
                path: self.path(idx),
                property: name,
                len: v.len(),
            }),
        }
    }

    /// `(#address-cells, #size-cells)` that `idx` declares for its children (defaults 2 and 1),
    /// refused when either does not fit a `u64`.
    #[inline(never)]
    pub(super) fn child_cells(&self, idx: usize) -> Result<(usize, usize), DtError> {
        let ac = self.cell_count(idx, "#address-cells", 2)?;
        let sc = self.cell_count(idx, "#size-cells", 1)?;
        if ac > 2 || sc > 2 {
            return Err(DtError::CellsTooLarge {
                path: self.path(idx),
                address_cells: ac,
                size_cells: sc,
            });
        }
        Ok((ac as usize, sc as usize))
    }

    /// Split `property` of `idx` into tuples of three numbers of `cells[0]`, `cells[1]` and
    /// `cells[2]` cells (a count of 0 reads as 0: `reg` is a (address, size, 0) tuple).
    #[inline(never)]
    pub(super) fn tuples(
        &self,
        idx: usize,
        property: &'static str,
        cells: [usize; 3],
    ) -> Result<Option<Vec<[u64; 3]>>, DtError> {
        let Some(v) = self.prop(idx, property) else {
            return Ok(None);
        };
        let width: usize = cells.iter().sum::<usize>() * 4;
        if width == 0 {
            return Err(DtError::ZeroCells {
                path: self.path(idx),
                property,
                parent: self
                    .parent(idx)
                    .map_or_else(|| "/".to_owned(), |p| self.path(p)),
            });
        }
        if v.len() % width != 0 {
            return Err(DtError::BadProperty {
                path: self.path(idx),
                property,
                len: v.len(),
            });
        }
        let mut out = Vec::with_capacity(v.len() / width);
        for t in v.chunks_exact(width) {
            let (a, rest) = t.split_at(cells[0] * 4);
            let (b, c) = rest.split_at(cells[1] * 4);
            out.push([be_cells(a), be_cells(b), be_cells(c)]);
        }
        Ok(Some(out))
    }

    /// The `reg` of `idx` as (address, size) in its parent's address space.
    #[inline(never)]
    pub(super) fn reg(&self, idx: usize) -> Result<Option<Vec<(u64, u64)>>, DtError> {
        let (ac, sc) = match self.parent(idx) {
            Some(p) => self.child_cells(p)?,
            None => (2, 1),
        };
        let reg = self.tuples(idx, "reg", [ac, sc, 0])?;
        Ok(reg.map(|t| t.into_iter().map(|[addr, size, _]| (addr, size)).collect()))
    }

    /// Translate `addr`, from the address space `idx`'s `reg` is in, to a CPU physical address
    /// through each ancestor bus's `ranges`. `None`: a bus without `ranges` (not memory-mapped) or
    /// an address no range covers.
    #[inline(never)]
    pub(super) fn translate(&self, idx: usize, mut addr: u64) -> Result<Option<u64>, DtError> {
        let mut child = idx;
        while let Some(bus) = self.parent(child) {
            let Some(grand) = self.parent(bus) else {
                return Ok(Some(addr));
            }; // bus is the root
            let Some(ranges) = self.prop(bus, "ranges") else {
                return Ok(None);
            };
            if !ranges.is_empty() {
                let (cac, csc) = self.child_cells(bus)?;
                let (pac, _) = self.child_cells(grand)?;
                let Some(triples) = self.tuples(bus, "ranges", [cac, pac, csc])? else {
                    return Ok(None);
                };
                let hit = triples.iter().find_map(|&[c, p, size]| {
                    let off = addr.checked_sub(c).filter(|&o| o < size)?;
                    p.checked_add(off)
                });
                match hit {
                    Some(a) => addr = a,
                    None => return Ok(None),
                }
            }
            child = bus;
        }
        Ok(Some(addr)) // idx is the root itself
    }

    /// The translated `reg` ranges of a device, or `None` (with a note) when it has none or they
    /// are not CPU-addressable.
    #[inline(never)]
    pub(super) fn mmio(&mut self, idx: usize) -> Result<Option<Vec<Region>>, DtError> {
        let Some(reg) = self.reg(idx)? else {
            self.note(format!("{}: no reg", self.path(idx)));
            return Ok(None);
        };
        let mut out = Vec::with_capacity(reg.len());
        for (addr, size) in reg {
            match self.translate(idx, addr)? {
                Some(base) => out.push(Region::new(base, size)),
                None => {
                    self.note(format!(
                        "{}: bus address {addr:#x} is not translatable to a CPU address",
                        self.path(idx)
                    ));
                    return Ok(None);
                }
            }
        }
        Ok(Some(out))
    }

    #[inline(never)]
    pub(super) fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    /// `path` with unit addresses optional ("/soc/serial" matches the first "/soc/serial@...").
    #[inline(never)]
    pub(super) fn resolve_path(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix('/')?;
        let mut cur = ROOT;
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            cur = self
                .children(cur)
                .find(|&c| self.name(c) == part)
                .or_else(|| {
                    if part.contains('@') {
                        return None;
                    }
                    self.children(cur)
                        .find(|&c| self.name(c).split('@').next() == Some(part))
                })?;
        }
        Some(cur)
    }

    #[inline(never)]
    pub(super) fn by_phandle(&self, phandle: u32) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.u32_prop(i, "phandle") == Some(phandle)
                || self.u32_prop(i, "linux,phandle") == Some(phandle)
        })
    }
}
