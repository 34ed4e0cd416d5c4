//===- QLinear.cpp - products with packed quantized weights ---------------===//
//
// C[m, n] += sum_k A[m, k] * W[n, k] where W is a quantized weight stored as
// !qopt.qtensor stores it: codes row-major N x K (4-bit codes two to a
// byte, even k in the low nibble), f32 scales per group of `group` codes
// along K (a group of K: per channel), optional zero points (int8 storage).
// The weights are read in that layout, in place from the memory-mapped
// weight file: no repacking at load or per call.
//
// A decode step reads every weight once, so these kernels are written to
// stream them at memory bandwidth: the activations are prepared once per
// call (permuted to match the nibble order, zero-padded, optionally
// quantized to int8 per block of 32 for AVX-512 VNNI dot products), then
// each weight row is read once for up to four activation rows. Large M
// (prefill): with int8 activations the GEMM of QGemm.cpp; with f32
// activations tiles of W dequantized into f32 for BLAS.
//
// The code path is chosen once, from the CPU's features: AVX-512 VNNI,
// AVX-512, AVX2 + FMA, or portable C++; QOPT_CPU_KERNELS=scalar|avx2|
// avx512|avx512-vnni caps it (tests run every path this machine has).
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <immintrin.h>

#include "CPUKernels.h"
#include "QuantizedWeights.h"
#include "qopt/Support/QuantFormats.h"

// GCC 12's AVX-512 headers build some intrinsics from _mm512_undefined_*,
// which its uninitialized-use analysis flags at every instantiation.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

extern "C" {
enum { kRowMajorQ = 101, kNoTransQ = 111, kTransQ = 112 };
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
                 float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);
}

using qopt_cpu::Pool;

namespace {

using Format = qopt_cpu::QFormat;
using Weights = qopt_cpu::QWeights;
using qopt_cpu::isFourBit;
using qopt_cpu::kFP8E4M3;
using qopt_cpu::kFP8E5M2;
using qopt_cpu::kInt4;
using qopt_cpu::kInt8;
using qopt_cpu::kNF4;
using qopt_cpu::kUInt4;
using qopt_cpu::kUInt8;
enum Flags : int64_t {
  kZeroPoints = 1,
  kInt8Activations = 2,
  // Activations quantized per token (row) to `(flags >> 8) & 0xff` bits,
  // as qopt-insert-fake-quant's dynamic per-token quantizer does, and the
  // product run on the integer codes.
  kPerTokenActivations = 4,
};
enum Path : int {
  kScalar = 0,
  kAVX2 = 1,
  kAVX2VNNI = 2, // AVX2 + AVX-VNNI (256-bit VPDPBUSD: client CPUs)
  kAVX512 = 3,
  kAVX512VNNI = 4
};
const char *const kPathNames[] = {"scalar", "avx2", "avx2-vnni", "avx512",
                                  "avx512-vnni"};

const float *const kNF4Table = qopt::kNF4Codes.data();

/// The value of an FP8 code (formats kFP8E4M3, kFP8E5M2): the support
/// library's codec (QuantFormats.cpp is compiled into this library).
float fp8Value(Format f, uint8_t code) {
  return qopt::smallFloatDecode(f == kFP8E4M3 ? qopt::SmallFloatKind::F8E4M3FN
                                              : qopt::SmallFloatKind::F8E5M2,
                                code);
}

__attribute__((destructor)) void stopPool() { Pool::shutdown(); }

//===----------------------------------------------------------------------===//
// CPU features and the chosen path.
//===----------------------------------------------------------------------===//

/// Whether this CPU runs path `p` (each path also uses those below it).
bool supports(int p) {
  __builtin_cpu_init();
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("f16c");
  bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") &&
                __builtin_cpu_supports("avx512dq");
  switch (p) {
  case kScalar:
    return true;
  case kAVX2:
    return avx2;
  case kAVX2VNNI:
    return avx2 && __builtin_cpu_supports("avxvnni");
  case kAVX512:
    return avx512;
  case kAVX512VNNI:
    return avx512 && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

/// The best path this CPU runs at or below `cap`.
int bestPath(int cap = kAVX512VNNI) {
  int p = cap;
  while (p > kScalar && !supports(p))
    --p;
  return p;
}

int envCap() {
  const char *env = std::getenv("QOPT_CPU_KERNELS");
  if (!env)
    return kAVX512VNNI;
  for (int p = kScalar; p <= kAVX512VNNI; ++p)
    if (std::strcmp(env, kPathNames[p]) == 0)
      return p;
  std::fprintf(stderr,
               "qopt: QOPT_CPU_KERNELS='%s' is not one of scalar, avx2, "
               "avx2-vnni, avx512, avx512-vnni; using the best path\n",
               env);
  return kAVX512VNNI;
}

std::atomic<int> &currentPath() {
  static std::atomic<int> path{bestPath(envCap())};
  return path;
}
} // namespace

bool qopt_cpu::hasAVX512() { return currentPath().load() >= kAVX512; }

namespace {

//===----------------------------------------------------------------------===//
// Row corrections shared by the paths: sum_g s_g * z_g * T_g, where T_g is
// the sum of the activations of group g (in the int8 path: of their
// quantized values times their block scales).
//===----------------------------------------------------------------------===//

/// The zero point the kernels subtract in group g of row r, with `bias`
/// added (the offset that makes a signed code unsigned).
float correction(const Weights &w, int64_t r, const float *t, int32_t bias) {
  const float *s = w.scales + r * w.scaleRow;
  float sum = 0;
  if (!w.zp) {
    if (bias == 0)
      return 0;
    for (int64_t g = 0; g < w.groups; ++g)
      sum += s[g] * t[g];
    return sum * float(bias);
  }
  for (int64_t g = 0; g < w.groups; ++g)
    sum += s[g] * float(w.zeroPoint(r, g) + bias) * t[g];
  return sum;
}

//===----------------------------------------------------------------------===//
// Portable path: any group size, any format.
//===----------------------------------------------------------------------===//

void rowsScalar(const Weights &w, const float *x, int64_t ldx, int64_t m,
                float *y, int64_t ldy, int64_t n0, int64_t n1) {
  for (int64_t r = n0; r < n1; ++r)
    for (int64_t i = 0; i < m; ++i) {
      const float *xr = x + i * ldx;
      float sum = 0;
      for (int64_t g = 0; g < w.groups; ++g) {
        int64_t c0 = g * w.group, c1 = std::min(w.k, c0 + w.group);
        float part = 0;
        if (w.format == kNF4) {
          for (int64_t c = c0; c < c1; ++c)
            part += kNF4Table[w.code(r, c)] * xr[c];
        } else if (w.isFloat()) {
          for (int64_t c = c0; c < c1; ++c)
            part += fp8Value(w.format, uint8_t(w.code(r, c))) * xr[c];
        } else {
          int32_t z = w.zeroPoint(r, g);
          for (int64_t c = c0; c < c1; ++c)
            part += float(w.code(r, c) - z) * xr[c];
        }
        sum += part * w.scales[r * w.scaleRow + g];
      }
      y[i * ldy + r] += sum;
    }
}

//===----------------------------------------------------------------------===//
// AVX2 + FMA, f32 activations. 4-bit codes in chunks of 16 (8 bytes: the
// low nibbles are the even codes, the high ones the odd codes), the
// activations permuted to match; 8-bit codes in chunks of 16 in order.
//===----------------------------------------------------------------------===//

#define QOPT_AVX2 __attribute__((target("avx2,fma,f16c")))

QOPT_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/// NF4's values of 8 codes: two 8-entry permutes, chosen by the code's
/// bit 3 (moved to the sign bit, which blendv reads).
QOPT_AVX2 inline __m256 lookupNF4AVX2(__m256i c) {
  __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));
  return _mm256_blendv_ps(
      _mm256_permutevar8x32_ps(_mm256_loadu_ps(kNF4Table), c),
      _mm256_permutevar8x32_ps(_mm256_loadu_ps(kNF4Table + 8), c), sel);
}

/// Codes of 16 consecutive elements as two vectors of 8 floats (4-bit:
/// even and odd elements; 8-bit: in order), from `src` (8 or 16 bytes).
/// FP8 codes become binary16 bit patterns: E5M2 is the top byte of one;
/// E4M3's exponent and mantissa shift into place, the value scaled by
/// 2^-8 (exponent bias 15 against 7; subnormals map to subnormals), which
/// the kernels fold into the scale (kCodeScale).
template <Format F>
QOPT_AVX2 inline void decode16AVX2(const uint8_t *src, __m256 &a, __m256 &b) {
  if constexpr (F == kFP8E4M3 || F == kFP8E5M2) {
    __m256i u = _mm256_cvtepu8_epi16(
        _mm_loadu_si128(reinterpret_cast<const __m128i *>(src)));
    __m256i h;
    if constexpr (F == kFP8E5M2) {
      h = _mm256_slli_epi16(u, 8);
    } else {
      // (u + sign) << 7 carries the sign from bit 14 into bit 15; the
      // NaN code S.1111.111 becomes a binary16 NaN.
      const __m256i sign = _mm256_set1_epi16(0x80),
                    mag = _mm256_set1_epi16(0x7F);
      h = _mm256_slli_epi16(_mm256_add_epi16(u, _mm256_and_si256(u, sign)), 7);
      __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(u, mag), mag);
      h = _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi16(0x7E00)));
    }
    a = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    b = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
  } else if constexpr (F == kInt8 || F == kUInt8) {
    __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src));
    __m256i lo, hi;
    if constexpr (F == kInt8) {
      lo = _mm256_cvtepi8_epi32(bytes);
      hi = _mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8));
    } else {
      lo = _mm256_cvtepu8_epi32(bytes);
      hi = _mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8));
    }
    a = _mm256_cvtepi32_ps(lo);
    b = _mm256_cvtepi32_ps(hi);
  } else {
    __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(src));
    if constexpr (F == kInt4) // two's complement nibble -> code + 8
      bytes = _mm_xor_si128(bytes, _mm_set1_epi8(char(0x88)));
    __m256i v = _mm256_cvtepu8_epi32(bytes);
    __m256i lo = _mm256_and_si256(v, _mm256_set1_epi32(15));
    __m256i hi = _mm256_srli_epi32(v, 4);
    if constexpr (F == kNF4) {
      // 16-entry table: two 8-entry permutes, chosen by the code's bit 3.
      a = lookupNF4AVX2(lo);
      b = lookupNF4AVX2(hi);
    } else {
      a = _mm256_cvtepi32_ps(lo);
      b = _mm256_cvtepi32_ps(hi);
    }
  }
}

/// What the decoded codes are multiplied by (with the group's scale).
template <Format F> constexpr float kCodeScale = F == kFP8E4M3 ? 256.0f : 1.0f;

/// The offset the f32 paths add to a code to read it unsigned (int4: the
/// nibble XOR 8 is code + 8).
int32_t f32Bias(Format f) { return f == kInt4 ? 8 : 0; }

/// Activations as the f32 paths read them: each row of x zero-padded to
/// whole chunks of `chunk`, 4-bit formats' chunks split into even and odd
/// elements; per row the sums of each group (for the zero points).
void prepareF32(const Weights &w, const float *x, int64_t ldx, int64_t m,
                int64_t chunk, std::vector<float> &px, std::vector<float> &t,
                int64_t &pk) {
  pk = (w.k + chunk - 1) / chunk * chunk;
  px.assign(size_t(m * pk), 0.0f);
  t.assign(size_t(m * w.groups), 0.0f);
  for (int64_t i = 0; i < m; ++i) {
    const float *xr = x + i * ldx;
    float *p = px.data() + i * pk;
    for (int64_t c = 0; c < w.k; ++c) {
      int64_t base = c / chunk * chunk, within = c - base;
      int64_t at =
          w.fourBit() ? base + (within & 1) * (chunk / 2) + within / 2 : c;
      p[at] = xr[c];
      t[i * w.groups + c / w.group] += xr[c];
    }
  }
}

/// Fetches byte `at` of the weight row two rows below `row` into L1: the
/// row kernels read rows one after the other, and on the machines measured
/// the hardware prefetcher alone left them at a third of the read
/// bandwidth (4096 x 4096 int4, one row of x: 2.32 ms, 1.07 with this).
inline void prefetchAhead(const Weights &w, const uint8_t *row, int64_t at) {
  _mm_prefetch(reinterpret_cast<const char *>(row + 2 * w.dataRow + at),
               _MM_HINT_T0);
}

/// How far ahead (bytes of weight rows) the VNNI row kernels prefetch: with
/// rows of 512 bytes, 1-16 KiB measured within noise of each other, none at
/// all 10% slower.
constexpr int64_t kPrefetchBytes = 4096;

/// How a row kernel finds chunk ch's scale: s[ch >> shift] where groups are
/// a power-of-two number of chunks (a group per row: 63); -1 otherwise
/// (groups of whole chunks: pathFor's condition).
int scaleShift(const Weights &w, int64_t chunk) {
  if (w.group >= w.k)
    return 63;
  int64_t per = w.group / chunk;
  return per > 0 && w.group % chunk == 0 && (per & (per - 1)) == 0
             ? __builtin_ctzll(uint64_t(per))
             : -1;
}

/// Bytes of `chunk` codes starting at code c of row `row`, copied into
/// `tail` (zero-filled) where the row ends inside the chunk.
inline const uint8_t *chunkBytes(const Weights &w, const uint8_t *row,
                                 int64_t c, int64_t chunk, uint8_t *tail) {
  int64_t bytes = w.fourBit() ? chunk / 2 : chunk;
  int64_t at = w.fourBit() ? c / 2 : c;
  int64_t rowBytes = w.fourBit() ? (w.k + 1) / 2 : w.k;
  if (at + bytes <= rowBytes)
    return row + at;
  std::memset(tail, 0, size_t(bytes));
  std::memcpy(tail, row + at, size_t(rowBytes - at));
  return tail;
}

/// One chunk of 16 codes (`bytes`) dotted with MB rows of activations
/// (`px`, rows pk apart), times `scale`, added to sums.
template <Format F, int MB>
QOPT_AVX2 inline void chunkAVX2(const uint8_t *bytes, const float *px,
                                int64_t pk, __m256 scale, __m256 *sums) {
  __m256 a, b;
  decode16AVX2<F>(bytes, a, b);
  for (int i = 0; i < MB; ++i) {
    const float *p = px + i * pk;
    __m256 d = _mm256_mul_ps(a, _mm256_loadu_ps(p));
    d = _mm256_fmadd_ps(b, _mm256_loadu_ps(p + 8), d);
    sums[i] = _mm256_fmadd_ps(d, scale, sums[i]);
  }
}

template <Format F, int MB>
QOPT_AVX2 void rowAVX2(const Weights &w, int64_t r, const float *px, int64_t pk,
                       const float *t, float *y, int64_t ldy) {
  constexpr int64_t chunk = 16;
  alignas(64) uint8_t tail[64];
  const uint8_t *row = w.data + r * w.dataRow;
  const float *s = w.scales + r * w.scaleRow;
  __m256 acc[MB];
  for (int i = 0; i < MB; ++i)
    acc[i] = _mm256_setzero_ps();
#define step(c, scale, sums)                                                   \
  chunkAVX2<F, MB>(chunkBytes(w, row, c, chunk, tail), px + (c), pk, scale,    \
                   sums)
  __m256 acc2[MB];
  for (int i = 0; i < MB; ++i)
    acc2[i] = _mm256_setzero_ps();
  int shift = scaleShift(w, chunk);
  int64_t chunks = pk / chunk, ch = 0;
  if (shift >= 0) {
    // Two chunks at a time into two sets of sums (each FMA chain half as
    // long), each chunk's scale found by a shift.
    // Chunks wholly inside the row read its bytes in place.
    constexpr int64_t bytes = isFourBit(F) ? chunk / 2 : chunk;
    const int64_t whole = w.k / chunk;
    for (; ch + 2 <= whole; ch += 2) {
      prefetchAhead(w, row, ch * bytes);
      chunkAVX2<F, MB>(row + ch * bytes, px + ch * chunk, pk,
                       _mm256_set1_ps(s[ch >> shift] * kCodeScale<F>), acc);
      chunkAVX2<F, MB>(row + (ch + 1) * bytes, px + (ch + 1) * chunk, pk,
                       _mm256_set1_ps(s[(ch + 1) >> shift] * kCodeScale<F>),
                       acc2);
    }
    for (; ch < chunks; ++ch)
      step(ch * chunk, _mm256_set1_ps(s[ch >> shift] * kCodeScale<F>), acc);
  } else {
    // Groups of whole chunks (pathFor): one scale per run of chunks.
    for (int64_t c = 0, g = 0; c < pk; ++g) {
      __m256 scale = _mm256_set1_ps(s[g] * kCodeScale<F>);
      for (int64_t end = std::min(pk, c + w.group); c < end; c += chunk)
        step(c, scale, acc);
    }
  }
#undef step
  for (int i = 0; i < MB; ++i)
    y[i * ldy + r] += hsum256(_mm256_add_ps(acc[i], acc2[i])) -
                      correction(w, r, t + i * w.groups, f32Bias(F));
}

//===----------------------------------------------------------------------===//
// AVX-512, f32 activations: as AVX2 with chunks of 32 (16 lanes each for
// the even and the odd codes); NF4 looks its table up with one permute.
//===----------------------------------------------------------------------===//

#define QOPT_AVX512                                                            \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

template <Format F>
QOPT_AVX512 inline void decode32AVX512(const uint8_t *src, __m512 &a,
                                       __m512 &b) {
  if constexpr (F == kFP8E4M3 || F == kFP8E5M2) {
    // As decode16AVX2.
    __m512i u = _mm512_cvtepu8_epi16(
        _mm256_loadu_si256(reinterpret_cast<const __m256i *>(src)));
    __m512i h;
    if constexpr (F == kFP8E5M2) {
      h = _mm512_slli_epi16(u, 8);
    } else {
      const __m512i mag = _mm512_set1_epi16(0x7F);
      h = _mm512_slli_epi16(
          _mm512_add_epi16(u, _mm512_and_si512(u, _mm512_set1_epi16(0x80))), 7);
      h = _mm512_mask_mov_epi16(
          h, _mm512_cmpeq_epi16_mask(_mm512_and_si512(u, mag), mag),
          _mm512_set1_epi16(0x7E00));
    }
    a = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    b = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
  } else if constexpr (F == kInt8 || F == kUInt8) {
    __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src));
    __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src + 16));
    if constexpr (F == kInt8) {
      a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b0));
      b = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b1));
    } else {
      a = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b0));
      b = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b1));
    }
  } else {
    __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i *>(src));
    if constexpr (F == kInt4)
      bytes = _mm_xor_si128(bytes, _mm_set1_epi8(char(0x88)));
    __m512i v = _mm512_cvtepu8_epi32(bytes);
    __m512i lo = _mm512_and_si512(v, _mm512_set1_epi32(15));
    __m512i hi = _mm512_srli_epi32(v, 4);
    if constexpr (F == kNF4) {
      __m512 table = _mm512_loadu_ps(kNF4Table);
      a = _mm512_permutexvar_ps(lo, table);
      b = _mm512_permutexvar_ps(hi, table);
    } else {
      a = _mm512_cvtepi32_ps(lo);
      b = _mm512_cvtepi32_ps(hi);
    }
  }
}

/// correction() with AVX-512: 16 groups at a time.
QOPT_AVX512 inline float correction512(const Weights &w, int64_t r,
                                       const float *t, int32_t bias) {
  if (!w.zp && bias == 0)
    return 0;
  const float *s = w.scales + r * w.scaleRow;
  const int8_t *z = w.zp ? w.zp + r * w.zpRow : nullptr;
  __m512 sum = _mm512_setzero_ps();
  __m512i b = _mm512_set1_epi32(bias);
  for (int64_t g = 0; g < w.groups; g += 16) {
    __mmask16 mask = w.groups - g >= 16 ? __mmask16(0xFFFF)
                                        : __mmask16((1u << (w.groups - g)) - 1);
    __m512 st = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, s + g),
                              _mm512_maskz_loadu_ps(mask, t + g));
    __m512i zi = b;
    if (z) {
      __m128i bytes = _mm_maskz_loadu_epi8(mask, z + g);
      zi = _mm512_add_epi32(zi, w.isSigned() ? _mm512_cvtepi8_epi32(bytes)
                                             : _mm512_cvtepu8_epi32(bytes));
    }
    sum = _mm512_fmadd_ps(st, _mm512_cvtepi32_ps(zi), sum);
  }
  return _mm512_reduce_add_ps(sum);
}

/// chunkAVX2 with chunks of 32 codes.
template <Format F, int MB>
QOPT_AVX512 inline void chunkAVX512(const uint8_t *bytes, const float *px,
                                    int64_t pk, __m512 scale, __m512 *sums) {
  __m512 a, b;
  decode32AVX512<F>(bytes, a, b);
  for (int i = 0; i < MB; ++i) {
    const float *p = px + i * pk;
    __m512 d = _mm512_mul_ps(a, _mm512_loadu_ps(p));
    d = _mm512_fmadd_ps(b, _mm512_loadu_ps(p + 16), d);
    sums[i] = _mm512_fmadd_ps(d, scale, sums[i]);
  }
}

template <Format F, int MB>
QOPT_AVX512 void rowAVX512(const Weights &w, int64_t r, const float *px,
                           int64_t pk, const float *t, float *y, int64_t ldy) {
  constexpr int64_t chunk = 32;
  alignas(64) uint8_t tail[64];
  const uint8_t *row = w.data + r * w.dataRow;
  const float *s = w.scales + r * w.scaleRow;
  __m512 acc[MB];
  for (int i = 0; i < MB; ++i)
    acc[i] = _mm512_setzero_ps();
#define step(c, scale, sums)                                                   \
  chunkAVX512<F, MB>(chunkBytes(w, row, c, chunk, tail), px + (c), pk, scale,  \
                     sums)
  __m512 acc2[MB];
  for (int i = 0; i < MB; ++i)
    acc2[i] = _mm512_setzero_ps();
  int shift = scaleShift(w, chunk);
  int64_t chunks = pk / chunk, ch = 0;
  if (shift >= 0) {
    // As rowAVX2.
    // Chunks wholly inside the row read its bytes in place.
    constexpr int64_t bytes = isFourBit(F) ? chunk / 2 : chunk;
    const int64_t whole = w.k / chunk;
    for (; ch + 2 <= whole; ch += 2) {
      prefetchAhead(w, row, ch * bytes);
      chunkAVX512<F, MB>(row + ch * bytes, px + ch * chunk, pk,
                         _mm512_set1_ps(s[ch >> shift] * kCodeScale<F>), acc);
      chunkAVX512<F, MB>(row + (ch + 1) * bytes, px + (ch + 1) * chunk, pk,
                         _mm512_set1_ps(s[(ch + 1) >> shift] * kCodeScale<F>),
                         acc2);
    }
    for (; ch < chunks; ++ch)
      step(ch * chunk, _mm512_set1_ps(s[ch >> shift] * kCodeScale<F>), acc);
  } else {
    for (int64_t c = 0, g = 0; c < pk; ++g) {
      __m512 scale = _mm512_set1_ps(s[g] * kCodeScale<F>);
      for (int64_t end = std::min(pk, c + w.group); c < end; c += chunk)
        step(c, scale, acc);
    }
  }
#undef step
  for (int i = 0; i < MB; ++i)
    y[i * ldy + r] += _mm512_reduce_add_ps(_mm512_add_ps(acc[i], acc2[i])) -
                      correction512(w, r, t + i * w.groups, f32Bias(F));
}

//===----------------------------------------------------------------------===//
// AVX-512 VNNI, int8 activations: each row of x quantized per block of 32
// (scale absmax / 127), codes made unsigned (XOR 8 or 0x80; the zero point
// moves with them) and dotted with VPDPBUSD. 4-bit chunks are 128 codes:
// lane l of the low nibbles holds codes 8l, 8l+2, 8l+4, 8l+6, of the high
// ones 8l+1 … 8l+7, so lane l stays in block l/4 and the activations are
// permuted to match; 8-bit chunks are 64 codes in order.
//===----------------------------------------------------------------------===//

#define QOPT_VNNI                                                              \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

/// Quantized activations: per row `pk` int8 (zero-padded, permuted for
/// 4-bit), per chunk 16 lane scales (each lane's block scale) and 16 lane
/// starts (-offset * the sum of the lane's codes: the symmetric formats'
/// offset, which makes codes unsigned, subtracted inside the integer dot
/// product), per group T_g = sum over its blocks of scale * sum of the
/// block's codes (for zero points).
struct QuantizedX {
  std::vector<int8_t> q;
  std::vector<float> laneScale, t;
  std::vector<int32_t> laneStart;
  int64_t pk = 0, chunks = 0;
  int64_t lanes = 16; // per chunk: 16 (AVX-512) or 8 (AVX-VNNI)
};

/// tokenBits: 0 for int8 per block of 32, else the bits of per-token codes
/// (one step for the row: every lane's scale).
QOPT_VNNI void prepareInt8(const Weights &w, const float *x, int64_t ldx,
                           int64_t m, int tokenBits, QuantizedX &out) {
  const bool four = w.fourBit();
  const int64_t chunk = four ? 128 : 64;
  out.chunks = (w.k + chunk - 1) / chunk;
  out.pk = out.chunks * chunk;
  out.lanes = 16;
  out.q.assign(size_t(m * out.pk), 0);
  out.laneScale.assign(size_t(m * out.chunks * 16), 0.0f);
  out.laneStart.assign(size_t(m * out.chunks * 16), 0);
  out.t.assign(size_t(m * w.groups), 0.0f);
  const int64_t blocks = (w.k + 31) / 32;
  // Within each 128-bit lane: the even bytes, then the odd ones.
  const __m256i evenOdd =
      _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0,
                       2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  for (int64_t i = 0; i < m; ++i) {
    const float *xr = x + i * ldx;
    int8_t *q = out.q.data() + i * out.pk;
    float *lanes = out.laneScale.data() + i * out.chunks * 16;
    float step = tokenBits ? qopt_cpu::tokenStep(xr, w.k, tokenBits) : 0.0f;
    for (int64_t bl = 0; bl < blocks; ++bl) {
      int64_t c0 = bl * 32, n = std::min<int64_t>(32, w.k - c0);
      qopt_cpu::Int8Block blk =
          tokenBits ? qopt_cpu::quantizeBlockAt(xr + c0, n, step, tokenBits)
                    : qopt_cpu::quantizeBlock(xr + c0, n);
      float scale = blk.scale;
      int32_t sum = blk.sum;
      __m256i bytes = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm512_cvtepi32_epi8(blk.lo)),
          _mm512_cvtepi32_epi8(blk.hi), 1);
      if (four) {
        // Codes 8l, 8l+2, … in the chunk's first 64 bytes, the odd ones in
        // the next 64: this block's 16 of each at 16 * (its place).
        __m256i split =
            _mm256_permute4x64_epi64(_mm256_shuffle_epi8(bytes, evenOdd), 0xD8);
        int64_t base = bl / 4 * 128 + bl % 4 * 16;
        _mm_storeu_si128(reinterpret_cast<__m128i *>(q + base),
                         _mm256_castsi256_si128(split));
        _mm_storeu_si128(reinterpret_cast<__m128i *>(q + base + 64),
                         _mm256_extracti128_si256(split, 1));
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(q + c0), bytes);
      }
      // Lanes of this block: 4 (4-bit chunks of 128) or 8 (8-bit, 64).
      int64_t per = four ? 4 : 8;
      int64_t perChunk = 16 / per;
      for (int64_t l = 0; l < per; ++l)
        lanes[(bl / perChunk) * 16 + (bl % perChunk) * per + l] = scale;
      out.t[i * w.groups + c0 / w.group] += scale * float(sum);
    }
    if (int32_t offset = qopt_cpu::unsignedOffset(w.format)) {
      const __m512i ones = _mm512_set1_epi8(1);
      const __m512i neg = _mm512_set1_epi32(-offset);
      int32_t *start = out.laneStart.data() + i * out.chunks * 16;
      for (int64_t ch = 0; ch < out.chunks; ++ch) {
        const int8_t *qc = q + ch * chunk;
        __m512i lane = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
                                           _mm512_loadu_si512(qc));
        if (four)
          lane = _mm512_dpbusd_epi32(lane, ones, _mm512_loadu_si512(qc + 64));
        _mm512_storeu_si512(start + ch * 16, _mm512_mullo_epi32(lane, neg));
      }
    }
  }
}

/// Rows of the quantized activations, from one row on.
struct XRows {
  const int8_t *q;
  const float *lanes, *t;
  const int32_t *start;
  int64_t pk, chunks;
};

/// The two 256-bit halves of v added.
QOPT_VNNI inline __m256 halves512(__m512 v) {
  return _mm256_add_ps(
      _mm512_castps512_ps256(v),
      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/// The sums of the 16 lanes of a, b, c and d, in that order.
QOPT_VNNI inline __m128 hsum4x512(__m512 a, __m512 b, __m512 c, __m512 d) {
  // hadd pairs lanes within each 128-bit half: [a b a b | a b a b] sums.
  __m256 ab = _mm256_hadd_ps(halves512(a), halves512(b));
  __m256 cd = _mm256_hadd_ps(halves512(c), halves512(d));
  __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd),
                    _mm256_extractf128_ps(abcd, 1));
}

/// Weight scales of the 16 lanes of the chunk at code c (lanes cover
/// 16 / lanesPerBlock blocks of 32 codes).
template <int64_t CodesPerLane>
QOPT_VNNI inline __m512 laneScalesVNNI(const Weights &w, const float *s,
                                       int64_t c) {
  int64_t g0 = c / w.group;
  int64_t span = 16 * CodesPerLane; // codes of the chunk
  if (w.group % span == 0 || w.group >= w.k)
    return _mm512_set1_ps(s[g0]);
  // group is 32 or 64 (the dispatcher's condition): lane l in group
  // g0 + l * CodesPerLane / group.
  int64_t per = w.group / CodesPerLane; // lanes per group
  int64_t n = std::min<int64_t>(16 / per, w.groups - g0);
  __m128 v = _mm_maskz_loadu_ps(__mmask8((1u << n) - 1), s + g0);
  __m512i idx =
      per == 4
          ? _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0)
      : per == 8
          ? _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
          : _mm512_setzero_si512();
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

/// One chunk of NB weight rows (`bytes`, 64 each: 128 4-bit or 64 8-bit
/// codes) dotted with each activation row's chunk `ch`, scaled by the
/// lanes' weight scales `ws` and block scales, added to acc. The
/// activations are loaded once for the NB rows.
template <Format F, int NB, int MB>
QOPT_VNNI inline void chunkVNNI(const __m512i *bytes, const __m512 *ws,
                                const XRows &x, int64_t ch, __m512 (*acc)[MB]) {
  constexpr bool four = isFourBit(F);
  constexpr int64_t chunk = four ? 128 : 64;
  __m512i lo[NB], hi[NB];
  for (int nb = 0; nb < NB; ++nb) {
    __m512i v = bytes[nb];
    if constexpr (F == kInt4 || F == kInt8)
      v = _mm512_xor_si512(v, _mm512_set1_epi8(char(F == kInt4 ? 0x88 : 0x80)));
    lo[nb] = hi[nb] = v;
    if constexpr (four) {
      const __m512i low = _mm512_set1_epi8(15);
      lo[nb] = _mm512_and_si512(v, low);
      hi[nb] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
    }
  }
  for (int i = 0; i < MB; ++i) {
    const int8_t *q = x.q + i * x.pk + ch * chunk;
    __m512i qlo = _mm512_loadu_si512(q);
    __m512i qhi = four ? _mm512_loadu_si512(q + 64) : qlo;
    __m512 xs = _mm512_loadu_ps(x.lanes + (i * x.chunks + ch) * 16);
    __m512i start = F == kInt4 || F == kInt8
                        ? _mm512_loadu_si512(x.start + (i * x.chunks + ch) * 16)
                        : _mm512_setzero_si512();
    for (int nb = 0; nb < NB; ++nb) {
      __m512i d = _mm512_dpbusd_epi32(start, lo[nb], qlo);
      if constexpr (four)
        d = _mm512_dpbusd_epi32(d, hi[nb], qhi);
      acc[nb][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d),
                                   _mm512_mul_ps(ws[nb], xs), acc[nb][i]);
    }
  }
}

/// How the lanes of a VNNI chunk find their weight scales: one scale for
/// whole chunks (kRun), four groups of 32 per chunk (4-bit, group 32), two
/// groups per chunk (4-bit group 64, 8-bit group 32).
enum ScaleKind { kRun = 0, kFour = 1, kTwo = 2 };

/// Rows r .. r + NB - 1 of the product for MB activation rows.
template <Format F, int NB, int MB, int Kind>
QOPT_VNNI void rowVNNI(const Weights &w, int64_t r, const XRows &x, float *y,
                       int64_t ldy) {
  constexpr bool four = isFourBit(F);
  constexpr int64_t chunk = four ? 128 : 64;
  // Prefetch the rows read at least kPrefetchBytes later, at the same
  // offset (short rows: one call's rows are read in a few hundred cycles,
  // less than the time to bring them from L3).
  const int64_t ahead =
      w.dataRow > 0
          ? std::max<int64_t>(std::max(NB, 2),
                              (kPrefetchBytes + w.dataRow - 1) / w.dataRow) *
                w.dataRow
          : 0;
  const uint8_t *row[NB];
  const float *s[NB];
  for (int nb = 0; nb < NB; ++nb) {
    row[nb] = w.data + (r + nb) * w.dataRow;
    s[nb] = w.scales + (r + nb) * w.scaleRow;
  }
  __m512 acc[NB][MB];
  for (int nb = 0; nb < NB; ++nb)
    for (int i = 0; i < MB; ++i)
      acc[nb][i] = _mm512_setzero_ps();
  __m512i bytes[NB];
  __m512 ws[NB];
  // Whole chunks: no bounds to check.
  int64_t full = w.k / chunk;
  if constexpr (Kind == kRun) {
    int64_t per = w.group >= w.k ? full : w.group / chunk; // chunks a scale
    for (int64_t ch = 0, g = 0; ch < full; ++g) {
      for (int nb = 0; nb < NB; ++nb)
        ws[nb] = _mm512_set1_ps(s[nb][g]);
      for (int64_t end = std::min(full, ch + per); ch < end; ++ch) {
        for (int nb = 0; nb < NB; ++nb) {
          _mm_prefetch(
              reinterpret_cast<const char *>(row[nb] + ahead + ch * 64),
              _MM_HINT_T0);
          bytes[nb] = _mm512_loadu_si512(row[nb] + ch * 64);
        }
        chunkVNNI<F, NB, MB>(bytes, ws, x, ch, acc);
      }
    }
  } else {
    const __m512i idx =
        Kind == kFour
            ? _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0)
            : _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t ch = 0; ch < full; ++ch) {
      for (int nb = 0; nb < NB; ++nb) {
        __m128 v = Kind == kFour
                       ? _mm_loadu_ps(s[nb] + 4 * ch)
                       : _mm_castpd_ps(_mm_load_sd(
                             reinterpret_cast<const double *>(s[nb] + 2 * ch)));
        ws[nb] = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
        _mm_prefetch(reinterpret_cast<const char *>(row[nb] + ahead + ch * 64),
                     _MM_HINT_T0);
        bytes[nb] = _mm512_loadu_si512(row[nb] + ch * 64);
      }
      chunkVNNI<F, NB, MB>(bytes, ws, x, ch, acc);
    }
  }
  // The last, partial chunk (zero activations past K).
  if (full < x.chunks) {
    alignas(64) uint8_t tail[NB][64];
    int64_t c = full * chunk;
    for (int nb = 0; nb < NB; ++nb) {
      bytes[nb] =
          _mm512_loadu_si512(chunkBytes(w, row[nb], c, chunk, tail[nb]));
      ws[nb] = laneScalesVNNI<four ? 8 : 4>(w, s[nb], c);
    }
    chunkVNNI<F, NB, MB>(bytes, ws, x, full, acc);
  }
  // The offset that made codes unsigned went into the integer sums (the
  // lane starts); zero points remain.
  for (int i = 0; i < MB; ++i) {
    if constexpr (NB == 4) {
      __m128 sums = hsum4x512(acc[0][i], acc[1][i], acc[2][i], acc[3][i]);
      if (w.zp) {
        alignas(16) float c[4];
        for (int nb = 0; nb < 4; ++nb)
          c[nb] = correction512(w, r + nb, x.t + i * w.groups, 0);
        sums = _mm_sub_ps(sums, _mm_load_ps(c));
      }
      float *yr = y + i * ldy + r;
      _mm_storeu_ps(yr, _mm_add_ps(_mm_loadu_ps(yr), sums));
    } else {
      for (int nb = 0; nb < NB; ++nb)
        y[i * ldy + r + nb] += _mm512_reduce_add_ps(acc[nb][i]) -
                               correction512(w, r + nb, x.t + i * w.groups, 0);
    }
  }
}

//===----------------------------------------------------------------------===//
// AVX-VNNI (256-bit VPDPBUSD on CPUs without AVX-512), int8 activations: as
// the AVX-512 VNNI path with 8 lanes. 4-bit chunks are 64 codes (32 bytes:
// lane l of the low nibbles holds codes 8l, 8l+2, 8l+4, 8l+6, of the high
// ones 8l+1 … 8l+7), 8-bit chunks 32 codes in order.
//===----------------------------------------------------------------------===//

#define QOPT_AVXVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

/// prepareInt8 for 8 lanes a chunk, with AVX2.
QOPT_AVXVNNI void prepareInt8AVX2(const Weights &w, const float *x, int64_t ldx,
                                  int64_t m, int tokenBits, QuantizedX &out) {
  const bool four = w.fourBit();
  const int64_t chunk = four ? 64 : 32;
  out.chunks = (w.k + chunk - 1) / chunk;
  out.pk = out.chunks * chunk;
  out.lanes = 8;
  out.q.assign(size_t(m * out.pk), 0);
  out.laneScale.assign(size_t(m * out.chunks * 8), 0.0f);
  out.laneStart.assign(size_t(m * out.chunks * 8), 0);
  out.t.assign(size_t(m * w.groups), 0.0f);
  const int64_t blocks = (w.k + 31) / 32;
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  // Per token: codes in [-2^(bits-1), 2^(bits-1) - 1], one step a row.
  const int32_t qmax = tokenBits ? (1 << (tokenBits - 1)) - 1 : 127;
  const __m256i lo = _mm256_set1_epi32(tokenBits ? -qmax - 1 : -127),
                hi = _mm256_set1_epi32(qmax);
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  alignas(32) int32_t v[32];
  for (int64_t i = 0; i < m; ++i) {
    const float *xr = x + i * ldx;
    int8_t *q = out.q.data() + i * out.pk;
    float *lanes = out.laneScale.data() + i * out.chunks * 8;
    float step = tokenBits ? qopt_cpu::tokenStep(xr, w.k, tokenBits) : 0.0f;
    for (int64_t bl = 0; bl < blocks; ++bl) {
      int64_t c0 = bl * 32, n = std::min<int64_t>(32, w.k - c0);
      __m256 xs[4];
      __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
      for (int j = 0; j < 4; ++j) {
        __m256i valid =
            _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n - 8 * j)), iota);
        xs[j] = _mm256_maskload_ps(xr + c0 + 8 * j, valid);
        amax = _mm256_max_ps(amax, _mm256_and_ps(xs[j], absMask));
        // x - x is NaN for a NaN or an infinity.
        bad =
            _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(xs[j], xs[j]),
                                            _mm256_setzero_ps(), _CMP_NEQ_UQ));
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax),
                             _mm256_extractf128_ps(amax, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      float big = _mm_cvtss_f32(m4);
      bool finite = _mm256_movemask_ps(bad) == 0;
      float scale = finite ? big / 127.0f : NAN;
      __m256 inv = _mm256_set1_ps(
          finite && big >= qopt_cpu::kTinyBlock ? 127.0f / big : 0.0f);
      if (tokenBits) {
        // x / step (a division, as the quantizer computes it); zeros for a
        // NaN step.
        scale = step;
        for (int j = 0; j < 4; ++j)
          xs[j] = std::isnan(step) ? _mm256_setzero_ps()
                                   : _mm256_div_ps(xs[j], _mm256_set1_ps(step));
        inv = _mm256_set1_ps(1.0f);
      }
      __m256i sum = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        // cvtps rounds to nearest even, as nearbyint does.
        __m256i c = _mm256_min_epi32(
            _mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(xs[j], inv)), lo),
            hi);
        sum = _mm256_add_epi32(sum, c);
        _mm256_store_si256(reinterpret_cast<__m256i *>(v + 8 * j), c);
      }
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum),
                                 _mm256_extracti128_si256(sum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
      int32_t total = _mm_cvtsi128_si32(s4);
      // 4-bit: even codes in the chunk's first 32 bytes, odd in the next.
      int64_t base = four ? bl / 2 * 64 + bl % 2 * 16 : c0;
      for (int t = 0; t < 32; ++t)
        q[four ? base + (t & 1) * 32 + t / 2 : base + t] = int8_t(v[t]);
      int64_t per = four ? 4 : 8; // lanes of a block
      int64_t perChunk = 8 / per;
      for (int64_t l = 0; l < per; ++l)
        lanes[(bl / perChunk) * 8 + (bl % perChunk) * per + l] = scale;
      out.t[i * w.groups + c0 / w.group] += scale * float(total);
    }
    if (int32_t offset = qopt_cpu::unsignedOffset(w.format)) {
      const __m256i ones = _mm256_set1_epi8(1);
      const __m256i neg = _mm256_set1_epi32(-offset);
      int32_t *start = out.laneStart.data() + i * out.chunks * 8;
      for (int64_t ch = 0; ch < out.chunks; ++ch) {
        const int8_t *qc = q + ch * chunk;
        __m256i lane = _mm256_dpbusd_avx_epi32(
            _mm256_setzero_si256(), ones,
            _mm256_loadu_si256(reinterpret_cast<const __m256i *>(qc)));
        if (four)
          lane = _mm256_dpbusd_avx_epi32(
              lane, ones,
              _mm256_loadu_si256(reinterpret_cast<const __m256i *>(qc + 32)));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(start + ch * 8),
                            _mm256_mullo_epi32(lane, neg));
      }
    }
  }
}

/// chunkVNNI with 8 lanes: NB weight rows' chunk (32 bytes each).
template <Format F, int NB, int MB>
QOPT_AVXVNNI inline void chunkVNNI256(const __m256i *bytes, const __m256 *ws,
                                      const XRows &x, int64_t ch,
                                      __m256 (*acc)[MB]) {
  constexpr bool four = isFourBit(F);
  constexpr int64_t chunk = four ? 64 : 32;
  __m256i lo[NB], hi[NB];
  for (int nb = 0; nb < NB; ++nb) {
    __m256i v = bytes[nb];
    if constexpr (F == kInt4 || F == kInt8)
      v = _mm256_xor_si256(v, _mm256_set1_epi8(char(F == kInt4 ? 0x88 : 0x80)));
    lo[nb] = hi[nb] = v;
    if constexpr (four) {
      const __m256i low = _mm256_set1_epi8(15);
      lo[nb] = _mm256_and_si256(v, low);
      hi[nb] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    }
  }
  for (int i = 0; i < MB; ++i) {
    const int8_t *q = x.q + i * x.pk + ch * chunk;
    __m256i qlo = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(q));
    __m256i qhi =
        four ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(q + 32))
             : qlo;
    __m256 xs = _mm256_loadu_ps(x.lanes + (i * x.chunks + ch) * 8);
    __m256i start = F == kInt4 || F == kInt8
                        ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(
                              x.start + (i * x.chunks + ch) * 8))
                        : _mm256_setzero_si256();
    for (int nb = 0; nb < NB; ++nb) {
      __m256i d = _mm256_dpbusd_avx_epi32(start, lo[nb], qlo);
      if constexpr (four)
        d = _mm256_dpbusd_avx_epi32(d, hi[nb], qhi);
      acc[nb][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d),
                                   _mm256_mul_ps(ws[nb], xs), acc[nb][i]);
    }
  }
}

/// Rows r .. r + NB - 1 of the product for MB activation rows. Kind: kRun
/// (one scale for runs of whole chunks) or kTwo (4-bit groups of 32: lanes
/// 0-3 and 4-7 in consecutive groups).
template <Format F, int NB, int MB, int Kind>
QOPT_AVXVNNI void rowVNNI256(const Weights &w, int64_t r, const XRows &x,
                             float *y, int64_t ldy) {
  constexpr bool four = isFourBit(F);
  constexpr int64_t chunk = four ? 64 : 32;
  const uint8_t *row[NB];
  const float *s[NB];
  for (int nb = 0; nb < NB; ++nb) {
    row[nb] = w.data + (r + nb) * w.dataRow;
    s[nb] = w.scales + (r + nb) * w.scaleRow;
  }
  __m256 acc[NB][MB];
  for (int nb = 0; nb < NB; ++nb)
    for (int i = 0; i < MB; ++i)
      acc[nb][i] = _mm256_setzero_ps();
  __m256i bytes[NB];
  __m256 ws[NB];
  int64_t full = w.k / chunk;
  if constexpr (Kind == kRun) {
    int64_t per = w.group >= w.k ? full : w.group / chunk; // chunks a scale
    for (int64_t ch = 0, g = 0; ch < full; ++g) {
      for (int nb = 0; nb < NB; ++nb)
        ws[nb] = _mm256_set1_ps(s[nb][g]);
      for (int64_t end = std::min(full, ch + per); ch < end; ++ch) {
        for (int nb = 0; nb < NB; ++nb) {
          prefetchAhead(w, row[nb], ch * 32);
          bytes[nb] = _mm256_loadu_si256(
              reinterpret_cast<const __m256i *>(row[nb] + ch * 32));
        }
        chunkVNNI256<F, NB, MB>(bytes, ws, x, ch, acc);
      }
    }
  } else {
    for (int64_t ch = 0; ch < full; ++ch) {
      for (int nb = 0; nb < NB; ++nb) {
        ws[nb] = _mm256_setr_m128(_mm_set1_ps(s[nb][2 * ch]),
                                  _mm_set1_ps(s[nb][2 * ch + 1]));
        prefetchAhead(w, row[nb], ch * 32);
        bytes[nb] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i *>(row[nb] + ch * 32));
      }
      chunkVNNI256<F, NB, MB>(bytes, ws, x, ch, acc);
    }
  }
  // The last, partial chunk (zero activations past K).
  if (full < x.chunks) {
    alignas(32) uint8_t tail[NB][64];
    int64_t c = full * chunk, g = c / w.group;
    for (int nb = 0; nb < NB; ++nb) {
      bytes[nb] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(
          chunkBytes(w, row[nb], c, chunk, tail[nb])));
      ws[nb] = Kind == kRun
                   ? _mm256_set1_ps(s[nb][g])
                   : _mm256_setr_m128(
                         _mm_set1_ps(s[nb][g]),
                         _mm_set1_ps(g + 1 < w.groups ? s[nb][g + 1] : 0.0f));
    }
    chunkVNNI256<F, NB, MB>(bytes, ws, x, full, acc);
  }
  for (int nb = 0; nb < NB; ++nb)
    for (int i = 0; i < MB; ++i)
      y[i * ldy + r + nb] +=
          hsum256(acc[nb][i]) - correction(w, r + nb, x.t + i * w.groups, 0);
}

//===----------------------------------------------------------------------===//
// Dispatch.
//===----------------------------------------------------------------------===//

/// Whether the vector paths' chunks of `chunk` codes each lie in one group.
bool groupsFit(const Weights &w, int64_t chunk) {
  return w.group % chunk == 0 || w.group >= w.k;
}

/// The path used for `w` (the best one the CPU has, the cap allows and the
/// weight's group size fits).
int pathFor(const Weights &w, bool int8Activations) {
  int path = currentPath().load();
  // VNNI lanes hold 8 (4-bit) or 4 (8-bit) codes: 16 lanes span 128 or 64
  // codes, and a chunk's lanes may span groups of 32 or 64 only.
  int64_t span = w.fourBit() ? 128 : 64;
  if (path == kAVX512VNNI &&
      (!int8Activations || w.format == kNF4 || w.isFloat() ||
       !(w.group == 32 || w.group == 64 || groupsFit(w, span))))
    path = kAVX512;
  // 256-bit: 8 lanes span 64 or 32 codes (4-bit groups of 32: two a chunk).
  if (path == kAVX2VNNI &&
      (!int8Activations || w.format == kNF4 || w.isFloat() ||
       !((w.fourBit() && w.group == 32) || groupsFit(w, span / 2))))
    path = kAVX2;
  if (path == kAVX512 && !groupsFit(w, 32))
    path = kAVX2;
  if (path == kAVX2 && !groupsFit(w, 16))
    path = kScalar;
  return path;
}

/// The activations as the paths read them: f32 rows (pk floats each) with
/// their group sums, or the int8 rows.
struct Prepared {
  std::vector<float> px, t;
  int64_t pk = 0;
  QuantizedX qx;
  int kind = kRun; // the VNNI kernel's ScaleKind
};

template <Format F, int NB, int MB>
void runRow(int path, const Weights &w, int64_t r, const Prepared &p, int64_t i,
            float *y, int64_t ldy) {
  if (path == kAVX512VNNI || path == kAVX2VNNI) {
    if constexpr (F != kNF4 && F != kFP8E4M3 && F != kFP8E5M2) {
      const QuantizedX &q = p.qx;
      int64_t lanes = i * q.chunks * q.lanes;
      XRows rows{q.q.data() + i * q.pk,
                 q.laneScale.data() + lanes,
                 q.t.data() + i * w.groups,
                 q.laneStart.data() + lanes,
                 q.pk,
                 q.chunks};
      if (path == kAVX2VNNI) {
        if (p.kind == kRun)
          rowVNNI256<F, NB, MB, kRun>(w, r, rows, y, ldy);
        else
          rowVNNI256<F, NB, MB, kTwo>(w, r, rows, y, ldy);
      } else if (p.kind == kRun) {
        rowVNNI<F, NB, MB, kRun>(w, r, rows, y, ldy);
      } else if (p.kind == kFour) {
        rowVNNI<F, NB, MB, kFour>(w, r, rows, y, ldy);
      } else {
        rowVNNI<F, NB, MB, kTwo>(w, r, rows, y, ldy);
      }
    }
    return;
  }
  const float *px = p.px.data() + i * p.pk, *t = p.t.data() + i * w.groups;
  for (int nb = 0; nb < NB; ++nb)
    if (path == kAVX512)
      rowAVX512<F, MB>(w, r + nb, px, p.pk, t, y, ldy);
    else
      rowAVX2<F, MB>(w, r + nb, px, p.pk, t, y, ldy);
}

/// Weight rows r .. r + NB - 1 for every row of x, four at a time.
template <Format F, int NB>
void rowsOf(int path, const Weights &w, int64_t r, int64_t m, const Prepared &p,
            float *y, int64_t ldy) {
  for (int64_t i = 0; i < m; i += 4) {
    float *yi = y + i * ldy;
    switch (std::min<int64_t>(4, m - i)) {
    case 1:
      runRow<F, NB, 1>(path, w, r, p, i, yi, ldy);
      break;
    case 2:
      runRow<F, NB, 2>(path, w, r, p, i, yi, ldy);
      break;
    case 3:
      runRow<F, NB, 3>(path, w, r, p, i, yi, ldy);
      break;
    default:
      runRow<F, NB, 4>(path, w, r, p, i, yi, ldy);
    }
  }
}

/// Rows [n0, n1) of the product for every row of x.
template <Format F>
void rowsVector(int path, const Weights &w, int64_t m, const Prepared &p,
                float *y, int64_t ldy, int64_t n0, int64_t n1) {
  int64_t r = n0;
  // With several rows of x, the VNNI kernel takes weight rows in pairs
  // (the activations' loads shared: 4096 x 4096 at M = 128, 38 ms against
  // 48); at M = 1 pairs were slower (0.96 ms against 0.55: memory-bound,
  // two streams).
  // One row of x and short rows (up to 24 chunks): four weight rows a
  // call, reduced together. With K = 1024 (8 chunks) the reduction and the
  // call per row cost a third of the time (the Llama-shaped model's step:
  // 3.4 -> 3.0 ms). Long rows stream from memory faster one at a time
  // (4096 x 4096: 0.72 ms against 0.80).
  if (path == kAVX512VNNI && m == 1 && w.k <= 24 * (w.fourBit() ? 128 : 64))
    for (; r + 3 < n1; r += 4)
      runRow<F, 4, 1>(path, w, r, p, 0, y, ldy);
  if ((path == kAVX512VNNI || path == kAVX2VNNI) && m > 1)
    for (; r + 1 < n1; r += 2)
      rowsOf<F, 2>(path, w, r, m, p, y, ldy);
  for (; r < n1; ++r)
    rowsOf<F, 1>(path, w, r, m, p, y, ldy);
}

/// y[0..m) += x · Wᵀ for dense rows (x: m x k with row stride ldx; y: m x n
/// with row stride ldy), rows of W split among the threads.
/// tokenBits (VNNI paths): activations quantized per token to that many
/// bits instead of per block of 32.
void product(const Weights &w, const float *x, int64_t ldx, int64_t m, float *y,
             int64_t ldy, bool int8Activations, int tokenBits = 0) {
  int path = pathFor(w, int8Activations);
  thread_local Prepared p;
  if (path == kAVX512VNNI || path == kAVX2VNNI) {
    bool wide = path == kAVX512VNNI;
    (wide ? prepareInt8 : prepareInt8AVX2)(w, x, ldx, m, tokenBits, p.qx);
    int64_t span = p.qx.pk / p.qx.chunks; // codes a chunk
    p.kind = w.group % span == 0 || w.group >= w.k  ? kRun
             : wide && w.fourBit() && w.group == 32 ? kFour
                                                    : kTwo;
  } else if (path != kScalar)
    prepareF32(w, x, ldx, m, path == kAVX512 ? 32 : 16, p.px, p.t, p.pk);
  Pool &pool = Pool::get();
  // Tasks of whole rows, a few per thread (rows cost the same).
  int threads = pool.threads();
  // Multiples of 4 rows: rowsVector's groups of four (summed in another
  // order than single rows) then fall on the same rows for any thread count,
  // so the results do not depend on it.
  int64_t per = std::max<int64_t>(16, (w.n + int64_t(threads) * 4 - 1) /
                                          (int64_t(threads) * 4));
  per = (per + 3) / 4 * 4;
  int tasks = int((w.n + per - 1) / per);
  const Prepared &prepared = p;
  pool.run(tasks, [&](int task) {
    int64_t n0 = task * per, n1 = std::min(w.n, n0 + per);
    switch (path == kScalar ? -1 : int(w.format)) {
    case -1:
      rowsScalar(w, x, ldx, m, y, ldy, n0, n1);
      break;
    case kInt4:
      rowsVector<kInt4>(path, w, m, prepared, y, ldy, n0, n1);
      break;
    case kUInt4:
      rowsVector<kUInt4>(path, w, m, prepared, y, ldy, n0, n1);
      break;
    case kInt8:
      rowsVector<kInt8>(path, w, m, prepared, y, ldy, n0, n1);
      break;
    case kUInt8:
      rowsVector<kUInt8>(path, w, m, prepared, y, ldy, n0, n1);
      break;
    case kNF4:
      rowsVector<kNF4>(path, w, m, prepared, y, ldy, n0, n1);
      break;
    case kFP8E4M3:
      rowsVector<kFP8E4M3>(path, w, m, prepared, y, ldy, n0, n1);
      break;
    case kFP8E5M2:
      rowsVector<kFP8E5M2>(path, w, m, prepared, y, ldy, n0, n1);
      break;
    }
  });
}

//===----------------------------------------------------------------------===//
// Per-token integer activations (W8A8, W4A4) on CPUs without VNNI (the
// VNNI paths take them through prepareInt8 / qgemmInt8): each row of x
// quantized to q = round-half-even(x / s), s = max|x| / qmax (1 where that
// is 0); each group's dot product of q with the weight's codes (minus the
// zero point) summed exactly in int32, then scaled by s and the group's
// scale.
//===----------------------------------------------------------------------===//

QOPT_AVX2 int32_t dotInt16AVX2(const int16_t *a, const int16_t *b, int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    acc = _mm256_add_epi32(
        acc, _mm256_madd_epi16(
                 _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + i)),
                 _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b + i))));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc),
                            _mm256_extracti128_si256(acc, 1));
  s = _mm_hadd_epi32(s, s);
  s = _mm_hadd_epi32(s, s);
  int32_t r = _mm_cvtsi128_si32(s);
  for (; i < n; ++i)
    r += int32_t(a[i]) * b[i];
  return r;
}

/// 32 4-bit codes (16 bytes, low nibble first) minus `z` as int16: the
/// nibbles split, interleaved back into order, widened.
QOPT_AVX2 void unpackNibbles32(const uint8_t *d, bool sgn, int32_t z,
                               int16_t *out) {
  __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i *>(d));
  __m128i mask = _mm_set1_epi8(15);
  __m128i lo = _mm_and_si128(bytes, mask);
  __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  __m128i first = _mm_unpacklo_epi8(lo, hi), second = _mm_unpackhi_epi8(lo, hi);
  __m256i a = _mm256_cvtepu8_epi16(first), b = _mm256_cvtepu8_epi16(second);
  // Signed codes: (nibble ^ 8) - 8; then the zero point.
  __m256i shift = _mm256_set1_epi16(int16_t(z + (sgn ? 8 : 0)));
  if (sgn) {
    __m256i eight = _mm256_set1_epi16(8);
    a = _mm256_xor_si256(a, eight);
    b = _mm256_xor_si256(b, eight);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i *>(out),
                      _mm256_sub_epi16(a, shift));
  _mm256_storeu_si256(reinterpret_cast<__m256i *>(out + 16),
                      _mm256_sub_epi16(b, shift));
}

/// Σ_g scales[g] · Σ_{c in group g} a[c] · b[c] for whole groups of
/// `group` codes (a multiple of 16): the groups' int32 sums scaled in
/// vector lanes, one horizontal sum at the end.
QOPT_AVX2 float groupDotAVX2(const int16_t *a, const int16_t *b,
                             const float *scales, int64_t groups,
                             int64_t group) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const int16_t *ag = a + g * group, *bg = b + g * group;
    __m256i s = _mm256_setzero_si256();
    for (int64_t i = 0; i < group; i += 16)
      s = _mm256_add_epi32(
          s,
          _mm256_madd_epi16(
              _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ag + i)),
              _mm256_loadu_si256(reinterpret_cast<const __m256i *>(bg + i))));
    acc =
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(scales[g]), acc);
  }
  return hsum256(acc);
}

/// groupDotAVX2 with 512-bit lanes, for groups of a multiple of 32 codes.
QOPT_AVX512 float groupDotAVX512(const int16_t *a, const int16_t *b,
                                 const float *scales, int64_t groups,
                                 int64_t group) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const int16_t *ag = a + g * group, *bg = b + g * group;
    __m512i s = _mm512_setzero_si512();
    for (int64_t i = 0; i < group; i += 32)
      s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_loadu_si512(ag + i),
                                                _mm512_loadu_si512(bg + i)));
    acc =
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(scales[g]), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

/// Σ a[i] · b[i], in int32 chunks of 32768 (no overflow: |a · b| < 2^15 ·
/// 2^9) summed in int64.
int64_t dotInt16(const int16_t *a, const int16_t *b, int64_t n, bool avx2) {
  int64_t r = 0;
  for (int64_t c = 0; c < n; c += 32768) {
    int64_t len = std::min<int64_t>(32768, n - c);
    if (avx2) {
      r += dotInt16AVX2(a + c, b + c, len);
      continue;
    }
    int32_t part = 0;
    for (int64_t i = 0; i < len; ++i)
      part += int32_t(a[c + i]) * b[c + i];
    r += part;
  }
  return r;
}

/// y[0..m) += quant(x) · Wᵀ for integer W (int4 / uint4 / int8 / uint8).
void productPerToken(const Weights &w, const float *x, int64_t ldx, int64_t m,
                     float *y, int64_t ldy, int bits) {
  int32_t qmax = (1 << (bits - 1)) - 1, qmin = -qmax - 1;
  std::vector<int16_t> q(size_t(m * w.k));
  std::vector<float> sx(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    const float *xr = x + i * ldx;
    float s = qopt_cpu::tokenStep(xr, w.k, bits);
    sx[i] = s;
    // A NaN or infinity makes the quantized row NaN, as the quantizer's
    // loop computes it: the row's outputs are NaN.
    if (std::isnan(s)) {
      std::fill(q.begin() + i * w.k, q.begin() + (i + 1) * w.k, 0);
      continue;
    }
    for (int64_t c = 0; c < w.k; ++c) {
      float v = std::nearbyint(xr[c] / s);
      v = std::fmin(std::fmax(v, float(qmin)), float(qmax));
      q[size_t(i * w.k + c)] = int16_t(v);
    }
  }
  bool avx2 = currentPath().load() >= kAVX2;
  // (Groups up to 32768 codes: their int32 sums cannot overflow.)
  bool vectorGroups =
      avx2 && w.group % 16 == 0 && w.k % w.group == 0 && w.group <= 32768;
  bool wideGroups =
      vectorGroups && currentPath().load() >= kAVX512 && w.group % 32 == 0;
  bool four = w.fourBit(), sgn = w.isSigned();
  Pool &pool = Pool::get();
  int threads = pool.threads();
  int64_t per = std::max<int64_t>(4, (w.n + int64_t(threads) * 4 - 1) /
                                         (int64_t(threads) * 4));
  int tasks = int((w.n + per - 1) / per);
  pool.run(tasks, [&](int task) {
    int64_t n0 = task * per, n1 = std::min(w.n, n0 + per);
    std::vector<int16_t> row(size_t(w.k));
    for (int64_t r = n0; r < n1; ++r) {
      // The row's codes minus their zero points, once for every token.
      const uint8_t *d = w.data + r * w.dataRow;
      for (int64_t g = 0; g < w.groups; ++g) {
        int32_t z = w.zeroPoint(r, g);
        int64_t c1 = std::min(w.k, (g + 1) * w.group);
        if (four && vectorGroups && w.group % 32 == 0)
          for (int64_t c = g * w.group; c < c1; c += 32)
            unpackNibbles32(d + c / 2, sgn, z, row.data() + c);
        else if (four)
          for (int64_t c = g * w.group; c < c1; ++c) {
            int32_t nib = (d[c >> 1] >> ((c & 1) << 2)) & 15;
            row[size_t(c)] = int16_t((sgn ? (nib ^ 8) - 8 : nib) - z);
          }
        else
          for (int64_t c = g * w.group; c < c1; ++c)
            row[size_t(c)] =
                int16_t((sgn ? int32_t(int8_t(d[c])) : int32_t(d[c])) - z);
      }
      const float *scales = w.scales + r * w.scaleRow;
      for (int64_t i = 0; i < m; ++i) {
        const int16_t *qi = q.data() + i * w.k;
        float sum = 0.0f;
        if (wideGroups) {
          sum = groupDotAVX512(qi, row.data(), scales, w.groups, w.group);
        } else if (vectorGroups) {
          sum = groupDotAVX2(qi, row.data(), scales, w.groups, w.group);
        } else {
          for (int64_t g = 0; g < w.groups; ++g) {
            int64_t c0 = g * w.group, c1 = std::min(w.k, c0 + w.group);
            sum += float(dotInt16(qi + c0, row.data() + c0, c1 - c0, avx2)) *
                   scales[g];
          }
        }
        y[i * ldy + r] += sum * sx[size_t(i)];
      }
    }
  });
}

/// Rows [n0, n1) of W as f32, row-major, into `out` (k floats per row).
void dequantizeRows(const Weights &w, int64_t n0, int64_t n1, float *out) {
  // Codes of a row first (a table lookup per byte for 4-bit), then each
  // group's (code - zero point) * scale: loops the compiler vectorizes.
  thread_local std::vector<float> codes;
  codes.resize(size_t(w.k + 1));
  float table[256][2], fp8[256];
  if (w.isFloat())
    for (int b = 0; b < 256; ++b)
      fp8[b] = fp8Value(w.format, uint8_t(b));
  if (w.fourBit())
    for (int b = 0; b < 256; ++b)
      for (int h = 0; h < 2; ++h) {
        int nib = (b >> (4 * h)) & 15;
        table[b][h] = w.format == kNF4    ? kNF4Table[nib]
                      : w.format == kInt4 ? float((nib ^ 8) - 8)
                                          : float(nib);
      }
  for (int64_t r = n0; r < n1; ++r) {
    const uint8_t *row = w.data + r * w.dataRow;
    float *c = codes.data();
    if (w.fourBit()) {
      for (int64_t i = 0; i < (w.k + 1) / 2; ++i) {
        c[2 * i] = table[row[i]][0];
        c[2 * i + 1] = table[row[i]][1];
      }
    } else if (w.isFloat()) {
      for (int64_t i = 0; i < w.k; ++i)
        c[i] = fp8[row[i]];
    } else if (w.format == kInt8) {
      for (int64_t i = 0; i < w.k; ++i)
        c[i] = float(int8_t(row[i]));
    } else {
      for (int64_t i = 0; i < w.k; ++i)
        c[i] = float(row[i]);
    }
    float *o = out + (r - n0) * w.k;
    const float *s = w.scales + r * w.scaleRow;
    for (int64_t g = 0; g < w.groups; ++g) {
      int64_t c0 = g * w.group, c1 = std::min(w.k, c0 + w.group);
      float scale = s[g], zero = float(w.zeroPoint(r, g));
      for (int64_t i = c0; i < c1; ++i)
        o[i] = (c[i] - zero) * scale;
    }
  }
}

/// Many rows of x (prefill): tiles of W dequantized into f32 (in parallel)
/// feed BLAS, which reads x once per tile.
void productBLAS(const Weights &w, const float *x, int64_t ldx, int64_t m,
                 float *y, int64_t ldy) {
  // Tiles of about 2 MiB of f32 weights, whole rows.
  int64_t rows =
      std::max<int64_t>(16, (int64_t(1) << 19) / std::max<int64_t>(1, w.k));
  thread_local std::vector<float> tile;
  tile.resize(size_t(std::min(rows, w.n) * w.k));
  for (int64_t n0 = 0; n0 < w.n; n0 += rows) {
    int64_t n1 = std::min(w.n, n0 + rows);
    int64_t per = std::max<int64_t>(4, (n1 - n0 + 7) / 8);
    int tasks = int((n1 - n0 + per - 1) / per);
    float *base = tile.data();
    Pool::get().run(tasks, [&](int task) {
      int64_t a = n0 + task * per, b = std::min(n1, a + per);
      dequantizeRows(w, a, b, base + (a - n0) * w.k);
    });
    cblas_sgemm(kRowMajorQ, kNoTransQ, kTransQ, int(m), int(n1 - n0), int(w.k),
                1.0f, x, int(ldx), base, int(w.k), 1.0f, y + n0, int(ldy));
  }
}

/// Rows of x from which expanding tiles for BLAS beats the f32 row
/// kernels (measured on a 2-core AVX-512 machine, 4096 x 4096, int4 g32);
/// CPUs without AVX-512 only.
constexpr int64_t kBLASRows = 32;

/// Rows of x from which the GEMMs of QGemm.cpp take over from the row
/// kernels, measured at 4096 x 4096, int4 g32, one thread, on a 2-core
/// AVX-512 Xeon (warm weights). int8 activations: at M = 6 the row kernel
/// is ahead (1.41 against 1.49 ms), at 7 the GEMM (1.68 against 1.81); at
/// 128 the GEMM is 3x faster (10.7 against 32.9 ms). f32 activations (the
/// GEMM dequantizes W, about 3.3 ms here, then runs at the f32 tiles'
/// speed): at 6 the row kernel (3.82 against 4.45), at 7 the GEMM (4.67
/// against 5.56); at 128 the GEMM takes 28.0 ms where tiles expanded for
/// BLAS took 46.8 (the f32 product on the packed fp32 weight: 27.1).
constexpr int64_t kInt8GemmRows = 7;
constexpr int64_t kF32GemmRows = 7;

/// Rows from which both GEMMs run, when set (qopt_kernel_set_qlinear_gemm_rows,
/// for tests and benchmarks); 0: the measured defaults above.
std::atomic<int64_t> &gemmRows() {
  static std::atomic<int64_t> rows{0};
  return rows;
}

enum Large { kRowKernels, kInt8Gemm, kF32Gemm, kBLASTiles };

/// How a product of m rows runs.
Large largePath(const Weights &w, int64_t m, bool int8Activations) {
  int64_t set = gemmRows().load();
  int path = currentPath().load(), chosen = pathFor(w, int8Activations);
  // The GEMM where the row kernels would use int8 activations too (the
  // same numerics at every M).
  if (chosen == kAVX512VNNI && qopt_cpu::qgemmTakes(w) &&
      m >= (set ? set : kInt8GemmRows))
    return kInt8Gemm;
  if (chosen == kAVX512VNNI || chosen == kAVX2VNNI)
    return kRowKernels; // int8 activations: few rows, or no AVX-512
  if (path >= kAVX512 && qopt_cpu::qgemmF32Takes(w))
    return m >= (set ? set : kF32GemmRows) ? kF32Gemm : kRowKernels;
  return m >= kBLASRows ? kBLASTiles : kRowKernels;
}

} // namespace

extern "C" {

/// C[o0, o1, m, n] += sum_k A[o0, o1, m, k] * W[n, k]: A and C given as
/// (aligned pointer, element offset, strides along o0, o1, m and k / n), W
/// as its codes (pointer, offset, row stride in bytes), f32 scales
/// (pointer, offset, row stride; one per `group` codes along K), zero
/// points (pointer 0 when none; offset, row stride). `format`: 0 int4,
/// 1 uint4, 2 int8, 3 uint8, 4 NF4, 5 FP8 E4M3FN, 6 FP8 E5M2 (scale row
/// stride 0: one set for every row); `flags`: 1 zero points, 2 int8
/// activations (AVX-512 VNNI dot products where the CPU has them), 4
/// activations quantized per token to `(flags >> 8) & 0xff` bits and
/// integer products (integer formats; the others ignore it: the caller
/// keeps the quantizer for them).
void qopt_kernel_qlinear(int64_t format, int64_t group, int64_t flags,
                         int64_t o0, int64_t o1, int64_t m, int64_t n,
                         int64_t k, int64_t pa, int64_t oa, int64_t sa0,
                         int64_t sa1, int64_t sam, int64_t sak, int64_t pw,
                         int64_t ow, int64_t sw, int64_t ps, int64_t os,
                         int64_t ss, int64_t pz, int64_t oz, int64_t sz,
                         int64_t pc, int64_t oc, int64_t sc0, int64_t sc1,
                         int64_t scm, int64_t scn) {
  if (m <= 0 || n <= 0 || o0 <= 0 || o1 <= 0)
    return;
  Weights w;
  w.format = Format(format);
  w.data = reinterpret_cast<const uint8_t *>(pw) + ow;
  w.dataRow = sw;
  w.scales = reinterpret_cast<const float *>(ps) + os;
  w.scaleRow = ss;
  w.zp = (flags & kZeroPoints) ? reinterpret_cast<const int8_t *>(pz) + oz
                               : nullptr;
  w.zpRow = sz;
  w.n = n;
  w.k = k;
  w.group = std::max<int64_t>(1, std::min(group, k));
  w.groups = k > 0 ? (k + w.group - 1) / w.group : 0;
  if (k == 0)
    return;
  const float *a = reinterpret_cast<const float *>(pa) + oa;
  float *c = reinterpret_cast<float *>(pc) + oc;
  bool int8 = flags & kInt8Activations;
  // Outer loops that continue the rows of A and C ([batch, seq, k]) fold
  // into M: the weight is read once for all of them.
  auto foldable = [&](int64_t size, int64_t sa, int64_t sc) {
    return size == 1 || (sa == m * sam && sc == m * scm);
  };
  if (foldable(o1, sa1, sc1)) {
    m *= o1;
    o1 = 1;
    if (foldable(o0, sa0, sc0)) {
      m *= o0;
      o0 = 1;
    }
  }
  thread_local std::vector<float> xs, ys;
  for (int64_t i = 0; i < o0; ++i)
    for (int64_t j = 0; j < o1; ++j) {
      const float *ai = a + i * sa0 + j * sa1;
      float *ci = c + i * sc0 + j * sc1;
      // Dense row-major x and y (copies only where the views are not).
      const float *x = ai;
      int64_t ldx = sam;
      if (sak != 1 || (m > 1 && sam < k)) {
        xs.resize(size_t(m * k));
        for (int64_t r = 0; r < m; ++r)
          for (int64_t col = 0; col < k; ++col)
            xs[r * k + col] = ai[r * sam + col * sak];
        x = xs.data();
        ldx = k;
      }
      float *y = ci;
      int64_t ldy = scm;
      bool copyY = scn != 1 || (m > 1 && scm < n);
      if (copyY) {
        ys.resize(size_t(m * n));
        for (int64_t r = 0; r < m; ++r)
          for (int64_t col = 0; col < n; ++col)
            ys[r * n + col] = ci[r * scm + col * scn];
        y = ys.data();
        ldy = n;
      }
      if ((flags & kPerTokenActivations) && !w.isFloat() && w.format != kNF4) {
        int bits = int((flags >> 8) & 0xff);
        // The VNNI row kernels and GEMM read int8 codes with one step per
        // token as they read per-block ones; bits past 8 or other CPUs:
        // the int16 products.
        int vnni = pathFor(w, true);
        if (bits >= 2 && bits <= 8 &&
            (vnni == kAVX512VNNI || vnni == kAVX2VNNI)) {
          if (largePath(w, m, true) == kInt8Gemm)
            qopt_cpu::qgemmInt8(w, x, ldx, m, y, ldy, bits);
          else
            product(w, x, ldx, m, y, ldy, true, bits);
        } else {
          productPerToken(w, x, ldx, m, y, ldy, bits);
        }
      } else {
        switch (largePath(w, m, int8)) {
        case kInt8Gemm:
          qopt_cpu::qgemmInt8(w, x, ldx, m, y, ldy);
          break;
        case kF32Gemm:
          qopt_cpu::qgemmF32(w, x, ldx, m, y, ldy);
          break;
        case kBLASTiles:
          if (n <= INT32_MAX && k <= INT32_MAX && m <= INT32_MAX &&
              ldx <= INT32_MAX && ldy <= INT32_MAX) {
            productBLAS(w, x, ldx, m, y, ldy);
            break;
          }
          [[fallthrough]];
        case kRowKernels:
          product(w, x, ldx, m, y, ldy, int8);
        }
      }
      if (copyY)
        for (int64_t r = 0; r < m; ++r)
          for (int64_t col = 0; col < n; ++col)
            ci[r * scm + col * scn] = ys[r * n + col];
    }
}

/// The kernel path in use ("avx512-vnni", "avx512", "avx2-vnni", "avx2",
/// "scalar").
const char *qopt_kernel_cpu_path(void) { return kPathNames[currentPath()]; }

/// Caps the path at `name` (tests); returns 0 when the CPU lacks it or
/// the name is unknown, leaving the path unchanged.
int qopt_kernel_set_cpu_path(const char *name) {
  for (int p = kScalar; p <= kAVX512VNNI; ++p)
    if (std::strcmp(name, kPathNames[p]) == 0) {
      if (!supports(p))
        return 0;
      currentPath().store(p);
      return 1;
    }
  return 0;
}

/// The CPU's name, from CPUID (empty where it has none).
const char *qopt_kernel_cpu_name(void) {
  static std::string name = [] {
    unsigned regs[12] = {};
    unsigned max = 0, b, c, d;
    __asm__("cpuid" : "=a"(max), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000000u));
    if (max < 0x80000004u)
      return std::string();
    for (unsigned i = 0; i < 3; ++i)
      __asm__("cpuid"
              : "=a"(regs[4 * i]), "=b"(regs[4 * i + 1]), "=c"(regs[4 * i + 2]),
                "=d"(regs[4 * i + 3])
              : "a"(0x80000002u + i));
    std::string s(reinterpret_cast<char *>(regs), sizeof regs);
    s.erase(s.find_last_not_of(std::string(" \0", 2)) + 1);
    s.erase(0, s.find_first_not_of(' '));
    return s;
  }();
  return name.c_str();
}

/// Rows of x from which quantized products run as a GEMM (int8 or f32
/// activations, where the CPU and the weight's groups allow one; 0
/// restores the measured defaults); returns the previous setting. For
/// tests and benchmarks.
int64_t qopt_kernel_set_qlinear_gemm_rows(int64_t rows) {
  return gemmRows().exchange(std::max<int64_t>(0, rows));
}

/// Threads of the quantized products' pool (the caller included).
void qopt_kernel_set_qlinear_threads(int n) { Pool::get().setThreads(n); }

} // extern "C"
