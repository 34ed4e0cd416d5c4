//===- HadamardTile.h - per-thread work of the CUDA Hadamard transform -*- C++
//-*-===//
//
// Hadamard.cu's kernel applies qopt.hadamard over the last axis for
// power-of-two blocks n: y = scale · H_n · diag(signs) · x for each run of
// n consecutive elements. A block of 256 threads loads kHadamardTile
// elements (max(n, 2048): whole runs) into shared memory, signs applied,
// then runs log2(n) butterfly stages (pairs i, i + h within each run; a
// barrier between stages) and stores the scaled result: one launch and one
// pass over memory, where the CPU lowering's products are three.
//
// Each phase is a function of the thread's index, written once for the
// device and the host (CUDAEmulation.cpp runs the 256 threads in turn
// between the barriers).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_HADAMARDTILE_H
#define QOPT_RUNTIME_KERNELS_CUDA_HADAMARDTILE_H

#include "MemrefArgs.h"
#include "QLinearTile.h"
#include "W8A8Tile.h"

namespace qopt_cuda {

constexpr int kHadamardThreads = 256;
/// The largest block the kernel takes, and the elements a block holds.
constexpr int64_t kHadamardMaxN = 8192, kHadamardTile = 8192;

/// One launch (by value). x and y are [rows, cols] (strides sx0, sx1 and
/// sy0, sy1), cols a multiple of n; signs (stride ss) or null.
struct HadamardParams {
  const float *x;
  float *y;
  const float *signs;
  int64_t sx0, sx1, sy0, sy1, ss;
  int64_t rows, cols, n;
  int64_t runsPerBlock; // max(n, 2048) / n
  float scale;
};
// bench/gpu/hadamard.py packs it ("<3Q5q4qf4x").
static_assert(sizeof(HadamardParams) == 104, "HadamardParams' layout");

/// The elements block `block` holds: runs runsPerBlock · block …, each n
/// long.
QOPT_HD int64_t hadamardElements(const HadamardParams &p) {
  return p.runsPerBlock * p.n;
}

/// Where element `idx` of block `block` lives: false past the last run.
QOPT_HD bool hadamardAt(const HadamardParams &p, int64_t block, int64_t idx,
                        int64_t &row, int64_t &col) {
  int64_t run = block * p.runsPerBlock + idx / p.n;
  int64_t runsPerRow = p.cols / p.n;
  if (run >= p.rows * runsPerRow)
    return false;
  row = run / runsPerRow;
  col = (run % runsPerRow) * p.n + idx % p.n;
  return true;
}

/// Thread t's share of loading the block's runs, signs applied.
QOPT_HD void hadamardLoad(const HadamardParams &p, int64_t block, float *buf,
                          int t) {
  for (int64_t idx = t; idx < hadamardElements(p); idx += kHadamardThreads) {
    int64_t row, col;
    float v = 0.0f;
    if (hadamardAt(p, block, idx, row, col)) {
      v = p.x[row * p.sx0 + col * p.sx1];
      if (p.signs)
        v *= p.signs[(idx % p.n) * p.ss];
    }
    buf[idx] = v;
  }
}

/// Thread t's butterflies of the stage with stride h: (a, b) → (a + b,
/// a − b) for the pairs i, i + h with bit h of i clear.
QOPT_HD void hadamardStage(const HadamardParams &p, float *buf, int64_t h,
                           int t) {
  for (int64_t k = t; k < hadamardElements(p) / 2; k += kHadamardThreads) {
    int64_t i = (k / h) * 2 * h + k % h, j = i + h;
    float a = buf[i], b = buf[j];
    buf[i] = a + b;
    buf[j] = a - b;
  }
}

/// Thread t's share of storing the block's runs, scaled.
QOPT_HD void hadamardStore(const HadamardParams &p, int64_t block,
                           const float *buf, int t) {
  for (int64_t idx = t; idx < hadamardElements(p); idx += kHadamardThreads) {
    int64_t row, col;
    if (hadamardAt(p, block, idx, row, col))
      p.y[row * p.sy0 + col * p.sy1] = buf[idx] * p.scale;
  }
}

using Memref2 = MemrefView<2>;

// qopt_cuda_hadamard's parameters: flags (1: signs), n, the scale, then x
// [rows, cols], the signs [n] (x's stand-in where there are none) and y as
// memrefs.
#define QOPT_HADAMARD_PARAMS                                                   \
  int64_t flags, int64_t n, double scale, QOPT_MEMREF2(x), QOPT_MEMREF1(s),    \
      QOPT_MEMREF2(y)

/// The launch for qopt_cuda_hadamard's arguments. Returns null, or why the
/// kernel cannot take them.
inline const char *planHadamard(int64_t flags, int64_t n, double scale,
                                const Memref2 &x, const MemrefView<1> &signs,
                                const Memref2 &y, HadamardParams &p,
                                int64_t &blocks) {
  p = HadamardParams{};
  if (n < 2 || n > kHadamardMaxN || (n & (n - 1)))
    return "a block that is not a power of two from 2 to 8192";
  if (x.size[1] % n)
    return "a row not a whole number of blocks";
  p.x = static_cast<const float *>(x.aligned) + x.offset;
  p.y = static_cast<float *>(const_cast<void *>(y.aligned)) + y.offset;
  p.signs = (flags & 1)
                ? static_cast<const float *>(signs.aligned) + signs.offset
                : nullptr;
  p.sx0 = x.stride[0];
  p.sx1 = x.stride[1];
  p.sy0 = y.stride[0];
  p.sy1 = y.stride[1];
  p.ss = signs.stride[0];
  p.rows = x.size[0];
  p.cols = x.size[1];
  p.n = n;
  p.runsPerBlock = n >= 2048 ? 1 : 2048 / n;
  p.scale = float(scale);
  int64_t runs = p.rows * (p.cols / n);
  blocks = (runs + p.runsPerBlock - 1) / p.runsPerBlock;
  return nullptr;
}

//===-- The transform with per-token quantization -------------------------===//
//
// qopt_cuda_hadamard_quant_f32: QuaRot's online Hadamard before a W4A4 /
// W8A8 product. A block holds one whole row (cols ≤ kHadamardTile), so
// after the butterflies its threads find the row's max|y| (a block
// reduction) and write the row's int8 codes and step, which the products
// read (kQLinearCodes), as qopt_cuda_quantize_rows would from y; y itself
// only where something else reads it.

/// One launch (by value): the transform's (runsPerBlock = cols / n: block
/// b is row b; y null: not written), codes [rows, cols] (contiguous) and
/// steps [rows].
struct HadamardQuantParams {
  HadamardParams h;
  int8_t *codes;
  float *steps;
  int32_t bits, reserved;
};
static_assert(sizeof(HadamardQuantParams) == 128,
              "HadamardQuantParams' layout");

/// Thread t's largest magnitude of its elements of the block's row
/// (infinity where one is not finite).
QOPT_HD float hadamardPartialMax(const HadamardQuantParams &q, const float *buf,
                                 int t) {
  float amax = 0.0f;
  for (int64_t idx = t; idx < q.h.cols; idx += kHadamardThreads)
    amax = tokenMax(amax, buf[idx] * q.h.scale);
  return amax;
}

/// Thread t's share of storing row `block`'s codes (and y where wanted),
/// and thread 0 its step.
QOPT_HD void hadamardQuantStore(const HadamardQuantParams &q, int64_t block,
                                const float *buf, float step, int t) {
  const HadamardParams &p = q.h;
  for (int64_t idx = t; idx < p.cols; idx += kHadamardThreads) {
    float v = buf[idx] * p.scale;
    if (p.y)
      p.y[block * p.sy0 + idx * p.sy1] = v;
    q.codes[block * p.cols + idx] = tokenCode(v, step, q.bits);
  }
  if (t == 0)
    q.steps[block] = step;
}

// qopt_cuda_hadamard_quant's parameters: qopt_cuda_hadamard's, then the
// bits, whether y is written, and the codes' and steps' pointers and
// offsets.
#define QOPT_HADAMARD_QUANT_PARAMS                                             \
  QOPT_HADAMARD_PARAMS, int64_t bits, int64_t writeY, int64_t pc, int64_t oc,  \
      int64_t ps, int64_t os

/// The launch for qopt_cuda_hadamard_quant's arguments (a block a row);
/// null, or why the kernel cannot take them.
inline const char *
planHadamardQuant(int64_t flags, int64_t n, double scale, const Memref2 &x,
                  const MemrefView<1> &signs, const Memref2 &y, int64_t bits,
                  int64_t writeY, int64_t pc, int64_t oc, int64_t ps,
                  int64_t os, HadamardQuantParams &q, int64_t &blocks) {
  q = HadamardQuantParams{};
  if (const char *why = planHadamard(flags, n, scale, x, signs, y, q.h, blocks))
    return why;
  if (bits < 2 || bits > 8)
    return "activations of more than 8 bits";
  if (q.h.cols > kHadamardTile)
    return "rows longer than a block holds";
  q.h.runsPerBlock = q.h.cols / n;
  if (!writeY)
    q.h.y = nullptr;
  q.codes = reinterpret_cast<int8_t *>(pc) + oc;
  q.steps = reinterpret_cast<float *>(ps) + os;
  q.bits = int32_t(bits);
  // (Rows of nothing too: their step is 1, as the rows' quantization
  // writes.)
  blocks = q.h.rows;
  return nullptr;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_HADAMARDTILE_H
