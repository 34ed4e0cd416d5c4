//===- NormTile.h - per-lane work of the CUDA RMSNorm / LayerNorm -*- C++
//-*-===//
//
// Norm.cu's kernel normalizes rows over the last axis, a warp per row (8
// rows per block of 256 threads): lane l reads elements l, l + 32, …, the
// warp's shuffles add the lanes' partial sums, and every lane writes its
// elements of y. RMSNorm: y = x / sqrt(mean(x²) + eps) · gamma; LayerNorm
// (two passes, as the CPU lowering: the mean, then the mean of squared
// deviations): y = (x − mean) / sqrt(var + eps) · gamma (+ beta). One
// launch per norm, where the generated code has a thread per row summing
// the whole row and a second kernel for the division.
//
// The lanes' work is written once for the device and the host; the CPU
// emulation (CUDAEmulation.cpp) adds the 32 lanes' partial sums in the
// order of the kernel's butterfly.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_NORMTILE_H
#define QOPT_RUNTIME_KERNELS_CUDA_NORMTILE_H

#include "QLinearTile.h"

#include <math.h>

namespace qopt_cuda {

constexpr int kNormThreads = 256, kNormRowsPerBlock = kNormThreads / 32;

enum NormFlags : int {
  kNormLayer = 1, // LayerNorm (else RMSNorm)
  kNormBeta = 2,  // LayerNorm's beta given
};

/// One launch (by value): x and y [rows, cols] (strides sx0, sx1, sy0,
/// sy1), gamma and beta [cols] (strides sg, sb).
struct NormParams {
  const float *x;
  float *y;
  const float *gamma, *beta;
  int64_t sx0, sx1, sy0, sy1, sg, sb;
  int64_t rows, cols;
  float eps;
  int flags;
};
// bench/gpu/norm.py packs it ("<4Q6q2qfi").
static_assert(sizeof(NormParams) == 104, "NormParams' layout");

/// Lane `lane`'s partial sum over row `row` of f(x) where f is x (what ==
/// 0), x² (1) or (x − shift)² (2).
QOPT_HD float normPartial(const NormParams &p, int64_t row, int lane, int what,
                          float shift) {
  const float *x = p.x + row * p.sx0;
  float sum = 0.0f;
  for (int64_t c = lane; c < p.cols; c += 32) {
    float v = x[c * p.sx1];
    if (what == 1)
      sum = fmaf(v, v, sum);
    else if (what == 2)
      sum = fmaf(v - shift, v - shift, sum);
    else
      sum += v;
  }
  return sum;
}

/// Writes lane `lane`'s elements of row `row`, given the row's mean (0 for
/// RMSNorm) and the mean of squares or squared deviations.
QOPT_HD void normStore(const NormParams &p, int64_t row, int lane, float mean,
                       float meanSquare) {
  const float *x = p.x + row * p.sx0;
  float *y = p.y + row * p.sy0;
  float d = sqrtf(meanSquare + p.eps);
  for (int64_t c = lane; c < p.cols; c += 32) {
    float v = (x[c * p.sx1] - mean) / d * p.gamma[c * p.sg];
    if (p.flags & kNormBeta)
      v += p.beta[c * p.sb];
    y[c * p.sy1] = v;
  }
}

// qopt_cuda_norm's parameters: flags, epsilon, then x [rows, cols], gamma
// and beta [cols] (gamma where there is no beta) and y as memrefs.
#define QOPT_NORM_MEMREF1(p)                                                   \
  const void *, const void *p##Aligned, int64_t p##Offset, int64_t p##Size,    \
      int64_t p##Stride
#define QOPT_NORM_MEMREF2(p)                                                   \
  const void *, const void *p##Aligned, int64_t p##Offset, int64_t p##Size0,   \
      int64_t p##Size1, int64_t p##Stride0, int64_t p##Stride1
#define QOPT_NORM_PARAMS                                                       \
  int64_t flags, double eps, QOPT_NORM_MEMREF2(x), QOPT_NORM_MEMREF1(g),       \
      QOPT_NORM_MEMREF1(b), QOPT_NORM_MEMREF2(y)

/// The launch for qopt_cuda_norm's arguments (sizes checked by the
/// caller's IR).
inline void planNorm(int64_t flags, double eps, const void *x, int64_t xOffset,
                     int64_t rows, int64_t cols, int64_t sx0, int64_t sx1,
                     const void *g, int64_t gOffset, int64_t sg, const void *b,
                     int64_t bOffset, int64_t sb, const void *y,
                     int64_t yOffset, int64_t sy0, int64_t sy1, NormParams &p,
                     int64_t &blocks) {
  p = NormParams{};
  p.x = static_cast<const float *>(x) + xOffset;
  p.y = static_cast<float *>(const_cast<void *>(y)) + yOffset;
  p.gamma = static_cast<const float *>(g) + gOffset;
  p.beta =
      (flags & kNormBeta) ? static_cast<const float *>(b) + bOffset : nullptr;
  p.sx0 = sx0;
  p.sx1 = sx1;
  p.sy0 = sy0;
  p.sy1 = sy1;
  p.sg = sg;
  p.sb = sb;
  p.rows = rows;
  p.cols = cols;
  p.eps = float(eps);
  p.flags = int(flags);
  blocks = (rows + kNormRowsPerBlock - 1) / kNormRowsPerBlock;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_NORMTILE_H
