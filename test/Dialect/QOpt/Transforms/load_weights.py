"""qopt-load-weights on a small module, with checkpoints made here from the
QLoRA checkpoint transformers + bitsandbytes wrote (test/e2e/bnb): the
quantized and float weights it installs, then one broken checkpoint per
error the pass reports. Prints one line per case (`<case>: <first error
line>`, or the IR lines that show what was loaded)."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ["QOPT_BIN"]
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "..", "..", "e2e", "bnb", "llama-nf4-double", "model.safetensors")
FP4 = os.path.join(HERE, "..", "..", "..", "e2e", "bnb", "llama-fp4", "model.safetensors")
DTYPES = {"F32": np.float32, "U8": np.uint8, "I8": np.int8, "I32": np.int32}
MODULE = """
func.func @m(%x: tensor<?x32xf32>, %w: tensor<32x32xf32>, %wk: tensor<16x32xf32>) -> (tensor<?x32xf32>, tensor<?x16xf32>) {
  %q = qopt.linear %x, %w module "PREFIXmodel.layers.0.self_attn.q_proj" : (tensor<?x32xf32>, tensor<32x32xf32>) -> tensor<?x32xf32>
  %k = qopt.linear %x, %wk module "PREFIXmodel.layers.0.self_attn.k_proj" : (tensor<?x32xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  return %q, %k : tensor<?x32xf32>, tensor<?x16xf32>
}
"""
Q = "model.layers.0.self_attn.q_proj.weight"


def read(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    return {n: (t["dtype"], np.frombuffer(data[t["data_offsets"][0]:t["data_offsets"][1]],
                                          DTYPES[t["dtype"]]).reshape(t["shape"]))
            for n, t in header.items() if n != "__metadata__"}


def encode(tensors):
    header, blob = {}, b""
    for name, (dtype, a) in tensors.items():
        raw = np.ascontiguousarray(a, DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


def q_proj(path=FIXTURE, kind="nf4"):
    """q_proj's entries of a bitsandbytes checkpoint."""
    return {n: t for n, t in read(path).items() if n.startswith(Q)}


def state_json(tensors, kind="nf4"):
    return json.loads(bytes(tensors[f"{Q}.quant_state.bitsandbytes__{kind}"][1]).decode())


def with_state(tensors, state, kind="nf4"):
    out = dict(tensors)
    out[f"{Q}.quant_state.bitsandbytes__{kind}"] = (
        "U8", np.frombuffer(json.dumps(state).encode(), np.uint8))
    return out


def run(name, tensors=None, raw=None, prefix="", show_ir=False, path=None):
    with tempfile.TemporaryDirectory() as d:
        file = path or os.path.join(d, "w.safetensors")
        if path is None and (raw is not None or tensors is not None):
            open(file, "wb").write(raw if raw is not None else encode(tensors))
        r = subprocess.run([os.path.join(BIN, "qopt-opt"), "-",
                            f"--qopt-load-weights=weights={file}",
                            "--mlir-elide-resource-strings-if-larger=1"],
                           input=MODULE.replace("PREFIX", prefix), capture_output=True, text=True)
        warnings = [l.split("warning: ", 1)[1] for l in r.stderr.splitlines() if "warning:" in l]
        if show_ir:
            print(f"{name}: rc {r.returncode}")
            for line in r.stdout.splitlines():
                if "qopt.param" in line or "qopt.assemble" in line or "qopt.linear" in line:
                    print("  " + line.strip())
            for w in warnings:
                print("  warning: " + w.replace(d, "DIR"))
            return
        lines = [l for l in r.stderr.splitlines() if "error:" in l]
        first = lines[0].split("error: ", 1)[1].replace(d, "DIR") if lines else "NO ERROR"
        print(f"{name}: {first}" + ("" if r.returncode else " (exit 0!)"))


good = q_proj()
run("nf4 double", good, show_ir=True)
run("fp4 through a wrapper's path", q_proj(FP4), prefix="m.", show_ir=True)
k = np.arange(16 * 32, dtype=np.float32).reshape(16, 32) / 512
run("float weight and unused tensors",
    {"model.layers.0.self_attn.k_proj.weight": ("F32", k),
     "model.norm.weight": ("F32", np.ones(32, np.float32))}, show_ir=True)
SCB = "model.layers.0.self_attn.q_proj.SCB"
int8 = {Q: ("I8", np.arange(32 * 32).reshape(32, 32).astype(np.int8)),
        SCB: ("F32", np.linspace(0.5, 2.0, 32).astype(np.float32)),
        "model.layers.0.self_attn.q_proj.weight_format": ("U8", np.zeros((), np.uint8))}
run("LLM.int8", int8, show_ir=True)

run("no file", path="/nonexistent/w.safetensors")
run("truncated", raw=encode(good)[:-10])
run("not json header", raw=struct.pack("<Q", 4) + b"{x: ")
state = state_json(good)
run("quant_state not json", {**good, f"{Q}.quant_state.bitsandbytes__nf4": ("U8", np.frombuffer(b"{nope", np.uint8))})
run("quant_type mismatch", with_state(good, {**state, "quant_type": "fp4"}))
run("zero blocksize", with_state(good, {**state, "blocksize": 0}))
run("missing absmax", {n: t for n, t in good.items() if not n.endswith(".absmax")})
run("short weight", {**good, Q: ("U8", good[Q][1][:-1])})
run("other quant_map", {**good, f"{Q}.quant_map": ("F32", good[f"{Q}.quant_map"][1] * 2)})
run("other nested quant_map", {**good, f"{Q}.nested_quant_map": ("F32", good[f"{Q}.nested_quant_map"][1][::-1].copy())})
run("no nested_offset", with_state(good, {k: v for k, v in state.items() if k != "nested_offset"}))
run("absmax count", {**good, f"{Q}.absmax": ("U8", good[f"{Q}.absmax"][1][:-1])})
run("shape mismatch", with_state(good, {**state, "shape": [16, 64]}))
run("3-d shape", with_state(good, {**state, "shape": [2, 16, 32]}))
run("unknown module", {n.replace("q_proj", "x_proj"): t for n, t in good.items()})
run("orphan absmax", {f"{Q}.absmax": good[f"{Q}.absmax"]})
run("LLM.int8 tiled layout", {**int8, "model.layers.0.self_attn.q_proj.weight_format":
                               ("U8", np.ones((), np.uint8))})
run("LLM.int8 SCB count", {**int8, SCB: ("F32", np.ones(31, np.float32))})
run("LLM.int8 without weight", {SCB: int8[SCB]})
run("LLM.int8 float weight", {**int8, Q: ("F32", np.zeros((32, 32), np.float32))})
run("other quant_state", {f"{Q}.quant_state.bitsandbytes__int2": ("U8", np.zeros(2, np.uint8))})
run("int32 weight (GPTQ's packing)", {"model.layers.0.self_attn.k_proj.weight": ("I32", np.zeros((4, 32), np.int32))})
run("float weight of another shape", {"model.layers.0.self_attn.k_proj.weight": ("F32", k.T.copy())})
