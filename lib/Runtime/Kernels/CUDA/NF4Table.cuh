//===- NF4Table.cuh - NF4's 16 values in constant memory --------*- CUDA -*-===//
//
// Shared by the kernels of the library's one translation unit (Library.cu).
// Kernels copy the table to shared memory first: threads index it with
// different codes, which serializes constant-memory reads.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_NF4TABLE_CUH
#define QOPT_RUNTIME_KERNELS_CUDA_NF4TABLE_CUH

#include "qopt/Support/QuantFormats.h"

namespace qopt_cuda {
__constant__ float kNF4Values[16] = {
    qopt::kNF4Codes[0],  qopt::kNF4Codes[1],  qopt::kNF4Codes[2],
    qopt::kNF4Codes[3],  qopt::kNF4Codes[4],  qopt::kNF4Codes[5],
    qopt::kNF4Codes[6],  qopt::kNF4Codes[7],  qopt::kNF4Codes[8],
    qopt::kNF4Codes[9],  qopt::kNF4Codes[10], qopt::kNF4Codes[11],
    qopt::kNF4Codes[12], qopt::kNF4Codes[13], qopt::kNF4Codes[14],
    qopt::kNF4Codes[15]};
} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_NF4TABLE_CUH
