"""qoptc --calibration-data: every way calibration data or an EVA config
can be wrong is an error naming the array, key or layer, with exit status
1 and no output file. Prints `<case>: <first error line>` per case."""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

BIN = os.environ["QOPT_BIN"]
HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "real", "llama-dynamo", "model.onnx")
CONFIG = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "o_proj"],
          "init_lora_weights": "eva", "eva_config": {"rho": 2.0, "tau": 0.99}}
rng = np.random.default_rng(0)
IDS = rng.integers(0, 100, (4, 6)).astype(np.int64)
GOOD = {"input_ids": IDS, "attention_mask": np.ones_like(IDS)}


def run(name, arrays=GOOD, config=CONFIG, raw=None, args=(), compressed=False):
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "calib.npz")
        if raw is not None:
            open(data, "wb").write(raw)
        elif compressed:
            np.savez_compressed(data, **arrays)
        else:
            np.savez(data, **arrays)
        cfg = os.path.join(d, "cfg.json")
        open(cfg, "w").write(json.dumps(config))
        out = os.path.join(d, "out")
        os.mkdir(out)
        cmd = [os.path.join(BIN, "qoptc"), MODEL, "-o", os.path.join(out, "m.so")]
        cmd += list(args) if args else ["--lora-config", cfg, "--calibration-data", data]
        cmd = [c.replace("CFG", cfg).replace("DATA", data) for c in cmd]
        r = subprocess.run(cmd, capture_output=True, text=True)
        errors = [l for l in r.stderr.splitlines() if "error: " in l]
        first = errors[0].split("error: ", 1)[1] if errors else "(no error)"
        left = os.listdir(out)
        print(f"{name}: rc {r.returncode}{' LEFT ' + str(left) if left else ''}: "
              f"{first.replace(d, 'DIR')}")


def good_bytes():
    with tempfile.TemporaryDirectory() as d:
        np.savez(os.path.join(d, "c.npz"), **GOOD)
        return open(os.path.join(d, "c.npz"), "rb").read()


run("no lora config", args=["--calibration-data", "DATA"])
run("not eva", config={**CONFIG, "init_lora_weights": True})
run("eva without data", args=["--lora-config", "CFG"])
run("bad batch size", args=["--lora-config", "CFG", "--calibration-data", "DATA",
                            "--calibration-batch-size", "0"])
run("bad eva_config", config={**CONFIG, "eva_config": {"rho": 0.5}})
run("unknown eva_config field", config={**CONFIG, "eva_config": {"whiten": True, "fancy": 1}})
run("no file", raw=None, args=["--lora-config", "CFG", "--calibration-data", "/nonexistent/c.npz"])
run("compressed", compressed=True)
raw = good_bytes()
run("truncated", raw=raw[:len(raw) // 2])
corrupt = bytearray(raw)
corrupt[100] ^= 0xFF  # inside the first member's data
run("corrupted", raw=bytes(corrupt))
run("npy not npz", raw=raw[raw.index(b"\x93NUMPY"):])
run("missing input", arrays={"input_ids": IDS})
run("extra array", arrays={**GOOD, "pixel_values": np.zeros((4, 3))})
run("wrong dtype", arrays={**GOOD, "input_ids": IDS.astype(np.int32)})
run("sample counts", arrays={**GOOD, "labels": IDS[:3]})
run("labels not tokens", arrays={**GOOD, "labels": np.zeros((4, 6), np.float32)})
run("ids out of range", arrays={**GOOD, "input_ids": IDS + 1000})
run("too many components", config={**CONFIG, "r": 20, "eva_config": {"rho": 2.0}})
run("no convergence", config={**CONFIG, "eva_config": {"tau": 1.0}})
run("no convergence, 3 passes", config={**CONFIG, "eva_config": {"tau": 1.0}},
    args=["--lora-config", "CFG", "--calibration-data", "DATA", "--calibration-max-passes", "3"])
run("bad max passes", args=["--lora-config", "CFG", "--calibration-data", "DATA",
                            "--calibration-max-passes", "0"])
# A zip64 end locator pointing past a 42-byte file.
run("tiny zip64", raw=b"PK\x06\x07" + b"\0" * 4 + (10 ** 6).to_bytes(8, "little") + b"\0" * 4
    + b"PK\x05\x06" + b"\0" * 6 + b"\xff\xff" + b"\0" * 10)
unmasked = np.ones_like(IDS)
unmasked[0] = 0
run("first batch all padding", arrays={**GOOD, "attention_mask": unmasked})
run("batches too small", config={**CONFIG, "r": 4, "eva_config": {"rho": 2.0}},
    arrays={"input_ids": IDS[:, :5], "attention_mask": np.ones_like(IDS[:, :5])})
