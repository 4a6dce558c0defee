use super::*;
use alloc::vec;

pub(crate) const VIRT_GICV2: &[u8] = include_bytes!("../../../tests/data/qemu-virt-gicv2.dtb");
pub(crate) const VIRT_GICV3: &[u8] = include_bytes!("../../../tests/data/qemu-virt-gicv3.dtb");
pub(crate) const VIRT_EL2: &[u8] = include_bytes!("../../../tests/data/qemu-virt-el2.dtb");

fn set32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

fn get32(b: &[u8], off: usize) -> u32 {
    be32(b, off).unwrap()
}

/// A hand-made blob: header, one reservation, the given structure tokens, and `strings`.
pub(crate) fn build(structure: &[u8], strings: &[u8]) -> Vec<u8> {
    let rsv: [u8; 32] = {
        let mut r = [0u8; 32];
        r[..8].copy_from_slice(&0x1000u64.to_be_bytes());
        r[8..16].copy_from_slice(&0x2000u64.to_be_bytes());
        r
    };
    let off_struct = HEADER_SIZE + rsv.len();
    let off_strings = off_struct + structure.len();
    let total = off_strings + strings.len();
    let mut b = vec![0u8; HEADER_SIZE];
    for (i, v) in [
        FDT_MAGIC,
        total as u32,
        off_struct as u32,
        off_strings as u32,
        40,
        17,
        16,
        0,
    ]
    .into_iter()
    .enumerate()
    {
        set32(&mut b, i * 4, v);
    }
    set32(&mut b, 32, strings.len() as u32);
    set32(&mut b, 36, structure.len() as u32);
    b.extend_from_slice(&rsv);
    b.extend_from_slice(structure);
    b.extend_from_slice(strings);
    b
}

pub(crate) fn tok(t: u32) -> Vec<u8> {
    t.to_be_bytes().to_vec()
}

pub(crate) fn begin(name: &str) -> Vec<u8> {
    let mut v = tok(FDT_BEGIN_NODE);
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

pub(crate) fn prop(nameoff: u32, value: &[u8]) -> Vec<u8> {
    let mut v = tok(FDT_PROP);
    v.extend_from_slice(&(value.len() as u32).to_be_bytes());
    v.extend_from_slice(&nameoff.to_be_bytes());
    v.extend_from_slice(value);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

pub(crate) fn end_node() -> Vec<u8> {
    tok(FDT_END_NODE)
}

pub(crate) fn end() -> Vec<u8> {
    tok(FDT_END)
}

/// Strings block used with `build`: "compatible" at 0, "model" at 11.
pub(crate) const STRINGS: &[u8] = b"compatible\0model\0";

fn sanitize_tokens(parts: &[Vec<u8>]) -> Result<Vec<u8>, FdtError> {
    sanitize(&build(&parts.concat(), STRINGS))
}

/// Split a NOP-free struct block into its tokens (test helper; trusts its input).
fn split_tokens(s: &[u8]) -> Vec<&[u8]> {
    let mut out = vec![];
    let mut pos = 0;
    while pos < s.len() {
        let len = match get32(s, pos) {
            FDT_BEGIN_NODE => {
                4 + align4(s[pos + 4..].iter().position(|&b| b == 0).unwrap() + 1).unwrap()
            }
            FDT_PROP => 12 + align4(get32(s, pos + 4) as usize).unwrap(),
            _ => 4,
        };
        out.push(&s[pos..pos + len]);
        pos += len;
    }
    out
}

#[test]
fn real_blobs_sanitize_to_compact_fdt_readable_copies() {
    for blob in [VIRT_GICV2, VIRT_GICV3, VIRT_EL2] {
        let s = sanitize(blob).unwrap();
        assert!(
            s.len() < 64 << 10,
            "1 MiB of QEMU padding must be dropped, got {:#x}",
            s.len()
        );
        assert_eq!(header_totalsize(&s).unwrap(), s.len());
        assert_eq!(get32(&s, 20), 17);
        // Idempotent: a sanitized blob is already canonical.
        assert_eq!(sanitize(&s).unwrap(), s);
        let fdt = fdt::Fdt::new(&s).unwrap();
        assert_eq!(
            fdt.find_node("/").unwrap().property("model").unwrap().value,
            b"linux,dummy-virt\0"
        );
        assert!(fdt.all_nodes().count() > 20);
    }
}

/// Every token the walk hands on, in order.
fn walked(blob: &[u8]) -> Result<Vec<Token<'_>>, FdtError> {
    let mut out = vec![];
    walk(blob, |t| out.push(t))?;
    Ok(out)
}

#[test]
fn walk_hands_on_checked_tokens_in_blob_order() {
    let blob = build(
        &[
            begin(""),
            prop(11, b"m\0"),
            begin("a@1"),
            prop(0, b"x\0y\0"),
            end_node(),
            tok(FDT_NOP),
            end_node(),
            end(),
        ]
        .concat(),
        STRINGS,
    );
    assert_eq!(
        walked(&blob).unwrap(),
        vec![
            Token::BeginNode(""),
            Token::Prop {
                name: "model",
                nameoff: 11,
                value: b"m\0"
            },
            Token::BeginNode("a@1"),
            Token::Prop {
                name: "compatible",
                nameoff: 0,
                value: b"x\0y\0"
            },
            Token::EndNode,
            Token::EndNode,
        ]
    );
    let checked = walk(&blob, |_| {}).unwrap();
    assert_eq!(checked.strings, STRINGS);
    assert_eq!(
        checked.reservations().collect::<Vec<_>>(),
        vec![(0x1000, 0x2000)]
    );
    // What fails is refused whatever was handed on before it; nothing after it is.
    let bad = build(
        &[
            begin(""),
            begin("a"),
            end_node(),
            prop(0, b"x"),
            end_node(),
            end(),
        ]
        .concat(),
        STRINGS,
    );
    let mut seen = vec![];
    assert!(matches!(
        walk(&bad, |t| seen.push(t)),
        Err(FdtError::PropAfterChild { .. })
    ));
    assert_eq!(
        seen,
        vec![Token::BeginNode(""), Token::BeginNode("a"), Token::EndNode]
    );
}

#[test]
fn real_blobs_walk_as_their_sanitized_copies() {
    for blob in [VIRT_GICV2, VIRT_GICV3, VIRT_EL2] {
        let clean = sanitize(blob).unwrap();
        let (a, b) = (walked(blob).unwrap(), walked(&clean).unwrap());
        assert!(a.len() > 100);
        assert_eq!(a, b);
    }
}

#[test]
fn nops_everywhere_are_removed() {
    let clean = sanitize(VIRT_GICV3).unwrap();
    let off_struct = get32(&clean, 8) as usize;
    let size_struct = get32(&clean, 36) as usize;
    let strings = &clean[get32(&clean, 12) as usize..];
    let tokens = split_tokens(&clean[off_struct..off_struct + size_struct]);
    assert!(tokens.len() > 100);
    // Re-serialise with 1..3 NOPs before every token and after the last one.
    let mut structure = vec![];
    for (i, t) in tokens.iter().enumerate() {
        for _ in 0..=(i % 3) {
            structure.extend_from_slice(&tok(FDT_NOP));
        }
        structure.extend_from_slice(t);
    }
    structure.extend_from_slice(&tok(FDT_NOP));
    let mut noisy = build(&structure, strings);
    // QEMU's reservation block is empty; make `build`'s one empty too (terminator first).
    let rsv_fixture = &clean[40..off_struct];
    assert_eq!(rsv_fixture, &[0u8; 16]);
    noisy[40..72].fill(0);
    assert!(noisy.len() > clean.len() + 4 * tokens.len());
    let out = sanitize(&noisy).unwrap();
    assert_ne!(out.len(), noisy.len());
    assert_eq!(out, clean);
    // The walk drops the NOPs itself: a reader of its tokens never sees them.
    assert_eq!(walked(&noisy).unwrap(), walked(&clean).unwrap());
}

#[test]
fn truncated_blobs_are_refused() {
    assert_eq!(
        sanitize(&VIRT_GICV2[..20]),
        Err(FdtError::TooShort { len: 20 })
    );
    assert_eq!(sanitize(&[]), Err(FdtError::TooShort { len: 0 }));
    assert_eq!(
        sanitize(&VIRT_GICV2[..4096]),
        Err(FdtError::TotalSizePastEnd {
            totalsize: 0x10_0000,
            len: 4096
        })
    );
}

#[test]
fn bad_magic_is_refused() {
    let mut b = sanitize(VIRT_GICV2).unwrap();
    b[0] = 0xde;
    assert_eq!(sanitize(&b), Err(FdtError::BadMagic { magic: 0xde0d_feed }));
    assert!(header_totalsize(&b).is_err());
}

#[test]
fn totalsize_checks() {
    let mut b = sanitize(VIRT_GICV2).unwrap();
    let len = b.len();
    set32(&mut b, 4, len as u32 + 4);
    assert_eq!(
        sanitize(&b),
        Err(FdtError::TotalSizePastEnd {
            totalsize: len + 4,
            len
        })
    );
    set32(&mut b, 4, 8);
    assert_eq!(
        sanitize(&b),
        Err(FdtError::TotalSizeTooSmall { totalsize: 8 })
    );
    set32(&mut b, 4, 0x8000_0000);
    assert_eq!(
        header_totalsize(&b),
        Err(FdtError::TotalSizeTooLarge {
            totalsize: 0x8000_0000
        })
    );
}

#[test]
fn struct_block_out_of_bounds_is_refused() {
    let mut b = sanitize(VIRT_GICV2).unwrap();
    let off = get32(&b, 8);
    let len = b.len() as u32;
    set32(&mut b, 36, len);
    let err = sanitize(&b).unwrap_err();
    assert_eq!(
        err,
        FdtError::BlockOutOfBounds {
            block: Block::Struct,
            offset: off,
            size: b.len() as u64,
            totalsize: b.len()
        }
    );
    let msg = alloc::format!("{err}");
    assert!(
        msg.starts_with("device tree: struct block offset 0x"),
        "{msg}"
    );
    assert!(msg.contains("is past totalsize"), "{msg}");
}

#[test]
fn unaligned_struct_offset_is_refused() {
    let mut b = sanitize(VIRT_GICV2).unwrap();
    let off = get32(&b, 8) + 2;
    set32(&mut b, 8, off);
    assert_eq!(
        sanitize(&b),
        Err(FdtError::Misaligned {
            block: Block::Struct,
            offset: off,
            align: 4
        })
    );
}

#[test]
fn strings_offset_overflow_is_refused() {
    let mut b = sanitize(VIRT_GICV2).unwrap();
    let size = u64::from(get32(&b, 32));
    set32(&mut b, 12, 0xffff_fff0);
    assert_eq!(
        sanitize(&b),
        Err(FdtError::BlockOutOfBounds {
            block: Block::Strings,
            offset: 0xffff_fff0,
            size,
            totalsize: b.len()
        })
    );
    // Both huge offset and huge size: still no overflow.
    set32(&mut b, 32, u32::MAX);
    assert!(matches!(
        sanitize(&b),
        Err(FdtError::BlockOutOfBounds {
            block: Block::Strings,
            ..
        })
    ));
}

#[test]
fn mem_reserve_block_checks() {
    let ok = [begin(""), end_node(), end()];
    let good = build(&ok.concat(), STRINGS);
    assert_eq!(
        walk(&good, |_| {})
            .unwrap()
            .reservations()
            .collect::<Vec<_>>(),
        vec![(0x1000, 0x2000)]
    );
    let mut b = good.clone();
    set32(&mut b, 16, 44);
    assert_eq!(
        sanitize(&b),
        Err(FdtError::Misaligned {
            block: Block::MemReserve,
            offset: 44,
            align: 8
        })
    );
    set32(&mut b, 16, 8);
    assert_eq!(
        sanitize(&b),
        Err(FdtError::BlockOverlapsHeader {
            block: Block::MemReserve,
            offset: 8
        })
    );
    // Overwrite the terminator: no all-zero entry follows before totalsize.
    let mut b = good;
    b[56..72].fill(0xff);
    assert_eq!(
        sanitize(&b),
        Err(FdtError::MemReserveUnterminated { offset: 40 })
    );
}

#[test]
fn unsupported_versions_are_refused() {
    let mut b = sanitize(VIRT_GICV2).unwrap();
    set32(&mut b, 20, 15);
    assert!(matches!(
        sanitize(&b),
        Err(FdtError::UnsupportedVersion { version: 15, .. })
    ));
    set32(&mut b, 20, 18);
    set32(&mut b, 24, 18);
    assert!(matches!(
        sanitize(&b),
        Err(FdtError::UnsupportedVersion {
            last_comp_version: 18,
            ..
        })
    ));
}

#[test]
fn version_16_ignores_size_dt_struct() {
    let clean = sanitize(VIRT_GICV2).unwrap();
    let mut b = clean.clone();
    set32(&mut b, 20, 16);
    set32(&mut b, 36, 0xdead_beef);
    assert_eq!(sanitize(&b).unwrap(), clean);
}

#[test]
fn unterminated_node_name_is_refused() {
    // The second node's name runs to the end of the struct block without a NUL.
    let mut structure = [begin(""), tok(FDT_BEGIN_NODE)].concat();
    structure.extend_from_slice(b"abcdefgh");
    assert_eq!(
        sanitize(&build(&structure, STRINGS)),
        Err(FdtError::UnterminatedName {
            offset: HEADER_SIZE + 32 + 8
        })
    );
}

#[test]
fn bad_names_are_refused() {
    assert!(matches!(
        sanitize_tokens(&[begin("x"), end_node(), end()]),
        Err(FdtError::RootNameNotEmpty { .. })
    ));
    let mut bad = begin("ab");
    bad[4] = 0xff;
    assert!(matches!(
        sanitize_tokens(&[begin(""), bad, end_node(), end_node(), end()]),
        Err(FdtError::NameNotUtf8 { .. })
    ));
    assert!(matches!(
        sanitize(&build(
            &[begin(""), prop(0, b"x"), end_node(), end()].concat(),
            b"\xff\xfe\0"
        )),
        Err(FdtError::PropNameNotUtf8 { nameoff: 0, .. })
    ));
}

#[test]
fn prop_name_and_value_bounds() {
    let at = HEADER_SIZE + 32 + 8;
    assert_eq!(
        sanitize_tokens(&[begin(""), prop(17, b"x"), end_node(), end()]),
        Err(FdtError::PropNameOutOfBounds {
            offset: at,
            nameoff: 17,
            strings_size: 17
        })
    );
    assert!(matches!(
        sanitize(&build(
            &[begin(""), prop(0, b"x"), end_node(), end()].concat(),
            b"compat"
        )),
        Err(FdtError::PropNameUnterminated { nameoff: 0, .. })
    ));
    let mut p = prop(0, b"abcd");
    set32(&mut p, 4, 0xffff_fff0);
    assert!(matches!(
        sanitize_tokens(&[begin(""), p, end_node(), end()]),
        Err(FdtError::PropValueOutOfBounds {
            len: 0xffff_fff0,
            ..
        })
    ));
    // The value may not reach into the strings block either (the struct block is 32 bytes,
    // the value starts at 20).
    let mut p = prop(0, b"abcd");
    set32(&mut p, 4, 13);
    assert_eq!(
        sanitize_tokens(&[begin(""), p, end_node(), end()]),
        Err(FdtError::PropValueOutOfBounds {
            offset: at,
            len: 13,
            struct_end: at + 24
        })
    );
}

#[test]
fn nesting_errors() {
    assert!(matches!(
        sanitize_tokens(&[begin(""), end_node(), end_node(), end()]),
        Err(FdtError::EndNodeUnderflow { .. })
    ));
    assert!(matches!(
        sanitize_tokens(&[begin(""), begin("a"), end_node()]),
        Err(FdtError::MissingEnd { .. })
    ));
    assert!(matches!(
        sanitize_tokens(&[begin(""), end()]),
        Err(FdtError::EndInsideNode { depth: 1, .. })
    ));
    assert!(matches!(
        sanitize_tokens(&[end()]),
        Err(FdtError::NoRootNode { .. })
    ));
    assert!(matches!(
        sanitize_tokens(&[begin(""), end_node(), begin(""), end_node(), end()]),
        Err(FdtError::MultipleRootNodes { .. })
    ));
    assert!(matches!(
        sanitize_tokens(&[prop(0, b"a"), begin(""), end_node(), end()]),
        Err(FdtError::PropOutsideNode { .. })
    ));
    assert!(matches!(
        sanitize_tokens(&[
            begin(""),
            begin("a"),
            end_node(),
            prop(0, b"x"),
            end_node(),
            end()
        ]),
        Err(FdtError::PropAfterChild { .. })
    ));
    assert!(matches!(
        sanitize_tokens(&[begin(""), tok(7), end_node(), end()]),
        Err(FdtError::UnknownToken { token: 7, .. })
    ));
    let mut deep = vec![begin("")];
    deep.extend((1..=MAX_DEPTH).map(|_| begin("n")));
    assert!(matches!(
        sanitize_tokens(&deep),
        Err(FdtError::TooDeep { .. })
    ));
    // A child's properties after its parent's earlier child are fine.
    let ok = [
        begin(""),
        prop(0, b"r"),
        begin("a"),
        prop(11, b"m"),
        end_node(),
        begin("b"),
        prop(0, b"c"),
        end_node(),
        end_node(),
        end(),
    ];
    assert!(sanitize_tokens(&ok).is_ok());
}

#[test]
fn errors_display_precisely() {
    let e = FdtError::PropNameOutOfBounds {
        offset: 0x48,
        nameoff: 0x99,
        strings_size: 0x11,
    };
    assert_eq!(
        alloc::format!("{e}"),
        "device tree: property at 0x48: name offset 0x99 is outside the 0x11-byte strings block"
    );
}

#[test]
fn blob_from_ptr_reads_exactly_totalsize() {
    let s = sanitize(VIRT_GICV2).unwrap();
    // SAFETY: `s` is readable for its whole length, which is the header's totalsize, and is not
    // modified while the returned slice lives (it is dropped before `s`).
    let got = unsafe { blob_from_ptr(s.as_ptr()) }.unwrap();
    assert_eq!(got.as_ptr(), s.as_ptr());
    assert_eq!(got.len(), s.len());
    // SAFETY: a null pointer is rejected before any read.
    let null = unsafe { blob_from_ptr(core::ptr::null()) };
    assert_eq!(null, Err(FdtError::NullPointer));
}
