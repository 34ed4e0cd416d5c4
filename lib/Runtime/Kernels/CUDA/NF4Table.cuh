//===- NF4Table.cuh - the formats' code tables ------------------*- CUDA -*-===//
//
// NF4's 16 values in constant memory, and fillTable, which writes a
// format's table (NF4's, or FP8's 256 values) into shared memory, where
// the threads index it with different codes (constant memory would
// serialize them). Shared by the kernels of the library's one translation
// unit (Library.cu).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_NF4TABLE_CUH
#define QOPT_RUNTIME_KERNELS_CUDA_NF4TABLE_CUH

#include "QLinearTile.h"

#include "qopt/Support/QuantFormats.h"

namespace qopt_cuda {
__constant__ float kNF4Values[16] = {
    qopt::kNF4Codes[0],  qopt::kNF4Codes[1],  qopt::kNF4Codes[2],
    qopt::kNF4Codes[3],  qopt::kNF4Codes[4],  qopt::kNF4Codes[5],
    qopt::kNF4Codes[6],  qopt::kNF4Codes[7],  qopt::kNF4Codes[8],
    qopt::kNF4Codes[9],  qopt::kNF4Codes[10], qopt::kNF4Codes[11],
    qopt::kNF4Codes[12], qopt::kNF4Codes[13], qopt::kNF4Codes[14],
    qopt::kNF4Codes[15]};

/// Fills the format's code table in shared memory (all the block's threads
/// call it; it ends with a barrier when there is a table).
template <int F> __device__ void fillTable(float *table) {
  if constexpr (kTableSize<F> != 0) {
    for (int i = threadIdx.x; i < kTableSize<F>; i += blockDim.x)
      table[i] = F == kNF4 ? kNF4Values[i] : fp8Value<F>(uint32_t(i));
    __syncthreads();
  }
}
/// Copies double-quantized scales' table (a kernel parameter) to shared
/// memory when there is one (all the block's threads call it; then a
/// barrier).
__device__ inline void fillScaleTable(const NestedScales *dq, float *table) {
  if (!dq || !dq->codes)
    return;
  for (int i = threadIdx.x; i < 256; i += blockDim.x)
    table[i] = dq->table[i];
  __syncthreads();
}
} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_NF4TABLE_CUH
