#!/usr/bin/env python3
"""The CUDA kernel library's multi-tensor AdamW (lib/Runtime/Kernels/CUDA/AdamW.cu, a train
step's optimizer in one launch per 256 parameters) on a GPU: a test, then a benchmark.

  * test: qopt_cuda_adamw_f32 on tensors of 0 to 100,000 elements and more tensors than
    a launch carries, with and without weight decay and clipping, outputs in place or
    apart: bit for bit against OptimizerBuilder's formula as torch's f32 elementwise
    ops in its order (each rounded on its own, as the kernel's __fmul_rn and the like:
    what the CPU target computes), and against torch.optim.AdamW's update in float64;
  * benchmark: the LoRA adapters of a Llama-2-7B (r = 16 on q, k, v, o, gate, up, down:
    448 tensors, 40 M parameters) against torch.optim.AdamW(fused=True) and
    (foreach=True) steps on the same tensors.

Launched through the driver API with ctypes as bench/gpu/gemm.py does (AdamWParams,
18472 bytes, by value). Written without a GPU at hand: its first run on one is its first
check.
    python3 bench/gpu/adamw.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm import finish, launch_1d, setup, timer  # noqa: E402
from structs import pack  # noqa: E402

THREADS, CHUNK, TENSORS = 256, 4096, 256  # AdamWTile.h's kAdamWThreads, kAdamWChunk, kAdamWTensors


def launches(tensors, scalars, flags, torch):
    """The launches' (blocks, parameter bytes) for `tensors`, each (p, g, m, v, p', m',
    v') of one size, as CUDAHost.cpp's qopt_cuda_adamw plans them, and the device buffer
    of the step's scalars they read (keep it alive while they run). `scalars`: step
    size, sqrt of the second bias correction, decay, clip (AdamWStep, in device
    memory), 1 - beta1, beta2, 1 - beta2, eps."""
    step = torch.tensor(scalars[:4], dtype=torch.float32, device="cuda")
    out = []
    todo = [t for t in tensors if t[0].numel() > 0]
    for start in range(0, len(todo), TENSORS):
        chunk = todo[start:start + TENSORS]
        fields, blocks = [], 0
        for t in chunk:
            fields += [x.data_ptr() for x in t] + [t[0].numel(), blocks]
            blocks += -(-t[0].numel() // CHUNK)
        fields += [0] * (9 * (TENSORS - len(chunk)))
        out.append((blocks, pack("AdamWParams", step.data_ptr(), *scalars[4:], flags,
                                 len(chunk), *fields)))
    return out, step


def main():
    args, torch, drv, stream, gen, results = setup(__doc__, "adamw")
    if drv is None:
        return 1
    failures = 0
    lr, beta1, beta2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.01
    f32 = lambda x: torch.tensor(x, dtype=torch.float32, device="cuda")  # noqa: E731
    for flags in range(4):
        for step in (1, 7):
            sizes = [1, 0, 255, CHUNK, CHUNK + 1, 100000] + \
                ([1 + i % 5 for i in range(TENSORS + 40)] if step == 7 else [])
            bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
            scalars = [float(f32(lr / bc1)), float(f32(math.sqrt(bc2))),
                       float(f32(1 - lr * wd)), 0.37, float(f32(1 - beta1)),
                       float(f32(beta2)), float(f32(1 - beta2)), float(f32(eps))]
            tensors, want, want64, got = [], [], [], []
            for i, n in enumerate(sizes):
                p, g, m = (torch.randn(n, device="cuda", generator=gen) for _ in range(3))
                v = torch.rand(n, device="cuda", generator=gen) * 0.01
                s = [torch.tensor(x, dtype=torch.float32, device="cuda") for x in scalars]
                gc = g * s[3] if flags & 2 else g
                pd = p * s[2] if flags & 1 else p
                mn = m + s[4] * (gc - m)
                vn = v * s[5] + (gc * gc) * s[6]
                pn = pd - s[0] * (mn / (torch.sqrt(vn) / s[1] + s[7]))
                want.append((pn, mn, vn))
                g64 = g.double() * (0.37 if flags & 2 else 1.0)
                m64 = beta1 * m.double() + (1 - beta1) * g64
                v64 = beta2 * v.double() + (1 - beta2) * g64 * g64
                p64 = p.double() * (1 - lr * wd if flags & 1 else 1.0) - \
                    lr / bc1 * m64 / (v64.sqrt() / math.sqrt(bc2) + eps)
                want64.append(p64)
                if i % 2:  # in place
                    outs = (p, m, v)
                else:
                    outs = tuple(torch.full_like(x, float("nan")) for x in (p, m, v))
                tensors.append((p, g, m, v) + outs)
                got.append(outs)
            planned, _step = launches(tensors, scalars, flags, torch)
            for blocks, params in planned:
                launch_1d(drv, "qopt_cuda_adamw_f32", blocks, THREADS, params, stream())
            torch.cuda.synchronize()
            exact = all(torch.equal(a, b) for w, o in zip(want, got) for a, b in zip(w, o))
            err = max(((o[0].double() - w).abs() / (1 + w.abs())).max().item()
                      for o, w in zip(got, want64) if w.numel())
            ok = exact and err <= 1e-6
            failures += not ok
            name = f"flags={flags} step={step} tensors={len(sizes)}"
            results["tests"].append({"case": name, "exact": exact, "error": err, "ok": ok})
            print(f"test {name}: {'ok' if ok else 'MISMATCH'} (bit for bit: {exact}; "
                  f"{err:.1e} from torch's AdamW in float64)")

    # Llama-2-7B's LoRA adapters (r = 16, 32 layers).
    shapes = []
    for _ in range(32):
        for out_f, in_f in ((4096, 4096),) * 4 + ((11008, 4096),) * 2 + ((4096, 11008),):
            shapes += [(16, in_f), (out_f, 16)]
    params = [torch.randn(s, device="cuda") * 0.01 for s in shapes]
    grads = [torch.randn(s, device="cuda") * 0.01 for s in shapes]
    ms = [torch.zeros(s, device="cuda") for s in shapes]
    vs = [torch.zeros(s, device="cuda") for s in shapes]
    scalars = [lr / 0.1, math.sqrt(0.001), 1 - lr * wd, 1.0, 0.1, 0.999, 0.001, eps]
    planned, _step = launches([(p, g, m, v, p, m, v)
                               for p, g, m, v in zip(params, grads, ms, vs)], scalars, 1, torch)
    timed = timer(torch, args.reps)
    ours = timed(lambda: [launch_1d(drv, "qopt_cuda_adamw_f32", b, THREADS, pb, stream())
                          for b, pb in planned])
    peers = {}
    for kind in ("fused", "foreach"):
        ps = [torch.nn.Parameter(p.clone()) for p in params]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        opt = torch.optim.AdamW(ps, lr=lr, weight_decay=wd, **{kind: True})
        peers[kind] = timed(opt.step)
    count = sum(p.numel() for p in params)
    line = {"tensors": len(params), "parameters": count, "launches": len(planned),
            "ms": ours * 1e3, "torch_fused_ms": peers["fused"] * 1e3,
            "torch_foreach_ms": peers["foreach"] * 1e3}
    results["bench"].append(line)
    print(f"bench llama-2-7b LoRA r=16, {len(params)} tensors ({count / 1e6:.1f} M): "
          f"{ours * 1e3:.3f} ms in {len(planned)} launches; torch AdamW fused "
          f"{peers['fused'] * 1e3:.3f} ms (x{peers['fused'] / ours:.2f}), foreach "
          f"{peers['foreach'] * 1e3:.3f} ms (x{peers['foreach'] / ours:.2f})")
    return finish(args, results, failures, "adamw")


if __name__ == "__main__":
    sys.exit(main())
