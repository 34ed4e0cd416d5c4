"""CPU LoRA fine-tuning: qopt's compiled train step vs PyTorch + PEFT (eager
and torch.compile) on the same Llama-shaped model, adapter and batch.

  bench.py [--layers 4 --hidden 512 --heads 8 --kv-heads 4 --ffn 1408
            --vocab 8000] [--batch 4 --seq 128] [--rank 16] [--steps 10]
           [--threads 2] [--peers eager,compile] [--json out.json]
  (peers also qopt-gc and eager-gc: both with gradient checkpointing;
  qopt-serial: qoptc --parallel=false, the generated loop nests on the
  calling thread; plain qopt runs them on the kernel library's pool)

Needs torch, transformers, peft, onnx (e.g. /work/fixtures-venv) and qopt's
build tree (QOPT_OBJ_ROOT, default build/). Builds a randomly initialised
LlamaForCausalLM of the given shape (seed 0), exports it with torch's
current exporter (dynamo), and saves a PEFT LoRA adapter (random non-zero
A and B on all linear layers but the head) for it. Each contender then runs
in its own process (so its peak memory is its own): qoptc --train compiles
the train step (AdamW, the loss on the batch's input ids), or PyTorch builds
the PeftModel with torch.optim.AdamW (eager, or torch.compile of the model);
each does one warm-up step, then --steps timed steps (the median is
reported) on one fixed batch. Peak memory is the process's maximum resident
set (VmHWM), model, libraries and runtime included. All three take the same batch
and start from the same weights; the losses of their first step are printed
side by side as a check that they train the same model. Prints a table and
writes JSON.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, ".."))
from hf_models import logits_of  # noqa: E402
from machine import cpu_name  # noqa: E402


def peak_rss_mib():
    """This process's peak resident set (VmHWM: since its exec, unlike
    ru_maxrss, which a child inherits from the parent it was forked from)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args, work):
    """The model (ONNX), the adapter (PEFT folder) and the batch (.npz)."""
    import numpy as np
    import peft
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, max_position_embeddings=max(args.seq, 128))
    model = transformers.LlamaForCausalLM(cfg).eval()

    wrapper = logits_of(model)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    onnx_path = os.path.join(work, "model.onnx")
    torch.onnx.export(wrapper, (ids,), onnx_path, dynamo=True, input_names=["input_ids"],
                      output_names=["logits"], verbose=False)
    torch.save(model.state_dict(), os.path.join(work, "weights.pt"))
    pm = peft.get_peft_model(wrapper, peft.LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"]))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    pm.save_pretrained(os.path.join(work, "adapter"))
    np.savez(os.path.join(work, "batch.npz"), input_ids=ids.numpy())
    json.dump(cfg.to_dict(), open(os.path.join(work, "config.json"), "w"))
    return onnx_path


def run_qopt(args, work, checkpointing, parallel=True):
    sys.path.insert(0, os.path.join(args.obj_root, "python"))
    import numpy as np
    import qopt
    lib = os.path.join(work, ("train-gc" if checkpointing else "train")
                       + ("" if parallel else "-serial") + ".so")
    start = time.monotonic()
    out = subprocess.run([os.path.join(args.obj_root, "bin", "qoptc"),
                          os.path.join(work, "model.onnx"), "--adapter",
                          os.path.join(work, "adapter"), "--train", "--train-entry", "train",
                          "--optimizer", "adamw:lr=1e-4,betas=0.9/0.999,eps=1e-8,weight_decay=0.01",
                          "--activation-report", "-o", lib,
                          *(["--gradient-checkpointing"] if checkpointing else []),
                          *([] if parallel else ["--parallel=false"])],
                         check=True, capture_output=True, text=True)
    compile_s = time.monotonic() - start
    # qoptc's estimate: "... peak X MiB (N bytes), of which the forward keeps
    # for the backward Y MiB (M bytes)".
    report = [line for line in out.stderr.splitlines() if "activation memory" in line]
    numbers = [int(w.strip("(")) for w in report[0].split() if w.strip("(").isdigit()] if report else []
    t = qopt.load(lib)
    t.set_num_threads(args.threads)
    ids = np.load(os.path.join(work, "batch.npz"))["input_ids"]
    first = t.train_step(input_ids=ids)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        t.train_step(input_ids=ids)
        times.append(time.perf_counter() - start)
    result = {"first_loss": first, "step_s": statistics.median(times), "compile_s": compile_s}
    if len(numbers) >= 2:
        result["estimated_peak_mib"] = numbers[0] / 2**20
        result["estimated_kept_mib"] = numbers[1] / 2**20
    return result


def run_torch(args, work, compiled, checkpointing=False):
    import numpy as np
    import peft
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    cfg = transformers.LlamaConfig(**json.load(open(os.path.join(work, "config.json"))))
    model = transformers.LlamaForCausalLM(cfg)
    model.load_state_dict(torch.load(os.path.join(work, "weights.pt")))

    pm = peft.PeftModel.from_pretrained(logits_of(model), os.path.join(work, "adapter"),
                                        is_trainable=True)
    pm.train()
    lm = pm.base_model.model.m
    if checkpointing:  # transformers' per-layer recomputation
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4,
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    ids = torch.from_numpy(np.load(os.path.join(work, "batch.npz"))["input_ids"])
    forward = torch.compile(lm) if compiled else lm
    compile_s = 0.0

    def step():
        loss = forward(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    start = time.monotonic()
    first = step()
    compile_s = time.monotonic() - start if compiled else 0.0
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"first_loss": first, "step_s": statistics.median(times), "compile_s": compile_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=1408)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", default="eager,compile",
                    help="of qopt-gc (qopt with --gradient-checkpointing), qopt-serial (qopt "
                         "with --parallel=false: loop nests on the calling thread), eager, eager-gc "
                         "(with gradient_checkpointing_enable), compile")
    ap.add_argument("--obj-root", default=os.environ.get("QOPT_OBJ_ROOT", os.path.join(ROOT, "build")))
    ap.add_argument("--json")
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:  # a contender, in its own process
        result = (run_qopt(args, args.work, args.only == "qopt-gc", args.only != "qopt-serial")
                  if args.only.startswith("qopt")
                  else run_torch(args, args.work, args.only == "compile",
                                 args.only == "eager-gc"))
        result["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory() as work:
        build(args, work)
        results = {}
        for who in ["qopt"] + [p for p in args.peers.split(",") if p]:
            cmd = [sys.executable, os.path.abspath(__file__), "--work", work, "--only", who]
            for k in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "batch", "seq",
                      "rank", "steps", "threads"):
                cmd += ["--" + k.replace("_", "-"), str(getattr(args, k))]
            cmd += ["--obj-root", args.obj_root]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return 1
            results[who] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results["qopt"]
    print(f"LoRA train step, Llama-shaped {args.layers} layers d={args.hidden} "
          f"ffn={args.ffn} vocab={args.vocab}, batch {args.batch}x{args.seq}, rank "
          f"{args.rank}, {args.threads} threads, {cpu_name()}")
    print(f"{'':10} {'step ms':>9} {'peak MiB':>9} {'first loss':>11} {'compile s':>10} "
          f"{'time / qopt':>12} {'memory / qopt':>14}")
    for who, r in results.items():
        print(f"{who:10} {r['step_s'] * 1e3:9.1f} {r['peak_rss_mib']:9.0f} {r['first_loss']:11.5f} "
              f"{r['compile_s']:10.1f} {r['step_s'] / base['step_s']:12.2f} "
              f"{r['peak_rss_mib'] / base['peak_rss_mib']:14.2f}")
    for who, r in results.items():
        if "estimated_peak_mib" in r:
            print(f"{who}: qoptc's activation estimate: peak {r['estimated_peak_mib']:.1f} MiB, "
                  f"kept for the backward {r['estimated_kept_mib']:.1f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": cpu_name(), "config": vars(args), "results": results}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
