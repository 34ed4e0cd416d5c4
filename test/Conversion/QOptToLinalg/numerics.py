"""Runs QOpt ops through convert-qopt-to-linalg and the CPU pipeline and
compares them with independent numpy implementations of their documented
semantics (LoRA and its variants, DoRA, fake-quant in every format, the
Hadamard transform)."""
import os
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
import qopt_check  # noqa: E402

rng = np.random.default_rng(7)
results = []


def t(a):
    elem = {np.dtype(np.int8): "i8", np.dtype(np.int64): "i64",
            np.dtype(np.int32): "i32"}.get(np.asarray(a).dtype, "f32")
    return "tensor<" + "x".join(str(d) for d in a.shape) + ("x" if a.ndim else "") + elem + ">"


def check(name, body, inputs, expected, rtol=1e-5, atol=1e-6):
    args = ", ".join(f"%a{i}: {t(a)}" for i, a in enumerate(inputs))
    text = f"func.func @main({args}) -> {t(expected)} {{\n{body}\n}}"
    got = qopt_check.run_module(text, inputs)[0]
    ok = got.shape == expected.shape and np.allclose(got, expected, rtol=rtol, atol=atol)
    err = np.max(np.abs(got - expected)) if got.shape == expected.shape else float("nan")
    print(f"{name}: {'ok' if ok else f'MISMATCH (max abs error {err:.3g})'}")
    results.append(ok)


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# --- LoRA -------------------------------------------------------------------
x, w, a, b, bias = f32(3, 8), f32(6, 8), f32(4, 8), f32(6, 4), f32(6)
sig = f"({t(x)}, {t(w)}, {t(a)}, {t(b)}, {t(bias)}) -> tensor<3x6xf32>"
check("lora standard", f"""
  %y = qopt.lora %a0, %a1, %a2, %a3 bias(%a4) alpha = 8.0 : {sig}
  return %y : tensor<3x6xf32>""", [x, w, a, b, bias],
      x @ w.T + bias + (8.0 / 4) * (x @ a.T) @ b.T)
check("lora rslora", f"""
  %y = qopt.lora %a0, %a1, %a2, %a3 bias(%a4) alpha = 8.0 scaling = rslora : {sig}
  return %y : tensor<3x6xf32>""", [x, w, a, b, bias],
      x @ w.T + bias + (8.0 / 2) * (x @ a.T) @ b.T)
g, m = f32(4), f32(4, 4)
check("lora gate+middle (SoRA, LoRA-XS)", f"""
  %y = qopt.lora %a0, %a1, %a2, %a3 middle(%a4) gate(%a5) alpha = 4.0
      : ({t(x)}, {t(w)}, {t(a)}, {t(b)}, {t(m)}, {t(g)}) -> tensor<3x6xf32>
  return %y : tensor<3x6xf32>""", [x, w, a, b, m, g],
      x @ w.T + 1.0 * (((x @ a.T) * g) @ m.T) @ b.T)
mag = np.abs(f32(6)) + 0.5
wp = w + 2.0 * b @ a
dora = (mag / np.linalg.norm(wp, axis=1)) * (x @ w.T + 2.0 * (x @ a.T) @ b.T) + bias
check("lora DoRA", f"""
  %y = qopt.lora %a0, %a1, %a2, %a3 bias(%a4) magnitude(%a5) alpha = 8.0
      : ({t(x)}, {t(w)}, {t(a)}, {t(b)}, {t(bias)}, {t(mag)}) -> tensor<3x6xf32>
  return %y : tensor<3x6xf32>""", [x, w, a, b, bias, mag], dora, rtol=1e-4)

# --- fake_quant ---------------------------------------------------------------
wq = f32(4, 16)
s = np.abs(wq).max(axis=1) / 127
ref = np.clip(np.round(wq / s[:, None]), -128, 127) * s[:, None]
check("fake_quant int8 per_channel", f"""
  %y = qopt.fake_quant %a0 scale %a1 format(#qopt.int<8>) granularity(#qopt.per_channel<0>)
      : ({t(wq)}, {t(s)}) -> {t(wq)}
  return %y : {t(wq)}""", [wq, s.astype(np.float32)], ref)

lo, hi = wq.reshape(4, 2, 8).min(axis=2), wq.reshape(4, 2, 8).max(axis=2)
sg = ((hi - lo) / 15).astype(np.float32)
zp = np.clip(np.round(-lo / sg), 0, 15).astype(np.float32)
se, ze = np.repeat(sg, 8, axis=1), np.repeat(zp, 8, axis=1)
ref = (np.clip(np.round(wq / se) + ze, 0, 15) - ze) * se
check("fake_quant uint4 zero_point per_group", f"""
  %y = qopt.fake_quant %a0 scale %a1 zero_point %a2 format(#qopt.int<4, unsigned, zero_point>)
      granularity(#qopt.per_group<axis = 1, size = 8>)
      : ({t(wq)}, {t(sg)}, {t(zp)}) -> {t(wq)}
  return %y : {t(wq)}""", [wq, sg, zp], ref)

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)
# bitsandbytes' codebooks fake-quantized as its kernels round them: equal
# to quantizing and dequantizing with qopt.quantize (byte-equal to
# bitsandbytes' CUDA kernels, test/python).
sys.path.insert(0, os.path.join(os.environ["QOPT_BIN"], "..", "python"))
import qopt  # noqa: E402
blocks = wq.reshape(-1, 32)
absmax = np.abs(blocks).max(axis=1).astype(np.float32)
for fmt, attr in (("nf4", "#qopt.nf4"), ("fp4", "#qopt.bnb_fp4"), ("int8-dynamic", "#qopt.dynamic8")):
    ref = qopt.dequantize(qopt.quantize(wq, fmt, block_size=32))
    check(f"fake_quant {fmt} per_block (bitsandbytes' rounding)", f"""
  %y = qopt.fake_quant %a0 scale %a1 format({attr}) granularity(#qopt.per_block<32>)
      : ({t(wq)}, {t(absmax)}) -> {t(wq)}
  return %y : {t(wq)}""", [wq, absmax], ref)

s8 = np.array(np.abs(wq).max() / 448, dtype=np.float32)
ref = (wq / s8).astype(ml_dtypes.float8_e4m3fn).astype(np.float32) * s8
check("fake_quant fp8 e4m3 per_tensor", f"""
  %y = qopt.fake_quant %a0 scale %a1 format(#qopt.float<f8E4M3FN>) granularity(#qopt.per_tensor)
      : ({t(wq)}, tensor<f32>) -> {t(wq)}
  return %y : {t(wq)}""", [wq, s8], ref)

# Exact ties between neighbouring E4M3 values round to even, as ml_dtypes,
# torch and the compile-time quantizer round (and the CUDA library's FP8
# token codes), not toward -inf.
grid = np.unique(np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)
                 .astype(np.float32))
grid = grid[np.isfinite(grid)]
ties = ((grid[:-1].astype(np.float64) + grid[1:]) / 2).astype(np.float32)[:248].reshape(8, 31)
one = np.array(1.0, dtype=np.float32)
check("fake_quant fp8 e4m3 ties to even", f"""
  %y = qopt.fake_quant %a0 scale %a1 format(#qopt.float<f8E4M3FN>) granularity(#qopt.per_tensor)
      : ({t(ties)}, tensor<f32>) -> {t(ties)}
  return %y : {t(ties)}""", [ties, one],
      ties.astype(ml_dtypes.float8_e4m3fn).astype(np.float32))

st = (np.abs(wq).max(axis=1) / 6).astype(np.float32)
ref = (wq / st[:, None]).astype(ml_dtypes.float4_e2m1fn).astype(np.float32) * st[:, None]
check("lsq fp4 e2m1 per_token", f"""
  %y = qopt.lsq %a0 scale %a1 format(#qopt.float<f4E2M1FN>) granularity(#qopt.per_token)
      : ({t(wq)}, {t(st)}) -> {t(wq)}
  return %y : {t(wq)}""", [wq, st], ref)

# --- hadamard -----------------------------------------------------------------
def sylvester(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


xh, signs = f32(3, 8), np.where(rng.random(8) < 0.5, -1.0, 1.0).astype(np.float32)
check("hadamard n=8 with signs", f"""
  %y = qopt.hadamard %a0 signs %a1 : ({t(xh)}, {t(signs)}) -> {t(xh)}
  return %y : {t(xh)}""", [xh, signs], (xh * signs) @ sylvester(8).T / np.sqrt(8))
ref = np.concatenate([xh[:, :4] @ sylvester(4).T, xh[:, 4:] @ sylvester(4).T], axis=1) / 2
check("hadamard block=4", f"""
  %y = qopt.hadamard %a0 block = 4 : ({t(xh)}) -> {t(xh)}
  return %y : {t(xh)}""", [xh], ref)
xa = f32(8, 3)
check("hadamard axis=0", f"""
  %y = qopt.hadamard %a0 axis = 0 : ({t(xa)}) -> {t(xa)}
  return %y : {t(xa)}""", [xa], sylvester(8) @ xa / np.sqrt(8))


# Orders m · 2^k: H_m ⊗ H_{2^k} with H_m by Paley's constructions over a
# prime field, restated here from their definitions: Q[a][b] = χ(a - b),
# core C = [[0, 1ᵀ], [±1, Q]] (-1 below the corner for q ≡ 3 mod 4).
def paley_core(q):
    chi = np.array([0] + [1 if pow(v, (q - 1) // 2, q) == 1 else -1 for v in range(1, q)])
    c = np.zeros((q + 1, q + 1))
    c[0, 1:] = 1
    c[1:, 0] = -1 if q % 4 == 3 else 1
    a = np.arange(q)
    c[1:, 1:] = chi[(a[:, None] - a[None, :]) % q]
    return c


def paley1(q):  # order q + 1, q ≡ 3 (mod 4)
    return np.eye(q + 1) + paley_core(q)


def paley2(q):  # order 2(q + 1), q ≡ 1 (mod 4)
    c = paley_core(q)
    return np.kron(c, [[1, 1], [1, -1]]) + np.kron(np.eye(q + 1), [[1, -1], [-1, -1]])


for name, hm, power, rows in [("12 (Paley I)", paley1(11), 1, 3), ("48 = 12 x 4", paley1(11), 4, 2),
                              ("36 (Paley II)", paley2(17), 1, 2), ("120 = 60 x 2", paley1(59), 2, 2)]:
    n = hm.shape[0] * power
    assert np.array_equal(hm @ hm.T, hm.shape[0] * np.eye(hm.shape[0]))
    xm, sg = f32(rows, n), np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    check(f"hadamard n={name} with signs", f"""
  %y = qopt.hadamard %a0 signs %a1 : ({t(xm)}, {t(sg)}) -> {t(xm)}
  return %y : {t(xm)}""", [xm, sg], (xm * sg) @ np.kron(hm, sylvester(power)).T / np.sqrt(n))
# A block of 12 repeated along a dynamic-free axis 0.
xb = f32(24, 3)
check("hadamard block=12 axis=0", f"""
  %y = qopt.hadamard %a0 axis = 0 block = 12 : ({t(xb)}) -> {t(xb)}
  return %y : {t(xb)}""", [xb], np.concatenate([paley1(11) @ xb[:12], paley1(11) @ xb[12:]]) / np.sqrt(12))
# Orders only the tabulated Williamson quadruples or GF(p^e) reach (344 =
# 172 x 2, 28 = GF(27), 52 = GF(25)): the transform of the identity must be
# a Hadamard matrix over √n, whatever its signs.
for n in (344, 28, 52):
    eye = np.eye(n, dtype=np.float32)
    got = qopt_check.run_module(f"""func.func @main(%a0: {t(eye)}) -> {t(eye)} {{
  %y = qopt.hadamard %a0 : ({t(eye)}) -> {t(eye)}
  return %y : {t(eye)}
}}""", [eye])[0] * np.sqrt(n)
    ok = np.allclose(np.abs(got), 1, atol=1e-4) and np.allclose(got @ got.T, n * np.eye(n), atol=1e-2)
    print(f"hadamard n={n} is Hadamard: {'ok' if ok else 'MISMATCH'}")
    results.append(ok)

# --- dequantize ---------------------------------------------------------------
# Signed int4 per channel: codes packed two per byte, low nibble first.
codes = rng.integers(-8, 8, size=(4, 16))
nib = (codes & 0xF).astype(np.uint8)
packed = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.int8)
sc = (np.abs(f32(4)) + 0.1).astype(np.float32)
qt = "!qopt.qtensor<4x16, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>"
check("dequantize int4 per_channel", f"""
  %q = qopt.assemble %a0, %a1 : (tensor<4x8xi8>, tensor<4xf32>) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>""", [packed, sc], codes * sc[:, None])
# NF4 in blocks of 32 over the flattened tensor.
idx = rng.integers(0, 16, size=(4, 16))
packed = (idx[:, 0::2] | (idx[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
am = (np.abs(f32(2)) + 0.1).astype(np.float32)
qt = "!qopt.qtensor<4x16, #qopt.nf4, #qopt.per_block<32>, scales = f32>"
check("dequantize nf4 per_block", f"""
  %q = qopt.assemble %a0, %a1 : (tensor<4x8xi8>, tensor<2xf32>) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>""", [packed, am], (NF4[idx].reshape(2, 32) * am[:, None]).reshape(4, 16))
# bitsandbytes' codebooks from their published definitions: FP4 (its index
# order, bit 3 the sign) and the 8-bit dynamic map (create_dynamic_map:
# signed, 7 exponent steps of 2^i + 1 linear fractions, plus 0 and 1).
BNB_FP4 = (np.array([0, 0.0625, 8, 12, 4, 6, 2, 3]) / 12).astype(np.float32)
BNB_FP4 = np.concatenate([BNB_FP4, -BNB_FP4])
dyn = [0.0, 1.0]
for i in range(7):
    bounds = np.linspace(0.1, 1, 2 ** i + 1)
    means = (bounds[:-1] + bounds[1:]) / 2.0
    dyn += list(10.0 ** (i - 6) * means) + list(-(10.0 ** (i - 6)) * means)
DYNAMIC = np.sort(np.array(dyn, np.float32))
assert DYNAMIC.size == 256
idx = rng.integers(0, 16, size=(4, 16))
packed = (idx[:, 0::2] | (idx[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
qt = "!qopt.qtensor<4x16, #qopt.bnb_fp4, #qopt.per_block<32>, scales = f32>"
check("dequantize bnb_fp4 per_block", f"""
  %q = qopt.assemble %a0, %a1 : (tensor<4x8xi8>, tensor<2xf32>) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>""", [packed, am], (BNB_FP4[idx].reshape(2, 32) * am[:, None]).reshape(4, 16))
# QLoRA's double quantization: NF4 in blocks of 8 over a 6x12 tensor (9
# scales), the scales as dynamic codes (all 256 reachable: 0 and 255 among
# them) in nested blocks of 4 (the last short) plus an offset.
idx = rng.integers(0, 16, size=(6, 12))
packed = (idx[:, 0::2] | (idx[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
scodes = np.array([0, 255, 127, 128, 3, 200, 64, 17, 250], np.uint8)
nested = np.array([0.5, 2.0, 0.25], np.float32)
offset = np.float32(1.5)
absmax = DYNAMIC[scodes] * np.repeat(nested, 4)[:9] + offset
inner = "!qopt.qtensor<9, #qopt.dynamic8, #qopt.per_block<4>, scales = f32, offset>"
qt = f"!qopt.qtensor<6x12, #qopt.nf4, #qopt.per_block<8>, scales = {inner}>"
check("dequantize nf4 with double-quantized scales", f"""
  %off = arith.constant dense<1.5> : tensor<f32>
  %s = qopt.assemble %a1, %a2 offset %off : (tensor<9xi8>, tensor<3xf32>, tensor<f32>) -> {inner}
  %q = qopt.assemble %a0, %s : (tensor<6x6xi8>, {inner}) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<6x12xf32>
  return %y : tensor<6x12xf32>""", [packed, scodes.view(np.int8), nested],
      (NF4[idx].reshape(9, 8) * absmax[:, None]).reshape(6, 12))
# Float formats in storage, decoded by ml_dtypes: FP8 E4M3 / E5M2 per
# channel (every code once, NaN codes left out), and NVFP4's layout: E2M1
# codes in groups of 16 along K, their scales FP8 E4M3 codes scaled by one
# f32 for the tensor.
for name, dtype, mlir in (("f8E4M3FN", ml_dtypes.float8_e4m3fn, "f8E4M3FN"),
                          ("f8E5M2", ml_dtypes.float8_e5m2, "f8E5M2")):
    codes = np.arange(256, dtype=np.uint8).reshape(4, 64)
    values = codes.view(dtype).astype(np.float32)
    codes[~np.isfinite(values)] = 0
    values = codes.view(dtype).astype(np.float32)
    sc = (np.abs(f32(4)) + 0.1).astype(np.float32)
    qt = f"!qopt.qtensor<4x64, #qopt.float<{mlir}>, #qopt.per_channel<0>, scales = f32>"
    check(f"dequantize {name} per_channel", f"""
  %q = qopt.assemble %a0, %a1 : (tensor<4x64xi8>, tensor<4xf32>) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<4x64xf32>
  return %y : tensor<4x64xf32>""", [codes.view(np.int8), sc], values * sc[:, None])
e2m1 = rng.integers(0, 16, size=(4, 32))
packed = (e2m1[:, 0::2] | (e2m1[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)
s8 = rng.integers(0x30, 0x50, size=(4, 2)).astype(np.uint8)  # positive E4M3 scales
g = np.float32(0.0123)
scale = s8.view(ml_dtypes.float8_e4m3fn).astype(np.float32) * g
inner = "!qopt.qtensor<4x2, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>"
qt = f"!qopt.qtensor<4x32, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 16>, scales = {inner}>"
check("dequantize NVFP4 layout", f"""
  %g = arith.constant dense<0.0123> : tensor<f32>
  %s = qopt.assemble %a1, %g : (tensor<4x2xi8>, tensor<f32>) -> {inner}
  %q = qopt.assemble %a0, %s : (tensor<4x16xi8>, {inner}) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>""", [packed, s8.view(np.int8)],
      E2M1[e2m1] * np.repeat(scale, 16, axis=1))
# MXFP4: E2M1 codes in groups of 32 (the last short), E8M0 scales read
# from bytes (code 0 is 2^-127; ml_dtypes decodes them).
e2m1 = rng.integers(0, 16, size=(4, 40))
packed = (e2m1[:, 0::2] | (e2m1[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
e8 = rng.integers(100, 150, size=(4, 2)).astype(np.uint8)
e8[0, 0] = 0
scale = e8.view(ml_dtypes.float8_e8m0fnu).astype(np.float32)
qt = "!qopt.qtensor<4x40, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 32>, scales = f8E8M0FNU>"
check("dequantize MXFP4 (E8M0 scales)", f"""
  %s = arith.bitcast %a1 : tensor<4x2xi8> to tensor<4x2xf8E8M0FNU>
  %q = qopt.assemble %a0, %s : (tensor<4x20xi8>, tensor<4x2xf8E8M0FNU>) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<4x40xf32>
  return %y : tensor<4x40xf32>""", [packed, e8.view(np.int8)],
      E2M1[e2m1] * np.repeat(scale, 32, axis=1)[:, :40], rtol=1e-5, atol=0)
# NVFP4 with one level of scales (no global scale): E4M3 scales in bytes,
# the weight of a linear layer.
s8 = rng.integers(0x28, 0x48, size=(6, 2)).astype(np.uint8)
scale = s8.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
e2m1 = rng.integers(0, 16, size=(6, 32))
packed = (e2m1[:, 0::2] | (e2m1[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
xl = f32(3, 32)
qt = "!qopt.qtensor<6x32, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 16>, scales = f8E4M3FN>"
check("linear with E4M3-scaled E2M1 weight", f"""
  %s = arith.bitcast %a2 : tensor<6x2xi8> to tensor<6x2xf8E4M3FN>
  %q = qopt.assemble %a1, %s : (tensor<6x16xi8>, tensor<6x2xf8E4M3FN>) -> {qt}
  %y = qopt.linear %a0, %q : (tensor<3x32xf32>, {qt}) -> tensor<3x6xf32>
  return %y : tensor<3x6xf32>""", [xl, packed, s8.view(np.int8)],
      xl @ (E2M1[e2m1] * np.repeat(scale, 16, axis=1)).T, rtol=1e-5)
# Codes that straddle bytes: int3 per channel and uint5 with zero points
# per group, rows of 11 packed as little-endian bit strings.
def pack_bits(codes, bits):
    rows, cols = codes.shape
    out = np.zeros((rows, -(-cols * bits // 8)), np.uint8)
    for r in range(rows):
        v = sum(int(c) << (i * bits) for i, c in enumerate(codes[r]))
        out[r] = np.frombuffer(v.to_bytes(out.shape[1], "little"), np.uint8)
    return out.view(np.int8)


c3 = rng.integers(-4, 4, size=(4, 11))
s3 = (np.abs(f32(4)) + 0.1).astype(np.float32)
qt = "!qopt.qtensor<4x11, #qopt.int<3>, #qopt.per_channel<0>, scales = f32>"
check("dequantize int3 per_channel (codes straddle bytes)", f"""
  %q = qopt.assemble %a0, %a1 : (tensor<4x5xi8>, tensor<4xf32>) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<4x11xf32>
  return %y : tensor<4x11xf32>""", [pack_bits(c3 & 7, 3), s3], c3 * s3[:, None])
c5 = rng.integers(0, 32, size=(4, 11))
z5 = rng.integers(0, 32, size=(4, 3)).astype(np.int8)
s5 = (np.abs(f32(4, 3)) + 0.1).astype(np.float32)
qt = "!qopt.qtensor<4x11, #qopt.int<5, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 4>, scales = f32>"
check("dequantize uint5 zero_point per_group", f"""
  %q = qopt.assemble %a0, %a1 zero_points %a2 : (tensor<4x7xi8>, tensor<4x3xf32>, tensor<4x3xi8>) -> {qt}
  %y = qopt.dequantize %q : {qt} -> tensor<4x11xf32>
  return %y : tensor<4x11xf32>""", [pack_bits(c5, 5), s5, z5],
      (c5 - np.repeat(z5, 4, axis=1)[:, :11]) * np.repeat(s5, 4, axis=1)[:, :11])
# qopt.quantize at run time: the bytes, scales and zero points against the
# compile-time quantizers (qopt.quantize in Python, the same Support code
# qoptc --quantize uses) and, for the float formats and per-token scales,
# against ml_dtypes / numpy.


def check_quantize(name, qt, x, want, zero_points=False):
    """Quantizes x to `qt`, returns the parts; compares them with `want`
    (data bytes, scales[, zero points])."""
    parts = "tensor<" + "x".join(str(d) for d in want[0].shape) + "xi8>"
    sh = "x".join(str(d) for d in want[1].shape)
    stype = f"tensor<{sh}{'x' if sh else ''}f32>"
    ztype = f"tensor<{sh}{'x' if sh else ''}i8>"
    zps = f", {ztype}" if zero_points else ""
    rets = "%d, %s" + (", %z" if zero_points else "")
    text = f"""func.func @main(%a0: {t(x)}) -> ({parts}, {stype}{zps}) {{
  %q = qopt.quantize %a0 : {t(x)} -> {qt}
  %d, %s{", %z" if zero_points else ""} = qopt.disassemble %q : {qt} -> {parts}, {stype}{" zero_points " + ztype if zero_points else ""}
  return {rets} : {parts}, {stype}{zps}
}}"""
    got = qopt_check.run_module(text, [x])
    # Bytes exactly; scales as printed (6 significant digits).
    ok = len(got) == len(want) and all(
        np.allclose(np.asarray(g).reshape(w.shape), w, rtol=1e-5, atol=0)
        if w.dtype == np.float32 else
        np.array_equal(np.asarray(g).astype(w.dtype).reshape(w.shape), w)
        for g, w in zip(got, want))
    print(f"{name}: {'ok' if ok else 'MISMATCH'}")
    results.append(ok)


xq = f32(4, 32, scale=2.0)
xq[1, 3] = 25.0
xq[2] = 0.0
xq[3, :6] = [5e-5, -1.2e-4, 1e-5, -1e-9, 0.0, -0.0]  # FP8 subnormals, signed zeros
ref = qopt.quantize(xq, "int4", group_size=16, asym=True)
check_quantize("quantize uint4 zero_point per_group (= qopt.quantize)",
               "!qopt.qtensor<4x32, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 16>, scales = f32>",
               xq, [ref["weight"].view(np.int8), ref["scales"], ref["zero_points"].view(np.int8)],
               zero_points=True)
ref = qopt.quantize(xq, "int3")
check_quantize("quantize int3 per_channel, codes straddle bytes (= qopt.quantize)",
               "!qopt.qtensor<4x32, #qopt.int<3>, #qopt.per_channel<0>, scales = f32>",
               xq, [ref["weight"].view(np.int8), ref["scales"].reshape(4)])
ref = qopt.quantize(xq, "fp8-e4m3", per_channel=True)
check_quantize("quantize f8E4M3FN per_channel (= qopt.quantize, ml_dtypes)",
               "!qopt.qtensor<4x32, #qopt.float<f8E4M3FN>, #qopt.per_channel<0>, scales = f32>",
               xq, [ref["weight"].view(np.int8), ref["scales"]])
xt = f32(2, 3, 20, scale=3.0)
st = np.abs(xt).max(axis=2) / np.float32(127)
codes = np.clip(np.rint(xt / st[..., None]), -128, 127).astype(np.int8)
check_quantize("quantize int8 per_token (numpy)",
               "!qopt.qtensor<2x3x20, #qopt.int<8>, #qopt.per_token, scales = f32>",
               xt, [codes, st.astype(np.float32)])
se = (np.abs(xq).reshape(4, 2, 16).max(axis=2) / np.float32(6)).astype(np.float32)
se[se == 0] = 1
e2 = (np.clip(xq / np.repeat(se, 16, axis=1), -6, 6)).astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 15
check_quantize("quantize f4E2M1FN per_group, f32 scales (ml_dtypes)",
               "!qopt.qtensor<4x32, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 16>, scales = f32>",
               xq, [(e2[:, 0::2] | (e2[:, 1::2] << 4)).view(np.int8), se])


def little_endian_nibbles(packed, rows):
    """bitsandbytes' flat bytes (first element in the high nibble) as the
    qtensor's rows (first element in the low nibble)."""
    codes = np.stack([packed >> 4, packed & 15], axis=1).reshape(rows, -1)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8).view(np.int8)


# bitsandbytes' codebooks at run time, byte for byte as its CUDA kernels
# (and the Support code qoptc --quantize uses): a zero block (absmax 0),
# outliers, small values.
xb = xq.copy()
xb[2:] = 0.0
xb[0, 5] = -40.0
for fmt, attr in (("nf4", "#qopt.nf4"), ("fp4", "#qopt.bnb_fp4")):
    for name, x in (("", xq), (", a zero block", xb)):
        ref = qopt.quantize(x, fmt, block_size=64)
        check_quantize(f"quantize {fmt} per_block (= bitsandbytes' kernel){name}",
                       f"!qopt.qtensor<4x32, {attr}, #qopt.per_block<64>, scales = f32>",
                       x, [little_endian_nibbles(ref["weight"], 4), ref["absmax"]])
for name, x in (("", xq), (", a zero block", xb)):
    ref = qopt.quantize(x, "int8-dynamic", block_size=64)
    check_quantize(f"quantize dynamic8 per_block (= bitsandbytes' kernel){name}",
                   "!qopt.qtensor<4x32, #qopt.dynamic8, #qopt.per_block<64>, scales = f32>",
                   x, [ref["weight"].reshape(4, 32).view(np.int8), ref["absmax"]])

# MXFP4 and NVFP4 at run time: the scales rounded (E8M0 powers of two; E4M3
# over a global scale) and the codes on the rounded scales, byte for byte as
# qopt.quantize (Support code, checked against ml_dtypes in test/python).
xm = f32(4, 64, scale=3.0)
xm[1, 40:48] = 0.0
xm[2, :32] = 0.0          # a zero MX block
xm[3, 5] = 1e-30          # a tiny absmax block
xm[3, 6:32] = 0.0
xm[0, 17] = 250.0         # an outlier
ref = qopt.quantize(xm, "mxfp4")
mx = "!qopt.qtensor<4x64, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 32>, scales = f8E8M0FNU>"
text = f"""func.func @main(%a0: tensor<4x64xf32>) -> (tensor<4x32xi8>, tensor<4x2xi8>) {{
  %q = qopt.quantize %a0 : tensor<4x64xf32> -> {mx}
  %d, %s = qopt.disassemble %q : {mx} -> tensor<4x32xi8>, tensor<4x2xf8E8M0FNU>
  %c = arith.bitcast %s : tensor<4x2xf8E8M0FNU> to tensor<4x2xi8>
  return %d, %c : tensor<4x32xi8>, tensor<4x2xi8>
}}"""
got = qopt_check.run_module(text, [xm])
ok = (np.array_equal(np.asarray(got[0]).astype(np.int8), ref["weight"].view(np.int8))
      and np.array_equal(np.asarray(got[1]).astype(np.int8), ref["scales"].view(np.int8)))
print(f"quantize MXFP4 (E8M0 scales, = qopt.quantize): {'ok' if ok else 'MISMATCH'}")
results.append(ok)
ref = qopt.quantize(xm, "nvfp4")
inner = "!qopt.qtensor<4x4, #qopt.float<f8E4M3FN>, #qopt.per_tensor, scales = f32>"
nv = f"!qopt.qtensor<4x64, #qopt.float<f4E2M1FN>, #qopt.per_group<axis = 1, size = 16>, scales = {inner}>"
text = f"""func.func @main(%a0: tensor<4x64xf32>) -> (tensor<4x32xi8>, tensor<4x4xi8>, tensor<f32>) {{
  %q = qopt.quantize %a0 : tensor<4x64xf32> -> {nv}
  %d, %s = qopt.disassemble %q : {nv} -> tensor<4x32xi8>, {inner}
  %c, %g = qopt.disassemble %s : {inner} -> tensor<4x4xi8>, tensor<f32>
  return %d, %c, %g : tensor<4x32xi8>, tensor<4x4xi8>, tensor<f32>
}}"""
got = qopt_check.run_module(text, [xm])
ok = (np.array_equal(np.asarray(got[0]).astype(np.int8), ref["weight"].view(np.int8))
      and np.array_equal(np.asarray(got[1]).astype(np.int8), ref["scales"].view(np.int8))
      and np.allclose(got[2], ref["global_scale"], rtol=1e-5, atol=0))
print(f"quantize NVFP4 (E4M3 scales over a global scale, = qopt.quantize): {'ok' if ok else 'MISMATCH'}")
results.append(ok)

# QLoRA's double quantization at run time: 256 blocks of 64, their absmax
# minus the mean in 8-bit dynamic codes per 256, the mean as the offset.
xd = f32(64, 256, scale=0.05)
xd[3, 7] = 2.5
ref = qopt.quantize(xd, "nf4", block_size=64, double_quant=True)
nested = "!qopt.qtensor<256, #qopt.dynamic8, #qopt.per_block<256>, scales = f32, offset>"
qt = f"!qopt.qtensor<64x256, #qopt.nf4, #qopt.per_block<64>, scales = {nested}>"
text = f"""func.func @main(%a0: tensor<64x256xf32>) -> (tensor<64x128xi8>, tensor<256xi8>, tensor<1xf32>, tensor<f32>) {{
  %q = qopt.quantize %a0 : tensor<64x256xf32> -> {qt}
  %d, %s = qopt.disassemble %q : {qt} -> tensor<64x128xi8>, {nested}
  %c, %n, %o = qopt.disassemble %s : {nested} -> tensor<256xi8>, tensor<1xf32> offset tensor<f32>
  return %d, %c, %n, %o : tensor<64x128xi8>, tensor<256xi8>, tensor<1xf32>, tensor<f32>
}}"""
got = qopt_check.run_module(text, [xd])
want = [little_endian_nibbles(ref["weight"], 64), ref["absmax"].view(np.int8),
        ref["nested_absmax"], ref["nested_offset"]]
ok = len(got) == 4 and all(
    np.allclose(np.asarray(g, np.float32).reshape(w.shape), w, rtol=1e-5, atol=0)
    if w.dtype == np.float32 else np.array_equal(np.asarray(g).astype(w.dtype).reshape(w.shape), w)
    for g, w in zip(got, want))
print(f"quantize nf4 with double-quantized scales (= QLoRA's): {'ok' if ok else 'MISMATCH'}")
results.append(ok)
# A linear layer with a uint4 zero-point weight: dequantize, then x W^T.
codes = rng.integers(0, 16, size=(6, 8))
zps = rng.integers(0, 16, size=(6, 2)).astype(np.int8)
sg = (np.abs(f32(6, 2)) + 0.1).astype(np.float32)
packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
wdeq = (codes - np.repeat(zps, 4, axis=1)) * np.repeat(sg, 4, axis=1)
xl = f32(3, 8)
qt = "!qopt.qtensor<6x8, #qopt.int<4, unsigned, zero_point>, #qopt.per_group<axis = 1, size = 4>, scales = f32>"
check("linear with a uint4 weight", f"""
  %q = qopt.assemble %a1, %a2 zero_points %a3 : (tensor<6x4xi8>, tensor<6x2xf32>, tensor<6x2xi8>) -> {qt}
  %y = qopt.linear %a0, %q : (tensor<3x8xf32>, {qt}) -> tensor<3x6xf32>
  return %y : tensor<3x6xf32>""", [xl, packed, sg, zps], xl @ wdeq.T, rtol=1e-5)


# --- activations ----------------------------------------------------------
from math import erf as _erf  # noqa: E402
xa = f32(4, 16, scale=3.0)
erf_v = np.vectorize(_erf)
check("gelu (erf)", f"""
  %y = qopt.gelu %a0 : {t(xa)}
  return %y : {t(xa)}""", [xa], (0.5 * xa * (1 + erf_v(xa / np.sqrt(2.0)))).astype(np.float32), rtol=1e-5, atol=1e-6)
check("gelu (tanh)", f"""
  %y = qopt.gelu %a0 approximate = "tanh" : {t(xa)}
  return %y : {t(xa)}""", [xa],
      (0.5 * xa * (1 + np.tanh(np.sqrt(2 / np.pi) * (xa + 0.044715 * xa ** 3)))).astype(np.float32),
      rtol=1e-5, atol=1e-6)
check("silu", f"""
  %y = qopt.silu %a0 : {t(xa)}
  return %y : {t(xa)}""", [xa], (xa / (1 + np.exp(-xa.astype(np.float64)))).astype(np.float32), rtol=1e-5, atol=1e-6)


# --- log-softmax, cross-entropy ----------------------------------------------
def log_softmax64(v, axis):
    v = v.astype(np.float64)
    m = v.max(axis=axis, keepdims=True)
    return v - m - np.log(np.exp(v - m).sum(axis=axis, keepdims=True))


xs = f32(3, 5, 4, scale=4.0)
check("log_softmax axis 1", f"""
  %y = qopt.log_softmax %a0 axis = 1 : {t(xs)}
  return %y : {t(xs)}""", [xs], log_softmax64(xs, 1).astype(np.float32), rtol=1e-5, atol=1e-5)


def cross_entropy64(logits, labels, weight=None, ignore=None, reduction="mean", log_probs=False):
    lp = logits.astype(np.float64) if log_probs else log_softmax64(logits, 1)
    lp = np.moveaxis(lp, 1, -1)  # [N, d..., C]
    ignored = labels == ignore if ignore is not None else np.zeros(labels.shape, bool)
    safe = np.where(ignored, 0, labels)
    w = np.ones(labels.shape) if weight is None else weight.astype(np.float64)[safe]
    w = np.where(ignored, 0.0, w)
    loss = -np.take_along_axis(lp, safe[..., None], axis=-1)[..., 0] * w
    if reduction == "none":
        return loss.astype(np.float32)
    if reduction == "sum":
        return np.array(loss.sum(), np.float32)
    return np.array(loss.sum() / w.sum(), np.float32)


logits, labels = f32(6, 7, scale=3.0), rng.integers(0, 7, size=6).astype(np.int64)
labels[2] = -100
cw = (np.abs(f32(7)) + 0.2).astype(np.float32)
for reduction, shape in (("mean", "tensor<f32>"), ("sum", "tensor<f32>"), ("none", "tensor<6xf32>")):
    check(f"cross_entropy ignore_index {reduction}", f"""
  %y = qopt.cross_entropy %a0, %a1 ignore_index = -100 reduction = "{reduction}"
      : ({t(logits)}, {t(labels)}) -> {shape}
  return %y : {shape}""", [logits, labels], cross_entropy64(logits, labels, None, -100, reduction),
          rtol=1e-5, atol=1e-5)
check("cross_entropy weighted mean", f"""
  %y = qopt.cross_entropy %a0, %a1 weight(%a2) ignore_index = -100
      : ({t(logits)}, {t(labels)}, {t(cw)}) -> tensor<f32>
  return %y : tensor<f32>""", [logits, labels, cw], cross_entropy64(logits, labels, cw, -100), rtol=1e-5)
lg3, lb3 = f32(2, 4, 3, 5), rng.integers(0, 4, size=(2, 3, 5)).astype(np.int32)
lp3 = log_softmax64(lg3, 1).astype(np.float32)
check("cross_entropy log_probs (nll) [N,C,d1,d2]", f"""
  %y = qopt.cross_entropy %a0, %a1 reduction = "none" log_probs
      : ({t(lp3)}, {t(lb3)}) -> tensor<2x3x5xf32>
  return %y : tensor<2x3x5xf32>""", [lp3, lb3],
      cross_entropy64(lp3, lb3, reduction="none", log_probs=True), rtol=1e-5, atol=1e-6)


# --- rotary -------------------------------------------------------------------
def rotary64(x, cos, sin, interleaved=False):
    x, cos, sin = (v.astype(np.float64) for v in (x, cos, sin))
    r = cos.shape[-1]
    xr, rest = x[..., :r], x[..., r:]
    if interleaved:
        rot = np.stack([-xr[..., 1::2], xr[..., 0::2]], axis=-1).reshape(xr.shape)
    else:
        rot = np.concatenate([-xr[..., r // 2:], xr[..., :r // 2]], axis=-1)
    return np.concatenate([xr * cos + rot * sin, rest], axis=-1).astype(np.float32)


xq = f32(2, 3, 5, 8)
ang = rng.uniform(0, 6, size=(2, 1, 5, 8))
cq, sq = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
check("rotary halves (Llama), heads broadcast", f"""
  %y = qopt.rotary %a0, %a1, %a2 : {t(xq)}, {t(cq)}, {t(sq)}
  return %y : {t(xq)}""", [xq, cq, sq], rotary64(xq, cq, sq), rtol=1e-5, atol=1e-6)
check("rotary interleaved (GPT-J)", f"""
  %y = qopt.rotary %a0, %a1, %a2 interleaved : {t(xq)}, {t(cq)}, {t(sq)}
  return %y : {t(xq)}""", [xq, cq, sq], rotary64(xq, cq, sq, True), rtol=1e-5, atol=1e-6)
cp, sp = cq[:, :, :, :4].copy(), sq[:, :, :, :4].copy()
check("rotary partial (4 of 8 features)", f"""
  %y = qopt.rotary %a0, %a1, %a2 : {t(xq)}, {t(cp)}, {t(sp)}
  return %y : {t(xq)}""", [xq, cp, sp], rotary64(xq, cp, sp), rtol=1e-5, atol=1e-6)

# --- residual add -------------------------------------------------------------
ha, hb = f32(2, 5, 8), f32(2, 5, 8)
check("residual_add", f"""
  %y = qopt.residual_add %a0, %a1 : {t(ha)}
  return %y : {t(ha)}""", [ha, hb], ha + hb)

print(f"qopt numerics: {sum(results)} passed, {len(results) - sum(results)} failed")
sys.exit(0 if all(results) else 1)
