"""The Python binding (python/qopt) on a model compiled by qoptc, checked
against onnxruntime, and its errors."""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

import qopt

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE = os.path.join(HERE, "..", "Target", "CPU", "Inputs", "make_models.py")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, MAKE, str(d)], check=True)
    qoptc = os.path.join(os.environ["QOPT_BIN"], "qoptc")
    for name in ("linear", "two_inputs", "embedding"):
        subprocess.run([qoptc, str(d / f"{name}.onnx"), "-o", str(d / f"{name}.so")], check=True)
    return d


def test_info(compiled):
    m = qopt.load(compiled / "linear.so")
    (x,), (y,) = m.inputs, m.outputs
    assert (x.name, x.dtype, x.shape, x.dim_names) == ("x", np.float32, (None, None, 16),
                                                        ("batch", "seq", None))
    assert (y.name, y.shape) == ("y", (None, None, 32))
    assert '"format": "qopt-model"' in m.manifest


def test_matches_onnxruntime(compiled):
    m = qopt.load(compiled / "linear.so")
    sess = ort.InferenceSession(str(compiled / "linear.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for shape in [(1, 1, 16), (3, 9, 16), (2, 0, 16)]:
        x = rng.standard_normal(shape).astype(np.float32)
        expected = sess.run(None, {"x": x})[0]
        (by_name,) = m.run(x=x)
        (in_order,) = m(x)
        assert by_name.shape == expected.shape and by_name.dtype == np.float32
        np.testing.assert_allclose(by_name, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(by_name, in_order)


def test_non_contiguous_input_and_owned_outputs(compiled):
    m = qopt.load(compiled / "linear.so")
    x = np.random.default_rng(2).standard_normal((4, 16, 3)).astype(np.float32)
    xt = x.transpose(0, 2, 1)  # a strided view
    (y,) = m.run(xt)
    (y2,) = m.run(np.ascontiguousarray(xt))
    np.testing.assert_array_equal(y, y2)
    del m  # outputs own their memory
    assert np.isfinite(y).all() and y.shape == (4, 3, 32)


def test_errors(compiled):
    m = qopt.load(compiled / "linear.so")
    with pytest.raises(ValueError, match=r"input 'x': expected float32, got float64"):
        m.run(np.zeros((1, 2, 16)))
    with pytest.raises(ValueError, match=r"expected shape \[batch, seq, 16\], got \[1, 2, 8\]"):
        m.run(np.zeros((1, 2, 8), np.float32))
    with pytest.raises(TypeError, match=r"no input 'z'"):
        m.run(z=np.zeros(1))
    two = qopt.load(compiled / "two_inputs.so")
    with pytest.raises(TypeError, match=r"missing input 'b'"):
        two.run(a=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"dimension 'batch' is 2 in input 'a' but 3 in input 'b'"):
        two.run(np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"takes 2 inputs, got 1"):
        two.run(np.zeros((2, 4), np.float32))
    with pytest.raises(RuntimeError, match=r"cannot open"):
        qopt.load(compiled / "missing.so")


def test_run_time_checks(compiled):
    """A failed run-time check (bad input values) is a ValueError naming the
    node; the model stays usable afterwards."""
    m = qopt.load(compiled / "embedding.so")
    ids = np.load(compiled / "ids.npy")
    h, h_copy = m.run(ids=ids)
    np.testing.assert_allclose(h, np.load(compiled / "h_ref.npy"), rtol=1e-6)
    np.testing.assert_array_equal(h, h_copy)
    with pytest.raises(ValueError, match=r"the model stopped: node '/embed/Gather' "
                                           r"\(qopt.embedding\): an id is "
                                           r"out of range \(valid: -10 to 9\)"):
        m.run(ids=np.array([[10]], np.int64))
    h, _ = m.run(ids=np.array([[-1]], np.int64))  # the last row
    np.testing.assert_allclose(h[0, 0], np.load(compiled / "h_ref.npy")[1, 0], rtol=1e-6)
