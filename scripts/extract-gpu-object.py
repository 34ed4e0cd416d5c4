#!/usr/bin/env python3
"""Writes the payload of the first #gpu.object in an MLIR module (stdin) to a file.

The payload is a string attribute (`assembly = "..."` for PTX, `bin = "..."` for a
cubin) printed with MLIR's escapes: `\\\\` for a backslash, `\\XX` (hex) for other bytes.
    mlir-opt ... gpu-module-to-binary{format=isa} | extract-gpu-object.py assembly k.ptx
"""
import re
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: extract-gpu-object.py assembly|bin OUT", file=sys.stderr)
        return 2
    text = sys.stdin.read()
    m = re.search(sys.argv[1] + r' = "((?:[^"\\]|\\.)*)"', text)
    if not m:
        print(f"extract-gpu-object: no {sys.argv[1]} attribute in the module",
              file=sys.stderr)
        return 1
    s, out, i = m.group(1), bytearray(), 0
    while i < len(s):
        if s[i] != "\\":
            out += s[i].encode()
            i += 1
        elif s[i + 1] == "\\":
            out.append(0x5C)
            i += 2
        else:
            out.append(int(s[i + 1:i + 3], 16))
            i += 3
    with open(sys.argv[2], "wb") as f:
        f.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
