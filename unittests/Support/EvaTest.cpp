//===- EvaTest.cpp - EVA's incremental PCA and rank redistribution --------===//

#include "qopt/Support/Eva.h"

#include "gtest/gtest.h"

#include <cmath>
#include <random>

using namespace qopt;

namespace {

dense::Matrix randomMatrix(int64_t rows, int64_t cols, unsigned seed,
                           std::vector<double> colScale = {}) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  dense::Matrix m(rows, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      m.at(i, j) = normal(gen) * (colScale.empty() ? 1.0 : colScale[j]) + 0.5f;
  return m;
}

// Vᵀ's rows are orthonormal, ‖X·vₖ‖ = sₖ, and Σ sₖ² = ‖X‖², on both the
// tall and the wide path.
TEST(Eva, SingularValuesOfTallAndWide) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{9, 5}, {4, 7}}) {
    dense::Matrix x = randomMatrix(m, n, 3);
    std::vector<double> xd(x.data.begin(), x.data.end()), s, vt;
    eva::singularValues(xd, m, n, s, vt);
    int64_t k = std::min(m, n);
    ASSERT_EQ(int64_t(s.size()), k);
    double frob = 0, sum = 0;
    for (double v : xd)
      frob += v * v;
    for (int64_t a = 0; a < k; ++a) {
      sum += s[a] * s[a];
      if (a)
        EXPECT_GE(s[a - 1], s[a]);
      for (int64_t b = 0; b < k; ++b) {
        double dot = 0;
        for (int64_t j = 0; j < n; ++j)
          dot += vt[a * n + j] * vt[b * n + j];
        EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-12);
      }
      double norm = 0;
      for (int64_t i = 0; i < m; ++i) {
        double y = 0;
        for (int64_t j = 0; j < n; ++j)
          y += xd[i * n + j] * vt[a * n + j];
        norm += y * y;
      }
      EXPECT_NEAR(std::sqrt(norm), s[a], 1e-10 * s[0]);
    }
    EXPECT_NEAR(sum, frob, 1e-10 * frob);
  }
}

// The leading singular triplets by subspace iteration equal the full
// decomposition's, cold and warm started, on a spectrum that decays as
// activations' do.
TEST(Eva, LeadingSingularIsTheFullDecompositionsTop) {
  const int64_t m = 300, n = 160, k = 12;
  std::vector<double> scale(n);
  for (int64_t j = 0; j < n; ++j)
    scale[j] = std::pow(0.96, double(j));
  dense::Matrix x = randomMatrix(m, n, 5, scale);
  std::vector<double> xd(x.data.begin(), x.data.end()), s, vt, fs, fvt;
  eva::singularValues(xd, m, n, fs, fvt);
  for (const std::vector<double> &start :
       {std::vector<double>(),
        std::vector<double>(fvt.begin() + 3 * n, fvt.begin() + 9 * n)}) {
    eva::leadingSingular(xd, m, n, k, start, s, vt, /*exactUpTo=*/0);
    ASSERT_EQ(int64_t(s.size()), k);
    for (int64_t c = 0; c < k; ++c) {
      EXPECT_NEAR(s[c], fs[c], 1e-10 * fs[0]) << c;
      double dot = 0;
      for (int64_t j = 0; j < n; ++j)
        dot += vt[c * n + j] * fvt[c * n + j];
      EXPECT_NEAR(std::abs(dot), 1.0, 1e-9) << c;
    }
  }
}

// Keeping every component, the incremental fit over two batches is the PCA
// of all rows at once (scikit-learn's update is exact then).
TEST(Eva, IncrementalPCAKeepingAllComponentsIsExact) {
  dense::Matrix a = randomMatrix(6, 4, 1, {3, 1, 0.5, 2}),
                b = randomMatrix(7, 4, 2, {3, 1, 0.5, 2});
  dense::Matrix all(13, 4);
  std::copy(a.data.begin(), a.data.end(), all.data.begin());
  std::copy(b.data.begin(), b.data.end(), all.data.begin() + 24);
  eva::IncrementalPCA twice(4), once(4);
  twice.partialFit(a);
  twice.partialFit(b);
  once.partialFit(all);
  for (size_t i = 0; i < 16; ++i)
    EXPECT_NEAR(twice.components()[i], once.components()[i], 1e-9) << i;
  for (size_t c = 0; c < 4; ++c) {
    EXPECT_NEAR(twice.explainedVarianceRatio()[c],
                once.explainedVarianceRatio()[c], 1e-12);
    // svd_flip: each component's largest entry is positive.
    double best = 0;
    for (size_t j = 0; j < 4; ++j)
      if (std::abs(once.components()[c * 4 + j]) > std::abs(best))
        best = once.components()[c * 4 + j];
    EXPECT_GT(best, 0);
  }
  double total = 0;
  for (double r : once.explainedVarianceRatio())
    total += r;
  EXPECT_NEAR(total, 1.0, 1e-12);
}

// Layers with equal inputs share one PCA; the budget (Σ r) is spent on the
// largest explained-variance shares, the shared layer's first one holding
// the highest rank; a layer whose inputs spread over many directions gets
// less than one with a dominant direction.
TEST(Eva, RanksFollowExplainedVariance) {
  std::vector<eva::Layer> layers = {{"q", 2}, {"k", 2}, {"o", 2}};
  auto run = [](size_t index, std::vector<dense::Matrix> &inputs,
                std::string &) {
    dense::Matrix shared =
        randomMatrix(40, 6, 10 + index, {10, 0.1, 0.1, 0.1, 0.1, 0.1});
    inputs = {shared, shared, randomMatrix(40, 6, 20 + index)};
    return true;
  };
  eva::Options options;
  options.tau = 0.5;
  eva::Result result;
  std::string error;
  ASSERT_TRUE(eva::compute(layers, 3, options, run, result, error)) << error;
  EXPECT_EQ(result.sharedWith, (std::vector<size_t>{0, 0, 2}));
  ASSERT_EQ(result.ranks.size(), 3u);
  EXPECT_EQ(result.ranks[0] + result.ranks[1] + result.ranks[2], 6);
  EXPECT_GE(result.ranks[0], result.ranks[1]);
  EXPECT_GE(result.ranks[0], 1);
  for (size_t l = 0; l < 3; ++l) {
    EXPECT_EQ(result.components[l].rows, result.ranks[l]);
    EXPECT_EQ(result.components[l].cols, 6);
  }
  // q's first component is the dominant direction.
  EXPECT_GT(std::abs(result.components[0].at(0, 0)), 0.99f);
}

// Data of rank one (only feature 1 varies): the subspace iteration's
// vanishing directions are replaced, not retried forever.
TEST(Eva, LeadingSingularOfRankOneData) {
  const int64_t m = 100, n = 64;
  std::vector<double> x(size_t(m) * n, 0.0), s, vt;
  for (int64_t i = 0; i < m; ++i)
    x[i * n + 1] = double(i % 7) - 3.0;
  eva::leadingSingular(x, m, n, 2, {}, s, vt, /*exactUpTo=*/0);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_NEAR(std::abs(vt[1]), 1.0, 1e-12);
  EXPECT_NEAR(s[1], 0.0, 1e-9 * s[0]);
}

// PEFT whitens a shared PCA's components in place once per layer of the
// group whose rank covers the row: with q and k sharing, row c of both is
// divided by s_c^(m_c / 2), m_c the number of them whose rank exceeds c.
TEST(Eva, WhiteningOfSharedLayersFollowsPEFT) {
  std::vector<eva::Layer> layers = {{"q", 2}, {"k", 2}};
  auto run = [](size_t index, std::vector<dense::Matrix> &inputs,
                std::string &) {
    dense::Matrix shared = randomMatrix(40, 6, 10 + index, {5, 2, 1, 1, 1, 1});
    inputs = {shared, shared};
    return true;
  };
  eva::Options plain, white;
  plain.tau = white.tau = 0.0;
  white.whiten = true;
  eva::Result a, b;
  std::string error;
  ASSERT_TRUE(eva::compute(layers, 2, plain, run, a, error)) << error;
  ASSERT_TRUE(eva::compute(layers, 2, white, run, b, error)) << error;
  ASSERT_EQ(a.ranks, b.ranks);
  // Singular values from the norms: with tau 0 both stop at the same fit.
  for (size_t l = 0; l < 2; ++l)
    for (int64_t c = 0; c < b.ranks[l]; ++c) {
      int64_t m = (a.ranks[0] > c) + (a.ranks[1] > c);
      double ratio = a.components[l].at(c, 0) / b.components[l].at(c, 0);
      for (int64_t j = 1; j < 6; ++j)
        EXPECT_NEAR(a.components[l].at(c, j) / b.components[l].at(c, j), ratio,
                    1e-4 * std::abs(ratio));
      // The same divisor in both layers, a power m of √s_c.
      EXPECT_NEAR(b.components[0].rows > c ? b.components[0].at(c, 0) : 0,
                  b.components[1].rows > c ? b.components[1].at(c, 0) : 0,
                  m == 2 ? 1e-6 : 1e9);
    }
}

TEST(Eva, RefusesWhatPEFTWouldLoopOrDivideOn) {
  std::vector<eva::Layer> layers = {{"q", 2}};
  eva::Result result;
  std::string error;
  // Constant inputs: no variance to explain.
  EXPECT_FALSE(eva::compute(
      layers, 2, eva::Options(),
      [](size_t, std::vector<dense::Matrix> &in, std::string &) {
        in = {dense::Matrix(10, 4, 1.0f)};
        return true;
      },
      result, error));
  EXPECT_NE(error.find("do not vary"), std::string::npos) << error;
  // Every batch has fewer rows than the 4 components.
  EXPECT_FALSE(eva::compute(
      layers, 3, eva::Options(),
      [](size_t, std::vector<dense::Matrix> &in, std::string &) {
        in = {randomMatrix(3, 8, 1)};
        return true;
      },
      result, error));
  EXPECT_NE(error.find("no calibration batch keeps 4 tokens"),
            std::string::npos)
      << error;
  // A first batch without rows.
  EXPECT_FALSE(eva::compute(
      layers, 2, eva::Options(),
      [](size_t i, std::vector<dense::Matrix> &in, std::string &) {
        in = {i == 0 ? dense::Matrix(0, 8) : randomMatrix(20, 8, 1)};
        return true;
      },
      result, error));
  EXPECT_NE(error.find("first calibration batch keeps no token"),
            std::string::npos)
      << error;
}

TEST(Eva, RunErrorsPropagate) {
  std::vector<eva::Layer> layers = {{"q", 1}};
  eva::Result result;
  std::string error;
  EXPECT_FALSE(eva::compute(
      layers, 1, eva::Options(),
      [](size_t, auto &, std::string &e) {
        e = "broken";
        return false;
      },
      result, error));
  EXPECT_EQ(error, "broken");
}

} // namespace
