//===- AdamWTile.h - per-thread work of the CUDA multi-tensor AdamW -*- C++
//-*-===//
//
// AdamW.cu's kernel updates many parameters in one launch (torch's
// multi_tensor_apply): a launch carries up to kAdamWTensors tensors'
// pointers by value, each tensor cut into chunks of kAdamWChunk elements,
// a block per chunk (a block finds its tensor by a binary search over the
// tensors' first blocks). Each element is OptimizerBuilder's formula
// (lib/Training/Optimizer.cpp) in its order, every operation rounded on
// its own (no contracted multiply-adds: __fmul_rn and the like on the
// device), so the update equals the CPU target's bit for bit.
//
// Each phase is a function of the thread's index, written once for the
// device and the host (CUDAEmulation.cpp runs the threads in turn).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_ADAMWTILE_H
#define QOPT_RUNTIME_KERNELS_CUDA_ADAMWTILE_H

#include "MemrefArgs.h"
#include "QLinearTile.h"

#include <math.h>

namespace qopt_cuda {

constexpr int kAdamWThreads = 256;
/// Elements a block updates, and the tensors a launch carries.
constexpr int64_t kAdamWChunk = 4096;
constexpr int kAdamWTensors = 256;

/// One parameter: its value, gradient and moments, where the new ones go
/// (any of them may be the old ones' buffers: elementwise), its elements,
/// and the blocks of the launch before its own.
struct AdamWTensor {
  const float *p, *g, *m, *v;
  float *pOut, *mOut, *vOut;
  int64_t n, firstBlock;
};

/// The step's scalars: the step size, sqrt of the second bias correction,
/// 1 − lr · weight_decay, the clipping coefficient (1 where unused). In
/// device memory: the compiled step computes them in a one-thread kernel
/// from the step counter and the gradients' norm, so the host need not
/// wait for either.
struct AdamWStep {
  float stepSize, bc2Sqrt, decay, clip;
};

/// One launch (by value): where the step's scalars are, the body's
/// constants (f32, as the compiler rounded them), which of decay and clip
/// apply, and the tensors.
struct AdamWParams {
  const AdamWStep *step;
  /// 1 − beta1, beta2, 1 − beta2, eps.
  float c1, b2, c2, eps;
  /// Flags: 1 decay (p · decay first), 2 clip (g · clip first).
  int32_t flags, count;
  AdamWTensor t[kAdamWTensors];
};
// bench/gpu/structs.py packs it (32 + 72 · 256 bytes).
static_assert(sizeof(AdamWParams) == 18464, "AdamWParams' layout");

// Every operation rounded on its own on the device too.
#if defined(__CUDA_ARCH__)
QOPT_HD float adamwMul(float a, float b) { return __fmul_rn(a, b); }
QOPT_HD float adamwAdd(float a, float b) { return __fadd_rn(a, b); }
QOPT_HD float adamwSub(float a, float b) { return __fsub_rn(a, b); }
QOPT_HD float adamwDiv(float a, float b) { return __fdiv_rn(a, b); }
QOPT_HD float adamwSqrt(float a) { return __fsqrt_rn(a); }
#else
QOPT_HD float adamwMul(float a, float b) { return a * b; }
QOPT_HD float adamwAdd(float a, float b) { return a + b; }
QOPT_HD float adamwSub(float a, float b) { return a - b; }
QOPT_HD float adamwDiv(float a, float b) { return a / b; }
QOPT_HD float adamwSqrt(float a) { return sqrtf(a); }
#endif

/// Element i of tensor `t`: OptimizerBuilder's AdamW in its order.
QOPT_HD void adamwElement(const AdamWParams &a, const AdamWStep &s,
                          const AdamWTensor &t, int64_t i) {
  float p = t.p[i], g = t.g[i], m = t.m[i], v = t.v[i];
  if (a.flags & 2)
    g = adamwMul(g, s.clip);
  if (a.flags & 1)
    p = adamwMul(p, s.decay);
  // exp_avg.lerp_(grad, 1 − beta1); exp_avg_sq.mul_(beta2).addcmul_(grad,
  // grad, 1 − beta2).
  float mNew = adamwAdd(m, adamwMul(a.c1, adamwSub(g, m)));
  float vNew = adamwAdd(adamwMul(v, a.b2), adamwMul(adamwMul(g, g), a.c2));
  float denom = adamwAdd(adamwDiv(adamwSqrt(vNew), s.bc2Sqrt), a.eps);
  t.pOut[i] = adamwSub(p, adamwMul(s.stepSize, adamwDiv(mNew, denom)));
  t.mOut[i] = mNew;
  t.vOut[i] = vNew;
}

/// The tensor block `block` updates: the last whose first block is at most
/// `block` (every tensor has one block at least).
QOPT_HD int adamwTensorOf(const AdamWParams &a, int64_t block) {
  int lo = 0, hi = a.count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (a.t[mid].firstBlock <= block)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/// Thread t's elements of block `block`.
QOPT_HD void adamwBlock(const AdamWParams &a, int64_t block, int t) {
  const AdamWTensor &x = a.t[adamwTensorOf(a, block)];
  const AdamWStep s = *a.step;
  int64_t begin = (block - x.firstBlock) * kAdamWChunk;
  int64_t end = begin + kAdamWChunk < x.n ? begin + kAdamWChunk : x.n;
  for (int64_t i = begin + t; i < end; i += kAdamWThreads)
    adamwElement(a, s, x, i);
}

// qopt_cuda_adamw's parameters: the tensors, flags (1: decay, 2: clip),
// the step's scalars (AdamWStep: 4 f32 in device memory), the body's
// constants (1 − beta1, beta2, 1 − beta2, eps), then the table [count, 8]
// of i64 (host memory): each tensor's p, g, m, v, new p, new m, new v
// addresses and its elements.
#define QOPT_ADAMW_PARAMS                                                      \
  int64_t count, int64_t flags, QOPT_MEMREF1(step), float c1, float b2,        \
      float c2, float eps, QOPT_MEMREF2(table)

/// The launches for qopt_cuda_adamw's tensors `first` to the end: fills
/// `a` with as many as one launch carries and returns the blocks (0 when
/// none are left: `first` advances past those taken). Null `why` or why
/// the table cannot be taken.
inline int64_t planAdamW(int64_t count, int64_t flags,
                         const MemrefView<1> &step, float c1, float b2,
                         float c2, float eps, const MemrefView<2> &table,
                         int64_t &first, AdamWParams &a, const char *&why) {
  why = nullptr;
  if (table.size[1] != 8 || table.size[0] < count || count < 0) {
    why = "a table that is not [count, 8]";
    return 0;
  }
  if (step.size[0] != 4 || step.stride[0] != 1) {
    why = "step scalars that are not 4 contiguous floats";
    return 0;
  }
  a.step = reinterpret_cast<const AdamWStep *>(
      static_cast<const float *>(step.aligned) + step.offset);
  a.c1 = c1;
  a.b2 = b2;
  a.c2 = c2;
  a.eps = eps;
  a.flags = int32_t(flags);
  a.count = 0;
  const int64_t *rows =
      static_cast<const int64_t *>(table.aligned) + table.offset;
  int64_t blocks = 0;
  for (; first < count && a.count < kAdamWTensors; ++first) {
    const int64_t *row = rows + first * table.stride[0];
    auto at = [&](int k) { return row[k * table.stride[1]]; };
    if (at(7) < 0) {
      why = "a tensor of a negative size";
      return 0;
    }
    if (at(7) == 0)
      continue; // (nothing to update)
    AdamWTensor &x = a.t[a.count++];
    x.p = reinterpret_cast<const float *>(at(0));
    x.g = reinterpret_cast<const float *>(at(1));
    x.m = reinterpret_cast<const float *>(at(2));
    x.v = reinterpret_cast<const float *>(at(3));
    x.pOut = reinterpret_cast<float *>(at(4));
    x.mOut = reinterpret_cast<float *>(at(5));
    x.vOut = reinterpret_cast<float *>(at(6));
    x.n = at(7);
    x.firstBlock = blocks;
    blocks += (x.n + kAdamWChunk - 1) / kAdamWChunk;
  }
  return blocks;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_ADAMWTILE_H
