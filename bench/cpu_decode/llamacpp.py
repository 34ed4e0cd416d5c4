"""llama.cpp as a peer of `model_bench.py`: its `llama-bench` on the same
Llama-shaped model, quantized by its own `llama-quantize` to Q4_0 and Q8_0.

llama.cpp comes from llama-cpp-python's source distribution on PyPI (which
vendors it), built once into a cache folder with CMake (CPU only, native
instructions but no AMX, see build()); the model is written as GGUF with the gguf-py package that
ships in the same tree, from the torch model's own weights (Q and K
permuted as llama.cpp's converter does, a placeholder vocabulary: the
benchmark feeds token ids, no text). The output head gets the same type as
the other layers (`--output-tensor-type`), as qoptc's `--quantize-modules
'.*'` and onnxruntime's quantizer do.

`llama-bench` reports a prompt of n tokens (one batch: the prefill) and n
generated tokens (one at a time, with its KV cache); the one-token latency
is the generation time divided by n.
"""
import json
import os
import subprocess
import sys
import tarfile

VERSION = "0.3.36"  # llama-cpp-python; its vendor/llama.cpp is what runs


def build(cache):
    """Paths of llama-bench and llama-quantize, built in `cache` if needed."""
    os.makedirs(cache, exist_ok=True)
    src = os.path.join(cache, f"llama_cpp_python-{VERSION}", "vendor", "llama.cpp")
    if not os.path.isdir(src):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", f"llama-cpp-python=={VERSION}", "-d", cache], check=True)
        with tarfile.open(os.path.join(cache, f"llama_cpp_python-{VERSION}.tar.gz")) as t:
            t.extractall(cache, filter="data")
    # Native instructions without AMX: ggml's AMX matrix products crashed
    # (SIGSEGV in ggml_backend_amx_mul_mat) on the Xeon VM measured here,
    # and qopt does not use AMX either.
    out = os.path.join(cache, "build-native-noamx")
    noamx = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    tools = {name: os.path.join(out, "bin", name) for name in ("llama-bench", "llama-quantize")}
    if not all(os.path.exists(p) for p in tools.values()):
        subprocess.run(["cmake", "-S", src, "-B", out, "-DCMAKE_BUILD_TYPE=Release",
                        "-DGGML_NATIVE=ON", f"-DCMAKE_C_FLAGS={noamx}",
                        f"-DCMAKE_CXX_FLAGS={noamx}", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
                        "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                        "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", out, "-j", str(os.cpu_count() or 2), "--target",
                        *tools], check=True, stdout=subprocess.DEVNULL)
    return src, tools


def write_gguf(src, model, cfg, path):
    """The torch LlamaForCausalLM `model` (config `cfg`) as an f32 GGUF."""
    sys.path.insert(0, os.path.join(src, "gguf-py"))
    import gguf
    import numpy as np

    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    d, vocab = cfg.hidden_size, cfg.vocab_size

    def permute(w, n_head):  # llama.cpp's rotary layout for Q and K
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]) \
                .swapaxes(1, 2).reshape(w.shape)

    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(d)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(d // heads)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", 10000.0)))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>".encode() for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([gguf.TokenType.NORMAL] * vocab)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
        for g, h in names.items():
            t = sd[p + h + ".weight"]
            if g == "attn_q":
                t = permute(t, heads)
            elif g == "attn_k":
                t = permute(t, kv)
            w.add_tensor(f"blk.{i}.{g}.weight", np.ascontiguousarray(t))
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(tools, f32, out, qtype):
    """llama-quantize to `qtype` (Q4_0, Q8_0), the output head included."""
    subprocess.run([tools["llama-quantize"], "--output-tensor-type", qtype.lower(), f32, out,
                    qtype], check=True, capture_output=True)


def bench(tools, model, threads, prompt=128, gen=16, reps=5):
    """(prefill of `prompt` tokens, one generated token) in ms."""
    r = subprocess.run([tools["llama-bench"], "-m", model, "-t", str(threads), "-p", str(prompt),
                        "-n", str(gen), "-r", str(reps), "-o", "json"],
                       check=True, capture_output=True, text=True)
    rows = json.loads(r.stdout)
    pp = next(x for x in rows if x["n_prompt"] == prompt and x["n_gen"] == 0)
    tg = next(x for x in rows if x["n_gen"] == gen and x["n_prompt"] == 0)
    return pp["avg_ns"] / 1e6, tg["avg_ns"] / gen / 1e6
