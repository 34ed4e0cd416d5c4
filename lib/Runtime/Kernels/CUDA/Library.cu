//===- Library.cu - the CUDA kernel library, one translation unit --------===//
//
// nvcc builds this file into the library's fatbin (one module, loaded by
// the CUDA host library at its first call) and into the per-architecture
// cubins whose ptxas reports test/Runtime/cuda-kernels.test checks.
//
//===----------------------------------------------------------------------===//

#include "Gemm.cu"
#include "QLinear.cu"
#include "Attention.cu"
#include "Hadamard.cu"
#include "Norm.cu"
#include "W8A8.cu"
#include "AdamW.cu"
