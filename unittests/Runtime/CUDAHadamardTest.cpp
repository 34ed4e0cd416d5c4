//===- CUDAHadamardTest.cpp - the CUDA Hadamard transform on the CPU ------===//
//
// Hadamard.cu's kernel through its CPU emulation (every block's threads
// phase by phase: qopt_cuda_hadamard_emulated, which qoptc --cuda-emulate
// models call) against y = scale · H_n · diag(signs) · x in double, with
// Sylvester's H_n[i][j] = (−1)^popcount(i & j): blocks from 2 to the
// largest, runs crossing thread blocks, strided (transposed) x and y, with
// and without signs.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/Kernels/CUDA/HadamardTile.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

extern "C" void qopt_cuda_hadamard_emulated(QOPT_HADAMARD_PARAMS);

namespace {

TEST(CUDAHadamard, EqualsTheDefinitionInDouble) {
  struct Case {
    int64_t n, rows, runs; // cols = runs · n
    bool signs, transposed;
  };
  const Case cases[] = {{2, 3, 5, true, false},    {32, 5, 3, false, true},
                        {64, 7, 9, true, false},   {512, 3, 5, true, true},
                        {4096, 2, 1, true, false}, {8192, 1, 2, false, false}};
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Case &c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "n=" << c.n << " rows=" << c.rows << " runs=" << c.runs);
    int64_t cols = c.runs * c.n;
    std::vector<float> x(size_t(c.rows * cols)), y(x.size()), signs;
    for (float &v : x)
      v = normal(rng);
    for (float &v : y)
      v = std::numeric_limits<float>::quiet_NaN(); // every element written
    for (int64_t i = 0; c.signs && i < c.n; ++i)
      signs.push_back(normal(rng) < 0 ? -1.0f : 1.0f);
    // Row-major, or stored column-major ([cols, rows]: a transposed view).
    int64_t s0 = c.transposed ? 1 : cols, s1 = c.transposed ? c.rows : 1;
    double scale = 1.0 / std::sqrt(double(c.n));
    qopt_cuda_hadamard_emulated(c.signs ? 1 : 0, c.n, scale, nullptr, x.data(),
                                0, c.rows, cols, s0, s1, nullptr,
                                c.signs ? signs.data() : x.data(), 0, c.n, 1,
                                nullptr, y.data(), 0, c.rows, cols, s0, s1);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t col = 0; col < cols; ++col) {
        int64_t base = col / c.n * c.n, i = col % c.n;
        double expected = 0, magnitude = 0;
        for (int64_t j = 0; j < c.n; ++j) {
          double v = x[size_t(r * s0 + (base + j) * s1)] *
                     (c.signs ? signs[size_t(j)] : 1.0f);
          expected += (__builtin_popcountll(uint64_t(i & j)) % 2 ? -v : v);
          magnitude += std::fabs(v);
        }
        ASSERT_NEAR(y[size_t(r * s0 + col * s1)], expected * scale,
                    2e-7 * std::log2(double(c.n)) * magnitude * scale)
            << "y[" << r << ", " << col << "]";
      }
  }
}

} // namespace
