"""Checks bench/gpu/structs.py, the GPU scripts' formats of the kernel
library's by-value parameter structs, against the C++ structs: each
format's size equals the `static_assert(sizeof(S) == N)` of its struct in
lib/Runtime/Kernels/CUDA/*.h, and no GPU script packs a format of its own.

    python bench_structs.py ROOT
"""
import glob
import os
import re
import struct
import sys

root = sys.argv[1]
sizes = {}
for header in glob.glob(os.path.join(root, "lib/Runtime/Kernels/CUDA/*.h")):
    for name, size in re.findall(r"static_assert\(\s*sizeof\((\w+)\)\s*==\s*(\d+)",
                                 open(header).read()):
        sizes[name] = int(size)
sys.path.insert(0, os.path.join(root, "bench/gpu"))
from structs import FORMATS  # noqa: E402

failures = 0
for name, fmt in sorted(FORMATS.items()):
    got, want = struct.calcsize(fmt), sizes.get(name)
    ok = want is not None and got == want
    failures += not ok
    print(f"{name}: format {got} bytes, C++ {want if want is not None else 'no static_assert'}: "
          + ("ok" if ok else "MISMATCH"))
for script in sorted(glob.glob(os.path.join(root, "bench/gpu/*.py"))):
    if os.path.basename(script) == "structs.py":
        continue
    own = re.findall(r"struct\.pack\(", open(script).read())
    if own:
        failures += 1
        print(f"{os.path.basename(script)}: packs {len(own)} format(s) of its own: MISMATCH")
print(f"kernel parameter formats: {len(FORMATS)} checked, {failures} failed")
sys.exit(1 if failures else 0)
