"""The trainable-state ABI (manifest ABI 3): mutable parameters, updates
returned by the entry, the random key, and the runtime's parameter API.

A module with a frozen weight (in a file), a trainable bias and a state step
counter, which every run updates (qopt.store_param) and which returns the
run's random key, is compiled with qoptc and run through the Python binding.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
MODULE = """
qopt.param @w : tensor<3xf32> = #qopt.external<"w.bin", offset = 0, length = 12>
qopt.param trainable @bias : tensor<3xf32> = dense<[0.5, 0.5, 0.5]> : tensor<3xf32>
qopt.param state @steps : tensor<f32> = dense<0.0> : tensor<f32>
func.func @main(%x: tensor<3xf32>) -> (tensor<3xf32>, tensor<f32>, tensor<2xi64>) {
  %w = qopt.load_param @w : tensor<3xf32>
  %b = qopt.load_param @bias : tensor<3xf32>
  %s = qopt.load_param @steps : tensor<f32>
  %m = arith.mulf %x, %w : tensor<3xf32>
  %y = arith.addf %m, %b : tensor<3xf32>
  %one = arith.constant dense<1.0> : tensor<f32>
  %s2 = arith.addf %s, %one : tensor<f32>
  qopt.store_param @steps, %s2 : tensor<f32>
  %b2 = arith.addf %b, %x : tensor<3xf32>
  qopt.store_param @bias, %b2 : tensor<3xf32>
  // A read after the store sees the new value.
  %s3 = qopt.load_param @steps : tensor<f32>
  %k = qopt.random_key : tensor<2xi64>
  return %y, %s3, %k : tensor<3xf32>, tensor<f32>, tensor<2xi64>
}
"""


def fnv_trailer_hash(data):
    """qopt/Support/LibraryTrailer.h's hash, vectorised over its 8 lanes."""
    prime, offset = np.uint64(0x100000001b3), 0xcbf29ce484222325
    size = len(data)
    body = np.frombuffer(data[: size - size % 8], np.uint8).reshape(-1, 8).astype(np.uint64)
    lanes = np.array([(offset + i) % 2 ** 64 for i in range(8)], np.uint64)
    with np.errstate(over="ignore"):
        for row in body:
            lanes = (lanes ^ row) * prime
        h = np.uint64(offset)
        for lane in lanes:
            h = (h ^ lane) * prime
        for b in data[size - size % 8:]:
            h = (h ^ np.uint64(b)) * prime
        return int((h ^ np.uint64(size)) * prime)


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
    return bool(cond)


with tempfile.TemporaryDirectory() as tmp:
    np.array([1, 2, 3], np.float32).tofile(os.path.join(tmp, "w.bin"))
    src = os.path.join(tmp, "state.mlir")
    open(src, "w").write(MODULE)
    subprocess.run([os.path.join(BIN, "qoptc"), src, "-o", os.path.join(tmp, "state.so")],
                   check=True, cwd=tmp)
    manifest = json.load(open(os.path.join(tmp, "state.json")))
    roles = {p["name"]: p["role"] for p in manifest["parameters"]}
    results = [
        check(manifest["abi_version"] == 4, "manifest ABI version 4"),
        check(roles == {"w": "frozen", "bias": "trainable", "steps": "state"},
              f"roles {roles}"),
        check(manifest["updates"] == ["steps", "bias"], f"updates {manifest['updates']}"),
        check(manifest["rng_key"] is True and len(manifest["outputs"]) == 3,
              "rng_key, three outputs"),
    ]
    m = qopt.load(os.path.join(tmp, "state.so"))
    results.append(check([(p.name, p.role) for p in m.parameters] ==
                         [("w", "frozen"), ("bias", "trainable"), ("steps", "state")],
                         "parameters and roles through the binding"))
    x = np.array([1, 2, 3], np.float32)
    bias, steps = np.full(3, 0.5, np.float32), 0.0
    for run in range(3):
        y, s, k = m.run(x)
        expected_y = x * np.array([1, 2, 3], np.float32) + bias
        bias, steps = bias + x, steps + 1
        results.append(check(np.array_equal(y, expected_y) and s == steps and
                             list(k) == [0, run] and
                             np.array_equal(m.get_parameter("bias"), bias) and
                             m.get_parameter("steps") == steps and
                             m.rng == (0, run + 1),
                             f"run {run}: output, updates, key [0, {run}]"))
    # Resume: set the state and the key back, and the run replays.
    m.set_parameter("bias", np.zeros(3, np.float32))
    m.set_parameter("steps", np.array(10, np.float32))
    m.rng = (42, 7)
    y, s, k = m.run(x)
    results.append(check(np.array_equal(y, x * np.array([1, 2, 3], np.float32)) and s == 11 and
                         list(k) == [42, 7] and m.rng == (42, 8),
                         "set parameters and key, run replays from them"))
    results.append(check(np.array_equal(m.get_parameter("w"), [1, 2, 3]),
                         "frozen parameter readable"))
    for name, value, message in [
            ("w", np.zeros(3, np.float32), "parameter 'w' is frozen (read-only)"),
            ("bias", np.zeros(4, np.float32), "parameter 'bias': expected shape [3], got [4]"),
            ("bias", np.zeros(3, np.float64), "parameter 'bias': expected float32, got float64"),
            ("nope", np.zeros(3, np.float32), "the model has no parameter 'nope'")]:
        try:
            m.set_parameter(name, value)
            results.append(check(False, f"set_parameter({name!r}) refused"))
        except (ValueError, KeyError) as e:
            results.append(check(message in str(e), f"set_parameter({name!r}): {e}"))
    # Runs from several threads take turns on a model with state: every
    # update lands once (the binding releases the GIL while running). The
    # state is large, so that unserialised runs would overlap.
    import threading
    big = os.path.join(tmp, "big.mlir")
    open(big, "w").write("""
qopt.param state @acc : tensor<4194304xf32> = dense<0.0> : tensor<4194304xf32>
func.func @main(%x: tensor<f32>) -> tensor<f32> {
  %a = qopt.load_param @acc : tensor<4194304xf32>
  %e = tensor.empty() : tensor<4194304xf32>
  %b = linalg.generic {indexing_maps = [affine_map<(i) -> ()>, affine_map<(i) -> (i)>,
                                        affine_map<(i) -> (i)>],
                       iterator_types = ["parallel"]} ins(%x, %a : tensor<f32>, tensor<4194304xf32>)
                       outs(%e : tensor<4194304xf32>) {
  ^bb0(%s: f32, %v: f32, %o: f32):
    %r = arith.addf %v, %s : f32
    linalg.yield %r : f32
  } -> tensor<4194304xf32>
  qopt.store_param @acc, %b : tensor<4194304xf32>
  return %x : tensor<f32>
}
""")
    subprocess.run([os.path.join(BIN, "qoptc"), big, "-o", os.path.join(tmp, "big.so")],
                   check=True, cwd=tmp)
    acc = qopt.load(os.path.join(tmp, "big.so"))
    one = np.array(1, np.float32)
    threads = [threading.Thread(target=lambda: [acc.run(one) for _ in range(25)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = acc.get_parameter("acc")
    results.append(check(np.all(total == 100),
                         "100 runs from 4 threads: every update lands once"))
    # A failed run leaves parameters and key as they were.
    before = (m.get_parameter("bias"), m.rng)
    try:
        m.run(np.zeros(4, np.float32))
    except ValueError:
        pass
    results.append(check(np.array_equal(m.get_parameter("bias"), before[0]) and
                         m.rng == before[1], "a refused run changes no state"))

    # A model of another ABI version is refused with a message.
    lib = open(os.path.join(tmp, "state.so"), "rb").read()
    body, trailer = bytearray(lib[:-24]), lib[-24:]
    old = b'"abi_version": 4'
    results.append(check(body.count(old) == 1, "manifest embedded once"))
    body = body.replace(old, b'"abi_version": 3')
    patched = bytes(body) + fnv_trailer_hash(bytes(body)).to_bytes(8, "little") + trailer[8:]
    open(os.path.join(tmp, "old.so"), "wb").write(patched)
    os.symlink("state.safetensors", os.path.join(tmp, "old.safetensors"))
    try:
        qopt.load(os.path.join(tmp, "old.so"))
        results.append(check(False, "ABI 3 model refused"))
    except Exception as e:
        results.append(check("manifest ABI version is not 4; recompile the model" in str(e),
                             f"ABI 3 model refused: {e}"))
    # A device checks' list that is not one (manifest `checks`, which a
    # CUDA model's entries take a status word for) is refused too.
    body = bytearray(lib[:-24])
    old = b'"lora_slots": []'
    results.append(check(body.count(old) == 1, "lora_slots embedded once"))
    body = body.replace(old, b'"checks": 7     ')
    patched = bytes(body) + fnv_trailer_hash(bytes(body)).to_bytes(8, "little") + trailer[8:]
    open(os.path.join(tmp, "checks.so"), "wb").write(patched)
    os.symlink("state.safetensors", os.path.join(tmp, "checks.safetensors"))
    try:
        qopt.load(os.path.join(tmp, "checks.so"))
        results.append(check(False, "malformed checks refused"))
    except Exception as e:
        results.append(check("malformed manifest: 'checks' is not a list of messages" in str(e),
                             f"malformed checks refused: {e}"))
print(f"mutable state: {results.count(False)} failures")
sys.exit(0 if all(results) else 1)
