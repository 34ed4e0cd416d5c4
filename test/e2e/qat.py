"""Quantization-aware training's prepare and convert on the CPU path:
`qopt-insert-fake-quant` and `qopt-convert-qat`, run by
`qoptc --graph-passes` on the test Llama (dynamo export).

- prepare: the fake-quantized model's logits equal (<= 2e-6) those of the
  model whose weights were quantized and dequantized by the numpy reference
  of the spec (test/e2e/quant_reference.py): the forward pass simulates the
  deployed rounding exactly;
- convert: the converted model (packed weights) gives the fake-quantized
  model's logits bit for bit, and its weights file holds packed codes;
- activations: one linear layer with int8 per-token input fake-quant and
  int4 grouped asymmetric weight fake-quant, lowered and run, against numpy.

Prints one line per case and a summary."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import qopt  # noqa: E402
import qopt_check  # noqa: E402
from checkpoints import read_safetensors, rel_error, write_f32_safetensors  # noqa: E402
from quant_reference import int_group, reference  # noqa: E402

REAL = os.path.join(HERE, "real", "llama-dynamo")
MODEL = os.path.join(REAL, "model.onnx")
base = read_safetensors(os.path.join(HERE, "bnb", "llama-base", "model.safetensors"))
linear = [n for n in base if n.endswith("_proj.weight")]
inputs = np.load(os.path.join(REAL, "reference.npz"))
cases = sorted({k.split(".")[0] for k in inputs.files})
feeds = {c: {n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")} for c in cases}
failures = 0


def qoptc(*args):
    r = subprocess.run([os.path.join(BIN, "qoptc"), MODEL, *args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def logits(lib):
    m = qopt.load(lib)
    return [m.run(**feeds[c])[0] for c in cases]


with tempfile.TemporaryDirectory() as tmp:
    for i, (weights, spec) in enumerate((("int4:group=16,asym", "int4:group=16,asym"),
                                         ("int8", "int8:per-channel"),
                                         ("fp8-e4m3:per-channel", "fp8-e4m3:per-channel"))):
        prepare = f"qopt-insert-fake-quant{{weights={weights}}}"
        libs = {k: os.path.join(tmp, f"{k}{i}.so") for k in ("fq", "conv", "ref")}
        floats = os.path.join(tmp, f"reference-{i}.safetensors")
        write_f32_safetensors(floats, {n: reference(base[n], spec) for n in linear})
        results = [qoptc("--graph-passes", prepare, "-o", libs["fq"]),
                   qoptc("--graph-passes", prepare + ",qopt-convert-qat", "-o", libs["conv"]),
                   qoptc("--weights", floats, "-o", libs["ref"])]
        if any(rc for rc, _ in results):
            print(f"FAIL {weights}: {[e for rc, e in results if rc][0][-400:]}")
            failures += 1
            continue
        fq, conv, ref = logits(libs["fq"]), logits(libs["conv"]), logits(libs["ref"])
        vs_ref = max(rel_error(a, b) for a, b in zip(fq, ref))
        same = all(np.array_equal(a, b) for a, b in zip(fq, conv))
        moved = max(rel_error(a, inputs[f"{c}.logits"], inputs.get(f"{c}.logits.valid"))
                    for a, c in zip(fq, cases))
        size = [os.path.getsize(os.path.splitext(libs[k])[0] + ".safetensors") for k in ("conv", "fq")]
        ok = vs_ref <= 2e-6 and same and moved > 1e-4 and size[0] < 0.7 * size[1]
        print(f"{'ok' if ok else 'FAIL'} {weights}: fake-quant vs reference {vs_ref:.1e}, "
              f"converted {'identical' if same else 'DIFFERENT'}, weights {size[0]} bytes "
              f"(fake-quant model {size[1]})")
        failures += not ok

    # Activations: int8 per token (symmetric) on x, int4 groups of 8 asym on W.
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((3, 16)) * 2).astype(np.float32)
    x[1, 4] = 30.0  # an outlier in one token
    w = rng.standard_normal((6, 16)).astype(np.float32)
    text = """func.func @main(%x: tensor<3x16xf32>, %w: tensor<6x16xf32>) -> tensor<3x6xf32> {
  %y = qopt.linear %x, %w module "fc" : (tensor<3x16xf32>, tensor<6x16xf32>) -> tensor<3x6xf32>
  return %y : tensor<3x6xf32>
}"""
    r = subprocess.run([os.path.join(BIN, "qopt-opt"),
                        "--qopt-insert-fake-quant=weights=int4:group=8,asym "
                        "activations=int8:per-token"], input=text, capture_output=True, text=True)
    s = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    xq = (np.clip(np.rint(x / s), -128, 127) * s).astype(np.float32)
    wq = np.concatenate([np.stack([int_group(w[r, g:g + 8], 4, True, np.float32(1))
                                   for r in range(6)]) for g in (0, 8)], axis=1)
    want = xq @ wq.T
    got = qopt_check.run_module(r.stdout, [x, w])[0] if not r.returncode else None
    ok = got is not None and np.allclose(got, want, rtol=1e-5, atol=1e-5)
    print(f"{'ok' if ok else 'FAIL'} int8 per-token activations + int4 weights: "
          f"max error {np.max(np.abs(got - want)) if got is not None else r.stderr[-300:]}")
    failures += not ok
print(f"qat: {failures} failures")
sys.exit(1 if failures else 0)
