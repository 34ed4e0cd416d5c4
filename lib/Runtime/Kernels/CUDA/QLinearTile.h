//===- QLinearTile.h - per-lane work of the CUDA quantized GEMV -*- C++ -*-===//
//
// The computation of one lane of QLinear.cu's weight-only GEMV, written
// once for the device and the host: the kernel calls it for its lane, and
// the CPU unit test (unittests/Runtime/CUDATileTest.cpp) calls it for the
// 32 lanes of each warp and sums their results as the kernel's shuffles
// do, so the decoding, indexing and scaling are checked without a GPU.
//
// The weight is a !qopt.qtensor as the CPU kernels read it: codes row-major
// N x K (4-bit codes two to a byte, even k in the low nibble; 8-bit codes
// one a byte), f32 scales per group of `group` codes along K (row stride
// `scaleRow`), optional int8 zero points (row stride `zpRow`). Lane l of
// the warp that computes output row n takes the chunks of 32 codes
// c = l, l + 32, l + 64, … of that row.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_QLINEARTILE_H
#define QOPT_RUNTIME_KERNELS_CUDA_QLINEARTILE_H

#include <stdint.h>
#include <string.h>

// QOPT_UNROLL(n): nvcc's `#pragma unroll n` (host compilers ignore it
// anyway, with a warning).
#if defined(__CUDACC__)
#define QOPT_HD __host__ __device__ __forceinline__
#define QOPT_UNROLL(...) _Pragma(QOPT_STRINGIFY(unroll __VA_ARGS__))
#define QOPT_STRINGIFY(x) #x
#else
#define QOPT_HD inline
#define QOPT_UNROLL(...)
#endif

namespace qopt_cuda {

/// The kernel library's format codes (qopt_kernel_qlinear's).
enum Format : int {
  kInt4 = 0,
  kUInt4 = 1,
  kInt8 = 2,
  kUInt8 = 3,
  kNF4 = 4,
  kFP8E4M3 = 5, // OCP E4M3FN: no infinities, NaN at S.1111.111, max 448
  kFP8E5M2 = 6, // IEEE-like: infinities, NaNs
};

/// Entries of a format's code table (codeValue reads it; kernels keep it
/// in shared memory, where threads index it with different codes without
/// serializing as constant memory would): NF4's 16 values, FP8's 256.
template <int F>
constexpr int kTableSize = F == kNF4                          ? 16
                           : (F == kFP8E4M3 || F == kFP8E5M2) ? 256
                                                              : 0;

/// float from its bits.
QOPT_HD float floatFromBits(uint32_t bits) {
  union {
    uint32_t u;
    float f;
  } v;
  v.u = bits;
  return v.f;
}

/// The bits of a float.
QOPT_HD uint32_t bitsOfFloat(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
#endif
}

/// The value of FP8 code `raw` (exact: every FP8 value is a float).
template <int F> QOPT_HD float fp8Value(uint32_t raw) {
  uint32_t sign = (raw >> 7) & 1u;
  float magnitude;
  if (F == kFP8E4M3) {
    uint32_t e = (raw >> 3) & 15u, m = raw & 7u;
    if (e == 15 && m == 7)
      return floatFromBits(0x7FC00000u);
    magnitude = e == 0 ? float(m) * (1.0f / 512) // m/8 · 2^-6
                       : floatFromBits(((e + 120) << 23) | (m << 20));
  } else {
    uint32_t e = (raw >> 2) & 31u, m = raw & 3u;
    if (e == 31)
      return m ? floatFromBits(0x7FC00000u)
               : floatFromBits(sign ? 0xFF800000u : 0x7F800000u);
    magnitude = e == 0 ? float(m) * (1.0f / 65536) // m/4 · 2^-14
                       : floatFromBits(((e + 112) << 23) | (m << 21));
  }
  return sign ? -magnitude : magnitude;
}

/// Codes per chunk: 16 bytes of 4-bit codes, 32 bytes of 8-bit ones.
constexpr int kChunk = 32;
/// Rows of x the GEMV takes at once (decode batches; more rows: calls).
constexpr int kMaxRows = 16;
/// Warps (output rows) per block of the GEMV: its launches have
/// kWarps · 32 threads and ceil(N / kWarps) blocks.
constexpr int kWarps = 4;

/// The value of a code as the formats define it (before scale and zero
/// point); `table`: the format's code table (kTableSize entries).
template <int F> QOPT_HD float codeValue(uint32_t raw, const float *table) {
  if (F == kInt4)
    return float(int32_t(raw ^ 8u) - 8);
  if (F == kInt8)
    return float(int8_t(uint8_t(raw)));
  if (kTableSize<F>)
    return table[raw];
  return float(raw); // kUInt4, kUInt8
}

/// bfloat16 bits to float (exact).
QOPT_HD float bf16ToFloat(uint16_t bits) {
  return floatFromBits(uint32_t(bits) << 16);
}

/// The 32 codes of one chunk, as 8 words (4-bit: words 0-3 hold them,
/// eight nibbles a word, code 2j in the low nibble of byte j; 8-bit: all
/// eight, four bytes a word), decoded minus the zero point: out[i] =
/// v_i - zero (exact for integer codes).
template <int F>
QOPT_HD void decodeChunk(const uint32_t *words, float zero, const float *nf4,
                         float *out) {
  constexpr bool four = F == kInt4 || F == kUInt4 || F == kNF4;
  QOPT_UNROLL()
  for (int i = 0; i < kChunk; ++i) {
    uint32_t word = words[four ? i / 8 : i / 4];
    uint32_t raw =
        four ? (word >> (4 * (i % 8))) & 15u : (word >> (8 * (i % 4))) & 255u;
    out[i] = codeValue<F>(raw, nf4) - zero;
  }
}

/// sum_i w[i] · x[i] over one chunk, x read two bfloat16 at a time (x
/// 4-byte aligned).
QOPT_HD float dotChunk(const float *w, const uint16_t *x) {
  float sum = 0.0f;
  QOPT_UNROLL()
  for (int j = 0; j < kChunk / 2; ++j) {
#if defined(__CUDA_ARCH__)
    uint32_t two = reinterpret_cast<const uint32_t *>(x)[j];
#else
    uint32_t two; // (memcpy: no aliasing of the uint16_t data)
    memcpy(&two, x + 2 * j, 4);
#endif
    sum += w[2 * j] * bf16ToFloat(uint16_t(two & 0xFFFFu));
    sum += w[2 * j + 1] * bf16ToFloat(uint16_t(two >> 16));
  }
  return sum;
}

/// The same with f32 x (the CUDA target's models compute in f32).
QOPT_HD float dotChunk(const float *w, const float *x) {
  float sum = 0.0f;
  QOPT_UNROLL()
  for (int j = 0; j < kChunk; ++j)
    sum += w[j] * x[j];
  return sum;
}

/// Double-quantized scales (QLoRA's): scale i = table[codes[i]] ·
/// absmax[i / block] + offset, the table the 8-bit code's 256 values
/// (bitsandbytes' dynamic map). Passed to the kernels by value (1 KiB of
/// parameters), which copy the table to shared memory; codes null: the
/// scales are f32.
struct NestedScales {
  const uint8_t *codes;
  const float *absmax;
  int64_t block;
  float offset;
  float table[256];
};
static_assert(sizeof(NestedScales) == 1056, "NestedScales' layout changed");

/// The weight as the lanes read it.
struct WeightView {
  const uint8_t *codes;
  int64_t codeRow; // bytes between rows
  const float *scales;
  int64_t scaleRow;
  const int8_t *zp; // null: none
  int64_t zpRow;
  int64_t n, k, group;
  // Double-quantized scales (NestedScales; scaleCodes null: f32 scales),
  // scaleTable the 256 values where the threads read them.
  const uint8_t *scaleCodes = nullptr;
  const float *nestedAbsmax = nullptr;
  int64_t nestedBlock = 1;
  int nestedShift = 0; // log2(nestedBlock) where a power of two, else -1
  float scaleOffset = 0.0f;
  const float *scaleTable = nullptr;
};

/// Points `w`'s double-quantized scales at `dq` (null or no codes: none)
/// with its table at `table`.
QOPT_HD void setNested(WeightView &w, const NestedScales *dq,
                       const float *table) {
  if (!dq || !dq->codes)
    return;
  w.scaleCodes = dq->codes;
  w.nestedAbsmax = dq->absmax;
  w.nestedBlock = dq->block;
  // (A shift, not a 64-bit division, per scale read: bitsandbytes' blocks
  // are 256.)
  int shift = 0;
  while (shift < 62 && (int64_t(1) << shift) < dq->block)
    ++shift;
  w.nestedShift = (int64_t(1) << shift) == dq->block ? shift : -1;
  w.scaleOffset = dq->offset;
  w.scaleTable = table;
}

/// Scale i of the weight's list (the product's rounding: the code's value
/// times the absmax, then the offset, no fused multiply-add).
QOPT_HD float scaleAt(const WeightView &w, int64_t i) {
  if (!w.scaleCodes)
    return w.scales[i];
  float v = w.scaleTable[w.scaleCodes[i]],
        a = w.nestedAbsmax[w.nestedShift >= 0 ? i >> w.nestedShift
                                              : i / w.nestedBlock];
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(v, a), w.scaleOffset);
#else
  volatile float product = v * a; // (no contraction into an FMA on hosts
  return product + w.scaleOffset; // that have one: the CPU target's rounding)
#endif
}

/// The zero point of group g of row r as the formats read it.
template <int F>
QOPT_HD float zeroPoint(const WeightView &w, int64_t r, int64_t g) {
  if (!w.zp)
    return 0.0f;
  int8_t z = w.zp[r * w.zpRow + g];
  return (F == kUInt4 || F == kUInt8) ? float(uint8_t(z)) : float(z);
}

/// Lane `lane`'s partial sums of output row r for the m (<= kMaxRows) rows
/// of x (bf16 bits, or f32; row stride ldx): acc[i] += sum over its chunks
/// of scale · dotChunk. Needs K and the group to be multiples of 32 (a
/// group of K: per channel), rows of codes 16-byte aligned (the kernel
/// reads them as 16-byte vectors), bf16 x 4-byte aligned with an even ldx.
template <int F, typename X>
QOPT_HD void laneSums(const WeightView &w, int64_t r, int lane, const X *x,
                      int64_t ldx, int m, const float *nf4, float *acc) {
  constexpr bool four = F == kInt4 || F == kUInt4 || F == kNF4;
  constexpr int bytes = four ? kChunk / 2 : kChunk;
  const uint8_t *row = w.codes + r * w.codeRow;
  for (int64_t c = int64_t(lane) * kChunk; c < w.k; c += 32 * kChunk) {
    uint32_t words[8];
    const uint8_t *src = row + c / kChunk * bytes;
#if defined(__CUDA_ARCH__)
    // 16-byte loads: a warp reads 512 contiguous bytes (1 KiB for 8-bit).
    QOPT_UNROLL()
    for (int j = 0; j < bytes / 16; ++j) {
      uint4 v = __ldg(reinterpret_cast<const uint4 *>(src) + j);
      words[4 * j] = v.x;
      words[4 * j + 1] = v.y;
      words[4 * j + 2] = v.z;
      words[4 * j + 3] = v.w;
    }
#else
    memcpy(words, src, bytes);
#endif
    int64_t g = c / w.group;
    float scale = scaleAt(w, r * w.scaleRow + g);
    // Decoded once for every row of x.
    float decoded[kChunk];
    decodeChunk<F>(words, zeroPoint<F>(w, r, g), nf4, decoded);
    // (Rows to kMaxRows with a test, unrolled: acc stays in registers.)
    QOPT_UNROLL()
    for (int i = 0; i < kMaxRows; ++i)
      if (i < m)
        acc[i] += scale * dotChunk(decoded, x + i * ldx + c);
  }
}

/// A LoRA branch added to a product's outputs (B in the epilogue): y[i, r]
/// += scale · sum_j z[i, j] · b[r, j] over the rank, z the branch's x·Aᵀ
/// (rows ldz apart), b the up projection B (rows ldb apart). z null: none.
/// `down` (A, rank x K, rows ldDown apart, contiguous along K; null: z is
/// given): the launch computes z = x·Aᵀ itself from the x it multiplies
/// by W (its first blocks write z, the others wait for them before their
/// epilogue: LoRASync.cuh), so the branch costs no launch of its own.
struct LoRAView {
  float *z;
  int64_t ldz;
  const float *b;
  int64_t ldb, rank;
  float scale;
  const float *down;
  int64_t ldDown;
};
// (bench/gpu/lora.py packs it as "<QqQqqf4xQq".)
static_assert(sizeof(LoRAView) == 64, "LoRAView's layout changed");

/// *p, read from L2 on the GPU (ld.global.cg: never a line L1 cached
/// before another block of the launch wrote it).
QOPT_HD float loadCoherent(const float *p) {
#if defined(__CUDA_ARCH__)
  return __ldcg(p);
#else
  return *p;
#endif
}

/// Lane `lane`'s share of the branch for output row r, added to its
/// partial sums before the warp's shuffle reduction adds them up: ranks
/// lane, lane + 32, … (one pass over B's row; z from L2).
QOPT_HD void laneLoRA(const LoRAView &l, int64_t r, int lane, int m,
                      float *acc) {
  if (!l.z)
    return;
  for (int64_t j = lane; j < l.rank; j += 32) {
    float b = l.scale * l.b[r * l.ldb + j];
    QOPT_UNROLL()
    for (int i = 0; i < kMaxRows; ++i)
      if (i < m)
        acc[i] += loadCoherent(l.z + i * l.ldz + j) * b;
  }
}

/// Lane `lane`'s partial sums of the down projection's row j for the m
/// (<= kMaxRows) rows of x: acc[i] += x[i, c…c+31] · A[j, c…c+31] over its
/// chunks c = 32·lane, 32·lane + 1024, … (laneSums' chunks, f32 weights).
/// Needs K a multiple of 32 and A's rows 16-byte aligned (vector loads).
QOPT_HD void laneDown(const LoRAView &l, int64_t j, int64_t k, int lane,
                      const float *x, int64_t ldx, int m, float *acc) {
  const float *row = l.down + j * l.ldDown;
  for (int64_t c = int64_t(lane) * kChunk; c < k; c += 32 * kChunk) {
    float a[kChunk];
#if defined(__CUDA_ARCH__)
    QOPT_UNROLL()
    for (int e = 0; e < kChunk / 4; ++e) {
      float4 v = __ldg(reinterpret_cast<const float4 *>(row + c) + e);
      a[4 * e] = v.x;
      a[4 * e + 1] = v.y;
      a[4 * e + 2] = v.z;
      a[4 * e + 3] = v.w;
    }
#else
    memcpy(a, row + c, sizeof(a));
#endif
    QOPT_UNROLL()
    for (int i = 0; i < kMaxRows; ++i)
      if (i < m)
        acc[i] += dotChunk(a, x + i * ldx + c);
  }
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_QLINEARTILE_H
