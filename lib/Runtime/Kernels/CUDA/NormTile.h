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

#include "MemrefArgs.h"
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

/// Lane `lane`'s partial sum over row `row` of x, or with `squares` of
/// (x − shift)² (RMSNorm: shift 0, exactly x²).
QOPT_HD float normPartial(const NormParams &p, int64_t row, int lane,
                          bool squares, float shift) {
  const float *x = p.x + row * p.sx0;
  float sum = 0.0f;
  for (int64_t c = lane; c < p.cols; c += 32) {
    float v = x[c * p.sx1];
    sum = squares ? fmaf(v - shift, v - shift, sum) : sum + v;
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
#define QOPT_NORM_PARAMS                                                       \
  int64_t flags, double eps, QOPT_MEMREF2(x), QOPT_MEMREF1(g),                 \
      QOPT_MEMREF1(b), QOPT_MEMREF2(y)

/// The launch for qopt_cuda_norm's arguments (sizes checked by the
/// caller's IR).
inline void planNorm(int64_t flags, double eps, const MemrefView<2> &x,
                     const MemrefView<1> &gamma, const MemrefView<1> &beta,
                     const MemrefView<2> &y, NormParams &p, int64_t &blocks) {
  p = NormParams{};
  p.x = static_cast<const float *>(x.aligned) + x.offset;
  p.y = static_cast<float *>(const_cast<void *>(y.aligned)) + y.offset;
  p.gamma = static_cast<const float *>(gamma.aligned) + gamma.offset;
  p.beta = (flags & kNormBeta)
               ? static_cast<const float *>(beta.aligned) + beta.offset
               : nullptr;
  p.sx0 = x.stride[0];
  p.sx1 = x.stride[1];
  p.sy0 = y.stride[0];
  p.sy1 = y.stride[1];
  p.sg = gamma.stride[0];
  p.sb = beta.stride[0];
  p.rows = x.size[0];
  p.cols = x.size[1];
  p.eps = float(eps);
  p.flags = int(flags);
  blocks =
      p.cols == 0 ? 0 : (p.rows + kNormRowsPerBlock - 1) / kNormRowsPerBlock;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_NORMTILE_H
