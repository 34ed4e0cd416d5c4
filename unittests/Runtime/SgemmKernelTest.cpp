//===- SgemmKernelTest.cpp - qopt_kernel_sgemm against a reference --------===//
//
// Every layout path of the kernel: row- and column-major operands (BLAS
// transposes), a column-major result (computed as the transpose), strides
// BLAS cannot take (packed), broadcast operands (stride 0), outer loops
// folded into M or looped, and empty sizes. The same cases run through
// qopt_cuda_sgemm_emulated: the CUDA tiled GEMM's launch planning
// (GemmLaunch.h) and its threads' phases (GemmTile.h) on the CPU, with
// cases of its own for tile borders and batches.
//
//===----------------------------------------------------------------------===//

#include "CUDAReference.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

extern "C" void qopt_kernel_sgemm(int64_t, int64_t, int64_t, int64_t, int64_t,
                                  int64_t, int64_t, int64_t, int64_t, int64_t,
                                  int64_t, int64_t, int64_t, int64_t, int64_t,
                                  int64_t, int64_t, int64_t, int64_t, int64_t,
                                  int64_t, int64_t, int64_t);

namespace {
using Kernel = decltype(&qopt_kernel_sgemm);

/// An operand: its buffer and strides along (outer0, outer1, row, column).
struct Operand {
  std::vector<float> data;
  int64_t offset, s0, s1, sr, sc;
  float &at(int64_t i, int64_t j, int64_t r, int64_t c) {
    return data[offset + i * s0 + j * s1 + r * sr + c * sc];
  }
  int64_t ptr() { return reinterpret_cast<int64_t>(data.data()); }
};

Operand make(int64_t size, int64_t offset, int64_t s0, int64_t s1, int64_t sr,
             int64_t sc, std::mt19937 &rng) {
  std::uniform_real_distribution<float> dist(-1, 1);
  Operand o{std::vector<float>(size), offset, s0, s1, sr, sc};
  for (float &v : o.data)
    v = dist(rng);
  return o;
}

/// Runs the kernel and compares every element of C with a double-precision
/// reference computed from the same views.
class SgemmKernel : public testing::TestWithParam<Kernel> {};

void check(Kernel kernel, int64_t o0, int64_t o1, int64_t m, int64_t n,
           int64_t k, Operand a, Operand b, Operand c) {
  Operand expected = c;
  for (int64_t i = 0; i < o0; ++i)
    for (int64_t j = 0; j < o1; ++j)
      for (int64_t r = 0; r < m; ++r)
        for (int64_t col = 0; col < n; ++col) {
          double sum = expected.at(i, j, r, col);
          for (int64_t p = 0; p < k; ++p)
            sum += double(a.at(i, j, r, p)) * b.at(i, j, p, col);
          expected.at(i, j, r, col) = float(sum);
        }
  kernel(o0, o1, m, n, k, a.ptr(), a.offset, a.s0, a.s1, a.sr, a.sc, b.ptr(),
         b.offset, b.s0, b.s1, b.sr, b.sc, c.ptr(), c.offset, c.s0, c.s1, c.sr,
         c.sc);
  for (size_t e = 0; e < c.data.size(); ++e)
    ASSERT_NEAR(c.data[e], expected.data[e], 1e-4f) << "element " << e;
}

TEST_P(SgemmKernel, RowMajor) {
  std::mt19937 rng(1);
  check(GetParam(), 1, 1, 7, 5, 9, make(63, 0, 0, 0, 9, 1, rng),
        make(45, 0, 0, 0, 5, 1, rng), make(35, 0, 0, 0, 5, 1, rng));
}

TEST_P(SgemmKernel, TransposedOperandsAndOffsets) {
  std::mt19937 rng(2);
  // A column-major with a leading dimension > M, B column-major, offsets.
  check(GetParam(), 1, 1, 6, 4, 3, make(3 + 3 * 8, 3, 0, 0, 1, 8, rng),
        make(2 + 4 * 3, 2, 0, 0, 1, 3, rng), make(1 + 24, 1, 0, 0, 4, 1, rng));
}

TEST_P(SgemmKernel, ColumnMajorResult) {
  std::mt19937 rng(3);
  check(GetParam(), 1, 1, 6, 4, 5, make(30, 0, 0, 0, 5, 1, rng),
        make(20, 0, 0, 0, 4, 1, rng), make(24, 0, 0, 0, 1, 6, rng));
}

TEST_P(SgemmKernel, StridesThatNeedPacking) {
  std::mt19937 rng(4);
  // Neither stride of A or C is 1.
  check(GetParam(), 1, 1, 3, 4, 5, make(2 * 3 * 5 * 2, 0, 0, 0, 10, 2, rng),
        make(20, 0, 0, 0, 4, 1, rng), make(3 * 4 * 3, 0, 0, 0, 12, 3, rng));
}

TEST_P(SgemmKernel, OuterLoopsFoldedIntoRows) {
  std::mt19937 rng(5);
  // x[2, 3, 8] @ W[8, 6] (B does not move with the outer loops).
  check(GetParam(), 2, 3, 4, 6, 8, make(2 * 3 * 4 * 8, 0, 96, 32, 8, 1, rng),
        make(48, 0, 0, 0, 6, 1, rng),
        make(2 * 3 * 4 * 6, 0, 72, 24, 6, 1, rng));
}

TEST_P(SgemmKernel, BatchedAndBroadcast) {
  std::mt19937 rng(6);
  // Attention-like: batch 2 x heads 3, A broadcast over heads (stride 0).
  check(GetParam(), 2, 3, 4, 5, 6, make(2 * 4 * 6, 0, 24, 0, 6, 1, rng),
        make(2 * 3 * 6 * 5, 0, 90, 30, 1, 6, rng),
        make(2 * 3 * 4 * 5, 0, 60, 20, 5, 1, rng));
}

TEST_P(SgemmKernel, OneRowOrColumnAsGemv) {
  std::mt19937 rng(9);
  // One row of C: B row-major, B column-major (a weight read transposed),
  // strided x and y.
  check(GetParam(), 1, 1, 1, 7, 9, make(9, 0, 0, 0, 9, 1, rng),
        make(63, 0, 0, 0, 7, 1, rng), make(7, 0, 0, 0, 7, 1, rng));
  check(GetParam(), 1, 1, 1, 7, 9, make(18, 0, 0, 0, 18, 2, rng),
        make(70, 0, 0, 0, 1, 10, rng), make(21, 0, 0, 0, 21, 3, rng));
  // One column of C: A row-major and column-major.
  check(GetParam(), 1, 1, 6, 1, 5, make(30, 0, 0, 0, 5, 1, rng),
        make(5, 0, 0, 0, 1, 1, rng), make(6, 0, 0, 0, 1, 1, rng));
  check(GetParam(), 1, 1, 6, 1, 5, make(40, 0, 0, 0, 1, 8, rng),
        make(10, 0, 0, 0, 2, 1, rng), make(12, 0, 0, 0, 2, 1, rng));
  // A batch of single rows (decode at batch 3: not folded, B broadcast).
  check(GetParam(), 3, 1, 1, 4, 5, make(15, 0, 5, 0, 5, 1, rng),
        make(20, 0, 0, 0, 1, 5, rng), make(12, 0, 4, 0, 4, 1, rng));
}

TEST_P(SgemmKernel, EmptySizes) {
  std::mt19937 rng(7);
  check(GetParam(), 1, 1, 0, 4, 3, make(1, 0, 0, 0, 3, 1, rng),
        make(12, 0, 0, 0, 4, 1, rng), make(1, 0, 0, 0, 4, 1, rng));
  // K = 0 leaves C as it was.
  check(GetParam(), 1, 1, 2, 3, 0, make(1, 0, 0, 0, 1, 1, rng),
        make(3, 0, 0, 0, 3, 1, rng), make(6, 0, 0, 0, 3, 1, rng));
}
// The CUDA GEMM's own cases: tiles of 64 x 64, K steps of 32.
TEST_P(SgemmKernel, TileBorders) {
  std::mt19937 rng(10);
  // Sizes past one tile in every dimension, A and B both layouts.
  check(GetParam(), 1, 1, 130, 70, 100, make(130 * 100, 0, 0, 0, 100, 1, rng),
        make(100 * 70, 0, 0, 0, 70, 1, rng),
        make(130 * 70, 0, 0, 0, 70, 1, rng));
  check(GetParam(), 1, 1, 65, 129, 33, make(65 * 33, 0, 0, 0, 1, 65, rng),
        make(33 * 129, 0, 0, 0, 1, 33, rng),
        make(65 * 129, 0, 0, 0, 129, 1, rng));
}

TEST_P(SgemmKernel, SixteenAndSeventeenRows) {
  // The CUDA GEMM's 16-row tiles up to 16 rows, 64-row ones past them.
  std::mt19937 rng(13);
  check(GetParam(), 1, 1, 16, 70, 33, make(16 * 33, 0, 0, 0, 33, 1, rng),
        make(33 * 70, 0, 0, 0, 70, 1, rng), make(16 * 70, 0, 0, 0, 70, 1, rng));
  check(GetParam(), 1, 1, 17, 70, 33, make(17 * 33, 0, 0, 0, 1, 17, rng),
        make(33 * 70, 0, 0, 0, 1, 33, rng), make(17 * 70, 0, 0, 0, 70, 1, rng));
  // A batch of 16-row products, one grid.
  check(GetParam(), 3, 1, 9, 20, 40, make(3 * 9 * 40, 0, 360, 0, 40, 1, rng),
        make(3 * 40 * 20, 0, 800, 0, 20, 1, rng),
        make(3 * 9 * 20, 0, 180, 0, 20, 1, rng));
}

TEST_P(SgemmKernel, WeightGradientSummedOverOuterLoops) {
  std::mt19937 rng(11);
  // dW[8, 6] += x[2, 3, 5, 8]ᵀ · dy[2, 3, 5, 6]: C does not move with the
  // outer loops; contiguous (folded into K) and not (products in turn).
  check(GetParam(), 2, 3, 8, 6, 5, make(2 * 3 * 5 * 8, 0, 120, 40, 1, 8, rng),
        make(2 * 3 * 5 * 6, 0, 90, 30, 6, 1, rng),
        make(48, 0, 0, 0, 6, 1, rng));
  check(GetParam(), 2, 3, 8, 6, 5, make(2 * 3 * 6 * 8, 0, 144, 48, 1, 8, rng),
        make(2 * 3 * 7 * 6, 0, 126, 42, 6, 1, rng),
        make(48, 0, 0, 0, 6, 1, rng));
}

TEST_P(SgemmKernel, HeadsInterleavedInColumns) {
  std::mt19937 rng(12);
  // Attention's P·V into [batch 2, seq 70, heads 3, 8]: each head's C is
  // every 24th element's run of 8 (disjoint, one grid).
  check(GetParam(), 2, 3, 70, 8, 70,
        make(2 * 3 * 70 * 70, 0, 3 * 4900, 4900, 70, 1, rng),
        make(2 * 3 * 70 * 8, 0, 3 * 560, 8, 24, 1, rng),
        make(2 * 70 * 24, 0, 70 * 24, 8, 24, 1, rng));
}

/// C = A·B (qopt_cuda_sgemm_overwrite): C starts as NaN, so any element a
/// block adds to instead of storing, or leaves out, shows; 16-row tiles,
/// 64-row tiles past a border, and a batch as one grid.
TEST(SgemmKernelOverwrite, CUDAEmulatedStoresEveryElement) {
  std::mt19937 rng(13);
  struct Shape {
    int64_t o1, m, n, k;
  };
  for (Shape sh :
       {Shape{1, 5, 7, 9}, Shape{1, 70, 66, 33}, Shape{3, 20, 9, 5}}) {
    Operand a = make(sh.o1 * sh.m * sh.k, 0, 0, sh.m * sh.k, sh.k, 1, rng);
    Operand b = make(sh.k * sh.n, 0, 0, 0, sh.n, 1, rng);
    Operand c{std::vector<float>(size_t(sh.o1 * sh.m * sh.n), NAN),
              0,
              0,
              sh.m * sh.n,
              sh.n,
              1};
    qopt_cuda_sgemm_emulated_overwrite(
        1, sh.o1, sh.m, sh.n, sh.k, a.ptr(), 0, 0, a.s1, a.sr, a.sc, b.ptr(), 0,
        0, 0, b.sr, b.sc, c.ptr(), 0, 0, c.s1, c.sr, c.sc);
    for (int64_t j = 0; j < sh.o1; ++j)
      for (int64_t r = 0; r < sh.m; ++r)
        for (int64_t col = 0; col < sh.n; ++col) {
          double sum = 0;
          for (int64_t p = 0; p < sh.k; ++p)
            sum += double(a.at(0, j, r, p)) * b.at(0, j, p, col);
          ASSERT_NEAR(c.at(0, j, r, col), sum, 1e-4)
              << j << " " << r << " " << col;
        }
  }
}

/// C = A·B over nothing is zeros (the compiler dropped C's zero fill):
/// K = 0, a batch of 0 products summing into one C, a batch summing into C
/// folded into K = 0; C indexed by an empty batch is empty (untouched).
TEST(SgemmKernelOverwrite, CUDAEmulatedEmptySumsStoreZeros) {
  std::vector<float> a(64, 1.0f), b(64, 1.0f);
  auto ptr = [](const void *p) {
    return int64_t(reinterpret_cast<intptr_t>(p));
  };
  struct Case {
    int64_t o1, k, sa1, sb1, sc1;
  };
  // (o1 products; strides of A, B and C along it.)
  for (Case cs : {Case{1, 0, 0, 0, 0}, Case{0, 4, 16, 16, 0},
                  Case{3, 0, 0, 0, 0}, Case{2, 0, 0, 0, 12}}) {
    std::vector<float> c(24, NAN);
    qopt_cuda_sgemm_emulated_overwrite(
        1, cs.o1, 3, 4, cs.k, ptr(a.data()), 0, 0, cs.sa1, 4, 1, ptr(b.data()),
        0, 0, cs.sb1, 4, 1, ptr(c.data()), 0, 0, cs.sc1, 4, 1);
    int64_t written = cs.sc1 ? 24 : 12;
    for (int64_t e = 0; e < 24; ++e)
      if (e < written)
        ASSERT_EQ(c[size_t(e)], 0.0f) << "o1 " << cs.o1 << " element " << e;
      else
        ASSERT_TRUE(std::isnan(c[size_t(e)])) << "element " << e;
  }
  // An empty batch that indexes C: C is empty, nothing is written.
  std::vector<float> c(12, NAN);
  qopt_cuda_sgemm_emulated_overwrite(1, 0, 3, 4, 4, ptr(a.data()), 0, 0, 16, 4,
                                     1, ptr(b.data()), 0, 0, 16, 4, 1,
                                     ptr(c.data()), 0, 0, 12, 4, 1);
  for (float v : c)
    ASSERT_TRUE(std::isnan(v));
}

std::string kernelName(const testing::TestParamInfo<Kernel> &info) {
  return info.param == &qopt_kernel_sgemm ? "CPU" : "CUDAEmulated";
}
INSTANTIATE_TEST_SUITE_P(, SgemmKernel,
                         testing::Values(&qopt_kernel_sgemm,
                                         &qopt_cuda_sgemm_emulated),
                         kernelName);
} // namespace
