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

#include "Warp.cuh"

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

/// The dQ kernel's walk over the key tiles its rows (row0 …) read: each
/// tile's K and V loaded by the block, then rowStep(rr, r, key0) for each
/// of the warp's rows that exist (warp-uniform: its shuffles are safe).
template <typename RowStep>
__device__ __forceinline__ void
overKeyTiles(const AttentionBwdParams &bp, AttentionBwdShared &sh, int64_t b,
             int64_t h, int64_t row0, int t, RowStep rowStep) {
  const AttentionParams &p = bp.f;
  int warp = t / 32;
  int64_t end = attnKeyEnd(p, row0, kAttnBwdRows);
  for (int64_t key0 = 0; key0 < end; key0 += kAttnKeys) {
    __syncthreads(); // (the previous tile's reads are done)
    attnBwdLoadKV(bp, sh, b, h / p.group, key0, t);
    __syncthreads();
    QOPT_UNROLL()
    for (int rr = 0; rr < kAttnBwdRowsPerWarp; ++rr) {
      int r = warp * kAttnBwdRowsPerWarp + rr;
      if (row0 + r >= p.rows)
        break;
      rowStep(rr, r, key0);
    }
  }
}

// The backward (AttentionTile.h: what each kernel does). The dQ kernel
// runs first: it writes the rows' lse and delta that the dK/dV kernel
// reads.
extern "C" __global__ void __launch_bounds__(kAttnThreads, 4)
    qopt_cuda_attention_bwd_dq_f32(const __grid_constant__ AttentionBwdParams
                                       bp) {
  __shared__ AttentionBwdShared sh;
  const AttentionParams &p = bp.f;
  int t = threadIdx.x, warp = t / 32, lane = t % 32;
  int64_t bh = blockIdx.x / p.tiles, b = bh / p.heads, h = bh % p.heads;
  int64_t row0 = (blockIdx.x % p.tiles) * kAttnBwdRows;
  attnBwdLoadRows(bp, sh, b, h, row0, t);
  __syncthreads();
  AttnRow rows[kAttnBwdRowsPerWarp];
  float delta[kAttnBwdRowsPerWarp], lse[kAttnBwdRowsPerWarp];
  QOPT_UNROLL()
  for (int rr = 0; rr < kAttnBwdRowsPerWarp; ++rr) {
    attnRowInit(rows[rr]);
    int r = warp * kAttnBwdRowsPerWarp + rr;
    delta[rr] = row0 + r < p.rows
                    ? warpSum(attnDeltaPart(bp, sh, b, h, row0 + r, r, lane))
                    : 0.0f;
  }
  // The rows' log-sum-exp, as the forward's online softmax finds it.
  overKeyTiles(bp, sh, b, h, row0, t, [&](int rr, int r, int64_t key0) {
    float capped;
    float s = attnScoreAt(p, b, h, row0 + r, key0 + lane, sh.q[r], sh.k[lane],
                          capped);
    float stepMax = warpMax(s), alpha;
    float shift = attnShift(rows[rr], stepMax, alpha);
    attnRescale(rows[rr], stepMax, alpha, warpSum(expf(s - shift)));
  });
  QOPT_UNROLL()
  for (int rr = 0; rr < kAttnBwdRowsPerWarp; ++rr) {
    int r = warp * kAttnBwdRowsPerWarp + rr;
    lse[rr] = attnLse(rows[rr]);
    if (lane == 0 && row0 + r < p.rows) {
      float *st = attnStats(bp, b, h, row0 + r);
      st[0] = lse[rr];
      st[1] = delta[rr];
    }
  }
  float dq[kAttnBwdRowsPerWarp][kAttnOut] = {};
  overKeyTiles(bp, sh, b, h, row0, t, [&](int rr, int r, int64_t key0) {
    float ds;
    attnBwdProb(bp, sh, b, h, row0 + r, r, key0, lane, lse[rr], delta[rr], ds);
    QOPT_UNROLL(8)
    for (int jj = 0; jj < kAttnKeys; ++jj)
      attnDqAccumulate(dq[rr], sh, jj, __shfl_sync(0xffffffffu, ds, jj), lane);
  });
  QOPT_UNROLL()
  for (int rr = 0; rr < kAttnBwdRowsPerWarp; ++rr) {
    int64_t i = row0 + warp * kAttnBwdRowsPerWarp + rr;
    if (i >= p.rows)
      break;
    float *out = bp.dq + b * bp.sdq[0] + h * bp.sdq[1] + i * bp.sdq[2];
    QOPT_UNROLL()
    for (int c = 0; c < kAttnOut; ++c)
      if (lane + 32 * c < p.d)
        out[(lane + 32 * c) * bp.sdq[3]] = dq[rr][c] * p.scale;
  }
}

extern "C" __global__ void __launch_bounds__(kAttnThreads, 4)
    qopt_cuda_attention_bwd_dkv_f32(const __grid_constant__ AttentionBwdParams
                                        bp) {
  __shared__ AttentionBwdShared sh;
  const AttentionParams &p = bp.f;
  int t = threadIdx.x, warp = t / 32, lane = t % 32;
  int64_t bk = blockIdx.x / bp.keyTiles, b = bk / bp.kvHeads,
          hk = bk % bp.kvHeads;
  int64_t key0 = (blockIdx.x % bp.keyTiles) * kAttnKeys;
  attnBwdLoadKV(bp, sh, b, hk, key0, t);
  AttnKV acc;
  attnKVInit(acc);
  for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h)
    for (int64_t row0 = attnBwdFirstRow(p, key0); row0 < p.rows;
         row0 += kAttnBwdRows) {
      __syncthreads(); // (the previous step's reads are done)
      attnBwdLoadRows(bp, sh, b, h, row0, t);
      if (t < kAttnBwdRows) {
        bool in = row0 + t < p.rows;
        const float *st = in ? attnStats(bp, b, h, row0 + t) : nullptr;
        sh.lse[t] = in ? st[0] : -INFINITY;
        sh.delta[t] = in ? st[1] : 0.0f;
      }
      __syncthreads();
      QOPT_UNROLL(1) // (unrolled, sm_90's ptxas spills)
      for (int rr = 0; rr < kAttnBwdRowsPerWarp; ++rr) {
        int r = warp * kAttnBwdRowsPerWarp + rr;
        float ds = 0.0f, prob = 0.0f;
        if (row0 + r < p.rows)
          prob = attnBwdProb(bp, sh, b, h, row0 + r, r, key0, lane, sh.lse[r],
                             sh.delta[r], ds);
        sh.p[r][lane] = prob;
        sh.ds[r][lane] = ds;
      }
      __syncthreads();
      attnKVAccumulate(acc, sh, t);
    }
  attnKVStore(bp, acc, b, hk, key0, t);
}
