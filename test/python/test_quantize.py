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


@pytest.mark.parametrize("call, message", [
    (lambda: qopt.quantize(np.ones(4, np.float32), "nf3"), "unknown format 'nf3'"),
    (lambda: qopt.quantize(np.ones(4, np.int32), "nf4"), "quantize takes floats"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "nf4", block_size=0), "block_size must be positive"),
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
