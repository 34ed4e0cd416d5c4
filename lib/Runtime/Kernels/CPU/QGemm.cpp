//===- QGemm.cpp - int8 GEMM on quantized weights for many rows -----------===//
//
// Prefill: M rows of activations against a quantized weight, with the
// activations quantized to int8 per block of 32 codes (the numerics of the
// row kernels' int8 activations in QLinear.cpp), or per token (one step a
// row in every block: --quantize-activations' integer path). The row kernels
// read each weight row once for up to four rows of x and reduce each dot
// product across lanes; with many rows the scaling and reductions cost more
// than the dot products. Here, as a GEMM:
//  - x is quantized and packed in tiles of kMR rows: for each block and
//    step of 4 codes, the 4 bytes of each row side by side, so a row's
//    step is one broadcast;
//  - W is unpacked per call, for each panel of 32 weight rows and chunk of
//    K, into unsigned bytes as VPDPBUSD reads them: per step, the 4 codes
//    of each of the 32 rows (two vectors). 4-bit codes keep their nibble
//    order (a step holds the low or the high nibbles of 4 bytes: even or
//    odd codes), and x is permuted to match;
//  - a kMR x 32 tile of int32 sums collects one block, then is scaled (x's
//    block scale times the weight's group scale) into f32 sums. The
//    symmetric formats' offset (8 or 128, which makes codes unsigned)
//    starts each block's sum at -offset * (x's block sum); zero points per
//    group subtract scale * zero * (x's block sum) in f32.
//
//===----------------------------------------------------------------------===//

#include "CPUKernels.h"
#include "QuantizedWeights.h"
#include "qopt/Support/QuantFormats.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <immintrin.h>

// GCC 12's AVX-512 headers build some intrinsics from _mm512_undefined_*,
// which its uninitialized-use analysis flags at every instantiation.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define QOPT_AVX512                                                            \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define QOPT_VNNI                                                              \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

namespace qopt_cpu {
namespace {

constexpr int kMR = 6;         // rows of x per tile
constexpr int kNR = 32;        // weight rows per panel (two vectors)
constexpr int64_t kBlock = 32; // codes per block of x (one scale)
constexpr int64_t kChunk = 32; // blocks per chunk of K: 32 KiB of panel

/// Where code c (0..31) of a block goes in the packed block (step c / 4,
/// byte c % 4 of 8-bit codes). 4-bit: steps 0-3 are the low nibbles of
/// bytes 4s .. 4s+3 (codes 8s, 8s+2, 8s+4, 8s+6), steps 4-7 the high ones.
inline int position(bool four, int c) {
  if (!four)
    return c;
  int odd = c & 1, t = c / 8, e = (c % 8) / 2;
  return (t + 4 * odd) * 4 + e;
}

/// x quantized, in tiles of kMR rows (the last may have fewer). Tile T
/// starts at row T * kMR; with R rows, its codes are [block][step][R][4],
/// its per-block values [block][R].
struct PackedX {
  std::vector<int8_t> q;
  std::vector<float> scale;  // the block's step: absmax / 127, or the token's
  std::vector<float> t;      // scale * sum of the block's codes
  std::vector<int32_t> init; // -offset * sum of the block's codes
};

/// Quantizes row r (of R) of a tile: each block of 32 to int8 as the row
/// kernels do (quantizeBlock), or with the row's per-token step where
/// tokenBits is not 0 (quantizeBlockAt).
QOPT_AVX512 void quantizeRow(const float *xr, int64_t k, int64_t blocks,
                             bool four, int32_t offset, int tokenBits, int R,
                             int r, int8_t *q, float *scale, float *t,
                             int32_t *init) {
  alignas(64) int32_t v[32];
  int8_t packed[32];
  float step = tokenBits ? tokenStep(xr, k, tokenBits) : 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t c0 = b * kBlock, n = std::min<int64_t>(kBlock, k - c0);
    Int8Block blk = tokenBits ? quantizeBlockAt(xr + c0, n, step, tokenBits)
                              : quantizeBlock(xr + c0, n);
    float s = blk.scale;
    int32_t sum = blk.sum;
    _mm512_store_si512(v, blk.lo);
    _mm512_store_si512(v + 16, blk.hi);
    for (int c = 0; c < 32; ++c)
      packed[position(four, c)] = int8_t(v[c]);
    int8_t *qb = q + b * kBlock * R;
    for (int s8 = 0; s8 < 8; ++s8)
      std::memcpy(qb + (s8 * R + r) * 4, packed + s8 * 4, 4);
    scale[b * R + r] = s;
    t[b * R + r] = s * float(sum);
    init[b * R + r] = -offset * sum;
  }
}

/// Dwords of four vectors transposed within each 128-bit lane: out[s] lane
/// j = {in[0] lane j dword s, in[1] …, in[2] …, in[3] …}.
QOPT_AVX512 inline void transpose4(const __m512i *in, __m512i *out) {
  __m512i t0 = _mm512_unpacklo_epi32(in[0], in[1]);
  __m512i t1 = _mm512_unpackhi_epi32(in[0], in[1]);
  __m512i t2 = _mm512_unpacklo_epi32(in[2], in[3]);
  __m512i t3 = _mm512_unpackhi_epi32(in[2], in[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}

/// Blocks [b0, b1) of weight rows n0 .. n0 + 31 as unsigned bytes, steps
/// of 128 bytes (4 codes of each row), into `pb`; their scales into `ps`
/// and, with zero points, scale * (zero point + offset) into `pz`. Rows
/// past N are zero-scaled; codes past K meet zero activations.
QOPT_AVX512 void packPanel(const QWeights &w, int64_t n0, int64_t b0,
                           int64_t b1, int8_t *pb, float *ps, float *pz) {
  const bool four = w.fourBit();
  const int64_t rowBytes = four ? (w.k + 1) / 2 : w.k;
  const int64_t blockBytes = four ? 16 : 32;
  const __m512i flip = _mm512_set1_epi8(char(w.format == kInt4   ? 0x88
                                             : w.format == kInt8 ? 0x80
                                                                 : 0));
  const __m512i low = _mm512_set1_epi8(15);
  const int32_t offset = unsignedOffset(w.format);
  for (int64_t b = b0; b < b1; ++b) {
    int8_t *out = pb + (b - b0) * 8 * 128;
    int64_t byte0 = b * blockBytes;
    for (int h = 0; h < 2; ++h)
      for (int64_t half = 0; half < blockBytes / 16; ++half) {
        // Vector i, lane j: row n0 + 16h + 4j + i, so that the transpose
        // leaves rows in order.
        int64_t avail = rowBytes - byte0 - half * 16;
        __mmask16 mask = __mmask16(avail >= 16 ? 0xFFFF
                                   : avail > 0 ? (1u << avail) - 1
                                               : 0);
        __m512i z[4];
        for (int i = 0; i < 4; ++i) {
          __m128i lane[4];
          for (int j = 0; j < 4; ++j) {
            int64_t row = n0 + 16 * h + 4 * j + i;
            lane[j] =
                row < w.n
                    ? _mm_maskz_loadu_epi8(mask, w.data + row * w.dataRow +
                                                     byte0 + half * 16)
                    : _mm_setzero_si128();
          }
          __m512i v = _mm512_castsi128_si512(lane[0]);
          v = _mm512_inserti32x4(v, lane[1], 1);
          v = _mm512_inserti32x4(v, lane[2], 2);
          v = _mm512_inserti32x4(v, lane[3], 3);
          z[i] = _mm512_xor_si512(v, flip);
        }
        __m512i steps[8];
        if (four) {
          __m512i nib[4];
          for (int i = 0; i < 4; ++i)
            nib[i] = _mm512_and_si512(z[i], low);
          transpose4(nib, steps);
          for (int i = 0; i < 4; ++i)
            nib[i] = _mm512_and_si512(_mm512_srli_epi16(z[i], 4), low);
          transpose4(nib, steps + 4);
          for (int s = 0; s < 8; ++s)
            _mm512_storeu_si512(out + s * 128 + h * 64, steps[s]);
        } else {
          transpose4(z, steps);
          for (int s = 0; s < 4; ++s)
            _mm512_storeu_si512(out + (half * 4 + s) * 128 + h * 64, steps[s]);
        }
      }
    int64_t g = b * kBlock / w.group;
    for (int c = 0; c < kNR; ++c) {
      int64_t row = n0 + c;
      float s = row < w.n ? w.scales[row * w.scaleRow + g] : 0.0f;
      ps[(b - b0) * kNR + c] = s;
      if (pz)
        pz[(b - b0) * kNR + c] =
            row < w.n ? s * float(w.zeroPoint(row, g) + offset) : 0.0f;
    }
  }
}

/// y[R x 32] += one chunk of `nb` blocks: x's tile (codes `a`, per-block
/// scales `xs`, scaled sums `xt`, int32 starts `init`) against a packed
/// panel. `m0`, `m1`: the valid columns of each half.
template <int R, bool ZP>
QOPT_VNNI void tileKernel(const int8_t *a, const float *xs, const float *xt,
                          const int32_t *init, const int8_t *pb,
                          const float *ps, const float *pz, int64_t nb,
                          float *y, int64_t ldy, __mmask16 m0, __mmask16 m1) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r)
    acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i sum[R][2];
    for (int r = 0; r < R; ++r)
      sum[r][0] = sum[r][1] =
          ZP ? _mm512_setzero_si512() : _mm512_set1_epi32(init[b * R + r]);
    const int8_t *ab = a + b * kBlock * R;
    const int8_t *bb = pb + b * 8 * 128;
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) {
      __m512i w0 = _mm512_loadu_si512(bb + s * 128);
      __m512i w1 = _mm512_loadu_si512(bb + s * 128 + 64);
      for (int r = 0; r < R; ++r) {
        int32_t word;
        std::memcpy(&word, ab + (s * R + r) * 4, 4);
        __m512i av = _mm512_set1_epi32(word);
        sum[r][0] = _mm512_dpbusd_epi32(sum[r][0], w0, av);
        sum[r][1] = _mm512_dpbusd_epi32(sum[r][1], w1, av);
      }
    }
    __m512 s0 = _mm512_loadu_ps(ps + b * kNR);
    __m512 s1 = _mm512_loadu_ps(ps + b * kNR + 16);
    for (int r = 0; r < R; ++r) {
      __m512 xv = _mm512_set1_ps(xs[b * R + r]);
      acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][0]),
                                  _mm512_mul_ps(s0, xv), acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][1]),
                                  _mm512_mul_ps(s1, xv), acc[r][1]);
    }
    if constexpr (ZP) {
      __m512 z0 = _mm512_loadu_ps(pz + b * kNR);
      __m512 z1 = _mm512_loadu_ps(pz + b * kNR + 16);
      for (int r = 0; r < R; ++r) {
        __m512 tv = _mm512_set1_ps(xt[b * R + r]);
        acc[r][0] = _mm512_fnmadd_ps(z0, tv, acc[r][0]);
        acc[r][1] = _mm512_fnmadd_ps(z1, tv, acc[r][1]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float *yr = y + r * ldy;
    _mm512_mask_storeu_ps(
        yr, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yr), acc[r][0]));
    _mm512_mask_storeu_ps(
        yr + 16, m1,
        _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yr + 16), acc[r][1]));
  }
}

template <bool ZP>
void runTile(int R, const int8_t *a, const float *xs, const float *xt,
             const int32_t *init, const int8_t *pb, const float *ps,
             const float *pz, int64_t nb, float *y, int64_t ldy, __mmask16 m0,
             __mmask16 m1) {
  switch (R) {
  case 1:
    return tileKernel<1, ZP>(a, xs, xt, init, pb, ps, pz, nb, y, ldy, m0, m1);
  case 2:
    return tileKernel<2, ZP>(a, xs, xt, init, pb, ps, pz, nb, y, ldy, m0, m1);
  case 3:
    return tileKernel<3, ZP>(a, xs, xt, init, pb, ps, pz, nb, y, ldy, m0, m1);
  case 4:
    return tileKernel<4, ZP>(a, xs, xt, init, pb, ps, pz, nb, y, ldy, m0, m1);
  case 5:
    return tileKernel<5, ZP>(a, xs, xt, init, pb, ps, pz, nb, y, ldy, m0, m1);
  default:
    return tileKernel<kMR, ZP>(a, xs, xt, init, pb, ps, pz, nb, y, ldy, m0, m1);
  }
}

/// Position c of a packed block back to the code's index in the block.
constexpr int codeAt(bool four, int c) {
  return four ? 8 * (c / 4 % 4) + 2 * (c % 4) + c / 16 : c;
}

/// Blocks [b0, b1) of weight rows n0 .. n0 + 31 as f32, K rows of 32
/// floats each (the panel layout of PackedGemm.cpp) into `out`: the codes
/// unpacked by packPanel, then each (code - zero) * scale, or the value of
/// an NF4 or FP8 code * scale (FP8 through binary16, as QLinear.cpp's
/// decode32AVX512).
QOPT_AVX512 void dequantizePanel(const QWeights &w, int64_t n0, int64_t b0,
                                 int64_t b1, int8_t *codes, float *ps,
                                 float *pz, float *out) {
  const bool four = w.fourBit(), nf4 = w.format == kNF4;
  const bool e4m3 = w.format == kFP8E4M3, e5m2 = w.format == kFP8E5M2;
  const bool integer = !nf4 && !w.isFloat(); // (code - zero) * scale
  packPanel(w, n0, b0, b1, codes, ps, integer ? pz : nullptr);
  // E4M3 through binary16 is 2^-8 of its value: folded into the scale.
  const __m512 codeScale = _mm512_set1_ps(e4m3 ? 256.0f : 1.0f);
  const __m512 table = _mm512_loadu_ps(qopt::kNF4Codes.data());
  const __m512i byte = _mm512_set1_epi32(0xFF);
  for (int64_t b = 0; b < b1 - b0; ++b) {
    const int8_t *steps = codes + b * 8 * 128;
    float *o = out + b * kBlock * kNR;
    for (int h = 0; h < 2; ++h) {
      __m512 s =
          _mm512_mul_ps(_mm512_loadu_ps(ps + b * kNR + 16 * h), codeScale);
      __m512 z = integer ? _mm512_loadu_ps(pz + b * kNR + 16 * h)
                         : _mm512_setzero_ps();
      for (int st = 0; st < 8; ++st) {
        __m512i v = _mm512_loadu_si512(steps + st * 128 + h * 64);
        for (int e = 0; e < 4; ++e) {
          __m512i u = _mm512_and_si512(_mm512_srli_epi32(v, 8 * e), byte);
          __m512 f;
          if (nf4) {
            f = _mm512_mul_ps(_mm512_permutexvar_ps(u, table), s);
          } else if (e4m3 || e5m2) {
            // As QLinear.cpp's decode32AVX512, in 32-bit lanes.
            __m512i half;
            if (e5m2) {
              half = _mm512_slli_epi32(u, 8);
            } else {
              const __m512i mag = _mm512_set1_epi32(0x7F);
              half = _mm512_slli_epi32(
                  _mm512_add_epi32(
                      u, _mm512_and_si512(u, _mm512_set1_epi32(0x80))),
                  7);
              half = _mm512_mask_mov_epi32(
                  half, _mm512_cmpeq_epi32_mask(_mm512_and_si512(u, mag), mag),
                  _mm512_set1_epi32(0x7E00));
            }
            f = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(half)), s);
          } else {
            f = _mm512_fmsub_ps(_mm512_cvtepi32_ps(u), s, z);
          }
          _mm512_store_ps(o + codeAt(four, st * 4 + e) * kNR + 16 * h, f);
        }
      }
    }
  }
}

} // namespace

bool qgemmTakes(const QWeights &w) {
  return w.format != kNF4 && !w.isFloat() && qgemmF32Takes(w);
}

bool qgemmF32Takes(const QWeights &w) {
  return w.group % kBlock == 0 || w.groups == 1;
}

void qgemmF32(const QWeights &w, const float *x, int64_t ldx, int64_t m,
              float *y, int64_t ldy) {
  // As PackedGemm.cpp's products: tasks of panels; for each block of K,
  // the task's panels dequantized (512 KiB, in L2), then each tile of rows
  // of x runs across them.
  static_assert(kNR == kPanelCols && kPanelDepth % kBlock == 0,
                "the weight's panels are PackedGemm.cpp's");
  constexpr int64_t kKC = kPanelDepth, kBlocks = kKC / kBlock;
  const int64_t panels = (w.n + kNR - 1) / kNR;
  Pool &pool = Pool::get();
  const int64_t per = panelsPerTask(panels, pool.threads());
  const int tasks = int((panels + per - 1) / per);
  pool.run(tasks, [&](int task) {
    thread_local std::vector<int8_t> codes;
    thread_local std::vector<float> ps, pz, buffer;
    codes.resize(size_t(kBlocks * 8 * 128));
    ps.resize(size_t(kBlocks * kNR));
    pz.resize(size_t(kBlocks * kNR));
    buffer.resize(size_t(kMaxPanelsPerTask * kKC * kNR + 16));
    // The tiles read the panels with aligned loads.
    float *panel0 = reinterpret_cast<float *>(
        (reinterpret_cast<uintptr_t>(buffer.data()) + 63) & ~uintptr_t(63));
    int64_t p0 = task * per, p1 = std::min(panels, p0 + per);
    for (int64_t k0 = 0; k0 < w.k; k0 += kKC) {
      int64_t kc = std::min(kKC, w.k - k0);
      int64_t b0 = k0 / kBlock, b1 = (k0 + kc + kBlock - 1) / kBlock;
      for (int64_t panel = p0; panel < p1; ++panel)
        dequantizePanel(w, panel * kNR, b0, b1, codes.data(), ps.data(),
                        pz.data(), panel0 + (panel - p0) * kKC * kNR);
      for (int64_t i = 0; i < m; i += kPanelRows) {
        int rows = int(std::min<int64_t>(kPanelRows, m - i));
        for (int64_t panel = p0; panel < p1; ++panel) {
          int64_t n0 = panel * kNR;
          panelTile(x + i * ldx + k0, ldx, panel0 + (panel - p0) * kKC * kNR,
                    kc, y + i * ldy + n0, ldy, rows,
                    std::min<int64_t>(kNR, w.n - n0));
        }
      }
    }
  });
}

void qgemmInt8(const QWeights &w, const float *x, int64_t ldx, int64_t m,
               float *y, int64_t ldy, int tokenBits) {
  const int64_t blocks = (w.k + kBlock - 1) / kBlock;
  const int64_t tiles = (m + kMR - 1) / kMR;
  const bool four = w.fourBit(), zp = w.zp != nullptr;
  const int32_t offset = unsignedOffset(w.format);
  thread_local PackedX px;
  px.q.resize(size_t(tiles * kMR * blocks * kBlock));
  px.scale.resize(size_t(tiles * kMR * blocks));
  px.t.resize(px.scale.size());
  px.init.resize(px.scale.size());
  auto rowsOf = [&](int64_t tile) {
    return int(std::min<int64_t>(kMR, m - tile * kMR));
  };
  Pool &pool = Pool::get();
  PackedX &p = px;
  pool.run(int(tiles), [&](int tile) {
    int R = rowsOf(tile);
    size_t at = size_t(tile * kMR * blocks);
    for (int r = 0; r < R; ++r)
      quantizeRow(x + (tile * kMR + r) * ldx, w.k, blocks, four, offset,
                  tokenBits, R, r, p.q.data() + at * kBlock,
                  p.scale.data() + at, p.t.data() + at, p.init.data() + at);
  });
  // Tasks of whole panels, a few per thread.
  const int64_t panels = (w.n + kNR - 1) / kNR;
  const int64_t threads = pool.threads();
  const int64_t per =
      std::max<int64_t>(1, (panels + threads * 4 - 1) / (threads * 4));
  const int tasks = int((panels + per - 1) / per);
  pool.run(tasks, [&](int task) {
    thread_local std::vector<int8_t> pb;
    thread_local std::vector<float> ps, pz;
    pb.resize(size_t(kChunk * 8 * 128));
    ps.resize(size_t(kChunk * kNR));
    pz.resize(size_t(kChunk * kNR));
    int64_t first = task * per, last = std::min(panels, first + per);
    for (int64_t panel = first; panel < last; ++panel) {
      int64_t n0 = panel * kNR, valid = std::min<int64_t>(kNR, w.n - n0);
      __mmask16 m0 = __mmask16(valid >= 16 ? 0xFFFF : (1u << valid) - 1);
      __mmask16 m1 = __mmask16(valid >= 32  ? 0xFFFF
                               : valid > 16 ? (1u << (valid - 16)) - 1
                                            : 0);
      for (int64_t b0 = 0; b0 < blocks; b0 += kChunk) {
        int64_t b1 = std::min(blocks, b0 + kChunk), nb = b1 - b0;
        packPanel(w, n0, b0, b1, pb.data(), ps.data(),
                  zp ? pz.data() : nullptr);
        for (int64_t tile = 0; tile < tiles; ++tile) {
          int R = rowsOf(tile);
          size_t at = size_t(tile * kMR * blocks + b0 * R);
          const int8_t *a = p.q.data() + at * kBlock;
          float *yt = y + tile * kMR * ldy + n0;
          if (zp)
            runTile<true>(R, a, p.scale.data() + at, p.t.data() + at,
                          p.init.data() + at, pb.data(), ps.data(), pz.data(),
                          nb, yt, ldy, m0, m1);
          else
            runTile<false>(R, a, p.scale.data() + at, p.t.data() + at,
                           p.init.data() + at, pb.data(), ps.data(), nullptr,
                           nb, yt, ldy, m0, m1);
        }
      }
    }
  });
}

} // namespace qopt_cpu
