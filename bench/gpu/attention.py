#!/usr/bin/env python3
"""The CUDA kernel library's fused attention (lib/Runtime/Kernels/CUDA/Attention.cu) on a
GPU: a test, then a benchmark, in one run.

  * test: qopt_cuda_attention_f32 against PyTorch in float64 for qopt.attention's
    definition, and the backward (qopt_cuda_attention_bwd_dq_f32, then _dkv_f32)
    against torch's autograd of that definition: grouped-query heads, float and bool masks that broadcast, causal masking,
    the soft cap, a row with every key masked (zeros), Q / K / V / Y as transposed views
    ([B, S, H, D] storage), several row blocks and key steps, head sizes 8-128;
  * benchmark: Llama-shaped prefill (32 query heads, 8 key/value heads, head size 128,
    causal, 512 and 2048 tokens) against torch's scaled_dot_product_attention in f32
    (the same arithmetic) and in bf16 (flash attention; the issue's peer), in ms:
    the forward, and forward + backward against SDPA + autograd.

The kernel is launched through the driver API with ctypes (cuModuleLoad on the cubin
for this GPU's architecture from build/lib/cuda/library-sm_XX.cubin, carried by
scripts/gpu-artifacts.sh; cuLaunchKernel with AttentionParams by value, as the CUDA
host library does), on torch's stream, with torch's memory. Timings: CUDA events around
20 calls after a warm-up.
Written without a GPU at hand: its first run on one is its first check.
    python3 bench/gpu/attention.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm import finish, launch_1d, setup, timer  # noqa: E402
from structs import pack  # noqa: E402

THREADS, ROWS, BWD_ROWS = 128, 16, 8  # AttentionTile.h's kAttnThreads, kAttnRows, kAttnBwdRows
FLOAT_MASK, BOOL_MASK, CAUSAL, SOFTCAP = 1, 2, 4, 8


def ptr(t):
    return t.data_ptr() if t is not None else 0


def forward_params(q, k, v, mask, y, flags, scale, softcap, rows):
    """AttentionParams' fields (280 bytes) for 4-D tensors (any strides; a mask's size-1
    dimensions broadcast), `rows` query rows per block."""
    b, hq, s, d = q.shape
    strides = []
    for t in (q, k, v):
        strides += list(t.stride())
    strides += [0 if mask is None or mask.shape[i] == 1 else mask.stride(i) for i in range(4)]
    strides += list(y.stride()) if y is not None else [0] * 4
    return (ptr(q), ptr(k), ptr(v), ptr(mask), ptr(y), *strides, b, hq, hq // k.shape[1], s,
            k.shape[2], d, v.shape[3], scale, softcap, flags, (s + rows - 1) // rows)


def launch(drv, q, k, v, mask, y, flags, scale, softcap, stream):
    """The forward: one launch, a block per 16 query rows of each batch and head."""
    b, hq, s = q.shape[:3]
    launch_1d(drv, "qopt_cuda_attention_f32", b * hq * ((s + ROWS - 1) // ROWS), THREADS,
              pack("AttentionParams", *forward_params(q, k, v, mask, y, flags, scale, softcap,
                                                      ROWS)), stream)


def launch_backward(drv, q, k, v, mask, o, do, dq, dk, dv, stats, flags, scale, softcap,
                    stream):
    """The backward: the dQ kernel (a block per 8 query rows; it writes the rows'
    statistics into `stats`, [B, Hq, S, 2] contiguous), then the dK/dV kernel (a block
    per 32 keys of each batch and key/value head). AttentionBwdParams: 504 bytes."""
    b, hq, s = q.shape[:3]
    hkv, keys = k.shape[1], k.shape[2]
    strides = []
    for t in (o, do, dq, dk, dv):
        strides += list(t.stride())
    key_tiles = (keys + 31) // 32
    params = pack("AttentionBwdParams",
                  *forward_params(q, k, v, mask, None, flags, scale, softcap, BWD_ROWS),
                  ptr(o), ptr(do), ptr(dq), ptr(dk), ptr(dv), ptr(stats), *strides, hkv,
                  key_tiles)
    launch_1d(drv, "qopt_cuda_attention_bwd_dq_f32",
              b * hq * ((s + BWD_ROWS - 1) // BWD_ROWS), THREADS, params, stream)
    launch_1d(drv, "qopt_cuda_attention_bwd_dkv_f32", b * hkv * key_tiles, THREADS, params,
              stream)


def reference(torch, q, k, v, mask, flags, scale, softcap):
    """qopt.attention's definition in float64 (a row with every key masked: 0);
    differentiable (q, k, v may require gradients)."""
    group = q.shape[1] // k.shape[1]
    if k.shape[2] == 0:  # no keys: zeros (torch's amax has nothing to reduce)
        zero = torch.zeros(*q.shape[:3], v.shape[3], dtype=q.dtype, device=q.device)
        return zero + 0 * q.sum(), zero
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    s = q @ k.transpose(-1, -2) * scale
    if flags & SOFTCAP:
        s = softcap * torch.tanh(s / softcap)
    if flags & FLOAT_MASK:
        s = s + mask.double()
    if flags & BOOL_MASK:
        s = s.masked_fill(~mask.bool(), -math.inf)
    if flags & CAUSAL:
        i = torch.arange(s.shape[2], device=s.device)[:, None]
        j = torch.arange(s.shape[3], device=s.device)[None, :]
        s = s.masked_fill(j > i, -math.inf)
    top = s.amax(dim=-1, keepdim=True)
    p = torch.exp(s - torch.where(torch.isinf(top), torch.zeros_like(top), top))
    total = p.sum(dim=-1, keepdim=True)
    p = p / torch.where(total == 0, torch.ones_like(total), total)
    return p @ v, p @ v.abs()


def main():
    args, torch, drv, stream, gen, results = setup(__doc__, "attention")
    if drv is None:
        return 1
    failures = 0

    def tensor(b, h, s, d, transposed):
        if transposed:  # [B, S, H, D] storage
            return torch.randn(b, s, h, d, device="cuda", generator=gen).transpose(1, 2)
        return torch.randn(b, h, s, d, device="cuda", generator=gen)

    # (B, Hq, Hkv, S, L, D, Dv, mask: 0 none / 1 float [B,1,S,L] / 2 bool [1,1,S,L],
    #  causal, soft cap, transposed)
    cases = [(2, 4, 2, 37, 70, 24, 40, 1, False, 0.0, True),
             (1, 2, 2, 37, 70, 24, 40, 2, True, 0.0, False),
             (1, 3, 1, 20, 50, 16, 16, 0, True, 5.0, True),
             (1, 1, 1, 5, 33, 128, 128, 0, False, 0.0, False),
             (2, 8, 2, 300, 300, 64, 64, 1, True, 0.0, True),
             (1, 2, 2, 3, 0, 8, 8, 0, False, 0.0, False)]
    for b, hq, hkv, s, keys, d, dv, m, causal, cap, tr in cases:
        q, k, v = tensor(b, hq, s, d, tr), tensor(b, hkv, keys, d, tr), tensor(b, hkv, keys, dv, tr)
        y = tensor(b, hq, s, dv, tr).fill_(float("nan"))  # every element written
        mask = None
        if m:
            off = torch.rand(b if m == 1 else 1, 1, s, keys, device="cuda", generator=gen) < 0.2
            off[:, :, min(1, s - 1)] = True  # a row with every key masked
            mask = (torch.randn(off.shape, device="cuda", generator=gen).masked_fill(off, -math.inf)
                    if m == 1 else (~off).to(torch.uint8))
        flags = ((FLOAT_MASK if m == 1 else BOOL_MASK if m == 2 else 0)
                 | (CAUSAL if causal else 0) | (SOFTCAP if cap else 0))
        scale = 1.0 / math.sqrt(d)
        launch(drv, q, k, v, mask, y, flags, scale, cap, stream())
        torch.cuda.synchronize()
        qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
        want, magnitude = reference(torch, qd, kd, vd, mask, flags, scale, cap)
        want, magnitude = want.detach(), magnitude.detach()
        err = ((y.double() - want).abs() / (magnitude + 1e-30)).max().item() if y.numel() else 0.0
        ok = not math.isnan(err) and err <= 1e-5
        failures += not ok
        name = (f"B={b} Hq={hq} Hkv={hkv} S={s} L={keys} D={d} Dv={dv} mask={m} "
                f"causal={causal} softcap={cap} transposed={tr}")
        results["tests"].append({"case": name, "error": err, "ok": ok})
        print(f"test {name}: {'ok' if ok else 'MISMATCH'} ({err:.1e} of the |p|·|v| scale)")
        # The backward against torch's autograd of the same definition in float64.
        do = torch.randn(y.shape, device="cuda", generator=gen)
        grads = [torch.full_like(t, float("nan")) for t in (q, k, v)]
        stats = torch.empty(b, hq, s, 2, device="cuda")
        launch_backward(drv, q, k, v, mask, y, do, *grads, stats, flags, scale, cap, stream())
        torch.cuda.synchronize()
        out, _ = reference(torch, qd, kd, vd, mask, flags, scale, cap)
        want = torch.autograd.grad(out, (qd, kd, vd), do.double(), allow_unused=True)
        want = [w if w is not None else torch.zeros_like(t) for w, t in zip(want, (qd, kd, vd))]
        errs = [((g.double() - w).abs().max() / w.abs().max().clamp_min(1e-30)).item()
                if w.numel() else 0.0 for g, w in zip(grads, want)]
        ok = all(not math.isnan(e) and e <= 2e-5 for e in errs)
        failures += not ok
        results["tests"].append({"case": name + " backward", "errors": errs, "ok": ok})
        print(f"test {name} backward: {'ok' if ok else 'MISMATCH'} (dq, dk, dv "
              f"{' '.join(f'{e:.1e}' for e in errs)} of their largest)")

    timed = timer(torch, args.reps)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for s in (512, 2048):
        b, hq, hkv, d = 1, 32, 8, 128
        q, k, v = tensor(b, hq, s, d, True), tensor(b, hkv, s, d, True), tensor(b, hkv, s, d, True)
        y = torch.empty(b, hq, s, d, device="cuda")
        ours = timed(lambda: launch(drv, q, k, v, None, y, CAUSAL, 1 / math.sqrt(d), 0.0, stream()))
        kx, vx = k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1)
        peer32 = timed(lambda: sdpa(q, kx, vx, is_causal=True))
        qb, kb, vb = (t.to(torch.bfloat16) for t in (q, kx, vx))
        peer16 = timed(lambda: sdpa(qb, kb, vb, is_causal=True))
        # Forward + backward against torch's SDPA forward + autograd backward.
        do = torch.randn(b, hq, s, d, device="cuda")
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        stats = torch.empty(b, hq, s, 2, device="cuda")

        def ours_step():
            launch(drv, q, k, v, None, y, CAUSAL, 1 / math.sqrt(d), 0.0, stream())
            launch_backward(drv, q, k, v, None, y, do, dq, dk, dv, stats, CAUSAL,
                            1 / math.sqrt(d), 0.0, stream())
        ours_train = timed(ours_step)
        train_peers = {}
        for dtype in (torch.float32, torch.bfloat16):
            qt, kt, vt = (t.to(dtype).detach().requires_grad_() for t in (q, kx, vx))
            dot = do.to(dtype)

            def peer_step():
                out = sdpa(qt, kt, vt, is_causal=True)
                torch.autograd.grad(out, (qt, kt, vt), dot)
            train_peers[str(dtype).split(".")[1]] = timed(peer_step)
        flops = 4.0 * b * hq * s * s * d / 2  # causal: half the scores
        line = {"S": s, "heads": hq, "kv_heads": hkv, "d": d, "ms": ours * 1e3,
                "tflops": flops / ours / 1e12, "torch_f32_ms": peer32 * 1e3,
                "torch_bf16_ms": peer16 * 1e3, "train_ms": ours_train * 1e3,
                "torch_train_f32_ms": train_peers["float32"] * 1e3,
                "torch_train_bf16_ms": train_peers["bfloat16"] * 1e3}
        results["bench"].append(line)
        print(f"bench causal S={s} Hq={hq} Hkv={hkv} D={d}: {ours * 1e3:.3f} ms "
              f"({line['tflops']:.1f} TFLOP/s); torch SDPA f32 {peer32 * 1e3:.3f} ms "
              f"(x{peer32 / ours:.2f}), bf16 {peer16 * 1e3:.3f} ms (x{peer16 / ours:.2f}); "
              f"forward + backward {ours_train * 1e3:.3f} ms, torch f32 "
              f"{train_peers['float32'] * 1e3:.3f} ms (x{train_peers['float32'] / ours_train:.2f}), "
              f"bf16 {train_peers['bfloat16'] * 1e3:.3f} ms "
              f"(x{train_peers['bfloat16'] / ours_train:.2f})")
    return finish(args, results, failures, "attention")


if __name__ == "__main__":
    sys.exit(main())
