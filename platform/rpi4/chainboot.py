#!/usr/bin/env python3
"""The host half of the serial chainloader: send a kernel to a Raspberry Pi 4 that booted
`just sdcard --chainload`'s card, then stay on the line as its terminal.

    platform/rpi4/chainboot.py [--device /dev/ttyUSB0] [--baud 115200] [--image KERNEL.img]
                               [--elf KERNEL.elf] [--test-refusals IMAGE]   (`just chainboot [DEVICE]`)

It waits for the loader's `chainload: ready` line (sending ENQ every 2 s, so the Pi may be
powered on before or after), offers the Image (size, CRC-32, header), sends the rest once the
loader accepts, and retries from the start when the loader refuses a transfer (up to --tries).
Then it is the terminal: what the Pi prints goes to the screen through the symboliser
(platform/qemu/symbolize.py: backtrace frames get `at file:line`), and keys go to the Pi;
Ctrl-] leaves. Without a terminal on stdin it only prints, until the line closes (the QEMU test).

--test-refusals IMAGE first makes two offers the loader must refuse — the kernel's header asking
for more memory than the Pi has, and IMAGE (any small arm64 Image: the test sends the
chainloader's own) with one byte flipped after the checksum was taken — and fails unless both are
refused, before the real transfer. The protocol is described in
platform/rpi4/chainload/protocol.rs. Needs pyserial (`just chainboot` installs it).
"""

import argparse
import os
import select
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "qemu"))
import symbolize  # noqa: E402

try:
    import serial
except ImportError:
    sys.exit("chainboot: pyserial is missing: python3 -m pip install pyserial")

MAGIC = b"IMLD"
ENQ = b"\x05"
HEADER = 64
CTRL_RIGHT_BRACKET = b"\x1d"


class Line:
    """The serial line: bytes in are echoed to stdout as they come, and kept as lines to wait on."""

    def __init__(self, port, out, sym):
        self.port, self.out, self.sym = port, out, sym
        self.pending = b""
        self.closed = False
        self.last_data = time.monotonic()

    def pump(self, timeout):
        """Read what arrives within `timeout`; return the complete lines."""
        try:
            ready, _, _ = select.select([self.port.fileno()], [], [], timeout)
            data = self.port.read(self.port.in_waiting or 1) if ready else b""
            if ready and not data:
                raise serial.SerialException("the line closed")
        except (serial.SerialException, OSError):
            self.closed = True
            data = b""
        if data:
            self.last_data = time.monotonic()
        self.pending += data
        lines = []
        while (nl := self.pending.find(b"\n")) >= 0:
            line, self.pending = self.pending[:nl + 1], self.pending[nl + 1:]
            self.out.write(self.sym.rewrite(line) if self.sym else line)
            lines.append(line.decode("utf-8", "replace").strip())
        self.out.flush()
        return lines

    def wait_for(self, words, timeout, poke=None):
        """The first line containing one of `words`; None after `timeout` seconds or if closed.
        `poke` is sent every 2 s meanwhile, the first after 1.5 s: a loader that just refused
        something says it is ready again once the line has been quiet for 1 s."""
        end = time.monotonic() + timeout
        next_poke = time.monotonic() + 1.5
        while time.monotonic() < end and not self.closed:
            if poke and time.monotonic() >= next_poke:
                self.port.write(poke)
                next_poke = time.monotonic() + 2
            for line in self.pump(0.1):
                if any(w in line for w in words):
                    return line
        return None

    def flush_partial(self):
        if self.pending:
            self.out.write(self.pending)
            self.out.flush()
            self.pending = b""


def offer(image, claim=None):
    """MAGIC, size, CRC-32 and the header; `claim` replaces the header's image_size."""
    header = bytearray(image[:HEADER])
    if claim is not None:
        header[16:24] = struct.pack("<Q", claim)
    return MAGIC + struct.pack("<II", len(image), zlib.crc32(image)) + bytes(header)


def send(line, image, claim=None, corrupt=False, ready_timeout=60):
    """One attempt: True when the loader loaded it, False when it refused."""
    if not line.wait_for(["chainload: ready"], ready_timeout, poke=ENQ):
        sys.exit("chainboot: no 'chainload: ready' from the loader (is the chainload card in, the Pi on?)")
    line.port.write(offer(image, claim))
    answer = line.wait_for(["chainload: receiving", "chainload: refused"], 10)
    if answer is None:
        sys.exit("chainboot: the loader did not answer the offer")
    if "refused" in answer:
        return False
    rest = bytearray(image[HEADER:])
    if corrupt:
        rest[len(rest) // 2] ^= 0x40
    t0 = time.monotonic()
    for i in range(0, len(rest), 4096):
        line.port.write(rest[i:i + 4096])
        line.pump(0)
    line.port.flush()
    answer = line.wait_for(["chainload: loaded", "chainload: refused"], 30)
    if answer is None:
        sys.exit("chainboot: the loader said nothing after the transfer")
    if "loaded" in answer:
        dt = time.monotonic() - t0
        print(f"chainboot: sent {len(image)} bytes in {dt:.2f} s ({len(image) / 1024 / max(dt, 1e-6):.0f} KiB/s)",
              file=sys.stderr)
        return True
    return False


def terminal(line):
    """Until the line closes or Ctrl-]: Pi → screen (symbolised), keyboard → Pi."""
    interactive = sys.stdin.isatty()
    saved = None
    if interactive:
        import termios
        import tty
        saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setraw(sys.stdin.fileno())
        print("chainboot: terminal; Ctrl-] leaves\r", file=sys.stderr)
    try:
        while not line.closed:
            if interactive:
                ready, _, _ = select.select([sys.stdin.fileno()], [], [], 0)
                if ready:
                    keys = os.read(sys.stdin.fileno(), 64)
                    if CTRL_RIGHT_BRACKET in keys:
                        break
                    line.port.write(keys)
            line.pump(0.05)
            # A prompt without a newline still shows, once the line has paused.
            if line.pending and time.monotonic() - line.last_data > 0.2:
                line.flush_partial()
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    kernel = os.path.join(here, "..", "..", "target", "aarch64-unknown-none", "release", "initmm")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=os.environ.get("INITMM_SERIAL", "/dev/ttyUSB0"))
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--image", default=kernel + ".img")
    ap.add_argument("--elf", default=kernel, help="for the symboliser (file:line, names)")
    ap.add_argument("--tries", type=int, default=3)
    ap.add_argument("--ready-timeout", type=float, default=600)
    ap.add_argument("--test-refusals", metavar="IMAGE", help="a small Image to corrupt first")
    ap.add_argument("--refusals-only", action="store_true", help="stop after --test-refusals")
    a = ap.parse_args()

    with open(a.image, "rb") as f:
        image = f.read()
    try:
        sym = symbolize.Symbolizer(a.elf)
    except (OSError, ValueError, struct.error, IndexError) as e:
        print(f"chainboot: {a.elf}: {e}; no symbolising", file=sys.stderr)
        sym = None
    port = serial.Serial(a.device, a.baud, timeout=0)
    print(f"chainboot: {a.device} at {a.baud} baud; sending {a.image} ({len(image)} bytes)", file=sys.stderr)
    line = Line(port, sys.stdout.buffer, sym)

    if a.test_refusals:
        if send(line, image, claim=1 << 40, ready_timeout=a.ready_timeout):
            sys.exit("chainboot: FAILED: the loader accepted an image that does not fit in RAM")
        with open(a.test_refusals, "rb") as f:
            small = f.read()
        if send(line, small, corrupt=True, ready_timeout=a.ready_timeout):
            sys.exit("chainboot: FAILED: the loader accepted a corrupted transfer")
        print("chainboot: both bad offers were refused", file=sys.stderr)
        if a.refusals_only:
            return
    for attempt in range(a.tries):
        if send(line, image, ready_timeout=a.ready_timeout):
            break
        print(f"chainboot: transfer {attempt + 1} refused; trying again", file=sys.stderr)
    else:
        sys.exit(f"chainboot: the loader refused {a.tries} transfers")
    terminal(line)
    line.flush_partial()


if __name__ == "__main__":
    main()
