"""Small BERT-, GPT-2-, LLaMA- and ResNet-shaped models built with onnx.helper, in the
shape real exporters write them (torch.onnx's Shape -> Gather -> Unsqueeze ->
Concat -> Reshape chains for dynamic batch and sequence, decomposed RMSNorm,
GELU from Erf or Tanh, causal masks from Trilu and Where, rotary embeddings
with rotate_half, SiLU, grouped-query attention with Expand), run through
qopt on the CPU and compared with onnxruntime.

  python models.py            # all models, two input shapes each
"""
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qopt_check  # noqa: E402

F = TensorProto.FLOAT


class Graph:
    """A tiny builder: every call adds a node and returns its output name."""

    def __init__(self, seed):
        self.nodes, self.inits, self.rng, self.n = [], [], np.random.default_rng(seed), 0
        self.decomposed_ln = False

    def op(self, op_type, *inputs, outputs=1, **attrs):
        self.n += 1
        names = [f"{op_type.lower()}_{self.n}_{i}" for i in range(outputs)]
        scope = attrs.pop("scope", "")
        self.nodes.append(helper.make_node(op_type, list(inputs), names,
                                           name=f"{scope}/{op_type}_{self.n}", **attrs))
        return names[0] if outputs == 1 else names

    def const(self, array, name=None):
        self.n += 1
        name = name or f"const_{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, name, *shape, scale=0.2):
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32), name)

    def i64(self, *values):
        return self.const(np.array(values, dtype=np.int64))

    def dim(self, x, axis):
        """Shape -> Gather -> Unsqueeze, as torch.onnx exports x.size(axis)."""
        s = self.op("Shape", x)
        g = self.op("Gather", s, self.const(np.array(axis, dtype=np.int64)), axis=0)
        return self.op("Unsqueeze", g, self.i64(0))

    def linear(self, x, name, k, n, bias=True):
        y = self.op("MatMul", x, self.weight(f"{name}.weight", k, n), scope=name)
        return self.op("Add", y, self.weight(f"{name}.bias", n), scope=name) if bias else y

    def layer_norm(self, x, name, d):
        if self.decomposed_ln:
            # As exporters wrote LayerNorm before opset 17:
            # (x - mean) / sqrt(mean((x - mean)^2) + eps) * gamma + beta.
            dev = self.op("Sub", x, self.op("ReduceMean", x, axes=[-1], keepdims=1))
            var = self.op("ReduceMean", self.op("Pow", dev, self.const(np.array(2.0, dtype=np.float32))),
                          axes=[-1], keepdims=1)
            normed = self.op("Div", dev, self.op("Sqrt", self.op(
                "Add", var, self.const(np.array(1e-5, dtype=np.float32)))))
            gamma = self.const(1 + 0.1 * self.rng.standard_normal(d).astype(np.float32), f"{name}.weight")
            return self.op("Add", self.op("Mul", normed, gamma), self.weight(f"{name}.bias", d, scale=0.1))
        return self.op("LayerNormalization", x,
                       self.const(1 + 0.1 * self.rng.standard_normal(d).astype(np.float32), f"{name}.weight"),
                       self.weight(f"{name}.bias", d, scale=0.1), axis=-1, epsilon=1e-5)

    def rms_norm(self, x, name, d, eps=1e-6):
        # Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul, as HF LlamaRMSNorm exports.
        p = self.op("Pow", x, self.const(np.array(2.0, dtype=np.float32)))
        m = self.op("ReduceMean", p, axes=[-1], keepdims=1)
        s = self.op("Sqrt", self.op("Add", m, self.const(np.array(eps, dtype=np.float32))))
        y = self.op("Div", x, s)
        return self.op("Mul", y, self.const(1 + 0.1 * self.rng.standard_normal(d).astype(np.float32),
                                            f"{name}.weight"))

    def split_heads(self, x, b, s, heads, hd):
        shape = self.op("Concat", b, s, self.i64(heads), self.i64(hd), axis=0)
        return self.op("Transpose", self.op("Reshape", x, shape), perm=[0, 2, 1, 3])

    def merge_heads(self, x, b, s, d):
        t = self.op("Transpose", x, perm=[0, 2, 1, 3])
        return self.op("Reshape", t, self.op("Concat", b, s, self.i64(d), axis=0))

    def attention(self, q, k, v, hd, mask_add=None, mask_where=None):
        kt = self.op("Transpose", k, perm=[0, 1, 3, 2])
        scores = self.op("Div", self.op("MatMul", q, kt),
                         self.const(np.array(np.sqrt(hd), dtype=np.float32)))
        if mask_add is not None:
            scores = self.op("Add", scores, mask_add)
        if mask_where is not None:
            scores = self.op("Where", mask_where, scores,
                             self.const(np.array(np.finfo(np.float32).min, dtype=np.float32)))
        return self.op("MatMul", self.op("Softmax", scores, axis=-1), v)

    def model(self, inputs, outputs, opset=17):
        g = helper.make_graph(self.nodes, "model", inputs, outputs, self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def bert(layers=2, d=32, heads=4, ffn=64, vocab=50, max_pos=16, decomposed_ln=False):
    g, hd = Graph(1), d // heads
    g.decomposed_ln = decomposed_ln
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])
    out = helper.make_tensor_value_info("last_hidden_state", F, ["batch", "seq", d])
    b, s = g.dim("input_ids", 0), g.dim("input_ids", 1)
    seq = g.op("Squeeze", s, g.i64(0))
    pos = g.op("Range", g.const(np.array(0, dtype=np.int64)), seq, g.const(np.array(1, dtype=np.int64)))
    x = g.op("Add", g.op("Gather", g.weight("embeddings.word_embeddings.weight", vocab, d), "input_ids"),
             g.op("Gather", g.weight("embeddings.position_embeddings.weight", max_pos, d), pos))
    x = g.layer_norm(x, "embeddings.LayerNorm", d)
    # (1 - mask) * min, broadcast over heads and query positions.
    m = g.op("Cast", g.op("Unsqueeze", "attention_mask", g.i64(1, 2)), to=F)
    m = g.op("Mul", g.op("Sub", g.const(np.array(1.0, dtype=np.float32)), m),
             g.const(np.array(-10000.0, dtype=np.float32)))
    for i in range(layers):
        p = f"encoder.layer.{i}"
        q = g.split_heads(g.linear(x, f"{p}.attention.self.query", d, d), b, s, heads, hd)
        k = g.split_heads(g.linear(x, f"{p}.attention.self.key", d, d), b, s, heads, hd)
        v = g.split_heads(g.linear(x, f"{p}.attention.self.value", d, d), b, s, heads, hd)
        a = g.merge_heads(g.attention(q, k, v, hd, mask_add=m), b, s, d)
        x = g.layer_norm(g.op("Add", g.linear(a, f"{p}.attention.output.dense", d, d), x),
                         f"{p}.attention.output.LayerNorm", d)
        h = g.linear(x, f"{p}.intermediate.dense", d, ffn)
        # GELU, erf form: x * 0.5 * (1 + erf(x / sqrt(2)))
        e = g.op("Erf", g.op("Div", h, g.const(np.array(np.sqrt(2.0), dtype=np.float32))))
        h = g.op("Mul", g.op("Mul", h, g.const(np.array(0.5, dtype=np.float32))),
                 g.op("Add", e, g.const(np.array(1.0, dtype=np.float32))))
        x = g.layer_norm(g.op("Add", g.linear(h, f"{p}.output.dense", ffn, d), x),
                         f"{p}.output.LayerNorm", d)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    return g.model([ids, mask], [out])


def gpt2(layers=2, d=32, heads=4, vocab=50, max_pos=16):
    g, hd = Graph(2), d // heads
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    out = helper.make_tensor_value_info("logits", F, ["batch", "seq", vocab])
    b, s = g.dim("input_ids", 0), g.dim("input_ids", 1)
    seq = g.op("Squeeze", s, g.i64(0))
    pos = g.op("Range", g.const(np.array(0, dtype=np.int64)), seq, g.const(np.array(1, dtype=np.int64)))
    wte = g.weight("transformer.wte.weight", vocab, d)
    x = g.op("Add", g.op("Gather", wte, "input_ids"),
             g.op("Gather", g.weight("transformer.wpe.weight", max_pos, d), pos))
    # Causal mask: lower-triangular ones of [seq, seq] from Trilu, as bool.
    ss = g.op("Concat", s, s, axis=0)
    ones = g.op("ConstantOfShape", ss, value=helper.make_tensor("one", F, [1], [1.0]))
    causal = g.op("Cast", g.op("Trilu", ones, upper=0), to=TensorProto.BOOL)
    for i in range(layers):
        p = f"transformer.h.{i}"
        h = g.layer_norm(x, f"{p}.ln_1", d)
        qkv = g.linear(h, f"{p}.attn.c_attn", d, 3 * d)
        q, k, v = g.op("Split", qkv, g.i64(d, d, d), axis=2, outputs=3)
        q, k, v = (g.split_heads(t, b, s, heads, hd) for t in (q, k, v))
        a = g.merge_heads(g.attention(q, k, v, hd, mask_where=causal), b, s, d)
        x = g.op("Add", x, g.linear(a, f"{p}.attn.c_proj", d, d))
        h = g.linear(g.layer_norm(x, f"{p}.ln_2", d), f"{p}.mlp.c_fc", d, 4 * d)
        # GELU, tanh form.
        c = g.op("Mul", g.op("Pow", h, g.const(np.array(3.0, dtype=np.float32))),
                 g.const(np.array(0.044715, dtype=np.float32)))
        t = g.op("Tanh", g.op("Mul", g.op("Add", h, c),
                              g.const(np.array(np.sqrt(2 / np.pi), dtype=np.float32))))
        h = g.op("Mul", g.op("Mul", h, g.const(np.array(0.5, dtype=np.float32))),
                 g.op("Add", t, g.const(np.array(1.0, dtype=np.float32))))
        x = g.op("Add", x, g.linear(h, f"{p}.mlp.c_proj", 4 * d, d))
    x = g.layer_norm(x, "transformer.ln_f", d)
    # Tied LM head: x @ wte^T.
    g.nodes.append(helper.make_node("MatMul", [x, g.op("Transpose", wte, perm=[1, 0])], ["logits"]))
    return g.model([ids], [out])


def llama(layers=2, d=32, heads=4, kv_heads=2, ffn=48, vocab=50, max_pos=16):
    g, hd = Graph(3), d // heads
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    out = helper.make_tensor_value_info("logits", F, ["batch", "seq", vocab])
    b, s = g.dim("input_ids", 0), g.dim("input_ids", 1)
    x = g.op("Gather", g.weight("model.embed_tokens.weight", vocab, d), "input_ids")
    # Rotary tables as constants, sliced to the sequence length.
    inv = 1.0 / (10000 ** (np.arange(0, hd, 2) / hd))
    ang = np.outer(np.arange(max_pos), inv)
    ang = np.concatenate([ang, ang], axis=-1).astype(np.float32)
    cos = g.op("Slice", g.const(np.cos(ang)), g.i64(0), s, g.i64(0))
    sin = g.op("Slice", g.const(np.sin(ang)), g.i64(0), s, g.i64(0))
    half = hd // 2

    def rotate(t):
        x1 = g.op("Slice", t, g.i64(0), g.i64(half), g.i64(-1))
        x2 = g.op("Slice", t, g.i64(half), g.i64(1 << 62), g.i64(-1))
        rot = g.op("Concat", g.op("Neg", x2), x1, axis=-1)
        return g.op("Add", g.op("Mul", t, cos), g.op("Mul", rot, sin))

    ss = g.op("Concat", s, s, axis=0)
    ones = g.op("ConstantOfShape", ss, value=helper.make_tensor("one", F, [1], [1.0]))
    causal = g.op("Cast", g.op("Trilu", ones, upper=0), to=TensorProto.BOOL)
    for i in range(layers):
        p = f"model.layers.{i}"
        h = g.rms_norm(x, f"{p}.input_layernorm", d)
        q = rotate(g.split_heads(g.linear(h, f"{p}.self_attn.q_proj", d, d, bias=False), b, s, heads, hd))
        k = rotate(g.split_heads(g.linear(h, f"{p}.self_attn.k_proj", d, kv_heads * hd, bias=False),
                                 b, s, kv_heads, hd))
        v = g.split_heads(g.linear(h, f"{p}.self_attn.v_proj", d, kv_heads * hd, bias=False),
                          b, s, kv_heads, hd)

        def repeat_kv(t):
            # [b, kv, s, hd] -> [b, kv, rep, s, hd] -> [b, heads, s, hd]
            e = g.op("Unsqueeze", t, g.i64(2))
            shape5 = g.op("Concat", b, g.i64(kv_heads), g.i64(heads // kv_heads), s, g.i64(hd), axis=0)
            shape4 = g.op("Concat", b, g.i64(heads), s, g.i64(hd), axis=0)
            return g.op("Reshape", g.op("Expand", e, shape5), shape4)

        a = g.merge_heads(g.attention(q, repeat_kv(k), repeat_kv(v), hd, mask_where=causal), b, s, d)
        x = g.op("Add", x, g.linear(a, f"{p}.self_attn.o_proj", d, d, bias=False))
        h = g.rms_norm(x, f"{p}.post_attention_layernorm", d)
        gate = g.linear(h, f"{p}.mlp.gate_proj", d, ffn, bias=False)
        up = g.linear(h, f"{p}.mlp.up_proj", d, ffn, bias=False)
        silu = g.op("Mul", gate, g.op("Sigmoid", gate))
        x = g.op("Add", x, g.linear(g.op("Mul", silu, up), f"{p}.mlp.down_proj", ffn, d, bias=False))
    x = g.rms_norm(x, "model.norm", d)
    g.nodes.append(helper.make_node("MatMul", [x, g.weight("lm_head.weight", d, vocab)], ["logits"]))
    return g.model([ids], [out])


def resnet(channels=8, classes=10):
    """A ResNet-shaped CNN: stem Conv+BatchNorm+Relu+MaxPool, one residual
    block (with a strided 1x1 projection), GlobalAveragePool, Flatten, Gemm."""
    g = Graph(4)
    x = helper.make_tensor_value_info("pixel_values", F, ["batch", 3, 16, 16])
    out = helper.make_tensor_value_info("logits", F, ["batch", classes])

    def conv_bn(x, name, cin, cout, k, stride, pad, relu=True):
        y = g.op("Conv", x, g.weight(f"{name}.conv.weight", cout, cin, k, k, scale=0.3),
                 kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        y = g.op("BatchNormalization", y,
                 g.const(1 + 0.1 * g.rng.standard_normal(cout).astype(np.float32)),
                 g.weight(f"{name}.bn.bias", cout, scale=0.1),
                 g.weight(f"{name}.bn.running_mean", cout, scale=0.1),
                 g.const((0.5 + g.rng.random(cout)).astype(np.float32)), epsilon=1e-5)
        return g.op("Relu", y) if relu else y

    h = conv_bn("pixel_values", "stem", 3, channels, 3, 1, 1)
    h = g.op("MaxPool", h, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    r = conv_bn(h, "layer1.0.conv1", channels, 2 * channels, 3, 2, 1)
    r = conv_bn(r, "layer1.0.conv2", 2 * channels, 2 * channels, 3, 1, 1, relu=False)
    skip = conv_bn(h, "layer1.0.downsample", channels, 2 * channels, 1, 2, 0, relu=False)
    h = g.op("Relu", g.op("Add", r, skip))
    h = g.op("Flatten", g.op("GlobalAveragePool", h), axis=1)
    g.nodes.append(helper.make_node("Gemm", [h, g.weight("fc.weight", classes, 2 * channels),
                                             g.weight("fc.bias", classes)], ["logits"], transB=1))
    return g.model([x], [out])


def main():
    rng = np.random.default_rng(0)
    failures = 0
    for name, build in [("bert", bert), ("bert-decomposed-ln", lambda: bert(decomposed_ln=True)),
                        ("gpt2", gpt2), ("llama", llama), ("resnet", resnet)]:
        model = build()
        onnx.checker.check_model(model)
        # One compiled library (qoptc) serves both sizes: batch and sequence
        # stay dynamic.
        tmp = tempfile.TemporaryDirectory()
        try:
            library = qopt_check.compile_model(model, tmp.name)
        except qopt_check.QOptError as e:
            print(f"{name}: COMPILE FAILED {e}")
            failures += 2
            continue
        for batch, seq in [(1, 5), (2, 7)]:
            ids = rng.integers(0, 50, size=(batch, seq), dtype=np.int64)
            inputs = [ids]
            if name == "resnet":
                inputs = [rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)]
            if name.startswith("bert"):
                mask = np.ones((batch, seq), dtype=np.int64)
                mask[-1, -2:] = 0
                inputs.append(mask)
            ok, msg = qopt_check.compare(model, inputs, rtol=1e-4, atol=1e-5, library=library)
            where = f"batch={batch}" + ("" if name == "resnet" else f" seq={seq}")
            print(f"{name} {where}: {'ok' if ok else 'MISMATCH ' + msg}")
            failures += not ok
        tmp.cleanup()
    print(f"models: {10 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
