#!/usr/bin/env bash
# Fixtures that only a GPU can make (bitsandbytes' CUDA kernels, transformers'
# load_in_4bit), run on the GPU machine beside scripts/gpu-check.sh:
#   here (once; committed):  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python \
#       test/e2e/bnb/make_bnb_checkpoint.py prepare test/e2e/bnb/llama-base
#   there: bash scripts/gpu-fixtures.sh OUT     (carry gpu-artifacts and .whl)
# then copy OUT/bnb_quant_cuda.npz to test/python/bnb/ and OUT/llama-* (also packed as
# OUT/checkpoints.tar) to test/e2e/bnb/.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$1
py=${QOPT_GPU_PYTHON:-python3}
mkdir -p "$out"
"$py" -c 'import bitsandbytes' 2>/dev/null || "$py" -m pip install -q --no-deps "$here"/.whl/bitsandbytes-*.whl
"$py" "$here/test/python/bnb/make_bnb_cuda_fixtures.py" "$out/bnb_quant_cuda.npz"
HF_HUB_OFFLINE=1 "$py" "$here/test/e2e/bnb/make_bnb_checkpoint.py" quantize \
  "$here/test/e2e/bnb/llama-base" "$out"
tar -C "$out" -cf "$out/checkpoints.tar" $(cd "$out" && ls -d llama-*)
