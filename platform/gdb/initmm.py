# gdb-multiarch script for initmm, on QEMU (`just debug`) or a Raspberry Pi 4 over JTAG
# (`just openocd`, then `just gdb-jtag`). Sourced with `gdb-multiarch -x platform/gdb/initmm.py`;
# it adds these commands:
#
#   initmm-symbols ELF [PHYS]   load the kernel's symbols twice: at its link addresses (the
#                               upper half, where it runs once the MMU is on) and at PHYS, where
#                               the loader put the Image and where its early boot runs with the
#                               MMU off (QEMU virt 0x40200000, raspi4b and the Pi's firmware
#                               0x200000, the chainloader 0x400000). Without PHYS it is read
#                               from the running kernel (initmm::kimage::KIMAGE_PHYS).
#   break-entry                 a breakpoint on the Image's first instruction (`_start` at PHYS),
#                               a hardware one: nothing is written to memory the loader fills
#   break-panic                 a breakpoint on the panic handler (`rust_begin_unwind`): `bt`
#                               then shows how the kernel got there
#   cpus                        every CPU, one gdb thread each (QEMU's vCPUs; OpenOCD's cores
#                               with `target smp`): `thread N` switches, `thread apply all bt`
#
# Symbols for a bare address work in both halves: `info symbol $pc`, `x/4i $pc`, `bt`.
# Software breakpoints by name get two locations (link address and PHYS); under QEMU both are
# harmless (its gdb stub never writes memory for them); over JTAG prefer `hbreak` before the
# MMU is on.

import os
import sys

import gdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "qemu"))
import symbolize  # noqa: E402  (the ELF symbol reader the runner uses)

STATE = {}


def symbols_of(elf):
    syms = symbolize.Symbols(elf)
    return syms, {symbolize.demangle(name): value for value, _, _, name in syms.entries}


class InitmmSymbols(gdb.Command):
    """initmm-symbols ELF [PHYS]: the kernel's symbols at its link and its physical addresses."""

    def __init__(self):
        super().__init__("initmm-symbols", gdb.COMMAND_FILES)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if not args:
            raise gdb.GdbError("usage: initmm-symbols ELF [PHYS]")
        elf = os.path.abspath(args[0])
        syms, names = symbols_of(elf)
        link = syms.marks.get("__image_start")
        if link is None:
            raise gdb.GdbError(f"{elf}: no __image_start: not an initmm kernel")
        # Forget every earlier copy, then the link-address one alone (so that a name means the
        # running kernel's variable while PHYS is looked up).
        gdb.execute("symbol-file", to_string=True)
        gdb.execute(f"file {elf}", to_string=True)
        if len(args) > 1:
            phys = int(gdb.parse_and_eval(args[1])) & (2**64 - 1)
        else:
            sym = gdb.lookup_static_symbol("initmm::kimage::KIMAGE_PHYS")
            if sym is None:
                raise gdb.GdbError(f"{elf} has no KIMAGE_PHYS: give PHYS")
            raw = gdb.selected_inferior().read_memory(sym.value().address, 8)
            phys = int.from_bytes(bytes(raw), "little")
            if phys == 0:
                raise gdb.GdbError("the kernel has not set KIMAGE_PHYS yet: give PHYS")
        offset = (phys - link) % 2**64
        gdb.execute(f"add-symbol-file {elf} -o {offset:#x}", to_string=True)
        STATE.update(elf=elf, phys=phys, link=link, names=names)
        print(f"initmm: symbols at {link:#x} (MMU on) and at {phys:#x} (early boot, MMU off)")


class BreakEntry(gdb.Command):
    """break-entry: stop at the Image's first instruction, at its physical address."""

    def __init__(self):
        super().__init__("break-entry", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        if "phys" not in STATE:
            raise gdb.GdbError("initmm-symbols ELF PHYS first")
        gdb.execute(f"hbreak *{STATE['phys']:#x}")


class BreakPanic(gdb.Command):
    """break-panic: stop in the panic handler."""

    def __init__(self):
        super().__init__("break-panic", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        names = STATE.get("names")
        if not names:
            raise gdb.GdbError("initmm-symbols ELF first")
        handler = [a for n, a in names.items() if n.endswith("rust_begin_unwind")]
        if not handler:
            raise gdb.GdbError("no rust_begin_unwind in the ELF")
        gdb.execute(f"break *{handler[0]:#x}")


class Cpus(gdb.Command):
    """cpus: every CPU (a thread each), where it is."""

    def __init__(self):
        super().__init__("cpus", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        gdb.execute("info threads")


InitmmSymbols()
BreakEntry()
BreakPanic()
Cpus()
gdb.execute("set pagination off")
gdb.execute("set confirm off")
print("initmm: commands initmm-symbols ELF [PHYS], break-entry, break-panic, cpus")
