"""Prints the PTX object of the gpu.binary in the MLIR text on stdin (the
object string with MLIR's escapes undone)."""
import re
import sys

text = sys.stdin.read()
m = re.search(r'gpu\.binary @\w+\s+\[#gpu\.object<#nvvm\.target<[^>]*>,.*?assembly = "((?:[^"\\]|\\.)*)"', text)
if not m:
    sys.exit("no gpu.binary with a PTX object")
raw = m.group(1)
out = re.sub(r"\\([0-9A-Fa-f]{2})|\\(.)",
             lambda g: chr(int(g.group(1), 16)) if g.group(1) else g.group(2), raw)
sys.stdout.write(out)
