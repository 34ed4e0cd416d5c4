//===- GemmLaunch.h - launches of the CUDA tiled GEMM -----------*- C++ -*-===//
//
// How a product with qopt_kernel_sgemm's arguments (qopt_cuda_sgemm), or a
// quantized one with many rows (qopt_cuda_qlinear), becomes launches of
// Gemm.cu's kernels: outer loops fold into M (rows that continue) or K (a
// weight gradient's sum over batch and sequence) as the CPU kernel does;
// the remaining products run as one grid when their C's are disjoint, one
// after the other otherwise (products that accumulate into the same C);
// grids are split to the hardware's limits. Host-only plain C++, shared by
// the CUDA host library (which launches) and the CPU emulation (which runs
// GemmTile.h's phases for each block), so the emulated models test this
// planning too.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_GEMMLAUNCH_H
#define QOPT_RUNTIME_KERNELS_CUDA_GEMMLAUNCH_H

#include "GemmTile.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace qopt_cuda {

/// One launch of a Gemm.cu kernel: grid (x, y, z) of kGemmThreads threads.
struct GemmLaunch {
  int format;      // -1: f32 B; else the quantized B's format
  bool transposed; // quantized B = dequant(W) (not its transpose)
  bool skinny;     // f32 B, tiles of 16 rows (products of at most 16)
  GemmParams p;
  unsigned gridX, gridY, gridZ;
  /// The quantized B's double-quantized scales (null: f32 scales).
  const NestedScales *dq = nullptr;
  /// kGemmF32, or on the tensor cores (the `_bf16` / `_tf32` entries).
  int precision = kGemmF32;
};

/// The kernel of `format` (-1: f32 B), or null.
inline const char *gemmName(int format, bool transposed = false,
                            bool skinny = false, int precision = kGemmF32) {
  static const char *formats[] = {"int4", "uint4",   "int8",   "uint8",
                                  "nf4",  "fp8e4m3", "fp8e5m2"};
  static const char *suffixes[] = {"", "_bf16", "_tf32"};
  // [precision][transposed][format + 1], "" where there is no entry.
  static const auto names = [] {
    std::array<std::array<std::array<std::string, 8>, 2>, 3> t;
    for (int p = 0; p < 3; ++p) {
      t[p][0][0] = std::string("qopt_cuda_gemm_f32") + suffixes[p];
      for (int f = 0; f < 7; ++f)
        for (int tr = 0; tr < 2; ++tr)
          t[p][tr][f + 1] = std::string("qopt_cuda_gemm_f32_") + formats[f] +
                            (tr ? "_t" : "") + suffixes[p];
    }
    return t;
  }();
  static const std::string skinnyNames[] = {"qopt_cuda_gemm_f32_m16",
                                            "qopt_cuda_gemm_f32_m16_bf16",
                                            "qopt_cuda_gemm_f32_m16_tf32"};
  if (precision < 0 || precision > 2 || format < -1 || format > 6 ||
      (transposed && format == -1) || (skinny && (format != -1 || transposed)))
    return nullptr;
  if (skinny)
    return skinnyNames[precision].c_str();
  return names[size_t(precision)][transposed][size_t(format + 1)].c_str();
}

/// Whether distinct indices of the dimensions (sizes, strides) address
/// distinct elements: sorted by stride, each stride steps past all that
/// the smaller ones reach (a sufficient condition).
inline bool disjoint(const int64_t (&size)[4], const int64_t (&stride)[4]) {
  int order[4] = {0, 1, 2, 3};
  std::sort(order, order + 4, [&](int x, int y) {
    return std::llabs(stride[x]) < std::llabs(stride[y]);
  });
  int64_t extent = 1; // elements spanned by the dimensions so far
  for (int d : order) {
    if (size[d] <= 1)
      continue;
    int64_t s = std::llabs(stride[d]);
    if (s < extent)
      return false;
    extent += s * (size[d] - 1);
  }
  return true;
}

/// Calls `launch(const GemmLaunch &)` for the o0 x o1 products of `p`
/// (its strides along the outer loops set).
template <typename Launch>
void launchProducts(int format, bool transposed, GemmParams p, int64_t o0,
                    int64_t o1, Launch &&launch, int precision = kGemmF32) {
  if (p.m <= 0 || p.n <= 0)
    return;
  if (o0 <= 0 || o1 <= 0 || p.k <= 0) {
    // Nothing to add; but C = A·B (the compiler dropped C's zeros) must
    // still be zeros, unless an empty outer loop indexes C (C is empty):
    // launches with K = 0, whose tiles store zeros.
    if (!p.overwrite || (o0 <= 0 && p.sc0) || (o1 <= 0 && p.sc1))
      return;
    o0 = o0 <= 0 ? 1 : o0;
    o1 = o1 <= 0 ? 1 : o1;
    p.k = 0;
    p.rank = 0;
  }
  p.o1 = o1;
  p.zBase = 0;
  // Products that share C elements (a reduction loop outside the
  // product) run one after the other, in stream order.
  int64_t cSize[4] = {o0, o1, p.m, p.n};
  int64_t cStride[4] = {p.sc0, p.sc1, p.scm, p.scn};
  if (o0 * o1 > 1 && !disjoint(cSize, cStride)) {
    // (C = A·B: the first product overwrites, the rest add, which is right
    // for products sharing one C, a reduction outside the product; the
    // compiler asks to overwrite only C's that every product owns.)
    for (int64_t i = 0; i < o0; ++i)
      for (int64_t j = 0; j < o1; ++j) {
        GemmParams one = p;
        one.overwrite = p.overwrite && i == 0 && j == 0;
        GemmOperands op = operandsOf(p, i * o1 + j);
        one.a = op.a;
        one.b = op.b;
        one.c = op.c;
        one.lz = op.lz;
        one.o1 = 1;
        launchProducts(format, transposed, one, 1, 1, launch, precision);
      }
    return;
  }
  constexpr int64_t kMaxGrid = 65535; // gridDim.y and .z
  bool skinny = format == -1 && p.m <= kTileRows<1>;
  int64_t tileM = skinny ? kTileRows<1> : kTileRows<4>;
  int64_t batch = o0 * o1;
  int64_t tilesX = (p.n + kTileN - 1) / kTileN;
  // A fused down projection: one-dimensional grids of Z's tiles and C's
  // (gridDim.x < 2^31).
  int64_t zChunk = kMaxGrid;
  if (p.la)
    zChunk = std::max<int64_t>(
        1, std::min(zChunk, int64_t(0x7FFFFFFF) /
                                ((tilesX + (p.rank + kTileN - 1) / kTileN) *
                                 kMaxGrid)));
  for (int64_t z0 = 0; z0 < batch; z0 += zChunk)
    for (int64_t r0 = 0; r0 < p.m; r0 += kMaxGrid * tileM) {
      GemmLaunch l{format, transposed, skinny, p, 0, 0, 0};
      l.precision = precision;
      l.p.zBase = z0;
      l.p.a += r0 * p.sam;
      l.p.c += r0 * p.scm;
      if (l.p.lz)
        l.p.lz += r0 * p.slm;
      l.p.m = std::min(p.m - r0, kMaxGrid * tileM);
      l.gridX = unsigned(tilesX);
      l.gridY = unsigned((l.p.m + tileM - 1) / tileM);
      l.gridZ = unsigned(std::min(batch - z0, zChunk));
      if (l.p.la) {
        l.p.tiles[0] = l.gridX, l.p.tiles[1] = l.gridY, l.p.tiles[2] = l.gridZ;
        l.gridX = unsigned(downTiles(l.p) + l.gridX * l.gridY * l.gridZ);
        l.gridY = l.gridZ = 1;
      }
      launch(l);
    }
}

/// Calls `launch(const GemmLaunch &)` for the launches of the product with
/// qopt_kernel_sgemm's arguments (C += A·B, element offsets and strides
/// along (outer0, outer1, rows, columns), pointers as integers);
/// `overwrite`: C = A·B; `precision`: on the tensor cores (kGemmBF16,
/// kGemmTF32) or not.
template <typename Launch>
void planSgemm(int64_t o0, int64_t o1, int64_t m, int64_t n, int64_t k,
               int64_t pa, int64_t oa, int64_t sa0, int64_t sa1, int64_t sam,
               int64_t sak, int64_t pb, int64_t ob, int64_t sb0, int64_t sb1,
               int64_t sbk, int64_t sbn, int64_t pc, int64_t oc, int64_t sc0,
               int64_t sc1, int64_t scm, int64_t scn, Launch &&launch,
               bool overwrite = false, int precision = kGemmF32) {
  auto foldsM = [&](int64_t size, int64_t sa, int64_t sb, int64_t sc) {
    return size == 1 || (sb == 0 && sa == m * sam && sc == m * scm);
  };
  if (foldsM(o1, sa1, sb1, sc1)) {
    m *= o1;
    o1 = 1;
    if (foldsM(o0, sa0, sb0, sc0)) {
      m *= o0;
      o0 = 1;
    }
  }
  auto foldsK = [&](int64_t size, int64_t sa, int64_t sb, int64_t sc) {
    return size == 1 || (sc == 0 && sa == k * sak && sb == k * sbk);
  };
  if (o1 > 1 && foldsK(o1, sa1, sb1, sc1)) {
    k *= o1;
    o1 = 1;
    if (o0 > 1 && foldsK(o0, sa0, sb0, sc0)) {
      k *= o0;
      o0 = 1;
    }
  }
  GemmParams p{};
  p.a = reinterpret_cast<const float *>(pa) + oa;
  p.sa0 = sa0, p.sa1 = sa1, p.sam = sam, p.sak = sak;
  p.b = reinterpret_cast<const float *>(pb) + ob;
  p.sb0 = sb0, p.sb1 = sb1, p.sbk = sbk, p.sbn = sbn;
  p.c = reinterpret_cast<float *>(pc) + oc;
  p.sc0 = sc0, p.sc1 = sc1, p.scm = scm, p.scn = scn;
  p.m = m, p.n = n, p.k = k;
  p.overwrite = overwrite;
  launchProducts(-1, false, p, o0, o1, launch, precision);
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_GEMMLAUNCH_H
