"""Real Hugging Face models (tiny, randomly initialised configs; nothing is
downloaded from the hub) exported to ONNX by both torch exporters, with
torch's own fp32 reference outputs at several input shapes.

Regenerate (from the repository root; needs torch, transformers, onnx,
onnxruntime, onnxscript and numpy -- none of which CI installs):

  python3 -m venv /work/fixtures-venv
  /work/fixtures-venv/bin/pip install torch transformers onnx onnxruntime onnxscript numpy
  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/real/make_real_exports.py

  # only some architectures / exporters:
  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/real/make_real_exports.py \
      --only llama,bert --exporters dynamo

For every (architecture, exporter) pair this writes test/e2e/real/<arch>-<exporter>/:
  model.onnx     single self-contained file (no external data); node doc strings
                 and metadata_props other than the module path (name_scopes,
                 class_hierarchy, namespace) are removed
  reference.npz  case{k}.<graph input name>, case{k}.<graph output name> and, for
                 padded cases, case{k}.<output>.valid (bool, [batch, seq]: the
                 positions whose attention_mask is 1; only those are meaningful)
  meta.json      versions, opset, I/O names and shapes, op histogram, per-case
                 shapes and onnxruntime-vs-torch max relative errors
and test/e2e/real/index.json summarising all pairs (failures included).
Output is deterministic apart from exporter-internal naming.
"""
import argparse
import collections
import hashlib
import json
import os
import shutil
import sys
import tempfile
import traceback
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from torch.export import Dim  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
TS_OPSET = 17
REL_TOL = 1e-4
SEQ_MAX = 64  # max_position_embeddings of the tiny configs
VOCAB = 128

# Shapes used for the export itself (different from each other and not 1 so
# that torch.export does not specialise them).
EXPORT_BATCH, EXPORT_SEQ, EXPORT_ENC_SEQ, EXPORT_IMG_BATCH = 2, 10, 6, 3


# --------------------------------------------------------------------------
# Wrappers: plain tensors in, a tuple of plain tensors out.


class CausalLM(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return (self.m(input_ids=input_ids, attention_mask=attention_mask,
                       use_cache=False, return_dict=False)[0],)


class Encoder(torch.nn.Module):
    """Returns last_hidden_state."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return (self.m(input_ids=input_ids, attention_mask=attention_mask,
                       return_dict=False)[0],)


class EncoderTT(torch.nn.Module):
    """Returns last_hidden_state (BERT: with token_type_ids)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask, token_type_ids):
        return (self.m(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=token_type_ids, return_dict=False)[0],)


class T5Decoder(torch.nn.Module):
    """T5ForConditionalGeneration's decoder + lm_head (no cache)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask):
        h = self.m.decoder(input_ids=decoder_input_ids,
                           encoder_hidden_states=encoder_hidden_states,
                           encoder_attention_mask=encoder_attention_mask,
                           use_cache=False, return_dict=False)[0]
        if self.m.config.scale_decoder_outputs:
            h = h * (self.m.model_dim ** -0.5)
        return (self.m.lm_head(h),)


class Features(torch.nn.Module):
    """Whisper encoder: input_features -> last_hidden_state."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_features):
        return (self.m(input_features, return_dict=False)[0],)


class Pixels(torch.nn.Module):
    """Vision models: pixel_values -> all outputs of the HF model (tuple)."""

    def __init__(self, m, n_out):
        super().__init__()
        self.m, self.n_out = m, n_out

    def forward(self, pixel_values):
        out = self.m(pixel_values=pixel_values, return_dict=False)
        return tuple(out[: self.n_out])


# --------------------------------------------------------------------------
# Tiny configs.

def _llama_like(cfg_cls, **kw):
    base = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=SEQ_MAX)
    base.update(kw)
    return cfg_cls(**base)


def build(arch):
    T = transformers
    if arch == "llama":
        cfg = _llama_like(T.LlamaConfig)
        return cfg, CausalLM(T.LlamaForCausalLM(cfg)), "causal"
    if arch == "mistral":
        cfg = _llama_like(T.MistralConfig, sliding_window=4)
        return cfg, CausalLM(T.MistralForCausalLM(cfg)), "causal"
    if arch == "qwen2":
        cfg = _llama_like(T.Qwen2Config)
        return cfg, CausalLM(T.Qwen2ForCausalLM(cfg)), "causal"
    if arch == "gemma":
        cfg = _llama_like(T.GemmaConfig, num_key_value_heads=1, head_dim=8,
                          pad_token_id=0, eos_token_id=1, bos_token_id=2)
        return cfg, CausalLM(T.GemmaForCausalLM(cfg)), "causal"
    if arch == "phi3":
        cfg = _llama_like(T.Phi3Config, original_max_position_embeddings=SEQ_MAX,
                          pad_token_id=0, bos_token_id=1, eos_token_id=2)
        return cfg, CausalLM(T.Phi3ForCausalLM(cfg)), "causal"
    if arch == "gpt2":
        cfg = T.GPT2Config(vocab_size=VOCAB, n_positions=SEQ_MAX, n_embd=32, n_layer=2,
                           n_head=4, n_inner=64, bos_token_id=0, eos_token_id=0)
        return cfg, CausalLM(T.GPT2LMHeadModel(cfg)), "causal"
    if arch == "bert":
        cfg = T.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64,
                           max_position_embeddings=SEQ_MAX, type_vocab_size=2, pad_token_id=0)
        return cfg, EncoderTT(T.BertModel(cfg, add_pooling_layer=False)), "encoder"
    if arch == "roberta":
        cfg = T.RobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64,
                              max_position_embeddings=SEQ_MAX + 2, type_vocab_size=1,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2)
        return cfg, Encoder(T.RobertaModel(cfg, add_pooling_layer=False)), "encoder"
    if arch == "distilbert":
        cfg = T.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4,
                                 hidden_dim=64, max_position_embeddings=SEQ_MAX, pad_token_id=0)
        return cfg, Encoder(T.DistilBertModel(cfg)), "encoder"
    if arch in ("t5-encoder", "t5-decoder"):
        cfg = T.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                         num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
                         relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1,
                         decoder_start_token_id=0)
        if arch == "t5-encoder":
            return cfg, Encoder(T.T5EncoderModel(cfg)), "encoder"
        return cfg, T5Decoder(T.T5ForConditionalGeneration(cfg)), "t5dec"
    if arch == "whisper-encoder":
        cfg = T.WhisperConfig(vocab_size=VOCAB, num_mel_bins=8, d_model=32, encoder_layers=2,
                              encoder_attention_heads=4, decoder_layers=2,
                              decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                              max_source_positions=16, max_target_positions=32,
                              pad_token_id=0, bos_token_id=1, eos_token_id=2,
                              decoder_start_token_id=1, suppress_tokens=None,
                              begin_suppress_tokens=None)
        return cfg, Features(T.WhisperModel(cfg).get_encoder()), "audio"
    if arch == "vit":
        cfg = T.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32,
                          num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        return cfg, Pixels(T.ViTModel(cfg), 2), "image"  # last_hidden_state, pooler_output
    if arch == "resnet":
        cfg = T.ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[32, 64],
                             depths=[1, 1], layer_type="bottleneck", num_labels=10)
        return cfg, Pixels(T.ResNetForImageClassification(cfg), 1), "image"  # logits
    raise ValueError(arch)


ARCHS = ["llama", "mistral", "qwen2", "gemma", "phi3", "gpt2", "bert", "roberta",
         "distilbert", "t5-encoder", "t5-decoder", "whisper-encoder", "vit", "resnet"]
HF_CLASS = {
    "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
    "gemma": "GemmaForCausalLM", "phi3": "Phi3ForCausalLM", "gpt2": "GPT2LMHeadModel",
    "bert": "BertModel(add_pooling_layer=False)", "roberta": "RobertaModel(add_pooling_layer=False)",
    "distilbert": "DistilBertModel", "t5-encoder": "T5EncoderModel",
    "t5-decoder": "T5ForConditionalGeneration (decoder + lm_head)",
    "whisper-encoder": "WhisperModel.get_encoder()", "vit": "ViTModel",
    "resnet": "ResNetForImageClassification",
}


# --------------------------------------------------------------------------
# Inputs.

def input_spec(kind, arch, model):
    """(input names, output names, {name: {axis: dim name}} for every input/output)."""
    if kind in ("causal", "encoder"):
        ins = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else [])
        outs = ["logits"] if kind == "causal" else ["last_hidden_state"]
        dyn = {n: {0: "batch", 1: "seq"} for n in ins + outs}
    elif kind == "t5dec":
        ins = ["decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask"]
        outs = ["logits"]
        dyn = {"decoder_input_ids": {0: "batch", 1: "dec_seq"},
               "encoder_hidden_states": {0: "batch", 1: "enc_seq"},
               "encoder_attention_mask": {0: "batch", 1: "enc_seq"},
               "logits": {0: "batch", 1: "dec_seq"}}
    elif kind == "audio":
        ins, outs = ["input_features"], ["last_hidden_state"]
        dyn = {n: {0: "batch"} for n in ins + outs}
    else:
        ins = ["pixel_values"]
        outs = ["last_hidden_state", "pooler_output"] if arch == "vit" else ["logits"]
        dyn = {n: {0: "batch"} for n in ins + outs}
    return ins, outs, dyn


def pad_id(cfg):
    p = getattr(cfg, "pad_token_id", None)
    return 0 if p is None else int(p)


def seq_inputs(arch, cfg, batch, seq, pad, left, gen):
    """input_ids/attention_mask[/token_type_ids]; row 1 (if any) has `pad` padding tokens."""
    ids = torch.randint(0, VOCAB, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    if pad:
        if left:
            mask[1, :pad] = 0
        else:
            mask[1, seq - pad:] = 0
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id(cfg)))
    d = {"input_ids": ids, "attention_mask": mask}
    if arch == "bert":
        tt = torch.zeros(batch, seq, dtype=torch.int64)
        tt[:, seq // 2:] = 1
        d["token_type_ids"] = tt * mask
    return d


def t5dec_inputs(model, batch, dec, enc, pad, gen):
    enc_ids = torch.randint(2, VOCAB, (batch, enc), generator=gen)
    enc_mask = torch.ones(batch, enc, dtype=torch.int64)
    if pad:
        enc_mask[1, enc - pad:] = 0
        enc_ids = enc_ids * enc_mask
    with torch.no_grad():
        hs = model.m.encoder(input_ids=enc_ids, attention_mask=enc_mask, return_dict=False)[0]
    return {"decoder_input_ids": torch.randint(0, VOCAB, (batch, dec), generator=gen),
            "encoder_hidden_states": hs.contiguous(), "encoder_attention_mask": enc_mask}


def make_cases(kind, arch, cfg, model):
    """List of (description, {input: tensor}, valid mask or None)."""
    gen = torch.Generator().manual_seed(1234)
    cases = []
    if kind in ("causal", "encoder"):
        left = kind == "causal"
        side = "left" if left else "right"
        for b, s, pad in [(1, 1, 0), (1, 7, 0), (2, 5, 2), (1, 12, 0), (2, 12, 5)]:
            d = seq_inputs(arch, cfg, b, s, pad, left, gen)
            desc = f"batch={b} seq={s}" + (f", row 1 {side}-padded by {pad}" if pad else "")
            cases.append((desc, d, d["attention_mask"].bool() if pad else None))
    elif kind == "t5dec":
        for b, dec, enc, pad in [(1, 1, 7, 0), (1, 7, 5, 0), (2, 5, 6, 2), (1, 12, 3, 0),
                                 (2, 12, 9, 4)]:
            d = t5dec_inputs(model, b, dec, enc, pad, gen)
            desc = f"batch={b} dec_seq={dec} enc_seq={enc}" + (
                f", encoder row 1 right-padded by {pad}" if pad else "")
            cases.append((desc, d, None))
    elif kind == "audio":
        for b in (1, 2):
            x = torch.randn(b, cfg.num_mel_bins, 2 * cfg.max_source_positions, generator=gen)
            cases.append((f"batch={b}", {"input_features": x}, None))
    else:
        for b in (1, 2):
            x = torch.randn(b, 3, 32, 32, generator=gen)
            cases.append((f"batch={b}", {"pixel_values": x}, None))
    return cases


def export_example(kind, arch, cfg, model):
    gen = torch.Generator().manual_seed(99)
    if kind in ("causal", "encoder"):
        return seq_inputs(arch, cfg, EXPORT_BATCH, EXPORT_SEQ, 3, kind == "causal", gen)
    if kind == "t5dec":
        return t5dec_inputs(model, EXPORT_BATCH, EXPORT_SEQ, EXPORT_ENC_SEQ, 2, gen)
    if kind == "audio":
        return {"input_features": torch.randn(EXPORT_IMG_BATCH, cfg.num_mel_bins,
                                              2 * cfg.max_source_positions, generator=gen)}
    return {"pixel_values": torch.randn(EXPORT_IMG_BATCH, 3, 32, 32, generator=gen)}


# --------------------------------------------------------------------------
# Export.

def export(model, example, ins, outs, dyn, exporter, path):
    args = tuple(example[n] for n in ins)
    if exporter == "torchscript":
        torch.onnx.export(model, args, path, dynamo=False, opset_version=TS_OPSET,
                          input_names=ins, output_names=outs, dynamic_axes=dyn,
                          do_constant_folding=True)
    else:
        dims = {}

        def dim(name):
            if name not in dims:
                dims[name] = Dim(name, min=1, max=SEQ_MAX if "seq" in name else 64)
            return dims[name]

        shapes = {n: {a: dim(d) for a, d in dyn[n].items()} for n in ins}
        torch.onnx.export(model, args, path, dynamo=True, input_names=ins,
                          output_names=outs, dynamic_shapes=shapes, verbose=False)


# Node metadata worth keeping: the module path each node came from (what
# PEFT names layers by); stack traces and FX dumps only hold local paths.
KEEP_METADATA = ("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy",
                 "namespace")


def strip(m):
    """Remove source locations (doc strings, stack traces) from nodes."""
    def graph(g):
        g.doc_string = ""
        for n in g.node:
            n.doc_string = ""
            kept = [(p.key, p.value) for p in n.metadata_props if p.key in KEEP_METADATA]
            del n.metadata_props[:]
            for key, value in kept:
                n.metadata_props.add(key=key, value=value)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    graph(a.g)
                for sg in a.graphs:
                    graph(sg)
        for v in list(g.value_info) + list(g.input) + list(g.output) + list(g.initializer):
            del v.metadata_props[:]
    graph(m.graph)
    for f in m.functions:
        for n in f.node:
            n.doc_string = ""
            del n.metadata_props[:]
    m.doc_string = ""


def op_histogram(m):
    h = collections.Counter()

    def graph(g):
        for n in g.node:
            h[f"{n.domain or 'ai.onnx'}::{n.op_type}"] += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    graph(a.g)
                for sg in a.graphs:
                    graph(sg)
    graph(m.graph)
    for f in m.functions:
        for n in f.node:
            h[f"{n.domain or 'ai.onnx'}::{n.op_type}"] += 1
    return dict(sorted(h.items()))


def vi_desc(v):
    t = v.type.tensor_type
    shape = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value")
                                                          else None) for d in t.shape.dim]
    return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
            "shape": shape}


def rel_err(ref, got, valid):
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if valid is not None:
        ref, got = ref[valid], got[valid]
    if not np.all(np.isfinite(ref)) or not np.all(np.isfinite(got)):
        return None
    denom = np.max(np.abs(ref)) if ref.size else 0.0
    diff = np.max(np.abs(got - ref)) if ref.size else 0.0
    return float(diff / denom) if denom > 0 else float(diff)


def run_pair(arch, exporter, versions):
    folder = f"{arch}-{exporter}"
    out_dir = os.path.join(HERE, folder)
    entry = {"folder": folder, "arch": arch, "exporter": exporter}
    torch.manual_seed(0)
    cfg, model, kind = build(arch)
    model.eval()
    ins, outs, dyn = input_spec(kind, arch, model)
    example = export_example(kind, arch, cfg, model)

    tmp = tempfile.mkdtemp(prefix="qopt-real-")
    try:
        raw = os.path.join(tmp, "model.onnx")
        try:
            with torch.no_grad():
                export(model, example, ins, outs, dyn, exporter, raw)
            m = onnx.load(raw)  # pulls in external data written next to it
        except Exception as e:  # record and go on
            tb = traceback.format_exc()
            entry["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:400]}"
            entry["traceback_tail"] = tb.strip().splitlines()[-12:]
            if os.path.isdir(out_dir):
                shutil.rmtree(out_dir)
            return entry
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    strip(m)
    onnx.checker.check_model(m)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    path = os.path.join(out_dir, "model.onnx")
    onnx.save(m, path, save_as_external_data=False)
    m = onnx.load(path)
    assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in m.graph.initializer)

    g_ins = [vi_desc(v) for v in m.graph.input]
    g_outs = [vi_desc(v) for v in m.graph.output]
    # Are the dynamic axes really symbolic in the saved file?
    dyn_problems = []
    for v in g_ins:
        for axis, name in dyn.get(v["name"], {}).items():
            if not isinstance(v["shape"][axis], str):
                dyn_problems.append(f"{v['name']} axis {axis} ({name}) is {v['shape'][axis]}")
    missing = [n for n in (v["name"] for v in g_ins) if n not in ins]
    if missing:
        raise RuntimeError(f"{folder}: unexpected graph inputs {missing}")

    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    meta = {
        "architecture": arch, "hf_class": HF_CLASS[arch], "kind": kind, "exporter": exporter,
        "opset": opset,
        "opset_imports": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
        "ir_version": m.ir_version, "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "versions": versions,
        "export_example_shapes": {n: list(example[n].shape) for n in ins},
        "inputs": g_ins, "outputs": g_outs,
        "dynamic_axes": {n: {str(a): d for a, d in ax.items()} for n, ax in dyn.items()},
        "dynamic_axes_ok": not dyn_problems,
        "op_histogram": op_histogram(m),
        "num_nodes": len(m.graph.node), "num_initializers": len(m.graph.initializer),
        "model_bytes": os.path.getsize(path),
        "model_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
        "stripped": "node doc_string and metadata_props other than name_scopes / class_hierarchy / namespace removed after export",
        "config": {k: v for k, v in cfg.to_diff_dict().items()
                   if k not in ("transformers_version", "architectures", "torch_dtype", "dtype")},
        "cases": [],
    }
    if dyn_problems:
        meta["dynamic_axes_problems"] = dyn_problems

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        sess = None
        meta["ort_error"] = f"{type(e).__name__}: {str(e).strip()[:600]}"

    arrays = {}
    worst = 0.0
    for k, (desc, inputs, valid) in enumerate(make_cases(kind, arch, cfg, model)):
        with torch.no_grad():
            ref = model(*[inputs[n] for n in ins])
        ref = [r.detach().float().numpy() for r in ref]
        feeds = {v["name"]: inputs[v["name"]].numpy() for v in g_ins}
        for n, a in feeds.items():
            arrays[f"case{k}.{n}"] = a
        case = {"name": f"case{k}", "description": desc,
                "input_shapes": {n: list(a.shape) for n, a in feeds.items()},
                "output_shapes": {}, "max_rel_err": {}, "ort_mismatch": False}
        if valid is not None:
            case["valid_mask"] = True
            case["max_rel_err_all_positions"] = {}
        if any(not np.all(np.isfinite(r)) for r in ref):
            case["torch_nonfinite"] = True
        got = None
        if sess is not None:
            try:
                got = sess.run([v["name"] for v in g_outs], feeds)
            except Exception as e:
                case["ort_error"] = f"{type(e).__name__}: {str(e).strip()[:600]}"
                case["ort_mismatch"] = True
        for j, v in enumerate(g_outs):
            if j >= len(ref):
                continue
            name = v["name"]
            arrays[f"case{k}.{name}"] = ref[j]
            case["output_shapes"][name] = list(ref[j].shape)
            vm = None
            if valid is not None:
                vm = valid.numpy()
                arrays[f"case{k}.{name}.valid"] = vm
            if got is None:
                continue
            if list(got[j].shape) != list(ref[j].shape):
                case["ort_mismatch"] = True
                case.setdefault("ort_shape", {})[name] = list(got[j].shape)
                case["max_rel_err"][name] = None
                continue
            e = rel_err(ref[j], got[j], vm)
            case["max_rel_err"][name] = e
            if valid is not None:
                case["max_rel_err_all_positions"][name] = rel_err(ref[j], got[j], None)
            if e is None or e > REL_TOL:
                case["ort_mismatch"] = True
            if e is not None:
                worst = max(worst, e)
        meta["cases"].append(case)

    np.savez_compressed(os.path.join(out_dir, "reference.npz"), **arrays)
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False)
        f.write("\n")
    entry.update({"opset": opset, "model_bytes": meta["model_bytes"],
                  "folder_bytes": sum(os.path.getsize(os.path.join(out_dir, f))
                                      for f in os.listdir(out_dir)),
                  "num_cases": len(meta["cases"]), "max_rel_err": worst,
                  "ort_mismatch": any(c["ort_mismatch"] for c in meta["cases"]),
                  "dynamic_axes_ok": meta["dynamic_axes_ok"]})
    if "ort_error" in meta:
        entry["ort_error"] = meta["ort_error"]
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated architectures (default: all)")
    ap.add_argument("--exporters", default="torchscript,dynamo")
    a = ap.parse_args()
    archs = a.only.split(",") if a.only else ARCHS
    exporters = a.exporters.split(",")
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "onnx": onnx.__version__,
                "onnxruntime": ort.__version__, "numpy": np.__version__}
    try:
        import onnxscript
        versions["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass

    index_path = os.path.join(HERE, "index.json")
    old = {}
    if os.path.exists(index_path):
        for e in json.load(open(index_path))["models"]:
            old[e["folder"]] = e
    for arch in archs:
        for exporter in exporters:
            print(f"== {arch} / {exporter}", flush=True)
            e = run_pair(arch, exporter, versions)
            old[e["folder"]] = e
            print("   " + json.dumps({k: v for k, v in e.items() if k != "traceback_tail"}),
                  flush=True)
    order = {f"{ar}-{ex}": i for i, (ar, ex) in
             enumerate((ar, ex) for ar in ARCHS for ex in ("torchscript", "dynamo"))}
    models = sorted(old.values(), key=lambda e: order.get(e["folder"], 1 << 30))
    with open(index_path, "w") as f:
        json.dump({"versions": versions, "rel_tolerance": REL_TOL, "models": models}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
