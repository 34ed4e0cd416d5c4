//===- QuantizedWeights.h - a quantized weight as the kernels read it -*- C++
//-*-===//
//
// Internal to lib/Runtime/Kernels/CPU: the weight layout shared by the
// quantized products' row kernels (QLinear.cpp) and the int8 GEMM for many
// rows (QGemm.cpp). No MLIR, no LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CPU_QUANTIZEDWEIGHTS_H
#define QOPT_RUNTIME_KERNELS_CPU_QUANTIZEDWEIGHTS_H

#include <cmath>
#include <cstdint>

#include <immintrin.h>

namespace qopt_cpu {

enum QFormat : int64_t {
  kInt4 = 0,
  kUInt4 = 1,
  kInt8 = 2,
  kUInt8 = 3,
  kNF4 = 4,
  kFP8E4M3 = 5, // OCP E4M3FN: no infinities, NaN at S.1111.111, max 448
  kFP8E5M2 = 6  // the top byte of an IEEE binary16
};

constexpr bool isFourBit(QFormat f) {
  return f == kInt4 || f == kUInt4 || f == kNF4;
}

/// The offset the integer (VNNI) kernels add to a code to make it
/// unsigned: int4 codes + 8 (the nibble XOR 8), int8 codes + 128.
constexpr int32_t unsignedOffset(QFormat f) {
  return f == kInt4 ? 8 : f == kInt8 ? 128 : 0;
}

/// Codes row-major N x K as !qopt.qtensor stores them (4-bit codes two to a
/// byte, even k in the low nibble), f32 scales per group of `group` codes
/// along K (scaleRow 0: one set for every row, as per-tensor scales),
/// optional zero points (int8 storage; integer formats).
struct QWeights {
  const uint8_t *data;
  int64_t dataRow; // bytes between rows
  const float *scales;
  int64_t scaleRow; // floats between rows' scales (0: one set for all rows)
  const int8_t *zp;
  int64_t zpRow;
  int64_t n, k, group, groups;
  QFormat format;
  bool fourBit() const { return isFourBit(format); }
  bool isSigned() const { return format == kInt4 || format == kInt8; }
  bool isFloat() const { return format == kFP8E4M3 || format == kFP8E5M2; }
  /// Zero point of row r's group g as the code's integer (0 without).
  int32_t zeroPoint(int64_t r, int64_t g) const {
    if (!zp)
      return 0;
    int8_t z = zp[r * zpRow + g];
    return isSigned() ? int32_t(z) : int32_t(uint8_t(z));
  }
  /// The code of element (r, c), as a signed or unsigned integer.
  int32_t code(int64_t r, int64_t c) const {
    if (!fourBit()) {
      int8_t b = int8_t(data[r * dataRow + c]);
      return isSigned() ? int32_t(b) : int32_t(uint8_t(b));
    }
    uint8_t nib = (data[r * dataRow + c / 2] >> (4 * (c & 1))) & 15;
    return format == kInt4 ? (int32_t(nib) ^ 8) - 8 : int32_t(nib);
  }
};

/// Activation blocks quantized to int8 whose largest magnitude is below
/// this become zeros: 127 / absmax would overflow to infinity (and 0 * inf
/// make NaN codes) for absmax under ~3.7e-37.
constexpr float kTinyBlock = 1e-30f;

/// A block of activations quantized to int8 as the VNNI kernels do.
struct Int8Block {
  __m512i lo, hi; // the 32 codes as int32 (zeros past the block's end)
  float scale;    // absmax / 127 (quantizeBlockAt: the token's step); NaN if
                  // the block (the row) holds a NaN or infinity
  int32_t sum;    // of the codes
};

/// Quantizes x[0, n) (n <= 32): codes round(x / scale) (to nearest even)
/// in [-127, 127]; zeros for a non-finite block (its scale is NaN: the
/// outputs it reaches are NaN, as in f32) and below kTinyBlock.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) inline Int8Block
quantizeBlock(const float *x, int64_t n) {
  __mmask16 m0 = __mmask16(n >= 16 ? 0xFFFF : (1u << n) - 1);
  __mmask16 m1 = __mmask16(n >= 32  ? 0xFFFF
                           : n > 16 ? (1u << (n - 16)) - 1
                                    : 0);
  __m512 x0 = _mm512_maskz_loadu_ps(m0, x);
  __m512 x1 = _mm512_maskz_loadu_ps(m1, x + 16);
  // fpclass 0x99: NaN (quiet, signalling) and +-infinity.
  bool finite = (_mm512_fpclass_ps_mask(x0, 0x99) |
                 _mm512_fpclass_ps_mask(x1, 0x99)) == 0;
  float amax =
      _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  __m512 inv =
      _mm512_set1_ps(finite && amax >= kTinyBlock ? 127.0f / amax : 0.0f);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  Int8Block b;
  b.lo = _mm512_min_epi32(
      _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)), lo), hi);
  b.hi = _mm512_min_epi32(
      _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x1, inv)), lo), hi);
  b.scale = finite ? amax / 127.0f : NAN;
  b.sum = _mm512_reduce_add_epi32(_mm512_add_epi32(b.lo, b.hi));
  return b;
}

/// The step of a row of activations quantized per token to `bits`-bit
/// codes, as qopt-insert-fake-quant's dynamic per-token quantizer computes
/// it: max|x| / (2^(bits-1) - 1), 1 where that is 0, NaN where the row
/// holds a NaN or an infinity. Plain C++: every path's per-token
/// quantization calls it (one pass over the row, next to the product's
/// N passes).
inline float tokenStep(const float *x, int64_t k, int bits) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t c = 0; c < k; ++c) {
    finite &= std::isfinite(x[c]);
    amax = std::fmax(amax, std::fabs(x[c]));
  }
  if (!finite)
    return NAN;
  float s = amax / float((1 << (bits - 1)) - 1);
  return s == 0.0f ? 1.0f : s;
}

/// quantizeBlock with the row's per-token `step` (tokenStep): codes
/// round-half-even(x / step) (a division, as the quantizer computes it)
/// clamped to [-2^(bits-1), 2^(bits-1) - 1]; zeros where the step is NaN.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) inline Int8Block
quantizeBlockAt(const float *x, int64_t n, float step, int bits) {
  Int8Block b;
  b.scale = step;
  if (std::isnan(step)) {
    b.lo = b.hi = _mm512_setzero_si512();
    b.sum = 0;
    return b;
  }
  __mmask16 m0 = __mmask16(n >= 16 ? 0xFFFF : (1u << n) - 1);
  __mmask16 m1 = __mmask16(n >= 32  ? 0xFFFF
                           : n > 16 ? (1u << (n - 16)) - 1
                                    : 0);
  __m512 s = _mm512_set1_ps(step);
  __m512 x0 = _mm512_div_ps(_mm512_maskz_loadu_ps(m0, x), s);
  __m512 x1 = _mm512_div_ps(_mm512_maskz_loadu_ps(m1, x + 16), s);
  const __m512i lo = _mm512_set1_epi32(-(1 << (bits - 1))),
                hi = _mm512_set1_epi32((1 << (bits - 1)) - 1);
  b.lo = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(x0), lo), hi);
  b.hi = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(x1), lo), hi);
  b.sum = _mm512_reduce_add_epi32(_mm512_add_epi32(b.lo, b.hi));
  return b;
}

/// Whether qgemmInt8() takes `w`: an integer format whose groups are whole
/// blocks of 32 codes (or one group per row). qgemmF32() takes NF4 and
/// FP8 too.
bool qgemmTakes(const QWeights &w);
bool qgemmF32Takes(const QWeights &w);

/// y[0..m) += x · Wᵀ with each row of x quantized to int8 per block of 32
/// codes (the numerics of the row kernels' int8 activations), or per token
/// to `tokenBits` bits (tokenStep) where that is not 0, as a
/// register-tiled AVX-512 VNNI GEMM: for many rows (prefill). Rows of W
/// split among the pool's threads. Needs AVX-512 VNNI and qgemmTakes(w).
void qgemmInt8(const QWeights &w, const float *x, int64_t ldx, int64_t m,
               float *y, int64_t ldy, int tokenBits = 0);

/// y[0..m) += x · Wᵀ in f32: blocks of W dequantized into the panels of
/// PackedGemm.cpp's AVX-512 tiles (each block once per call, while it is
/// in cache). Needs AVX-512 and qgemmF32Takes(w).
void qgemmF32(const QWeights &w, const float *x, int64_t ldx, int64_t m,
              float *y, int64_t ldy);

} // namespace qopt_cpu

#endif // QOPT_RUNTIME_KERNELS_CPU_QUANTIZEDWEIGHTS_H
