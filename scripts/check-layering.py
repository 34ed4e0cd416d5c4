#!/usr/bin/env python3
"""Checks that qopt's libraries depend only downward (docs/Architecture.md).

Stages, lowest first:

  Support (plain C++)  <  Dialect  <  Import, Conversion  <  Target
      <  Pipelines  <  tools (and the InitAll*.h registration headers)

and beside them the runtime (Runtime, Runtime/Kernels), which may use only
Support and never MLIR or LLVM. A file may include `qopt/<X>/...` only
where X is its own stage or a lower one; a CMake library may link only
libraries of its own stage or lower ones. A few pairs inside a stage are
forbidden as well: the QOpt dialect and everything past the front end never
see the ONNX staging dialect or the ONNX conversion.

Usage: check-layering.py [--root DIR]   (exit 1 and one line per violation)
"""

import argparse
import os
import re
import sys

LEVEL = {
    "Support": 0,
    "Dialect": 1,
    "Import": 2,
    "Conversion": 2,
    "Target": 3,
    "Pipelines": 4,
    "tools": 5,
    "InitAll": 4.5,
    "Config": 0,
}
# Stages that the runtime (and the Python binding) may use.
RUNTIME_OK = {"Runtime", "Support", "Config"}

# (who, what): path prefixes (relative to qopt/) that must not include or
# link the other, even though the stage order would allow it.
FORBIDDEN = [
    ("Dialect/QOpt", "Dialect/ONNX"),
    ("Conversion/QOptToLinalg", "Dialect/ONNX"),
    ("Conversion/QOptToLinalg", "Conversion/ONNXToQOpt"),
    ("Target", "Dialect/ONNX"),
    ("Target", "Conversion/ONNXToQOpt"),
    ("Target", "Import"),
    ("Import", "Conversion"),
    ("Conversion", "Import"),
]

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')
SOURCES = (".h", ".cpp", ".c", ".td", ".inc")


def component(rel):
    """'Target/CPU/Transforms/X.cpp' -> ('Target', 'Target/CPU/Transforms/X.cpp')."""
    parts = rel.split("/")
    head = parts[0]
    if head.startswith("InitAll"):
        return "InitAll"
    if head.startswith("Config"):
        return "Config"
    return head


def source_component(root, path):
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    if parts[0] == "include" and len(parts) > 2 and parts[1] == "qopt":
        inner = "/".join(parts[2:])
        return component(inner), inner
    if parts[0] == "lib":
        inner = "/".join(parts[1:])
        return component(inner), inner
    if parts[0] == "tools":
        return "tools", "tools/" + "/".join(parts[1:])
    if parts[0] == "python":
        return "python", "python/" + "/".join(parts[1:])
    return None, None


def violation(who, who_path, what, what_path):
    """Why `who` (stage, path) may not use `what` (stage, path), or None."""
    if who in ("Runtime", "python"):
        if what not in RUNTIME_OK:
            return f"the runtime may use only Runtime and Support, not {what}"
        return None
    if what == "Runtime":
        if who in ("tools",):
            return None
        return f"{who} may not use the runtime (only tools and Python do)"
    if what not in LEVEL or who not in LEVEL:
        return None
    if what != who and LEVEL[what] >= LEVEL[who]:
        return (f"{who} (stage {LEVEL[who]}) may not use {what} "
                f"(stage {LEVEL[what]}): dependencies point downward")
    for a, b in FORBIDDEN:
        if who_path.startswith(a) and what_path.startswith(b):
            return f"{a} may not use {b}"
    return None


def check_includes(root, errors):
    for top in ("include", "lib", "tools", "python"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(SOURCES):
                    continue
                path = os.path.join(dirpath, name)
                who, who_path = source_component(root, path)
                if who is None:
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = m.group(1)
                        rel = os.path.relpath(path, root)
                        if target.startswith(("mlir/", "llvm/")) and who in (
                                "Runtime", "Support", "python", "Config"):
                            errors.append(f"{rel}:{lineno}: includes {target}: "
                                          f"{who} never uses MLIR or LLVM")
                            continue
                        if not target.startswith("qopt/"):
                            continue
                        inner = target[len("qopt/"):]
                        what = component(inner)
                        why = violation(who, who_path, what, inner)
                        if why:
                            errors.append(f"{rel}:{lineno}: includes {target}: {why}")


LIBRARY = re.compile(
    r"\b(?:add_qopt_library|add_qopt_dialect_library|add_library|"
    r"add_mlir_library)\(\s*([A-Za-z0-9_]+)")
LINK = re.compile(r"\btarget_link_libraries\(\s*([A-Za-z0-9_.]+)([^)]*)\)", re.S)


def check_links(root, errors):
    owners = {}  # library -> (stage, path under lib/)
    files = []
    for dirpath, _, names in os.walk(os.path.join(root, "lib")):
        if "CMakeLists.txt" in names:
            path = os.path.join(dirpath, "CMakeLists.txt")
            rel = os.path.relpath(dirpath, os.path.join(root, "lib"))
            text = open(path, encoding="utf-8").read()
            files.append((path, rel.replace(os.sep, "/"), text))
            for m in LIBRARY.finditer(text):
                owners[m.group(1)] = (component(rel.replace(os.sep, "/")),
                                      rel.replace(os.sep, "/"))
    for path, rel, text in files:
        for m in LINK.finditer(text):
            lib = m.group(1)
            if lib.startswith("obj."):
                continue
            if lib not in owners:
                continue
            who, who_path = owners[lib]
            for dep in m.group(2).split():
                if dep not in owners or dep == lib:
                    continue
                what, what_path = owners[dep]
                why = violation(who, who_path, what, what_path)
                if why:
                    errors.append(f"{os.path.relpath(path, root)}: {lib} links "
                                  f"{dep}: {why}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), ".."))
    args = parser.parse_args()
    errors = []
    check_includes(args.root, errors)
    check_links(args.root, errors)
    for e in errors:
        print(e)
    if errors:
        print(f"check-layering: {len(errors)} violation(s)")
        return 1
    print("check-layering: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
