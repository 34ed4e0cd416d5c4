"""The fine-tuning task qopt-train's end-to-end test trains on: sequences of
16 token ids (the test Llama's vocabulary of 128) that count up by 5 modulo
128 from a random start, so that the next token follows from the current
one. Writes train.jsonl (256 samples) and eval.jsonl (32 samples), one
{"input_ids": [...]} per line; deterministic (numpy seed 0 / 1).

    python3 test/e2e/train/task/make_task.py
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
for name, count, seed in (("train", 256, 0), ("eval", 32, 1)):
    rng = np.random.default_rng(seed)
    with open(os.path.join(HERE, f"{name}.jsonl"), "w") as f:
        for start in rng.integers(0, 128, size=count):
            ids = [(int(start) + 5 * t) % 128 for t in range(16)]
            f.write(json.dumps({"input_ids": ids}) + "\n")
