//===- CUDANormTest.cpp - the CUDA RMSNorm / LayerNorm on the CPU ---------===//
//
// Norm.cu's kernel through its CPU emulation (a warp per row, the lanes'
// partial sums added in the order of the kernel's butterfly:
// qopt_cuda_norm_emulated, which qoptc --cuda-emulate models call)
// against the definitions in double: RMSNorm, LayerNorm with and without
// beta, rows shorter and longer than a warp, strided (transposed) x and y,
// strided gamma.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/Kernels/CUDA/NormTile.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

extern "C" void qopt_cuda_norm_emulated(QOPT_NORM_PARAMS);

namespace {

TEST(CUDANorm, EqualsTheDefinitionInDouble) {
  struct Case {
    int64_t rows, cols;
    int flags;
    bool transposed;
  };
  const Case cases[] = {
      {3, 1, 0, false},
      {9, 31, qopt_cuda::kNormLayer, true},
      {5, 33, 0, true},
      {2, 4096, qopt_cuda::kNormLayer | qopt_cuda::kNormBeta, false},
      {17, 96, qopt_cuda::kNormLayer | qopt_cuda::kNormBeta, true}};
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Case &c : cases) {
    SCOPED_TRACE(testing::Message() << "rows=" << c.rows << " cols=" << c.cols
                                    << " flags=" << c.flags);
    std::vector<float> x(size_t(c.rows * c.cols)), y(x.size()),
        gamma(size_t(2 * c.cols)), beta(size_t(3 * c.cols));
    for (float &v : x)
      v = 3.0f + normal(rng); // an offset: LayerNorm's mean matters
    for (float &v : gamma)
      v = normal(rng);
    for (float &v : beta)
      v = normal(rng);
    for (float &v : y)
      v = std::numeric_limits<float>::quiet_NaN(); // every element written
    int64_t s0 = c.transposed ? 1 : c.cols, s1 = c.transposed ? c.rows : 1;
    const double eps = 1e-5;
    // gamma and beta read with strides 2 and 3 (strided views).
    qopt_cuda_norm_emulated(c.flags, eps, nullptr, x.data(), 0, c.rows, c.cols,
                            s0, s1, nullptr, gamma.data(), 0, c.cols, 2,
                            nullptr, beta.data(), 0, c.cols, 3, nullptr,
                            y.data(), 0, c.rows, c.cols, s0, s1);
    bool layer = c.flags & qopt_cuda::kNormLayer;
    for (int64_t r = 0; r < c.rows; ++r) {
      double mean = 0, square = 0;
      for (int64_t k = 0; k < c.cols; ++k)
        mean += x[size_t(r * s0 + k * s1)];
      mean = layer ? mean / double(c.cols) : 0.0;
      for (int64_t k = 0; k < c.cols; ++k) {
        double d = x[size_t(r * s0 + k * s1)] - mean;
        square += d * d;
      }
      double denom = std::sqrt(square / double(c.cols) + eps);
      for (int64_t k = 0; k < c.cols; ++k) {
        double v = x[size_t(r * s0 + k * s1)];
        double g = gamma[size_t(2 * k)];
        double b = (c.flags & qopt_cuda::kNormBeta) ? beta[size_t(3 * k)] : 0.0;
        double expected = (v - mean) / denom * g + b;
        double magnitude =
            (std::fabs(v) + std::fabs(mean)) / denom * std::fabs(g) +
            std::fabs(b);
        ASSERT_NEAR(y[size_t(r * s0 + k * s1)], expected, 2e-6 * magnitude)
            << "y[" << r << ", " << k << "]";
      }
    }
  }
}

} // namespace
