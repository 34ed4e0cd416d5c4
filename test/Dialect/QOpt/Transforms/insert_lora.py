"""qopt-insert-lora's initialisations, read back from the printed resource
blobs and checked against PEFT's definitions in numpy, and compiled.

- true (PEFT's default): A ~ U(-1/sqrt(in), 1/sqrt(in)) (Kaiming-uniform,
  a = sqrt(5)), B = 0; gaussian: A ~ N(0, 1/r), B = 0 -- the compiled model
  gives the base model's outputs;
- false: B ~ U(-1/sqrt(r), 1/sqrt(r)) too -- the compiled output is
  x W^T + b + scale (x A^T) B^T with the blobs' A and B (numpy, float64);
- lora-xs: frozen B = U_r S_r and A = V_r^T (numpy's SVD), a trainable
  zero r x r middle, the output unchanged; use-sora: a trainable gate of
  ones on the branch;
- use-dora: the magnitude is ||W + scale B A|| per output row (PEFT's
  weight norm), for a K x N base weight behind raising's transpose and one
  stored in a file; with rsLoRA;
- the same seed gives the same factors, another seed other ones."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
rng = np.random.default_rng(5)
failures = 0
N, K, R, BATCH = 48, 64, 8, 5


def ttype(shape):
    return "tensor<" + "x".join(map(str, shape)) + "xf32>"


def dense(a):
    return f'dense<"0x{np.ascontiguousarray(a, np.float32).tobytes().hex().upper()}"> : {ttype(a.shape)}'


def blob(ir, name, shape):
    m = re.search(re.escape(name) + r': "0x([0-9A-F]+)"', ir)
    if not m:
        return None
    return np.frombuffer(bytes.fromhex(m.group(1))[4:], np.float32).reshape(shape).astype(np.float64)


def module(w, bias, transposed=False, external=None):
    stored = w.T.copy() if transposed else w
    if external:
        stored.astype(np.float32).tofile(external)
        data = (f'#qopt.external<"{os.path.basename(external)}", offset = 0, '
                f'length = {stored.astype(np.float32).nbytes}>')
    else:
        data = dense(stored)
    loads = f"%ws = qopt.load_param @W : {ttype(stored.shape)}"
    if transposed:
        loads += (f"\n  %e = tensor.empty() : {ttype(w.shape)}"
                  f"\n  %w = linalg.transpose ins(%ws : {ttype(stored.shape)}) "
                  f"outs(%e : {ttype(w.shape)}) permutation = [1, 0]")
    else:
        loads = loads.replace("%ws", "%w")
    return f"""qopt.param @W : {ttype(stored.shape)} = {data}
qopt.param @b : {ttype(bias.shape)} = {dense(bias)}
func.func @main(%x: {ttype((BATCH, K))}) -> {ttype((BATCH, N))} {{
  {loads}
  %b = qopt.load_param @b : {ttype(bias.shape)}
  %y = qopt.linear %x, %w, %b module "model.layers.0.mlp.fc" : ({ttype((BATCH, K))}, {ttype(w.shape)}, {ttype(bias.shape)}) -> {ttype((BATCH, N))}
  return %y : {ttype((BATCH, N))}
}}
"""


def compiled(tmp, text, name, x):
    path = os.path.join(tmp, name + ".mlir")
    open(path, "w").write(text)
    lib = os.path.join(tmp, name + ".so")
    c = subprocess.run([os.path.join(BIN, "qoptc"), path, "-o", lib], capture_output=True,
                       text=True, cwd=tmp)
    if c.returncode:
        raise RuntimeError(c.stderr.strip())
    return qopt.load(lib).run(x)[0].astype(np.float64)


def case(name, options, transposed=False, external=False, check=None):
    global failures
    w = rng.standard_normal((N, K)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    x = rng.standard_normal((BATCH, K)).astype(np.float32)
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        text = module(w, bias, transposed, os.path.join(tmp, "w.bin") if external else None)
        r = subprocess.run([os.path.join(BIN, "qopt-opt"), "-",
                            f"--qopt-insert-lora=target-modules=fc r={R} model-dir={tmp} {options}"],
                           input=text, capture_output=True, text=True)
        if r.returncode:
            print(f"{name}: FAIL {r.stderr.strip()}")
            failures += 1
            return None
        ir = r.stdout
        a = blob(ir, "model.layers.0.mlp.fc.lora_A.weight", (R, K))
        b = blob(ir, "model.layers.0.mlp.fc.lora_B.weight", (N, R))
        if a is None or b is None:
            problems.append("no lora_A / lora_B blobs")
        else:
            try:
                base = compiled(tmp, text, "base", x)
                adapted = compiled(tmp, ir, "adapted", x)
                problems += check(ir, w.astype(np.float64), bias, x.astype(np.float64), a, b,
                                  base, adapted)
            except RuntimeError as e:
                problems.append(str(e))
    print(f"{name}: " + ("ok" if not problems else "FAIL " + "; ".join(problems)))
    failures += bool(problems)
    return a


def rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


def uniform_ok(v, bound, what):
    out = []
    if np.max(np.abs(v)) > bound * (1 + 1e-6):
        out.append(f"{what} exceeds its bound {bound:.4g}")
    # Mean 0 and variance bound^2 / 3, to a few standard errors.
    n = v.size
    if abs(v.mean()) > 4 * bound / np.sqrt(3 * n):
        out.append(f"{what} mean {v.mean():.3g} is not 0")
    if abs(v.var() / (bound ** 2 / 3) - 1) > 0.2:
        out.append(f"{what} variance {v.var():.3g} is not {bound ** 2 / 3:.3g}")
    return out


def unchanged(ir, w, bias, x, a, b, base, adapted):
    out = []
    if np.any(b != 0):
        out.append("B is not zero")
    if rel(adapted, base) > 1e-6:
        out.append(f"the output changed by {rel(adapted, base):.3g}")
    return out


def default_init(*args):
    return uniform_ok(args[4], 1 / np.sqrt(K), "A") + unchanged(*args)


def gaussian_init(*args):
    a = args[4]
    out = unchanged(*args)
    if abs(a.mean()) > 4 / R / np.sqrt(a.size) or abs(a.std() * R - 1) > 0.15:
        out.append(f"A mean {a.mean():.3g} std {a.std():.3g}, expected 0 and {1 / R:.3g}")
    return out


def lora_output(scale):
    def check(ir, w, bias, x, a, b, base, adapted):
        out = uniform_ok(a, 1 / np.sqrt(K), "A") + uniform_ok(b, 1 / np.sqrt(R), "B")
        ref = x @ w.T + bias + scale * (x @ a.T) @ b.T
        if rel(adapted, ref) > 1e-5:
            out.append(f"output off by {rel(adapted, ref):.3g}")
        if rel(adapted, base) < 1e-3:
            out.append("init-lora-weights=false left the output unchanged")
        return out
    return check


def dora(scale):
    def check(ir, w, bias, x, a, b, base, adapted):
        out = []
        merged = w + scale * b @ a
        m = blob(ir, "model.layers.0.mlp.fc.lora_magnitude_vector", (N,))
        if m is None:
            return ["no magnitude blob"]
        if rel(m, np.linalg.norm(merged, axis=1)) > 1e-6:
            out.append(f"magnitude off by {rel(m, np.linalg.norm(merged, axis=1)):.3g}")
        # m = ||W'|| per row: DoRA's output is the merged layer's.
        ref = x @ merged.T + bias
        if rel(adapted, ref) > 1e-5:
            out.append(f"output off by {rel(adapted, ref):.3g}")
        return out
    return check


def lora_xs(ir, w, bias, x, a, b, base, adapted):
    """B = U_r S_r, A = V_r^T (frozen), a trainable zero middle."""
    out = []
    u, s, vt = np.linalg.svd(w)
    top = (u[:, :R] * s[:R]) @ vt[:R]
    if rel(b @ a, top) > 1e-5:
        out.append(f"B A is not the top-{R} SVD part of W ({rel(b @ a, top):.3g})")
    if rel(a @ a.T, np.eye(R)) > 1e-5:
        out.append("A's rows are not orthonormal")
    mid = blob(ir, "model.layers.0.mlp.fc.lora_middle", (R, R))
    if mid is None or np.any(mid != 0):
        out.append("no zero middle")
    for name, trainable in (("lora_A.weight", False), ("lora_B.weight", False),
                            ("lora_middle", True)):
        decl = re.search(r"qopt\.param (trainable )?@model\.layers\.0\.mlp\.fc\." +
                         re.escape(name) + " ", ir)
        if not decl or bool(decl.group(1)) != trainable:
            out.append(f"{name} is not {'trainable' if trainable else 'frozen'}")
    if rel(adapted, base) > 1e-6:
        out.append(f"the output changed by {rel(adapted, base):.3g}")
    return out


def sora(ir, w, bias, x, a, b, base, adapted):
    out = unchanged(ir, w, bias, x, a, b, base, adapted)
    g = blob(ir, "model.layers.0.mlp.fc.lora_gate", (R,))
    if g is None or np.any(g != 1) or "qopt.param trainable @model.layers.0.mlp.fc.lora_gate" not in ir:
        out.append("no trainable gate of ones")
    if not re.search(r"qopt\.lora .* gate\(", ir):
        out.append("the gate is not on the lora op")
    return out


a1 = case("true (Kaiming-uniform A, zero B)", "seed=1", check=default_init)
case("lora-xs, transposed base", "init-lora-weights=lora-xs", transposed=True, check=lora_xs)
case("lora-xs + dora", "init-lora-weights=lora-xs use-dora=true", check=lora_xs)
case("sora gate", "use-sora=true", check=sora)
case("gaussian", "init-lora-weights=gaussian", check=gaussian_init)
case("false (B random too)", "init-lora-weights=false lora-alpha=16", check=lora_output(16 / R))
case("dora, transposed base, rslora", "init-lora-weights=false use-dora=true use-rslora=true lora-alpha=4",
     transposed=True, check=dora(4 / np.sqrt(R)))
case("dora, base in a file", "init-lora-weights=false use-dora=true", external=True,
     check=dora(8 / R))
a2 = case("same seed", "seed=1", check=default_init)
a3 = case("other seed", "seed=2", check=default_init)
if a1 is not None and a2 is not None and a3 is not None:
    same, other = np.array_equal(a1, a2), not np.array_equal(a1, a3)
    print(f"seeds: {'ok' if same and other else 'FAIL'} (same seed equal: {same}, other seed differs: {other})")
    failures += not (same and other)
print(f"insert-lora: {failures} failures")
sys.exit(1 if failures else 0)
