#!/usr/bin/env python3
"""Write the seed corpus for the `dt` fuzz target into tests/fuzz/corpus/dt/.

The real blobs come from tests/data (QEMU pads its blobs to 1 MiB, more than the fuzzer's 64 KiB
max_len, so the padding is trimmed and `totalsize` rewritten; NOPs and block layout are kept).
The hand-made edge cases are the QEMU virt GICv3 tree with one thing wrong each, serialised by
the small FDT writer below. Run from anywhere: `python3 tests/fuzz/gen_seeds.py`.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
OUT = os.path.join(HERE, "corpus", "dt")

MAGIC = 0xD00DFEED
BEGIN, END_NODE, PROP, NOP, END = 1, 2, 3, 4, 9


class Node:
    def __init__(self, name, props=None, children=None):
        self.name = name
        self.props = props if props is not None else []  # [(name, bytes)]
        self.children = children if children is not None else []

    def prop(self, name):
        return next((v for n, v in self.props if n == name), None)

    def set(self, name, value):
        self.props = [(n, v) for n, v in self.props if n != name] + [(name, value)]

    def drop(self, name):
        self.props = [(n, v) for n, v in self.props if n != name]

    def child(self, name):
        return next(c for c in self.children if c.name == name or c.name.split("@")[0] == name)


def parse(blob):
    """The tree of a well-formed blob (NOPs skipped), its /memreserve/ list and boot CPU."""
    (_, _, off_struct, off_strings, off_rsv, _, _, boot_cpu, _, _) = struct.unpack(">10I", blob[:40])
    rsv = []
    pos = off_rsv
    while True:
        a, s = struct.unpack(">QQ", blob[pos:pos + 16])
        pos += 16
        if a == 0 and s == 0:
            break
        rsv.append((a, s))

    def string(off):
        end = blob.index(b"\0", off_strings + off)
        return blob[off_strings + off:end].decode()

    stack, root = [], None
    pos = off_struct
    while True:
        (tok,) = struct.unpack(">I", blob[pos:pos + 4])
        pos += 4
        if tok == BEGIN:
            end = blob.index(b"\0", pos)
            node = Node(blob[pos:end].decode())
            pos = (end + 4) & ~3
            if stack:
                stack[-1].children.append(node)
            else:
                root = node
            stack.append(node)
        elif tok == END_NODE:
            stack.pop()
        elif tok == PROP:
            ln, nameoff = struct.unpack(">II", blob[pos:pos + 8])
            pos += 8
            stack[-1].props.append((string(nameoff), blob[pos:pos + ln]))
            pos = (pos + ln + 3) & ~3
        elif tok == NOP:
            pass
        elif tok == END:
            return root, rsv, boot_cpu


def serialize(root, rsv=(), nops=0, version=17, boot_cpu=0):
    """A blob for `root`; `nops` FDT_NOPs before every token (and after FDT_END)."""
    strings, offs = bytearray(), {}

    def stroff(name):
        if name not in offs:
            offs[name] = len(strings)
            strings.extend(name.encode() + b"\0")
        return offs[name]

    st = bytearray()

    def tok(t):
        st.extend(struct.pack(">I", NOP) * nops)
        st.extend(struct.pack(">I", t))

    def walk(n):
        tok(BEGIN)
        st.extend(n.name.encode() + b"\0")
        st.extend(b"\0" * (-len(st) % 4))
        for name, value in n.props:
            tok(PROP)
            st.extend(struct.pack(">II", len(value), stroff(name)))
            st.extend(value)
            st.extend(b"\0" * (-len(st) % 4))
        for c in n.children:
            walk(c)
        tok(END_NODE)

    walk(root)
    tok(END)
    st.extend(struct.pack(">I", NOP) * nops)
    hdr = 40 if version >= 17 else 36
    rsvb = b"".join(struct.pack(">QQ", a, s) for a, s in list(rsv) + [(0, 0)])
    off_rsv = (hdr + 7) & ~7
    off_struct = off_rsv + len(rsvb)
    off_strings = off_struct + len(st)
    total = off_strings + len(strings)
    fields = [MAGIC, total, off_struct, off_strings, off_rsv, version, 16, boot_cpu, len(strings)]
    if version >= 17:
        fields.append(len(st))
    head = struct.pack(">%dI" % len(fields), *fields)
    head += b"\0" * (off_rsv - len(head))
    return head + rsvb + bytes(st) + bytes(strings)


def trimmed(blob):
    """The blob without the padding after its last block, `totalsize` rewritten."""
    (_, _, off_struct, off_strings, off_rsv, _, _, _, size_strings, size_struct) = struct.unpack(
        ">10I", blob[:40])
    end = max(off_strings + size_strings, off_struct + size_struct)
    return blob[:4] + struct.pack(">I", end) + blob[8:end]


def cells(*v):
    return b"".join(struct.pack(">I", x) for x in v)


def s(text):
    return text.encode() + b"\0"


def virt():
    return parse(open(os.path.join(DATA, "qemu-virt-gicv3.dtb"), "rb").read())[0]


def cpu_nodes(root):
    return [c for c in root.child("cpus").children if c.prop("device_type") == s("cpu")]


def memory_node(reg):
    return Node("memory@40000000", [("device_type", s("memory")), ("reg", reg)])


def edge_cases():
    out = {}

    t = virt()
    t.children = [c for c in t.children if c.prop("device_type") != s("memory")]
    out["no-memory"] = serialize(t)

    t = virt()
    t.children = [c for c in t.children if c.name != "cpus"]
    out["no-cpus-node"] = serialize(t)

    t = virt()
    t.child("cpus").children = [c for c in t.child("cpus").children if c not in cpu_nodes(t)]
    out["empty-cpus-node"] = serialize(t)

    t = virt()
    t.child("chosen").drop("stdout-path")
    out["no-console"] = serialize(t)

    t = virt()
    t.children = [c for c in t.children if c.name != "chosen"]
    out["no-chosen"] = serialize(t)

    t = virt()
    t.child("chosen").set("stdout-path", s("serial0:115200n8"))
    t.children.append(Node("aliases", [("serial0", s("/pl011@9000000"))]))
    t.child("chosen").set("bootargs", s("loglevel=debug maxcpus=0x2 semihosting"))
    out["console-by-alias"] = serialize(t)

    t = virt()
    t.child("chosen").set("stdout-path", s("/no-such-uart"))
    out["console-unresolvable"] = serialize(t)

    t = virt()
    mem = t.child("memory")
    mem.set("reg", cells(0, 0x40000000, 0, 0x40000000, 0, 0x50000000, 0, 0x40000000,
                         0, 0x60000000, 0, 0, 0xffffffff, 0xfffff000, 0, 0x2000))
    t.children.append(memory_node(cells(0, 0x48000000, 0, 0x1000)))
    t.children.append(Node("reserved-memory", [("#address-cells", cells(2)), ("#size-cells", cells(2)),
                                               ("ranges", b"")], [
        Node("a@40000000", [("reg", cells(0, 0x40000000, 0, 0x100000))]),
        Node("b@40080000", [("reg", cells(0, 0x40080000, 0, 0x100000))]),
        Node("pool", [("size", cells(0, 0x1000000))]),
        Node("off@50000000", [("reg", cells(0, 0x50000000, 0, 0x1000)), ("status", s("disabled"))]),
    ]))
    out["overlapping-regions"] = serialize(t, rsv=[(0x40000000, 0x1000), (0x40000800, 0x1000),
                                                   (0xfffffffffffff000, 0x2000), (0x10, 0)])

    t = virt()
    cpu_nodes(t)[1].drop("enable-method")
    cpu_nodes(t)[2].set("enable-method", s("spin-table"))
    cpu_nodes(t)[2].set("cpu-release-addr", cells(0, 0x400000d8))
    cpu_nodes(t)[3].set("enable-method", s("spin-table"))
    cpu_nodes(t)[3].set("cpu-release-addr", cells(1, 2, 3))
    out["cpu-enable-methods"] = serialize(t)

    t = virt()
    cpu_nodes(t)[0].drop("reg")
    out["cpu-without-reg"] = serialize(t)

    for ac, sc in [(0, 0), (0, 1), (1, 0), (3, 2), (2, 3), (3, 3), (4, 4), (1, 1)]:
        t = virt()
        t.set("#address-cells", cells(ac))
        t.set("#size-cells", cells(sc))
        t.child("memory").set("reg", cells(*([0] * max(ac - 1, 0) + [0x40000000] * min(ac, 1)
                                             + [0] * max(sc - 1, 0) + [0x40000000] * min(sc, 1))))
        out["root-cells-%d-%d" % (ac, sc)] = serialize(t)
    for ac in (0, 3, 4):
        t = virt()
        t.child("cpus").set("#address-cells", cells(ac))
        for i, c in enumerate(cpu_nodes(t)):
            c.set("reg", cells(*([0] * max(ac - 1, 0) + [i] * min(ac, 1))))
        out["cpus-address-cells-%d" % ac] = serialize(t)
    t = virt()
    t.set("#address-cells", b"\0\0\0\2\0")
    out["cells-bad-length"] = serialize(t)

    t = virt()
    t.child("memory").set("reg", b"".join(cells(0, 0x40000000 + i * 0x2000, 0, 0x1000)
                                          for i in range(3000)))
    out["big-reg-array"] = serialize(t)

    t = virt()
    t.child("memory").set("reg", cells(0, 0x40000000, 0, 0x40000000)[:-2])
    out["reg-bad-length"] = serialize(t)

    t = virt()
    deep = node = Node("d0", [("#address-cells", cells(1)), ("#size-cells", cells(1)),
                              ("ranges", b"")])
    for i in range(1, 30):
        n = Node("d%d" % i, [("#address-cells", cells(1)), ("#size-cells", cells(1)),
                             ("ranges", cells(0, 0, 0x10000000) if i % 2 else b"")])
        node.children.append(n)
        node = n
    node.children.append(Node("serial@1000", [("compatible", s("arm,pl011")),
                                              ("reg", cells(0x1000, 0x1000))]))
    t.children.append(deep)
    t.child("chosen").set("stdout-path", s("/" + "/".join("d%d" % i for i in range(30))
                                            + "/serial@1000"))
    out["deep-nesting"] = serialize(t)
    node.children[0].children.append(Node("a", [], [Node("b", [], [Node("c")])]))
    out["too-deep"] = serialize(t)

    t = virt()
    soc = Node("soc", [("compatible", s("simple-bus")), ("#address-cells", cells(1)),
                       ("#size-cells", cells(1)),
                       ("ranges", cells(0x7e000000, 0, 0xfe000000, 0x1800000,
                                        0x40000000, 0, 0xff800000, 0x800000))], [
        Node("serial@7e215040", [("compatible", s("brcm,bcm2835-aux-uart")),
                                 ("reg", cells(0x7e215040, 0x40)), ("clocks", cells(0x77))]),
        Node("clk", [("phandle", cells(0x77)), ("clock-frequency", cells(500000000))]),
        Node("nobus", [], [Node("x@0", [("reg", cells(0, 4))])]),
    ])
    t.children.append(soc)
    t.child("chosen").set("stdout-path", s("/soc/serial:115200n8"))
    out["bus-ranges-console"] = serialize(t)

    t = virt()
    t.child("psci").set("method", s("bogus"))
    t.child("timer").set("interrupts", cells(1, 13, 4, 0, 14, 4, 1, 0xfffffff0, 4))
    t.set("interrupt-parent", cells(0xdead))
    out["odd-psci-timer-gic"] = serialize(t)

    t = virt()
    out["nops-everywhere"] = serialize(t, nops=1)
    out["version-16"] = serialize(t, version=16)
    out["minimal"] = serialize(Node("", [("#address-cells", cells(1)), ("#size-cells", cells(1))], [
        Node("cpus", [("#address-cells", cells(1)), ("#size-cells", cells(0))],
             [Node("cpu@0", [("device_type", s("cpu")), ("reg", cells(0))])]),
        Node("memory@0", [("device_type", s("memory")), ("reg", cells(0, 0x1000))]),
    ]))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    for name in ["qemu-virt-gicv2", "qemu-virt-gicv3", "qemu-virt-el2", "qemu-raspi4b-rpi-dtb",
                 "bcm2711-rpi-4-b"]:
        seeds[name] = trimmed(open(os.path.join(DATA, name + ".dtb"), "rb").read())
    rpi, rsv, _ = parse(seeds["bcm2711-rpi-4-b"])
    rpi.child("memory").set("reg", cells(0, 0, 0x3c000000))
    seeds["bcm2711-rpi-4-b-filled"] = serialize(rpi, rsv=[(0, 0x1000)])
    seeds["atag-list"] = struct.pack("<5I", 5, 0x54410001, 1, 4096, 0) + struct.pack(
        "<2I", 2 + 8, 0x54410009) + b"console=ttyS0 semihosting\0\0\0\0\0\0\0" + struct.pack("<2I", 0, 0)
    seeds.update(edge_cases())
    for name, blob in sorted(seeds.items()):
        assert len(blob) <= 65536, (name, len(blob))
        with open(os.path.join(OUT, name + ".dtb"), "wb") as f:
            f.write(blob)
    print("%d seeds in %s" % (len(seeds), OUT))


if __name__ == "__main__":
    main()
