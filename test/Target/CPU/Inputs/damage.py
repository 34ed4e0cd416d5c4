"""Damages a compiled model.so the ways a disk, a copy or a user can.

  damage.py LIB MODE OUT

truncate: the first half of the file. flip: one byte of the code changed.
retrail-* (the trailer recomputed, so that the ELF checks are what fails):
retrail-segment: a loaded segment made to end past the file; retrail-machine:
another machine type; retrail-nomanifest: the `qopt_manifest` symbol renamed.
The hash is the one of include/qopt/Support/LibraryTrailer.h.
"""
import struct
import sys

MASK = (1 << 64) - 1
OFFSET, PRIME = 0xcbf29ce484222325, 0x100000001b3


def fnv(data):
    lanes = [(OFFSET + i) & MASK for i in range(8)]
    n = len(data) - len(data) % 8
    for i in range(0, n, 8):
        for lane in range(8):
            lanes[lane] = ((lanes[lane] ^ data[i + lane]) * PRIME) & MASK
    h = OFFSET
    for lane in lanes:
        h = ((h ^ lane) * PRIME) & MASK
    for byte in data[n:]:
        h = ((h ^ byte) * PRIME) & MASK
    return ((h ^ len(data)) * PRIME) & MASK


lib, mode, out = sys.argv[1:4]
data = bytearray(open(lib, "rb").read())
body = data[:-24]
if mode == "truncate":
    data = data[: len(data) // 2]
elif mode == "flip":
    data[len(body) // 2] ^= 0x5A
elif mode.startswith("retrail-"):
    if mode == "retrail-segment":
        phoff, = struct.unpack_from("<Q", body, 32)
        phnum, = struct.unpack_from("<H", body, 56)
        for i in range(phnum):
            at = phoff + 56 * i
            if struct.unpack_from("<I", body, at)[0] == 1:  # PT_LOAD
                struct.pack_into("<Q", body, at + 32, len(body) + 4096)  # p_filesz
                struct.pack_into("<Q", body, at + 40, 2 * len(body))  # p_memsz
                break
    elif mode == "retrail-machine":
        struct.pack_into("<H", body, 18, 0x28)  # EM_ARM
    elif mode == "retrail-nomanifest":
        at = body.find(b"qopt_manifest\0")
        body[at:at + 4] = b"xopt"
    else:
        sys.exit("unknown mode " + mode)
    data = body + struct.pack("<QQ", fnv(bytes(body)), len(body)) + b"QOPTSUM1"
else:
    sys.exit("unknown mode " + mode)
open(out, "wb").write(data)
