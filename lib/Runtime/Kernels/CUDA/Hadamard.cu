//===- Hadamard.cu - fast Walsh-Hadamard transform over the last axis -----===//
//
// qopt.hadamard for power-of-two blocks in one launch (HadamardTile.h: the
// threads' work, shared with the CPU emulation, and the launch plan).
//
//===----------------------------------------------------------------------===//

#include "HadamardTile.h"
#include "Warp.cuh"

namespace {
/// The block's runs loaded into `buf` and transformed (unscaled), the
/// block's threads past the last barrier.
__device__ void hadamardBlock(const qopt_cuda::HadamardParams &p, float *buf,
                              int t) {
  qopt_cuda::hadamardLoad(p, blockIdx.x, buf, t);
  for (int64_t h = 1; h < p.n; h *= 2) {
    __syncthreads();
    qopt_cuda::hadamardStage(p, buf, h, t);
  }
  __syncthreads();
}
} // namespace

extern "C" __global__ void __launch_bounds__(qopt_cuda::kHadamardThreads)
    qopt_cuda_hadamard_f32(const __grid_constant__ qopt_cuda::HadamardParams p) {
  using namespace qopt_cuda;
  __shared__ float buf[kHadamardTile];
  int t = threadIdx.x;
  hadamardBlock(p, buf, t);
  hadamardStore(p, blockIdx.x, buf, t);
}

// The transform with per-token quantization of each row (HadamardTile.h):
// a block a row; the row's maximum through the warps' shuffles and shared
// memory.
extern "C" __global__ void __launch_bounds__(qopt_cuda::kHadamardThreads)
    qopt_cuda_hadamard_quant_f32(
        const __grid_constant__ qopt_cuda::HadamardQuantParams q) {
  using namespace qopt_cuda;
  __shared__ float buf[kHadamardTile];
  __shared__ float warpMaxima[kHadamardThreads / 32];
  int t = threadIdx.x;
  hadamardBlock(q.h, buf, t);
  float amax = warpMax(hadamardPartialMax(q, buf, t));
  if (t % 32 == 0)
    warpMaxima[t / 32] = amax;
  __syncthreads();
  amax = warpMaxima[0];
  for (int w = 1; w < kHadamardThreads / 32; ++w)
    amax = fmaxf(amax, warpMaxima[w]);
  hadamardQuantStore(q, blockIdx.x, buf, tokenStepOf(amax, q.bits), t);
}
