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


def run(name, config=CONFIG, tensors=None, raw=None, extra="", show_ir=False):
    with tempfile.TemporaryDirectory() as d:
        if config is not None:
            text = config if isinstance(config, str) else json.dumps(config)
            open(os.path.join(d, "adapter_config.json"), "w").write(text)
        if raw is not None or tensors is not None:
            data = raw if raw is not None else safetensors(tensors)
            open(os.path.join(d, "adapter_model.safetensors"), "wb").write(data)
        r = subprocess.run([os.path.join(BIN, "qopt-opt"), "-",
                            f"--qopt-load-adapter=adapter={d} {extra}"],
                           input=MODULE, capture_output=True, text=True)
        if show_ir:
            print(f"{name}: rc {r.returncode}")
            for line in r.stdout.splitlines():
                if "qopt.param" in line or "qopt.lora" in line or '.weight: "' in line:
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
