#!/usr/bin/env python3
"""Copy QEMU's output from stdin to stdout, adding source lines and names to panic reports.

    qemu-system-aarch64 ... | platform/qemu/symbolize.py KERNEL.elf

The kernel names its backtrace frames itself (`  #3  0xffffff8000001234 initmm::x::f+0x58`, from
its own symbol table, src/kallsyms.rs). This adds ` at src/x.rs:123` from the ELF's DWARF (release
builds keep it) when `llvm-symbolizer` or an `addr2line` that reads AArch64 ELF files is installed.
A frame or an `ELR 0x...` that came without a name (a kernel booted without its table) gets
`name+0xoff` here, from the ELF's .symtab. Everything else passes through unchanged, as it
arrives: a line that stays unfinished for a moment (a prompt, `test x ... ` before its result) is
written at once, so an interactive run does not look stuck.

Names need only the standard library: the symbols come from the ELF's .symtab/.strtab, read with
`struct`. Rust names are demangled well enough to read (legacy `_ZN...E` without the hash, and the
paths of v0 `_R...` names). If the ELF cannot be read, the output passes through untouched.
chainboot.py (the Raspberry Pi serial terminal) uses `Symbolizer` the same way.
"""

import bisect
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys

SHT_SYMTAB = 2
SHF_EXECINSTR = 0x4
STT_NOTYPE, STT_FUNC = 0, 2


class Symbols:
    """Code symbols of an ELF64 little-endian file, looked up by address."""

    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ValueError("not an ELF64 little-endian file")
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        # Executable sections: a symbol is only trusted inside one.
        self.text = [(s[3], s[3] + s[5]) for s in sections if s[2] & SHF_EXECINSTR and s[5]]
        code = {i for i, s in enumerate(sections) if s[2] & SHF_EXECINSTR}
        entries = []
        # Every named symbol's value, code or not (linker-script marks such as __image_start).
        self.marks = {}
        for _, kind, _, _, off, size, link, _, _, entsize in sections:
            if kind != SHT_SYMTAB:
                continue
            stroff = sections[link][4]
            for i in range(size // (entsize or 24)):
                name, info, _, shndx, value, sz = struct.unpack_from("<IBBHQQ", data, off + i * 24)
                if shndx == 0 or value == 0 or (info & 0xF) not in (STT_NOTYPE, STT_FUNC):
                    continue
                end = data.index(b"\0", stroff + name)
                text = data[stroff + name:end].decode("utf-8", "replace")
                # `$x`/`$d` are AArch64 mapping symbols, not names.
                if not text or text.startswith("$"):
                    continue
                self.marks.setdefault(text, value)
                if shndx in code:
                    entries.append((value, sz, info & 0xF == STT_FUNC, text))
        # At one address prefer a sized function over an assembly label, and a label over a
        # linker-script mark (`__image_start` at `_start`): the preferred one sorts last.
        entries.sort(key=lambda e: (e[0], e[2], e[1], not e[3].startswith("__")))
        self.entries = entries
        self.starts = [e[0] for e in entries]

    def lookup(self, addr):
        """`name+0xoff` for the function that contains `addr`, or None."""
        if not any(lo <= addr < hi for lo, hi in self.text):
            return None
        i = bisect.bisect_right(self.starts, addr) - 1
        # The nearest symbol below; skip sized symbols that end before `addr` (a label inside
        # an assembly block or a gap), falling back to the nearest unsized label.
        for j in range(i, max(i - 8, -1), -1):
            start, size, _, name = self.entries[j]
            if size == 0 or addr < start + size:
                return f"{demangle(name)}+{addr - start:#x}"
        return None


LEGACY_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ","}


def demangle_legacy(sym):
    """`_ZN6initmm6kernel12kernel_entry17h0123456789abcdefE` -> `initmm::kernel::kernel_entry`."""
    body = sym[3:]
    if body.endswith("E"):
        body = body[:-1]
    parts, i = [], 0
    while i < len(body) and body[i].isdigit():
        j = i
        while body[j].isdigit():
            j += 1
        n = int(body[i:j])
        parts.append(body[j:j + n])
        i = j + n
    if not parts:
        return sym
    if re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()

    def unescape(p):
        if p.startswith("_$"):
            p = p[1:]
        p = re.sub(r"\$u([0-9a-f]+)\$", lambda m: chr(int(m.group(1), 16)), p)
        p = re.sub(r"\$([A-Z]{1,2})\$", lambda m: LEGACY_ESCAPES.get(m.group(1), m.group(0)), p)
        return p.replace("..", "::")

    return "::".join(unescape(p) for p in parts)


class V0:
    """A small reader of v0 mangled paths (`_R...`): enough for functions, impls and generics."""

    BASIC = {"a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
             "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128",
             "s": "i16", "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!",
             "p": "_"}

    def __init__(self, s):
        self.s, self.i, self.depth = s, 0, 0

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self):
        c = self.peek()
        if not c:
            raise ValueError("truncated")
        self.i += 1
        return c

    def base62(self):
        """`_` is 0, `<digits>_` is digits + 1."""
        if self.peek() == "_":
            self.take()
            return 0
        n = 0
        while (c := self.take()) != "_":
            n = n * 62 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".index(c)
        return n + 1

    def opt_disambiguator(self):
        if self.peek() == "s":
            self.take()
            self.base62()

    def ident(self):
        if self.peek() == "u":  # punycode: shown raw
            self.take()
        j = self.i
        while self.peek().isdigit():
            self.i += 1
        n = int(self.s[j:self.i])
        if self.peek() == "_":
            self.take()
        name = self.s[self.i:self.i + n]
        self.i += n
        return name

    def backref(self, parse):
        target = self.base62()
        saved, self.i = self.i, target
        self.depth += 1
        if self.depth > 50:
            raise ValueError("backref loop")
        try:
            return parse()
        finally:
            self.i = saved
            self.depth -= 1

    def path(self):
        c = self.take()
        if c == "C":
            self.opt_disambiguator()
            return self.ident()
        if c == "N":
            ns = self.take()
            prefix = self.path()
            self.opt_disambiguator()
            name = self.ident()
            if ns == "C":
                return f"{prefix}::{{closure}}"
            if ns.isupper():
                return f"{prefix}::{{{name or 'shim'}}}"
            return f"{prefix}::{name}"
        if c == "M":
            self.opt_disambiguator()
            self.path()
            return f"<{self.type_()}>"
        if c == "X":
            self.opt_disambiguator()
            self.path()
            t = self.type_()
            return f"<{t} as {self.path()}>"
        if c == "Y":
            t = self.type_()
            return f"<{t} as {self.path()}>"
        if c == "I":
            p = self.path()
            args = []
            while self.peek() != "E":
                args.append(self.generic_arg())
            self.take()
            return f"{p}::<{', '.join(a for a in args if a)}>"
        if c == "B":
            return self.backref(self.path)
        raise ValueError(f"path tag {c}")

    def generic_arg(self):
        if self.peek() == "L":
            self.take()
            self.base62()
            return ""
        if self.peek() == "K":
            self.take()
            return self.const()
        return self.type_()

    def const(self):
        if self.peek() == "B":
            self.take()
            return self.backref(self.const)
        if self.peek() == "p":
            self.take()
            return "_"
        self.type_()
        neg = self.peek() == "n"
        if neg:
            self.take()
        j = self.i
        while self.peek() != "_":
            self.take()
        value = int(self.s[j:self.i] or "0", 16)
        self.take()
        return f"{'-' if neg else ''}{value}"

    def type_(self):
        c = self.peek()
        if c in self.BASIC:
            self.take()
            return self.BASIC[c]
        self.take()
        if c in "RQ":
            if self.peek() == "L":
                self.take()
                self.base62()
            return ("&" if c == "R" else "&mut ") + self.type_()
        if c in "PO":
            return ("*const " if c == "P" else "*mut ") + self.type_()
        if c == "A":
            t = self.type_()
            return f"[{t}; {self.const()}]"
        if c == "S":
            return f"[{self.type_()}]"
        if c == "T":
            ts = []
            while self.peek() != "E":
                ts.append(self.type_())
            self.take()
            return f"({', '.join(ts)})"
        if c == "B":
            return self.backref(self.type_)
        if c == "D":  # dyn Trait: bounds, then a lifetime
            if self.peek() == "G":
                self.take()
                self.base62()
            traits = []
            while self.peek() != "E":
                traits.append(self.path())
                while self.peek() == "p":
                    self.take()
                    self.ident()
                    self.type_()
            self.take()
            self.take()  # L
            self.base62()
            return "dyn " + " + ".join(traits)
        if c == "F":
            raise ValueError("fn type")
        self.i -= 1
        return self.path()


def demangle(sym):
    if sym.startswith("_ZN"):
        return demangle_legacy(sym)
    if sym.startswith("_R"):
        body = sym[2:]
        if body[:1].isdigit():  # encoding version
            body = body.lstrip("0123456789")
        try:
            return V0(body).path()
        except (ValueError, IndexError):
            return sym
    return sym


# `file:line[:column][ (discriminator N)]`, as llvm-symbolizer and addr2line print a location.
WHERE = re.compile(r"^(.*):(\d+)(?::\d+)?(?: \(discriminator \d+\))?$")


class Lines:
    """`file:line` of a code address from the ELF's DWARF, through a resident llvm-symbolizer or
    addr2line (the first that answers for this ELF), started at the first question; None when
    neither can answer."""

    def __init__(self, elf, syms, root):
        self.elf, self.syms, self.root = elf, syms, root.rstrip("/") + "/"
        self.proc, self.started = None, False

    def start(self):
        self.started = True
        probe = next((e[0] for e in self.syms.entries if e[1] and e[2]), None)
        candidates = [["llvm-symbolizer", f"--obj={self.elf}", "--functions=none", "--no-inlines"],
                      ["aarch64-linux-gnu-addr2line", "-e", self.elf],
                      ["addr2line", "-e", self.elf]]
        for cmd in candidates:
            if probe is None or not shutil.which(cmd[0]):
                continue
            try:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL)
                self.llvm = cmd[0] == "llvm-symbolizer"
                if self.ask(probe) is not None:
                    return
            except OSError:
                pass
            self.close()

    def query(self, addr):
        if not self.started:
            self.start()
        return self.ask(addr) if self.proc else None

    def ask(self, addr):
        try:
            self.proc.stdin.write(f"{addr:#x}\n".encode())
            self.proc.stdin.flush()
            where = self.proc.stdout.readline().decode("utf-8", "replace").strip()
            if self.llvm:
                self.proc.stdout.readline()  # the blank line after each answer
        except OSError:
            self.close()
            return None
        m = WHERE.match(where)
        if not m or m.group(1) in ("", "??") or m.group(2) == "0":
            return None
        file = m.group(1)
        if file.startswith(self.root):
            file = file[len(self.root):]
        # The standard library's and crates' sources, without the build machine's prefixes.
        file = re.sub(r"^/rustc/[0-9a-f]+/|^.*/registry/src/[^/]+/", "", file)
        return f"{file}:{m.group(2)}"

    def close(self):
        if self.proc:
            self.proc.kill()
            self.proc = None


class Symbolizer:
    """Rewrites one output line at a time (see the module's doc)."""

    def __init__(self, elf, lines=True):
        self.syms = Symbols(elf)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.lines = Lines(elf, self.syms, root) if lines else None

    def rewrite(self, line):
        return rewrite(line, self.syms, self.lines)


BACKTRACE = re.compile(rb"^(\s*#\d+\s+)(0x[0-9a-fA-F]+)( [^ \r\n]+)?(\s*)$")
ELR = re.compile(rb"\bELR (0x[0-9a-fA-F]+)( <[^>\s]+>)?")


def rewrite(line, syms, lines=None):
    body = line.rstrip(b"\r\n")
    end = line[len(body):]
    m = BACKTRACE.match(body)
    if m:
        addr = int(m.group(2), 16)
        name = m.group(3)
        if not name:
            found = syms.lookup(addr)
            name = b" " + found.encode() if found else b""
        where = lines.query(addr) if lines and name else None
        at = b" at " + where.encode() if where else b""
        return m.group(1) + m.group(2) + name + at + m.group(4) + end

    def elr(m):
        if m.group(2):
            return m.group(0)
        name = syms.lookup(int(m.group(1), 16))
        return m.group(0) + (b" <" + name.encode() + b">" if name else b"")

    return ELR.sub(elr, body) + end


def main():
    # Ctrl-C reaches QEMU (or the timeout wrapper) too: keep copying until QEMU's output ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sym = None
    if len(sys.argv) > 1:
        try:
            sym = Symbolizer(sys.argv[1])
        except (OSError, ValueError, struct.error, IndexError) as e:
            sys.stderr.write(f"symbolize: {sys.argv[1]}: {e}; passing output through\n")
    fd, out = sys.stdin.fileno(), sys.stdout.buffer
    pending, written = b"", 0  # the unfinished line, and how much of it already went out raw
    try:
        while True:
            timeout = 0.05 if written < len(pending) else None
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                out.write(pending[written:])
                out.flush()
                written = len(pending)
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            while (nl := pending.find(b"\n")) >= 0:
                line, pending = pending[:nl + 1], pending[nl + 1:]
                if written:
                    out.write(line[written:])
                else:
                    out.write(sym.rewrite(line) if sym else line)
                written = 0
            out.flush()
        out.write(pending[written:])
        out.flush()
    except BrokenPipeError:
        pass


if __name__ == "__main__":
    main()
