"""qopt.compile (a wrapper over qoptc): a real export with a PEFT adapter,
unmerged and merged, against PEFT's own outputs; fresh adapters from a
config; run-time slots filled with the same adapter; qoptc's errors as
CompileError; quantize_modules, int8_activations and parallel."""
import json
import os

import numpy as np
import pytest

import qopt

E2E = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e")
MODEL = os.path.join(E2E, "real", "llama-dynamo", "model.onnx")
ADAPTER = os.path.join(E2E, "peft", "llama-lora")


def peft_case(k):
    ref = np.load(os.path.join(ADAPTER, "reference.npz"))
    return ({n: ref[f"case{k}.{n}"] for n in ("input_ids", "attention_mask")},
            ref[f"case{k}.logits"])


@pytest.mark.parametrize("merge", [False, True])
def test_adapter_matches_peft(tmp_path, merge):
    m = qopt.compile(MODEL, tmp_path / "m.so", adapter=ADAPTER, merge=merge)
    feeds, want = peft_case(1)
    (got,) = m.run(**feeds)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


def test_fresh_adapters_and_save(tmp_path):
    config = os.path.join(E2E, "peft", "fresh-lora-config.json")
    m = qopt.compile(MODEL, lora_config=config, save_adapter=tmp_path / "saved",
                     dims={"batch": 1})
    trainable = [p.name for p in m.parameters if p.role == "trainable"]
    assert len(trainable) == 8 and trainable[0].endswith("q_proj.lora_A.weight")
    saved = json.load(open(tmp_path / "saved" / "adapter_config.json"))
    assert saved["peft_type"] == "LORA" and saved["r"] == 4


def test_lora_slots(tmp_path):
    slots = os.path.join(E2E, "peft", "slots-config.json")
    m = qopt.compile(MODEL, tmp_path / "slots.so", lora_slots=slots)
    assert [r for _, r in m.lora_slots] == [4] * 6
    feeds, want = peft_case(1)
    m.load_adapter(ADAPTER)
    (got,) = m.run(**feeds)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


def test_errors(tmp_path):
    with pytest.raises(qopt.CompileError, match="adapter_config.json: 'peft_type' is not LORA"):
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "adapter_config.json").write_text('{"peft_type": "IA3"}')
        qopt.compile(MODEL, tmp_path / "x.so", adapter=bad)
    assert not (tmp_path / "x.so").exists()
    with pytest.raises(qopt.CompileError, match="--merge needs --adapter"):
        qopt.compile(MODEL, tmp_path / "x.so", merge=True)


def test_quantize_and_merge_requantized(tmp_path):
    # An adapter merged into int8 weights: refused unless re-quantizing is
    # asked for; then close to the unmerged quantized model (int8 keeps most
    # of the update).
    with pytest.raises(qopt.CompileError, match="without quantizing the sum again"):
        qopt.compile(MODEL, tmp_path / "x.so", adapter=ADAPTER, quantize="int8:per-channel",
                     merge=True)
    assert not (tmp_path / "x.so").exists()
    merged = qopt.compile(MODEL, tmp_path / "m.so", adapter=ADAPTER, quantize="int8:per-channel",
                          merge=True, requantize=True)
    unmerged = qopt.compile(MODEL, tmp_path / "u.so", adapter=ADAPTER, quantize="int8:per-channel")
    feeds, want = peft_case(1)
    (a,), (b,) = merged.run(**feeds), unmerged.run(**feeds)
    assert 0 < np.max(np.abs(a - b)) <= 0.02 * np.max(np.abs(b))  # measured 0.6%


def test_quantize_modules_int8_activations_and_parallel(tmp_path):
    # quantize_modules selects the layers like PEFT's target_modules: the
    # head alone, every linear layer, or a selection that matches none (an
    # error); int8 activations stay close to f32 ones; loop nests on the
    # calling thread (parallel=False) give the same bits.
    feeds, _ = peft_case(1)
    (f32,) = qopt.compile(MODEL, tmp_path / "f.so").run(**feeds)
    (serial,) = qopt.compile(MODEL, tmp_path / "s.so", parallel=False).run(**feeds)
    assert np.array_equal(f32, serial)
    (head,) = qopt.compile(MODEL, tmp_path / "h.so", quantize="int4:group=32",
                           quantize_modules=["lm_head"]).run(**feeds)
    (body,) = qopt.compile(MODEL, tmp_path / "b.so", quantize="int4:group=32").run(**feeds)
    (every,) = qopt.compile(MODEL, tmp_path / "a.so", quantize="int4:group=32",
                            quantize_modules=".*").run(**feeds)
    (every8,) = qopt.compile(MODEL, tmp_path / "a8.so", quantize="int4:group=32",
                             quantize_modules=".*", int8_activations=True).run(**feeds)
    scale = np.max(np.abs(f32))
    for q in (head, body, every):
        assert 0 < np.max(np.abs(q - f32)) <= 0.5 * scale
    assert not np.array_equal(every, body) and not np.array_equal(every, head)
    assert 0 < np.max(np.abs(every8 - every)) <= 0.05 * scale
    with pytest.raises(qopt.CompileError, match="matches the selection"):
        qopt.compile(MODEL, tmp_path / "x.so", quantize="int4", quantize_modules=["nosuch"])
