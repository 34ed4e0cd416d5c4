//===- DenseMathTest.cpp - Tests of the compile-time dense math -----------===//
//
// Half and bfloat16 conversions against LLVM's APFloat (an independent
// implementation of IEEE rounding), over every half / bfloat16 pattern and
// random floats; products against a naive double-precision loop.
//
//===----------------------------------------------------------------------===//

#include "qopt/Support/DenseMath.h"

#include "llvm/ADT/APFloat.h"
#include "gtest/gtest.h"

#include <cmath>
#include <cstring>
#include <random>

using namespace qopt::dense;

namespace {

uint16_t apfloatEncode(const llvm::fltSemantics &sem, float v) {
  llvm::APFloat f(v);
  bool lost;
  f.convert(sem, llvm::APFloat::rmNearestTiesToEven, &lost);
  return uint16_t(f.bitcastToAPInt().getZExtValue());
}

float apfloatDecode(const llvm::fltSemantics &sem, uint16_t bits) {
  llvm::APFloat f(sem, llvm::APInt(16, bits));
  bool lost;
  f.convert(llvm::APFloat::IEEEsingle(), llvm::APFloat::rmNearestTiesToEven,
            &lost);
  return f.convertToFloat();
}

void expectSameFloat(float expected, float got, const char *what,
                     uint32_t input) {
  if (std::isnan(expected)) {
    EXPECT_TRUE(std::isnan(got)) << what << " of 0x" << std::hex << input;
    return;
  }
  uint32_t e, g;
  std::memcpy(&e, &expected, 4);
  std::memcpy(&g, &got, 4);
  EXPECT_EQ(e, g) << what << " of 0x" << std::hex << input;
}

TEST(DenseMath, HalfDecodeEveryPattern) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits)
    expectSameFloat(apfloatDecode(llvm::APFloat::IEEEhalf(), bits),
                    halfToFloat(uint16_t(bits)), "halfToFloat", bits);
}

TEST(DenseMath, BFloat16DecodeEveryPattern) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits)
    expectSameFloat(apfloatDecode(llvm::APFloat::BFloat(), bits),
                    bfloat16ToFloat(uint16_t(bits)), "bfloat16ToFloat", bits);
}

TEST(DenseMath, EncodeRoundsToNearestEven) {
  std::mt19937 rng(7);
  std::vector<float> values = {0.0f,     -0.0f,     1.0f,         65504.0f,
                               65519.0f, 65520.0f,  1e-8f,        -3e-5f,
                               6.1e-5f,  5.96e-8f,  2.98e-8f,     3.4e38f,
                               INFINITY, -INFINITY, 1.0009765625f};
  // Halfway cases of half: 1 + 2^-11 (ties to 1), 1 + 3·2^-11 (ties up).
  values.push_back(1.0f + std::ldexp(1.0f, -11));
  values.push_back(1.0f + 3 * std::ldexp(1.0f, -11));
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = rng();
    float v;
    std::memcpy(&v, &bits, 4);
    if (!std::isnan(v))
      values.push_back(v);
  }
  for (float v : values) {
    uint32_t in;
    std::memcpy(&in, &v, 4);
    EXPECT_EQ(apfloatEncode(llvm::APFloat::IEEEhalf(), v), floatToHalf(v))
        << "floatToHalf of " << v << " (0x" << std::hex << in << ")";
    EXPECT_EQ(apfloatEncode(llvm::APFloat::BFloat(), v), floatToBFloat16(v))
        << "floatToBFloat16 of " << v << " (0x" << std::hex << in << ")";
  }
  EXPECT_TRUE(std::isnan(halfToFloat(floatToHalf(NAN))));
  EXPECT_TRUE(std::isnan(bfloat16ToFloat(floatToBFloat16(NAN))));
}

TEST(DenseMath, EncodeDecodeBytesRoundTrip) {
  std::vector<float> values = {1.5f, -2.25f, 0.0f, 1024.0f, -0.125f};
  for (FloatKind kind :
       {FloatKind::F16, FloatKind::BF16, FloatKind::F32, FloatKind::F64}) {
    std::vector<unsigned char> bytes(values.size() * floatKindBytes(kind));
    encodeFloats(kind, values.data(), values.size(), bytes.data());
    std::vector<float> back(values.size());
    decodeFloats(kind, bytes.data(), values.size(), back.data());
    EXPECT_EQ(values, back);
  }
  // Little-endian layout: 1.5 is 0x3E00 in half, 0x3FC0 in bfloat16.
  unsigned char half[2], bf[2];
  float one5 = 1.5f;
  encodeFloats(FloatKind::F16, &one5, 1, half);
  encodeFloats(FloatKind::BF16, &one5, 1, bf);
  EXPECT_EQ(half[0], 0x00);
  EXPECT_EQ(half[1], 0x3e);
  EXPECT_EQ(bf[0], 0xc0);
  EXPECT_EQ(bf[1], 0x3f);
}

Matrix randomMatrix(int64_t rows, int64_t cols, std::mt19937 &rng) {
  std::normal_distribution<float> normal;
  Matrix m(rows, cols);
  for (float &v : m.data)
    v = normal(rng);
  return m;
}

TEST(DenseMath, GemmMatchesNaiveProduct) {
  std::mt19937 rng(3);
  for (bool transA : {false, true})
    for (bool transB : {false, true}) {
      int64_t m = 7, n = 5, k = 11;
      Matrix a = transA ? randomMatrix(k, m, rng) : randomMatrix(m, k, rng);
      Matrix b = transB ? randomMatrix(n, k, rng) : randomMatrix(k, n, rng);
      Matrix c = randomMatrix(m, n, rng), original = c;
      gemm(transA, transB, 0.5f, a, b, 2.0f, c);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0;
          for (int64_t p = 0; p < k; ++p)
            sum += double(transA ? a.at(p, i) : a.at(i, p)) *
                   (transB ? b.at(j, p) : b.at(p, j));
          double expected = 0.5 * sum + 2.0 * original.at(i, j);
          EXPECT_NEAR(c.at(i, j), expected, 1e-5 * (1 + std::fabs(expected)))
              << "transA=" << transA << " transB=" << transB << " at " << i
              << "," << j;
        }
    }
}

TEST(DenseMath, MatmulTransposeRowNorms) {
  Matrix a(2, 3);
  a.data = {1, 2, 3, 4, 5, 6};
  Matrix b(3, 2);
  b.data = {7, 8, 9, 10, 11, 12};
  Matrix c = matmul(a, b);
  EXPECT_EQ(c.data, (std::vector<float>{58, 64, 139, 154}));
  Matrix t = transpose(a);
  EXPECT_EQ(t.rows, 3);
  EXPECT_EQ(t.data, (std::vector<float>{1, 4, 2, 5, 3, 6}));
  std::vector<float> norms = rowNorms(a);
  EXPECT_FLOAT_EQ(norms[0], std::sqrt(14.0f));
  EXPECT_FLOAT_EQ(norms[1], std::sqrt(77.0f));
}

/// ‖a − u·diag(s)·vt‖_F.
double truncationError(const Matrix &a, const Matrix &u,
                       const std::vector<float> &s, const Matrix &vt) {
  double sum = 0;
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < a.cols; ++j) {
      double v = a.at(i, j);
      for (size_t k = 0; k < s.size(); ++k)
        v -= double(u.at(i, k)) * s[k] * vt.at(k, j);
      sum += v * v;
    }
  return std::sqrt(sum);
}

/// An m×n matrix with singular values `sigma` (random singular vectors)
/// plus Gaussian noise of standard deviation `noise`.
Matrix spectrumMatrix(int64_t m, int64_t n, const std::vector<double> &sigma,
                      double noise, std::mt19937 &rng) {
  int64_t r = sigma.size();
  Matrix qu, qv, unused;
  thinQR(randomMatrix(m, r, rng), r, qu, unused);
  thinQR(randomMatrix(n, r, rng), r, qv, unused);
  Matrix a = randomMatrix(m, n, rng);
  for (float &v : a.data)
    v = float(v * noise);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < r; ++k)
        a.at(i, j) += float(qu.at(i, k) * sigma[k] * qv.at(j, k));
  return a;
}

TEST(DenseMath, TopSingularRecoversAKnownSpectrum) {
  std::mt19937 rng(7);
  Matrix a = spectrumMatrix(40, 25, {10, 5, 2, 1, 0.5}, 0.0, rng);
  Matrix u, vt;
  std::vector<float> s;
  topSingular(a, 3, u, s, vt);
  EXPECT_NEAR(s[0], 10, 1e-4);
  EXPECT_NEAR(s[1], 5, 1e-4);
  EXPECT_NEAR(s[2], 2, 1e-4);
  // What the rank-3 truncation leaves: the last two singular values.
  EXPECT_NEAR(truncationError(a, u, s, vt), std::sqrt(1 + 0.25), 1e-4);
}

TEST(DenseMath, RandomizedSVDMatchesTheExactOne) {
  std::mt19937 rng(11);
  // A decaying spectrum under noise, and a flat one (pure noise, as a
  // quantization residual is): the randomized truncation keeps nearly
  // the exact one's error.
  for (double noise : {0.01, 1.0}) {
    std::vector<double> sigma;
    for (int k = 0; k < 12; ++k)
      sigma.push_back(noise < 1 ? 20.0 * std::pow(0.7, k) : 0.0);
    Matrix a = spectrumMatrix(300, 200, sigma, noise, rng);
    Matrix u, vt, ur, vtr;
    std::vector<float> s, sr;
    topSingular(a, 8, u, s, vt);
    topSingularRandomized(a, 8, ur, sr, vtr);
    double exact = truncationError(a, u, s, vt);
    double randomized = truncationError(a, ur, sr, vtr);
    EXPECT_LE(randomized, exact * (noise < 1 ? 1.001 : 1.02)) << noise;
    EXPECT_GE(randomized, exact * (1 - 1e-5)) << noise;
    if (noise < 1) {
      for (int k = 0; k < 8; ++k)
        EXPECT_NEAR(sr[k], s[k], 1e-3 * s[k]) << k;
    }
  }
}

} // namespace
