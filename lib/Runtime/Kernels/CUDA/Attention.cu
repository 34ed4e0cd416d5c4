//===- Attention.cu - fused attention forward (flash-attention style) ----===//
//
// qopt.attention's forward pass in one launch: scale, soft cap, mask,
// causal masking and grouped-query heads applied to each score as it is
// computed, softmax kept online, the scores never stored. Blocks of
// kAttnThreads threads, one per kAttnRows query rows of one (batch, head),
// a 1-D grid over batch × heads × row tiles; AttentionTile.h holds the
// threads' work (shared with the CPU emulation) and the launch plan.
//
//===----------------------------------------------------------------------===//

#include "AttentionTile.h"

namespace qopt_cuda {

__device__ __forceinline__ float warpMax(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ __forceinline__ float warpSum(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

} // namespace qopt_cuda

using namespace qopt_cuda;

extern "C" __global__ void __launch_bounds__(kAttnThreads, 4)
    qopt_cuda_attention_f32(const __grid_constant__ AttentionParams p) {
  __shared__ AttentionShared sh;
  int t = threadIdx.x, warp = t / 32, lane = t % 32;
  AttentionBlock w = attnBlock(p, blockIdx.x);
  attnLoadQ(p, w, sh, t);
  AttnRow rows[kAttnRowsPerWarp];
  QOPT_UNROLL()
  for (int r = 0; r < kAttnRowsPerWarp; ++r)
    attnRowInit(rows[r]);
  int64_t end = attnKeyEnd(p, w);
  for (int64_t key0 = 0; key0 < end; key0 += kAttnKeys) {
    __syncthreads(); // (the previous step's reads of K and V are done)
    attnLoadKV(p, w, sh, key0, t);
    __syncthreads();
    QOPT_UNROLL()
    for (int rr = 0; rr < kAttnRowsPerWarp; ++rr) {
      int r = warp * kAttnRowsPerWarp + rr;
      if (w.row0 + r >= p.rows) // (the same for the whole warp)
        break;
      AttnRow &row = rows[rr];
      float s = attnScore(p, w, sh, r, key0, lane);
      float stepMax = warpMax(s), alpha;
      float shift = attnShift(row, stepMax, alpha);
      float pl = expf(s - shift);
      attnRescale(row, stepMax, alpha, warpSum(pl));
      QOPT_UNROLL(8)
      for (int jj = 0; jj < kAttnKeys; ++jj)
        attnAccumulate(row, sh, jj, __shfl_sync(0xffffffffu, pl, jj), lane);
    }
  }
  QOPT_UNROLL()
  for (int rr = 0; rr < kAttnRowsPerWarp; ++rr) {
    int r = warp * kAttnRowsPerWarp + rr;
    if (w.row0 + r < p.rows)
      attnStore(p, w, rows[rr], r, lane);
  }
}
