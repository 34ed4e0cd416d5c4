//===- AttentionTile.h - per-thread work of the CUDA attention -*- C++ -*-===//
//
// Attention.cu's kernel computes qopt.attention's forward pass the flash-
// attention way: the scores never reach memory. A block of 128 threads
// takes 16 query rows of one (batch, head) and walks the keys 32 at a
// time: the threads load the keys' K and V rows into shared memory, then
// each warp takes 4 of the block's rows, lane l scoring key 32·t + l, and
// keeps the row's running maximum m, sum l and output o (a lane holds
// o[e] for e ≡ lane mod 32), rescaled by exp(m_old - m_new) as the
// maximum grows ("online softmax"). A row whose scores are all -inf
// (masked, causal, no keys) gives 0, as the CPU lowering's does.
//
// Each phase is a function of the thread's (or lane's) index, written once
// for the device and the host: the kernel calls it for its thread, the CPU
// emulation (CUDAEmulation.cpp, unittests/Runtime/CUDATileTest.cpp) calls
// it for the 128 threads in turn between the barriers and reduces the
// lanes' values in the order of the kernel's shuffles.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_ATTENTIONTILE_H
#define QOPT_RUNTIME_KERNELS_CUDA_ATTENTIONTILE_H

#include "MemrefArgs.h"
#include "QLinearTile.h"

#include <math.h>

namespace qopt_cuda {

constexpr int kAttnThreads = 128, kAttnRowsPerWarp = 4;
/// Query rows per block, keys per step, and the largest head size (of
/// Q·Kᵀ's and of V's rows) the kernel takes.
constexpr int kAttnRows = kAttnThreads / 32 * kAttnRowsPerWarp;
constexpr int kAttnKeys = 32, kAttnMaxHead = 128;
/// Output elements a lane keeps per row.
constexpr int kAttnOut = kAttnMaxHead / 32;

enum AttentionFlags : int {
  kAttnFloatMask = 1, // s + mask
  kAttnBoolMask = 2,  // mask ? s : -inf (a byte per element)
  kAttnCausal = 4,    // -inf where key > query
  kAttnSoftcap = 8,   // softcap · tanh(s / softcap) before the mask
};

/// One launch (passed by value; the same layout on the host and the
/// device). Element (b, h, i, c) of Q is q[b·sq[0] + h·sq[1] + i·sq[2] +
/// c·sq[3]], and so for K, V (head h / group), the mask (broadcast
/// dimensions have stride 0) and Y.
struct AttentionParams {
  const float *q, *k, *v;
  const void *mask;
  float *y;
  int64_t sq[4], sk[4], sv[4], sm[4], sy[4];
  int64_t batch, heads, group, rows, keys, d, dv;
  float scale, softcap;
  int flags;
  int64_t tiles; // blocks per (batch, head): ceil(rows / kAttnRows)
};
// bench/gpu/attention.py packs it ("<5Q20q7q2fi4xq").
static_assert(sizeof(AttentionParams) == 280, "AttentionParams' layout");

/// The block's shared memory: its query rows, and one step's keys (K
/// padded so that the 32 lanes reading one column of it hit 32 banks).
struct AttentionShared {
  float q[kAttnRows][kAttnMaxHead];
  float k[kAttnKeys][kAttnMaxHead + 1];
  float v[kAttnKeys][kAttnMaxHead];
};

/// Where block `block` works: batch, head, first row.
struct AttentionBlock {
  int64_t b, h, row0;
};
QOPT_HD AttentionBlock attnBlock(const AttentionParams &p, int64_t block) {
  int64_t bh = block / p.tiles;
  return {bh / p.heads, bh % p.heads, (block % p.tiles) * kAttnRows};
}

/// The last key rows row0 … row0 + n - 1 read, plus one.
QOPT_HD int64_t attnKeyEnd(const AttentionParams &p, int64_t row0, int64_t n) {
  int64_t end = p.keys;
  if (p.flags & kAttnCausal) {
    int64_t last = row0 + n;
    last = last < p.rows ? last : p.rows; // (rows past the end read none)
    end = last < end ? last : end;
  }
  return end;
}
QOPT_HD int64_t attnKeyEnd(const AttentionParams &p, const AttentionBlock &w) {
  return attnKeyEnd(p, w.row0, kAttnRows);
}

/// Thread t's share of loading the block's query rows (zeros past the
/// end).
QOPT_HD void attnLoadQ(const AttentionParams &p, const AttentionBlock &w,
                       AttentionShared &sh, int t) {
  for (int64_t idx = t; idx < kAttnRows * p.d; idx += kAttnThreads) {
    int64_t r = idx / p.d, c = idx % p.d, i = w.row0 + r;
    sh.q[r][c] =
        i < p.rows
            ? p.q[w.b * p.sq[0] + w.h * p.sq[1] + i * p.sq[2] + c * p.sq[3]]
            : 0.0f;
  }
}

/// Thread t's share of loading the K and V rows of keys key0 … key0 + 31
/// of key/value head hk into shared tiles `ks` and `vs` (zeros past the
/// end).
template <int VPitch>
QOPT_HD void attnLoadKeys(const AttentionParams &p, int64_t b, int64_t hk,
                          int64_t key0, int t, float (*ks)[kAttnMaxHead + 1],
                          float (*vs)[VPitch]) {
  const float *k = p.k + b * p.sk[0] + hk * p.sk[1];
  const float *v = p.v + b * p.sv[0] + hk * p.sv[1];
  for (int64_t idx = t; idx < kAttnKeys * p.d; idx += kAttnThreads) {
    int64_t j = idx / p.d, c = idx % p.d, key = key0 + j;
    ks[j][c] = key < p.keys ? k[key * p.sk[2] + c * p.sk[3]] : 0.0f;
  }
  for (int64_t idx = t; idx < kAttnKeys * p.dv; idx += kAttnThreads) {
    int64_t j = idx / p.dv, c = idx % p.dv, key = key0 + j;
    vs[j][c] = key < p.keys ? v[key * p.sv[2] + c * p.sv[3]] : 0.0f;
  }
}

QOPT_HD void attnLoadKV(const AttentionParams &p, const AttentionBlock &w,
                        AttentionShared &sh, int64_t key0, int t) {
  attnLoadKeys(p, w.b, w.h / p.group, key0, t, sh.k, sh.v);
}

/// The score of query i and key j (rows `q` and `k` of their tiles in
/// shared memory), scaled, soft-capped, masked: -inf where the key is
/// masked, causal or past the end. `capped`: tanh(s / softcap) before the
/// mask, for the backward's chain rule (1 without a soft cap).
QOPT_HD float attnScoreAt(const AttentionParams &p, int64_t b, int64_t h,
                          int64_t i, int64_t j, const float *q, const float *k,
                          float &capped) {
  const float negInf = -INFINITY;
  capped = 1.0f;
  if (j >= p.keys || ((p.flags & kAttnCausal) && j > i))
    return negInf;
  float s = 0.0f;
  for (int64_t c = 0; c < p.d; ++c)
    s = fmaf(q[c], k[c], s);
  s *= p.scale;
  if (p.flags & kAttnSoftcap) {
    capped = tanhf(s / p.softcap);
    s = capped * p.softcap;
  }
  int64_t at = b * p.sm[0] + h * p.sm[1] + i * p.sm[2] + j * p.sm[3];
  if (p.flags & kAttnFloatMask)
    s += static_cast<const float *>(p.mask)[at];
  else if ((p.flags & kAttnBoolMask) &&
           !static_cast<const uint8_t *>(p.mask)[at])
    s = negInf;
  return s;
}

/// Lane `lane`'s score for the block's row r (query row0 + r) and key
/// key0 + lane.
QOPT_HD float attnScore(const AttentionParams &p, const AttentionBlock &w,
                        const AttentionShared &sh, int r, int64_t key0,
                        int lane) {
  float capped;
  return attnScoreAt(p, w.b, w.h, w.row0 + r, key0 + lane, sh.q[r], sh.k[lane],
                     capped);
}

/// A row's running state in one lane.
struct AttnRow {
  float m, l; // the maximum so far and the sum of exp(s - m)
  float o[kAttnOut];
};

QOPT_HD void attnRowInit(AttnRow &row) {
  row.m = -INFINITY;
  row.l = 0.0f;
  for (int c = 0; c < kAttnOut; ++c)
    row.o[c] = 0.0f;
}

/// A step's rescaling: given the step's maximum over the warp, the new
/// maximum's shift (0 while every score is -inf, so exp gives 0, not NaN)
/// and the factor the old sum and outputs are multiplied by. The lane's
/// p = exp(s - shift) follows.
QOPT_HD float attnShift(const AttnRow &row, float stepMax, float &alpha) {
  float m = fmaxf(row.m, stepMax);
  float shift = m == -INFINITY ? 0.0f : m;
  alpha = expf(row.m - shift);
  return shift;
}

/// After the warp's sum of p: the new maximum and sum, outputs rescaled.
QOPT_HD void attnRescale(AttnRow &row, float stepMax, float alpha, float pSum) {
  row.m = fmaxf(row.m, stepMax);
  row.l = row.l * alpha + pSum;
  for (int c = 0; c < kAttnOut; ++c)
    row.o[c] *= alpha;
}

/// Adds key jj's p (broadcast from lane jj) times its V row to the lane's
/// outputs.
QOPT_HD void attnAccumulate(AttnRow &row, const AttentionShared &sh, int jj,
                            float pj, int lane) {
  QOPT_UNROLL()
  for (int c = 0; c < kAttnOut; ++c)
    row.o[c] = fmaf(pj, sh.v[jj][lane + 32 * c], row.o[c]);
}

/// Writes the lane's outputs of the block's row r.
QOPT_HD void attnStore(const AttentionParams &p, const AttentionBlock &w,
                       const AttnRow &row, int r, int lane) {
  int64_t i = w.row0 + r;
  float inv = row.l > 0.0f ? 1.0f / row.l : 0.0f;
  float *y = p.y + w.b * p.sy[0] + w.h * p.sy[1] + i * p.sy[2];
  for (int c = 0; c < kAttnOut; ++c)
    if (lane + 32 * c < p.dv)
      y[(lane + 32 * c) * p.sy[3]] = row.l > 0.0f ? row.o[c] * inv : 0.0f;
}

//===-- The backward: Attention.cu's dQ and dK/dV kernels -----------------===//
//
// Neither stores the probabilities: each recomputes a tile's scores from Q
// and K and p = exp(s - lse) from the row's log-sum-exp. The dQ kernel (a
// block per 8 query rows, as the forward walks the keys) first finds each
// row's lse and delta = Σ_e dO·O, writes them for the other kernel, then
// adds scale · Σ_j ds_j · K_j to its rows' dQ, ds = p · (dO·V_j - delta)
// (times 1 - tanh² under a soft cap). The dK/dV kernel (a block per 32
// keys of one key/value head) walks the query rows of every query head
// that reads that head, 8 at a time: its warps score them (lane per key)
// into shared memory, then each thread adds p · dO and ds · Q to the 8 × 4
// elements of dV and dK it owns (keys w·8 … w·8 + 7 of warp w, columns
// lane + 32·c): no atomics, the result is independent of block order.

constexpr int kAttnBwdRows = 8;
constexpr int kAttnBwdRowsPerWarp = kAttnBwdRows / (kAttnThreads / 32);
constexpr int kAttnKeysPerWarp = kAttnKeys / (kAttnThreads / 32);

/// One launch of either backward kernel (by value).
struct AttentionBwdParams {
  AttentionParams f; // the forward's; f.y unused, f.tiles per kAttnBwdRows
  const float *o, *dout;
  float *dq, *dk, *dv;
  float *stats; // lse and delta of row (b, h, i) at 2·((b·H + h)·S + i)
  int64_t so[4], sdo[4], sdq[4], sdk[4], sdv[4];
  int64_t kvHeads, keyTiles; // the dK/dV grid: B × kvHeads × keyTiles
};
// bench/gpu/attention.py packs it (AttentionParams, then "<6Q20q2q").
static_assert(sizeof(AttentionBwdParams) == 504, "AttentionBwdParams' layout");

struct AttentionBwdShared {
  float q[kAttnBwdRows][kAttnMaxHead];
  float dout[kAttnBwdRows][kAttnMaxHead];
  float k[kAttnKeys][kAttnMaxHead + 1];
  float v[kAttnKeys][kAttnMaxHead + 1]; // (lanes read one column of it)
  float p[kAttnBwdRows][kAttnKeys];
  float ds[kAttnBwdRows][kAttnKeys];
  float lse[kAttnBwdRows], delta[kAttnBwdRows];
};

/// Thread t's share of loading Q's and dO's rows row0 … row0 + 7 of head h
/// (zeros past the end).
QOPT_HD void attnBwdLoadRows(const AttentionBwdParams &bp,
                             AttentionBwdShared &sh, int64_t b, int64_t h,
                             int64_t row0, int t) {
  const AttentionParams &p = bp.f;
  for (int64_t idx = t; idx < kAttnBwdRows * p.d; idx += kAttnThreads) {
    int64_t r = idx / p.d, c = idx % p.d, i = row0 + r;
    sh.q[r][c] =
        i < p.rows ? p.q[b * p.sq[0] + h * p.sq[1] + i * p.sq[2] + c * p.sq[3]]
                   : 0.0f;
  }
  for (int64_t idx = t; idx < kAttnBwdRows * p.dv; idx += kAttnThreads) {
    int64_t r = idx / p.dv, c = idx % p.dv, i = row0 + r;
    sh.dout[r][c] = i < p.rows ? bp.dout[b * bp.sdo[0] + h * bp.sdo[1] +
                                         i * bp.sdo[2] + c * bp.sdo[3]]
                               : 0.0f;
  }
}

/// The backward's K and V tiles (V padded too: its lanes read a column).
QOPT_HD void attnBwdLoadKV(const AttentionBwdParams &bp, AttentionBwdShared &sh,
                           int64_t b, int64_t hk, int64_t key0, int t) {
  attnLoadKeys(bp.f, b, hk, key0, t, sh.k, sh.v);
}

/// Where row (b, h, i)'s lse and delta are.
QOPT_HD float *attnStats(const AttentionBwdParams &bp, int64_t b, int64_t h,
                         int64_t i) {
  return bp.stats + 2 * ((b * bp.f.heads + h) * bp.f.rows + i);
}

/// Lane `lane`'s part of row r's delta = Σ_e dO[i, e] · O[i, e] (e ≡ lane
/// mod 32).
QOPT_HD float attnDeltaPart(const AttentionBwdParams &bp,
                            const AttentionBwdShared &sh, int64_t b, int64_t h,
                            int64_t i, int r, int lane) {
  const float *o = bp.o + b * bp.so[0] + h * bp.so[1] + i * bp.so[2];
  float sum = 0.0f;
  for (int64_t e = lane; e < bp.f.dv; e += 32)
    sum = fmaf(sh.dout[r][e], o[e * bp.so[3]], sum);
  return sum;
}

/// Lane `lane`'s probability of row r (query i) for key key0 + lane,
/// recomputed, and its ds (the gradient of the raw scaled score Q·K·scale
/// before the soft cap).
QOPT_HD float attnBwdProb(const AttentionBwdParams &bp,
                          const AttentionBwdShared &sh, int64_t b, int64_t h,
                          int64_t i, int r, int64_t key0, int lane, float lse,
                          float delta, float &ds) {
  float capped;
  float s =
      attnScoreAt(bp.f, b, h, i, key0 + lane, sh.q[r], sh.k[lane], capped);
  float prob = s == -INFINITY || lse == -INFINITY ? 0.0f : expf(s - lse);
  float dp = 0.0f;
  for (int64_t e = 0; e < bp.f.dv; ++e)
    dp = fmaf(sh.dout[r][e], sh.v[lane][e], dp);
  ds = prob * (dp - delta);
  if (bp.f.flags & kAttnSoftcap)
    ds *= 1.0f - capped * capped;
  return prob;
}

/// A row's log-sum-exp from its running maximum and sum (-inf: no key).
QOPT_HD float attnLse(const AttnRow &row) {
  return row.l > 0.0f ? row.m + logf(row.l) : -INFINITY;
}

/// Adds key jj's ds (broadcast from lane jj) times its K row to the lane's
/// dQ elements (d ≡ lane mod 32).
QOPT_HD void attnDqAccumulate(float (&dq)[kAttnOut],
                              const AttentionBwdShared &sh, int jj, float dsj,
                              int lane) {
  QOPT_UNROLL()
  for (int c = 0; c < kAttnOut; ++c)
    dq[c] = fmaf(dsj, sh.k[jj][lane + 32 * c], dq[c]);
}

/// Thread t's dK and dV elements: keys kAttnKeysPerWarp · warp + jj,
/// columns lane + 32·c.
struct AttnKV {
  float dk[kAttnKeysPerWarp][kAttnOut], dv[kAttnKeysPerWarp][kAttnOut];
};

QOPT_HD void attnKVInit(AttnKV &acc) {
  for (int jj = 0; jj < kAttnKeysPerWarp; ++jj)
    for (int c = 0; c < kAttnOut; ++c)
      acc.dk[jj][c] = acc.dv[jj][c] = 0.0f;
}

/// Adds the step's 8 rows to thread t's elements: dV += p · dO, dK += ds ·
/// Q.
QOPT_HD void attnKVAccumulate(AttnKV &acc, const AttentionBwdShared &sh,
                              int t) {
  int warp = t / 32, lane = t % 32;
  QOPT_UNROLL(1) // (unrolled, sm_90's ptxas spills the 64 accumulators)
  for (int r = 0; r < kAttnBwdRows; ++r) {
    float dout[kAttnOut], q[kAttnOut];
    QOPT_UNROLL()
    for (int c = 0; c < kAttnOut; ++c) {
      dout[c] = sh.dout[r][lane + 32 * c];
      q[c] = sh.q[r][lane + 32 * c];
    }
    QOPT_UNROLL()
    for (int jj = 0; jj < kAttnKeysPerWarp; ++jj) {
      int j = warp * kAttnKeysPerWarp + jj;
      float pj = sh.p[r][j], dsj = sh.ds[r][j];
      QOPT_UNROLL()
      for (int c = 0; c < kAttnOut; ++c) {
        acc.dv[jj][c] = fmaf(pj, dout[c], acc.dv[jj][c]);
        acc.dk[jj][c] = fmaf(dsj, q[c], acc.dk[jj][c]);
      }
    }
  }
}

/// Writes thread t's dK (times the scale) and dV for the keys from key0 of
/// key/value head hk.
QOPT_HD void attnKVStore(const AttentionBwdParams &bp, const AttnKV &acc,
                         int64_t b, int64_t hk, int64_t key0, int t) {
  int warp = t / 32, lane = t % 32;
  const AttentionParams &p = bp.f;
  for (int jj = 0; jj < kAttnKeysPerWarp; ++jj) {
    int64_t j = key0 + warp * kAttnKeysPerWarp + jj;
    if (j >= p.keys)
      break;
    for (int c = 0; c < kAttnOut; ++c) {
      int64_t e = lane + 32 * c;
      if (e < p.d)
        bp.dk[b * bp.sdk[0] + hk * bp.sdk[1] + j * bp.sdk[2] + e * bp.sdk[3]] =
            acc.dk[jj][c] * p.scale;
      if (e < p.dv)
        bp.dv[b * bp.sdv[0] + hk * bp.sdv[1] + j * bp.sdv[2] + e * bp.sdv[3]] =
            acc.dv[jj][c];
    }
  }
}

/// The first query row of head h whose scores reach key key0 (causal: the
/// rows before it give those keys nothing), rounded down to a step.
QOPT_HD int64_t attnBwdFirstRow(const AttentionParams &p, int64_t key0) {
  if (!(p.flags & kAttnCausal))
    return 0;
  return key0 / kAttnBwdRows * kAttnBwdRows;
}

using Memref4 = MemrefView<4>;

// qopt_cuda_attention's parameters: flags, scale, soft cap, then Q, K, V,
// the mask (Q where there is none) and Y as memrefs.
#define QOPT_ATTENTION_PARAMS                                                  \
  int64_t flags, double scale, double softcap, QOPT_MEMREF4(q),                \
      QOPT_MEMREF4(k), QOPT_MEMREF4(v), QOPT_MEMREF4(m), QOPT_MEMREF4(y)

/// The launch for qopt_cuda_attention's arguments (Q [B, Hq, S, D], K [B,
/// Hkv, L, D], V [B, Hkv, L, Dv], the mask broadcasting to [B, Hq, S, L]
/// where `flags` has one, Y [B, Hq, S, Dv]; sizes checked by the caller's
/// IR). Returns null, or why the kernel cannot take it.
inline const char *planAttention(int64_t flags, double scale, double softcap,
                                 const Memref4 &q, const Memref4 &k,
                                 const Memref4 &v, const Memref4 &mask,
                                 const Memref4 &y, AttentionParams &p,
                                 int64_t &blocks) {
  p = AttentionParams{};
  p.q = static_cast<const float *>(q.aligned) + q.offset;
  p.k = static_cast<const float *>(k.aligned) + k.offset;
  p.v = static_cast<const float *>(v.aligned) + v.offset;
  p.y = static_cast<float *>(const_cast<void *>(y.aligned)) + y.offset;
  p.flags = int(flags);
  if (flags & kAttnFloatMask)
    p.mask = static_cast<const float *>(mask.aligned) + mask.offset;
  else if (flags & kAttnBoolMask)
    p.mask = static_cast<const uint8_t *>(mask.aligned) + mask.offset;
  for (int d = 0; d < 4; ++d) {
    p.sq[d] = q.stride[d];
    p.sk[d] = k.stride[d];
    p.sv[d] = v.stride[d];
    p.sy[d] = y.stride[d];
    // A mask's size-1 dimension broadcasts.
    p.sm[d] = (flags & (kAttnFloatMask | kAttnBoolMask)) && mask.size[d] != 1
                  ? mask.stride[d]
                  : 0;
  }
  p.batch = q.size[0];
  p.heads = q.size[1];
  p.rows = q.size[2];
  p.d = q.size[3];
  p.keys = k.size[2];
  p.dv = v.size[3];
  p.scale = float(scale);
  p.softcap = float(softcap);
  if (p.d > kAttnMaxHead || p.dv > kAttnMaxHead)
    return "a head size above 128";
  if (k.size[1] <= 0 ? p.heads != 0 : p.heads % k.size[1] != 0)
    return "query heads not a multiple of key/value heads";
  p.group = k.size[1] > 0 ? p.heads / k.size[1] : 1;
  p.tiles = (p.rows + kAttnRows - 1) / kAttnRows;
  blocks = p.batch * p.heads * p.tiles;
  return nullptr;
}

// qopt_cuda_attention_backward's parameters: flags, scale, soft cap, then
// Q, K, V, the mask, O (the forward's output), dO, and the results dQ, dK,
// dV and a [B, Hq, S, 2] f32 scratch buffer (contiguous), as memrefs.
#define QOPT_ATTENTION_BWD_PARAMS                                              \
  QOPT_ATTENTION_PARAMS, QOPT_MEMREF4(g), QOPT_MEMREF4(dq), QOPT_MEMREF4(dk),  \
      QOPT_MEMREF4(dv), QOPT_MEMREF4(st)

/// The two backward launches for qopt_cuda_attention_backward's arguments
/// (`y`: the forward's output O; `g`: dO). Returns null, or why the
/// kernels cannot take them.
inline const char *
planAttentionBackward(int64_t flags, double scale, double softcap,
                      const Memref4 &q, const Memref4 &k, const Memref4 &v,
                      const Memref4 &mask, const Memref4 &y, const Memref4 &g,
                      const Memref4 &dq, const Memref4 &dk, const Memref4 &dv,
                      const Memref4 &stats, AttentionBwdParams &bp,
                      int64_t &dqBlocks, int64_t &dkvBlocks) {
  bp = AttentionBwdParams{};
  int64_t blocks;
  if (const char *error =
          planAttention(flags, scale, softcap, q, k, v, mask, y, bp.f, blocks))
    return error;
  bp.f.y = nullptr;
  bp.f.tiles = (bp.f.rows + kAttnBwdRows - 1) / kAttnBwdRows;
  auto at = [](const Memref4 &m) {
    return static_cast<float *>(const_cast<void *>(m.aligned)) + m.offset;
  };
  bp.o = at(y);
  bp.dout = at(g);
  bp.dq = at(dq);
  bp.dk = at(dk);
  bp.dv = at(dv);
  bp.stats = at(stats);
  for (int d = 0; d < 4; ++d) {
    bp.so[d] = y.stride[d];
    bp.sdo[d] = g.stride[d];
    bp.sdq[d] = dq.stride[d];
    bp.sdk[d] = dk.stride[d];
    bp.sdv[d] = dv.stride[d];
  }
  bp.kvHeads = k.size[1];
  bp.keyTiles = (bp.f.keys + kAttnKeys - 1) / kAttnKeys;
  dqBlocks = bp.f.batch * bp.f.heads * bp.f.tiles;
  dkvBlocks = bp.f.batch * bp.kvHeads * bp.keyTiles;
  return nullptr;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_ATTENTIONTILE_H
