"""The losses of qopt-build-train-step against numpy: for a one-layer model
(logits = x · W, W trainable), the gradients entry's loss and dL/dW equal
float64 references of

- seq-cls: cross-entropy over [batch, classes], labels -100 left out, mean
  over the counted rows;
- mse: mean((output - targets)^2);
- kl-distill at T = 2: T^2 · KL(softmax(teacher / T) || softmax(output / T))
  over the last dimension, averaged over the positions.

(causal-lm is checked against transformers on whole models, in
test/e2e/train.test.)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
rng = np.random.default_rng(3)
failures = 0


def model(x_shape, k, n, w):
    """func @main(x) -> x · W with W a trainable parameter."""
    rank = len(x_shape)
    dims = ", ".join(f"d{i}" for i in range(rank + 1))
    xd = ", ".join(f"d{i}" for i in range(rank - 1)) + f", d{rank}"
    yd = ", ".join(f"d{i}" for i in range(rank))
    xt = "tensor<" + "x".join(map(str, x_shape)) + "xf32>"
    yt = "tensor<" + "x".join(map(str, x_shape[:-1] + (n,))) + "xf32>"
    values = np.array2string(w, separator=", ", threshold=10**9, floatmode="unique").replace("\n", "")
    iters = ", ".join(['"parallel"'] * rank + ['"reduction"'])
    return f"""
func.func @main(%x: {xt} {{qopt.name = "x"}},
                %w: tensor<{k}x{n}xf32> {{qopt.param = "w", qopt.trainable, qopt.inline = dense<{values}> : tensor<{k}x{n}xf32>}}) -> {yt} {{
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : {yt}
  %f = linalg.fill ins(%z : f32) outs(%e : {yt}) -> {yt}
  %y = linalg.generic {{indexing_maps = [affine_map<({dims}) -> ({xd})>, affine_map<({dims}) -> (d{rank}, d{rank - 1})>,
      affine_map<({dims}) -> ({yd})>], iterator_types = [{iters}]}}
      ins(%x, %w : {xt}, tensor<{k}x{n}xf32>) outs(%f : {yt}) {{
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %m = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %m : f32
    linalg.yield %s : f32
  }} -> {yt}
  return %y : {yt}
}}
"""


def run(name, text, options, inputs, want_loss, want_grad):
    global failures
    with tempfile.TemporaryDirectory() as tmp:
        src, lowered, lib = (os.path.join(tmp, f) for f in ("m.mlir", "g.mlir", "g.so"))
        open(src, "w").write(text)
        subprocess.run([os.path.join(BIN, "qopt-opt"), src,
                        f"--qopt-build-train-step=entry=gradients {options}", "-o", lowered],
                       check=True)
        subprocess.run([os.path.join(BIN, "qoptc"), lowered, "-o", lib], check=True)
        loss, grad = qopt.load(lib).run(**inputs)
    lerr = abs(float(loss) - want_loss) / abs(want_loss)
    gerr = np.abs(grad - want_grad).max() / np.abs(want_grad).max()
    ok = lerr <= 1e-5 and gerr <= 1e-4
    failures += not ok
    print(f"{name}: {'ok' if ok else 'MISMATCH'} (loss {float(loss):.6f} vs {want_loss:.6f}, "
          f"gradient relative error {gerr:.2g})")


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# seq-cls: [4, 6] · [6, 5], one row ignored.
x = rng.standard_normal((4, 6)).astype(np.float32)
w = rng.standard_normal((6, 5)).astype(np.float32)
labels = np.array([1, -100, 4, 0], dtype=np.int64)
s = x.astype(np.float64) @ w
counted = labels != -100
p = softmax(s)
loss = np.mean([np.log(np.exp(s[i]).sum()) - s[i, labels[i]] for i in np.where(counted)[0]])
ds = (p - np.eye(5)[np.where(counted, labels, 0)]) * counted[:, None] / counted.sum()
run("seq-cls", model((4, 6), 6, 5, w), "loss=seq-cls", dict(x=x, labels=labels), loss, x.T @ ds)

# mse: [2, 3, 4] · [4, 5].
x = rng.standard_normal((2, 3, 4)).astype(np.float32)
w = rng.standard_normal((4, 5)).astype(np.float32)
t = rng.standard_normal((2, 3, 5)).astype(np.float32)
s = x.astype(np.float64) @ w
loss = np.mean((s - t) ** 2)
ds = 2 * (s - t) / s.size
run("mse", model((2, 3, 4), 4, 5, w), "loss=mse", dict(x=x, targets=t), loss,
    np.einsum("bsk,bsn->kn", x, ds))

# kl-distill at T = 2.
T = 2.0
teacher = (rng.standard_normal((2, 3, 5)) * 3).astype(np.float32)
pt, ps = softmax(teacher / T), softmax(s / T)
positions = 6
loss = T * T * np.sum(pt * (np.log(pt) - np.log(ps))) / positions
ds = T * (ps - pt) / positions
run("kl-distill (T = 2)", model((2, 3, 4), 4, 5, w), "loss=kl-distill temperature=2.0",
    dict(x=x, teacher_logits=teacher), loss, np.einsum("bsk,bsn->kn", x, ds))
print(f"losses: {failures} failures")
