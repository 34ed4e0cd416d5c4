//===- W8A8Tile.h - per-thread work of the CUDA W8A8 product ----*- C++ -*-===//
//
// W8A8.cu runs a quantized product whose activations a per-token quantizer
// rounds (qopt-insert-fake-quant's dynamic int8 / int4 per-token scales:
// SmoothQuant's W8A8, W4A8, W4A4) on integer codes, as the CPU target's
// qopt_kernel_qlinear does with its per-token flag:
//
//   1. qopt_cuda_token_quant: a warp per row of x finds the row's step,
//      max|x| / (2^(bits-1) - 1) (1 where that is 0, NaN where the row
//      holds a NaN or an infinity), and writes the codes
//      clamp(rint(x / step)) as int8 (zeros for a NaN step).
//   2. qopt_cuda_gemm_w8a8_<format>: 64 x 64 (or 16 x 64) tiles of
//      C (+)= step[row] · Σ_g scale[n, g] · Σ_{k in g} q[row, k]·(w[n, k] −
//      zero[n, g]), K in steps of 32 codes through shared memory, the
//      integer sums on the tensor cores (mma.sync m16n8k32 .s8, int32
//      accumulators: exact), each group's sum scaled into f32 when the
//      group ends: the CPU target's productPerToken, in the same order.
//
// Each phase is a function of the thread's index, written once for the
// device and the host; the CPU emulation (CUDAEmulation.cpp) runs the
// threads in turn between the barriers, so unittests/Runtime/CUDAW8A8Test
// checks the tiling, decoding and scaling without a GPU. The weight's
// codes minus its zero points must fit int8: int4, uint4 (with or without
// zero points) and int8 without them.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_W8A8TILE_H
#define QOPT_RUNTIME_KERNELS_CUDA_W8A8TILE_H

#include "GemmTile.h"

#include <math.h>

namespace qopt_cuda {

//===-- Per-token quantization
//---------------------------------------------===//

constexpr int kTokenThreads = 256, kTokenRowsPerBlock = kTokenThreads / 32;

/// How qopt_cuda_quantize_rows smooths x before it quantizes (SmoothQuant's
/// x / s where no norm before takes it in gamma).
enum TokenSmoothing : int32_t {
  kSmoothNone = 0,
  kSmoothMul = 1,
  kSmoothDiv = 2
};

/// One launch of qopt_cuda_token_quant (by value): grid (ceil(m / 8),
/// products); row r of product z (the rows of x at outer indices (i, j) =
/// ((zBase + z) / o1, (zBase + z) % o1), strides sx0, sx1, sxm, contiguous
/// along K), times or divided by smooth[c · ss] (`smoothing`), to
/// codes[row · k + c] and steps[row], row = (zBase + z) · m + r.
struct TokenQuantParams {
  const float *x;
  int64_t sx0, sx1, sxm;
  int8_t *codes;
  float *steps;
  int64_t m, k;
  uint32_t o1, zBase;
  int32_t bits, smoothing;
  const float *smooth;
  int64_t ss;
};
static_assert(sizeof(TokenQuantParams) == 96, "TokenQuantParams' layout");

/// Row r of product z: x's row, and its place among the codes' rows.
/// (32-bit product indices: no 64-bit division, which ptxas makes a call.)
struct TokenRow {
  const float *x;
  int64_t row;
};
QOPT_HD TokenRow tokenRow(const TokenQuantParams &p, uint32_t z, int64_t r) {
  uint32_t product = p.zBase + z;
  return {p.x + int64_t(product / p.o1) * p.sx0 +
              int64_t(product % p.o1) * p.sx1 + r * p.sxm,
          int64_t(product) * p.m + r};
}

/// The codes a row is quantized to (TokenQuantParams::bits, and the
/// `bits` of every kernel that quantizes rows for a W8A8 product): 2 to 8,
/// signed integers of that many bits; kTokenFP8E4M3, FP8 E4M3FN codes
/// (`--quantize-activations fp8-e4m3:per-token`; the compiler's
/// kPerTokenQuantAttr holds the same value).
constexpr int32_t kTokenFP8E4M3 = 0xE4;

/// Null where `bits` names codes the kernels write, else why not.
QOPT_HD const char *tokenFormatRefusal(int64_t bits) {
  return (bits >= 2 && bits <= 8) || bits == kTokenFP8E4M3
             ? nullptr
             : "activations of more than 8 bits";
}

/// The largest code's magnitude: max|x| / it is a row's step.
QOPT_HD float tokenLargest(int bits) {
  return bits == kTokenFP8E4M3 ? 448.0f : float((1 << (bits - 1)) - 1);
}

/// v on the E4M3FN grid: clamped to ±448, rounded to the nearest multiple
/// of its binade's quantum (ties to even; the subnormals' below 2^-6), in
/// the operations of the CPU lowering's fake-quant (snapToGrid), so both
/// targets pick the same code.
QOPT_HD float e4m3Round(float v) {
  float c = fminf(fmaxf(v, -448.0f), 448.0f);
  int32_t e = int32_t((bitsOfFloat(c) >> 23) & 0xFFu) - 127;
  e = e > -6 ? e : -6;
  float quantum = floatFromBits(uint32_t(e + 127 - 3) << 23);
  return rintf(c / quantum) * quantum;
}

/// The E4M3FN code of a value on its grid (e4m3Round's).
QOPT_HD uint8_t e4m3Code(float q) {
  uint32_t u = bitsOfFloat(q), sign = (u >> 24) & 0x80u;
  float a = fabsf(q);
  if (a < 1.0f / 64) // a subnormal or zero: m · 2^-9
    return uint8_t(sign | uint32_t(a * 512.0f));
  return uint8_t(sign | (((u >> 23) & 0xFFu) - 120u) << 3 | ((u >> 20) & 7u));
}

/// The code of v in a row of step `step` (zero for a NaN step), as a byte.
QOPT_HD int8_t tokenCode(float v, float step, int bits) {
  if (isnan(step))
    return int8_t(0);
  if (bits == kTokenFP8E4M3)
    return int8_t(e4m3Code(e4m3Round(v / step)));
  float qmax = tokenLargest(bits), qmin = -qmax - 1.0f;
  return int8_t(fminf(fmaxf(rintf(v / step), qmin), qmax));
}

/// A magnitude into a row's running maximum (infinity once one is not
/// finite: the row's step is then NaN).
QOPT_HD float tokenMax(float amax, float v) {
  float a = fabsf(v);
  return isfinite(a) ? fmaxf(amax, a) : INFINITY;
}

/// Element c of a row of x, smoothed.
QOPT_HD float tokenValue(const TokenQuantParams &p, const float *x, int64_t c) {
  float v = x[c];
  if (p.smoothing == kSmoothMul)
    return v * p.smooth[c * p.ss];
  if (p.smoothing == kSmoothDiv)
    return v / p.smooth[c * p.ss];
  return v;
}

/// Lane `lane`'s largest magnitude of row `row` (elements lane, lane + 32,
/// …), infinity where one of them is not finite (the warp's maximum is
/// then infinity: the row's step is NaN).
QOPT_HD float tokenPartialMax(const TokenQuantParams &p, TokenRow row,
                              int lane) {
  const float *x = row.x;
  float amax = 0.0f;
  // (Not unrolled: copies of the divisions' slow path would need a stack
  // frame on sm_90.)
  QOPT_UNROLL(1)
  for (int64_t c = lane; c < p.k; c += 32)
    amax = tokenMax(amax, tokenValue(p, x, c));
  return amax;
}

/// The row's step from the warp's maximum (tokenStep's on the CPU).
QOPT_HD float tokenStepOf(float amax, int bits) {
  if (!isfinite(amax))
    return NAN;
  float s = amax / tokenLargest(bits);
  return s == 0.0f ? 1.0f : s;
}

/// Writes lane `lane`'s codes of row `row` (and lane 0 the step).
QOPT_HD void tokenStore(const TokenQuantParams &p, TokenRow row, int lane,
                        float step) {
  const float *x = row.x;
  int8_t *q = p.codes + row.row * p.k;
  QOPT_UNROLL(1)
  for (int64_t c = lane; c < p.k; c += 32)
    q[c] = tokenCode(tokenValue(p, x, c), step, p.bits);
  if (lane == 0)
    p.steps[row.row] = step;
}

/// qopt_cuda_quantize_rows' launch (grid (blocks, 1)): rows of x [rows, k]
/// (row stride sx, contiguous along K), smoothed by the vector at pv + ov
/// (stride sv) as `smoothing` says, to codes [rows, k] (contiguous) and
/// steps [rows]; null, or why not.
inline const char *planQuantizeRows(int64_t bits, int64_t rows, int64_t k,
                                    int64_t px, int64_t ox, int64_t sx,
                                    int64_t pc, int64_t oc, int64_t ps,
                                    int64_t os, int64_t smoothing, int64_t pv,
                                    int64_t ov, int64_t sv, TokenQuantParams &q,
                                    int64_t &blocks) {
  if (const char *why = tokenFormatRefusal(bits))
    return why;
  if (smoothing < kSmoothNone || smoothing > kSmoothDiv ||
      (smoothing != kSmoothNone && !pv))
    return "an unknown smoothing";
  q = TokenQuantParams{};
  q.x = reinterpret_cast<const float *>(px) + ox;
  q.sxm = sx;
  q.codes = reinterpret_cast<int8_t *>(pc) + oc;
  q.steps = reinterpret_cast<float *>(ps) + os;
  q.m = rows, q.k = k, q.o1 = 1;
  q.bits = int32_t(bits);
  q.smoothing = int32_t(smoothing);
  q.smooth = smoothing ? reinterpret_cast<const float *>(pv) + ov : nullptr;
  q.ss = sv;
  blocks = rows <= 0 ? 0 : (rows + kTokenRowsPerBlock - 1) / kTokenRowsPerBlock;
  return nullptr;
}

//===-- The integer GEMM
//---------------------------------------------------===//

/// Codes a K step (8 words of four int8 codes).
constexpr int kW8TileK = 32, kW8Words = kW8TileK / 4;

/// The step's tiles as words of four codes along K: a[r][w] = q(m0 + r,
/// k0 + 4w …), b[c][w] = (W − zero)(n0 + c, k0 + 4w …); zeros outside.
/// A row-major and B column-major, as mma.sync's int8 fragments read them
/// (one m16n8k32 step: the whole K step). (+1: rows 9 words apart.)
template <int MI> struct W8A8Shared {
  static constexpr int kMmaK = 32; // mma.sync m16n8k32 .s8
  int32_t a[kTileRows<MI>][kW8Words + 1];
  int32_t b[kTileN][kW8Words + 1];
};

/// One launch of W8A8.cu's GEMM (by value): product z of the grid has its
/// codes, steps and C at outer indices (i, j) = ((zBase + z) / o1,
/// (zBase + z) % o1): codes at a + i·sa0 + j·sa1 (rows sam, contiguous
/// along K, 4-byte aligned), steps at steps + i·ss0 + j·ss1 (rows ssm), C
/// at c + i·sc0 + j·sc1 (rows scm, columns scn); W is QLinearTile.h's view
/// (rows N, K and the group multiples of 32, rows of codes 4-byte
/// aligned).
struct W8A8Params {
  const int8_t *a;
  const float *steps;
  float *c;
  int64_t sc0, sc1, scm, scn;
  const uint8_t *codes;
  int64_t codeRow;
  const float *scales;
  int64_t scaleRow;
  const int8_t *zp;
  int64_t zpRow, group;
  int64_t m, n, k;
  uint32_t o1, zBase;
  int32_t overwrite;
  uint32_t yBase; // the grid's first tile row (grids of at most 65535)
  int64_t sa0, sa1, sam, ss0, ss1, ssm;
};
static_assert(sizeof(W8A8Params) == 200, "W8A8Params' layout");

/// A 4-byte word of memory.
QOPT_HD uint32_t loadWord(const void *p) {
#if defined(__CUDA_ARCH__)
  return __ldg(reinterpret_cast<const unsigned int *>(p));
#else
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
#endif
}

/// Calls store(r, w, word) for thread t's words of the A tile (the
/// product's codes `a` from row m0, K step k0; zero past M): 2 words a
/// thread (MI = 4), one for the first 128 threads (MI = 1).
template <int MI, typename Store>
QOPT_HD void forEachWordOfA(const W8A8Params &p, const int8_t *a, int64_t m0,
                            int64_t k0, int t, Store &&store) {
  constexpr int kWords = kTileRows<MI> * kW8Words;
  QOPT_UNROLL()
  for (int i = 0; i < (kWords + kGemmThreads - 1) / kGemmThreads; ++i) {
    int e = t + kGemmThreads * i;
    if (e >= kWords)
      return;
    int r = e / kW8Words, w = e % kW8Words;
    int64_t gr = m0 + r;
    store(r, w, gr < p.m ? loadWord(a + gr * p.sam + k0 + 4 * w) : 0u);
  }
}

/// Loads thread t's words of the A tile as int8 words.
template <int MI>
QOPT_HD void loadCodesA(const W8A8Params &p, const int8_t *a, int64_t m0,
                        int64_t k0, int t, W8A8Shared<MI> &s) {
  forEachWordOfA<MI>(p, a, m0, k0, t, [&](int r, int w, uint32_t word) {
    s.a[r][w] = int32_t(word);
  });
}

/// Loads thread t's 2 words of the B tile: codes k0 + 4w … of row n0 + c
/// of W minus the zero point of group g (the step's: K steps stay inside a
/// group), as four int8.
template <int F, int MI>
QOPT_HD void loadCodesB(const W8A8Params &p, int64_t k0, int64_t g, int64_t n0,
                        int t, W8A8Shared<MI> &s) {
  constexpr bool four = F == kInt4 || F == kUInt4;
  QOPT_UNROLL()
  for (int i = 0; i < kTileN * kW8Words / kGemmThreads; ++i) {
    int e = t + kGemmThreads * i;
    int col = e / kW8Words, w = e % kW8Words;
    int64_t gr = n0 + col;
    if (gr >= p.n) {
      s.b[col][w] = 0;
      continue;
    }
    int64_t kk = k0 + 4 * w;
    const uint8_t *row = p.codes + gr * p.codeRow;
    if (!four && !p.zp) {
      s.b[col][w] = int32_t(loadWord(row + kk));
      continue;
    }
    int32_t zero = 0;
    if (p.zp) {
      int8_t z = p.zp[gr * p.zpRow + g];
      zero = F == kUInt4 ? int32_t(uint8_t(z)) : int32_t(z);
    }
    uint32_t raw;
    if (four) {
#if defined(__CUDA_ARCH__)
      raw = __ldg(reinterpret_cast<const unsigned short *>(row + kk / 2));
#else
      uint16_t two;
      memcpy(&two, row + kk / 2, 2);
      raw = two;
#endif
    } else {
      raw = loadWord(row + kk);
    }
    uint32_t packed = 0;
    QOPT_UNROLL()
    for (int q = 0; q < 4; ++q) {
      int32_t v = four
                      ? (F == kInt4 ? int32_t(((raw >> (4 * q)) & 15u) ^ 8u) - 8
                                    : int32_t((raw >> (4 * q)) & 15u))
                      : int32_t(int8_t(uint8_t(raw >> (8 * q))));
      packed |= uint32_t(uint8_t(int8_t(v - zero))) << (8 * q);
    }
    s.b[col][w] = int32_t(packed);
  }
}

/// Lane `lane`'s int8 fragments of warp w's outputs (PTX ISA, "Matrix
/// Fragments for mma.m16n8k32" with .s8: a[mt][i] holds A's row g + 8·(i %
/// 2), codes 4q + 16·(i / 2) … + 3 (word q + 4·(i / 2)); b[nt][i] B's
/// column g, codes 4q + 16·i … (word q + 4·i); g = lane / 4, q = lane % 4).
template <int MI>
QOPT_HD void mmaFragments(const W8A8Shared<MI> &s, int w, int lane, int,
                          uint32_t (&a)[kMmaM<MI>][4],
                          uint32_t (&b)[kMmaN<MI>][2]) {
  int g = lane / 4, q = lane % 4;
  QOPT_UNROLL()
  for (int mt = 0; mt < kMmaM<MI>; ++mt)
    QOPT_UNROLL()
  for (int i = 0; i < 4; ++i)
    a[mt][i] = uint32_t(
        s.a[warpRow<MI>(w) + 16 * mt + g + 8 * (i % 2)][q + 4 * (i / 2)]);
  QOPT_UNROLL()
  for (int nt = 0; nt < kMmaN<MI>; ++nt)
    QOPT_UNROLL()
  for (int i = 0; i < 2; ++i)
    b[nt][i] = uint32_t(s.b[warpColumn<MI>(w) + 8 * nt + g][q + 4 * i]);
}

#if defined(__CUDA_ARCH__)
/// c += a·b in int32 on the tensor cores (one m16n8k32 tile of int8
/// codes: exact).
__device__ __forceinline__ void mmaS8(const uint32_t (&a)[4],
                                      const uint32_t (&b)[2], int32_t (&c)[4]) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};"
               : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]),
                 "r"(b[1]));
}

/// The K step's integer products: each warp's m16n8k32 tiles.
template <int MI>
__device__ __forceinline__ void multiplyCodes(const W8A8Shared<MI> &s, int t,
                                              int32_t (&acc)[MI][kMicro]) {
  multiplyWarpTile(s, t, acc, mmaS8);
}
#endif

/// Where group g ends: thread t's integer sums (its mma accumulators) times
/// their columns' scales, added to its f32 sums, and the integer sums
/// restarted.
template <int MI>
QOPT_HD void flushGroup(const W8A8Params &p, int64_t n0, int64_t g, int t,
                        int32_t (&acc)[MI][kMicro], float (&sum)[MI][kMicro]) {
  forEachMmaSlot<MI>(t, [&](int i, int e, int, int c) {
    int64_t col = n0 + c;
    float scale = col < p.n ? p.scales[col * p.scaleRow + g] : 0.0f;
    sum[i][e] += float(acc[i][e]) * scale;
    acc[i][e] = 0;
  });
}

/// Writes thread t's outputs times their rows' steps (the product's
/// `steps`) into C's tile; with `Scaled` (the FP8 products, whose sums are
/// of codes alone), times their columns' scales first.
template <bool Scaled = false, int MI>
QOPT_HD void storeW8A8(const W8A8Params &p, const float *steps, float *c,
                       int64_t m0, int64_t n0, int t,
                       const float (&sum)[MI][kMicro]) {
  forEachMmaOutput(m0, n0, t, sum, [&](int64_t r, int64_t col, float v) {
    if (r >= p.m || col >= p.n)
      return;
    if (Scaled)
      v *= p.scales[col * p.scaleRow];
    float &out = c[r * p.scm + col * p.scn];
    out = (p.overwrite ? 0.0f : out) + v * steps[r * p.ssm];
  });
}

//===-- FP8 products on the tensor cores
//-----------------------------------===//
//
// With E4M3 tokens (kTokenFP8E4M3) and an FP8 weight (E4M3FN or E5M2, one
// f32 scale per row or for the tensor), qopt_cuda_gemm_w8a8_fp8<format>
// multiplies the codes themselves: every FP8 value is exactly an f16 value,
// so the tiles hold the codes as f16 (GemmSharedF16) and mma.sync's f16
// form multiplies them exactly into f32 accumulators; C (+)= Σ·scale[n]·
// step[row] at the store (storeW8A8<true>). (sm_89's FP8 mma is not on sm_80;
// this runs on all three.)

/// The f16 bits of FP8 code `raw` (F: kFP8E4M3 or kFP8E5M2), the same
/// value: E5M2 is f16's top byte; E4M3's values are all normal f16 values
/// (its subnormals m · 2^-9 normalised), its NaN codes a quiet NaN.
template <int F> QOPT_HD uint32_t f16OfFP8(uint32_t raw) {
  if (F == kFP8E5M2)
    return raw << 8;
  uint32_t sign = (raw & 0x80u) << 8, e = (raw >> 3) & 15u, m = raw & 7u;
  if (e == 15 && m == 7)
    return sign | 0x7E00u;
  if (e)
    return sign | (e + 8) << 10 | m << 7;
  if (!m)
    return sign;
  uint32_t shift = m >= 4 ? 0 : m >= 2 ? 1 : 2; // the leading 1 to bit 2
  return sign | (8 - shift) << 10 | ((m << shift) & 3u) << 8;
}

/// Four FP8 codes (a word, the first in the low byte) as f16 into row r of
/// a tile at kk … kk + 3.
template <int F>
QOPT_HD void storeFP8Word(uint16_t (*tile)[kTileK + 8], int r, int kk,
                          uint32_t word) {
  QOPT_UNROLL()
  for (int q = 0; q < 4; ++q)
    tile[r][kk + q] = uint16_t(f16OfFP8<F>((word >> (8 * q)) & 255u));
}

/// Loads thread t's words of the A tile (the product's E4M3 codes) as f16.
template <int MI>
QOPT_HD void loadFP8A(const W8A8Params &p, const int8_t *a, int64_t m0,
                      int64_t k0, int t, GemmSharedF16<MI> &s) {
  forEachWordOfA<MI>(p, a, m0, k0, t, [&](int r, int w, uint32_t word) {
    storeFP8Word<kFP8E4M3>(s.a, r, 4 * w, word);
  });
}

/// Loads thread t's 2 words of the B tile: W's codes k0 + 4w … of row
/// n0 + c as f16, column c of B.
template <int F, int MI>
QOPT_HD void loadFP8B(const W8A8Params &p, int64_t k0, int64_t n0, int t,
                      GemmSharedF16<MI> &s) {
  QOPT_UNROLL()
  for (int i = 0; i < kTileN * kW8Words / kGemmThreads; ++i) {
    int e = t + kGemmThreads * i;
    int col = e / kW8Words, w = e % kW8Words;
    int64_t gr = n0 + col;
    storeFP8Word<F>(s.b, col, 4 * w,
                    gr < p.n ? loadWord(p.codes + gr * p.codeRow + k0 + 4 * w)
                             : 0u);
  }
}

/// Product z's codes, steps and C.
struct W8A8Product {
  const int8_t *a;
  const float *steps;
  float *c;
};
QOPT_HD W8A8Product w8a8Product(const W8A8Params &p, uint32_t z) {
  uint32_t product = p.zBase + z;
  int64_t i = product / p.o1, j = product % p.o1;
  return {p.a + i * p.sa0 + j * p.sa1, p.steps + i * p.ss0 + j * p.ss1,
          p.c + i * p.sc0 + j * p.sc1};
}

/// The scale group of the current K step, followed without a 64-bit
/// division per step (a call in PTX): `g`, and where it ends along K.
struct GroupCursor {
  int64_t g = 0, end;
  QOPT_HD explicit GroupCursor(const W8A8Params &p)
      : end(p.group < p.k ? p.group : p.k) {}
  /// Whether K step k0 ends the group (or K).
  QOPT_HD bool endsAt(int64_t k0) const { return k0 + kW8TileK >= end; }
  QOPT_HD void next(const W8A8Params &p) {
    ++g;
    end = end + p.group < p.k ? end + p.group : p.k;
  }
};

/// The tile rows of a launch's blocks start at yBase.
QOPT_HD int64_t w8a8Row0(const W8A8Params &p, uint32_t y, int rows) {
  return (int64_t(p.yBase) + y) * rows;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_W8A8TILE_H
