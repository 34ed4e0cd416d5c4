//===- Norm.cu - RMSNorm and LayerNorm, a warp per row --------------------===//
//
// qopt.rms_norm / qopt.layer_norm over the last axis in one launch
// (NormTile.h: the lanes' work, shared with the CPU emulation).
//
//===----------------------------------------------------------------------===//

#include "NormTile.h"
#include "Warp.cuh"

extern "C" __global__ void __launch_bounds__(qopt_cuda::kNormThreads)
    qopt_cuda_norm_f32(const __grid_constant__ qopt_cuda::NormParams p) {
  using namespace qopt_cuda;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t row = int64_t(blockIdx.x) * kNormRowsPerBlock + warp;
  if (row >= p.rows) // (the same for the whole warp)
    return;
  float mean, meanSquare;
  normStatistics(
      p, row, p.flags & kNormLayer,
      [&](auto partial) { return warpSum(partial(lane)); }, mean, meanSquare);
  normStore(p, row, lane, mean, meanSquare);
}

// A norm whose output a per-token quantizer reads: y's int8 codes and
// each row's step (y too where it is wanted).
extern "C" __global__ void __launch_bounds__(qopt_cuda::kNormThreads)
    qopt_cuda_norm_quant_f32(
        const __grid_constant__ qopt_cuda::NormQuantParams q) {
  using namespace qopt_cuda;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t row = int64_t(blockIdx.x) * kNormRowsPerBlock + warp;
  if (row >= q.norm.rows) // (the same for the whole warp)
    return;
  float mean, meanSquare;
  normStatistics(
      q.norm, row, q.norm.flags & kNormLayer,
      [&](auto partial) { return warpSum(partial(lane)); }, mean, meanSquare);
  float amax = warpMax(normQuantPartialMax(q, row, lane, mean, meanSquare));
  normQuantStore(q, row, lane, mean, meanSquare, tokenStepOf(amax, q.bits));
}

// The backward (NormTile.h): dx a warp per row, then gamma's and beta's
// gradients as column sums over chunks of rows, then over the chunks.
extern "C" __global__ void __launch_bounds__(qopt_cuda::kNormThreads)
    qopt_cuda_norm_bwd_dx_f32(const __grid_constant__ qopt_cuda::NormBwdParams
                                  p) {
  using namespace qopt_cuda;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t row = int64_t(blockIdx.x) * kNormRowsPerBlock + warp;
  if (row >= p.rows) // (the same for the whole warp)
    return;
  float count = float(p.cols), mean, meanSquare;
  normStatistics(
      forwardOf(p), row, p.flags & kNormLayer,
      [&](auto partial) { return warpSum(partial(lane)); }, mean, meanSquare);
  float d = sqrtf(meanSquare + p.eps), plain, scaled;
  normBwdPartial(p, row, lane, mean, d, plain, scaled);
  normBwdStore(p, row, lane, mean, d, warpSum(plain) / count,
               warpSum(scaled) / count);
}

extern "C" __global__ void __launch_bounds__(qopt_cuda::kNormThreads)
    qopt_cuda_norm_bwd_cols_f32(
        const __grid_constant__ qopt_cuda::NormBwdParams p) {
  qopt_cuda::normBwdColumns(p, /*block=*/blockIdx.y, /*chunk=*/blockIdx.x,
                            threadIdx.x);
}

extern "C" __global__ void __launch_bounds__(qopt_cuda::kNormThreads)
    qopt_cuda_norm_bwd_sum_f32(
        const __grid_constant__ qopt_cuda::NormBwdParams p) {
  qopt_cuda::normBwdSum(p, blockIdx.x, threadIdx.x);
}
