"""Shared by the e2e scripts that compare compiled models with checkpoints:
safetensors read / written with numpy alone (CI has no safetensors
package), and the relative error they report."""
import json
import struct

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "U8": np.uint8, "I8": np.int8, "I64": np.int64}


def read_safetensors(path):
    """{name: numpy array} of a safetensors file."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        if t["dtype"] == "BF16":  # the top half of an f32 (numpy has no bf16)
            bits = np.frombuffer(data[begin:end], np.uint16).astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(t["shape"])
            continue
        out[name] = np.frombuffer(data[begin:end], DTYPES[t["dtype"]]).reshape(t["shape"])
    return out


def safetensors_dtypes(path):
    """{name: dtype string} of a safetensors file."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    return {n: t["dtype"] for n, t in header.items() if n != "__metadata__"}


def write_f32_safetensors(path, tensors):
    """Writes {name: array} as F32 tensors."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def rel_error(got, ref, valid=None):
    """max|got - ref| / max|ref|, over the positions `valid` ([batch, seq])
    keeps when given; inf for another shape."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    if valid is not None:
        mask = np.broadcast_to(valid[..., None], ref.shape)
        got, ref = got[mask], ref[mask]
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))


def dequantized_checkpoint(tensors):
    """The checkpoint with every bitsandbytes 4-bit weight dequantized (by
    qopt.dequantize) and every LLM.int8 one (weight · SCB / 127), its float
    tensors as they are."""
    import qopt
    out = {}
    for name, a in tensors.items():
        if ".quant_state." not in name:
            continue
        prefix = name.split(".quant_state.")[0]
        state = json.loads(bytes(a).decode())
        q = {"quant_type": state["quant_type"], "blocksize": state["blocksize"],
             "shape": tuple(state["shape"]), "weight": tensors[prefix],
             "absmax": tensors[prefix + ".absmax"]}
        if prefix + ".nested_absmax" in tensors:
            q.update(nested_absmax=tensors[prefix + ".nested_absmax"],
                     nested_offset=state["nested_offset"],
                     nested_blocksize=state["nested_blocksize"])
        out[prefix] = qopt.dequantize(q)
    for name, a in tensors.items():  # LLM.int8: weight · SCB · (1/127), as bitsandbytes
        if name.endswith(".SCB"):
            prefix = name[:-len(".SCB")] + ".weight"
            out[prefix] = (tensors[prefix].astype(np.float32) * a.astype(np.float32)[:, None]
                           * np.float32(7.874015718698502e-3)).astype(np.float32)
    for name, a in tensors.items():
        base = name.split(".weight.")[0] + ".weight" if ".weight." in name else name
        if base not in out and a.dtype == np.float32 and not name.endswith(".SCB"):
            out[name] = a
    return out
