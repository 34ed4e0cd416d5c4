//===- HadamardTest.cpp - Hadamard matrices of every constructible order --===//

#include "qopt/Support/Hadamard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace h = qopt::hadamard;

namespace {

/// Whether `m` (n × n, ±1) satisfies H·Hᵀ = n·I exactly.
bool isHadamard(const std::vector<int8_t> &m, int64_t n) {
  if (int64_t(m.size()) != n * n)
    return false;
  for (int8_t v : m)
    if (v != 1 && v != -1)
      return false;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) {
      int64_t dot = 0;
      for (int64_t k = 0; k < n; ++k)
        dot += m[size_t(i * n + k)] * m[size_t(j * n + k)];
      if (dot != (i == j ? n : 0))
        return false;
    }
  return true;
}

} // namespace

// Every base order the constructions reach is a Hadamard matrix: Paley I
// and II over prime fields and GF(p^e) (28 = GF(27), 52 = GF(25), 100 =
// GF(49), 244 = GF(243)), the tabulated Williamson orders.
TEST(Hadamard, EveryBaseOrder) {
  std::vector<int64_t> missing;
  for (int64_t m = 4; m <= 260; m += 8) { // 4 · odd
    if (h::construction(m).empty()) {
      missing.push_back(m);
      continue;
    }
    EXPECT_TRUE(isHadamard(h::baseMatrix(m), m))
        << m << " by " << h::construction(m);
  }
  // 4 · 47, 4 · 59, 4 · 65: neither Paley construction, no tabulated
  // quadruple.
  EXPECT_EQ(missing, (std::vector<int64_t>{188, 236, 260}));
}

TEST(Hadamard, ConstructionsNamed) {
  EXPECT_EQ(h::construction(12), "Paley I (q = 11)");
  EXPECT_EQ(h::construction(28), "Paley I (q = 27)");
  EXPECT_EQ(h::construction(36), "Paley II (q = 17)");
  EXPECT_EQ(h::construction(52), "Paley II (q = 25)");
  EXPECT_EQ(h::construction(156), "Williamson (n = 39)");
  EXPECT_EQ(h::construction(172), "Williamson (n = 43)");
  EXPECT_EQ(h::construction(188), ""); // 4 · 47: none of these
  EXPECT_EQ(h::construction(20), "Paley I (q = 19)");
}

// QuaRot's orders and the hidden sizes of current models.
TEST(Hadamard, ModelSizes) {
  for (int64_t n : {12,   20,   28,    36,    40,    52,    60,   108,  140,
                    156,  172,  768,   896,   1536,  2560,  3072, 3584, 4864,
                    5120, 8960, 11008, 13824, 14336, 18944, 27648})
    EXPECT_TRUE(h::isSupported(n)) << n;
  EXPECT_EQ(h::split(11008).base, 172);
  EXPECT_EQ(h::split(11008).power, 64);
  EXPECT_EQ(h::split(4096).base, 1);
  EXPECT_EQ(h::split(4096).power, 4096);
  for (int64_t n : {0, 3, 6, 10, 188, 47 * 64, 4 * 59 * 2})
    EXPECT_FALSE(h::isSupported(n)) << n;
  EXPECT_EQ(h::largestSupportedDivisor(188 * 16), 64);
  EXPECT_EQ(h::largestSupportedDivisor(6), 2);
}

// Kronecker products with Sylvester powers, and apply() against the
// explicit matrix.
TEST(Hadamard, KroneckerFactors) {
  // H_n = H_base ⊗ H_p1 ⊗ H_p2 entry by entry, p1 <= p2 <= 2 · p1.
  for (int64_t n : {1, 2, 8, 12, 24, 48, 64, 80, 96, 1024, 352}) {
    SCOPED_TRACE(n);
    h::KroneckerFactors f = h::kroneckerFactors(n);
    ASSERT_EQ(f.base * f.p1 * f.p2, n);
    EXPECT_LE(f.p1, f.p2);
    EXPECT_LE(f.p2, 2 * f.p1);
    std::vector<int8_t> hn = h::matrix(n), hb = h::matrix(f.base),
                        h1 = h::matrix(f.p1), h2 = h::matrix(f.p2);
    int64_t q = f.p1 * f.p2;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int64_t ia = i / q, ib = i % q / f.p2, ic = i % f.p2;
        int64_t ja = j / q, jb = j % q / f.p2, jc = j % f.p2;
        ASSERT_EQ(hn[size_t(i * n + j)], hb[size_t(ia * f.base + ja)] *
                                             h1[size_t(ib * f.p1 + jb)] *
                                             h2[size_t(ic * f.p2 + jc)])
            << i << ", " << j;
      }
  }
  EXPECT_EQ(h::kroneckerFactors(14).base, 0);
}

TEST(Hadamard, ApplyMatchesMatrix) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (int64_t n : {1, 2, 8, 12, 24, 40, 92, 96, 172, 344, 256}) {
    std::vector<int8_t> full = h::matrix(n);
    ASSERT_TRUE(isHadamard(full, n)) << n;
    std::vector<float> x(static_cast<size_t>(n));
    for (float &v : x)
      v = normal(rng);
    std::vector<float> y(x);
    h::apply(y.data(), n, h::baseMatrix(h::split(n).base));
    double norm = 1.0 / std::sqrt(double(n));
    for (int64_t i = 0; i < n; ++i) {
      double ref = 0;
      for (int64_t k = 0; k < n; ++k)
        ref += full[size_t(i * n + k)] * double(x[size_t(k)]);
      EXPECT_NEAR(y[size_t(i)], ref * norm, 1e-5) << n << " row " << i;
    }
  }
}
