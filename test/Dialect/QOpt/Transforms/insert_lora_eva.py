"""qopt-insert-lora init-lora-weights=eva on a small module, with EVA
states (safetensors, module → rank × in-features components) written
here: the factors and alphas it gives, then one broken state per error.
Prints one line per case (`<case>: <first error line>`)."""
import json
import os
import struct
import subprocess
import tempfile

import numpy as np

BIN = os.environ["QOPT_BIN"]
MODULE = """
func.func @m(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>, %wk: tensor<6x8xf32>, %wv: tensor<6x8xf32>) -> (tensor<?x4xf32>, tensor<?x6xf32>, tensor<?x6xf32>) {
  %q = qopt.linear %x, %w module "model.layers.0.q_proj" : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  %k = qopt.linear %x, %wk module "model.layers.0.k_proj" : (tensor<?x8xf32>, tensor<6x8xf32>) -> tensor<?x6xf32>
  %v = qopt.linear %x, %wv module "model.layers.0.v_proj" : (tensor<?x8xf32>, tensor<6x8xf32>) -> tensor<?x6xf32>
  return %q, %k, %v : tensor<?x4xf32>, tensor<?x6xf32>, tensor<?x6xf32>
}
"""


def safetensors(tensors):
    header, blob = {}, b""
    for name, a in tensors.items():
        raw = np.asarray(a, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(np.shape(a)),
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


def run(name, tensors=None, raw=None, options="", show_ir=False):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "eva.safetensors")
        if tensors is not None or raw is not None:
            open(path, "wb").write(raw if raw is not None else safetensors(tensors))
        opts = ("r=2 lora-alpha=4 target-modules=q_proj,k_proj,v_proj "
                f"init-lora-weights=eva eva-state={path} {options}")
        r = subprocess.run([os.path.join(BIN, "qopt-opt"), "-",
                            f"--qopt-insert-lora={opts}"],
                           input=MODULE, capture_output=True, text=True)
        if show_ir:
            print(f"{name}: rc {r.returncode}")
            for line in r.stderr.splitlines():
                if "warning" in line:
                    print("  " + line.split("warning: ")[1])
            for line in r.stdout.splitlines():
                if "qopt.lora" in line or '.weight: "' in line or "qopt.linear" in line:
                    print("  " + line.strip().replace(d, "DIR"))
            return
        errors = [l for l in r.stderr.splitlines() if "error: " in l]
        first = errors[0].split("error: ", 1)[1] if errors else "(no error)"
        print(f"{name}: {first.replace(d, 'DIR')}")


A3 = np.arange(24).reshape(3, 8) / 8
# q gets rank 3 (alpha 4·3/2 = 6), k none (no adapter), v is missing (the
# default init, with a warning); PEFT's key prefix is accepted.
run("redistributed", {"base_model.model.model.layers.0.q_proj": A3,
                      "model.layers.0.k_proj": np.zeros((0, 8))}, show_ir=True)
run("no alpha adjustment", {"model.layers.0.q_proj": A3[:1]},
    options="eva-adjust-scaling-factors=false", show_ir=True)
run("no state file", None)
run("not safetensors", raw=b"\x01\x02")
run("unknown module", {"model.layers.0.o_proj": A3})
run("columns", {"model.layers.0.q_proj": np.ones((2, 7))})
run("vector", {"model.layers.0.q_proj": np.ones(8)})
run("rank above min(out, in)", {"model.layers.0.q_proj": np.ones((5, 8))})
with tempfile.TemporaryDirectory() as d:
    r = subprocess.run([os.path.join(BIN, "qopt-opt"), "-",
                        "--qopt-insert-lora=target-modules=q_proj init-lora-weights=eva"],
                       input=MODULE, capture_output=True, text=True)
    print("no eva-state:", r.stderr.splitlines()[0].split("error: ", 1)[1])
