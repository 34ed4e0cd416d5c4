//===- MemrefArgs.h - MLIR memref arguments of the library's entries -*- C++
//-*-===//
//
// The kernel-library entries that convert-qopt-to-linalg calls before
// bufferization (attention, Hadamard, norms) take their buffers as MLIR
// passes a memref to an external function: the allocated pointer (unused
// here), the aligned pointer, the offset, the sizes, the strides. These
// macros spell such parameters and gather them into a MemrefView.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_MEMREFARGS_H
#define QOPT_RUNTIME_KERNELS_CUDA_MEMREFARGS_H

#include <stdint.h>

namespace qopt_cuda {

/// A rank-R memref's fields (element (i…) at aligned[offset + Σ i·stride]).
template <int R> struct MemrefView {
  const void *aligned;
  int64_t offset, size[R], stride[R];
};

} // namespace qopt_cuda

#define QOPT_MEMREF1(p)                                                        \
  const void *, const void *p##Aligned, int64_t p##Offset, int64_t p##Size0,   \
      int64_t p##Stride0
#define QOPT_MEMREF2(p)                                                        \
  const void *, const void *p##Aligned, int64_t p##Offset, int64_t p##Size0,   \
      int64_t p##Size1, int64_t p##Stride0, int64_t p##Stride1
#define QOPT_MEMREF4(p)                                                        \
  const void *, const void *p##Aligned, int64_t p##Offset, int64_t p##Size0,   \
      int64_t p##Size1, int64_t p##Size2, int64_t p##Size3,                    \
      int64_t p##Stride0, int64_t p##Stride1, int64_t p##Stride2,              \
      int64_t p##Stride3

#define QOPT_VIEW1(p)                                                          \
  qopt_cuda::MemrefView<1> {                                                   \
    p##Aligned, p##Offset, {p##Size0}, { p##Stride0 }                          \
  }
#define QOPT_VIEW2(p)                                                          \
  qopt_cuda::MemrefView<2> {                                                   \
    p##Aligned, p##Offset, {p##Size0, p##Size1}, { p##Stride0, p##Stride1 }    \
  }
#define QOPT_VIEW4(p)                                                          \
  qopt_cuda::MemrefView<4> {                                                   \
    p##Aligned, p##Offset, {p##Size0, p##Size1, p##Size2, p##Size3}, {         \
      p##Stride0, p##Stride1, p##Stride2, p##Stride3                           \
    }                                                                          \
  }

#endif // QOPT_RUNTIME_KERNELS_CUDA_MEMREFARGS_H
