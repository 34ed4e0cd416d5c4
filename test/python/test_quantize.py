"""qopt.quantize / qopt.dequantize against bitsandbytes' own outputs:
bnb/bnb_quant_cuda.npz (bnb/make_bnb_cuda_fixtures.py, bitsandbytes' CUDA
kernels, which wrote the checkpoints users bring) byte for byte, NF4 / FP4
with and without double quantization and the 8-bit dynamic format;
bnb/bnb_quant.npz (bnb/make_bnb_fixtures.py, its CPU kernels) dequantized to
exactly bitsandbytes' values; the refusals."""
import os

import ml_dtypes
import numpy as np
import pytest

import qopt

HERE = os.path.join(os.path.dirname(__file__), "bnb")
CPU = np.load(os.path.join(HERE, "bnb_quant.npz"))
CUDA = np.load(os.path.join(HERE, "bnb_quant_cuda.npz"))


def cases(fixtures):
    return sorted(k[: -len(".config")] for k in fixtures.files if k.endswith(".config"))


def input_of(fixtures, case):
    if f"{case}.input" in fixtures.files:
        return fixtures[f"{case}.input"]
    return input_of(fixtures, str(fixtures[f"{case}.input_of"][0]))


def in_input_dtype(case, values):
    """bitsandbytes returns the input's dtype: bf16 cases are compared rounded."""
    if "bf16" in case:
        return values.astype(ml_dtypes.bfloat16).astype(np.float32)
    return values


def bnb_state(fixtures, case):
    """bitsandbytes' QuantState of `case`, as qopt's dict."""
    f = lambda key: fixtures[f"{case}.{key}"]  # noqa: E731
    fmt, block, double = f("config")
    state = {"quant_type": str(fmt), "blocksize": int(block), "shape": input_of(fixtures, case).shape,
             "weight": f("weight"), "absmax": f("absmax"), "quant_map": f("quant_map")}
    if int(double):
        state.update(nested_absmax=f("nested_absmax"), nested_offset=f("nested_offset"),
                     nested_quant_map=f("nested_quant_map"), nested_blocksize=256)
    return state


DEQUANTIZED = [(name, fx, c) for name, fx in (("cpu", CPU), ("cuda", CUDA))
               for c in cases(fx) if f"{c}.dequantized" in fx.files]


@pytest.mark.parametrize("source, fixtures, case", DEQUANTIZED,
                         ids=[f"{s}-{c}" for s, _, c in DEQUANTIZED])
def test_dequantize_equals_bitsandbytes(source, fixtures, case):
    # bitsandbytes' own states, double-quantized and 8-bit ones included.
    back = qopt.dequantize(bnb_state(fixtures, case))
    want = fixtures[f"{case}.dequantized"]
    assert back.shape == want.shape and back.dtype == np.float32
    # Exactly equal; the sign of a zero may differ (bitsandbytes' native CPU
    # kernel gives -0 for FP4's code 8, its CUDA kernel and qopt +0).
    np.testing.assert_array_equal(in_input_dtype(case, back), want)


def ulps(a, b):
    a, b = np.float32(a), np.float32(b)
    return abs(int(a.view(np.int32)) - int(b.view(np.int32)))


@pytest.mark.parametrize("case", cases(CUDA))
def test_quantize_bytes_equal_bitsandbytes_cuda(case):
    want = bnb_state(CUDA, case)
    x = input_of(CUDA, case)
    double = "nested_absmax" in want
    state = qopt.quantize(x, want["quant_type"], block_size=want["blocksize"], double_quant=double)
    assert state["quant_type"] == want["quant_type"]
    assert state["blocksize"] == want["blocksize"] and state["shape"] == x.shape
    exact = ["weight", "absmax", "quant_map"] + (["nested_quant_map"] if double else [])
    for key in exact:
        got, ref = np.asarray(state[key]), np.asarray(want[key])
        assert got.dtype == ref.dtype, (key, got.dtype, ref.dtype)
        np.testing.assert_array_equal(got.reshape(-1).view(np.uint8),
                                      ref.reshape(-1).view(np.uint8), err_msg=key)
    if double:
        # The offset is torch's CUDA mean, summed in another order: an ulp.
        assert ulps(state["nested_offset"], want["nested_offset"]) <= 1
        got, ref = state["nested_absmax"], want["nested_absmax"]
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert max(ulps(g, r) for g, r in zip(got, ref)) <= 1
        assert state["nested_blocksize"] == 256
    if f"{case}.dequantized" in CUDA.files:
        back = in_input_dtype(case, qopt.dequantize(state))
        want_back = CUDA[f"{case}.dequantized"]
        if double:  # through absmaxes that may differ by the offset's ulp
            ulp = np.spacing(np.float32(np.max(np.abs(x))))
            np.testing.assert_allclose(back, want_back, rtol=0, atol=2 * ulp)
        else:
            np.testing.assert_array_equal(back, want_back)


@pytest.mark.parametrize("case", [c for c in cases(CPU) if str(CPU[f"{c}.config"][0]) == "nf4"])
def test_nf4_bytes_equal_bitsandbytes_cpu(case):
    # bitsandbytes' CPU kernel writes NF4 as its CUDA kernel does (away from
    # exact midpoints); its FP4 and 8-bit codes differ (docs/Quantization.md).
    want = bnb_state(CPU, case)
    state = qopt.quantize(CPU[f"{case}.input"], "nf4", block_size=want["blocksize"])
    for key in ("weight", "quant_map"):
        np.testing.assert_array_equal(state[key], want[key], err_msg=key)
    if "nested_absmax" not in want:
        np.testing.assert_array_equal(state["absmax"], want["absmax"])


def test_mean_is_torch_cuda_mean_within_an_ulp():
    # QLoRA's offset over many block counts: qopt's mean and torch's.
    counts = sorted({int(k.split(".")[1]) for k in CUDA.files if k.startswith("mean.")})
    assert len(counts) > 40
    for n in counts:
        absmax = CUDA[f"mean.{n}.input"]
        # One 4-bit block per absmax value: each block's max is that value.
        x = np.zeros((n, 64), np.float32)
        x[:, 0] = absmax
        state = qopt.quantize(x, "nf4", double_quant=True)
        assert ulps(state["nested_offset"], CUDA[f"mean.{n}.mean"]) <= 1, n


def test_round_trip_error_is_bounded():
    # One code step of NF4 is at most ~0.3 of the block's absmax; double
    # quantization adds at most half a step of the nested code to absmax.
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    for double in (False, True):
        back = qopt.dequantize(qopt.quantize(x, "nf4", double_quant=double))
        assert np.max(np.abs(back - x)) <= 0.17 * np.max(np.abs(x))
    back = qopt.dequantize(qopt.quantize(x, "int8-dynamic", block_size=256))
    assert np.max(np.abs(back - x)) <= 0.01 * np.max(np.abs(x))


def test_odd_count_pads_with_the_code_of_zero():
    # NF4 codes 15 (1.0), 0 (-1.0), 12 (0.4407: 0.5 is below the 0.5017
    # threshold), then the pad: 7, the code of zero.
    state = qopt.quantize(np.array([1.0, -1.0, 0.5], np.float32), "nf4")
    assert state["weight"].tolist() == [0xF0, 0xC7]
    np.testing.assert_array_equal(qopt.dequantize(state),
                                  np.array([1.0, -1.0, 0.44070982933044434], np.float32))


def int_reference(w, bits, group, asym, mse):
    """Integer quantization from its definition: per group of a row the range
    (scaled by the clipping ratio with the least squared error when `mse`),
    symmetric scale absmax / (2^(b-1) - 1) or asymmetric (max - min) /
    (2^b - 1) with a zero point; round half to even. Returns (codes as
    integers, scales, zero points) and the dequantized values."""
    rows, cols = w.shape
    groups = -(-cols // group)
    codes = np.zeros((rows, cols), np.int64)
    scales = np.zeros((rows, groups), np.float32)
    zps = np.zeros((rows, groups), np.int64)
    back = np.zeros_like(w)
    for r in range(rows):
        for g in range(groups):
            x = w[r, g * group:(g + 1) * group]
            best = None
            for step in range(51 if mse else 1):
                ratio = np.float32(1) - np.float32(0.01) * step
                lo, hi = np.float32(x.min() * ratio), np.float32(x.max() * ratio)
                if asym:
                    qmin, qmax = 0, 2 ** bits - 1
                    lo, hi = min(lo, np.float32(0)), max(hi, np.float32(0))
                    s = np.float32((hi - lo) / np.float32(qmax)) or np.float32(1)
                    zp = int(np.clip(np.rint(-lo / s), 0, qmax))
                else:
                    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
                    s = np.float32(max(abs(lo), abs(hi)) / np.float32(qmax)) or np.float32(1)
                    zp = 0
                q = np.clip(np.rint(x / s) + zp, qmin, qmax).astype(np.int64)
                deq = ((q - zp) * s).astype(np.float32)
                err = np.sum((deq.astype(np.float64) - x) ** 2)
                if best is None or err < best[0]:
                    best = (err, q, s, zp, deq)
            _, q, s, zp, deq = best
            codes[r, g * group:(g + 1) * group] = q
            scales[r, g], zps[r, g] = s, zp
            back[r, g * group:(g + 1) * group] = deq
    return codes, scales, zps, back


@pytest.mark.parametrize("fmt, group, asym, clip", [
    ("int8", None, False, "minmax"), ("int4", 16, True, "minmax"), ("int4", 32, False, "mse"),
    ("int2", 8, True, "mse"), ("int4", 12, True, "minmax"),  # a short last group
    ("int3", 16, True, "minmax"), ("int3", None, False, "mse"),  # codes straddle bytes
])
def test_int_formats_equal_their_definition(fmt, group, asym, clip):
    w = np.random.default_rng(3).standard_normal((6, 40)).astype(np.float32)
    w[2, 5] = 9.0  # an outlier
    w[4] = 0.0  # a row of zeros: scale 1
    bits = int(fmt[3:])
    state = qopt.quantize(w, fmt, group_size=group, asym=asym, clip=clip)
    g = group or 40
    codes, scales, zps, back = int_reference(w, bits, g, asym, clip == "mse")
    np.testing.assert_array_equal(state["scales"], scales)
    if asym:
        np.testing.assert_array_equal(state["zero_points"], zps.astype(np.uint8))
    else:
        assert "zero_points" not in state
    # Packed per row as a little-endian bit string: element i in bits
    # [i*bits, (i+1)*bits) (3-bit codes straddle bytes), the last byte padded.
    unsigned = codes & ((1 << bits) - 1)
    want = np.zeros((6, -(-40 * bits // 8)), np.uint8)
    for r in range(6):
        value = sum(int(c) << (i * bits) for i, c in enumerate(unsigned[r]))
        want[r] = np.frombuffer(value.to_bytes(want.shape[1], "little"), np.uint8)
    np.testing.assert_array_equal(state["weight"], want)
    np.testing.assert_array_equal(qopt.dequantize(state), back)
    assert state["shape"] == (6, 40) and state["quant_type"] == fmt


def float_test_matrix():
    """5 x 70 (short last blocks of 32 and 16), an outlier, a zero row, tiny
    values (E2M1 sign of zero), exact ties of E2M1's grid."""
    w = np.random.default_rng(5).standard_normal((5, 70)).astype(np.float32)
    w[1, 3] = 40.0
    w[2] = 0.0
    w[3, :8] = [1e-30, -1e-30, 0.25, -0.25, 0.75, 2.5, -5.0, 3.5]
    return w


@pytest.mark.parametrize("fmt, per_channel", [
    ("fp8-e4m3", False), ("fp8-e4m3", True), ("fp8-e5m2", False), ("fp8-e5m2", True)])
def test_fp8_equals_ml_dtypes(fmt, per_channel):
    w = float_test_matrix()
    dtype, largest = ((ml_dtypes.float8_e4m3fn, 448.0) if fmt == "fp8-e4m3"
                      else (ml_dtypes.float8_e5m2, 57344.0))
    rows = w if per_channel else w.reshape(1, -1)
    amax = np.abs(rows).max(axis=1, keepdims=True)
    s = np.where(amax > 0, amax / np.float32(largest), np.float32(1)).astype(np.float32)
    codes = (rows / s).astype(dtype)
    state = qopt.quantize(w, fmt, per_channel=per_channel)
    np.testing.assert_array_equal(state["weight"], codes.view(np.uint8).reshape(w.shape))
    np.testing.assert_array_equal(state["scales"], s.reshape(-1) if per_channel else s.reshape(()))
    np.testing.assert_array_equal(qopt.dequantize(state),
                                  (codes.astype(np.float32) * s).reshape(w.shape))


def test_mxfp4_equals_the_ocp_definition():
    w = float_test_matrix()
    state = qopt.quantize(w, "mxfp4")
    blocks = -(-70 // 32)
    want_codes = np.zeros((5, 70), np.uint8)
    want_scales = np.zeros((5, blocks), np.uint8)
    back = np.zeros_like(w)
    for b in range(blocks):
        x = w[:, 32 * b:32 * (b + 1)]
        amax = np.abs(x).max(axis=1)
        # floor(log2 amax) - emax(E2M1) = 2, clamped to E8M0; zero: 2^-127.
        e = np.where(amax > 0, np.floor(np.log2(np.where(amax > 0, amax, 1))) - 2, -127)
        e = np.clip(e, -127, 127).astype(np.int64)
        X = np.exp2(e.astype(np.float64)).astype(np.float32)[:, None]
        q = np.clip(x / X, -6, 6).astype(ml_dtypes.float4_e2m1fn)
        want_scales[:, b] = e + 127
        want_codes[:, 32 * b:32 * (b + 1)] = q.view(np.uint8) & 15
        back[:, 32 * b:32 * (b + 1)] = q.astype(np.float32) * X
    np.testing.assert_array_equal(state["scales"], want_scales)
    np.testing.assert_array_equal(state["weight"], want_codes[:, 0::2] | (want_codes[:, 1::2] << 4))
    np.testing.assert_array_equal(qopt.dequantize(state), back)
    assert state["block_size"] == 32 and state["shape"] == (5, 70)


def test_nvfp4_equals_torchao_two_level():
    w = float_test_matrix()
    state = qopt.quantize(w, "nvfp4")
    g = np.float32(np.abs(w).max() / np.float32(448 * 6))
    assert state["global_scale"] == g
    blocks = -(-70 // 16)
    back = np.zeros_like(w)
    for b in range(blocks):
        x = w[:, 16 * b:16 * (b + 1)]
        bs = np.clip(np.abs(x).max(axis=1) / np.float32(6) / g, np.float32(2.0 ** -6),
                     np.float32(448)).astype(ml_dtypes.float8_e4m3fn)
        np.testing.assert_array_equal(state["scales"][:, b], bs.view(np.uint8))
        total = (g * bs.astype(np.float32))[:, None]
        q = np.clip(x / total, -6, 6).astype(ml_dtypes.float4_e2m1fn)
        codes = q.view(np.uint8) & 15
        packed = state["weight"][:, 8 * b:8 * b + (codes.shape[1] + 1) // 2]
        np.testing.assert_array_equal(packed & 15, codes[:, 0::2])
        np.testing.assert_array_equal(packed >> 4, codes[:, 1::2])
        back[:, 16 * b:16 * (b + 1)] = q.astype(np.float32) * total
    np.testing.assert_array_equal(qopt.dequantize(state), back)


def test_float_formats_of_zeros_and_bf16():
    z = np.zeros((2, 20), np.float32)
    for fmt in ("fp8-e4m3", "mxfp4", "nvfp4"):
        np.testing.assert_array_equal(qopt.dequantize(qopt.quantize(z, fmt)), z)
    w = float_test_matrix()
    for fmt in ("fp8-e5m2", "mxfp4", "nvfp4"):
        a, b = qopt.quantize(w.astype(ml_dtypes.bfloat16), fmt), \
            qopt.quantize(w.astype(ml_dtypes.bfloat16).astype(np.float32), fmt)
        np.testing.assert_array_equal(a["weight"], b["weight"])


@pytest.mark.parametrize("call, message", [
    (lambda: qopt.quantize(np.ones((2, 32), np.float32), "mxfp4", block_size=16),
     "mxfp4 has blocks of 32"),
    (lambda: qopt.quantize(np.ones((2, 32), np.float32), "nvfp4", per_channel=True),
     "not per_channel"),
    (lambda: qopt.quantize(np.ones((2, 32), np.float32), "fp8-e4m3", block_size=16),
     "takes per_channel"),
    (lambda: qopt.quantize(np.ones((2, 32), np.float32), "fp8-e4m3", double_quant=True),
     "takes no double_quant"),
    (lambda: qopt.quantize(np.ones((2, 32), np.float32), "nf4", per_channel=True),
     "per_channel is for the fp8 formats"),
    (lambda: qopt.quantize(np.array([np.inf, 1.0], np.float32), "nvfp4"), "NaN or infinite"),
    (lambda: qopt.dequantize({**qopt.quantize(np.ones((2, 32), np.float32), "mxfp4"),
                              "weight": np.zeros((2, 3), np.uint8)}), "weight rows hold 3 bytes"),
    (lambda: qopt.dequantize({k: v for k, v in qopt.quantize(
        np.ones((2, 32), np.float32), "nvfp4").items() if k != "global_scale"}),
     "no 'global_scale'"),
])
def test_float_format_refusals(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda: qopt.quantize(np.ones(4, np.float32), "nf3"), "unknown format 'nf3'"),
    (lambda: qopt.quantize(np.ones(4, np.int32), "nf4"), "quantize takes floats"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "nf4", block_size=0), "block_size must be positive"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "int4", group_size=0), "group_size must be positive"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "int4", clip="best"), "clip must be"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "int4", block_size=64), "takes group_size"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "nf4", asym=True), "takes block_size"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "fp8", asym=True), "unknown format 'fp8'"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "int4", group_size=2.5), "must be an integer"),
    (lambda: qopt.quantize(np.array([np.nan, 1.0], np.float32), "int4"), "NaN or infinite"),
    (lambda: qopt.dequantize({**qopt.quantize(np.ones((2, 8), np.float32), "int4"), "group_size": 0}),
     "positive group_size"),
    (lambda: qopt.dequantize({**qopt.quantize(np.ones((2, 8), np.float32), "int4"),
                              "weight": np.zeros((2, 3), np.uint8)}), "weight rows hold 3 bytes"),
    (lambda: qopt.quantize(np.zeros(0, np.float32), "fp4"), "at least one element"),
    (lambda: qopt.dequantize({"weight": np.zeros(2, np.uint8)}), "not a qopt.quantize result"),
    (lambda: qopt.dequantize({**qopt.quantize(np.ones(8, np.float32), "nf4"), "shape": (20,)}),
     "weight holds 8 codes"),
    (lambda: qopt.dequantize({**qopt.quantize(np.ones(600, np.float32), "nf4", double_quant=True),
                              "nested_absmax": np.ones(3, np.float32)}),
     "one value per nested block"),
])
def test_refusals(call, message):
    with pytest.raises(ValueError, match=message):
        call()
