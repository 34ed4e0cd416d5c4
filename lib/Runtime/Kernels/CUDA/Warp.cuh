//===- Warp.cuh - warp-wide reductions of the kernel library -*- CUDA -*-===//
//
// The butterfly (__shfl_xor_sync, offsets 16, 8, 4, 2, 1) every lane ends
// with the same value of; the CPU emulation (CUDAEmulation.cpp's
// warpReduce) adds the lanes' values in this order.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_WARP_CUH
#define QOPT_RUNTIME_KERNELS_CUDA_WARP_CUH

namespace qopt_cuda {

__device__ __forceinline__ float warpMax(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ __forceinline__ float warpSum(float v) {
  for (int offset = 16; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_WARP_CUH
