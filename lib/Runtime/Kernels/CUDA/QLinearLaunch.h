//===- QLinearLaunch.h - qopt_cuda_qlinear's launches -----------*- C++ -*-===//
//
// How a quantized product of a model compiled for CUDA (a call with
// qopt_kernel_qlinear's arguments, qopt-linalg-to-blas{cuda-qlinear=…})
// becomes launches of QLinear.cu's f32 GEMV, or of Gemm.cu's tiled GEMM
// with the codes dequantized into its tiles when the rows are more than
// the GEMV takes in one pass (prefill, training): outer loops whose rows
// of A and C continue fold into M; others take one launch per index (the
// GEMV) or one grid (the GEMM). Host-only plain C++, shared by the
// CUDA host library (which launches) and the CPU kernel library's
// emulation (which runs QLinearTile.h's lanes for each launch), so the
// emulated models test this planning too.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_QLINEARLAUNCH_H
#define QOPT_RUNTIME_KERNELS_CUDA_QLINEARLAUNCH_H

#include "GemmLaunch.h"
#include "W8A8Tile.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace qopt_cuda {

/// One launch of qopt_cuda_gemv_f32_<format>: y = beta · y + x·Wᵀ (+ the
/// LoRA branch).
struct GemvLaunch {
  int format;
  const float *x;
  int64_t ldx, m;
  const uint8_t *codes;
  int64_t codeRow;
  const float *scales;
  int64_t scaleRow;
  const int8_t *zp;
  int64_t zpRow;
  int64_t n, k, group;
  float *y;
  int64_t ldy;
  float beta;
  LoRAView lora;
  const NestedScales *dq = nullptr; // (null: f32 scales)
};

/// The LoRA branch of qopt_cuda_qlinear_lora, scale · Z·Bᵀ added to C:
/// pointers as integers, element offsets and strides as for the product
/// (Z along the outer loops, rows and the rank; B along the outer loops,
/// which it does not move with, N and the rank); the down projection A
/// (pd 0: Z is given; else the launches write Z = x·Aᵀ, x the product's A;
/// A's strides along the outer loops (0), the rank and K (1)).
struct LoRAArgs {
  int64_t pz, oz, sz0, sz1, szm, szr;
  int64_t pb, ob, sb0, sb1, sbn, sbr;
  int64_t rank;
  float scale;
  int64_t pd = 0, od = 0, sd0 = 0, sd1 = 0, sdr = 0, sdk = 0;
};

/// The NestedScales of the CUDA quantized calls' double-quantization
/// arguments (pointers as integers, element offsets, the block, the
/// offset's f32 bits; codes 0: none), its table copied from the host: false
/// when there are none.
inline bool nestedScales(int64_t pcodes, int64_t ocodes, int64_t pabsmax,
                         int64_t oabsmax, int64_t block, int64_t offsetBits,
                         int64_t ptable, int64_t otable, NestedScales &dq) {
  if (!pcodes)
    return false;
  dq.codes = reinterpret_cast<const uint8_t *>(pcodes) + ocodes;
  dq.absmax = reinterpret_cast<const float *>(pabsmax) + oabsmax;
  dq.block = block;
  dq.offset = floatFromBits(uint32_t(offsetBits));
  std::memcpy(dq.table, reinterpret_cast<const float *>(ptable) + otable,
              sizeof(dq.table));
  return true;
}

/// The blocks of a GEMV launch: kWarps rows of W each, and as many for the
/// rows of A with a fused down projection (QLinear.cu).
inline unsigned gemvBlocks(const GemvLaunch &l) {
  return unsigned((l.n + kWarps - 1) / kWarps +
                  (l.lora.down ? (l.lora.rank + kWarps - 1) / kWarps : 0));
}

/// The GEMV entry of `format` (0 int4, 1 uint4, 2 int8, 3 uint8, 4 NF4,
/// 5 FP8 E4M3FN, 6 FP8 E5M2).
inline const char *gemvName(int format) {
  static const char *names[] = {
      "qopt_cuda_gemv_f32_int4",   "qopt_cuda_gemv_f32_uint4",
      "qopt_cuda_gemv_f32_int8",   "qopt_cuda_gemv_f32_uint8",
      "qopt_cuda_gemv_f32_nf4",    "qopt_cuda_gemv_f32_fp8e4m3",
      "qopt_cuda_gemv_f32_fp8e5m2"};
  return format >= 0 && format <= 6 ? names[format] : nullptr;
}

/// Calls `fn(std::integral_constant<int, F>())` for `format`'s code F
/// (QLinearTile.h's Format; anything else counts as NF4): the templates
/// of one format from a run-time code.
template <typename Fn> void withFormat(int format, Fn &&fn) {
  switch (format) {
  case 5:
    return fn(std::integral_constant<int, 5>());
  case 6:
    return fn(std::integral_constant<int, 6>());
  case 0:
    return fn(std::integral_constant<int, 0>());
  case 1:
    return fn(std::integral_constant<int, 1>());
  case 2:
    return fn(std::integral_constant<int, 2>());
  case 3:
    return fn(std::integral_constant<int, 3>());
  default:
    return fn(std::integral_constant<int, 4>());
  }
}

/// qopt_kernel_qlinear's flags the CUDA library takes: zero points, and
/// (the CUDA target's own) C += A·dequant(W), W's rows along K: a linear
/// layer's dX = dY·W in the backward, which only the GEMM computes.
/// kQLinearOverwrite (the CUDA target's too): C = A·Wᵀ (+ LoRA), not C +=.
/// kQLinearPerToken: A is the input of a per-token quantizer to
/// `(flags >> 8) & 0xff` bits, which the product applies and then runs on
/// the integer codes (planW8A8); with kQLinearCodes A is those codes
/// already (int8, rows of K, written by qopt_cuda_quantize_rows or
/// qopt_cuda_norm_quant), and the rows' steps a buffer laid out as A
/// without K. kQLinearBF16 / kQLinearTF32 (the CUDA target's too):
/// products that take the GEMM run on the tensor cores in bf16 / tf32
/// (`_bf16`, `_tf32` entries; the GEMV, bandwidth-bound, stays f32).
constexpr int64_t kQLinearZeroPoints = 1, kQLinearPerToken = 4,
                  kQLinearTransposed = 8, kQLinearOverwrite = 16,
                  kQLinearCodes = 32, kQLinearBF16 = 64, kQLinearTF32 = 128;

/// Calls `gemv(const GemvLaunch &)` or `gemm(const GemmLaunch &)` for each
/// launch of the product with `lora` (null: none) added and `dq` the
/// weight's double-quantized scales (null: f32 scales), with
/// qopt_kernel_qlinear's arguments (element offsets and strides, pointers
/// as integers); returns null, or why the GEMV cannot take it (the
/// compiler only emits calls it takes: a failure is a broken invariant).
/// `aligned`: check the 16-byte alignment of the codes' rows the GPU's
/// vector loads need (the CUDA host library's parameters are pool buffers,
/// 256-byte aligned; the emulation reads a CPU model's mapped weights).
template <typename Gemv, typename Gemm>
const char *
planQLinear(bool aligned, int64_t format, int64_t group, int64_t flags,
            int64_t o0, int64_t o1, int64_t m, int64_t n, int64_t k, int64_t pa,
            int64_t oa, int64_t sa0, int64_t sa1, int64_t sam, int64_t sak,
            int64_t pw, int64_t ow, int64_t sw, int64_t ps, int64_t os,
            int64_t ss, int64_t pz, int64_t oz, int64_t sz, int64_t pc,
            int64_t oc, int64_t sc0, int64_t sc1, int64_t scm, int64_t scn,
            const LoRAArgs *lora, const NestedScales *dq, Gemv &&gemv,
            Gemm &&gemm) {
  if (!gemvName(int(format)))
    return "a weight format the GEMV does not take";
  if (flags & ~int64_t(kQLinearZeroPoints | kQLinearTransposed |
                       kQLinearOverwrite | kQLinearBF16 | kQLinearTF32))
    return "integer activations (not on the CUDA target)";
  if ((flags & kQLinearBF16) && (flags & kQLinearTF32))
    return "both bf16 and tf32 products";
  // W's columns: K, or N for C += A·W.
  bool transposed = flags & kQLinearTransposed,
       overwrite = flags & kQLinearOverwrite;
  int precision = (flags & kQLinearBF16)   ? kGemmBF16
                  : (flags & kQLinearTF32) ? kGemmTF32
                                           : kGemmF32;
  if (lora && lora->rank == 0) // (a branch of rank 0 adds nothing)
    lora = nullptr;
  if (lora && (transposed || lora->rank < 0 || lora->sb0 || lora->sb1 ||
               (lora->rank > 1 && (lora->szr != 1 || lora->sbr != 1))))
    return "a LoRA branch with A·W, no rank, B moving with the outer loops, "
           "or factors strided along the rank";
  if (lora && lora->pd && (lora->sd0 || lora->sd1 || (k > 1 && lora->sdk != 1)))
    return "a LoRA down projection moving with the outer loops or strided "
           "along K";
  int64_t cSize[4] = {o0, o1, m, n}, cStride[4] = {sc0, sc1, scm, scn};
  if (overwrite && !disjoint(cSize, cStride))
    return "C = … for products that share outputs";
  if ((transposed ? n : k) % 32 || group <= 0 || group % 32 ||
      (sak != 1 && k > 1) || (scn != 1 && n > 1))
    return "K or the scale group is not a multiple of 32, or A or C is "
           "strided along K or N";
  const uint8_t *codes = reinterpret_cast<const uint8_t *>(pw) + ow;
  if (aligned && (reinterpret_cast<uintptr_t>(codes) % 16 || sw % 16))
    return "the codes' rows are not 16-byte aligned";
  if (m <= 0 || n <= 0 || o0 <= 0 || o1 <= 0 || k == 0)
    return nullptr;
  // Fold the inner outer loop, then the outer one, into M where A's and
  // C's rows continue across it.
  auto folds = [&](int64_t size, int64_t sa, int64_t sc, int64_t sz) {
    return size == 1 ||
           (sa == m * sam && sc == m * scm && (!lora || sz == m * lora->szm));
  };
  if (folds(o1, sa1, sc1, lora ? lora->sz1 : 0)) {
    m *= o1;
    o1 = 1;
    if (folds(o0, sa0, sc0, lora ? lora->sz0 : 0)) {
      m *= o0;
      o0 = 1;
    }
  }
  const float *a = reinterpret_cast<const float *>(pa) + oa;
  float *c = reinterpret_cast<float *>(pc) + oc;
  const float *scales = reinterpret_cast<const float *>(ps) + os;
  const int8_t *zp = (flags & kQLinearZeroPoints)
                         ? reinterpret_cast<const int8_t *>(pz) + oz
                         : nullptr;
  float *z = lora ? reinterpret_cast<float *>(lora->pz) + lora->oz : nullptr;
  const float *down = lora && lora->pd
                          ? reinterpret_cast<const float *>(lora->pd) + lora->od
                          : nullptr;
  const float *up =
      lora ? reinterpret_cast<const float *>(lora->pb) + lora->ob : nullptr;
  if (m > kMaxRows || transposed) {
    GemmParams p{};
    p.a = a, p.sa0 = sa0, p.sa1 = sa1, p.sam = sam, p.sak = sak;
    p.c = c, p.sc0 = sc0, p.sc1 = sc1, p.scm = scm, p.scn = scn;
    p.m = m, p.n = n, p.k = k;
    p.codes = codes, p.codeRow = sw, p.scales = scales, p.scaleRow = ss;
    p.zp = zp, p.zpRow = sz, p.group = group;
    p.overwrite = overwrite;
    if (lora) {
      p.lz = z, p.sl0 = lora->sz0, p.sl1 = lora->sz1, p.slm = lora->szm;
      p.lb = up, p.lRow = lora->sbn, p.rank = lora->rank;
      p.loraScale = lora->scale;
      p.la = down, p.laRow = lora->sdr;
    }
    launchProducts(
        int(format), transposed, p, o0, o1,
        [&](GemmLaunch l) {
          l.dq = dq;
          gemm(l);
        },
        precision);
    return nullptr;
  }
  GemvLaunch l{};
  l.format = int(format);
  l.ldx = sam;
  l.codes = codes;
  l.codeRow = sw;
  l.scales = scales;
  l.scaleRow = ss;
  l.zp = zp;
  l.zpRow = sz;
  l.n = n;
  l.k = k;
  l.group = group;
  l.ldy = scm;
  l.m = m;
  l.beta = overwrite ? 0.0f : 1.0f;
  l.dq = dq;
  if (lora) {
    l.lora = {nullptr,    lora->szm,   up,   lora->sbn,
              lora->rank, lora->scale, down, lora->sdr};
    // (The GEMV's warps read A's rows as 16-byte vectors: rows that are
    // not aligned take a GEMM of their own into Z first.)
    if (down && (reinterpret_cast<uintptr_t>(down) % 16 || lora->sdr % 4)) {
      planSgemm(o0, o1, m, lora->rank, k, pa, oa, sa0, sa1, sam, sak, lora->pd,
                lora->od, 0, 0, lora->sdk, lora->sdr, lora->pz, lora->oz,
                lora->sz0, lora->sz1, lora->szm, lora->szr, gemm,
                /*overwrite=*/true);
      l.lora.down = nullptr;
    }
  }
  for (int64_t i = 0; i < o0; ++i)
    for (int64_t j = 0; j < o1; ++j) {
      l.x = a + i * sa0 + j * sa1;
      l.y = c + i * sc0 + j * sc1;
      if (lora)
        l.lora.z = z + i * lora->sz0 + j * lora->sz1;
      gemv(l);
    }
  return nullptr;
}

/// One launch of W8A8.cu: the rows of x quantized (TokenQuantParams, grid
/// (quantX, quantY)), or the integer GEMM (`gemm`: W8A8Params, grid (gridX,
/// gridY, gridZ); `skinny`: tiles of 16 rows).
struct W8A8Launch {
  bool gemm;
  int format;
  bool skinny;
  TokenQuantParams q;
  W8A8Params p;
  unsigned gridX, gridY, gridZ;
};

/// The entry of a W8A8Launch.
inline const char *w8a8Name(const W8A8Launch &l) {
  static const char *names[2][7] = {
      {"qopt_cuda_gemm_w8a8_int4", "qopt_cuda_gemm_w8a8_uint4",
       "qopt_cuda_gemm_w8a8_int8", nullptr, nullptr,
       "qopt_cuda_gemm_w8a8_fp8e4m3", "qopt_cuda_gemm_w8a8_fp8e5m2"},
      {"qopt_cuda_gemm_w8a8_int4_m16", "qopt_cuda_gemm_w8a8_uint4_m16",
       "qopt_cuda_gemm_w8a8_int8_m16", nullptr, nullptr,
       "qopt_cuda_gemm_w8a8_fp8e4m3_m16", "qopt_cuda_gemm_w8a8_fp8e5m2_m16"}};
  if (!l.gemm)
    return "qopt_cuda_token_quant";
  return l.format >= 0 && l.format <= kFP8E5M2 ? names[l.skinny][l.format]
                                               : nullptr;
}

/// Null where W8A8.cu takes a quantized product with per-token activations
/// (qopt_kernel_qlinear's arguments), else why not: integer tokens of 2-8
/// bits with weight codes minus zero points that fit int8 (int4, uint4,
/// int8 without zero points), or E4M3 tokens with an FP8 weight scaled
/// per row or per tensor; K and the group multiples of 32, A and C
/// contiguous along K and N. The compiler (qopt-linalg-to-blas) asks the
/// same before it makes the call (readQuantizerInput with `cuda`).
inline const char *w8a8Refusal(int64_t format, int64_t group, int64_t flags,
                               int64_t n, int64_t k, int64_t sak, int64_t scn) {
  int64_t bits = (flags >> 8) & 0xff;
  if (!(flags & kQLinearPerToken) || (flags & kQLinearTransposed))
    return "not a product on per-token activations";
  if (const char *why = tokenFormatRefusal(bits))
    return why;
  bool fp8 = format == kFP8E4M3 || format == kFP8E5M2;
  if (bits == kTokenFP8E4M3) {
    if (!fp8 || (flags & kQLinearZeroPoints))
      return "FP8 tokens times a weight that is not FP8";
    if (group < k)
      return "an FP8 weight with more than one scale per row";
  } else if (format != kInt4 && format != kUInt4 &&
             !(format == kInt8 && !(flags & kQLinearZeroPoints))) {
    return "weight codes that do not fit int8 (uint8, int8 with zero points, "
           "NF4, FP8)";
  }
  // (A group's int32 sum of products up to 128 · 127 must not overflow.)
  if (bits != kTokenFP8E4M3 && (group < k ? group : k) > 131072)
    return "scale groups of more than 131072 codes";
  if (k % 32 || group <= 0 || group % 32 || (sak != 1 && k > 1) ||
      (scn != 1 && n > 1))
    return "K or the scale group is not a multiple of 32, or A or C is "
           "strided along K or N";
  return nullptr;
}

/// Calls `launch(const W8A8Launch &)` for each launch of the product (the
/// quantization of every row of A first, into scratch that
/// `allocate(bytes)` returns once the call is known to be taken: the rows'
/// codes, 256-byte aligned, then their steps; none with kQLinearCodes,
/// where A is the codes and `pst` + `ost` the steps), with
/// qopt_kernel_qlinear's arguments; returns null, or why W8A8.cu cannot
/// take it (a broken invariant: the compiler asks w8a8Refusal).
template <typename Allocate, typename Launch>
const char *
planW8A8(bool aligned, int64_t format, int64_t group, int64_t flags, int64_t o0,
         int64_t o1, int64_t m, int64_t n, int64_t k, int64_t pa, int64_t oa,
         int64_t sa0, int64_t sa1, int64_t sam, int64_t sak, int64_t pw,
         int64_t ow, int64_t sw, int64_t ps, int64_t os, int64_t ss, int64_t pz,
         int64_t oz, int64_t sz, int64_t pc, int64_t oc, int64_t sc0,
         int64_t sc1, int64_t scm, int64_t scn, int64_t pst, int64_t ost,
         Allocate &&allocate, Launch &&launch) {
  if (const char *why = w8a8Refusal(format, group, flags, n, k, sak, scn))
    return why;
  bool given = flags & kQLinearCodes;
  // Given codes are whole rows of K, laid out as A (a buffer of the
  // identity layout whose last axis is the product's K: the steps' strides
  // are its own / K), read as 4-byte words.
  if (given && k > 0 &&
      (sa0 % k || sa1 % k || sam % k || oa % k || (aligned && (pa + oa) % 4)))
    return "the given codes are not rows of K on 4-byte boundaries";
  bool overwrite = flags & kQLinearOverwrite;
  int64_t cSize[4] = {o0, o1, m, n}, cStride[4] = {sc0, sc1, scm, scn};
  bool oneGrid = disjoint(cSize, cStride);
  if (overwrite && !oneGrid)
    return "C = … for products that share outputs";
  // (The kernels read the codes as 4- or 2-byte words.)
  if (aligned && ((pw + ow) % 4 || sw % 4))
    return "the codes' rows are not 4-byte aligned";
  // (K = 0 still runs: the GEMM stores C's zeros where it overwrites.)
  if (m <= 0 || n <= 0 || o0 <= 0 || o1 <= 0)
    return nullptr;
  // Outer loops whose rows of A and C continue fold into M.
  if (o1 == 1 || (sa1 == m * sam && sc1 == m * scm)) {
    m *= o1;
    o1 = 1;
    if (o0 == 1 || (sa0 == m * sam && sc0 == m * scm)) {
      m *= o0;
      o0 = 1;
    }
  }
  int64_t products = o0 * o1;
  bool skinny = m <= kMaxRows;
  int64_t tileRows = skinny ? kTileRows<1> : kTileRows<4>;
  int64_t tileRowsTotal = (m + tileRows - 1) / tileRows;
  if (tileRowsTotal > 0xffffffffLL || (n + kTileN - 1) / kTileN > 0x7fffffff ||
      (m + kTokenRowsPerBlock - 1) / kTokenRowsPerBlock > 0x7fffffff ||
      products > 0xffffffffLL)
    return "more rows, columns or products than a grid takes";
  W8A8Launch l{};
  W8A8Params &p = l.p;
  int8_t *codes;
  float *steps;
  if (given) {
    codes = reinterpret_cast<int8_t *>(pa) + oa;
    int64_t rowOf = k > 0 ? k : 1; // (K = 0: rows of nothing, steps 1)
    steps = reinterpret_cast<float *>(pst) + ost + oa / rowOf;
    p.sa0 = sa0, p.sa1 = sa1, p.sam = sam;
    p.ss0 = sa0 / rowOf, p.ss1 = sa1 / rowOf, p.ssm = sam / rowOf;
  } else {
    size_t codeBytes = (size_t(products * m * k) + 255) / 256 * 256;
    auto *scratch = static_cast<char *>(
        allocate(codeBytes + size_t(products * m) * sizeof(float)));
    codes = reinterpret_cast<int8_t *>(scratch);
    steps = reinterpret_cast<float *>(scratch + codeBytes);
    // (Product z's rows follow product z − 1's.)
    p.sa0 = o1 * m * k, p.sa1 = m * k, p.sam = k;
    p.ss0 = o1 * m, p.ss1 = m, p.ssm = 1;
  }
  l.format = int(format);
  l.skinny = skinny;
  TokenQuantParams &q = l.q;
  q.x = reinterpret_cast<const float *>(pa) + oa;
  q.sx0 = sa0, q.sx1 = sa1, q.sxm = sam;
  q.codes = codes, q.steps = steps;
  q.m = m, q.k = k, q.o1 = uint32_t(o1);
  q.bits = int32_t((flags >> 8) & 0xff);
  p.a = codes, p.steps = steps;
  p.c = reinterpret_cast<float *>(pc) + oc;
  p.sc0 = sc0, p.sc1 = sc1, p.scm = scm, p.scn = scn;
  p.codes = reinterpret_cast<const uint8_t *>(pw) + ow, p.codeRow = sw;
  p.scales = reinterpret_cast<const float *>(ps) + os, p.scaleRow = ss;
  p.zp = (flags & kQLinearZeroPoints)
             ? reinterpret_cast<const int8_t *>(pz) + oz
             : nullptr;
  p.zpRow = sz, p.group = group;
  p.m = m, p.n = n, p.k = k, p.o1 = uint32_t(o1);
  p.overwrite = overwrite;
  // Every row first, then the products: in one grid (65535 at a time)
  // where their C's are disjoint, one after the other where they add into
  // the same C.
  int64_t chunk = oneGrid ? 65535 : 1;
  for (int64_t z0 = 0; !given && z0 < products; z0 += 65535) {
    l.gemm = false;
    q.zBase = uint32_t(z0);
    l.gridX = unsigned((m + kTokenRowsPerBlock - 1) / kTokenRowsPerBlock);
    l.gridY = unsigned(std::min<int64_t>(65535, products - z0));
    l.gridZ = 1;
    launch(l);
  }
  // (Grids of at most 65535 tile rows and products.)
  l.gemm = true;
  for (int64_t z0 = 0; z0 < products; z0 += chunk)
    for (int64_t y0 = 0; y0 < tileRowsTotal; y0 += 65535) {
      p.zBase = uint32_t(z0);
      p.yBase = uint32_t(y0);
      l.gridX = unsigned((n + kTileN - 1) / kTileN);
      l.gridY = unsigned(std::min<int64_t>(65535, tileRowsTotal - y0));
      l.gridZ = unsigned(std::min<int64_t>(chunk, products - z0));
      launch(l);
    }
  return nullptr;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_QLINEARLAUNCH_H
