#!/usr/bin/env python3
"""The GPU peer's numbers: PyTorch + PEFT (and bitsandbytes, where installed) on a
Llama-3.2-1B-shaped model with random weights, nothing downloaded.

Measures what qopt's CUDA target (issue 19) must be compared with, in one run:
  * the LoRA train step (forward, backward, AdamW) in bf16, r=16 on all linear layers;
  * the same step as QLoRA (NF4 + double quantization, bf16 compute) when bitsandbytes
    imports;
  * inference: prefill latency (batch 1, 512 tokens) and decode (batch 1, KV cache).
qopt has no CUDA target yet, so this prints the peer's column alone; scripts/gpu-check.sh
runs it, and it writes JSON with --json.
    python3 bench/gpu/peft_lora_step.py [--layers 16] [--batch 4] [--seq 1024] [--json F]
"""
import argparse
import json
import statistics
import sys
import time


def timed(fn, warmup, reps, sync):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import torch
    import transformers
    import peft

    if not torch.cuda.is_available():
        print("peft_lora_step: no CUDA device; nothing measured", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    # Llama 3.2 1B's shape (vocabulary, widths, grouped-query attention).
    cfg = transformers.LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192,
        num_hidden_layers=args.layers, num_attention_heads=32, num_key_value_heads=8,
        max_position_embeddings=4096, rope_theta=500000.0, tie_word_embeddings=True)
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__,
        "model": f"Llama-3.2-1B-shaped, {args.layers} layers, random bf16 weights",
        "batch": args.batch, "seq": args.seq, "rank": args.rank,
    }
    lora = peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank,
                           target_modules="all-linear", lora_dropout=0.0)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=dev)

    def train_step_time(model, tag):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                lr=1e-4)

        def step():
            out = model(input_ids=ids, labels=ids)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        torch.cuda.reset_peak_memory_stats()
        t = timed(step, 3, args.reps, sync)
        tokens = args.batch * args.seq
        result[tag] = {
            "step_ms": round(t * 1e3, 2),
            "tokens_per_s": round(tokens / t),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
        print(f"peft_lora_step: {tag}: {result[tag]}", flush=True)

    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(cfg).to(dev, torch.bfloat16)
    model = peft.get_peft_model(base, lora)
    model.train()
    train_step_time(model, "lora_bf16_train_step")

    # Inference with the adapter in place (unmerged), batch 1.
    model.eval()
    prompt = ids[:1, :512]
    with torch.no_grad():
        t = timed(lambda: model(input_ids=prompt), 3, args.reps, sync)
        result["prefill_b1_512_ms"] = round(t * 1e3, 2)
        gen = 128

        def decode():
            model.generate(input_ids=prompt[:, :16], max_new_tokens=gen,
                           min_new_tokens=gen, do_sample=False, eos_token_id=None,
                           pad_token_id=0)

        t = timed(decode, 1, 3, sync)
        result["decode_b1_ms_per_token"] = round(t * 1e3 / gen, 3)
    print(f"peft_lora_step: prefill {result['prefill_b1_512_ms']} ms, decode "
          f"{result['decode_b1_ms_per_token']} ms/token", flush=True)
    del model, base
    torch.cuda.empty_cache()

    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # a missing or broken install: say so, measure the rest
        result["qlora"] = f"skipped: bitsandbytes does not import ({e})"
        print(f"peft_lora_step: QLoRA {result['qlora']}", flush=True)
    else:
        result["bitsandbytes"] = bitsandbytes.__version__
        q = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        torch.manual_seed(0)
        base = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            base.save_pretrained(d)
            del base
            qbase = transformers.LlamaForCausalLM.from_pretrained(
                d, quantization_config=q, device_map={"": 0},
                dtype=torch.bfloat16)
        qbase = peft.prepare_model_for_kbit_training(
            qbase, use_gradient_checkpointing=False)
        model = peft.get_peft_model(qbase, lora)
        model.train()
        train_step_time(model, "qlora_nf4_train_step")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
