//===- CUDANormTest.cpp - the CUDA RMSNorm / LayerNorm on the CPU ---------===//
//
// Norm.cu's kernel through its CPU emulation (a warp per row, the lanes'
// partial sums added in the order of the kernel's butterfly:
// qopt_cuda_norm_emulated, which qoptc --cuda-emulate models call)
// against the definitions in double: RMSNorm, LayerNorm with and without
// beta, rows shorter and longer than a warp, strided (transposed) x and y,
// strided gamma. The backward (qopt_cuda_norm_emulated_backward) against
// the chain rule in double, itself checked by central differences.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/Kernels/CUDA/NormTile.h"
#include "FusedQuantCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

extern "C" void qopt_cuda_norm_emulated(QOPT_NORM_PARAMS);
extern "C" void qopt_cuda_norm_emulated_backward(QOPT_NORM_BWD_PARAMS);
extern "C" void qopt_cuda_norm_quant_emulated(QOPT_NORM_QUANT_PARAMS);
extern "C" void qopt_cuda_quantize_rows_emulated(int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t);

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

/// The norm fused with per-token quantization (what the W8A8 products after
/// a norm read) equals the norm, then the rows' quantization of its y, bit
/// for bit: codes, steps, and y where it is wanted; a row with an infinity
/// gets a NaN step and zero codes, a row of zeros step 1.
TEST(CUDANorm, QuantizedEqualsTheNormThenTheRowsQuantization) {
  struct Case {
    int64_t rows, cols;
    int flags, bits;
    bool transposed;
  };
  const Case cases[] = {
      {1, 32, 0, 8, false},
      {19, 96, 0, 8, true},
      {7, 160, 0, qopt_cuda::kTokenFP8E4M3, false}, // FP8 E4M3 tokens
      {10, 33, qopt_cuda::kNormLayer, 4, false},
      {9, 4096, qopt_cuda::kNormLayer | qopt_cuda::kNormBeta, 8, true}};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Case &c : cases)
    for (bool writeY : {false, true}) {
      SCOPED_TRACE(testing::Message()
                   << "rows=" << c.rows << " cols=" << c.cols << " flags="
                   << c.flags << " bits=" << c.bits << " writeY=" << writeY);
      size_t n = size_t(c.rows * c.cols);
      std::vector<float> x(n), gamma(size_t(2 * c.cols)), beta(size_t(c.cols));
      for (float &v : x)
        v = 1.0f + normal(rng);
      for (float &v : gamma)
        v = normal(rng);
      for (float &v : beta)
        v = normal(rng);
      int64_t s0 = c.transposed ? 1 : c.cols, s1 = c.transposed ? c.rows : 1;
      if (c.rows > 2) {
        x[size_t(2 * s0 + 3 * s1)] = std::numeric_limits<float>::infinity();
        for (int64_t k = 0; k < c.cols; ++k) // RMSNorm: y = 0, step 1
          x[size_t(1 * s0 + k * s1)] = (c.flags & qopt_cuda::kNormLayer)
                                           ? x[size_t(1 * s0 + k * s1)]
                                           : 0.0f;
      }
      // The reference: the norm into y (row-major), then its rows.
      std::vector<float> y(n, nan), steps(size_t(c.rows), nan);
      std::vector<int8_t> codes(n, 99);
      qopt_cuda_norm_emulated(c.flags, 1e-5, nullptr, x.data(), 0, c.rows,
                              c.cols, s0, s1, nullptr, gamma.data(), 0, c.cols,
                              2, nullptr, beta.data(), 0, c.cols, 1, nullptr,
                              y.data(), 0, c.rows, c.cols, c.cols, 1);
      qopt_cuda_quantize_rows_emulated(
          c.bits, c.rows, c.cols, addressOf(y.data()), 0, c.cols,
          addressOf(codes.data()), 0, addressOf(steps.data()), 0, 0, 0, 0, 0);
      // Fused (codes and steps at offsets; y NaN-filled, written or not).
      std::vector<float> fy(n, nan), fsteps(size_t(c.rows) + 2, nan);
      std::vector<int8_t> fcodes(n + 5, 99);
      qopt_cuda_norm_quant_emulated(
          c.flags, 1e-5, nullptr, x.data(), 0, c.rows, c.cols, s0, s1, nullptr,
          gamma.data(), 0, c.cols, 2, nullptr, beta.data(), 0, c.cols, 1,
          nullptr, fy.data(), 0, c.rows, c.cols, c.cols, 1, c.bits, writeY,
          addressOf(fcodes.data()), 5, addressOf(fsteps.data()), 2);
      ASSERT_NO_FATAL_FAILURE(expectSameQuantization(
          codes, steps, y, fcodes, 5, fsteps, 2, fy, writeY, c.bits, c.cols));
      if (c.rows > 2) {
        EXPECT_TRUE(std::isnan(fsteps[2 + 2])); // the row with an infinity
        if (!(c.flags & qopt_cuda::kNormLayer)) {
          EXPECT_EQ(fsteps[1 + 2], 1.0f); // the row of zeros
        }
      }
    }
}

/// A row's mean (0 for RMSNorm) and denominator sqrt(var + eps) in double.
std::pair<double, double> rowStats(const double *xr, int64_t cols, bool layer,
                                   double eps) {
  double mean = 0, var = 0;
  for (int64_t c = 0; c < cols; ++c)
    mean += xr[c];
  mean = layer ? mean / double(cols) : 0.0;
  for (int64_t c = 0; c < cols; ++c)
    var += (xr[c] - mean) * (xr[c] - mean);
  return {mean, std::sqrt(var / double(cols) + eps)};
}

/// The norm's gradients in double: dx for the loss Σ dy·y, and gamma's
/// and beta's. (x, dy: [rows, cols] row-major.)
struct Grads {
  std::vector<double> dx, dgamma, dbeta;
};
Grads chainRule(const std::vector<double> &x, const std::vector<double> &gamma,
                const std::vector<double> &dy, int64_t rows, int64_t cols,
                bool layer, double eps) {
  Grads out{std::vector<double>(x.size()), std::vector<double>(size_t(cols)),
            std::vector<double>(size_t(cols))};
  for (int64_t r = 0; r < rows; ++r) {
    const double *xr = x.data() + r * cols, *gr = dy.data() + r * cols;
    auto [mean, d] = rowStats(xr, cols, layer, eps);
    double plain = 0, scaled = 0;
    for (int64_t c = 0; c < cols; ++c) {
      double g = gr[c] * gamma[size_t(c)], xhat = (xr[c] - mean) / d;
      plain += g;
      scaled += g * xhat;
      out.dgamma[size_t(c)] += gr[c] * xhat;
      out.dbeta[size_t(c)] += gr[c];
    }
    plain /= double(cols);
    scaled /= double(cols);
    for (int64_t c = 0; c < cols; ++c) {
      double g = gr[c] * gamma[size_t(c)], xhat = (xr[c] - mean) / d;
      out.dx[size_t(r * cols + c)] =
          ((layer ? g - plain : g) - xhat * scaled) / d;
    }
  }
  return out;
}

/// Σ dy·y in double (the loss whose gradient chainRule gives).
double normLoss(const std::vector<double> &x, const std::vector<double> &gamma,
                const std::vector<double> &dy, int64_t rows, int64_t cols,
                bool layer, double eps) {
  double loss = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const double *xr = x.data() + r * cols;
    auto [mean, d] = rowStats(xr, cols, layer, eps);
    for (int64_t c = 0; c < cols; ++c)
      loss += dy[size_t(r * cols + c)] * (xr[c] - mean) / d * gamma[size_t(c)];
  }
  return loss;
}

TEST(CUDANorm, ChainRuleReferenceMatchesFiniteDifferences) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int64_t rows = 3, cols = 7;
  for (bool layer : {false, true}) {
    std::vector<double> x(size_t(rows * cols)), dy(x.size()),
        gamma(static_cast<size_t>(cols));
    for (double &v : x)
      v = 1.0 + normal(rng);
    for (double &v : dy)
      v = normal(rng);
    for (double &v : gamma)
      v = normal(rng);
    Grads g = chainRule(x, gamma, dy, rows, cols, layer, 1e-5);
    // The loss's central difference along element i of `v` (x or gamma).
    auto difference = [&](std::vector<double> &v, size_t i) {
      const double h = 1e-6, saved = v[i];
      v[i] = saved + h;
      double up = normLoss(x, gamma, dy, rows, cols, layer, 1e-5);
      v[i] = saved - h;
      double down = normLoss(x, gamma, dy, rows, cols, layer, 1e-5);
      v[i] = saved;
      return (up - down) / (2 * h);
    };
    for (size_t i = 0; i < x.size(); ++i) {
      double fd = difference(x, i);
      ASSERT_NEAR(g.dx[i], fd, 1e-6 * (1 + std::fabs(fd))) << "dx " << i;
    }
    for (size_t c = 0; c < gamma.size(); ++c) {
      double fd = difference(gamma, c);
      ASSERT_NEAR(g.dgamma[c], fd, 1e-6 * (1 + std::fabs(fd))) << "dg " << c;
    }
  }
}

/// An empty batch: gamma's and beta's gradients are sums of nothing,
/// zeros (the buffers are fresh: never left as they were).
TEST(CUDANorm, BackwardOfNoRowsWritesZeroGradients) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> gamma(5, 1.0f), dgamma(5, nan), dbeta(5, nan);
  float none = 0.0f;
  qopt_cuda_norm_emulated_backward(
      qopt_cuda::kNormLayer | qopt_cuda::kNormGammaGrad |
          qopt_cuda::kNormBetaGrad,
      1e-5, nullptr, &none, 0, 0, 5, 5, 1, nullptr, gamma.data(), 0, 5, 1,
      nullptr, &none, 0, 0, 5, 5, 1, nullptr, &none, 0, 0, 5, 5, 1, nullptr,
      dgamma.data(), 0, 5, 1, nullptr, dbeta.data(), 0, 5, 1);
  for (int c = 0; c < 5; ++c) {
    EXPECT_EQ(dgamma[size_t(c)], 0.0f) << c;
    EXPECT_EQ(dbeta[size_t(c)], 0.0f) << c;
  }
}

TEST(CUDANorm, BackwardEqualsTheChainRuleInDouble) {
  struct Case {
    int64_t rows, cols;
    int flags;
    bool transposed;
  };
  using qopt_cuda::kNormBetaGrad;
  using qopt_cuda::kNormGammaGrad;
  using qopt_cuda::kNormLayer;
  const Case cases[] = {
      {3, 1, kNormGammaGrad, false},
      {9, 31, kNormLayer, true},
      {5, 33, kNormGammaGrad, true},
      {2, 4096, kNormLayer | kNormGammaGrad | kNormBetaGrad, false},
      // Past a chunk of 64 rows and a block of 256 columns.
      {150, 300, kNormLayer | kNormGammaGrad | kNormBetaGrad, true},
      {130, 96, kNormBetaGrad, false}};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Case &c : cases) {
    SCOPED_TRACE(testing::Message() << "rows=" << c.rows << " cols=" << c.cols
                                    << " flags=" << c.flags);
    size_t n = size_t(c.rows * c.cols);
    std::vector<float> x(n), dy(n), dx(n, nan), gamma(size_t(2 * c.cols)),
        dgamma(size_t(c.cols), nan), dbeta(size_t(3 * c.cols), nan);
    for (float &v : x)
      v = 2.0f + normal(rng);
    for (float &v : dy)
      v = normal(rng);
    for (float &v : gamma)
      v = normal(rng);
    int64_t s0 = c.transposed ? 1 : c.cols, s1 = c.transposed ? c.rows : 1;
    const double eps = 1e-5;
    // gamma read with stride 2, beta's gradient written with stride 3.
    qopt_cuda_norm_emulated_backward(
        c.flags, eps, nullptr, x.data(), 0, c.rows, c.cols, s0, s1, nullptr,
        gamma.data(), 0, c.cols, 2, nullptr, dy.data(), 0, c.rows, c.cols, s0,
        s1, nullptr, dx.data(), 0, c.rows, c.cols, s0, s1, nullptr,
        dgamma.data(), 0, c.cols, 1, nullptr, dbeta.data(), 0, c.cols, 3);
    std::vector<double> xd(n), dyd(n), gd(size_t(c.cols));
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t k = 0; k < c.cols; ++k) {
        xd[size_t(r * c.cols + k)] = x[size_t(r * s0 + k * s1)];
        dyd[size_t(r * c.cols + k)] = dy[size_t(r * s0 + k * s1)];
      }
    for (int64_t k = 0; k < c.cols; ++k)
      gd[size_t(k)] = gamma[size_t(2 * k)];
    bool layer = c.flags & kNormLayer;
    Grads want = chainRule(xd, gd, dyd, c.rows, c.cols, layer, eps);
    // Per row, the terms' magnitudes: |dy·gamma| / d, a few ulps each.
    for (int64_t r = 0; r < c.rows; ++r) {
      double scale = 0;
      for (int64_t k = 0; k < c.cols; ++k)
        scale = std::max(
            scale, std::fabs(dyd[size_t(r * c.cols + k)] * gd[size_t(k)]));
      for (int64_t k = 0; k < c.cols; ++k)
        ASSERT_NEAR(dx[size_t(r * s0 + k * s1)],
                    want.dx[size_t(r * c.cols + k)], 2e-5 * scale)
            << "dx[" << r << ", " << k << "]";
    }
    for (int64_t k = 0; k < c.cols; ++k) {
      double magnitude = 0, beta = 0;
      for (int64_t r = 0; r < c.rows; ++r) {
        magnitude += std::fabs(dyd[size_t(r * c.cols + k)]) * 4.0;
        beta += std::fabs(dyd[size_t(r * c.cols + k)]);
      }
      if (c.flags & kNormGammaGrad)
        ASSERT_NEAR(dgamma[size_t(k)], want.dgamma[size_t(k)], 1e-5 * magnitude)
            << "dgamma[" << k << "]";
      else
        ASSERT_TRUE(std::isnan(dgamma[size_t(k)])) << "dgamma written";
      if (c.flags & kNormBetaGrad)
        ASSERT_NEAR(dbeta[size_t(3 * k)], want.dbeta[size_t(k)], 1e-5 * beta)
            << "dbeta[" << k << "]";
      else
        ASSERT_TRUE(std::isnan(dbeta[size_t(3 * k)])) << "dbeta written";
    }
  }
}

} // namespace
