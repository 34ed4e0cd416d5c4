"""qopt.quantize / qopt.dequantize against bitsandbytes' own outputs
(bnb/bnb_quant.npz, made by bnb/make_bnb_fixtures.py with bitsandbytes on the
CPU): NF4 / FP4 quantization byte for byte; bitsandbytes' states (double
quantization and the 8-bit format included) dequantized to exactly
bitsandbytes' values; the refusals."""
import os

import ml_dtypes
import numpy as np
import pytest

import qopt

FIXTURES = np.load(os.path.join(os.path.dirname(__file__), "bnb", "bnb_quant.npz"))
CASES = sorted({k.split(".")[0] for k in FIXTURES.files if "." in k})


def in_input_dtype(case, values):
    """bitsandbytes returns the input's dtype: bf16 cases are compared rounded."""
    if "bf16" in case:
        return values.astype(ml_dtypes.bfloat16).astype(np.float32)
    return values


def bnb_state(case):
    """bitsandbytes' QuantState of `case`, as qopt's dict."""
    f = lambda key: FIXTURES[f"{case}.{key}"]  # noqa: E731
    fmt, block, double = f("config")
    state = {"quant_type": str(fmt), "blocksize": int(block), "shape": f("input").shape,
             "weight": f("weight"), "absmax": f("absmax"), "quant_map": f("quant_map")}
    if int(double):
        state.update(nested_absmax=f("nested_absmax"), nested_offset=f("nested_offset"),
                     nested_quant_map=f("nested_quant_map"), nested_blocksize=256)
    return state


@pytest.mark.parametrize("case", CASES)
def test_dequantize_equals_bitsandbytes(case):
    # bitsandbytes' own states, double-quantized and 8-bit ones included.
    back = qopt.dequantize(bnb_state(case))
    want = FIXTURES[f"{case}.dequantized"]
    assert back.shape == want.shape and back.dtype == np.float32
    back = in_input_dtype(case, back)
    # Exactly equal; the sign of a zero may differ (bitsandbytes' native CPU
    # kernel gives -0 for FP4's code 8, its fallback and qopt +0).
    np.testing.assert_array_equal(back, want)


QUANTIZED = [c for c in CASES if str(FIXTURES[f"{c}.config"][0]) in ("nf4", "fp4")
             and not int(FIXTURES[f"{c}.config"][2])]


@pytest.mark.parametrize("case", QUANTIZED)
def test_quantize_bytes_equal_bitsandbytes(case):
    want = bnb_state(case)
    x = FIXTURES[f"{case}.input"]
    state = qopt.quantize(x, want["quant_type"], block_size=want["blocksize"])
    assert state["quant_type"] == want["quant_type"]
    assert state["blocksize"] == want["blocksize"] and state["shape"] == x.shape
    for key in ("weight", "absmax", "quant_map"):
        got, ref = np.asarray(state[key]), np.asarray(want[key])
        assert got.dtype == ref.dtype, (key, got.dtype, ref.dtype)
        np.testing.assert_array_equal(got.reshape(-1).view(np.uint8),
                                      ref.reshape(-1).view(np.uint8), err_msg=key)
    np.testing.assert_array_equal(in_input_dtype(case, qopt.dequantize(state)),
                                  FIXTURES[f"{case}.dequantized"])


def test_round_trip_error_is_bounded():
    # One code step of NF4 is at most ~0.3 of the block's absmax.
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    back = qopt.dequantize(qopt.quantize(x, "nf4"))
    assert np.max(np.abs(back - x)) <= 0.17 * np.max(np.abs(x))


@pytest.mark.parametrize("call, message", [
    (lambda: qopt.quantize(np.ones(4, np.float32), "nf3"), "unknown format 'nf3'"),
    (lambda: qopt.quantize(np.ones(4, np.int32), "nf4"), "quantize takes floats"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "nf4", block_size=0), "block_size must be positive"),
    (lambda: qopt.quantize(np.zeros(0, np.float32), "fp4"), "at least one element"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "int8-dynamic"), "not supported yet"),
    (lambda: qopt.quantize(np.ones(4, np.float32), "nf4", double_quant=True), "not supported yet"),
    (lambda: qopt.dequantize({"weight": np.zeros(2, np.uint8)}), "not a qopt.quantize result"),
    (lambda: qopt.dequantize({**qopt.quantize(np.ones(8, np.float32), "nf4"), "shape": (20,)}),
     "weight holds 8 codes"),
])
def test_refusals(call, message):
    with pytest.raises(ValueError, match=message):
        call()
