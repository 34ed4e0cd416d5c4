"""Table-driven check of every gradient rule against central finite
differences, in float64.

Each case is a function of a few f64 tensors (some marked trainable) whose
result is contracted with fixed random weights into a scalar loss. It goes
through convert-qopt-to-linalg, convert-elementwise-to-linalg and
qopt-append-gradients, is compiled with qoptc and run through the Python
binding; the returned gradients are compared with (f(x+h) - f(x-h)) / 2h for
every element of every trainable argument.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
rng = np.random.default_rng(11)
results = []


def ty(shape, elem="f64"):
    return "tensor<" + "".join(f"{d}x" for d in shape) + elem + ">"


last_weights = None


def weighted_sum(out_name, shape):
    """MLIR that contracts %out with a fixed random tensor into %loss."""
    global last_weights
    w = rng.standard_normal(shape)
    last_weights = w
    n = len(shape)
    dims = ", ".join(f"d{i}" for i in range(n))
    values = np.array2string(w, separator=", ", floatmode="unique", threshold=10**9)
    dense = f"dense<{values.replace(chr(10), '')}>"
    return f"""
  %loss_w = arith.constant {dense} : {ty(shape)}
  %loss_z = arith.constant 0.0 : f64
  %loss_e = tensor.empty() : tensor<f64>
  %loss_f = linalg.fill ins(%loss_z : f64) outs(%loss_e : tensor<f64>) -> tensor<f64>
  %loss = linalg.generic {{indexing_maps = [affine_map<({dims}) -> ({dims})>, affine_map<({dims}) -> ({dims})>, affine_map<({dims}) -> ()>],
      iterator_types = [{", ".join(['"reduction"'] * n)}]}}
      ins({out_name}, %loss_w : {ty(shape)}, {ty(shape)}) outs(%loss_f : tensor<f64>) {{
  ^bb0(%loss_p: f64, %loss_q: f64, %loss_acc: f64):
    %loss_m = arith.mulf %loss_p, %loss_q : f64
    %loss_s = arith.addf %loss_acc, %loss_m : f64
    linalg.yield %loss_s : f64
  }} -> tensor<f64>
"""


def check(name, body, inputs, trainable, out_shape, rtol=1e-6, atol=1e-8, step=1e-6,
          expected=None):
    """`body` computes %out from %a0, %a1 … (f64 tensors `inputs`);
    arguments whose index is in `trainable` are differentiated. Bodies that
    compute in f32 (the QOpt lowerings do) get a larger step and
    tolerances at f32's resolution. With `expected(w, inputs)` (w: the
    loss's weights, dL/d%out) the gradients are compared with the arrays it
    returns instead of finite differences (straight-through estimators are
    not derivatives)."""
    args = ", ".join(
        f"%a{i}: {ty(a.shape)}" + (" {qopt.trainable}" if i in trainable else "")
        for i, a in enumerate(inputs))
    text = (f"func.func @main({args}) -> tensor<f64> {{\n{body}\n"
            f"{weighted_sum('%out', out_shape)}\n  return %loss : tensor<f64>\n}}\n")
    weights = last_weights
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "case.mlir")
        with open(src, "w") as f:
            f.write(text)
        lowered = os.path.join(tmp, "grad.mlir")
        r = subprocess.run(
            [os.path.join(BIN, "qopt-opt"), src, "--convert-qopt-to-linalg", "--cse",
             "--canonicalize", "--convert-elementwise-to-linalg",
             "--qopt-append-gradients", "-o", lowered], capture_output=True, text=True)
        if r.returncode:
            print(f"{name}: FAILED to differentiate\n{r.stderr}")
            results.append(False)
            return
        lib = os.path.join(tmp, "case.so")
        r = subprocess.run([os.path.join(BIN, "qoptc"), lowered, "-o", lib],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"{name}: FAILED to compile\n{r.stderr}")
            results.append(False)
            return
        model = qopt.load(lib)
        outputs = model.run(*inputs)
        grads = outputs[1:]
        worst = 0.0
        ok = len(grads) == len(trainable)
        if expected is not None:
            for g, want in zip(grads, expected(weights, inputs)):
                err = np.abs(g - want).max()
                worst = max(worst, err / (atol + rtol * np.abs(want).max()))
                ok &= g.shape == want.shape and err <= atol + rtol * np.abs(want).max()
            print(f"{name}: {'ok' if ok else 'MISMATCH'} (worst error / tolerance {worst:.2g})")
            results.append(bool(ok))
            return
        for g, i in zip(grads, sorted(trainable)):
            x = inputs[i]
            ok &= g.shape == x.shape
            for idx in np.ndindex(x.shape):
                h = step * max(1.0, abs(x[idx]))
                plus = [a.copy() for a in inputs]
                minus = [a.copy() for a in inputs]
                plus[i][idx] += h
                minus[i][idx] -= h
                fd = (float(model.run(*plus)[0]) - float(model.run(*minus)[0])) / (2 * h)
                err = abs(fd - g[idx])
                worst = max(worst, err / (atol + rtol * abs(fd)))
                ok &= err <= atol + rtol * abs(fd)
    print(f"{name}: {'ok' if ok else 'MISMATCH'} (worst error / tolerance {worst:.2g})")
    results.append(bool(ok))


def f64(*shape, lo=None):
    a = rng.standard_normal(shape)
    if lo is not None:
        a = np.abs(a) + lo
    return a


def elementwise(name, expr_ops, n_inputs=1, positive=False, shape=(3, 4), **tol):
    """One elementwise generic; `expr_ops` is its scalar body over %x0 … and
    ends with %r."""
    ins = [f64(*shape, lo=0.5 if positive else None) for _ in range(n_inputs)]
    ident = "affine_map<(d0, d1) -> (d0, d1)>"
    body = f"""
  %e = tensor.empty() : {ty(shape)}
  %out = linalg.generic {{indexing_maps = [{", ".join([ident] * (n_inputs + 1))}],
      iterator_types = ["parallel", "parallel"]}}
      ins({", ".join(f"%a{i}" for i in range(n_inputs))} : {", ".join([ty(shape)] * n_inputs)})
      outs(%e : {ty(shape)}) {{
  ^bb0({", ".join(f"%x{i}: f64" for i in range(n_inputs))}, %o: f64):
{expr_ops}
    linalg.yield %r : f64
  }} -> {ty(shape)}"""
    check(name, body, ins, set(range(n_inputs)), shape, **tol)


# Step and tolerances for bodies that compute in f32.
F32 = dict(step=1e-3, rtol=2e-3, atol=1e-4)

# --- scalar rules inside one elementwise body ---------------------------------
elementwise("addf", "    %r = arith.addf %x0, %x1 : f64", 2)
elementwise("subf", "    %r = arith.subf %x0, %x1 : f64", 2)
elementwise("mulf", "    %r = arith.mulf %x0, %x1 : f64", 2)
elementwise("divf", "    %r = arith.divf %x0, %x1 : f64", 2, positive=True)
elementwise("negf", "    %r = arith.negf %x0 : f64")
elementwise("maximumf", "    %r = arith.maximumf %x0, %x1 : f64", 2)
elementwise("minnumf", "    %r = arith.minnumf %x0, %x1 : f64", 2)
elementwise("select(cmpf)", """    %c = arith.cmpf ogt, %x0, %x1 : f64
    %m = arith.mulf %x0, %x1 : f64
    %r = arith.select %c, %m, %x1 : f64""", 2)
elementwise("exp", "    %r = math.exp %x0 : f64")
elementwise("exp2", "    %r = math.exp2 %x0 : f64")
elementwise("expm1", "    %r = math.expm1 %x0 : f64")
elementwise("log", "    %r = math.log %x0 : f64", positive=True)
elementwise("log1p", "    %r = math.log1p %x0 : f64", positive=True)
elementwise("log2", "    %r = math.log2 %x0 : f64", positive=True)
elementwise("sqrt", "    %r = math.sqrt %x0 : f64", positive=True)
elementwise("rsqrt", "    %r = math.rsqrt %x0 : f64", positive=True)
elementwise("tanh", "    %r = math.tanh %x0 : f64")
elementwise("erf", "    %r = math.erf %x0 : f64")
elementwise("sin", "    %r = math.sin %x0 : f64")
elementwise("cos", "    %r = math.cos %x0 : f64")
elementwise("powf (both active)", "    %r = math.powf %x0, %x1 : f64", 2, positive=True)
elementwise("powf (constant exponent)", """    %c = arith.constant 3.0 : f64
    %r = math.powf %x0, %c : f64""", positive=True)
elementwise("fpowi", """    %n = arith.constant 3 : i32
    %r = math.fpowi %x0, %n : f64, i32""")
elementwise("absf", "    %r = math.absf %x0 : f64")
elementwise("fma", "    %r = math.fma %x0, %x1, %x2 : f64", 3)
elementwise("extf/truncf round trip", """    %t = arith.truncf %x0 : f64 to f32
    %s = arith.mulf %t, %t : f32
    %r = arith.extf %s : f32 to f64""", **F32)
elementwise("roundeven (zero derivative) + x", """    %q = math.roundeven %x0 : f64
    %r = arith.addf %q, %x1 : f64""", 2)
elementwise("one value used twice", """    %s = arith.mulf %x0, %x0 : f64
    %t = math.sin %x0 : f64
    %r = arith.divf %s, %t : f64""", positive=True)

# --- indexing maps: broadcasts, transposes, reductions ----------------------
a, b, c = f64(4, 3), f64(3), f64(4, 1)
check("broadcast input (dropped loop) and size-1 dim read at 0", """
  %e = tensor.empty() : tensor<4x3xf64>
  %out = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (j)>,
      affine_map<(i, j) -> (i, 0)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]}
      ins(%a0, %a1, %a2 : tensor<4x3xf64>, tensor<3xf64>, tensor<4x1xf64>) outs(%e : tensor<4x3xf64>) {
  ^bb0(%x: f64, %y: f64, %z: f64, %o: f64):
    %m = arith.mulf %x, %y : f64
    %r = arith.mulf %m, %z : f64
    linalg.yield %r : f64
  } -> tensor<4x3xf64>""", [a, b, c], {0, 1, 2}, (4, 3))
check("transposed read (linalg.transpose)", """
  %e = tensor.empty() : tensor<3x4xf64>
  %out = linalg.transpose ins(%a0 : tensor<4x3xf64>) outs(%e : tensor<3x4xf64>) permutation = [1, 0]
""", [a], {0}, (3, 4))
check("linalg.broadcast", """
  %e = tensor.empty() : tensor<4x3xf64>
  %out = linalg.broadcast ins(%a0 : tensor<3xf64>) outs(%e : tensor<4x3xf64>) dimensions = [0]
""", [b], {0}, (4, 3))
check("sum reduction with an active initial value", """
  %out = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
      iterator_types = ["parallel", "reduction"]}
      ins(%a0 : tensor<4x3xf64>) outs(%a1 : tensor<4xf64>) {
  ^bb0(%x: f64, %o: f64):
    %s = math.sin %x : f64
    %r = arith.addf %s, %o : f64
    linalg.yield %r : f64
  } -> tensor<4xf64>""", [a, f64(4)], {0, 1}, (4,))
check("max reduction", """
  %ninf = arith.constant 0xFFF0000000000000 : f64
  %e = tensor.empty() : tensor<4xf64>
  %f = linalg.fill ins(%ninf : f64) outs(%e : tensor<4xf64>) -> tensor<4xf64>
  %out = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
      iterator_types = ["parallel", "reduction"]}
      ins(%a0 : tensor<4x3xf64>) outs(%f : tensor<4xf64>) {
  ^bb0(%x: f64, %o: f64):
    %r = arith.maximumf %o, %x : f64
    linalg.yield %r : f64
  } -> tensor<4xf64>""", [a], {0}, (4,))
check("min reduction over the outer loop", """
  %inf = arith.constant 0x7FF0000000000000 : f64
  %e = tensor.empty() : tensor<3xf64>
  %f = linalg.fill ins(%inf : f64) outs(%e : tensor<3xf64>) -> tensor<3xf64>
  %out = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (j)>],
      iterator_types = ["reduction", "parallel"]}
      ins(%a0 : tensor<4x3xf64>) outs(%f : tensor<3xf64>) {
  ^bb0(%x: f64, %o: f64):
    %r = arith.minnumf %x, %o : f64
    linalg.yield %r : f64
  } -> tensor<3xf64>""", [a], {0}, (3,))
check("parallel op reading its output operand", """
  %out = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
      iterator_types = ["parallel", "parallel"]}
      ins(%a0 : tensor<4x3xf64>) outs(%a1 : tensor<4x3xf64>) {
  ^bb0(%x: f64, %o: f64):
    %r = arith.mulf %x, %o : f64
    linalg.yield %r : f64
  } -> tensor<4x3xf64>""", [a, f64(4, 3)], {0, 1}, (4, 3))
check("softmax (max, exp, sum, divide)", """
  %ninf = arith.constant 0xFFF0000000000000 : f64
  %z = arith.constant 0.0 : f64
  %e1 = tensor.empty() : tensor<4xf64>
  %f1 = linalg.fill ins(%ninf : f64) outs(%e1 : tensor<4xf64>) -> tensor<4xf64>
  %mx = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
      iterator_types = ["parallel", "reduction"]} ins(%a0 : tensor<4x3xf64>) outs(%f1 : tensor<4xf64>) {
  ^bb0(%x: f64, %o: f64):
    %r = arith.maximumf %x, %o : f64
    linalg.yield %r : f64
  } -> tensor<4xf64>
  %e2 = tensor.empty() : tensor<4x3xf64>
  %ex = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>, affine_map<(i, j) -> (i, j)>],
      iterator_types = ["parallel", "parallel"]} ins(%a0, %mx : tensor<4x3xf64>, tensor<4xf64>) outs(%e2 : tensor<4x3xf64>) {
  ^bb0(%x: f64, %m: f64, %o: f64):
    %d = arith.subf %x, %m : f64
    %r = math.exp %d : f64
    linalg.yield %r : f64
  } -> tensor<4x3xf64>
  %f2 = linalg.fill ins(%z : f64) outs(%e1 : tensor<4xf64>) -> tensor<4xf64>
  %sm = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
      iterator_types = ["parallel", "reduction"]} ins(%ex : tensor<4x3xf64>) outs(%f2 : tensor<4xf64>) {
  ^bb0(%x: f64, %o: f64):
    %r = arith.addf %x, %o : f64
    linalg.yield %r : f64
  } -> tensor<4xf64>
  %out = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>, affine_map<(i, j) -> (i, j)>],
      iterator_types = ["parallel", "parallel"]} ins(%ex, %sm : tensor<4x3xf64>, tensor<4xf64>) outs(%e2 : tensor<4x3xf64>) {
  ^bb0(%x: f64, %s: f64, %o: f64):
    %r = arith.divf %x, %s : f64
    linalg.yield %r : f64
  } -> tensor<4x3xf64>""", [a], {0}, (4, 3))

# --- contractions -------------------------------------------------------------
x, w = f64(2, 5, 4), f64(4, 3)
check("batched activation x 2-D weight (multiply-add generic)", """
  %z = arith.constant 0.0 : f64
  %e = tensor.empty() : tensor<2x5x3xf64>
  %f = linalg.fill ins(%z : f64) outs(%e : tensor<2x5x3xf64>) -> tensor<2x5x3xf64>
  %out = linalg.generic {indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (k, n)>,
      affine_map<(b, m, n, k) -> (b, m, n)>], iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
      ins(%a0, %a1 : tensor<2x5x4xf64>, tensor<4x3xf64>) outs(%f : tensor<2x5x3xf64>) {
  ^bb0(%p: f64, %q: f64, %acc: f64):
    %m = arith.mulf %p, %q : f64
    %s = arith.addf %acc, %m : f64
    linalg.yield %s : f64
  } -> tensor<2x5x3xf64>""", [x, w], {0, 1}, (2, 5, 3))
check("linalg.matmul", """
  %z = arith.constant 0.0 : f64
  %e = tensor.empty() : tensor<5x3xf64>
  %f = linalg.fill ins(%z : f64) outs(%e : tensor<5x3xf64>) -> tensor<5x3xf64>
  %out = linalg.matmul ins(%a0, %a1 : tensor<5x4xf64>, tensor<4x3xf64>) outs(%f : tensor<5x3xf64>) -> tensor<5x3xf64>
""", [f64(5, 4), w], {0, 1}, (5, 3))
check("linalg.contract (B transposed, batch)", """
  %z = arith.constant 0.0 : f64
  %e = tensor.empty() : tensor<2x5x3xf64>
  %f = linalg.fill ins(%z : f64) outs(%e : tensor<2x5x3xf64>) -> tensor<2x5x3xf64>
  %out = linalg.contract indexing_maps = [affine_map<(b, m, n, k) -> (b, m, k)>, affine_map<(b, m, n, k) -> (b, n, k)>,
      affine_map<(b, m, n, k) -> (b, m, n)>]
      ins(%a0, %a1 : tensor<2x5x4xf64>, tensor<2x3x4xf64>) outs(%f : tensor<2x5x3xf64>) -> tensor<2x5x3xf64>
""", [x, f64(2, 3, 4)], {0, 1}, (2, 5, 3))

# --- data movement ------------------------------------------------------------
t = f64(2, 3, 4)
check("tensor.reshape", """
  %s = arith.constant dense<[6, 4]> : tensor<2xindex>
  %out = tensor.reshape %a0(%s) : (tensor<2x3x4xf64>, tensor<2xindex>) -> tensor<6x4xf64>
""", [t], {0}, (6, 4))
check("tensor.collapse_shape", """
  %out = tensor.collapse_shape %a0 [[0, 1], [2]] : tensor<2x3x4xf64> into tensor<6x4xf64>
""", [t], {0}, (6, 4))
check("tensor.expand_shape", """
  %out = tensor.expand_shape %a0 [[0, 1], [2]] output_shape [2, 2, 3] : tensor<4x3xf64> into tensor<2x2x3xf64>
""", [a], {0}, (2, 2, 3))
check("tensor.cast (to dynamic and back)", """
  %d = tensor.cast %a0 : tensor<4x3xf64> to tensor<?x3xf64>
  %out = tensor.cast %d : tensor<?x3xf64> to tensor<4x3xf64>
""", [a], {0}, (4, 3))
check("tensor.extract_slice (strided, rank-reducing)", """
  %out = tensor.extract_slice %a0[1, 0, 1] [1, 3, 2] [1, 1, 2] : tensor<2x3x4xf64> to tensor<3x2xf64>
""", [t], {0}, (3, 2))
check("tensor.insert_slice (source and destination)", """
  %out = tensor.insert_slice %a1 into %a0[0, 1] [2, 2] [1, 1] : tensor<2x2xf64> into tensor<4x3xf64>
""", [a, f64(2, 2)], {0, 1}, (4, 3))
check("tensor.concat", """
  %out = tensor.concat dim(1) %a0, %a1 : (tensor<4x3xf64>, tensor<4x2xf64>) -> tensor<4x5xf64>
""", [a, f64(4, 2)], {0, 1}, (4, 5))
check("tensor.pad", """
  %z = arith.constant 0.5 : f64
  %out = tensor.pad %a0 low[1, 0] high[0, 2] {
  ^bb0(%i: index, %j: index):
    tensor.yield %z : f64
  } : tensor<4x3xf64> to tensor<5x5xf64>
""", [a], {0}, (5, 5))

# --- control flow: both branches of a run-time choice -------------------------
for flag, taken in ((1.0, "then"), (-1.0, "else")):
    check(f"scf.if ({taken} branch taken)", """
  %z = arith.constant 0.0 : f64
  %f = tensor.extract %a2[] : tensor<f64>
  %c = arith.cmpf ogt, %f, %z : f64
  %e = tensor.empty() : tensor<4x3xf64>
  %out = scf.if %c -> tensor<4x3xf64> {
    %p = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (j)>, affine_map<(i, j) -> (i, j)>],
        iterator_types = ["parallel", "parallel"]} ins(%a0, %a1 : tensor<4x3xf64>, tensor<3xf64>) outs(%e : tensor<4x3xf64>) {
    ^bb0(%x: f64, %y: f64, %o: f64):
      %m = arith.mulf %x, %y : f64
      %q = arith.mulf %m, %x : f64
      linalg.yield %q : f64
    } -> tensor<4x3xf64>
    scf.yield %p : tensor<4x3xf64>
  } else {
    %p = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
        iterator_types = ["parallel", "parallel"]} ins(%a0 : tensor<4x3xf64>) outs(%e : tensor<4x3xf64>) {
    ^bb0(%x: f64, %o: f64):
      %q = math.sin %x : f64
      linalg.yield %q : f64
    } -> tensor<4x3xf64>
    scf.yield %p : tensor<4x3xf64>
  }""", [a, b, np.array(flag)], {0, 1}, (4, 3))

check("nested scf.if", """
  %z = arith.constant 0.0 : f64
  %f = tensor.extract %a1[] : tensor<f64>
  %c = arith.cmpf ogt, %f, %z : f64
  %e = tensor.empty() : tensor<4x3xf64>
  %out = scf.if %c -> tensor<4x3xf64> {
    %inner = scf.if %c -> tensor<4x3xf64> {
      %p = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>],
          iterator_types = ["parallel", "parallel"]} ins(%a0 : tensor<4x3xf64>) outs(%e : tensor<4x3xf64>) {
      ^bb0(%x: f64, %o: f64):
        %q = arith.mulf %x, %x : f64
        linalg.yield %q : f64
      } -> tensor<4x3xf64>
      scf.yield %p : tensor<4x3xf64>
    } else {
      scf.yield %a0 : tensor<4x3xf64>
    }
    scf.yield %inner : tensor<4x3xf64>
  } else {
    scf.yield %a0 : tensor<4x3xf64>
  }""", [a, np.array(1.0)], {0}, (4, 3))

# --- QOpt ops through their lowering -----------------------------------------
xs, wt, bias = f64(2, 3, 4), f64(5, 4), f64(5)
check("qopt.linear (weight, bias, input)", """
  %out = qopt.linear %a0, %a1, %a2 : (tensor<2x3x4xf64>, tensor<5x4xf64>, tensor<5xf64>) -> tensor<2x3x5xf64>
""", [xs, wt, bias], {0, 1, 2}, (2, 3, 5), **F32)
la, lb = f64(2, 4), f64(5, 2)
check("qopt.lora (A, B; frozen W)", """
  %out = qopt.lora %a0, %a1, %a2, %a3 alpha = 4.0 : (tensor<2x3x4xf64>, tensor<5x4xf64>, tensor<2x4xf64>, tensor<5x2xf64>) -> tensor<2x3x5xf64>
""", [xs, wt, la, lb], {2, 3}, (2, 3, 5), **F32)
# DoRA's weight norm is detached (PEFT, the DoRA paper): A's and B's
# gradients are not the derivative of the output (test/e2e/train.test
# checks them against PEFT); the magnitude's is.
check("qopt.lora DoRA (magnitude)", """
  %out = qopt.lora %a0, %a1, %a2, %a3 magnitude(%a4) alpha = 4.0 : (tensor<2x3x4xf64>, tensor<5x4xf64>, tensor<2x4xf64>, tensor<5x2xf64>, tensor<5xf64>) -> tensor<2x3x5xf64>
""", [xs, wt, la, lb, f64(5, lo=0.5)], {4}, (2, 3, 5), **F32)
xr, cr, sr = f64(2, 2, 3, 8), f64(1, 1, 3, 8), f64(1, 1, 3, 8)
check("qopt.rotary halves (input; cos, sin broadcast over heads)", """
  %out = qopt.rotary %a0, %a1, %a2 : tensor<2x2x3x8xf64>, tensor<1x1x3x8xf64>, tensor<1x1x3x8xf64>
""", [xr, cr, sr], {0, 1, 2}, (2, 2, 3, 8), **F32)
check("qopt.rotary interleaved", """
  %out = qopt.rotary %a0, %a1, %a2 interleaved : tensor<2x2x3x8xf64>, tensor<1x1x3x8xf64>, tensor<1x1x3x8xf64>
""", [xr, cr, sr], {0}, (2, 2, 3, 8), **F32)
check("qopt.rotary partial (4 of 8 features)", """
  %out = qopt.rotary %a0, %a1, %a2 : tensor<2x2x3x8xf64>, tensor<1x1x3x4xf64>, tensor<1x1x3x4xf64>
""", [xr, f64(1, 1, 3, 4), f64(1, 1, 3, 4)], {0}, (2, 2, 3, 8), **F32)
check("qopt.rms_norm (input, scale)", """
  %out = qopt.rms_norm %a0, %a1 epsilon = 1.0e-5 : (tensor<2x3x4xf64>, tensor<4xf64>) -> tensor<2x3x4xf64>
""", [xs, f64(4)], {0, 1}, (2, 3, 4), **F32)
check("qopt.layer_norm (input, scale, bias)", """
  %out = qopt.layer_norm %a0, %a1, %a2 epsilon = 1.0e-5 : (tensor<2x3x4xf64>, tensor<4xf64>, tensor<4xf64>) -> tensor<2x3x4xf64>
""", [xs, f64(4), f64(4)], {0, 1, 2}, (2, 3, 4), **F32)
check("qopt.silu", """
  %out = qopt.silu %a0 : tensor<2x3x4xf64>
""", [xs], {0}, (2, 3, 4), **F32)
check("qopt.gelu (erf)", """
  %out = qopt.gelu %a0 : tensor<2x3x4xf64>
""", [xs], {0}, (2, 3, 4), **F32)

# --- quantizers: straight-through estimators and LSQ, against the gradients
# qopt.lsq's description states (v = x / s, g the gradient scale):
#   dy/dx = 1 inside qmin <= round(v) + zp <= qmax, else 0
#   dy/ds = g (round(v) - v) inside, g (qmin - zp) below, g (qmax - zp) above
#   dy/dzp = 0 inside, -g s outside (y = (clamp(round(v) + zp) - zp) s)
def lsq_expected(qmin, qmax, groups_of, g=None, zp_index=None, grads_of=(0, 1)):
    def fn(w, inputs):
        x, s = inputs[0], inputs[1]
        se = groups_of(s)
        zp = groups_of(inputs[zp_index]) if zp_index is not None else 0.0
        v = (x.astype(np.float32) / se.astype(np.float32)).astype(np.float64)
        r = np.round(v) + zp
        below, above = r < qmin, r > qmax
        inside = ~below & ~above
        gs = 1.0 if g is None else g
        out = {0: w * inside,
               1: w * gs * np.where(inside, np.round(v) - v, np.where(below, qmin - zp, qmax - zp)),
               zp_index: w * gs * np.where(inside, 0.0, -se)}
        res = []
        for i in grads_of:
            full = out[i]
            res.append(full if i == 0 else ungroup(full, inputs[i].shape))
        return res
    return fn


def ungroup(full, shape):
    """Sums a per-element array over the elements sharing one scale."""
    rows, cols = full.shape
    if shape == ():
        return np.array(full.sum())
    if len(shape) == 1:
        return full.sum(axis=1)
    return full.reshape(rows, shape[1], cols // shape[1]).sum(axis=2)

# torch's guarded softmax (Where(IsNaN(P), 0, P) after it, imported as a
# linalg.softmax marked qopt.safe_softmax): a fully masked row (-inf
# everywhere, row 1) gives 0 and a zero gradient, not NaN; partly masked
# rows as usual.
NINF = "0xFFF0000000000000"
check("safe softmax (a fully masked row, a partly masked one)", f"""
  %mask = arith.constant dense<[[0.0, 0.0, 0.0, 0.0], [{NINF}, {NINF}, {NINF}, {NINF}], [0.0, {NINF}, 0.0, {NINF}]]> : tensor<3x4xf64>
  %e0 = tensor.empty() : tensor<3x4xf64>
  %s = linalg.add ins(%a0, %mask : tensor<3x4xf64>, tensor<3x4xf64>) outs(%e0 : tensor<3x4xf64>) -> tensor<3x4xf64>
  %e1 = tensor.empty() : tensor<3x4xf64>
  %out = "linalg.softmax"(%s, %e1) <{{dimension = 1 : i64}}> {{qopt.safe_softmax}} : (tensor<3x4xf64>, tensor<3x4xf64>) -> tensor<3x4xf64>
""", [f64(3, 4)], {0}, (3, 4), **F32)

# Gathers from a trainable table: the adjoint is a scatter-add (ids
# repeat, so rows receive several contributions; row 4 is never read).
table, ea, eb = f64(6, 4), f64(2, 6), f64(4, 2)
IDS = "%ids = arith.constant dense<[[1, 0, 3], [3, 5, 3]]> : tensor<2x3xi64>"
check("qopt.embedding (table; repeated ids)", f"""
  {IDS}
  %out = qopt.embedding %ids, %a0 : (tensor<2x3xi64>, tensor<6x4xf64>) -> tensor<2x3x4xf64>
""", [table], {0}, (2, 3, 4), **F32)
check("qopt.lora_embedding (A: gathered columns, B; frozen table)", f"""
  {IDS}
  %out = qopt.lora_embedding %ids, %a0, %a1, %a2 alpha = 4.0 : (tensor<2x3xi64>, tensor<6x4xf64>, tensor<2x6xf64>, tensor<4x2xf64>) -> tensor<2x3x4xf64>
""", [table, ea, eb], {1, 2}, (2, 3, 4), **F32)
check("gather inside a reduction (y[i] = sum_j t[ids[i], j] * x[i, j])", """
  %ids = arith.constant dense<[2, 0, 2]> : tensor<3xindex>
  %z = arith.constant 0.0 : f64
  %e = tensor.empty() : tensor<3xf64>
  %f = linalg.fill ins(%z : f64) outs(%e : tensor<3xf64>) -> tensor<3xf64>
  %out = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i)>, affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
      iterator_types = ["parallel", "reduction"]}
      ins(%ids, %a1 : tensor<3xindex>, tensor<3x4xf64>) outs(%f : tensor<3xf64>) {
  ^bb0(%id: index, %x: f64, %acc: f64):
    %j = linalg.index 1 : index
    %t = tensor.extract %a0[%id, %j] : tensor<4x4xf64>
    %p = arith.mulf %t, %x : f64
    %s = arith.addf %acc, %p : f64
    linalg.yield %s : f64
  } -> tensor<3xf64>""", [f64(4, 4), f64(3, 4)], {0, 1}, (3,))

xq = f64(4, 16)
sq = np.abs(xq).max(axis=1) / 7 * 0.8  # some values clip
check("qopt.lsq int4 per channel (x, step; default g = 1/sqrt(n qmax))", """
  %out = qopt.lsq %a0 scale %a1 format(#qopt.int<4>) granularity(#qopt.per_channel<0>) : (tensor<4x16xf64>, tensor<4xf64>) -> tensor<4x16xf64>
""", [xq, sq], {0, 1}, (4, 16), rtol=1e-5, atol=1e-9,
      expected=lsq_expected(-8, 7, lambda s: s[:, None], g=1 / np.sqrt(16 * 7)))
sg = (np.abs(xq).reshape(4, 2, 8).max(axis=2) / 8).astype(np.float64)
zg = np.round(np.abs(f64(4, 2)) * 3) + 4
check("qopt.lsq uint4 zero point per group of 8 (x, step, offset; g given)", """
  %out = qopt.lsq %a0 scale %a1 zero_point %a2 format(#qopt.int<4, unsigned, zero_point>) granularity(#qopt.per_group<axis = 1, size = 8>) grad_scale = 0.25 : (tensor<4x16xf64>, tensor<4x2xf64>, tensor<4x2xf64>) -> tensor<4x16xf64>
""", [xq, sg, zg], {0, 1, 2}, (4, 16), rtol=1e-5, atol=1e-9,
      expected=lsq_expected(0, 15, lambda s: np.repeat(s, 8, axis=1), g=0.25, zp_index=2,
                            grads_of=(0, 1, 2)))
check("qopt.fake_quant int8 per tensor (x: clipping mask)", """
  %out = qopt.fake_quant %a0 scale %a1 format(#qopt.int<8>) granularity(#qopt.per_tensor) : (tensor<4x16xf64>, tensor<f64>) -> tensor<4x16xf64>
""", [xq, np.array(np.abs(xq).max() / 127 * 0.5)], {0}, (4, 16), rtol=1e-5, atol=1e-9,
      expected=lsq_expected(-128, 127, lambda s: s, grads_of=(0,)))
check("qopt.fake_quant NF4 (bitsandbytes; x: straight through)", """
  %out = qopt.fake_quant %a0 scale %a1 format(#qopt.nf4) granularity(#qopt.per_block<64>) : (tensor<4x16xf64>, tensor<1xf64>) -> tensor<4x16xf64>
""", [xq, np.array([np.abs(xq).max()])], {0}, (4, 16), rtol=1e-6, atol=1e-9,
      expected=lambda w, inputs: [w])
x8 = xq * 100
check("qopt.fake_quant FP8 E4M3 per tensor (x: mask |x/s| <= 448)", """
  %out = qopt.fake_quant %a0 scale %a1 format(#qopt.float<f8E4M3FN>) granularity(#qopt.per_tensor) : (tensor<4x16xf64>, tensor<f64>) -> tensor<4x16xf64>
""", [x8, np.array(np.abs(x8).max() / 448 * 0.6)], {0}, (4, 16), rtol=1e-6, atol=1e-9,
      expected=lambda w, inputs: [w * (np.abs(inputs[0] / inputs[1]) <= 448)])

# Ties (rows 0 and 2: two and three elements equal to the maximum): the
# adjoint is split evenly among them, as torch's amax does (finite
# differences are not derivatives at a tie).
tied = np.array([[1.5, 0.2, 1.5, -1.0], [0.3, 0.7, -0.2, 0.1], [2.0, 2.0, 2.0, 1.0]])


def split_ties(w, inputs):
    x = inputs[0]
    chosen = x == x.max(axis=1, keepdims=True)
    return [w[:, None] * chosen / chosen.sum(axis=1, keepdims=True)]


check("max reduction with ties (split evenly, as torch's amax)", """
  %ninf = arith.constant 0xFFF0000000000000 : f64
  %e = tensor.empty() : tensor<3xf64>
  %f = linalg.fill ins(%ninf : f64) outs(%e : tensor<3xf64>) -> tensor<3xf64>
  %out = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i)>],
      iterator_types = ["parallel", "reduction"]}
      ins(%a0 : tensor<3x4xf64>) outs(%f : tensor<3xf64>) {
  ^bb0(%x: f64, %o: f64):
    %r = arith.maximumf %o, %x : f64
    linalg.yield %r : f64
  } -> tensor<3xf64>""", [tied], {0}, (3,), expected=split_ties)
# A gather without loops (a scalar picked from a trainable vector): the
# scatter-add is the one point.
check("gather of one element (an op without loops)", """
  %e = tensor.empty() : tensor<f64>
  %out = linalg.generic {indexing_maps = [affine_map<() -> ()>], iterator_types = []}
      outs(%e : tensor<f64>) {
  ^bb0(%o: f64):
    %c2 = arith.constant 2 : index
    %v = tensor.extract %a0[%c2] : tensor<4xf64>
    %s = arith.mulf %v, %v : f64
    linalg.yield %s : f64
  } -> tensor<f64>""", [f64(4)], {0}, ())

failed = results.count(False)
print(f"gradient rules: {len(results) - failed} passed, {failed} failed")
