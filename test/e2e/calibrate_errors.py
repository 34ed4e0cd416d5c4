"""Every way calibration data, a statistics file or qopt-smooth's options can
be wrong: an error naming the file, line, array, layer or option, exit
status 1, and no output file left behind."""
import json
import os
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
MODEL = os.path.join(HERE, "real", "llama-dynamo", "model.onnx")
IDS = np.arange(24, dtype=np.int64).reshape(4, 6) % 100
GOOD = {"input_ids": IDS, "attention_mask": np.ones_like(IDS)}


def run(name, tool, args, arrays=GOOD, lines=None, model=MODEL):
    with tempfile.TemporaryDirectory() as d:
        np.savez(os.path.join(d, "calib.npz"), **arrays)
        if lines is not None:
            open(os.path.join(d, "calib.jsonl"), "w").write("\n".join(lines) + "\n")
        out = os.path.join(d, "out")
        os.mkdir(out)
        cmd = [os.path.join(BIN, tool), model] + [a.replace("DIR", d) for a in args]
        r = subprocess.run(cmd, capture_output=True, text=True)
        errors = [l for l in r.stderr.splitlines() if "error: " in l]
        first = errors[0].split("error: ", 1)[1] if errors else "(no error)"
        left = os.listdir(out)
        print(f"{name}: rc {r.returncode}{' LEFT ' + str(left) if left else ''}: "
              f"{first.replace(d, 'DIR')}")


def calibrate(name, *args, **kw):
    run(name, "qopt-calibrate", ["--no-progress", "-o", "DIR/out/s.qstats", *args], **kw)


def qoptc(name, *args, **kw):
    run(name, "qoptc", ["-o", "DIR/out/m.so", *args], **kw)


LINE = json.dumps({"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1]})
calibrate("not npz or jsonl", "--data", "DIR/calib.txt")
calibrate("no file", "--data", "/nonexistent/c.npz")
calibrate("unknown array", "--data", "DIR/calib.npz", arrays={**GOOD, "pixel_values": np.zeros((4, 3))})
calibrate("wrong dtype", "--data", "DIR/calib.npz", arrays={**GOOD, "input_ids": IDS.astype(np.int32)})
calibrate("missing input", "--data", "DIR/calib.npz", arrays={"input_ids": IDS})
calibrate("sample counts", "--data", "DIR/calib.npz", arrays={**GOOD, "attention_mask": np.ones((3, 6), np.int64)})
calibrate("scalar", "--data", "DIR/calib.npz", arrays={**GOOD, "input_ids": np.array(3)})
calibrate("batch size", "--data", "DIR/calib.npz", "--batch-size", "0")
calibrate("keep rows", "--data", "DIR/calib.npz", "--keep-rows", "-1")
calibrate("no module", "--data", "DIR/calib.npz", "--modules", "nothing_like_this")
calibrate("ids out of range", "--data", "DIR/calib.npz", arrays={**GOOD, "input_ids": IDS + 1000})
calibrate("bad json", "--data", "DIR/calib.jsonl", lines=[LINE, "{not json"])
calibrate("bad json after a blank line", "--data", "DIR/calib.jsonl", lines=[LINE, "", "{not json"])
calibrate("no token kept", "--data", "DIR/calib.npz", arrays={**GOOD, "attention_mask": np.zeros_like(IDS)})
calibrate("json not an object", "--data", "DIR/calib.jsonl", lines=["[1, 2]"])
calibrate("json lengths differ", "--data", "DIR/calib.jsonl",
          lines=[json.dumps({"input_ids": [1, 2, 3], "attention_mask": [1, 1]})])
calibrate("json rank", "--data", "DIR/calib.jsonl",
          lines=[json.dumps({"input_ids": [[1, 2]], "attention_mask": [1, 1]})])
calibrate("json float ids", "--data", "DIR/calib.jsonl",
          lines=[json.dumps({"input_ids": [1.5, 2], "attention_mask": [1, 1]})])
calibrate("json unknown input", "--data", "DIR/calib.jsonl",
          lines=[json.dumps({"input_ids": [1], "attention_mask": [1], "token_type_ids": [0]})])
calibrate("json missing input", "--data", "DIR/calib.jsonl", lines=[json.dumps({"input_ids": [1]})])
calibrate("json empty", "--data", "DIR/calib.jsonl", lines=[])
calibrate("fisher from json lines", "--data", "DIR/calib.jsonl", "--fisher", lines=[LINE])
run("unwritable output", "qopt-calibrate", ["--no-progress", "--data", "DIR/calib.npz", "-o",
                                             "DIR/out/missing/s.qstats"])

SMOOTH = "qopt-smooth{alpha=0.5}"
qoptc("calibration data read by nothing", "--graph-passes", "qopt-fold-zero-lora", "--calibration-data",
      "DIR/calib.npz")
qoptc("smooth without statistics", "--graph-passes", SMOOTH)
qoptc("smooth alpha", "--graph-passes", "qopt-smooth{alpha=1.5}", "--calibration-data", "DIR/calib.npz")
qoptc("smooth statistics missing", "--graph-passes", "qopt-smooth{stats=/nonexistent/s.qstats}")
qoptc("smooth after quantization", "--quantize", "int8", "--graph-passes",
      "qopt-fold-zero-lora," + SMOOTH, "--calibration-data", "DIR/calib.npz")
qoptc("smooth selects nothing", "--graph-passes", "qopt-smooth{target-modules=nothing_like_this}",
      "--calibration-data", "DIR/calib.npz")
# Outlier passes change layer inputs and weights before adapters: loaded
# or saved adapters would not fit (fresh ones may train); statistics must
# describe their inputs.
qoptc("rotation with --adapter", "--graph-passes", "qopt-rotate", "--train", "--adapter", "DIR")
qoptc("rotation with --train and no adapter", "--graph-passes", "qopt-rotate", "--train")
qoptc("smoothing after rotation", "--graph-passes", "qopt-rotate,qopt-smooth", "--calibration-data",
      "DIR/calib.npz")
qoptc("static scales after rotation", "--graph-passes",
      "qopt-rotate,qopt-insert-fake-quant{activations=int8:per-tensor,static}", "--calibration-data",
      "DIR/calib.npz")
# A statistics file of another model: the layer without an entry is named.
with tempfile.TemporaryDirectory() as d:
    np.savez(os.path.join(d, "g.npz"), **GOOD)
    stats = os.path.join(d, "gpt2.qstats")
    subprocess.run([os.path.join(BIN, "qopt-calibrate"), os.path.join(HERE, "real", "gpt2-dynamo", "model.onnx"),
                    "--data", os.path.join(d, "g.npz"), "-o", stats, "--no-progress"], capture_output=True)
    qoptc("statistics of another model", "--graph-passes", SMOOTH, "--calibration-data", stats)
    # ... and of a model whose layer is narrower: the length is named.
    small = os.path.join(d, "small.qstats")
    header = json.dumps({"m.model.layers.0.self_attn.q_proj.input_absmax":
                         {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}).encode()
    header += b" " * (-len(header) % 8)
    open(small, "wb").write(len(header).to_bytes(8, "little") + header + np.ones(8, np.float32).tobytes())
    qoptc("statistics of another width", "--graph-passes", "qopt-smooth{target-modules=q_proj}",
          "--calibration-data", small)
