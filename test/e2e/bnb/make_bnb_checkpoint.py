"""QLoRA checkpoints written by transformers + bitsandbytes, for
`qoptc model.onnx --weights bnb-4bit.safetensors` (test/e2e/bnb-weights.test).

Two steps, because transformers quantizes on the GPU:
  prepare DIR   (here, fixtures venv) saves the float base model of
                test/e2e/real/llama-dynamo (rebuilt from its seed and checked
                against the export) with save_pretrained: committed as
                test/e2e/bnb/llama-base (config.json, model.safetensors),
                also the float checkpoint of test/e2e/quantize-weights.test;
  quantize DIR OUT  (on a GPU, scripts/gpu-fixtures.sh) loads DIR with
                BitsAndBytesConfig(load_in_4bit) for each case, saves it
                (OUT/<case>/model.safetensors: weight, weight.absmax,
                weight.quant_map, weight.nested_*, weight.quant_state.*) and
                runs it on the export's test inputs (OUT/<case>/reference.npz:
                case{k}.logits, fp32 compute); then, for each PEFT adapter of
                ADAPTERS (test/e2e/peft, made for this base model), the
                QLoRA forward: PeftModel.from_pretrained on the 4-bit model
                (OUT/<case>/peft-<adapter>.npz).
  int8 DIR OUT  (CPU is enough) loads DIR with
                BitsAndBytesConfig(load_in_8bit) (LLM.int8: Linear8bitLt),
                saves it (OUT/llama-int8/model.safetensors: weight (I8), SCB,
                weight_format) and its logits on the export's test inputs
                (reference.npz; bitsandbytes also quantizes the activations
                to int8 per row, so they are not the dequantized model's).
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "real", "llama-dynamo")
DEVICE = os.environ.get("QOPT_BNB_DEVICE", "cuda")  # "cpu": a dry run of the script
ADAPTERS = ["llama-lora", "llama-dora-rslora"]
CASES = {  # name -> (quant type, double quantization)
    "llama-nf4-double": ("nf4", True),
    "llama-fp4": ("fp4", False),
}


def prepare(folder):
    sys.path.insert(0, os.path.join(HERE, "..", "real"))
    import make_real_exports as mre
    ref = np.load(os.path.join(REAL, "reference.npz"))
    torch.manual_seed(0)
    _, model, _ = mre.build("llama")
    model.eval()
    with torch.no_grad():
        got = model(torch.from_numpy(ref["case1.input_ids"]),
                    torch.from_numpy(ref["case1.attention_mask"]))[0].numpy()
    err = np.max(np.abs(got - ref["case1.logits"]))
    assert err < 1e-5, f"the rebuilt base model differs from the export ({err})"
    model.m.save_pretrained(folder, safe_serialization=True)
    print("saved", folder)


class Wrapper(torch.nn.Module):
    """make_real_exports.CausalLM's module path (the adapters' keys start
    base_model.model.m.)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def quantize(folder, out):
    import bitsandbytes
    import peft
    import transformers
    torch.backends.cuda.matmul.allow_tf32 = False
    ref = np.load(os.path.join(REAL, "reference.npz"))
    cases = sorted({k.split(".")[0] for k in ref.files})
    for name, (qtype, double) in CASES.items():
        cfg = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=qtype, bnb_4bit_use_double_quant=double,
            bnb_4bit_compute_dtype=torch.float32)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=cfg, dtype=torch.float32, device_map=DEVICE)
        model.eval()
        dest = os.path.join(out, name)
        model.save_pretrained(dest, safe_serialization=True)
        result = {}
        with torch.no_grad():
            for c in cases:
                ids = torch.from_numpy(ref[f"{c}.input_ids"]).to(DEVICE)
                mask = torch.from_numpy(ref[f"{c}.attention_mask"]).to(DEVICE)
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                result[f"{c}.logits"] = logits.float().cpu().numpy()
        np.savez_compressed(os.path.join(dest, "reference.npz"), **result)
        for adapter in ADAPTERS:
            base = transformers.AutoModelForCausalLM.from_pretrained(
                folder, quantization_config=cfg, dtype=torch.float32, device_map=DEVICE)
            pm = peft.PeftModel.from_pretrained(
                Wrapper(base), os.path.join(HERE, "..", "peft", adapter)).eval()
            result = {}
            with torch.no_grad():
                for c in cases:
                    ids = torch.from_numpy(ref[f"{c}.input_ids"]).to(DEVICE)
                    mask = torch.from_numpy(ref[f"{c}.attention_mask"]).to(DEVICE)
                    result[f"{c}.logits"] = pm(ids, mask).float().cpu().numpy()
            np.savez_compressed(os.path.join(dest, f"peft-{adapter}.npz"), **result)
        with open(os.path.join(dest, "versions.json"), "w") as f:
            json.dump({"torch": torch.__version__, "transformers": transformers.__version__,
                       "bitsandbytes": bitsandbytes.__version__, "peft": peft.__version__,
                       "device": torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE}, f, indent=1)
        print("wrote", dest)


def int8(folder, out):
    import bitsandbytes
    import transformers
    ref = np.load(os.path.join(REAL, "reference.npz"))
    cases = sorted({k.split(".")[0] for k in ref.files})
    cfg = transformers.BitsAndBytesConfig(load_in_8bit=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=cfg, dtype=torch.float32, device_map="cpu")
    model.eval()
    dest = os.path.join(out, "llama-int8")
    model.save_pretrained(dest, safe_serialization=True)
    result = {}
    with torch.no_grad():
        for c in cases:
            logits = model(input_ids=torch.from_numpy(ref[f"{c}.input_ids"]),
                           attention_mask=torch.from_numpy(ref[f"{c}.attention_mask"]),
                           use_cache=False).logits
            result[f"{c}.logits"] = logits.float().numpy()
    np.savez_compressed(os.path.join(dest, "reference.npz"), **result)
    with open(os.path.join(dest, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__,
                   "bitsandbytes": bitsandbytes.__version__, "device": "cpu"}, f, indent=1)
    print("wrote", dest)


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    elif sys.argv[1] == "int8":
        int8(sys.argv[2], sys.argv[3])
    else:
        quantize(sys.argv[2], sys.argv[3])
