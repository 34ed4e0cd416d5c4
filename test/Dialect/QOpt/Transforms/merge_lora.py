"""qopt-merge-lora against PEFT's merge formulas in numpy, and compiled.

For each variant (standard, rsLoRA, DoRA, SoRA gate + LoRA-XS middle, bias,
a K x N base weight behind raising's transpose, a base weight in a file
beside the model, f16 and bf16 layers) this builds a module with one
qopt.lora whose data is inline (or external), runs the pass, reads the new
weight's bytes from the printed resource blob and compares them with
  W' = W + scale · B · M · diag(g) · A,   DoRA: W'' = m / ‖W'‖_row ⊙ W'
computed in float64 (relative error <= 1e-6, or the element type's rounding
for f16 / bf16), then compiles the original and the merged module with
qoptc and compares their outputs on the same input (<= 1e-5)."""
import os
import re
import subprocess
import sys
import tempfile

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
rng = np.random.default_rng(11)
failures = 0

DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}


def ttype(shape, elem="f32"):
    return "tensor<" + "x".join(map(str, shape)) + "x" + elem + ">"


def dense(a, elem="f32"):
    raw = np.ascontiguousarray(a.astype(DTYPES[elem])).tobytes().hex().upper()
    return f'dense<"0x{raw}"> : {ttype(a.shape, elem)}'


def case(name, n=6, k=8, r=4, batch=3, alpha=8.0, rslora=False, dora=False,
         gate=False, middle=False, bias=False, transposed=False, external=False,
         elem="f32"):
    global failures
    dt = DTYPES[elem]
    w = rng.standard_normal((n, k)).astype(dt)
    # qopt.lora computes in one element type: every operand has the base's.
    a = rng.standard_normal((r, k)).astype(dt)
    b = rng.standard_normal((n, r)).astype(dt)
    g = rng.standard_normal(r).astype(dt)
    mid = rng.standard_normal((r, r)).astype(dt)
    mag = (np.abs(rng.standard_normal(n)) + 0.5).astype(dt)
    bvec = rng.standard_normal(n).astype(dt)
    x = rng.standard_normal((batch, k)).astype(dt)

    # Reference: PEFT's merge (lora.Linear.get_delta_weight, DoRA's
    # weight-norm rescaling) in float64.
    scale = alpha / (np.sqrt(r) if rslora else r)
    f64 = lambda v: v.astype(np.float64)  # noqa: E731
    right = f64(a)
    if gate:
        right = f64(g)[:, None] * right
    if middle:
        right = f64(mid) @ right
    merged = f64(w) + scale * (f64(b) @ right)
    if dora:
        merged = (f64(mag)[:, None] / np.linalg.norm(merged, axis=1, keepdims=True)) * merged

    with tempfile.TemporaryDirectory() as tmp:
        params, extra, sig = [], "", ""
        stored = w.T.copy() if transposed else w
        if external:
            stored.astype(dt).tofile(os.path.join(tmp, "base.bin"))
            params.append(f'qopt.param @layers.0.fc.weight : {ttype(stored.shape, elem)} = '
                          f'#qopt.external<"base.bin", offset = 0, length = {stored.astype(dt).nbytes}>')
        else:
            params.append(f"qopt.param @layers.0.fc.weight : {ttype(stored.shape, elem)} = "
                          f"{dense(stored, elem)}")
        params.append(f"qopt.param trainable @lora_A : {ttype(a.shape, elem)} = {dense(a, elem)}")
        params.append(f"qopt.param trainable @lora_B : {ttype(b.shape, elem)} = {dense(b, elem)}")
        types = [ttype(x.shape, elem), ttype(w.shape, elem), ttype(a.shape, elem),
                 ttype(b.shape, elem)]
        loads = [f"%ws = qopt.load_param @layers.0.fc.weight : {ttype(stored.shape, elem)}"]
        if transposed:
            loads += [f"%e = tensor.empty() : {ttype(w.shape, elem)}",
                      f"%w = linalg.transpose ins(%ws : {ttype(stored.shape, elem)}) "
                      f"outs(%e : {ttype(w.shape, elem)}) permutation = [1, 0]"]
        else:
            loads[0] = loads[0].replace("%ws", "%w")
        loads += [f"%a = qopt.load_param @lora_A : {ttype(a.shape, elem)}",
                  f"%b = qopt.load_param @lora_B : {ttype(b.shape, elem)}"]
        for flag, pname, val in [(bias, "bias", bvec), (dora, "magnitude", mag),
                                 (middle, "middle", mid), (gate, "gate", g)]:
            if flag:
                params.append(f"qopt.param @{pname} : {ttype(val.shape, elem)} = "
                              f"{dense(val, elem)}")
                loads.append(f"%{pname} = qopt.load_param @{pname} : {ttype(val.shape, elem)}")
                extra += f" {pname}(%{pname})"
                types.append(ttype(val.shape, elem))
        out = ttype((batch, n), elem)
        body = "\n    ".join(loads)
        lora = (f"%y = qopt.lora %x, %w, %a, %b{extra} alpha = {alpha}"
                f"{' scaling = rslora' if rslora else ''} module \"layers.0.fc\" : "
                f"({', '.join(types)}) -> {out}")
        text = "\n".join(params) + f"""
func.func @main(%x: {ttype(x.shape, elem)}) -> {out} {{
    {body}
    {lora}
    return %y : {out}
}}
"""
        src = os.path.join(tmp, "lora.mlir")
        open(src, "w").write(text)
        r = subprocess.run([os.path.join(BIN, "qopt-opt"), src,
                            f"--qopt-merge-lora=model-dir={tmp}"],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"{name}: FAIL merge: {r.stderr.strip()}")
            failures += 1
            return
        out_ir = r.stdout
        problems = []
        if "qopt.lora" in out_ir or 'module "layers.0.fc"' not in out_ir:
            problems.append("the lora op is not replaced by a linear with its module")
        if "@lora_A" in out_ir or "@layers.0.fc.weight_" in out_ir:
            problems.append("stale parameters or a suffixed name left")
        blob = re.search(r'layers\.0\.fc\.weight: "0x([0-9A-F]+)"', out_ir)
        if not blob:
            problems.append("no resource blob for @layers.0.fc.weight")
        else:
            raw = bytes.fromhex(blob.group(1))[4:]  # 4 bytes of alignment
            got = np.frombuffer(raw, dtype=dt).astype(np.float64).reshape(n, k)
            tol = {"f32": 1e-6, "f16": 2 ** -10, "bf16": 2 ** -7}[elem]
            err = np.max(np.abs(got - merged)) / np.max(np.abs(merged))
            if err > tol:
                problems.append(f"merged weight off by {err:.3g} (relative)")
        # Compiled: original and merged give the same output (f32 only:
        # qopt.lora's lowering computes in the input's type).
        if elem == "f32" and not problems:
            merged_path = os.path.join(tmp, "merged.mlir")
            open(merged_path, "w").write(out_ir)
            outs = []
            for path in (src, merged_path):
                lib = path[:-5] + ".so"
                c = subprocess.run([os.path.join(BIN, "qoptc"), path, "-o", lib],
                                   capture_output=True, text=True, cwd=tmp)
                if c.returncode:
                    problems.append(f"qoptc {os.path.basename(path)}: {c.stderr.strip()}")
                    break
                outs.append(qopt.load(lib).run(x)[0])
            if len(outs) == 2:
                ref = f64(x) @ merged.T + (f64(bvec) if bias else 0)
                e1 = np.max(np.abs(outs[1] - outs[0])) / np.max(np.abs(outs[0]))
                e2 = np.max(np.abs(outs[1] - ref)) / np.max(np.abs(ref))
                if e1 > 1e-5 or e2 > 1e-5:
                    problems.append(f"outputs differ: merged vs lora {e1:.3g}, vs numpy {e2:.3g}")
        if not dora and not problems:
            problems += keep_and_unmerge(tmp, src, w, merged, x, bias and bvec, elem)
        print(f"{name}: " + ("ok" if not problems else "FAIL " + "; ".join(problems)))
        failures += bool(problems)


def weight_blob(ir, shape, dt):
    key = re.search(r"qopt\.param @layers\.0\.fc\.weight : \S+ = dense_resource<([^>]+)>", ir)
    blob = key and re.search(re.escape(key.group(1)) + r': "0x([0-9A-F]+)"', ir)
    if not blob:
        return None
    raw = bytes.fromhex(blob.group(1))[4:]  # 4 bytes of alignment
    return np.frombuffer(raw, dtype=dt).astype(np.float64).reshape(shape)


def keep_and_unmerge(tmp, src, w, merged, x, bias, elem):
    """merge-lora keep-adapter=true keeps the branch marked merged over W';
    unmerge-lora restores W (to the rounding of W') and the active branch."""
    problems = []
    dt = DTYPES[elem]
    tol = {"f32": 1e-6, "f16": 2 ** -10, "bf16": 2 ** -7}[elem]
    opt = os.path.join(BIN, "qopt-opt")
    kept = subprocess.run([opt, src, f"--qopt-merge-lora=model-dir={tmp} keep-adapter=true"],
                          capture_output=True, text=True)
    if kept.returncode:
        return [f"keep-adapter: {kept.stderr.strip()}"]
    if not re.search(r'qopt\.lora .* module "layers\.0\.fc" merged', kept.stdout):
        problems.append("keep-adapter: no lora op marked merged")
    got = weight_blob(kept.stdout, w.shape, dt)
    if got is None or np.max(np.abs(got - merged)) / np.max(np.abs(merged)) > tol:
        problems.append("keep-adapter: the weight is not W + scale·B·A")
    kept_path = os.path.join(tmp, "kept.mlir")
    open(kept_path, "w").write(kept.stdout)
    back = subprocess.run([opt, kept_path, "--qopt-unmerge-lora"], capture_output=True,
                          text=True)
    if back.returncode:
        return problems + [f"unmerge: {back.stderr.strip()}"]
    if " merged" in back.stdout or "qopt.lora" not in back.stdout:
        problems.append("unmerge: the branch is not active again")
    got = weight_blob(back.stdout, w.shape, dt)
    err = (np.inf if got is None else
           np.max(np.abs(got - w.astype(np.float64))) / np.max(np.abs(merged)))
    if err > 2 * tol:
        problems.append(f"unmerge: W restored to {err:.3g} (relative)")
    if elem == "f32" and not problems:
        back_path = os.path.join(tmp, "unmerged.mlir")
        open(back_path, "w").write(back.stdout)
        outs = []
        for path in (src, kept_path, back_path):
            lib = path[:-5] + ".so"
            c = subprocess.run([os.path.join(BIN, "qoptc"), path, "-o", lib],
                               capture_output=True, text=True, cwd=tmp)
            if c.returncode:
                return problems + [f"qoptc {os.path.basename(path)}: {c.stderr.strip()}"]
            outs.append(qopt.load(lib).run(x)[0])
        ref = x.astype(np.float64) @ merged.T + (bias if bias is not False else 0)
        e_kept = np.max(np.abs(outs[1] - ref)) / np.max(np.abs(ref))
        e_back = np.max(np.abs(outs[2] - outs[0])) / np.max(np.abs(outs[0]))
        if e_kept > 1e-5 or e_back > 1e-5:
            problems.append(f"outputs: kept-merged vs numpy {e_kept:.3g}, "
                            f"unmerged vs original {e_back:.3g}")
    return problems


case("standard")
case("rslora", rslora=True, alpha=16.0)
case("bias", bias=True)
case("dora", dora=True, bias=True)
case("gate+middle", gate=True, middle=True, alpha=4.0)
case("transposed base (raised MatMul)", transposed=True)
case("external base", external=True)
case("external transposed dora", external=True, transposed=True, dora=True)
case("f16", elem="f16", dora=True)
case("bf16", elem="bf16", rslora=True)
print(f"merge-lora: {failures} failures")
sys.exit(1 if failures else 0)
