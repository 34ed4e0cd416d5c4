//===- Hadamard.cu - fast Walsh-Hadamard transform over the last axis -----===//
//
// qopt.hadamard over the last axis in one launch (HadamardTile.h: the
// threads' work, shared with the CPU emulation, and the launch plan):
// power-of-two blocks of up to 8192 in static shared memory, and with or
// without per-token quantization; orders base · 2^k and longer runs or rows
// in dynamic shared memory (qopt_cuda_hadamard_mixed_f32); blocks past
// 23040 in two launches, the second qopt_cuda_hadamard_columns_f32.
//
//===----------------------------------------------------------------------===//

#include "HadamardTile.h"
#include "Warp.cuh"

namespace {
/// The block's runs loaded into `buf` and the butterflies over each run of
/// `power` (n but for the mixed kernel) done, unscaled; the block's
/// threads past the last barrier.
__device__ void hadamardBlock(const qopt_cuda::HadamardParams &p, float *buf,
                              int t, int64_t power) {
  qopt_cuda::hadamardLoad(p, blockIdx.x, buf, t);
  for (int64_t h = 1; h < power; h *= 2) {
    __syncthreads();
    qopt_cuda::hadamardStage(p, buf, h, t);
  }
  __syncthreads();
}

/// Row blockIdx.x's max|y| (the warps' shuffles, then their maxima through
/// shared memory), then its codes and step (and y where wanted).
__device__ void quantizeRow(const qopt_cuda::HadamardQuantParams &q,
                            const float *buf, float *warpMaxima, int t) {
  using namespace qopt_cuda;
  float amax = warpMax(hadamardPartialMax(q, buf, t));
  if (t % 32 == 0)
    warpMaxima[t / 32] = amax;
  __syncthreads();
  amax = warpMaxima[0];
  for (int w = 1; w < kHadamardThreads / 32; ++w)
    amax = fmaxf(amax, warpMaxima[w]);
  hadamardQuantStore(q, blockIdx.x, buf, tokenStepOf(amax, q.bits), t);
}
} // namespace

extern "C" __global__ void __launch_bounds__(qopt_cuda::kHadamardThreads)
    qopt_cuda_hadamard_f32(const __grid_constant__ qopt_cuda::HadamardParams p) {
  using namespace qopt_cuda;
  __shared__ float buf[kHadamardTile];
  int t = threadIdx.x;
  hadamardBlock(p, buf, t, p.n);
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
  hadamardBlock(q.h, buf, t, q.h.n);
  quantizeRow(q, buf, warpMaxima, t);
}

// Orders base · 2^k, and runs or quantized rows past the static tile
// (HadamardTile.h): the butterflies over runs of `power`, then H_base
// across them in passes of whole columns, all in dynamic shared memory
// (hadamardMixedShared(m) bytes: the runs, H_base's bits, the warps'
// maxima); then the scaled store, or the row's codes and step.
extern "C" __global__ void __launch_bounds__(qopt_cuda::kHadamardThreads)
    qopt_cuda_hadamard_mixed_f32(
        const __grid_constant__ qopt_cuda::HadamardMixedParams m) {
  using namespace qopt_cuda;
  extern __shared__ float shared[];
  float *buf = shared;
  uint32_t *columns =
      reinterpret_cast<uint32_t *>(shared + hadamardElements(m.q.h));
  float *warpMaxima = reinterpret_cast<float *>(columns + m.base * m.words);
  int t = threadIdx.x;
  for (int64_t i = t; i < m.base * m.words; i += kHadamardThreads)
    columns[i] = m.columns[i];
  hadamardBlock(m.q.h, buf, t, m.power);
  for (int64_t pass = 0; pass < hadamardMixPasses(m); ++pass) {
    float acc[32];
    int64_t col;
    int w;
    bool mine = hadamardMixSlot(m, pass, t, col, w);
    if (mine)
      hadamardMix(m, buf, columns, col, w, acc);
    __syncthreads();
    if (mine)
      hadamardMixStore(m, buf, col, w, acc);
    __syncthreads();
  }
  if (m.q.codes)
    quantizeRow(m.q, buf, warpMaxima, t);
  else
    hadamardStore(m.q.h, blockIdx.x, buf, t);
}

// The second launch for blocks past 23040 (HadamardTile.h's split plan): M
// across the P1 runs of P2 of each block of n, in place, 32 columns a
// block (their P1 values and M's bits in static shared memory), scaled.
extern "C" __global__ void __launch_bounds__(qopt_cuda::kHadamardThreads)
    qopt_cuda_hadamard_columns_f32(
        const __grid_constant__ qopt_cuda::HadamardMixedParams m) {
  using namespace qopt_cuda;
  __shared__ float tile[kHadamardMaxBase * kHadamardColumnTile];
  __shared__ uint32_t columns[kHadamardMaxBase * kHadamardBaseWords];
  int t = threadIdx.x;
  for (int64_t i = t; i < m.base * m.words; i += kHadamardThreads)
    columns[i] = m.columns[i];
  hadamardColumnsLoad(m, blockIdx.x, tile, t);
  __syncthreads();
  hadamardColumnsStore(m, blockIdx.x, tile, columns, t);
}
