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

} // namespace
