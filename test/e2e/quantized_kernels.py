"""Quantized linear layers through the CPU kernel library's quantized
products (qopt_kernel_qlinear) on the test Llama (test/e2e/real):

- every code path this CPU has (QOPT_CPU_KERNELS=scalar, avx2, avx2-vnni,
  avx512, avx512-vnni) gives the same logits as the best one (<= 1e-5:
  only f32 summation order differs), for int4 in groups of 32, uint4 with
  zero points in groups of 16 and int8 per channel;
- `--int8-activations`: on a CPU with VNNI (AVX-512 or AVX-VNNI) the
  logits move (the activations are quantized per block of 32) but stay
  within 3e-2 of the f32-activation model's, relative; elsewhere, and for
  groups of 16 (which the VNNI lanes do not fit), they are equal; both VNNI
  paths, where the CPU has both, give the same logits (<= 1e-5);
- `qopt-run --verbose` names the CPU and the path, capped by the variable;
  a value it does not know is a warning naming the paths (best path kept).

Prints one line per case and a summary; exits 1 on a mismatch."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
from checkpoints import rel_error  # noqa: E402

PATHS = ["scalar", "avx2", "avx2-vnni", "avx512", "avx512-vnni"]
# AVX-VNNI is not implied by AVX-512 VNNI (server CPUs before Sapphire
# Rapids, AMD's Zen 4 lack it): that path is tested where the CPU has it.
with open("/proc/cpuinfo") as f:
    HAS_AVX_VNNI = " avx_vnni" in f.read()
# With whether int8 activations apply (VNNI lanes hold groups of 32 or more;
# groups of 16 keep f32 activations).
SPECS = [("int4:group=32", True), ("int4:group=16,asym", False), ("int8:per-channel", True)]
RUNNER = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import qopt
model = qopt.load(sys.argv[2])
inputs = np.load(sys.argv[3])
cases = sorted({k.split(".")[0] for k in inputs.files})
np.savez(sys.argv[4], **{c: model.run(**{n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")})[0] for c in cases})
"""


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"FAIL {' '.join(cmd)}: {r.stderr.strip()[:400]}")
    return r


def logits(lib, path, tmp, inputs):
    """The model's logits for every reference case, in a process whose
    kernels are capped at `path` (the path is chosen once, at load)."""
    out = os.path.join(tmp, "out.npz")
    env = dict(os.environ, QOPT_CPU_KERNELS=path)
    run([sys.executable, "-c", RUNNER, os.path.join(BIN, "..", "python"), lib, inputs, out], env)
    data = np.load(out)
    return [data[k] for k in sorted(data.files)]


def verbose_path(lib, path):
    env = dict(os.environ, QOPT_CPU_KERNELS=path)
    err = run([os.path.join(BIN, "qopt-run"), lib, "--info", "--verbose"], env).stderr
    lines = dict(line.split(": ", 1) for line in err.splitlines() if ": " in line)
    return (lines.get("cpu"), lines.get("quantized-product kernels"),
            lines.get("f32-product kernels"))


failures = 0
real = os.path.join(HERE, "real", "llama-dynamo")
inputs = os.path.join(real, "reference.npz")
with tempfile.TemporaryDirectory() as tmp:
    best = None
    for spec, quantizes in SPECS:
        lib = os.path.join(tmp, spec.replace(":", "_").replace(",", "_").replace("=", "") + ".so")
        run([os.path.join(BIN, "qoptc"), os.path.join(real, "model.onnx"), "--quantize", spec,
             "-o", lib])
        cpu, best, _ = verbose_path(lib, "avx512-vnni")  # no cap: the best path
        reference = logits(lib, best, tmp, inputs)
        for path in PATHS[:PATHS.index(best) + 1]:
            if path == "avx2-vnni" and not HAS_AVX_VNNI:
                print(f"skip {spec} on the avx2-vnni path: this CPU has no AVX-VNNI")
                continue
            got = logits(lib, path, tmp, inputs)
            worst = max(rel_error(g, r) for g, r in zip(got, reference))
            # The f32 products (the output head) take the library's own
            # kernel from AVX-512 up, OpenBLAS below: their results agree too.
            _, shown, f32 = verbose_path(lib, path)
            f32_expected = "avx512" if path.startswith("avx512") else "openblas"
            ok = worst <= 1e-5 and shown == path and f32 == f32_expected
            print(f"{'ok' if ok else 'FAIL'} {spec} on the {path} path: max relative error "
                  f"{worst:.1e} vs {best}; qopt-run --verbose says '{shown}', f32 '{f32}'")
            failures += not ok
        lib8 = lib.replace(".so", "-int8act.so")
        run([os.path.join(BIN, "qoptc"), os.path.join(real, "model.onnx"), "--quantize", spec,
             "--int8-activations", "-o", lib8])
        got = logits(lib8, best, tmp, inputs)
        moved = max(rel_error(g, r) for g, r in zip(got, reference))
        ok = (1e-6 < moved <= 3e-2) if best.endswith("vnni") and quantizes else moved <= 1e-5
        print(f"{'ok' if ok else 'FAIL'} {spec} --int8-activations on {best}: max relative "
              f"error {moved:.1e} vs f32 activations")
        failures += not ok
        if best == "avx512-vnni" and HAS_AVX_VNNI:
            other = logits(lib8, "avx2-vnni", tmp, inputs)
            worst = max(rel_error(o, g) for o, g in zip(other, got))
            ok = worst <= 1e-5
            print(f"{'ok' if ok else 'FAIL'} {spec} --int8-activations on avx2-vnni: max "
                  f"relative error {worst:.1e} vs avx512-vnni")
            failures += not ok
    # A cap the library does not know: a warning naming the paths, and the
    # best path.
    env = dict(os.environ, QOPT_CPU_KERNELS="avx9")
    err = run([os.path.join(BIN, "qopt-run"), lib, "--info", "--verbose"], env).stderr
    print(next((line for line in err.splitlines() if "'avx9'" in line), "no warning"))
    _, shown, _ = verbose_path(lib, "avx9")
    ok = shown == best
    print(f"{'ok' if ok else 'FAIL'} QOPT_CPU_KERNELS=avx9 runs the best path ({shown})")
    failures += not ok
    print(f"cpu: {cpu}; best path: {best}")
print(f"quantized kernels: {failures} failures")
sys.exit(1 if failures else 0)
