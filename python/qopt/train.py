"""qopt-train: fine-tunes a model compiled with ``qoptc --train``.

    qopt-train train.so --data train.jsonl --steps 200 --batch-size 8 \\
        --checkpoint-dir ckpt --save-adapter my-adapter

Each step runs the library's train_step on the next batch (the data is
shuffled per epoch from --seed, so step k always sees the same batch;
with --gradient-accumulation-steps N, a step is N batches: N - 1
accumulate_step calls and a train_step over their mean gradient), and
prints a progress line (loss, tokens/s, ETA) and one JSON line of metrics.
Every --checkpoint-every steps (and at the end) the trainable parameters,
the optimizer state, the random key and the step go to
``DIR/checkpoint-<step>/`` (written beside and renamed into place), then
``DIR/latest`` names it (replaced atomically): a run killed at any moment
leaves the previous checkpoint intact, and ``--resume`` continues from the
latest one with the same loss curve, bit for bit.

Data: an .npz of arrays named after the model's inputs (and ``labels``),
first dimension = samples; or JSON lines, each an object with
``input_ids`` (and optionally ``attention_mask``, ``labels`` and other
inputs), sequences right-padded per batch (ids 0, mask 0, labels -100).
Without labels, causal-LM labels are the ids, -100 where the mask is 0.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np

import qopt


class DataError(ValueError):
    pass


def load_samples(path, model):
    """The data as a list of per-sample dicts (name -> 1-D or N-D array)."""
    if path.endswith(".npz"):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if not arrays:
            raise DataError(f"{path}: no arrays")
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise DataError(f"{path}: the arrays have different numbers of samples")
        count = n.pop()
        return [{k: a[i] for k, a in arrays.items()} for i in range(count)]
    samples = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_no}: not JSON: {e}") from None
            if not isinstance(obj, dict) or "input_ids" not in obj:
                raise DataError(f"{path}:{line_no}: expected an object with input_ids")
            samples.append({k: np.asarray(v) for k, v in obj.items()})
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples


def make_batch(samples, model):
    """Stacks samples into the model's inputs (padding sequences on the
    right to the longest, or to the model's static length)."""
    names = [i.name for i in model.inputs]
    infos = {i.name: i for i in model.inputs}
    batch = {}
    lengths = [len(s["input_ids"]) for s in samples]
    seq_info = infos.get("input_ids")
    target = max(lengths)
    if seq_info is not None and len(seq_info.shape) >= 2 and seq_info.shape[1] is not None:
        if target > seq_info.shape[1]:
            raise DataError(f"a sample has {target} tokens; the model was compiled "
                            f"for {seq_info.shape[1]}")
        target = seq_info.shape[1]
    pads = {"input_ids": 0, "attention_mask": 0, "labels": -100}
    for name in names:
        if name == "labels" and not any("labels" in s for s in samples):
            continue  # the Model's training calls derive them from ids and mask
        rows = []
        for s in samples:
            if name in s:
                rows.append(np.asarray(s[name]))
            elif name == "attention_mask":
                rows.append(np.ones(len(s["input_ids"]), dtype=np.int64))
            else:
                raise DataError(f"the data has no '{name}' (the model's inputs: "
                                f"{', '.join(names)})")
        if rows[0].ndim == 1 and name in pads:
            rows = [np.pad(r, (0, target - len(r)), constant_values=pads[name]) for r in rows]
        batch[name] = np.stack(rows).astype(infos[name].dtype)
    return batch


def batch_indices(step, count, batch_size, seed):
    """The samples of 1-based `step`: consecutive slices of a permutation
    drawn per epoch from (seed, epoch), so any step can be recomputed."""
    start = (step - 1) * batch_size
    out = []
    for k in range(start, start + batch_size):
        epoch, pos = divmod(k, count)
        order = np.random.default_rng([seed, epoch]).permutation(count)
        out.append(int(order[pos]))
    return out


def format_time(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def write_latest(directory, name):
    tmp = os.path.join(directory, f".latest.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, "latest"))
    qopt._fsync_dir(directory)


def read_latest(directory):
    path = os.path.join(directory, "latest")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return os.path.join(directory, f.read().strip())


def main(argv=None):
    p = argparse.ArgumentParser(prog="qopt-train", description=__doc__.split("\n")[0])
    p.add_argument("model", help="a library compiled with qoptc --train")
    p.add_argument("--data", required=True, help="training data: .npz or .jsonl")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps in all")
    p.add_argument("--batch-size", type=int, required=True, help="samples per micro-batch")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1,
                   help="micro-batches per optimizer step (needs the library's "
                        "accumulate entry)")
    p.add_argument("--eval-data", help="data for the loss every --eval-every steps")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between evaluations (default: only at the end)")
    p.add_argument("--checkpoint-dir", help="where checkpoints go")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="steps between checkpoints (default: only at the end)")
    p.add_argument("--keep", type=int, default=2, help="checkpoints kept (default 2)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --checkpoint-dir")
    p.add_argument("--save-adapter", help="write the trained adapter (PEFT format) here")
    p.add_argument("--metrics", help="JSON lines of metrics (default: stdout)")
    p.add_argument("--seed", type=int, default=0, help="data order seed")
    p.add_argument("--threads", type=int, default=0, help="kernel threads (0: all)")
    args = p.parse_args(argv)

    def fail(message):
        print(f"qopt-train: error: {message}", file=sys.stderr)
        return 1

    if args.steps < 1 or args.batch_size < 1 or args.gradient_accumulation_steps < 1:
        return fail("--steps, --batch-size and --gradient-accumulation-steps must be "
                    "positive")
    if args.resume and not args.checkpoint_dir:
        return fail("--resume needs --checkpoint-dir")
    try:
        model = qopt.load(args.model)
    except (RuntimeError, ValueError, OSError) as e:
        return fail(str(e))
    if "train_step" not in model.entries:
        return fail(f"{args.model} has no train_step entry (compile it with qoptc --train)")
    micro = args.gradient_accumulation_steps
    if micro > 1 and "accumulate_step" not in model.entries:
        return fail(f"--gradient-accumulation-steps: {args.model} has no accumulate_step "
                    "entry (compile it with qoptc --train --train-entry "
                    "train,eval,gradients,accumulate)")
    if args.eval_data and "eval_step" not in model.entries:
        return fail(f"--eval-data: {args.model} has no eval_step entry (compile it "
                    "with qoptc --train and eval in --train-entry)")
    model.set_num_threads(args.threads)
    try:
        samples = load_samples(args.data, model)
        eval_samples = load_samples(args.eval_data, model) if args.eval_data else None
        make_batch(samples[:1], model)  # the data fits the model's inputs
    except (DataError, OSError) as e:
        return fail(str(e))

    first = 1
    config = {"data": os.path.abspath(args.data), "batch_size": args.batch_size,
              "seed": args.seed}
    if micro > 1:
        config["gradient_accumulation_steps"] = micro
    if args.resume:
        latest = read_latest(args.checkpoint_dir)
        if latest is None:
            return fail(f"--resume: no checkpoint in {args.checkpoint_dir}")
        try:
            extra = model.load_checkpoint(latest) or {}
        except (ValueError, OSError) as e:
            return fail(f"--resume: {e}")
        if "step" not in extra:
            return fail(f"--resume: {latest} was not written by qopt-train")
        if extra.get("config") != config:
            return fail(f"--resume: {latest} was written with other data, batch size, "
                        f"accumulation or seed ({extra.get('config')})")
        first = extra["step"] + 1
        print(f"qopt-train: resuming from {latest} (step {extra['step']})", file=sys.stderr)
    if args.checkpoint_dir:
        os.makedirs(args.checkpoint_dir, exist_ok=True)
        if not args.resume and read_latest(args.checkpoint_dir):
            return fail(f"{args.checkpoint_dir} holds checkpoints of another run: "
                        "--resume it, or give another folder")
    metrics = open(args.metrics, "a") if args.metrics else sys.stdout
    kill_at = int(os.environ.get("QOPT_TRAIN_TEST_KILL_IN_SAVE", "0"))

    def emit(record):
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()

    def evaluate(step):
        if not eval_samples:
            return
        total, count = 0.0, 0
        for i in range(0, len(eval_samples), args.batch_size):
            chunk = eval_samples[i:i + args.batch_size]
            total += model.loss(**make_batch(chunk, model)) * len(chunk)
            count += len(chunk)
        emit({"step": step, "eval_loss": total / count})

    def checkpoint(step):
        name = f"checkpoint-{step:08d}"
        if kill_at == step:
            qopt._test_kill_in_write = True  # dies half-way through the save
        model.save_checkpoint(os.path.join(args.checkpoint_dir, name),
                              extra={"step": step, "config": config})
        write_latest(args.checkpoint_dir, name)
        # The newest --keep up to this step stay (never the one just
        # written; later ones of an abandoned run are left alone).
        kept = sorted(d for d in os.listdir(args.checkpoint_dir)
                      if d.startswith("checkpoint-") and "." not in d and d <= name)
        for old in kept[:-max(args.keep, 1)]:
            shutil.rmtree(os.path.join(args.checkpoint_dir, old), ignore_errors=True)

    start = time.monotonic()
    tokens = 0
    tty = sys.stderr.isatty()
    for step in range(first, args.steps + 1):
        # Micro-batches (step - 1) * N + 1 ... step * N; the loss reported
        # is their mean.
        losses = []
        for k in range(micro):
            index = (step - 1) * micro + k + 1
            batch = make_batch([samples[i] for i in
                                batch_indices(index, len(samples), args.batch_size,
                                              args.seed)], model)
            run = model.train_step if k == micro - 1 else model.accumulate
            losses.append(run(**batch))
            mask = batch.get("attention_mask")
            tokens += int(mask.sum()) if mask is not None else batch["input_ids"].size
        loss = sum(losses) / micro
        elapsed = time.monotonic() - start
        done = step - first + 1
        rate = tokens / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (args.steps - step)
        emit({"step": step, "loss": loss, "tokens_per_s": round(rate, 1),
              "elapsed_s": round(elapsed, 3)})
        line = (f"step {step}/{args.steps} loss {loss:.4f} {rate:.0f} tok/s "
                f"ETA {format_time(eta)}")
        print(("\r" + line) if tty else line, file=sys.stderr, end="" if tty else "\n")
        if not math.isfinite(loss):
            print(file=sys.stderr)
            return fail(f"the loss is {loss} at step {step}")
        if args.eval_every and step % args.eval_every == 0:
            evaluate(step)
        if args.checkpoint_dir and ((args.checkpoint_every and step % args.checkpoint_every == 0)
                                    or step == args.steps):
            checkpoint(step)
    if tty:
        print(file=sys.stderr)
    if not args.eval_every or args.steps % args.eval_every:
        evaluate(args.steps)
    if args.save_adapter:
        model.save_adapter(args.save_adapter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
