"""qopt: run models compiled by qoptc from Python.

    import numpy as np, qopt
    model = qopt.load("gpt2.so")          # + gpt2.safetensors beside it
    logits, = model.run(input_ids=np.array([[1, 2, 3]]))

This is the binding of the runtime's C API (numpy arrays in and out).
`qopt.compile` compiles through the `qoptc` tool (a subprocess), with the
same options:

    model = qopt.compile("model.onnx", adapter="my-peft-adapter/")
"""
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ._runtime import Model as _Model
from . import _runtime

__all__ = ["compile", "CompileError", "load", "Model", "TensorInfo"]


class TensorInfo:
    """An input or output: name, numpy dtype, shape (None where dynamic) and
    the names of dynamic dimensions (e.g. 'batch', 'seq')."""

    def __init__(self, name, dtype, shape, dim_names):
        self.name = name
        self.dtype = _numpy_dtype(dtype)
        self.shape = tuple(shape)
        self.dim_names = tuple(dim_names)

    def __repr__(self):
        dims = ", ".join(str(s) if s is not None else (n or "?")
                         for s, n in zip(self.shape, self.dim_names))
        return f"TensorInfo({self.name!r}, {self.dtype}, [{dims}])"


def _numpy_dtype(name):
    """numpy's dtype for a runtime dtype name (bfloat16: ml_dtypes', which
    numpy knows only once ml_dtypes is imported)."""
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class Model:
    """A compiled model loaded by the runtime."""

    def __init__(self, path, device=None):
        self._model = _Model(str(path), device)
        #: "cpu" or "cuda": what the model was compiled for (qoptc --target).
        self.device = self._model.device()
        #: The GPU a CUDA model runs on ("" on the CPU).
        self.gpu_name = self._model.gpu_name()
        self.inputs = [TensorInfo(*i) for i in self._model.inputs()]
        #: The entry points: ["forward"], or for a model compiled with
        #: ``qoptc --train`` ["train_step", "eval_step", "gradients"] (those
        #: its --train-entry chose). ``run`` runs the first.
        self.entries = list(self._model.entries())
        self.outputs = self.entry_outputs(self.entries[0])
        self._adapter = json.loads(self._model.manifest()).get("adapter")
        #: Parameters in manifest order; ``role`` is "frozen" (read-only
        #: weights), "trainable" or "state" (mutable: kept by the runtime,
        #: updated by the model's runs, settable). bfloat16 parameters
        #: (qopt-svdquant's 16-bit branch) have ml_dtypes' bfloat16 dtype:
        #: loading such a model needs the ml_dtypes package.
        self.parameters = []
        for name, dtype, shape, dims, role in self._model.parameters():
            info = TensorInfo(name, dtype, shape, dims)
            info.role = role
            self.parameters.append(info)

    def get_parameter(self, name):
        """A copy of the parameter's current value (numpy array)."""
        return self._model.get_parameter(str(name))

    def set_parameter(self, name, value):
        """Sets a trainable or state parameter (exact dtype and shape), e.g.
        to resume from a checkpoint; frozen parameters raise ValueError."""
        self._model.set_parameter(str(name), np.asarray(value, order="C"))

    @property
    def lora_slots(self):
        """The run-time adapter slots (qoptc --lora-slots): a list of
        (module, rank)."""
        return list(self._model.lora_slots())

    def load_adapter(self, path):
        """Loads the PEFT LoRA adapter in folder `path` (adapter_config.json,
        adapter_model.safetensors) into the slots, without recompiling; an
        adapter that does not fit raises ValueError naming the module and
        leaves the previous one loaded."""
        self._model.load_adapter(os.fspath(path))

    def unload_adapter(self):
        """Zeros the slots: the base model again."""
        self._model.unload_adapter()

    @property
    def uses_rng(self):
        """Whether the model takes a random key (dropout, stochastic ops)."""
        return self._model.uses_rng()

    @property
    def rng(self):
        """The random key ``(seed, counter)`` of the next run; each
        successful run advances the counter. Setting it back replays a run
        bit for bit."""
        return self._model.get_rng()

    @rng.setter
    def rng(self, key):
        seed, counter = key
        self._model.set_rng(int(seed), int(counter))

    @property
    def manifest(self):
        """The manifest qoptc wrote (JSON text)."""
        return self._model.manifest()

    def set_num_threads(self, n):
        """Threads for the kernels (0: all cores)."""
        self._model.set_num_threads(int(n))

    def entry_outputs(self, entry):
        """The outputs (TensorInfo list) of entry point `entry` (a name)."""
        return [TensorInfo(*o) for o in self._model.outputs(self._entry_index(entry))]

    def _entry_index(self, entry):
        if entry is None:
            return 0
        if entry not in self.entries:
            raise ValueError(f"the model has no entry {entry!r} (entries: "
                             f"{', '.join(self.entries)})")
        return self.entries.index(entry)

    def run(self, *args, entry=None, **kwargs):
        """Runs the model on arrays given in input order or by name; returns
        the outputs as a list of numpy arrays. Inputs are checked (dtype,
        rank, sizes) and a ValueError says what is wrong. Arrays are passed
        without a copy when already C-contiguous and of the model's dtype;
        other dtypes are refused, not converted. `entry` names the entry
        point to run (default: the first)."""
        index = self._entry_index(entry)
        if args and kwargs:
            raise TypeError("give inputs either in order or by name")
        if kwargs:
            names = [i.name for i in self.inputs]
            unknown = sorted(set(kwargs) - set(names))
            if unknown:
                raise TypeError(f"the model has no input {unknown[0]!r} "
                                f"(inputs: {', '.join(names)})")
            missing = [n for n in names if n not in kwargs]
            if missing:
                raise TypeError(f"missing input {missing[0]!r}")
            args = [kwargs[n] for n in names]
        # C order without a copy where it already is; 0-d arrays stay 0-d
        # (np.ascontiguousarray would make them 1-d).
        arrays = [np.asarray(a, order="C") for a in args]
        return self._model.run(arrays, index)

    __call__ = run

    # --- training (models compiled with qoptc --train) ----------------------

    def _batch(self, batch):
        # Integer inputs (ids, masks, labels) as int64 whatever the caller
        # built them as; floats as the model declares. Without labels, a
        # causal LM's are its input ids, -100 where the mask is 0.
        batch = dict(batch)
        names = {i.name for i in self.inputs}
        if "labels" in names and "labels" not in batch and "input_ids" in batch:
            ids = np.asarray(batch["input_ids"])
            mask = batch.get("attention_mask")
            batch["labels"] = ids if mask is None else np.where(np.asarray(mask) == 0, -100, ids)
        out = {}
        for info in self.inputs:
            if info.name in batch:
                a = np.asarray(batch[info.name])
                if a.dtype != info.dtype and a.dtype.kind == info.dtype.kind:
                    a = a.astype(info.dtype)
                out[info.name] = a
        unknown = sorted(set(batch) - set(out))
        if unknown:
            raise TypeError(f"the model has no input {unknown[0]!r} "
                            f"(inputs: {', '.join(i.name for i in self.inputs)})")
        return out

    def loss(self, **batch):
        """The loss on `batch` (the model's inputs and ``labels``; without
        labels, the input ids, -100 where the attention mask is 0), without
        training: the eval_step entry. Returns a float."""
        return float(self.run(entry="eval_step", **self._batch(batch))[0])

    def gradients(self, **batch):
        """The gradient of the loss on `batch` with respect to every
        trainable parameter: a dict keyed by the parameter's name (PEFT's
        tensor name without ``base_model.model.``, e.g.
        ``model.layers.0.self_attn.q_proj.lora_A.weight``). The gradients
        entry; parameters are not changed."""
        outputs = self.run(entry="gradients", **self._batch(batch))
        names = [o.name for o in self.entry_outputs("gradients")]
        return {n[len("grad."):]: g for n, g in zip(names[1:], outputs[1:])}

    def train_step(self, **batch):
        """One optimizer step on `batch`: updates the trainable parameters
        and the optimizer state in place and returns the loss before the
        step (a float). In a library with the accumulate entry, the step
        uses the mean of the gradients accumulate() summed since the last
        step and of this batch's."""
        return float(self.run(entry="train_step", **self._batch(batch))[0])

    def accumulate(self, **batch):
        """Gradient accumulation: adds the gradients on `batch` to a
        running sum (state of the library; the parameters do not change)
        and returns the loss. N - 1 calls and one train_step make one step
        over N micro-batches. Needs ``qoptc --train --train-entry
        train,eval,gradients,accumulate``."""
        if "accumulate_step" not in self.entries:
            raise ValueError("the model has no accumulate_step entry (compile it "
                             "with qoptc --train --train-entry "
                             "train,eval,gradients,accumulate)")
        return float(self.run(entry="accumulate_step", **self._batch(batch))[0])

    def _mutable(self):
        return [p for p in self.parameters if p.role != "frozen"]

    def save_adapter(self, path):
        """Writes the trained adapter in PEFT's format (adapter_config.json,
        adapter_model.safetensors) to folder `path`, for
        ``PeftModel.from_pretrained``. A LoRA-GA adapter (whose init changed
        the base weights) is written in PEFT's converted form: a rank-2r
        adapter for the original weights."""
        if not self._adapter:
            raise ValueError("the model has no adapter in PEFT's format to save (compile "
                             "it with qoptc --train and --adapter or --lora-config; "
                             "LoRA-XS / LoRA-SB middles and SoRA gates have no PEFT "
                             "form: save_checkpoint keeps them)")
        init = str(self._adapter["config"].get("init_lora_weights", True)).lower()
        prefix = "base_model.model."
        names = {key: key[len(prefix):] if key.startswith(prefix) else key
                 for key in self._adapter["tensors"]}
        config = self._adapter["config"]
        tensors = {key: self.get_parameter(name) for key, name in names.items()}
        if init == "lora_ga":
            # LoRA-GA changed the base weights, which PEFT cannot redo from
            # the adapter alone: PEFT's converted form (save_pretrained with
            # path_initial_model_for_weight_conversion) for the original
            # weights instead, ΔW = B·A - B0·A0 as a rank-2r adapter
            # A' = [A; A0], B' = [B, -B0], from the initial factors the
            # library keeps.
            parameters = {p.name for p in self.parameters}
            config = self._adapter.get("converted_config")
            if config is None or any(n + ".initial" not in parameters for n in names.values()):
                raise ValueError("this LoRA-GA library does not keep the initial factors "
                                 "PEFT's converted form needs (DoRA and embedding adapters "
                                 "have no converted form; libraries from an older qoptc "
                                 "do not keep them)")
            for key, name in names.items():
                initial = self.get_parameter(name + ".initial")
                if key.endswith(".lora_A.weight"):
                    tensors[key] = np.concatenate([tensors[key], initial], axis=0)
                else:
                    tensors[key] = np.concatenate([tensors[key], -initial], axis=1)

        def write(tmp):
            with open(os.path.join(tmp, "adapter_config.json"), "w") as f:
                json.dump(config, f, indent=2)
                f.write("\n")
            _write_safetensors(os.path.join(tmp, "adapter_model.safetensors"), tensors)
        _replace_folder(path, write)

    def save_checkpoint(self, path, extra=None):
        """Saves what training changes — the trainable parameters, the
        optimizer state (``optimizer.step``, moments) and the random key —
        to folder `path` (checkpoint.safetensors, checkpoint.json with
        `extra`, a JSON-able dict for the caller's own state). The folder
        is replaced atomically: a save killed half-way leaves the previous
        checkpoint readable (load_checkpoint finds it)."""
        tensors = {p.name: self.get_parameter(p.name) for p in self._mutable()}
        meta = {"format": "qopt-checkpoint", "version": 1,
                "rng": list(self.rng) if self.uses_rng else None,
                "extra": extra}

        def write(tmp):
            _write_safetensors(os.path.join(tmp, "checkpoint.safetensors"), tensors)
            with open(os.path.join(tmp, "checkpoint.json"), "w") as f:
                json.dump(meta, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
        _replace_folder(path, write)

    def load_checkpoint(self, path):
        """Restores a checkpoint save_checkpoint wrote (every mutable
        parameter must be in it, of its dtype and shape); returns its
        `extra` dict."""
        path = _existing_folder(path)
        with open(os.path.join(path, "checkpoint.json")) as f:
            meta = json.load(f)
        if meta.get("format") != "qopt-checkpoint":
            raise ValueError(f"{path}: not a qopt checkpoint")
        tensors = _read_safetensors(os.path.join(path, "checkpoint.safetensors"))
        missing = [p.name for p in self._mutable() if p.name not in tensors]
        if missing:
            raise ValueError(f"{path}: the checkpoint lacks parameter {missing[0]!r} "
                             f"(is it from another model?)")
        for p in self._mutable():
            self.set_parameter(p.name, tensors[p.name])
        if meta.get("rng") is not None and self.uses_rng:
            self.rng = tuple(meta["rng"])
        return meta.get("extra")


# Set by qopt-train's test hook (QOPT_TRAIN_TEST_KILL_IN_SAVE): the next
# safetensors write kills the process half-way, as a crash would.
_test_kill_in_write = False

_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16,
                       "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _safetensors_dtype(a):
    for name, t in _SAFETENSORS_DTYPES.items():
        if a.dtype == np.dtype(t):
            return name
    if a.dtype.name == "bfloat16":
        return "BF16"
    raise ValueError(f"cannot store dtype {a.dtype} in safetensors")


def _write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.asarray(a, order="C")  # 0-d stays 0-d
        data = a.tobytes()
        header[name] = {"dtype": _safetensors_dtype(a), "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        if _test_kill_in_write:  # qopt-train's crash test: die mid-save
            f.flush()
            os._exit(137)
        for blob in blobs:
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def _read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    data = raw[8 + size:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            import ml_dtypes
            dtype = ml_dtypes.bfloat16
        else:
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"]).copy()
    return out


def _replace_folder(path, write):
    """Writes a folder with `write(tmp)` beside `path`, then puts it in place
    of `path` by renames: at every moment `path` or its `.old` copy is a
    complete folder."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".tmp-", dir=parent)
    try:
        write(tmp)
        old = path + ".old"
        if os.path.exists(path):
            if os.path.exists(old):
                shutil.rmtree(old)
            os.rename(path, old)
        os.rename(tmp, path)
        _fsync_dir(parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path):
    """Makes renames in folder `path` durable (a power loss keeps them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _existing_folder(path):
    """`path`, or its `.old` copy when a save was killed between renames."""
    if os.path.isdir(path):
        return path
    if os.path.isdir(path + ".old"):
        return path + ".old"
    raise FileNotFoundError(f"no checkpoint at {path}")


def load(path, device=None):
    """Loads a model compiled by qoptc (model.so; its weights file beside).
    `device` ("cpu" or "cuda") refuses a model compiled for another one
    (RuntimeError); a CUDA model (qoptc --target cuda) runs on the GPU that
    QOPT_CUDA_DEVICE names (default 0), taking numpy arrays in and giving
    numpy arrays back as a CPU model does."""
    return Model(path, device)


class CompileError(RuntimeError):
    """qoptc refused the model; the message is qoptc's."""


def _qoptc(path):
    """qoptc: `path`, $QOPT_QOPTC, the build tree's bin/ beside python/, or
    the PATH."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (path, os.environ.get("QOPT_QOPTC"),
                      os.path.join(here, "..", "..", "bin", "qoptc")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("qoptc")
    if not found:
        raise CompileError("qoptc not found: set QOPT_QOPTC or put it on the PATH")
    return found


def compile(model, output=None, *, adapter=None, lora_config=None, merge=False,
            weights=None, quantize=None, quantize_modules=None, int8_activations=False,
            requantize=False, save_adapter=None, lora_slots=None, calibration_data=None,
            calibration_batch_size=None, calibration_max_passes=None, dims=None, cpu=None, parallel=True,
            extra_args=(), qoptc=None):
    """Compiles an ONNX model with qoptc and loads it.

    model         path of the .onnx file (external data beside it)
    output        the library to write (default: a new temporary folder)
    adapter       a PEFT adapter folder to load (qoptc --adapter)
    lora_config   a PEFT adapter_config.json: fresh adapters (--lora-config)
    merge         merge the adapter into the weights (--merge)
    weights       a safetensors checkpoint replacing the model's weights,
                  bitsandbytes 4-bit layers included (--weights)
    quantize      quantize the linear weights, e.g. "nf4:block=64,double-quant"
                  (--quantize SPEC)
    quantize_modules  the layers quantize applies to, as PEFT's
                  target_modules: a list of names or suffixes ("q_proj",
                  "lm_head"), or one regex (".*": every linear layer, the
                  output head too) (--quantize-modules; default: every
                  linear layer but the head)
    int8_activations  quantized products quantize their inputs to int8 per
                  block of 32 (--int8-activations)
    requantize    with merge: merge into quantized weights by quantizing the
                  sum again (--requantize; lossy, the report goes to stderr)
    save_adapter  write the adapters in PEFT's format here (--save-adapter)
    lora_slots    a PEFT adapter_config.json: run-time adapter slots for the
                  modules it targets, up to its ranks (--lora-slots); fill
                  them with Model.load_adapter
    calibration_data  an .npz (numpy.savez) of arrays named after the model's
                  inputs, first dimension = samples, optional "labels":
                  for init_lora_weights "eva" (--calibration-data)
    calibration_batch_size  samples per calibration batch
                  (--calibration-batch-size)
    calibration_max_passes  passes over the batches before EVA gives up
                  (--calibration-max-passes)
    dims          {"seq": 128, ...}: pin symbolic dimensions (--dim)
    cpu, parallel, extra_args   as qoptc's --cpu, --parallel, other flags

    Raises CompileError with qoptc's message when it fails."""
    model = os.fspath(model)
    if output is None:
        stem = os.path.splitext(os.path.basename(model))[0]
        output = os.path.join(tempfile.mkdtemp(prefix="qopt-"), stem + ".so")
    cmd = [_qoptc(qoptc), model, "-o", os.fspath(output)]
    if adapter is not None:
        cmd += ["--adapter", os.fspath(adapter)]
    if lora_config is not None:
        cmd += ["--lora-config", os.fspath(lora_config)]
    if weights is not None:
        cmd += ["--weights", os.fspath(weights)]
    if quantize is not None:
        cmd += ["--quantize", quantize]
    if quantize_modules is not None:
        if not isinstance(quantize_modules, str):
            quantize_modules = ",".join(quantize_modules)
        cmd += ["--quantize-modules", quantize_modules]
    if int8_activations:
        cmd.append("--int8-activations")
    if merge:
        cmd.append("--merge")
    if requantize:
        cmd.append("--requantize")
    if save_adapter is not None:
        cmd += ["--save-adapter", os.fspath(save_adapter)]
    if lora_slots is not None:
        cmd += ["--lora-slots", os.fspath(lora_slots)]
    if calibration_data is not None:
        cmd += ["--calibration-data", os.fspath(calibration_data)]
    if calibration_batch_size is not None:
        cmd += ["--calibration-batch-size", str(int(calibration_batch_size))]
    if calibration_max_passes is not None:
        cmd += ["--calibration-max-passes", str(int(calibration_max_passes))]
    for name, size in (dims or {}).items():
        cmd += ["--dim", f"{name}={int(size)}"]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if not parallel:
        cmd.append("--parallel=false")
    cmd += [str(a) for a in extra_args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise CompileError(r.stderr.strip() or f"qoptc failed ({r.returncode})")
    return Model(output)


# bitsandbytes' blockwise formats, with bitsandbytes' default block sizes.
_BLOCKWISE = {"nf4": 64, "fp4": 64, "int8-dynamic": 4096}
# QLoRA's double quantization: the absmaxes in the 8-bit format, blocks of 256.
_NESTED_BLOCK = 256
# Integer formats: bits.
_INT = {f"int{b}": b for b in range(2, 9)}


def _quantize_int(a, format, group_size, asym, clip):
    if clip not in ("minmax", "mse"):
        raise ValueError(f"clip must be 'minmax' or 'mse', got {clip!r}")
    if a.ndim == 0:
        raise ValueError("quantize needs at least one dimension")
    cols = a.shape[-1]
    rows = a.size // cols
    if group_size is not None and (not isinstance(group_size, (int, np.integer))
                                   or isinstance(group_size, bool)):
        raise ValueError(f"group_size must be an integer, got {group_size!r}")
    group = cols if group_size is None else int(group_size)
    if group <= 0:
        raise ValueError(f"group_size must be positive, got {group}")
    group = min(group, cols)
    flat = np.ascontiguousarray(a.astype(np.float32).reshape(-1))
    if not np.all(np.isfinite(flat)):
        raise ValueError("quantize: the array holds NaN or infinite values")
    packed, scales, zero_points = _runtime._quantize_int(
        flat, rows, cols, group, _INT[format], bool(asym), clip == "mse")
    groups = -(-cols // group)
    state = {"quant_type": format, "shape": tuple(a.shape), "group_size": group,
             "asym": bool(asym), "weight": packed.reshape(rows, -1),
             "scales": scales.reshape(rows, groups)}
    if asym:
        state["zero_points"] = zero_points.reshape(rows, groups)
    return state


def _dequantize_int(state):
    bits = _INT[state["quant_type"]]
    shape = tuple(state["shape"])
    group = int(state["group_size"])
    if not shape or group <= 0:
        raise ValueError("an integer state needs a shape of rank >= 1 and a positive group_size")
    cols = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    weight = np.asarray(state["weight"], np.uint8).reshape(rows, -1)
    row_bytes = -(-cols * bits // 8)
    if weight.shape[1] != row_bytes:
        raise ValueError(f"weight rows hold {weight.shape[1]} bytes, {cols} codes of "
                         f"{bits} bits need {row_bytes}")
    # Each row is a little-endian bit string; element i is bits [i·b, i·b + b).
    bitstring = np.unpackbits(weight, axis=1, bitorder="little")[:, :cols * bits]
    codes = (bitstring.reshape(rows, cols, bits).astype(np.int32)
             << np.arange(bits, dtype=np.int32)).sum(axis=2, dtype=np.int32)
    groups = -(-cols // group)
    scales = np.asarray(state["scales"], np.float32).reshape(rows, groups)
    if state.get("asym"):
        zp = np.asarray(state["zero_points"], np.uint8).reshape(rows, groups).astype(np.int32)
    else:  # signed codes: sign-extend
        codes = np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes)
        zp = np.zeros((rows, groups), np.int32)
    index = np.arange(cols) // group
    values = (codes - zp[:, index]).astype(np.float32) * scales[:, index]
    return values.astype(np.float32).reshape(shape)


# Float formats: qopt.quantize's name -> (Support's small float, block).
_FLOAT = {"fp8-e4m3": ("f8e4m3", None), "fp8-e5m2": ("f8e5m2", None),
          "mxfp4": ("f8e8m0", 32), "nvfp4": ("f8e4m3", 16)}


def _rows_cols(a):
    if a.ndim == 0:
        raise ValueError("quantize needs at least one dimension")
    flat = np.ascontiguousarray(a.astype(np.float32).reshape(-1))
    if not np.all(np.isfinite(flat)):
        raise ValueError("quantize: the array holds NaN or infinite values")
    return flat, a.size // a.shape[-1], a.shape[-1]


def _quantize_float(a, format, block_size, per_channel):
    flat, rows, cols = _rows_cols(a)
    kind, block = _FLOAT[format]
    state = {"quant_type": format, "shape": tuple(a.shape)}
    if block is None:  # fp8: per tensor or per row
        if block_size is not None:
            raise ValueError(f"{format} takes per_channel, not block_size")
        r, c = (rows, cols) if per_channel else (1, rows * cols)
        codes, scales = _runtime._quantize_float(flat, r, c, kind)
        state.update(per_channel=bool(per_channel), weight=codes.reshape(a.shape),
                     scales=scales if per_channel else scales.reshape(()))
        return state
    if per_channel:
        raise ValueError(f"{format} has one scale per {block} elements, not per_channel")
    if block_size is not None and block_size != block:
        raise ValueError(f"{format} has blocks of {block}, not {block_size}")
    packed, scales, global_scale = _runtime._quantize_fp4(flat, rows, cols, format == "nvfp4")
    state.update(block_size=block, weight=packed.reshape(rows, -1),
                 scales=scales.reshape(rows, -1))
    if global_scale is not None:
        state["global_scale"] = np.float32(global_scale)
    return state


def _dequantize_float(state):
    format, shape = state["quant_type"], tuple(state["shape"])
    kind, block = _FLOAT[format]
    if block is None:
        table = _runtime._small_float_table(kind)
        codes = np.asarray(state["weight"], np.uint8)
        if codes.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"weight holds {codes.size} codes, shape {shape} needs "
                             f"{int(np.prod(shape, dtype=np.int64))}")
        rows = int(np.prod(shape[:-1], dtype=np.int64)) if state.get("per_channel") else 1
        values = table[codes.reshape(rows, -1)]
        scales = np.asarray(state["scales"], np.float32).reshape(rows, 1)
        return (values * scales).astype(np.float32).reshape(shape)
    if not shape:
        raise ValueError(f"a {format} state needs a shape of rank >= 1")
    cols = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    weight = np.asarray(state["weight"], np.uint8).reshape(rows, -1)
    if weight.shape[1] != -(-cols // 2):
        raise ValueError(f"weight rows hold {weight.shape[1]} bytes, {cols} codes of 4 bits "
                         f"need {-(-cols // 2)}")
    codes = np.stack([weight & 15, weight >> 4], axis=2).reshape(rows, -1)[:, :cols]
    groups = -(-cols // block)
    scales = _runtime._small_float_table(kind)[
        np.asarray(state["scales"], np.uint8).reshape(rows, groups)]
    if format == "nvfp4":
        scales = (np.float32(state["global_scale"]) * scales).astype(np.float32)
    values = _runtime._small_float_table("f4e2m1")[codes]
    return (values * scales[:, np.arange(cols) // block]).astype(np.float32).reshape(shape)


def quantize(array, format, *, block_size=None, double_quant=False, group_size=None,
             asym=False, clip="minmax", per_channel=False):
    """Quantizes `array` in `format` exactly as bitsandbytes' CUDA kernels do
    (they wrote the QLoRA checkpoints users bring): "nf4" and "fp4" as its
    quantize_4bit, "int8-dynamic" as its quantize_blockwise. Returns a dict
    of numpy arrays in bitsandbytes' layout (its QuantState names): `weight`
    (uint8, flat: for 4 bits two codes a byte, the first in the high nibble,
    an odd count padded with the code of zero; for 8 bits one a byte),
    `absmax` (float32 per block of `block_size`; default 64, for
    int8-dynamic 4096), `quant_map` (the code values), `quant_type`,
    `blocksize`, `shape` (the input's). Any float dtype is read as float32
    (bitsandbytes quantizes bf16 / f16 from their float32 values).

    `double_quant=True` (QLoRA's double quantization, bitsandbytes'
    compress_statistics / nested): `absmax` becomes uint8 codes of the
    absmaxes minus their mean, in the 8-bit dynamic format in blocks of 256,
    with `nested_absmax`, `nested_quant_map`, `nested_offset` (the mean,
    float32; bitsandbytes' CUDA mean may differ in the last bit) and
    `nested_blocksize`.

    "int2" … "int8" quantize along the last axis (the leading ones
    are rows, e.g. a linear weight's output channels), as `qoptc --quantize`
    does: one scale per `group_size` elements of a row (default the whole
    row), symmetric signed codes or `asym=True` unsigned codes with a zero
    point, `clip="mse"` to search each group's clipping ratio. The dict, in
    qopt's layout: `weight` (uint8 [rows, bytes]: each row's codes packed
    little-endian, element 0 in the lowest bits), `scales` (float32 [rows,
    groups]), `zero_points` (uint8, asym only), `quant_type`, `group_size`,
    `asym`, `shape`. dequantize() takes the dict back.

    "fp8-e4m3" / "fp8-e5m2": one float32 scale for the array (absmax / 448
    or 57344), or `per_channel=True` one per row; `weight` holds one code a
    byte (uint8, the input's shape), `scales` float32 (shape () or [rows]).
    "mxfp4" (OCP MX: E2M1 codes, a power-of-two E8M0 scale per 32 elements
    of a row) and "nvfp4" (E2M1 codes, an E4M3 scale per 16 over one float32
    `global_scale`, as torchao's two-level NVFP4) quantize along the last
    axis: `weight` (uint8 [rows, bytes], element 0 in the low nibble),
    `scales` (the scales' uint8 codes, [rows, blocks]), `block_size`."""
    known = sorted(_BLOCKWISE) + sorted(_INT) + sorted(_FLOAT)
    if format not in known:
        raise ValueError(f"unknown format {format!r} (expected one of {', '.join(known)})")
    a = np.asarray(array)
    if a.dtype.kind != "f" and a.dtype.name != "bfloat16":
        raise ValueError(f"quantize takes floats, got {a.dtype}")
    if a.size == 0:
        raise ValueError("quantize needs at least one element")
    if format in _FLOAT:
        if double_quant or group_size is not None or asym or clip != "minmax":
            raise ValueError(f"{format} takes no double_quant / group_size / asym / clip")
        return _quantize_float(a, format, block_size, per_channel)
    if per_channel:
        raise ValueError(f"per_channel is for the fp8 formats ({format}: "
                         f"{'group_size' if format in _INT else 'block_size'})")
    if format in _INT:
        if block_size is not None or double_quant:
            raise ValueError(f"{format} takes group_size, not block_size / double_quant")
        return _quantize_int(a, format, group_size, asym, clip)
    if group_size is not None or asym or clip != "minmax":
        raise ValueError(f"{format} takes block_size and double_quant, not group_size / "
                         "asym / clip")
    block = int(block_size if block_size is not None else _BLOCKWISE[format])
    if block <= 0:
        raise ValueError(f"block_size must be positive, got {block}")
    flat = np.ascontiguousarray(a.astype(np.float32).reshape(-1))
    blocks = -(-flat.size // block)
    if format != "int8-dynamic" and flat.size % 2:
        # The pad nibble is a zero quantized in the last block, as
        # bitsandbytes' kernel pads its loads.
        flat = np.append(flat, np.float32(0))
    codes, absmax = _runtime._quantize_blockwise(flat, format, block)
    absmax = absmax[:blocks]
    if format == "int8-dynamic":
        weight = codes
    else:
        weight = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    state = {"quant_type": format, "blocksize": block, "shape": tuple(a.shape),
             "weight": weight, "absmax": absmax, "quant_map": _runtime._code_table(format)}
    if double_quant:
        nested_codes, nested_absmax, offset = _runtime._double_quantize(absmax, _NESTED_BLOCK)
        state.update(absmax=nested_codes, nested_absmax=nested_absmax,
                     nested_quant_map=_runtime._code_table("int8-dynamic"),
                     nested_offset=np.float32(offset), nested_blocksize=_NESTED_BLOCK)
    return state


def dequantize(state):
    """The float32 array (of the original shape) that a bitsandbytes-layout
    state holds: a quantize() dict, or bitsandbytes' own NF4 / FP4 state with
    double quantization (`absmax` uint8 codes with `nested_absmax`,
    `nested_offset`, `nested_blocksize` (default 256)) or its 8-bit
    "int8-dynamic" state (`weight` one code per element). The values equal
    bitsandbytes' dequantize_4bit / dequantize_blockwise bit for bit; an
    integer state (int2 / int4 / int8) gives (code - zero point) · scale, a
    float one (fp8-*, mxfp4, nvfp4) code value · scale (nvfp4: · global
    scale)."""
    if isinstance(state, dict) and state.get("quant_type") in _FLOAT:
        try:
            return _dequantize_float(state)
        except KeyError as e:
            raise ValueError(f"not a qopt.quantize result: no {e.args[0]!r}") from None
    if isinstance(state, dict) and state.get("quant_type") in _INT:
        try:
            return _dequantize_int(state)
        except KeyError as e:
            raise ValueError(f"not a qopt.quantize result: no {e.args[0]!r}") from None
    try:
        format, block = state["quant_type"], int(state["blocksize"])
        shape, weight, absmax = tuple(state["shape"]), state["weight"], state["absmax"]
    except KeyError as e:
        raise ValueError(f"not a qopt.quantize result: no {e.args[0]!r}") from None
    if format not in _BLOCKWISE:
        raise ValueError(f"unknown quant_type {format!r}")
    n = int(np.prod(shape, dtype=np.int64))
    weight = np.ascontiguousarray(np.asarray(weight, np.uint8).reshape(-1))
    if format == "int8-dynamic":
        codes = weight
    else:
        codes = np.stack([weight >> 4, weight & 15], axis=1).reshape(-1)
    if codes.size < n or codes.size > n + 1:
        raise ValueError(f"weight holds {codes.size} codes, shape {shape} needs {n}")
    codes = np.ascontiguousarray(codes[:n])
    if "nested_absmax" in state:
        # QLoRA's double quantization: dynamic codes · nested absmax + offset,
        # in float32 as bitsandbytes adds them.
        nested_block = int(state.get("nested_blocksize", 256))
        if np.size(state["nested_absmax"]) != -(-np.size(absmax) // max(nested_block, 1)):
            raise ValueError("nested_absmax must hold one value per nested block")
        absmax = _runtime._dequantize_blockwise(
            np.ascontiguousarray(np.asarray(absmax, np.uint8).reshape(-1)),
            np.ascontiguousarray(np.asarray(state["nested_absmax"], np.float32).reshape(-1)),
            "int8-dynamic", nested_block)
        absmax += np.float32(state["nested_offset"])
    absmax = np.ascontiguousarray(np.asarray(absmax, np.float32).reshape(-1))
    return _runtime._dequantize_blockwise(codes, absmax, format, block).reshape(shape)
