//===- W8A8.cu - quantized products on per-token int8 activations -------===//
//
// A quantized product whose activations a per-token quantizer rounds
// (SmoothQuant's W8A8, W4A8, W4A4) in two launches (W8A8Tile.h): the rows
// of x quantized to int8 codes and a step each, then a tiled integer GEMM
// (int8 mma on the tensor cores) through the weight's codes, scaled per
// group and per row.
//
// Entry points (extern "C", one argument by value):
// qopt_cuda_token_quant (TokenQuantParams; kTokenThreads threads, a warp
// per row, grid (ceil(m / 8), products)) and
// qopt_cuda_gemm_w8a8_{int4,uint4,int8} (W8A8Params; kGemmThreads threads,
// grid (ceil(n / 64), ceil(m / 64), products)), with `_m16` tiles of 16
// rows for products of at most 16 (decode); for E4M3 tokens and FP8
// weights qopt_cuda_gemm_w8a8_{fp8e4m3,fp8e5m2}[_m16] (the same launch, on
// the tensor cores: the codes as f16, mma.sync m16n8k16).
//
//===----------------------------------------------------------------------===//

#include "W8A8Tile.h"
#include "Warp.cuh"

extern "C" __global__ void __launch_bounds__(qopt_cuda::kTokenThreads)
    qopt_cuda_token_quant(const __grid_constant__ qopt_cuda::TokenQuantParams
                              p) {
  using namespace qopt_cuda;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t r = int64_t(blockIdx.x) * kTokenRowsPerBlock + warp;
  if (r >= p.m) // (the same for the whole warp)
    return;
  TokenRow row = tokenRow(p, blockIdx.y, r);
  float amax = warpMax(tokenPartialMax(p, row, lane));
  tokenStore(p, row, lane, tokenStepOf(amax, p.bits));
}

namespace {

using namespace qopt_cuda;

template <int F, int MI> __device__ void w8a8(const W8A8Params &p) {
  __shared__ W8A8Shared<MI> s;
  int t = threadIdx.x;
  W8A8Product product = w8a8Product(p, blockIdx.z);
  int64_t m0 = w8a8Row0(p, blockIdx.y, kTileRows<MI>),
          n0 = int64_t(blockIdx.x) * kTileN;
  int32_t acc[MI][kMicro] = {};
  float sum[MI][kMicro] = {};
  GroupCursor group(p);
  for (int64_t k0 = 0; k0 < p.k; k0 += kW8TileK) {
    loadCodesA(p, product.a, m0, k0, t, s);
    loadCodesB<F, MI>(p, k0, group.g, n0, t, s);
    __syncthreads();
    multiplyCodes(s, t, acc);
    __syncthreads();
    if (group.endsAt(k0)) {
      flushGroup(p, n0, group.g, t, acc, sum);
      group.next(p);
    }
  }
  storeW8A8(p, product.steps, product.c, m0, n0, t, sum);
}

/// E4M3 tokens times an FP8 weight (F) on the tensor cores: the codes as
/// f16, one scale per row of W (or for W), no groups.
template <int F, int MI> __device__ void w8a8FP8(const W8A8Params &p) {
  __shared__ GemmSharedF16<MI> s;
  int t = threadIdx.x;
  W8A8Product product = w8a8Product(p, blockIdx.z);
  int64_t m0 = w8a8Row0(p, blockIdx.y, kTileRows<MI>),
          n0 = int64_t(blockIdx.x) * kTileN;
  float acc[MI][kMicro] = {};
  for (int64_t k0 = 0; k0 < p.k; k0 += kW8TileK) {
    loadFP8A(p, product.a, m0, k0, t, s);
    loadFP8B<F>(p, k0, n0, t, s);
    __syncthreads();
    multiplyTile(s, t, acc);
    __syncthreads();
  }
  storeW8A8<true>(p, product.steps, product.c, m0, n0, t, acc);
}

} // namespace

// (kernel: w8a8 for integer codes, w8a8FP8 for FP8 ones.)
#define QOPT_W8A8_ENTRY(name, kernel, format, rows)                            \
  extern "C" __global__ void __launch_bounds__(kGemmThreads, 2)                \
      name(const __grid_constant__ W8A8Params p) {                             \
    kernel<format, rows>(p);                                                   \
  }

QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_fp8e4m3, w8a8FP8, kFP8E4M3, 4)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_fp8e5m2, w8a8FP8, kFP8E5M2, 4)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_fp8e4m3_m16, w8a8FP8, kFP8E4M3, 1)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_fp8e5m2_m16, w8a8FP8, kFP8E5M2, 1)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_int4, w8a8, kInt4, 4)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_uint4, w8a8, kUInt4, 4)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_int8, w8a8, kInt8, 4)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_int4_m16, w8a8, kInt4, 1)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_uint4_m16, w8a8, kUInt4, 1)
QOPT_W8A8_ENTRY(qopt_cuda_gemm_w8a8_int8_m16, w8a8, kInt8, 1)
