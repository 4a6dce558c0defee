use super::*;
use alloc::string::ToString;
use alloc::vec::Vec;

/// A table as platform/kallsyms.py lays it out, for `(address, size, name)` sorted by address.
fn build(syms: &[(u32, u32, &str)]) -> Vec<u8> {
    let mut tokens: Vec<&str> = Vec::new();
    let (mut stream, mut starts) = (Vec::new(), Vec::new());
    for &(_, _, name) in syms {
        starts.push(stream.len() as u32);
        for piece in name.split("::") {
            let i = tokens.iter().position(|t| *t == piece).unwrap_or_else(|| {
                tokens.push(piece);
                tokens.len() - 1
            });
            let mut n = i;
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                stream.push(if n != 0 { b | 0x80 } else { b });
                if n == 0 {
                    break;
                }
            }
        }
    }
    starts.push(stream.len() as u32);
    let mut tok_starts = Vec::new();
    let mut tok_bytes = Vec::new();
    for t in &tokens {
        tok_starts.push(tok_bytes.len() as u32);
        tok_bytes.extend_from_slice(t.as_bytes());
    }
    tok_starts.push(tok_bytes.len() as u32);
    let words = |v: &[u32]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let pad = |mut v: Vec<u8>| {
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    };
    let parts = [
        words(&syms.iter().map(|s| s.0).collect::<Vec<_>>()),
        words(&syms.iter().map(|s| s.1).collect::<Vec<_>>()),
        words(&starts),
        pad(stream),
        words(&tok_starts),
        pad(tok_bytes),
    ];
    let mut offsets = Vec::new();
    let mut off = HEADER as u32;
    for p in &parts {
        offsets.push(off);
        off += p.len() as u32;
    }
    let mut out = MAGIC.to_vec();
    for w in [VERSION, syms.len() as u32, tokens.len() as u32]
        .into_iter()
        .chain(offsets)
        .chain([off])
    {
        out.extend_from_slice(&w.to_le_bytes());
    }
    parts.iter().for_each(|p| out.extend_from_slice(p));
    out
}

fn name_of(t: &Table<'_>, off: u32) -> Option<(alloc::string::String, u32)> {
    t.lookup(off).map(|f| (t.name(f).to_string(), f.offset))
}

#[test]
fn names_and_offsets_inside_functions() {
    let bytes = build(&[
        (0, 0, "_start"),
        (0x40, 0, "primary_entry"),
        (0x100, 0x80, "initmm::kernel::kernel_entry"),
        (0x180, 0x20, "initmm::mm::vm::ioremap"),
        (
            0x1a0,
            0x10,
            "<initmm::mm::vm::Area as core::fmt::Debug>::fmt",
        ),
    ]);
    let t = Table::parse(&bytes).unwrap();
    assert_eq!(t.len(), 5);
    assert_eq!(
        name_of(&t, 0x198),
        Some(("initmm::mm::vm::ioremap".into(), 0x18))
    );
    assert_eq!(
        name_of(&t, 0x100),
        Some(("initmm::kernel::kernel_entry".into(), 0))
    );
    assert_eq!(
        name_of(&t, 0x1a4),
        Some(("<initmm::mm::vm::Area as core::fmt::Debug>::fmt".into(), 4))
    );
    assert_eq!(name_of(&t, 0x44), Some(("primary_entry".into(), 4)));
    // Past the last sized function, back to the nearest unsized label.
    assert_eq!(name_of(&t, 0x1b0), Some(("primary_entry".into(), 0x170)));
}

#[test]
fn an_address_below_every_symbol_has_no_name() {
    let bytes = build(&[(0x100, 0x10, "a::b")]);
    let t = Table::parse(&bytes).unwrap();
    assert_eq!(name_of(&t, 0xff), None);
    assert_eq!(
        name_of(&t, 0x110),
        None,
        "past a sized function, no label below"
    );
    assert_eq!(name_of(&t, 0x10f), Some(("a::b".into(), 0xf)));
}

#[test]
fn many_tokens_need_two_byte_indices() {
    let names: Vec<alloc::string::String> =
        (0..300).map(|i| alloc::format!("m{i}::f{i}")).collect();
    let syms: Vec<(u32, u32, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u32 * 16, 16, n.as_str()))
        .collect();
    let bytes = build(&syms);
    let t = Table::parse(&bytes).unwrap();
    assert_eq!(name_of(&t, 299 * 16 + 4), Some(("m299::f299".into(), 4)));
    assert_eq!(name_of(&t, 64 * 16), Some(("m64::f64".into(), 0)));
}

#[test]
fn damaged_tables_are_refused_or_read_safely() {
    let good = build(&[(0, 4, "a"), (4, 4, "b::c")]);
    assert!(Table::parse(&good).is_some());
    assert!(Table::parse(&good[..HEADER - 1]).is_none(), "short");
    assert!(
        Table::parse(&[0u8; 4096]).is_none(),
        "no magic: an image without a table"
    );
    let mut v2 = good.clone();
    v2[4] = 2;
    assert!(Table::parse(&v2).is_none(), "another version");
    let mut huge = good.clone();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Table::parse(&huge).is_none(), "a count past the end");
    assert!(Table::parse(&good[..good.len() - 4]).is_none(), "truncated");
    // A token index past the token table reads as "?", not out of bounds.
    let mut bad_token = good.clone();
    let stream = u32_at(&good, 28).unwrap() as usize;
    bad_token[stream] = 0x7f;
    let t = Table::parse(&bad_token).unwrap();
    assert_eq!(name_of(&t, 1), Some(("?".into(), 1)));
}
