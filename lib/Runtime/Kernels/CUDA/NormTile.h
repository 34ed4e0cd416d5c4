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
#include "W8A8Tile.h"

#include <math.h>

namespace qopt_cuda {

constexpr int kNormThreads = 256, kNormRowsPerBlock = kNormThreads / 32;

enum NormFlags : int {
  kNormLayer = 1,     // LayerNorm (else RMSNorm)
  kNormBeta = 2,      // LayerNorm's beta given
  kNormGammaGrad = 4, // backward: gamma's gradient wanted
  kNormBetaGrad = 8,  // backward: beta's gradient wanted
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

/// Row `row`'s mean (0 for RMSNorm) and mean of squares (LayerNorm: of
/// squared deviations, a second pass as the CPU lowering), where
/// `sumLanes(partial)` sums partial(lane) over the warp's 32 lanes (the
/// kernels' shuffles; the emulation adds them in the shuffles' order).
template <typename SumLanes>
QOPT_HD void normStatistics(const NormParams &p, int64_t row, bool layer,
                            SumLanes &&sumLanes, float &mean,
                            float &meanSquare) {
  float count = float(p.cols);
  mean = 0.0f;
  if (layer)
    mean = sumLanes([&](int lane) {
             return normPartial(p, row, lane, /*squares=*/false, 0.0f);
           }) /
           count;
  meanSquare = sumLanes([&](int lane) {
                 return normPartial(p, row, lane, /*squares=*/true, mean);
               }) /
               count;
}

/// Element c of a row of y (x: the row of x), given the row's mean (0 for
/// RMSNorm) and denominator sqrt(mean of squares + eps).
QOPT_HD float normValue(const NormParams &p, const float *x, int64_t c,
                        float mean, float d) {
  float v = (x[c * p.sx1] - mean) / d * p.gamma[c * p.sg];
  if (p.flags & kNormBeta)
    v += p.beta[c * p.sb];
  return v;
}

/// Writes lane `lane`'s elements of row `row`, given the row's mean (0 for
/// RMSNorm) and the mean of squares or squared deviations.
QOPT_HD void normStore(const NormParams &p, int64_t row, int lane, float mean,
                       float meanSquare) {
  const float *x = p.x + row * p.sx0;
  float *y = p.y + row * p.sy0;
  float d = sqrtf(meanSquare + p.eps);
  for (int64_t c = lane; c < p.cols; c += 32)
    y[c * p.sy1] = normValue(p, x, c, mean, d);
}

//===-- The norm with per-token quantization (qopt_cuda_norm_quant) -------===//
//
// A norm whose output a per-token quantizer reads (SmoothQuant's W8A8: the
// smoothing is in gamma): the warp that normalizes a row also finds its
// step max|y| / qmax and writes its int8 codes and step, which the W8A8
// products read (kQLinearCodes), as qopt_cuda_quantize_rows would from y;
// y itself only where something else reads it.

/// One launch (by value): the norm's (y null: not written), codes [rows,
/// cols] (contiguous) and steps [rows].
struct NormQuantParams {
  NormParams norm;
  int8_t *codes;
  float *steps;
  int32_t bits, reserved;
};
static_assert(sizeof(NormQuantParams) == 128, "NormQuantParams' layout");

/// Lane `lane`'s largest magnitude of row `row` of y (infinity where one
/// is not finite), writing its elements of y where y is wanted.
QOPT_HD float normQuantPartialMax(const NormQuantParams &q, int64_t row,
                                  int lane, float mean, float meanSquare) {
  const NormParams &p = q.norm;
  const float *x = p.x + row * p.sx0;
  float d = sqrtf(meanSquare + p.eps), amax = 0.0f;
  for (int64_t c = lane; c < p.cols; c += 32) {
    float v = normValue(p, x, c, mean, d);
    if (p.y)
      p.y[row * p.sy0 + c * p.sy1] = v;
    amax = tokenMax(amax, v);
  }
  return amax;
}

/// Writes lane `lane`'s codes of row `row` (the same values of y again),
/// and lane 0 the step.
QOPT_HD void normQuantStore(const NormQuantParams &q, int64_t row, int lane,
                            float mean, float meanSquare, float step) {
  const NormParams &p = q.norm;
  const float *x = p.x + row * p.sx0;
  int8_t *codes = q.codes + row * p.cols;
  float d = sqrtf(meanSquare + p.eps);
  for (int64_t c = lane; c < p.cols; c += 32)
    codes[c] = tokenCode(normValue(p, x, c, mean, d), step, q.bits);
  if (lane == 0)
    q.steps[row] = step;
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

// qopt_cuda_norm_quant's parameters: qopt_cuda_norm's, then the bits,
// whether y is written, and the codes' and steps' pointers and offsets.
#define QOPT_NORM_QUANT_PARAMS                                                 \
  QOPT_NORM_PARAMS, int64_t bits, int64_t writeY, int64_t pc, int64_t oc,      \
      int64_t ps, int64_t os

/// The launch for qopt_cuda_norm_quant's arguments (blocks: one for every
/// 8 rows, also where a row is empty: its step is 1); null, or why not.
inline const char *
planNormQuant(int64_t flags, double eps, const MemrefView<2> &x,
              const MemrefView<1> &gamma, const MemrefView<1> &beta,
              const MemrefView<2> &y, int64_t bits, int64_t writeY, int64_t pc,
              int64_t oc, int64_t ps, int64_t os, NormQuantParams &q,
              int64_t &blocks) {
  if (const char *why = tokenFormatRefusal(bits))
    return why;
  q = NormQuantParams{};
  planNorm(flags, eps, x, gamma, beta, y, q.norm, blocks);
  if (!writeY)
    q.norm.y = nullptr;
  q.codes = reinterpret_cast<int8_t *>(pc) + oc;
  q.steps = reinterpret_cast<float *>(ps) + os;
  q.bits = int32_t(bits);
  blocks = (q.norm.rows + kNormRowsPerBlock - 1) / kNormRowsPerBlock;
  return nullptr;
}

//===-- The backward (qopt.norm_grad) -------------------------------------===//
//
// Three launches: qopt_cuda_norm_bwd_dx_f32, a warp per row as the forward
// (the row's statistics again, then Σ dy·gamma and Σ dy·gamma·x̂ through
// the shuffles, then dx; the row's mean and denominator kept in `stats`);
// where gamma's or beta's gradient is wanted, qopt_cuda_norm_bwd_cols_f32,
// a thread per column summing dy·x̂ and dy over a chunk of kNormBwdChunk
// rows (grid: chunks × column blocks) into `partials`, and
// qopt_cuda_norm_bwd_sum_f32, a thread per column adding the chunks in
// order: deterministic, no atomics.

constexpr int kNormBwdChunk = 64;

/// One backward launch (by value): x and dy [rows, cols] (strides sx0,
/// sx1, sd0, sd1), gamma [cols] (sg), dx [rows, cols] (sdx0, sdx1), the
/// gradients of gamma and beta [cols] (sdg, sdb); scratch: stats [rows][2]
/// and partials [chunks][2][cols] (contiguous).
struct NormBwdParams {
  const float *x, *gamma, *dy;
  float *dx, *dgamma, *dbeta, *stats, *partials;
  int64_t sx0, sx1, sg, sd0, sd1, sdx0, sdx1, sdg, sdb;
  int64_t rows, cols, chunks;
  float eps;
  int flags;
};
static_assert(sizeof(NormBwdParams) == 168, "NormBwdParams' layout");

/// The forward's view of the backward's x (normPartial reads it).
QOPT_HD NormParams forwardOf(const NormBwdParams &b) {
  NormParams p{};
  p.x = b.x;
  p.sx0 = b.sx0;
  p.sx1 = b.sx1;
  p.cols = b.cols;
  p.rows = b.rows;
  return p;
}

/// Lane `lane`'s partial sums over row `row` of dy·gamma (`plain`) and
/// dy·gamma·x̂ (`scaled`), x̂ = (x − mean) / d.
QOPT_HD void normBwdPartial(const NormBwdParams &p, int64_t row, int lane,
                            float mean, float d, float &plain, float &scaled) {
  const float *x = p.x + row * p.sx0, *dy = p.dy + row * p.sd0;
  plain = 0.0f;
  scaled = 0.0f;
  for (int64_t c = lane; c < p.cols; c += 32) {
    float g = dy[c * p.sd1] * p.gamma[c * p.sg];
    plain += g;
    scaled = fmaf(g, (x[c * p.sx1] - mean) / d, scaled);
  }
}

/// Writes lane `lane`'s elements of dx for row `row`, given the row's
/// mean (0 for RMSNorm), denominator d = sqrt(var + eps) and the means of
/// dy·gamma (LayerNorm only) and dy·gamma·x̂; lane 0 keeps mean and d.
QOPT_HD void normBwdStore(const NormBwdParams &p, int64_t row, int lane,
                          float mean, float d, float meanPlain,
                          float meanScaled) {
  const float *x = p.x + row * p.sx0, *dy = p.dy + row * p.sd0;
  float *dx = p.dx + row * p.sdx0;
  bool layer = p.flags & kNormLayer;
  for (int64_t c = lane; c < p.cols; c += 32) {
    float g = dy[c * p.sd1] * p.gamma[c * p.sg];
    float xhat = (x[c * p.sx1] - mean) / d;
    float v = layer ? g - meanPlain : g;
    dx[c * p.sdx1] = (v - xhat * meanScaled) / d;
  }
  if (lane == 0 && p.stats) {
    p.stats[2 * row] = mean;
    p.stats[2 * row + 1] = d;
  }
}

/// Thread `t` of column block `block`'s chunk `chunk`: Σ dy·x̂ and Σ dy of
/// its column over the chunk's rows, into partials.
QOPT_HD void normBwdColumns(const NormBwdParams &p, int64_t block,
                            int64_t chunk, int t) {
  int64_t c = block * kNormThreads + t;
  if (c >= p.cols)
    return;
  float sg = 0.0f, sb = 0.0f;
  int64_t end = chunk * kNormBwdChunk + kNormBwdChunk;
  for (int64_t r = chunk * kNormBwdChunk; r < p.rows && r < end; ++r) {
    float dy = p.dy[r * p.sd0 + c * p.sd1];
    float xhat =
        (p.x[r * p.sx0 + c * p.sx1] - p.stats[2 * r]) / p.stats[2 * r + 1];
    sg = fmaf(dy, xhat, sg);
    sb += dy;
  }
  p.partials[(2 * chunk) * p.cols + c] = sg;
  p.partials[(2 * chunk + 1) * p.cols + c] = sb;
}

/// Thread `t` of column block `block`: the chunks' sums in order.
QOPT_HD void normBwdSum(const NormBwdParams &p, int64_t block, int t) {
  int64_t c = block * kNormThreads + t;
  if (c >= p.cols)
    return;
  float sg = 0.0f, sb = 0.0f;
  for (int64_t k = 0; k < p.chunks; ++k) {
    sg += p.partials[(2 * k) * p.cols + c];
    sb += p.partials[(2 * k + 1) * p.cols + c];
  }
  if (p.flags & kNormGammaGrad)
    p.dgamma[c * p.sdg] = sg;
  if (p.flags & kNormBetaGrad)
    p.dbeta[c * p.sdb] = sb;
}

// qopt_cuda_norm_backward's parameters: flags, epsilon, then x [rows,
// cols], gamma [cols], dy [rows, cols], dx [rows, cols], and gamma's and
// beta's gradients [cols] as memrefs.
#define QOPT_NORM_BWD_PARAMS                                                   \
  int64_t flags, double eps, QOPT_MEMREF2(x), QOPT_MEMREF1(g),                 \
      QOPT_MEMREF2(dy), QOPT_MEMREF2(dx), QOPT_MEMREF1(dg), QOPT_MEMREF1(db)

/// The backward's launches for qopt_cuda_norm_backward's arguments: the
/// scratch it needs (`scratchFloats`: stats, then partials where gamma's
/// or beta's gradient is wanted), dx's blocks (a warp per row; 0 for no
/// rows) and the column blocks (0: no column launches; with no rows the
/// sum kernel alone writes zeros).
inline void planNormBackward(int64_t flags, double eps, const MemrefView<2> &x,
                             const MemrefView<1> &gamma,
                             const MemrefView<2> &dy, const MemrefView<2> &dx,
                             const MemrefView<1> &dgamma,
                             const MemrefView<1> &dbeta, NormBwdParams &p,
                             int64_t &scratchFloats, int64_t &rowBlocks,
                             int64_t &columnBlocks) {
  p = NormBwdParams{};
  auto in = [](const MemrefView<2> &v) {
    return static_cast<const float *>(v.aligned) + v.offset;
  };
  auto out = [](const void *aligned, int64_t offset) {
    return static_cast<float *>(const_cast<void *>(aligned)) + offset;
  };
  p.x = in(x);
  p.dy = in(dy);
  p.gamma = static_cast<const float *>(gamma.aligned) + gamma.offset;
  p.dx = out(dx.aligned, dx.offset);
  p.dgamma = out(dgamma.aligned, dgamma.offset);
  p.dbeta = out(dbeta.aligned, dbeta.offset);
  p.sx0 = x.stride[0];
  p.sx1 = x.stride[1];
  p.sg = gamma.stride[0];
  p.sd0 = dy.stride[0];
  p.sd1 = dy.stride[1];
  p.sdx0 = dx.stride[0];
  p.sdx1 = dx.stride[1];
  p.sdg = dgamma.stride[0];
  p.sdb = dbeta.stride[0];
  p.rows = x.size[0];
  p.cols = x.size[1];
  p.eps = float(eps);
  p.flags = int(flags);
  bool columns = (flags & (kNormGammaGrad | kNormBetaGrad)) && p.cols > 0;
  p.chunks = columns ? (p.rows + kNormBwdChunk - 1) / kNormBwdChunk : 0;
  scratchFloats = 2 * p.rows + 2 * p.chunks * p.cols + 1;
  rowBlocks =
      p.cols == 0 ? 0 : (p.rows + kNormRowsPerBlock - 1) / kNormRowsPerBlock;
  columnBlocks = columns ? (p.cols + kNormThreads - 1) / kNormThreads : 0;
}

/// Points the launch's scratch at `scratch` (planNormBackward's floats).
inline void setNormScratch(NormBwdParams &p, float *scratch) {
  p.stats = scratch;
  p.partials = scratch + 2 * p.rows;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_NORMTILE_H
