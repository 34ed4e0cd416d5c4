"""Counts the QOpt graph ops that raising makes of the test models (the
layers their exporter-style subgraphs decompose): every linear layer, norm
and activation must come out as one QOpt op."""
import os
import subprocess
import sys
import tempfile

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

root = os.environ["QOPT_BIN"]
for name, build in [("bert", models.bert), ("bert-decomposed-ln", lambda: models.bert(decomposed_ln=True)),
                    ("gpt2", models.gpt2), ("llama", models.llama)]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        onnx.save(build(), path)
        imported = subprocess.run([os.path.join(root, "qopt-translate"), "--import-onnx", path],
                                  capture_output=True, text=True, check=True).stdout
        converted = subprocess.run([os.path.join(root, "qopt-opt"), "--convert-onnx-to-qopt"],
                                   input=imported, capture_output=True, text=True, check=True).stdout
    counts = {op: converted.count(f"qopt.{op} ") for op in
              ["linear", "layer_norm", "rms_norm", "gelu", "silu"]}
    print(name, " ".join(f"{k}={v}" for k, v in counts.items()))
