"""Runs ONNX models through qopt on the CPU and compares with onnxruntime.

The path is the one qopt compiles models on: qopt-translate --import-onnx,
then qopt-opt --convert-onnx-to-qopt and the CPU lowering. Until the
Two ways to execute: `compile_model` + `run_compiled` go through qoptc and
qopt-run (the compiled-model path users take); `run_qopt` goes through
mlir-runner, with a harness function that holds the inputs as constants,
calls @main and prints each result (no link step; used for the thousands of
small node tests).
"""
import os
import re
import subprocess
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

LLVM_BIN = "/usr/lib/llvm-22/bin"
LLVM_LIB = "/usr/lib/llvm-22/lib"
# The named CPU pipeline (lib/Pipelines), after the conversion that
# run_qopt does first to read the signature; matrix products go to the CPU
# kernel library and loop nests to its thread pool, as in compiled models.
LOWER = ["--qopt-lower-to-cpu=blas=true parallel=true"]


class QOptError(Exception):
    """qopt refused or failed; `stage` says where, the message has stderr."""

    def __init__(self, stage, message):
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message


def _tools():
    root = os.environ.get("QOPT_BIN")
    if not root:
        raise RuntimeError("set QOPT_BIN to the folder with qopt-opt")
    return os.path.join(root, "qopt-translate"), os.path.join(root, "qopt-opt")


def _kernels_library():
    root = os.environ["QOPT_BIN"]
    return os.path.join(root, "..", "lib", "libqopt_kernels_cpu.so")


def compile_model(model, workdir, dims=()):
    """qoptc: `model` (ModelProto or path) to workdir/model.so (+ weights and
    manifest). Returns the library's path."""
    root = os.environ.get("QOPT_BIN")
    if isinstance(model, str):
        path = model
    else:
        path = os.path.join(workdir, "model.onnx")
        onnx.save(model, path)
    out = os.path.join(workdir, "model.so")
    cmd = [os.path.join(root, "qoptc"), path, "-o", out]
    for d in dims:
        cmd += ["--dim", d]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise QOptError("qoptc", r.stderr)
    return out


def run_compiled(library, inputs, workdir):
    """Runs a compiled model with qopt-run on `inputs` (arrays, input order)."""
    root = os.environ.get("QOPT_BIN")
    files = []
    for i, a in enumerate(inputs):
        f = os.path.join(workdir, f"input{i}.npy")
        np.save(f, a)
        files.append(f)
    out = os.path.join(workdir, "out")
    r = subprocess.run([os.path.join(root, "qopt-run"), library, "--output-dir", out] + files,
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise QOptError("qopt-run", r.stderr)
    # One line per output: "name: dtype [shape] -> path".
    return [np.load(line.rsplit(" -> ", 1)[1]) for line in r.stdout.splitlines()
            if " -> " in line]


def _mlir_type(dtype):
    return {
        np.dtype("float32"): "f32", np.dtype("float64"): "f64",
        np.dtype("float16"): "f16", np.dtype("int64"): "i64",
        np.dtype("int32"): "i32", np.dtype("int8"): "i8",
        np.dtype("int16"): "i16", np.dtype("bool"): "i1",
    }[np.dtype(dtype)]


def _literal(array):
    t = _mlir_type(array.dtype)
    shape = "x".join(str(d) for d in array.shape)
    ttype = f"tensor<{shape + 'x' if shape else ''}{t}>"
    if array.dtype == np.bool_:
        flat = ["true" if v else "false" for v in array.reshape(-1)]
    elif np.issubdtype(array.dtype, np.floating):
        flat = [f"0x{int(np.array(v, dtype=array.dtype).view(f'u{array.dtype.itemsize}')):X}"
                for v in array.reshape(-1)]
    else:
        flat = [str(int(v)) for v in array.reshape(-1)]

    def nest(items, dims):
        if not dims:
            return items[0]
        step = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        return "[" + ", ".join(nest(items[i * step:(i + 1) * step], dims[1:])
                               for i in range(dims[0])) + "]"
    if array.size == 0:
        return f"dense<> : {ttype}", ttype
    body = nest(flat, list(array.shape))
    if array.ndim == 0:
        body = flat[0]
    return f"dense<{body}> : {ttype}", ttype


def _signature(module_text):
    m = re.search(r"func\.func @main\((.*?)\)\s*->\s*\((.*?)\)\s*(attributes|\{)",
                  module_text, re.S)
    if m:
        args, results = m.group(1), m.group(2)
    else:
        m = re.search(r"func\.func @main\((.*?)\)\s*->\s*(tensor<[^>]*>)", module_text, re.S)
        args, results = m.group(1), m.group(2)
    arg_types = re.findall(r"%\w+: (tensor<[^>]*>)", args)
    result_types = re.findall(r"(tensor<[^>]*>)", results)
    return arg_types, result_types


_PRINTERS = {"f32": ("printMemrefF32", "f32"), "f16": ("printMemrefF32", "f32"),
             "bf16": ("printMemrefF32", "f32"), "f64": ("printMemrefF64", "f64"),
             "i64": ("printMemrefI64", "i64"), "i32": ("printMemrefI64", "i64"),
             "i16": ("printMemrefI64", "i64"), "i8": ("printMemrefI64", "i64"),
             "i1": ("printMemrefI64", "i64")}


def _harness(arg_types, result_types, inputs):
    lines = []
    for name in sorted({p for p, _ in _PRINTERS.values()}):
        t = "f32" if "F32" in name else ("f64" if "F64" in name else "i64")
        lines.append(f"  func.func private @{name}(memref<*x{t}>)")
    lines.append("  func.func @qopt_check_entry() {")
    args = []
    for i, (array, atype) in enumerate(zip(inputs, arg_types)):
        lit, ctype = _literal(array)
        lines.append(f"    %in{i} = arith.constant {lit}")
        if ctype != atype:
            lines.append(f"    %arg{i} = tensor.cast %in{i} : {ctype} to {atype}")
            args.append(f"%arg{i}")
        else:
            args.append(f"%in{i}")
    res = ", ".join(f"%r{i}" for i in range(len(result_types)))
    lines.append(f"    {res} = func.call @main({', '.join(args)}) : "
                 f"({', '.join(arg_types)}) -> ({', '.join(result_types)})")
    for i, rtype in enumerate(result_types):
        inner = rtype[len("tensor<"):-1]
        elem = inner.split("x")[-1]
        printer, ptype = _PRINTERS[elem]
        value = f"%r{i}"
        if elem != ptype:
            wide = "tensor<" + inner[:len(inner) - len(elem)] + ptype + ">"
            op = "arith.extf" if elem.startswith(("f", "bf")) else (
                "arith.extui" if elem == "i1" else "arith.extsi")
            lines.append(f"    %w{i} = {op} %r{i} : {rtype} to {wide}")
            value, rtype = f"%w{i}", wide
        mtype = rtype.replace("tensor<", "memref<")
        lines.append(f"    %m{i} = bufferization.to_buffer {value} : {rtype} to {mtype}")
        lines.append(f"    %u{i} = memref.cast %m{i} : {mtype} to memref<*x{ptype}>")
        lines.append(f"    func.call @{printer}(%u{i}) : (memref<*x{ptype}>) -> ()")
    lines.append("    return")
    lines.append("  }")
    return "\n".join(lines)


def _parse_prints(text, count):
    blocks = text.split("Unranked Memref")[1:]
    if len(blocks) != count:
        raise QOptError("run", f"expected {count} printed results:\n{text}")
    out = []
    for block in blocks:
        sizes = re.search(r"sizes = \[([^\]]*)\]", block).group(1)
        shape = [int(s) for s in sizes.split(",") if s.strip()]
        data = block.split("data =", 1)[1]
        if int(np.prod(shape)) == 0:
            out.append(np.zeros(shape))
            continue
        nums = re.findall(r"-?(?:nan|inf|\d+\.?\d*(?:e[-+]?\d+)?)", data)
        values = np.array([float(v) for v in nums], dtype=np.float64)
        out.append(values.reshape(shape))
    return out


def run_module(text, inputs):
    """Lowers an MLIR module whose @main takes and returns tensors, runs it on
    `inputs` (arrays, argument order) and returns the results as arrays."""
    _, opt = _tools()
    arg_types, result_types = _signature(text)
    # Resource blobs (parameters a pass created) follow the module.
    text, _, resources = text.partition("{-#")
    resources = "{-#" + resources if resources else ""
    text = text.rstrip()
    if not text.endswith("}"):
        raise ValueError("expected a module")
    if not re.search(r"^module\b", text, re.M):
        text = "module {\n" + text + "\n}"
    text = text[:-1] + _harness(arg_types, result_types, inputs) + "\n}\n" + resources
    r = subprocess.run([opt] + LOWER, input=text, capture_output=True, text=True)
    if r.returncode:
        raise QOptError("lower", r.stderr)
    r = subprocess.run(
        [os.path.join(LLVM_BIN, "mlir-runner"), "-e", "qopt_check_entry",
         "-entry-point-result=void",
         f"-shared-libs={LLVM_LIB}/libmlir_runner_utils.so,{LLVM_LIB}/libmlir_c_runner_utils.so,"
         f"{_kernels_library()}"],
        input=r.stdout, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise QOptError("run", r.stderr)
    return _parse_prints(r.stdout, len(result_types))


def run_qopt(model, inputs, workdir=None):
    """Compiles and runs `model` on `inputs` (list of arrays, graph order)."""
    translate, opt = _tools()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        # Weights inline: mlir-runner has no runtime to read them from files.
        r = subprocess.run([translate, "--import-onnx", "-mlir-print-debuginfo",
                            "--inline-limit=1000000000", path],
                           capture_output=True, text=True)
        if r.returncode:
            raise QOptError("import", r.stderr)
        r = subprocess.run([opt, "--qopt-raise-onnx", "--convert-onnx-to-qopt", "--canonicalize"],
                           input=r.stdout, capture_output=True, text=True)
        if r.returncode:
            raise QOptError("convert", r.stderr)
        return run_module(r.stdout, inputs)


def reference_session(model):
    """onnxruntime as the reference: each node as the ONNX specification
    says, without its graph rewrites (which fuse ops and once changed the
    result: onnxruntime 1.32 fuses a uint8-activation / int8-weight QDQ
    MatMul into a kernel that is off by 40%)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_onnxruntime(model, inputs):
    sess = reference_session(model)
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, inputs)))


def compare(model, inputs, rtol=1e-4, atol=1e-5, library=None):
    """Runs both (qopt through mlir-runner, or the compiled `library` through
    qopt-run); returns (ok, message)."""
    expected = run_onnxruntime(model, inputs)
    if library:
        with tempfile.TemporaryDirectory() as tmp:
            got = run_compiled(library, inputs, tmp)
    else:
        got = run_qopt(model, inputs)
    return compare_outputs(expected, got, rtol, atol)


def compare_outputs(expected, got, rtol=1e-4, atol=1e-5):
    if len(expected) != len(got):
        return False, f"{len(got)} outputs, expected {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        e = np.asarray(e)
        if e.shape != g.shape:
            return False, f"output {i}: shape {g.shape}, expected {e.shape}"
        if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
            if not np.array_equal(e.astype(np.int64), g.astype(np.int64)):
                return False, f"output {i}: {g} != {e}"
        elif not np.allclose(g, e.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True):
            err = np.max(np.abs(g - e) / (np.abs(e) + atol))
            return False, f"output {i}: max relative error {err:.3g}"
    return True, "ok"
