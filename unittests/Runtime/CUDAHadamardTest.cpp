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
#include "FusedQuantCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

extern "C" void qopt_cuda_hadamard_emulated(QOPT_HADAMARD_PARAMS);
extern "C" void qopt_cuda_hadamard_quant_emulated(QOPT_HADAMARD_QUANT_PARAMS);
extern "C" void qopt_cuda_quantize_rows_emulated(int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t);

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

/// The transform fused with per-token quantization (QuaRot's online
/// rotation before a W4A4 product: a block a row) equals the transform,
/// then the rows' quantization of its y, bit for bit: codes, steps, and y
/// where it is wanted; a row with a NaN gets a NaN step and zero codes.
TEST(CUDAHadamard, QuantizedEqualsTheTransformThenTheRowsQuantization) {
  struct Case {
    int64_t n, rows, runs;
    bool signs, transposed;
    int bits;
  };
  const Case cases[] = {{32, 5, 1, true, false, 4},
                        {64, 3, 3, false, true, 8},
                        {2048, 2, 4, true, false, 8},
                        {8192, 2, 1, false, false, 4}};
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto ptr = [](const void *p) {
    return int64_t(reinterpret_cast<uintptr_t>(p));
  };
  for (const Case &c : cases)
    for (bool writeY : {false, true}) {
      int64_t cols = c.runs * c.n;
      SCOPED_TRACE(testing::Message()
                   << "n=" << c.n << " cols=" << cols << " bits=" << c.bits
                   << " writeY=" << writeY);
      size_t count = size_t(c.rows * cols);
      std::vector<float> x(count), signs;
      for (float &v : x)
        v = normal(rng);
      for (int64_t i = 0; i < c.n; ++i)
        signs.push_back(normal(rng) < 0 ? -1.0f : 1.0f);
      int64_t s0 = c.transposed ? 1 : cols, s1 = c.transposed ? c.rows : 1;
      if (c.rows > 2)
        x[size_t(2 * s0 + 5 * s1)] = nan;
      double scale = 1.0 / std::sqrt(double(c.n));
      const float *sv = c.signs ? signs.data() : x.data();
      std::vector<float> y(count, nan), steps(size_t(c.rows), nan);
      std::vector<int8_t> codes(count, 99);
      qopt_cuda_hadamard_emulated(c.signs ? 1 : 0, c.n, scale, nullptr,
                                  x.data(), 0, c.rows, cols, s0, s1, nullptr,
                                  sv, 0, c.n, 1, nullptr, y.data(), 0, c.rows,
                                  cols, cols, 1);
      qopt_cuda_quantize_rows_emulated(c.bits, c.rows, cols, ptr(y.data()), 0,
                                       cols, ptr(codes.data()), 0,
                                       ptr(steps.data()), 0, 0, 0, 0, 0);
      std::vector<float> fy(count, nan), fsteps(size_t(c.rows) + 1, nan);
      std::vector<int8_t> fcodes(count + 3, 99);
      qopt_cuda_hadamard_quant_emulated(
          c.signs ? 1 : 0, c.n, scale, nullptr, x.data(), 0, c.rows, cols, s0,
          s1, nullptr, sv, 0, c.n, 1, nullptr, fy.data(), 0, c.rows, cols, cols,
          1, c.bits, writeY, ptr(fcodes.data()), 3, ptr(fsteps.data()), 1);
      ASSERT_NO_FATAL_FAILURE(expectSameQuantization(
          codes, steps, y, fcodes, 3, fsteps, 1, fy, writeY, c.bits, cols));
      if (c.rows > 2) {
        EXPECT_TRUE(std::isnan(fsteps[2 + 1]));
      }
    }
}

/// Rows of nothing (K = 0): the fused launch still writes each row's step,
/// 1, as the rows' quantization does, so the products read no garbage.
TEST(CUDAHadamard, QuantizedRowsOfNothingHaveStepOne) {
  float x = 0.0f, y = 0.0f;
  int8_t codes = 0;
  std::vector<float> steps(3, std::numeric_limits<float>::quiet_NaN());
  qopt_cuda_hadamard_quant_emulated(
      0, 32, 1.0, nullptr, &x, 0, 3, 0, 0, 1, nullptr, &x, 0, 32, 1, nullptr,
      &y, 0, 3, 0, 0, 1, 8, 0, int64_t(reinterpret_cast<uintptr_t>(&codes)), 0,
      int64_t(reinterpret_cast<uintptr_t>(steps.data())), 0);
  for (float step : steps)
    EXPECT_EQ(step, 1.0f);
}

} // namespace
