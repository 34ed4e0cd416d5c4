"""com.microsoft MatMulNBits (4-bit block-quantized weights, as ONNX Runtime's
GenAI and Olive export LLMs) through qopt -- imported into a !qopt.qtensor
consumed by qopt.linear -- compared with onnxruntime's own kernel."""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qopt_check  # noqa: E402


def quantize_blocks(w, block, bits=4):
    """Asymmetric per-block quantization along K, packed as MatMulNBits wants."""
    n, k = w.shape
    qmax = (1 << bits) - 1
    blocks = w.reshape(n, k // block, block)
    lo = np.minimum(blocks.min(axis=2), 0)
    hi = np.maximum(blocks.max(axis=2), 0)
    scale = ((hi - lo) / qmax).astype(np.float32)
    scale[scale == 0] = 1
    zp = np.clip(np.round(-lo / scale), 0, qmax).astype(np.uint8)
    q = np.clip(np.round(blocks / scale[..., None]) + zp[..., None], 0, qmax).astype(np.uint8)
    q = q.reshape(n, k)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8).reshape(n, k // block, block // 2)
    nb = k // block
    zp_padded = np.zeros((n, nb + nb % 2), dtype=np.uint8)
    zp_padded[:, :nb] = zp
    zp_packed = (zp_padded[:, 0::2] | (zp_padded[:, 1::2] << 4)).astype(np.uint8).reshape(-1)
    return packed, scale.reshape(-1), zp_packed


def model(n, k, block, with_zp, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32) * 0.1
    packed, scale, zp = quantize_blocks(w, block)
    inits = [numpy_helper.from_array(packed, "model.layers.0.mlp.down_proj.qweight"),
             numpy_helper.from_array(scale, "model.layers.0.mlp.down_proj.scales")]
    inputs = ["A", "model.layers.0.mlp.down_proj.qweight", "model.layers.0.mlp.down_proj.scales"]
    if with_zp:
        inits.append(numpy_helper.from_array(zp, "model.layers.0.mlp.down_proj.qzeros"))
        inputs.append("model.layers.0.mlp.down_proj.qzeros")
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft",
                            name="/model/layers.0/mlp/down_proj/MatMulNBits",
                            K=k, N=n, bits=4, block_size=block)
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["batch", "seq", k])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", "seq", n])
    g = helper.make_graph([node], "nbits", [a], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                               helper.make_opsetid("com.microsoft", 1)],
                             ir_version=8)


def main():
    rng = np.random.default_rng(0)
    failures = 0
    for n, k, block, with_zp in [(16, 64, 32, True), (24, 128, 64, False), (8, 96, 32, True)]:
        m = model(n, k, block, with_zp, seed=n + k)
        for shape in [(1, 3, k), (2, 5, k)]:
            a = rng.standard_normal(shape).astype(np.float32)
            ok, msg = qopt_check.compare(m, [a], rtol=1e-4, atol=1e-5)
            print(f"MatMulNBits N={n} K={k} block={block} zp={with_zp} A={shape}: "
                  f"{'ok' if ok else 'MISMATCH ' + msg}")
            failures += not ok
    print(f"matmulnbits: {6 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
