"""qopt-load-adapter on a small module, with adapters written here in
PEFT's format (adapter_config.json + a safetensors file): the loaded
parameters and lora ops, then one broken adapter per error the pass
reports. Prints one line per case (`<case>: <first error line>`)."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ["QOPT_BIN"]
MODULE = """
func.func @m(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>, %wk: tensor<6x8xf32>) -> (tensor<?x4xf32>, tensor<?x6xf32>) {
  %q = qopt.linear %x, %w module "model.layers.0.q_proj" : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %k = qopt.linear %x, %wk module "model.layers.0.k_proj" : (tensor<?x8xf32>, tensor<6x8xf32>) -> tensor<?x6xf32>
  return %q, %k : tensor<?x4xf32>, tensor<?x6xf32>
}
"""
# PEFT's lora.Embedding: a table of 10 ids x 4 beside q_proj.
MODULE_EMB = """
func.func @m(%ids: tensor<?xi64>, %e: tensor<10x4xf32>, %w: tensor<4x4xf32>) -> tensor<?x4xf32> {
  %h = qopt.embedding %ids, %e module "model.embed_tokens" : (tensor<?xi64>, tensor<10x4xf32>) -> tensor<?x4xf32>
  %q = qopt.linear %h, %w module "model.layers.0.q_proj" : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  return %q : tensor<?x4xf32>
}
"""
CONFIG = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
          "bias": "none", "modules_to_save": None, "use_dora": False, "use_rslora": False,
          "lora_dropout": 0.0, "task_type": None, "inference_mode": True,
          "fan_in_fan_out": False, "init_lora_weights": True, "lora_bias": False}
P = "base_model.model.model.layers.0."


def safetensors(tensors, dtype="F32"):
    header, blob = {}, b""
    for name, a in tensors.items():
        raw = a.astype({"F32": np.float32, "F16": np.float16}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


def good():
    return {P + "q_proj.lora_A.weight": np.arange(16).reshape(2, 8) / 16,
            P + "q_proj.lora_B.weight": np.ones((4, 2))}


def run(name, config=CONFIG, tensors=None, raw=None, extra="", show_ir=False, module=MODULE):
    with tempfile.TemporaryDirectory() as d:
        if config is not None:
            text = config if isinstance(config, str) else json.dumps(config)
            open(os.path.join(d, "adapter_config.json"), "w").write(text)
        if raw is not None or tensors is not None:
            data = raw if raw is not None else safetensors(tensors)
            open(os.path.join(d, "adapter_model.safetensors"), "wb").write(data)
        r = subprocess.run([os.path.join(BIN, "qopt-opt"), "-",
                            f"--qopt-load-adapter=adapter={d} {extra}"],
                           input=module, capture_output=True, text=True)
        if show_ir:
            print(f"{name}: rc {r.returncode}")
            for line in r.stdout.splitlines():
                if ("qopt.param" in line or "qopt.lora" in line or '.weight: "' in line
                        or '_A: "' in line or '_B: "' in line):
                    print("  " + line.strip().replace(d, "DIR"))
            return
        lines = [l for l in r.stderr.splitlines() if "error:" in l]
        first = lines[0].split("error: ", 1)[1].replace(d, "DIR") if lines else "NO ERROR"
        print(f"{name}: {first}" + ("" if r.returncode else " (exit 0!)"))


run("good", tensors=good(), show_ir=True)
run("good f16 trainable", tensors=None, raw=safetensors(good(), "F16"), extra="trainable=true",
    show_ir=True)
run("no folder", config=None, tensors=None)
run("not json", config="{r: 2", tensors=good())
run("other peft type", config={**CONFIG, "peft_type": "IA3"}, tensors=good())
run("bias", config={**CONFIG, "bias": "all"}, tensors=good())
run("modules to save", config={**CONFIG, "modules_to_save": ["classifier"]}, tensors=good())
run("unknown key", config={**CONFIG, "use_future_thing": True}, tensors=good())
run("null targets", config={**CONFIG, "target_modules": None}, tensors=good())
run("bad regex", config={**CONFIG, "target_modules": ".*(?=q)"}, tensors=good())
run("pissa adapter, weight given at run time", config={**CONFIG, "init_lora_weights": "pissa"},
    tensors=good())
run("pissa_niter adapter", config={**CONFIG, "init_lora_weights": "pissa_niter_4"},
    tensors=good())
run("corda adapter", config={**CONFIG, "init_lora_weights": "corda"}, tensors=good())
run("loftq adapter of 8 bits", config={**CONFIG, "init_lora_weights": "loftq",
                                       "loftq_config": {"loftq_bits": 8, "loftq_iter": 1}},
    tensors=good())
run("bad loftq config", config={**CONFIG, "init_lora_weights": "loftq",
                                "loftq_config": {"loftq_bits": 4, "loftq_steps": 1}},
    tensors=good())
run("ambiguous rank pattern", config={**CONFIG, "rank_pattern": {"q_proj": 2, "layers.0.q_proj": 3}},
    tensors=good())
run("no weights file", tensors=None)
run("truncated", raw=safetensors(good())[:-10])
run("header too long", raw=struct.pack("<Q", 1 << 40) + b"{}")
run("not an adapter tensor", tensors={**good(), "model.layers.0.q_proj.weight": np.ones((4, 8))})
run("embedding adapter", tensors={**good(), P + "embed.lora_embedding_A": np.ones((2, 8))})
run("unknown module", tensors={**good(), P + "o_proj.lora_A.weight": np.ones((2, 8)),
                                P + "o_proj.lora_B.weight": np.ones((4, 2))})
run("targeted without weights", config={**CONFIG, "target_modules": ["q_proj", "k_proj"]},
    tensors=good())
run("weights not targeted", tensors={**good(), P + "k_proj.lora_A.weight": np.ones((2, 8)),
                                     P + "k_proj.lora_B.weight": np.ones((6, 2))})
run("rank", config={**CONFIG, "r": 4}, tensors=good())
run("A shape", tensors={**good(), P + "q_proj.lora_A.weight": np.ones((2, 7))})
run("B shape", tensors={**good(), P + "q_proj.lora_B.weight": np.ones((5, 2))})
run("missing B", tensors={P + "q_proj.lora_A.weight": np.ones((2, 8))})
run("dora without magnitude", config={**CONFIG, "use_dora": True}, tensors=good())
run("magnitude without dora", tensors={**good(), P + "q_proj.lora_magnitude_vector": np.ones(4)})

# Embeddings: lora_embedding_A (r x V) and lora_embedding_B (D x r).
E = "base_model.model.model.embed_tokens."
ECONFIG = {**CONFIG, "target_modules": ["embed_tokens", "q_proj"], "rank_pattern": {"embed_tokens": 1},
           "use_rslora": True}


def egood():
    return {E + "lora_embedding_A": np.arange(10).reshape(1, 10) / 8,
            E + "lora_embedding_B": np.full((4, 1), 0.5),
            P + "q_proj.lora_A.weight": np.ones((2, 4)), P + "q_proj.lora_B.weight": np.ones((4, 2))}


run("embedding good", config=ECONFIG, tensors=egood(), module=MODULE_EMB, show_ir=True)
run("embedding A shape", config=ECONFIG, module=MODULE_EMB,
    tensors={**egood(), E + "lora_embedding_A": np.ones((1, 9))})
run("embedding B shape", config=ECONFIG, module=MODULE_EMB,
    tensors={**egood(), E + "lora_embedding_B": np.ones((1, 4))})
run("embedding rank", config={**ECONFIG, "rank_pattern": {}}, tensors=egood(), module=MODULE_EMB)
run("embedding missing B", config=ECONFIG, module=MODULE_EMB,
    tensors={k: v for k, v in egood().items() if not k.endswith("lora_embedding_B")})
run("embedding targeted without weights", config=ECONFIG, module=MODULE_EMB,
    tensors={k: v for k, v in egood().items() if "embed_tokens" not in k})
run("embedding weights not targeted", config={**ECONFIG, "target_modules": ["q_proj"]},
    tensors=egood(), module=MODULE_EMB)
run("embedding weights on a linear layer", config=ECONFIG, module=MODULE_EMB,
    tensors={**egood(), P + "q_proj.lora_embedding_A": np.ones((2, 4))})
run("linear weights on an embedding", config=ECONFIG, module=MODULE_EMB,
    tensors={**egood(), E + "lora_A.weight": np.ones((1, 10))})
run("embedding with dora", config={**ECONFIG, "use_dora": True}, module=MODULE_EMB,
    tensors={**egood(), E + "lora_magnitude_vector": np.ones(4),
             P + "q_proj.lora_magnitude_vector": np.ones(4)})

# RandLoRA (peft_type RANDLORA): shared bases saved with every layer, per-layer
# lambda / gamma. Largest layer 6 x 8: randlora_A 2x1x6, randlora_B 8x3x2.
RCONFIG = {"peft_type": "RANDLORA", "r": 2, "randlora_alpha": 4, "randlora_dropout": 0.0,
           "target_modules": ["q_proj", "k_proj"], "bias": "none", "modules_to_save": None,
           "projection_prng_key": 0, "save_projection": True, "sparse": False,
           "very_sparse": False, "init_weights": True, "fan_in_fan_out": False,
           "task_type": None, "inference_mode": True}
BA = np.arange(12).reshape(2, 1, 6) / 8
BB = np.arange(48).reshape(8, 3, 2) / 16


def rgood():
    t = {}
    for mod, nb, m in (("q_proj", 2, 4), ("k_proj", 3, 6)):
        t[P + mod + ".randlora_A"] = BA
        t[P + mod + ".randlora_B"] = BB
        t[P + mod + ".randlora_lambda"] = np.full((2, nb), 0.5)
        t[P + mod + ".randlora_gamma"] = np.full((nb, m), 0.25)
    return t


run("randlora good", config=RCONFIG, tensors=rgood(), show_ir=True)
run("randlora without bases", config={**RCONFIG, "save_projection": False},
    tensors={k: v for k, v in rgood().items() if "lambda" in k or "gamma" in k})
run("randlora bases differ", config=RCONFIG, tensors={**rgood(), P + "k_proj.randlora_A": BA + 1})
run("randlora A shape", config=RCONFIG,
    tensors={**rgood(), P + "q_proj.randlora_A": np.ones((2, 1, 3)),
             P + "k_proj.randlora_A": np.ones((2, 1, 3))})
run("randlora B shape", config=RCONFIG,
    tensors={**rgood(), P + "q_proj.randlora_B": np.ones((8, 1, 2)),
             P + "k_proj.randlora_B": np.ones((8, 1, 2))})
run("randlora lambda shape", config=RCONFIG, tensors={**rgood(), P + "q_proj.randlora_lambda": np.ones((2, 3))})
run("randlora gamma shape", config=RCONFIG, tensors={**rgood(), P + "q_proj.randlora_gamma": np.ones((2, 5))})
run("randlora missing gamma", config=RCONFIG,
    tensors={k: v for k, v in rgood().items() if not k.endswith("q_proj.randlora_gamma")})
run("randlora with lora weights", config=RCONFIG, tensors={**rgood(), **good()})
run("randlora config with a lora key", config={**RCONFIG, "use_dora": True}, tensors=rgood())
run("lora config with a randlora key", config={**CONFIG, "randlora_alpha": 4}, tensors=good())
run("lora config with randlora tensors", config=CONFIG,
    tensors={**good(), "base_model.randlora_A": BA, "base_model.randlora_B": BB})
run("randlora weights not targeted", config={**RCONFIG, "target_modules": ["q_proj"]}, tensors=rgood())
run("embedding with use_dora and no magnitude", config={**ECONFIG, "use_dora": True}, module=MODULE_EMB,
    tensors=egood())
