"""compare.py GOT.npy EXPECTED.npy: prints 'match' when shapes and dtypes agree
and values are within rtol 1e-5 / atol 1e-5, else what differs."""
import sys

import numpy as np

got, expected = np.load(sys.argv[1]), np.load(sys.argv[2])
if got.shape != expected.shape or got.dtype != expected.dtype:
    print(f"differ: {got.dtype}{got.shape} vs {expected.dtype}{expected.shape}")
elif not np.allclose(got, expected, rtol=1e-5, atol=1e-5):
    print(f"differ: max abs error {np.max(np.abs(got - expected))}")
else:
    print("match")
