"""Checks that a #qopt.external reference into the model file points at the
initializer's bytes: reads the offset and length the importer printed and
compares those bytes of the file with the array saved by make_models.py."""
import re
import sys

import numpy as np

mlir, model, weight = sys.argv[1:4]
text = open(mlir).read()
m = re.search(r'qopt\.param @model\.layers\.0\.mlp\.up_proj\.weight : tensor<16x32xf32> = '
              r'#qopt\.external<"linear\.onnx", offset = (\d+), length = (\d+)>', text)
assert m, "no external reference for the weight"
offset, length = int(m.group(1)), int(m.group(2))
data = open(model, "rb").read()[offset:offset + length]
expected = np.load(weight)
got = np.frombuffer(data, dtype="<f4").reshape(expected.shape)
assert np.array_equal(got, expected), "referenced bytes differ from the weight"
print("reference ok")
